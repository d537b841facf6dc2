/*
 * keys.c - algorithm names, key pair generation on the token, and the
 * public half of a key as an OpenSSL EVP_PKEY or PEM.
 *
 * Generated private keys are token objects that are private, sensitive, not
 * extractable and usable only for signing; the attributes the HSM reports
 * back after generation are returned, not the ones asked for.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "hsm_int.h"

static const char *const alg_names[KBR_ALG__COUNT] = {
    [KBR_ALG_ECDSA_P256] = "ecdsa-p256", [KBR_ALG_ECDSA_P384] = "ecdsa-p384",
    [KBR_ALG_ED25519] = "ed25519",       [KBR_ALG_RSA_3072] = "rsa-3072",
    [KBR_ALG_RSA_4096] = "rsa-4096",
};

#define KEY_ID_LEN 16

kbr_err kbr_alg_from_name(const char *name, kbr_alg *out)
{
    size_t i;

    if (name == NULL)
        return KBR_ERR_BAD_REQUEST;
    for (i = 0; i < KBR_ALG__COUNT; i++) {
        if (strcmp(name, alg_names[i]) == 0) {
            *out = (kbr_alg)i;
            return KBR_OK;
        }
    }
    return KBR_ERR_BAD_REQUEST;
}

const char *kbr_alg_name(kbr_alg alg)
{
    if ((unsigned)alg >= KBR_ALG__COUNT)
        return "unknown";
    return alg_names[alg];
}

/* ---- generation ---- */

typedef struct {
    CK_ATTRIBUTE a[16];
    CK_ULONG n;
} templ;

static void templ_add(templ *t, CK_ATTRIBUTE_TYPE type, const void *p, size_t len)
{
    t->a[t->n].type = type;
    t->a[t->n].pValue = (void *)p;
    t->a[t->n].ulValueLen = len;
    t->n++;
}

static CK_BBOOL bool_true = CK_TRUE;
static CK_BBOOL bool_false = CK_FALSE;

typedef struct {
    const char *label;
    kbr_alg alg;
    kbr_hsm_key_info *out;
    unsigned char id[KEY_ID_LEN];
    CK_ULONG bits;
    templ pub, priv;
    CK_MECHANISM mech;
} gen_ctx;

/* Usage is fixed to signing: no decryption, unwrapping or derivation. */
static void templ_common(gen_ctx *c)
{
    size_t lablen = strlen(c->label);

    templ_add(&c->priv, CKA_TOKEN, &bool_true, sizeof(CK_BBOOL));
    templ_add(&c->priv, CKA_PRIVATE, &bool_true, sizeof(CK_BBOOL));
    templ_add(&c->priv, CKA_SENSITIVE, &bool_true, sizeof(CK_BBOOL));
    templ_add(&c->priv, CKA_EXTRACTABLE, &bool_false, sizeof(CK_BBOOL));
    templ_add(&c->priv, CKA_SIGN, &bool_true, sizeof(CK_BBOOL));
    templ_add(&c->priv, CKA_DECRYPT, &bool_false, sizeof(CK_BBOOL));
    templ_add(&c->priv, CKA_UNWRAP, &bool_false, sizeof(CK_BBOOL));
    templ_add(&c->priv, CKA_DERIVE, &bool_false, sizeof(CK_BBOOL));
    templ_add(&c->priv, CKA_LABEL, c->label, lablen);
    templ_add(&c->priv, CKA_ID, c->id, sizeof(c->id));
    templ_add(&c->pub, CKA_TOKEN, &bool_true, sizeof(CK_BBOOL));
    templ_add(&c->pub, CKA_PRIVATE, &bool_false, sizeof(CK_BBOOL));
    templ_add(&c->pub, CKA_VERIFY, &bool_true, sizeof(CK_BBOOL));
    templ_add(&c->pub, CKA_ENCRYPT, &bool_false, sizeof(CK_BBOOL));
    templ_add(&c->pub, CKA_WRAP, &bool_false, sizeof(CK_BBOOL));
    templ_add(&c->pub, CKA_LABEL, c->label, lablen);
    templ_add(&c->pub, CKA_ID, c->id, sizeof(c->id));
}

static const unsigned char rsa_exponent[] = {0x01, 0x00, 0x01};

static void templ_alg(gen_ctx *c)
{
    const unsigned char *curve = NULL;
    size_t clen = 0;

    memset(&c->mech, 0, sizeof(c->mech));
    if (c->alg == KBR_ALG_RSA_3072 || c->alg == KBR_ALG_RSA_4096) {
        c->mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        c->bits = c->alg == KBR_ALG_RSA_3072 ? 3072 : 4096;
        templ_add(&c->pub, CKA_MODULUS_BITS, &c->bits, sizeof(c->bits));
        templ_add(&c->pub, CKA_PUBLIC_EXPONENT, rsa_exponent, sizeof(rsa_exponent));
        return;
    }
    c->mech.mechanism =
        c->alg == KBR_ALG_ED25519 ? CKM_EC_EDWARDS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN;
    curve = kbr_p11_curve_der(c->alg, &clen);
    templ_add(&c->pub, CKA_EC_PARAMS, curve, clen);
}

/* KBR_ERR_CONFLICT if any object, of any class, carries label. */
static kbr_err label_unused(kbr_hsm_session *s, const char *label)
{
    kbr_err err = KBR_OK;
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE *found = NULL;
    size_t n = 0;

    KBR_GUARD(kbr_p11_find_all(s, &t, 1, &found, &n));
    KBR_ENSURE(n == 0, KBR_ERR_CONFLICT);
    /* An empty answer from a logged-out session hides private objects. */
    KBR_GUARD(kbr_p11_check_login(s));
out:
    free(found);
    return err;
}

static kbr_err gen_attempt(kbr_hsm_session *s, void *ctx)
{
    kbr_err err = KBR_OK;
    gen_ctx *c = ctx;
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;

    KBR_GUARD(label_unused(s, c->label));
    KBR_ENSURE(RAND_bytes(c->id, sizeof(c->id)) == 1, KBR_ERR_CRYPTO);
    c->pub.n = 0;
    c->priv.n = 0;
    templ_common(c);
    templ_alg(c);
    KBR_GUARD(kbr_hsm_err_from_rv(s->hsm->f->C_GenerateKeyPair(s->h, &c->mech, c->pub.a, c->pub.n,
                                                               c->priv.a, c->priv.n, &pub, &priv)));
    KBR_GUARD(kbr_p11_read_info(s, priv, c->out));
out:
    return err;
}

kbr_err kbr_p11_generate(kbr_hsm_session *s, const char *label, kbr_alg alg, kbr_hsm_key_info *out)
{
    kbr_err err = KBR_OK;
    gen_ctx *c = NULL;

    KBR_ENSURE(s != NULL && out != NULL, KBR_ERR_INTERNAL);
    memset(out, 0, sizeof(*out));
    KBR_GUARD(kbr_p11_label_check(label));
    KBR_ENSURE((unsigned)alg < KBR_ALG__COUNT, KBR_ERR_BAD_REQUEST);
    c = calloc(1, sizeof(*c));
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    c->label = label;
    c->alg = alg;
    c->out = out;
    pthread_rwlock_wrlock(&s->hsm->objects_lock);
    err = kbr_p11_with_retry(s, gen_attempt, c);
    pthread_rwlock_unlock(&s->hsm->objects_lock);
out:
    free(c);
    return err;
}

/* ---- public keys ---- */

/*
 * CKA_EC_POINT is a DER OCTET STRING around the point in PKCS#11, but some
 * modules store the bare point: accept both, by the length the curve needs.
 */
static kbr_err point_unwrap(const unsigned char *p, size_t n, size_t expect, unsigned char *pt)
{
    kbr_err err = KBR_OK;
    ASN1_OCTET_STRING *os = NULL;
    const unsigned char *q = p;

    if (n == expect && (expect == 32 || p[0] == 0x04)) {
        memcpy(pt, p, n);
        goto out;
    }
    os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)n);
    KBR_ENSURE(os != NULL && q == p + n, KBR_ERR_HSM_KEY);
    KBR_ENSURE((size_t)ASN1_STRING_length(os) == expect, KBR_ERR_HSM_KEY);
    memcpy(pt, ASN1_STRING_get0_data(os), expect);
out:
    ASN1_OCTET_STRING_free(os);
    return err;
}

static kbr_err pkey_fromdata(const char *type, OSSL_PARAM *params, EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    KBR_ENSURE(ctx != NULL, KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_PKEY_fromdata_init(ctx) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) == 1, KBR_ERR_HSM_KEY);
out:
    EVP_PKEY_CTX_free(ctx);
    return err;
}

static kbr_err ec_pkey(const char *group, unsigned char *pt, size_t len, EVP_PKEY **out)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, len),
        OSSL_PARAM_construct_end(),
    };

    return pkey_fromdata("EC", params, out);
}

static kbr_err rsa_pkey(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen,
                        EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;

    KBR_ENSURE(bn != NULL && be != NULL && bld != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1, KBR_ERR_CRYPTO);
    params = OSSL_PARAM_BLD_to_param(bld);
    KBR_ENSURE(params != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(pkey_fromdata("RSA", params, out));
out:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return err;
}

static kbr_err pkey_rsa(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    unsigned char *n = NULL, *e = NULL;
    size_t nlen = 0, elen = 0;

    KBR_GUARD(kbr_p11_get_attr(s, obj, CKA_MODULUS, &n, &nlen));
    KBR_GUARD(kbr_p11_get_attr(s, obj, CKA_PUBLIC_EXPONENT, &e, &elen));
    KBR_GUARD(rsa_pkey(n, nlen, e, elen, out));
out:
    free(n);
    free(e);
    return err;
}

static kbr_err pkey_point(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, kbr_alg alg, EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    unsigned char *raw = NULL;
    unsigned char pt[97];
    size_t len = 0;
    size_t expect = alg == KBR_ALG_ED25519 ? 32 : alg == KBR_ALG_ECDSA_P256 ? 65 : 97;

    KBR_GUARD(kbr_p11_get_attr(s, obj, CKA_EC_POINT, &raw, &len));
    KBR_GUARD(point_unwrap(raw, len, expect, pt));
    if (alg == KBR_ALG_ED25519) {
        *out = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pt, expect);
        KBR_ENSURE(*out != NULL, KBR_ERR_HSM_KEY);
        goto out;
    }
    KBR_GUARD(ec_pkey(alg == KBR_ALG_ECDSA_P256 ? "prime256v1" : "secp384r1", pt, expect, out));
out:
    free(raw);
    return err;
}

/* From a public key object, or the public parts a private RSA object carries. */
static kbr_err pkey_from_object(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    CK_KEY_TYPE kt = CKK_VENDOR_DEFINED;
    bool known = false;
    kbr_alg alg = KBR_ALG_ECDSA_P256;

    KBR_GUARD(kbr_p11_get_fixed(s, obj, CKA_KEY_TYPE, &kt, sizeof(kt)));
    if (kt == CKK_RSA) {
        err = pkey_rsa(s, obj, out);
        goto out;
    }
    KBR_GUARD(kbr_p11_key_alg(s, obj, kt, &known, &alg));
    KBR_ENSURE(known, KBR_ERR_HSM_KEY);
    KBR_GUARD(pkey_point(s, obj, alg, out));
out:
    return err;
}

/* A private key without its public object: CKA_PUBLIC_KEY_INFO, or RSA's public parts. */
static kbr_err pkey_from_private(kbr_hsm_session *s, CK_OBJECT_HANDLE priv, EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    unsigned char *spki = NULL;
    const unsigned char *q = NULL;
    size_t len = 0;

    err = kbr_p11_get_attr(s, priv, CKA_PUBLIC_KEY_INFO, &spki, &len);
    if (err == KBR_OK && len > 0) {
        q = spki;
        *out = d2i_PUBKEY(NULL, &q, (long)len);
        KBR_ENSURE(*out != NULL, KBR_ERR_HSM_KEY);
        goto out;
    }
    KBR_ENSURE(err == KBR_OK || err == KBR_ERR_HSM_KEY, err);
    err = pkey_from_object(s, priv, out);
out:
    free(spki);
    return err;
}

typedef struct {
    const char *label;
    EVP_PKEY *pkey;
} pub_ctx;

static kbr_err pub_attempt(kbr_hsm_session *s, void *ctx)
{
    kbr_err err = KBR_OK;
    pub_ctx *c = ctx;
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;

    err = kbr_p11_find_one(s, CKO_PUBLIC_KEY, c->label, &obj);
    if (err == KBR_OK) {
        err = pkey_from_object(s, obj, &c->pkey);
        goto out;
    }
    KBR_ENSURE(err == KBR_ERR_NOT_FOUND, err);
    err = KBR_OK;
    KBR_GUARD(kbr_p11_find_one(s, CKO_PRIVATE_KEY, c->label, &obj));
    KBR_GUARD(pkey_from_private(s, obj, &c->pkey));
out:
    return err;
}

kbr_err kbr_p11_public_key(kbr_hsm_session *s, const char *label, EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    pub_ctx c = {label, NULL};

    KBR_ENSURE(out != NULL, KBR_ERR_INTERNAL);
    *out = NULL;
    KBR_ENSURE(s != NULL, KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_p11_label_check(label));
    KBR_GUARD(kbr_p11_with_retry(s, pub_attempt, &c));
    *out = c.pkey;
    c.pkey = NULL;
out:
    EVP_PKEY_free(c.pkey);
    return err;
}

kbr_err kbr_hsm_public_key_pem(kbr_hsm_session *s, const char *label, char **out_pem)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    char *data = NULL, *pem = NULL;
    long len;

    KBR_ENSURE(out_pem != NULL, KBR_ERR_INTERNAL);
    *out_pem = NULL;
    KBR_GUARD(kbr_hsm_public_key(s, label, &pkey));
    bio = BIO_new(BIO_s_mem());
    KBR_ENSURE(bio != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(PEM_write_bio_PUBKEY(bio, pkey) == 1, KBR_ERR_CRYPTO);
    len = BIO_get_mem_data(bio, &data);
    KBR_ENSURE(len > 0, KBR_ERR_CRYPTO);
    pem = malloc((size_t)len + 1);
    KBR_ENSURE(pem != NULL, KBR_ERR_NOMEM);
    memcpy(pem, data, (size_t)len);
    pem[len] = '\0';
    *out_pem = pem;
out:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return err;
}
