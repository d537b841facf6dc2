/*
 * sqlite_cra.c - the SQLite back end's record of the Cyber Resilience Act: products' support
 * periods, and incidents with their builds, their fleet day by day (incident_fleet, kept by
 * the devices_incident_move trigger of store/sql/v9_cra.sql) and their reports.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

kbr_err kbr_sqlite_product_get(kbr_store *st, const char *product, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_PRODUCT_GET,
                              "SELECT product, placed_on_market, support_until, created_at,"
                              " created_by, updated_at, audit_seq FROM products WHERE product = ?1",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_object(stmt, kbr_row_product, KBR_NCOLS(kbr_row_product), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_product_put(kbr_store *st, const kbr_fx_product_register *p, bool exists,
                               int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    if (exists)
        KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_PRODUCT_UPDATE,
                                  "UPDATE products SET support_until = ?3, updated_at = ?4,"
                                  " audit_seq = ?6 WHERE product = ?1 AND placed_on_market = ?2",
                                  &stmt));
    else
        KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_PRODUCT_INSERT,
                                  "INSERT INTO products(product, placed_on_market, support_until,"
                                  " created_at, created_by, audit_seq, first_seq)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                                  &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, p->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, p->placed_on_market));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, p->support_until));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, p->at));
    if (!exists)
        KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, p->by));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 6, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
    KBR_ENSURE(sqlite3_changes(SQ(st)->db) == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_incident_insert(kbr_store *st, const kbr_fx_incident_create *i, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(
        SQ(st), SQ_INCIDENT_INSERT,
        "INSERT INTO incidents(id, title, product, component, query, aware_at,"
        " actively_exploited, severity, cve, created_at, created_by, start_day, exposure,"
        " audit_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, substr(?10, 1, 10),"
        " ?12, ?13)",
        &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, i->id));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, i->title));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, i->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, i->component));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, i->query_json));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, i->aware_at));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int(stmt, 7, i->actively_exploited)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 8, i->severity));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 9, i->cve));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 10, i->created_at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 11, i->created_by));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 12, i->exposure_json));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 13, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_incident_build_insert(kbr_store *st, const char *incident, const char *product,
                                         const char *version, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_INCIDENT_BUILD_INSERT,
                              "INSERT INTO incident_builds(product, version, incident, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, incident));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 4, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* The same count View C makes (history_firmware_batch of the sets holding a build). */
kbr_err kbr_sqlite_incident_fleet_load(kbr_store *st, const char *incident, const char *day)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(
        SQ(st), SQ_INCIDENT_FLEET_LOAD,
        "INSERT INTO incident_fleet(incident, day, batch, firmware, delta)"
        " SELECT ?1, ?2, h.batch, h.firmware, sum(h.count) FROM history_firmware_batch h"
        " WHERE h.history IN (SELECT v.history FROM incident_builds b"
        "  JOIN firmware_history_versions v ON v.product = b.product AND v.version = b.version"
        "  WHERE b.incident = ?1)"
        " GROUP BY h.batch, h.firmware",
        &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, incident));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, day));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

#define INCIDENT_SELECT                                                                            \
    "SELECT id, title, product, component, query, aware_at, actively_exploited, severity, cve,"    \
    " created_at, created_by, exposure, fixed_version, fix_available_at, fix_recorded_at,"         \
    " fix_seq, audit_seq FROM incidents"

kbr_err kbr_sqlite_incident_get(kbr_store *st, const char *id, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_INCIDENT_GET, INCIDENT_SELECT " WHERE id = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, id));
    KBR_GUARD(kbr_sqlite_object(stmt, kbr_row_incident, KBR_NCOLS(kbr_row_incident), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_incident_list(kbr_store *st, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_INCIDENT_LIST, INCIDENT_SELECT " ORDER BY created_at, id",
                              &stmt));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_incident, KBR_NCOLS(kbr_row_incident), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_incident_queries(kbr_store *st, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_INCIDENT_QUERIES,
                              "SELECT id, product, query FROM incidents ORDER BY id", &stmt));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_query, KBR_NCOLS(kbr_row_query), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_incident_builds(kbr_store *st, const char *id, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_INCIDENT_BUILDS,
                              "SELECT product, version, audit_seq FROM incident_builds"
                              " WHERE incident = ?1 ORDER BY product, version",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, id));
    KBR_GUARD(
        kbr_sqlite_objects(stmt, kbr_row_incident_build, KBR_NCOLS(kbr_row_incident_build), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_incident_fix(kbr_store *st, const kbr_fx_incident_fix *f, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_INCIDENT_FIX,
                              "UPDATE incidents SET fixed_version = ?2, fix_available_at = ?3,"
                              " fix_recorded_at = ?4, fix_seq = ?5"
                              " WHERE id = ?1 AND fixed_version IS NULL",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, f->id));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, f->fixed_version));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, f->available_at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, f->at));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 5, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
    KBR_ENSURE(sqlite3_changes(SQ(st)->db) == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_incident_report_insert(kbr_store *st, const kbr_fx_incident_report *r,
                                          int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_INCIDENT_REPORT_INSERT,
                              "INSERT INTO incident_reports(incident, stage, sha256, at, by,"
                              " audit_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, r->id));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, r->stage));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, r->sha256));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, r->at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, r->by));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 6, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_incident_reports(kbr_store *st, const char *id, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_INCIDENT_REPORTS,
                              "SELECT stage, sha256, at, by, audit_seq FROM incident_reports"
                              " WHERE incident = ?1 ORDER BY id",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, id));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_report, KBR_NCOLS(kbr_row_report), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_incident_series(kbr_store *st, const char *id, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_INCIDENT_SERIES,
                              "SELECT day, batch, firmware, delta FROM incident_fleet"
                              " WHERE incident = ?1 AND delta <> 0 ORDER BY day",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, id));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_series, KBR_NCOLS(kbr_row_series), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_firmware_version_exists(kbr_store *st, const char *version, bool *exists)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *exists = false;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_FIRMWARE_VERSION_EXISTS,
                              "SELECT 1 FROM firmware WHERE version = ?1 LIMIT 1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, version));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *exists = rc == SQLITE_ROW;
out:
    kbr_sqlite_done(stmt);
    return err;
}
