/*
 * sign.c - signing with a key on the token: ECDSA (raw r||s or DER),
 * Ed25519, RSA-PSS and RSA PKCS#1 v1.5.
 *
 * Hashing is the caller's: ECDSA and RSA sign a digest handed in, so the
 * request carries the digest the audit log records.  Ed25519 is pure EdDSA
 * and signs the message itself.  Requests that cannot fit the key are
 * refused before the HSM sees them.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hsm_int.h"

/* DER DigestInfo headers (RFC 8017 section 9.2, note 1). */
static const unsigned char di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x01, 0x05, 0x00, 0x04, 0x20};
static const unsigned char di_sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x02, 0x05, 0x00, 0x04, 0x30};

#define DIGESTINFO_MAX (sizeof(di_sha384) + 48)

typedef struct {
    const char *label;
    kbr_sig_format fmt;
    kbr_hash hash;
    const unsigned char *in;
    size_t inlen;
    unsigned char *sig;
    size_t siglen;
} sign_ctx;

/* Largest signature the algorithm makes; raw ECDSA is exactly this long. */
static size_t sig_max(kbr_alg alg)
{
    switch (alg) {
    case KBR_ALG_ECDSA_P256:
    case KBR_ALG_ED25519:
        return 64;
    case KBR_ALG_ECDSA_P384:
        return 96;
    case KBR_ALG_RSA_3072:
        return 384;
    default:
        return 512;
    }
}

static size_t hash_len(kbr_hash hash)
{
    return hash == KBR_HASH_SHA256 ? 32 : hash == KBR_HASH_SHA384 ? 48 : 0;
}

static kbr_err request_check(const sign_ctx *c)
{
    if ((unsigned)c->fmt > KBR_SIG_RSA_PKCS1 || (unsigned)c->hash > KBR_HASH_SHA384)
        return KBR_ERR_BAD_REQUEST;
    if (c->in == NULL && c->inlen > 0)
        return KBR_ERR_BAD_REQUEST;
    if (c->fmt == KBR_SIG_EDDSA)
        return c->hash == KBR_HASH_NONE ? KBR_OK : KBR_ERR_BAD_REQUEST;
    if (c->hash == KBR_HASH_NONE || c->inlen != hash_len(c->hash))
        return KBR_ERR_BAD_REQUEST;
    return KBR_OK;
}

static bool format_fits(kbr_sig_format fmt, kbr_alg alg)
{
    switch (fmt) {
    case KBR_SIG_ECDSA_RAW:
    case KBR_SIG_ECDSA_DER:
        return alg == KBR_ALG_ECDSA_P256 || alg == KBR_ALG_ECDSA_P384;
    case KBR_SIG_EDDSA:
        return alg == KBR_ALG_ED25519;
    default:
        return alg == KBR_ALG_RSA_3072 || alg == KBR_ALG_RSA_4096;
    }
}

/* The mechanism and the bytes the HSM signs for this request. */
typedef struct {
    CK_MECHANISM mech;
    CK_RSA_PKCS_PSS_PARAMS pss;
    unsigned char digestinfo[DIGESTINFO_MAX];
    const unsigned char *data;
    size_t len;
} sign_input;

static void input_rsa(const sign_ctx *c, sign_input *si)
{
    bool sha256 = c->hash == KBR_HASH_SHA256;
    const unsigned char *di = sha256 ? di_sha256 : di_sha384;
    size_t dilen = sha256 ? sizeof(di_sha256) : sizeof(di_sha384);

    if (c->fmt == KBR_SIG_RSA_PSS) {
        si->pss.hashAlg = sha256 ? CKM_SHA256 : CKM_SHA384;
        si->pss.mgf = sha256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA384;
        si->pss.sLen = c->inlen;
        si->mech.mechanism = CKM_RSA_PKCS_PSS;
        si->mech.pParameter = &si->pss;
        si->mech.ulParameterLen = sizeof(si->pss);
        return;
    }
    memcpy(si->digestinfo, di, dilen);
    memcpy(si->digestinfo + dilen, c->in, c->inlen);
    si->mech.mechanism = CKM_RSA_PKCS;
    si->data = si->digestinfo;
    si->len = dilen + c->inlen;
}

static void input_build(const sign_ctx *c, sign_input *si)
{
    /* Some modules refuse a NULL buffer even for an empty message. */
    static const unsigned char empty[1] = {0};

    memset(si, 0, sizeof(*si));
    si->data = c->in != NULL ? c->in : empty;
    si->len = c->inlen;
    if (c->fmt == KBR_SIG_ECDSA_RAW || c->fmt == KBR_SIG_ECDSA_DER)
        si->mech.mechanism = CKM_ECDSA;
    else if (c->fmt == KBR_SIG_EDDSA)
        si->mech.mechanism = CKM_EDDSA;
    else
        input_rsa(c, si);
}

/* Raw ECDSA must be exactly r||s; DER is made from it. */
static kbr_err sig_finish(sign_ctx *c, kbr_alg alg, unsigned char *buf, size_t len)
{
    bool ecdsa = c->fmt == KBR_SIG_ECDSA_RAW || c->fmt == KBR_SIG_ECDSA_DER;

    if (ecdsa && len != sig_max(alg))
        return KBR_ERR_HSM;
    if (c->fmt == KBR_SIG_ECDSA_DER)
        return kbr_ecdsa_raw_to_der(buf, len, &c->sig, &c->siglen);
    c->sig = malloc(len);
    if (c->sig == NULL)
        return KBR_ERR_NOMEM;
    memcpy(c->sig, buf, len);
    c->siglen = len;
    return KBR_OK;
}

static kbr_err sign_with(kbr_hsm_session *s, CK_OBJECT_HANDLE key, kbr_alg alg, sign_ctx *c)
{
    kbr_err err = KBR_OK;
    CK_FUNCTION_LIST *f = s->hsm->f;
    sign_input si;
    unsigned char buf[512];
    CK_ULONG len = sig_max(alg);

    input_build(c, &si);
    KBR_GUARD(kbr_hsm_err_from_rv(f->C_SignInit(s->h, &si.mech, key)));
    KBR_GUARD(kbr_hsm_err_from_rv(f->C_Sign(s->h, (CK_BYTE *)si.data, si.len, buf, &len)));
    KBR_GUARD(sig_finish(c, alg, buf, len));
out:
    OPENSSL_cleanse(si.digestinfo, sizeof(si.digestinfo));
    return err;
}

static kbr_err sign_attempt(kbr_hsm_session *s, void *ctx)
{
    kbr_err err = KBR_OK;
    sign_ctx *c = ctx;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    kbr_alg alg = KBR_ALG_ECDSA_P256;
    bool cached = false;

    KBR_GUARD(kbr_p11_signing_key(s, c->label, &key, &alg, &cached));
    KBR_ENSURE(format_fits(c->fmt, alg), KBR_ERR_BAD_REQUEST);
    err = sign_with(s, key, alg, c);
    if (err != KBR_ERR_HSM_KEY || !cached)
        goto out;
    /* The cached handle went stale (key deleted or token restored): look it up once more. */
    kbr_p11_cache_drop(s, c->label);
    KBR_GUARD(kbr_p11_signing_key(s, c->label, &key, &alg, &cached));
    KBR_ENSURE(format_fits(c->fmt, alg), KBR_ERR_BAD_REQUEST);
    err = sign_with(s, key, alg, c);
out:
    return err;
}

kbr_err kbr_p11_sign(kbr_hsm_session *s, const char *label, kbr_sig_format fmt, kbr_hash hash,
                     const unsigned char *in, size_t inlen, unsigned char **sig, size_t *siglen)
{
    kbr_err err = KBR_OK;
    sign_ctx c = {label, fmt, hash, in, inlen, NULL, 0};

    KBR_ENSURE(sig != NULL && siglen != NULL, KBR_ERR_INTERNAL);
    *sig = NULL;
    *siglen = 0;
    KBR_ENSURE(s != NULL, KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_p11_label_check(label));
    KBR_GUARD(request_check(&c));
    KBR_GUARD(kbr_p11_with_retry(s, sign_attempt, &c));
    *sig = c.sig;
    *siglen = c.siglen;
out:
    return err;
}
