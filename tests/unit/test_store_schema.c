/*
 * test_store_schema.c - opening a store: its URLs, its schema, the versions it refuses, and the
 * steps that take an older store to this version.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "kbr_store.h"
#include "store_fixture.h"
#include "tmpdir.h"

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
    kbr_store *st;
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t seq = -1;
    char hash[65];

    if (kbt_pg())
        skip(); /* SQLite stores: their file and the steps from version 1 */
    st = open_ok(f);

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
    assert_int_equal(sqlite3_column_int(stmt, 0), 10);
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

/* What kbr_store_file names for url, which must be want (NULL: no file), and for a sqlite: URL
 * the file SQLite itself opens by that name. */
static void file_is(const char *url, const char *want)
{
    kbr_msg msg = {{0}};
    char *path = NULL, given[600];
    sqlite3 *db = NULL;

    assert_int_equal(kbr_store_file(url, &path, &msg), KBR_OK);
    if (want == NULL) {
        assert_null(path);
        return;
    }
    if (path == NULL || strcmp(path, want) != 0)
        fail_msg("%s: want %s, got %s", url, want, path != NULL ? path : "(null)");
    snprintf(given, sizeof(given), "%.*s", (int)strcspn(url + 7, "?"), url + 7);
    assert_int_equal(sqlite3_open_v2(given, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    assert_string_equal(sqlite3_db_filename(db, "main"), want);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    free(path);
}

/*
 * A store named through symbolic links is the file SQLite opens (it follows them, and keeps the
 * -wal, -shm and -journal beside that file), and its lock goes beside that file too: a second
 * broker by another name for the same file is refused.  A link to no file yet names where the
 * file will be made; a name SQLite cannot follow is refused before any lock is taken.
 */
static void test_store_named_through_links(void **state)
{
    char tmp[256], *d, url[600], want[600], more[900];
    kbr_msg msg = {{0}};
    kbr_store *st = NULL;
    int fd = -1, other = -1;

    (void)state;
    assert_int_equal(kbt_tmpdir(tmp, sizeof(tmp), "kbr-links"), 0);
    d = realpath(tmp, NULL); /* TMPDIR may itself be reached through a link */
    assert_non_null(d);
    snprintf(more, sizeof(more),
             "cd '%s' && mkdir a b && sqlite3 a/s.db 'PRAGMA user_version=1' &&"
             " ln -s ../a/s.db b/l.db && ln -s l.db b/l2.db && ln -s a c &&"
             " ln -s ../a/n.db b/new.db && ln -s ../c/n2.db b/new2.db &&"
             " ln -s ../nodir/../a/n3.db b/new3.db && ln -s loop2 b/loop1 && ln -s loop1 b/loop2 &&"
             " ln -s ../a/s.db b/ch0 && for i in $(seq 1 60); do ln -s ch$((i - 1)) b/ch$i; done",
             d);
    assert_int_equal(system(more), 0);

    snprintf(want, sizeof(want), "%s/a/s.db", d);
    const char *const same[] = {"a/s.db?max_pages=5", "b/l.db", "b/l2.db", "c/s.db",
                                "b/../a/s.db",        "b/ch60"};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        snprintf(url, sizeof(url), "sqlite:%s/%s", d, same[i]);
        file_is(url, want);
    }
    snprintf(url, sizeof(url), "sqlite:%s/b/new.db", d);
    snprintf(want, sizeof(want), "%s/a/n.db", d);
    file_is(url, want);
    snprintf(url, sizeof(url), "sqlite:%s/b/new2.db", d);
    snprintf(want, sizeof(want), "%s/a/n2.db", d);
    file_is(url, want);
    snprintf(url, sizeof(url), "sqlite:%s/b/new3.db", d);
    snprintf(want, sizeof(want), "%s/a/n3.db", d);
    file_is(url, want);
    snprintf(url, sizeof(url), "sqlite:%s/c/x.db", d);
    snprintf(want, sizeof(want), "%s/a/x.db", d);
    file_is(url, want);
    file_is("postgresql://kbr@127.0.0.1/kbr", NULL);
    file_is("mysql://kbr@127.0.0.1/kbr", NULL);

    /* a loop is refused, naming the store, before a lock file is made beside it */
    snprintf(url, sizeof(url), "sqlite:%s/b/loop1", d);
    assert_int_equal(kbr_store_lock(url, &fd, &msg), KBR_ERR_STORE);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(msg.text, url + 7));
    assert_non_null(strstr(msg.text, "cannot tell which file the name leads to"));
    snprintf(more, sizeof(more), "test ! -e '%s/b/loop1.lock'", d);
    assert_int_equal(system(more), 0);

    /* SQLite makes the store where a dangling link points, and the lock is taken there: by
     * the file's own name, a second lock is refused */
    snprintf(url, sizeof(url), "sqlite:%s/b/new.db", d);
    assert_int_equal(kbr_store_lock(url, &fd, &msg), KBR_OK);
    assert_int_equal(kbr_store_open(url, &st, &msg), KBR_OK);
    kbr_store_close(st);
    snprintf(more, sizeof(more),
             "test -f '%s/a/n.db.lock' && test -z \"$(ls -A '%s/b' | grep -v '^ch' | grep lock)\"",
             d, d);
    assert_int_equal(system(more), 0);
    snprintf(url, sizeof(url), "sqlite:%s/a/n.db", d);
    assert_int_equal(kbr_store_lock(url, &other, &msg), KBR_ERR_CONFLICT);
    assert_int_equal(other, -1);
    snprintf(want, sizeof(want), "%s/a/n.db is in use by another keybrokerd", d);
    assert_non_null(strstr(msg.text, want));
    kbr_store_unlock(fd);

    assert_int_equal(kbt_rmtree(tmp), 0);
    free(d);
}

/*
 * What backups make beside a store, and nothing else: the next holder of the lock removes a
 * copy (and its -journal) a backup that did not finish left, and leaves the operator's own
 * files that start like one, links, and files of another owner.  A backup does not write
 * through a link planted by the name its copy is given.  A new store and the files SQLite
 * keeps beside it are mode 0600; an open of a store that must exist makes none.
 */
/* The name messages give a store: a PostgreSQL URI's password, in either form libpq takes, is
 * shown as ***, and nothing else changes. */
static void test_store_shown_hides_passwords(void **state)
{
    static const char *const cases[][2] = {
        {"postgresql://kbr:s3cret@db.example:5432/kbr?sslmode=verify-full",
         "postgresql://kbr:***@db.example:5432/kbr?sslmode=verify-full"},
        {"postgres://kbr:@db/kbr", "postgres://kbr:***@db/kbr"},
        {"postgresql://kbr:p@ss@db/kbr", "postgresql://kbr:***@db/kbr"},
        {"postgresql:///kbr?host=/run/pg&password=s3cret&user=kbr",
         "postgresql:///kbr?host=/run/pg&password=***&user=kbr"},
        {"postgresql://kbr:a@db/kbr?password=b&password=&x=password=c",
         "postgresql://kbr:***@db/kbr?password=***&password=***&x=password=c"},
        {"postgresql://kbr@db/kbr?application_name=kbr",
         "postgresql://kbr@db/kbr?application_name=kbr"},
        {"postgresql://db/kbr/password=x", "postgresql://db/kbr/password=x"},
    };
    kbr_msg msg = {{0}};
    char *shown;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        shown = kbr_store_shown(cases[i][0]);
        assert_non_null(shown);
        assert_string_equal(shown, cases[i][1]);
        free(shown);
    }
    /* a scheme no back end has is refused naming the URL without its password */
    assert_int_equal(
        kbr_store_open("postgresq://kbr:s3cret@db/kbr?password=s3cret", &(kbr_store *){NULL}, &msg),
        KBR_ERR_CONFIG);
    assert_non_null(strstr(msg.text, "postgresq://kbr:***@db/kbr?password=***"));
    assert_null(strstr(msg.text, "s3cret"));
}

static void test_files_beside_the_store(void **state)
{
    char tmp[256], url[600], cmd[1200];
    kbr_store_backup_info info;
    kbr_msg msg = {{0}};
    kbr_store *st = NULL;
    int fd = -1, copy = -1;

    (void)state;
    assert_int_equal(kbt_tmpdir(tmp, sizeof(tmp), "kbr-backups"), 0);
    snprintf(url, sizeof(url), "sqlite:%s/s.db", tmp);
    assert_int_equal(kbr_store_open(url, &st, &msg), KBR_OK);
    kbr_store_close(st);
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && for f in s.db.backup-12-3.tmp s.db.backup-12-3.tmp-journal"
             " s.db.backup-before-upgrade.tmp.sqlite s.db.backup-2026-12-05.tmpl"
             " s.db.backup-7-1.tmp.keep t.db.backup-1-1.tmp; do echo x > $f; done &&"
             " ln -s target s.db.backup-9-9.tmp && echo keep > target &&"
             " ln -s planted s.db.backup-%ld-0.tmp && : > planted &&"
             " echo x > s.db.backup-5-5.tmp && { test $(id -u) != 0 || chown 65534 "
             "s.db.backup-5-5.tmp; }",
             tmp, (long)getpid());
    assert_int_equal(system(cmd), 0);
    assert_int_equal(kbr_store_lock(url, &fd, &msg), KBR_OK);
    /* as root, a file of another owner is planted (and kept); as anyone else, the file is the
     * user's own, a leftover like any other, and removed */
    snprintf(
        cmd, sizeof(cmd),
        "cd '%s' && for f in s.db.backup-12-3.tmp s.db.backup-12-3.tmp-journal %s; do"
        " test ! -e $f -a ! -L $f || { echo \"$f kept\"; exit 1; }; done &&"
        " for f in s.db.backup-before-upgrade.tmp.sqlite s.db.backup-2026-12-05.tmpl"
        " s.db.backup-7-1.tmp.keep t.db.backup-1-1.tmp s.db.backup-9-9.tmp target planted"
        " s.db.backup-%ld-0.tmp %s; do test -e $f -o -L $f || { echo \"$f removed\"; exit 1; };"
        " done && test \"$(cat target)\" = keep",
        tmp, geteuid() == 0 ? "" : "s.db.backup-5-5.tmp", (long)getpid(),
        geteuid() == 0 ? "s.db.backup-5-5.tmp" : "");
    assert_int_equal(system(cmd), 0);

    /* this process's first copy is named s.db.backup-PID-0.tmp, where the link is planted */
    assert_int_equal(kbr_store_open_existing(url, &st, &msg), KBR_OK);
    assert_int_equal(kbr_store_backup(st, &copy, &info, &msg), KBR_ERR_STORE);
    assert_int_equal(copy, -1);
    assert_non_null(strstr(msg.text, "cannot make its copy"));
    snprintf(cmd, sizeof(cmd), "cd '%s' && test -L s.db.backup-%ld-0.tmp && test ! -s planted", tmp,
             (long)getpid());
    assert_int_equal(system(cmd), 0);
    /* the next is made, read, and gone from the directory */
    assert_int_equal(kbr_store_backup(st, &copy, &info, &msg), KBR_OK);
    assert_true(copy >= 0);
    assert_true(lseek(copy, 0, SEEK_END) > 0);
    close(copy);
    snprintf(cmd, sizeof(cmd), "cd '%s' && test ! -e s.db.backup-%ld-1.tmp", tmp, (long)getpid());
    assert_int_equal(system(cmd), 0);
    kbr_store_close(st);
    kbr_store_unlock(fd);

    /* a store made is its owner's alone, whatever the umask, and so are its -wal and -shm */
    snprintf(url, sizeof(url), "sqlite:%s/fresh.db", tmp);
    mode_t old_mask = umask(022);
    assert_int_equal(kbr_store_open(url, &st, &msg), KBR_OK);
    umask(old_mask);
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && stat -c %%a fresh.db fresh.db-wal fresh.db-shm | sort -u", tmp);
    FILE *p = popen(cmd, "r");
    char modes[32] = {0};
    assert_non_null(p);
    assert_non_null(fgets(modes, sizeof(modes), p));
    assert_null(fgets(modes + strlen(modes), (int)(sizeof(modes) - strlen(modes)), p));
    pclose(p);
    assert_string_equal(modes, "600\n");
    kbr_store_close(st);

    /* a store that is not there is not made by an open of one that must be */
    snprintf(url, sizeof(url), "sqlite:%s/none.db", tmp);
    assert_int_equal(kbr_store_open_existing(url, &st, &msg), KBR_ERR_NOT_FOUND);
    assert_null(st);
    assert_non_null(strstr(msg.text, "none.db does not exist"));
    snprintf(cmd, sizeof(cmd), "test ! -e '%s/none.db'", tmp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(kbt_rmtree(tmp), 0);
}

/*
 * A store of version 7, before the CRA step, on either back end, taken to the current version as it
 * opens: the components recorded before get the package their purl names (components.purl_key),
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
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 10);
    query_text(f, "SELECT purl_key FROM components WHERE name = 'openssl'", buf, sizeof(buf));
    assert_string_equal(buf, "pkg:deb/debian/openssl");
    query_text(f, "SELECT coalesce(purl_key, 'none') FROM components WHERE name = 'zlib'", buf,
               sizeof(buf));
    assert_string_equal(buf, "none");
    assert_int_equal(query_count(f, "SELECT count(*) FROM history_firmware_batch"), 0);
    assert_int_equal(query_count(f, "SELECT count(*) FROM incidents"), 0);
    kbr_store_close(st);
}

/* The devices that ran 1.3.0 (ran: 1) or never did (0), of batch and now on firmware, as
 * history_firmware_batch counts them. */
static int64_t batch_count(const fixture *f, int ran, const char *firmware, const char *batch)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT coalesce(sum(count), 0) FROM history_firmware_batch"
             " WHERE firmware = '%s' AND batch = '%s' AND history %s IN"
             " (SELECT history FROM firmware_history_versions WHERE version = '1.3.0')",
             firmware, batch, ran ? "" : "NOT");
    return query_count(f, sql);
}

/* The fleet of test_fleet_at_version_7, counted per history, current firmware and batch. */
static void assert_fleet_counts(const fixture *f)
{
    assert_int_equal(batch_count(f, 0, "1.2.0", "B1"), 2);
    assert_int_equal(batch_count(f, 0, "1.2.0", "B2"), 1);
    assert_int_equal(batch_count(f, 1, "1.3.0", "B1"), 1);
    assert_int_equal(batch_count(f, 1, "1.3.0", "B2"), 1);
    assert_int_equal(query_count(f, "SELECT count(*) FROM history_firmware_batch"), 4);
    assert_int_equal(query_count(f, "SELECT sum(count) FROM history_firmware_batch"), 5);
}

/*
 * A version 7 store with a fleet: the step to version 9 fills history_firmware_batch from the
 * devices it holds, and the fill has the values the table's triggers keep in a current store.
 * Six doors in two batches, all but one with the factory image 1.2.0; one door of each batch
 * has since installed 1.3.0; the one without an image has no history and is not counted.
 * After the step the triggers keep the table: one more install moves a door's count.
 */
static void test_fleet_at_version_7(void **state)
{
    fixture *f = *state;
    kbr_store *st = factory_store(f);
    static const char *const b1[] = {"SN-1", "SN-2", "SN-3"}, *const b2[] = {"SN-4", "SN-5"};
    json_t *effect;
    int64_t seq = 3;
    size_t i;

    assert_int_equal(apply_json(st, batch_effect("B2", "door", "factory:acme", 3), seq++), KBR_OK);
    for (i = 0; i < 3; i++)
        assert_int_equal(
            apply_json(st, provision_effect("door", b1[i], "B1", "factory:acme", b1[i]), seq++),
            KBR_OK);
    for (i = 0; i < 2; i++)
        assert_int_equal(
            apply_json(st, provision_effect("door", b2[i], "B2", "factory:acme", b2[i]), seq++),
            KBR_OK);
    effect = provision_effect("door", "SN-6", "B2", "factory:acme", "SN-6");
    json_object_set_new(json_array_get(effect, 0), "firmware_version", json_null());
    assert_int_equal(apply_json(st, effect, seq++), KBR_OK);
    assert_int_equal(apply_json(st, sign_effect("1.2.0"), seq++), KBR_OK);
    assert_int_equal(apply_json(st, sign_effect("1.3.0"), seq++), KBR_OK);
    assert_int_equal(apply(st,
                           "[{\"type\": \"ota.report\", \"product\": \"door\","
                           " \"version\": \"1.3.0\", \"campaign\": null,"
                           " \"reported_by\": \"ota:fleet\", \"at\": \"2026-09-01T00:00:00Z\","
                           " \"results\": [{\"serial\": \"SN-1\", \"status\": \"installed\","
                           " \"at\": \"2026-08-01T00:00:00Z\"}, {\"serial\": \"SN-4\","
                           " \"status\": \"installed\", \"at\": \"2026-08-01T00:00:00Z\"}]}]",
                           seq++),
                     KBR_OK);
    assert_fleet_counts(f);
    kbr_store_close(st);
    store_back_to_v7(f);

    st = open_ok(f);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 10);
    assert_fleet_counts(f);

    assert_int_equal(apply(st,
                           "[{\"type\": \"ota.report\", \"product\": \"door\","
                           " \"version\": \"1.3.0\", \"campaign\": null,"
                           " \"reported_by\": \"ota:fleet\", \"at\": \"2026-09-02T00:00:00Z\","
                           " \"results\": [{\"serial\": \"SN-2\", \"status\": \"installed\","
                           " \"at\": \"2026-08-02T00:00:00Z\"}]}]",
                           seq),
                     KBR_OK);
    assert_int_equal(batch_count(f, 0, "1.2.0", "B1"), 1);
    assert_int_equal(batch_count(f, 1, "1.3.0", "B1"), 2);
    assert_int_equal(query_count(f, "SELECT sum(count) FROM history_firmware_batch"), 5);
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

/* Two registry entries that name one HSM object cannot both stay: the store says which. */
static void test_migrate_refuses_one_object_twice(void **state)
{
    fixture *f = *state;
    EVP_PKEY *k;
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};
    sqlite3 *db = NULL;

    if (kbt_pg())
        skip(); /* SQLite stores: their file and the steps from version 1 */
    k = EVP_EC_gen("P-256");

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
    EVP_PKEY *clone, *old, *cur, *fresh;
    char clone_hex[65], old_hex[65], cur_hex[65], fresh_hex[65];
    json_t *history = NULL;
    kbr_store *st;

    if (kbt_pg())
        skip(); /* SQLite stores: their file and the steps from version 1 */
    clone = EVP_EC_gen("P-256");
    old = EVP_EC_gen("P-256");
    cur = EVP_EC_gen("P-256");
    fresh = EVP_EC_gen("P-384");

    der_key_hex(clone, clone_hex);
    der_key_hex(old, old_hex);
    der_key_hex(cur, cur_hex);
    der_key_hex(fresh, fresh_hex);
    v1_store(f, clone, old, cur);
    v1_custody(f, cur);
    st = open_ok(f);
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 10);
    assert_int_equal(query_count(f, "SELECT count(*) FROM meta WHERE schema_version <> 10"), 0);
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
    assert_int_equal(query_count(f, "SELECT max(schema_version) FROM meta"), 10);
    assert_device_key(st, "SN-9", clone_hex);
    assert_int_equal(count_where(f, "device_firmware", "serial = 'SN-9'"), 3);
    kbr_store_close(st);
    EVP_PKEY_free(fresh);
    EVP_PKEY_free(cur);
    EVP_PKEY_free(old);
    EVP_PKEY_free(clone);
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
        cmocka_unit_test(test_store_named_through_links),
        cmocka_unit_test(test_store_shown_hides_passwords),
        cmocka_unit_test(test_files_beside_the_store),
        cmocka_unit_test_setup_teardown(test_migrate_v1_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_refuses_one_object_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_at_version_7, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_at_version_7, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
