/*
 * pg_views.c - the PostgreSQL back end's snapshots and the rows of the custody views
 * (A, B, C) and the fleet walks; views.c and exposure.c compose them.  The queries are the
 * SQLite back end's (sqlite_views.c, sqlite_exposure.c) over the same counter tables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"

#define PG(st) ((kbr_pg *)(st))
#define P      kbr_pg_params p = {.n = 0}

/* The statement that holds every table of the store's schema IN ACCESS SHARE MODE, read
 * before the transaction begins (*sql NULL when there is no table).  A table rewritten (ALTER
 * TABLE, TRUNCATE) after a REPEATABLE READ snapshot is taken reads as empty in it: those
 * commands are not MVCC-safe.  Held from before the snapshot, they wait for it to end instead;
 * the brokers' reads and writes do not.  The list is read outside the transaction because any
 * query in it, a catalog's too, would take its snapshot.  A table made after the list is read
 * is not held, and is a table the checker reports anyway. */
static kbr_err hold_statement(kbr_pg *s, char **sql, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    PGresult *res = PQexec(s->conn, "SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I',"
                                    " n.nspname, c.relname), ', ' ORDER BY c.relname) FROM"
                                    " pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON"
                                    " n.oid = c.relnamespace WHERE n.nspname ="
                                    " pg_catalog.current_schema() AND c.relkind IN ('r', 'p')");

    *sql = NULL;
    err = kbr_pg_result_err(res);
    if (err == KBR_OK && PQntuples(res) != 1)
        err = KBR_ERR_STORE;
    if (err != KBR_OK) {
        kbr_fail(msg, err, "store %s: cannot list its tables to hold them for the check: %s",
                 s->where, PQerrorMessage(s->conn));
        goto out;
    }
    if (!PQgetisnull(res, 0, 0))
        KBR_ENSURE(asprintf(sql, "LOCK TABLE %s IN ACCESS SHARE MODE", PQgetvalue(res, 0, 0)) > 0,
                   (*sql = NULL, KBR_ERR_NOMEM));
out:
    PQclear(res);
    return err;
}

/* One REPEATABLE READ transaction: every read until the matching snapshot_end sees one
 * state.  Snapshots nest, as SQLite's savepoints do: the outermost one holds the transaction,
 * and one taken inside the writer's transaction reads that transaction.  A store opened to be
 * read only (the checks) holds its tables against rewrites before the first read
 * (hold_statement); a table it cannot hold (a rewrite that holds it past the lock timeout, a
 * table dropped since the list) fails the snapshot, named in msg. */
kbr_err kbr_pg_snapshot_begin(kbr_store *st, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_pg *s = PG(st);
    char *hold = NULL;

    if (s->snapshot_depth == 0 && !s->in_tx) {
        if (s->hold_tables)
            KBR_GUARD(hold_statement(s, &hold, msg));
        err = kbr_pg_run(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL, NULL);
        if (err != KBR_OK) {
            kbr_fail(msg, err, "store %s: a snapshot to read could not begin: %s", s->where,
                     PQerrorMessage(s->conn));
            goto out;
        }
        s->in_snapshot = true;
        if (hold != NULL) {
            PGresult *res = PQexec(s->conn, hold);
            const char *why = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

            err = kbr_pg_result_err(res);
            if (err != KBR_OK)
                kbr_fail(msg, err,
                         "store %s: cannot hold its tables against a rewrite for the check: %s",
                         s->where, why != NULL ? why : PQerrorMessage(s->conn));
            PQclear(res);
            if (err != KBR_OK) {
                PQclear(PQexec(s->conn, "ROLLBACK"));
                s->in_snapshot = false;
                goto out;
            }
        }
    }
    s->snapshot_depth++;
out:
    free(hold);
    if (err != KBR_OK && msg != NULL)
        msg->text[strcspn(msg->text, "\n")] = '\0'; /* the server's first line */
    return err;
}

void kbr_pg_snapshot_end(kbr_store *st)
{
    kbr_pg *s = PG(st);

    if (s->snapshot_depth == 0 || --s->snapshot_depth > 0 || !s->in_snapshot)
        return;
    if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(s->conn, "ROLLBACK");
        PQclear(res);
    }
    s->in_snapshot = false;
}

#define TOKENS_REACHING                                                                            \
    " t.jti IN (SELECT jti FROM token_keys WHERE pattern IN"                                       \
    "  (SELECT jsonb_array_elements_text($1::jsonb)))"

#define TOKENS_FOR_PRODUCT                                                                         \
    " (jsonb_typeof(t.scope::jsonb -> 'products') IS NULL"                                         \
    "  OR (jsonb_typeof(t.scope::jsonb -> 'products') = 'array' AND EXISTS (SELECT 1 FROM"         \
    "  jsonb_array_elements_text(t.scope::jsonb -> 'products') pr(v)"                              \
    "  WHERE kbr_name_matches(pr.v, $3))))"

kbr_err kbr_pg_live_tokens(kbr_store *st, const char *key, const char *product, const char *now,
                           json_t **out)
{
    kbr_err err = KBR_OK;
    char *patterns = NULL;
    P;

    *out = NULL;
    KBR_GUARD(kbr_name_patterns_reaching(key, &patterns));
    kbr_pg_text(&p, patterns);
    kbr_pg_text(&p, now);
    kbr_pg_text(&p, product);
    KBR_GUARD(kbr_pg_objects(PG(st),
                             "SELECT t.jti, t.sub, t.expires_at, coalesce(u.uses, 0),"
                             " (t.scope::jsonb ->> 'max_uses')::bigint"
                             " FROM tokens t LEFT JOIN token_usage u ON u.jti = t.jti"
                             " WHERE" TOKENS_REACHING
                             " AND t.revoked_at IS NULL AND t.expires_at > $2"
                             " AND" TOKENS_FOR_PRODUCT " ORDER BY t.expires_at, t.jti",
                             &p, kbr_row_live_token, KBR_NCOLS(kbr_row_live_token), out));
out:
    free(patterns);
    return err;
}

kbr_err kbr_pg_product_relations(kbr_store *st, const char *product, json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    return kbr_pg_objects(
        PG(st),
        "WITH RECURSIVE dep(key, role) AS ("
        " SELECT key, role FROM key_relations WHERE product = $1"
        " UNION SELECT c.issuer_key, 'issuer'::ctext FROM dep JOIN certificates c"
        "  ON c.owner_kind = 'key' AND c.key_name = dep.key AND c.superseded_at IS NULL"
        "  WHERE c.issuer_key IS NOT NULL)"
        " SELECT key, role FROM dep ORDER BY key, role",
        &p, kbr_row_relation, KBR_NCOLS(kbr_row_relation), out);
}

kbr_err kbr_pg_product_known(kbr_store *st, const char *product, bool *known)
{
    P;

    kbr_pg_text(&p, product);
    return kbr_pg_exists(PG(st),
                         "SELECT 1 WHERE EXISTS (SELECT 1 FROM batches WHERE product = $1)"
                         " OR EXISTS (SELECT 1 FROM devices WHERE product = $1)"
                         " OR EXISTS (SELECT 1 FROM products WHERE product = $1)",
                         &p, known);
}

kbr_err kbr_pg_cert_months(kbr_store *st, const char *product, json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    return kbr_pg_objects(PG(st),
                          "SELECT substr(day, 1, 7), sum(count) FROM device_cert_expiry"
                          " WHERE product = $1 GROUP BY 1 HAVING sum(count) > 0 ORDER BY 1",
                          &p, kbr_row_month, KBR_NCOLS(kbr_row_month), out);
}

kbr_err kbr_pg_expiring_devices(kbr_store *st, const char *product, const char *until, int limit,
                                int64_t *count, json_t **out)
{
    kbr_err err = KBR_OK;
    char day[11];
    P;

    *out = NULL;
    memcpy(day, until, 10);
    day[10] = '\0';
    kbr_pg_text(&p, product);
    kbr_pg_text(&p, day);
    kbr_pg_text(&p, until);
    KBR_GUARD(kbr_pg_int64(
        PG(st),
        "SELECT coalesce((SELECT sum(count) FROM device_cert_expiry"
        "  WHERE product = $1 AND day < $2), 0)"
        " + (SELECT count(*) FROM certificates WHERE owner_kind = 'device'"
        "  AND superseded_at IS NULL AND product = $1 AND not_after >= $2 AND not_after <= $3"
        "  AND NOT EXISTS (SELECT 1 FROM certificate_revocations r"
        "  WHERE r.fingerprint = certificates.fingerprint))",
        &p, count));
    p.n = 0;
    kbr_pg_text(&p, product);
    kbr_pg_text(&p, until);
    kbr_pg_int(&p, limit);
    KBR_GUARD(kbr_pg_objects(PG(st),
                             "SELECT product, device_serial, serial_number, fingerprint,"
                             " not_after FROM certificates WHERE owner_kind = 'device'"
                             " AND superseded_at IS NULL AND product = $1 AND not_after <= $2"
                             " AND NOT EXISTS (SELECT 1 FROM certificate_revocations r"
                             " WHERE r.fingerprint = certificates.fingerprint)"
                             " ORDER BY not_after, id LIMIT $3",
                             &p, kbr_row_expiring, KBR_NCOLS(kbr_row_expiring), out));
out:
    return err;
}

kbr_err kbr_pg_key_tokens(kbr_store *st, const char *key, json_t **out)
{
    kbr_err err = KBR_OK;
    char *patterns = NULL;
    P;

    *out = NULL;
    KBR_GUARD(kbr_name_patterns_reaching(key, &patterns));
    kbr_pg_text(&p, patterns);
    KBR_GUARD(kbr_pg_objects(
        PG(st), KBR_PG_TOKEN_SELECT " WHERE" TOKENS_REACHING " ORDER BY t.issued_at, t.jti", &p,
        kbr_row_token, KBR_NCOLS(kbr_row_token), out));
out:
    free(patterns);
    return err;
}

kbr_err kbr_pg_key_operations(kbr_store *st, const char *key, json_t **out)
{
    P;

    kbr_pg_text(&p, key);
    return kbr_pg_objects(PG(st),
                          "SELECT nullif(sub, ''), op, outcome, count, last_at, last_seq"
                          " FROM key_operations WHERE key = $1 ORDER BY sub, op, outcome",
                          &p, kbr_row_operation, KBR_NCOLS(kbr_row_operation), out);
}

/* ---- View C ---- */

/* The candidates: one index lookup, by name or by package; match.c decides. */
kbr_err kbr_pg_exposure_components(kbr_store *st, const char *component, const char *purl_key,
                                   const char *product, json_t **out)
{
    P;

    *out = NULL;
    if (component == NULL && purl_key == NULL)
        return KBR_ERR_INTERNAL;
    kbr_pg_text(&p, component != NULL ? component : purl_key);
    kbr_pg_text(&p, product);
    if (component != NULL)
        return kbr_pg_objects(PG(st),
                              "SELECT product, version, name, cversion, purl FROM components"
                              " WHERE name = $1 AND ($2::text IS NULL OR product = $2)"
                              " ORDER BY product, version, id",
                              &p, kbr_row_exposed_component, KBR_NCOLS(kbr_row_exposed_component),
                              out);
    return kbr_pg_objects(PG(st),
                          "SELECT product, version, name, cversion, purl FROM components"
                          " WHERE purl_key = $1 AND ($2::text IS NULL OR product = $2)"
                          " ORDER BY product, version, id",
                          &p, kbr_row_exposed_component, KBR_NCOLS(kbr_row_exposed_component), out);
}

kbr_err kbr_pg_build_row(kbr_store *st, const char *product, const char *version, json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, version);
    return kbr_pg_object(PG(st),
                         "SELECT digest, signed_at, key, audit_seq FROM firmware"
                         " WHERE product = $1 AND version = $2",
                         &p, kbr_row_exposed_build, KBR_NCOLS(kbr_row_exposed_build), out);
}

kbr_err kbr_pg_fleet_batches(kbr_store *st, const char *product, const char *firmware, json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, firmware);
    return kbr_pg_objects(PG(st),
                          "SELECT f.batch, coalesce(b.markets, '[]'), f.count"
                          " FROM fleet_firmware f LEFT JOIN batches b ON b.batch = f.batch"
                          " WHERE f.product = $1 AND f.firmware = $2 AND f.count > 0",
                          &p, kbr_row_batch_count, KBR_NCOLS(kbr_row_batch_count), out);
}

kbr_err kbr_pg_build_histories(kbr_store *st, const char *product, const char *version,
                               json_t **out)
{
    P;

    kbr_pg_text(&p, product);
    kbr_pg_text(&p, version);
    return kbr_pg_objects(PG(st),
                          "SELECT history FROM firmware_history_versions"
                          " WHERE product = $1 AND version = $2",
                          &p, kbr_row_history, KBR_NCOLS(kbr_row_history), out);
}

kbr_err kbr_pg_history_batches(kbr_store *st, int64_t history, json_t **out)
{
    P;

    kbr_pg_int(&p, history);
    return kbr_pg_objects(PG(st),
                          "SELECT firmware, batch, count FROM history_firmware_batch"
                          " WHERE history = $1 ORDER BY firmware, batch",
                          &p, kbr_row_history_batch, KBR_NCOLS(kbr_row_history_batch), out);
}

/* An empty array for a batch the ledger does not have (sqlite_exposure.c). */
kbr_err kbr_pg_batch_markets(kbr_store *st, const char *batch, json_t **out)
{
    kbr_err err = KBR_OK;
    char *text = NULL;
    kbr_err found;
    P;

    *out = NULL;
    kbr_pg_text(&p, batch);
    found = kbr_pg_string(PG(st), "SELECT markets FROM batches WHERE batch = $1", &p, &text);
    KBR_ENSURE(found == KBR_OK || found == KBR_ERR_NOT_FOUND, found);
    *out = text != NULL ? json_loads(text, 0, NULL) : json_array();
    KBR_ENSURE(json_is_array(*out), KBR_ERR_STORE);
out:
    if (err != KBR_OK) {
        json_decref(*out);
        *out = NULL;
    }
    free(text);
    return err;
}

kbr_err kbr_pg_pending_group(kbr_store *st, int64_t history, const char *firmware,
                             const char *after, int limit, json_t **out)
{
    P;

    kbr_pg_int(&p, history);
    kbr_pg_text(&p, firmware);
    kbr_pg_text(&p, after);
    kbr_pg_int(&p, limit);
    return kbr_pg_objects(PG(st),
                          "SELECT product, serial, current_firmware, batch FROM devices"
                          " WHERE history = $1 AND current_firmware = $2 AND serial > $3"
                          " ORDER BY serial LIMIT $4",
                          &p, kbr_row_pending, KBR_NCOLS(kbr_row_pending), out);
}

/* A walk may read a million devices: it pages through them, WALK_PAGE at a time, by
 * (serial, product), which is its order. */
#define WALK_PAGE 2000

kbr_err kbr_pg_fleet_walk(kbr_store *st, const char *product, const char *after, kbr_fleet_fn fn,
                          void *arg)
{
    kbr_err err = KBR_OK;
    PGresult *res = NULL;
    char *last_serial = NULL, *last_product = NULL;
    bool stop = false;
    int rows = WALK_PAGE;

    while (!stop && rows == WALK_PAGE) {
        P;

        kbr_pg_text(&p, last_serial != NULL ? last_serial : after);
        kbr_pg_text(&p, last_product);
        kbr_pg_int(&p, WALK_PAGE);
        kbr_pg_text(&p, product);
        KBR_GUARD(kbr_pg_exec(PG(st),
                              "SELECT product, serial, current_firmware, batch, history"
                              " FROM devices WHERE ($4::text IS NULL OR product = $4)"
                              " AND (serial > $1 OR ($2::text IS NOT NULL AND serial = $1"
                              "  AND product > $2))"
                              " ORDER BY serial, product LIMIT $3",
                              &p, &res));
        rows = PQntuples(res);
        for (int r = 0; r < rows && !stop; r++) {
            const char *h = kbr_pg_value(res, r, 4);
            kbr_fleet_row row = {.product = kbr_pg_value(res, r, 0),
                                 .serial = kbr_pg_value(res, r, 1),
                                 .current_firmware = kbr_pg_value(res, r, 2),
                                 .batch = kbr_pg_value(res, r, 3),
                                 .history = h != NULL ? strtoll(h, NULL, 10) : 0,
                                 .has_history = h != NULL};
            KBR_ENSURE(row.product != NULL && row.serial != NULL, KBR_ERR_STORE);
            KBR_GUARD(fn(&row, arg, &stop));
        }
        if (rows > 0) {
            free(last_serial);
            free(last_product);
            last_serial = strdup(kbr_pg_value(res, rows - 1, 1));
            last_product = strdup(kbr_pg_value(res, rows - 1, 0));
            KBR_ENSURE(last_serial != NULL && last_product != NULL, KBR_ERR_NOMEM);
        }
        PQclear(res);
        res = NULL;
    }
out:
    PQclear(res);
    free(last_serial);
    free(last_product);
    return err;
}

kbr_err kbr_pg_fleet_size(kbr_store *st, const char *product, int64_t *n)
{
    P;

    kbr_pg_text(&p, product);
    return kbr_pg_int64(PG(st),
                        "SELECT coalesce(sum(count), 0) FROM fleet_firmware"
                        " WHERE $1::text IS NULL OR product = $1",
                        &p, n);
}
