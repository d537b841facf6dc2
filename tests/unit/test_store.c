/* test_store.c - the SQLite store: open, schema, effects, ledger reads, audit rows. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "entry.h"
#include "kbr_store.h"
#include "tmpdir.h"

typedef kbt_store_dir fixture;

static int setup(void **state)
{
    return kbt_store_dir_setup(state, "kbr-store", "ledger.db");
}

static int teardown(void **state)
{
    return kbt_store_dir_teardown(state);
}

static kbr_store *open_ok(const fixture *f)
{
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_OK);
    assert_non_null(st);
    return st;
}

static json_t *effects_of(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);

    if (v == NULL)
        fail_msg("bad test JSON at %d: %s", jerr.position, jerr.text);
    return v;
}

/* Applies effects (consumed) as the writer does: in a transaction with its audit row. */
static kbr_err apply_json(kbr_store *st, json_t *effects, int64_t seq)
{
    kbr_err err;

    assert_int_equal(kbr_store_begin(st), KBR_OK);
    err = kbr_store_apply_effects(st, effects, seq);
    assert_int_equal(
        kbt_entry_insert(st, seq,
                         &(kbt_entry){.op = "test", .effects = err == KBR_OK ? effects : NULL}),
        KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    json_decref(effects);
    return err;
}

static kbr_err apply(kbr_store *st, const char *effects_json, int64_t seq)
{
    return apply_json(st, effects_of(effects_json), seq);
}

#define KEY_A                                                                                      \
    "[{\"type\": \"key.create\", \"name\": \"fw-a\", \"purpose\": \"firmware-signing\","           \
    " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\", \"lock\"], \"owner\": \"team\","     \
    " \"hsm_label\": \"fw-a\", \"hsm_id\": \"0102\", \"public_key_pem\": \"PEM\","                 \
    " \"created_at\": \"2026-03-01T10:00:00+00:00\"}]"

static const char *const tables[] = {"meta",
                                     "audit",
                                     "keys",
                                     "tokens",
                                     "firmware",
                                     "components",
                                     "certificates",
                                     "batches",
                                     "devices",
                                     "device_events",
                                     "checkpoints",
                                     "device_firmware",
                                     "debug_challenges",
                                     "issuer_keys",
                                     "device_revocations",
                                     "certificate_revocations",
                                     "crls",
                                     "history_firmware_batch",
                                     "products",
                                     "incidents",
                                     "incident_builds",
                                     "incident_fleet",
                                     "incident_reports"};

static void test_open_creates_schema(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t seq = -1;
    char hash[65];

    if (kbt_pg())
        skip(); /* SQLite stores: their file and the steps from version 1 */

    assert_int_equal(kbr_store_audit_tail(st, &seq, hash), KBR_OK);
    assert_int_equal(seq, 0);
    assert_string_equal(hash, "0000000000000000000000000000000000000000000000000000000000000000");
    kbr_store_close(st);

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        assert_int_equal(sqlite3_prepare_v2(db,
                                            "SELECT 1 FROM sqlite_master WHERE name = ?1"
                                            " AND type = 'table'",
                                            -1, &stmt, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(stmt, 1, tables[i], -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_ROW)
            fail_msg("table %s missing", tables[i]);
        sqlite3_finalize(stmt);
    }
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT schema_version FROM meta", -1, &stmt, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(stmt, 0), 9);
    assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
    sqlite3_finalize(stmt);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "wal");
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

static void test_reopen_keeps_data(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *key = NULL;
    int64_t seq = 0;
    char hash[65];

    assert_int_equal(apply(st, KEY_A, 1), KBR_OK);
    kbr_store_close(st);

    st = open_ok(f);
    assert_int_equal(kbr_store_audit_tail(st, &seq, hash), KBR_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(kbr_store_key_get(st, "fw-a", &key), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(key, "purpose")), "firmware-signing");
    assert_string_equal(json_string_value(json_object_get(key, "state")), "active");
    /* Times are normalized to the one stored form. */
    assert_string_equal(json_string_value(json_object_get(key, "created_at")),
                        "2026-03-01T10:00:00Z");
    assert_int_equal(json_array_size(json_object_get(key, "products")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(key, "products"), 1)),
                        "lock");
    assert_true(json_is_null(json_object_get(key, "certificate")));
    assert_true(json_is_null(json_object_get(key, "retired_at")));
    assert_string_equal(json_string_value(json_object_get(key, "hsm_id")), "0102");
    json_decref(key);
    kbr_store_close(st);
}

static void test_newer_schema_refused(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    kbr_msg msg = {{0}};

    kbr_store_close(st);
    st = NULL;
    assert_int_equal(kbt_store_sql(f->url, "UPDATE meta SET schema_version = 99", NULL, 0, NULL),
                     0);
    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_ERR_STORE);
    assert_null(st);
    assert_non_null(strstr(msg.text, "schema version 99 is newer"));
}

static void test_bad_urls(void **state)
{
    static const char *const urls[] = {"mysql://db/kbr",
                                       "ledger.db",
                                       "sqlite:",
                                       "sqlite:/tmp/x.db?cache=1",
                                       "sqlite:/tmp/x.db?max_pages=0",
                                       "postgresql:kbr"};
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        msg.text[0] = '\0';
        assert_int_equal(kbr_store_open(urls[i], &st, &msg), KBR_ERR_CONFIG);
        assert_null(st);
        assert_true(strlen(msg.text) > 0);
    }
    assert_int_equal(kbr_store_open("mysql://db/kbr", &st, &msg), KBR_ERR_CONFIG);
    assert_non_null(strstr(msg.text, "mysql://db/kbr"));
}

/* PostgreSQL that does not answer: the store does not open, and the message names it
 * (without the password). */
static void test_unreachable_postgresql(void **state)
{
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(
        kbr_store_open("postgresql://kbr:s3cret@127.0.0.1:1/kbr?connect_timeout=5", &st, &msg),
        KBR_ERR_STORE);
    assert_null(st);
    assert_non_null(strstr(msg.text, "cannot connect to PostgreSQL"));
    assert_non_null(strstr(msg.text, "127.0.0.1:1/kbr"));
    assert_null(strstr(msg.text, "s3cret"));
}

static void test_unwritable_location(void **state)
{
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(kbr_store_open("sqlite:/proc/nonexistent/x.db", &st, &msg), KBR_ERR_STORE);
    assert_null(st);
    assert_non_null(strstr(msg.text, "/proc/nonexistent/x.db"));
    assert_non_null(strstr(msg.text, "unable to open"));
}

static void test_duplicate_key_rolls_back_record(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *key = NULL;

    assert_int_equal(apply(st, KEY_A, 1), KBR_OK);
    /* A record whose second effect conflicts keeps none of its effects. */
    assert_int_equal(apply(st,
                           "[{\"type\": \"key.create\", \"name\": \"fw-b\", \"purpose\": \"p\","
                           " \"algorithm\": \"ed25519\", \"products\": [],"
                           " \"created_at\": \"2026-03-01T10:00:00Z\"},"
                           " {\"type\": \"key.create\", \"name\": \"fw-a\", \"purpose\": \"p\","
                           " \"algorithm\": \"ed25519\", \"products\": [],"
                           " \"created_at\": \"2026-03-01T10:00:00Z\"}]",
                           2),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_key_get(st, "fw-b", &key), KBR_ERR_NOT_FOUND);
    assert_null(key);
    assert_int_equal(kbr_store_key_get(st, "fw-a", &key), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(key, "algorithm")), "ecdsa-p256");
    json_decref(key);
    kbr_store_close(st);
}

#define FP_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define FP_Z "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
#define CERT_NO_FP                                                                                 \
    "\"serial_number\": \"0a\", \"pem\": \"P\", \"chain_pem\": \"\","                              \
    " \"not_after\": \"2036-01-01T00:00:00Z\""
#define CERT_OK CERT_NO_FP ", \"fingerprint\": \"" FP_A "\""
#define BATCH_WITH(fields)                                                                         \
    "[{\"type\": \"batch.create\", \"batch\": \"B\", \"product\": \"p\", \"factory\": \"f\","      \
    " \"created_at\": \"2026-03-01T10:00:00Z\", \"created_by\": \"s\", " fields "}]"
#define DEVICE_WITH(type, fields)                                                                  \
    "[{\"type\": \"" type "\", \"product\": \"p\", \"serial\": \"SN\","                            \
    " \"at\": \"2026-03-01T10:00:00Z\", \"issuer_key\": \"ca\", " fields "}]"

#define FP_A63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DEBUG_BASE                                                                                 \
    "\"type\": \"debug.authorize\", \"key\": \"k\", \"product\": \"p\", \"serial\": \"SN\","       \
    " \"principal\": \"security:a\", \"message_sha256\": \"" FP_A "\","                            \
    " \"signature_sha256\": \"" FP_A "\", \"at\": \"2026-03-01T10:00:00Z\""
#define CP_WITH(fields)                                                                            \
    "[{\"type\": \"checkpoint\", \"size\": 1, \"root_hash\": \"" FP_A "\","                        \
    " \"time\": \"2026-03-01T10:00:00Z\", \"signature_b64\": \"c2ln\", " fields "}]"

#define OTA_WITH(fields)                                                                           \
    "[{\"type\": \"ota.report\", \"product\": \"p\", \"version\": \"1\", \"campaign\": \"c\","     \
    " \"at\": \"2026-03-01T10:00:00Z\", " fields "}]"

#define PRODUCT_WITH(placed)                                                                       \
    "[{\"type\": \"product.register\", \"product\": \"p\", \"at\": \"2026-03-01T10:00:00Z\","      \
    " \"by\": \"x\", \"placed_on_market\": " placed "}]"
#define INCIDENT_WITH(fields)                                                                      \
    "[{\"type\": \"incident.create\", \"id\": \"I\", \"title\": \"t\", \"product\": null,"         \
    " \"component\": \"c\", \"aware_at\": \"2026-03-01T10:00:00Z\", \"actively_exploited\": true," \
    " \"cve\": null, \"created_at\": \"2026-03-01T10:00:00Z\", \"created_by\": \"x\","             \
    " \"exposure\": {}, \"builds\": [], " fields "}]"
#define TOKEN_ISSUE(jti)                                                                           \
    "{\"type\": \"token.issue\", \"jti\": \"" jti "\", \"sub\": \"ci:x\", \"scope\": {},"          \
    " \"issued_at\": \"2026-03-01T10:00:00Z\", \"expires_at\": \"2036-03-01T11:00:00Z\","          \
    " \"cnf_x5t\": null}"

/* token.revoke_all revokes what is live, and a revocation made before keeps its reason. */
static void test_revoke_all(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *tokens = NULL;

    assert_int_equal(apply(st, "[" TOKEN_ISSUE("j1") ", " TOKEN_ISSUE("j2") "]", 1), KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"token.revoke\", \"jtis\": [\"j1\"],"
                           " \"at\": \"2026-03-02T00:00:00Z\", \"reason\": \"first\"}]",
                           2),
                     KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"token.revoke_all\", \"at\": \"2026-03-03T00:00:00Z\","
                           " \"reason\": \"recovered\"}, " TOKEN_ISSUE("j3") "]",
                           3),
                     KBR_OK);
    assert_int_equal(kbr_store_token_list(st, NULL, NULL, false, time(NULL), &tokens), KBR_OK);
    assert_int_equal(json_array_size(tokens), 3);
    for (size_t i = 0; i < 3; i++) {
        const json_t *t = json_array_get(tokens, i);
        const char *jti = json_string_value(json_object_get(t, "jti"));
        const char *reason = json_string_value(json_object_get(t, "revoke_reason"));
        if (strcmp(jti, "j1") == 0)
            assert_string_equal(reason, "first");
        else if (strcmp(jti, "j2") == 0)
            assert_string_equal(reason, "recovered");
        else /* issued after, in the same record */
            assert_null(reason);
    }
    json_decref(tokens);
    kbr_store_close(st);
}

static void test_malformed_effects(void **state)
{
    static const char *const bad[] = {
        "[{\"type\": \"key.create\", \"purpose\": \"p\", \"algorithm\": \"a\","
        " \"products\": [], \"created_at\": \"2026-03-01T10:00:00Z\"}]",
        "[{\"type\": \"key.create\", \"name\": \"k\", \"purpose\": \"p\", \"algorithm\": \"a\","
        " \"products\": [1], \"created_at\": \"2026-03-01T10:00:00Z\"}]",
        "[{\"type\": \"key.retire\", \"name\": \"k\", \"at\": \"yesterday\"}]",
        "[{\"type\": \"token.issue\", \"jti\": \"j\", \"sub\": \"s\", \"scope\": [],"
        " \"issued_at\": \"2026-03-01T10:00:00Z\", \"expires_at\": \"2026-03-01T11:00:00Z\"}]",
        "[{\"type\": \"firmware.sign\", \"product\": \"p\", \"version\": \"1\","
        " \"signed_at\": \"2026-03-01T10:00:00Z\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " " CERT_NO_FP "}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " " CERT_NO_FP ", \"fingerprint\": \"" FP_Z "\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " " CERT_NO_FP ", \"fingerprint\": \"abcd\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", " CERT_NO_FP ","
        " \"fingerprint\": \"" FP_A "\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " \"serial_number\": \"0a\", \"pem\": \"P\", \"not_after\": \"2036-01-01T00:00:00Z\","
        " \"fingerprint\": \"" FP_A "\"}]",
        "[{\"type\": \"key.certificate\", \"name\": \"k\", \"at\": \"2026-03-01T10:00:00Z\","
        " \"serial_number\": \"0x0a\", \"pem\": \"P\", \"chain_pem\": \"\","
        " \"not_after\": \"2036-01-01T00:00:00Z\", \"fingerprint\": \"" FP_A "\"}]",
        BATCH_WITH("\"quantity\": 0, \"markets\": [\"DE\"]"),
        BATCH_WITH("\"quantity\": \"5\", \"markets\": [\"DE\"]"),
        BATCH_WITH("\"quantity\": 5, \"markets\": []"),
        BATCH_WITH("\"quantity\": 5, \"markets\": \"DE\""),
        DEVICE_WITH("device.provision", "\"batch\": \"B\", \"factory\": \"f\","
                                        " \"firmware_version\": 12, \"csr_sha256\": \"" FP_A "\","
                                        " \"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.provision", "\"batch\": \"B\", \"factory\": \"f\","
                                        " \"csr_sha256\": \"" FP_A "\", \"certificate\": \"PEM\""),
        DEVICE_WITH("device.provision", "\"factory\": \"f\", \"csr_sha256\": \"" FP_A "\","
                                        " \"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.provision", "\"batch\": \"B\", \"factory\": \"f\","
                                        " \"csr_sha256\": \"" FP_A "\","
                                        " \"public_key_sha256\": \"" FP_A63 "\","
                                        " \"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.rotate", "\"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.rotate", "\"csr_sha256\": \"" FP_A "\", \"public_key_sha256\": 7,"
                                     " \"certificate\": {" CERT_OK "}"),
        DEVICE_WITH("device.rotate", "\"csr_sha256\": \"" FP_A "\","
                                     " \"certificate\": {" CERT_NO_FP "}"),
        "[{" DEBUG_BASE ", \"challenge_sha256\": \"" FP_A "\", \"permissions\": \"0f\","
        " \"expires_at\": \"2026-03-01T10:15:00Z\"}]",
        "[{" DEBUG_BASE ", \"ticket\": \"T\", \"challenge_sha256\": \"" FP_A63 "\","
        " \"permissions\": \"0f\", \"expires_at\": \"2026-03-01T10:15:00Z\"}]",
        "[{" DEBUG_BASE ", \"ticket\": \"T\", \"challenge_sha256\": \"" FP_A "\","
        " \"permissions\": \"xyz\", \"expires_at\": \"2026-03-01T10:15:00Z\"}]",
        "[{" DEBUG_BASE ", \"ticket\": \"T\", \"challenge_sha256\": \"" FP_A "\","
        " \"permissions\": \"0f\", \"expires_at\": \"soon\"}]",
        OTA_WITH("\"reported_by\": \"ota:x\", \"results\": [{\"serial\": \"SN\","
                 " \"status\": \"pending\", \"at\": \"2026-03-01T10:00:00Z\"}]"),
        OTA_WITH("\"reported_by\": \"ota:x\", \"results\": [{\"serial\": \"SN\","
                 " \"status\": \"installed\"}]"),
        OTA_WITH("\"reported_by\": \"ota:x\", \"results\": [\"SN\"]"),
        OTA_WITH("\"reported_by\": \"ota:x\", \"results\": \"SN\""),
        OTA_WITH("\"results\": []"),
        PRODUCT_WITH("\"2026-02-30\", \"support_until\": \"2031-01-01\""),
        PRODUCT_WITH("\"2026-01-01\", \"support_until\": \"2025-12-31\""),
        PRODUCT_WITH("\"2026-01-01T00:00:00Z\", \"support_until\": \"2031-01-01\""),
        INCIDENT_WITH("\"severity\": \"urgent\", \"query\": {\"component\": \"c\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"component\": \"c\", \"purl\":"
                      " \"pkg:npm/c\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"purl\": \"pkg:deb/c\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"component\": \"c\","
                      " \"vers\": \"vers:deb/>1|>2\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"component\": \"c\","
                      " \"product\": \"p\"}"),
        INCIDENT_WITH("\"severity\": \"low\", \"query\": \"c\""),
        "[{\"type\": \"incident.report\", \"id\": \"I\", \"stage\": \"late\", \"sha256\": \"" FP_A
        "\", \"at\": \"2026-03-01T10:00:00Z\", \"by\": \"x\"}]",
        "[{\"type\": \"incident.fix\", \"id\": \"I\", \"fixed_version\": \"2\","
        " \"at\": \"2026-03-01T10:00:00Z\"}]",
        "[{\"type\": \"key.destroy\", \"name\": \"k\"}]",
        /* a checkpoint's signer comes whole, and a next key only with a signer */
        CP_WITH("\"note\": \"n\""),
        CP_WITH("\"note\": \"n\", \"origin\": \"o\", \"key_id\": \"0a0b0c0d\","
                " \"key_label\": \"kbr/audit\""),
        CP_WITH("\"note\": \"n\", \"origin\": \"o\", \"key_id\": \"0a0b0c\","
                " \"key_label\": \"kbr/audit\", \"public_key_pem\": \"P\""),
        CP_WITH("\"next_key_pem\": \"P\", \"next_key_id\": \"0a0b0c0d\","
                " \"next_key_label\": \"kbr/audit/2\""),
        CP_WITH("\"key_id\": \"0a0b0c0d\""),
        "[{\"type\": \"checkpoint\", \"size\": 1, \"root_hash\": \"r\","
        " \"time\": \"2026-03-01T10:00:00Z\", \"signature_b64\": \"c2ln\"}]",
        "[{\"type\": \"token.revoke_all\", \"reason\": \"r\"}]",
        "[\"key.create\"]",
        "{\"type\": \"key.retire\"}",
    };
    fixture *f = *state;
    kbr_store *st = open_ok(f);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (apply(st, bad[i], (int64_t)i + 1) != KBR_ERR_INTERNAL)
            fail_msg("effect %zu was not refused as KBR_ERR_INTERNAL", i);
    }
    /* Well-formed, the same effects reach the ledger's rules (no such device or build here). */
    assert_int_equal(apply(st,
                           INCIDENT_WITH("\"severity\": \"low\", \"query\": {\"purl\":"
                                         " \"pkg:deb/debian/c\", \"vers\": \"vers:deb/<2\"}"),
                           99),
                     KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"incident.fix\", \"id\": \"I\", \"fixed_version\": \"2\","
                           " \"available_at\": \"2026-03-01T10:00:00Z\","
                           " \"at\": \"2026-03-01T10:00:00Z\"}]",
                           98),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply(st,
                           "[{" DEBUG_BASE ", \"ticket\": \"T\", \"challenge_sha256\": \"" FP_A
                           "\", \"permissions\": \"0f\","
                           " \"expires_at\": \"2026-03-01T10:15:00Z\"}]",
                           100),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply(st,
                           OTA_WITH("\"reported_by\": \"ota:x\", \"results\": [{\"serial\":"
                                    " \"SN\", \"status\": \"failed\","
                                    " \"at\": \"2026-03-01T10:00:00Z\"}]"),
                           101),
                     KBR_ERR_STORE_CONSTRAINT);
    kbr_store_close(st);
}

static void test_key_retire(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *key = NULL, *keys = NULL;

    assert_int_equal(apply(st, KEY_A, 1), KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"key.retire\", \"name\": \"fw-a\","
                           " \"at\": \"2026-04-01T00:00:00Z\"}]",
                           2),
                     KBR_OK);
    /* A second retire keeps the first time; an unknown name conflicts with the registry. */
    assert_int_equal(apply(st,
                           "[{\"type\": \"key.retire\", \"name\": \"fw-a\","
                           " \"at\": \"2026-05-01T00:00:00Z\"}]",
                           3),
                     KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"key.retire\", \"name\": \"nope\","
                           " \"at\": \"2026-05-01T00:00:00Z\"}]",
                           4),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_key_get(st, "fw-a", &key), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(key, "state")), "retired");
    assert_string_equal(json_string_value(json_object_get(key, "retired_at")),
                        "2026-04-01T00:00:00Z");
    assert_int_equal(kbr_store_key_list(st, &keys), KBR_OK);
    assert_int_equal(json_array_size(keys), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 0), "name")),
                        "fw-a");
    json_decref(keys);
    json_decref(key);
    kbr_store_close(st);
}

#define FW(digest, comps)                                                                          \
    "[{\"type\": \"firmware.sign\", \"product\": \"door\", \"version\": \"1.2.0\","                \
    " \"digest\": \"" digest                                                                       \
    "\", \"hash\": \"sha256\", \"key\": \"fw-a\", \"name\": \"door.bin\","                         \
    " \"build_id\": \"b7\", \"signed_at\": \"2026-03-02T00:00:00Z\", \"components\": " comps "}]"

static void test_firmware_sign_rules(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *build = NULL, *comps;

    assert_int_equal(apply(st,
                           FW("aabb", "[{\"name\": \"openssl\", \"version\": \"3.0.1\","
                                      " \"purl\": \"pkg:generic/openssl@3.0.1\"},"
                                      " {\"name\": \"zlib\", \"version\": \"1.3\"}]"),
                           1),
                     KBR_OK);
    /* A CI retry with the same digest changes nothing, not even the components. */
    assert_int_equal(apply(st, FW("AABB", "[{\"name\": \"other\"}]"), 2), KBR_OK);
    assert_int_equal(apply(st, FW("ccdd", "[{\"name\": \"other\"}]"), 3), KBR_ERR_STORE_CONSTRAINT);

    assert_int_equal(kbr_store_firmware_get(st, "door", "1.2.0", &build), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(build, "digest")), "aabb");
    assert_int_equal(json_integer_value(json_object_get(build, "audit_seq")), 1);
    assert_string_equal(json_string_value(json_object_get(build, "build_id")), "b7");
    comps = json_object_get(build, "components");
    assert_int_equal(json_array_size(comps), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(comps, 0), "purl")),
                        "pkg:generic/openssl@3.0.1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(comps, 1), "version")),
                        "1.3");
    assert_true(json_is_null(json_object_get(json_array_get(comps, 1), "purl")));
    json_decref(build);
    build = NULL;
    assert_int_equal(kbr_store_firmware_get(st, "door", "9.9", &build), KBR_ERR_NOT_FOUND);
    assert_null(build);
    kbr_store_close(st);
}

/* ---- certificates, batches, devices ---- */

#define KEY_CA                                                                                     \
    "[{\"type\": \"key.create\", \"name\": \"ca-door\", \"purpose\": \"device-identity-ca\","      \
    " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\", \"lock\"],"                          \
    " \"created_at\": \"2026-03-01T10:00:00Z\"}]"

/* The CA key's certificate, which heads every device certificate's chain. */
#define ZEROS_OF_64 "0000000000000000000000000000000000000000000000000000000000000000"
#define CA_TAG      "ca-door-cert"
#define CA_CHAIN    "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"

/* Distinct tags give distinct fingerprints and serial numbers, as real certificates have. */
typedef struct {
    char fingerprint[65];
    char serial[33];
    char pem[128];
} cert_ids;

static void ids_of(const char *tag, cert_ids *ids)
{
    char in[64], hex[65];

    kbr_sha256_hex(tag, strlen(tag), ids->fingerprint);
    snprintf(in, sizeof(in), "serial:%s", tag);
    kbr_sha256_hex(in, strlen(in), hex);
    snprintf(ids->serial, sizeof(ids->serial), "%.32s", hex);
    snprintf(ids->pem, sizeof(ids->pem),
             "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n", tag);
}

static json_t *cert_of(const char *tag)
{
    cert_ids ids;

    ids_of(tag, &ids);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "serial_number", ids.serial, "pem", ids.pem,
                     "chain_pem", strcmp(tag, CA_TAG) == 0 ? CA_CHAIN : "", "not_after",
                     "2036-01-01T00:00:00Z", "fingerprint", ids.fingerprint);
}

/* A device's certificate: its chain is its issuer's. */
static json_t *device_cert_of(const char *tag)
{
    json_t *c = cert_of(tag);

    json_object_del(c, "chain_pem");
    return c;
}

static const char *ca_fingerprint(void)
{
    static cert_ids ids;

    ids_of(CA_TAG, &ids);
    return ids.fingerprint;
}

static json_t *key_cert_effect(const char *name, const char *tag, const char *at)
{
    json_t *e = cert_of(tag);

    json_object_set_new(e, "type", json_string("key.certificate"));
    json_object_set_new(e, "name", json_string(name));
    json_object_set_new(e, "at", json_string(at));
    return json_pack("[o]", e);
}

static json_t *batch_effect(const char *batch, const char *product, const char *factory,
                            int quantity)
{
    return json_pack("[{s:s,s:s,s:s,s:s,s:i,s:[s,s],s:s,s:s}]", "type", "batch.create", "batch",
                     batch, "product", product, "factory", factory, "quantity", quantity, "markets",
                     "DE", "FR", "created_at", "2026-03-01T08:00:00+00:00", "created_by",
                     "security:bootstrap");
}

static json_t *provision_effect(const char *product, const char *serial, const char *batch,
                                const char *factory, const char *tag)
{
    char csr[65];

    kbr_sha256_hex(serial, strlen(serial), csr);
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}]", "type", "device.provision",
                     "product", product, "serial", serial, "batch", batch, "factory", factory,
                     "firmware_version", "1.2.0", "csr_sha256", csr, "at", "2026-03-02T08:00:00Z",
                     "issuer_key", "ca-door", "issuer_fingerprint", ca_fingerprint(), "certificate",
                     device_cert_of(tag));
}

static json_t *rotate_effect(const char *product, const char *serial, const char *tag,
                             const char *at)
{
    char csr[65];

    kbr_sha256_hex(tag, strlen(tag), csr);
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}]", "type", "device.rotate", "product",
                     product, "serial", serial, "csr_sha256", csr, "at", at, "issuer_key",
                     "ca-door", "issuer_fingerprint", ca_fingerprint(), "certificate",
                     device_cert_of(tag));
}

/* The first column of the first row of sql, read over a connection of its own. */
static void query_text(const fixture *f, const char *sql, char *buf, size_t len)
{
    assert_int_equal(kbt_store_sql(f->url, sql, buf, len, NULL), 0);
}

static int64_t query_count(const fixture *f, const char *sql)
{
    char buf[32];

    query_text(f, sql, buf, sizeof(buf));
    return strtoll(buf, NULL, 10);
}

/* What a store of version 7 had: the later steps' tables, triggers and columns dropped
 * (version 8: key deliveries; 9: the CRA's), and the version set back. */
static const char *const to_v7_sqlite =
    "DROP TABLE key_deliveries;"
    " DROP TRIGGER devices_history_batch_move; DROP TRIGGER devices_incident_move;"
    " DROP TABLE history_firmware_batch; DROP TABLE incident_reports;"
    " DROP TABLE incident_fleet; DROP TABLE incident_builds; DROP TABLE incidents;"
    " DROP TABLE products; DROP INDEX components_purl_key;"
    " ALTER TABLE components DROP COLUMN purl_key;"
    " CREATE INDEX components_purl ON components(purl);"
    " UPDATE meta SET schema_version = 7;";
static const char *const to_v7_pg =
    "DROP TABLE key_deliveries; DROP FUNCTION kbr_key_deliveries_count();"
    " DROP TABLE history_firmware_batch, incident_reports, incident_fleet, incident_builds,"
    " incidents, products; DROP TRIGGER devices_history_batch_move ON devices;"
    " DROP TRIGGER devices_incident_move ON devices;"
    " DROP FUNCTION kbr_devices_history_batch_move(); DROP FUNCTION "
    "kbr_devices_incident_move();"
    " ALTER TABLE components DROP COLUMN purl_key;"
    " CREATE INDEX components_purl ON components(purl);"
    " UPDATE meta SET schema_version = 7;";

static void store_back_to_v7(fixture *f)
{
    char *sql = strdup(kbt_pg() ? to_v7_pg : to_v7_sqlite), *one, *save = NULL;

    assert_non_null(sql);
    for (one = strtok_r(sql, ";", &save); one != NULL; one = strtok_r(NULL, ";", &save))
        assert_int_equal(kbt_store_sql(f->url, one, NULL, 0, NULL), 0);
    free(sql);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 7);
}

/*
 * A store of version 7, before the CRA step, on either back end, taken to version 9 as it opens:
 * the components recorded before get the package their purl names (components.purl_key),
 * from the same function the firmware.sign effect uses, and View C finds them by it.  (The
 * store is made version 7 again by removing what versions 8 and 9 add.)
 */
static void test_store_at_version_7(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    char buf[128];

    assert_int_equal(apply(st, KEY_A, 1), KBR_OK);
    assert_int_equal(apply(st,
                           FW("aabb", "[{\"name\": \"openssl\", \"version\": \"3.0.1\","
                                      " \"purl\": \"pkg:deb/Debian/openssl@3.0.1?arch=amd64\"},"
                                      " {\"name\": \"zlib\", \"version\": \"1.3\","
                                      " \"purl\": \"no purl\"}]"),
                           2),
                     KBR_OK);
    kbr_store_close(st);
    store_back_to_v7(f);

    st = open_ok(f);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 9);
    query_text(f, "SELECT purl_key FROM components WHERE name = 'openssl'", buf, sizeof(buf));
    assert_string_equal(buf, "pkg:deb/debian/openssl");
    query_text(f, "SELECT coalesce(purl_key, 'none') FROM components WHERE name = 'zlib'", buf,
               sizeof(buf));
    assert_string_equal(buf, "none");
    assert_int_equal(query_count(f, "SELECT count(*) FROM history_firmware_batch"), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM incidents"), 0);
    kbr_store_close(st);
}

static const char *str_at(const json_t *obj, const char *field)
{
    const json_t *v = json_object_get(obj, field);

    if (!json_is_string(v))
        fail_msg("%s is not a string", field);
    return json_string_value(v);
}

static int64_t int_at(const json_t *obj, const char *field)
{
    const json_t *v = json_object_get(obj, field);

    if (!json_is_integer(v))
        fail_msg("%s is not an integer", field);
    return json_integer_value(v);
}

static void assert_key_cert(kbr_store *st, const char *name, const char *tag)
{
    json_t *key = NULL;
    const json_t *cert;
    cert_ids ids;

    ids_of(tag, &ids);
    assert_int_equal(kbr_store_key_get(st, name, &key), KBR_OK);
    cert = json_object_get(key, "certificate");
    assert_true(json_is_object(cert));
    assert_string_equal(str_at(cert, "fingerprint"), ids.fingerprint);
    assert_string_equal(str_at(cert, "serial_number"), ids.serial);
    assert_string_equal(str_at(cert, "pem"), ids.pem);
    assert_string_equal(str_at(cert, "chain_pem"), "");
    assert_string_equal(str_at(cert, "not_after"), "2036-01-01T00:00:00Z");
    json_decref(key);
}

static void test_key_certificate(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *keys = NULL, *effect;
    cert_ids k1, k2;
    char sql[256], text[64];

    ids_of("k1", &k1);
    ids_of("k2", &k2);
    assert_int_equal(apply(st, KEY_A, 1), KBR_OK);
    assert_int_equal(apply_json(st, key_cert_effect("fw-a", "k1", "2026-03-05T00:00:00Z"), 2),
                     KBR_OK);
    assert_key_cert(st, "fw-a", "k1");

    /* The replacement arrives in upper-case hex: stored in the one lowercase spelling. */
    effect = key_cert_effect("fw-a", "k2", "2026-04-01T00:00:00.250Z");
    for (char *p = k2.fingerprint; *p != '\0'; p++)
        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 'a' + 'A' : *p);
    json_object_set_new(json_array_get(effect, 0), "fingerprint", json_string(k2.fingerprint));
    assert_int_equal(apply_json(st, effect, 3), KBR_OK);
    assert_key_cert(st, "fw-a", "k2");
    assert_int_equal(kbr_store_key_list(st, &keys), KBR_OK);
    ids_of("k2", &k2);
    assert_string_equal(
        str_at(json_object_get(json_array_get(keys, 0), "certificate"), "fingerprint"),
        k2.fingerprint);
    json_decref(keys);

    /* The earlier certificate stays in the history, superseded when the new one came. */
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates WHERE key_name = 'fw-a'"
                                    " AND owner_kind = 'key'"),
                     2);
    snprintf(sql, sizeof(sql), "SELECT superseded_at FROM certificates WHERE fingerprint = '%s'",
             k1.fingerprint);
    query_text(f, sql, text, sizeof(text));
    assert_string_equal(text, "2026-04-01T00:00:00Z");

    assert_int_equal(apply_json(st, key_cert_effect("nope", "k3", "2026-04-02T00:00:00Z"), 4),
                     KBR_ERR_STORE_CONSTRAINT);
    /* The same certificate twice conflicts, and the failed record supersedes nothing. */
    assert_int_equal(apply_json(st, key_cert_effect("fw-a", "k2", "2026-05-01T00:00:00Z"), 5),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_key_cert(st, "fw-a", "k2");
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates"
                                    " WHERE superseded_at IS NULL"),
                     1);
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates"), 2);
    kbr_store_close(st);
}

static void test_batch_create(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *batch = NULL, *list = NULL;

    assert_int_equal(apply_json(st, batch_effect("B1", "door", "factory:acme", 500), 1), KBR_OK);
    assert_int_equal(apply_json(st, batch_effect("B1", "lock", "factory:other", 5), 2),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_batch_get(st, "B1", &batch), KBR_OK);
    assert_string_equal(str_at(batch, "batch"), "B1");
    assert_string_equal(str_at(batch, "product"), "door");
    assert_string_equal(str_at(batch, "factory"), "factory:acme");
    assert_int_equal(int_at(batch, "quantity"), 500);
    assert_int_equal(json_array_size(json_object_get(batch, "markets")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(batch, "markets"), 1)),
                        "FR");
    assert_string_equal(str_at(batch, "created_at"), "2026-03-01T08:00:00Z");
    assert_string_equal(str_at(batch, "created_by"), "security:bootstrap");
    assert_int_equal(int_at(batch, "provisioned"), 0);
    json_decref(batch);
    batch = NULL;
    assert_int_equal(kbr_store_batch_get(st, "B9", &batch), KBR_ERR_NOT_FOUND);
    assert_null(batch);

    assert_int_equal(apply_json(st, batch_effect("A0", "lock", "factory:other", 5), 3), KBR_OK);
    assert_int_equal(kbr_store_batch_list(st, &list), KBR_OK);
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(str_at(json_array_get(list, 0), "batch"), "A0");
    assert_int_equal(int_at(json_array_get(list, 0), "quantity"), 5);
    assert_string_equal(str_at(json_array_get(list, 1), "batch"), "B1");
    assert_int_equal(int_at(json_array_get(list, 1), "provisioned"), 0);
    json_decref(list);
    kbr_store_close(st);
}

/* A store with the door CA key (seq 1) and batch B1 of 3 doors for factory:acme (seq 2). */
static kbr_store *factory_store(const fixture *f)
{
    kbr_store *st = open_ok(f);
    json_t *ca = effects_of(KEY_CA),
           *cert = key_cert_effect("ca-door", CA_TAG, "2026-03-01T10:00:00Z");

    json_array_extend(ca, cert);
    json_decref(cert);
    assert_int_equal(apply_json(st, ca, 1), KBR_OK);
    assert_int_equal(apply_json(st, batch_effect("B1", "door", "factory:acme", 3), 2), KBR_OK);
    return st;
}

static int64_t provisioned_in(kbr_store *st, const char *name)
{
    json_t *batch = NULL;
    int64_t n;

    assert_int_equal(kbr_store_batch_get(st, name, &batch), KBR_OK);
    n = int_at(batch, "provisioned");
    json_decref(batch);
    return n;
}

static void assert_provisioned_event(const json_t *ev, const cert_ids *ids)
{
    const json_t *detail = json_object_get(ev, "detail");

    assert_string_equal(str_at(ev, "kind"), "provisioned");
    assert_string_equal(str_at(ev, "at"), "2026-03-02T08:00:00Z");
    assert_int_equal(int_at(ev, "audit_seq"), 3);
    assert_string_equal(str_at(detail, "batch"), "B1");
    assert_string_equal(str_at(detail, "factory"), "factory:acme");
    assert_string_equal(str_at(detail, "firmware_version"), "1.2.0");
    assert_string_equal(str_at(detail, "fingerprint"), ids->fingerprint);
    assert_string_equal(str_at(detail, "serial_number"), ids->serial);
}

static void test_device_provision(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *events = NULL, *found = NULL;
    const json_t *cert;
    cert_ids d1;
    char csr[65];

    ids_of("d1", &d1);
    kbr_sha256_hex("SN-1", 4, csr);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 3), KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_string_equal(str_at(dev, "product"), "door");
    assert_string_equal(str_at(dev, "serial"), "SN-1");
    assert_string_equal(str_at(dev, "batch"), "B1");
    assert_string_equal(str_at(dev, "factory"), "factory:acme");
    assert_string_equal(str_at(dev, "firmware_version"), "1.2.0");
    assert_string_equal(str_at(dev, "csr_sha256"), csr);
    assert_string_equal(str_at(dev, "provisioned_at"), "2026-03-02T08:00:00Z");
    assert_int_equal(int_at(dev, "audit_seq"), 3);
    assert_int_equal(json_array_size(json_object_get(dev, "certificates")), 1);
    cert = json_array_get(json_object_get(dev, "certificates"), 0);
    assert_string_equal(str_at(cert, "fingerprint"), d1.fingerprint);
    assert_string_equal(str_at(cert, "serial_number"), d1.serial);
    assert_string_equal(str_at(cert, "pem"), d1.pem);
    assert_string_equal(str_at(cert, "not_after"), "2036-01-01T00:00:00Z");
    assert_string_equal(str_at(cert, "issued_at"), "2026-03-02T08:00:00Z");
    assert_true(json_is_null(json_object_get(cert, "superseded_at")));
    assert_string_equal(str_at(cert, "issuer_key"), "ca-door");
    assert_int_equal(int_at(cert, "audit_seq"), 3);
    json_decref(dev);

    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 1);
    assert_provisioned_event(json_array_get(events, 0), &d1);
    json_decref(events);
    assert_int_equal(provisioned_in(st, "B1"), 1);

    assert_int_equal(kbr_store_device_find(st, "SN-1", &found), KBR_OK);
    assert_int_equal(json_array_size(found), 1);
    assert_string_equal(str_at(json_array_get(found, 0), "product"), "door");
    assert_string_equal(str_at(json_array_get(found, 0), "batch"), "B1");
    json_decref(found);

    dev = events = found = NULL;
    assert_int_equal(kbr_store_device_get(st, "door", "SN-2", &dev), KBR_ERR_NOT_FOUND);
    assert_null(dev);
    assert_int_equal(kbr_store_device_get(st, "lock", "SN-1", &dev), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_store_device_events(st, "door", "SN-2", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 0);
    assert_int_equal(kbr_store_device_find(st, "SN-2", &found), KBR_OK);
    assert_int_equal(json_array_size(found), 0);
    json_decref(events);
    json_decref(found);
    kbr_store_close(st);
}

static void test_device_without_firmware_version(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *effect = provision_effect("door", "SN-1", "B1", "factory:acme", "d1");
    json_t *dev = NULL, *events = NULL, *history = NULL;

    json_object_set_new(json_array_get(effect, 0), "firmware_version", json_null());
    assert_int_equal(apply_json(st, effect, 3), KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_true(json_is_null(json_object_get(dev, "firmware_version")));
    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_true(json_is_null(
        json_object_get(json_object_get(json_array_get(events, 0), "detail"), "firmware_version")));
    json_decref(events);
    json_decref(dev);
    dev = NULL;

    /* No factory image: no history and no current firmware until an install is reported. */
    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-1", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 0);
    json_decref(history);
    assert_int_equal(apply(st, FW("aabb", "[]"), 4), KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_true(json_is_null(json_object_get(dev, "current_firmware")));
    assert_true(json_is_null(json_object_get(dev, "current_firmware_at")));
    json_decref(dev);
    assert_int_equal(apply(st,
                           "[{\"type\": \"ota.report\", \"product\": \"door\","
                           " \"version\": \"1.2.0\", \"campaign\": null,"
                           " \"reported_by\": \"ota:fleet\", \"at\": \"2026-09-01T00:00:00Z\","
                           " \"results\": [{\"serial\": \"SN-1\", \"status\": \"installed\","
                           " \"at\": \"2026-01-01T00:00:00Z\"}]}]",
                           5),
                     KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_string_equal(str_at(dev, "current_firmware"), "1.2.0");
    assert_string_equal(str_at(dev, "current_firmware_at"), "2026-01-01T00:00:00Z");
    json_decref(dev);
    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-1", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 1);
    assert_true(json_is_null(json_object_get(json_array_get(history, 0), "campaign")));
    json_decref(history);
    kbr_store_close(st);
}

static void test_device_duplicate_serial(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *found = NULL;
    cert_ids d1, d2;
    char sql[256];

    ids_of("d1", &d1);
    ids_of("d2", &d2);
    assert_int_equal(apply_json(st, batch_effect("L1", "lock", "factory:acme", 3), 3), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 4), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d2"), 5),
        KBR_ERR_STORE_CONSTRAINT);

    /* Nothing of the refused record stays: no certificate, no event, no batch count. */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM certificates WHERE fingerprint = '%s'",
             d2.fingerprint);
    assert_int_equal(query_count(f, sql), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events"), 1);
    assert_int_equal(provisioned_in(st, "B1"), 1);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_int_equal(int_at(dev, "audit_seq"), 4);
    assert_int_equal(json_array_size(json_object_get(dev, "certificates")), 1);
    assert_string_equal(
        str_at(json_array_get(json_object_get(dev, "certificates"), 0), "fingerprint"),
        d1.fingerprint);
    json_decref(dev);

    /* Serials are per product: the lock line may reuse the number. */
    assert_int_equal(
        apply_json(st, provision_effect("lock", "SN-1", "L1", "factory:acme", "d3"), 6), KBR_OK);
    assert_int_equal(kbr_store_device_find(st, "SN-1", &found), KBR_OK);
    assert_int_equal(json_array_size(found), 2);
    assert_string_equal(str_at(json_array_get(found, 0), "product"), "door");
    assert_string_equal(str_at(json_array_get(found, 1), "product"), "lock");
    assert_string_equal(str_at(json_array_get(found, 1), "batch"), "L1");
    assert_string_equal(str_at(json_array_get(found, 1), "serial"), "SN-1");
    json_decref(found);
    kbr_store_close(st);
}

static void test_batch_quantity_enforced(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *found = NULL;

    assert_int_equal(apply_json(st, batch_effect("Q2", "door", "factory:acme", 2), 3), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "Q2", "factory:acme", "d1"), 4), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-2", "Q2", "factory:acme", "d2"), 5), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-3", "Q2", "factory:acme", "d3"), 6),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(provisioned_in(st, "Q2"), 2);
    assert_int_equal(query_count(f, "SELECT count(*) FROM devices WHERE batch = 'Q2'"), 2);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-3", &dev), KBR_ERR_NOT_FOUND);
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates"
                                    " WHERE device_serial = 'SN-3'"),
                     0);
    assert_int_equal(kbr_store_device_find(st, "SN-3", &found), KBR_OK);
    assert_int_equal(json_array_size(found), 0);
    json_decref(found);
    /* Another batch still has room for the same device. */
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-3", "B1", "factory:acme", "d3"), 7), KBR_OK);
    kbr_store_close(st);
}

static void test_batch_must_match(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *foreign_ca = provision_effect("door", "SN-1", "B1", "factory:acme", "d1");

    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:evil", "d1"), 3),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, provision_effect("lock", "SN-1", "B1", "factory:acme", "d1"), 4),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B9", "factory:acme", "d1"), 5),
        KBR_ERR_STORE_CONSTRAINT);
    json_object_set_new(json_array_get(foreign_ca, 0), "issuer_key", json_string("ca-other"));
    assert_int_equal(apply_json(st, foreign_ca, 6), KBR_ERR_STORE_CONSTRAINT);

    assert_int_equal(query_count(f, "SELECT count(*) FROM devices"), 0);
    assert_int_equal(
        query_count(f, "SELECT count(*) FROM certificates WHERE owner_kind = 'device'"), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events"), 0);
    assert_int_equal(provisioned_in(st, "B1"), 0);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 7), KBR_OK);
    assert_int_equal(provisioned_in(st, "B1"), 1);
    kbr_store_close(st);
}

static void assert_rotated_event(const json_t *ev, const char *old_tag, const char *new_tag,
                                 int64_t seq)
{
    const json_t *detail = json_object_get(ev, "detail");
    const json_t *old = json_object_get(detail, "old");
    cert_ids was, now;
    char csr[65];

    ids_of(old_tag, &was);
    ids_of(new_tag, &now);
    kbr_sha256_hex(new_tag, strlen(new_tag), csr);
    assert_string_equal(str_at(ev, "kind"), "rotated");
    assert_int_equal(int_at(ev, "audit_seq"), seq);
    assert_int_equal(json_array_size(old), 1);
    assert_string_equal(json_string_value(json_array_get(old, 0)), was.fingerprint);
    assert_string_equal(str_at(detail, "new"), now.fingerprint);
    assert_string_equal(str_at(detail, "serial_number"), now.serial);
    assert_string_equal(str_at(detail, "csr_sha256"), csr);
}

static void test_device_rotate(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *events = NULL;
    const json_t *certs;
    cert_ids d2;

    ids_of("d2", &d2);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 3), KBR_OK);
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-1", "d2", "2027-01-01T00:00:00Z"), 4),
                     KBR_OK);
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-1", "d3", "2028-01-01T00:00:00Z"), 5),
                     KBR_OK);

    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    certs = json_object_get(dev, "certificates");
    assert_int_equal(json_array_size(certs), 3);
    assert_string_equal(str_at(json_array_get(certs, 0), "superseded_at"), "2027-01-01T00:00:00Z");
    assert_string_equal(str_at(json_array_get(certs, 1), "fingerprint"), d2.fingerprint);
    assert_string_equal(str_at(json_array_get(certs, 1), "issued_at"), "2027-01-01T00:00:00Z");
    assert_string_equal(str_at(json_array_get(certs, 1), "superseded_at"), "2028-01-01T00:00:00Z");
    assert_int_equal(int_at(json_array_get(certs, 1), "audit_seq"), 4);
    assert_string_equal(str_at(json_array_get(certs, 1), "issuer_key"), "ca-door");
    assert_true(json_is_null(json_object_get(json_array_get(certs, 2), "superseded_at")));
    /* The device row keeps its provisioning facts. */
    assert_int_equal(int_at(dev, "audit_seq"), 3);
    json_decref(dev);
    dev = NULL;

    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(str_at(json_array_get(events, 0), "kind"), "provisioned");
    assert_rotated_event(json_array_get(events, 1), "d1", "d2", 4);
    assert_string_equal(str_at(json_array_get(events, 1), "at"), "2027-01-01T00:00:00Z");
    assert_rotated_event(json_array_get(events, 2), "d2", "d3", 5);
    json_decref(events);
    /* A rotation is not a new device of the batch. */
    assert_int_equal(provisioned_in(st, "B1"), 1);

    assert_int_equal(apply_json(st, rotate_effect("door", "SN-9", "d4", "2028-02-01T00:00:00Z"), 6),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, rotate_effect("lock", "SN-1", "d4", "2028-02-01T00:00:00Z"), 7),
                     KBR_ERR_STORE_CONSTRAINT);
    /* Reusing a recorded certificate conflicts and leaves the current one current. */
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-1", "d1", "2028-03-01T00:00:00Z"), 8),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        query_count(f, "SELECT count(*) FROM certificates WHERE owner_kind = 'device'"), 3);
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificates"
                                    " WHERE superseded_at IS NULL AND owner_kind = 'device'"),
                     1);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events"), 3);
    kbr_store_close(st);
}

/* ---- revocation and CRLs ---- */

/* A device.revoke of the certificates tagged tags (in issue order), by ca-door. */
static json_t *revoke_effect(const char *product, const char *serial, const char *reason, int code,
                             const char *const *tags, size_t n)
{
    json_t *certs = json_array();
    cert_ids ids;

    for (size_t i = 0; i < n; i++) {
        ids_of(tags[i], &ids);
        json_array_append_new(certs,
                              json_pack("{s:s,s:s,s:s}", "fingerprint", ids.fingerprint,
                                        "serial_number", ids.serial, "issuer_key", "ca-door"));
    }
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:o}]", "type", "device.revoke", "product",
                     product, "serial", serial, "at", "2027-06-01T12:00:00Z", "reason", reason,
                     "reason_code", code, "revoked_by", "security:ops", "certificates", certs);
}

static json_t *crl_effect(const char *issuer, const char *fingerprint, int number,
                          const char *this_update, const char *next_update)
{
    return json_pack("[{s:s,s:s,s:s,s:i,s:s,s:s,s:i,s:s}]", "type", "crl.issue", "issuer_key",
                     issuer, "issuer_fingerprint", fingerprint, "number", number, "this_update",
                     this_update, "next_update", next_update, "entries", 2, "sha256", ZEROS_OF_64);
}

static void test_device_revoke(void **state)
{
    static const char *const both[] = {"d1", "d2"}, *const current[] = {"d2"},
                             *const reversed[] = {"d2", "d1"};
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL, *crl = NULL, *rev, *certs;
    cert_ids d1, d2;

    ids_of("d1", &d1);
    ids_of("d2", &d2);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 3), KBR_OK);
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-1", "d2", "2027-01-01T00:00:00Z"), 4),
                     KBR_OK);
    /* Not yet revoked: the device and its certificates say so. */
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_true(json_is_null(json_object_get(dev, "revocation")));
    assert_true(json_is_null(json_object_get(
        json_array_get(json_object_get(dev, "certificates"), 0), "revocation_reason")));
    json_decref(dev);

    /* Every certificate of the device, in issue order, or nothing: a superseded one is still
     * valid, and a list read before a rotation misses the new one. */
    assert_int_equal(
        apply_json(st, revoke_effect("door", "SN-1", "keyCompromise", 1, current, 1), 6),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, revoke_effect("door", "SN-1", "keyCompromise", 1, reversed, 2), 7),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, revoke_effect("door", "SN-9", "keyCompromise", 1, both, 2), 8),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, revoke_effect("lock", "SN-1", "keyCompromise", 1, both, 2), 9),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(query_count(f, "SELECT count(*) FROM certificate_revocations"), 0);
    assert_int_equal(apply_json(st, revoke_effect("door", "SN-1", "keyCompromise", 1, both, 2), 10),
                     KBR_OK);

    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    rev = json_object_get(dev, "revocation");
    assert_string_equal(str_at(rev, "at"), "2027-06-01T12:00:00Z");
    assert_string_equal(str_at(rev, "reason"), "keyCompromise");
    assert_int_equal(int_at(rev, "reason_code"), 1);
    assert_string_equal(str_at(rev, "revoked_by"), "security:ops");
    assert_int_equal(int_at(rev, "audit_seq"), 10);
    certs = json_object_get(dev, "certificates");
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(str_at(json_array_get(certs, i), "revoked_at"), "2027-06-01T12:00:00Z");
        assert_string_equal(str_at(json_array_get(certs, i), "revocation_reason"), "keyCompromise");
        assert_null(json_object_get(json_array_get(certs, i), "revocation_reason_code"));
    }
    json_decref(dev);

    /* Revoked once, for good: no second revocation, no new certificate. */
    assert_int_equal(apply_json(st, revoke_effect("door", "SN-1", "superseded", 4, both, 2), 11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, rotate_effect("door", "SN-1", "d3", "2027-07-01T00:00:00Z"), 12),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        query_count(f, "SELECT count(*) FROM certificates WHERE owner_kind = 'device'"), 2);

    /* What the issuer's CRL lists. */
    assert_int_equal(kbr_store_crl_contents(st, "ca-door", &crl), KBR_OK);
    assert_int_equal(int_at(crl, "last_number"), 0);
    assert_int_equal(json_array_size(json_object_get(crl, "revoked")), 2);
    rev = json_array_get(json_object_get(crl, "revoked"), 0);
    assert_string_equal(str_at(rev, "revoked_at"), "2027-06-01T12:00:00Z");
    assert_int_equal(int_at(rev, "reason_code"), 1);
    assert_true(strcmp(str_at(rev, "serial_number"), d1.serial) == 0 ||
                strcmp(str_at(rev, "serial_number"), d2.serial) == 0);
    json_decref(crl);
    assert_int_equal(kbr_store_crl_contents(st, "no-such-ca", &crl), KBR_OK);
    assert_int_equal(json_array_size(json_object_get(crl, "revoked")), 0);
    json_decref(crl);
    kbr_store_close(st);
}

static void test_crl_numbers(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *crl = NULL;

    /* 1 first, then one more each time; an unknown issuer or CA certificate is refused */
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ca_fingerprint(), 2, "2027-06-01T12:00:00Z",
                                           "2027-06-08T12:00:00Z"),
                                3),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-none", ca_fingerprint(), 1, "2027-06-01T12:00:00Z",
                                           "2027-06-08T12:00:00Z"),
                                4),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ZEROS_OF_64, 1, "2027-06-01T12:00:00Z",
                                           "2027-06-08T12:00:00Z"),
                                5),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ca_fingerprint(), 1, "2027-06-01T12:00:00Z",
                                           "2027-06-08T12:00:00Z"),
                                6),
                     KBR_OK);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ca_fingerprint(), 1, "2027-06-02T12:00:00Z",
                                           "2027-06-09T12:00:00Z"),
                                7),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                crl_effect("ca-door", ca_fingerprint(), 2, "2027-06-02T12:00:00Z",
                                           "2027-06-09T12:00:00Z"),
                                8),
                     KBR_OK);
    assert_int_equal(kbr_store_crl_contents(st, "ca-door", &crl), KBR_OK);
    assert_int_equal(int_at(crl, "last_number"), 2);
    json_decref(crl);
    assert_int_equal(query_count(f, "SELECT audit_seq FROM crls WHERE number = 2"), 8);
    kbr_store_close(st);
}

/* The rules of both effects' JSON form, and their round trip. */
static void test_revoke_effect_rules(void **state)
{
    static const kbr_effect_revoked_cert cert = {FP_A, "0A1B", "ca-door"};
    const kbr_fx_device_revoke ok = {.product = "door",
                                     .serial = "SN-1",
                                     .at = "2027-06-01T12:00:00Z",
                                     .reason = "cessationOfOperation",
                                     .reason_code = 5,
                                     .revoked_by = "security:ops",
                                     .certificates = &cert,
                                     .ncertificates = 1};
    kbr_effects *fx = NULL, *back = NULL;
    kbr_fx_device_revoke bad;
    json_t *arr = NULL, *again = NULL;

    (void)state;
    assert_int_equal(kbr_effects_new(&fx), KBR_OK);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE, .u.device_revoke = ok}),
        KBR_OK);
    /* a reason RFC 5280 does not have, or one that is not for good, or a code not its own */
    bad = ok;
    bad.reason = "certificateHold";
    bad.reason_code = 6;
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE,
                                                       .u.device_revoke = bad}),
                     KBR_ERR_INTERNAL);
    bad = ok;
    bad.reason_code = 1;
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE,
                                                       .u.device_revoke = bad}),
                     KBR_ERR_INTERNAL);
    bad = ok;
    bad.ncertificates = 0;
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE,
                                                       .u.device_revoke = bad}),
                     KBR_ERR_INTERNAL);
    bad = ok;
    bad.revoked_by = NULL;
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_DEVICE_REVOKE,
                                                       .u.device_revoke = bad}),
                     KBR_ERR_INTERNAL);
    /* a CRL whose nextUpdate is not after its thisUpdate, or numbered 0 */
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_CRL_ISSUE,
                                          .u.crl_issue =
                                              {
                                                  .issuer_key = "ca-door",
                                                  .issuer_fingerprint = FP_A,
                                                  .number = 1,
                                                  .this_update = "2027-06-01T12:00:00Z",
                                                  .next_update = "2027-06-01T12:00:00Z",
                                                  .sha256 = FP_A,
                                              }}),
        KBR_ERR_INTERNAL);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_CRL_ISSUE,
                                          .u.crl_issue =
                                              {
                                                  .issuer_key = "ca-door",
                                                  .issuer_fingerprint = FP_A,
                                                  .number = 0,
                                                  .this_update = "2027-06-01T12:00:00Z",
                                                  .next_update = "2027-06-02T12:00:00Z",
                                                  .sha256 = FP_A,
                                              }}),
        KBR_ERR_INTERNAL);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_CRL_ISSUE,
                                          .u.crl_issue =
                                              {
                                                  .issuer_key = "ca-door",
                                                  .issuer_fingerprint = FP_A,
                                                  .number = 3,
                                                  .this_update = "2027-06-01T12:00:00Z",
                                                  .next_update = "2027-06-02T12:00:00Z",
                                                  .entries = 7,
                                                  .sha256 = FP_A,
                                              }}),
        KBR_OK);
    assert_int_equal(kbr_effects_count(fx), 2);
    assert_string_equal(kbr_effects_get(fx, 0)->u.device_revoke.certificates[0].serial_number,
                        "0a1b");
    assert_int_equal(kbr_effects_to_json(fx, &arr), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "type")),
                        "device.revoke");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "reason_code")), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "type")),
                        "crl.issue");
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_OK);
    assert_int_equal(kbr_effects_to_json(back, &again), KBR_OK);
    assert_true(json_equal(arr, again));
    json_decref(again);
    kbr_effects_free(back);
    /* the JSON form read back with a reason and code that disagree */
    json_object_set_new(json_array_get(arr, 0), "reason_code", json_integer(2));
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_ERR_INTERNAL);
    json_decref(arr);
    kbr_effects_free(fx);

    /* the names and their codes */
    assert_int_equal(kbr_store_revocation_reason_code("unspecified"), 0);
    assert_int_equal(kbr_store_revocation_reason_code("privilegeWithdrawn"), 9);
    assert_int_equal(kbr_store_revocation_reason_code("removeFromCRL"), -1);
    assert_int_equal(kbr_store_revocation_reason_code("KeyCompromise"), -1);
    assert_int_equal(kbr_store_revocation_reason_code(NULL), -1);
    assert_string_equal(kbr_store_revocation_reason_name(2), "cACompromise");
    assert_null(kbr_store_revocation_reason_name(7));
}

/* ---- device identity keys ---- */

/* The key's DER SubjectPublicKeyInfo as OpenSSL writes it, hashed. */
static void der_key_hex(EVP_PKEY *key, char hex[65])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);

    assert_true(n > 0);
    kbr_sha256_hex(der, (size_t)n, hex);
    OPENSSL_free(der);
}

static void test_public_key_name(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *compressed = EVP_PKEY_dup(ec);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char want[65], got[65], spelled[65];

    (void)state;
    der_key_hex(ec, want);
    assert_int_equal(kbr_store_public_key_sha256(ec, got), KBR_OK);
    assert_string_equal(got, want);
    /* The same key with its point compressed is another DER, and the same name. */
    assert_int_equal(EVP_PKEY_set_utf8_string_param(
                         compressed, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"),
                     1);
    der_key_hex(compressed, spelled);
    assert_string_not_equal(spelled, want);
    assert_int_equal(kbr_store_public_key_sha256(compressed, got), KBR_OK);
    assert_string_equal(got, want);
    der_key_hex(compressed, got);
    assert_string_equal(got, spelled); /* the caller's key is left as it was */
    der_key_hex(ed, want);
    assert_int_equal(kbr_store_public_key_sha256(ed, got), KBR_OK);
    assert_string_equal(got, want);
    assert_int_equal(kbr_store_public_key_sha256(NULL, got), KBR_ERR_CRYPTO);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(compressed);
    EVP_PKEY_free(ec);
}

/* kbr_store_spki_sha256 of key as a CSR or certificate would carry it, into hex. */
static void spki_name(EVP_PKEY *key, char hex[65])
{
    X509_PUBKEY *spki = NULL;

    assert_int_equal(X509_PUBKEY_set(&spki, key), 1);
    assert_int_equal(kbr_store_spki_sha256(spki, hex), KBR_OK);
    X509_PUBKEY_free(spki);
}

/*
 * A SubjectPublicKeyInfo whose BIT STRING claims one unused bit, which OpenSSL accepts when
 * that bit is 0: another spelling of the same key, and it must get the same name.  keylen is
 * the length of the key in the BIT STRING; keys are made until one ends in a 0 bit.
 */
static void unused_bits_spelling(const char *type, const char *curve, int keylen)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    EVP_PKEY *key = NULL;
    X509_PUBKEY *spki;
    char want[65], got[65];
    int n = 0;

    do {
        OPENSSL_free(der);
        EVP_PKEY_free(key);
        der = NULL;
        key = curve != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, type, curve)
                            : EVP_PKEY_Q_keygen(NULL, NULL, type);
        n = i2d_PUBKEY(key, &der);
        assert_true(n > keylen);
    } while (der[n - 1] & 1);
    assert_int_equal(kbr_store_public_key_sha256(key, want), KBR_OK);
    assert_int_equal(der[n - keylen - 1], 0);
    der[n - keylen - 1] = 1;
    p = der;
    spki = d2i_X509_PUBKEY(NULL, &p, n);
    assert_non_null(spki);
    assert_int_equal(kbr_store_spki_sha256(spki, got), KBR_OK);
    assert_string_equal(got, want);
    X509_PUBKEY_free(spki);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
}

/* Read from the encoded key, the name is the same whichever way the key was spelled. */
static void test_spki_name(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *other = EVP_PKEY_dup(ec);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char want[65], got[65];

    (void)state;
    assert_int_equal(kbr_store_public_key_sha256(ec, want), KBR_OK);
    spki_name(ec, got);
    assert_string_equal(got, want);
    assert_int_equal(EVP_PKEY_set_utf8_string_param(
                         other, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"),
                     1);
    spki_name(other, got);
    assert_string_equal(got, want);
    /* explicit curve parameters instead of the curve's name */
    assert_int_equal(EVP_PKEY_set_utf8_string_param(other, OSSL_PKEY_PARAM_EC_ENCODING,
                                                    OSSL_PKEY_EC_ENCODING_EXPLICIT),
                     1);
    spki_name(other, got);
    assert_string_equal(got, want);
    assert_int_equal(kbr_store_public_key_sha256(ed, want), KBR_OK);
    spki_name(ed, got);
    assert_string_equal(got, want);
    unused_bits_spelling("EC", "P-256", 65);
    unused_bits_spelling("ED25519", NULL, 32);
    assert_int_equal(kbr_store_spki_sha256(NULL, got), KBR_ERR_CRYPTO);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(other);
    EVP_PKEY_free(ec);
}

/* effect (one device.provision or device.rotate) with public_key_sha256 added; returned. */
static json_t *with_key(json_t *effect, const char *key_hex)
{
    json_object_set_new(json_array_get(effect, 0), "public_key_sha256", json_string(key_hex));
    return effect;
}

static void assert_key_owner(kbr_store *st, const char *key_hex, const char *product,
                             const char *serial)
{
    json_t *owner = NULL;

    assert_int_equal(kbr_store_device_by_public_key(st, key_hex, &owner), KBR_OK);
    assert_string_equal(str_at(owner, "product"), product);
    assert_string_equal(str_at(owner, "serial"), serial);
    json_decref(owner);
}

static int64_t count_where(const fixture *f, const char *table, const char *cond)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE %s", table, cond);
    return query_count(f, sql);
}

static void test_device_key_refused_at_commit(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL;
    char ka[65], kb[65], upper[65], cond[128];
    cert_ids d2;

    kbr_sha256_hex("key a", 5, ka);
    kbr_sha256_hex("key b", 5, kb);
    for (size_t i = 0; i < sizeof(upper); i++)
        upper[i] = (char)(ka[i] >= 'a' && ka[i] <= 'f' ? ka[i] - 'a' + 'A' : ka[i]);
    assert_int_equal(apply_json(st, batch_effect("L1", "lock", "factory:acme", 3), 3), KBR_OK);
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), ka),
                   4),
        KBR_OK);

    /* Another serial with the same key gets past no check at commit, and leaves nothing. */
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-2", "B1", "factory:acme", "d2"), ka),
                   5),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-2", &dev), KBR_ERR_NOT_FOUND);
    ids_of("d2", &d2);
    snprintf(cond, sizeof(cond), "fingerprint = '%s'", d2.fingerprint);
    assert_int_equal(count_where(f, "certificates", cond), 0);
    assert_int_equal(count_where(f, "device_events", "serial = 'SN-2'"), 0);
    assert_int_equal(count_where(f, "device_firmware", "serial = 'SN-2'"), 0);
    assert_int_equal(provisioned_in(st, "B1"), 1);
    /* Nor may a device of another product have it, in either spelling of the hex. */
    assert_int_equal(
        apply_json(
            st, with_key(provision_effect("lock", "SN-1", "L1", "factory:acme", "d3"), upper), 6),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(provisioned_in(st, "L1"), 0);
    assert_int_equal(count_where(f, "devices", "product = 'lock'"), 0);

    assert_key_owner(st, upper, "door", "SN-1");
    assert_int_equal(kbr_store_device_by_public_key(st, kb, &dev), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_store_device_by_public_key(st, "abc", &dev), KBR_ERR_INTERNAL);
    assert_null(dev);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_string_equal(str_at(dev, "public_key_sha256"), ka);
    json_decref(dev);
    kbr_store_close(st);
}

static void test_device_key_on_rotation(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *dev = NULL;
    char ka[65], kb[65], kc[65];

    kbr_sha256_hex("key a", 5, ka);
    kbr_sha256_hex("key b", 5, kb);
    kbr_sha256_hex("key c", 5, kc);
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), ka),
                   3),
        KBR_OK);
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-2", "B1", "factory:acme", "d2"), kb),
                   4),
        KBR_OK);
    /* A renewal with the device's own key; another device's key is refused, keeping SN-2 as
     * it was. */
    assert_int_equal(
        apply_json(st, with_key(rotate_effect("door", "SN-1", "d3", "2027-01-01T00:00:00Z"), ka),
                   5),
        KBR_OK);
    assert_int_equal(
        apply_json(st, with_key(rotate_effect("door", "SN-2", "d4", "2027-01-01T00:00:00Z"), ka),
                   6),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(count_where(f, "certificates", "device_serial = 'SN-2'"), 1);
    assert_int_equal(
        count_where(f, "certificates", "device_serial = 'SN-2' AND superseded_at IS NULL"), 1);
    assert_int_equal(count_where(f, "device_events", "serial = 'SN-2' AND kind = 'rotated'"), 0);
    assert_key_owner(st, kb, "door", "SN-2");
    /* A device that takes a new key keeps its old one: its old certificates are still valid. */
    assert_int_equal(
        apply_json(st, with_key(rotate_effect("door", "SN-2", "d5", "2027-02-01T00:00:00Z"), kc),
                   7),
        KBR_OK);
    assert_key_owner(st, kc, "door", "SN-2");
    assert_key_owner(st, kb, "door", "SN-2");
    assert_int_equal(kbr_store_device_get(st, "door", "SN-2", &dev), KBR_OK);
    assert_string_equal(str_at(dev, "public_key_sha256"), kc);
    json_decref(dev);
    assert_int_equal(
        apply_json(st, with_key(provision_effect("door", "SN-4", "B1", "factory:acme", "d8"), kb),
                   10),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, with_key(rotate_effect("door", "SN-1", "d9", "2027-02-02T00:00:00Z"), kb),
                   11),
        KBR_ERR_STORE_CONSTRAINT);
    /* Effects recorded before keys were named carry none: no key, no rule. */
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-3", "B1", "factory:acme", "d6"), 8), KBR_OK);
    assert_int_equal(apply_json(st, rotate_effect("door", "SN-3", "d7", "2027-03-01T00:00:00Z"), 9),
                     KBR_OK);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-3", &dev), KBR_OK);
    assert_true(json_is_null(json_object_get(dev, "public_key_sha256")));
    json_decref(dev);
    kbr_store_close(st);
}

/*
 * The version 1 definitions of the tables the step to version 2 changes or reads; opening
 * the store creates the others as version 1 did.
 */
static const char v1_schema[] =
    "CREATE TABLE meta(schema_version INTEGER NOT NULL);"
    "CREATE TABLE keys("
    " name TEXT PRIMARY KEY, purpose TEXT NOT NULL, algorithm TEXT NOT NULL,"
    " products TEXT NOT NULL, owner TEXT, hsm_label TEXT, hsm_id TEXT, public_key_pem TEXT,"
    " state TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL, retired_at TEXT,"
    " audit_seq INTEGER NOT NULL);"
    "CREATE TABLE batches("
    " batch TEXT PRIMARY KEY, product TEXT NOT NULL, factory TEXT NOT NULL,"
    " quantity INTEGER NOT NULL CHECK(quantity >= 1), markets TEXT NOT NULL,"
    " provisioned INTEGER NOT NULL DEFAULT 0 CHECK(provisioned BETWEEN 0 AND quantity),"
    " created_at TEXT NOT NULL, created_by TEXT NOT NULL, audit_seq INTEGER NOT NULL);"
    "CREATE TABLE firmware_histories("
    " id INTEGER PRIMARY KEY, product TEXT NOT NULL, versions TEXT NOT NULL,"
    " UNIQUE(product, versions));"
    "CREATE TABLE devices("
    " product TEXT NOT NULL, serial TEXT NOT NULL, batch TEXT REFERENCES batches(batch),"
    " factory TEXT, firmware_version TEXT, csr_sha256 TEXT, provisioned_at TEXT NOT NULL,"
    " current_firmware TEXT, current_firmware_at TEXT,"
    " history INTEGER REFERENCES firmware_histories(id),"
    " audit_seq INTEGER NOT NULL, PRIMARY KEY(product, serial)) WITHOUT ROWID;"
    "CREATE TABLE certificates("
    " id INTEGER PRIMARY KEY,"
    " owner_kind TEXT NOT NULL CHECK(owner_kind IN ('key', 'device')),"
    " key_name TEXT REFERENCES keys(name), product TEXT, device_serial TEXT,"
    " serial_number TEXT NOT NULL, fingerprint TEXT NOT NULL UNIQUE, pem TEXT NOT NULL,"
    " chain_pem TEXT NOT NULL, not_after TEXT NOT NULL, issued_at TEXT NOT NULL,"
    " superseded_at TEXT, issuer_key TEXT REFERENCES keys(name), audit_seq INTEGER NOT NULL,"
    " CHECK((owner_kind = 'key' AND key_name IS NOT NULL AND product IS NULL"
    "        AND device_serial IS NULL)"
    "    OR (owner_kind = 'device' AND key_name IS NULL AND product IS NOT NULL"
    "        AND device_serial IS NOT NULL)),"
    " FOREIGN KEY(product, device_serial) REFERENCES devices(product, serial));"
    "CREATE INDEX certificates_device ON certificates(product, device_serial);"
    "CREATE TABLE device_firmware("
    " id INTEGER PRIMARY KEY, product TEXT NOT NULL, serial TEXT NOT NULL,"
    " version TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('factory', 'installed', 'failed')),"
    " at TEXT NOT NULL, campaign TEXT, audit_seq INTEGER NOT NULL,"
    " FOREIGN KEY(product, serial) REFERENCES devices(product, serial));"
    "INSERT INTO meta(schema_version) VALUES (1);"
    "INSERT INTO keys(name, purpose, algorithm, products, created_at, audit_seq)"
    " VALUES ('ca-door', 'device-identity-ca', 'ecdsa-p256', '[\"door\"]',"
    " '2026-03-01T10:00:00Z', 1);"
    "INSERT INTO batches(batch, product, factory, quantity, markets, provisioned, created_at,"
    " created_by, audit_seq) VALUES ('B1', 'door', 'factory:acme', 10, '[\"DE\"]', 4,"
    " '2026-03-01T10:00:00Z', 'security:bootstrap', 2);";

/* A self-signed certificate of key, PEM (caller frees). */
static char *cert_pem(EVP_PKEY *key, long serial)
{
    X509 *x = X509_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *pem;
    long len;

    assert_int_equal(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"dev", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    PEM_write_bio_X509(b, x);
    len = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)len);
    BIO_free(b);
    X509_free(x);
    return pem;
}

/* A version 1 device row provisioned by entry seq, with one certificate per pem (the last
 * current, the others superseded). */
static void v1_device(sqlite3 *db, const char *serial, int64_t seq, const char *const *pems,
                      size_t n)
{
    sqlite3_stmt *stmt = NULL;
    char *sql = sqlite3_mprintf(
        "INSERT INTO devices(product, serial, batch, factory, firmware_version, provisioned_at,"
        " current_firmware, current_firmware_at, audit_seq) VALUES ('door', %Q, 'B1',"
        " 'factory:acme', '1.0', '2026-03-02T08:00:00Z', '1.0', '2026-03-02T08:00:00Z', %lld)",
        serial, (long long)seq);

    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_free(sql);
    for (size_t i = 0; i < n; i++) {
        char fp[65], tag[64];

        snprintf(tag, sizeof(tag), "%s/%zu", serial, i);
        kbr_sha256_hex(tag, strlen(tag), fp);
        assert_int_equal(
            sqlite3_prepare_v2(db,
                               "INSERT INTO certificates(owner_kind, product, device_serial,"
                               " serial_number, fingerprint, pem, chain_pem, not_after, issued_at,"
                               " superseded_at, issuer_key, audit_seq) VALUES ('device', 'door',"
                               " ?1, ?2, ?2, ?3, '', '2036-01-01T00:00:00Z',"
                               " '2026-03-02T08:00:00Z', ?4, 'ca-door', ?5)",
                               -1, &stmt, NULL),
            SQLITE_OK);
        sqlite3_bind_text(stmt, 1, serial, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, fp, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, pems[i], -1, SQLITE_STATIC);
        if (i + 1 < n)
            sqlite3_bind_text(stmt, 4, "2026-06-01T00:00:00Z", -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 5, seq);
        assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
        sqlite3_finalize(stmt);
    }
}

static void v1_store(const fixture *f, EVP_PKEY *clone, EVP_PKEY *old, EVP_PKEY *cur)
{
    sqlite3 *db = NULL;
    char *clone_pem = cert_pem(clone, 1), *old_pem = cert_pem(old, 2), *cur_pem = cert_pem(cur, 3);
    const char *sn9[] = {clone_pem}, *sn2[] = {clone_pem}, *sn3[] = {old_pem, cur_pem};
    const char *sn4[] = {"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"};

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    /* Two devices with one key, as version 1 let happen: SN-9 was provisioned first. */
    v1_device(db, "SN-9", 3, sn9, 1);
    v1_device(db, "SN-2", 4, sn2, 1);
    v1_device(db, "SN-3", 5, sn3, 2);
    v1_device(db, "SN-4", 6, sn4, 1);
    /* An install an older broker recorded twice, and one more fact. */
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO device_firmware(product, serial, version, status, at, campaign,"
                     " audit_seq) VALUES"
                     " ('door', 'SN-9', '1.0', 'factory', '2026-03-02T08:00:00Z', NULL, 3),"
                     " ('door', 'SN-9', '1.1', 'installed', '2026-07-01T00:00:00Z', 'c', 7),"
                     " ('door', 'SN-9', '1.1', 'installed', '2026-07-01T00:00:00Z', 'c', 8),"
                     " ('door', 'SN-9', '1.1', 'failed', '2026-06-01T00:00:00Z', 'c', 7)",
                     NULL, NULL, NULL),
        SQLITE_OK);
    /* a checkpoint an older broker signed with its ECDSA audit key */
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE checkpoints(size INTEGER PRIMARY KEY,"
                                  " root_hash TEXT NOT NULL, time TEXT NOT NULL,"
                                  " signature_b64 TEXT NOT NULL, audit_seq INTEGER NOT NULL);"
                                  "INSERT INTO checkpoints(size, root_hash, time, signature_b64,"
                                  " audit_seq) VALUES (8, '"
                                  "00000000000000000000000000000000"
                                  "00000000000000000000000000000000', '2026-07-01T00:00:00Z',"
                                  " 'c2ln', 9)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    free(clone_pem);
    free(old_pem);
    free(cur_pem);
}

/*
 * What version 3 changes, as an older broker left it: a registered key with its public key,
 * a token, and one challenge of SN-9 answered by two keys (what version 3 refuses).
 */
static void v1_custody(const fixture *f, EVP_PKEY *pub)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    assert_int_equal(PEM_write_bio_PUBKEY(b, pub), 1);
    len = BIO_get_mem_data(b, &data);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO keys(name, purpose, algorithm, products,"
                                        " hsm_label, public_key_pem, created_at, audit_seq) VALUES"
                                        " ('dbg-door', 'debug-auth', 'ecdsa-p256', '[\"door\"]',"
                                        " 'door-dbg', ?1, '2026-03-01T10:00:00Z', 8)",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(stmt, 1, data, (int)len, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
    sqlite3_finalize(stmt);
    assert_int_equal(
        sqlite3_exec(
            db,
            "CREATE TABLE tokens(jti TEXT PRIMARY KEY, sub TEXT NOT NULL, scope TEXT NOT NULL,"
            " issued_by TEXT, issued_at TEXT NOT NULL, not_before TEXT, expires_at TEXT NOT NULL,"
            " cnf_x5t TEXT, revoked_at TEXT, revoke_reason TEXT, audit_seq INTEGER NOT NULL);"
            "INSERT INTO tokens(jti, sub, scope, issued_at, expires_at, audit_seq) VALUES"
            " ('0123456789abcdef0123456789abcdef', 'ci:door', '{\"ops\":[\"sign\"]}',"
            " '2026-03-01T10:00:00Z', '2027-03-01T10:00:00Z', 4);"
            "CREATE TABLE debug_challenges(key TEXT NOT NULL REFERENCES keys(name),"
            " challenge_sha256 TEXT NOT NULL, product TEXT NOT NULL, serial TEXT NOT NULL,"
            " at TEXT NOT NULL, audit_seq INTEGER NOT NULL, PRIMARY KEY(key, challenge_sha256),"
            " FOREIGN KEY(product, serial) REFERENCES devices(product, serial));"
            "INSERT INTO debug_challenges VALUES ('ca-door', 'aa', 'door', 'SN-9',"
            " '2026-04-01T09:00:00Z', 9), ('dbg-door', 'aa', 'door', 'SN-9',"
            " '2026-04-01T09:01:00Z', 10);",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    BIO_free(b);
}

/* ---- the token issuer's keys ---- */

#define KID_1 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
#define KID_2 "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"
#define KID_3 "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC3"

static char *pubkey_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *pem;
    long len;

    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    len = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)len);
    assert_non_null(pem);
    BIO_free(b);
    return pem;
}

/* issuer.rotate: kid, label, key and replaces (NULL: none). */
static json_t *issuer_effect(const char *kid, const char *label, EVP_PKEY *key,
                             const char *replaces)
{
    char *pem = pubkey_pem(key);
    json_t *fx =
        json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s?}]", "type", "issuer.rotate", "kid", kid, "hsm_label",
                  label, "public_key_pem", pem, "at", "2026-05-01T10:00:00Z", "replaces", replaces);

    assert_non_null(fx);
    free(pem);
    return fx;
}

/* token.issue of jti signed by kid (NULL: no kid). */
static json_t *issue_effect(const char *jti, const char *kid)
{
    json_t *fx = json_pack("[{s:s,s:s,s:s,s:{s:[s]},s:s,s:s,s:s,s:s?}]", "type", "token.issue",
                           "jti", jti, "sub", "ci:door", "scope", "ops", "sign", "issued_at",
                           "2026-05-01T10:00:00Z", "not_before", "2026-05-01T10:00:00Z",
                           "expires_at", "2026-05-02T10:00:00Z", "kid", kid);

    assert_non_null(fx);
    return fx;
}

static const char *token_kid(kbr_store *st, const char *jti)
{
    static char kid[64];
    json_t *rows = NULL, *row;
    size_t i;

    kid[0] = '\0';
    assert_int_equal(kbr_store_token_list(st, NULL, NULL, false, 0, &rows), KBR_OK);
    json_array_foreach(rows, i, row)
    {
        const json_t *k = json_object_get(row, "kid");
        if (strcmp(str_at(row, "jti"), jti) == 0)
            snprintf(kid, sizeof(kid), "%s", json_is_string(k) ? json_string_value(k) : "null");
    }
    json_decref(rows);
    return kid;
}

/*
 * One issuer key is current; a rotation names the key it replaces, tokens name the key that
 * signed them and that is the current one, and the first key recorded is the kid of the
 * tokens recorded before keys were (an older broker's log had one).
 */
static void test_issuer_rotation(void **state)
{
    fixture *f = *state;
    EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256"), *k3 = EVP_EC_gen("P-256");
    json_t *keys = NULL;
    kbr_store *st = open_ok(f);

    /* no issuer key recorded yet: tokens carry no kid, and may not name one */
    assert_int_equal(apply_json(st, issue_effect("t-legacy", NULL), 1), KBR_OK);
    assert_int_equal(apply_json(st, issue_effect("t-early", KID_1), 2), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_issuer_keys(st, &keys), KBR_OK);
    assert_int_equal(json_array_size(keys), 0);
    json_decref(keys);
    /* the first key must replace nothing, and becomes the kid of what came before */
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer", k1, KID_3), 3),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer", k1, NULL), 4), KBR_OK);
    assert_string_equal(token_kid(st, "t-legacy"), KID_1);
    /* from now on every token names the current key */
    assert_int_equal(apply_json(st, issue_effect("t-none", NULL), 5), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issue_effect("t-other", KID_2), 6), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issue_effect("t-a", KID_1), 7), KBR_OK);
    /* a rotation replaces the current key, and only it */
    assert_int_equal(apply_json(st, issuer_effect(KID_2, "kbr/issuer/2", k2, NULL), 8),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_2, "kbr/issuer/2", k2, KID_3), 9),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_2, "kbr/issuer/2", k2, KID_1), 10), KBR_OK);
    /* a second rotation from the same key lost the race */
    assert_int_equal(apply_json(st, issuer_effect(KID_3, "kbr/issuer/3", k3, KID_1), 11),
                     KBR_ERR_STORE_CONSTRAINT);
    /* the replaced key signs no more tokens */
    assert_int_equal(apply_json(st, issue_effect("t-late", KID_1), 12), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issue_effect("t-b", KID_2), 13), KBR_OK);
    /* a kid, label or public key is an issuer key once */
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer/3", k3, KID_2), 14),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_3, "kbr/issuer", k3, KID_2), 15),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, issuer_effect(KID_3, "kbr/issuer/3", k1, KID_2), 16),
                     KBR_ERR_STORE_CONSTRAINT);
    kbr_store_close(st);

    /* as recorded, after a reopen */
    st = open_ok(f);
    assert_string_equal(token_kid(st, "t-legacy"), KID_1);
    assert_string_equal(token_kid(st, "t-a"), KID_1);
    assert_string_equal(token_kid(st, "t-b"), KID_2);
    assert_string_equal(token_kid(st, "t-late"), "");
    assert_int_equal(kbr_store_issuer_keys(st, &keys), KBR_OK);
    assert_int_equal(json_array_size(keys), 2);
    assert_string_equal(str_at(json_array_get(keys, 0), "kid"), KID_1);
    assert_string_equal(str_at(json_array_get(keys, 0), "replaced_at"), "2026-05-01T10:00:00Z");
    assert_int_equal(int_at(json_array_get(keys, 0), "audit_seq"), 4);
    assert_string_equal(str_at(json_array_get(keys, 1), "kid"), KID_2);
    assert_string_equal(str_at(json_array_get(keys, 1), "hsm_label"), "kbr/issuer/2");
    assert_true(json_is_null(json_object_get(json_array_get(keys, 1), "replaced_at")));
    assert_int_equal(strlen(str_at(json_array_get(keys, 1), "public_key_sha256")), 64);
    assert_non_null(strstr(str_at(json_array_get(keys, 1), "public_key_pem"), "PUBLIC KEY"));
    json_decref(keys);
    kbr_store_close(st);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k3);
}

/* What the rules of issuer.rotate refuse, as a malformed effect: nothing of it is kept. */
static void test_issuer_rotate_malformed(void **state)
{
    fixture *f = *state;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    json_t *fx;
    kbr_store *st = open_ok(f);
    json_t *keys = NULL;
    static const char *const labels[] = {"kbr/key/fw-a",   "kbr/issuer/", "kbr/issuerX",
                                         "kbr/issuer/a b", "fw-a",        "kbr/audit"};

    /* a kid is 43 base64url characters */
    assert_int_equal(apply_json(st,
                                issuer_effect("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                              "kbr/issuer", k, NULL),
                                1),
                     KBR_ERR_INTERNAL);
    assert_int_equal(apply_json(st,
                                issuer_effect("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+1",
                                              "kbr/issuer", k, NULL),
                                2),
                     KBR_ERR_INTERNAL);
    /* only the broker's issuer labels */
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (apply_json(st, issuer_effect(KID_1, labels[i], k, NULL), (int64_t)i + 3) !=
            KBR_ERR_INTERNAL)
            fail_msg("label %s was not refused", labels[i]);
    /* a key that replaces itself, and a PEM without a key */
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer", k, KID_1), 10),
                     KBR_ERR_INTERNAL);
    fx = issuer_effect(KID_1, "kbr/issuer", k, NULL);
    json_object_set_new(json_array_get(fx, 0), "public_key_pem", json_string("PEM"));
    assert_int_equal(apply_json(st, fx, 11), KBR_ERR_INTERNAL);
    fx = issuer_effect(KID_1, "kbr/issuer", k, NULL);
    json_object_del(json_array_get(fx, 0), "at");
    assert_int_equal(apply_json(st, fx, 12), KBR_ERR_INTERNAL);
    /* a token's kid has the same form */
    assert_int_equal(apply_json(st, issue_effect("t", "not-a-kid"), 13), KBR_ERR_INTERNAL);
    assert_int_equal(kbr_store_issuer_keys(st, &keys), KBR_OK);
    assert_int_equal(json_array_size(keys), 0);
    json_decref(keys);
    /* well formed, it is recorded */
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer", k, NULL), 14), KBR_OK);
    kbr_store_close(st);
    EVP_PKEY_free(k);
}

/* Two registry entries that name one HSM object cannot both stay: the store says which. */
static void test_migrate_refuses_one_object_twice(void **state)
{
    fixture *f = *state;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};
    sqlite3 *db = NULL;

    if (kbt_pg())
        skip(); /* SQLite stores: their file and the steps from version 1 */

    v1_store(f, k, k, k);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO keys(name, purpose, algorithm, products, hsm_label,"
                                  " created_at, audit_seq) VALUES ('fw-acme', 'firmware-signing',"
                                  " 'ecdsa-p256', '[\"acme\"]', 'globex-root',"
                                  " '2026-03-01T10:00:00Z', 3), ('fw-globex', 'device-identity-ca',"
                                  " 'ecdsa-p256', '[\"globex\"]', 'globex-root',"
                                  " '2026-03-01T10:00:00Z', 4)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_ERR_STORE);
    assert_null(st);
    assert_non_null(strstr(msg.text, "\"fw-acme\" and \"fw-globex\" name the same HSM object"));
    EVP_PKEY_free(k);
}

static void assert_device_key(kbr_store *st, const char *serial, const char *want)
{
    json_t *dev = NULL;
    const json_t *v;

    assert_int_equal(kbr_store_device_get(st, "door", serial, &dev), KBR_OK);
    v = json_object_get(dev, "public_key_sha256");
    if (want == NULL)
        assert_true(json_is_null(v));
    else
        assert_string_equal(json_string_value(v), want);
    json_decref(dev);
}

static void test_migrate_v1_store(void **state)
{
    fixture *f = *state;
    EVP_PKEY *clone = EVP_EC_gen("P-256"), *old = EVP_EC_gen("P-256"), *cur = EVP_EC_gen("P-256");
    EVP_PKEY *fresh = EVP_EC_gen("P-384");
    char clone_hex[65], old_hex[65], cur_hex[65], fresh_hex[65];
    json_t *history = NULL;
    kbr_store *st;

    if (kbt_pg())
        skip(); /* SQLite stores: their file and the steps from version 1 */

    der_key_hex(clone, clone_hex);
    der_key_hex(old, old_hex);
    der_key_hex(cur, cur_hex);
    der_key_hex(fresh, fresh_hex);
    v1_store(f, clone, old, cur);
    v1_custody(f, cur);
    st = open_ok(f);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 9);
    assert_int_equal(query_count(f, "SELECT count(*) FROM meta WHERE schema_version <> 9"), 0);
    /* version 7: checkpoints keyed by their entry, those of an older broker without a key */
    assert_int_equal(count_where(f, "checkpoints", "audit_seq = 9 AND size = 8 AND key_id IS NULL"),
                     1);
    /* version 3: keys named by their public key, and a device's challenge answered once */
    assert_int_equal(count_where(f, "keys", "public_key_sha256 IS NOT NULL"), 1);
    assert_int_equal(query_count(f, "SELECT count(*) FROM keys WHERE name = 'dbg-door' AND"
                                    " length(public_key_sha256) = 64"),
                     1);
    assert_int_equal(count_where(f, "debug_challenges", "serial = 'SN-9'"), 1);
    assert_int_equal(count_where(f, "debug_challenges", "key = 'ca-door' AND audit_seq = 9"), 1);
    assert_int_equal(count_where(f, "tokens", "parent_jti IS NULL AND orphan = 0"), 1);
    /* version 5: the token an older broker issued waits for its issuer key to be recorded */
    assert_int_equal(count_where(f, "tokens", "kid IS NULL"), 1);
    assert_int_equal(count_where(f, "issuer_keys", "1"), 0);
    /* Current keys from the current certificates, the clone's too, so it shows; of two
     * devices with one key the first owns it, and a device owns its superseded keys. */
    assert_device_key(st, "SN-9", clone_hex);
    assert_device_key(st, "SN-2", clone_hex);
    assert_device_key(st, "SN-3", cur_hex);
    assert_device_key(st, "SN-4", NULL);
    assert_key_owner(st, clone_hex, "door", "SN-9");
    assert_key_owner(st, old_hex, "door", "SN-3");
    assert_key_owner(st, cur_hex, "door", "SN-3");
    /* Each fact of the firmware history once, the first copy kept. */
    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-9", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 3);
    assert_int_equal(int_at(json_array_get(history, 2), "audit_seq"), 7);
    json_decref(history);

    /* The migrated store takes new devices under the new rules, their chain the CA's. */
    assert_int_equal(apply_json(st, key_cert_effect("ca-door", CA_TAG, "2026-04-01T00:00:00Z"), 19),
                     KBR_OK);
    assert_int_equal(
        apply_json(
            st, with_key(provision_effect("door", "SN-5", "B1", "factory:acme", "d5"), fresh_hex),
            20),
        KBR_OK);
    assert_int_equal(
        apply_json(
            st, with_key(provision_effect("door", "SN-6", "B1", "factory:acme", "d6"), clone_hex),
            21),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st,
                   with_key(provision_effect("door", "SN-7", "B1", "factory:acme", "d7"), old_hex),
                   22),
        KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(provisioned_in(st, "B1"), 5);
    assert_device_key(st, "SN-5", fresh_hex);
    /* the issuer key that signed it, once recorded, is its kid */
    assert_int_equal(apply_json(st, issuer_effect(KID_1, "kbr/issuer", cur, NULL), 23), KBR_OK);
    assert_string_equal(token_kid(st, "0123456789abcdef0123456789abcdef"), KID_1);
    kbr_store_close(st);
    /* Opening again changes nothing. */
    st = open_ok(f);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 9);
    assert_device_key(st, "SN-9", clone_hex);
    assert_int_equal(count_where(f, "device_firmware", "serial = 'SN-9'"), 3);
    kbr_store_close(st);
    EVP_PKEY_free(fresh);
    EVP_PKEY_free(cur);
    EVP_PKEY_free(old);
    EVP_PKEY_free(clone);
}

/* ---- debug unlocks and firmware reports ---- */

#define KEY_DEBUG(name)                                                                            \
    "[{\"type\": \"key.create\", \"name\": \"" name "\", \"purpose\": \"debug-auth\","             \
    " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\"],"                                    \
    " \"created_at\": \"2026-03-01T10:00:00Z\"}]"

/* ---- keys delivered to devices ---- */

#define KEY_OTA(name)                                                                              \
    "[{\"type\": \"key.create\", \"name\": \"" name "\", \"purpose\": \"ota-encryption\","         \
    " \"algorithm\": \"ecdh-p256\", \"products\": [\"door\"],"                                     \
    " \"created_at\": \"2026-03-01T10:00:00Z\"}]"

/* A key.deliver of key to door/serial, for the device key named by recipient, in the record
 * at seq, with the COSE_Encrypt body as the record's document. */
static kbr_err deliver(kbr_store *st, const char *key, const char *serial, const char *recipient,
                       const char *body, int64_t seq)
{
    kbr_effects *fx = NULL;
    char sha[65];
    kbr_err err;

    kbr_sha256_hex(body, strlen(body), sha);
    assert_int_equal(kbr_effects_new(&fx), KBR_OK);
    assert_int_equal(kbr_effects_add_document(fx, body, strlen(body), sha), KBR_OK);
    assert_int_equal(
        kbr_effects_add(fx,
                        &(kbr_effect){.type = KBR_EFFECT_KEY_DELIVER,
                                      .u.key_deliver = {.key = key,
                                                        .product = "door",
                                                        .serial = serial,
                                                        .recipient_public_key_sha256 = recipient,
                                                        .cose_sha256 = sha,
                                                        .delivered_by = "factory:acme",
                                                        .at = "2026-03-02T08:00:00Z"}}),
        KBR_OK);
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    err = kbr_store_apply(st, fx, seq);
    assert_int_equal(kbt_entry_insert(st, seq, &(kbt_entry){.op = "provision"}), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    kbr_effects_free(fx);
    return err;
}

/*
 * A delivery is the device's, to its own identity key, of an ota-encryption key, once; its
 * COSE_Encrypt is kept whole and the device's record lists it.  What the rules refuse keeps
 * nothing, not even the document.
 */
static void test_key_deliver(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *prov = provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), *dev = NULL, *one;
    char devkey[65], other[65];
    unsigned char *body = NULL;
    size_t len = 0;
    int64_t seq = 0;

    kbr_sha256_hex("device key", 10, devkey);
    kbr_sha256_hex("another key", 11, other);
    json_object_set_new(json_array_get(prov, 0), "public_key_sha256", json_string(devkey));
    assert_int_equal(apply_json(st, prov, 3), KBR_OK);
    assert_int_equal(apply(st, KEY_OTA("ota-door"), 4), KBR_OK);
    assert_int_equal(apply(st, KEY_DEBUG("dbg-door"), 5), KBR_OK);

    /* another key than the device's, a key of another purpose, an unknown key or device */
    assert_int_equal(deliver(st, "ota-door", "SN-1", other, "c0", 6), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(deliver(st, "dbg-door", "SN-1", devkey, "c0", 7), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(deliver(st, "no-such", "SN-1", devkey, "c0", 8), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(deliver(st, "ota-door", "SN-9", devkey, "c0", 9), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(query_count(f, "SELECT count(*) FROM key_deliveries"), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM documents"), 0);

    assert_int_equal(deliver(st, "ota-door", "SN-1", devkey, "cose-1", 10), KBR_OK);
    /* once per device and key: a second delivery of it is refused */
    assert_int_equal(deliver(st, "ota-door", "SN-1", devkey, "cose-2", 11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_store_device_get(st, "door", "SN-1", &dev), KBR_OK);
    assert_int_equal(json_array_size(json_object_get(dev, "deliveries")), 1);
    one = json_array_get(json_object_get(dev, "deliveries"), 0);
    assert_string_equal(str_at(one, "key"), "ota-door");
    assert_string_equal(str_at(one, "recipient_public_key_sha256"), devkey);
    assert_string_equal(str_at(one, "delivered_by"), "factory:acme");
    assert_int_equal(json_integer_value(json_object_get(one, "audit_seq")), 10);
    assert_int_equal(kbr_store_document_get(st, str_at(one, "cose_sha256"), &body, &len, &seq),
                     KBR_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(body, "cose-1", 6);
    assert_int_equal(seq, 10);
    free(body);
    json_decref(dev);
    /* the delivered key's custody counts it; the product now relates to it by delivery */
    assert_int_equal(query_count(f, "SELECT count FROM key_operations WHERE key = 'ota-door'"
                                    " AND op = 'key.deliver' AND sub = 'factory:acme'"),
                     1);
    assert_int_equal(query_count(f, "SELECT count(*) FROM key_relations WHERE key = 'ota-door'"
                                    " AND role = 'ota-delivery' AND product = 'door'"),
                     1);
    kbr_store_close(st);
}

/* A store of version 7 (before deliveries) is taken to version 9 when it is opened, on
 * either back end: key_deliveries and its counter trigger are made, and they count. */
static void test_v7_store_gains_deliveries(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);

    kbr_store_close(st);
    store_back_to_v7(f);
    st = open_ok(f);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 9);
    kbr_store_close(st);
    /* the table is back, with its trigger: the delivery tests pass on the migrated store */
    test_key_deliver(state);
}

static json_t *sign_effect(const char *version)
{
    char digest[65];

    kbr_sha256_hex(version, strlen(version), digest);
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:[]}]", "type", "firmware.sign", "product", "door",
                     "version", version, "digest", digest, "signed_at", "2026-04-01T00:00:00Z",
                     "components");
}

/*
 * A device certificate's chain is its issuer's certificate and chain, named by fingerprint; an
 * SBOM is a document the record stores and the build names.
 */
static void test_device_chain_and_documents(void **state)
{
    static const char doc[] = "{\"bomFormat\":\"CycloneDX\"}";
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    json_t *unknown = provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), *build = NULL;
    kbr_effects *fx = NULL;
    char chain[512], want[512], sha[65];
    cert_ids ca;

    ids_of(CA_TAG, &ca);
    json_object_set_new(json_array_get(unknown, 0), "issuer_fingerprint", json_string(ZEROS_OF_64));
    assert_int_equal(apply_json(st, unknown, 3), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 4), KBR_OK);
    query_text(f, "SELECT chain_pem FROM certificates WHERE owner_kind = 'device'", chain,
               sizeof(chain));
    snprintf(want, sizeof(want), "%s%s", ca.pem, CA_CHAIN);
    assert_string_equal(chain, want);

    /* a build naming an SBOM the store does not have is refused; with it, it is kept */
    kbr_sha256_hex(doc, strlen(doc), sha);
    build = sign_effect("1.3.0");
    json_object_set_new(json_array_get(build, 0), "sbom_sha256", json_string(sha));
    assert_int_equal(kbr_effects_from_json(build, &fx), KBR_OK);
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbr_store_apply(st, fx, 5), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(kbr_effects_add_document(fx, doc, strlen(doc), sha), KBR_OK);
    assert_int_equal(kbr_store_apply(st, fx, 5), KBR_OK);
    assert_int_equal(kbt_entry_insert(st, 5, &(kbt_entry){.op = "sign"}), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    kbr_effects_free(fx);
    json_decref(build);
    assert_int_equal(kbr_store_firmware_get(st, "door", "1.3.0", &build), KBR_OK);
    assert_string_equal(str_at(build, "sbom_sha256"), sha);
    json_decref(build);
    assert_int_equal(count_where(f, "documents", "audit_seq = 5"), 1);
    kbr_store_close(st);
}

/*
 * factory_store plus debug keys dbg-door (seq 3) and dbg-lab (seq 4), doors SN-1 (seq 5) and
 * SN-2 (seq 6) provisioned with factory image 1.2.0, and signed builds 1.3.0 (seq 7) and
 * 1.4.0 (seq 8).
 */
static kbr_store *field_store(const fixture *f)
{
    kbr_store *st = factory_store(f);

    assert_int_equal(apply(st, KEY_DEBUG("dbg-door"), 3), KBR_OK);
    assert_int_equal(apply(st, KEY_DEBUG("dbg-lab"), 4), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-1", "B1", "factory:acme", "d1"), 5), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("door", "SN-2", "B1", "factory:acme", "d2"), 6), KBR_OK);
    assert_int_equal(apply_json(st, sign_effect("1.3.0"), 7), KBR_OK);
    assert_int_equal(apply_json(st, sign_effect("1.4.0"), 8), KBR_OK);
    return st;
}

/* The digests a debug.authorize effect for challenge tag carries. */
typedef struct {
    char challenge[65], message[65], signature[65];
} debug_ids;

static void debug_ids_of(const char *tag, debug_ids *ids)
{
    char in[64];

    kbr_sha256_hex(tag, strlen(tag), ids->challenge);
    snprintf(in, sizeof(in), "message:%s", tag);
    kbr_sha256_hex(in, strlen(in), ids->message);
    snprintf(in, sizeof(in), "signature:%s", tag);
    kbr_sha256_hex(in, strlen(in), ids->signature);
}

static json_t *debug_effect(const char *key, const char *product, const char *serial,
                            const char *tag)
{
    debug_ids ids;

    debug_ids_of(tag, &ids);
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}]", "type",
                     "debug.authorize", "key", key, "product", product, "serial", serial,
                     "challenge_sha256", ids.challenge, "permissions", "00FF", "ticket", "RMA-7",
                     "principal", "security:alice", "message_sha256", ids.message,
                     "signature_sha256", ids.signature, "at", "2026-04-01T09:00:00Z", "expires_at",
                     "2026-04-01T09:15:00+00:00");
}

static bool challenge_used(kbr_store *st, const char *serial, const char *challenge)
{
    bool used = false;

    assert_int_equal(kbr_store_debug_challenge_used(st, "door", serial, challenge, &used), KBR_OK);
    return used;
}

static void test_debug_authorize(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *events = NULL;
    const json_t *ev, *detail;
    debug_ids c1;
    char upper[65];

    debug_ids_of("c1", &c1);
    assert_false(challenge_used(st, "SN-1", c1.challenge));
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c1"), 10), KBR_OK);

    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 2);
    ev = json_array_get(events, 1);
    detail = json_object_get(ev, "detail");
    assert_string_equal(str_at(ev, "kind"), "debug-auth");
    assert_string_equal(str_at(ev, "at"), "2026-04-01T09:00:00Z");
    assert_int_equal(int_at(ev, "audit_seq"), 10);
    assert_int_equal(json_object_size(detail), 8);
    assert_string_equal(str_at(detail, "key"), "dbg-door");
    assert_string_equal(str_at(detail, "ticket"), "RMA-7");
    assert_string_equal(str_at(detail, "principal"), "security:alice");
    assert_string_equal(str_at(detail, "permissions"), "00ff");
    assert_string_equal(str_at(detail, "challenge_sha256"), c1.challenge);
    assert_string_equal(str_at(detail, "message_sha256"), c1.message);
    assert_string_equal(str_at(detail, "signature_sha256"), c1.signature);
    assert_string_equal(str_at(detail, "expires_at"), "2026-04-01T09:15:00Z");
    json_decref(events);

    /* The check before signing sees the answer in either spelling of the hex, per device. */
    assert_true(challenge_used(st, "SN-1", c1.challenge));
    for (size_t i = 0; i < sizeof(upper); i++)
        upper[i] =
            (char)(c1.challenge[i] >= 'a' && c1.challenge[i] <= 'f' ? c1.challenge[i] - 'a' + 'A'
                                                                    : c1.challenge[i]);
    assert_true(challenge_used(st, "SN-1", upper));
    assert_false(challenge_used(st, "SN-2", c1.challenge));
    assert_false(challenge_used(st, "SN-1", c1.message));
    kbr_store_close(st);
}

static void test_debug_challenge_once_per_device(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    bool used = false;
    debug_ids c1;

    debug_ids_of("c1", &c1);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c1"), 10), KBR_OK);
    /*
     * A challenge is the device's: a replay conflicts whichever key answers it, and another
     * device's challenge that happens to have the same bytes is another session.
     */
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c1"), 11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, debug_effect("dbg-lab", "door", "SN-1", "c1"), 12),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, debug_effect("dbg-lab", "door", "SN-2", "c1"), 13), KBR_OK);
    assert_int_equal(query_count(f, "SELECT count(*) FROM debug_challenges"), 2);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind = 'debug-auth'"
                                    " AND audit_seq IN (11, 12)"),
                     0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind = 'debug-auth'"),
                     2);

    /* The rule outlives the process. */
    kbr_store_close(st);
    st = open_ok(f);
    assert_int_equal(kbr_store_debug_challenge_used(st, "door", "SN-1", c1.challenge, &used),
                     KBR_OK);
    assert_true(used);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c1"), 14),
                     KBR_ERR_STORE_CONSTRAINT);
    used = true;
    assert_int_equal(kbr_store_debug_challenge_used(st, "door", "SN-1", "abc", &used),
                     KBR_ERR_INTERNAL);
    assert_false(used);
    kbr_store_close(st);
}

static void test_debug_unknown_device(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    debug_ids c2;

    debug_ids_of("c2", &c2);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-9", "c2"), 10),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "lock", "SN-1", "c2"), 11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st, debug_effect("no-such-key", "door", "SN-1", "c2"), 12),
                     KBR_ERR_STORE_CONSTRAINT);
    /* A refused unlock burns no challenge and leaves no event. */
    assert_false(challenge_used(st, "dbg-door", c2.challenge));
    assert_int_equal(query_count(f, "SELECT count(*) FROM debug_challenges"), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind = 'debug-auth'"),
                     0);
    assert_int_equal(apply_json(st, debug_effect("dbg-door", "door", "SN-1", "c2"), 13), KBR_OK);
    kbr_store_close(st);
}

static json_t *result_of(const char *serial, const char *status, const char *at)
{
    return json_pack("{s:s,s:s,s:s}", "serial", serial, "status", status, "at", at);
}

/* An ota.report of door firmware version; results is consumed. */
static json_t *ota_effect(const char *version, const char *campaign, json_t *results)
{
    return json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s,s:o}]", "type", "ota.report", "product", "door",
                     "version", version, "campaign", campaign, "reported_by", "ota:fleet", "at",
                     "2026-09-01T00:00:00Z", "results", results);
}

static void assert_current(kbr_store *st, const char *serial, const char *version, const char *at)
{
    json_t *dev = NULL;

    assert_int_equal(kbr_store_device_get(st, "door", serial, &dev), KBR_OK);
    assert_string_equal(str_at(dev, "current_firmware"), version);
    assert_string_equal(str_at(dev, "current_firmware_at"), at);
    json_decref(dev);
}

static void test_provision_records_factory_image(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *history = NULL;
    const json_t *h;

    assert_current(st, "SN-1", "1.2.0", "2026-03-02T08:00:00Z");
    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-1", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 1);
    h = json_array_get(history, 0);
    assert_string_equal(str_at(h, "version"), "1.2.0");
    assert_string_equal(str_at(h, "status"), "factory");
    assert_string_equal(str_at(h, "at"), "2026-03-02T08:00:00Z");
    assert_true(json_is_null(json_object_get(h, "campaign")));
    assert_int_equal(int_at(h, "audit_seq"), 5);
    json_decref(history);
    history = NULL;
    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-9", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 0);
    json_decref(history);
    kbr_store_close(st);
}

static void test_ota_requires_signed_build(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);

    /* The factory image 1.2.0 was never signed here: a device may carry it, OTA may not ship it. */
    assert_int_equal(apply_json(st,
                                ota_effect("1.2.0", "camp",
                                           json_pack("[o]", result_of("SN-1", "installed",
                                                                      "2026-06-01T00:00:00Z"))),
                                10),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(apply_json(st,
                                ota_effect("9.9.9", "camp",
                                           json_pack("[o]", result_of("SN-1", "failed",
                                                                      "2026-06-01T00:00:00Z"))),
                                11),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_firmware"), 2);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind LIKE 'ota-%'"),
                     0);
    assert_current(st, "SN-1", "1.2.0", "2026-03-02T08:00:00Z");
    kbr_store_close(st);
}

static void test_ota_unknown_device_keeps_nothing(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *results = json_pack("[o,o,o]", result_of("SN-1", "installed", "2026-06-01T00:00:00Z"),
                                result_of("SN-2", "failed", "2026-06-01T00:00:00Z"),
                                result_of("SN-9", "installed", "2026-06-01T00:00:00Z"));

    assert_int_equal(apply_json(st, ota_effect("1.4.0", "camp", results), 10),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_current(st, "SN-1", "1.2.0", "2026-03-02T08:00:00Z");
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_firmware"
                                    " WHERE status <> 'factory'"),
                     0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM device_events WHERE kind LIKE 'ota-%'"),
                     0);
    kbr_store_close(st);
}

static void assert_history(const json_t *h, const char *version, const char *status, const char *at,
                           const char *campaign, int64_t seq)
{
    assert_string_equal(str_at(h, "version"), version);
    assert_string_equal(str_at(h, "status"), status);
    assert_string_equal(str_at(h, "at"), at);
    assert_string_equal(str_at(h, "campaign"), campaign);
    assert_int_equal(int_at(h, "audit_seq"), seq);
}

static void assert_ota_event(const json_t *ev, const char *kind, const char *version,
                             const char *campaign, int64_t seq)
{
    const json_t *detail = json_object_get(ev, "detail");

    assert_string_equal(str_at(ev, "kind"), kind);
    assert_int_equal(int_at(ev, "audit_seq"), seq);
    assert_int_equal(json_object_size(detail), 3);
    assert_string_equal(str_at(detail, "version"), version);
    assert_string_equal(str_at(detail, "campaign"), campaign);
    assert_string_equal(str_at(detail, "reported_by"), "ota:fleet");
}

/* Applies a one-result report of SN-1. */
static kbr_err report_sn1(kbr_store *st, const char *version, const char *campaign,
                          const char *status, const char *at, int64_t seq)
{
    return apply_json(
        st, ota_effect(version, campaign, json_pack("[o]", result_of("SN-1", status, at))), seq);
}

static void test_ota_current_firmware(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *history = NULL, *events = NULL;
    json_t *results = json_pack("[o,o]", result_of("SN-1", "installed", "2026-06-01T00:00:00Z"),
                                result_of("SN-2", "failed", "2026-06-01T00:00:00Z"));

    assert_int_equal(apply_json(st, ota_effect("1.4.0", "camp-b", results), 10), KBR_OK);
    assert_current(st, "SN-1", "1.4.0", "2026-06-01T00:00:00Z");
    assert_current(st, "SN-2", "1.2.0", "2026-03-02T08:00:00Z");
    /* An older install reported late is history, not the current version. */
    assert_int_equal(report_sn1(st, "1.3.0", "camp-a", "installed", "2026-05-01T00:00:00Z", 11),
                     KBR_OK);
    assert_current(st, "SN-1", "1.4.0", "2026-06-01T00:00:00Z");
    assert_int_equal(report_sn1(st, "1.3.0", "camp-c", "failed", "2026-07-01T00:00:00Z", 12),
                     KBR_OK);
    assert_current(st, "SN-1", "1.4.0", "2026-06-01T00:00:00Z");
    /* At the same time, the later report wins. */
    assert_int_equal(
        report_sn1(st, "1.3.0", "camp-d", "installed", "2026-06-01T00:00:00+00:00", 13), KBR_OK);
    assert_current(st, "SN-1", "1.3.0", "2026-06-01T00:00:00Z");

    assert_int_equal(kbr_store_device_firmware(st, "door", "SN-1", &history), KBR_OK);
    assert_int_equal(json_array_size(history), 5);
    assert_string_equal(str_at(json_array_get(history, 0), "status"), "factory");
    assert_history(json_array_get(history, 1), "1.3.0", "installed", "2026-05-01T00:00:00Z",
                   "camp-a", 11);
    assert_history(json_array_get(history, 2), "1.4.0", "installed", "2026-06-01T00:00:00Z",
                   "camp-b", 10);
    assert_history(json_array_get(history, 3), "1.3.0", "installed", "2026-06-01T00:00:00Z",
                   "camp-d", 13);
    assert_history(json_array_get(history, 4), "1.3.0", "failed", "2026-07-01T00:00:00Z", "camp-c",
                   12);
    json_decref(history);

    /* Events keep the order the reports were recorded in. */
    assert_int_equal(kbr_store_device_events(st, "door", "SN-1", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 5);
    assert_ota_event(json_array_get(events, 1), "ota-installed", "1.4.0", "camp-b", 10);
    assert_string_equal(str_at(json_array_get(events, 1), "at"), "2026-06-01T00:00:00Z");
    assert_ota_event(json_array_get(events, 2), "ota-installed", "1.3.0", "camp-a", 11);
    assert_ota_event(json_array_get(events, 3), "ota-failed", "1.3.0", "camp-c", 12);
    assert_ota_event(json_array_get(events, 4), "ota-installed", "1.3.0", "camp-d", 13);
    json_decref(events);
    events = NULL;
    assert_int_equal(kbr_store_device_events(st, "door", "SN-2", &events), KBR_OK);
    assert_int_equal(json_array_size(events), 2);
    assert_ota_event(json_array_get(events, 1), "ota-failed", "1.4.0", "camp-b", 10);
    json_decref(events);
    kbr_store_close(st);
}

/* Serials is consumed; returns the known list (caller decrefs). */
static json_t *known_of(kbr_store *st, const char *product, json_t *serials)
{
    json_t *known = NULL;

    assert_int_equal(kbr_store_devices_known(st, product, serials, &known), KBR_OK);
    json_decref(serials);
    return known;
}

static void test_devices_known(void **state)
{
    fixture *f = *state;
    kbr_store *st = field_store(f);
    json_t *known, *bad;

    assert_int_equal(apply_json(st, batch_effect("L1", "lock", "factory:acme", 3), 10), KBR_OK);
    assert_int_equal(
        apply_json(st, provision_effect("lock", "SN-3", "L1", "factory:acme", "d3"), 11), KBR_OK);

    known = known_of(st, "door",
                     json_pack("[s,s,s,s,s,s]", "SN-9", "SN-2", "SN-3", "SN-1", "SN-2", "SN-1"));
    assert_int_equal(json_array_size(known), 2);
    assert_string_equal(json_string_value(json_array_get(known, 0)), "SN-2");
    assert_string_equal(json_string_value(json_array_get(known, 1)), "SN-1");
    json_decref(known);
    known = known_of(st, "lock", json_pack("[s,s]", "SN-1", "SN-3"));
    assert_int_equal(json_array_size(known), 1);
    assert_string_equal(json_string_value(json_array_get(known, 0)), "SN-3");
    json_decref(known);
    known = known_of(st, "door", json_array());
    assert_true(json_is_array(known));
    assert_int_equal(json_array_size(known), 0);
    json_decref(known);

    known = NULL;
    bad = json_pack("[s,i]", "SN-1", 7);
    assert_int_equal(kbr_store_devices_known(st, "door", bad, &known), KBR_ERR_INTERNAL);
    assert_null(known);
    json_decref(bad);
    bad = json_pack("{s:s}", "serial", "SN-1");
    assert_int_equal(kbr_store_devices_known(st, "door", bad, &known), KBR_ERR_INTERNAL);
    assert_null(known);
    json_decref(bad);
    kbr_store_close(st);
}

static void exec_sql(const fixture *f, const char *sql)
{
    assert_int_equal(kbt_store_sql(f->url, sql, NULL, 0, NULL), 0);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* An OTA platform reports thousands of devices at once; the lookup is one query, not n. */
static void test_devices_known_many(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *serials = json_array(), *known = NULL;
    struct timespec t0;
    char serial[16];

    if (kbt_pg())
        exec_sql(f, "INSERT INTO devices(product, serial, provisioned_at, audit_seq)"
                    " SELECT 'door', 'D' || lpad(i::text, 5, '0'), '2026-03-02T08:00:00Z', 1"
                    " FROM generate_series(0, 2499) i");
    else
        exec_sql(f, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2499)"
                    " INSERT INTO devices(product, serial, provisioned_at, audit_seq)"
                    " SELECT 'door', printf('D%05d', i), '2026-03-02T08:00:00Z', 1 FROM n");
    for (int i = 4999; i >= 0; i--) {
        snprintf(serial, sizeof(serial), "D%05d", i);
        assert_int_equal(json_array_append_new(serials, json_string(serial)), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kbr_store_devices_known(st, "door", serials, &known), KBR_OK);
    if (seconds_since(&t0) > 1.0)
        fail_msg("5000 serials took %.2f s", seconds_since(&t0));
    assert_int_equal(json_array_size(known), 2500);
    assert_string_equal(json_string_value(json_array_get(known, 0)), "D02499");
    assert_string_equal(json_string_value(json_array_get(known, 2499)), "D00000");
    json_decref(known);
    json_decref(serials);
    kbr_store_close(st);
}

static void insert_row(kbr_store *st, int64_t seq, const char *sub)
{
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbt_entry_insert(st, seq, &(kbt_entry){.sub = sub, .op = "read"}), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
}

#define ZEROS       "0000000000000000000000000000000000000000000000000000000000000000"
#define ZEROS_UPPER "0000000000000000000000000000000000000000000000000000000000000ABC"

/*
 * Effects are typed values with one set of rules: a handler's value and one read from JSON
 * meet the same checks, come out normalized, and write back as the same JSON.
 */
static void test_effects_typed_and_json(void **state)
{
    static const char *const products[] = {"door", "gate"};
    static const kbr_effect_component comps[] = {{"openssl", "3.0.13", "pkg:deb/debian/openssl"},
                                                 {"zlib", NULL, NULL}};
    kbr_effects *fx = NULL, *back = NULL;
    json_t *arr = NULL, *again = NULL;
    const kbr_effect *e;

    (void)state;
    assert_int_equal(kbr_effects_new(&fx), KBR_OK);
    assert_int_equal(
        kbr_effects_add(
            fx, &(kbr_effect){.type = KBR_EFFECT_KEY_CREATE,
                              .u.key_create = {.name = "fw",
                                               .purpose = "firmware-signing",
                                               .algorithm = "ecdsa-p256",
                                               .public_key_sha256 = ZEROS_UPPER,
                                               .created_at = "2026-03-01T10:00:00.250+00:00",
                                               .products = {products, 2}}}),
        KBR_OK);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_FIRMWARE_SIGN,
                                          .u.firmware_sign = {.product = "door",
                                                              .version = "1.0",
                                                              .digest = "ab",
                                                              .signed_at = "2026-03-01T10:00:00Z",
                                                              .components = comps,
                                                              .ncomponents = 2}}),
        KBR_OK);
    /* a required field missing, a bad time, hex that is not hex: refused, the list unchanged */
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_KEY_RETIRE,
                                                       .u.key_retire = {.name = "fw"}}),
                     KBR_ERR_INTERNAL);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_KEY_RETIRE,
                                          .u.key_retire = {.name = "fw", .at = "soon"}}),
        KBR_ERR_INTERNAL);
    assert_int_equal(
        kbr_effects_add(fx, &(kbr_effect){.type = KBR_EFFECT_TOKEN_REVOKE,
                                          .u.token_revoke = {.at = "2026-03-01T10:00:00Z"}}),
        KBR_OK);
    assert_int_equal(kbr_effects_add(fx, &(kbr_effect){.type = (kbr_effect_type)99}),
                     KBR_ERR_INTERNAL);
    assert_int_equal(kbr_effects_count(fx), 3);
    e = kbr_effects_get(fx, 0);
    assert_string_equal(e->u.key_create.created_at, "2026-03-01T10:00:00Z");
    assert_string_equal(e->u.key_create.public_key_sha256,
                        "0000000000000000000000000000000000000000000000000000000000000abc");
    assert_string_equal(e->u.key_create.products.items[1], "gate");
    assert_null(kbr_effects_get(fx, 3));

    /* JSON and back: the same effects, the same text */
    assert_int_equal(kbr_effects_to_json(fx, &arr), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "type")),
                        "firmware.sign");
    assert_int_equal(json_array_size(json_object_get(json_array_get(arr, 1), "components")), 2);
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_OK);
    assert_int_equal(kbr_effects_to_json(back, &again), KBR_OK);
    assert_true(json_equal(arr, again));
    assert_string_equal(kbr_effects_get(back, 1)->u.firmware_sign.components[0].purl,
                        "pkg:deb/debian/openssl");
    assert_null(kbr_effects_get(back, 1)->u.firmware_sign.components[1].version);
    json_decref(again);
    kbr_effects_free(back);

    /* what JSON can get wrong beyond the rules: types of members, unknown types */
    json_array_append_new(arr, json_pack("{s:s,s:i,s:s}", "type", "key.retire", "name", 7, "at",
                                         "2026-03-01T10:00:00Z"));
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_ERR_INTERNAL);
    assert_null(back);
    json_array_remove(arr, 3);
    json_array_append_new(arr, json_pack("{s:s}", "type", "key.explode"));
    assert_int_equal(kbr_effects_from_json(arr, &back), KBR_ERR_INTERNAL);
    assert_int_equal(kbr_effects_from_json(json_object_get(arr, "x"), &back), KBR_ERR_INTERNAL);
    json_decref(arr);
    kbr_effects_free(fx);
    kbr_effects_free(NULL);
    assert_int_equal(kbr_effects_count(NULL), 0);
    assert_null(kbr_effect_type_name((kbr_effect_type)99));
}

/* An entry about products (a JSON array text, or NULL for none) naming key. */
static void insert_about(kbr_store *st, int64_t seq, const char *key, const char *products)
{
    json_t *p = products != NULL ? json_loads(products, 0, NULL) : NULL;

    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbt_entry_insert(st, seq, &(kbt_entry){.key = key, .products = p}), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    json_decref(p);
}

static char *seqs_within(kbr_store *st, int64_t after, int64_t limit, const kbr_audit_scope *scope)
{
    json_t *page = NULL;
    char buf[256] = "";
    size_t i;
    const json_t *e;

    assert_int_equal(kbr_store_audit_page_within(st, after, limit, scope, &page), KBR_OK);
    json_array_foreach(page, i, e)
    {
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof(buf) - n, "%s%lld", i > 0 ? "," : "",
                 (long long)json_integer_value(json_object_get(e, "seq")));
    }
    json_decref(page);
    return strdup(buf);
}

static void expect_seqs(kbr_store *st, int64_t after, int64_t limit, const kbr_audit_scope *scope,
                        const char *want)
{
    char *got = seqs_within(st, after, limit, scope);

    if (strcmp(got, want) != 0)
        fail_msg("expected entries %s, got %s", want, got);
    free(got);
}

/* What a reader limited to products or keys reads of the log (API.md "Custody boundaries"). */
static void test_audit_within_scope(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    const char *acme[] = {"acme"}, *acmes[] = {"acme*"}, *fw[] = {"fw-*"};
    kbr_audit_scope by_acme = {.products_limited = true, .products = acme, .nproducts = 1};
    kbr_audit_scope by_prefix = {.products_limited = true, .products = acmes, .nproducts = 1};
    kbr_audit_scope by_key = {.keys_limited = true, .keys = fw, .nkeys = 1};
    kbr_audit_scope both = {.products_limited = true,
                            .products = acme,
                            .nproducts = 1,
                            .keys_limited = true,
                            .keys = fw,
                            .nkeys = 1};
    kbr_audit_scope nothing = {.products_limited = true, .nproducts = 0};
    bool visible = true;

    insert_about(st, 1, NULL, NULL);                     /* the broker's own */
    insert_about(st, 2, "fw-acme", "[\"acme\"]");        /* acme's key */
    insert_about(st, 3, "fw-globex", "[\"globex\"]");    /* another team's */
    insert_about(st, 4, "dbg", "[\"acme\",\"globex\"]"); /* a shared key */
    insert_about(st, 5, NULL, "[\"acme-gw\"]");          /* a product acme* names */
    insert_about(st, 6, NULL, "[\"acme*\"]");            /* what an acme* token did */
    insert_about(st, 7, "fw-acme", "[\"acme\"]");
    expect_seqs(st, 0, 100, NULL, "1,2,3,4,5,6,7");
    expect_seqs(st, 0, 100, &by_acme, "2,4,7");
    expect_seqs(st, 2, 1, &by_acme, "4"); /* pages by seq, however sparse */
    expect_seqs(st, 4, 100, &by_acme, "7");
    expect_seqs(st, 0, 100, &by_prefix, "2,4,5,6,7");
    expect_seqs(st, 0, 100, &by_key, "2,3,7");
    expect_seqs(st, 0, 100, &both, "2,7");
    expect_seqs(st, 0, 100, &nothing, "");
    assert_int_equal(kbr_store_audit_visible(st, 3, &by_acme, &visible), KBR_OK);
    assert_false(visible);
    assert_int_equal(kbr_store_audit_visible(st, 6, &by_prefix, &visible), KBR_OK);
    assert_true(visible);
    assert_int_equal(kbr_store_audit_visible(st, 6, &by_acme, &visible), KBR_OK);
    assert_false(visible);
    assert_int_equal(kbr_store_audit_visible(st, 2, &both, &visible), KBR_OK);
    assert_true(visible);
    assert_int_equal(kbr_store_audit_visible(st, 1, NULL, &visible), KBR_OK);
    assert_true(visible);
    assert_int_equal(kbr_store_audit_visible(st, 8, NULL, &visible), KBR_ERR_NOT_FOUND);
    kbr_store_close(st);
}

static kbr_err stop_at_two(int64_t seq, const char *entry_json, const char *hash, void *arg)
{
    (void)entry_json;
    (void)hash;
    *(int64_t *)arg = seq;
    return seq == 2 ? KBR_ERR_NOT_FOUND : KBR_OK;
}

static void test_audit_rows(void **state)
{
    static const char *const rewrites[] = {
        "UPDATE audit SET sub = 'mallory' WHERE seq = 2",
        "UPDATE audit SET op = 'read', outcome = 'denied' WHERE seq = 2",
        "UPDATE audit SET key_use = 1",
        "UPDATE audit SET prev_hash = 'x'",
    };
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    sqlite3 *db = NULL;
    json_t *page = NULL;
    int64_t seen = 0;
    char hash[65];

    insert_row(st, 1, "ci:one");
    insert_row(st, 2, "ci:two");
    insert_row(st, 3, "ci:three");
    /* seq is the primary key: the log cannot hold two entries with one number. */
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbt_entry_insert(st, 2, &(kbt_entry){.sub = "ci:again"}),
                     KBR_ERR_STORE_CONSTRAINT);
    kbr_store_rollback(st);
    /* a row is the entry it holds: its seq, and nothing that is not JSON */
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbr_store_audit_insert(st, &(kbr_store_audit_row){4,
                                                                       "{\"seq\":5,\"time\":"
                                                                       "\"t\",\"outcome\":"
                                                                       "\"ok\",\"prev_hash\":"
                                                                       "\"x\"}",
                                                                       ZEROS}),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_not_equal(
        kbr_store_audit_insert(st, &(kbr_store_audit_row){4, "{\"seq\":4,", ZEROS}), KBR_OK);
    kbr_store_rollback(st);

    assert_int_equal(kbr_store_audit_page(st, 1, 5, &page), KBR_OK);
    assert_int_equal(json_array_size(page), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(page, 0), "sub")),
                        "ci:two");
    snprintf(hash, sizeof(hash), "%s",
             json_string_value(json_object_get(json_array_get(page, 1), "hash")));
    assert_int_equal(strspn(hash, "0123456789abcdef"), 64);
    json_decref(page);

    /* what the store keeps about an entry is derived from it: none of it can be rewritten */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    for (size_t i = 0; i < sizeof(rewrites) / sizeof(rewrites[0]); i++)
        if (sqlite3_exec(db, rewrites[i], NULL, NULL, NULL) == SQLITE_OK)
            fail_msg("%s was allowed", rewrites[i]);
    sqlite3_close(db);
    assert_int_equal(kbr_store_audit_page(st, 1, 1, &page), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(page, 0), "sub")),
                        "ci:two");
    json_decref(page);
    assert_int_equal(kbr_store_audit_walk(st, 0, 10, stop_at_two, &seen), KBR_ERR_NOT_FOUND);
    assert_int_equal(seen, 2);
    kbr_store_close(st);
}

/*
 * The SQL the store runs over scopes is the C rule: GLOB for a "prefix*" entry (where the index
 * needs it) and the kbr_name_matches SQL function agree with kbr_name_matches on every pair of
 * a corpus of names and patterns built to find the edges.
 */
static void test_scope_rule_in_sql(void **state)
{
    static const char alphabet[] = "ab.-_:@+9Z";
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    char names[400][8], pattern[9];
    unsigned seed = 7;
    int checked = 0;

    kbr_store_close(st);
    for (int i = 0; i < 400; i++) {
        int len = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 6;
        for (int k = 0; k < len; k++)
            names[i][k] = alphabet[((seed = seed * 1103515245u + 12345u) >> 16) % 10];
        names[i][len] = '\0';
    }
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    /* the store's own connection registers the function; a plain one gets GLOB only */
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT ?2 GLOB ?1", -1, &stmt, NULL), SQLITE_OK);
    for (int p = 0; p < 400; p++) {
        size_t plen = (size_t)(p % 5);
        snprintf(pattern, sizeof(pattern), "%.*s*", (int)plen, names[p]);
        for (int n = 0; n < 400; n++) {
            sqlite3_bind_text(stmt, 1, pattern, -1, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 2, names[n], -1, SQLITE_STATIC);
            assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
            if ((sqlite3_column_int(stmt, 0) != 0) != kbr_name_matches(pattern, names[n]))
                fail_msg("\"%s\" GLOB \"%s\" disagrees with the scope rule", names[n], pattern);
            sqlite3_reset(stmt);
            checked++;
        }
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    assert_int_equal(checked, 160000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_unwritable_location),
        cmocka_unit_test(test_unreachable_postgresql),
        cmocka_unit_test_setup_teardown(test_duplicate_key_rolls_back_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_effects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_retire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firmware_sign_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_provision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_without_firmware_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_duplicate_serial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_quantity_enforced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_must_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_numbers, setup, teardown),
        cmocka_unit_test(test_revoke_effect_rules),
        cmocka_unit_test(test_public_key_name),
        cmocka_unit_test(test_spki_name),
        cmocka_unit_test_setup_teardown(test_device_key_refused_at_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_key_on_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v1_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_refuses_one_object_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issuer_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issuer_rotate_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_within_scope, setup, teardown),
        cmocka_unit_test(test_effects_typed_and_json),
        cmocka_unit_test_setup_teardown(test_debug_authorize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_challenge_once_per_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_unknown_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provision_records_factory_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ota_requires_signed_build, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ota_unknown_device_keeps_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ota_current_firmware, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_known, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_known_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scope_rule_in_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_chain_and_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_deliver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v7_store_gains_deliveries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_at_version_7, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
