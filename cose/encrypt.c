/*
 * encrypt.c - the COSE_Encrypt that carries a key delivered to a device (kbr_cose.h).
 *
 * The headers are fixed by the algorithms, so they are constants here, written once in
 * deterministic CBOR; the COSE_KDF_Context and the Enc_structure the HSM binds into the two
 * layers are built from the same constants.  The variable parts (ephemeral key, wrapped
 * CEK, IV, ciphertext, kid) are byte strings of fixed or bounded length written with
 * libcbor's head encoders, which always choose the shortest head.
 */
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "cose_int.h"

/* {1: 1 (A128GCM), 3: 101 (application/cose-key)} */
static const unsigned char content_protected[] = {0xa2, 0x01, 0x01, 0x03, 0x18, 0x65};
/* {1: -29 (ECDH-ES + A128KW)} */
static const unsigned char recipient_protected[] = {0xa1, 0x01, 0x38, 0x1c};
/* [-3 (A128KW), [nil, nil, nil], [nil, nil, nil], [128, h'A101381C']] */
static const unsigned char kdf_context[] = {0x84, 0x22, 0x83, 0xf6, 0xf6, 0xf6, 0x83, 0xf6, 0xf6,
                                            0xf6, 0x82, 0x18, 0x80, 0x44, 0xa1, 0x01, 0x38, 0x1c};
/* ["Encrypt", h'A20101031865', h''] */
static const unsigned char enc_structure[] = {0x83, 0x67, 'E',  'n',  'c',  'r',  'y',  'p', 't',
                                              0x46, 0xa2, 0x01, 0x01, 0x03, 0x18, 0x65, 0x40};

void kbr_cose_encrypt_contexts(const unsigned char **kdf, size_t *kdf_len,
                               const unsigned char **enc, size_t *enc_len)
{
    *kdf = kdf_context;
    *kdf_len = sizeof(kdf_context);
    *enc = enc_structure;
    *enc_len = sizeof(enc_structure);
}

typedef struct {
    unsigned char buf[512];
    size_t len;
    bool overrun;
} wbuf;

static void w_head(wbuf *w, size_t n)
{
    if (n == 0)
        w->overrun = true;
    w->len += n;
}

static void w_raw(wbuf *w, const unsigned char *p, size_t n)
{
    if (w->overrun || sizeof(w->buf) - w->len < n) {
        w->overrun = true;
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void w_bstr(wbuf *w, const unsigned char *p, size_t n)
{
    w_head(w, cbor_encode_bytestring_start(n, w->buf + w->len, sizeof(w->buf) - w->len));
    w_raw(w, p, n);
}

kbr_err kbr_cose_encrypt(const kbr_hsm_delivery *d, const unsigned char *kid, size_t kidlen,
                         unsigned char **out, size_t *outlen)
{
    static const unsigned char head[] = {0xd8, KBR_COSE_ENCRYPT_TAG, 0x84};
    static const unsigned char unprotected_iv[] = {0xa1, 0x05};
    /* one recipient of three items; its unprotected map of two, the kid first (4 < -1) */
    static const unsigned char recipient_head[] = {0x81, 0x83};
    static const unsigned char ephemeral_head[] = {0x20, 0xa4, 0x01, 0x02, 0x20, 0x01, 0x21};
    wbuf w = {.len = 0, .overrun = false};

    *out = NULL;
    *outlen = 0;
    if (d == NULL || kid == NULL || kidlen == 0 || kidlen > 64 || d->ephemeral[0] != 0x04)
        return KBR_ERR_BAD_REQUEST;
    w_raw(&w, head, sizeof(head));
    w_bstr(&w, content_protected, sizeof(content_protected));
    w_raw(&w, unprotected_iv, sizeof(unprotected_iv));
    w_bstr(&w, d->iv, sizeof(d->iv));
    w_bstr(&w, d->ciphertext, sizeof(d->ciphertext));
    w_raw(&w, recipient_head, sizeof(recipient_head));
    w_bstr(&w, recipient_protected, sizeof(recipient_protected));
    w_raw(&w, (const unsigned char *)"\xa2\x04", 2);
    w_bstr(&w, kid, kidlen);
    w_raw(&w, ephemeral_head, sizeof(ephemeral_head));
    w_bstr(&w, d->ephemeral + 1, 32);
    w_raw(&w, (const unsigned char *)"\x22", 1);
    w_bstr(&w, d->ephemeral + 33, 32);
    w_bstr(&w, d->wrapped_cek, sizeof(d->wrapped_cek));
    if (w.overrun)
        return KBR_ERR_INTERNAL;
    *out = malloc(w.len);
    if (*out == NULL)
        return KBR_ERR_NOMEM;
    memcpy(*out, w.buf, w.len);
    *outlen = w.len;
    return KBR_OK;
}
