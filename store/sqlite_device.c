/*
 * sqlite_device.c - the SQLite back end's certificates, production
 * batches, devices and device events: effects written, views read.
 */
#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

/*
 * One WHERE clause for both kinds of owner: "IS" matches the NULL columns of
 * the other kind, and SQLite still uses the owner's index for it.
 */
#define CURRENT_OF_OWNER                                                                           \
    " WHERE owner_kind = ?1 AND key_name IS ?2 AND product IS ?3 AND device_serial IS ?4"          \
    " AND superseded_at IS NULL"

static kbr_err bind_owner(sqlite3_stmt *stmt, const kbr_eff_owner *o)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, o->kind));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, o->key_name));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, o->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, o->serial));
out:
    return err;
}

static const kbr_col_spec fingerprint_col[] = {{"fingerprint", KBR_COL_TEXT}};

/* The owner's current fingerprints, in issue order, as a new array of strings. */
static kbr_err current_fingerprints(kbr_sqlite *s, const kbr_eff_owner *owner, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    json_t *rows = NULL, *list = NULL, *row;
    size_t i;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(
        s, SQ_CERT_CURRENT, "SELECT fingerprint FROM certificates" CURRENT_OF_OWNER " ORDER BY id",
        &stmt));
    KBR_GUARD(bind_owner(stmt, owner));
    KBR_GUARD(kbr_sqlite_objects(stmt, fingerprint_col, KBR_NCOLS(fingerprint_col), &rows));
    list = json_array();
    KBR_ENSURE(list != NULL, KBR_ERR_NOMEM);
    json_array_foreach(rows, i, row)
    {
        KBR_ENSURE(json_array_append(list, json_object_get(row, "fingerprint")) == 0,
                   KBR_ERR_NOMEM);
    }
    *out = list;
    list = NULL;
out:
    kbr_sqlite_done(stmt);
    json_decref(list);
    json_decref(rows);
    return err;
}

kbr_err kbr_sqlite_cert_supersede(kbr_store *st, const kbr_eff_owner *owner, const char *at,
                                  json_t **fingerprints)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    json_t *list = NULL;

    *fingerprints = NULL;
    KBR_GUARD(current_fingerprints(SQ(st), owner, &list));
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_CERT_SUPERSEDE,
                              "UPDATE certificates SET superseded_at = ?5" CURRENT_OF_OWNER,
                              &stmt));
    KBR_GUARD(bind_owner(stmt, owner));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, at));
    KBR_GUARD(kbr_sqlite_run(stmt));
    *fingerprints = list;
    list = NULL;
out:
    kbr_sqlite_done(stmt);
    json_decref(list);
    return err;
}

kbr_err kbr_sqlite_cert_insert(kbr_store *st, const kbr_eff_cert *c, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_CERT_INSERT,
                              "INSERT INTO certificates(owner_kind, key_name, product,"
                              " device_serial, serial_number, fingerprint, pem, chain_pem,"
                              " not_after, issued_at, issuer_key, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                              &stmt));
    KBR_GUARD(bind_owner(stmt, &c->owner));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, c->serial_number));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, c->fingerprint));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 7, c->pem));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 8, c->chain_pem));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 9, c->not_after));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 10, c->issued_at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 11, c->issuer_key));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 12, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_batch_create(kbr_store *st, const kbr_eff_batch *b, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_BATCH_INSERT,
                              "INSERT INTO batches(batch, product, factory, quantity, markets,"
                              " created_at, created_by, audit_seq)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, b->batch));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, b->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, b->factory));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 4, b->quantity)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, b->markets_json));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, b->created_at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 7, b->created_by));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 8, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* Check and count in one statement: no row changes unless every condition holds. */
kbr_err kbr_sqlite_batch_claim(kbr_store *st, const char *batch, const char *product,
                               const char *factory)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_BATCH_CLAIM,
                              "UPDATE batches SET provisioned = provisioned + 1"
                              " WHERE batch = ?1 AND product = ?2 AND factory = ?3"
                              " AND provisioned < quantity",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, batch));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, factory));
    KBR_GUARD(kbr_sqlite_run(stmt));
    KBR_ENSURE(sqlite3_changes(SQ(st)->db) == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    kbr_sqlite_done(stmt);
    return err;
}

/*
 * The factory image is the device's current firmware until an OTA install replaces it.  The
 * unique index on public_key_sha256 refuses a key another device has, however the requests
 * raced before they got here.
 */
kbr_err kbr_sqlite_device_insert(kbr_store *st, const kbr_eff_device *d, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_INSERT,
                              "INSERT INTO devices(product, serial, batch, factory,"
                              " firmware_version, csr_sha256, provisioned_at, current_firmware,"
                              " current_firmware_at, audit_seq, public_key_sha256)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5,"
                              " CASE WHEN ?5 IS NULL THEN NULL ELSE ?7 END, ?8, ?9)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, d->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, d->serial));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, d->batch));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, d->factory));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, d->firmware_version));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, d->csr_sha256));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 7, d->at));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 8, seq)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 9, d->public_key_sha256));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_key_set(kbr_store *st, const char *product, const char *serial,
                                  const char *public_key_sha256)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_KEY_SET,
                              "UPDATE devices SET public_key_sha256 = ?3"
                              " WHERE product = ?1 AND serial = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, public_key_sha256));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_exists(kbr_store *st, const char *product, const char *serial,
                                 bool *exists)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *exists = false;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_EXISTS,
                              "SELECT 1 FROM devices WHERE product = ?1 AND serial = ?2", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *exists = rc == SQLITE_ROW;
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_event_insert(kbr_store *st, const char *product, const char *serial,
                                       const char *kind, const char *at, const char *detail_json,
                                       int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_EVENT_INSERT,
                              "INSERT INTO device_events(product, serial, kind, at, detail,"
                              " audit_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, kind));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, at));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, detail_json));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 6, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* ---- reads ---- */

#define BATCH_SELECT                                                                               \
    "SELECT batch, product, factory, quantity, markets, created_at, created_by, provisioned"       \
    " FROM batches"

kbr_err kbr_sqlite_batch_get(kbr_store *st, const char *batch, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_BATCH_GET, BATCH_SELECT " WHERE batch = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, batch));
    KBR_GUARD(kbr_sqlite_object(stmt, kbr_row_batch, KBR_NCOLS(kbr_row_batch), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_batch_list(kbr_store *st, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_BATCH_LIST, BATCH_SELECT " ORDER BY batch", &stmt));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_batch, KBR_NCOLS(kbr_row_batch), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_certificates(kbr_store *st, const char *product, const char *serial,
                                       json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(
        kbr_sqlite_stmt(SQ(st), SQ_DEVICE_CERTS,
                        "SELECT c.serial_number, c.fingerprint, c.not_after, c.issued_at,"
                        " c.superseded_at, c.issuer_key, c.pem, c.chain_pem, c.audit_seq,"
                        " r.revoked_at, r.reason_code FROM certificates c"
                        " LEFT JOIN certificate_revocations r ON r.fingerprint = c.fingerprint"
                        " WHERE c.owner_kind = 'device' AND c.product = ?1"
                        " AND c.device_serial = ?2 ORDER BY c.id",
                        &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_device_cert, KBR_NCOLS(kbr_row_device_cert), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_get(kbr_store *st, const char *product, const char *serial, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_GET,
                              "SELECT product, serial, batch, factory, firmware_version,"
                              " csr_sha256, public_key_sha256, provisioned_at, audit_seq,"
                              " current_firmware, current_firmware_at FROM devices"
                              " WHERE product = ?1 AND serial = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_object(stmt, kbr_row_device, KBR_NCOLS(kbr_row_device), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_find(kbr_store *st, const char *serial, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_FIND,
                              "SELECT product, serial, batch, factory FROM devices"
                              " WHERE serial = ?1 ORDER BY product",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, serial));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_found, KBR_NCOLS(kbr_row_found), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_by_key(kbr_store *st, const char *public_key_sha256, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_BY_KEY,
                              "SELECT product, serial FROM device_keys WHERE key = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, public_key_sha256));
    KBR_GUARD(kbr_sqlite_object(stmt, kbr_row_identity, KBR_NCOLS(kbr_row_identity), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_events(kbr_store *st, const char *product, const char *serial,
                                 json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_EVENT_LIST,
                              "SELECT kind, at, detail, audit_seq FROM device_events"
                              " WHERE product = ?1 AND serial = ?2 ORDER BY id",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_event, KBR_NCOLS(kbr_row_event), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}
