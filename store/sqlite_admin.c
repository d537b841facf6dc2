/*
 * sqlite_admin.c - what an operator's commands need of the SQLite back end
 * beyond serving: whether a store exists, reading one without changing a
 * byte (keybrokerd --check), and consistent copies while the writer commits
 * (GET /v1/backup).
 *
 * Reading without changing: a connection in WAL mode that finds no -shm
 * file creates one, and its close may leave it, so a store at rest (no
 * daemon, no WAL files) is opened as an immutable file, which SQLite reads
 * without locks or side files.  A store a daemon serves has its WAL files
 * already and is opened read-only through them, so what it committed is
 * seen.  An immutable file is read without its WAL, so a store whose -wal
 * holds frames but has lost its -shm (a daemon that stopped without folding
 * its log in, copied without the index) is read through the WAL too: SQLite
 * makes the -shm again from it, and where it cannot (read-only media) the
 * store is refused rather than read as it was before the log's commits.
 * Likewise a store beside a written -journal (a copy kept as evidence, in
 * rollback mode, changed by a process that died): immutable, it would be read
 * with the half-written pages of a change that was interrupted, so it is
 * opened read-only through SQLite's locks, which find the journal hot and
 * refuse to read (SQLite rolls a hot journal back before it looks for a WAL);
 * the store is refused then, since rolling the change back would write to it.
 *
 * Copies: VACUUM INTO reads the store in one read transaction, so the copy
 * is the store as of one instant, whatever the writer commits meanwhile; it
 * goes to a file beside the store (the one file system known to have room
 * for a store) that is unlinked as soon as it is opened for streaming.  A
 * process that dies while the copy is being written leaves that file: the
 * next holder of the store's lock removes it (kbr_sqlite_backup_leftovers).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "sqlite.h"

#define BACKUP_INFIX ".backup-"
#define BACKUP_TAIL  ".tmp"

static kbr_err path_exists(const char *path, kbr_msg *msg)
{
    struct stat sb;

    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return kbr_fail(msg, KBR_ERR_NOT_FOUND,
                            "store %s does not exist; only keybrokerd --init creates a store "
                            "(check the store setting)",
                            path);
        return kbr_fail(msg, KBR_ERR_STORE, "store %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return kbr_fail(msg, KBR_ERR_STORE, "store %s: not a regular file", path);
    return KBR_OK;
}

kbr_err kbr_sqlite_exists(const char *loc, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *path = NULL;
    sqlite3_int64 max_pages;

    KBR_GUARD(kbr_sqlite_parse_location(loc, &path, &max_pages, msg));
    err = path_exists(path, msg);
out:
    free(path);
    return err;
}

/*
 * The pid holding an flock on PATH.lock, from /proc/locks (device and inode of the lock file),
 * which looks without touching the lock: 0 when nobody holds it, -1 when it cannot be told.
 */
static long lock_holder_pid(const char *path)
{
    char *lock_path = NULL, line[256];
    struct stat sb;
    FILE *f = NULL;
    long pid = 0;

    if (asprintf(&lock_path, "%s.lock", path) < 0)
        return -1;
    if (stat(lock_path, &sb) != 0) {
        pid = errno == ENOENT ? 0 : -1;
        goto out;
    }
    f = fopen("/proc/locks", "r");
    if (f == NULL) {
        pid = -1;
        goto out;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char kind[16], mode[16];
        unsigned maj, min;
        unsigned long ino;
        long p;
        /* "1: FLOCK  ADVISORY  WRITE 1234 fe:00:10952868 0 EOF" */
        if (sscanf(line, "%*[^:]: %15s %*s %15s %ld %x:%x:%lu", kind, mode, &p, &maj, &min, &ino) !=
            6)
            continue;
        if (strcmp(kind, "FLOCK") == 0 && strcmp(mode, "WRITE") == 0 && maj == major(sb.st_dev) &&
            min == minor(sb.st_dev) && ino == (unsigned long)sb.st_ino) {
            pid = p;
            break;
        }
    }
out:
    if (f != NULL)
        fclose(f);
    free(lock_path);
    return pid;
}

/* The size of PATH SUFFIX, or -1 when it is not there (or cannot be looked at). */
static off_t file_size(const char *path, const char *suffix)
{
    char *p = NULL;
    struct stat sb;
    off_t size;

    if (asprintf(&p, "%s%s", path, suffix) < 0)
        return -1;
    size = stat(p, &sb) == 0 ? sb.st_size : -1;
    free(p);
    return size;
}

/* Whether the -journal beside the store at path may be hot, as SQLite first tells: there and
 * its first byte not zero (a journal SQLite has finished with is gone, empty or zeroed), or
 * there and unreadable. */
static bool journal_written(const char *path)
{
    unsigned char first = 0;
    char *p = NULL;
    int fd = -1;
    bool written = true; /* as SQLite takes a journal it cannot read: hot */

    if (asprintf(&p, "%s-journal", path) < 0)
        return written;
    fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        written = false;
    else if (fd >= 0 && pread(fd, &first, 1, 0) >= 0)
        written = first != 0; /* an empty journal reads nothing: first stays 0 */
    if (fd >= 0)
        close(fd);
    free(p);
    return written;
}

/* A file: URI for path, with what URIs reserve percent-encoded. */
static char *file_uri(const char *path, const char *query)
{
    size_t cap = 3 * strlen(path) + strlen(query) + 8, used;
    char *out = malloc(cap);

    if (out == NULL)
        return NULL;
    used = (size_t)snprintf(out, cap, "file:");
    for (const unsigned char *c = (const unsigned char *)path; *c != '\0'; c++) {
        if (*c == '%' || *c == '?' || *c == '#' || *c < 0x21 || *c >= 0x7f)
            used += (size_t)snprintf(out + used, cap - used, "%%%02X", *c);
        else
            out[used++] = (char)*c;
    }
    snprintf(out + used, cap - used, "?%s", query);
    return out;
}

kbr_err kbr_sqlite_open_readonly(const char *loc, kbr_store **out, kbr_store_info *info,
                                 kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_sqlite *s = NULL;
    char *path = NULL, *uri = NULL;
    sqlite3_int64 max_pages;
    off_t wal_size, journal_size;
    bool has_shm, unindexed;
    int rc;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_parse_location(loc, &path, &max_pages, msg));
    KBR_GUARD(path_exists(path, msg));
    info->current_version = KBR_SQLITE_SCHEMA_VERSION;
    info->served_by = lock_holder_pid(path);
    wal_size = file_size(path, "-wal");
    has_shm = file_size(path, "-shm") >= 0;
    /* a WAL longer than its 32-byte header holds frames, which only a read through it sees */
    unindexed = !has_shm && wal_size > 32;
    /* a written -journal may be a change that was interrupted, which SQLite's locks tell */
    journal_size = file_size(path, "-journal");
    uri = file_uri(path, (wal_size >= 0 && has_shm) || unindexed || journal_written(path)
                             ? "mode=ro"
                             : "mode=ro&immutable=1");
    KBR_ENSURE(uri != NULL, KBR_ERR_NOMEM);
    s = calloc(1, sizeof(*s));
    KBR_ENSURE(s != NULL, KBR_ERR_NOMEM);
    s->base.ops = &kbr_store_sqlite_ops;
    rc = sqlite3_open_v2(uri, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                         NULL);
    KBR_ENSURE(s->db != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    rc = sqlite3_exec(s->db, "SELECT 1 FROM sqlite_schema LIMIT 1", NULL, NULL, NULL);
    if (rc == SQLITE_READONLY_ROLLBACK) {
        err = kbr_fail(msg, KBR_ERR_STORE,
                       "store %s: its -journal (%lld bytes) holds a change that was "
                       "interrupted; read without rolling it back the store would show the "
                       "change half made, and rolling it back would write to the store: run "
                       "keybrokerd --verify-store, which checks a copy with the change rolled "
                       "back",
                       path, (long long)journal_size);
        goto out;
    }
    if (rc != SQLITE_OK && unindexed) {
        err = kbr_fail(msg, KBR_ERR_STORE,
                       "store %s: its -wal (%lld bytes) has no -shm and none can be made "
                       "there; read without the log it would miss commits: copy the store "
                       "with its -wal to a directory that can be written and read the copy",
                       path, (long long)wal_size);
        goto out;
    }
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    rc = sqlite3_table_column_metadata(s->db, "main", "meta", "schema_version", NULL, NULL, NULL,
                                       NULL, NULL);
    if (rc == SQLITE_OK)
        KBR_GUARD(kbr_sqlite_schema_version(s, path, &info->schema_version, msg));
    *out = &s->base;
    s = NULL;
out:
    kbr_sqlite_close((kbr_store *)s);
    free(uri);
    free(path);
    return err;
}

/* from into a new file to (mode 0600), byte for byte */
static kbr_err copy_file(const char *from, const char *to, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    unsigned char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1;
    ssize_t n = 0, w;

    KBR_ENSURE(in >= 0, kbr_fail(msg, KBR_ERR_STORE, "cannot read %s: %s", from, strerror(errno)));
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    KBR_ENSURE(out >= 0, kbr_fail(msg, KBR_ERR_STORE, "cannot make %s: %s", to, strerror(errno)));
    while ((n = read(in, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        KBR_ENSURE(n > 0,
                   kbr_fail(msg, KBR_ERR_STORE, "cannot read %s: %s", from, strerror(errno)));
        for (ssize_t off = 0; off < n; off += w) {
            w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                w = 0;
            else if (w <= 0)
                KBR_ENSURE(false, kbr_fail(msg, KBR_ERR_STORE, "cannot write %s: %s", to,
                                           w < 0 ? strerror(errno) : "nothing written"));
        }
    }
out:
    if (in >= 0)
        close(in);
    if (out >= 0) {
        close(out);
        if (err != KBR_OK)
            unlink(to);
    }
    return err;
}

/* What SQLite answers a read of the store at path: SQLITE_READONLY_ROLLBACK when it finds its
 * -journal hot (a change that was interrupted, which a reader must roll back first),
 * SQLITE_OK when it does not (a journal some process's transaction holds, or none). */
static int probe_journal(const char *path)
{
    sqlite3 *db = NULL;
    char *uri = file_uri(path, "mode=ro");
    int rc = SQLITE_NOMEM;

    if (uri != NULL)
        rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, 5000);
        rc = sqlite3_exec(db, "SELECT 1 FROM sqlite_schema LIMIT 1", NULL, NULL, NULL);
    }
    sqlite3_close(db);
    free(uri);
    return rc;
}

/* Rolls back the interrupted change in the copy at dest, from its -journal. */
static kbr_err roll_back(const char *dest, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(dest, &db, SQLITE_OPEN_READWRITE, NULL);

    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(db, 1);
        rc = sqlite3_exec(db, "SELECT 1 FROM sqlite_schema LIMIT 1", NULL, NULL, NULL);
    }
    KBR_ENSURE(rc == SQLITE_OK,
               kbr_fail(msg, KBR_ERR_STORE, "%s: rolling back the interrupted change: %s", dest,
                        db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    KBR_ENSURE(
        file_size(dest, "-journal") <= 0,
        kbr_fail(msg, KBR_ERR_STORE, "%s: its -journal is still there after the rollback", dest));
out:
    sqlite3_close(db);
    return err;
}

kbr_err kbr_store_copy_pending(const char *path, const char *dest, kbr_store_pending *what,
                               kbr_msg *msg)
{
    static const char *const tails[] = {"-wal", "-journal"};
    kbr_err err = KBR_OK;
    char *side[2] = {NULL, NULL}, *dest_side[2] = {NULL, NULL};
    bool copy[2], made = false;
    bool had_shm = file_size(path, "-shm") >= 0;
    bool unindexed = !had_shm && file_size(path, "-wal") > 32;
    /* SQLite rolls a hot journal back before it looks at the WAL, whatever the header says */
    int probe = journal_written(path) ? probe_journal(path) : SQLITE_OK;
    bool hot = probe == SQLITE_READONLY_ROLLBACK;
    const char *problem = hot ? "its -journal holds an interrupted change" : "its -wal has no -shm";
    long holder;

    *what = KBR_STORE_AT_REST;
    if (probe != SQLITE_OK && !hot)
        return kbr_fail(msg, KBR_ERR_STORE,
                        "store %s: whether its -journal holds an interrupted change cannot be "
                        "told: %s",
                        path, sqlite3_errstr(probe));
    if (!unindexed && !hot)
        return KBR_OK;
    copy[0] = file_size(path, "-wal") > 0;
    copy[1] = hot;
    holder = lock_holder_pid(path);
    KBR_ENSURE(holder >= 0, kbr_fail(msg, KBR_ERR_STORE,
                                     "store %s: %s, and whether a keybrokerd serves it cannot be "
                                     "told (/proc/locks)",
                                     path, problem));
    KBR_ENSURE(holder == 0, kbr_fail(msg, KBR_ERR_CONFLICT,
                                     "store %s: %s, yet keybrokerd (pid %ld) holds its lock", path,
                                     problem, holder));
    for (int i = 0; i < 2; i++) {
        if (asprintf(&side[i], "%s%s", path, tails[i]) < 0)
            side[i] = NULL;
        if (asprintf(&dest_side[i], "%s%s", dest, tails[i]) < 0)
            dest_side[i] = NULL;
        KBR_ENSURE(side[i] != NULL && dest_side[i] != NULL, KBR_ERR_NOMEM);
    }
    KBR_GUARD(copy_file(path, dest, msg));
    made = true;
    for (int i = 0; i < 2; i++) {
        if (!copy[i])
            continue;
        err = copy_file(side[i], dest_side[i], msg);
        /* a keybrokerd that started meanwhile rolled the change back */
        if (err != KBR_OK && i == 1 && file_size(path, "-journal") < 0)
            err = kbr_fail(msg, KBR_ERR_CONFLICT,
                           "store %s: its -journal went while it was copied (the change was "
                           "rolled back); check it again",
                           path);
        KBR_GUARD(err);
    }
    /* a broker that started meanwhile made a -shm, or rolled the change back, and may have
     * changed the files */
    KBR_ENSURE(lock_holder_pid(path) == 0 && (file_size(path, "-shm") >= 0) == had_shm,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "store %s: a keybrokerd started serving it while it was copied; "
                        "check it again",
                        path));
    if (hot)
        KBR_GUARD(roll_back(dest, msg));
    *what = hot ? KBR_STORE_HOT_JOURNAL : KBR_STORE_UNINDEXED_LOG;
out:
    if (err != KBR_OK && made)
        kbr_store_remove_files(dest);
    for (int i = 0; i < 2; i++) {
        free(side[i]);
        free(dest_side[i]);
    }
    return err;
}

/* Whether name is one kbr_sqlite_backup makes beside the store (prefix is "BASE.backup-"):
 * PREFIX<pid>-<n>.tmp, or that copy's -journal.  Nothing else there is the broker's. */
static bool backup_copy_name(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    const char *p = name + n;

    if (strncmp(name, prefix, n) != 0)
        return false;
    for (int part = 0; part < 2; part++) {
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
        if (part == 0 && *p++ != '-')
            return false;
    }
    return strcmp(p, BACKUP_TAIL) == 0 || strcmp(p, BACKUP_TAIL "-journal") == 0;
}

void kbr_sqlite_backup_leftovers(const char *path)
{
    char *copy = strdup(path), *copy2 = strdup(path), *dir, *base, *prefix = NULL;
    DIR *d = NULL;
    struct dirent *de;

    if (copy == NULL || copy2 == NULL)
        goto out;
    dir = dirname(copy);
    base = basename(copy2);
    if (asprintf(&prefix, "%s" BACKUP_INFIX, base) < 0) {
        prefix = NULL;
        goto out;
    }
    d = opendir(dir);
    while (d != NULL && (de = readdir(d)) != NULL) {
        char *full = NULL;
        struct stat sb;

        if (!backup_copy_name(de->d_name, prefix))
            continue;
        /* only a file this user made: never a link, or someone else's file by that name */
        if (asprintf(&full, "%s/%s", dir, de->d_name) > 0 && lstat(full, &sb) == 0 &&
            S_ISREG(sb.st_mode) && sb.st_uid == geteuid() && unlink(full) == 0)
            fprintf(stderr, "keybrokerd: removed %s, left by a backup that did not finish\n", full);
        free(full);
    }
out:
    if (d != NULL)
        closedir(d);
    free(prefix);
    free(copy);
    free(copy2);
}

/* What the copy holds, read from the copy itself. */
static kbr_err describe_copy(const char *dest, kbr_store_backup_info *info, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_sqlite *c = NULL;
    sqlite3_stmt *stmt = NULL;
    char *uri = file_uri(dest, "mode=ro&immutable=1");
    int rc;

    memset(info->last_hash, '0', 64);
    info->last_hash[64] = '\0';
    KBR_ENSURE(uri != NULL, KBR_ERR_NOMEM);
    c = calloc(1, sizeof(*c));
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    c->base.ops = &kbr_store_sqlite_ops;
    rc = sqlite3_open_v2(uri, &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    KBR_ENSURE(c->db != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(c, dest, rc, msg));
    KBR_GUARD(kbr_sqlite_schema_version(c, dest, &info->schema_version, msg));
    rc = sqlite3_prepare_v2(c->db, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", -1,
                            &stmt, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(c, dest, rc, msg));
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *h = kbr_sqlite_text(stmt, 1);
        info->last_seq = sqlite3_column_int64(stmt, 0);
        if (h != NULL && strlen(h) == 64)
            memcpy(info->last_hash, h, 65);
    } else {
        KBR_ENSURE(rc == SQLITE_DONE, kbr_sqlite_fail(c, dest, rc, msg));
    }
out:
    sqlite3_finalize(stmt);
    kbr_sqlite_close((kbr_store *)c);
    free(uri);
    return err;
}

kbr_err kbr_sqlite_backup(kbr_store *st, int *fd, kbr_store_backup_info *info, kbr_msg *msg)
{
    static atomic_uint serial;
    kbr_sqlite *s = (kbr_sqlite *)st;
    kbr_err err = KBR_OK;
    const char *path = sqlite3_db_filename(s->db, "main");
    char *dest = NULL;
    sqlite3_stmt *stmt = NULL;
    bool made = false;
    int rc, made_fd;

    *fd = -1;
    KBR_ENSURE(path != NULL && path[0] != '\0', KBR_ERR_INTERNAL);
    KBR_ENSURE(asprintf(&dest, "%s" BACKUP_INFIX "%ld-%u" BACKUP_TAIL, path, (long)getpid(),
                        atomic_fetch_add(&serial, 1)) > 0,
               KBR_ERR_NOMEM);
    /* made here, empty and 0600, before SQLite writes it (VACUUM INTO takes an empty file):
     * SQLite follows a link, and a link or file planted by that name is not written through */
    made_fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    KBR_ENSURE(made_fd >= 0, kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot make its copy %s: %s",
                                      path, dest, strerror(errno)));
    made = true;
    close(made_fd);
    rc = sqlite3_prepare_v2(s->db, "VACUUM INTO ?1", -1, &stmt, NULL);
    KBR_ENSURE(rc == SQLITE_OK, kbr_sqlite_fail(s, path, rc, msg));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, dest));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_DONE,
               kbr_fail(msg, KBR_ERR_STORE, "store %s: the copy failed: %s", path,
                        rc == SQLITE_INTERRUPT ? "interrupted" : sqlite3_errmsg(s->db)));
    KBR_GUARD(describe_copy(dest, info, msg));
    *fd = open(dest, O_RDONLY | O_CLOEXEC);
    KBR_ENSURE(*fd >= 0, kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot open its copy %s: %s", path,
                                  dest, strerror(errno)));
out:
    sqlite3_finalize(stmt);
    if (made)
        unlink(dest);
    free(dest);
    return err;
}

/*
 * SQLite's online backup from st's connection, in one step, so it reads one snapshot.  VACUUM
 * INTO would rebuild the file, but SQLite 3.40 refuses it on a read-only connection to a
 * table with generated columns ("table vacuum_db.audit has 4 columns but 14 values were
 * supplied"); the page copy runs no SQL on the source.
 */
kbr_err kbr_sqlite_copy_to(kbr_store *st, const char *path, kbr_msg *msg)
{
    kbr_sqlite *s = (kbr_sqlite *)st;
    kbr_err err = KBR_OK;
    const char *src = sqlite3_db_filename(s->db, "main");
    sqlite3 *dest = NULL;
    sqlite3_backup *b = NULL;
    bool made = false;
    int fd, rc;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    KBR_ENSURE(fd >= 0,
               kbr_fail(msg, KBR_ERR_STORE, "cannot make the copy %s: %s", path, strerror(errno)));
    close(fd);
    made = true;
    rc = sqlite3_open_v2(path, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    KBR_ENSURE(dest != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(rc == SQLITE_OK, kbr_fail(msg, KBR_ERR_STORE, "cannot open the copy %s: %s", path,
                                         sqlite3_errmsg(dest)));
    b = sqlite3_backup_init(dest, "main", s->db, "main");
    KBR_ENSURE(b != NULL, kbr_fail(msg, KBR_ERR_STORE, "store %s: cannot copy it to %s: %s",
                                   src != NULL ? src : "", path, sqlite3_errmsg(dest)));
    rc = sqlite3_backup_step(b, -1);
    KBR_ENSURE(rc == SQLITE_DONE,
               kbr_fail(msg, KBR_ERR_STORE, "store %s: the copy to %s failed: %s",
                        src != NULL ? src : "", path, sqlite3_errstr(rc)));
out:
    if (b != NULL && sqlite3_backup_finish(b) != SQLITE_OK && err == KBR_OK)
        err = kbr_fail(msg, KBR_ERR_STORE, "store %s: the copy to %s failed: %s",
                       src != NULL ? src : "", path, sqlite3_errmsg(dest));
    if (dest != NULL && sqlite3_close(dest) != SQLITE_OK && err == KBR_OK)
        err = kbr_fail(msg, KBR_ERR_STORE, "cannot close the copy %s", path);
    if (err != KBR_OK && made)
        kbr_store_remove_files(path);
    return err;
}

kbr_err kbr_sqlite_file(const char *loc, char **path, kbr_msg *msg)
{
    sqlite3_int64 max_pages;

    return kbr_sqlite_parse_location(loc, path, &max_pages, msg);
}

void kbr_store_remove_files(const char *path)
{
    static const char *const tails[] = {"", "-wal", "-shm", "-journal"};
    char side[4200];

    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++)
        if (snprintf(side, sizeof(side), "%s%s", path, tails[i]) < (int)sizeof(side))
            unlink(side);
}

void kbr_sqlite_interrupt(kbr_store *st)
{
    sqlite3_interrupt(((kbr_sqlite *)st)->db);
}
