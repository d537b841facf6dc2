/* sqlite_ledger.c - the SQLite back end's ledger: effects written, views read. */
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

kbr_err kbr_sqlite_key_create(kbr_store *st, const kbr_eff_key *k, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_KEY_INSERT,
                              "INSERT INTO keys(name, purpose, algorithm, products, owner,"
                              " hsm_label, hsm_id, public_key_pem, state, created_at, audit_seq,"
                              " public_key_sha256)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'active', ?9, ?10, ?11)",
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
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 11, k->public_key_sha256));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_key_exists(kbr_store *st, const char *name, bool *exists)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *exists = false;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_KEY_EXISTS, "SELECT 1 FROM keys WHERE name = ?1", &stmt));
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
    KBR_GUARD(kbr_sqlite_key_exists(st, name, &exists));
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
                              " not_before, expires_at, cnf_x5t, audit_seq, parent_jti, orphan,"
                              " kid)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 10, t->parent_jti));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int(stmt, 11, t->orphan ? 1 : 0)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 12, t->kid));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_issuer_current(kbr_store *st, char **kid)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *kid = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_ISSUER_CURRENT,
                              "SELECT kid FROM issuer_keys WHERE replaced_at IS NULL", &stmt));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    KBR_ENSURE(kbr_sqlite_text(stmt, 0) != NULL, KBR_ERR_STORE);
    *kid = strdup(kbr_sqlite_text(stmt, 0));
    KBR_ENSURE(*kid != NULL, KBR_ERR_NOMEM);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_issuer_replace(kbr_store *st, const char *kid, const char *at)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_ISSUER_REPLACE,
                              "UPDATE issuer_keys SET replaced_at = ?2"
                              " WHERE kid = ?1 AND replaced_at IS NULL",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, kid));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, at));
    KBR_GUARD(kbr_sqlite_run(stmt));
    KBR_ENSURE(sqlite3_changes(SQ(st)->db) == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_issuer_insert(kbr_store *st, const kbr_fx_issuer_rotate *r,
                                 const char *public_key_sha256, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_ISSUER_INSERT,
                              "INSERT INTO issuer_keys(kid, hsm_label, public_key_pem,"
                              " public_key_sha256, activated_at, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, r->kid));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, r->hsm_label));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, r->public_key_pem));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, public_key_sha256));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, r->at));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 6, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_tokens_assign_kid(kbr_store *st, const char *kid)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_TOKENS_ASSIGN_KID,
                              "UPDATE tokens SET kid = ?1 WHERE kid IS NULL", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, kid));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_issuer_keys(kbr_store *st, json_t **keys)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *keys = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_ISSUER_KEYS,
                              "SELECT kid, hsm_label, public_key_pem, public_key_sha256,"
                              " activated_at, replaced_at, audit_seq FROM issuer_keys"
                              " ORDER BY audit_seq, kid",
                              &stmt));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_issuer, KBR_NCOLS(kbr_row_issuer), keys));
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

kbr_err kbr_sqlite_token_revoke_all(kbr_store *st, const char *at, const char *reason)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_TOKEN_REVOKE_ALL,
                              "UPDATE tokens SET revoked_at = ?1, revoke_reason = ?2"
                              " WHERE revoked_at IS NULL",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, reason));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_token_uses_left(kbr_store *st, const char *jti, int64_t *left)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *left = -1;
    KBR_GUARD(
        kbr_sqlite_stmt(SQ(st), SQ_TOKEN_USES_LEFT,
                        "SELECT json_extract(t.scope, '$.max_uses') - coalesce(u.uses, 0)"
                        " FROM tokens t LEFT JOIN token_usage u ON u.jti = t.jti"
                        " WHERE t.jti = ?1 AND json_extract(t.scope, '$.max_uses') IS NOT NULL",
                        &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, jti));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    if (rc == SQLITE_ROW) {
        *left = sqlite3_column_int64(stmt, 0);
        if (*left < 0)
            *left = 0;
    }
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
                              " build_id, signed_at, audit_seq, sbom_sha256)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 10, f->sbom_sha256));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_document_put(kbr_store *st, const kbr_document *doc, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DOCUMENT_PUT,
                              "INSERT OR IGNORE INTO documents(sha256, body, audit_seq)"
                              " VALUES (?1, ?2, ?3)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, doc->sha256));
    KBR_GUARD(kbr_sqlite_err(
        sqlite3_bind_blob64(stmt, 2, doc->len > 0 ? (const void *)doc->body : (const void *)"",
                            doc->len, SQLITE_STATIC)));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 3, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_document_exists(kbr_store *st, const char *sha256, bool *exists)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *exists = false;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DOCUMENT_EXISTS,
                              "SELECT 1 FROM documents WHERE sha256 = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, sha256));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *exists = rc == SQLITE_ROW;
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_document_get(kbr_store *st, const char *sha256, unsigned char **body,
                                size_t *len, int64_t *audit_seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc, n;

    *body = NULL;
    *len = 0;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DOCUMENT_GET,
                              "SELECT body, audit_seq FROM documents WHERE sha256 = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, sha256));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    n = sqlite3_column_bytes(stmt, 0);
    *body = malloc((size_t)n + 1);
    KBR_ENSURE(*body != NULL, KBR_ERR_NOMEM);
    if (n > 0)
        memcpy(*body, sqlite3_column_blob(stmt, 0), (size_t)n);
    (*body)[n] = '\0';
    *len = (size_t)n;
    if (audit_seq != NULL)
        *audit_seq = sqlite3_column_int64(stmt, 1);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_issuer_chain(kbr_store *st, const char *issuer_key, const char *fingerprint,
                                char **chain)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *chain = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_ISSUER_CHAIN,
                              "SELECT pem || chain_pem FROM certificates"
                              " WHERE fingerprint = ?2 AND owner_kind = 'key' AND key_name = ?1",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, issuer_key));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, fingerprint));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    *chain = strdup(kbr_sqlite_text(stmt, 0) != NULL ? kbr_sqlite_text(stmt, 0) : "");
    KBR_ENSURE(*chain != NULL, KBR_ERR_NOMEM);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_component_insert(kbr_store *st, const char *product, const char *version,
                                    const kbr_eff_component *c, const char *purl_key)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_COMPONENT_INSERT,
                              "INSERT INTO components(product, version, name, cversion, purl,"
                              " purl_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, purl_key));
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

static kbr_err column_value(sqlite3_stmt *stmt, int col, kbr_col_kind kind, json_t **out)
{
    kbr_err err = KBR_OK;
    const char *text = NULL;

    *out = NULL;
    if (kind == KBR_COL_INT_OR_NULL && sqlite3_column_type(stmt, col) == SQLITE_NULL) {
        *out = json_null();
        goto out;
    }
    if (kind == KBR_COL_BOOL) {
        *out = json_boolean(sqlite3_column_int64(stmt, col) != 0);
        goto out;
    }
    if (kind == KBR_COL_INT || kind == KBR_COL_INT_OR_NULL) {
        *out = json_integer(sqlite3_column_int64(stmt, col));
        KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
        goto out;
    }
    text = kbr_sqlite_text(stmt, col);
    if (text == NULL)
        *out = json_null();
    else if (kind == KBR_COL_JSON)
        *out = json_loads(text, 0, NULL);
    else
        *out = json_string(text);
    /* The writer stored valid UTF-8 and JSON; a failure here is damage. */
    KBR_ENSURE(*out != NULL, KBR_ERR_STORE);
out:
    return err;
}

kbr_err kbr_sqlite_put_columns(json_t *obj, sqlite3_stmt *stmt, int first, const kbr_col_spec *cols,
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

static kbr_err row_object(sqlite3_stmt *stmt, const kbr_col_spec *cols, size_t n, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *obj = NULL;

    *out = NULL;
    obj = json_object();
    KBR_ENSURE(obj != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_sqlite_put_columns(obj, stmt, 0, cols, n));
    *out = obj;
    obj = NULL;
out:
    json_decref(obj);
    return err;
}

kbr_err kbr_sqlite_object(sqlite3_stmt *stmt, const kbr_col_spec *cols, size_t n, json_t **out)
{
    kbr_err err = KBR_OK;
    int rc;

    *out = NULL;
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    KBR_GUARD(row_object(stmt, cols, n, out));
out:
    return err;
}

typedef kbr_err (*row_fn)(sqlite3_stmt *stmt, const void *ctx, json_t **out);

/* Steps stmt to the end, appending row_to(row) for each row to a new array. */
static kbr_err collect_rows(sqlite3_stmt *stmt, row_fn row_to, const void *ctx, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *arr = NULL, *item = NULL;
    int rc;

    *out = NULL;
    arr = json_array();
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        KBR_GUARD(row_to(stmt, ctx, &item));
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

typedef struct {
    const kbr_col_spec *cols;
    size_t n;
} col_set;

static kbr_err row_object_of(sqlite3_stmt *stmt, const void *ctx, json_t **out)
{
    const col_set *set = ctx;

    return row_object(stmt, set->cols, set->n, out);
}

kbr_err kbr_sqlite_objects(sqlite3_stmt *stmt, const kbr_col_spec *cols, size_t n, json_t **out)
{
    const col_set set = {cols, n};

    return collect_rows(stmt, row_object_of, &set, out);
}

/* The key's current certificate, if any (certificates_key_current keeps it to one). */
#define KEY_COLUMNS                                                                                \
    "SELECT k.name, k.purpose, k.algorithm, k.products, k.owner, k.state, k.created_at,"           \
    " k.retired_at, k.public_key_pem, k.hsm_label, k.hsm_id, k.public_key_sha256,"                 \
    " c.pem, c.chain_pem, c.not_after, c.serial_number, c.fingerprint FROM keys k"                 \
    " LEFT JOIN certificates c ON c.owner_kind = 'key' AND c.key_name = k.name"                    \
    "  AND c.superseded_at IS NULL"

static const kbr_col_spec key_cols[] = {
    {"name", KBR_COL_TEXT},       {"purpose", KBR_COL_TEXT},    {"algorithm", KBR_COL_TEXT},
    {"products", KBR_COL_JSON},   {"owner", KBR_COL_TEXT},      {"state", KBR_COL_TEXT},
    {"created_at", KBR_COL_TEXT}, {"retired_at", KBR_COL_TEXT}, {"public_key_pem", KBR_COL_TEXT},
    {"hsm_label", KBR_COL_TEXT},  {"hsm_id", KBR_COL_TEXT},     {"public_key_sha256", KBR_COL_TEXT},
};
/* The current certificate's columns, null when the key has none; store.c nests them. */
static const kbr_col_spec cert_cols[] = {
    {"cert_pem", KBR_COL_TEXT},         {"cert_chain_pem", KBR_COL_TEXT},
    {"cert_not_after", KBR_COL_TEXT},   {"cert_serial_number", KBR_COL_TEXT},
    {"cert_fingerprint", KBR_COL_TEXT},
};

static kbr_err key_from_row(sqlite3_stmt *stmt, const void *ctx, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *key = NULL;

    (void)ctx;
    *out = NULL;
    key = json_object();
    KBR_ENSURE(key != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_sqlite_put_columns(key, stmt, 0, key_cols, KBR_NCOLS(key_cols)));
    KBR_GUARD(kbr_sqlite_put_columns(key, stmt, (int)KBR_NCOLS(key_cols), cert_cols,
                                     KBR_NCOLS(cert_cols)));
    *out = key;
    key = NULL;
out:
    json_decref(key);
    return err;
}

kbr_err kbr_sqlite_key_get(kbr_store *st, const char *name, json_t **key)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *key = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_KEY_GET, KEY_COLUMNS " WHERE k.name = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, name));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    KBR_GUARD(key_from_row(stmt, NULL, key));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_key_list(kbr_store *st, json_t **keys)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *keys = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_KEY_LIST, KEY_COLUMNS " ORDER BY k.name", &stmt));
    KBR_GUARD(collect_rows(stmt, key_from_row, NULL, keys));
out:
    kbr_sqlite_done(stmt);
    return err;
}

#define TOKEN_SELECT                                                                               \
    KBR_SQLITE_TOKEN_SELECT                                                                        \
    " WHERE (?1 IS NULL OR t.sub = ?1)"                                                            \
    "  AND (?2 = 0 OR (t.revoked_at IS NULL AND t.expires_at > ?3))"                               \
    " ORDER BY t.audit_seq, t.jti"

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
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_token, KBR_NCOLS(kbr_row_token), tokens));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_firmware_components(kbr_store *st, const char *product, const char *version,
                                       json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_COMPONENT_LIST,
                              "SELECT name, cversion, purl FROM components"
                              " WHERE product = ?1 AND version = ?2 ORDER BY rowid",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_component, KBR_NCOLS(kbr_row_component), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_firmware_get(kbr_store *st, const char *product, const char *version,
                                json_t **build)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *build = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_FIRMWARE_GET,
                              "SELECT product, version, digest, hash, key, name, build_id,"
                              " signed_at, audit_seq, sbom_sha256 FROM firmware"
                              " WHERE product = ?1 AND version = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    KBR_GUARD(kbr_sqlite_object(stmt, kbr_row_firmware, KBR_NCOLS(kbr_row_firmware), build));
out:
    kbr_sqlite_done(stmt);
    return err;
}
