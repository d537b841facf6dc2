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
    "  UNION SELECT audit_seq FROM key_deliveries WHERE product = ?1 AND serial = ?2"              \
    "  UNION SELECT k.audit_seq FROM keys k JOIN key_deliveries d ON d.key = k.name"               \
    "   WHERE d.product = ?1 AND d.serial = ?2"                                                    \
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

/* An incident's own entries (its record, its fix, its reports), the builds it names (with
 * their SBOMs) and its fix's builds. */
#define INCIDENT_BASE                                                                              \
    "WITH inc AS (SELECT audit_seq, fix_seq, fixed_version, product FROM incidents"                \
    "  WHERE id = ?1),"                                                                            \
    " base AS (SELECT audit_seq AS seq FROM inc"                                                   \
    "  UNION SELECT fix_seq FROM inc WHERE fix_seq IS NOT NULL"                                    \
    "  UNION SELECT audit_seq FROM incident_reports WHERE incident = ?1"                           \
    "  UNION SELECT audit_seq FROM incident_builds WHERE incident = ?1"                            \
    "  UNION SELECT f.audit_seq FROM firmware f JOIN incident_builds b"                            \
    "   ON b.product = f.product AND b.version = f.version WHERE b.incident = ?1"                  \
    "  UNION SELECT f.audit_seq FROM firmware f, inc WHERE f.version = inc.fixed_version"          \
    "   AND (f.product = inc.product OR f.product IN"                                              \
    "    (SELECT product FROM incident_builds WHERE incident = ?1))),"

/* What the base entries lean on: the keys they name, and the tokens that made them. */
#define LEANS_ON                                                                                   \
    " named AS (SELECT a.key, a.jti FROM audit a JOIN base ON a.seq = base.seq)"                   \
    " SELECT seq FROM base"                                                                        \
    " UNION SELECT audit_seq FROM keys WHERE name IN (SELECT key FROM named)"                      \
    " UNION SELECT audit_seq FROM certificates WHERE owner_kind = 'key'"                           \
    "  AND key_name IN (SELECT key FROM named)"                                                    \
    " UNION SELECT audit_seq FROM tokens WHERE jti IN (SELECT jti FROM named)"                     \
    " ORDER BY 1"

/* The sequence numbers the statement returns, without NULLs, as a new array. */
static kbr_err seq_list(sqlite3_stmt *stmt, json_t **seqs)
{
    kbr_err err = KBR_OK;
    json_t *arr = json_array();
    int rc;

    *seqs = NULL;
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
    return err;
}

kbr_err kbr_sqlite_evidence_seqs(kbr_store *st, const char *product, const char *serial,
                                 json_t **seqs)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *seqs = NULL;
    if (serial != NULL)
        KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_EVIDENCE_DEVICE, DEVICE_BASE LEANS_ON, &stmt));
    else
        KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_EVIDENCE_PRODUCT, PRODUCT_BASE LEANS_ON, &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, product));
    if (serial != NULL)
        KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, serial));
    KBR_GUARD(seq_list(stmt, seqs));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_evidence_incident_seqs(kbr_store *st, const char *id, json_t **seqs)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *seqs = NULL;
    KBR_GUARD(kbr_sqlite_stmt(SQ(st), SQ_EVIDENCE_INCIDENT, INCIDENT_BASE LEANS_ON, &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, id));
    KBR_GUARD(seq_list(stmt, seqs));
out:
    kbr_sqlite_done(stmt);
    return err;
}
