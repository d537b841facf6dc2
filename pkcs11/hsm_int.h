/*
 * hsm_int.h - what the pkcs11/ files share and nothing outside them sees:
 * the kbr_hsm and kbr_hsm_session structs, the two implementations behind
 * the public calls, the retry wrapper every PKCS#11 operation runs through,
 * and the object look-up helpers.
 *
 * The OASIS header is included last because its compatibility macros rename
 * common identifiers (value, count, params) and must not reach other headers.
 */
#ifndef KBR_HSM_INT_H
#define KBR_HSM_INT_H

#include <pthread.h>
#include <time.h>

#include "kbr_hsm.h"
#include "wire.h"

#include <p11-kit/pkcs11.h>

/*
 * One API, two ways to the HSM: the module loaded in this process
 * (kbr_hsm_open: hsm.c, keys.c, objects.c, sign.c) or the HSM process over
 * a socket (kbr_hsm_remote_open: remote.c).  api.c sends each public call
 * through the kbr_hsm's table, after checking its arguments and clearing
 * its outputs, so neither implementation repeats that.
 */
typedef struct {
    void (*close)(kbr_hsm *hsm);
    kbr_err (*session_open)(kbr_hsm *hsm, kbr_hsm_session **out);
    void (*session_close)(kbr_hsm_session *s);
    kbr_err (*ping)(kbr_hsm_session *s);
    kbr_err (*generate)(kbr_hsm_session *s, const char *label, kbr_alg alg, kbr_hsm_key_info *out);
    kbr_err (*find_key)(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out);
    kbr_err (*public_key)(kbr_hsm_session *s, const char *label, EVP_PKEY **out);
    kbr_err (*sign)(kbr_hsm_session *s, const char *label, kbr_sig_format fmt, kbr_hash hash,
                    const unsigned char *in, size_t inlen, unsigned char **sig, size_t *siglen);
    kbr_err (*list_objects)(kbr_hsm_session *s, kbr_hsm_key_info **out, size_t *n);
    /* keys delivered to devices (deliver.c) */
    kbr_err (*generate_deliverable)(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out);
    kbr_err (*deliver)(kbr_hsm_session *s, const char *label, const kbr_hsm_delivery_req *req,
                       kbr_hsm_delivery *out);
    kbr_err (*data_get)(kbr_hsm_session *s, const char *label, kbr_hsm_data **out, size_t *n);
    kbr_err (*data_put)(kbr_hsm_session *s, const char *label, const unsigned char *value,
                        size_t len, const unsigned char *evidence, size_t evlen);
} kbr_hsm_ops;

extern const kbr_hsm_ops kbr_p11_local_ops;
extern const kbr_hsm_ops kbr_p11_remote_ops;

/* The module in this process. */
KBR_WUR kbr_err kbr_p11_session_open(kbr_hsm *hsm, kbr_hsm_session **out);
void kbr_p11_session_close(kbr_hsm_session *s);
KBR_WUR kbr_err kbr_p11_session_ping(kbr_hsm_session *s);
KBR_WUR kbr_err kbr_p11_generate(kbr_hsm_session *s, const char *label, kbr_alg alg,
                                 kbr_hsm_key_info *out);
KBR_WUR kbr_err kbr_p11_find_key(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out);
KBR_WUR kbr_err kbr_p11_public_key(kbr_hsm_session *s, const char *label, EVP_PKEY **out);
KBR_WUR kbr_err kbr_p11_sign(kbr_hsm_session *s, const char *label, kbr_sig_format fmt,
                             kbr_hash hash, const unsigned char *in, size_t inlen,
                             unsigned char **sig, size_t *siglen);
KBR_WUR kbr_err kbr_p11_list_objects(kbr_hsm_session *s, kbr_hsm_key_info **out, size_t *n);
KBR_WUR kbr_err kbr_p11_generate_deliverable(kbr_hsm_session *s, const char *label,
                                             kbr_hsm_key_info *out);
KBR_WUR kbr_err kbr_p11_deliver(kbr_hsm_session *s, const char *label,
                                const kbr_hsm_delivery_req *req, kbr_hsm_delivery *out);
/* data.c: kbr_hsm_data_get and kbr_hsm_data_put in this process. */
KBR_WUR kbr_err kbr_p11_data_get(kbr_hsm_session *s, const char *label, kbr_hsm_data **out,
                                 size_t *n);
KBR_WUR kbr_err kbr_p11_data_put(kbr_hsm_session *s, const char *label, const unsigned char *value,
                                 size_t len);

struct kbr_hsm {
    const kbr_hsm_ops *ops;
    /* remote: the control socket new connections travel over (-1 for the module) */
    int ctl;
    void *dl;
    CK_FUNCTION_LIST *f;
    bool finalize; /* we initialized the module, so we finalize it */
    /* Guards slot, anchor and every login: recovery runs from any worker. */
    pthread_mutex_t lock;
    /*
     * Making a key runs alone: it holds this for writing (which also keeps the label check and
     * the generation together, so a label stays unique), every other call that touches token
     * objects holds it for reading.  Some modules fail an object creation that runs while
     * other sessions read token objects (SoftHSM2's file object store: CKR_GENERAL_ERROR,
     * SoftHSMv2 issue 573); keys are made rarely, so the wait costs nothing that matters.
     */
    pthread_rwlock_t objects_lock;
    CK_SLOT_ID slot;
    bool slot_known;
    /* A session held for the life of the kbr_hsm: the login lasts as long as
     * one session of the application stays open. */
    CK_SESSION_HANDLE anchor;
    bool anchor_open;
    unsigned char token_label[32]; /* space-padded, as CK_TOKEN_INFO has it */
    kbr_secret *pin;
    /* After a failed login, workers answer at once until retry_at instead of all
     * hammering a token that is not there; the wait doubles up to a bound. */
    struct timespec retry_at;
    long backoff_ms;
};

/* Enough for the keys one broker signs with; a miss only costs a C_FindObjects. */
#define KBR_P11_CACHE_SLOTS 64
typedef struct {
    char label[KBR_HSM_LABEL_MAX];
    CK_OBJECT_HANDLE handle;
    kbr_alg alg;
    bool used;
} kbr_p11_cached_key;

struct kbr_hsm_session {
    kbr_hsm *hsm;
    CK_SESSION_HANDLE h;
    bool open;
    kbr_p11_cached_key cache[KBR_P11_CACHE_SLOTS];
    size_t cache_next; /* round-robin eviction */
    /* remote: this session's connection to the HSM process (-1 once lost) and its frames */
    int fd;
    kbr_hsmw_buf buf;
};

/* One try of an operation; must set its outputs only on success. */
typedef kbr_err (*kbr_p11_attempt)(kbr_hsm_session *s, void *ctx);

/*
 * Runs fn; on KBR_ERR_HSM_SESSION reopens the session (logging in again and
 * finding the token again if needed) and runs fn once more.  A second
 * session failure, or a failed reopen, is KBR_ERR_HSM.
 */
KBR_WUR kbr_err kbr_p11_with_retry(kbr_hsm_session *s, kbr_p11_attempt fn, void *ctx);

/* KBR_ERR_HSM_SESSION if the session is no longer logged in as the user. */
KBR_WUR kbr_err kbr_p11_check_login(kbr_hsm_session *s);

/* KBR_ERR_BAD_REQUEST unless 1..KBR_HSM_LABEL_MAX-1 bytes. */
KBR_WUR kbr_err kbr_p11_label_check(const char *label);

/*
 * Every object matching templ.  *out is malloc()ed (caller frees), NULL when
 * *n is 0.
 */
KBR_WUR kbr_err kbr_p11_find_all(kbr_hsm_session *s, CK_ATTRIBUTE *templ, CK_ULONG tn,
                                 CK_OBJECT_HANDLE **out, size_t *n);
/*
 * The first object of class cls labelled label; KBR_ERR_NOT_FOUND if none
 * (after making sure a logged-out session is not what hides it).
 */
KBR_WUR kbr_err kbr_p11_find_one(kbr_hsm_session *s, CK_OBJECT_CLASS cls, const char *label,
                                 CK_OBJECT_HANDLE *out);

/* A variable-length attribute, malloc()ed (caller frees); KBR_ERR_HSM_KEY if absent. */
KBR_WUR kbr_err kbr_p11_get_attr(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                                 unsigned char **out, size_t *outlen);
/* A fixed-size attribute (CK_ULONG, CK_BBOOL); KBR_ERR_HSM_KEY if absent. */
KBR_WUR kbr_err kbr_p11_get_fixed(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                                  void *buf, size_t len);

/* The key object's kbr_alg; *known false if it matches none. */
KBR_WUR kbr_err kbr_p11_key_alg(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, CK_KEY_TYPE kt,
                                bool *known, kbr_alg *alg);
/* What the HSM reports about obj. */
KBR_WUR kbr_err kbr_p11_read_info(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, kbr_hsm_key_info *out);

/* An EC point as CKA_EC_POINT holds it (a DER OCTET STRING, or bare) into pt, expect bytes. */
KBR_WUR kbr_err kbr_p11_point_unwrap(const unsigned char *p, size_t n, size_t expect,
                                     unsigned char *pt);

/* DER of the curve's named-curve OID as CKA_EC_PARAMS carries it. */
const unsigned char *kbr_p11_curve_der(kbr_alg alg, size_t *len);

/* Per-session handle cache for signing keys. */
void kbr_p11_cache_clear(kbr_hsm_session *s);
void kbr_p11_cache_drop(kbr_hsm_session *s, const char *label);
/*
 * The private key labelled label and its algorithm, from the cache or a fresh
 * look-up (then cached).  *cached tells which, so a stale handle can be
 * dropped and looked up once more.
 */
KBR_WUR kbr_err kbr_p11_signing_key(kbr_hsm_session *s, const char *label, CK_OBJECT_HANDLE *h,
                                    kbr_alg *alg, bool *cached);

#endif
