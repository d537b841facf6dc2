/*
 * sqlite_field.c - the SQLite back end's record of devices in the
 * field: answered debug challenges, firmware history and current firmware,
 * and the fleet lookup an OTA report needs.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

kbr_err kbr_sqlite_debug_challenge_insert(kbr_store *st, const kbr_eff_debug *d, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_CHALLENGE_INSERT,
                              "INSERT INTO debug_challenges(key, challenge_sha256, product,"
                              " serial, at, audit_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, d->key));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, d->challenge_sha256));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, d->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, d->serial));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, d->at));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 6, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* The device's set of builds ever run: a new array, empty before its first. */
static kbr_err history_of(kbr_sqlite *s, const char *product, const char *serial, json_t **versions)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    json_t *set = NULL;
    const char *text;
    int rc;

    *versions = NULL;
    KBR_GUARD(kbr_sqlite_stmt(s, SQ_HISTORY_OF,
                              "SELECT h.versions FROM devices d"
                              " LEFT JOIN firmware_histories h ON h.id = d.history"
                              " WHERE d.product = ?1 AND d.serial = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    rc = sqlite3_step(stmt);
    /* The history row names the device, so an unknown one breaks the same rule. */
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_STORE_CONSTRAINT);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    text = kbr_sqlite_text(stmt, 0);
    set = text != NULL ? json_loads(text, 0, NULL) : json_array();
    KBR_ENSURE(json_is_array(set), KBR_ERR_STORE);
    *versions = set;
    set = NULL;
out:
    json_decref(set);
    kbr_sqlite_done(stmt);
    return err;
}

static kbr_err history_create(kbr_sqlite *s, const char *product, const char *text, int64_t *id)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *id = 0;
    KBR_GUARD(kbr_sqlite_stmt(s, SQ_HISTORY_INSERT,
                              "INSERT INTO firmware_histories(product, versions) VALUES (?1, ?2)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, text));
    KBR_GUARD(kbr_sqlite_run(stmt));
    *id = sqlite3_last_insert_rowid(s->db);
    kbr_sqlite_done(stmt);
    KBR_GUARD(kbr_sqlite_stmt(s, SQ_HISTORY_VERSIONS_INSERT,
                              "INSERT INTO firmware_history_versions(product, version, history)"
                              " SELECT ?1, value, ?3 FROM json_each(?2)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, text));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 3, *id)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* The id of the set spelled text, created on its first device. */
static kbr_err history_id(kbr_sqlite *s, const char *product, const char *text, int64_t *id)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *id = 0;
    KBR_GUARD(kbr_sqlite_stmt(s, SQ_HISTORY_FIND,
                              "SELECT id FROM firmware_histories WHERE product = ?1"
                              " AND versions = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, text));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(stmt, 0);
        goto out;
    }
    kbr_sqlite_done(stmt);
    stmt = NULL;
    KBR_GUARD(history_create(s, product, text, id));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* A build the device ran (factory image or install) joins its set, if it was not in it. */
static kbr_err history_add(kbr_sqlite *s, const char *product, const char *serial,
                           const char *version)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    json_t *versions = NULL;
    char *text = NULL;
    int64_t id = 0;

    KBR_GUARD(history_of(s, product, serial, &versions));
    if (kbr_store_history_holds(versions, version))
        goto out;
    KBR_GUARD(kbr_store_history_text(versions, version, &text));
    KBR_GUARD(history_id(s, product, text, &id));
    KBR_GUARD(kbr_sqlite_stmt(s, SQ_DEVICE_HISTORY_SET,
                              "UPDATE devices SET history = ?3 WHERE product = ?1 AND serial = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 3, id)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    free(text);
    json_decref(versions);
    return err;
}

/* The conflict target is the one rule that makes a fact a repeat; any other constraint
 * still fails the insert. */
kbr_err kbr_sqlite_device_firmware_insert(kbr_store *st, const kbr_eff_device_firmware *r,
                                          int64_t seq, bool *added)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *added = false;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_FW_INSERT,
                              "INSERT INTO device_firmware(product, serial, version, status, at,"
                              " campaign, audit_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                              " ON CONFLICT(product, serial, version, status, at) DO NOTHING",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, r->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, r->serial));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, r->version));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, r->status));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, r->at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, r->campaign));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 7, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
    if (sqlite3_changes(SQ(st)->db) == 0)
        goto out;
    if (strcmp(r->status, "failed") != 0)
        KBR_GUARD(history_add(SQ(st), r->product, r->serial, r->version));
    *added = true;
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* Stored times share one format, so text order is time order; a tie goes to the newer report. */
kbr_err kbr_sqlite_device_firmware_current(kbr_store *st, const char *product, const char *serial,
                                           const char *version, const char *at)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_FW_CURRENT,
                              "UPDATE devices SET current_firmware = ?3, current_firmware_at = ?4"
                              " WHERE product = ?1 AND serial = ?2"
                              " AND (current_firmware_at IS NULL OR current_firmware_at <= ?4)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, version));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, at));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* ---- reads ---- */

/* Steps stmt to the end: a new array (caller's) of column 0 of each row as a string. */
static kbr_err string_rows(sqlite3_stmt *stmt, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *arr = NULL;
    const char *text;
    int rc;

    *out = NULL;
    arr = json_array();
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        text = kbr_sqlite_text(stmt, 0);
        KBR_ENSURE(text != NULL, KBR_ERR_STORE);
        KBR_ENSURE(json_array_append_new(arr, json_string(text)) == 0, KBR_ERR_NOMEM);
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    return err;
}

/*
 * One statement for the whole list: json_each walks the serials and the primary key answers
 * each, so a report of ten thousand devices costs one round of index lookups.  GROUP BY keeps
 * one of each serial, ORDER BY min(key) the position of its first mention.
 */
kbr_err kbr_sqlite_devices_known(kbr_store *st, const char *product, const json_t *serials,
                                 json_t **known)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    char *list = NULL;

    *known = NULL;
    list = json_dumps(serials, JSON_COMPACT);
    KBR_ENSURE(list != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICES_KNOWN,
                              "SELECT j.value FROM json_each(?2) AS j WHERE j.type = 'text'"
                              " AND EXISTS (SELECT 1 FROM devices d"
                              "  WHERE d.product = ?1 AND d.serial = j.value)"
                              " GROUP BY j.value ORDER BY min(j.key)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, list));
    KBR_GUARD(string_rows(stmt, known));
out:
    kbr_sqlite_done(stmt);
    free(list);
    return err;
}

kbr_err kbr_sqlite_debug_challenge_used(kbr_store *st, const char *product, const char *serial,
                                        const char *challenge_sha256, bool *used)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *used = false;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_CHALLENGE_USED,
                              "SELECT 1 FROM debug_challenges"
                              " WHERE product = ?1 AND serial = ?2 AND challenge_sha256 = ?3",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, challenge_sha256));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *used = rc == SQLITE_ROW;
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* id breaks the last tie: the results of one report in the order it listed them. */
kbr_err kbr_sqlite_device_firmware(kbr_store *st, const char *product, const char *serial,
                                   json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_FW_LIST,
                              "SELECT version, status, at, campaign, audit_seq"
                              " FROM device_firmware WHERE product = ?1 AND serial = ?2"
                              " ORDER BY at, audit_seq, id",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_firmware_history,
                                 KBR_NCOLS(kbr_row_firmware_history), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}
