/*
 * wire.h - the framing between keybrokerd's network process and its HSM
 * process (remote.c talks it, serve.c answers it).  Internal to pkcs11/,
 * and to the codec's unit test and fuzz target.
 *
 * A connection is one PKCS#11 session: one end of a socketpair, strictly
 * request then reply.  Every message is a frame:
 *
 *   u32 length (big-endian, of what follows, 1..max)  u8 type  fields...
 *
 * Requests (network -> HSM), by type:
 *   OPEN, PING, LIST_OBJECTS   no fields
 *   GENERATE                   label, u8 alg
 *   FIND_KEY, PUBLIC_KEY       label
 *   SIGN                       label, u8 format, u8 hash, u32 length + input (may be empty)
 *   GENERATE_DELIVERABLE       label
 *   DELIVER                    label, u8 length 65 + recipient point, u16 length 1..256 +
 *                              COSE_KDF_Context, u16 length 1..256 + Enc_structure
 *   DATA_GET                   label
 *   DATA_PUT                   label, u16 length + value (1..KBR_HSM_DATA_MAX),
 *                              u16 length + evidence (0..KBR_HSM_EVIDENCE_MAX)
 * Replies (HSM -> network): the request's type, u8 kbr_err, and only when
 * that is KBR_OK:
 *   GENERATE, FIND_KEY,
 *   GENERATE_DELIVERABLE       key info
 *   PUBLIC_KEY                 u16 length + SubjectPublicKeyInfo DER
 *   SIGN                       u16 length + signature
 *   LIST_OBJECTS               u32 count, then count key infos
 *   DELIVER                    u8 length 65 + ephemeral point, u8 length 24 + wrapped CEK,
 *                              u8 length 12 + IV, u16 length 161 + ciphertext
 * (the lengths of DELIVER's fixed fields are written, and must be exactly these)
 *   DATA_GET                   u8 count (0..KBR_HSM_DATA_OBJECTS_MAX), then count times
 *                              u16 length + value (1..KBR_HSM_DATA_MAX)
 * label: u8 length 1..KBR_HSM_LABEL_MAX-1 + bytes, no NUL.  Key info:
 * label (0..127 bytes), CKA_ID hex (0..64 lowercase hex), class and key type
 * names (0..15 bytes each), u8 alg_known, u8 alg, u8 flags (eight bits, all
 * defined).
 *
 * Decoding is strict: a field out of its bounds, an enum out of range, a
 * NUL inside a string or a byte left over refuses the whole frame, so the
 * only frames that decode are the ones the encoder makes (the fuzz target
 * checks that round trip).  The HSM process closes a connection on the
 * first frame it refuses.
 */
#ifndef KBR_HSM_WIRE_H
#define KBR_HSM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "kbr_hsm.h"

typedef enum {
    KBR_HSMW_OPEN = 1, /* first request of every connection: opens its PKCS#11 session */
    KBR_HSMW_PING,
    KBR_HSMW_GENERATE,
    KBR_HSMW_FIND_KEY,
    KBR_HSMW_PUBLIC_KEY,
    KBR_HSMW_SIGN,
    KBR_HSMW_LIST_OBJECTS,
    /* keys delivered to devices (kbr_hsm.h, pkcs11/deliver.c) */
    KBR_HSMW_GENERATE_DELIVERABLE,
    KBR_HSMW_DELIVER,
    KBR_HSMW_DATA_GET,
    KBR_HSMW_DATA_PUT,
    KBR_HSMW__END
} kbr_hsmw_type;

/* What a signature input may be: the largest message keybrokerd's body_limit lets through. */
#define KBR_HSMW_SIGN_INPUT_MAX (64u << 20)
/* An RSA-4096 signature is 512 bytes; an ECDSA P-384 DER one about 104. */
#define KBR_HSMW_SIG_MAX 1024
/* An RSA-4096 SubjectPublicKeyInfo is about 550 bytes. */
#define KBR_HSMW_PUBKEY_MAX 2048
/* Objects one LIST_OBJECTS reply carries: more than any token the broker serves holds. */
#define KBR_HSMW_LIST_MAX 16384
/* The largest key info as encoded above; it bounds the LIST_OBJECTS reply. */
#define KBR_HSMW_INFO_MAX (1 + 127 + 1 + 64 + 1 + 15 + 1 + 15 + 3)

#define KBR_HSMW_REQ_MAX  (1 + 1 + 127 + 2 + 4 + KBR_HSMW_SIGN_INPUT_MAX)
#define KBR_HSMW_RESP_MAX (2 + 4 + (size_t)KBR_HSMW_LIST_MAX * KBR_HSMW_INFO_MAX)
_Static_assert(KBR_HSMW_RESP_MAX > 3 + KBR_HSM_DATA_OBJECTS_MAX * (2 + KBR_HSM_DATA_MAX),
               "a DATA_GET reply fits a reply frame");

typedef struct {
    kbr_hsmw_type type;
    char label[KBR_HSM_LABEL_MAX]; /* GENERATE, FIND_KEY, PUBLIC_KEY, SIGN */
    kbr_alg alg;                   /* GENERATE */
    kbr_sig_format fmt;            /* SIGN */
    kbr_hash hash;                 /* SIGN */
    const unsigned char *in;       /* SIGN: the input; DATA_PUT: the value; into the frame */
    size_t inlen;
    /* DELIVER: point into the decoded frame */
    const unsigned char *recipient; /* 65 bytes */
    const unsigned char *kdf_context, *enc_structure;
    size_t kdf_context_len, enc_structure_len;
    const unsigned char *evidence; /* DATA_PUT: points into the decoded frame */
    size_t evlen;
} kbr_hsmw_req;

typedef struct {
    kbr_hsmw_type type;
    kbr_err err;
    kbr_hsm_key_info info;     /* GENERATE, FIND_KEY */
    const unsigned char *data; /* PUBLIC_KEY: DER; SIGN: signature; points into the frame */
    size_t len;
    /* DATA_GET: values (pointing into the frame; each value is not NUL-terminated) */
    kbr_hsm_data values[KBR_HSM_DATA_OBJECTS_MAX];
    size_t nvalues;
    kbr_hsm_key_info *items; /* LIST_OBJECTS: malloc()ed by the decoder (caller frees) */
    size_t n;
    kbr_hsm_delivery delivery; /* DELIVER */
} kbr_hsmw_resp;

/* A growable byte buffer; frames are built and received in one. */
typedef struct {
    unsigned char *p;
    size_t len, cap;
} kbr_hsmw_buf;

void kbr_hsmw_buf_free(kbr_hsmw_buf *b);

/*
 * Encoders: b is reset and receives the whole frame, length prefix
 * included.  KBR_ERR_BAD_REQUEST if a field is out of its bounds (nothing a
 * caller that checked its arguments sends), KBR_ERR_NOMEM.
 */
KBR_WUR kbr_err kbr_hsmw_req_encode(const kbr_hsmw_req *r, kbr_hsmw_buf *b);
KBR_WUR kbr_err kbr_hsmw_resp_encode(const kbr_hsmw_resp *r, kbr_hsmw_buf *b);

/*
 * Decoders of a frame's body (after the length prefix).  KBR_ERR_BAD_REQUEST
 * for anything the encoder would not have made; the reply's type must be
 * expect.  Pointers in *out point into body; resp_decode may allocate
 * out->items even on failure (free with kbr_hsmw_resp_clear).
 */
KBR_WUR kbr_err kbr_hsmw_req_decode(const unsigned char *body, size_t len, kbr_hsmw_req *out);
KBR_WUR kbr_err kbr_hsmw_resp_decode(const unsigned char *body, size_t len, kbr_hsmw_type expect,
                                     kbr_hsmw_resp *out);
void kbr_hsmw_resp_clear(kbr_hsmw_resp *r);

/*
 * The body length a frame header announces: KBR_ERR_BAD_REQUEST if it is 0
 * or more than max.  hdr holds at least 4 bytes.
 */
KBR_WUR kbr_err kbr_hsmw_frame_len(const unsigned char *hdr, size_t max, size_t *len);

/*
 * One frame over a stream socket.  recv reads exactly one frame into b
 * (b->p + 4 is the body, b->len - 4 its length): KBR_ERR_HSM at end of file
 * or on an I/O error, KBR_ERR_BAD_REQUEST for a frame out of bounds or bytes
 * past it (the peer talks out of turn).  send writes all of b.
 */
KBR_WUR kbr_err kbr_hsmw_recv(int fd, size_t max, kbr_hsmw_buf *b);
KBR_WUR kbr_err kbr_hsmw_send(int fd, const kbr_hsmw_buf *b);

/* The control channel's records are in kbr_hsm.h (kbr_hsm_ctl_*). */
/* A status record's bytes (the fuzz target drives it without a socket). */
KBR_WUR kbr_err kbr_hsmw_status_decode(const unsigned char *p, size_t n, kbr_err *status,
                                       kbr_msg *msg);

#endif
