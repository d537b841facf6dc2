/*
 * pg_ledger.c - the PostgreSQL back end's ledger: keys, tokens, issuer keys, firmware,
 * documents, certificates, batches, devices, debug unlocks, firmware history,
 * revocations, keys delivered to devices, and the CRA's products and incidents; effects
 * written and rows read, statement for statement as the SQLite back end's (sqlite_ledger.c,
 * sqlite_device.c, sqlite_field.c, sqlite_revoke.c, sqlite_deliver.c, sqlite_cra.c,
 * sqlite_evidence.c).
 */
#include <stdlib.h>
#include <string.h>

#include "pg.h"

#define PG(st) ((kbr_pg *)(st))
#define P      kbr_pg_params p = {.n = 0}

kbr_err kbr_pg_key_create(kbr_store *st, const kbr_eff_key *k, int64_t seq)
{
    P;

    kbr_pg_text(&p, k->name);
    kbr_pg_text(&p, k->purpose);
    kbr_pg_text(&p, k->algorithm);
    kbr_pg_text(&p, k->products_json);
    kbr_pg_text(&p, k->owner);
    kbr_pg_text(&p, k->hsm_label);
    kbr_pg_text(&p, k->hsm_id);
    kbr_pg_text(&p, k->public_key_pem);
    kbr_pg_text(&p, k->created_at);
    kbr_pg_int(&p, seq);
    kbr_pg_text(&p, k->public_key_sha256);
    return kbr_pg_run(PG(st),
                      "INSERT INTO keys(name, purpose, algorithm, products, owner, hsm_label,"
                      " hsm_id, public_key_pem, state, created_at, audit_seq, public_key_sha256)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, $11)",
                      &p, NULL);
}

kbr_err kbr_pg_key_exists(kbr_store *st, const char *name, bool *exists)
{
    P;

    kbr_pg_text(&p, name);
    return kbr_pg_exists(PG(st), "SELECT 1 FROM keys WHERE name = $1", &p, exists);
}

kbr_err kbr_pg_key_retire(kbr_store *st, const char *name, const char *at)
{
    kbr_err err = KBR_OK;
    int64_t changed = 0;
    bool exists = false;
    P;

    kbr_pg_text(&p, name);
    kbr_pg_text(&p, at);
    KBR_GUARD(kbr_pg_run(PG(st),
                         "UPDATE keys SET state = 'retired', retired_at = $2"
                         " WHERE name = $1 AND state = 'active'",
                         &p, &changed));
    if (changed > 0)
        goto out;
    /* Keys are never deleted, so a name the registry lacks is a conflict with the ledger. */
    KBR_GUARD(kbr_pg_key_exists(st, name, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
out:
    return err;
}

kbr_err kbr_pg_token_issue(kbr_store *st, const kbr_eff_token *t, int64_t seq)
{
    P;

    kbr_pg_text(&p, t->jti);
    kbr_pg_text(&p, t->sub);
    kbr_pg_text(&p, t->scope_json);
    kbr_pg_text(&p, t->issued_by);
    kbr_pg_text(&p, t->issued_at);
    kbr_pg_text(&p, t->not_before);
    kbr_pg_text(&p, t->expires_at);
    kbr_pg_text(&p, t->cnf_x5t);
    kbr_pg_int(&p, seq);
    kbr_pg_text(&p, t->parent_jti);
    kbr_pg_int(&p, t->orphan ? 1 : 0);
    kbr_pg_text(&p, t->kid);
    return kbr_pg_run(PG(st),
                      "INSERT INTO tokens(jti, sub, scope, issued_by, issued_at, not_before,"
                      " expires_at, cnf_x5t, audit_seq, parent_jti, orphan, kid)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                      &p, NULL);
}

kbr_err kbr_pg_issuer_current(kbr_store *st, char **kid)
{
    return kbr_pg_string(PG(st), "SELECT kid FROM issuer_keys WHERE replaced_at IS NULL", NULL,
                         kid);
}

kbr_err kbr_pg_issuer_replace(kbr_store *st, const char *kid, const char *at)
{
    kbr_err err = KBR_OK;
    int64_t changed = 0;
    P;

    kbr_pg_text(&p, kid);
    kbr_pg_text(&p, at);
    KBR_GUARD(kbr_pg_run(PG(st),
                         "UPDATE issuer_keys SET replaced_at = $2"
                         " WHERE kid = $1 AND replaced_at IS NULL",
                         &p, &changed));
    KBR_ENSURE(changed == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    return err;
}

kbr_err kbr_pg_issuer_insert(kbr_store *st, const kbr_fx_issuer_rotate *r,
                             const char *public_key_sha256, int64_t seq)
{
    P;

    kbr_pg_text(&p, r->kid);
    kbr_pg_text(&p, r->hsm_label);
    kbr_pg_text(&p, r->public_key_pem);
    kbr_pg_text(&p, public_key_sha256);
    kbr_pg_text(&p, r->at);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO issuer_keys(kid, hsm_label, public_key_pem, public_key_sha256,"
                      " activated_at, audit_seq) VALUES ($1, $2, $3, $4, $5, $6)",
                      &p, NULL);
}

kbr_err kbr_pg_tokens_assign_kid(kbr_store *st, const char *kid)
{
    P;

    kbr_pg_text(&p, kid);
    return kbr_pg_run(PG(st), "UPDATE tokens SET kid = $1 WHERE kid IS NULL", &p, NULL);
}

kbr_err kbr_pg_issuer_keys(kbr_store *st, json_t **keys)
{
    return kbr_pg_objects(PG(st),
                          "SELECT kid, hsm_label, public_key_pem, public_key_sha256, activated_at,"
                          " replaced_at, audit_seq FROM issuer_keys ORDER BY audit_seq, kid",
                          NULL, kbr_row_issuer, KBR_NCOLS(kbr_row_issuer), keys);
}

kbr_err kbr_pg_token_revoke(kbr_store *st, const char *jti, const char *at, const char *reason)
{
    P;

    kbr_pg_text(&p, jti);
    kbr_pg_text(&p, at);
    kbr_pg_text(&p, reason);
    return kbr_pg_run(PG(st),
                      "UPDATE tokens SET revoked_at = $2, revoke_reason = $3"
                      " WHERE jti = $1 AND revoked_at IS NULL",
                      &p, NULL);
}

kbr_err kbr_pg_token_revoke_all(kbr_store *st, const char *at, const char *reason)
{
    P;

    kbr_pg_text(&p, at);
    kbr_pg_text(&p, reason);
    return kbr_pg_run(PG(st),
                      "UPDATE tokens SET revoked_at = $1, revoke_reason = $2"
                      " WHERE revoked_at IS NULL",
                      &p, NULL);
}

kbr_err kbr_pg_token_uses_left(kbr_store *st, const char *jti, int64_t *left)
{
    kbr_err err;
    P;

    kbr_pg_text(&p, jti);
    err = kbr_pg_int64(PG(st),
                       "SELECT greatest((t.scope::jsonb ->> 'max_uses')::bigint"
                       " - coalesce(u.uses, 0), 0)"
                       " FROM tokens t LEFT JOIN token_usage u ON u.jti = t.jti"
                       " WHERE t.jti = $1 AND t.scope::jsonb ->> 'max_uses' IS NOT NULL",
                       &p, left);
    if (err == KBR_ERR_NOT_FOUND) {
        *left = -1;
        err = KBR_OK;
    }
    return err;
}

kbr_err kbr_pg_firmware_digest(kbr_store *st, const char *product, const char *version,
                               char **digest)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, version);
    return kbr_pg_string(PG(st), "SELECT digest FROM firmware WHERE product = $1 AND version = $2",
                         &p, digest);
}

kbr_err kbr_pg_firmware_insert(kbr_store *st, const kbr_eff_firmware *f, int64_t seq)
{
    P;

    kbr_pg_text(&p, f->product);
    kbr_pg_text(&p, f->version);
    kbr_pg_text(&p, f->digest);
    kbr_pg_text(&p, f->hash);
    kbr_pg_text(&p, f->key);
    kbr_pg_text(&p, f->name);
    kbr_pg_text(&p, f->build_id);
    kbr_pg_text(&p, f->signed_at);
    kbr_pg_int(&p, seq);
    kbr_pg_text(&p, f->sbom_sha256);
    return kbr_pg_run(PG(st),
                      "INSERT INTO firmware(product, version, digest, hash, key, name, build_id,"
                      " signed_at, audit_seq, sbom_sha256)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                      &p, NULL);
}

kbr_err kbr_pg_document_put(kbr_store *st, const kbr_document *doc, int64_t seq)
{
    P;

    kbr_pg_text(&p, doc->sha256);
    kbr_pg_bytes(&p, doc->body, doc->len);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO documents(sha256, body, audit_seq) VALUES ($1, $2, $3)"
                      " ON CONFLICT DO NOTHING",
                      &p, NULL);
}

kbr_err kbr_pg_document_exists(kbr_store *st, const char *sha256, bool *exists)
{
    P;

    kbr_pg_text(&p, sha256);
    return kbr_pg_exists(PG(st), "SELECT 1 FROM documents WHERE sha256 = $1", &p, exists);
}

kbr_err kbr_pg_document_get(kbr_store *st, const char *sha256, unsigned char **body, size_t *len,
                            int64_t *audit_seq)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    unsigned char *raw = NULL;
    size_t n = 0;
    P;

    *body = NULL;
    *len = 0;
    kbr_pg_text(&p, sha256);
    KBR_GUARD(kbr_pg_exec(PG(st),
                          "SELECT encode(body, 'hex'), audit_seq FROM documents"
                          " WHERE sha256 = $1",
                          &p, &res));
    KBR_ENSURE(PQntuples(res) > 0, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(kbr_pg_value(res, 0, 0) != NULL, KBR_ERR_STORE);
    if (kbr_pg_value(res, 0, 0)[0] != '\0')
        KBR_ENSURE(kbr_hex_decode(kbr_pg_value(res, 0, 0), &raw, &n) == KBR_OK, KBR_ERR_STORE);
    *body = malloc(n + 1);
    KBR_ENSURE(*body != NULL, KBR_ERR_NOMEM);
    if (n > 0)
        memcpy(*body, raw, n);
    (*body)[n] = '\0';
    *len = n;
    if (audit_seq != NULL)
        *audit_seq = strtoll(kbr_pg_value(res, 0, 1), NULL, 10);
out:
    free(raw);
    PQclear(res);
    return err;
}

kbr_err kbr_pg_issuer_chain(kbr_store *st, const char *issuer_key, const char *fingerprint,
                            char **chain)
{
    P;

    kbr_pg_text(&p, issuer_key);
    kbr_pg_text(&p, fingerprint);
    return kbr_pg_string(PG(st),
                         "SELECT coalesce(pem || chain_pem, '') FROM certificates"
                         " WHERE fingerprint = $2 AND owner_kind = 'key' AND key_name = $1",
                         &p, chain);
}

kbr_err kbr_pg_component_insert(kbr_store *st, const char *product, const char *version,
                                const kbr_eff_component *c, const char *purl_key)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, version);
    kbr_pg_text(&p, c->name);
    kbr_pg_text(&p, c->version);
    kbr_pg_text(&p, c->purl);
    kbr_pg_text(&p, purl_key);
    return kbr_pg_run(PG(st),
                      "INSERT INTO components(product, version, name, cversion, purl, purl_key)"
                      " VALUES ($1, $2, $3, $4, $5, $6)",
                      &p, NULL);
}

/* ---- keys, tokens and builds as the API shows them ---- */

#define KEY_COLUMNS                                                                                \
    "SELECT k.name, k.purpose, k.algorithm, k.products, k.owner, k.state, k.created_at,"           \
    " k.retired_at, k.public_key_pem, k.hsm_label, k.hsm_id, k.public_key_sha256,"                 \
    " c.pem, c.chain_pem, c.not_after, c.serial_number, c.fingerprint FROM keys k"                 \
    " LEFT JOIN certificates c ON c.owner_kind = 'key' AND c.key_name = k.name"                    \
    "  AND c.superseded_at IS NULL"

static const kbr_col_spec key_cols[] = {
    {"name", KBR_COL_TEXT},
    {"purpose", KBR_COL_TEXT},
    {"algorithm", KBR_COL_TEXT},
    {"products", KBR_COL_JSON},
    {"owner", KBR_COL_TEXT},
    {"state", KBR_COL_TEXT},
    {"created_at", KBR_COL_TEXT},
    {"retired_at", KBR_COL_TEXT},
    {"public_key_pem", KBR_COL_TEXT},
    {"hsm_label", KBR_COL_TEXT},
    {"hsm_id", KBR_COL_TEXT},
    {"public_key_sha256", KBR_COL_TEXT},
    {"cert_pem", KBR_COL_TEXT},
    {"cert_chain_pem", KBR_COL_TEXT},
    {"cert_not_after", KBR_COL_TEXT},
    {"cert_serial_number", KBR_COL_TEXT},
    {"cert_fingerprint", KBR_COL_TEXT},
};

kbr_err kbr_pg_key_get(kbr_store *st, const char *name, json_t **key)
{
    P;

    kbr_pg_text(&p, name);
    return kbr_pg_object(PG(st), KEY_COLUMNS " WHERE k.name = $1", &p, key_cols,
                         KBR_NCOLS(key_cols), key);
}

kbr_err kbr_pg_key_list(kbr_store *st, json_t **keys)
{
    return kbr_pg_objects(PG(st), KEY_COLUMNS " ORDER BY k.name", NULL, key_cols,
                          KBR_NCOLS(key_cols), keys);
}

kbr_err kbr_pg_token_list(kbr_store *st, const char *sub, bool active, time_t now, json_t **tokens)
{
    char now_text[KBR_TIME_LEN];
    P;

    kbr_time_fmt(now, now_text);
    kbr_pg_text(&p, sub);
    kbr_pg_int(&p, active ? 1 : 0);
    kbr_pg_text(&p, now_text);
    return kbr_pg_objects(PG(st),
                          KBR_PG_TOKEN_SELECT " WHERE ($1::text IS NULL OR t.sub = $1)"
                                              " AND ($2::int = 0 OR (t.revoked_at IS NULL"
                                              " AND t.expires_at > $3))"
                                              " ORDER BY t.audit_seq, t.jti",
                          &p, kbr_row_token, KBR_NCOLS(kbr_row_token), tokens);
}

kbr_err kbr_pg_firmware_components(kbr_store *st, const char *product, const char *version,
                                   json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, version);
    return kbr_pg_objects(PG(st),
                          "SELECT name, cversion, purl FROM components"
                          " WHERE product = $1 AND version = $2 ORDER BY id",
                          &p, kbr_row_component, KBR_NCOLS(kbr_row_component), out);
}

kbr_err kbr_pg_firmware_get(kbr_store *st, const char *product, const char *version, json_t **build)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, version);
    return kbr_pg_object(PG(st),
                         "SELECT product, version, digest, hash, key, name, build_id, signed_at,"
                         " audit_seq, sbom_sha256 FROM firmware"
                         " WHERE product = $1 AND version = $2",
                         &p, kbr_row_firmware, KBR_NCOLS(kbr_row_firmware), build);
}

/* ---- evidence ---- */

#define DEVICE_BASE                                                                                \
    "WITH dev AS (SELECT batch, firmware_version, audit_seq FROM devices"                          \
    "  WHERE product = $1 AND serial = $2),"                                                       \
    " ran AS (SELECT version FROM device_firmware WHERE product = $1 AND serial = $2"              \
    "  UNION SELECT firmware_version FROM dev WHERE firmware_version IS NOT NULL),"                \
    " base AS (SELECT audit_seq AS seq FROM dev"                                                   \
    "  UNION SELECT audit_seq FROM certificates WHERE owner_kind = 'device' AND product = $1"      \
    "   AND device_serial = $2"                                                                    \
    "  UNION SELECT audit_seq FROM device_events WHERE product = $1 AND serial = $2"               \
    "  UNION SELECT audit_seq FROM device_firmware WHERE product = $1 AND serial = $2"             \
    "  UNION SELECT audit_seq FROM debug_challenges WHERE product = $1 AND serial = $2"            \
    "  UNION SELECT audit_seq FROM key_deliveries WHERE product = $1 AND serial = $2"              \
    "  UNION SELECT k.audit_seq FROM keys k JOIN key_deliveries d ON d.key = k.name"               \
    "   WHERE d.product = $1 AND d.serial = $2"                                                    \
    "  UNION SELECT b.audit_seq FROM batches b JOIN dev ON b.batch = dev.batch"                    \
    "  UNION SELECT audit_seq FROM firmware WHERE product = $1"                                    \
    "   AND version IN (SELECT version FROM ran)"                                                  \
    "  UNION SELECT audit_seq FROM certificates WHERE owner_kind = 'key' AND key_name IN"          \
    "   (SELECT issuer_key FROM certificates WHERE owner_kind = 'device' AND product = $1"         \
    "    AND device_serial = $2)),"

#define PRODUCT_BASE                                                                               \
    "WITH pk AS (SELECT DISTINCT key FROM key_relations WHERE product = $1),"                      \
    " base AS (SELECT audit_seq AS seq FROM batches WHERE product = $1"                            \
    "  UNION SELECT audit_seq FROM firmware WHERE product = $1"                                    \
    "  UNION SELECT audit_seq FROM keys WHERE name IN (SELECT key FROM pk)"                        \
    "  UNION SELECT audit_seq FROM certificates WHERE owner_kind = 'key'"                          \
    "   AND key_name IN (SELECT key FROM pk)"                                                      \
    "  UNION SELECT seq FROM audit WHERE key IN (SELECT key FROM pk) AND op = 'key.retire'"        \
    "   AND outcome = 'ok'),"

/* An incident's own entries (its record, its fix, its reports), the builds it names (with
 * their SBOMs) and its fix's builds (sqlite_evidence.c). */
#define INCIDENT_BASE                                                                              \
    "WITH inc AS (SELECT audit_seq, fix_seq, fixed_version, product FROM incidents"                \
    "  WHERE id = $1),"                                                                            \
    " base AS (SELECT audit_seq AS seq FROM inc"                                                   \
    "  UNION SELECT fix_seq FROM inc WHERE fix_seq IS NOT NULL"                                    \
    "  UNION SELECT audit_seq FROM incident_reports WHERE incident = $1"                           \
    "  UNION SELECT audit_seq FROM incident_builds WHERE incident = $1"                            \
    "  UNION SELECT f.audit_seq FROM firmware f JOIN incident_builds b"                            \
    "   ON b.product = f.product AND b.version = f.version WHERE b.incident = $1"                  \
    "  UNION SELECT f.audit_seq FROM firmware f, inc WHERE f.version = inc.fixed_version"          \
    "   AND (f.product = inc.product OR f.product IN"                                              \
    "    (SELECT product FROM incident_builds WHERE incident = $1))),"

#define LEANS_ON                                                                                   \
    " named AS (SELECT a.key, a.jti FROM audit a JOIN base ON a.seq = base.seq)"                   \
    " SELECT seq FROM base"                                                                        \
    " UNION SELECT audit_seq FROM keys WHERE name IN (SELECT key FROM named)"                      \
    " UNION SELECT audit_seq FROM certificates WHERE owner_kind = 'key'"                           \
    "  AND key_name IN (SELECT key FROM named)"                                                    \
    " UNION SELECT audit_seq FROM tokens WHERE jti IN (SELECT jti FROM named)"                     \
    " ORDER BY 1"

/* The sequence numbers the query returns, without NULLs, as a new array. */
static kbr_err seq_list(kbr_pg *s, const char *sql, const kbr_pg_params *p, json_t **seqs)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    json_t *arr = NULL;

    *seqs = NULL;
    KBR_GUARD(kbr_pg_exec(s, sql, p, &res));
    arr = json_array();
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    for (int r = 0; r < PQntuples(res); r++)
        if (kbr_pg_value(res, r, 0) != NULL)
            KBR_ENSURE(json_array_append_new(
                           arr, json_integer(strtoll(kbr_pg_value(res, r, 0), NULL, 10))) == 0,
                       KBR_ERR_NOMEM);
    *seqs = arr;
    arr = NULL;
out:
    json_decref(arr);
    PQclear(res);
    return err;
}

kbr_err kbr_pg_evidence_seqs(kbr_store *st, const char *product, const char *serial, json_t **seqs)
{
    P;

    kbr_pg_text(&p, product);
    if (serial == NULL)
        return seq_list(PG(st), PRODUCT_BASE LEANS_ON, &p, seqs);
    kbr_pg_text(&p, serial);
    return seq_list(PG(st), DEVICE_BASE LEANS_ON, &p, seqs);
}

kbr_err kbr_pg_evidence_incident_seqs(kbr_store *st, const char *id, json_t **seqs)
{
    P;

    kbr_pg_text(&p, id);
    return seq_list(PG(st), INCIDENT_BASE LEANS_ON, &p, seqs);
}

/* ---- certificates, batches, devices ---- */

/* One WHERE clause for both kinds of owner: IS NOT DISTINCT FROM matches the NULL columns of
 * the other kind. */
#define CURRENT_OF_OWNER                                                                           \
    " WHERE owner_kind = $1 AND key_name IS NOT DISTINCT FROM $2::text"                            \
    " AND product IS NOT DISTINCT FROM $3::text AND device_serial IS NOT DISTINCT FROM $4::text"   \
    " AND superseded_at IS NULL"

static void owner_params(kbr_pg_params *p, const kbr_eff_owner *o)
{
    kbr_pg_text(p, o->kind);
    kbr_pg_text(p, o->key_name);
    kbr_pg_text(p, o->product);
    kbr_pg_text(p, o->serial);
}

kbr_err kbr_pg_cert_supersede(kbr_store *st, const kbr_eff_owner *owner, const char *at,
                              json_t **fingerprints)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    json_t *list = NULL;
    P;

    *fingerprints = NULL;
    owner_params(&p, owner);
    KBR_GUARD(kbr_pg_exec(
        PG(st), "SELECT fingerprint FROM certificates" CURRENT_OF_OWNER " ORDER BY id", &p, &res));
    list = json_array();
    KBR_ENSURE(list != NULL, KBR_ERR_NOMEM);
    for (int r = 0; r < PQntuples(res); r++)
        KBR_ENSURE(json_array_append_new(list, json_string(kbr_pg_value(res, r, 0))) == 0,
                   KBR_ERR_NOMEM);
    kbr_pg_text(&p, at);
    KBR_GUARD(kbr_pg_run(PG(st), "UPDATE certificates SET superseded_at = $5" CURRENT_OF_OWNER, &p,
                         NULL));
    *fingerprints = list;
    list = NULL;
out:
    json_decref(list);
    PQclear(res);
    return err;
}

kbr_err kbr_pg_cert_insert(kbr_store *st, const kbr_eff_cert *c, int64_t seq)
{
    P;

    owner_params(&p, &c->owner);
    kbr_pg_text(&p, c->serial_number);
    kbr_pg_text(&p, c->fingerprint);
    kbr_pg_text(&p, c->pem);
    kbr_pg_text(&p, c->chain_pem);
    kbr_pg_text(&p, c->not_after);
    kbr_pg_text(&p, c->issued_at);
    kbr_pg_text(&p, c->issuer_key);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO certificates(owner_kind, key_name, product, device_serial,"
                      " serial_number, fingerprint, pem, chain_pem, not_after, issued_at,"
                      " issuer_key, audit_seq)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                      &p, NULL);
}

kbr_err kbr_pg_batch_create(kbr_store *st, const kbr_eff_batch *b, int64_t seq)
{
    P;

    kbr_pg_text(&p, b->batch);
    kbr_pg_text(&p, b->product);
    kbr_pg_text(&p, b->factory);
    kbr_pg_int(&p, b->quantity);
    kbr_pg_text(&p, b->markets_json);
    kbr_pg_text(&p, b->created_at);
    kbr_pg_text(&p, b->created_by);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO batches(batch, product, factory, quantity, markets,"
                      " created_at, created_by, audit_seq)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      &p, NULL);
}

/* Check and count in one statement: no row changes unless every condition holds.  Writers
 * are one at a time (writer_lock), so the count is exact across brokers. */
kbr_err kbr_pg_batch_claim(kbr_store *st, const char *batch, const char *product,
                           const char *factory)
{
    kbr_err err = KBR_OK;
    int64_t changed = 0;
    P;

    kbr_pg_text(&p, batch);
    kbr_pg_text(&p, product);
    kbr_pg_text(&p, factory);
    KBR_GUARD(kbr_pg_run(PG(st),
                         "UPDATE batches SET provisioned = provisioned + 1"
                         " WHERE batch = $1 AND product = $2 AND factory = $3"
                         " AND provisioned < quantity",
                         &p, &changed));
    KBR_ENSURE(changed == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    return err;
}

kbr_err kbr_pg_device_insert(kbr_store *st, const kbr_eff_device *d, int64_t seq)
{
    P;

    kbr_pg_text(&p, d->product);
    kbr_pg_text(&p, d->serial);
    kbr_pg_text(&p, d->batch);
    kbr_pg_text(&p, d->factory);
    kbr_pg_text(&p, d->firmware_version);
    kbr_pg_text(&p, d->csr_sha256);
    kbr_pg_text(&p, d->at);
    kbr_pg_int(&p, seq);
    kbr_pg_text(&p, d->public_key_sha256);
    return kbr_pg_run(PG(st),
                      "INSERT INTO devices(product, serial, batch, factory, firmware_version,"
                      " csr_sha256, provisioned_at, current_firmware, current_firmware_at,"
                      " audit_seq, public_key_sha256)"
                      " VALUES ($1, $2, $3, $4, $5::text, $6, $7::text, $5::text,"
                      " CASE WHEN $5::text IS NULL THEN NULL ELSE $7::text END, $8, $9)",
                      &p, NULL);
}

kbr_err kbr_pg_device_key_set(kbr_store *st, const char *product, const char *serial,
                              const char *public_key_sha256)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    kbr_pg_text(&p, public_key_sha256);
    return kbr_pg_run(
        PG(st), "UPDATE devices SET public_key_sha256 = $3 WHERE product = $1 AND serial = $2", &p,
        NULL);
}

kbr_err kbr_pg_device_exists(kbr_store *st, const char *product, const char *serial, bool *exists)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    return kbr_pg_exists(PG(st), "SELECT 1 FROM devices WHERE product = $1 AND serial = $2", &p,
                         exists);
}

kbr_err kbr_pg_device_event_insert(kbr_store *st, const char *product, const char *serial,
                                   const char *kind, const char *at, const char *detail_json,
                                   int64_t seq)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    kbr_pg_text(&p, kind);
    kbr_pg_text(&p, at);
    kbr_pg_text(&p, detail_json);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO device_events(product, serial, kind, at, detail, audit_seq)"
                      " VALUES ($1, $2, $3, $4, $5, $6)",
                      &p, NULL);
}

#define BATCH_SELECT                                                                               \
    "SELECT batch, product, factory, quantity, markets, created_at, created_by, provisioned"       \
    " FROM batches"

kbr_err kbr_pg_batch_get(kbr_store *st, const char *batch, json_t **out)
{
    P;

    kbr_pg_text(&p, batch);
    return kbr_pg_object(PG(st), BATCH_SELECT " WHERE batch = $1", &p, kbr_row_batch,
                         KBR_NCOLS(kbr_row_batch), out);
}

kbr_err kbr_pg_batch_list(kbr_store *st, json_t **out)
{
    return kbr_pg_objects(PG(st), BATCH_SELECT " ORDER BY batch", NULL, kbr_row_batch,
                          KBR_NCOLS(kbr_row_batch), out);
}

kbr_err kbr_pg_device_certificates(kbr_store *st, const char *product, const char *serial,
                                   json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    return kbr_pg_objects(PG(st),
                          "SELECT c.serial_number, c.fingerprint, c.not_after, c.issued_at,"
                          " c.superseded_at, c.issuer_key, c.pem, c.chain_pem, c.audit_seq,"
                          " r.revoked_at, r.reason_code FROM certificates c"
                          " LEFT JOIN certificate_revocations r ON r.fingerprint = c.fingerprint"
                          " WHERE c.owner_kind = 'device' AND c.product = $1"
                          " AND c.device_serial = $2 ORDER BY c.id",
                          &p, kbr_row_device_cert, KBR_NCOLS(kbr_row_device_cert), out);
}

kbr_err kbr_pg_device_get(kbr_store *st, const char *product, const char *serial, json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    return kbr_pg_object(PG(st),
                         "SELECT product, serial, batch, factory, firmware_version, csr_sha256,"
                         " public_key_sha256, provisioned_at, audit_seq, current_firmware,"
                         " current_firmware_at FROM devices WHERE product = $1 AND serial = $2",
                         &p, kbr_row_device, KBR_NCOLS(kbr_row_device), out);
}

kbr_err kbr_pg_device_find(kbr_store *st, const char *serial, json_t **out)
{
    P;

    kbr_pg_text(&p, serial);
    return kbr_pg_objects(PG(st),
                          "SELECT product, serial, batch, factory FROM devices"
                          " WHERE serial = $1 ORDER BY product",
                          &p, kbr_row_found, KBR_NCOLS(kbr_row_found), out);
}

kbr_err kbr_pg_device_by_key(kbr_store *st, const char *public_key_sha256, json_t **out)
{
    P;

    kbr_pg_text(&p, public_key_sha256);
    return kbr_pg_object(PG(st), "SELECT product, serial FROM device_keys WHERE key = $1", &p,
                         kbr_row_identity, KBR_NCOLS(kbr_row_identity), out);
}

kbr_err kbr_pg_device_events(kbr_store *st, const char *product, const char *serial, json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    return kbr_pg_objects(PG(st),
                          "SELECT kind, at, detail, audit_seq FROM device_events"
                          " WHERE product = $1 AND serial = $2 ORDER BY id",
                          &p, kbr_row_event, KBR_NCOLS(kbr_row_event), out);
}

/* ---- devices in the field ---- */

kbr_err kbr_pg_debug_challenge_insert(kbr_store *st, const kbr_eff_debug *d, int64_t seq)
{
    P;

    kbr_pg_text(&p, d->key);
    kbr_pg_text(&p, d->challenge_sha256);
    kbr_pg_text(&p, d->product);
    kbr_pg_text(&p, d->serial);
    kbr_pg_text(&p, d->at);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO debug_challenges(key, challenge_sha256, product, serial, at,"
                      " audit_seq) VALUES ($1, $2, $3, $4, $5, $6)",
                      &p, NULL);
}

/* The device's set of builds ever run: a new array, empty before its first. */
static kbr_err history_of(kbr_pg *s, const char *product, const char *serial, json_t **versions)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    json_t *set = NULL;
    const char *text;
    P;

    *versions = NULL;
    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    KBR_GUARD(kbr_pg_exec(s,
                          "SELECT h.versions FROM devices d"
                          " LEFT JOIN firmware_histories h ON h.id = d.history"
                          " WHERE d.product = $1 AND d.serial = $2",
                          &p, &res));
    /* The history row names the device, so an unknown one breaks the same rule. */
    KBR_ENSURE(PQntuples(res) > 0, KBR_ERR_STORE_CONSTRAINT);
    text = kbr_pg_value(res, 0, 0);
    set = text != NULL ? json_loads(text, 0, NULL) : json_array();
    KBR_ENSURE(json_is_array(set), KBR_ERR_STORE);
    *versions = set;
    set = NULL;
out:
    json_decref(set);
    PQclear(res);
    return err;
}

/* The id of the set spelled text, created on its first device. */
static kbr_err history_id(kbr_pg *s, const char *product, const char *text, int64_t *id)
{
    kbr_err err = KBR_OK;
    P;

    *id = 0;
    kbr_pg_text(&p, product);
    kbr_pg_text(&p, text);
    err = kbr_pg_int64(s, "SELECT id FROM firmware_histories WHERE product = $1 AND versions = $2",
                       &p, id);
    if (err != KBR_ERR_NOT_FOUND)
        goto out;
    err = KBR_OK;
    KBR_GUARD(kbr_pg_int64(s,
                           "INSERT INTO firmware_histories(product, versions) VALUES ($1, $2)"
                           " RETURNING id",
                           &p, id));
    kbr_pg_int(&p, *id);
    KBR_GUARD(kbr_pg_run(s,
                         "INSERT INTO firmware_history_versions(product, version, history)"
                         " SELECT $1, e #>> '{}', $3 FROM jsonb_array_elements($2::jsonb) e",
                         &p, NULL));
out:
    return err;
}

static kbr_err history_add(kbr_pg *s, const char *product, const char *serial, const char *version)
{
    kbr_err err = KBR_OK;
    json_t *versions = NULL;
    char *text = NULL;
    int64_t id = 0;
    P;

    KBR_GUARD(history_of(s, product, serial, &versions));
    if (kbr_store_history_holds(versions, version))
        goto out;
    KBR_GUARD(kbr_store_history_text(versions, version, &text));
    KBR_GUARD(history_id(s, product, text, &id));
    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    kbr_pg_int(&p, id);
    KBR_GUARD(kbr_pg_run(s, "UPDATE devices SET history = $3 WHERE product = $1 AND serial = $2",
                         &p, NULL));
out:
    free(text);
    json_decref(versions);
    return err;
}

kbr_err kbr_pg_device_firmware_insert(kbr_store *st, const kbr_eff_device_firmware *r, int64_t seq,
                                      bool *added)
{
    kbr_err err = KBR_OK;
    int64_t changed = 0;
    P;

    *added = false;
    kbr_pg_text(&p, r->product);
    kbr_pg_text(&p, r->serial);
    kbr_pg_text(&p, r->version);
    kbr_pg_text(&p, r->status);
    kbr_pg_text(&p, r->at);
    kbr_pg_text(&p, r->campaign);
    kbr_pg_int(&p, seq);
    KBR_GUARD(kbr_pg_run(PG(st),
                         "INSERT INTO device_firmware(product, serial, version, status, at,"
                         " campaign, audit_seq) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                         " ON CONFLICT(product, serial, version, status, at) DO NOTHING",
                         &p, &changed));
    if (changed == 0)
        goto out;
    if (strcmp(r->status, "failed") != 0)
        KBR_GUARD(history_add(PG(st), r->product, r->serial, r->version));
    *added = true;
out:
    return err;
}

kbr_err kbr_pg_device_firmware_current(kbr_store *st, const char *product, const char *serial,
                                       const char *version, const char *at)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    kbr_pg_text(&p, version);
    kbr_pg_text(&p, at);
    return kbr_pg_run(PG(st),
                      "UPDATE devices SET current_firmware = $3, current_firmware_at = $4"
                      " WHERE product = $1 AND serial = $2"
                      " AND (current_firmware_at IS NULL OR current_firmware_at <= $4)",
                      &p, NULL);
}

kbr_err kbr_pg_devices_known(kbr_store *st, const char *product, const json_t *serials,
                             json_t **known)
{
    static const kbr_col_spec serial_col[] = {{"serial", KBR_COL_TEXT}};
    kbr_err err = KBR_OK;
    json_t *rows = NULL, *list = NULL, *row;
    char *text = NULL;
    size_t i;
    P;

    *known = NULL;
    text = json_dumps(serials, JSON_COMPACT);
    KBR_ENSURE(text != NULL, KBR_ERR_NOMEM);
    kbr_pg_text(&p, product);
    kbr_pg_text(&p, text);
    KBR_GUARD(
        kbr_pg_objects(PG(st),
                       "SELECT j.value #>> '{}' FROM jsonb_array_elements($2::jsonb)"
                       " WITH ORDINALITY AS j(value, n) WHERE jsonb_typeof(j.value) = 'string'"
                       " AND EXISTS (SELECT 1 FROM devices d WHERE d.product = $1"
                       "  AND d.serial = j.value #>> '{}')"
                       " GROUP BY 1 ORDER BY min(j.n)",
                       &p, serial_col, 1, &rows));
    list = json_array();
    KBR_ENSURE(list != NULL, KBR_ERR_NOMEM);
    json_array_foreach(rows, i, row)
    {
        KBR_ENSURE(json_array_append(list, json_object_get(row, "serial")) == 0, KBR_ERR_NOMEM);
    }
    *known = list;
    list = NULL;
out:
    json_decref(list);
    json_decref(rows);
    free(text);
    return err;
}

kbr_err kbr_pg_debug_challenge_used(kbr_store *st, const char *product, const char *serial,
                                    const char *challenge_sha256, bool *used)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    kbr_pg_text(&p, challenge_sha256);
    return kbr_pg_exists(PG(st),
                         "SELECT 1 FROM debug_challenges"
                         " WHERE product = $1 AND serial = $2 AND challenge_sha256 = $3",
                         &p, used);
}

kbr_err kbr_pg_device_firmware(kbr_store *st, const char *product, const char *serial, json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    return kbr_pg_objects(PG(st),
                          "SELECT version, status, at, campaign, audit_seq FROM device_firmware"
                          " WHERE product = $1 AND serial = $2 ORDER BY at, audit_seq, id",
                          &p, kbr_row_firmware_history, KBR_NCOLS(kbr_row_firmware_history), out);
}

/* ---- revocations and CRLs ---- */

kbr_err kbr_pg_device_revoked(kbr_store *st, const char *product, const char *serial, bool *revoked)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    return kbr_pg_exists(
        PG(st), "SELECT 1 FROM device_revocations WHERE product = $1 AND serial = $2", &p, revoked);
}

kbr_err kbr_pg_device_revoke(kbr_store *st, const kbr_eff_revoke *d, int64_t seq)
{
    kbr_err err = KBR_OK;
    P;

    kbr_pg_text(&p, d->product);
    kbr_pg_text(&p, d->serial);
    kbr_pg_text(&p, d->at);
    kbr_pg_text(&p, d->reason);
    kbr_pg_int(&p, d->reason_code);
    kbr_pg_text(&p, d->revoked_by);
    kbr_pg_int(&p, seq);
    KBR_GUARD(kbr_pg_run(PG(st),
                         "INSERT INTO device_revocations(product, serial, revoked_at, reason,"
                         " reason_code, revoked_by, audit_seq)"
                         " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                         &p, NULL));
    for (size_t i = 0; i < d->ncertificates; i++) {
        kbr_pg_params c = {.n = 0};

        kbr_pg_text(&c, d->certificates[i].fingerprint);
        kbr_pg_text(&c, d->certificates[i].issuer_key);
        kbr_pg_text(&c, d->certificates[i].serial_number);
        kbr_pg_text(&c, d->at);
        kbr_pg_int(&c, d->reason_code);
        kbr_pg_int(&c, seq);
        KBR_GUARD(kbr_pg_run(PG(st),
                             "INSERT INTO certificate_revocations(fingerprint, issuer_key,"
                             " serial_number, revoked_at, reason_code, audit_seq)"
                             " VALUES ($1, $2, $3, $4, $5, $6)",
                             &c, NULL));
    }
out:
    return err;
}

kbr_err kbr_pg_crl_last_number(kbr_store *st, const char *issuer_key, int64_t *last)
{
    P;

    kbr_pg_text(&p, issuer_key);
    return kbr_pg_int64(PG(st), "SELECT coalesce(max(number), 0) FROM crls WHERE issuer_key = $1",
                        &p, last);
}

kbr_err kbr_pg_crl_insert(kbr_store *st, const kbr_eff_crl *l, int64_t seq)
{
    P;

    kbr_pg_text(&p, l->issuer_key);
    kbr_pg_int(&p, l->number);
    kbr_pg_text(&p, l->issuer_fingerprint);
    kbr_pg_text(&p, l->this_update);
    kbr_pg_text(&p, l->next_update);
    kbr_pg_int(&p, l->entries);
    kbr_pg_text(&p, l->sha256);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO crls(issuer_key, number, issuer_fingerprint, this_update,"
                      " next_update, entries, sha256, audit_seq)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      &p, NULL);
}

kbr_err kbr_pg_crl_revoked(kbr_store *st, const char *issuer_key, json_t **rows)
{
    P;

    kbr_pg_text(&p, issuer_key);
    return kbr_pg_objects(PG(st),
                          "SELECT serial_number, fingerprint, revoked_at, reason_code"
                          " FROM certificate_revocations WHERE issuer_key = $1"
                          " ORDER BY revoked_at, serial_number",
                          &p, kbr_row_revoked, KBR_NCOLS(kbr_row_revoked), rows);
}

kbr_err kbr_pg_device_revocation(kbr_store *st, const char *product, const char *serial,
                                 json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    return kbr_pg_object(PG(st),
                         "SELECT revoked_at, reason, reason_code, revoked_by, audit_seq"
                         " FROM device_revocations WHERE product = $1 AND serial = $2",
                         &p, kbr_row_revocation, KBR_NCOLS(kbr_row_revocation), out);
}

/* ---- keys delivered to devices ---- */

/* One statement is the rule, as in sqlite_deliver.c: the row goes in only for a device whose
 * identity key is the recipient and a registry key of purpose ota-encryption; the primary key
 * refuses a second delivery of the key to the device, the foreign key a document the store
 * does not have. */
kbr_err kbr_pg_key_delivery_insert(kbr_store *st, const kbr_eff_deliver *d, int64_t seq)
{
    kbr_err err = KBR_OK;
    int64_t changed = 0;
    P;

    kbr_pg_text(&p, d->product);
    kbr_pg_text(&p, d->serial);
    kbr_pg_text(&p, d->key);
    kbr_pg_text(&p, d->recipient_public_key_sha256);
    kbr_pg_text(&p, d->cose_sha256);
    kbr_pg_text(&p, d->delivered_by);
    kbr_pg_text(&p, d->at);
    kbr_pg_int(&p, seq);
    KBR_GUARD(kbr_pg_run(PG(st),
                         "INSERT INTO key_deliveries(product, serial, key,"
                         " recipient_public_key_sha256, cose_sha256, delivered_by, at, audit_seq)"
                         " SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text,"
                         " $7::text, $8::bigint FROM devices d"
                         " JOIN keys k ON k.name = $3"
                         " WHERE d.product = $1 AND d.serial = $2 AND d.public_key_sha256 = $4"
                         " AND k.purpose = 'ota-encryption'",
                         &p, &changed));
    KBR_ENSURE(changed == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    return err;
}

kbr_err kbr_pg_device_deliveries(kbr_store *st, const char *product, const char *serial,
                                 json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, serial);
    return kbr_pg_objects(PG(st),
                          "SELECT key, at, recipient_public_key_sha256, cose_sha256,"
                          " delivered_by, audit_seq FROM key_deliveries"
                          " WHERE product = $1 AND serial = $2 ORDER BY audit_seq, key",
                          &p, kbr_row_delivery, KBR_NCOLS(kbr_row_delivery), out);
}

/* ---- the CRA: products' support periods and incidents (sqlite_cra.c) ---- */

kbr_err kbr_pg_product_get(kbr_store *st, const char *product, json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    return kbr_pg_object(PG(st),
                         "SELECT product, placed_on_market, support_until, created_at,"
                         " created_by, updated_at, audit_seq FROM products WHERE product = $1",
                         &p, kbr_row_product, KBR_NCOLS(kbr_row_product), out);
}

kbr_err kbr_pg_product_put(kbr_store *st, const kbr_fx_product_register *pr, bool exists,
                           int64_t seq)
{
    kbr_err err = KBR_OK;
    int64_t changed = 0;
    P;

    kbr_pg_text(&p, pr->product);
    kbr_pg_text(&p, pr->placed_on_market);
    kbr_pg_text(&p, pr->support_until);
    kbr_pg_text(&p, pr->at);
    kbr_pg_int(&p, seq);
    if (exists) {
        KBR_GUARD(kbr_pg_run(PG(st),
                             "UPDATE products SET support_until = $3, updated_at = $4,"
                             " audit_seq = $5 WHERE product = $1 AND placed_on_market = $2",
                             &p, &changed));
    } else {
        kbr_pg_text(&p, pr->by);
        KBR_GUARD(kbr_pg_run(PG(st),
                             "INSERT INTO products(product, placed_on_market, support_until,"
                             " created_at, created_by, audit_seq, first_seq)"
                             " VALUES ($1, $2, $3, $4, $6, $5, $5)",
                             &p, &changed));
    }
    KBR_ENSURE(changed == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    return err;
}

kbr_err kbr_pg_incident_insert(kbr_store *st, const kbr_fx_incident_create *i, int64_t seq)
{
    P;

    kbr_pg_text(&p, i->id);
    kbr_pg_text(&p, i->title);
    kbr_pg_text(&p, i->product);
    kbr_pg_text(&p, i->component);
    kbr_pg_text(&p, i->query_json);
    kbr_pg_text(&p, i->aware_at);
    kbr_pg_int(&p, i->actively_exploited ? 1 : 0);
    kbr_pg_text(&p, i->severity);
    kbr_pg_text(&p, i->cve);
    kbr_pg_text(&p, i->created_at);
    kbr_pg_text(&p, i->created_by);
    kbr_pg_text(&p, i->exposure_json);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO incidents(id, title, product, component, query, aware_at,"
                      " actively_exploited, severity, cve, created_at, created_by, start_day,"
                      " exposure, audit_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
                      " $11, substr($10::ctext, 1, 10), $12, $13)",
                      &p, NULL);
}

kbr_err kbr_pg_incident_build_insert(kbr_store *st, const char *incident, const char *product,
                                     const char *version, int64_t seq)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, version);
    kbr_pg_text(&p, incident);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO incident_builds(product, version, incident, audit_seq)"
                      " VALUES ($1, $2, $3, $4)",
                      &p, NULL);
}

/* The same count View C makes (history_firmware_batch of the sets holding a build). */
kbr_err kbr_pg_incident_fleet_load(kbr_store *st, const char *incident, const char *day)
{
    P;

    kbr_pg_text(&p, incident);
    kbr_pg_text(&p, day);
    return kbr_pg_run(PG(st),
                      "INSERT INTO incident_fleet(incident, day, batch, firmware, delta)"
                      " SELECT $1::ctext, $2::ctext, h.batch, h.firmware, sum(h.count)"
                      " FROM history_firmware_batch h"
                      " WHERE h.history IN (SELECT v.history FROM incident_builds b"
                      "  JOIN firmware_history_versions v ON v.product = b.product"
                      "  AND v.version = b.version WHERE b.incident = $1)"
                      " GROUP BY h.batch, h.firmware",
                      &p, NULL);
}

#define INCIDENT_SELECT                                                                            \
    "SELECT id, title, product, component, query, aware_at, actively_exploited, severity, cve,"    \
    " created_at, created_by, exposure, fixed_version, fix_available_at, fix_recorded_at,"         \
    " fix_seq, audit_seq FROM incidents"

kbr_err kbr_pg_incident_get(kbr_store *st, const char *id, json_t **out)
{
    P;

    kbr_pg_text(&p, id);
    return kbr_pg_object(PG(st), INCIDENT_SELECT " WHERE id = $1", &p, kbr_row_incident,
                         KBR_NCOLS(kbr_row_incident), out);
}

kbr_err kbr_pg_incident_list(kbr_store *st, json_t **out)
{
    return kbr_pg_objects(PG(st), INCIDENT_SELECT " ORDER BY created_at, id", NULL,
                          kbr_row_incident, KBR_NCOLS(kbr_row_incident), out);
}

kbr_err kbr_pg_incident_queries(kbr_store *st, json_t **out)
{
    return kbr_pg_objects(PG(st), "SELECT id, product, query FROM incidents ORDER BY id", NULL,
                          kbr_row_query, KBR_NCOLS(kbr_row_query), out);
}

kbr_err kbr_pg_incident_builds(kbr_store *st, const char *id, json_t **out)
{
    P;

    kbr_pg_text(&p, id);
    return kbr_pg_objects(PG(st),
                          "SELECT product, version, audit_seq FROM incident_builds"
                          " WHERE incident = $1 ORDER BY product, version",
                          &p, kbr_row_incident_build, KBR_NCOLS(kbr_row_incident_build), out);
}

kbr_err kbr_pg_incident_fix(kbr_store *st, const kbr_fx_incident_fix *f, int64_t seq)
{
    kbr_err err = KBR_OK;
    int64_t changed = 0;
    P;

    kbr_pg_text(&p, f->id);
    kbr_pg_text(&p, f->fixed_version);
    kbr_pg_text(&p, f->available_at);
    kbr_pg_text(&p, f->at);
    kbr_pg_int(&p, seq);
    KBR_GUARD(kbr_pg_run(PG(st),
                         "UPDATE incidents SET fixed_version = $2, fix_available_at = $3,"
                         " fix_recorded_at = $4, fix_seq = $5"
                         " WHERE id = $1 AND fixed_version IS NULL",
                         &p, &changed));
    KBR_ENSURE(changed == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    return err;
}

kbr_err kbr_pg_incident_report_insert(kbr_store *st, const kbr_fx_incident_report *r, int64_t seq)
{
    P;

    kbr_pg_text(&p, r->id);
    kbr_pg_text(&p, r->stage);
    kbr_pg_text(&p, r->sha256);
    kbr_pg_text(&p, r->at);
    kbr_pg_text(&p, r->by);
    kbr_pg_int(&p, seq);
    return kbr_pg_run(PG(st),
                      "INSERT INTO incident_reports(incident, stage, sha256, at, by, audit_seq)"
                      " VALUES ($1, $2, $3, $4, $5, $6)",
                      &p, NULL);
}

kbr_err kbr_pg_incident_reports(kbr_store *st, const char *id, json_t **out)
{
    P;

    kbr_pg_text(&p, id);
    return kbr_pg_objects(PG(st),
                          "SELECT stage, sha256, at, by, audit_seq FROM incident_reports"
                          " WHERE incident = $1 ORDER BY id",
                          &p, kbr_row_report, KBR_NCOLS(kbr_row_report), out);
}

/* By day, then batch and firmware: SQLite gives a day's rows in its primary key's order. */
kbr_err kbr_pg_incident_series(kbr_store *st, const char *id, json_t **out)
{
    P;

    kbr_pg_text(&p, id);
    return kbr_pg_objects(PG(st),
                          "SELECT day, batch, firmware, delta FROM incident_fleet"
                          " WHERE incident = $1 AND delta <> 0 ORDER BY day, batch, firmware",
                          &p, kbr_row_series, KBR_NCOLS(kbr_row_series), out);
}

kbr_err kbr_pg_firmware_version_exists(kbr_store *st, const char *version, bool *exists)
{
    P;

    kbr_pg_text(&p, version);
    return kbr_pg_exists(PG(st), "SELECT 1 FROM firmware WHERE version = $1 LIMIT 1", &p, exists);
}
