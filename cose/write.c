/*
 * write.c - writing COSE_Sign1 and its parts.
 *
 * Items are written with libcbor's head encoders straight into one buffer
 * sized up front: cbor_encode_*() always choose the shortest head and only
 * definite lengths are ever started here, so the output is deterministic
 * (RFC 8949 section 4.2.1) by construction, and the payload is copied once.
 */
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "cose_int.h"

#define SIG1_CONTEXT   "Signature1"
#define COSE_LABEL_ALG 1
#define COSE_LABEL_KID 4

/* Room for every head and the context string of the largest item written here. */
#define W_SLACK (8 * COSE_HEAD_MAX + sizeof(SIG1_CONTEXT))

typedef struct {
    unsigned char *buf;
    size_t cap, len;
    bool overrun; /* an encoder found no room: the size estimate is wrong */
} wbuf;

static bool size_add(size_t a, size_t b, size_t *out)
{
    if (a > SIZE_MAX - b)
        return false;
    *out = a + b;
    return true;
}

static kbr_err w_new(wbuf *w, size_t datalen)
{
    size_t cap = 0;

    if (!size_add(datalen, W_SLACK, &cap))
        return KBR_ERR_TOO_LARGE;
    w->buf = malloc(cap);
    if (w->buf == NULL)
        return KBR_ERR_NOMEM;
    w->cap = cap;
    w->len = 0;
    w->overrun = false;
    return KBR_OK;
}

/* Advances by what an encoder wrote; libcbor encoders return 0 when out of room. */
static void w_advance(wbuf *w, size_t n)
{
    if (n == 0)
        w->overrun = true;
    w->len += n;
}

static void w_uint(wbuf *w, uint64_t v)
{
    w_advance(w, cbor_encode_uint(v, w->buf + w->len, w->cap - w->len));
}

/* Writes the integer -1 - v, the way CBOR stores negative integers. */
static void w_negint(wbuf *w, uint64_t v)
{
    w_advance(w, cbor_encode_negint(v, w->buf + w->len, w->cap - w->len));
}

static void w_array(wbuf *w, size_t n)
{
    w_advance(w, cbor_encode_array_start(n, w->buf + w->len, w->cap - w->len));
}

static void w_map(wbuf *w, size_t n)
{
    w_advance(w, cbor_encode_map_start(n, w->buf + w->len, w->cap - w->len));
}

static void w_tag(wbuf *w, uint64_t v)
{
    w_advance(w, cbor_encode_tag(v, w->buf + w->len, w->cap - w->len));
}

static void w_null(wbuf *w)
{
    w_advance(w, cbor_encode_null(w->buf + w->len, w->cap - w->len));
}

static void w_data(wbuf *w, size_t head, const void *data, size_t n)
{
    w_advance(w, head);
    if (w->overrun || w->cap - w->len < n) {
        w->overrun = true;
        return;
    }
    if (n > 0)
        memcpy(w->buf + w->len, data, n);
    w->len += n;
}

static void w_bstr(wbuf *w, const unsigned char *data, size_t n)
{
    w_data(w, cbor_encode_bytestring_start(n, w->buf + w->len, w->cap - w->len), data, n);
}

static void w_tstr(wbuf *w, const char *s)
{
    size_t n = strlen(s);

    w_data(w, cbor_encode_string_start(n, w->buf + w->len, w->cap - w->len), s, n);
}

/* Hands the buffer over; an overrun is a sizing bug, never the caller's input. */
static kbr_err w_take(wbuf *w, unsigned char **out, size_t *outlen)
{
    if (w->overrun)
        return KBR_ERR_INTERNAL;
    *out = w->buf;
    *outlen = w->len;
    w->buf = NULL;
    return KBR_OK;
}

bool cose_alg_known(int64_t v)
{
    return v == KBR_COSE_ES256 || v == KBR_COSE_ES384 || v == KBR_COSE_EDDSA;
}

kbr_err kbr_cose_alg_for(kbr_alg alg, kbr_cose_alg *out, kbr_msg *msg)
{
    switch (alg) {
    case KBR_ALG_ECDSA_P256:
        *out = KBR_COSE_ES256;
        return KBR_OK;
    case KBR_ALG_ECDSA_P384:
        *out = KBR_COSE_ES384;
        return KBR_OK;
    case KBR_ALG_ED25519:
        *out = KBR_COSE_EDDSA;
        return KBR_OK;
    default:
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "format: cose_sign1 takes ecdsa-p256, ecdsa-p384 or ed25519 keys");
    }
}

kbr_hash kbr_cose_hash(kbr_cose_alg alg)
{
    switch (alg) {
    case KBR_COSE_ES256:
        return KBR_HASH_SHA256;
    case KBR_COSE_ES384:
        return KBR_HASH_SHA384;
    default:
        return KBR_HASH_NONE;
    }
}

size_t kbr_cose_sig_len(kbr_cose_alg alg)
{
    switch (alg) {
    case KBR_COSE_ES256:
    case KBR_COSE_EDDSA:
        return 64;
    case KBR_COSE_ES384:
        return 96;
    default:
        return 0;
    }
}

kbr_err kbr_cose_protected(kbr_cose_alg alg, const unsigned char *kid, size_t kidlen,
                           unsigned char **out, size_t *outlen)
{
    kbr_err err = KBR_OK;
    wbuf w = {0};

    *out = NULL;
    *outlen = 0;
    KBR_ENSURE(cose_alg_known(alg), KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(kid != NULL || kidlen == 0, KBR_ERR_INTERNAL);
    KBR_GUARD(w_new(&w, kidlen));
    /* labels in ascending order, as deterministic encoding sorts map keys */
    w_map(&w, kidlen > 0 ? 2 : 1);
    w_uint(&w, COSE_LABEL_ALG);
    w_negint(&w, (uint64_t)(-1 - (int64_t)alg));
    if (kidlen > 0) {
        w_uint(&w, COSE_LABEL_KID);
        w_bstr(&w, kid, kidlen);
    }
    KBR_GUARD(w_take(&w, out, outlen));
out:
    free(w.buf);
    return err;
}

kbr_err kbr_cose_sig_structure(const unsigned char *prot, size_t protlen, const unsigned char *aad,
                               size_t aadlen, const unsigned char *payload, size_t paylen,
                               unsigned char **out, size_t *outlen)
{
    kbr_err err = KBR_OK;
    wbuf w = {0};
    size_t n = 0;

    *out = NULL;
    *outlen = 0;
    KBR_ENSURE(size_add(protlen, aadlen, &n) && size_add(n, paylen, &n), KBR_ERR_TOO_LARGE);
    KBR_GUARD(w_new(&w, n));
    w_array(&w, 4);
    w_tstr(&w, SIG1_CONTEXT);
    w_bstr(&w, prot, protlen);
    w_bstr(&w, aad, aadlen);
    w_bstr(&w, payload, paylen);
    KBR_GUARD(w_take(&w, out, outlen));
out:
    free(w.buf);
    return err;
}

kbr_err kbr_cose_sign1(const unsigned char *prot, size_t protlen, const unsigned char *sig,
                       size_t siglen, bool tagged, unsigned char **out, size_t *outlen)
{
    kbr_err err = KBR_OK;
    wbuf w = {0};
    kbr_cose_alg alg = KBR_COSE_ES256;
    const unsigned char *kid = NULL;
    size_t kidlen = 0, n = 0;

    *out = NULL;
    *outlen = 0;
    /* the header is read back so a signature can never sit under another alg's header */
    KBR_GUARD(cose_protected_read(prot, protlen, &alg, &kid, &kidlen, NULL));
    KBR_ENSURE(siglen == kbr_cose_sig_len(alg), KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(size_add(protlen, siglen, &n), KBR_ERR_TOO_LARGE);
    KBR_GUARD(w_new(&w, n));
    if (tagged)
        w_tag(&w, KBR_COSE_SIGN1_TAG);
    w_array(&w, 4);
    w_bstr(&w, prot, protlen);
    w_map(&w, 0);
    w_null(&w);
    w_bstr(&w, sig, siglen);
    KBR_GUARD(w_take(&w, out, outlen));
out:
    free(w.buf);
    return err;
}

/* ECDSA signs the Sig_structure's digest, EdDSA the Sig_structure itself. */
static kbr_err sign_tbs(kbr_cose_alg alg, const unsigned char *tbs, size_t tbslen,
                        kbr_cose_sign_fn sign, void *arg, unsigned char **sig, size_t *siglen)
{
    kbr_hash hash = kbr_cose_hash(alg);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (hash == KBR_HASH_NONE)
        return sign(arg, KBR_SIG_EDDSA, KBR_HASH_NONE, tbs, tbslen, sig, siglen);
    if (EVP_Digest(tbs, tbslen, md, &mdlen, hash == KBR_HASH_SHA256 ? EVP_sha256() : EVP_sha384(),
                   NULL) != 1) {
        ERR_clear_error();
        return KBR_ERR_CRYPTO;
    }
    return sign(arg, KBR_SIG_ECDSA_RAW, hash, md, mdlen, sig, siglen);
}

kbr_err kbr_cose_sign1_make(kbr_cose_alg alg, const unsigned char *kid, size_t kidlen,
                            const unsigned char *aad, size_t aadlen, const unsigned char *payload,
                            size_t paylen, bool tagged, kbr_cose_sign_fn sign, void *arg,
                            unsigned char **out, size_t *outlen)
{
    kbr_err err = KBR_OK;
    unsigned char *prot = NULL, *tbs = NULL, *sig = NULL;
    size_t protlen = 0, tbslen = 0, siglen = 0;

    *out = NULL;
    *outlen = 0;
    KBR_GUARD(kbr_cose_protected(alg, kid, kidlen, &prot, &protlen));
    KBR_GUARD(kbr_cose_sig_structure(prot, protlen, aad, aadlen, payload, paylen, &tbs, &tbslen));
    KBR_GUARD(sign_tbs(alg, tbs, tbslen, sign, arg, &sig, &siglen));
    KBR_ENSURE(sig != NULL && siglen == kbr_cose_sig_len(alg), KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_cose_sign1(prot, protlen, sig, siglen, tagged, out, outlen));
out:
    free(prot);
    free(tbs);
    free(sig);
    return err;
}
