/*
 * kbd.h - keybrokerd's private interfaces: configuration, the request
 * pipeline (event thread -> worker -> audit writer -> event thread), the
 * route table's stages, and the registries.  The routes' own declarations are in
 * routes.h, the HSM's side (its process, the sandbox, the record it keeps) in hsmproc.h,
 * the modes besides serving (--init, --recover, --check, --verify-store) in modes.h.
 *
 * Threads: one event thread owns libevent, the policy registry and the key
 * registry; N workers each own an HSM session and a store read connection;
 * the audit writer owns the store's write connection.  A request object
 * moves between them through queues and is only ever touched by one thread
 * at a time.
 */
#ifndef KBD_H
#define KBD_H

#include <stdarg.h>
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
/* Issuer keys made by a rotation: kbr/issuer/<UTC time>-<random>. */
#define KBD_ISSUER_LABEL_PREFIX "kbr/issuer/"
/* The first audit key; each rotation makes the next, "kbr/audit/2", "kbr/audit/3", ... */
#define KBD_AUDIT_LABEL "kbr/audit"
/* The HSM data object holding the latest signed tree head (arecord.c). */
#define KBD_RECORD_LABEL     "kbr/audit/record"
#define KBD_KEY_LABEL_PREFIX "kbr/key/"
#define KBD_BOOTSTRAP_SUB    "security:bootstrap"
#define KBD_SERVICE_SUB      "service:keybrokerd"
/* The algorithm of an ota-encryption key: P-256, for ECDH (ECDH-ES in COSE, ECIES in MCUboot). */
#define KBD_ALG_ECDH_P256 "ecdh-p256"

/* ---- OIDC issuers and exchange rules (oidc_config.c), the file oidc_issuers names ---- */
typedef struct {
    char *name;      /* the [issuer NAME] section */
    char *issuer;    /* the iss claim, exactly */
    char *jwks_file; /* exactly one of jwks_file and jwks_url */
    char *jwks_url;  /* https, or http on a loopback address */
    char *jwks_ca_file;
    char *audience;         /* must be one of aud */
    unsigned algs;          /* kbr_jwa bits */
    long leeway;            /* seconds, for nbf and iat */
    long max_ttl;           /* the longest broker token an exchange of this issuer gives */
    long jwks_refresh;      /* seconds between fetches of the key set */
    long jwks_min_interval; /* seconds at least between fetches an unknown kid asks for */
    char **audit_claims;    /* recorded in each exchange entry, with the rules' claims */
    size_t n_audit_claims;
    char *principal_prefix; /* the literal start every rule's principal has (checked apart) */
} kbd_oidc_issuer;

typedef struct {
    char *claim, *pattern; /* pattern: '*' matches any run of characters */
} kbd_claim_cond;

typedef struct {
    char *name;    /* the [rule NAME] section */
    size_t issuer; /* index into the issuers */
    kbd_claim_cond *conds;
    size_t nconds;
    char *principal; /* template: "ci:github/{repository}" */
    kbr_scope scope;
    long ttl;
} kbd_oidc_rule;

typedef struct {
    kbd_oidc_issuer *issuers;
    size_t nissuers;
    kbd_oidc_rule *rules; /* in file order: the first that matches grants */
    size_t nrules;
} kbd_oidc_config;

/* Reads the issuers file; KBR_ERR_CONFIG with msg naming file, line and problem. */
KBR_WUR kbr_err kbd_oidc_config_load(const char *path, kbd_oidc_config *out, kbr_msg *msg);
void kbd_oidc_config_cleanup(kbd_oidc_config *c);

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
    char *csaf_publisher;            /* CSAF documents' publisher name (default instance_id) */
    char *csaf_namespace;            /* and its namespace URI (default urn:keybroker:<id>) */
    char *crl_url;                   /* CRL distribution point, "{key}" for the CA key; or NULL */
    long crl_validity;               /* seconds from a CRL's thisUpdate to its nextUpdate */
    char *oidc_issuers;              /* the issuers file, or NULL: no token exchange */
    kbd_oidc_config oidc;
    long oidc_exchange_rate; /* exchange requests per second per source address */
    char *ops_listen_host;   /* plain HTTP for /v1/health and /metrics; NULL: none */
    int ops_listen_port;
    char *log_file; /* standard error goes there; NULL: as it was given */
    bool log_json;  /* log_format = json */
} kbd_config;

KBR_WUR kbr_err kbd_config_load(const char *path, kbd_config *cfg, kbr_msg *msg);
/* The same, going on past a bad line: each problem is passed to report (msg is the first). */
typedef void (*kbd_config_report_fn)(const char *problem, void *arg);
KBR_WUR kbr_err kbd_config_load_all(const char *path, kbd_config *cfg, kbd_config_report_fn report,
                                    void *arg, kbr_msg *msg);
void kbd_config_cleanup(kbd_config *cfg);
/* Is host a loopback address (127.0.0.0/8, ::1, localhost)? */
bool kbd_is_loopback(const char *host);

/* ---- the log (log.c): standard error, text or one JSON object per line ---- */
typedef enum { KBD_LOG_INFO, KBD_LOG_WARN, KBD_LOG_ERROR } kbd_log_level;
/* Applies log_file and log_format; log_file is opened (created 0640) onto descriptor 2. */
KBR_WUR kbr_err kbd_log_setup(const kbd_config *cfg, kbr_msg *msg);
/* Opens log_file by its name again (after logrotate moved it); nothing without one. */
kbr_err kbd_log_reopen(kbr_msg *msg);
/* Async-signal-safe: reopen before the next line (the HSM processes' SIGHUP handler). */
void kbd_log_reopen_later(void);
/* The process's name in JSON lines: "keybrokerd", "hsm-keeper", "hsm". */
void kbd_log_process(const char *name);
void kbd_log_cleanup(void);
/* One line: event is a dotted name ("hsm.unavailable"), request_id NULL when no request is the
 * subject. */
/* Whether any file of a sqlite: store (the file, its -wal and -shm) gives other users access;
 * if so, out is the warning that names each such file with its mode. */
bool kbd_store_mode_warning(const char *file, char *out, size_t n);
void kbd_log(kbd_log_level level, const char *event, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void kbd_logv(kbd_log_level level, const char *event, const char *request_id, const char *fmt,
              va_list ap) __attribute__((format(printf, 4, 0)));
/* The CRL distribution point of CA key `key` (crl_url with {key} replaced): a new string, or
 * NULL when crl_url is not set or memory ran out (*err says which). */
char *kbd_crl_url_for(const kbd_config *cfg, const char *key, kbr_err *err);

/* ---- key registry (keyring.c): the event thread's view of the keys table ---- */
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
/* A scope limited to no products, keys, batches or devices: what is every product's (the
 * backup, the audit key, the token issuer key, an HSM object no key names yet) is changed or
 * taken only by an admin of everything. */
bool kbd_scope_unlimited(const kbr_scope *s);
#define KBD_UNLIMITED_ADMIN "an admin token limited to no products, keys, batches or devices"

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

/* The issuer key that signs new tokens: its kid and its HSM label. */
typedef struct {
    char kid[64];
    char label[KBR_HSM_LABEL_MAX];
} kbd_issuer;

/* ---- the daemon ---- */
typedef struct kbd kbd;
typedef struct kbd_req kbd_req;
typedef struct kbd_connlimit kbd_connlimit;
typedef struct kbd_worker kbd_worker;

typedef struct {
    atomic_long requests, denied, signatures, audit_failures, hsm_failures;
    atomic_int hsm_ok; /* last HSM call outcome */
    /* the latest signed checkpoint: its time (0: none yet), size and its own entry's seq */
    atomic_llong checkpoint_time, checkpoint_size, checkpoint_seq;
    atomic_long checkpoint_failures;
} kbd_stats;

/* metrics.c: per route and status, on the event thread */
typedef struct kbd_metrics kbd_metrics;
KBR_WUR kbr_err kbd_metrics_new(kbd_metrics **out);
void kbd_metrics_free(kbd_metrics *m);

struct kbd {
    kbd_config cfg;
    const char *config_path; /* what SIGHUP reads again */
    time_t started_at;
    time_t tls_not_after; /* the served certificate's notAfter; 0 without TLS */
    time_t reload_at;     /* the last SIGHUP's reload, 0 if none */
    bool reload_ok;
    kbd_metrics *metrics;
    struct evhttp *ops_http; /* ops_listen: /v1/health and /metrics only */
    struct evhttp_bound_socket *ops_bound;
    long ops_open;             /* its open connections */
    struct kbd_backup *backup; /* backup.c: the copy being made or sent, if any */
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
    struct kbd_oidc *oidc;       /* h_exchange.c, when oidc_issuers is set */
    kbd_issuer issuer;           /* the current issuer key (the policy holds every trusted one) */
    bool issuer_rotating;        /* a rotation is between its request and its record */
    /* public_key_sha256 of the audit key: never registered as a product's key (nor is any
     * issuer key, which the ledger lists) */
    char audit_key_sha256[65];

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

    struct event *sig_term, *sig_int, *sig_chld, *sig_hup, *health_timer;
    struct kbd_checkpointer *checkpointer; /* h_audit.c */
    struct kbd_flights *flights;           /* h_provision.c: provisionings in flight by device */
    struct kbd_crls *crls;                 /* h_crl.c: each CA key's last CRL and its waiters */
    struct kbd_follow *follow;             /* follow.c: what brokers sharing the store commit */
    int64_t follow_from;                   /* the log's tail before the registries were read */
    long inflight;
    bool shutting_down;
    bool stop_now; /* a second signal: stop without waiting for requests in flight */
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
    double t0;      /* monotonic: when the request arrived */
    time_t arrived; /* wall clock then: the "now" of its parse stage, which reads nothing but r */
    char request_id[65]; /* X-Request-Id: the client's, when well-formed, or a random one */
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
    /* instead of the JSON answer, after a durable record of success: sends the response
     * itself (seq: the record's) and ends the request with kbd_req_done */
    void (*respond)(kbd_req *r, int64_t seq);
    /* event thread, always once the record settled: release or commit reservations */
    void (*settle)(kbd_req *r, bool committed);
    void *ctx; /* the route's typed request */
    void (*ctx_free)(void *ctx);

    /* outcome */
    kbr_err err;
    kbr_msg msg;
    int status;   /* HTTP status on success */
    json_t *resp; /* response body on success */
    /* or these bytes as they are (a kept document, whose SHA-256 the log names), JSON */
    unsigned char *raw;
    size_t raw_len;
    /* or a text made by the route (owned), JSON or not, of type resp_type (static) */
    char *resp_text;
    const char *resp_type;
    bool add_audit_seq_to_resp;
    kbr_audit_rec *rec;
    kbd_req *next;
};

/*
 * A route's stages.  server.c runs them in order and alone answers the request: the error of
 * the first stage that fails, or the response once the audit record is durable.
 *
 * admit      a route without a token that reads a body and keeps a record (the token exchange),
 *            event thread, before the body is read (at most open_body_max bytes): whether the
 *            broker serves the route (404), the request's audit record, a rate per source.  An
 *            error ends the request as authorize's does; what an authenticated route's token
 *            and record are, this stage stands for.  NULL: no record, no body.
 * parse      pure: r's body, {} segment and query into a typed request, *out (set as soon as it
 *            is allocated, so that free_req releases it whatever happens next).  Reads nothing
 *            else of r but the configuration; no token, registry, store or HSM.  A bad request
 *            is KBR_ERR_BAD_REQUEST with msg naming the field.
 * describe   what the audit entry is about (key, products, detail), from what parse read: run
 *            after parse whether it took the request or not (*out as far as it got), so that a
 *            refusal is recorded with what the request named.  NULL: nothing beyond the path.
 * authorize  event thread: the token's scope against the typed request, and the registry
 *            entries it names (a key: 403, 404, 409); names the audit entry's subject (key,
 *            products) on the way.  NULL: the route's op is all it takes.
 * work       a worker (its HSM session and store read connection): the response (r->resp),
 *            the record's effects, or kbd_req_error.  With work_inline, on the event thread
 *            instead, w NULL: for changes the registries must see before the record (a
 *            revocation) and for what needs neither HSM nor store.  NULL: no work.
 * wait       event thread, after authorize (and the reservation): for a route whose work or
 *            answer needs what is not there yet (a CRL a worker is signing).  Either returns
 *            with *waiting false (nothing to wait for: the stages go on at once), or parks r
 *            where what it waits for will find it and sets *waiting; that calls
 *            kbd_req_resume() on the event thread once it is there.  An error ends the request
 *            as authorize's does.  What wait holds (a device's turn to be provisioned) is the
 *            route's settle's to release: for a route that waits, settle runs from wait on,
 *            whether the request is refused after or goes on.  NULL: nothing to wait for.
 * finish     event thread, once the record of a success is durable (or at once for a route
 *            without a record): the registries follow what was committed, and the response is
 *            completed.  An error it sets (kbd_req_error: the answer could not be made) is
 *            what goes out instead, with the record's seq.
 * respond    instead of finish and the answer server.c makes: once the record of a success is
 *            durable, sends the response itself (a stream, GET /v1/backup) and ends the
 *            request with kbd_req_done().  NULL: server.c answers.
 */
typedef kbr_err (*kbd_admit_fn)(kbd_req *r);
typedef kbr_err (*kbd_parse_fn)(const kbd_req *r, void **out, kbr_msg *msg);
typedef kbr_err (*kbd_describe_fn)(kbd_req *r, const void *req);
typedef kbr_err (*kbd_authorize_fn)(kbd_req *r, void *req);
typedef kbr_err (*kbd_wait_fn)(kbd_req *r, void *req, bool *waiting);
typedef void (*kbd_req_free_fn)(void *req);
typedef struct kbd_route {
    const char *method;  /* "GET" / "POST" */
    const char *pattern; /* "/v1/keys/{}/retire" */
    bool authenticated;
    unsigned op;          /* kbr_op required (0: none beyond a valid token) */
    const char *audit_op; /* the audit entry's op */
    kbd_admit_fn admit;   /* a route without a token: before its body is read */
    kbd_parse_fn parse;   /* NULL: the request carries nothing to parse */
    kbd_req_free_fn free_req;
    kbd_describe_fn describe;
    kbd_authorize_fn authorize;
    bool reserve_use; /* after authorize: one of the token's max_uses (a key use) */
    kbd_wait_fn wait;
    kbd_work_fn work;
    bool work_inline; /* work runs on the event thread, w NULL */
    kbd_finish_fn finish;
    void (*respond)(kbd_req *r, int64_t seq); /* NULL: server.c answers */
    /* event thread, once the record settled, committed or not: releases what authorize or
     * work held (NULL: nothing) */
    void (*settle)(kbd_req *r, bool committed);
    /* routes without a token: the largest body read (announced by Content-Length), 0: none */
    size_t open_body_max;
} kbd_route;

/* server.c */
/* Records how many unauthenticated denials went unrecorded since the last call, if any. */
void kbd_flush_suppressed(kbd *d);
KBR_WUR kbr_err kbd_http_start(kbd *d, kbr_msg *msg);
void kbd_http_stop_listening(kbd *d);
/* Ends a request with an error: audits it (if authenticated route) then replies. */
void kbd_req_fail(kbd_req *r, kbr_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for a caller without a valid token: past unauth_audit_rate denials per second from
 * its source the denial is answered and only counted (audit.suppressed), not recorded. */
void kbd_req_fail_unrecorded_over_rate(kbd_req *r, kbr_err err, const char *why);
/* The check alone, for a stage about to return the denial: past the rate, r's record is
 * dropped (and counted). */
void kbd_req_unrecorded_over_rate(kbd_req *r);
/* Reads and parses r's JSON object body, at most limit bytes; on failure r is answered. */
bool kbd_req_read_body(kbd_req *r, size_t limit);
/* Marks r failed (message, audit outcome); any thread that holds r. */
void kbd_req_error(kbd_req *r, kbr_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Audits r->rec (must be set) without a worker stage, then replies. */
void kbd_req_audit_and_reply(kbd_req *r);
/* Event thread: what a request parked by its route's wait stage waited for is there (err
 * KBR_OK: its stages go on) or will not be (the request is answered err, why). */
void kbd_req_resume(kbd_req *r, kbr_err err, const char *why);
/* Ends a request whose response a respond hook sent (or that has no connection left). */
void kbd_req_done(kbd_req *r);
/* The X-Request-Id and metrics of a response the caller sends itself; status as sent. */
void kbd_req_response_begins(kbd_req *r, int status);
const char *kbd_req_query(const kbd_req *r, const char *name);

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
/* server.c: would the handler read the body of this request (route, token, op)?  x5t is the
 * client certificate's thumbprint on TLS connections that presented one. */
bool kbd_http_body_allowed(kbd *d, const char *method, const char *target,
                           const char *authorization, const char *x5t, uint64_t length,
                           bool chunked);

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
/* Would kbd_tls_setup take cfg's files?  (--check) */
KBR_WUR kbr_err kbd_tls_check(const kbd_config *cfg, kbr_msg *msg);
/* New connections get fresh's certificate, key and client CA; open ones keep theirs.  On
 * failure nothing changes and msg says why; on success about names the new certificate. */
KBR_WUR kbr_err kbd_tls_reload(kbd *d, const kbd_config *fresh, char *about, size_t n,
                               kbr_msg *msg);
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
/* At teardown, once workers and the audit writer have stopped: frees the internal jobs that
 * came back after the event loop ended. */
void kbd_done_drain(kbd *d);
void kbd_note_hsm(kbd *d, kbr_err err);

/* metrics.c: a response leaves (status) for route (NULL: no route matched). */
void kbd_metrics_response(kbd *d, const kbd_route *route, int status, double seconds);
/* The route's place in the table, for per-route counters; kbd_route_count() for none. */
size_t kbd_route_index(const kbd_route *route);
size_t kbd_route_count(void);
const kbd_route *kbd_route_at(size_t i);

/* ops.c: ops_listen, plain HTTP serving /v1/health and /metrics and nothing else. */
KBR_WUR kbr_err kbd_ops_start(kbd *d, kbr_msg *msg);
void kbd_ops_stop_listening(kbd *d);
void kbd_ops_free(kbd *d);
/* The bodies both listeners serve: health (status and JSON) and the metrics text. */
int kbd_health_body(kbd *d, json_t **body);
struct evbuffer;
void kbd_metrics_text(kbd *d, struct evbuffer *out);

/* reload.c: SIGHUP reads the configuration again and applies what can change while serving. */
void kbd_reload(kbd *d);
/* notify.c: the service manager's readiness protocol (NOTIFY_SOCKET), if there is one. */
void kbd_notify(const char *state);

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
/* A body whose one optional field is "reason" (at most 512 bytes): a copy of it in *reason. */
KBR_WUR kbr_err kbd_json_reason_only(const json_t *obj, char **reason, kbr_msg *msg);
KBR_WUR kbr_err kbd_json_str(const json_t *obj, const char *field, bool required, size_t maxlen,
                             const char **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_json_name(const json_t *obj, const char *field, bool required, const char **out,
                              kbr_msg *msg);
KBR_WUR kbr_err kbd_json_int(const json_t *obj, const char *field, bool required, int64_t min,
                             int64_t max, int64_t *out, kbr_msg *msg);
KBR_WUR kbr_err kbd_json_names(const json_t *obj, const char *field, bool required, json_t **out,
                               kbr_msg *msg);
/*
 * Sets obj's member name to the string s, or to null when s is NULL and nullable: what
 * json_pack's "s:s" and "s:s?" make, without parsing a format string on every call (a few
 * thousand instructions for an object of three strings).  False when s is NULL and not
 * nullable, not UTF-8, or out of memory.
 */
KBR_WUR bool kbd_json_set_str(json_t *obj, const char *name, const char *s, bool nullable);
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
#define KBD_SBOM_MAX_COMPONENTS 20000
typedef struct {
    json_t *components;
    unsigned char *document;
    size_t len;
} kbd_sbom;
KBR_WUR kbr_err kbd_sbom_parse(const json_t *body, kbd_sbom *sbom, kbr_msg *msg);
void kbd_sbom_free(kbd_sbom *sbom);
KBR_WUR kbr_err kbd_scope_copy(const kbr_scope *in, kbr_scope *out);

/* keyring.c, event thread: the checks every key-using request makes. */
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

/* follow.c: on a store several brokers share (kbr_store_shared), applies what the others
 * commit after entry `from` to this broker's registries, on the event thread.  Nothing for a
 * store of one broker. */
KBR_WUR kbr_err kbd_follow_start(kbd *d, int64_t from, kbr_msg *msg);
void kbd_follow_stop(kbd *d);
/* The last entry of the shared log the follower has read, whoever wrote it (it reads every
 * FOLLOW_POLL_MS); 0 on a store of one broker, whose own writer knows the log's tail. */
int64_t kbd_follow_seen(const kbd *d);

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
/* On a worker (or at init): builds claims, signs with issuer's key through the HSM (its kid in
 * the header and in the effect), returns the token string (caller wipes and frees) and the
 * token.issue effect that records it, a list of one (caller frees). */
KBR_WUR kbr_err kbd_token_mint(kbr_hsm_session *hsm, const char *instance_id,
                               const kbd_issuer *issuer, const kbd_token_spec *spec, char **token,
                               kbr_effects **effect, kbr_msg *msg);

/*
 * issuer.c: the token issuer's keys.
 * kbd_issuer_effect: the issuer.rotate effect (a list of one, caller frees) that makes the HSM
 * key labelled label current at `at`, replacing the key replaces (NULL: none); *out names the
 * key and *pub is its public key (caller frees).  KBR_ERR_HSM_KEY when it is not a P-256 key.
 * kbd_issuer_prove: the key signs, and its signature verifies with pub (a new key is checked
 * before the ledger trusts it).
 * kbd_issuers_to_policy: the ledger's issuer keys (kbr_store_issuer_keys) into the policy,
 * *current the one that is (zeroed when the ledger has none).
 * kbd_issuers_check_hsm: every key of rows the policy trusts at now is in the HSM under its
 * label with the public key the ledger recorded (after the tokens are loaded).
 */
KBR_WUR kbr_err kbd_issuer_effect(kbr_hsm_session *s, const char *label, const char *replaces,
                                  time_t at, kbd_issuer *out, EVP_PKEY **pub, kbr_effects **fx,
                                  kbr_msg *msg);
KBR_WUR kbr_err kbd_issuer_prove(kbr_hsm_session *s, const kbd_issuer *key, EVP_PKEY *pub,
                                 kbr_msg *msg);
KBR_WUR kbr_err kbd_issuers_to_policy(kbr_policy *p, const json_t *rows, kbd_issuer *current,
                                      kbr_msg *msg);
KBR_WUR kbr_err kbd_issuers_check_hsm(kbr_hsm_session *s, const kbr_policy *p, const json_t *rows,
                                      time_t now, kbr_msg *msg);
/* The store row shape of a token.issue effect, for kbr_policy_add_token. New ref. */
json_t *kbd_token_row_from_effect(const kbr_effect *effect);
/* A request's token, minted on its worker w with signer: *token, *effect (the token.issue
 * effect's JSON) and *row (its registry row) are the caller's; the effect goes to the
 * request's record, and the record's detail names the token (with lineage, also its
 * cnf_x5t and parent).  again ends the message of a refusal at commit.  False after
 * kbd_req_error. */
bool kbd_token_mint_for(kbd_req *r, kbd_worker *w, const kbd_issuer *signer,
                        const kbd_token_spec *spec, bool lineage, const char *again, char **token,
                        json_t **effect, json_t **row);

/* keyring.c: the "hsm" object of a key, as the HSM reports it now (worker). New ref or NULL. */
json_t *kbd_hsm_facts(kbr_hsm_session *s, const char *label, kbr_err *err);

#endif
