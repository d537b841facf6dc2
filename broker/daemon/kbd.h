/*
 * kbd.h - keybrokerd's private interfaces: configuration, the request
 * pipeline (event thread -> worker -> audit writer -> event thread), the
 * key registry and the handlers.
 *
 * Threads: one event thread owns libevent, the policy registry and the key
 * registry; N workers each own an HSM session and a store read connection;
 * the audit writer owns the store's write connection.  A request object
 * moves between them through queues and is only ever touched by one thread
 * at a time.
 */
#ifndef KBD_H
#define KBD_H

#include <stdatomic.h>
#include <pthread.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "kbr_audit.h"
#include "kbr_common.h"
#include "kbr_hsm.h"
#include "kbr_policy.h"
#include "kbr_store.h"

#define KBD_ISSUER_LABEL "kbr/issuer"
/* The first audit key; each rotation makes the next, "kbr/audit/2", "kbr/audit/3", ... */
#define KBD_AUDIT_LABEL "kbr/audit"
/* The HSM data object holding the latest signed tree head (arecord.c). */
#define KBD_RECORD_LABEL     "kbr/audit/record"
#define KBD_KEY_LABEL_PREFIX "kbr/key/"
#define KBD_BOOTSTRAP_SUB    "security:bootstrap"
#define KBD_SERVICE_SUB      "service:keybrokerd"

/* ---- configuration (config.c) ---- */
typedef struct {
    char *listen_host;
    int listen_port;
    char *port_file;
    char *instance_id;
    char *audit_origin; /* the signed notes' origin and key name; default instance_id */
    char *pkcs11_module;
    char *token_label;
    char *pin_file;
    char *store;
    char *bootstrap_token_file;
    int workers;
    char *tls_cert, *tls_key, *tls_client_ca;
    size_t body_limit;
    long checkpoint_entries, checkpoint_seconds;
    long max_token_ttl;
    long device_cert_days;
    long debug_unlock_seconds;
    long rate_limit;                 /* requests per second per principal; 0: none */
    long unauth_audit_rate;          /* unauthenticated denials recorded per second per source */
    long max_connections;            /* open connections, all sources */
    bool max_connections_set;        /* by the file, not the default */
    long max_connections_per_source; /* per IPv4 or IPv6 address */
    long request_timeout;            /* seconds to deliver a whole request */
} kbd_config;

KBR_WUR kbr_err kbd_config_load(const char *path, kbd_config *cfg, kbr_msg *msg);
void kbd_config_cleanup(kbd_config *cfg);

/* ---- key registry (keys.c): the event thread's view of the keys table ---- */
typedef struct kbd_key kbd_key;
struct kbd_key {
    char *name, *purpose, *hsm_label;
    kbr_alg alg;
    json_t *products; /* array of strings */
    bool retired;
};
typedef struct kbd_keys kbd_keys;
KBR_WUR kbr_err kbd_keys_new(kbd_keys **out);
void kbd_keys_free(kbd_keys *k);
/* Adds or replaces from a key object as the store shows it. */
KBR_WUR kbr_err kbd_keys_put(kbd_keys *k, const json_t *key);
kbd_key *kbd_keys_find(kbd_keys *k, const char *name); /* borrowed, NULL if none */
/* The registry entry whose HSM object has this label, or NULL.  Borrowed. */
kbd_key *kbd_keys_find_label(kbd_keys *k, const char *label);
bool kbd_key_serves_product(const kbd_key *key, const char *product);
/*
 * The tenancy rule for keys (API.md "Custody boundaries"), on a key's name and products (an
 * array of strings).  A scope sees a key when its keys list covers the name and, if it is
 * limited to products, the key serves at least one of them (a CI job may read the public
 * key of what it signs with).  It holds a key, and so may change it or read its custody,
 * when it also covers every product the key serves: a key shared with another product is
 * that product's too.
 */
bool kbd_scope_sees_key(const kbr_scope *s, const char *name, const json_t *products);
bool kbd_scope_holds_key(const kbr_scope *s, const char *name, const json_t *products);

/* ---- batch registry (batches.c): production orders and their exact counters ---- */
typedef struct {
    char *batch, *product, *factory;
    int64_t quantity;
    int64_t provisioned; /* committed devices */
    int64_t reserved;    /* provisionings in flight */
} kbd_batch;
typedef struct kbd_batches kbd_batches;
KBR_WUR kbr_err kbd_batches_new(kbd_batches **out);
void kbd_batches_free(kbd_batches *b);
/* Adds or replaces from a batch object as the store shows it (keeps reserved). */
KBR_WUR kbr_err kbd_batches_put(kbd_batches *b, const json_t *batch);
kbd_batch *kbd_batches_find(kbd_batches *b, const char *name); /* borrowed, NULL if none */

/* ---- per-principal rate limit (ratelimit.c), event thread only ---- */
typedef struct kbd_ratelimit kbd_ratelimit;
/* per_second <= 0: no limit.  Bursts up to twice the rate. */
KBR_WUR kbr_err kbd_ratelimit_new(long per_second, kbd_ratelimit **out);
void kbd_ratelimit_free(kbd_ratelimit *rl);
bool kbd_ratelimit_allow(kbd_ratelimit *rl, const char *sub);

/* ---- the daemon ---- */
typedef struct kbd kbd;
typedef struct kbd_req kbd_req;
typedef struct kbd_connlimit kbd_connlimit;
typedef struct kbd_worker kbd_worker;

typedef struct {
    atomic_long requests, denied, signatures, audit_failures, hsm_failures;
    atomic_int hsm_ok; /* last HSM call outcome */
} kbd_stats;

struct kbd {
    kbd_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct ssl_ctx_st *tls; /* SSL_CTX when tls_cert is set */
    kbr_hsm *hsm;           /* remote: sessions are connections to the HSM process (hsmproc.c) */
    pid_t hsm_pid;          /* the HSM keeper, the network process's one child */
    bool hsm_lost;          /* the keeper died: stop, exit status 1 */
    int store_lock;         /* kbr_store_lock: this process alone serves the store */
    kbr_audit *audit;
    kbr_policy *policy;
    kbd_keys *keys;
    kbd_batches *batches;
    kbd_ratelimit *ratelimit;
    kbd_ratelimit *unauth_rl; /* recording of unauthenticated denials, per source */
    long unauth_suppressed;   /* denials answered but not recorded one by one */
    time_t unauth_since;
    struct event *suppressed_timer;
    kbd_connlimit *connlimit;    /* connlimit.c */
    struct kbd_ingress *ingress; /* ingress.c */
    char issuer_kid[64];
    json_t *jwks;
    /* public_key_sha256 of the issuer and audit keys: never registered as a product's key */
    char own_keys_sha256[2][65];

    /* worker pool */
    pthread_t *threads;
    kbd_worker *workers;
    int nworkers;
    pthread_mutex_t jobs_lock;
    pthread_cond_t jobs_cond;
    kbd_req *jobs_head, *jobs_tail;
    bool stopping_workers;

    /* completions back to the event thread */
    pthread_mutex_t done_lock;
    kbd_req *done_head, *done_tail;
    struct event *done_ev;

    struct event *sig_term, *sig_int, *sig_chld, *health_timer;
    struct kbd_checkpointer *checkpointer; /* h_audit.c */
    long inflight;
    bool shutting_down;
    kbd_stats stats;
};

struct kbd_worker {
    kbd *d;
    int index;
    kbr_hsm_session *hsm;
    kbr_store *store;
    void *issuer_cache; /* h_provision.c: the last CA issuer this worker used */
};

/* ---- requests ---- */
typedef void (*kbd_work_fn)(kbd_req *r, kbd_worker *w);
typedef void (*kbd_finish_fn)(kbd_req *r);

struct kbd_req {
    kbd *d;
    struct evhttp_request *http;
    const struct kbd_route *route;
    char *arg; /* the {name}/{jti} path segment, decoded */
    struct evkeyvalq query;
    bool query_parsed;
    json_t *body;    /* parsed request body or NULL */
    kbr_token *tok;  /* borrowed from the policy registry; event thread only */
    char *sub, *jti; /* copies for worker use */
    bool use_reserved;
    const kbd_key *key; /* borrowed from the key registry; event thread only */

    kbd_work_fn work;     /* worker stage, or NULL */
    kbd_finish_fn finish; /* event-thread stage after a durable audit record, or NULL */
    /* event thread, always once the record settled: release or commit reservations */
    void (*settle)(kbd_req *r, bool committed);
    void *ctx; /* handler state */
    void (*ctx_free)(void *ctx);

    /* outcome */
    kbr_err err;
    kbr_msg msg;
    int status;   /* HTTP status on success */
    json_t *resp; /* response body on success */
    /* or a body that is not JSON: resp_text (owned) of type resp_type (static) */
    char *resp_text;
    const char *resp_type;
    bool add_audit_seq_to_resp;
    kbr_audit_rec *rec;
    kbd_req *next;
};

/* A route: handler parses and authorizes on the event thread. */
typedef kbr_err (*kbd_handler_fn)(kbd_req *r);
typedef struct kbd_route {
    const char *method;  /* "GET" / "POST" */
    const char *pattern; /* "/v1/keys/{}/retire" */
    bool authenticated;
    unsigned op;          /* kbr_op required (0: none beyond a valid token) */
    const char *audit_op; /* the audit entry's op */
    kbd_handler_fn handler;
} kbd_route;

/* http.c */
/* Records how many unauthenticated denials went unrecorded since the last call, if any. */
void kbd_flush_suppressed(kbd *d);
KBR_WUR kbr_err kbd_http_start(kbd *d, kbr_msg *msg);
void kbd_http_stop_listening(kbd *d);
int kbd_err_http_status(kbr_err err);
const char *kbd_err_code(kbr_err err);
/* Ends a request with an error: audits it (if authenticated route) then replies. */
void kbd_req_fail(kbd_req *r, kbr_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Marks r failed (message, audit outcome); any thread that holds r. */
void kbd_req_error(kbd_req *r, kbr_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct evbuffer;
void kbd_req_reply_buffer(kbd_req *r, int status, const char *content_type, struct evbuffer *buf);
/* Sends the request to a worker (r->work), then to the audit writer, then replies. */
void kbd_req_dispatch(kbd_req *r);
/* Audits r->rec (must be set) without a worker stage, then replies. */
void kbd_req_audit_and_reply(kbd_req *r);
/* For no-auth routes: reply right away. */
void kbd_req_reply_now(kbd_req *r, int status, json_t *body);
const char *kbd_req_query(kbd_req *r, const char *name);

/* connlimit.c: connection limits, on the event thread */
/* Checks the open-files limit and hooks accepted connections; after kbd_tls_setup. */
KBR_WUR kbr_err kbd_connlimit_start(kbd *d, kbr_msg *msg);
/* Once d->bound is set: pause accepting, rather than spin, when descriptors run out. */
void kbd_connlimit_listening(kbd *d);
/* A complete request arrived: false for a connection not counted at accept, which is then
 * refused; otherwise the connection is not closed for slowness until the request ends. */
bool kbd_connlimit_request_begins(kbd *d, struct evhttp_connection *evcon);
/* The response is on its way: the connection owes its next request from now. */
void kbd_connlimit_request_ends(kbd *d, struct evhttp_connection *evcon);
/* Records the connections refused since the last call, if any. */
void kbd_connlimit_flush(kbd *d);
void kbd_connlimit_stats(const kbd *d, long *open, long *refused_total, long *timed_out_total);
/* After evhttp_free: closing connections still report to it. */
void kbd_connlimit_free(kbd *d);

/*
 * ingress.c: every connection's bufferevent passes a filter that reads each request head before
 * evhttp does, so that a body the handler would not read is never buffered.
 */
/* Connections read after they closed, so that a client still sending is not reset. */
#define KBD_LINGER_MAX 32
/* The filter over under (a socket or TLS bufferevent); under is freed if it cannot be made. */
struct bufferevent *kbd_ingress_wrap(kbd *d, struct bufferevent *under);
KBR_WUR kbr_err kbd_ingress_start(kbd *d, kbr_msg *msg);
/* Ends lingering connections; before evhttp_free.  kbd_ingress_free after event_base_free. */
void kbd_ingress_stop(kbd *d);
void kbd_ingress_free(kbd *d);
/* http.c: would the handler read the body of this request (route, token, op)?  x5t is the
 * client certificate's thumbprint on TLS connections that presented one. */
bool kbd_http_body_allowed(kbd *d, const char *method, const char *target,
                           const char *authorization, const char *x5t);

/* head.c: request heads as the ingress filter (ingress.c) reads them. */
/* Header bytes evhttp accepts (request line and fields, ends of lines not counted). */
#define KBD_MAX_HEADERS 16384
/* A request the filter refused reaches evhttp as a bodiless request with this field, whose
 * value is the problem number; the handler answers 400 (413 for a head too large). */
#define KBD_INGRESS_HEADER "X-Keybroker-Ingress"
enum {
    KBD_HEAD_OK = 0,
    KBD_HEAD_REQUEST_LINE,
    KBD_HEAD_VERSION,
    KBD_HEAD_CONTROL,
    KBD_HEAD_FIELD,
    KBD_HEAD_FOLDED,
    KBD_HEAD_LENGTH,
    KBD_HEAD_LENGTHS,
    KBD_HEAD_CODING,
    KBD_HEAD_BOTH,
    KBD_HEAD_EXPECT,
    KBD_HEAD_TOO_LARGE,
    KBD_HEAD__COUNT
};
typedef struct {
    const char *method, *target; /* within the head, not NUL-terminated */
    size_t method_len, target_len;
    int minor; /* HTTP/1.minor */
    bool chunked;
    uint64_t length;           /* Content-Length; 0 without one */
    const char *authorization; /* the first Authorization value as evhttp trims it, or NULL */
    size_t authorization_len;
} kbd_head;
/* Parses a whole head (request line, fields, blank line): KBD_HEAD_OK or the problem. */
int kbd_head_parse(const char *head, size_t len, kbd_head *out);
const char *kbd_head_problem_text(int problem);
/* Room kbd_head_rewrite needs for a head of len bytes. */
#define KBD_HEAD_REWRITE_MAX(len) (2 * (len) + 64)
/* A parsed head without its framing, Expect and Connection fields, announcing no body and
 * Connection: close; returns its length. */
size_t kbd_head_rewrite(const char *head, size_t len, char *out);
/* A chunk-size line without its end of line: 1 to 15 hex digits, nothing else; -1 if not. */
int64_t kbd_chunk_size(const char *line, size_t len);

/* tls.c */
KBR_WUR kbr_err kbd_tls_setup(kbd *d, kbr_msg *msg);
void kbd_tls_cleanup(kbd *d);
/* A server-side TLS bufferevent for a connection about to be accepted. */
struct bufferevent *kbd_tls_bufferevent(kbd *d, struct event_base *base);
/* base64url SHA-256 of the client certificate of req's connection, if it presented one. */
bool kbd_tls_client_x5t(struct evhttp_request *req, char out[64]);
/* The same for a connection's bufferevent: the TLS one, or a filter over it. */
bool kbd_tls_bev_x5t(struct bufferevent *bev, char out[64]);

/* worker.c */
KBR_WUR kbr_err kbd_workers_start(kbd *d, kbr_msg *msg);
void kbd_workers_stop(kbd *d);
void kbd_workers_submit(kbd *d, kbd_req *r);
/* Called from any thread: hands a finished request back to the event thread. */
void kbd_complete(kbd *d, kbd_req *r);
void kbd_note_hsm(kbd *d, kbr_err err);

/* routes.c: matched on the raw path; *cap and *caplen receive the raw {} segment, if any
 * (cap may be NULL). */
const kbd_route *kbd_route_match(const char *method, const char *path, const char **cap,
                                 size_t *caplen, bool *path_known);

/* path.c */
/* Each segment of a raw path: no "." or "..", spelled out or encoded, no encoded "/" or NUL,
 * no malformed percent-encoding.  KBR_ERR_BAD_REQUEST naming the segment and the problem. */
KBR_WUR kbr_err kbd_path_check(const char *raw, kbr_msg *msg);
/* The bytes a checked segment stands for: a new string, or NULL when out of memory. */
char *kbd_segment_decode(const char *seg, size_t len);

/* json.c: strict request parsing helpers; each names the field on error */
KBR_WUR kbr_err kbd_json_only(const json_t *obj, const char *const *allowed, kbr_msg *msg);
KBR_WUR kbr_err kbd_json_str(const json_t *obj, const char *field, bool required, size_t maxlen,
                             const char **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_json_name(const json_t *obj, const char *field, bool required, const char **out,
                              kbr_msg *msg);
KBR_WUR kbr_err kbd_json_int(const json_t *obj, const char *field, bool required, int64_t min,
                             int64_t max, int64_t *out, kbr_msg *msg);
KBR_WUR kbr_err kbd_json_names(const json_t *obj, const char *field, bool required, json_t **out,
                               kbr_msg *msg);
bool kbd_valid_name(const char *s);
/*
 * s with every byte that does not start well-formed UTF-8 replaced by U+FFFD, so that text
 * echoing a request always fits in a JSON string.  New string, or NULL when out of memory.
 */
char *kbd_utf8_clean(const char *s);
/* msg's text between before and after (cut to fit); returns err. */
kbr_err kbd_msg_wrap(kbr_msg *msg, kbr_err err, const char *before, const char *after);
/* Prefixes msg's text with "prefix." (nested fields: "artifact.version: ..."). */
kbr_err kbd_msg_prefix(kbr_msg *msg, const char *prefix, kbr_err err);
/* sbom.c: from "sbom" or "sbom_b64" of a sign body, the components [{name, version, purl}]
 * and the document to keep: the CycloneDX bytes as sent, or the inline list's canonical JSON.
 * kbd_sbom_free releases both (and accepts an emptied one). */
typedef struct {
    json_t *components;
    unsigned char *document;
    size_t len;
} kbd_sbom;
KBR_WUR kbr_err kbd_sbom_parse(const json_t *body, kbd_sbom *sbom, kbr_msg *msg);
void kbd_sbom_free(kbd_sbom *sbom);
KBR_WUR kbr_err kbd_scope_copy(const kbr_scope *in, kbr_scope *out);

/* keys.c, event thread: the checks every key-using request makes. */
/* The key named: in the token's keys, registered, not retired (403/404/409). Sets the record's key.
 */
KBR_WUR kbr_err kbd_req_use_key(kbd_req *r, const char *name, const kbd_key **out);
/* product is in the token's products and served by k (403); field names the request field. */
KBR_WUR kbr_err kbd_req_key_product(kbd_req *r, const kbd_key *k, const char *field,
                                    const char *product);
/* The part of the audit log scope lets its holder read (kbr_store.h); borrows scope's names. */
kbr_audit_scope kbd_audit_scope_of(const kbr_scope *scope);
/* record.c: adds a ledger effect (copied) to r's record; KBR_ERR_INTERNAL when the effect
 * breaks a rule of its JSON form (kbr_store.h): a handler's bug, never the caller's. */
KBR_WUR kbr_err kbd_req_effect(kbd_req *r, const kbr_effect *e);
/* Adds a document (copied) to r's record, kept by the store under its SHA-256 (sha256). */
KBR_WUR kbr_err kbd_req_document(kbd_req *r, const void *body, size_t len, char sha256[65]);
/* The strings of arr (an array of strings) borrowed into out; free out->items with free(). */
KBR_WUR kbr_err kbd_strings_of(const json_t *arr, kbr_strings *out);
/* The effect's JSON form without "type", normalized as the ledger keeps it; NULL when it
 * breaks a rule or memory ran out.  New ref. */
json_t *kbd_effect_json(const kbr_effect *e);
/* What a token limited to products does is about those products: its entries say so. */
KBR_WUR kbr_err kbd_req_attribute_token(kbd_req *r);
/* Reserves one of the token's max_uses (429 when none is left). */
KBR_WUR kbr_err kbd_req_reserve_use(kbd_req *r);

/* handlers (h_*.c) */
/* The {name} path segment as a registered key the token holds (kbd_scope_holds_key), for
 * changing it or reading its custody; 400/403/404 otherwise.  The entry is about its
 * products. */
KBR_WUR kbr_err kbd_req_path_key(kbd_req *r, const kbd_key **out);
/* The same for reading the key object: the token sees it (kbd_scope_sees_key). */
KBR_WUR kbr_err kbd_req_path_key_visible(kbd_req *r, const kbd_key **out);
kbr_err kbd_h_health(kbd_req *r);
kbr_err kbd_h_jwks(kbd_req *r);
kbr_err kbd_h_metrics(kbd_req *r);
kbr_err kbd_h_key_create(kbd_req *r);
kbr_err kbd_h_key_list(kbd_req *r);
kbr_err kbd_h_key_get(kbd_req *r);
kbr_err kbd_h_key_retire(kbd_req *r);
kbr_err kbd_h_token_issue(kbd_req *r);
kbr_err kbd_h_token_list(kbd_req *r);
kbr_err kbd_h_token_revoke(kbd_req *r);
kbr_err kbd_h_revocations(kbd_req *r);
kbr_err kbd_h_sign(kbd_req *r);
kbr_err kbd_h_audit_list(kbd_req *r);
kbr_err kbd_h_audit_checkpoint(kbd_req *r);
kbr_err kbd_h_audit_proof(kbd_req *r);
kbr_err kbd_h_audit_consistency(kbd_req *r);
kbr_err kbd_h_audit_key_rotate(kbd_req *r);
/* h_audit.c: signed checkpoints every checkpoint_entries entries or checkpoint_seconds seconds
 * (a timer on the event loop, the signing on a worker); stop after the workers and the audit
 * writer stopped.  stop accepts a daemon that never started them. */
KBR_WUR kbr_err kbd_checkpoint_start(kbd *d, kbr_msg *msg);
void kbd_checkpoint_stop(kbd *d);
kbr_err kbd_h_key_certificate(kbd_req *r);
kbr_err kbd_h_batch_create(kbd_req *r);
kbr_err kbd_h_batch_get(kbd_req *r);
kbr_err kbd_h_provision(kbd_req *r);
kbr_err kbd_h_rotate(kbd_req *r);
kbr_err kbd_h_debug_auth(kbd_req *r);
kbr_err kbd_h_ota_report(kbd_req *r);
kbr_err kbd_h_view_product(kbd_req *r);
kbr_err kbd_h_view_custody(kbd_req *r);
kbr_err kbd_h_view_exposure(kbd_req *r);
kbr_err kbd_h_view_device(kbd_req *r);

/* Token issuance shared by POST /v1/tokens and --init (tokens.c). */
typedef struct {
    const char *sub;
    const char *issued_by;  /* the issuing principal, or what issued a root */
    const char *parent_jti; /* the issuing token; NULL for a root */
    bool orphan;            /* not revoked with its parent */
    const kbr_scope *scope;
    long ttl;
    time_t not_after; /* exp is at most this (the parent's exp); 0: no cap */
    const char *cnf_x5t;
} kbd_token_spec;
/* On a worker (or at init): builds claims, signs through the HSM, returns the token string
 * (caller wipes and frees) and the token.issue effect that records it, a list of one (caller
 * frees). */
KBR_WUR kbr_err kbd_token_mint(kbr_hsm_session *hsm, const char *instance_id, const char *kid,
                               const kbd_token_spec *spec, char **token, kbr_effects **effect,
                               kbr_msg *msg);
/* The store row shape of a token.issue effect, for kbr_policy_add_token. New ref. */
json_t *kbd_token_row_from_effect(const kbr_effect *effect);

/* h_provision.c: frees a worker's issuer cache; accepts NULL. */
void kbd_issuer_cache_free(void *p);

/* hsmproc.c: the HSM in processes of its own.  start forks, so it runs before any thread;
 * it returns once the HSM process is logged in (or with the reason it is not), with d->hsm
 * set.  reap, after SIGCHLD: true if the keeper died.  stop closes d->hsm and waits for
 * the keeper, after every session is closed. */
KBR_WUR kbr_err kbd_hsmproc_start(kbd *d, kbr_msg *msg);
bool kbd_hsmproc_reap(kbd *d);
void kbd_hsmproc_stop(kbd *d);

/* sandbox.c: no new privileges and a seccomp deny-list, for this process and what it forks
 * later.  The network profile also refuses new processes. */
KBR_WUR kbr_err kbd_sandbox_network(kbr_msg *msg);
KBR_WUR kbr_err kbd_sandbox_hsm(kbr_msg *msg);

/*
 * arecord.c: the audit record in the HSM (the latest signed tree head, a data object under
 * KBD_RECORD_LABEL) and the signing of tree heads.  A record is the checkpoint effect's JSON
 * form (kbr_store.h) with its signer and a "serial", one more at each write.
 */
/* "kbr/audit", or "kbr/audit/<n>" with n a number from 1: the labels audit keys have. */
bool kbd_audit_label_valid(const char *label);
/* A record read strictly (KBR_ERR_BAD_REQUEST with msg); the latest of those an HSM holds (the
 * highest serial; *out NULL when none; KBR_ERR_HSM_KEY with msg when one does not read). */
KBR_WUR kbr_err kbd_record_parse(const unsigned char *v, size_t len, json_t **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_record_latest(const kbr_hsm_data *items, size_t n, json_t **out, kbr_msg *msg);
/* The HSM's latest record (*out NULL when it holds none). */
KBR_WUR kbr_err kbd_record_read(kbr_hsm_session *s, json_t **out, kbr_msg *msg);
/* The label of the audit key a checkpoint (record or store row) hands on: its next key's, or
 * its own; NULL for an older broker's checkpoint. */
const char *kbd_cp_signer_label(const json_t *cp);
/* The record's keys are the ones the HSM holds under its labels, and both its signatures (and
 * the next key's on the note) verify with them.  KBR_ERR_CONFLICT with msg otherwise. */
KBR_WUR kbr_err kbd_record_holds(kbr_hsm_session *s, const json_t *cp, kbr_msg *msg);
/* The HSM process's check of a record write (kbr_hsm_data_check_fn; see arecord.c), and the
 * same with its reason in msg. */
KBR_WUR kbr_err kbd_record_verdict(kbr_hsm_session *s, const kbr_hsm_data *old, size_t nold,
                                   const unsigned char *value, size_t len,
                                   const unsigned char *evidence, size_t evlen, kbr_msg *msg);
KBR_WUR kbr_err kbd_record_check(void *arg, kbr_hsm_session *s, const kbr_hsm_data *old,
                                 size_t nold, const unsigned char *value, size_t len,
                                 const unsigned char *evidence, size_t evlen);
/* The store holds the record's head: at least its size in entries, with its root.
 * KBR_ERR_CONFLICT with msg naming "rollback" otherwise. */
KBR_WUR kbr_err kbd_record_vs_store(kbr_store *st, const json_t *rec, kbr_msg *msg);
/* *in: the store's latest checkpoint is the record's (the same signature). */
KBR_WUR kbr_err kbd_record_in_store(kbr_store *st, const json_t *rec, bool *in);
/* The checkpoint effect of a record or signed head (serial dropped), a list of one. */
KBR_WUR kbr_err kbd_record_effects(const json_t *cp, kbr_effects **out);
/* An audit record by the broker (op) that records cp with its checkpoint effect. */
KBR_WUR kbr_err kbd_record_entry(const json_t *cp, const char *op, kbr_audit_rec **out);
typedef struct {
    const char *origin;     /* the notes' origin and key name */
    const json_t *rec;      /* the HSM's latest record, or NULL when it holds none */
    const char *next_label; /* a rotation to the audit key under this label, or NULL */
    /* --recover: the head replaces the record (rec, or one that does not read when rec is
     * NULL) instead of extending it, and is signed by the key the store hands on */
    bool fork;
} kbd_head_spec;
/*
 * Signs the head of st's log as it stands with the audit key the log hands on (the record's,
 * else the store's, else kbr/audit), as canonical JSON and as a signed note (cosigned by the
 * next key for a rotation), and records it in the HSM as the next serial, with the consistency
 * proof from the recorded head.  *effect is the checkpoint effect's JSON form (new ref), for
 * the entry to commit after.  KBR_ERR_CONFLICT with msg naming "rollback" when the store does
 * not hold the recorded head; the HSM's refusal otherwise, with msg.
 */
KBR_WUR kbr_err kbd_head_sign_and_record(kbr_hsm_session *s, kbr_store *st,
                                         const kbd_head_spec *spec, json_t **effect, kbr_msg *msg);

/* main.c: the audit key under label is an Ed25519 key in the HSM; an older broker's ECDSA
 * kbr/audit is refused with what to do (KBR_ERR_HSM_KEY), a missing one names --init. */
KBR_WUR kbr_err kbd_audit_key_usable(kbr_hsm_session *s, const char *label, kbr_msg *msg);

/* init.c */
KBR_WUR kbr_err kbd_init_deployment(kbd_config *cfg, kbr_msg *msg);
/* The issuer key's RFC 7638 thumbprint, the tokens' kid. */
KBR_WUR kbr_err kbd_issuer_kid(kbr_hsm_session *s, char kid[64]);
/* Signs the head of the log as it stands (kbd_head_sign_and_record, in this process) and
 * commits its entry: --init and --recover end with the HSM's record matching the store. */
KBR_WUR kbr_err kbd_checkpoint_now(kbr_hsm_session *s, kbr_store *st, kbr_audit *audit,
                                   const kbd_head_spec *spec, kbr_msg *msg);
/* recover.c: `keybrokerd --recover` (docs/operations.md, "Restoring"). */
KBR_WUR kbr_err kbd_recover_deployment(kbd_config *cfg, kbr_msg *msg);
/* Reads pin_file and loads the module into this process: --init and the HSM process only. */
KBR_WUR kbr_err kbd_open_hsm(const kbd_config *cfg, kbr_hsm **out, kbr_msg *msg);

/* keys.c: the "hsm" object of a key, as the HSM reports it now (worker). New ref or NULL. */
json_t *kbd_hsm_facts(kbr_hsm_session *s, const char *label, kbr_err *err);

#endif
