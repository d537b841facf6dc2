/*
 * store_sqlite_migrate.c - the schema steps after version 1.  Each runs once, in the
 * transaction that opens the store, on a new store as on one an older broker wrote, and
 * ends by recording its version.
 *
 * Version 2:
 *  - devices.public_key_sha256: the device's identity key (kbr_store_public_key_sha256),
 *    unique where known, so one key pair is one device whatever the product.  Devices
 *    recorded before get it from their current certificate.  Where several of them share a
 *    key (what version 2 refuses), the first provisioned keeps it and the others stay NULL,
 *    as does a device whose certificate does not parse: the store opens either way.
 *  - device_firmware holds each fact (product, serial, version, status, at) once, so an OTA
 *    report sent twice is history once; of the copies an older broker recorded, the first
 *    stays.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "store_sqlite.h"

static const char v2_schema_sql[] =
    "ALTER TABLE devices ADD COLUMN public_key_sha256 TEXT;"
    "CREATE UNIQUE INDEX devices_public_key ON devices(public_key_sha256)"
    " WHERE public_key_sha256 IS NOT NULL;"
    "DELETE FROM device_firmware WHERE id NOT IN (SELECT min(id) FROM device_firmware"
    " GROUP BY product, serial, version, status, at);"
    "CREATE UNIQUE INDEX device_firmware_fact"
    " ON device_firmware(product, serial, version, status, at);"
    "DROP TABLE IF EXISTS temp.device_keys;"
    "CREATE TEMP TABLE device_keys(seq INTEGER NOT NULL, product TEXT NOT NULL,"
    " serial TEXT NOT NULL, key TEXT NOT NULL);";

/* The keys read from the certificates go in together, the earliest device of each key first:
 * a device's audit_seq is the entry that provisioned it. */
static const char v2_assign_sql[] =
    "CREATE INDEX temp.device_keys_key ON device_keys(key, seq);"
    "DELETE FROM temp.device_keys WHERE EXISTS (SELECT 1 FROM temp.device_keys o"
    " WHERE o.key = device_keys.key AND (o.seq < device_keys.seq"
    " OR (o.seq = device_keys.seq AND o.rowid < device_keys.rowid)));"
    "UPDATE devices SET public_key_sha256 = k.key FROM temp.device_keys k"
    " WHERE devices.product = k.product AND devices.serial = k.serial;"
    "DROP TABLE temp.device_keys;"
    "UPDATE meta SET schema_version = 2;";

/* *found is false for a PEM that holds no certificate or key OpenSSL reads. */
static kbr_err cert_key(const char *pem, char hex[65], bool *found)
{
    kbr_err err = KBR_OK;
    BIO *bio = NULL;
    X509 *x = NULL;

    *found = false;
    bio = BIO_new_mem_buf(pem, -1);
    KBR_ENSURE(bio != NULL, KBR_ERR_NOMEM);
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    *found = x != NULL && kbr_store_spki_sha256(X509_get_X509_PUBKEY(x), hex) == KBR_OK;
    ERR_clear_error();
out:
    X509_free(x);
    BIO_free(bio);
    return err;
}

static kbr_err keep_key(sqlite3_stmt *ins, sqlite3_stmt *row, const char *hex)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(ins, 1, sqlite3_column_int64(row, 0))));
    KBR_GUARD(kbr_sqlite_bind_text(ins, 2, kbr_sqlite_text(row, 1)));
    KBR_GUARD(kbr_sqlite_bind_text(ins, 3, kbr_sqlite_text(row, 2)));
    KBR_GUARD(kbr_sqlite_bind_text(ins, 4, hex));
    KBR_GUARD(kbr_sqlite_run(ins));
out:
    sqlite3_reset(ins);
    return err;
}

/* Reads devices and certificates and writes only the temporary table, so the walk never
 * meets a row it changed. */
static kbr_err collect_keys(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *sel = NULL, *ins = NULL;
    char hex[65];
    bool found;
    int rc;

    rc = sqlite3_prepare_v2(s->db,
                            "SELECT d.audit_seq, d.product, d.serial, c.pem FROM devices d"
                            " JOIN certificates c ON c.id = (SELECT max(id) FROM certificates"
                            "  WHERE owner_kind = 'device' AND product = d.product"
                            "  AND device_serial = d.serial AND superseded_at IS NULL)",
                            -1, &sel, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    rc = sqlite3_prepare_v2(s->db,
                            "INSERT INTO temp.device_keys(seq, product, serial, key)"
                            " VALUES (?1, ?2, ?3, ?4)",
                            -1, &ins, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        KBR_GUARD(cert_key(kbr_sqlite_text(sel, 3), hex, &found));
        KBR_ENSURE(!found || keep_key(ins, sel, hex) == KBR_OK,
                   kbr_sqlite_fail(s, path, sqlite3_extended_errcode(s->db), msg));
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_fail(s, path, rc, msg));
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(sel);
    return err;
}

kbr_err kbr_sqlite_migrate_v2(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    int rc;

    rc = sqlite3_exec(s->db, v2_schema_sql, NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    KBR_GUARD(collect_keys(s, path, msg));
    rc = sqlite3_exec(s->db, v2_assign_sql, NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
out:
    return err;
}
