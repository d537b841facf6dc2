/*
 * kbr_hsm.h - the HSM, reached through any PKCS#11 module.
 *
 * One kbr_hsm per process: it loads the module, finds the token by label and
 * logs in.  Each worker thread opens its own kbr_hsm_session.  Private keys
 * are generated on the token as CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE and not
 * CKA_EXTRACTABLE; nothing here ever reads private key material.
 *
 * A private key and its public key share CKA_LABEL and CKA_ID; keys are
 * addressed by label.
 *
 * Every CK_RV is translated by kbr_hsm_err_from_rv() and nowhere else.
 * Session-level failures (session closed, token removed, user logged out)
 * are retried once inside each operation after reopening the session and
 * logging in again, so a token that comes back is used again without a
 * restart.  If the retry fails too the call returns KBR_ERR_HSM.
 *
 * The same calls reach the HSM in two ways: kbr_hsm_open loads the module
 * into this process; kbr_hsm_remote_open reaches a process of its own that
 * holds the module, the PIN and the sessions (keybrokerd's HSM process,
 * which runs kbr_hsm_serve on a kbr_hsm_open'ed HSM).  Callers of the
 * session calls below cannot tell which.
 */
#ifndef KBR_HSM_H
#define KBR_HSM_H

#include <openssl/evp.h>

#include "kbr_common.h"

typedef enum {
    KBR_ALG_ECDSA_P256 = 0,
    KBR_ALG_ECDSA_P384,
    KBR_ALG_ED25519,
    KBR_ALG_RSA_3072,
    KBR_ALG_RSA_4096,
    KBR_ALG__COUNT
} kbr_alg;

/* "ecdsa-p256", ... ; KBR_ERR_BAD_REQUEST for an unknown name. */
KBR_WUR kbr_err kbr_alg_from_name(const char *name, kbr_alg *out);
/* Static string; never NULL. */
const char *kbr_alg_name(kbr_alg alg);

typedef enum {
    KBR_HASH_NONE = 0, /* Ed25519: the input is the message */
    KBR_HASH_SHA256,
    KBR_HASH_SHA384,
} kbr_hash;

typedef enum {
    KBR_SIG_ECDSA_RAW = 0, /* r||s, each padded to the field size (JWS form) */
    KBR_SIG_ECDSA_DER,     /* ECDSA-Sig-Value DER, as OpenSSL verifies it */
    KBR_SIG_EDDSA,         /* Ed25519 (pure) over the whole message */
    KBR_SIG_RSA_PSS,       /* RSASSA-PSS over a digest, MGF1 with the same hash, salt = hash len */
    KBR_SIG_RSA_PKCS1,     /* RSASSA-PKCS1-v1_5 over a digest (DigestInfo added here) */
} kbr_sig_format;

/* What the HSM reports about a key object right now. */
#define KBR_HSM_LABEL_MAX 128
typedef struct {
    char label[KBR_HSM_LABEL_MAX];
    char id_hex[65];     /* CKA_ID, lowercase hex */
    char class_name[16]; /* "private", "public", "secret" */
    char key_type[16];   /* "ec", "rsa", "ec-edwards", "aes", "other" */
    bool alg_known;      /* false if the key does not match a kbr_alg */
    kbr_alg alg;
    bool sensitive, extractable, always_sensitive, never_extractable, local;
    bool token, private_obj, can_sign;
} kbr_hsm_key_info;

typedef struct kbr_hsm kbr_hsm;
typedef struct kbr_hsm_session kbr_hsm_session;

/*
 * Loads module_path, finds the token whose CKA_LABEL is token_label, logs
 * the user in with pin.  The PIN is copied into locked memory owned by the
 * kbr_hsm (needed to log in again after a token comes back) and wiped by
 * kbr_hsm_close(); the caller still frees its own copy.
 * Errors: KBR_ERR_IO (module cannot be loaded), KBR_ERR_HSM_TOKEN,
 * KBR_ERR_HSM_PIN, KBR_ERR_HSM.  msg (may be NULL) names the cause.
 */
KBR_WUR kbr_err kbr_hsm_open(const char *module_path, const char *token_label,
                             const kbr_secret *pin, kbr_hsm **out, kbr_msg *msg);
/* Logs out, closes every session, C_Finalize, unloads; accepts NULL. */
void kbr_hsm_close(kbr_hsm *hsm);

/* Opens a session for the calling thread. Caller frees with kbr_hsm_session_close(). */
KBR_WUR kbr_err kbr_hsm_session_open(kbr_hsm *hsm, kbr_hsm_session **out);
void kbr_hsm_session_close(kbr_hsm_session *s);

/* Cheap liveness probe (C_GetSessionInfo, reopening once if needed). */
KBR_WUR kbr_err kbr_hsm_session_ping(kbr_hsm_session *s);

/*
 * Generates a key pair with the given label and a fresh random CKA_ID.
 * KBR_ERR_CONFLICT if an object with that label already exists.
 */
KBR_WUR kbr_err kbr_hsm_generate(kbr_hsm_session *s, const char *label, kbr_alg alg,
                                 kbr_hsm_key_info *out);

/* Private key with this label: KBR_ERR_NOT_FOUND if none. */
KBR_WUR kbr_err kbr_hsm_find_key(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out);

/* The key's public key (from its public object, or CKA_EC_POINT/CKA_PUBLIC_KEY_INFO). Caller
 * frees with EVP_PKEY_free / free. */
KBR_WUR kbr_err kbr_hsm_public_key(kbr_hsm_session *s, const char *label, EVP_PKEY **out);
KBR_WUR kbr_err kbr_hsm_public_key_pem(kbr_hsm_session *s, const char *label, char **out_pem);

/*
 * Signs with the private key labelled label.
 *  - ECDSA formats: in is a digest of the given hash (32 or 48 bytes).
 *  - KBR_SIG_EDDSA: hash must be KBR_HASH_NONE; in is the message.
 *  - RSA formats: in is a digest of the given hash.
 * On success *sig is malloc()ed (caller frees) and *siglen set.
 * KBR_ERR_BAD_REQUEST if the format does not fit the key's algorithm or the
 * digest length does not fit the hash; KBR_ERR_NOT_FOUND if no such key.
 */
KBR_WUR kbr_err kbr_hsm_sign(kbr_hsm_session *s, const char *label, kbr_sig_format fmt,
                             kbr_hash hash, const unsigned char *in, size_t inlen,
                             unsigned char **sig, size_t *siglen);

/* Every key object on the token (private, public and secret), in handle order. Caller frees
 * *out with free(). */
KBR_WUR kbr_err kbr_hsm_list_objects(kbr_hsm_session *s, kbr_hsm_key_info **out, size_t *n);

/* How long this process's kbr_hsm_* calls took, by call, failures included (/metrics). */
typedef enum {
    KBR_HSM_CALL_PING,
    KBR_HSM_CALL_GENERATE,
    KBR_HSM_CALL_FIND_KEY,
    KBR_HSM_CALL_PUBLIC_KEY,
    KBR_HSM_CALL_SIGN,
    KBR_HSM_CALL_LIST,
    KBR_HSM_CALL__COUNT
} kbr_hsm_call;
const char *kbr_hsm_call_name(kbr_hsm_call c);
const kbr_hist *kbr_hsm_call_latency(kbr_hsm_call c);

/*
 * Data objects: what the broker keeps in the HSM beside its keys, CKO_DATA token objects,
 * private, labelled label, whose CKA_VALUE is 1 to KBR_HSM_DATA_MAX bytes.  put makes a new
 * object holding value and then destroys the ones under label it replaces (HSMs may keep a
 * data object's value read-only), so an interrupted put leaves the old and the new.  get
 * returns the value of every object under label, 0 to KBR_HSM_DATA_OBJECTS_MAX of them in no
 * particular order (more is KBR_ERR_HSM_KEY); which is the latest is for the caller's values
 * to say.  Free with kbr_hsm_data_free.
 *
 * Through the HSM process (kbr_hsm_remote_open), a put is written only if that process's check
 * accepts it after the values the label holds, given evidence (at most KBR_HSM_EVIDENCE_MAX
 * bytes): the check's error otherwise.  A kbr_hsm_open'ed HSM writes what its caller asks.
 */
#define KBR_HSM_DATA_MAX         8192
#define KBR_HSM_EVIDENCE_MAX     4096
#define KBR_HSM_DATA_OBJECTS_MAX 4
typedef struct {
    unsigned char *value;
    size_t len;
} kbr_hsm_data;
KBR_WUR kbr_err kbr_hsm_data_get(kbr_hsm_session *s, const char *label, kbr_hsm_data **out,
                                 size_t *n);
void kbr_hsm_data_free(kbr_hsm_data *items, size_t n);
KBR_WUR kbr_err kbr_hsm_data_put(kbr_hsm_session *s, const char *label, const unsigned char *value,
                                 size_t len, const unsigned char *evidence, size_t evlen);

/*
 * The HSM in a process of its own.  ctl is a SOCK_SEQPACKET socket between
 * the two processes; each session is a socketpair whose one end travels
 * over it.  The framing is pkcs11/wire.h.
 *
 * kbr_hsm_remote_open: a kbr_hsm whose sessions are connections to the
 * process at the other end of ctl (which it owns and kbr_hsm_close closes).
 * A session whose connection broke fails that call with KBR_ERR_HSM and
 * connects again on its next call.
 *
 * kbr_hsm_serve: answers each connection arriving over ctl on its own
 * thread and session of hsm (which must come from kbr_hsm_open), until ctl
 * reaches end of file and every connection has ended.  Malformed frames
 * close their connection.  Connections read and write the data objects of
 * one label, data->label, and nothing else (KBR_ERR_FORBIDDEN; all of them
 * without data).  A put is written only when data->check (run with the
 * writing connection's session, one write at a time) accepts the new value
 * after the values the label holds now (nold of them, possibly none), given
 * the evidence that came with it; check answers KBR_OK or the error the
 * writer gets.
 */
typedef kbr_err (*kbr_hsm_data_check_fn)(void *arg, kbr_hsm_session *s, const kbr_hsm_data *old,
                                         size_t nold, const unsigned char *value, size_t len,
                                         const unsigned char *evidence, size_t evlen);
typedef struct {
    const char *label;
    kbr_hsm_data_check_fn check;
    void *arg;
} kbr_hsm_data_policy;
KBR_WUR kbr_err kbr_hsm_remote_open(int ctl, kbr_hsm **out);
KBR_WUR kbr_err kbr_hsm_serve(kbr_hsm *hsm, int ctl, const kbr_hsm_data_policy *data);

/*
 * The control socket's records, for whatever starts HSM processes and
 * passes connections on to them.  A connection's socket travels as
 * SCM_RIGHTS in a one-byte record; an HSM process says once whether it came
 * up, as a record of the kbr_err and the message naming the cause.
 * recv_fd: *fd is -1 at end of file (KBR_OK); a record that is not one
 * byte with one descriptor is KBR_ERR_BAD_REQUEST (its descriptors closed).
 * I/O errors and end of file while a status is awaited are KBR_ERR_HSM.
 */
kbr_err kbr_hsm_ctl_send_fd(int ctl, int fd);
KBR_WUR kbr_err kbr_hsm_ctl_recv_fd(int ctl, int *fd);
KBR_WUR kbr_err kbr_hsm_ctl_send_status(int ctl, kbr_err status, const char *text);
KBR_WUR kbr_err kbr_hsm_ctl_recv_status(int ctl, kbr_err *status, kbr_msg *msg);

/* The one CK_RV translation (CK_RV passed as unsigned long to keep pkcs11.h private). */
kbr_err kbr_hsm_err_from_rv(unsigned long rv);

/*
 * ---- keys delivered to devices (purpose ota-encryption; pkcs11/deliver.c) ----
 *
 * kbr_hsm_generate_deliverable: an EC P-256 key pair whose private key devices need (to
 * decrypt firmware images encrypted to its public key).  The private key is a token object,
 * CKA_PRIVATE and CKA_SENSITIVE (its value is never readable) but CKA_EXTRACTABLE, so that
 * C_WrapKey can seal it, and it has no use of its own in the HSM: CKA_SIGN, CKA_SIGN_RECOVER,
 * CKA_DECRYPT, CKA_UNWRAP and CKA_DERIVE are false.  KBR_ERR_CONFLICT if the label is taken.
 *
 * kbr_hsm_deliver: the private key labelled label sealed to one device, as the two layers of
 * an RFC 9052 COSE_Encrypt the caller assembles (cose/encrypt.c): ECDH-ES + A128KW (RFC 9053
 * 6.3.1, HKDF-SHA-256 with kdf_context as info) to the device's P-256 key recipient, around
 * a fresh 128-bit CEK; AES-128-GCM under that CEK (iv, additional data enc_structure) of the
 * private key as a COSE_Key: {1 kty: 2 (EC2), 2 kid: SHA-256 of the key's SubjectPublicKeyInfo DER,
 * -1 crv: 1 (P-256), -2 x, -3 y, -4 d}, in deterministic CBOR (KBR_HSM_DELIVERY_PLAIN_LEN
 * bytes).  Only the public values and ciphertexts come back.
 * Errors: KBR_ERR_NOT_FOUND (no such key), KBR_ERR_FORBIDDEN (the key is not a deliverable
 * P-256 key: a signing key, say), KBR_ERR_BAD_REQUEST (recipient is not a point of P-256,
 * kdf_context or enc_structure empty or over KBR_HSM_DELIVERY_CONTEXT_MAX).
 */
KBR_WUR kbr_err kbr_hsm_generate_deliverable(kbr_hsm_session *s, const char *label,
                                             kbr_hsm_key_info *out);

#define KBR_HSM_DELIVERY_CONTEXT_MAX 256
#define KBR_HSM_DELIVERY_PLAIN_LEN   145
#define KBR_HSM_DELIVERY_CT_LEN      (KBR_HSM_DELIVERY_PLAIN_LEN + 16)

typedef struct {
    unsigned char recipient[65]; /* the device's key: 0x04 || x || y */
    const unsigned char *kdf_context;
    size_t kdf_context_len;
    const unsigned char *enc_structure; /* the content layer's additional data */
    size_t enc_structure_len;
} kbr_hsm_delivery_req;

typedef struct {
    unsigned char ephemeral[65];   /* the ephemeral public key: 0x04 || x || y */
    unsigned char wrapped_cek[24]; /* AES key wrap (RFC 3394) of the CEK */
    unsigned char iv[12];
    unsigned char ciphertext[KBR_HSM_DELIVERY_CT_LEN]; /* GCM ciphertext || 16-byte tag */
} kbr_hsm_delivery;

KBR_WUR kbr_err kbr_hsm_deliver(kbr_hsm_session *s, const char *label,
                                const kbr_hsm_delivery_req *req, kbr_hsm_delivery *out);

#endif
