/*
 * sqlite_deliver.c - keys delivered to devices (schema version 8): each delivery recorded
 * once per device and key, and read back for the device's record and for a provisioning
 * answered again.
 */
#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

/*
 * One statement is the rule: the row goes in only for a device whose identity key is the
 * recipient and a registry key of purpose ota-encryption; the primary key refuses a second
 * delivery of the key to the device, the foreign key a document the store does not have.
 */
kbr_err kbr_sqlite_key_delivery_insert(kbr_store *st, const kbr_eff_deliver *d, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(
        SQ(st), SQ_DELIVERY_INSERT,
        "INSERT INTO key_deliveries(product, serial, key, recipient_public_key_sha256,"
        " cose_sha256, delivered_by, at, audit_seq)"
        " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM devices d JOIN keys k ON k.name = ?3"
        " WHERE d.product = ?1 AND d.serial = ?2 AND d.public_key_sha256 = ?4"
        " AND k.purpose = 'ota-encryption'",
        &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, d->product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, d->serial));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, d->key));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 4, d->recipient_public_key_sha256));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 5, d->cose_sha256));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 6, d->delivered_by));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 7, d->at));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 8, seq)));
    KBR_GUARD(kbr_sqlite_run(stmt));
    KBR_ENSURE(sqlite3_changes(SQ(st)->db) == 1, KBR_ERR_STORE_CONSTRAINT);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_device_deliveries(kbr_store *st, const char *product, const char *serial,
                                     json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_DEVICE_DELIVERIES,
                              "SELECT key, at, recipient_public_key_sha256, cose_sha256,"
                              " delivered_by, audit_seq FROM key_deliveries"
                              " WHERE product = ?1 AND serial = ?2 ORDER BY audit_seq, key",
                              &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_delivery, KBR_NCOLS(kbr_row_delivery), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}
