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
#include <sqlite3.h>

#include "kbr_store.h"

typedef struct {
    char dir[64];
    char path[128];
    char url[160];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/kbr-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/ledger.db", f->dir);
    snprintf(f->url, sizeof(f->url), "sqlite:%s", f->path);
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    int rc = nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);

    free(f);
    return rc;
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

/* Applies effects as the writer does: in a transaction with its audit row. */
static kbr_err apply(kbr_store *st, const char *effects_json, int64_t seq)
{
    json_t *effects = effects_of(effects_json);
    char hash[65];
    kbr_store_audit_row row = {.seq = seq,
                               .time = "2026-01-01T00:00:00Z",
                               .op = "test",
                               .outcome = "ok",
                               .entry_json = "{}",
                               .prev_hash = hash,
                               .hash = hash};
    kbr_err err;

    memset(hash, 'a', 64);
    hash[64] = '\0';
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    err = kbr_store_apply_effects(st, effects, seq);
    assert_int_equal(kbr_store_audit_insert(st, &row), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    json_decref(effects);
    return err;
}

#define KEY_A                                                                                      \
    "[{\"type\": \"key.create\", \"name\": \"fw-a\", \"purpose\": \"firmware-signing\","           \
    " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\", \"lock\"], \"owner\": \"team\","     \
    " \"hsm_label\": \"fw-a\", \"hsm_id\": \"0102\", \"public_key_pem\": \"PEM\","                 \
    " \"created_at\": \"2026-03-01T10:00:00+00:00\"}]"

static const char *const tables[] = {"meta",     "audit",         "keys",         "tokens",
                                     "firmware", "components",    "certificates", "batches",
                                     "devices",  "device_events", "checkpoints"};

static void test_open_creates_schema(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t seq = -1;
    char hash[65];

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
    assert_int_equal(sqlite3_column_int(stmt, 0), 1);
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
    sqlite3 *db = NULL;
    kbr_msg msg = {{0}};

    kbr_store_close(st);
    st = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE meta SET schema_version = 99", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(kbr_store_open(f->url, &st, &msg), KBR_ERR_STORE);
    assert_null(st);
    assert_non_null(strstr(msg.text, "schema version 99 is newer"));
}

static void test_bad_urls(void **state)
{
    static const char *const urls[] = {"postgres://db/kbr", "ledger.db",
                                       "sqlite:", "sqlite:/tmp/x.db?cache=1",
                                       "sqlite:/tmp/x.db?max_pages=0"};
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        msg.text[0] = '\0';
        assert_int_equal(kbr_store_open(urls[i], &st, &msg), KBR_ERR_CONFIG);
        assert_null(st);
        assert_true(strlen(msg.text) > 0);
    }
    assert_int_equal(kbr_store_open("postgres://db/kbr", &st, &msg), KBR_ERR_CONFIG);
    assert_non_null(strstr(msg.text, "postgres://db/kbr"));
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
        "[{\"type\": \"key.destroy\", \"name\": \"k\"}]",
        "[\"key.create\"]",
        "{\"type\": \"key.retire\"}",
    };
    fixture *f = *state;
    kbr_store *st = open_ok(f);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (apply(st, bad[i], (int64_t)i + 1) != KBR_ERR_INTERNAL)
            fail_msg("effect %zu was not refused as KBR_ERR_INTERNAL", i);
    }
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

static void insert_row(kbr_store *st, int64_t seq, const char *entry)
{
    char hash[65];
    kbr_store_audit_row row = {.seq = seq,
                               .time = "2026-01-01T00:00:00Z",
                               .outcome = "ok",
                               .entry_json = entry,
                               .prev_hash = hash,
                               .hash = hash};

    snprintf(hash, sizeof(hash), "%064lld", (long long)seq);
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbr_store_audit_insert(st, &row), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
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
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *page = NULL;
    int64_t seen = 0;
    char hash[65];

    insert_row(st, 1, "{\"n\":1}");
    insert_row(st, 2, "{\"n\":2}");
    insert_row(st, 3, "{\"n\":3}");
    /* seq is the primary key: the log cannot hold two entries with one number. */
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbr_store_audit_insert(st, &(kbr_store_audit_row){.seq = 2,
                                                                       .time = "t",
                                                                       .outcome = "ok",
                                                                       .entry_json = "{}",
                                                                       .prev_hash = "x",
                                                                       .hash = "x"}),
                     KBR_ERR_STORE_CONSTRAINT);
    kbr_store_rollback(st);

    assert_int_equal(kbr_store_audit_page(st, 1, 5, &page), KBR_OK);
    assert_int_equal(json_array_size(page), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(page, 0), "n")), 2);
    snprintf(hash, sizeof(hash), "%064d", 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(page, 1), "hash")), hash);
    json_decref(page);
    assert_int_equal(kbr_store_audit_walk(st, 0, 10, stop_at_two, &seen), KBR_ERR_NOT_FOUND);
    assert_int_equal(seen, 2);
    kbr_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_unwritable_location),
        cmocka_unit_test_setup_teardown(test_duplicate_key_rolls_back_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_effects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_retire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firmware_sign_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_rows, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
