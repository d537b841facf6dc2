/*
 * verify.c - checking a COSE_Sign1 against a public key and the detached
 * payload, as a device or the keybroker CLI does.
 */
#include <stdlib.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include "cose_int.h"

static bool ec_curve_is(EVP_PKEY *pk, int nid)
{
    char name[64];

    if (!EVP_PKEY_is_a(pk, "EC") || EVP_PKEY_get_group_name(pk, name, sizeof(name), NULL) != 1)
        return false;
    return OBJ_txt2nid(name) == nid;
}

static bool key_fits(kbr_cose_alg alg, EVP_PKEY *pk)
{
    switch (alg) {
    case KBR_COSE_ES256:
        return ec_curve_is(pk, NID_X9_62_prime256v1);
    case KBR_COSE_ES384:
        return ec_curve_is(pk, NID_secp384r1);
    case KBR_COSE_EDDSA:
        return EVP_PKEY_is_a(pk, "ED25519");
    default:
        return false;
    }
}

/* KBR_ERR_CRYPTO when the signature does not verify, as for a broken one. */
static kbr_err verify_tbs(kbr_cose_alg alg, EVP_PKEY *pub, const unsigned char *sig, size_t siglen,
                          const unsigned char *tbs, size_t tbslen)
{
    kbr_err err = KBR_OK;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *md = alg == KBR_COSE_ES256   ? EVP_sha256()
                       : alg == KBR_COSE_ES384 ? EVP_sha384()
                                               : NULL;
    unsigned char *der = NULL;
    size_t derlen = 0;

    KBR_ENSURE(ctx != NULL, KBR_ERR_NOMEM);
    if (md != NULL) {
        /* COSE carries r||s; OpenSSL verifies an ECDSA-Sig-Value. */
        KBR_GUARD(kbr_ecdsa_raw_to_der(sig, siglen, &der, &derlen));
        sig = der;
        siglen = derlen;
    }
    KBR_ENSURE(EVP_DigestVerifyInit(ctx, NULL, md, NULL, pub) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_DigestVerify(ctx, sig, siglen, tbs, tbslen) == 1, KBR_ERR_CRYPTO);
out:
    free(der);
    EVP_MD_CTX_free(ctx);
    return err;
}

kbr_err kbr_cose_sign1_verify(const unsigned char *in, size_t len, const unsigned char *aad,
                              size_t aadlen, const unsigned char *payload, size_t paylen,
                              EVP_PKEY *pub, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    unsigned char *prot = NULL, *sig = NULL, *kid = NULL, *tbs = NULL;
    size_t protlen = 0, siglen = 0, kidlen = 0, tbslen = 0;
    kbr_cose_alg alg = KBR_COSE_ES256;

    KBR_GUARD(
        kbr_cose_sign1_parse(in, len, &prot, &protlen, &sig, &siglen, &alg, &kid, &kidlen, msg));
    KBR_ENSURE(pub != NULL && key_fits(alg, pub),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "key: does not fit the header's alg"));
    KBR_GUARD(kbr_cose_sig_structure(prot, protlen, aad, aadlen, payload, paylen, &tbs, &tbslen));
    err = verify_tbs(alg, pub, sig, siglen, tbs, tbslen);
    if (err == KBR_ERR_CRYPTO)
        kbr_fail(msg, err, "signature: does not verify");
out:
    ERR_clear_error();
    free(prot);
    free(sig);
    free(kid);
    free(tbs);
    return err;
}
