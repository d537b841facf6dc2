/*
 * parse.c - reading COSE_Sign1 back, strictly.
 *
 * The input is walked one CBOR head at a time with libcbor's streaming
 * decoder and checked against the one shape this module writes; nothing is
 * allocated from a length or count the input claims, so a few bytes that
 * announce a huge array cost nothing.  Once the shape is right the
 * structure is written again and must equal the input byte for byte: that
 * one comparison refuses every encoding but the deterministic one
 * (longer heads than needed, indefinite lengths, an empty kid).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "cose_int.h"

/* Major type 6 (tag), argument 18 in the initial byte. */
#define SIGN1_TAG_BYTE (0xc0 | KBR_COSE_SIGN1_TAG)

/* libcbor 0.10 widened string lengths and collection sizes to uint64_t. */
#if CBOR_MAJOR_VERSION == 0 && CBOR_MINOR_VERSION < 10
typedef size_t cbor_len;
#else
typedef uint64_t cbor_len;
#endif

/* One decoded head; TOK_OTHER covers everything the shape never allows. */
typedef enum {
    TOK_OTHER = 0,
    TOK_UINT,
    TOK_NEGINT,
    TOK_BSTR,
    TOK_ARRAY,
    TOK_MAP,
    TOK_NULL
} tok_kind;

typedef struct {
    tok_kind kind;
    uint64_t val;              /* the integer, tag number, count or byte length */
    const unsigned char *data; /* TOK_BSTR: the bytes, inside the input */
} tok;

typedef struct {
    const unsigned char *p, *end;
} cursor;

static void tok_set(void *ctx, tok_kind kind, uint64_t val)
{
    tok *t = ctx;

    t->kind = kind;
    t->val = val;
}

static void on_uint8(void *ctx, uint8_t v)
{
    tok_set(ctx, TOK_UINT, v);
}

static void on_uint16(void *ctx, uint16_t v)
{
    tok_set(ctx, TOK_UINT, v);
}

static void on_uint32(void *ctx, uint32_t v)
{
    tok_set(ctx, TOK_UINT, v);
}

static void on_uint64(void *ctx, uint64_t v)
{
    tok_set(ctx, TOK_UINT, v);
}

static void on_negint8(void *ctx, uint8_t v)
{
    tok_set(ctx, TOK_NEGINT, v);
}

static void on_negint16(void *ctx, uint16_t v)
{
    tok_set(ctx, TOK_NEGINT, v);
}

static void on_negint32(void *ctx, uint32_t v)
{
    tok_set(ctx, TOK_NEGINT, v);
}

static void on_negint64(void *ctx, uint64_t v)
{
    tok_set(ctx, TOK_NEGINT, v);
}

static void on_bstr(void *ctx, cbor_data data, cbor_len len)
{
    tok *t = ctx;

    tok_set(ctx, TOK_BSTR, len);
    t->data = data;
}

static void on_array(void *ctx, cbor_len n)
{
    tok_set(ctx, TOK_ARRAY, n);
}

static void on_map(void *ctx, cbor_len n)
{
    tok_set(ctx, TOK_MAP, n);
}

static void on_null(void *ctx)
{
    tok_set(ctx, TOK_NULL, 0);
}

/* Tags, indefinite-length starts, text, floats and simple values keep the empty callbacks. */
static struct cbor_callbacks tok_callbacks(void)
{
    struct cbor_callbacks cb = cbor_empty_callbacks;

    cb.uint8 = on_uint8;
    cb.uint16 = on_uint16;
    cb.uint32 = on_uint32;
    cb.uint64 = on_uint64;
    cb.negint8 = on_negint8;
    cb.negint16 = on_negint16;
    cb.negint32 = on_negint32;
    cb.negint64 = on_negint64;
    cb.byte_string = on_bstr;
    cb.array_start = on_array;
    cb.map_start = on_map;
    cb.null = on_null;
    return cb;
}

/* Decodes the next head (with a definite byte string's bytes); false at the end or on bad data. */
static bool next_tok(cursor *c, tok *t)
{
    struct cbor_callbacks cb = tok_callbacks();
    struct cbor_decoder_result r;

    memset(t, 0, sizeof(*t));
    if (c->p >= c->end)
        return false;
    r = cbor_stream_decode(c->p, (size_t)(c->end - c->p), &cb, t);
    if (r.status != CBOR_DECODER_FINISHED || r.read == 0 || r.read > (size_t)(c->end - c->p))
        return false;
    c->p += r.read;
    return true;
}

static bool expect(cursor *c, tok_kind kind, tok *t)
{
    return next_tok(c, t) && t->kind == kind;
}

static bool expect_val(cursor *c, tok_kind kind, uint64_t val)
{
    tok t;

    return expect(c, kind, &t) && t.val == val;
}

static const char *alg_name(kbr_cose_alg alg)
{
    switch (alg) {
    case KBR_COSE_ES256:
        return "ES256";
    case KBR_COSE_ES384:
        return "ES384";
    case KBR_COSE_EDDSA:
        return "EdDSA";
    default:
        return "?";
    }
}

/* The shape {1: alg, ? 4: kid}; returns why it is not, or NULL. */
static const char *protected_scan(cursor *c, kbr_cose_alg *alg, tok *kid)
{
    tok map, v;

    if (!expect(c, TOK_MAP, &map) || (map.val != 1 && map.val != 2))
        return "protected: not a map of alg and an optional kid";
    if (!expect_val(c, TOK_UINT, 1))
        return "protected: alg (label 1) must come first";
    /* -1 - v for every alg known is small; bounding v first keeps the cast defined */
    if (!expect(c, TOK_NEGINT, &v) || v.val > 63 || !cose_alg_known(-1 - (int64_t)v.val))
        return "protected: alg must be ES256 (-7), ES384 (-35) or EdDSA (-8)";
    *alg = (kbr_cose_alg)(-1 - (int64_t)v.val);
    if (map.val == 2 && !expect_val(c, TOK_UINT, 4))
        return "protected: only alg (1) and kid (4) are allowed";
    if (map.val == 2 && !expect(c, TOK_BSTR, kid))
        return "protected: kid must be a byte string";
    if (c->p != c->end)
        return "protected: trailing bytes after the header map";
    return NULL;
}

kbr_err cose_protected_read(const unsigned char *prot, size_t protlen, kbr_cose_alg *alg,
                            const unsigned char **kid, size_t *kidlen, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    cursor c = {prot, prot + protlen};
    kbr_cose_alg a = KBR_COSE_ES256;
    tok k = {0};
    const char *why = NULL;
    unsigned char *canon = NULL;
    size_t canonlen = 0;

    *kid = NULL;
    *kidlen = 0;
    KBR_ENSURE(prot != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "protected: missing"));
    why = protected_scan(&c, &a, &k);
    KBR_ENSURE(why == NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s", why));
    KBR_GUARD(kbr_cose_protected(a, k.data, (size_t)k.val, &canon, &canonlen));
    KBR_ENSURE(canonlen == protlen && memcmp(canon, prot, protlen) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "protected: not in deterministic encoding (RFC 8949 4.2.1)"));
    *alg = a;
    *kid = k.data;
    *kidlen = (size_t)k.val;
out:
    free(canon);
    return err;
}

/*
 * libcbor 0.8's decoder refuses the one-byte heads of tags 6 to 20 as
 * unassigned, 18 among them, so the tag is read here; deterministic
 * encoding writes tag 18 as the single byte 0xd2 and nothing else.
 */
static const char *tag_scan(cursor *c, bool *tagged)
{
    *tagged = false;
    if (c->p >= c->end)
        return "cose_sign1: not CBOR";
    if (*c->p >> 5 != CBOR_TYPE_TAG)
        return NULL;
    if (*c->p != SIGN1_TAG_BYTE)
        return "cose_sign1: the only tag allowed is 18 (COSE_Sign1), in one byte";
    *tagged = true;
    c->p++;
    return NULL;
}

/* The shape [bstr, {}, nil, bstr], maybe under tag 18; returns why it is not, or NULL. */
static const char *sign1_scan(const unsigned char *in, size_t len, bool *tagged, tok *prot,
                              tok *sig)
{
    cursor c = {in, in + len};
    const char *why = in == NULL ? "cose_sign1: not CBOR" : tag_scan(&c, tagged);
    tok t;

    if (why != NULL)
        return why;
    if (!next_tok(&c, &t))
        return "cose_sign1: not CBOR";
    if (t.kind != TOK_ARRAY || t.val != 4)
        return "cose_sign1: not an array of 4 items";
    if (!expect(&c, TOK_BSTR, prot))
        return "cose_sign1: protected header is not a byte string";
    if (!expect_val(&c, TOK_MAP, 0))
        return "cose_sign1: the unprotected header must be an empty map";
    if (!expect(&c, TOK_NULL, &t))
        return "cose_sign1: payload must be nil (detached)";
    if (!expect(&c, TOK_BSTR, sig))
        return "cose_sign1: signature is not a byte string";
    if (c.p != c.end)
        return "cose_sign1: trailing bytes after the COSE_Sign1";
    return NULL;
}

static kbr_err memdup(const unsigned char *p, size_t n, unsigned char **out)
{
    *out = malloc(n > 0 ? n : 1);
    if (*out == NULL)
        return KBR_ERR_NOMEM;
    if (n > 0)
        memcpy(*out, p, n);
    return KBR_OK;
}

/* Refuses what the shape allows but deterministic encoding does not. */
static kbr_err sign1_canonical(const unsigned char *in, size_t len, const tok *prot, const tok *sig,
                               bool tagged, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    unsigned char *canon = NULL;
    size_t canonlen = 0;

    KBR_GUARD(kbr_cose_sign1(prot->data, (size_t)prot->val, sig->data, (size_t)sig->val, tagged,
                             &canon, &canonlen));
    KBR_ENSURE(canonlen == len && memcmp(canon, in, len) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "cose_sign1: not in deterministic encoding (RFC 8949 4.2.1)"));
out:
    free(canon);
    return err;
}

kbr_err kbr_cose_sign1_parse(const unsigned char *in, size_t len, unsigned char **prot,
                             size_t *protlen, unsigned char **sig, size_t *siglen,
                             kbr_cose_alg *alg, unsigned char **kid, size_t *kidlen, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    tok p = {0}, s = {0};
    bool tagged = false;
    kbr_cose_alg a = KBR_COSE_ES256;
    const unsigned char *k = NULL;
    size_t klen = 0;
    unsigned char *pc = NULL, *sc = NULL, *kc = NULL;
    const char *why = NULL;

    *prot = *sig = *kid = NULL;
    *protlen = *siglen = *kidlen = 0;
    why = sign1_scan(in, len, &tagged, &p, &s);
    KBR_ENSURE(why == NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s", why));
    KBR_GUARD(cose_protected_read(p.data, (size_t)p.val, &a, &k, &klen, msg));
    KBR_ENSURE(s.val == kbr_cose_sig_len(a),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "cose_sign1: signature of %" PRIu64 " bytes, but %s takes %zu", s.val,
                        alg_name(a), kbr_cose_sig_len(a)));
    KBR_GUARD(sign1_canonical(in, len, &p, &s, tagged, msg));
    KBR_GUARD(memdup(p.data, (size_t)p.val, &pc));
    KBR_GUARD(memdup(s.data, (size_t)s.val, &sc));
    if (klen > 0)
        KBR_GUARD(memdup(k, klen, &kc));
    *prot = pc;
    *protlen = (size_t)p.val;
    *sig = sc;
    *siglen = (size_t)s.val;
    *kid = kc;
    *kidlen = klen;
    *alg = a;
    pc = sc = kc = NULL;
out:
    free(pc);
    free(sc);
    free(kc);
    return err;
}
