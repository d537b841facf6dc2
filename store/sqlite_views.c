/*
 * sqlite_views.c - the SQLite back end's snapshots and the rows of the
 * product (A) and key custody (B) views; views.c composes them.  Each query
 * reads the tables the schema's triggers keep (key_relations, token_keys,
 * token_usage, key_operations, device_cert_expiry) and indexes, never a scan
 * of devices or the audit log.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

/* A savepoint outside a transaction opens a deferred one: its reads share one snapshot. */
kbr_err kbr_sqlite_snapshot_begin(kbr_store *st, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_SNAPSHOT_BEGIN, "SAVEPOINT kbr_view", &stmt));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    if (err != KBR_OK)
        kbr_fail(msg, err, "store %s: a snapshot to read could not begin: %s",
                 sqlite3_db_filename(SQ(st)->db, "main"), sqlite3_errmsg(SQ(st)->db));
    return err;
}

void kbr_sqlite_snapshot_end(kbr_store *st)
{
    sqlite3_stmt *stmt = NULL;
    kbr_err ended = kbr_sqlite_stmt(SQ(st), SQ_SNAPSHOT_END, "RELEASE kbr_view", &stmt);

    /* Nothing was written, so releasing fails only for a begin that never happened. */
    if (ended == KBR_OK)
        ended = kbr_sqlite_run(stmt);
    kbr_sqlite_done(stmt);
    (void)ended;
}

#define TOKENS_REACHING                                                                            \
    " t.jti IN (SELECT jti FROM token_keys WHERE pattern IN (SELECT value FROM json_each(?1)))"

/*
 * A token whose scope names products reaches a product's key only for those products: a
 * token of another product that shares the key is not one of this product's holders.
 */
#define TOKENS_FOR_PRODUCT                                                                         \
    " (json_type(t.scope, '$.products') IS NULL OR EXISTS (SELECT 1 FROM"                          \
    "  json_each(t.scope, '$.products') p WHERE kbr_name_matches(p.value, ?3)))"

kbr_err kbr_sqlite_live_tokens(kbr_store *st, const char *key, const char *product, const char *now,
                               json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    char *patterns = NULL;

    *out = NULL;
    KBR_GUARD(kbr_name_patterns_reaching(key, &patterns));
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_LIVE_TOKENS,
                              "SELECT t.jti, t.sub, t.expires_at, coalesce(u.uses, 0),"
                              " json_extract(t.scope, '$.max_uses')"
                              " FROM tokens t LEFT JOIN token_usage u ON u.jti = t.jti"
                              " WHERE" TOKENS_REACHING
                              " AND t.revoked_at IS NULL AND t.expires_at > ?2"
                              " AND" TOKENS_FOR_PRODUCT " ORDER BY t.expires_at, t.jti",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, patterns));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, now));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, product));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_live_token, KBR_NCOLS(kbr_row_live_token), out));
out:
    kbr_sqlite_done(stmt);
    free(patterns);
    return err;
}

/* ---- View A ---- */

/*
 * The keys the product depends on and why: key_relations, and the issuers of those keys'
 * current certificates, transitively (UNION ends a cycle of issuers).
 */
kbr_err kbr_sqlite_product_relations(kbr_store *st, const char *product, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(
        SQ(st), SQ_VIEW_PRODUCT_KEYS,
        "WITH RECURSIVE dep(key, role) AS ("
        " SELECT key, role FROM key_relations WHERE product = ?1"
        " UNION SELECT c.issuer_key, 'issuer' FROM dep JOIN certificates c"
        "  ON c.owner_kind = 'key' AND c.key_name = dep.key AND c.superseded_at IS NULL"
        "  WHERE c.issuer_key IS NOT NULL)"
        " SELECT key, role FROM dep ORDER BY key, role",
        &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_relation, KBR_NCOLS(kbr_row_relation), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_product_known(kbr_store *st, const char *product, bool *known)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *known = false;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_PRODUCT_KNOWN,
                              "SELECT EXISTS (SELECT 1 FROM batches WHERE product = ?1)"
                              " OR EXISTS (SELECT 1 FROM devices WHERE product = ?1)"
                              " OR EXISTS (SELECT 1 FROM products WHERE product = ?1)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    *known = sqlite3_column_int(stmt, 0) != 0;
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* From the per-day counters: a few thousand rows at most. */
kbr_err kbr_sqlite_cert_months(kbr_store *st, const char *product, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_CERT_MONTHS,
                              "SELECT substr(day, 1, 7), sum(count) FROM device_cert_expiry"
                              " WHERE product = ?1 GROUP BY 1 HAVING sum(count) > 0 ORDER BY 1",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_month, KBR_NCOLS(kbr_row_month), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* Whole days before until's day from the counters, until's own day from the partial index. */
static kbr_err expiring_count(kbr_sqlite *s, const char *product, const char *until, int64_t *count)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    char day[11];
    int rc;

    *count = 0;
    memcpy(day, until, 10);
    day[10] = '\0';
    KBR_GUARD(kbr_sqlite_stmt(
        s, SQ_VIEW_CERT_EXPIRING_COUNT,
        "SELECT coalesce((SELECT sum(count) FROM device_cert_expiry"
        "  WHERE product = ?1 AND day < ?2), 0)"
        " + (SELECT count(*) FROM certificates WHERE owner_kind = 'device'"
        "  AND superseded_at IS NULL AND product = ?1 AND not_after >= ?2 AND not_after <= ?3"
        "  AND NOT EXISTS (SELECT 1 FROM certificate_revocations r"
        "  WHERE r.fingerprint = certificates.fingerprint))",
        &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, day));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, until));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    *count = sqlite3_column_int64(stmt, 0);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_expiring_devices(kbr_store *st, const char *product, const char *until,
                                    int limit, int64_t *count, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(expiring_count(SQ(st), product, until, count));
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_CERT_EXPIRING_FIRST,
                              "SELECT product, device_serial, serial_number, fingerprint,"
                              " not_after FROM certificates WHERE owner_kind = 'device'"
                              " AND superseded_at IS NULL AND product = ?1 AND not_after <= ?2"
                              " AND NOT EXISTS (SELECT 1 FROM certificate_revocations r"
                              " WHERE r.fingerprint = certificates.fingerprint)"
                              " ORDER BY not_after, id LIMIT ?3",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, until));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int(stmt, 3, limit)));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_expiring, KBR_NCOLS(kbr_row_expiring), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* ---- View B ---- */

kbr_err kbr_sqlite_key_tokens(kbr_store *st, const char *key, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    char *patterns = NULL;

    *out = NULL;
    KBR_GUARD(kbr_name_patterns_reaching(key, &patterns));
    KBR_GUARD(kbr_sqlite_stmt(
        SQ(st), SQ_VIEW_KEY_TOKENS,
        KBR_SQLITE_TOKEN_SELECT " WHERE" TOKENS_REACHING " ORDER BY t.issued_at, t.jti", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, patterns));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_token, KBR_NCOLS(kbr_row_token), out));
out:
    kbr_sqlite_done(stmt);
    free(patterns);
    return err;
}

kbr_err kbr_sqlite_key_operations(kbr_store *st, const char *key, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_KEY_OPERATIONS,
                              "SELECT nullif(sub, ''), op, outcome, count, last_at, last_seq"
                              " FROM key_operations WHERE key = ?1 ORDER BY sub, op, outcome",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, key));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_operation, KBR_NCOLS(kbr_row_operation), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}
