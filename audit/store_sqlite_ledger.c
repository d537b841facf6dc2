/* store_sqlite_ledger.c - the SQLite back end's ledger: effects written, views read. */
#include <stdlib.h>
#include <string.h>

#include "store_sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

kbr_err kbr_sqlite_key_create(kbr_store *st, const kbr_eff_key *k, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_KEY_INSERT,
                              "INSERT INTO keys(name, purpose, algorithm, products, owner,"
                              " hsm_label, hsm_id, public_key_pem, state, created_at, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'active', ?9, ?10)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, k->name));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, k->purpose));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, k->algorithm));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, k->products_json));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, k->owner));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, k->hsm_label));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 7, k->hsm_id));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 8, k->public_key_pem));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 9, k->created_at));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 10, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

static kbr_err key_exists(kbr_sqlite *s, const char *name, bool *exists)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *exists = false;
    KBR_GUARD(kbr_sqlite_stmt(s, SQ_KEY_EXISTS, "SELECT 1 FROM keys WHERE name = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, name));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *exists = rc == SQLITE_ROW;
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_key_retire(kbr_store *st, const char *name, const char *at)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    bool exists = false;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_KEY_RETIRE,
                              "UPDATE keys SET state = 'retired', retired_at = ?2"
                              " WHERE name = ?1 AND state = 'active'",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, name));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, at));
    KBR_GUARD(kbr_sqlite_run(stmt));
    if (sqlite3_changes(SQ(st)->db) > 0)
        goto out;
    /* Keys are never deleted, so a name the registry lacks is a conflict with the ledger. */
    KBR_GUARD(key_exists(SQ(st), name, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_token_issue(kbr_store *st, const kbr_eff_token *t, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_TOKEN_INSERT,
                              "INSERT INTO tokens(jti, sub, scope, issued_by, issued_at,"
                              " not_before, expires_at, cnf_x5t, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, t->jti));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, t->sub));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, t->scope_json));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, t->issued_by));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, t->issued_at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, t->not_before));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 7, t->expires_at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 8, t->cnf_x5t));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 9, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_token_revoke(kbr_store *st, const char *jti, const char *at, const char *reason)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_TOKEN_REVOKE,
                              "UPDATE tokens SET revoked_at = ?2, revoke_reason = ?3"
                              " WHERE jti = ?1 AND revoked_at IS NULL",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, jti));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, reason));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_firmware_digest(kbr_store *st, const char *product, const char *version,
                                   char **digest)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *digest = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_FIRMWARE_DIGEST,
                              "SELECT digest FROM firmware WHERE product = ?1 AND version = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    KBR_ENSURE(kbr_sqlite_text(stmt, 0) != NULL, KBR_ERR_STORE);
    *digest = strdup(kbr_sqlite_text(stmt, 0));
    KBR_ENSURE(*digest != NULL, KBR_ERR_NOMEM);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_firmware_insert(kbr_store *st, const kbr_eff_firmware *f, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_FIRMWARE_INSERT,
                              "INSERT INTO firmware(product, version, digest, hash, key, name,"
                              " build_id, signed_at, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, f->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, f->version));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, f->digest));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, f->hash));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, f->key));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, f->name));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 7, f->build_id));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 8, f->signed_at));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 9, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_component_insert(kbr_store *st, const char *product, const char *version,
                                    const kbr_eff_component *c)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_COMPONENT_INSERT,
                              "INSERT INTO components(product, version, name, cversion, purl)"
                              " VALUES (?1, ?2, ?3, ?4, ?5)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, c->name));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, c->version));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, c->purl));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* ---- reads: rows become the objects the API shows ---- */

/* How a result column becomes a member: text (or null), parsed JSON, or an integer. */
typedef enum { COL_TEXT, COL_JSON, COL_INT } col_kind;

typedef struct {
    const char *field;
    col_kind kind;
} col_spec;

static kbr_err column_value(sqlite3_stmt *stmt, int col, col_kind kind, json_t **out)
{
    kbr_err err = KBR_OK;
    const char *text = NULL;

    *out = NULL;
    if (kind == COL_INT) {
        *out = json_integer(sqlite3_column_int64(stmt, col));
        KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
        goto out;
    }
    text = kbr_sqlite_text(stmt, col);
    if (text == NULL)
        *out = json_null();
    else if (kind == COL_JSON)
        *out = json_loads(text, 0, NULL);
    else
        *out = json_string(text);
    /* The writer stored valid UTF-8 and JSON; a failure here is damage. */
    KBR_ENSURE(*out != NULL, KBR_ERR_STORE);
out:
    return err;
}

/* Sets obj[cols[i].field] from result column first + i. */
static kbr_err put_columns(json_t *obj, sqlite3_stmt *stmt, int first, const col_spec *cols,
                           size_t n)
{
    kbr_err err = KBR_OK;
    json_t *v = NULL;

    for (size_t i = 0; i < n; i++) {
        KBR_GUARD(column_value(stmt, first + (int)i, cols[i].kind, &v));
        KBR_ENSURE(json_object_set_new(obj, cols[i].field, v) == 0, KBR_ERR_NOMEM);
        v = NULL;
    }
out:
    return err;
}

#define KEY_COLUMNS                                                                                \
    "SELECT name, purpose, algorithm, products, owner, state, created_at, retired_at,"             \
    " public_key_pem, hsm_label, hsm_id, cert_pem, cert_not_after FROM keys"

static const col_spec key_cols[] = {
    {"name", COL_TEXT},       {"purpose", COL_TEXT},    {"algorithm", COL_TEXT},
    {"products", COL_JSON},   {"owner", COL_TEXT},      {"state", COL_TEXT},
    {"created_at", COL_TEXT}, {"retired_at", COL_TEXT}, {"public_key_pem", COL_TEXT},
    {"hsm_label", COL_TEXT},  {"hsm_id", COL_TEXT},
};
static const col_spec cert_cols[] = {{"pem", COL_TEXT}, {"not_after", COL_TEXT}};
#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

static kbr_err key_from_row(sqlite3_stmt *stmt, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *key = NULL, *cert = NULL;
    int cert_col = (int)NCOLS(key_cols);

    *out = NULL;
    key = json_object();
    KBR_ENSURE(key != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(put_columns(key, stmt, 0, key_cols, NCOLS(key_cols)));
    if (sqlite3_column_type(stmt, cert_col) == SQLITE_NULL) {
        cert = json_null();
    } else {
        cert = json_object();
        KBR_ENSURE(cert != NULL, KBR_ERR_NOMEM);
        KBR_GUARD(put_columns(cert, stmt, cert_col, cert_cols, NCOLS(cert_cols)));
    }
    KBR_ENSURE(json_object_set(key, "certificate", cert) == 0, KBR_ERR_NOMEM);
    *out = key;
    key = NULL;
out:
    json_decref(cert);
    json_decref(key);
    return err;
}

kbr_err kbr_sqlite_key_get(kbr_store *st, const char *name, json_t **key)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *key = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_KEY_GET, KEY_COLUMNS " WHERE name = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, name));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    KBR_GUARD(key_from_row(stmt, key));
out:
    kbr_sqlite_done(stmt);
    return err;
}

typedef kbr_err (*row_fn)(sqlite3_stmt *stmt, json_t **out);

/* Steps stmt to the end, appending row_to(row) for each row to a new array. */
static kbr_err collect_rows(sqlite3_stmt *stmt, row_fn row_to, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *arr = NULL, *item = NULL;
    int rc;

    *out = NULL;
    arr = json_array();
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        KBR_GUARD(row_to(stmt, &item));
        KBR_ENSURE(json_array_append_new(arr, item) == 0, KBR_ERR_NOMEM);
        item = NULL;
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    return err;
}

kbr_err kbr_sqlite_key_list(kbr_store *st, json_t **keys)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *keys = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_KEY_LIST, KEY_COLUMNS " ORDER BY name", &stmt));
    KBR_GUARD(collect_rows(stmt, key_from_row, keys));
out:
    kbr_sqlite_done(stmt);
    return err;
}

static const col_spec token_cols[] = {
    {"jti", COL_TEXT},        {"sub", COL_TEXT},           {"scope", COL_JSON},
    {"issued_at", COL_TEXT},  {"not_before", COL_TEXT},    {"expires_at", COL_TEXT},
    {"revoked_at", COL_TEXT}, {"revoke_reason", COL_TEXT}, {"issued_by", COL_TEXT},
    {"cnf_x5t", COL_TEXT},    {"uses", COL_INT},           {"last_used_at", COL_TEXT},
};

static kbr_err token_from_row(sqlite3_stmt *stmt, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *tok = NULL;

    *out = NULL;
    tok = json_object();
    KBR_ENSURE(tok != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(put_columns(tok, stmt, 0, token_cols, NCOLS(token_cols)));
    *out = tok;
    tok = NULL;
out:
    json_decref(tok);
    return err;
}

/* Uses are counted from the audit log, the source of truth that survives restarts. */
#define TOKEN_SELECT                                                                               \
    "SELECT t.jti, t.sub, t.scope, t.issued_at, t.not_before, t.expires_at, t.revoked_at,"         \
    " t.revoke_reason, t.issued_by, t.cnf_x5t,"                                                    \
    " (SELECT count(*) FROM audit a"                                                               \
    "   WHERE a.jti = t.jti AND a.key_use = 1 AND a.outcome = 'ok'),"                              \
    " (SELECT a.time FROM audit a"                                                                 \
    "   WHERE a.jti = t.jti AND a.key_use = 1 AND a.outcome = 'ok'"                                \
    "   ORDER BY a.seq DESC LIMIT 1)"                                                              \
    " FROM tokens t"                                                                               \
    " WHERE (?1 IS NULL OR t.sub = ?1)"                                                            \
    "  AND (?2 = 0 OR (t.revoked_at IS NULL AND t.expires_at > ?3))"                               \
    " ORDER BY t.issued_at, t.jti"

kbr_err kbr_sqlite_token_list(kbr_store *st, const char *sub, bool active, time_t now,
                              json_t **tokens)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    char now_text[KBR_TIME_LEN];

    *tokens = NULL;
    kbr_time_fmt(now, now_text);
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_TOKEN_LIST, TOKEN_SELECT, &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, sub));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int(stmt, 2, active ? 1 : 0)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, now_text));
    KBR_GUARD(collect_rows(stmt, token_from_row, tokens));
out:
    kbr_sqlite_done(stmt);
    return err;
}

static const col_spec firmware_cols[] = {
    {"product", COL_TEXT},  {"version", COL_TEXT},   {"digest", COL_TEXT},
    {"hash", COL_TEXT},     {"key", COL_TEXT},       {"name", COL_TEXT},
    {"build_id", COL_TEXT}, {"signed_at", COL_TEXT}, {"audit_seq", COL_INT},
};
static const col_spec component_cols[] = {
    {"name", COL_TEXT}, {"version", COL_TEXT}, {"purl", COL_TEXT}};

static kbr_err component_from_row(sqlite3_stmt *stmt, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *c = NULL;

    *out = NULL;
    c = json_object();
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(put_columns(c, stmt, 0, component_cols, NCOLS(component_cols)));
    *out = c;
    c = NULL;
out:
    json_decref(c);
    return err;
}

static kbr_err components_of(kbr_sqlite *s, const char *product, const char *version, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(s, SQ_COMPONENT_LIST,
                              "SELECT name, cversion, purl FROM components"
                              " WHERE product = ?1 AND version = ?2 ORDER BY rowid",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    KBR_GUARD(collect_rows(stmt, component_from_row, out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* A build and its components are written in one transaction and never change, so two
 * reads outside a transaction see the same build. */
kbr_err kbr_sqlite_firmware_get(kbr_store *st, const char *product, const char *version,
                                json_t **build)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    json_t *b = NULL, *components = NULL;
    int rc;

    *build = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_FIRMWARE_GET,
                              "SELECT product, version, digest, hash, key, name, build_id,"
                              " signed_at, audit_seq FROM firmware"
                              " WHERE product = ?1 AND version = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    b = json_object();
    KBR_ENSURE(b != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(put_columns(b, stmt, 0, firmware_cols, NCOLS(firmware_cols)));
    KBR_GUARD(components_of(SQ(st), product, version, &components));
    KBR_ENSURE(json_object_set(b, "components", components) == 0, KBR_ERR_NOMEM);
    *build = b;
    b = NULL;
out:
    kbr_sqlite_done(stmt);
    json_decref(components);
    json_decref(b);
    return err;
}
