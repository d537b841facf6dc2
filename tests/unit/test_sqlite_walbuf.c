/*
 * test_sqlite_walbuf.c - the store's SQLite VFS (store/sqlite_walbuf.c): a commit's WAL
 * frames in a few writes, and the WAL on disk as SQLite would have left it: what a commit
 * wrote is there for other connections at once and after a crash, and frames SQLite
 * rewrites in place or spills before the commit come back as written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "kbr_store.h"
#include "tmpdir.h"

/* store/sqlite.h's KBR_SQLITE_VFS: the name the store's connections open with */
#define WALBUF "kbr-walbuf"

typedef struct {
    char dir[64];
    char path[160];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char url[200];
    kbr_store *st = NULL;
    kbr_msg msg = {{0}};

    if (f == NULL || kbt_tmpdir(f->dir, sizeof(f->dir), "walbuf") != 0)
        return -1;
    /* the store registers its VFS when it first opens one */
    snprintf(url, sizeof(url), "sqlite:%s/store.db", f->dir);
    if (kbr_store_open(url, &st, &msg) != KBR_OK) {
        print_error("%s\n", msg.text);
        return -1;
    }
    kbr_store_close(st);
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    kbt_rmtree(f->dir);
    free(f);
    return 0;
}

static sqlite3 *open_db(const char *path, const char *vfs, const char *pragmas)
{
    sqlite3 *db = NULL;
    char *err = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    if (sqlite3_exec(db, pragmas, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", pragmas, err);
    return db;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

static sqlite3_int64 int_of(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    sqlite3_int64 v;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    if (sqlite3_step(stmt) != SQLITE_ROW)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
}

static void integrity_ok(sqlite3 *db)
{
    sqlite3_stmt *stmt = NULL;

    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "ok");
    sqlite3_finalize(stmt);
}

/* write(2)-family calls this process has made (pwrite included), from /proc/self/io */
static long write_calls(void)
{
    FILE *io = fopen("/proc/self/io", "r");
    char line[128];
    long n = -1;

    assert_non_null(io);
    while (fgets(line, sizeof(line), io) != NULL)
        if (sscanf(line, "syscw: %ld", &n) == 1)
            break;
    fclose(io);
    assert_true(n >= 0);
    return n;
}

#define FULL "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"

/* The write calls one commit of 200 pages makes, through vfs. */
static long commit_writes(const char *path, const char *vfs)
{
    sqlite3 *db = open_db(path, vfs, FULL);
    long before;

    exec_ok(db, "CREATE TABLE t(b BLOB)");
    exec_ok(db, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE "
                "i < 200) INSERT INTO t SELECT randomblob(4000) FROM n");
    before = write_calls();
    exec_ok(db, "COMMIT");
    before = write_calls() - before;
    sqlite3_close(db);
    return before;
}

static void test_commit_is_few_writes(void **state)
{
    fixture *f = *state;
    char plain[200];
    long ours, theirs;
    sqlite3 *db;

    snprintf(plain, sizeof(plain), "%s/plain.db", f->dir);
    theirs = commit_writes(plain, NULL);
    ours = commit_writes(f->path, WALBUF);
    /* SQLite's own VFS writes each frame's header and page apart: two calls a page */
    if (theirs < 400)
        fail_msg("the system VFS made %ld write calls for 200 pages", theirs);
    /* 200 frames of 4,120 bytes in writes of 124 KiB, and the WAL's header */
    if (ours > 10)
        fail_msg("the store's VFS made %ld write calls for 200 pages (%ld without it)", ours,
                 theirs);
    db = open_db(f->path, NULL, "PRAGMA query_only=1");
    assert_int_equal(int_of(db, "SELECT count(*) FROM t WHERE length(b) = 4000"), 200);
    integrity_ok(db);
    sqlite3_close(db);
}

/*
 * Other connections read a commit's frames as soon as the WAL index names them.  With no
 * sync after the commit, nothing but the commit frame's write puts them in the file.
 */
static void test_commit_visible_without_sync(void **state)
{
    fixture *f = *state;
    sqlite3 *w = open_db(f->path, WALBUF, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF");
    sqlite3 *r;

    exec_ok(w, "CREATE TABLE t(i INTEGER, b BLOB)");
    r = open_db(f->path, NULL, "PRAGMA query_only=1");
    for (int i = 1; i <= 100; i++) {
        char sql[128];

        snprintf(sql, sizeof(sql), "INSERT INTO t VALUES (%d, randomblob(%d))", i, 100 * i);
        exec_ok(w, sql);
        assert_int_equal(int_of(r, "SELECT count(*) FROM t"), i);
        assert_int_equal(int_of(r, "SELECT sum(length(b)) FROM t"), 100 * i * (i + 1) / 2);
    }
    integrity_ok(r);
    sqlite3_close(r);
    sqlite3_close(w);
}

/*
 * A small page cache spills frames before the commit, and SQLite writes a page that the
 * transaction changes again over its frame, in place: out of order, and read back.
 */
static void test_spill_and_rewrite(void **state)
{
    fixture *f = *state;
    sqlite3 *w = open_db(f->path, WALBUF, FULL "; PRAGMA cache_size=8");
    sqlite3 *r;

    exec_ok(w, "CREATE TABLE t(i INTEGER PRIMARY KEY, v INTEGER, b BLOB)");
    exec_ok(w, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE "
               "i < 2000) INSERT INTO t SELECT i, i, zeroblob(500) FROM n");
    /* the pages spilled last first, by the connection that wrote them */
    assert_int_equal(int_of(w, "SELECT sum(v) FROM (SELECT v FROM t ORDER BY i DESC)"), 2001000);
    exec_ok(w, "UPDATE t SET v = v * 2 WHERE i % 3 = 0; "
               "UPDATE t SET v = v + 1 WHERE i % 7 = 0; COMMIT");
    r = open_db(f->path, NULL, "PRAGMA query_only=1");
    /* sum of i, plus i again for multiples of 3, plus one for each multiple of 7 */
    assert_int_equal(int_of(r, "SELECT sum(v) FROM t"), 2001000 + 3 * 666 * 667 / 2 + 285);
    assert_int_equal(int_of(r, "SELECT count(*) FROM t WHERE b = zeroblob(500)"), 2000);
    integrity_ok(r);
    sqlite3_close(r);
    sqlite3_close(w);
}

/* A process that dies after its commits returned leaves them all in the WAL. */
static void test_commits_survive_a_crash(void **state)
{
    fixture *f = *state;
    int status = 0;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3 *w = NULL;

        if (sqlite3_open_v2(f->path, &w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, WALBUF) !=
                SQLITE_OK ||
            sqlite3_exec(w, FULL "; CREATE TABLE t(i INTEGER, b BLOB)", NULL, NULL, NULL) !=
                SQLITE_OK)
            _exit(1);
        for (int i = 1; i <= 300; i++) {
            char sql[128];
            snprintf(sql, sizeof(sql), "INSERT INTO t VALUES (%d, randomblob(%d))", i, 37 * i);
            if (sqlite3_exec(w, sql, NULL, NULL, NULL) != SQLITE_OK)
                _exit(1);
        }
        _exit(0); /* no close: no checkpoint, the WAL stays */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    {
        sqlite3 *r = open_db(f->path, NULL, "PRAGMA query_only=1");

        assert_int_equal(int_of(r, "SELECT count(*) FROM t"), 300);
        assert_int_equal(int_of(r, "SELECT sum(length(b)) FROM t"), 37 * 300 * 301 / 2);
        integrity_ok(r);
        sqlite3_close(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_is_few_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_visible_without_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spill_and_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits_survive_a_crash, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
