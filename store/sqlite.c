/*
 * sqlite.c - the SQLite back end: connection, schema, transactions
 * and the audit table.
 *
 * URL: "sqlite:PATH" or "sqlite:PATH?max_pages=N".  max_pages caps the
 * database at N pages (PRAGMA max_page_count, 4 KiB pages by default): a
 * quota that keeps the log from filling a disk it shares; a commit that
 * would pass it fails like a full disk and the writer retries with the
 * next group.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "sqlite.h"

/*
 * The schema is SQL (the files of store/sql/, loadable by sqlite3 as it is), built into the
 * binary as kbr_sql_* strings.  v1.sql is version 1, kept as it was: a new store is created
 * at version 1 and taken through the same steps as a store an older broker wrote.
 */

kbr_err kbr_sqlite_err(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return KBR_OK;
    case SQLITE_CONSTRAINT:
        return KBR_ERR_STORE_CONSTRAINT;
    case SQLITE_NOMEM:
        return KBR_ERR_NOMEM;
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
        return KBR_ERR_INTERNAL;
    default:
        /* FULL, IOERR, CANTOPEN, READONLY, BUSY, LOCKED, CORRUPT, NOTADB, ... */
        return KBR_ERR_STORE;
    }
}

kbr_err kbr_sqlite_stmt(kbr_sqlite *s, kbr_sq_id id, const char *sql, sqlite3_stmt **out)
{
    kbr_err err = KBR_OK;

    *out = NULL;
    if (s->stmts[id] == NULL)
        KBR_GUARD(kbr_sqlite_err(
            sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[id], NULL)));
    *out = s->stmts[id];
out:
    return err;
}

void kbr_sqlite_done(sqlite3_stmt *stmt)
{
    if (stmt == NULL)
        return;
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

kbr_err kbr_sqlite_run(sqlite3_stmt *stmt)
{
    return kbr_sqlite_err(sqlite3_step(stmt));
}

kbr_err kbr_sqlite_bind_text(sqlite3_stmt *stmt, int idx, const char *s)
{
    if (s == NULL)
        return kbr_sqlite_err(sqlite3_bind_null(stmt, idx));
    return kbr_sqlite_err(sqlite3_bind_text(stmt, idx, s, -1, SQLITE_STATIC));
}

const char *kbr_sqlite_text(sqlite3_stmt *stmt, int col)
{
    return (const char *)sqlite3_column_text(stmt, col);
}

/* Runs one cached statement that takes no parameters and returns no rows. */
static kbr_err run_fixed(kbr_sqlite *s, kbr_sq_id id, const char *sql)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt(s, id, sql, &stmt));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

static int walbuf_rc = SQLITE_ERROR;
static pthread_once_t library_once_flag = PTHREAD_ONCE_INIT;

/* Before SQLite starts: what must be configured first, and the store's VFS. */
static void library_once(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, 1 << 20);
    walbuf_rc = kbr_sqlite_walbuf_register();
}

static const char *store_vfs(void)
{
    pthread_once(&library_once_flag, library_once);
    return walbuf_rc == SQLITE_OK ? KBR_SQLITE_VFS : NULL;
}

/*
 * The store's file by the name SQLite opens it by, which its VFS tells: SQLite follows
 * symbolic links, in the directories and in the name (one that points at no file yet
 * included), and keeps the -wal, -shm and -journal beside the file it reaches.  The lock file,
 * and every look at those files, go by that name too: by the name given, a store reached
 * through a link would have its lock beside the link, and a second keybrokerd given the
 * file's own name (or another link) would take a lock of its own and serve the same store.
 */
static kbr_err resolved_path(const char *given, char **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_vfs *vfs = sqlite3_vfs_find(store_vfs());
    int rc;

    *out = NULL;
    KBR_ENSURE(vfs != NULL, kbr_fail(msg, KBR_ERR_STORE, "store %s: SQLite has no VFS", given));
    *out = malloc((size_t)vfs->mxPathname + 1);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
    rc = vfs->xFullPathname(vfs, given, vfs->mxPathname + 1, *out);
    KBR_ENSURE(rc == SQLITE_OK || rc == SQLITE_OK_SYMLINK,
               kbr_fail(msg, rc == SQLITE_NOMEM ? KBR_ERR_NOMEM : KBR_ERR_STORE,
                        "store %s: SQLite cannot tell which file the name leads to (a loop of "
                        "symbolic links, a directory it may not search, or a name too long)",
                        given));
out:
    if (err != KBR_OK) {
        free(*out);
        *out = NULL;
    }
    return err;
}

kbr_err kbr_sqlite_parse_location(const char *loc, char **path, sqlite3_int64 *max_pages,
                                  kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *q = strchr(loc, '?');
    size_t n = q != NULL ? (size_t)(q - loc) : strlen(loc);
    char *end = NULL, *given = NULL;

    *path = NULL;
    *max_pages = 0;
    KBR_ENSURE(n > 0, kbr_fail(msg, KBR_ERR_CONFIG, "store: sqlite URL has no path"));
    if (q != NULL) {
        KBR_ENSURE(strncmp(q + 1, "max_pages=", 10) == 0,
                   kbr_fail(msg, KBR_ERR_CONFIG,
                            "store: unknown option \"%s\" (known: max_pages=N)", q + 1));
        errno = 0;
        *max_pages = strtoll(q + 11, &end, 10);
        KBR_ENSURE(errno == 0 && end != q + 11 && *end == '\0' && *max_pages > 0,
                   kbr_fail(msg, KBR_ERR_CONFIG,
                            "store: max_pages must be a positive integer, not \"%s\"", q + 11));
    }
    given = strndup(loc, n);
    KBR_ENSURE(given != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(resolved_path(given, path, msg));
out:
    free(given);
    return err;
}

/* The pid the holder wrote, for the message; 0 when it cannot be read. */
static long lock_holder(int fd)
{
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

    return n > 0 ? strtol(buf, NULL, 10) : 0;
}

static kbr_err sqlite_lock(const char *loc, int *fd, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *path = NULL, *lock_path = NULL, pid[32];
    sqlite3_int64 max_pages;
    int lfd = -1;

    *fd = -1;
    KBR_GUARD(kbr_sqlite_parse_location(loc, &path, &max_pages, msg));
    KBR_ENSURE(asprintf(&lock_path, "%s.lock", path) > 0, KBR_ERR_NOMEM);
    lfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    KBR_ENSURE(lfd >= 0, kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot open the lock file %s: %s",
                                  path, lock_path, strerror(errno)));
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        KBR_ENSURE(errno == EWOULDBLOCK,
                   kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot lock %s: %s", path, lock_path,
                            strerror(errno)));
        err = kbr_fail(msg, KBR_ERR_CONFLICT,
                       "store %s is in use by another keybrokerd (pid %ld, lock %s)", path,
                       lock_holder(lfd), lock_path);
        goto out;
    }
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    KBR_ENSURE(
        ftruncate(lfd, 0) == 0 && pwrite(lfd, pid, strlen(pid), 0) == (ssize_t)strlen(pid),
        kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot write the lock file %s", path, lock_path));
    /* the lock holder alone makes backup copies: what an earlier one left is nobody's */
    kbr_sqlite_backup_leftovers(path);
    *fd = lfd;
    lfd = -1;
out:
    if (lfd >= 0)
        close(lfd);
    free(lock_path);
    free(path);
    return err;
}

kbr_err kbr_sqlite_fail(kbr_sqlite *s, const char *path, int rc, kbr_msg *msg)
{
    return kbr_fail(msg, kbr_sqlite_err(rc), "store %s: %s", path, sqlite3_errmsg(s->db));
}

static kbr_err set_wal(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    const char *mode;
    int rc;

    rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &stmt, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_fail(s, path, rc, msg));
    mode = kbr_sqlite_text(stmt, 0);
    /* Readers must never block the writer, and commits must be WAL-durable. */
    KBR_ENSURE(mode != NULL && strcmp(mode, "wal") == 0,
               kbr_fail(msg, KBR_ERR_STORE, "store %s: WAL journal not available (got %s)", path,
                        mode != NULL ? mode : "nothing"));
out:
    sqlite3_finalize(stmt);
    return err;
}

/* kbr_name_matches(pattern, name) in SQL: the scope rule itself, not a restatement of it. */
static void sql_name_matches(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    sqlite3_result_int(ctx, kbr_name_matches((const char *)sqlite3_value_text(argv[0]),
                                             (const char *)sqlite3_value_text(argv[1])));
}

/* kbr_store_purl_key(purl) in SQL, for the schema step that fills components.purl_key. */
static void sql_purl_key(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    char *key = NULL;

    (void)argc;
    if (kbr_store_purl_key((const char *)sqlite3_value_text(argv[0]), &key) != KBR_OK) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    if (key == NULL)
        sqlite3_result_null(ctx);
    else
        sqlite3_result_text(ctx, key, -1, free);
}

static kbr_err configure(kbr_sqlite *s, const char *path, sqlite3_int64 max_pages, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char pragma[64];
    int rc;

    sqlite3_extended_result_codes(s->db, 1);
    rc = sqlite3_create_function_v2(s->db, "kbr_name_matches", 2,
                                    SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                    sql_name_matches, NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    rc = sqlite3_create_function_v2(s->db, "kbr_purl_key", 1,
                                    SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                    sql_purl_key, NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    KBR_GUARD(set_wal(s, path, msg));
    rc = sqlite3_exec(s->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    if (max_pages > 0) {
        snprintf(pragma, sizeof(pragma), "PRAGMA max_page_count=%lld", (long long)max_pages);
        rc = sqlite3_exec(s->db, pragma, NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    }
out:
    return err;
}

/* Called by SQLite after each commit of the writer's connection. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    ((kbr_sqlite *)arg)->wal_frames = frames;
    return SQLITE_OK;
}

static kbr_err sqlite_writer_mode(kbr_store *st)
{
    kbr_sqlite *s = (kbr_sqlite *)st;
    kbr_err err =
        kbr_sqlite_err(sqlite3_exec(s->db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL));

    /* after the pragma, which installs SQLite's own hook (none, for 0) */
    if (err == KBR_OK)
        sqlite3_wal_hook(s->db, on_wal_commit, s);
    return err;
}

/*
 * The WAL starts over only when a write transaction begins with every frame already
 * copied into the database.  The checkpointer (sqlite_maintain) copies beside the writer,
 * so under steady load new frames always arrive first and the WAL grew without end: each
 * commit wrote to new blocks of a longer file, which the file system allocates and
 * zeroes, and each fsync then committed the file's metadata as well.  Past
 * WAL_RESTART_FRAMES, the writer copies the frames the checkpointer has not, between
 * groups, so that its next transaction starts the WAL over.  The audit writer calls this
 * just after a checkpointer's copy, when those are few.  32 MiB: each start over costs the
 * writer two fsyncs, and at 1,000 frames (4 MiB) they showed in provisioning's p99
 * (49 -> 62 ms in make bench); at 8,192, 54 ms.
 */
#define WAL_RESTART_FRAMES 8192

static kbr_err sqlite_writer_between(kbr_store *st, bool *copied)
{
    kbr_sqlite *s = (kbr_sqlite *)st;
    int rc;

    if (s->wal_frames < WAL_RESTART_FRAMES)
        return KBR_OK;
    rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    /* the checkpointer holds the lock: it is copying, and the next group tries again */
    if (rc == SQLITE_BUSY)
        return KBR_OK;
    *copied = rc == SQLITE_OK;
    return kbr_sqlite_err(rc);
}

/*
 * PASSIVE copies what it can without waiting on the writer or readers; the
 * writer starts the WAL over once everything was copied.
 */
static kbr_err sqlite_maintain(kbr_store *st)
{
    kbr_sqlite *s = (kbr_sqlite *)st;
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);

    return rc == SQLITE_BUSY ? KBR_OK : kbr_sqlite_err(rc);
}

kbr_err kbr_sqlite_schema_version(kbr_sqlite *s, const char *path, int *version, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *version = 0;
    rc = sqlite3_prepare_v2(s->db, "SELECT max(schema_version) FROM meta", -1, &stmt, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_fail(s, path, rc, msg));
    *version = sqlite3_column_int(stmt, 0);
out:
    sqlite3_finalize(stmt);
    return err;
}

/* Each later version is one step keyed on the version found; a step ends by recording its
 * version in meta. */
static kbr_err schema_in_tx(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    int version = 0, rc;

    rc = sqlite3_exec(s->db, kbr_sql_v1, NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    KBR_GUARD(kbr_sqlite_schema_version(s, path, &version, msg));
    KBR_ENSURE(version <= KBR_SQLITE_SCHEMA_VERSION,
               kbr_fail(msg, KBR_ERR_STORE,
                        "store %s: schema version %d is newer than this broker's (%d)", path,
                        version, KBR_SQLITE_SCHEMA_VERSION));
    if (version == 0) {
        rc = sqlite3_exec(s->db, "INSERT INTO meta(schema_version) VALUES (1)", NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
        version = 1;
    }
    if (version == 1) {
        KBR_GUARD(kbr_sqlite_migrate_v2(s, path, msg));
        version = 2;
    }
    if (version == 2) {
        KBR_GUARD(kbr_sqlite_migrate_v3(s, path, msg));
        version = 3;
    }
    if (version == 3) {
        rc = sqlite3_exec(s->db, kbr_sql_v4_schema, NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
        version = 4;
    }
    if (version == 4) {
        rc = sqlite3_exec(s->db, kbr_sql_v5_issuer, NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
        rc = sqlite3_exec(s->db, "UPDATE meta SET schema_version = 5", NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
        version = 5;
    }
    if (version == 5) {
        rc = sqlite3_exec(s->db, kbr_sql_v6_revoke, NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
        rc = sqlite3_exec(s->db, "UPDATE meta SET schema_version = 6", NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
        version = 6;
    }
    if (version < 7) {
        rc = sqlite3_exec(s->db, kbr_sql_v7_audit, NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
        rc = sqlite3_exec(s->db, "UPDATE meta SET schema_version = 7", NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    }
    if (version < 8) {
        rc = sqlite3_exec(s->db, kbr_sql_v8_deliver, NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    }
    if (version < 9) {
        rc = sqlite3_exec(s->db, kbr_sql_v9_cra, NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
        rc = sqlite3_exec(s->db, "UPDATE meta SET schema_version = 9", NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    }
    if (version < 10) {
        rc = sqlite3_exec(s->db, kbr_sql_v10_schema, NULL, NULL, NULL);
        KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    }
out:
    return err;
}

/* Every thread opens its own connection; only the first open of a new store takes the write
 * lock to create the schema, later opens never wait behind the writer's commits. */
static bool schema_current(kbr_sqlite *s)
{
    sqlite3_stmt *stmt = NULL;
    bool current = false;

    if (sqlite3_prepare_v2(s->db, "SELECT max(schema_version) FROM meta", -1, &stmt, NULL) ==
            SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        current = sqlite3_column_int(stmt, 0) == KBR_SQLITE_SCHEMA_VERSION;
    sqlite3_finalize(stmt);
    return current;
}

static kbr_err schema_create(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    bool in_tx = false;
    int rc;

    if (schema_current(s))
        goto out;
    /* IMMEDIATE: two processes creating the same store must not both see "no schema". */
    rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    in_tx = true;
    KBR_GUARD(schema_in_tx(s, path, msg));
    rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    in_tx = false;
out:
    if (in_tx && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return err;
}

void kbr_sqlite_close(kbr_store *st)
{
    kbr_sqlite *s = (kbr_sqlite *)st;

    if (s == NULL)
        return;
    for (size_t i = 0; i < SQ__COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    sqlite3_close_v2(s->db);
    free(s);
}

/*
 * Whether an existing file holds a keybroker store (its meta table), asked before anything
 * writes to it: only --init makes a store, so an empty file (a copy that did not finish, a
 * file a crash emptied) or another program's database is refused as it is, not given a
 * schema and then refused by the HSM's record as a rollback.
 */
static kbr_err holds_a_store(kbr_sqlite *s, const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(
        s->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'", -1, &stmt,
        NULL);

    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_fail(s, path, rc, msg));
    KBR_ENSURE(rc == SQLITE_ROW, kbr_store_no_schema(path, msg));
out:
    sqlite3_finalize(stmt);
    return err;
}

/*
 * Set once, before the library starts:
 *  - SQLite keeps memory statistics under a global mutex that every allocation of every
 *    connection takes; the broker reads none of them.
 *  - The audit writer applies each record's effects inside a savepoint of its group's
 *    transaction, and SQLite keeps the pages a savepoint may have to restore in a statement
 *    journal.  Past 64 KiB (sixteen pages), its default, that journal moved to a temporary
 *    file, and each page was a write: 0.6 per signature in make bench.  Up to 1 MiB it now
 *    stays in memory, which holds a signature's or a certificate's record; a larger one
 *    still goes to a file rather than taking memory without bound.
 * Then the store's VFS; without it, connections open with the system's.
 */
static kbr_err open_with(const char *location, int flags, kbr_store **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_sqlite *s = NULL;
    char *path = NULL;
    sqlite3_int64 max_pages = 0;
    int rc;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_parse_location(location, &path, &max_pages, msg));
    s = calloc(1, sizeof(*s));
    KBR_ENSURE(s != NULL, KBR_ERR_NOMEM);
    s->base.ops = &kbr_store_sqlite_ops;
    if (flags & SQLITE_OPEN_CREATE) {
        /* a new store is its owner's alone (0600, whatever the umask), and so are the -wal
         * and -shm SQLite makes beside it, which take its mode */
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
    }
    rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | flags,
                         store_vfs());
    KBR_ENSURE(s->db != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    /* SQLite falls back to read-only when it may not write; the store must be writable. */
    KBR_ENSURE(
        sqlite3_db_readonly(s->db, "main") == 0,
        kbr_fail(msg, KBR_ERR_STORE, "store %s: opened read-only (check permissions)", path));
    /* before the first read: the brokers' other connections open while the writer's may be
     * recovering the WAL index */
    sqlite3_busy_timeout(s->db, 5000);
    if (!(flags & SQLITE_OPEN_CREATE))
        KBR_GUARD(holds_a_store(s, path, msg));
    KBR_GUARD(configure(s, path, max_pages, msg));
    KBR_GUARD(schema_create(s, path, msg));
    *out = &s->base;
    s = NULL;
out:
    kbr_sqlite_close((kbr_store *)s);
    free(path);
    return err;
}

static kbr_err sqlite_open(const char *location, kbr_store **out, kbr_msg *msg)
{
    return open_with(location, SQLITE_OPEN_CREATE, out, msg);
}

/* The file must be there: it is not created, even if it goes between the look and the open. */
static kbr_err sqlite_open_existing(const char *location, kbr_store **out, kbr_msg *msg)
{
    kbr_err err = kbr_sqlite_exists(location, msg);

    *out = NULL;
    return err != KBR_OK ? err : open_with(location, 0, out, msg);
}

static kbr_err sqlite_begin(kbr_store *st)
{
    /* IMMEDIATE takes the write lock now, so no statement inside can fail to upgrade. */
    return run_fixed((kbr_sqlite *)st, SQ_BEGIN, "BEGIN IMMEDIATE");
}

static kbr_err sqlite_commit(kbr_store *st)
{
    return run_fixed((kbr_sqlite *)st, SQ_COMMIT, "COMMIT");
}

static void sqlite_rollback(kbr_store *st)
{
    kbr_sqlite *s = (kbr_sqlite *)st;

    /* After FULL, IOERR or NOMEM SQLite may already have rolled back by itself. */
    if (sqlite3_get_autocommit(s->db))
        return;
    (void)run_fixed(s, SQ_ROLLBACK, "ROLLBACK");
}

static bool sqlite_in_transaction(kbr_store *st)
{
    return !sqlite3_get_autocommit(((kbr_sqlite *)st)->db);
}

static kbr_err sqlite_savepoint(kbr_store *st)
{
    return run_fixed((kbr_sqlite *)st, SQ_SAVEPOINT, "SAVEPOINT kbr_effects");
}

static kbr_err sqlite_release(kbr_store *st)
{
    return run_fixed((kbr_sqlite *)st, SQ_RELEASE, "RELEASE kbr_effects");
}

static void sqlite_rollback_to(kbr_store *st)
{
    kbr_sqlite *s = (kbr_sqlite *)st;

    if (sqlite3_get_autocommit(s->db))
        return;
    /* ROLLBACK TO keeps the savepoint open; RELEASE ends it.  Both fail only if the whole
     * transaction is already gone, which the writer's rollback then handles. */
    (void)run_fixed(s, SQ_ROLLBACK_TO, "ROLLBACK TO kbr_effects");
    (void)run_fixed(s, SQ_RELEASE, "RELEASE kbr_effects");
}

/* One broker per SQLite store (sqlite_lock): it makes the checkpoints. */
static kbr_err sqlite_checkpoint_lease(kbr_store *st, bool *held)
{
    (void)st;
    *held = true;
    return KBR_OK;
}

static kbr_err sqlite_audit_insert(kbr_store *st, const kbr_store_audit_row *row)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_GUARD(kbr_sqlite_stmt((kbr_sqlite *)st, SQ_AUDIT_INSERT,
                              "INSERT INTO audit(seq, entry, hash) VALUES (?1, ?2, ?3)", &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, row->seq)));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 2, row->entry_json));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 3, row->hash));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

static kbr_err copy_hash(const char *src, char hash[65])
{
    if (src == NULL || strlen(src) != 64)
        return KBR_ERR_STORE;
    memcpy(hash, src, 65);
    return KBR_OK;
}

static kbr_err sqlite_audit_tail(kbr_store *st, int64_t *seq, char hash[65])
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *seq = 0;
    memset(hash, '0', 64);
    hash[64] = '\0';
    KBR_GUARD(kbr_sqlite_stmt((kbr_sqlite *)st, SQ_AUDIT_TAIL,
                              "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &stmt));
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE)
        goto out;
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    KBR_GUARD(copy_hash(kbr_sqlite_text(stmt, 1), hash));
    *seq = sqlite3_column_int64(stmt, 0);
out:
    kbr_sqlite_done(stmt);
    return err;
}

static kbr_err sqlite_audit_walk(kbr_store *st, int64_t after, int64_t limit, kbr_store_entry_fn fn,
                                 void *arg)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    KBR_GUARD(kbr_sqlite_stmt((kbr_sqlite *)st, SQ_AUDIT_WALK,
                              "SELECT seq, entry, hash FROM audit WHERE seq > ?1"
                              " ORDER BY seq LIMIT ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, after)));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 2, limit)));
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *entry = kbr_sqlite_text(stmt, 1), *hash = kbr_sqlite_text(stmt, 2);

        KBR_ENSURE(entry != NULL && hash != NULL, KBR_ERR_STORE);
        KBR_GUARD(fn(sqlite3_column_int64(stmt, 0), entry, hash, arg));
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
out:
    kbr_sqlite_done(stmt);
    return err;
}

/* "(name = ?N OR name GLOB ?N+1 ...)", numbered from *param on: GLOB for a "prefix*" entry,
 * so the index on name serves it; the same as kbr_name_matches because names hold no GLOB
 * metacharacter ([A-Za-z0-9._:@+-]) but that final '*' (test_store_audit.c checks that they
 * agree); "(0)" for an empty list, which matches nothing. */
static void match_any_sql(FILE *sql, const char *column, const char *const *patterns, size_t n,
                          int *param)
{
    fputs("(", sql);
    if (n == 0)
        fputs("0", sql);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(patterns[i]);
        bool prefix = len > 0 && patterns[i][len - 1] == '*';
        fprintf(sql, "%s%s %s ?%d", i > 0 ? " OR " : "", column, prefix ? "GLOB" : "=", (*param)++);
    }
    fputs(")", sql);
}

/*
 * Driven by audit_products when the reader is limited to products: for one product that is
 * a walk of its index in seq order, however long the log.  *text is the caller's to free.
 */
static kbr_err within_sql(const kbr_audit_scope *scope, char **text)
{
    size_t len = 0;
    FILE *sql = open_memstream(text, &len);
    int param = 3; /* ?1 is after, ?2 the limit */

    if (sql == NULL)
        return KBR_ERR_NOMEM;
    if (scope->products_limited) {
        fputs("SELECT DISTINCT a.seq, a.entry, a.hash FROM audit_products p"
              " JOIN audit a ON a.seq = p.seq WHERE p.seq > ?1 AND ",
              sql);
        match_any_sql(sql, "p.product", scope->products, scope->nproducts, &param);
    } else {
        fputs("SELECT a.seq, a.entry, a.hash FROM audit a WHERE a.seq > ?1", sql);
    }
    if (scope->keys_limited) {
        fputs(" AND ", sql);
        match_any_sql(sql, "a.key", scope->keys, scope->nkeys, &param);
    }
    fputs(" ORDER BY a.seq LIMIT ?2", sql);
    if (ferror(sql) != 0) {
        fclose(sql);
        free(*text);
        *text = NULL;
        return KBR_ERR_NOMEM;
    }
    return fclose(sql) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err bind_patterns(sqlite3_stmt *stmt, int *at, const char *const *patterns, size_t n)
{
    kbr_err err = KBR_OK;

    for (size_t i = 0; i < n; i++)
        KBR_GUARD(kbr_sqlite_bind_text(stmt, (*at)++, patterns[i]));
out:
    return err;
}

static kbr_err sqlite_audit_walk_within(kbr_store *st, int64_t after, int64_t limit,
                                        const kbr_audit_scope *scope, kbr_store_entry_fn fn,
                                        void *arg)
{
    kbr_err err = KBR_OK;
    kbr_sqlite *s = (kbr_sqlite *)st;
    char *sql = NULL;
    sqlite3_stmt *stmt = NULL;
    int rc, at = 3;

    KBR_GUARD(within_sql(scope, &sql));
    /* the shape depends on the scope, so it is prepared for each page */
    KBR_GUARD(kbr_sqlite_err(sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL)));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, after)));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 2, limit)));
    if (scope->products_limited)
        KBR_GUARD(bind_patterns(stmt, &at, scope->products, scope->nproducts));
    if (scope->keys_limited)
        KBR_GUARD(bind_patterns(stmt, &at, scope->keys, scope->nkeys));
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *entry = kbr_sqlite_text(stmt, 1), *hash = kbr_sqlite_text(stmt, 2);

        KBR_ENSURE(entry != NULL && hash != NULL, KBR_ERR_STORE);
        KBR_GUARD(fn(sqlite3_column_int64(stmt, 0), entry, hash, arg));
    }
    KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_err(rc));
out:
    sqlite3_finalize(stmt);
    free(sql);
    return err;
}

const kbr_store_ops kbr_store_sqlite_ops = {
    .scheme = "sqlite",
    .open = sqlite_open,
    .open_existing = sqlite_open_existing,
    .close = kbr_sqlite_close,
    .lock = sqlite_lock,
    .exists = kbr_sqlite_exists,
    .file = kbr_sqlite_file,
    .open_readonly = kbr_sqlite_open_readonly,
    .backup = kbr_sqlite_backup,
    .copy_to = kbr_sqlite_copy_to,
    .interrupt = kbr_sqlite_interrupt,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .in_transaction = sqlite_in_transaction,
    .savepoint = sqlite_savepoint,
    .release = sqlite_release,
    .rollback_to = sqlite_rollback_to,
    .writer_mode = sqlite_writer_mode,
    .writer_between = sqlite_writer_between,
    .token_uses_left = kbr_sqlite_token_uses_left,
    .checkpoint_lease = sqlite_checkpoint_lease,
    .maintain = sqlite_maintain,
    .key_create = kbr_sqlite_key_create,
    .key_retire = kbr_sqlite_key_retire,
    .token_issue = kbr_sqlite_token_issue,
    .token_revoke = kbr_sqlite_token_revoke,
    .token_revoke_all = kbr_sqlite_token_revoke_all,
    .issuer_current = kbr_sqlite_issuer_current,
    .issuer_replace = kbr_sqlite_issuer_replace,
    .issuer_insert = kbr_sqlite_issuer_insert,
    .tokens_assign_kid = kbr_sqlite_tokens_assign_kid,
    .issuer_keys = kbr_sqlite_issuer_keys,
    .firmware_digest = kbr_sqlite_firmware_digest,
    .firmware_insert = kbr_sqlite_firmware_insert,
    .component_insert = kbr_sqlite_component_insert,
    .key_exists = kbr_sqlite_key_exists,
    .evidence_seqs = kbr_sqlite_evidence_seqs,
    .bulk_mode = kbr_sqlite_bulk_mode,
    .scratch_mode = kbr_sqlite_scratch_mode,
    .effects_from = kbr_sqlite_effects_from,
    .integrity = kbr_sqlite_integrity,
    .compare = kbr_sqlite_compare,
    .document_put = kbr_sqlite_document_put,
    .document_exists = kbr_sqlite_document_exists,
    .document_get = kbr_sqlite_document_get,
    .issuer_chain = kbr_sqlite_issuer_chain,
    .cert_supersede = kbr_sqlite_cert_supersede,
    .cert_insert = kbr_sqlite_cert_insert,
    .batch_create = kbr_sqlite_batch_create,
    .batch_claim = kbr_sqlite_batch_claim,
    .device_insert = kbr_sqlite_device_insert,
    .device_exists = kbr_sqlite_device_exists,
    .device_key_set = kbr_sqlite_device_key_set,
    .device_event_insert = kbr_sqlite_device_event_insert,
    .audit_insert = sqlite_audit_insert,
    .audit_tail = sqlite_audit_tail,
    .audit_walk = sqlite_audit_walk,
    .audit_walk_within = sqlite_audit_walk_within,
    .merkle_node_get = kbr_sqlite_merkle_node_get,
    .merkle_node_put = kbr_sqlite_merkle_node_put,
    .checkpoint_insert = kbr_sqlite_checkpoint_insert,
    .checkpoint_latest = kbr_sqlite_checkpoint_latest,
    .checkpoint_find = kbr_sqlite_checkpoint_find,
    .checkpoint_rotations = kbr_sqlite_checkpoint_rotations,
    .key_get = kbr_sqlite_key_get,
    .key_list = kbr_sqlite_key_list,
    .token_list = kbr_sqlite_token_list,
    .firmware_get = kbr_sqlite_firmware_get,
    .batch_get = kbr_sqlite_batch_get,
    .batch_list = kbr_sqlite_batch_list,
    .device_get = kbr_sqlite_device_get,
    .device_find = kbr_sqlite_device_find,
    .device_by_key = kbr_sqlite_device_by_key,
    .device_events = kbr_sqlite_device_events,
    .debug_challenge_insert = kbr_sqlite_debug_challenge_insert,
    .device_firmware_insert = kbr_sqlite_device_firmware_insert,
    .device_firmware_current = kbr_sqlite_device_firmware_current,
    .devices_known = kbr_sqlite_devices_known,
    .debug_challenge_used = kbr_sqlite_debug_challenge_used,
    .device_firmware = kbr_sqlite_device_firmware,
    .snapshot_begin = kbr_sqlite_snapshot_begin,
    .snapshot_end = kbr_sqlite_snapshot_end,
    .device_certificates = kbr_sqlite_device_certificates,
    .firmware_components = kbr_sqlite_firmware_components,
    .product_relations = kbr_sqlite_product_relations,
    .product_known = kbr_sqlite_product_known,
    .live_tokens = kbr_sqlite_live_tokens,
    .cert_months = kbr_sqlite_cert_months,
    .expiring_devices = kbr_sqlite_expiring_devices,
    .key_tokens = kbr_sqlite_key_tokens,
    .key_operations = kbr_sqlite_key_operations,
    .exposure_components = kbr_sqlite_exposure_components,
    .build_row = kbr_sqlite_build_row,
    .fleet_batches = kbr_sqlite_fleet_batches,
    .build_histories = kbr_sqlite_build_histories,
    .history_batches = kbr_sqlite_history_batches,
    .batch_markets = kbr_sqlite_batch_markets,
    .pending_group = kbr_sqlite_pending_group,
    .fleet_walk = kbr_sqlite_fleet_walk,
    .fleet_size = kbr_sqlite_fleet_size,
    .device_revoked = kbr_sqlite_device_revoked,
    .device_revoke = kbr_sqlite_device_revoke,
    .crl_last_number = kbr_sqlite_crl_last_number,
    .crl_insert = kbr_sqlite_crl_insert,
    .crl_revoked = kbr_sqlite_crl_revoked,
    .device_revocation = kbr_sqlite_device_revocation,
    .key_delivery_insert = kbr_sqlite_key_delivery_insert,
    .device_deliveries = kbr_sqlite_device_deliveries,
    .product_get = kbr_sqlite_product_get,
    .product_put = kbr_sqlite_product_put,
    .incident_insert = kbr_sqlite_incident_insert,
    .incident_build_insert = kbr_sqlite_incident_build_insert,
    .incident_fleet_load = kbr_sqlite_incident_fleet_load,
    .incident_get = kbr_sqlite_incident_get,
    .incident_list = kbr_sqlite_incident_list,
    .incident_queries = kbr_sqlite_incident_queries,
    .incident_builds = kbr_sqlite_incident_builds,
    .incident_fix = kbr_sqlite_incident_fix,
    .incident_report_insert = kbr_sqlite_incident_report_insert,
    .incident_reports = kbr_sqlite_incident_reports,
    .incident_series = kbr_sqlite_incident_series,
    .firmware_version_exists = kbr_sqlite_firmware_version_exists,
    .evidence_incident_seqs = kbr_sqlite_evidence_incident_seqs,
};
