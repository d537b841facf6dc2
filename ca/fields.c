/*
 * fields.c - the parts every certificate made here shares: version, random
 * serial, names, validity, public key and the key identifiers; and the CRL
 * distribution point those made for a deployment with crl_url carry.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca_int.h"

/* RFC 5280 allows 20 octets; 16 random bytes with the top bit cleared stay positive. */
#define SERIAL_BYTES 16

static kbr_err set_serial(X509 *x)
{
    kbr_err err = KBR_OK;
    unsigned char buf[SERIAL_BYTES];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn = NULL;

    do {
        KBR_ENSURE(RAND_bytes(buf, sizeof(buf)) == 1, KBR_ERR_CRYPTO);
        buf[0] &= 0x7f;
        BN_free(bn);
        bn = BN_bin2bn(buf, sizeof(buf), NULL);
        KBR_ENSURE(bn != NULL, KBR_ERR_NOMEM);
    } while (BN_is_zero(bn));
    sn = BN_to_ASN1_INTEGER(bn, NULL);
    KBR_ENSURE(sn != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(X509_set_serialNumber(x, sn) == 1, KBR_ERR_CRYPTO);
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    BN_free(bn);
    ASN1_INTEGER_free(sn);
    return err;
}

/* SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 4.2.1.2, method 1). */
static ASN1_OCTET_STRING *key_id(X509 *x)
{
    const unsigned char *pk = NULL;
    int pklen = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ASN1_OCTET_STRING *id = NULL;

    if (X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, X509_get_X509_PUBKEY(x)) != 1 ||
        EVP_Digest(pk, (size_t)pklen, md, &mdlen, EVP_sha1(), NULL) != 1)
        return NULL;
    id = ASN1_OCTET_STRING_new();
    if (id != NULL && ASN1_OCTET_STRING_set(id, md, (int)mdlen) != 1) {
        ASN1_OCTET_STRING_free(id);
        id = NULL;
    }
    return id;
}

ASN1_OCTET_STRING *ca_authority_key_id(X509 *issuer)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);

    return ski != NULL ? ASN1_OCTET_STRING_dup(ski) : key_id(issuer);
}

static kbr_err add_key_ids(X509 *x, X509 *issuer)
{
    kbr_err err = KBR_OK;
    ASN1_OCTET_STRING *ski = key_id(x);
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();

    KBR_ENSURE(ski != NULL && akid != NULL, KBR_ERR_CRYPTO);
    akid->keyid = issuer != NULL ? ca_authority_key_id(issuer) : ASN1_OCTET_STRING_dup(ski);
    KBR_ENSURE(akid->keyid != NULL, KBR_ERR_CRYPTO);
    KBR_ENSURE(X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT) == 1,
               KBR_ERR_CRYPTO);
    KBR_ENSURE(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) == 1,
               KBR_ERR_CRYPTO);
out:
    ASN1_OCTET_STRING_free(ski);
    AUTHORITY_KEYID_free(akid);
    return err;
}

static kbr_err set_validity(X509 *x, time_t now, time_t not_after)
{
    if (X509_time_adj_ex(X509_getm_notBefore(x), 0, -CA_SKEW_SECONDS, &now) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &not_after) == NULL)
        return KBR_ERR_CRYPTO;
    return KBR_OK;
}

/* A copy of an AlgorithmIdentifier's parameters of type ptype: an OID, a DER SEQUENCE, or
 * nothing (NULL, absent).  False for a type a public key's algorithm does not carry. */
static bool param_dup(int ptype, const void *pval, void **out)
{
    *out = NULL;
    switch (ptype) {
    case V_ASN1_UNDEF:
    case V_ASN1_NULL:
        return true;
    case V_ASN1_OBJECT:
        return pval != NULL && (*out = OBJ_dup(pval)) != NULL;
    case V_ASN1_SEQUENCE:
        return pval != NULL && (*out = ASN1_STRING_dup(pval)) != NULL;
    default:
        return false;
    }
}

static void param_free(int ptype, void *pval)
{
    if (ptype == V_ASN1_OBJECT)
        ASN1_OBJECT_free(pval);
    else if (ptype == V_ASN1_SEQUENCE)
        ASN1_STRING_free(pval);
}

/*
 * The subject's SubjectPublicKeyInfo copied as it stands (algorithm, parameters, the key's
 * bits) from a request's.  X509_set_pubkey would take the request's EVP_PKEY instead, and for a
 * provider key OpenSSL 3.0 encodes it and decodes it again, building a decoder for every
 * certificate: a third of a provisioning's CPU (bench/README.md).
 */
kbr_err ca_spki_set(X509_PUBKEY *to, const X509_ALGOR *algor, const unsigned char *bits, int nbits)
{
    kbr_err err = KBR_OK;
    const ASN1_OBJECT *alg = NULL;
    ASN1_OBJECT *alg_copy = NULL;
    unsigned char *bits_copy = NULL;
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    void *pval_copy = NULL;

    KBR_ENSURE(bits != NULL && nbits > 0, KBR_ERR_CRYPTO);
    X509_ALGOR_get0(&alg, &ptype, &pval, algor);
    KBR_ENSURE(param_dup(ptype, pval, &pval_copy), KBR_ERR_CRYPTO);
    alg_copy = OBJ_dup(alg);
    bits_copy = OPENSSL_memdup(bits, (size_t)nbits);
    KBR_ENSURE(alg_copy != NULL && bits_copy != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(X509_PUBKEY_set0_param(to, alg_copy, ptype, pval_copy, bits_copy, nbits) == 1,
               KBR_ERR_CRYPTO);
    alg_copy = NULL;
    pval_copy = NULL;
    bits_copy = NULL;
out:
    ASN1_OBJECT_free(alg_copy);
    param_free(ptype, pval_copy);
    OPENSSL_free(bits_copy);
    return err;
}

static kbr_err copy_spki(X509 *x, const X509_PUBKEY *from)
{
    const unsigned char *bits = NULL;
    int nbits = 0;
    X509_ALGOR *pa = NULL;

    if (X509_PUBKEY_get0_param(NULL, &bits, &nbits, &pa, from) != 1)
        return KBR_ERR_CRYPTO;
    return ca_spki_set(X509_get_X509_PUBKEY(x), pa, bits, nbits);
}

kbr_err ca_skeleton(const X509_NAME *subject, const X509_NAME *issuer_name, X509 *issuer,
                    EVP_PKEY *pub, const X509_PUBKEY *spki, time_t now, time_t not_after,
                    X509 **out)
{
    kbr_err err = KBR_OK;
    X509 *x = X509_new();

    *out = NULL;
    KBR_ENSURE(x != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(X509_set_version(x, X509_VERSION_3) == 1, KBR_ERR_CRYPTO);
    KBR_GUARD(set_serial(x));
    KBR_ENSURE(X509_set_subject_name(x, subject) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(X509_set_issuer_name(x, issuer_name) == 1, KBR_ERR_CRYPTO);
    KBR_GUARD(set_validity(x, now, not_after));
    if (spki != NULL)
        KBR_GUARD(copy_spki(x, spki));
    else
        KBR_ENSURE(X509_set_pubkey(x, pub) == 1, KBR_ERR_CRYPTO);
    KBR_GUARD(add_key_ids(x, issuer));
    *out = x;
    x = NULL;
out:
    X509_free(x);
    return err;
}

/* What a URL in a certificate may hold: IA5String, and nothing a reader could split on. */
static bool url_ok(const char *url)
{
    size_t n = url != NULL ? strnlen(url, KBR_CA_CRL_URL_MAX + 1) : 0;

    if (n == 0 || n > KBR_CA_CRL_URL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (url[i] <= ' ' || url[i] > '~')
            return false;
    return true;
}

kbr_err ca_add_crl_dp(X509 *x, const char *url)
{
    kbr_err err = KBR_OK;
    CRL_DIST_POINTS *dps = NULL;
    DIST_POINT *dp = NULL;
    GENERAL_NAME *gn = NULL;
    ASN1_IA5STRING *uri = NULL;

    KBR_ENSURE(url_ok(url), KBR_ERR_BAD_REQUEST);
    dps = sk_DIST_POINT_new_null();
    dp = DIST_POINT_new();
    gn = GENERAL_NAME_new();
    uri = ASN1_IA5STRING_new();
    KBR_ENSURE(dps != NULL && dp != NULL && gn != NULL && uri != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(ASN1_STRING_set(uri, url, (int)strlen(url)) == 1, KBR_ERR_NOMEM);
    GENERAL_NAME_set0_value(gn, GEN_URI, uri);
    uri = NULL;
    dp->distpoint = DIST_POINT_NAME_new();
    KBR_ENSURE(dp->distpoint != NULL, KBR_ERR_NOMEM);
    dp->distpoint->type = 0; /* fullName */
    dp->distpoint->name.fullname = GENERAL_NAMES_new();
    KBR_ENSURE(dp->distpoint->name.fullname != NULL &&
                   sk_GENERAL_NAME_push(dp->distpoint->name.fullname, gn) > 0,
               KBR_ERR_NOMEM);
    gn = NULL;
    KBR_ENSURE(sk_DIST_POINT_push(dps, dp) > 0, KBR_ERR_NOMEM);
    dp = NULL;
    KBR_ENSURE(X509_add1_ext_i2d(x, NID_crl_distribution_points, dps, 0, X509V3_ADD_DEFAULT) == 1,
               KBR_ERR_CRYPTO);
out:
    ASN1_IA5STRING_free(uri);
    GENERAL_NAME_free(gn);
    DIST_POINT_free(dp);
    CRL_DIST_POINTS_free(dps);
    return err;
}

kbr_err ca_add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, NULL, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return KBR_ERR_CRYPTO;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? KBR_OK : KBR_ERR_CRYPTO;
}
