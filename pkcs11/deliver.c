/*
 * deliver.c - the private key of an ota-encryption key, sealed to one device.
 *
 * A device receives an RFC 9052 COSE_Encrypt with one recipient, in the algorithms of RFC
 * 9053: the recipient layer is ECDH-ES + A128KW (an ephemeral P-256 key E; Z = ECDH(E, the
 * device's key); KEK = HKDF-SHA-256(Z, no salt, info = COSE_KDF_Context, 16 bytes); the CEK
 * wrapped under the KEK with the AES key wrap of RFC 3394), the content layer AES-128-GCM
 * under the CEK of the private key as a COSE_Key.  cose/encrypt.c writes the structure
 * around what this file returns; the device opens it with its own private key alone.
 *
 * How the private key leaves the HSM.  It is a token object that is CKA_SENSITIVE (its value
 * is never readable) and CKA_EXTRACTABLE, so C_WrapKey is its only way out, and it has no
 * other use (keys.c).  Were the token able to, it would build both layers in place: the
 * ephemeral key and CKM_ECDH1_DERIVE, CKM_HKDF_DERIVE (PKCS#11 3.0) into a KEK object, a CEK
 * object wrapped under it with CKM_AES_KEY_WRAP, and the private key wrapped under the CEK
 * with CKM_AES_GCM, and nothing that opens a delivery would ever exist outside it.  SoftHSM2
 * 2.6.1 cannot, like many HSMs: its C_DeriveKey has no HKDF (and ECDH1 only with CKD_NULL),
 * and its C_WrapKey offers AES key wrap with or without padding, AES-CBC and RSA, never
 * AES-GCM.  And whatever the token cannot derive in place, the caller computes: HKDF of Z
 * done outside the token puts the KEK outside it, the KEK unwraps the CEK the delivery
 * carries, and the CEK decrypts the key.  So no arrangement of SoftHSM2's mechanisms keeps
 * the means to read a delivery inside the token, and the boundary that can be kept is the
 * HSM process: the one process of keybrokerd that loads the module and holds the PIN, and in
 * which SoftHSM2 itself decrypts every key it uses.  Within it:
 *
 *  - the token does what it can: it makes the ephemeral key pair (session objects; the
 *    private half sensitive, not extractable, usable only to derive), derives Z against the
 *    device's point (CKM_ECDH1_DERIVE, which checks the point is on the curve), draws the
 *    CEK and the IV (C_GenerateRandom), and lets the private key out only through
 *    C_WrapKey(CKM_AES_KEY_WRAP_PAD) under a one-time AES-256 key it makes for this call;
 *  - this file reads Z and the one-time key from the session objects made readable for the
 *    purpose, derives the KEK, unwraps the PKCS#8 the token produced, checks that its private
 *    key is the one whose public key the token holds, writes the COSE_Key and seals it (AES
 *    key wrap and AES-GCM, OpenSSL);
 *  - each of these values lives in locked memory (kbr_secret) and is wiped before the call
 *    returns, and the session objects are destroyed.  Only the ephemeral public key, the
 *    wrapped CEK, the IV and the ciphertext go back to the network process, which parses
 *    HTTP, JSON, CSRs and COSE and never holds the private key or anything that opens a
 *    delivery.
 *
 * A token with CKM_HKDF_DERIVE and GCM wrapping could run every step in place; this file is
 * the one place that would change.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/x509.h>

#include "hsm_int.h"

#define POINT_LEN 65
#define KEK_LEN   16
#define CEK_LEN   16
#define IV_LEN    12
#define TAG_LEN   16
#define ONCE_LEN  32 /* the one-time key the private key is wrapped under */
/* What C_WrapKey gives for a P-256 key's PKCS#8: RFC 5649 adds up to 15 bytes to it. */
#define WRAPPED_MAX 512

/* The DER SubjectPublicKeyInfo of a P-256 key before its 65-byte point (RFC 5480). */
static const unsigned char spki_p256_prefix[] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};

static CK_BBOOL yes = CK_TRUE;
static CK_BBOOL no = CK_FALSE;

typedef struct {
    const char *label;
    const kbr_hsm_delivery_req *req;
    kbr_hsm_delivery *out;
} deliver_ctx;

/* What one attempt holds; everything secret in locked memory. */
typedef struct {
    CK_OBJECT_HANDLE eph_pub, eph_priv, z, once;
    kbr_secret *zval, *kek, *cek, *onceval, *pkcs8, *plain;
    unsigned char point[POINT_LEN]; /* the key's public key, as the token holds it */
    kbr_hsm_delivery d;
} held;

static kbr_err secret_zero(size_t len, kbr_secret **out)
{
    static const unsigned char zero[WRAPPED_MAX];

    return len <= sizeof(zero) ? kbr_secret_new(zero, len, out) : KBR_ERR_INTERNAL;
}

static void held_release(kbr_hsm_session *s, held *h)
{
    CK_OBJECT_HANDLE objs[] = {h->eph_pub, h->eph_priv, h->z, h->once};

    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++)
        if (objs[i] != CK_INVALID_HANDLE)
            (void)s->hsm->f->C_DestroyObject(s->h, objs[i]);
    kbr_secret_free(h->zval);
    kbr_secret_free(h->kek);
    kbr_secret_free(h->cek);
    kbr_secret_free(h->onceval);
    kbr_secret_free(h->pkcs8);
    kbr_secret_free(h->plain);
    OPENSSL_cleanse(h, sizeof(*h));
}

static kbr_err flag_is(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, bool want)
{
    CK_BBOOL v = CK_FALSE;
    kbr_err err = kbr_p11_get_fixed(s, obj, type, &v, sizeof(v));

    if (err == KBR_ERR_HSM_KEY)
        return want ? KBR_ERR_FORBIDDEN : KBR_OK; /* an attribute it does not have is false */
    if (err != KBR_OK)
        return err;
    return (v == CK_TRUE) == want ? KBR_OK : KBR_ERR_FORBIDDEN;
}

/* Only a key made for delivery is delivered: P-256, sensitive, extractable, no use of its own. */
static kbr_err check_deliverable(kbr_hsm_session *s, CK_OBJECT_HANDLE key)
{
    kbr_err err = KBR_OK;
    CK_KEY_TYPE kt = CKK_VENDOR_DEFINED;
    bool known = false;
    kbr_alg alg = KBR_ALG_ED25519;

    KBR_GUARD(kbr_p11_get_fixed(s, key, CKA_KEY_TYPE, &kt, sizeof(kt)));
    KBR_ENSURE(kt == CKK_EC, KBR_ERR_FORBIDDEN);
    KBR_GUARD(kbr_p11_key_alg(s, key, kt, &known, &alg));
    KBR_ENSURE(known && alg == KBR_ALG_ECDSA_P256, KBR_ERR_FORBIDDEN);
    KBR_GUARD(flag_is(s, key, CKA_SENSITIVE, true));
    KBR_GUARD(flag_is(s, key, CKA_EXTRACTABLE, true));
    KBR_GUARD(flag_is(s, key, CKA_SIGN, false));
    KBR_GUARD(flag_is(s, key, CKA_DERIVE, false));
    KBR_GUARD(flag_is(s, key, CKA_DECRYPT, false));
    KBR_GUARD(flag_is(s, key, CKA_UNWRAP, false));
out:
    return err;
}

static kbr_err read_point(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, unsigned char pt[POINT_LEN])
{
    kbr_err err = KBR_OK;
    unsigned char *raw = NULL;
    size_t len = 0;

    KBR_GUARD(kbr_p11_get_attr(s, obj, CKA_EC_POINT, &raw, &len));
    KBR_GUARD(kbr_p11_point_unwrap(raw, len, POINT_LEN, pt));
    KBR_ENSURE(pt[0] == 0x04, KBR_ERR_HSM_KEY);
out:
    free(raw);
    return err;
}

/* A secret object's value, read straight into locked memory. */
static kbr_err read_value(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, size_t len, kbr_secret **out)
{
    kbr_err err = KBR_OK;
    CK_ATTRIBUTE a = {CKA_VALUE, NULL, len};

    KBR_GUARD(secret_zero(len, out));
    a.pValue = (*out)->buf;
    KBR_GUARD(kbr_hsm_err_from_rv(s->hsm->f->C_GetAttributeValue(s->h, obj, &a, 1)));
    KBR_ENSURE(a.ulValueLen == len, KBR_ERR_HSM);
out:
    return err;
}

/* The ephemeral key pair: session objects; the private half only derives. */
static kbr_err ephemeral(kbr_hsm_session *s, held *h)
{
    kbr_err err = KBR_OK;
    size_t clen = 0;
    const unsigned char *curve = kbr_p11_curve_der(KBR_ALG_ECDSA_P256, &clen);
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &no, sizeof(no)},
        {CKA_EC_PARAMS, (void *)curve, clen},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &no, sizeof(no)},       {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_DERIVE, &yes, sizeof(yes)},    {CKA_SIGN, &no, sizeof(no)},
        {CKA_DECRYPT, &no, sizeof(no)},     {CKA_UNWRAP, &no, sizeof(no)},
    };

    KBR_GUARD(kbr_hsm_err_from_rv(
        s->hsm->f->C_GenerateKeyPair(s->h, &mech, pub, sizeof(pub) / sizeof(pub[0]), priv,
                                     sizeof(priv) / sizeof(priv[0]), &h->eph_pub, &h->eph_priv)));
    KBR_GUARD(read_point(s, h->eph_pub, h->d.ephemeral));
out:
    return err;
}

/* Z = ECDH(ephemeral, recipient), the x-coordinate (CKD_NULL), as a readable session object. */
static kbr_err shared_secret(kbr_hsm_session *s, const unsigned char recipient[POINT_LEN], held *h)
{
    kbr_err err = KBR_OK;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG len = 32;
    CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, POINT_LEN, (CK_BYTE *)recipient};
    CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},       {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &no, sizeof(no)},         {CKA_SENSITIVE, &no, sizeof(no)},
        {CKA_EXTRACTABLE, &yes, sizeof(yes)}, {CKA_VALUE_LEN, &len, sizeof(len)},
    };

    KBR_GUARD(kbr_hsm_err_from_rv(
        s->hsm->f->C_DeriveKey(s->h, &mech, h->eph_priv, t, sizeof(t) / sizeof(t[0]), &h->z)));
    KBR_GUARD(read_value(s, h->z, 32, &h->zval));
out:
    return err;
}

/* The recipient is a point of P-256 (OpenSSL refuses one off the curve), before any token call. */
static kbr_err recipient_check(const unsigned char recipient[POINT_LEN])
{
    kbr_err err = KBR_OK;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)recipient, POINT_LEN),
        OSSL_PARAM_construct_end(),
    };

    KBR_ENSURE(ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1,
               KBR_ERR_BAD_REQUEST);
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    return err;
}

static kbr_err kek_derive(const kbr_hsm_delivery_req *req, held *h)
{
    kbr_err err = KBR_OK;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, h->zval->buf, h->zval->len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)req->kdf_context,
                                          req->kdf_context_len),
        OSSL_PARAM_construct_end(),
    };

    KBR_ENSURE(kctx != NULL, KBR_ERR_CRYPTO);
    KBR_GUARD(secret_zero(KEK_LEN, &h->kek));
    KBR_ENSURE(EVP_KDF_derive(kctx, h->kek->buf, KEK_LEN, params) == 1, KBR_ERR_CRYPTO);
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return err;
}

static kbr_err random_from_token(kbr_hsm_session *s, unsigned char *buf, size_t len)
{
    return kbr_hsm_err_from_rv(s->hsm->f->C_GenerateRandom(s->h, buf, len));
}

/* The private key out of the token the one way it goes: wrapped, under a one-time key. */
static kbr_err export_wrapped(kbr_hsm_session *s, CK_OBJECT_HANDLE key, held *h)
{
    kbr_err err = KBR_OK;
    CK_FUNCTION_LIST *f = s->hsm->f;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = ONCE_LEN;
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0}, wrap = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_TOKEN, &no, sizeof(no)},
        {CKA_SENSITIVE, &no, sizeof(no)},   {CKA_EXTRACTABLE, &yes, sizeof(yes)},
        {CKA_WRAP, &yes, sizeof(yes)},      {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_ENCRYPT, &no, sizeof(no)},     {CKA_DECRYPT, &no, sizeof(no)},
    };
    unsigned char wrapped[WRAPPED_MAX];
    CK_ULONG wlen = sizeof(wrapped);
    EVP_CIPHER_CTX *cctx = NULL;
    int n = 0, m = 0;

    KBR_GUARD(
        kbr_hsm_err_from_rv(f->C_GenerateKey(s->h, &gen, t, sizeof(t) / sizeof(t[0]), &h->once)));
    KBR_GUARD(kbr_hsm_err_from_rv(f->C_WrapKey(s->h, &wrap, h->once, key, wrapped, &wlen)));
    KBR_ENSURE(wlen > 16 && wlen <= sizeof(wrapped), KBR_ERR_HSM);
    KBR_GUARD(read_value(s, h->once, ONCE_LEN, &h->onceval));
    KBR_GUARD(secret_zero(wlen, &h->pkcs8));
    cctx = EVP_CIPHER_CTX_new();
    KBR_ENSURE(cctx != NULL, KBR_ERR_NOMEM);
    EVP_CIPHER_CTX_set_flags(cctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    KBR_ENSURE(EVP_DecryptInit_ex(cctx, EVP_aes_256_wrap_pad(), NULL, h->onceval->buf, NULL) == 1,
               KBR_ERR_CRYPTO);
    KBR_ENSURE(EVP_DecryptUpdate(cctx, h->pkcs8->buf, &n, wrapped, (int)wlen) == 1 && n > 0,
               KBR_ERR_HSM);
    KBR_ENSURE(EVP_DecryptFinal_ex(cctx, h->pkcs8->buf + n, &m) == 1, KBR_ERR_HSM);
    h->pkcs8->len = (size_t)(n + m);
out:
    EVP_CIPHER_CTX_free(cctx);
    OPENSSL_cleanse(wrapped, sizeof(wrapped));
    return err;
}

static void put_bstr32(unsigned char *p, unsigned char key, const unsigned char v[32])
{
    p[0] = key;
    p[1] = 0x58; /* byte string, one-byte length */
    p[2] = 32;
    memcpy(p + 3, v, 32);
}

/*
 * The COSE_Key of the private key the token exported, after checking it is the key whose
 * public key the token holds.  Deterministic CBOR (RFC 8949 4.2.1): keys 1, 2, -1 .. -4.
 */
static kbr_err plaintext(held *h)
{
    kbr_err err = KBR_OK;
    const unsigned char *p = h->pkcs8->buf;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)h->pkcs8->len);
    EVP_PKEY *pkey = p8 != NULL ? EVP_PKCS82PKEY(p8) : NULL;
    BIGNUM *d = NULL;
    unsigned char pub[POINT_LEN], spki[sizeof(spki_p256_prefix) + POINT_LEN], kid[32];
    size_t publen = 0;
    unsigned char *q;

    KBR_ENSURE(pkey != NULL && EVP_PKEY_is_a(pkey, "EC"), KBR_ERR_HSM_KEY);
    KBR_ENSURE(EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub),
                                               &publen) == 1 &&
                   publen == POINT_LEN && memcmp(pub, h->point, POINT_LEN) == 0,
               KBR_ERR_HSM_KEY);
    KBR_ENSURE(EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1, KBR_ERR_HSM_KEY);
    memcpy(spki, spki_p256_prefix, sizeof(spki_p256_prefix));
    memcpy(spki + sizeof(spki_p256_prefix), h->point, POINT_LEN);
    kbr_sha256(spki, sizeof(spki), kid);
    KBR_GUARD(secret_zero(KBR_HSM_DELIVERY_PLAIN_LEN, &h->plain));
    q = h->plain->buf;
    q[0] = 0xa6;              /* a map of 6 */
    q[1] = 0x01, q[2] = 0x02; /* kty: EC2 */
    q += 3;
    put_bstr32(q, 0x02, kid); /* kid */
    q += 35;
    q[0] = 0x20, q[1] = 0x01; /* crv: P-256 */
    q += 2;
    put_bstr32(q, 0x21, h->point + 1);
    q += 35;
    put_bstr32(q, 0x22, h->point + 33);
    q += 35;
    q[0] = 0x23, q[1] = 0x58, q[2] = 32; /* d */
    KBR_ENSURE(BN_bn2binpad(d, q + 3, 32) == 32, KBR_ERR_HSM_KEY);
    q += 35;
    KBR_ENSURE(q == h->plain->buf + KBR_HSM_DELIVERY_PLAIN_LEN, KBR_ERR_INTERNAL);
out:
    BN_clear_free(d);
    EVP_PKEY_free(pkey);
    PKCS8_PRIV_KEY_INFO_free(p8);
    return err;
}

static kbr_err seal(const kbr_hsm_delivery_req *req, held *h)
{
    kbr_err err = KBR_OK;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;

    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    /* recipient: the CEK under the KEK (A128KW, RFC 3394's default IV) */
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    KBR_ENSURE(EVP_EncryptInit_ex(c, EVP_aes_128_wrap(), NULL, h->kek->buf, NULL) == 1 &&
                   EVP_EncryptUpdate(c, h->d.wrapped_cek, &n, h->cek->buf, CEK_LEN) == 1 &&
                   EVP_EncryptFinal_ex(c, h->d.wrapped_cek + n, &m) == 1 &&
                   n + m == (int)sizeof(h->d.wrapped_cek),
               KBR_ERR_CRYPTO);
    /* content: the COSE_Key under the CEK (A128GCM), the Enc_structure as additional data */
    EVP_CIPHER_CTX_reset(c);
    KBR_ENSURE(
        EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, h->cek->buf, h->d.iv) == 1 &&
            EVP_EncryptUpdate(c, NULL, &n, req->enc_structure, (int)req->enc_structure_len) == 1 &&
            EVP_EncryptUpdate(c, h->d.ciphertext, &n, h->plain->buf, KBR_HSM_DELIVERY_PLAIN_LEN) ==
                1 &&
            n == KBR_HSM_DELIVERY_PLAIN_LEN &&
            EVP_EncryptFinal_ex(c, h->d.ciphertext + n, &m) == 1 && m == 0 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
                                h->d.ciphertext + KBR_HSM_DELIVERY_PLAIN_LEN) == 1,
        KBR_ERR_CRYPTO);
out:
    EVP_CIPHER_CTX_free(c);
    return err;
}

static kbr_err deliver_attempt(kbr_hsm_session *s, void *ctx)
{
    kbr_err err = KBR_OK;
    deliver_ctx *c = ctx;
    held h;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;

    memset(&h, 0, sizeof(h));
    h.eph_pub = h.eph_priv = h.z = h.once = CK_INVALID_HANDLE;
    KBR_GUARD(recipient_check(c->req->recipient));
    KBR_GUARD(kbr_p11_find_one(s, CKO_PRIVATE_KEY, c->label, &key));
    KBR_GUARD(check_deliverable(s, key));
    KBR_GUARD(kbr_p11_find_one(s, CKO_PUBLIC_KEY, c->label, &pub));
    KBR_GUARD(read_point(s, pub, h.point));
    KBR_GUARD(ephemeral(s, &h));
    KBR_GUARD(shared_secret(s, c->req->recipient, &h));
    KBR_GUARD(kek_derive(c->req, &h));
    KBR_GUARD(secret_zero(CEK_LEN, &h.cek));
    KBR_GUARD(random_from_token(s, h.cek->buf, CEK_LEN));
    KBR_GUARD(random_from_token(s, h.d.iv, IV_LEN));
    KBR_GUARD(export_wrapped(s, key, &h));
    KBR_GUARD(plaintext(&h));
    KBR_GUARD(seal(c->req, &h));
    *c->out = h.d;
out:
    held_release(s, &h);
    return err;
}

kbr_err kbr_p11_deliver(kbr_hsm_session *s, const char *label, const kbr_hsm_delivery_req *req,
                        kbr_hsm_delivery *out)
{
    deliver_ctx c = {label, req, out};

    return kbr_p11_with_retry(s, deliver_attempt, &c);
}
