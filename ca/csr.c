/*
 * csr.c - a device's PKCS#10 request: read strictly, key type checked
 * before any signature work (an RSA-16384 key would be costly to verify),
 * then its self-signature verified as proof that the device holds the key.
 * Only the key is used for a certificate; the subject is kept for the
 * audit record.
 *
 * The request is read with templates of our own, the same fields and rules as OpenSSL's
 * X509_REQ but with the SubjectPublicKeyInfo kept as its two fields: OpenSSL 3.0 turns a
 * parsed SubjectPublicKeyInfo into a key by building a decoder chain for it, every time, and
 * that was a sixth of a provisioning's CPU (bench/README.md).  An EC P-256 or P-384 key as an
 * uncompressed point, or an Ed25519 key, is built straight from its bytes; any other key goes
 * through OpenSSL's reader as before.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "ca_int.h"

typedef struct {
    X509_ALGOR *algor;
    ASN1_BIT_STRING *public_key;
} csr_spki;

typedef struct {
    ASN1_ENCODING enc; /* the bytes the signature covers, as they came */
    ASN1_INTEGER *version;
    X509_NAME *subject;
    csr_spki *spki;
    STACK_OF(X509_ATTRIBUTE) * attributes;
} csr_info;

typedef struct {
    csr_info *info;
    X509_ALGOR *sig_alg;
    ASN1_BIT_STRING *signature;
} csr_req;

struct kbr_ca_csr {
    csr_req *req;
    EVP_PKEY *pub;     /* NULL when the key could not be read */
    X509_PUBKEY *spki; /* the request's, field for field */
    char sha256[65];
    char *subject;
};

/* cppcheck cannot expand OpenSSL's template macros, so it skips them. */
#ifndef __CPPCHECK__
// clang-format off
ASN1_SEQUENCE(csr_spki) = {
    ASN1_SIMPLE(csr_spki, algor, X509_ALGOR),
    ASN1_SIMPLE(csr_spki, public_key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(csr_spki)

/* As OpenSSL's X509_REQ_INFO, attributes optional included (some tools leave them out). */
ASN1_SEQUENCE_enc(csr_info, enc, NULL) = {
    ASN1_SIMPLE(csr_info, version, ASN1_INTEGER),
    ASN1_SIMPLE(csr_info, subject, X509_NAME),
    ASN1_SIMPLE(csr_info, spki, csr_spki),
    ASN1_IMP_SET_OF_OPT(csr_info, attributes, X509_ATTRIBUTE, 0),
} static_ASN1_SEQUENCE_END_ref(csr_info, csr_info)

ASN1_SEQUENCE(csr_req) = {
    ASN1_SIMPLE(csr_req, info, csr_info),
    ASN1_SIMPLE(csr_req, sig_alg, X509_ALGOR),
    ASN1_SIMPLE(csr_req, signature, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(csr_req)
// clang-format on
#endif

#define MSG_NOT_CSR  "csr_pem: not a PEM certificate request"
#define MSG_KEY_TYPE "csr_pem: key type not accepted"
#define MSG_POP      "csr_pem: signature does not verify (no proof of possession)"

                    void kbr_ca_csr_free(kbr_ca_csr * csr)
{
    if (csr == NULL)
        return;
    ASN1_item_free((ASN1_VALUE *)csr->req, ASN1_ITEM_rptr(csr_req));
    EVP_PKEY_free(csr->pub);
    X509_PUBKEY_free(csr->spki);
    free(csr->subject);
    free(csr);
}

EVP_PKEY *kbr_ca_csr_pubkey_peek(const kbr_ca_csr *csr)
{
    return csr->pub;
}

X509_PUBKEY *kbr_ca_csr_spki_peek(const kbr_ca_csr *csr)
{
    return csr->spki;
}

const char *kbr_ca_csr_sha256_hex(const kbr_ca_csr *csr)
{
    return csr->sha256;
}

const char *kbr_ca_csr_subject(const kbr_ca_csr *csr)
{
    return csr->subject;
}

static bool key_accepted(EVP_PKEY *pk)
{
    int bits;

    if (pk == NULL)
        return false;
    if (ca_alg_fits(KBR_ALG_ECDSA_P256, pk) || ca_alg_fits(KBR_ALG_ECDSA_P384, pk) ||
        ca_alg_fits(KBR_ALG_ED25519, pk))
        return true;
    bits = EVP_PKEY_get_bits(pk);
    return EVP_PKEY_is_a(pk, "RSA") && bits >= 2048 && bits <= 4096;
}

/* The one request in pem, with the DER it was read from hashed into sha256. */
static kbr_err read_req(const char *pem, csr_req **out, char sha256[65])
{
    kbr_err err = KBR_OK;
    BIO *bio = ca_pem_bio(pem, KBR_CA_CSR_MAX);
    unsigned char *der = NULL, *rest = NULL;
    const unsigned char *p;
    long len = 0, rest_len = 0;
    /* OpenSSL writes "CERTIFICATE REQUEST"; some tools still write the older "NEW ..." label. */
    static const char *const names[] = {PEM_STRING_X509_REQ, PEM_STRING_X509_REQ_OLD, NULL};

    *out = NULL;
    KBR_ENSURE(bio != NULL, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(ca_pem_next(bio, names, &der, &len));
    KBR_ENSURE(ca_pem_next(bio, names, &rest, &rest_len) == KBR_ERR_NOT_FOUND, KBR_ERR_BAD_REQUEST);
    p = der;
    *out = (csr_req *)ASN1_item_d2i(NULL, &p, len, ASN1_ITEM_rptr(csr_req));
    KBR_ENSURE(*out != NULL, KBR_ERR_BAD_REQUEST);
    kbr_sha256_hex(der, (size_t)len, sha256);
    if (p != der + len) {
        ASN1_item_free((ASN1_VALUE *)*out, ASN1_ITEM_rptr(csr_req));
        *out = NULL;
        err = KBR_ERR_BAD_REQUEST;
    }
out:
    BIO_free(bio);
    OPENSSL_free(der);
    OPENSSL_free(rest);
    return err == KBR_OK ? KBR_OK : KBR_ERR_BAD_REQUEST;
}

/*
 * The domain parameters of the two curves a device key may be on, made once: building a
 * curve's group from its name costs more than a copy of one (the Montgomery constants are
 * computed anew), so each key starts as a copy of these.
 */
static EVP_PKEY *curve_params[2]; /* P-256, P-384 */
static pthread_once_t curve_params_once = PTHREAD_ONCE_INIT;

static void make_curve_params(void)
{
    static const char *const names[] = {SN_X9_62_prime256v1, SN_secp384r1};

    for (size_t i = 0; i < 2; i++) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)names[i], 0),
            OSSL_PARAM_construct_end(),
        };

        if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
            EVP_PKEY_fromdata(ctx, &curve_params[i], EVP_PKEY_KEY_PARAMETERS, params) != 1) {
            EVP_PKEY_free(curve_params[i]);
            curve_params[i] = NULL;
        }
        EVP_PKEY_CTX_free(ctx);
    }
}

/* An EC key of curve (0: P-256, 1: P-384) from its point: the provider checks that the point
 * is on the curve.  NULL when it is not, or the parameters could not be made. */
static EVP_PKEY *ec_key_from_point(int curve, const unsigned char *pt, size_t n)
{
    EVP_PKEY *pk = NULL;

    if (pthread_once(&curve_params_once, make_curve_params) != 0 || curve_params[curve] == NULL)
        return NULL;
    pk = EVP_PKEY_dup(curve_params[curve]);
    if (pk != NULL && EVP_PKEY_set1_encoded_public_key(pk, pt, n) != 1) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    return pk;
}

/*
 * The key of spki built from its bytes, for the kinds a device sends: an EC P-256 or P-384
 * key as an uncompressed point, an Ed25519 key.  NULL for any other, which OpenSSL's reader
 * is then asked for.  A BIT STRING that says it has unused bits is left to that reader too.
 */
static EVP_PKEY *key_direct(const csr_spki *spki)
{
    const ASN1_OBJECT *alg = NULL;
    const void *pval = NULL;
    int ptype = V_ASN1_UNDEF, curve;
    const unsigned char *bits = ASN1_STRING_get0_data(spki->public_key);
    int n = ASN1_STRING_length(spki->public_key);

    if ((spki->public_key->flags & 0x07) != 0 || bits == NULL || n <= 0)
        return NULL;
    X509_ALGOR_get0(&alg, &ptype, &pval, spki->algor);
    switch (OBJ_obj2nid(alg)) {
    case NID_X9_62_id_ecPublicKey:
        if (ptype != V_ASN1_OBJECT || bits[0] != POINT_CONVERSION_UNCOMPRESSED)
            return NULL;
        curve = OBJ_obj2nid(pval);
        if (curve != NID_X9_62_prime256v1 && curve != NID_secp384r1)
            return NULL;
        return ec_key_from_point(curve == NID_X9_62_prime256v1 ? 0 : 1, bits, (size_t)n);
    case NID_ED25519:
        if (ptype != V_ASN1_UNDEF)
            return NULL;
        return EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, bits, (size_t)n);
    default:
        return NULL;
    }
}

/* The request's key (csr->pub, NULL if unreadable) and its SubjectPublicKeyInfo (csr->spki).
 * KBR_ERR_BAD_REQUEST when OpenSSL's reader refuses the SubjectPublicKeyInfo outright. */
static kbr_err read_key(kbr_ca_csr *csr)
{
    kbr_err err = KBR_OK;
    const csr_spki *from = csr->req->info->spki;
    unsigned char *der = NULL;
    const unsigned char *p;
    int len;

    csr->pub = key_direct(from);
    if (csr->pub != NULL) {
        csr->spki = X509_PUBKEY_new();
        KBR_ENSURE(csr->spki != NULL, KBR_ERR_NOMEM);
        KBR_GUARD(ca_spki_set(csr->spki, from->algor, ASN1_STRING_get0_data(from->public_key),
                              ASN1_STRING_length(from->public_key)));
        goto out;
    }
    /* OpenSSL's reader, for the other kinds: their field-for-field copy, and its key. */
    len = ASN1_item_i2d((const ASN1_VALUE *)from, &der, ASN1_ITEM_rptr(csr_spki));
    KBR_ENSURE(len > 0, KBR_ERR_NOMEM);
    p = der;
    csr->spki = d2i_X509_PUBKEY(NULL, &p, len);
    /* what OpenSSL's X509_REQ reader would have refused as a whole */
    KBR_ENSURE(csr->spki != NULL && p == der + len, KBR_ERR_BAD_REQUEST);
    csr->pub = X509_PUBKEY_get(csr->spki);
out:
    OPENSSL_free(der);
    return err;
}

static kbr_err subject_string(const X509_NAME *name, char **out)
{
    kbr_err err = KBR_OK;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    *out = NULL;
    KBR_ENSURE(bio != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0, KBR_ERR_CRYPTO);
    len = BIO_get_mem_data(bio, &data);
    *out = strndup(len > 0 ? data : "", len > 0 ? (size_t)len : 0);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    BIO_free(bio);
    return err;
}

kbr_err kbr_ca_csr_parse(const char *pem, kbr_ca_csr **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_ca_csr *csr = calloc(1, sizeof(*csr));

    *out = NULL;
    KBR_ENSURE(csr != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(read_req(pem, &csr->req, csr->sha256) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, MSG_NOT_CSR));
    err = read_key(csr);
    KBR_ENSURE(err != KBR_ERR_BAD_REQUEST, kbr_fail(msg, KBR_ERR_BAD_REQUEST, MSG_NOT_CSR));
    KBR_GUARD(err);
    KBR_ENSURE(key_accepted(csr->pub), kbr_fail(msg, KBR_ERR_BAD_REQUEST, MSG_KEY_TYPE));
    KBR_ENSURE(ASN1_item_verify(ASN1_ITEM_rptr(csr_info), csr->req->sig_alg, csr->req->signature,
                                csr->req->info, csr->pub) == 1,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, MSG_POP));
    KBR_GUARD(subject_string(csr->req->info->subject, &csr->subject));
    *out = csr;
    csr = NULL;
out:
    kbr_ca_csr_free(csr);
    ERR_clear_error();
    return err;
}
