/*
 * sqlite_revoke.c - the SQLite back end's device revocations and CRLs (schema version 5,
 * store/sql/v5_revoke.sql): effects written, and what a CRL and View D read.
 */
#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

kbr_err kbr_sqlite_device_revoked(kbr_store *st, const char *product, const char *serial,
                                  bool *revoked)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *revoked = false;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_REVOKED,
                              "SELECT 1 FROM device_revocations WHERE product = ?1 AND serial = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *revoked = rc == SQLITE_ROW;
out:
    kbr_sqlite_done(stmt);
    return err;
}

static kbr_err cert_revoke(kbr_sqlite *s, const kbr_effect_revoked_cert *c, const kbr_eff_revoke *d,
                           int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(s, SQ_CERT_REVOKE,
                              "INSERT INTO certificate_revocations(fingerprint, issuer_key,"
                              " serial_number, revoked_at, reason_code, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, c->fingerprint));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, c->issuer_key));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, c->serial_number));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, d->at));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 5, d->reason_code)));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 6, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_revoke(kbr_store *st, const kbr_eff_revoke *d, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_REVOKE,
                              "INSERT INTO device_revocations(product, serial, revoked_at, reason,"
                              " reason_code, revoked_by, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, d->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, d->serial));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, d->at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, d->reason));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 5, d->reason_code)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, d->revoked_by));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 7, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
    kbr_sqlite_done(stmt);
    stmt = NULL;
    for (size_t i = 0; i < d->ncertificates; i++)
        KBR_GUARD(cert_revoke(SQ(st), &d->certificates[i], d, seq));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_crl_last_number(kbr_store *st, const char *issuer_key, int64_t *last)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *last = 0;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_CRL_LAST,
                              "SELECT coalesce(max(number), 0) FROM crls WHERE issuer_key = ?1",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, issuer_key));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc == SQLITE_DONE ? SQLITE_INTERNAL : rc));
    *last = sqlite3_column_int64(stmt, 0);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_crl_insert(kbr_store *st, const kbr_eff_crl *l, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_CRL_INSERT,
                              "INSERT INTO crls(issuer_key, number, issuer_fingerprint,"
                              " this_update, next_update, entries, sha256, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, l->issuer_key));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 2, l->number)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, l->issuer_fingerprint));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, l->this_update));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, l->next_update));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 6, l->entries)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 7, l->sha256));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 8, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_crl_revoked(kbr_store *st, const char *issuer_key, json_t **rows)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *rows = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_CRL_REVOKED,
                              "SELECT serial_number, fingerprint, revoked_at, reason_code"
                              " FROM certificate_revocations WHERE issuer_key = ?1"
                              " ORDER BY revoked_at, serial_number",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, issuer_key));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_revoked, KBR_NCOLS(kbr_row_revoked), rows));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_revocation(kbr_store *st, const char *product, const char *serial,
                                     json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_REVOCATION,
                              "SELECT revoked_at, reason, reason_code, revoked_by, audit_seq"
                              " FROM device_revocations WHERE product = ?1 AND serial = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_object(stmt, kbr_row_revocation, KBR_NCOLS(kbr_row_revocation), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}
