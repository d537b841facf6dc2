/*
 * sqlite_exposure.c - the SQLite back end's rows of the exposure view (C):
 * SBOM components, builds, the fleet_firmware counters of the devices that
 * run a build now, the firmware_histories sets and history_firmware counters
 * of the devices that ever ran one, and the walks that page through pending
 * devices.  exposure.c composes them.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

/* The candidates: one index lookup, by name or by package; match.c decides. */
kbr_err kbr_sqlite_exposure_components(kbr_store *st, const char *component, const char *purl_key,
                                       const char *product, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    if (component != NULL)
        KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_COMPONENTS_BY_NAME,
                                  "SELECT product, version, name, cversion, purl FROM components"
                                  " WHERE name = ?1 AND (?2 IS NULL OR product = ?2)"
                                  " ORDER BY product, version, rowid",
                                  &stmt));
    else
        KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_COMPONENTS_BY_PURL,
                                  "SELECT product, version, name, cversion, purl FROM components"
                                  " WHERE purl_key = ?1 AND (?2 IS NULL OR product = ?2)"
                                  " ORDER BY product, version, rowid",
                                  &stmt));
    KBR_ENSURE(component != NULL || purl_key != NULL, KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, component != NULL ? component : purl_key));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, product));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_exposed_component,
                                 KBR_NCOLS(kbr_row_exposed_component), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_build_row(kbr_store *st, const char *product, const char *version, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_BUILD,
                              "SELECT digest, signed_at, key, audit_seq FROM firmware"
                              " WHERE product = ?1 AND version = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    KBR_GUARD(
        kbr_sqlite_object(stmt, kbr_row_exposed_build, KBR_NCOLS(kbr_row_exposed_build), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_fleet_batches(kbr_store *st, const char *product, const char *firmware,
                                 json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_BUILD_BATCHES,
                              "SELECT f.batch, coalesce(b.markets, '[]'), f.count"
                              " FROM fleet_firmware f LEFT JOIN batches b ON b.batch = f.batch"
                              " WHERE f.product = ?1 AND f.firmware = ?2 AND f.count > 0",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, firmware));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_batch_count, KBR_NCOLS(kbr_row_batch_count), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_build_histories(kbr_store *st, const char *product, const char *version,
                                   json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_BUILD_HISTORIES,
                              "SELECT history FROM firmware_history_versions"
                              " WHERE product = ?1 AND version = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, version));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_history, KBR_NCOLS(kbr_row_history), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_history_batches(kbr_store *st, int64_t history, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_HISTORY_BATCHES,
                              "SELECT firmware, batch, count FROM history_firmware_batch"
                              " WHERE history = ?1 ORDER BY firmware, batch",
                              &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, history)));
    KBR_GUARD(
        kbr_sqlite_objects(stmt, kbr_row_history_batch, KBR_NCOLS(kbr_row_history_batch), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_batch_markets(kbr_store *st, const char *batch, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    const char *text;
    int rc;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_BATCH_MARKETS,
                              "SELECT markets FROM batches WHERE batch = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, batch));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    text = rc == SQLITE_ROW ? kbr_sqlite_text(stmt, 0) : NULL;
    *out = text != NULL ? json_loads(text, 0, NULL) : json_array();
    KBR_ENSURE(json_is_array(*out), KBR_ERR_STORE);
out:
    if (err != KBR_OK) {
        json_decref(*out);
        *out = NULL;
    }
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_pending_group(kbr_store *st, int64_t history, const char *firmware,
                                 const char *after, int limit, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_PENDING_GROUP,
                              "SELECT product, serial, current_firmware, batch FROM devices"
                              " WHERE history = ?1 AND current_firmware = ?2 AND serial > ?3"
                              " ORDER BY serial LIMIT ?4",
                              &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, history)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, firmware));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, after));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int(stmt, 4, limit)));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_pending, KBR_NCOLS(kbr_row_pending), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

static kbr_err walk_stmt(kbr_sqlite *s, const char *product, const char *after, sqlite3_stmt **out)
{
    kbr_err err = KBR_OK;

    *out = NULL;
    if (product != NULL) {
        KBR_GUARD(kbr_sqlite_stmt(s, SQ_VIEW_WALK_PRODUCT,
                                  "SELECT product, serial, current_firmware, batch, history"
                                  " FROM devices WHERE product = ?1 AND serial > ?2"
                                  " ORDER BY serial",
                                  out));
        KBR_GUARD(kbr_sqlite_bind_text(*out, 1, product));
        KBR_GUARD(kbr_sqlite_bind_text(*out, 2, after));
    } else {
        KBR_GUARD(kbr_sqlite_stmt(s, SQ_VIEW_WALK_ALL,
                                  "SELECT product, serial, current_firmware, batch, history"
                                  " FROM devices WHERE serial > ?1 ORDER BY serial, product",
                                  out));
        KBR_GUARD(kbr_sqlite_bind_text(*out, 1, after));
    }
out:
    return err;
}

/* Rows straight from the statement: a walk may read a million of them. */
kbr_err kbr_sqlite_fleet_walk(kbr_store *st, const char *product, const char *after,
                              kbr_fleet_fn fn, void *arg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    bool stop = false;
    int rc = SQLITE_DONE;

    KBR_GUARD(walk_stmt(SQ(st), product, after, &stmt));
    while (!stop && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        kbr_fleet_row row = {.product = kbr_sqlite_text(stmt, 0),
                             .serial = kbr_sqlite_text(stmt, 1),
                             .current_firmware = kbr_sqlite_text(stmt, 2),
                             .batch = kbr_sqlite_text(stmt, 3),
                             .history = sqlite3_column_int64(stmt, 4),
                             .has_history = sqlite3_column_type(stmt, 4) != SQLITE_NULL};
        KBR_ENSURE(row.product != NULL && row.serial != NULL, KBR_ERR_STORE);
        KBR_GUARD(fn(&row, arg, &stop));
    }
    KBR_ENSURE(stop || rc == SQLITE_DONE, kbr_sqlite_err(rc));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_fleet_size(kbr_store *st, const char *product, int64_t *n)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *n = 0;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_VIEW_FLEET_SIZE,
                              "SELECT coalesce(sum(count), 0) FROM fleet_firmware"
                              " WHERE ?1 IS NULL OR product = ?1",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    *n = sqlite3_column_int64(stmt, 0);
out:
    kbr_sqlite_done(stmt);
    return err;
}
