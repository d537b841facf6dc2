/*
 * kbr_common.h - the error type, secrets and small encoders shared by every
 * keybroker module.
 *
 * Every fallible function returns kbr_err.  Foreign error spaces (CK_RV,
 * SQLite result codes, OpenSSL errors, HTTP status) are each translated in
 * exactly one function: kbr_hsm_err_from_rv() in pkcs11/, the store's
 * sqlite mapping in audit/, kbr_err_http_status() in broker/.
 */
#ifndef KBR_COMMON_H
#define KBR_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#define KBR_WUR __attribute__((warn_unused_result))

typedef enum {
    KBR_OK = 0,
    KBR_ERR_NOMEM,            /* allocation failed */
    KBR_ERR_BAD_REQUEST,      /* malformed input; 400 bad_request */
    KBR_ERR_UNAUTHENTICATED,  /* 401 */
    KBR_ERR_FORBIDDEN,        /* 403 */
    KBR_ERR_NOT_FOUND,        /* 404 */
    KBR_ERR_CONFLICT,         /* 409 */
    KBR_ERR_TOO_LARGE,        /* 413 */
    KBR_ERR_QUOTA,            /* 429 quota_exhausted */
    KBR_ERR_RATE_LIMITED,     /* 429 rate_limited */
    KBR_ERR_AUDIT,            /* the audit record could not be made durable */
    KBR_ERR_HSM,              /* HSM unreachable or failing */
    KBR_ERR_HSM_SESSION,      /* session or login lost; the caller may reopen */
    KBR_ERR_HSM_PIN,          /* PIN refused or locked */
    KBR_ERR_HSM_TOKEN,        /* no token with the configured label */
    KBR_ERR_HSM_MECHANISM,    /* mechanism or key type not supported */
    KBR_ERR_HSM_KEY,          /* key object missing or of the wrong type */
    KBR_ERR_CRYPTO,           /* an OpenSSL operation failed */
    KBR_ERR_STORE,            /* the store failed (I/O, corruption) */
    KBR_ERR_STORE_CONSTRAINT, /* a ledger rule (uniqueness, existence, batch quantity) was hit */
    KBR_ERR_CONFIG,           /* bad configuration */
    KBR_ERR_IO,               /* a file could not be read or written */
    KBR_ERR_INTERNAL,         /* a broken invariant */
    KBR_ERR__COUNT
} kbr_err;

/* A static English description of the error; never NULL. */
const char *kbr_err_str(kbr_err err);

/*
 * The API's view of an error (docs/api.md "Errors"), one table for the daemon and the CLI:
 * the HTTP status, the error code ("bad_request", ..., "hsm_unavailable", "internal_error";
 * NULL for KBR_OK), and the class it is shown as (kbr_err_public: a lost HSM session is
 * KBR_ERR_HSM, a store failure KBR_ERR_AUDIT, memory or a broken invariant KBR_ERR_INTERNAL).
 * kbr_err_from_api is the client's way back: the class an answer's status and code stand for.
 */
int kbr_err_http_status(kbr_err err);
const char *kbr_err_api_code(kbr_err err);
kbr_err kbr_err_public(kbr_err err);
kbr_err kbr_err_from_api(long status, const char *code);

/*
 * Guard macros.  A function using them declares `kbr_err err = KBR_OK;` and
 * ends in an `out:` label that frees everything and returns err.
 */
#define KBR_GUARD(call)                                                                            \
    do {                                                                                           \
        kbr_err kbr_guard_err_ = (call);                                                           \
        if (kbr_guard_err_ != KBR_OK) {                                                            \
            err = kbr_guard_err_;                                                                  \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

#define KBR_ENSURE(cond, code)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            err = (code);                                                                          \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* Messages that name the offending field travel in a fixed buffer. */
#define KBR_MSG_LEN 256
typedef struct {
    char text[KBR_MSG_LEN];
} kbr_msg;

/* printf into msg (truncating); returns code so `return kbr_fail(m, E, ...)` reads well. */
kbr_err kbr_fail(kbr_msg *msg, kbr_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Secrets: PINs and token strings.  The buffer is NUL-terminated for the
 * APIs that want C strings, wiped on free, and optionally mlock()ed so it
 * never reaches swap.
 */
typedef struct {
    unsigned char *buf;
    size_t len;
    bool locked;
} kbr_secret;

/* Reads a whole file (trailing newlines stripped) into a new locked secret. Caller frees. */
KBR_WUR kbr_err kbr_secret_from_file(const char *path, kbr_secret **out);
/* Copies len bytes into a new secret. Caller frees. */
KBR_WUR kbr_err kbr_secret_new(const void *data, size_t len, kbr_secret **out);
/* Wipes and frees; accepts NULL. */
void kbr_secret_free(kbr_secret *s);
/* Constant-time comparison of two byte strings of possibly different lengths. */
bool kbr_secret_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Hex (lowercase). decode accepts only [0-9a-f] (either case), even length. */
KBR_WUR kbr_err kbr_hex_encode(const unsigned char *in, size_t len, char **out);
void kbr_hex_encode_buf(const unsigned char *in, size_t len, char *out /* 2*len+1 */);
KBR_WUR kbr_err kbr_hex_decode(const char *in, unsigned char **out, size_t *outlen);

/* Base64: standard alphabet with padding; base64url: no padding (JWT). Caller frees. */
KBR_WUR kbr_err kbr_b64_encode(const unsigned char *in, size_t len, char **out);
KBR_WUR kbr_err kbr_b64_decode(const char *in, unsigned char **out, size_t *outlen);
KBR_WUR kbr_err kbr_b64url_encode(const unsigned char *in, size_t len, char **out);
KBR_WUR kbr_err kbr_b64url_decode(const char *in, size_t inlen, unsigned char **out,
                                  size_t *outlen);

/* SHA-256 / SHA-384. */
/* SHA-256, its algorithm fetched once per process (EVP_sha256() fetches on every use). */
const struct evp_md_st *kbr_md_sha256(void);
void kbr_sha256(const void *data, size_t len, unsigned char out[32]);
void kbr_sha256_hex(const void *data, size_t len, char out[65]);

/*
 * An ECDSA signature as r||s (PKCS#11, JWS, COSE: each half of raw) as
 * the DER ECDSA-Sig-Value OpenSSL verifies.  raw must have an even,
 * non-zero length.  Caller frees *der with free().
 */
KBR_WUR kbr_err kbr_ecdsa_raw_to_der(const unsigned char *raw, size_t len, unsigned char **der,
                                     size_t *derlen);

/* n random bytes from the OpenSSL DRBG, as 2n lowercase hex chars (+NUL). */
KBR_WUR kbr_err kbr_random_hex(size_t nbytes, char *out);

/* RFC 3339 UTC, second precision: "2026-11-28T14:00:00Z". buf >= 21 bytes. */
#define KBR_TIME_LEN 21
void kbr_time_fmt(time_t t, char buf[KBR_TIME_LEN]);
KBR_WUR kbr_err kbr_time_parse(const char *s, time_t *out);
/* Seconds on the monotonic clock, for intervals and deadlines (not wall time). */
double kbr_monotonic_seconds(void);

/*
 * Canonical JSON: the JSON Canonicalization Scheme of RFC 8785 (members sorted by their
 * names' UTF-16 code units, no whitespace, strings as UTF-8 with only the escapes JSON needs,
 * numbers as ECMAScript writes them), so any JCS implementation computes the same bytes.
 * The audit chain hashes it.  KBR_ERR_BAD_REQUEST for a value JCS has no text for (NaN, an
 * infinity, nesting deeper than 128).  Caller frees.
 */
KBR_WUR kbr_err kbr_json_canonical(const json_t *v, char **out);

/*
 * The compact text of an object or array with its members in their own (insertion) order:
 * the bytes json_dumps(v, JSON_COMPACT) writes, \u00XX escapes in upper case included,
 * written into one buffer.  The buffer is wiped as it grows (an answer can carry a token).
 * KBR_ERR_BAD_REQUEST for what json_dumps refuses too (a string that is not UTF-8, a root
 * that is neither object nor array) and for nesting deeper than 128.  Caller wipes and frees.
 */
KBR_WUR kbr_err kbr_json_compact(const json_t *v, char **out, size_t *len);

/* Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
bool kbr_utf8_valid(const char *s, size_t n);

/*
 * The canonical text of a value whose shape the caller knows, written straight into a buffer:
 * no tree is built and nothing is sorted, because the caller names each object's members in
 * the order RFC 8785 sorts them (kbr_jcs_key refuses a name that does not sort after the one
 * before it, so a shape written out of order fails rather than hashing a text no other JCS
 * implementation computes).  Errors stick: the first one is what kbr_jcs_finish returns.
 *
 *   kbr_jcs w = {0};
 *   kbr_jcs_object(&w);
 *   kbr_jcs_member_str(&w, "at", at);    // required: NULL is an error
 *   kbr_jcs_member_opt(&w, "note", note); // left out when NULL
 *   kbr_jcs_end(&w);
 *   err = kbr_jcs_finish(&w, &text, &len);
 */
#define KBR_JCS_DEPTH 16
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
    bool wipe; /* growing wipes the old buffer before it is freed */
} kbr_jcs_buf;

typedef struct {
    kbr_jcs_buf buf;
    kbr_err err;
    int depth;
    struct {
        bool object, empty;
        const char *last; /* the previous member's name (an object's), not copied */
    } open[KBR_JCS_DEPTH];
} kbr_jcs;

void kbr_jcs_object(kbr_jcs *w);
void kbr_jcs_array(kbr_jcs *w);
/* Closes the innermost object or array. */
void kbr_jcs_end(kbr_jcs *w);
/* The next member's name (a static, ASCII or UTF-8 string that outlives the object). */
void kbr_jcs_key(kbr_jcs *w, const char *name);
/* Values: a string (NULL writes null; not UTF-8 is KBR_ERR_BAD_REQUEST), null, numbers,
 * booleans, a jansson value's canonical text, or a JSON text's (KBR_ERR_BAD_REQUEST when it is
 * not one JSON value). */
void kbr_jcs_str(kbr_jcs *w, const char *s);
void kbr_jcs_null(kbr_jcs *w);
void kbr_jcs_int(kbr_jcs *w, int64_t v);
void kbr_jcs_bool(kbr_jcs *w, bool v);
void kbr_jcs_json(kbr_jcs *w, const json_t *v);
void kbr_jcs_json_text(kbr_jcs *w, const char *text);
/* Members: a string that must be there (NULL is KBR_ERR_INTERNAL: a shape's rule broken), one
 * written null when NULL, one left out when NULL; an integer; a boolean; a list of strings. */
void kbr_jcs_member_str(kbr_jcs *w, const char *name, const char *s);
void kbr_jcs_member_nullable(kbr_jcs *w, const char *name, const char *s);
void kbr_jcs_member_opt(kbr_jcs *w, const char *name, const char *s);
void kbr_jcs_member_int(kbr_jcs *w, const char *name, int64_t v);
void kbr_jcs_member_bool(kbr_jcs *w, const char *name, bool v);
/* Marks w failed with err, unless it already failed. */
void kbr_jcs_fail(kbr_jcs *w, kbr_err err);
/* The text (NUL-terminated, *len without the NUL; the caller frees) once every object and
 * array is closed, or the first error; the buffer is released either way. */
KBR_WUR kbr_err kbr_jcs_finish(kbr_jcs *w, char **out, size_t *len);

/*
 * Names (common/names.c): keys, products, batches, devices are 1..KBR_NAME_MAX characters of
 * [A-Za-z0-9._:@+-] and never "." or ".."; a principal's name (after "kind:") may also hold
 * '/'.  A scope entry is a name, or a prefix followed by '*' that matches every name with
 * that prefix ("*" matches any name): kbr_name_matches is that rule, the only one.
 */
#define KBR_NAME_MAX 128
bool kbr_name_char(char c);
bool kbr_name_valid(const char *s);
bool kbr_principal_name_valid(const char *s, size_t n);
bool kbr_name_pattern_valid(const char *s, size_t n);
bool kbr_name_matches(const char *pattern, const char *name);
/* Does every name inner matches (a name or a pattern) also match outer? */
bool kbr_name_pattern_covers(const char *outer, const char *inner);
/* The scope entries that reach name, as a compact JSON array of strings (*out is the caller's):
 * name itself and each of its prefixes followed by '*' ("*" alone reaches every name),
 * prefixes ending on UTF-8 character boundaries as the names in a scope do.  A store looks a
 * name's tokens up by these, which is kbr_name_matches read backwards. */
KBR_WUR kbr_err kbr_name_patterns_reaching(const char *name, char **out);

/*
 * An arena: many small allocations freed at once, for values (a record's ledger effects, a
 * request's scratch) whose parts all live exactly as long as the whole.  Blocks grow as
 * needed; nothing is freed one by one.  kbr_arena_free accepts NULL.
 */
typedef struct kbr_arena kbr_arena;
KBR_WUR kbr_err kbr_arena_new(kbr_arena **out);
void kbr_arena_free(kbr_arena *a);
/* n bytes, zeroed and aligned for any type; NULL when out of memory. */
void *kbr_arena_alloc(kbr_arena *a, size_t n);
/* A copy of s in the arena; NULL for NULL (and when out of memory: check s != NULL). */
char *kbr_arena_strdup(kbr_arena *a, const char *s);

/* Reads a whole file into a NUL-terminated heap buffer. Caller frees. */
KBR_WUR kbr_err kbr_file_read(const char *path, size_t limit, char **out, size_t *outlen);
/*
 * Writes data to path, in the one way that cannot damage what path names
 * (its last component is never followed):
 *  - nothing yet, or a regular file: a new file is created beside it (mode
 *    0600 from the start, then `mode`), written, fsync()ed and renamed over
 *    path, and the directory fsync()ed; readers see the old or the new data;
 *  - "-": standard output;
 *  - a FIFO or character device (/dev/null, a terminal) of the caller or
 *    root: written in place, without creating or truncating anything; mode
 *    is not applied, but a secret (mode without group or other bits) is not
 *    written into a FIFO others may read. Opening a FIFO waits for its reader;
 *  - a symbolic link, directory, block device or socket, or a FIFO or device
 *    of another user: refused.
 * Failures are KBR_ERR_IO with msg (may be NULL) naming path and why.
 */
KBR_WUR kbr_err kbr_file_write(const char *path, const void *data, size_t len, unsigned mode,
                               kbr_msg *msg);
/*
 * The checks kbr_file_write() makes before it writes, plus a writable
 * directory where it would create the file: for callers that must know
 * before a step that cannot be undone (a certificate issued once).
 */
KBR_WUR kbr_err kbr_file_write_check(const char *path, unsigned mode, kbr_msg *msg);

/*
 * A histogram for /metrics (Prometheus): a count per upper bound, a count of all and a sum,
 * each updated with one atomic add, so any thread observes and any thread reads.  bounds is
 * an increasing static array of at most KBR_HIST_BUCKETS values; the last count is +Inf.
 * The sum is kept in millionths, exact for seconds to the microsecond and for counts.
 */
#define KBR_HIST_BUCKETS 16
typedef struct {
    const double *bounds;
    size_t nbounds;
    _Atomic uint64_t counts[KBR_HIST_BUCKETS + 1]; /* not cumulative */
    _Atomic uint64_t sum_millionths;
} kbr_hist;
/* Seconds, 0.5 ms to 10 s: request, HSM call and commit latencies. */
extern const double kbr_hist_seconds[];
extern const size_t kbr_hist_seconds_n;
void kbr_hist_init(kbr_hist *h, const double *bounds, size_t nbounds);
void kbr_hist_observe(kbr_hist *h, double value);

#endif
