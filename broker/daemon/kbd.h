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
    double t0;           /* monotonic: when the request arrived */
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
    /* or a body that is not JSON: resp_text (owned) of type resp_type (static) */
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
 *            completed.
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

/* backup.c: GET /v1/backup streams a consistent copy of the store.  parse makes the copy's
 * state (empty), authorize checks the token and that no other backup runs, wait has a thread of
 * its own make the copy, work (inline) records what it is, respond streams it. */
struct kbd_backup;
KBR_WUR kbr_err kbd_backup_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_backup_free(void *req);
KBR_WUR kbr_err kbd_backup_authorize(kbd_req *r, void *req);
KBR_WUR kbr_err kbd_backup_wait(kbd_req *r, void *req, bool *waiting);
void kbd_backup_work(kbd_req *r, kbd_worker *w);
void kbd_backup_respond(kbd_req *r, int64_t seq);
/* Interrupts a copy in progress and waits for its thread; before the audit writer stops. */
void kbd_backup_stop(kbd *d);
/* connlimit.c calls it as a connection closes: a stream on it stops. */
void kbd_backup_conn_closed(kbd *d, struct evhttp_connection *evcon);

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

/* handlers (h_*.c) */
/* The {name} path segment as a registered key the token holds (kbd_scope_holds_key), for
 * changing it or reading its custody; 400/403/404 otherwise.  The entry is about its
 * products. */
KBR_WUR kbr_err kbd_req_path_key(kbd_req *r, const kbd_key **out);
/* The same for reading the key object: the token sees it (kbd_scope_sees_key). */
KBR_WUR kbr_err kbd_req_path_key_visible(kbd_req *r, const kbd_key **out);
/*
 * h_exchange.c: POST /v1/tokens/exchange and the issuers' key sets.  start loads the key sets given
 * as files (a bad one stops the start), starts the thread that fetches them (libcurl for
 * jwks_url) at start, every jwks_refresh seconds, and when a token names a kid the set lacks
 * (at most every jwks_min_interval seconds); stop ends it and answers requests still waiting
 * for a fetch.  enabled: oidc_issuers is configured.
 */
#define KBD_EXCHANGE_BODY_MAX 32768
KBR_WUR kbr_err kbd_oidc_start(kbd *d, kbr_msg *msg);
void kbd_oidc_stop(kbd *d);
bool kbd_oidc_enabled(const kbd *d);
/* The route's stages: admit (served at all, the record, the source's rate), parse (the ID
 * token), authorize (its issuer, unverified), wait (for the issuer's key set to hold its kid;
 * then the ID token is verified and a rule grants, or the request is refused), work (the
 * token minted), finish (registered, answered).  A refusal by admit, authorize or wait is
 * recorded within unauth_audit_rate per source. */
KBR_WUR kbr_err kbd_exchange_admit(kbd_req *r);
KBR_WUR kbr_err kbd_exchange_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_exchange_free(void *req);
KBR_WUR kbr_err kbd_exchange_authorize(kbd_req *r, void *req);
KBR_WUR kbr_err kbd_exchange_wait(kbd_req *r, void *req, bool *waiting);
void kbd_exchange_work(kbd_req *r, kbd_worker *w);
void kbd_exchange_finish(kbd_req *r);

/*
 * Routes in stages (kbd_route): each route's typed request and its stages, named
 * kbd_<route>_{parse,free,authorize,work,finish}.
 */
/* A request whose worker reads what the token's scope lets it see (GET /v1/keys): parse
 * makes it empty, authorize copies the token's scope into it. */
typedef struct {
    kbr_scope scope;
} kbd_scoped_req;
KBR_WUR kbr_err kbd_scoped_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_scoped_free(void *req);
KBR_WUR kbr_err kbd_scoped_authorize(kbd_req *r, void *req);

/* h_keys.c: POST /v1/keys */
typedef struct {
    char *name, *purpose, *hsm_label;
    char *owner; /* NULL: the caller */
    kbr_alg alg;
    bool alg_given, register_existing, deliverable;
    json_t *products;
    char public_key_sha256[65]; /* the worker's */
} kbd_key_create_req;
KBR_WUR kbr_err kbd_key_create_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_key_create_free(void *req);
KBR_WUR kbr_err kbd_key_create_authorize(kbd_req *r, void *req);
void kbd_key_create_work(kbd_req *r, kbd_worker *w);
void kbd_key_create_finish(kbd_req *r);
/* GET /v1/keys (kbd_scoped_req) */
void kbd_key_list_work(kbd_req *r, kbd_worker *w);
/* GET /v1/keys/{name}: the path's name is the request (no typed request) */
KBR_WUR kbr_err kbd_key_path_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_key_get_authorize(kbd_req *r, void *req);
void kbd_key_get_work(kbd_req *r, kbd_worker *w);
/* POST /v1/keys/{name}/retire */
typedef struct {
    char *reason; /* NULL: none given */
} kbd_key_retire_req;
KBR_WUR kbr_err kbd_key_retire_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_key_retire_free(void *req);
/* The key of the path, for the entry of a refused request (retire, certificate) */
KBR_WUR kbr_err kbd_key_path_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_key_retire_authorize(kbd_req *r, void *req);
void kbd_key_retire_work(kbd_req *r, kbd_worker *w);
void kbd_key_retire_finish(kbd_req *r);
/* h_tokens.c: POST /v1/tokens */
typedef struct {
    /* parse */
    kbr_scope scope;
    char *sub;
    char *cnf_x5t;
    bool orphan;
    long ttl;
    /* authorize: the issuing token */
    char *parent_jti, *issued_by;
    time_t not_after;  /* the issuer's exp, unless an orphan */
    kbd_issuer signer; /* the current issuer key as the request was authorized */
    /* work */
    char *token;    /* the minted token string; wiped on free */
    json_t *effect; /* the token.issue effect's JSON form, for the record and the response */
    json_t *row;    /* the registry row the issuance adds once it is durable */
} kbd_token_issue_req;
KBR_WUR kbr_err kbd_token_issue_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_token_issue_free(void *req);
KBR_WUR kbr_err kbd_token_issue_authorize(kbd_req *r, void *req);
void kbd_token_issue_work(kbd_req *r, kbd_worker *w);
void kbd_token_issue_finish(kbd_req *r);
/* GET /v1/tokens?sub=&key=&active= */
typedef struct {
    char *sub, *key;
    bool active;
    kbr_scope scope; /* the reader's, copied for the worker by authorize */
} kbd_token_list_req;
KBR_WUR kbr_err kbd_token_list_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_token_list_free(void *req);
KBR_WUR kbr_err kbd_token_list_authorize(kbd_req *r, void *req);
void kbd_token_list_work(kbd_req *r, kbd_worker *w);
/* POST /v1/tokens/{jti}/revoke (reason) and POST /v1/revocations (reason, sub or key) */
typedef struct {
    char *reason, *sub, *key;
} kbd_revoke_req;
void kbd_revoke_free(void *req);
KBR_WUR kbr_err kbd_token_revoke_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_token_revoke_authorize(kbd_req *r, void *req);
void kbd_token_revoke_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_revocations_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_revocations_authorize(kbd_req *r, void *req);
void kbd_revocations_work(kbd_req *r, kbd_worker *w);
/* h_batches.c: POST /v1/batches */
typedef struct {
    char *batch, *product, *factory;
    int64_t quantity;
    json_t *markets; /* array of ISO 3166-1 alpha-2 codes */
} kbd_batch_create_req;
KBR_WUR kbr_err kbd_batch_create_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_batch_create_free(void *req);
KBR_WUR kbr_err kbd_batch_create_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_batch_create_authorize(kbd_req *r, void *req);
void kbd_batch_create_work(kbd_req *r, kbd_worker *w);
void kbd_batch_create_finish(kbd_req *r);
/* GET /v1/batches/{batch}: the path's name is the request */
KBR_WUR kbr_err kbd_batch_get_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_batch_get_authorize(kbd_req *r, void *req);
void kbd_batch_get_work(kbd_req *r, kbd_worker *w);
/* h_devices.c: POST /v1/devices/{serial}/revoke */
typedef struct {
    char *product, *serial, *reason;
    int reason_code;
    kbr_scope scope; /* the token's, for the worker's batch check */
} kbd_device_revoke_req;
KBR_WUR kbr_err kbd_device_revoke_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_device_revoke_free(void *req);
KBR_WUR kbr_err kbd_device_revoke_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_device_revoke_authorize(kbd_req *r, void *req);
void kbd_device_revoke_work(kbd_req *r, kbd_worker *w);
void kbd_device_revoke_finish(kbd_req *r);
/* h_debug.c: POST /v1/debug-auth */
typedef struct {
    /* parse */
    char *key_name, *product, *serial, *ticket, *permissions;
    unsigned char *message;
    size_t message_len;
    char challenge_sha256[65], message_sha256[65];
    /* authorize */
    char *key, *label;
    kbr_alg alg;
    kbr_namelist batches; /* the token's, for the worker's check of the device's batch */
} kbd_debug_auth_req;
KBR_WUR kbr_err kbd_debug_auth_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_debug_auth_free(void *req);
KBR_WUR kbr_err kbd_debug_auth_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_debug_auth_authorize(kbd_req *r, void *req);
void kbd_debug_auth_work(kbd_req *r, kbd_worker *w);
/* h_products.c: POST /v1/products, GET /v1/products/{product} */
typedef struct {
    char *product, *placed, *until; /* GET: the product alone */
} kbd_product_req;
void kbd_product_free(void *req);
KBR_WUR kbr_err kbd_product_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_product_register_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_product_authorize(kbd_req *r, void *req);
void kbd_product_register_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_product_get_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_product_get_authorize(kbd_req *r, void *req);
void kbd_product_get_work(kbd_req *r, kbd_worker *w);
/* h_ota.c: POST /v1/ota/deployments */
typedef struct {
    char *product, *version, *campaign;
    json_t *results; /* [{serial, status, at}] normalized */
    json_t *serials; /* the devices named, in order */
} kbd_ota_report_req;
KBR_WUR kbr_err kbd_ota_report_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_ota_report_free(void *req);
KBR_WUR kbr_err kbd_ota_report_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_ota_report_authorize(kbd_req *r, void *req);
void kbd_ota_report_work(kbd_req *r, kbd_worker *w);
/* h_incidents.c: /v1/incidents and /v1/incidents/{id}/... (one typed request for all) */
typedef struct {
    char *id, *title, *product, *component, *purl, *vers, *aware_at, *severity, *cve;
    char *fixed, *available_at, *stage, *notes;
    json_t *versions;
    bool exploited, csaf;
    kbr_scope scope; /* the token's, copied by authorize for the worker's checks */
} kbd_incident_req;
void kbd_incident_free(void *req);
KBR_WUR kbr_err kbd_incident_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_incident_authorize(kbd_req *r, void *req);
KBR_WUR kbr_err kbd_incident_create_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_incident_create_authorize(kbd_req *r, void *req);
void kbd_incident_create_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_incident_list_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_incident_list_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_incident_get_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_incident_get_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_incident_fix_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_incident_fix_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_incident_report_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_incident_report_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_incident_report_get_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_incident_report_get_work(kbd_req *r, kbd_worker *w);
/* h_certs.c: POST /v1/keys/{name}/certificate */
typedef struct {
    char *pem, *subject; /* pem (with its chain) or self_signed's subject and days */
    long days;
    /* authorize: the key */
    char *name, *label;
    kbr_alg alg;
    bool ca_key; /* a device-identity-ca key: only a CA certificate fits it */
} kbd_key_certificate_req;
KBR_WUR kbr_err kbd_key_certificate_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_key_certificate_free(void *req);
KBR_WUR kbr_err kbd_key_certificate_authorize(kbd_req *r, void *req);
void kbd_key_certificate_work(kbd_req *r, kbd_worker *w);
void kbd_key_certificate_finish(kbd_req *r);
/* h_audit.c: GET /v1/audit/checkpoint (Accept), /v1/audit/proof?seq=&size=,
 * /v1/audit/consistency?first=&second=, POST /v1/audit/key/rotate */
typedef struct {
    bool note; /* Accept: text/plain: the note alone */
} kbd_checkpoint_req;
KBR_WUR kbr_err kbd_audit_checkpoint_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_audit_checkpoint_work(kbd_req *r, kbd_worker *w);
typedef struct {
    int64_t seq, size; /* size 0: the latest checkpoint's */
    kbr_scope scope;   /* the reader's, copied by authorize for the worker */
} kbd_audit_proof_req;
KBR_WUR kbr_err kbd_audit_proof_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_audit_proof_free(void *req);
KBR_WUR kbr_err kbd_audit_proof_authorize(kbd_req *r, void *req);
void kbd_audit_proof_work(kbd_req *r, kbd_worker *w);
typedef struct {
    int64_t first, second;
} kbd_audit_consistency_req;
KBR_WUR kbr_err kbd_audit_consistency_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_audit_consistency_work(kbd_req *r, kbd_worker *w);
typedef struct {
    char *reason;
    bool held; /* this request holds the checkpointer */
} kbd_audit_key_rotate_req;
KBR_WUR kbr_err kbd_audit_key_rotate_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_audit_key_rotate_free(void *req);
KBR_WUR kbr_err kbd_audit_key_rotate_authorize(kbd_req *r, void *req);
void kbd_audit_key_rotate_work(kbd_req *r, kbd_worker *w);
void kbd_audit_key_rotate_settle(kbd_req *r, bool committed);
/* h_issuer.c: POST /v1/tokens/issuer/rotate */
typedef struct {
    char *reason;
    char replaces[64]; /* the current kid when the request was authorized */
    kbd_issuer key;    /* the new one (work) */
    char at[KBR_TIME_LEN];
    EVP_PKEY *pub;
} kbd_issuer_rotate_req;
KBR_WUR kbr_err kbd_issuer_rotate_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_issuer_rotate_free(void *req);
KBR_WUR kbr_err kbd_issuer_rotate_authorize(kbd_req *r, void *req);
void kbd_issuer_rotate_work(kbd_req *r, kbd_worker *w);
void kbd_issuer_rotate_finish(kbd_req *r);
void kbd_issuer_rotate_settle(kbd_req *r, bool committed);
/* h_provision.c: POST /v1/provision.  wait: the requests for one device (product, serial) run
 * one at a time, each reserving a unit of the batch and a use of the token once it is its
 * turn; settle releases them and lets the next one run. */
typedef struct kbd_prov_req kbd_prov_req;
void kbd_prov_free(void *req);
KBR_WUR kbr_err kbd_provision_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_provision_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_provision_authorize(kbd_req *r, void *req);
KBR_WUR kbr_err kbd_provision_wait(kbd_req *r, void *req, bool *waiting);
void kbd_provision_work(kbd_req *r, kbd_worker *w);
void kbd_provision_settle(kbd_req *r, bool committed);
/* POST /v1/devices/{serial}/certificates (a device's new certificate), on the provisioning's
 * typed request */
KBR_WUR kbr_err kbd_rotate_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_rotate_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_rotate_authorize(kbd_req *r, void *req);
void kbd_rotate_work(kbd_req *r, kbd_worker *w);
/* h_sign.c: POST /v1/sign */
typedef struct kbd_sign_req kbd_sign_req;
KBR_WUR kbr_err kbd_sign_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_sign_free(void *req);
KBR_WUR kbr_err kbd_sign_describe(kbd_req *r, const void *req);
KBR_WUR kbr_err kbd_sign_authorize(kbd_req *r, void *req);
void kbd_sign_work(kbd_req *r, kbd_worker *w);
void kbd_sign_finish(kbd_req *r);
/* h_misc.c: GET /v1/audit */
typedef struct {
    int64_t after, limit;
    kbr_scope scope; /* the reader's, copied for the worker by authorize */
} kbd_audit_page_req;
KBR_WUR kbr_err kbd_audit_page_parse(const kbd_req *r, void **out, kbr_msg *msg);
void kbd_audit_page_free(void *req);
KBR_WUR kbr_err kbd_audit_page_authorize(kbd_req *r, void *req);
void kbd_audit_list_work(kbd_req *r, kbd_worker *w);
/* GET /v1/jwks, GET /v1/health: no request, no record; finish makes the response */
void kbd_jwks_finish(kbd_req *r);
void kbd_health_finish(kbd_req *r);
/* metrics.c: GET /metrics, Prometheus text (r->resp_text) */
void kbd_metrics_finish(kbd_req *r);
/* h_audit.c: signed checkpoints every checkpoint_entries entries or checkpoint_seconds seconds
 * (a timer on the event loop, the signing on a worker); stop after the workers and the audit
 * writer stopped.  stop accepts a daemon that never started them. */
KBR_WUR kbr_err kbd_checkpoint_start(kbd *d, kbr_msg *msg);
/* Worker: a checkpoint covering entry seq, made now when the latest does not (h_audit.c). */
KBR_WUR kbr_err kbd_checkpoint_covering(kbd_worker *w, int64_t seq, json_t **cp);
/* Worker: cp (a store checkpoint) as GET /v1/audit/checkpoint shows it, and what leads an
 * auditor from the first audit key to its signer: *keys the audit keys in order (PEM), *chain
 * the rotations that hand each on (shown likewise).  New refs. */
KBR_WUR kbr_err kbd_checkpoint_evidence(kbd_worker *w, json_t *cp, json_t **keys, json_t **chain);
void kbd_checkpoint_stop(kbd *d);
/* h_views.c: the custody views; one typed request (private) for the four. */
void kbd_view_free(void *p);
KBR_WUR kbr_err kbd_view_product_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_view_product_authorize(kbd_req *r, void *req);
void kbd_view_product_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_view_custody_authorize(kbd_req *r, void *req);
void kbd_view_custody_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_view_exposure_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_view_exposure_authorize(kbd_req *r, void *req);
void kbd_view_exposure_work(kbd_req *r, kbd_worker *w);
KBR_WUR kbr_err kbd_view_device_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_view_device_authorize(kbd_req *r, void *req);
void kbd_view_device_work(kbd_req *r, kbd_worker *w);
/* h_evidence.c: the evidence bundles; one typed request (private) for the three, one worker. */
void kbd_evidence_free(void *p);
KBR_WUR kbr_err kbd_evidence_device_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_evidence_product_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_evidence_incident_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_evidence_device_authorize(kbd_req *r, void *req);
KBR_WUR kbr_err kbd_evidence_product_authorize(kbd_req *r, void *req);
KBR_WUR kbr_err kbd_evidence_incident_authorize(kbd_req *r, void *req);
void kbd_evidence_work(kbd_req *r, kbd_worker *w);
/*
 * cra_docs.c: the documents an incident's reports are.  kbd_cra_report: the report of stage
 * ("early-warning", "notification" or "final") from the incident as kbr_store_incident_view
 * shows it with its figures, made at `at` by sub; notes (may be NULL) as the reporter wrote
 * them.  kbd_csaf: the CSAF 2.0 VEX document of a report, published by publisher (name,
 * namespace URI).  New refs.
 */
KBR_WUR kbr_err kbd_cra_report(const json_t *incident, const char *stage, const char *notes,
                               const char *at, const char *sub, const char *instance_id,
                               json_t **out);
KBR_WUR kbr_err kbd_csaf(const json_t *report, const char *publisher, const char *namespace,
                         json_t **out);
/* h_crl.c: GET /v1/cas/{key}/crl.  authorize: the key is a device CA in the registry (no
 * token); wait: for a CRL that covers every committed change, signed now when the last is not
 * fresh; finish: that CRL, DER. */
KBR_WUR kbr_err kbd_crl_parse(const kbd_req *r, void **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_crl_authorize(kbd_req *r, void *req);
KBR_WUR kbr_err kbd_crl_wait(kbd_req *r, void *req, bool *waiting);
void kbd_crl_finish(kbd_req *r);
/* h_crl.c, event thread: a revocation or a CA certificate was committed, so no CRL signed
 * before it may be served again. */
void kbd_crls_changed(kbd *d);
void kbd_crls_free(kbd *d);

/* follow.c: on a store several brokers share (kbr_store_shared), applies what the others
 * commit after entry `from` to this broker's registries, on the event thread.  Nothing for a
 * store of one broker. */
KBR_WUR kbr_err kbd_follow_start(kbd *d, int64_t from, kbr_msg *msg);
void kbd_follow_stop(kbd *d);

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

struct kbr_ca_issuer;
/* h_provision.c: frees a worker's issuer cache; accepts NULL. */
void kbd_issuer_cache_free(void *p);
/* h_provision.c, worker: the issuer of CA key `key` (its HSM label and algorithm): the key's
 * current CA certificate, with a signer over the worker's HSM session, kept by the worker
 * while that certificate stays the key's.  *issuer, *chain (the CA certificate, then its
 * chain) and *fingerprint (the CA certificate's) are the worker's until its next call.
 * KBR_ERR_CONFLICT when the key has no certificate; msg says why. */
KBR_WUR kbr_err kbd_worker_issuer(kbd_worker *w, const char *key, const char *label, kbr_alg alg,
                                  const struct kbr_ca_issuer **issuer, const char **chain,
                                  const char **fingerprint, kbr_msg *msg);
/* h_provision.c: the flights left at exit (none wait by then). */
void kbd_flights_free(kbd *d);

/* hsmproc.c: the HSM in processes of its own.  start forks, so it runs before any thread;
 * it returns once the HSM process is logged in (or with the reason it is not), with d->hsm
 * set.  reap, after SIGCHLD: true if the keeper died.  stop closes d->hsm and waits for
 * the keeper, after every session is closed. */
KBR_WUR kbr_err kbd_hsmproc_start(kbd *d, kbr_msg *msg);
bool kbd_hsmproc_reap(kbd *d);
/* Passes SIGHUP on to the keeper, which reopens its log and passes it to the HSM process. */
void kbd_hsmproc_hup(kbd *d);
void kbd_hsmproc_stop(kbd *d);

/*
 * Whether this build runs under AddressSanitizer or LeakSanitizer, whose leak check stops the
 * process's threads with ptrace and clone: the sandbox keeps both there (sandbox.c), and its
 * test expects them (tests/unit/test_sandbox.c).
 */
#if defined(__SANITIZE_ADDRESS__)
#define KBD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define KBD_SANITIZED 1
#endif
#endif
#ifndef KBD_SANITIZED
#define KBD_SANITIZED 0
#endif

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
/* *in: the store records the record's head (a checkpoint with its signature), or went on past
 * it (it is no head the log could record next: an HSM that did not see the later heads of
 * brokers sharing the store); false when the record's entry is still to be committed. */
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

/* keybrokerd.c: the audit key under label is an Ed25519 key in the HSM; an older broker's ECDSA
 * kbr/audit is refused with what to do (KBR_ERR_HSM_KEY), a missing one names --init. */
KBR_WUR kbr_err kbd_audit_key_usable(kbr_hsm_session *s, const char *label, kbr_msg *msg);

/* init.c */
KBR_WUR kbr_err kbd_init_deployment(kbd_config *cfg, kbr_msg *msg);
/* init.c: the issuer key a bootstrap token is signed with, the ledger's current one (in the
 * HSM as recorded); when the ledger has none, kbr/issuer (made when missing) and *record the
 * issuer.rotate effect (a list of one, caller frees) that records it, else NULL. */
KBR_WUR kbr_err kbd_bootstrap_issuer(kbr_hsm_session *s, kbr_store *st, const kbd_config *cfg,
                                     kbd_issuer *issuer, kbr_effects **record, kbr_msg *msg);
/* Signs the head of the log as it stands (kbd_head_sign_and_record, in this process) and
 * commits its entry: --init and --recover end with the HSM's record matching the store. */
KBR_WUR kbr_err kbd_checkpoint_now(kbr_hsm_session *s, kbr_store *st, kbr_audit *audit,
                                   const kbd_head_spec *spec, kbr_msg *msg);
/* recover.c: `keybrokerd --recover` (docs/operations.md, "Restoring"). */
KBR_WUR kbr_err kbd_recover_deployment(kbd_config *cfg, kbr_msg *msg);
/* check.c: keybrokerd --check; prints one line per problem, returns the exit status. */
int kbd_check(const char *path);
/* verify_store.c: --verify-store; prints what it checked.  KBR_ERR_CONFLICT when the store differs
 * from its log (msg names the first difference). */
KBR_WUR kbr_err kbd_verify_store(const kbd_config *cfg, kbr_msg *msg);
/* Reads pin_file and loads the module into this process: --init and the HSM process only. */
KBR_WUR kbr_err kbd_open_hsm(const kbd_config *cfg, kbr_hsm **out, kbr_msg *msg);

/* keyring.c: the "hsm" object of a key, as the HSM reports it now (worker). New ref or NULL. */
json_t *kbd_hsm_facts(kbr_hsm_session *s, const char *label, kbr_err *err);

#endif
