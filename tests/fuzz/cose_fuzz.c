/*
 * cose_fuzz.c - COSE_Sign1 as an OTA platform or a device hands it back:
 * kbr_cose_sign1_parse, then kbr_cose_sign1_verify with a key of the alg the
 * header names.
 *
 * The parser accepts only the deterministic encoding of the one shape the
 * builder writes, so whatever it accepts, the builder must write again byte
 * for byte from the parts; and a fresh signature over the same header
 * parameters must verify.
 */
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "kbr_cose.h"

#include "fuzz.h"

static const unsigned char payload[] = "suit manifest digest";

typedef struct {
    EVP_PKEY *p256, *p384, *ed25519;
} fixture;

static fixture fx;

static EVP_PKEY *key_for(kbr_cose_alg alg)
{
    switch (alg) {
    case KBR_COSE_ES256:
        return fx.p256;
    case KBR_COSE_ES384:
        return fx.p384;
    default:
        return fx.ed25519;
    }
}

/* ECDSA-Sig-Value DER to r||s with each half padded to half. */
static kbr_err der_to_raw(const unsigned char *der, size_t derlen, size_t half, unsigned char *out)
{
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    kbr_err err = KBR_ERR_CRYPTO;

    if (es != NULL && BN_bn2binpad(ECDSA_SIG_get0_r(es), out, (int)half) == (int)half &&
        BN_bn2binpad(ECDSA_SIG_get0_s(es), out + half, (int)half) == (int)half)
        err = KBR_OK;
    ECDSA_SIG_free(es);
    return err;
}

/* Signs as kbr_hsm_sign would: a digest for ECDSA (raw r||s), the message for EdDSA. */
static kbr_err soft_sign(void *arg, kbr_sig_format fmt, kbr_hash hash, const unsigned char *in,
                         size_t inlen, unsigned char **sig, size_t *siglen)
{
    EVP_PKEY *key = arg;
    unsigned char der[160], *out = malloc(96);
    size_t derlen = sizeof(der), half = hash == KBR_HASH_SHA384 ? 48 : 32;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX *mctx = NULL;
    kbr_err err = KBR_ERR_CRYPTO;

    FUZZ_CHECK(out != NULL);
    if (fmt == KBR_SIG_EDDSA) {
        mctx = EVP_MD_CTX_new();
        *siglen = 64;
        if (mctx != NULL && EVP_DigestSignInit(mctx, NULL, NULL, NULL, key) == 1 &&
            EVP_DigestSign(mctx, out, siglen, in, inlen) == 1)
            err = KBR_OK;
    } else {
        pctx = EVP_PKEY_CTX_new(key, NULL);
        *siglen = 2 * half;
        if (pctx != NULL && EVP_PKEY_sign_init(pctx) == 1 &&
            EVP_PKEY_sign(pctx, der, &derlen, in, inlen) == 1)
            err = der_to_raw(der, derlen, half, out);
    }
    EVP_MD_CTX_free(mctx);
    EVP_PKEY_CTX_free(pctx);
    *sig = err == KBR_OK ? out : NULL;
    if (err != KBR_OK)
        free(out);
    return err;
}

/* The builder writes from the parts exactly the bytes the parser accepted. */
static void rebuild(const uint8_t *in, size_t len, const unsigned char *prot, size_t protlen,
                    const unsigned char *sig, size_t siglen, kbr_cose_alg alg,
                    const unsigned char *kid, size_t kidlen)
{
    unsigned char *hdr = NULL, *out = NULL;
    size_t hdrlen = 0, outlen = 0;
    bool tagged = len > 0 && in[0] == 0xd2; /* tag 18 */

    FUZZ_CHECK(kbr_cose_protected(alg, kid, kidlen, &hdr, &hdrlen) == KBR_OK);
    FUZZ_CHECK(hdrlen == protlen && memcmp(hdr, prot, protlen) == 0);
    FUZZ_CHECK(kbr_cose_sign1(prot, protlen, sig, siglen, tagged, &out, &outlen) == KBR_OK);
    FUZZ_CHECK(outlen == len && memcmp(out, in, len) == 0);
    free(hdr);
    free(out);
}

/* Random signature bytes do not verify; a fresh signature with the same header does. */
static void verify(const uint8_t *in, size_t len, kbr_cose_alg alg, const unsigned char *kid,
                   size_t kidlen)
{
    EVP_PKEY *key = key_for(alg);
    unsigned char *fresh = NULL;
    size_t freshlen = 0;
    kbr_msg msg = {{0}};

    FUZZ_CHECK(kbr_cose_sign1_verify(in, len, NULL, 0, payload, sizeof(payload), key, &msg) ==
               KBR_ERR_CRYPTO);
    FUZZ_CHECK(kbr_cose_sign1_make(alg, kid, kidlen, NULL, 0, payload, sizeof(payload), true,
                                   soft_sign, key, &fresh, &freshlen) == KBR_OK);
    FUZZ_CHECK(kbr_cose_sign1_verify(fresh, freshlen, NULL, 0, payload, sizeof(payload), key,
                                     &msg) == KBR_OK);
    /* the detached payload is part of what is signed */
    FUZZ_CHECK(kbr_cose_sign1_verify(fresh, freshlen, NULL, 0, payload, sizeof(payload) - 1, key,
                                     &msg) == KBR_ERR_CRYPTO);
    free(fresh);
}

static void fixture_init(void)
{
    fx.p256 = EVP_EC_gen("P-256");
    fx.p384 = EVP_EC_gen("P-384");
    fx.ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    FUZZ_CHECK(fx.p256 != NULL && fx.p384 != NULL && fx.ed25519 != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    unsigned char *prot = NULL, *sig = NULL, *kid = NULL;
    size_t protlen = 0, siglen = 0, kidlen = 0;
    kbr_cose_alg alg;
    kbr_msg msg = {{0}};
    kbr_err err;

    if (!ready) {
        fixture_init();
        ready = true;
    }
    err =
        kbr_cose_sign1_parse(data, size, &prot, &protlen, &sig, &siglen, &alg, &kid, &kidlen, &msg);
    if (err != KBR_OK) {
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST && prot == NULL && sig == NULL && kid == NULL);
        FUZZ_CHECK(msg.text[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(siglen == kbr_cose_sig_len(alg) && (kid == NULL) == (kidlen == 0));
    rebuild(data, size, prot, protlen, sig, siglen, alg, kid, kidlen);
    verify(data, size, alg, kid, kidlen);
    free(prot);
    free(sig);
    free(kid);
    return 0;
}
