/*
 * test_hsm_wire.c - the framing between the network process and the HSM
 * process (pkcs11/wire.c): every request and reply round-trips, everything
 * the encoder would not make is refused, frames travel whole over a socket
 * and a peer that talks out of turn is caught, and the control channel
 * carries exactly one descriptor per record.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../pkcs11/wire.h"

static kbr_hsmw_buf buf;

/* The body of the frame in buf, after its length prefix (which must match). */
static const unsigned char *body(size_t *len)
{
    size_t n = 0;

    assert_true(buf.len >= 5);
    assert_int_equal(kbr_hsmw_frame_len(buf.p, SIZE_MAX, &n), KBR_OK);
    assert_int_equal(n, buf.len - 4);
    *len = n;
    return buf.p + 4;
}

static void req_round_trip(const kbr_hsmw_req *r)
{
    kbr_hsmw_req got;
    const unsigned char *b;
    size_t len;

    assert_int_equal(kbr_hsmw_req_encode(r, &buf), KBR_OK);
    b = body(&len);
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_OK);
    assert_int_equal(got.type, r->type);
    assert_string_equal(got.label, r->label);
    assert_int_equal(got.alg, r->alg);
    assert_int_equal(got.fmt, r->fmt);
    assert_int_equal(got.hash, r->hash);
    assert_int_equal(got.inlen, r->inlen);
    if (r->inlen > 0)
        assert_memory_equal(got.in, r->in, r->inlen);
    assert_int_equal(got.recipient != NULL, r->recipient != NULL);
    if (r->recipient != NULL) {
        assert_memory_equal(got.recipient, r->recipient, 65);
        assert_int_equal(got.kdf_context_len, r->kdf_context_len);
        assert_memory_equal(got.kdf_context, r->kdf_context, r->kdf_context_len);
        assert_int_equal(got.enc_structure_len, r->enc_structure_len);
        assert_memory_equal(got.enc_structure, r->enc_structure, r->enc_structure_len);
    }
    assert_int_equal(got.evlen, r->evlen);
    if (r->evlen > 0)
        assert_memory_equal(got.evidence, r->evidence, r->evlen);
    /* one byte short, one byte more: refused */
    assert_int_equal(kbr_hsmw_req_decode(b, len - 1, &got), KBR_ERR_BAD_REQUEST);
    buf.p[buf.len] = 0;
    assert_int_equal(kbr_hsmw_req_decode(b, len + 1, &got), KBR_ERR_BAD_REQUEST);
}

static void test_requests(void **state)
{
    static unsigned char value[KBR_HSM_DATA_MAX], evidence[KBR_HSM_EVIDENCE_MAX];
    unsigned char digest[48], point[65], context[256];
    kbr_hsmw_req r;

    (void)state;
    memset(digest, 0xa5, sizeof(digest));
    memset(point, 0x04, sizeof(point));
    memset(context, 0x83, sizeof(context));
    memset(value, '{', sizeof(value));
    memset(evidence, 0x5a, sizeof(evidence));
    for (int t = KBR_HSMW_OPEN; t < KBR_HSMW__END; t++) {
        memset(&r, 0, sizeof(r));
        r.type = (kbr_hsmw_type)t;
        if (t == KBR_HSMW_GENERATE || t == KBR_HSMW_FIND_KEY || t == KBR_HSMW_PUBLIC_KEY ||
            t == KBR_HSMW_SIGN || t == KBR_HSMW_GENERATE_DELIVERABLE || t == KBR_HSMW_DELIVER ||
            t == KBR_HSMW_DATA_GET || t == KBR_HSMW_DATA_PUT)
            snprintf(r.label, sizeof(r.label), "kbr/key/fw-%d", t);
        if (t == KBR_HSMW_DELIVER) {
            r.recipient = point;
            r.kdf_context = context;
            r.kdf_context_len = sizeof(context); /* the longest */
            r.enc_structure = context;
            r.enc_structure_len = 1; /* the shortest */
        }
        if (t == KBR_HSMW_DATA_PUT) {
            r.in = value;
            r.inlen = 300;
            r.evidence = evidence;
            r.evlen = 64;
        }
        if (t == KBR_HSMW_GENERATE)
            r.alg = KBR_ALG_RSA_4096;
        if (t == KBR_HSMW_SIGN) {
            r.fmt = KBR_SIG_RSA_PSS;
            r.hash = KBR_HASH_SHA384;
            r.in = digest;
            r.inlen = sizeof(digest);
        }
        req_round_trip(&r);
    }
    /* an empty Ed25519 message is a valid input; the longest label too */
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_SIGN;
    r.fmt = KBR_SIG_EDDSA;
    memset(r.label, 'x', KBR_HSM_LABEL_MAX - 1);
    req_round_trip(&r);
    /* a data write at its bounds, and without evidence */
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_DATA_PUT;
    snprintf(r.label, sizeof(r.label), "kbr/audit/record");
    r.in = value;
    r.inlen = sizeof(value);
    r.evidence = evidence;
    r.evlen = sizeof(evidence);
    req_round_trip(&r);
    r.evlen = 0;
    r.inlen = 1;
    req_round_trip(&r);
    /* the encoder refuses an empty value and values or evidence past their bounds */
    r.inlen = 0;
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    r.inlen = KBR_HSM_DATA_MAX + 1;
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    r.inlen = 1;
    r.evlen = KBR_HSM_EVIDENCE_MAX + 1;
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
}

/* The decoder refuses data writes the encoder would not make. */
static void test_data_requests_refused(void **state)
{
    kbr_hsmw_req got;
    /* DATA_PUT, label "r", value of 1 byte, no evidence */
    unsigned char b[16] = {KBR_HSMW_DATA_PUT, 1, 'r', 0, 1, 'v', 0, 0};

    (void)state;
    assert_int_equal(kbr_hsmw_req_decode(b, 8, &got), KBR_OK);
    assert_int_equal(got.inlen, 1);
    assert_int_equal(got.evlen, 0);
    /* the evidence length missing, or announcing more than the frame holds */
    assert_int_equal(kbr_hsmw_req_decode(b, 7, &got), KBR_ERR_BAD_REQUEST);
    b[7] = 1;
    assert_int_equal(kbr_hsmw_req_decode(b, 8, &got), KBR_ERR_BAD_REQUEST);
    b[7] = 0;
    /* an empty value; a value length past KBR_HSM_DATA_MAX */
    b[4] = 0;
    assert_int_equal(kbr_hsmw_req_decode(b, 8, &got), KBR_ERR_BAD_REQUEST);
    b[3] = (KBR_HSM_DATA_MAX + 1) >> 8;
    b[4] = (KBR_HSM_DATA_MAX + 1) & 0xff;
    assert_int_equal(kbr_hsmw_req_decode(b, 8, &got), KBR_ERR_BAD_REQUEST);
    /* DATA_GET takes a label and nothing more */
    memcpy(b, "	r", 3);
    b[0] = KBR_HSMW_DATA_GET;
    assert_int_equal(kbr_hsmw_req_decode(b, 3, &got), KBR_OK);
    assert_int_equal(kbr_hsmw_req_decode(b, 4, &got), KBR_ERR_BAD_REQUEST);
}

static void test_requests_refused(void **state)
{
    kbr_hsmw_req r, got;
    unsigned char b[300];
    size_t len;

    (void)state;
    /* the encoder refuses what callers never send */
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_FIND_KEY;
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_ERR_BAD_REQUEST); /* empty label */
    r.type = KBR_HSMW__END;
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    /* a good FIND_KEY to mutate */
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_FIND_KEY;
    snprintf(r.label, sizeof(r.label), "kbr/issuer");
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_OK);
    len = buf.len - 4;
    memcpy(b, buf.p + 4, len);
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_OK);
    /* unknown types */
    b[0] = 0;
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_ERR_BAD_REQUEST);
    b[0] = KBR_HSMW__END;
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_ERR_BAD_REQUEST);
    b[0] = KBR_HSMW_FIND_KEY;
    /* a NUL inside the label */
    b[3] = '\0';
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_ERR_BAD_REQUEST);
    b[3] = 'b';
    /* a label length that runs past the frame, and one of zero */
    b[1] = (unsigned char)(len);
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_ERR_BAD_REQUEST);
    b[1] = 0;
    assert_int_equal(kbr_hsmw_req_decode(b, 2, &got), KBR_ERR_BAD_REQUEST);
    /* a label of 128 bytes (one more than the broker takes) */
    b[0] = KBR_HSMW_FIND_KEY;
    b[1] = KBR_HSM_LABEL_MAX;
    memset(b + 2, 'a', KBR_HSM_LABEL_MAX);
    assert_int_equal(kbr_hsmw_req_decode(b, 2 + KBR_HSM_LABEL_MAX, &got), KBR_ERR_BAD_REQUEST);
    /* enums out of range: algorithm, format, hash */
    b[0] = KBR_HSMW_GENERATE;
    b[1] = 1;
    b[2] = 'k';
    b[3] = KBR_ALG__COUNT;
    assert_int_equal(kbr_hsmw_req_decode(b, 4, &got), KBR_ERR_BAD_REQUEST);
    b[3] = KBR_ALG__COUNT - 1;
    assert_int_equal(kbr_hsmw_req_decode(b, 4, &got), KBR_OK);
    b[0] = KBR_HSMW_SIGN;
    b[3] = KBR_SIG_RSA_PKCS1 + 1;
    b[4] = KBR_HASH_SHA256;
    memcpy(b + 5, "\0\0\0\1x", 5);
    assert_int_equal(kbr_hsmw_req_decode(b, 10, &got), KBR_ERR_BAD_REQUEST);
    b[3] = KBR_SIG_ECDSA_RAW;
    b[4] = KBR_HASH_SHA384 + 1;
    assert_int_equal(kbr_hsmw_req_decode(b, 10, &got), KBR_ERR_BAD_REQUEST);
    b[4] = KBR_HASH_SHA256;
    assert_int_equal(kbr_hsmw_req_decode(b, 10, &got), KBR_OK);
    /* an input length beyond the bound is refused before anything is read */
    memcpy(b + 5, "\x05\0\0\0", 4);
    assert_int_equal(kbr_hsmw_req_decode(b, 10, &got), KBR_ERR_BAD_REQUEST);
    /* nothing at all */
    assert_int_equal(kbr_hsmw_req_decode(b, 0, &got), KBR_ERR_BAD_REQUEST);
}

/* DELIVER: a recipient of exactly 65 bytes, a context and an Enc_structure of 1 to 256. */
static void test_deliver_request_refused(void **state)
{
    unsigned char point[65], ctx[257], b[700];
    kbr_hsmw_req r, got;
    size_t len;

    (void)state;
    memset(point, 4, sizeof(point));
    memset(ctx, 0x84, sizeof(ctx));
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_DELIVER;
    snprintf(r.label, sizeof(r.label), "kbr/key/ota");
    r.recipient = point;
    r.kdf_context = ctx;
    r.kdf_context_len = 257;
    r.enc_structure = ctx;
    r.enc_structure_len = 17;
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    r.kdf_context_len = 0;
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    r.kdf_context_len = 18;
    r.recipient = NULL;
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    r.recipient = point;
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_OK);
    len = buf.len - 4;
    memcpy(b, buf.p + 4, len);
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_OK);
    /* label "kbr/key/ota" (11) at 1..12, the point's length at 13 */
    b[13] = 64;
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_ERR_BAD_REQUEST);
    b[13] = 65;
    /* the context's length: 0, and 257 */
    b[79] = 0, b[80] = 0;
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_ERR_BAD_REQUEST);
    b[79] = 1, b[80] = 1;
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_ERR_BAD_REQUEST);
    b[79] = 0, b[80] = 18;
    assert_int_equal(kbr_hsmw_req_decode(b, len, &got), KBR_OK);
    /* the Enc_structure missing */
    assert_int_equal(kbr_hsmw_req_decode(b, len - 19, &got), KBR_ERR_BAD_REQUEST);
}

static kbr_hsm_key_info info_of(const char *label, int n)
{
    kbr_hsm_key_info i;

    memset(&i, 0, sizeof(i));
    snprintf(i.label, sizeof(i.label), "%s", label);
    snprintf(i.id_hex, sizeof(i.id_hex), "%032x", n);
    snprintf(i.class_name, sizeof(i.class_name), "private");
    snprintf(i.key_type, sizeof(i.key_type), "ec-edwards");
    i.alg_known = n % 2 == 0;
    i.alg = (kbr_alg)(n % KBR_ALG__COUNT);
    i.sensitive = i.never_extractable = i.token = i.private_obj = true;
    i.can_sign = n % 3 == 0;
    i.local = n % 5 == 0;
    return i;
}

static void resp_round_trip(const kbr_hsmw_resp *r, kbr_hsmw_resp *got)
{
    const unsigned char *b;
    size_t len;

    assert_int_equal(kbr_hsmw_resp_encode(r, &buf), KBR_OK);
    b = body(&len);
    assert_int_equal(kbr_hsmw_resp_decode(b, len, r->type, got), KBR_OK);
    assert_int_equal(got->type, r->type);
    assert_int_equal(got->err, r->err);
    /* a reply to another request is refused */
    assert_int_equal(kbr_hsmw_resp_decode(
                         b, len, r->type == KBR_HSMW_PING ? KBR_HSMW_OPEN : KBR_HSMW_PING, got + 1),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_hsmw_resp_decode(b, len - 1, r->type, got + 1), KBR_ERR_BAD_REQUEST);
    kbr_hsmw_resp_clear(got + 1);
}

static void test_replies(void **state)
{
    unsigned char sig[512], der[600];
    kbr_hsm_key_info items[3];
    kbr_hsmw_resp r, got[2];

    (void)state;
    memset(sig, 7, sizeof(sig));
    memset(der, 9, sizeof(der));
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_FIND_KEY;
    r.info = info_of("kbr/key/fw", 4);
    resp_round_trip(&r, got);
    assert_memory_equal(&got[0].info, &r.info, sizeof(r.info));
    r.type = KBR_HSMW_SIGN;
    r.data = sig;
    r.len = sizeof(sig);
    resp_round_trip(&r, got);
    assert_int_equal(got[0].len, sizeof(sig));
    assert_memory_equal(got[0].data, sig, sizeof(sig));
    r.type = KBR_HSMW_PUBLIC_KEY;
    r.data = der;
    r.len = sizeof(der);
    resp_round_trip(&r, got);
    assert_memory_equal(got[0].data, der, sizeof(der));
    r.type = KBR_HSMW_DATA_GET;
    r.data = NULL;
    r.len = 0;
    r.nvalues = KBR_HSM_DATA_OBJECTS_MAX;
    for (size_t i = 0; i < r.nvalues; i++) {
        r.values[i].value = der + i;
        r.values[i].len = sizeof(der) - i;
    }
    resp_round_trip(&r, got);
    assert_int_equal(got[0].nvalues, KBR_HSM_DATA_OBJECTS_MAX);
    for (size_t i = 0; i < r.nvalues; i++) {
        assert_int_equal(got[0].values[i].len, sizeof(der) - i);
        assert_memory_equal(got[0].values[i].value, der + i, sizeof(der) - i);
    }
    r.nvalues = 0;
    resp_round_trip(&r, got);
    assert_int_equal(got[0].nvalues, 0);
    r.type = KBR_HSMW_LIST_OBJECTS;
    for (int i = 0; i < 3; i++)
        items[i] = info_of(i == 1 ? "" : "obj", i + 1);
    r.items = items;
    r.n = 3;
    resp_round_trip(&r, got);
    assert_int_equal(got[0].n, 3);
    assert_memory_equal(got[0].items, items, sizeof(items));
    kbr_hsmw_resp_clear(&got[0]);
    /* an error carries nothing else, whatever the request */
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_SIGN;
    r.err = KBR_ERR_HSM_KEY;
    resp_round_trip(&r, got);
    assert_null(got[0].data);
    /* an empty list */
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_LIST_OBJECTS;
    resp_round_trip(&r, got);
    assert_int_equal(got[0].n, 0);
    kbr_hsmw_resp_clear(&got[0]);
    /* a deliverable key's info; a delivery's four fixed fields */
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_GENERATE_DELIVERABLE;
    r.info = info_of("kbr/key/ota", 2);
    resp_round_trip(&r, got);
    assert_memory_equal(&got[0].info, &r.info, sizeof(r.info));
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_DELIVER;
    memset(r.delivery.ephemeral, 1, sizeof(r.delivery.ephemeral));
    memset(r.delivery.wrapped_cek, 2, sizeof(r.delivery.wrapped_cek));
    memset(r.delivery.iv, 3, sizeof(r.delivery.iv));
    memset(r.delivery.ciphertext, 4, sizeof(r.delivery.ciphertext));
    resp_round_trip(&r, got);
    assert_memory_equal(&got[0].delivery, &r.delivery, sizeof(r.delivery));
}

/* A delivery whose fields are not exactly their sizes does not decode. */
static void test_deliver_reply_refused(void **state)
{
    kbr_hsmw_resp r, got;
    unsigned char b[300];
    size_t len;

    (void)state;
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_DELIVER;
    assert_int_equal(kbr_hsmw_resp_encode(&r, &buf), KBR_OK);
    len = buf.len - 4;
    memcpy(b, buf.p + 4, len);
    assert_int_equal(len, 2 + 1 + 65 + 1 + 24 + 1 + 12 + 2 + KBR_HSM_DELIVERY_CT_LEN);
    assert_int_equal(kbr_hsmw_resp_decode(b, len, KBR_HSMW_DELIVER, &got), KBR_OK);
    b[2] = 64; /* the ephemeral point one byte short */
    assert_int_equal(kbr_hsmw_resp_decode(b, len, KBR_HSMW_DELIVER, &got), KBR_ERR_BAD_REQUEST);
    b[2] = 65;
    b[68] = 25; /* a wrapped CEK one byte long */
    assert_int_equal(kbr_hsmw_resp_decode(b, len, KBR_HSMW_DELIVER, &got), KBR_ERR_BAD_REQUEST);
    b[68] = 24;
    b[107] = 160; /* the ciphertext's length (u16 at 106) one short */
    assert_int_equal(kbr_hsmw_resp_decode(b, len, KBR_HSMW_DELIVER, &got), KBR_ERR_BAD_REQUEST);
    b[107] = KBR_HSM_DELIVERY_CT_LEN;
    assert_int_equal(kbr_hsmw_resp_decode(b, len, KBR_HSMW_DELIVER, &got), KBR_OK);
    assert_int_equal(kbr_hsmw_resp_decode(b, len - 1, KBR_HSMW_DELIVER, &got), KBR_ERR_BAD_REQUEST);
}

static void test_replies_refused(void **state)
{
    unsigned char b[16];
    kbr_hsmw_resp r, got;
    kbr_hsm_key_info bad;

    (void)state;
    /* the encoder refuses what does not fit its field */
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_SIGN;
    r.len = KBR_HSMW_SIG_MAX + 1;
    r.data = (const unsigned char *)"";
    assert_int_equal(kbr_hsmw_resp_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    r.err = KBR_ERR__COUNT;
    assert_int_equal(kbr_hsmw_resp_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    r.type = KBR_HSMW_DATA_GET;
    r.err = KBR_OK;
    r.nvalues = 1;
    r.values[0].value = (unsigned char *)"";
    r.values[0].len = KBR_HSM_DATA_MAX + 1;
    assert_int_equal(kbr_hsmw_resp_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    r.values[0].len = 0;
    assert_int_equal(kbr_hsmw_resp_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    r.nvalues = KBR_HSM_DATA_OBJECTS_MAX + 1;
    assert_int_equal(kbr_hsmw_resp_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    /* a DATA_GET reply announcing more values than a label may hold */
    b[0] = KBR_HSMW_DATA_GET;
    b[1] = KBR_OK;
    b[2] = KBR_HSM_DATA_OBJECTS_MAX + 1;
    assert_int_equal(kbr_hsmw_resp_decode(b, 3, KBR_HSMW_DATA_GET, &got), KBR_ERR_BAD_REQUEST);
    b[2] = 1;
    memcpy(b + 3, "\x00\x01x", 3);
    assert_int_equal(kbr_hsmw_resp_decode(b, 6, KBR_HSMW_DATA_GET, &got), KBR_OK);
    assert_int_equal(kbr_hsmw_resp_decode(b, 5, KBR_HSMW_DATA_GET, &got), KBR_ERR_BAD_REQUEST);
    bad = info_of("x", 1);
    bad.id_hex[0] = 'G';
    memset(&r, 0, sizeof(r));
    r.type = KBR_HSMW_FIND_KEY;
    r.info = bad;
    assert_int_equal(kbr_hsmw_resp_encode(&r, &buf), KBR_ERR_BAD_REQUEST);
    /* an error code beyond kbr_err */
    b[0] = KBR_HSMW_PING;
    b[1] = KBR_ERR__COUNT;
    assert_int_equal(kbr_hsmw_resp_decode(b, 2, KBR_HSMW_PING, &got), KBR_ERR_BAD_REQUEST);
    /* a list that claims more items than its bytes could hold */
    memcpy(b, "\x07\x00\x00\x00\x10\x00", 6);
    assert_int_equal(kbr_hsmw_resp_decode(b, 6, KBR_HSMW_LIST_OBJECTS, &got), KBR_ERR_BAD_REQUEST);
    kbr_hsmw_resp_clear(&got);
    memcpy(b, "\x07\x00\xff\xff\xff\xff", 6);
    assert_int_equal(kbr_hsmw_resp_decode(b, 6, KBR_HSMW_LIST_OBJECTS, &got), KBR_ERR_BAD_REQUEST);
    kbr_hsmw_resp_clear(&got);
    /* a key info whose id is odd-length hex, or whose alg_known is neither 0 nor 1 */
    memcpy(b,
           "\x04\x00\x00\x01"
           "a"
           "\x00\x00\x00\x00\x00",
           10);
    assert_int_equal(kbr_hsmw_resp_decode(b, 10, KBR_HSMW_FIND_KEY, &got), KBR_ERR_BAD_REQUEST);
    memcpy(b, "\x04\x00\x00\x00\x00\x00\x02\x00\x00", 9);
    assert_int_equal(kbr_hsmw_resp_decode(b, 9, KBR_HSMW_FIND_KEY, &got), KBR_ERR_BAD_REQUEST);
    b[6] = 1;
    assert_int_equal(kbr_hsmw_resp_decode(b, 9, KBR_HSMW_FIND_KEY, &got), KBR_OK);
}

static void test_frames_over_a_socket(void **state)
{
    int sv[2];
    kbr_hsmw_req r = {.type = KBR_HSMW_PING};
    kbr_hsmw_buf in = {0};
    size_t n;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    /* a frame arrives whole */
    assert_int_equal(kbr_hsmw_req_encode(&r, &buf), KBR_OK);
    assert_int_equal(kbr_hsmw_send(sv[0], &buf), KBR_OK);
    assert_int_equal(kbr_hsmw_recv(sv[1], KBR_HSMW_REQ_MAX, &in), KBR_OK);
    assert_int_equal(in.len, buf.len);
    assert_memory_equal(in.p, buf.p, buf.len);
    /* two frames at once: the peer did not wait for its answer */
    assert_int_equal(kbr_hsmw_send(sv[0], &buf), KBR_OK);
    assert_int_equal(kbr_hsmw_send(sv[0], &buf), KBR_OK);
    assert_int_equal(kbr_hsmw_recv(sv[1], KBR_HSMW_REQ_MAX, &in), KBR_ERR_BAD_REQUEST);
    /* a length over the bound, and a zero length, are refused from the header alone */
    assert_int_equal(write(sv[0], "\x05\x00\x00\x00", 4), 4);
    assert_int_equal(kbr_hsmw_recv(sv[1], KBR_HSMW_REQ_MAX, &in), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_hsmw_frame_len((const unsigned char *)"\0\0\0\0", 10, &n),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_hsmw_frame_len((const unsigned char *)"\0\0\0\x0b", 10, &n),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_hsmw_frame_len((const unsigned char *)"\0\0\0\x0a", 10, &n), KBR_OK);
    /* end of file in the middle of a frame */
    assert_int_equal(write(sv[0], "\0\0\0\x05\x01", 5), 5);
    close(sv[0]);
    assert_int_equal(kbr_hsmw_recv(sv[1], KBR_HSMW_REQ_MAX, &in), KBR_ERR_HSM);
    close(sv[1]);
    kbr_hsmw_buf_free(&in);
}

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void test_control_channel(void **state)
{
    int ctl[2], pair[2], got = -1, extra[2];
    kbr_err status = KBR_OK;
    kbr_msg msg = {{0}};
    char c = 'C';

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, ctl), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    /* a descriptor goes across and works */
    assert_int_equal(kbr_hsm_ctl_send_fd(ctl[0], pair[1]), KBR_OK);
    assert_int_equal(kbr_hsm_ctl_recv_fd(ctl[1], &got), KBR_OK);
    assert_true(got >= 0 && got != pair[1]);
    assert_int_equal(write(got, "x", 1), 1);
    assert_int_equal(read(pair[0], &c, 1), 1);
    assert_int_equal(c, 'x');
    close(got);
    /* a record without a descriptor is refused */
    c = 'C';
    assert_int_equal(send(ctl[0], &c, 1, 0), 1);
    assert_int_equal(kbr_hsm_ctl_recv_fd(ctl[1], &got), KBR_ERR_BAD_REQUEST);
    assert_int_equal(got, -1);
    /* a record with two is refused, and neither stays open on the receiving side */
    {
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(2 * sizeof(int))];
        } u;
        struct iovec iov = {&c, 1};
        struct msghdr m = {0};
        struct cmsghdr *cm;
        int two[2] = {pair[0], pair[1]};
        int before = dup(0);

        close(before);
        memset(&u, 0, sizeof(u));
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = u.b;
        m.msg_controllen = sizeof(u.b);
        cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
        memcpy(CMSG_DATA(cm), two, sizeof(two));
        assert_int_equal(sendmsg(ctl[0], &m, 0), 1);
        assert_int_equal(kbr_hsm_ctl_recv_fd(ctl[1], &got), KBR_ERR_BAD_REQUEST);
        /* the lowest free descriptor is where the received ones would have stayed */
        extra[0] = dup(0);
        assert_int_equal(extra[0], before);
        close(extra[0]);
    }
    /* the status record: code and message */
    assert_int_equal(kbr_hsm_ctl_send_status(ctl[0], KBR_ERR_HSM_PIN, "token refused the PIN"),
                     KBR_OK);
    assert_int_equal(kbr_hsm_ctl_recv_status(ctl[1], &status, &msg), KBR_OK);
    assert_int_equal(status, KBR_ERR_HSM_PIN);
    assert_string_equal(msg.text, "token refused the PIN");
    assert_int_equal(kbr_hsmw_status_decode((const unsigned char *)"\x7f", 1, &status, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_hsmw_status_decode((const unsigned char *)"\x00"
                                                                   "a\0b",
                                            4, &status, &msg),
                     KBR_ERR_BAD_REQUEST);
    /* end of file */
    close(ctl[0]);
    assert_int_equal(kbr_hsm_ctl_recv_fd(ctl[1], &got), KBR_OK);
    assert_int_equal(got, -1);
    assert_int_equal(kbr_hsm_ctl_recv_status(ctl[1], &status, &msg), KBR_ERR_HSM);
    assert_true(is_open(pair[0]) && is_open(pair[1]));
    close(ctl[1]);
    close(pair[0]);
    close(pair[1]);
}

static int teardown(void **state)
{
    (void)state;
    kbr_hsmw_buf_free(&buf);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_requests_refused),
        cmocka_unit_test(test_data_requests_refused),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_replies_refused),
        cmocka_unit_test(test_deliver_request_refused),
        cmocka_unit_test(test_deliver_reply_refused),
        cmocka_unit_test(test_frames_over_a_socket),
        cmocka_unit_test(test_control_channel),
    };

    return cmocka_run_group_tests_name("hsm_wire", tests, NULL, teardown);
}
