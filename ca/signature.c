/*
 * signature.c - certificate signatures made outside OpenSSL: the HSM signer, the
 * AlgorithmIdentifier for each key algorithm, and installing a signature
 * into an X509 followed by the check that it verifies.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include "ca_int.h"

/* ---- the HSM signer ---- */

static kbr_err hsm_sign_digest(const kbr_ca_hsm_ctx *c, const EVP_MD *md, kbr_sig_format fmt,
                               kbr_hash hash, const unsigned char *tbs, size_t tbslen,
                               unsigned char **sig, size_t *siglen)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (EVP_Digest(tbs, tbslen, digest, &dlen, md, NULL) != 1)
        return KBR_ERR_CRYPTO;
    return kbr_hsm_sign(c->session, c->label, fmt, hash, digest, dlen, sig, siglen);
}

static kbr_err hsm_sign(void *arg, const unsigned char *tbs, size_t tbslen, unsigned char **sig,
                        size_t *siglen)
{
    const kbr_ca_hsm_ctx *c = arg;

    switch (c->alg) {
    case KBR_ALG_ECDSA_P256:
        return hsm_sign_digest(c, EVP_sha256(), KBR_SIG_ECDSA_DER, KBR_HASH_SHA256, tbs, tbslen,
                               sig, siglen);
    case KBR_ALG_ECDSA_P384:
        return hsm_sign_digest(c, EVP_sha384(), KBR_SIG_ECDSA_DER, KBR_HASH_SHA384, tbs, tbslen,
                               sig, siglen);
    case KBR_ALG_ED25519:
        return kbr_hsm_sign(c->session, c->label, KBR_SIG_EDDSA, KBR_HASH_NONE, tbs, tbslen, sig,
                            siglen);
    case KBR_ALG_RSA_3072:
    case KBR_ALG_RSA_4096:
        return hsm_sign_digest(c, EVP_sha256(), KBR_SIG_RSA_PKCS1, KBR_HASH_SHA256, tbs, tbslen,
                               sig, siglen);
    default:
        return KBR_ERR_INTERNAL;
    }
}

kbr_err kbr_ca_hsm_signer(kbr_hsm_session *s, const char *label, kbr_alg alg, kbr_ca_hsm_ctx *ctx,
                          kbr_ca_signer *out)
{
    size_t len = label != NULL ? strnlen(label, KBR_HSM_LABEL_MAX) : 0;

    if (s == NULL || ctx == NULL || out == NULL || len == 0 || len >= KBR_HSM_LABEL_MAX ||
        (unsigned)alg >= KBR_ALG__COUNT)
        return KBR_ERR_BAD_REQUEST;
    memset(ctx, 0, sizeof(*ctx));
    ctx->session = s;
    ctx->alg = alg;
    memcpy(ctx->label, label, len);
    out->alg = alg;
    out->sign = hsm_sign;
    out->arg = ctx;
    return KBR_OK;
}

/* ---- algorithms ---- */

static bool ec_curve_is(EVP_PKEY *pk, int nid)
{
    char group[64];

    if (!EVP_PKEY_is_a(pk, "EC") || EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME,
                                                                   group, sizeof(group), NULL) != 1)
        return false;
    return OBJ_txt2nid(group) == nid;
}

bool ca_alg_fits(kbr_alg alg, EVP_PKEY *pk)
{
    if (pk == NULL)
        return false;
    switch (alg) {
    case KBR_ALG_ECDSA_P256:
        return ec_curve_is(pk, NID_X9_62_prime256v1);
    case KBR_ALG_ECDSA_P384:
        return ec_curve_is(pk, NID_secp384r1);
    case KBR_ALG_ED25519:
        return EVP_PKEY_is_a(pk, "ED25519");
    case KBR_ALG_RSA_3072:
        return EVP_PKEY_is_a(pk, "RSA") && EVP_PKEY_get_bits(pk) == 3072;
    case KBR_ALG_RSA_4096:
        return EVP_PKEY_is_a(pk, "RSA") && EVP_PKEY_get_bits(pk) == 4096;
    default:
        return false;
    }
}

/* The signature algorithm and its parameters: absent for ECDSA (RFC 5758) and Ed25519
 * (RFC 8410), NULL for RSA PKCS#1 v1.5 (RFC 4055). */
bool ca_sig_algorithm(kbr_alg alg, int *nid, int *ptype)
{
    *ptype = V_ASN1_UNDEF;
    switch (alg) {
    case KBR_ALG_ECDSA_P256:
        *nid = NID_ecdsa_with_SHA256;
        return true;
    case KBR_ALG_ECDSA_P384:
        *nid = NID_ecdsa_with_SHA384;
        return true;
    case KBR_ALG_ED25519:
        *nid = NID_ED25519;
        return true;
    case KBR_ALG_RSA_3072:
    case KBR_ALG_RSA_4096:
        *nid = NID_sha256WithRSAEncryption;
        *ptype = V_ASN1_NULL;
        return true;
    default:
        return false;
    }
}

/* ---- installing the signature ---- */

/*
 * OpenSSL 3.0 has no setter for a certificate's signature or for the
 * AlgorithmIdentifier inside its TBS; its documentation points to these
 * getters for signatures made elsewhere, so const is cast away here and
 * nowhere else.  Nothing of x is cached that the signature changes: its TBS is encoded
 * again (i2d_re_X509_tbs) before it is signed, and a certificate's whole encoding is
 * written from its parts each time it is asked for (by ca_sign, from the TBS it signed).
 */
static kbr_err install_alg(X509 *x, int nid, int ptype)
{
    X509_ALGOR *tbs_alg = (X509_ALGOR *)X509_get0_tbs_sigalg(x);
    const X509_ALGOR *outer = NULL;

    X509_get0_signature(NULL, &outer, x);
    if (X509_ALGOR_set0(tbs_alg, OBJ_nid2obj(nid), ptype, NULL) != 1 ||
        X509_ALGOR_set0((X509_ALGOR *)outer, OBJ_nid2obj(nid), ptype, NULL) != 1)
        return KBR_ERR_CRYPTO;
    return KBR_OK;
}

static kbr_err install_sig(X509 *x, const unsigned char *sig, size_t siglen)
{
    const ASN1_BIT_STRING *csig = NULL;
    ASN1_BIT_STRING *bits;

    X509_get0_signature(&csig, NULL, x);
    bits = (ASN1_BIT_STRING *)csig;
    if (siglen > INT32_MAX || ASN1_BIT_STRING_set(bits, (unsigned char *)sig, (int)siglen) != 1)
        return KBR_ERR_CRYPTO;
    /* A signature is whole bytes: without this, trailing zero bits would be dropped. */
    bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
    return KBR_OK;
}

/*
 * Whether sig is issuer_pub's signature by nid over the TBS bytes: what X509_verify checks,
 * over the bytes that go out rather than the TBS encoded once more.
 */
static bool tbs_verifies(EVP_PKEY *issuer_pub, int nid, const unsigned char *tbs, size_t tbslen,
                         const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *md = NULL;
    int md_nid = NID_undef, pkey_nid = NID_undef;
    bool ok = false;

    if (ctx == NULL || OBJ_find_sigid_algs(nid, &md_nid, &pkey_nid) != 1)
        goto out;
    /* Ed25519 hashes as part of its signature: no digest of its own. SHA-256, the common
     * case, is fetched once per process rather than looked up on every certificate. */
    if (md_nid == NID_sha256)
        md = kbr_md_sha256();
    else if (md_nid != NID_undef && (md = EVP_get_digestbynid(md_nid)) == NULL)
        goto out;
    ok = EVP_DigestVerifyInit(ctx, NULL, md, NULL, issuer_pub) == 1 &&
         EVP_DigestVerify(ctx, sig, siglen, tbs, tbslen) == 1;
out:
    EVP_MD_CTX_free(ctx);
    return ok;
}

/*
 * The certificate's DER from its parts, SEQUENCE { tbsCertificate, signatureAlgorithm,
 * signatureValue }: the bytes i2d_X509 writes, with the TBS as it was signed rather than
 * encoded again.
 */
static kbr_err cert_der(const X509 *x, const unsigned char *tbs, int tbslen, unsigned char **der,
                        int *derlen)
{
    kbr_err err = KBR_OK;
    const ASN1_BIT_STRING *sig = NULL;
    const X509_ALGOR *alg = NULL;
    unsigned char *buf = NULL, *p;
    int alglen, siglen, total;

    X509_get0_signature(&sig, &alg, x);
    alglen = i2d_X509_ALGOR(alg, NULL);
    siglen = i2d_ASN1_BIT_STRING(sig, NULL);
    KBR_ENSURE(alglen > 0 && siglen > 0 && tbslen < INT32_MAX / 2, KBR_ERR_CRYPTO);
    total = ASN1_object_size(1, tbslen + alglen + siglen, V_ASN1_SEQUENCE);
    KBR_ENSURE(total > 0, KBR_ERR_CRYPTO);
    buf = OPENSSL_malloc((size_t)total);
    KBR_ENSURE(buf != NULL, KBR_ERR_NOMEM);
    p = buf;
    ASN1_put_object(&p, 1, tbslen + alglen + siglen, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(p, tbs, (size_t)tbslen);
    p += tbslen;
    KBR_ENSURE(i2d_X509_ALGOR(alg, &p) == alglen && i2d_ASN1_BIT_STRING(sig, &p) == siglen &&
                   p == buf + total,
               KBR_ERR_CRYPTO);
    *der = buf;
    *derlen = total;
    buf = NULL;
out:
    OPENSSL_free(buf);
    return err;
}

kbr_err ca_sign(X509 *x, const kbr_ca_signer *signer, EVP_PKEY *issuer_pub, unsigned char **der,
                int *derlen, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    unsigned char *tbs = NULL, *sig = NULL;
    size_t siglen = 0;
    int nid = 0, ptype = 0, tbslen;

    *der = NULL;
    *derlen = 0;
    KBR_ENSURE(signer != NULL && signer->sign != NULL &&
                   ca_sig_algorithm(signer->alg, &nid, &ptype),
               KBR_ERR_INTERNAL);
    KBR_GUARD(install_alg(x, nid, ptype));
    tbslen = i2d_re_X509_tbs(x, &tbs);
    KBR_ENSURE(tbslen > 0, KBR_ERR_CRYPTO);
    KBR_GUARD(signer->sign(signer->arg, tbs, (size_t)tbslen, &sig, &siglen));
    KBR_ENSURE(sig != NULL && siglen > 0, KBR_ERR_INTERNAL);
    KBR_GUARD(install_sig(x, sig, siglen));
    /* What the HSM returned is checked before anyone sees it: the wrong key, or a fault in
     * the signing, would otherwise go out as a certificate nothing chains to. */
    KBR_ENSURE(
        tbs_verifies(issuer_pub, nid, tbs, (size_t)tbslen, sig, siglen),
        kbr_fail(msg, KBR_ERR_CRYPTO, "certificate signature does not verify with the issuer key"));
    KBR_GUARD(cert_der(x, tbs, tbslen, der, derlen));
out:
    OPENSSL_free(tbs);
    free(sig);
    return err;
}
