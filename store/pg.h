/*
 * pg.h - private to store/: the PostgreSQL back end's connection, shared by
 * pg.c (connection, schema, transactions, the audit table and tree), pg_ledger.c (the
 * ledger's effects and reads) and pg_views.c (snapshots, the custody views' rows, the
 * fleet).  Every statement is prepared on its connection the first time it runs, keyed
 * by its SQL text's address (the SQL stays next to the code that binds it).
 */
#ifndef KBR_STORE_PG_H
#define KBR_STORE_PG_H

#include <libpq-fe.h>

#include "backend.h"

#define KBR_PG_STMTS  160
#define KBR_PG_PARAMS 16

typedef struct {
    kbr_store base; /* first: a kbr_store * is a kbr_pg * */
    PGconn *conn;
    char *conninfo; /* the URI, to connect again */
    char *where;    /* the database as messages name it (no password) */
    const char *prepared[KBR_PG_STMTS];
    int nprepared;
    bool in_tx;       /* BEGIN ran and neither COMMIT nor ROLLBACK since */
    bool in_snapshot; /* snapshot_begin's transaction */
    int snapshot_depth;
    bool lease;       /* this session holds the checkpoint lease */
    bool hold_tables; /* opened to be read only: snapshots hold every table (pg_views.c) */
} kbr_pg;

/* Parameters, all sent as text but bytea ones (binary). */
typedef struct {
    const char *v[KBR_PG_PARAMS];
    int len[KBR_PG_PARAMS];
    int fmt[KBR_PG_PARAMS];
    char num[KBR_PG_PARAMS][24];
    int n;
} kbr_pg_params;

void kbr_pg_text(kbr_pg_params *p, const char *s); /* NULL: SQL NULL */
void kbr_pg_int(kbr_pg_params *p, int64_t v);
void kbr_pg_bytes(kbr_pg_params *p, const void *b, size_t n);

/* The one translation of PostgreSQL's answers into kbr_err: a constraint or a value the
 * schema refuses (SQLSTATE classes 23 and 22) is KBR_ERR_STORE_CONSTRAINT, anything else
 * the store's (KBR_ERR_STORE). */
kbr_err kbr_pg_result_err(const PGresult *res);

/* Runs sql (prepared once per connection) with p (NULL: none).  *res (when res is not
 * NULL) is the caller's to PQclear.  Outside a transaction a connection found broken is
 * made again first, so a database that comes back serves without a restart. */
KBR_WUR kbr_err kbr_pg_exec(kbr_pg *s, const char *sql, const kbr_pg_params *p, PGresult **res);
/* The same, and *changed (may be NULL) is the number of rows it changed. */
KBR_WUR kbr_err kbr_pg_run(kbr_pg *s, const char *sql, const kbr_pg_params *p, int64_t *changed);
/* Whether it returns a row. */
KBR_WUR kbr_err kbr_pg_exists(kbr_pg *s, const char *sql, const kbr_pg_params *p, bool *exists);
/* Column 0 of its first row as an integer (SQL NULL: 0); KBR_ERR_NOT_FOUND without a row. */
KBR_WUR kbr_err kbr_pg_int64(kbr_pg *s, const char *sql, const kbr_pg_params *p, int64_t *v);
/* Column 0 of its first row, strdup'ed (the caller's); KBR_ERR_NOT_FOUND without a row or
 * for SQL NULL. */
KBR_WUR kbr_err kbr_pg_string(kbr_pg *s, const char *sql, const kbr_pg_params *p, char **v);

/* Sets obj[cols[i].field] from column first + i of row. */
KBR_WUR kbr_err kbr_pg_put_columns(json_t *obj, const PGresult *res, int row, int first,
                                   const kbr_col_spec *cols, size_t n);
/* Every row as an object: a new array (the caller's). */
KBR_WUR kbr_err kbr_pg_objects(kbr_pg *s, const char *sql, const kbr_pg_params *p,
                               const kbr_col_spec *cols, size_t n, json_t **out);
/* The first row as a new object; KBR_ERR_NOT_FOUND without one. */
KBR_WUR kbr_err kbr_pg_object(kbr_pg *s, const char *sql, const kbr_pg_params *p,
                              const kbr_col_spec *cols, size_t n, json_t **out);
/* A column's text, NULL for SQL NULL. */
const char *kbr_pg_value(const PGresult *res, int row, int col);

/* Tokens as GET /v1/tokens shows them (sqlite.h's KBR_SQLITE_TOKEN_SELECT). */
#define KBR_PG_TOKEN_SELECT                                                                        \
    "SELECT t.jti, t.sub, t.scope, t.issued_at, t.not_before, t.expires_at, t.revoked_at,"         \
    " t.revoke_reason, t.issued_by, t.cnf_x5t, coalesce(u.uses, 0), u.last_used_at,"               \
    " t.parent_jti, t.orphan, t.kid"                                                               \
    " FROM tokens t LEFT JOIN token_usage u ON u.jti = t.jti"

/* The schema, built in from store/pg/: pg_schema.sql (version 6), then one file per later
 * version. */
extern const char kbr_sql_pg_schema[], kbr_sql_pg_v7_audit[], kbr_sql_pg_v8_deliver[],
    kbr_sql_pg_v9_cra[], kbr_sql_pg_v10_revoked[];

/* The URI without its password, for messages (the caller's to free). */
char *kbr_pg_where_of(const char *uri);

/* pg_verify.c: st's rows against rebuilt, the SQLite store rebuilt from st's log. */
kbr_err kbr_pg_compare(kbr_store *st, kbr_store *rebuilt, kbr_store_compare_stats *stats,
                       kbr_msg *msg);

/* pg_ledger.c */
kbr_err kbr_pg_key_create(kbr_store *st, const kbr_eff_key *k, int64_t seq);
kbr_err kbr_pg_key_retire(kbr_store *st, const char *name, const char *at);
kbr_err kbr_pg_token_issue(kbr_store *st, const kbr_eff_token *t, int64_t seq);
kbr_err kbr_pg_token_uses_left(kbr_store *st, const char *jti, int64_t *left);
kbr_err kbr_pg_token_revoke(kbr_store *st, const char *jti, const char *at, const char *reason);
kbr_err kbr_pg_token_revoke_all(kbr_store *st, const char *at, const char *reason);
kbr_err kbr_pg_issuer_current(kbr_store *st, char **kid);
kbr_err kbr_pg_issuer_replace(kbr_store *st, const char *kid, const char *at);
kbr_err kbr_pg_issuer_insert(kbr_store *st, const kbr_fx_issuer_rotate *r,
                             const char *public_key_sha256, int64_t seq);
kbr_err kbr_pg_tokens_assign_kid(kbr_store *st, const char *kid);
kbr_err kbr_pg_issuer_keys(kbr_store *st, json_t **keys);
kbr_err kbr_pg_firmware_digest(kbr_store *st, const char *product, const char *version,
                               char **digest);
kbr_err kbr_pg_firmware_insert(kbr_store *st, const kbr_eff_firmware *f, int64_t seq);
kbr_err kbr_pg_component_insert(kbr_store *st, const char *product, const char *version,
                                const kbr_eff_component *c, const char *purl_key);
kbr_err kbr_pg_key_exists(kbr_store *st, const char *name, bool *exists);
kbr_err kbr_pg_evidence_seqs(kbr_store *st, const char *product, const char *serial, json_t **seqs);
kbr_err kbr_pg_document_put(kbr_store *st, const kbr_document *doc, int64_t seq);
kbr_err kbr_pg_document_exists(kbr_store *st, const char *sha256, bool *exists);
kbr_err kbr_pg_document_get(kbr_store *st, const char *sha256, unsigned char **body, size_t *len,
                            int64_t *audit_seq);
kbr_err kbr_pg_issuer_chain(kbr_store *st, const char *issuer_key, const char *fingerprint,
                            char **chain);
kbr_err kbr_pg_cert_supersede(kbr_store *st, const kbr_eff_owner *owner, const char *at,
                              json_t **fingerprints);
kbr_err kbr_pg_cert_insert(kbr_store *st, const kbr_eff_cert *c, int64_t seq);
kbr_err kbr_pg_batch_create(kbr_store *st, const kbr_eff_batch *b, int64_t seq);
kbr_err kbr_pg_batch_claim(kbr_store *st, const char *batch, const char *product,
                           const char *factory);
kbr_err kbr_pg_device_insert(kbr_store *st, const kbr_eff_device *d, int64_t seq);
kbr_err kbr_pg_device_exists(kbr_store *st, const char *product, const char *serial, bool *exists);
kbr_err kbr_pg_device_key_set(kbr_store *st, const char *product, const char *serial,
                              const char *public_key_sha256);
kbr_err kbr_pg_device_event_insert(kbr_store *st, const char *product, const char *serial,
                                   const char *kind, const char *at, const char *detail_json,
                                   int64_t seq);
kbr_err kbr_pg_debug_challenge_insert(kbr_store *st, const kbr_eff_debug *d, int64_t seq);
kbr_err kbr_pg_device_firmware_insert(kbr_store *st, const kbr_eff_device_firmware *r, int64_t seq,
                                      bool *added);
kbr_err kbr_pg_device_firmware_current(kbr_store *st, const char *product, const char *serial,
                                       const char *version, const char *at);
kbr_err kbr_pg_device_revoked(kbr_store *st, const char *product, const char *serial,
                              bool *revoked);
kbr_err kbr_pg_device_revoke(kbr_store *st, const kbr_eff_revoke *d, int64_t seq);
kbr_err kbr_pg_crl_last_number(kbr_store *st, const char *issuer_key, int64_t *last);
kbr_err kbr_pg_crl_insert(kbr_store *st, const kbr_eff_crl *l, int64_t seq);
kbr_err kbr_pg_crl_revoked(kbr_store *st, const char *issuer_key, json_t **rows);
kbr_err kbr_pg_device_revocation(kbr_store *st, const char *product, const char *serial,
                                 json_t **out);
kbr_err kbr_pg_key_delivery_insert(kbr_store *st, const kbr_eff_deliver *d, int64_t seq);
kbr_err kbr_pg_device_deliveries(kbr_store *st, const char *product, const char *serial,
                                 json_t **out);
kbr_err kbr_pg_key_get(kbr_store *st, const char *name, json_t **key);
kbr_err kbr_pg_key_list(kbr_store *st, json_t **keys);
kbr_err kbr_pg_token_list(kbr_store *st, const char *sub, bool active, time_t now, json_t **tokens);
kbr_err kbr_pg_firmware_get(kbr_store *st, const char *product, const char *version,
                            json_t **build);
kbr_err kbr_pg_firmware_components(kbr_store *st, const char *product, const char *version,
                                   json_t **rows);
kbr_err kbr_pg_batch_get(kbr_store *st, const char *batch, json_t **out);
kbr_err kbr_pg_batch_list(kbr_store *st, json_t **out);
kbr_err kbr_pg_device_get(kbr_store *st, const char *product, const char *serial, json_t **out);
kbr_err kbr_pg_device_certificates(kbr_store *st, const char *product, const char *serial,
                                   json_t **rows);
kbr_err kbr_pg_device_find(kbr_store *st, const char *serial, json_t **out);
kbr_err kbr_pg_device_by_key(kbr_store *st, const char *public_key_sha256, json_t **out);
kbr_err kbr_pg_device_events(kbr_store *st, const char *product, const char *serial, json_t **out);
kbr_err kbr_pg_devices_known(kbr_store *st, const char *product, const json_t *serials,
                             json_t **known);
kbr_err kbr_pg_debug_challenge_used(kbr_store *st, const char *product, const char *serial,
                                    const char *challenge_sha256, bool *used);
kbr_err kbr_pg_device_firmware(kbr_store *st, const char *product, const char *serial,
                               json_t **out);

/* pg_ledger.c: products' support periods and incidents (sqlite_cra.c) */
kbr_err kbr_pg_product_get(kbr_store *st, const char *product, json_t **out);
kbr_err kbr_pg_product_put(kbr_store *st, const kbr_fx_product_register *p, bool exists,
                           int64_t seq);
kbr_err kbr_pg_incident_insert(kbr_store *st, const kbr_fx_incident_create *i, int64_t seq);
kbr_err kbr_pg_incident_build_insert(kbr_store *st, const char *incident, const char *product,
                                     const char *version, int64_t seq);
kbr_err kbr_pg_incident_fleet_load(kbr_store *st, const char *incident, const char *day);
kbr_err kbr_pg_incident_get(kbr_store *st, const char *id, json_t **out);
kbr_err kbr_pg_incident_list(kbr_store *st, json_t **out);
kbr_err kbr_pg_incident_queries(kbr_store *st, json_t **out);
kbr_err kbr_pg_incident_builds(kbr_store *st, const char *id, json_t **out);
kbr_err kbr_pg_incident_fix(kbr_store *st, const kbr_fx_incident_fix *f, int64_t seq);
kbr_err kbr_pg_incident_report_insert(kbr_store *st, const kbr_fx_incident_report *r, int64_t seq);
kbr_err kbr_pg_incident_reports(kbr_store *st, const char *id, json_t **out);
kbr_err kbr_pg_incident_series(kbr_store *st, const char *id, json_t **out);
kbr_err kbr_pg_firmware_version_exists(kbr_store *st, const char *version, bool *exists);
kbr_err kbr_pg_evidence_incident_seqs(kbr_store *st, const char *id, json_t **seqs);

/* pg_views.c */
kbr_err kbr_pg_snapshot_begin(kbr_store *st, kbr_msg *msg);
void kbr_pg_snapshot_end(kbr_store *st);
kbr_err kbr_pg_product_relations(kbr_store *st, const char *product, json_t **rows);
kbr_err kbr_pg_product_known(kbr_store *st, const char *product, bool *known);
kbr_err kbr_pg_live_tokens(kbr_store *st, const char *key, const char *product, const char *now,
                           json_t **rows);
kbr_err kbr_pg_cert_months(kbr_store *st, const char *product, json_t **rows);
kbr_err kbr_pg_expiring_devices(kbr_store *st, const char *product, const char *until, int limit,
                                int64_t *count, json_t **rows);
kbr_err kbr_pg_key_tokens(kbr_store *st, const char *key, json_t **rows);
kbr_err kbr_pg_key_operations(kbr_store *st, const char *key, json_t **rows);
kbr_err kbr_pg_exposure_components(kbr_store *st, const char *component, const char *purl_key,
                                   const char *product, json_t **rows);
kbr_err kbr_pg_build_row(kbr_store *st, const char *product, const char *version, json_t **row);
kbr_err kbr_pg_fleet_batches(kbr_store *st, const char *product, const char *firmware,
                             json_t **rows);
kbr_err kbr_pg_build_histories(kbr_store *st, const char *product, const char *version,
                               json_t **rows);
kbr_err kbr_pg_history_batches(kbr_store *st, int64_t history, json_t **rows);
kbr_err kbr_pg_batch_markets(kbr_store *st, const char *batch, json_t **markets);
kbr_err kbr_pg_pending_group(kbr_store *st, int64_t history, const char *firmware,
                             const char *after, int limit, json_t **rows);
kbr_err kbr_pg_fleet_walk(kbr_store *st, const char *product, const char *after, kbr_fleet_fn fn,
                          void *arg);
kbr_err kbr_pg_fleet_size(kbr_store *st, const char *product, int64_t *n);

#endif
