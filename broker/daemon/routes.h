/*
 * routes.h - what the routes' files (h_*.c, backup.c) offer: each route's typed request and
 * its stages, named kbd_<route>_{parse,free,describe,authorize,wait,work,finish,settle}, which
 * routes.c puts in the table (kbd_route in kbd.h says what each stage may do), and what the
 * rest of the daemon calls in those files (timers, caches, the notices they take).
 */
#ifndef KBD_ROUTES_H
#define KBD_ROUTES_H

#include "kbd.h"

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
    kbr_scope scope; /* the token's, copied by authorize: the worker checks the batches */
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

#endif
