/*
 * sqlite_migrate.c - the schema steps after version 1.  Each runs once, in the
 * transaction that opens the store, on a new store as on one an older broker wrote, and
 * ends by recording its version.  The SQL of each step is in store/sql/; what needs C
 * (reading certificates and public keys) is here, between its two parts.
 *
 * Version 2:
 *  - device_keys: every key (kbr_store_public_key_sha256) that was ever a device's identity,
 *    with that device, for good: a key is one device's, whatever the product, and stays its
 *    own after the device rotates to another (its old certificates are valid until they
 *    expire).  Triggers on devices keep it and refuse, as a constraint, a key another device
 *    holds.
 *  - devices.public_key_sha256: the device's current identity key, shown in View D.
 *  - Devices recorded before get both from their certificates, in issue order: of devices
 *    that share a key (what version 2 refuses) the first provisioned owns it in device_keys,
 *    and each still shows it as its current key, so the clones stay visible.  A certificate
 *    that does not parse gives no key: the store opens either way.
 *  - device_firmware holds each fact (product, serial, version, status, at) once, so an OTA
 *    report sent twice is history once; of the copies an older broker recorded, the first
 *    stays.
 *
 * Version 3 (custody boundaries):
 *  - tokens.parent_jti and tokens.orphan: the token tree.  A token issued under another names
 *    it, so revoking the parent revokes it; an orphan stands alone.  Tokens recorded before
 *    have no parent.
 *  - keys.public_key_sha256, and one registry entry per HSM object: unique by label, by
 *    CKA_ID (when it has one) and by public key, retired keys included (registering the
 *    object again would undo its retirement).  Keys recorded before get the hash from their
 *    public_key_pem; a store in which two entries already name one object does not open,
 *    and the message names them.
 *  - audit_products: the products each audit entry is about (its "products"), which bound
 *    what a reader limited to products sees.  Entries recorded before are about none.
 *  - debug_challenges: a challenge is answered once per device, whatever the key; the
 *    table is rebuilt with that key, keeping every answer.
 *
 * Version 4 (evidence) is SQL alone: store/sql/v4_schema.sql.
 *
 * Version 5 (the token issuer's keys) is SQL alone too: store/sql/v5_issuer.sql, then
 * sqlite.c records the version.  So are version 6 (revocations and CRLs,
 * store/sql/v6_revoke.sql) and version 7 (the audit log's signed notes and the chain of
 * audit keys, store/sql/v7_audit.sql).
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sqlite.h"

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
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int(ins, 5, sqlite3_column_int(row, 4))));
    KBR_GUARD(kbr_sqlite_run(ins));
out:
    sqlite3_reset(ins);
    return err;
}

/* Reads the certificates and writes only the temporary table, so the walk never meets a
 * row it changed. */
static kbr_err collect_keys(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *sel = NULL, *ins = NULL;
    char hex[65];
    bool found;
    int rc;

    /* every device certificate, current or not; the current one is the device's latest */
    rc = sqlite3_prepare_v2(s->db,
                            "SELECT c.id, c.product, c.device_serial, c.pem,"
                            " c.superseded_at IS NULL AND c.id = (SELECT max(id) FROM certificates"
                            "  WHERE owner_kind = 'device' AND product = c.product"
                            "  AND device_serial = c.device_serial AND superseded_at IS NULL)"
                            " FROM certificates c JOIN devices d"
                            "  ON d.product = c.product AND d.serial = c.device_serial"
                            " WHERE c.owner_kind = 'device'",
                            -1, &sel, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    rc = sqlite3_prepare_v2(s->db,
                            "INSERT INTO temp.cert_keys(id, product, serial, key, current)"
                            " VALUES (?1, ?2, ?3, ?4, ?5)",
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

    rc = sqlite3_exec(s->db, kbr_sql_v2_schema, NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    KBR_GUARD(collect_keys(s, path, msg));
    rc = sqlite3_exec(s->db, kbr_sql_v2_assign, NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
out:
    return err;
}

static kbr_err key_hash(const char *pem, char hex[65], bool *found)
{
    kbr_err err = KBR_OK;
    BIO *bio = NULL;
    EVP_PKEY *pub = NULL;

    *found = false;
    if (pem == NULL)
        goto out;
    bio = BIO_new_mem_buf(pem, -1);
    KBR_ENSURE(bio != NULL, KBR_ERR_NOMEM);
    pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    ERR_clear_error();
    if (pub == NULL)
        goto out;
    KBR_GUARD(kbr_store_public_key_sha256(pub, hex));
    *found = true;
out:
    EVP_PKEY_free(pub);
    BIO_free(bio);
    return err;
}

static kbr_err hash_keys(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *sel = NULL, *upd = NULL;
    char hex[65];
    bool found;
    int rc;

    rc = sqlite3_prepare_v2(s->db, "SELECT name, public_key_pem FROM keys", -1, &sel, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    rc = sqlite3_prepare_v2(s->db, "UPDATE keys SET public_key_sha256 = ?2 WHERE name = ?1", -1,
                            &upd, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        KBR_GUARD(key_hash(kbr_sqlite_text(sel, 1), hex, &found));
        if (!found)
            continue;
        sqlite3_reset(upd);
        sqlite3_bind_text(upd, 1, kbr_sqlite_text(sel, 0), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(upd, 2, hex, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(upd);
        KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_fail(s, path, rc, msg));
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_fail(s, path, rc, msg));
out:
    sqlite3_finalize(upd);
    sqlite3_finalize(sel);
    return err;
}

/* Two registry entries that name one HSM object: the store cannot open until one goes. */
static kbr_err name_duplicates(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    sqlite3_stmt *stmt = NULL;
    kbr_err err = KBR_OK;

    if (sqlite3_prepare_v2(s->db,
                           "SELECT a.name, b.name FROM keys a JOIN keys b ON a.name < b.name"
                           " AND (a.hsm_label = b.hsm_label OR (a.hsm_id <> '' AND"
                           " a.hsm_id = b.hsm_id) OR a.public_key_sha256 = b.public_key_sha256)"
                           " LIMIT 1",
                           -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        err = kbr_fail(msg, KBR_ERR_STORE,
                       "store %s: keys \"%s\" and \"%s\" name the same HSM object; a key may be "
                       "registered once",
                       path, kbr_sqlite_text(stmt, 0), kbr_sqlite_text(stmt, 1));
    sqlite3_finalize(stmt);
    return err;
}

kbr_err kbr_sqlite_migrate_v3(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    int rc;

    rc = sqlite3_exec(s->db, kbr_sql_v3_schema, NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    KBR_GUARD(hash_keys(s, path, msg));
    KBR_GUARD(name_duplicates(s, path, msg));
    rc = sqlite3_exec(s->db, kbr_sql_v3_unique, NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
out:
    return err;
}
