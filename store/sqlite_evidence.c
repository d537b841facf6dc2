/*
 * sqlite_evidence.c - which audit entries stand behind the facts about a subject: every row
 * the ledger keeps about it names the entry that recorded it (audit_seq), and the entries
 * those rows depend on are added: the batch (its markets), the builds it ran (their SBOMs),
 * the keys its entries name (their registration and certificates, so a device certificate's
 * chain is covered) and the tokens that made its entries (their scope).
 */
#include "sqlite.h"

#define SQ(st) ((kbr_sqlite *)(st))

/* The entries about a device, then what they lean on. */
#define DEVICE_BASE                                                                                \
    "WITH dev AS (SELECT batch, firmware_version, audit_seq FROM devices"                          \
    "  WHERE product = ?1 AND serial = ?2),"                                                       \
    " ran AS (SELECT version FROM device_firmware WHERE product = ?1 AND serial = ?2"              \
    "  UNION SELECT firmware_version FROM dev WHERE firmware_version IS NOT NULL),"                \
    " base AS (SELECT audit_seq AS seq FROM dev"                                                   \
    "  UNION SELECT audit_seq FROM certificates WHERE owner_kind = 'device' AND product = ?1"      \
    "   AND device_serial = ?2"                                                                    \
    "  UNION SELECT audit_seq FROM device_events WHERE product = ?1 AND serial = ?2"               \
    "  UNION SELECT audit_seq FROM device_firmware WHERE product = ?1 AND serial = ?2"             \
    "  UNION SELECT audit_seq FROM debug_challenges WHERE product = ?1 AND serial = ?2"            \
    "  UNION SELECT b.audit_seq FROM batches b JOIN dev ON b.batch = dev.batch"                    \
    "  UNION SELECT audit_seq FROM firmware WHERE product = ?1"                                    \
    "   AND version IN (SELECT version FROM ran)"                                                  \
    "  UNION SELECT audit_seq FROM certificates WHERE owner_kind = 'key' AND key_name IN"          \
    "   (SELECT issuer_key FROM certificates WHERE owner_kind = 'device' AND product = ?1"         \
    "    AND device_serial = ?2)),"

/* The keys of a product: registered for it, or that signed for it. */
#define PRODUCT_BASE                                                                               \
    "WITH pk AS (SELECT DISTINCT key FROM key_relations WHERE product = ?1),"                      \
    " base AS (SELECT audit_seq AS seq FROM batches WHERE product = ?1"                            \
    "  UNION SELECT audit_seq FROM firmware WHERE product = ?1"                                    \
    "  UNION SELECT audit_seq FROM keys WHERE name IN (SELECT key FROM pk)"                        \
    "  UNION SELECT audit_seq FROM certificates WHERE owner_kind = 'key'"                          \
    "   AND key_name IN (SELECT key FROM pk)"                                                      \
    "  UNION SELECT seq FROM audit WHERE key IN (SELECT key FROM pk) AND op = 'key.retire'"        \
    "   AND outcome = 'ok'),"

/* What the base entries lean on: the keys they name, and the tokens that made them. */
#define LEANS_ON                                                                                   \
    " named AS (SELECT a.key, a.jti FROM audit a JOIN base ON a.seq = base.seq)"                   \
    " SELECT seq FROM base"                                                                        \
    " UNION SELECT audit_seq FROM keys WHERE name IN (SELECT key FROM named)"                      \
    " UNION SELECT audit_seq FROM certificates WHERE owner_kind = 'key'"                           \
    "  AND key_name IN (SELECT key FROM named)"                                                    \
    " UNION SELECT audit_seq FROM tokens WHERE jti IN (SELECT jti FROM named)"                     \
    " ORDER BY 1"

kbr_err kbr_sqlite_evidence_seqs(kbr_store *st, const char *product, const char *serial,
                                 json_t **seqs)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    json_t *arr = NULL;
    int rc;

    *seqs = NULL;
    if (serial != NULL)
        KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_EVIDENCE_DEVICE, DEVICE_BASE LEANS_ON, &stmt));
    else
        KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_EVIDENCE_PRODUCT, PRODUCT_BASE LEANS_ON, &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    if (serial != NULL)
        KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    arr = json_array();
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        if (sqlite3_column_type(stmt, 0) == SQLITE_INTEGER)
            KBR_ENSURE(json_array_append_new(arr, json_integer(sqlite3_column_int64(stmt, 0))) == 0,
                       KBR_ERR_NOMEM);
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *seqs = arr;
    arr = NULL;
out:
    json_decref(arr);
    kbr_sqlite_done(stmt);
    return err;
}
