/*
 * sqlite.h - private to store/: the SQLite back end's connection,
 * shared by sqlite.c (connection, schema, transactions, audit table),
 * sqlite_ledger.c (keys, tokens, firmware), sqlite_device.c
 * (certificates, batches, devices and their events), sqlite_field.c
 * (debug unlocks, firmware history, fleet lookups), sqlite_tree.c (the audit
 * tree and its checkpoints) and sqlite_migrate.c (schema steps after version 1).
 */
#ifndef KBR_STORE_SQLITE_H
#define KBR_STORE_SQLITE_H

#include <sqlite3.h>

#include "backend.h"

/*
 * Every statement the back end runs.  Each is prepared once per connection,
 * on first use, from the SQL its caller passes (so the SQL stays next to
 * the code that binds it) and reused after that.
 */
typedef enum {
    SQ_BEGIN,
    SQ_COMMIT,
    SQ_ROLLBACK,
    SQ_SAVEPOINT,
    SQ_RELEASE,
    SQ_ROLLBACK_TO,
    SQ_AUDIT_INSERT,
    SQ_AUDIT_TAIL,
    SQ_AUDIT_WALK,
    SQ_MERKLE_LEAF,
    SQ_MERKLE_NODE_GET,
    SQ_MERKLE_NODE_PUT,
    SQ_CHECKPOINT_INSERT,
    SQ_CHECKPOINT_LATEST,
    SQ_CHECKPOINT_FIND,
    SQ_CHECKPOINT_ROTATIONS,
    SQ_KEY_INSERT,
    SQ_KEY_RETIRE,
    SQ_KEY_EXISTS,
    SQ_KEY_GET,
    SQ_KEY_LIST,
    SQ_TOKEN_INSERT,
    SQ_TOKEN_REVOKE,
    SQ_TOKEN_REVOKE_ALL,
    SQ_TOKEN_LIST,
    SQ_TOKEN_USES_LEFT,
    SQ_ISSUER_CURRENT,
    SQ_ISSUER_REPLACE,
    SQ_ISSUER_INSERT,
    SQ_TOKENS_ASSIGN_KID,
    SQ_ISSUER_KEYS,
    SQ_FIRMWARE_DIGEST,
    SQ_FIRMWARE_INSERT,
    SQ_FIRMWARE_GET,
    SQ_COMPONENT_INSERT,
    SQ_DOCUMENT_PUT,
    SQ_DOCUMENT_EXISTS,
    SQ_DOCUMENT_GET,
    SQ_ISSUER_CHAIN,
    SQ_EVIDENCE_DEVICE,
    SQ_EVIDENCE_PRODUCT,
    SQ_COMPONENT_LIST,
    SQ_CERT_CURRENT,
    SQ_CERT_SUPERSEDE,
    SQ_CERT_INSERT,
    SQ_BATCH_INSERT,
    SQ_BATCH_CLAIM,
    SQ_BATCH_GET,
    SQ_BATCH_LIST,
    SQ_DEVICE_INSERT,
    SQ_DEVICE_EXISTS,
    SQ_DEVICE_GET,
    SQ_DEVICE_CERTS,
    SQ_DEVICE_FIND,
    SQ_DEVICE_KEY_SET,
    SQ_DEVICE_BY_KEY,
    SQ_EVENT_INSERT,
    SQ_EVENT_LIST,
    SQ_CHALLENGE_INSERT,
    SQ_CHALLENGE_USED,
    SQ_DEVICE_FW_INSERT,
    SQ_DEVICE_FW_CURRENT,
    SQ_DEVICE_FW_LIST,
    SQ_DEVICES_KNOWN,
    SQ_HISTORY_OF,
    SQ_HISTORY_FIND,
    SQ_HISTORY_INSERT,
    SQ_HISTORY_VERSIONS_INSERT,
    SQ_DEVICE_HISTORY_SET,
    SQ_SNAPSHOT_BEGIN,
    SQ_SNAPSHOT_END,
    SQ_SNAPSHOT_ABORT,
    SQ_VIEW_PRODUCT_KEYS,
    SQ_VIEW_PRODUCT_KNOWN,
    SQ_VIEW_LIVE_TOKENS,
    SQ_VIEW_CERT_MONTHS,
    SQ_VIEW_CERT_EXPIRING_COUNT,
    SQ_VIEW_CERT_EXPIRING_FIRST,
    SQ_VIEW_KEY_TOKENS,
    SQ_VIEW_KEY_OPERATIONS,
    SQ_VIEW_COMPONENTS_BY_NAME,
    SQ_VIEW_COMPONENTS_BY_PURL,
    SQ_VIEW_BUILD,
    SQ_VIEW_BUILD_BATCHES,
    SQ_VIEW_BUILD_HISTORIES,
    SQ_VIEW_HISTORY_BATCHES,
    SQ_VIEW_BATCH_MARKETS,
    SQ_VIEW_FLEET_SIZE,
    SQ_VIEW_PENDING_GROUP,
    SQ_VIEW_WALK_PRODUCT,
    SQ_VIEW_WALK_ALL,
    /* revocation and CRLs (sqlite_revoke.c) */
    SQ_DEVICE_REVOKED,
    SQ_DEVICE_REVOKE,
    SQ_CERT_REVOKE,
    SQ_CRL_LAST,
    SQ_CRL_INSERT,
    SQ_CRL_REVOKED,
    SQ_DEVICE_REVOCATION,
    /* keys delivered to devices (sqlite_deliver.c) */
    SQ_DELIVERY_INSERT,
    SQ_DEVICE_DELIVERIES,
    SQ_PRODUCT_GET,
    SQ_PRODUCT_INSERT,
    SQ_PRODUCT_UPDATE,
    SQ_INCIDENT_INSERT,
    SQ_INCIDENT_BUILD_INSERT,
    SQ_INCIDENT_FLEET_LOAD,
    SQ_INCIDENT_GET,
    SQ_INCIDENT_LIST,
    SQ_INCIDENT_QUERIES,
    SQ_INCIDENT_BUILDS,
    SQ_INCIDENT_FIX,
    SQ_INCIDENT_REPORT_INSERT,
    SQ_INCIDENT_REPORTS,
    SQ_INCIDENT_SERIES,
    SQ_FIRMWARE_VERSION_EXISTS,
    SQ_EVIDENCE_INCIDENT,
    SQ__COUNT
} kbr_sq_id;

typedef struct {
    kbr_store base; /* first: a kbr_store * is a kbr_sqlite * */
    sqlite3 *db;
    sqlite3_stmt *stmts[SQ__COUNT];
    int wal_frames; /* the writer's: frames in the WAL after its last commit */
} kbr_sqlite;

/* The one translation of SQLite result codes into kbr_err. */
kbr_err kbr_sqlite_err(int rc);
/* kbr_sqlite_err(rc), with msg naming the store at path and SQLite's own message. */
kbr_err kbr_sqlite_fail(kbr_sqlite *s, const char *path, int rc, kbr_msg *msg);

/*
 * The VFS the store's connections open with (sqlite_walbuf.c): the system's, with a WAL's
 * consecutive writes gathered into writes of up to 124 KiB.  Registered once, before the
 * first open.
 */
#define KBR_SQLITE_VFS "kbr-walbuf"
int kbr_sqlite_walbuf_register(void);

/* The schema version this broker writes. */
#define KBR_SQLITE_SCHEMA_VERSION 10
/* "PATH[?max_pages=N]": *path is the caller's to free. */
kbr_err kbr_sqlite_parse_location(const char *loc, char **path, sqlite3_int64 *max_pages,
                                  kbr_msg *msg);
/* max(schema_version) of meta; 0 for a store without one. */
kbr_err kbr_sqlite_schema_version(kbr_sqlite *s, const char *path, int *version, kbr_msg *msg);
void kbr_sqlite_close(kbr_store *st);

/* Existence, read-only inspection and online copies (sqlite_admin.c). */
kbr_err kbr_sqlite_exists(const char *loc, kbr_msg *msg);
/* See kbr_store_file. */
kbr_err kbr_sqlite_file(const char *loc, char **path, kbr_msg *msg);
kbr_err kbr_sqlite_open_readonly(const char *loc, kbr_store **out, kbr_store_info *info,
                                 kbr_msg *msg);
kbr_err kbr_sqlite_backup(kbr_store *st, int *fd, kbr_store_backup_info *info, kbr_msg *msg);
kbr_err kbr_sqlite_copy_to(kbr_store *st, const char *path, kbr_msg *msg);
void kbr_sqlite_interrupt(kbr_store *st);
/* Removes the copies a backup that never finished left beside the store at path. */
void kbr_sqlite_backup_leftovers(const char *path);

/* Statement id (prepared from sql the first time), ready to bind.  Borrowed: end with
 * kbr_sqlite_done. */
KBR_WUR kbr_err kbr_sqlite_stmt(kbr_sqlite *s, kbr_sq_id id, const char *sql, sqlite3_stmt **out);
/* Resets a statement from kbr_sqlite_stmt so it holds no lock or snapshot; accepts NULL. */
void kbr_sqlite_done(sqlite3_stmt *stmt);
/* Steps a statement that returns no rows. */
KBR_WUR kbr_err kbr_sqlite_run(sqlite3_stmt *stmt);
/* Binds s, or NULL as SQL NULL. */
KBR_WUR kbr_err kbr_sqlite_bind_text(sqlite3_stmt *stmt, int idx, const char *s);
/* A column's text, or NULL for SQL NULL. */
const char *kbr_sqlite_text(sqlite3_stmt *stmt, int col);

/* Sets obj[cols[i].field] from result column first + i. */
KBR_WUR kbr_err kbr_sqlite_put_columns(json_t *obj, sqlite3_stmt *stmt, int first,
                                       const kbr_col_spec *cols, size_t n);
/* Steps stmt to the end: a new array (caller's) of one object per row, from column 0 on. */
KBR_WUR kbr_err kbr_sqlite_objects(sqlite3_stmt *stmt, const kbr_col_spec *cols, size_t n,
                                   json_t **out);
/* Steps stmt once: the row as a new object, KBR_ERR_NOT_FOUND when there is none. */
KBR_WUR kbr_err kbr_sqlite_object(sqlite3_stmt *stmt, const kbr_col_spec *cols, size_t n,
                                  json_t **out);

/*
 * Tokens as GET /v1/tokens shows them, from "t" (tokens) and "u" (token_usage, the key uses
 * counted as the audit rows went in); the caller adds WHERE and ORDER BY.
 */
#define KBR_SQLITE_TOKEN_SELECT                                                                    \
    "SELECT t.jti, t.sub, t.scope, t.issued_at, t.not_before, t.expires_at, t.revoked_at,"         \
    " t.revoke_reason, t.issued_by, t.cnf_x5t, coalesce(u.uses, 0), u.last_used_at,"               \
    " t.parent_jti, t.orphan, t.kid"                                                               \
    " FROM tokens t LEFT JOIN token_usage u ON u.jti = t.jti"

/* Ledger operations (sqlite_ledger.c). */
kbr_err kbr_sqlite_key_create(kbr_store *st, const kbr_eff_key *k, int64_t seq);
kbr_err kbr_sqlite_key_retire(kbr_store *st, const char *name, const char *at);
kbr_err kbr_sqlite_token_issue(kbr_store *st, const kbr_eff_token *t, int64_t seq);
kbr_err kbr_sqlite_token_uses_left(kbr_store *st, const char *jti, int64_t *left);
kbr_err kbr_sqlite_token_revoke(kbr_store *st, const char *jti, const char *at, const char *reason);
kbr_err kbr_sqlite_token_revoke_all(kbr_store *st, const char *at, const char *reason);
kbr_err kbr_sqlite_issuer_current(kbr_store *st, char **kid);
kbr_err kbr_sqlite_issuer_replace(kbr_store *st, const char *kid, const char *at);
kbr_err kbr_sqlite_issuer_insert(kbr_store *st, const kbr_fx_issuer_rotate *r,
                                 const char *public_key_sha256, int64_t seq);
kbr_err kbr_sqlite_tokens_assign_kid(kbr_store *st, const char *kid);
kbr_err kbr_sqlite_issuer_keys(kbr_store *st, json_t **keys);
kbr_err kbr_sqlite_firmware_digest(kbr_store *st, const char *product, const char *version,
                                   char **digest);
kbr_err kbr_sqlite_firmware_insert(kbr_store *st, const kbr_eff_firmware *f, int64_t seq);
kbr_err kbr_sqlite_component_insert(kbr_store *st, const char *product, const char *version,
                                    const kbr_eff_component *c, const char *purl_key);
kbr_err kbr_sqlite_key_get(kbr_store *st, const char *name, json_t **key);
kbr_err kbr_sqlite_key_list(kbr_store *st, json_t **keys);
kbr_err kbr_sqlite_token_list(kbr_store *st, const char *sub, bool active, time_t now,
                              json_t **tokens);
kbr_err kbr_sqlite_firmware_get(kbr_store *st, const char *product, const char *version,
                                json_t **build);
kbr_err kbr_sqlite_key_exists(kbr_store *st, const char *name, bool *exists);
kbr_err kbr_sqlite_evidence_seqs(kbr_store *st, const char *product, const char *serial,
                                 json_t **seqs);
kbr_err kbr_sqlite_bulk_mode(kbr_store *st);
kbr_err kbr_sqlite_scratch_mode(kbr_store *st);
kbr_err kbr_sqlite_effects_from(kbr_store *st, int64_t *seq);
kbr_err kbr_sqlite_integrity(kbr_store *st, kbr_msg *msg);
kbr_err kbr_sqlite_compare(kbr_store *st, kbr_store *rebuilt, kbr_store_compare_stats *stats,
                           kbr_msg *msg);
kbr_err kbr_sqlite_document_put(kbr_store *st, const kbr_document *doc, int64_t seq);
kbr_err kbr_sqlite_document_exists(kbr_store *st, const char *sha256, bool *exists);
kbr_err kbr_sqlite_document_get(kbr_store *st, const char *sha256, unsigned char **body,
                                size_t *len, int64_t *audit_seq);
kbr_err kbr_sqlite_issuer_chain(kbr_store *st, const char *issuer_key, const char *fingerprint,
                                char **chain);

/* Certificates, batches and devices (sqlite_device.c). */
kbr_err kbr_sqlite_cert_supersede(kbr_store *st, const kbr_eff_owner *owner, const char *at,
                                  json_t **fingerprints);
kbr_err kbr_sqlite_cert_insert(kbr_store *st, const kbr_eff_cert *c, int64_t seq);
kbr_err kbr_sqlite_batch_create(kbr_store *st, const kbr_eff_batch *b, int64_t seq);
kbr_err kbr_sqlite_batch_claim(kbr_store *st, const char *batch, const char *product,
                               const char *factory);
kbr_err kbr_sqlite_device_insert(kbr_store *st, const kbr_eff_device *d, int64_t seq);
kbr_err kbr_sqlite_device_exists(kbr_store *st, const char *product, const char *serial,
                                 bool *exists);
kbr_err kbr_sqlite_device_key_set(kbr_store *st, const char *product, const char *serial,
                                  const char *public_key_sha256);
kbr_err kbr_sqlite_device_by_key(kbr_store *st, const char *public_key_sha256, json_t **out);
kbr_err kbr_sqlite_device_event_insert(kbr_store *st, const char *product, const char *serial,
                                       const char *kind, const char *at, const char *detail_json,
                                       int64_t seq);
kbr_err kbr_sqlite_batch_get(kbr_store *st, const char *batch, json_t **out);
kbr_err kbr_sqlite_batch_list(kbr_store *st, json_t **out);
kbr_err kbr_sqlite_device_get(kbr_store *st, const char *product, const char *serial, json_t **out);
kbr_err kbr_sqlite_device_find(kbr_store *st, const char *serial, json_t **out);
kbr_err kbr_sqlite_device_events(kbr_store *st, const char *product, const char *serial,
                                 json_t **out);

/* Debug unlocks and firmware reports of devices in the field (sqlite_field.c). */
kbr_err kbr_sqlite_debug_challenge_insert(kbr_store *st, const kbr_eff_debug *d, int64_t seq);
kbr_err kbr_sqlite_device_firmware_insert(kbr_store *st, const kbr_eff_device_firmware *r,
                                          int64_t seq, bool *added);
kbr_err kbr_sqlite_device_firmware_current(kbr_store *st, const char *product, const char *serial,
                                           const char *version, const char *at);
kbr_err kbr_sqlite_devices_known(kbr_store *st, const char *product, const json_t *serials,
                                 json_t **known);
kbr_err kbr_sqlite_debug_challenge_used(kbr_store *st, const char *product, const char *serial,
                                        const char *challenge_sha256, bool *used);
kbr_err kbr_sqlite_device_firmware(kbr_store *st, const char *product, const char *serial,
                                   json_t **out);

/* The audit tree and its checkpoints (sqlite_tree.c). */
kbr_err kbr_sqlite_merkle_node_get(kbr_store *st, unsigned level, int64_t idx,
                                   unsigned char out[32]);
kbr_err kbr_sqlite_merkle_node_put(kbr_store *st, unsigned level, int64_t idx,
                                   const unsigned char hash[32]);
kbr_err kbr_sqlite_checkpoint_insert(kbr_store *st, const kbr_fx_checkpoint *c, int64_t seq);
kbr_err kbr_sqlite_checkpoint_latest(kbr_store *st, json_t **out);
kbr_err kbr_sqlite_checkpoint_find(kbr_store *st, const char *signature_b64, bool *found);
kbr_err kbr_sqlite_checkpoint_rotations(kbr_store *st, int64_t seq, json_t **out);

/* Schema steps after version 1, in the transaction that creates or opens the store
 * (sqlite_migrate.c); path and msg name the store in a failure. */
/* The files of store/sql/, built in (the Makefile's rule for $(BUILD)/store/sql.c). */
extern const char kbr_sql_v1[], kbr_sql_v2_schema[], kbr_sql_v2_assign[], kbr_sql_v3_schema[],
    kbr_sql_v3_unique[], kbr_sql_v4_schema[], kbr_sql_v5_issuer[], kbr_sql_v6_revoke[],
    kbr_sql_v7_audit[], kbr_sql_v8_deliver[], kbr_sql_v9_cra[], kbr_sql_v10_schema[];

kbr_err kbr_sqlite_migrate_v2(kbr_sqlite *s, const char *path, kbr_msg *msg);
kbr_err kbr_sqlite_migrate_v3(kbr_sqlite *s, const char *path, kbr_msg *msg);

/* Snapshots and the custody views (sqlite_views.c, sqlite_exposure.c). */
kbr_err kbr_sqlite_snapshot_begin(kbr_store *st, kbr_msg *msg);
void kbr_sqlite_snapshot_end(kbr_store *st);
kbr_err kbr_sqlite_device_certificates(kbr_store *st, const char *product, const char *serial,
                                       json_t **out);
kbr_err kbr_sqlite_firmware_components(kbr_store *st, const char *product, const char *version,
                                       json_t **out);
kbr_err kbr_sqlite_product_relations(kbr_store *st, const char *product, json_t **out);
kbr_err kbr_sqlite_product_known(kbr_store *st, const char *product, bool *known);
kbr_err kbr_sqlite_live_tokens(kbr_store *st, const char *key, const char *product, const char *now,
                               json_t **out);
kbr_err kbr_sqlite_cert_months(kbr_store *st, const char *product, json_t **out);
kbr_err kbr_sqlite_expiring_devices(kbr_store *st, const char *product, const char *until,
                                    int limit, int64_t *count, json_t **out);
kbr_err kbr_sqlite_key_tokens(kbr_store *st, const char *key, json_t **out);
kbr_err kbr_sqlite_key_operations(kbr_store *st, const char *key, json_t **out);
kbr_err kbr_sqlite_exposure_components(kbr_store *st, const char *component, const char *purl_key,
                                       const char *product, json_t **out);
kbr_err kbr_sqlite_build_row(kbr_store *st, const char *product, const char *version, json_t **out);
kbr_err kbr_sqlite_fleet_batches(kbr_store *st, const char *product, const char *firmware,
                                 json_t **out);
kbr_err kbr_sqlite_build_histories(kbr_store *st, const char *product, const char *version,
                                   json_t **out);
kbr_err kbr_sqlite_history_batches(kbr_store *st, int64_t history, json_t **out);
kbr_err kbr_sqlite_batch_markets(kbr_store *st, const char *batch, json_t **out);
kbr_err kbr_sqlite_pending_group(kbr_store *st, int64_t history, const char *firmware,
                                 const char *after, int limit, json_t **out);
kbr_err kbr_sqlite_fleet_walk(kbr_store *st, const char *product, const char *after,
                              kbr_fleet_fn fn, void *arg);
kbr_err kbr_sqlite_fleet_size(kbr_store *st, const char *product, int64_t *n);

/* Device revocation and CRLs (sqlite_revoke.c). */
kbr_err kbr_sqlite_device_revoked(kbr_store *st, const char *product, const char *serial,
                                  bool *revoked);
kbr_err kbr_sqlite_device_revoke(kbr_store *st, const kbr_eff_revoke *d, int64_t seq);
kbr_err kbr_sqlite_crl_last_number(kbr_store *st, const char *issuer_key, int64_t *last);
kbr_err kbr_sqlite_crl_insert(kbr_store *st, const kbr_eff_crl *l, int64_t seq);
kbr_err kbr_sqlite_crl_revoked(kbr_store *st, const char *issuer_key, json_t **rows);
kbr_err kbr_sqlite_device_revocation(kbr_store *st, const char *product, const char *serial,
                                     json_t **out);
/* Products' support periods and incidents (sqlite_cra.c). */
kbr_err kbr_sqlite_product_get(kbr_store *st, const char *product, json_t **out);
kbr_err kbr_sqlite_product_put(kbr_store *st, const kbr_fx_product_register *p, bool exists,
                               int64_t seq);
kbr_err kbr_sqlite_incident_insert(kbr_store *st, const kbr_fx_incident_create *i, int64_t seq);
kbr_err kbr_sqlite_incident_build_insert(kbr_store *st, const char *incident, const char *product,
                                         const char *version, int64_t seq);
kbr_err kbr_sqlite_incident_fleet_load(kbr_store *st, const char *incident, const char *day);
kbr_err kbr_sqlite_incident_get(kbr_store *st, const char *id, json_t **out);
kbr_err kbr_sqlite_incident_list(kbr_store *st, json_t **out);
kbr_err kbr_sqlite_incident_queries(kbr_store *st, json_t **out);
kbr_err kbr_sqlite_incident_builds(kbr_store *st, const char *id, json_t **out);
kbr_err kbr_sqlite_incident_fix(kbr_store *st, const kbr_fx_incident_fix *f, int64_t seq);
kbr_err kbr_sqlite_incident_report_insert(kbr_store *st, const kbr_fx_incident_report *r,
                                          int64_t seq);
kbr_err kbr_sqlite_incident_reports(kbr_store *st, const char *id, json_t **out);
kbr_err kbr_sqlite_incident_series(kbr_store *st, const char *id, json_t **out);
kbr_err kbr_sqlite_firmware_version_exists(kbr_store *st, const char *version, bool *exists);
kbr_err kbr_sqlite_evidence_incident_seqs(kbr_store *st, const char *id, json_t **seqs);

/* Keys delivered to devices (sqlite_deliver.c). */
kbr_err kbr_sqlite_key_delivery_insert(kbr_store *st, const kbr_eff_deliver *d, int64_t seq);
kbr_err kbr_sqlite_device_deliveries(kbr_store *st, const char *product, const char *serial,
                                     json_t **out);

#endif
