/*
 * wire.c - the frames between the network process and the HSM process
 * (layout in wire.h), and the control channel's records.
 *
 * The decoder is the HSM process's whole attack surface towards the network
 * process, so it is small, reads through one bounds-checked cursor and takes
 * nothing on trust: every length is checked against its field's bound
 * before anything is copied.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire.h"

/* ---- buffers ---- */

void kbr_hsmw_buf_free(kbr_hsmw_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static kbr_err buf_reserve(kbr_hsmw_buf *b, size_t more)
{
    size_t cap = b->cap > 0 ? b->cap : 256;
    unsigned char *p;

    if (b->len + more <= b->cap)
        return KBR_OK;
    while (cap < b->len + more)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        return KBR_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return KBR_OK;
}

static kbr_err put(kbr_hsmw_buf *b, const void *data, size_t n)
{
    kbr_err err = buf_reserve(b, n);

    if (err == KBR_OK && n > 0) {
        memcpy(b->p + b->len, data, n);
        b->len += n;
    }
    return err;
}

static kbr_err put_u8(kbr_hsmw_buf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;

    return put(b, &c, 1);
}

static void be_store(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

static kbr_err put_be(kbr_hsmw_buf *b, uint64_t v, size_t n)
{
    unsigned char tmp[4];

    be_store(tmp, v, n);
    return put(b, tmp, n);
}

/* A string field of at most max bytes behind a one-byte length. */
static kbr_err put_str(kbr_hsmw_buf *b, const char *s, size_t min, size_t max)
{
    size_t n = strnlen(s, max + 1);

    if (n < min || n > max)
        return KBR_ERR_BAD_REQUEST;
    if (put_u8(b, (unsigned)n) != KBR_OK)
        return KBR_ERR_NOMEM;
    return put(b, s, n);
}

/* Bytes of min..max behind a lenlen-byte length. */
static kbr_err put_bytes(kbr_hsmw_buf *b, const unsigned char *p, size_t n, size_t lenlen,
                         size_t min, size_t max)
{
    if (n < min || n > max || (p == NULL && n > 0))
        return KBR_ERR_BAD_REQUEST;
    if (put_be(b, n, lenlen) != KBR_OK)
        return KBR_ERR_NOMEM;
    return put(b, p, n);
}

/* The length prefix is written last, once the body is known. */
static kbr_err frame_begin(kbr_hsmw_buf *b)
{
    b->len = 0;
    return put_be(b, 0, 4);
}

static void frame_end(kbr_hsmw_buf *b)
{
    be_store(b->p, b->len - 4, 4);
}

/* ---- reading ---- */

typedef struct {
    const unsigned char *p;
    size_t n, off;
} cursor;

static kbr_err get(cursor *c, size_t n, const unsigned char **out)
{
    if (n > c->n - c->off)
        return KBR_ERR_BAD_REQUEST;
    *out = c->p + c->off;
    c->off += n;
    return KBR_OK;
}

static kbr_err get_be(cursor *c, size_t n, uint64_t *v)
{
    const unsigned char *p = NULL;
    kbr_err err = get(c, n, &p);

    *v = 0;
    for (size_t i = 0; err == KBR_OK && i < n; i++)
        *v = (*v << 8) | p[i];
    return err;
}

/* A byte that must be below end. */
static kbr_err get_enum(cursor *c, unsigned end, unsigned *v)
{
    uint64_t x = 0;

    if (get_be(c, 1, &x) != KBR_OK || x >= end)
        return KBR_ERR_BAD_REQUEST;
    *v = (unsigned)x;
    return KBR_OK;
}

/* A string of min..max bytes without NUL into out (max + 1 bytes). */
static kbr_err get_str(cursor *c, size_t min, size_t max, char *out)
{
    uint64_t n = 0;
    const unsigned char *p = NULL;

    if (get_be(c, 1, &n) != KBR_OK || n < min || n > max || get(c, (size_t)n, &p) != KBR_OK ||
        memchr(p, '\0', (size_t)n) != NULL)
        return KBR_ERR_BAD_REQUEST;
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    return KBR_OK;
}

static kbr_err get_bytes(cursor *c, size_t lenlen, size_t min, size_t max, const unsigned char **p,
                         size_t *n)
{
    uint64_t len = 0;

    if (get_be(c, lenlen, &len) != KBR_OK || len < min || len > max ||
        get(c, (size_t)len, p) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    *n = (size_t)len;
    return KBR_OK;
}

static kbr_err get_end(const cursor *c)
{
    return c->off == c->n ? KBR_OK : KBR_ERR_BAD_REQUEST;
}

/* ---- key info ---- */

#define INFO_CLASS_MAX (sizeof(((kbr_hsm_key_info *)0)->class_name) - 1)
#define INFO_TYPE_MAX  (sizeof(((kbr_hsm_key_info *)0)->key_type) - 1)
#define INFO_ID_MAX    (sizeof(((kbr_hsm_key_info *)0)->id_hex) - 1)

static unsigned flags_of(const kbr_hsm_key_info *i)
{
    return (unsigned)i->sensitive | (unsigned)i->extractable << 1 |
           (unsigned)i->always_sensitive << 2 | (unsigned)i->never_extractable << 3 |
           (unsigned)i->local << 4 | (unsigned)i->token << 5 | (unsigned)i->private_obj << 6 |
           (unsigned)i->can_sign << 7;
}

static void flags_to(unsigned f, kbr_hsm_key_info *i)
{
    i->sensitive = f & 1;
    i->extractable = f >> 1 & 1;
    i->always_sensitive = f >> 2 & 1;
    i->never_extractable = f >> 3 & 1;
    i->local = f >> 4 & 1;
    i->token = f >> 5 & 1;
    i->private_obj = f >> 6 & 1;
    i->can_sign = f >> 7 & 1;
}

/* CKA_ID as the HSM side shows it: whole bytes in lowercase hex. */
static bool id_hex_ok(const char *s)
{
    size_t n = strlen(s);

    return n % 2 == 0 && strspn(s, "0123456789abcdef") == n;
}

static kbr_err put_info(kbr_hsmw_buf *b, const kbr_hsm_key_info *i)
{
    kbr_err err = KBR_OK;

    KBR_ENSURE((unsigned)i->alg < KBR_ALG__COUNT && id_hex_ok(i->id_hex), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(put_str(b, i->label, 0, KBR_HSM_LABEL_MAX - 1));
    KBR_GUARD(put_str(b, i->id_hex, 0, INFO_ID_MAX));
    KBR_GUARD(put_str(b, i->class_name, 0, INFO_CLASS_MAX));
    KBR_GUARD(put_str(b, i->key_type, 0, INFO_TYPE_MAX));
    KBR_GUARD(put_u8(b, i->alg_known ? 1 : 0));
    KBR_GUARD(put_u8(b, (unsigned)i->alg));
    KBR_GUARD(put_u8(b, flags_of(i)));
out:
    return err;
}

static kbr_err get_info(cursor *c, kbr_hsm_key_info *i)
{
    kbr_err err = KBR_OK;
    unsigned known = 0, alg = 0, flags = 0;

    memset(i, 0, sizeof(*i));
    KBR_GUARD(get_str(c, 0, KBR_HSM_LABEL_MAX - 1, i->label));
    KBR_GUARD(get_str(c, 0, INFO_ID_MAX, i->id_hex));
    KBR_ENSURE(id_hex_ok(i->id_hex), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(get_str(c, 0, INFO_CLASS_MAX, i->class_name));
    KBR_GUARD(get_str(c, 0, INFO_TYPE_MAX, i->key_type));
    KBR_GUARD(get_enum(c, 2, &known));
    KBR_GUARD(get_enum(c, KBR_ALG__COUNT, &alg));
    KBR_GUARD(get_enum(c, 256, &flags));
    i->alg_known = known == 1;
    i->alg = (kbr_alg)alg;
    flags_to(flags, i);
out:
    return err;
}

/* ---- requests ---- */

static bool has_label(kbr_hsmw_type t)
{
    return t == KBR_HSMW_GENERATE || t == KBR_HSMW_FIND_KEY || t == KBR_HSMW_PUBLIC_KEY ||
           t == KBR_HSMW_SIGN || t == KBR_HSMW_GENERATE_DELIVERABLE || t == KBR_HSMW_DELIVER ||
           t == KBR_HSMW_DATA_GET || t == KBR_HSMW_DATA_PUT;
}

/* ---- keys delivered to devices: DELIVER's fields ---- */

#define DELIVER_POINT 65

static kbr_err deliver_req_encode(const kbr_hsmw_req *r, kbr_hsmw_buf *b)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(put_bytes(b, r->recipient, r->recipient != NULL ? DELIVER_POINT : 0, 1, DELIVER_POINT,
                        DELIVER_POINT));
    KBR_GUARD(put_bytes(b, r->kdf_context, r->kdf_context_len, 2, 1, KBR_HSM_DELIVERY_CONTEXT_MAX));
    KBR_GUARD(
        put_bytes(b, r->enc_structure, r->enc_structure_len, 2, 1, KBR_HSM_DELIVERY_CONTEXT_MAX));
out:
    return err;
}

static kbr_err deliver_req_decode(cursor *c, kbr_hsmw_req *out)
{
    kbr_err err = KBR_OK;
    size_t n = 0;

    KBR_GUARD(get_bytes(c, 1, DELIVER_POINT, DELIVER_POINT, &out->recipient, &n));
    KBR_GUARD(
        get_bytes(c, 2, 1, KBR_HSM_DELIVERY_CONTEXT_MAX, &out->kdf_context, &out->kdf_context_len));
    KBR_GUARD(get_bytes(c, 2, 1, KBR_HSM_DELIVERY_CONTEXT_MAX, &out->enc_structure,
                        &out->enc_structure_len));
out:
    return err;
}

static kbr_err deliver_resp_encode(const kbr_hsm_delivery *d, kbr_hsmw_buf *b)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(put_bytes(b, d->ephemeral, sizeof(d->ephemeral), 1, sizeof(d->ephemeral),
                        sizeof(d->ephemeral)));
    KBR_GUARD(put_bytes(b, d->wrapped_cek, sizeof(d->wrapped_cek), 1, sizeof(d->wrapped_cek),
                        sizeof(d->wrapped_cek)));
    KBR_GUARD(put_bytes(b, d->iv, sizeof(d->iv), 1, sizeof(d->iv), sizeof(d->iv)));
    KBR_GUARD(put_bytes(b, d->ciphertext, sizeof(d->ciphertext), 2, sizeof(d->ciphertext),
                        sizeof(d->ciphertext)));
out:
    return err;
}

/* A field of exactly sizeof(dst) bytes behind a lenlen-byte length, copied into dst. */
static kbr_err get_fixed(cursor *c, size_t lenlen, unsigned char *dst, size_t n)
{
    const unsigned char *p = NULL;
    size_t got = 0;

    if (get_bytes(c, lenlen, n, n, &p, &got) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    memcpy(dst, p, n);
    return KBR_OK;
}

static kbr_err deliver_resp_decode(cursor *c, kbr_hsm_delivery *d)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(get_fixed(c, 1, d->ephemeral, sizeof(d->ephemeral)));
    KBR_GUARD(get_fixed(c, 1, d->wrapped_cek, sizeof(d->wrapped_cek)));
    KBR_GUARD(get_fixed(c, 1, d->iv, sizeof(d->iv)));
    KBR_GUARD(get_fixed(c, 2, d->ciphertext, sizeof(d->ciphertext)));
out:
    return err;
}

kbr_err kbr_hsmw_req_encode(const kbr_hsmw_req *r, kbr_hsmw_buf *b)
{
    kbr_err err = KBR_OK;

    KBR_ENSURE(r->type >= KBR_HSMW_OPEN && r->type < KBR_HSMW__END, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(frame_begin(b));
    KBR_GUARD(put_u8(b, r->type));
    if (has_label(r->type))
        KBR_GUARD(put_str(b, r->label, 1, KBR_HSM_LABEL_MAX - 1));
    if (r->type == KBR_HSMW_GENERATE) {
        KBR_ENSURE((unsigned)r->alg < KBR_ALG__COUNT, KBR_ERR_BAD_REQUEST);
        KBR_GUARD(put_u8(b, r->alg));
    }
    if (r->type == KBR_HSMW_SIGN) {
        KBR_ENSURE((unsigned)r->fmt <= KBR_SIG_RSA_PKCS1 && (unsigned)r->hash <= KBR_HASH_SHA384,
                   KBR_ERR_BAD_REQUEST);
        KBR_GUARD(put_u8(b, r->fmt));
        KBR_GUARD(put_u8(b, r->hash));
        KBR_GUARD(put_bytes(b, r->in, r->inlen, 4, 0, KBR_HSMW_SIGN_INPUT_MAX));
    }
    if (r->type == KBR_HSMW_DELIVER)
        KBR_GUARD(deliver_req_encode(r, b));
    if (r->type == KBR_HSMW_DATA_PUT) {
        KBR_GUARD(put_bytes(b, r->in, r->inlen, 2, 1, KBR_HSM_DATA_MAX));
        KBR_GUARD(put_bytes(b, r->evidence, r->evlen, 2, 0, KBR_HSM_EVIDENCE_MAX));
    }
    frame_end(b);
out:
    return err;
}

kbr_err kbr_hsmw_req_decode(const unsigned char *body, size_t len, kbr_hsmw_req *out)
{
    kbr_err err = KBR_OK;
    cursor c = {body, len, 0};
    unsigned v = 0;

    memset(out, 0, sizeof(*out));
    KBR_GUARD(get_enum(&c, KBR_HSMW__END, &v));
    KBR_ENSURE(v >= KBR_HSMW_OPEN, KBR_ERR_BAD_REQUEST);
    out->type = (kbr_hsmw_type)v;
    if (has_label(out->type))
        KBR_GUARD(get_str(&c, 1, KBR_HSM_LABEL_MAX - 1, out->label));
    if (out->type == KBR_HSMW_GENERATE) {
        KBR_GUARD(get_enum(&c, KBR_ALG__COUNT, &v));
        out->alg = (kbr_alg)v;
    }
    if (out->type == KBR_HSMW_SIGN) {
        KBR_GUARD(get_enum(&c, KBR_SIG_RSA_PKCS1 + 1, &v));
        out->fmt = (kbr_sig_format)v;
        KBR_GUARD(get_enum(&c, KBR_HASH_SHA384 + 1, &v));
        out->hash = (kbr_hash)v;
        KBR_GUARD(get_bytes(&c, 4, 0, KBR_HSMW_SIGN_INPUT_MAX, &out->in, &out->inlen));
    }
    if (out->type == KBR_HSMW_DELIVER)
        KBR_GUARD(deliver_req_decode(&c, out));
    if (out->type == KBR_HSMW_DATA_PUT) {
        KBR_GUARD(get_bytes(&c, 2, 1, KBR_HSM_DATA_MAX, &out->in, &out->inlen));
        KBR_GUARD(get_bytes(&c, 2, 0, KBR_HSM_EVIDENCE_MAX, &out->evidence, &out->evlen));
    }
    KBR_GUARD(get_end(&c));
out:
    return err;
}

/* ---- replies ---- */

static kbr_err resp_fields_encode(const kbr_hsmw_resp *r, kbr_hsmw_buf *b)
{
    kbr_err err = KBR_OK;

    switch (r->type) {
    case KBR_HSMW_GENERATE:
    case KBR_HSMW_FIND_KEY:
    case KBR_HSMW_GENERATE_DELIVERABLE:
        return put_info(b, &r->info);
    case KBR_HSMW_DELIVER:
        return deliver_resp_encode(&r->delivery, b);
    case KBR_HSMW_PUBLIC_KEY:
        return put_bytes(b, r->data, r->len, 2, 1, KBR_HSMW_PUBKEY_MAX);
    case KBR_HSMW_SIGN:
        return put_bytes(b, r->data, r->len, 2, 1, KBR_HSMW_SIG_MAX);
    case KBR_HSMW_DATA_GET:
        KBR_ENSURE(r->nvalues <= KBR_HSM_DATA_OBJECTS_MAX, KBR_ERR_BAD_REQUEST);
        KBR_GUARD(put_u8(b, (unsigned)r->nvalues));
        for (size_t i = 0; i < r->nvalues; i++)
            KBR_GUARD(put_bytes(b, r->values[i].value, r->values[i].len, 2, 1, KBR_HSM_DATA_MAX));
        break;
    case KBR_HSMW_LIST_OBJECTS:
        KBR_ENSURE(r->n <= KBR_HSMW_LIST_MAX && (r->n == 0 || r->items != NULL),
                   KBR_ERR_BAD_REQUEST);
        KBR_GUARD(put_be(b, r->n, 4));
        for (size_t i = 0; i < r->n; i++)
            KBR_GUARD(put_info(b, &r->items[i]));
        break;
    default:
        break;
    }
out:
    return err;
}

kbr_err kbr_hsmw_resp_encode(const kbr_hsmw_resp *r, kbr_hsmw_buf *b)
{
    kbr_err err = KBR_OK;

    KBR_ENSURE(r->type >= KBR_HSMW_OPEN && r->type < KBR_HSMW__END, KBR_ERR_BAD_REQUEST);
    KBR_ENSURE((unsigned)r->err < KBR_ERR__COUNT, KBR_ERR_BAD_REQUEST);
    KBR_GUARD(frame_begin(b));
    KBR_GUARD(put_u8(b, r->type));
    KBR_GUARD(put_u8(b, r->err));
    if (r->err == KBR_OK)
        KBR_GUARD(resp_fields_encode(r, b));
    frame_end(b);
out:
    return err;
}

static kbr_err list_decode(cursor *c, kbr_hsmw_resp *out)
{
    kbr_err err = KBR_OK;
    uint64_t n = 0;

    KBR_GUARD(get_be(c, 4, &n));
    KBR_ENSURE(n <= KBR_HSMW_LIST_MAX, KBR_ERR_BAD_REQUEST);
    /* every item takes at least seven bytes: a short count cannot make a large allocation */
    KBR_ENSURE(n * 7 <= c->n - c->off, KBR_ERR_BAD_REQUEST);
    out->items = calloc(n > 0 ? (size_t)n : 1, sizeof(*out->items));
    KBR_ENSURE(out->items != NULL, KBR_ERR_NOMEM);
    for (out->n = 0; out->n < n; out->n++)
        KBR_GUARD(get_info(c, &out->items[out->n]));
out:
    return err;
}

static kbr_err values_decode(cursor *c, kbr_hsmw_resp *out)
{
    kbr_err err = KBR_OK;
    unsigned n = 0;

    KBR_GUARD(get_enum(c, KBR_HSM_DATA_OBJECTS_MAX + 1, &n));
    for (out->nvalues = 0; out->nvalues < n; out->nvalues++) {
        const unsigned char *p = NULL;
        KBR_GUARD(get_bytes(c, 2, 1, KBR_HSM_DATA_MAX, &p, &out->values[out->nvalues].len));
        /* the frame is the reply's; nothing writes through this */
        out->values[out->nvalues].value = (unsigned char *)p;
    }
out:
    return err;
}

static kbr_err resp_fields_decode(cursor *c, kbr_hsmw_resp *out)
{
    switch (out->type) {
    case KBR_HSMW_GENERATE:
    case KBR_HSMW_FIND_KEY:
    case KBR_HSMW_GENERATE_DELIVERABLE:
        return get_info(c, &out->info);
    case KBR_HSMW_DELIVER:
        return deliver_resp_decode(c, &out->delivery);
    case KBR_HSMW_PUBLIC_KEY:
        return get_bytes(c, 2, 1, KBR_HSMW_PUBKEY_MAX, &out->data, &out->len);
    case KBR_HSMW_SIGN:
        return get_bytes(c, 2, 1, KBR_HSMW_SIG_MAX, &out->data, &out->len);
    case KBR_HSMW_DATA_GET:
        return values_decode(c, out);
    case KBR_HSMW_LIST_OBJECTS:
        return list_decode(c, out);
    default:
        return KBR_OK;
    }
}

kbr_err kbr_hsmw_resp_decode(const unsigned char *body, size_t len, kbr_hsmw_type expect,
                             kbr_hsmw_resp *out)
{
    kbr_err err = KBR_OK;
    cursor c = {body, len, 0};
    unsigned v = 0;

    memset(out, 0, sizeof(*out));
    KBR_GUARD(get_enum(&c, KBR_HSMW__END, &v));
    KBR_ENSURE(v == (unsigned)expect, KBR_ERR_BAD_REQUEST);
    out->type = (kbr_hsmw_type)v;
    KBR_GUARD(get_enum(&c, KBR_ERR__COUNT, &v));
    out->err = (kbr_err)v;
    if (out->err == KBR_OK)
        KBR_GUARD(resp_fields_decode(&c, out));
    KBR_GUARD(get_end(&c));
out:
    return err;
}

void kbr_hsmw_resp_clear(kbr_hsmw_resp *r)
{
    free(r->items);
    r->items = NULL;
    r->n = 0;
}

/* ---- frames over a socket ---- */

kbr_err kbr_hsmw_frame_len(const unsigned char *hdr, size_t max, size_t *len)
{
    uint64_t n = 0;
    cursor c = {hdr, 4, 0};

    if (get_be(&c, 4, &n) != KBR_OK || n == 0 || n > max)
        return KBR_ERR_BAD_REQUEST;
    *len = (size_t)n;
    return KBR_OK;
}

/*
 * Reads what the socket has, up to the end of the frame; a reply arrives in
 * one read nearly always, so a signature costs one read on each side.
 */
kbr_err kbr_hsmw_recv(int fd, size_t max, kbr_hsmw_buf *b)
{
    kbr_err err = KBR_OK;
    size_t want = 4, body = 0;
    ssize_t got;

    b->len = 0;
    while (b->len < want) {
        KBR_GUARD(buf_reserve(b, (b->cap > want ? b->cap : want) - b->len));
        got = read(fd, b->p + b->len, b->cap - b->len);
        if (got < 0 && errno == EINTR)
            continue;
        KBR_ENSURE(got > 0, KBR_ERR_HSM);
        b->len += (size_t)got;
        if (want == 4 && b->len >= 4) {
            KBR_GUARD(kbr_hsmw_frame_len(b->p, max, &body));
            want = 4 + body;
        }
    }
    /* strictly request then reply: nothing may follow a frame */
    KBR_ENSURE(b->len == want, KBR_ERR_BAD_REQUEST);
out:
    return err;
}

kbr_err kbr_hsmw_send(int fd, const kbr_hsmw_buf *b)
{
    size_t off = 0;
    ssize_t n;

    while (off < b->len) {
        n = send(fd, b->p + off, b->len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return KBR_ERR_HSM;
        off += (size_t)n;
    }
    return KBR_OK;
}

/* ---- the control channel ---- */

kbr_err kbr_hsm_ctl_send_fd(int ctl, int fd)
{
    char byte = 'C';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m = {0};
    struct cmsghdr *cm;
    ssize_t n;

    memset(&u, 0, sizeof(u));
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = u.buf;
    m.msg_controllen = sizeof(u.buf);
    cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    do
        n = sendmsg(ctl, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == 1 ? KBR_OK : KBR_ERR_HSM;
}

/* Every descriptor a record carried, closed: a record with more than one is refused whole. */
static int take_fds(struct msghdr *m, int *fd)
{
    int count = 0;

    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm != NULL; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        for (size_t off = 0; CMSG_LEN(off + sizeof(int)) <= cm->cmsg_len; off += sizeof(int)) {
            int one;
            memcpy(&one, CMSG_DATA(cm) + off, sizeof(int));
            if (count++ == 0)
                *fd = one;
            else
                close(one);
        }
    }
    return count;
}

kbr_err kbr_hsm_ctl_recv_fd(int ctl, int *fd)
{
    char byte = 0;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(4 * sizeof(int))];
    } u;
    struct msghdr m = {0};
    ssize_t n;
    int count;

    *fd = -1;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = u.buf;
    m.msg_controllen = sizeof(u.buf);
    do
        n = recvmsg(ctl, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return KBR_OK;
    if (n < 0)
        return KBR_ERR_HSM;
    count = take_fds(&m, fd);
    if (count == 1 && n == 1 && byte == 'C' && (m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) == 0)
        return KBR_OK;
    if (count > 0)
        close(*fd);
    *fd = -1;
    return KBR_ERR_BAD_REQUEST;
}

kbr_err kbr_hsm_ctl_send_status(int ctl, kbr_err status, const char *text)
{
    unsigned char rec[1 + KBR_MSG_LEN];
    size_t n = text != NULL ? strnlen(text, KBR_MSG_LEN - 1) : 0;
    ssize_t w;

    rec[0] = (unsigned char)status;
    if (n > 0)
        memcpy(rec + 1, text, n);
    do
        w = send(ctl, rec, 1 + n, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    return w == (ssize_t)(1 + n) ? KBR_OK : KBR_ERR_HSM;
}

kbr_err kbr_hsmw_status_decode(const unsigned char *p, size_t n, kbr_err *status, kbr_msg *msg)
{
    if (n < 1 || n > KBR_MSG_LEN || p[0] >= KBR_ERR__COUNT || memchr(p + 1, '\0', n - 1) != NULL)
        return KBR_ERR_BAD_REQUEST;
    *status = (kbr_err)p[0];
    memcpy(msg->text, p + 1, n - 1);
    msg->text[n - 1] = '\0';
    return KBR_OK;
}

kbr_err kbr_hsm_ctl_recv_status(int ctl, kbr_err *status, kbr_msg *msg)
{
    unsigned char rec[1 + KBR_MSG_LEN];
    ssize_t n;

    do
        n = recv(ctl, rec, sizeof(rec), 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return KBR_ERR_HSM;
    return kbr_hsmw_status_decode(rec, (size_t)n, status, msg);
}
