/*
 * sqlite_walbuf.c - the store's SQLite VFS: the system's, with the WAL's writes gathered.
 *
 * SQLite writes a WAL frame as two writes, its 24-byte header and then its page, so a commit
 * of N pages costs 2N pwrite calls before its fsync: for a group of signatures some hundred
 * system calls, each crossing into the kernel for a few bytes.  This VFS is the system's
 * ("unix") for every file, except that it gathers the writes of a WAL file that follow one
 * another into a buffer and writes them with one call.  What is gathered reaches the file
 *  - before it is synced (a commit's fsync), read, truncated, measured or closed, before a
 *    file control, and before a write anywhere else in the file (SQLite rewrites a frame in
 *    place when a transaction changes its page again);
 *  - as soon as a commit frame's page is in the buffer, whatever `synchronous` says.  Other
 *    connections read a commit's frames once the WAL index names them, which SQLite writes
 *    right after; the store syncs first (synchronous=FULL), and this does not rest on it;
 *  - when the buffer is full.
 * So the WAL on disk goes through the same states in the same order as without the buffer,
 * fewer of them: a crash loses nothing a sync had made durable.  A failed write of the buffer
 * is answered to the call that made it, as SQLite's own write would have been answered; the
 * buffer is then dropped, and SQLite rolls the transaction back.
 */
#include <stdint.h>
#include <string.h>

#include "sqlite.h"

/*
 * The system VFS writes at most 128 KiB - 1 in one call (it masks the length with 0x1ffff,
 * and a longer write fails as a full disk), so the buffer holds 124 KiB: 30 frames of 4 KiB
 * pages.  A group commit of the bench's signatures is about 50 frames, two writes.
 */
#define WALBUF_CAP   (124 * 1024)
#define WAL_HEADER   32
#define FRAME_HEADER 24

typedef struct {
    sqlite3_file base;  /* pMethods: &wal_io */
    sqlite3_file *real; /* the system VFS's file, stored just after this one */
    unsigned char *buf; /* WALBUF_CAP bytes, on the first write; NULL: unbuffered */
    size_t len;
    sqlite3_int64 off; /* where buf[0] goes in the file */
    bool commit_page;  /* the next write is a commit frame's page */
    bool buf_failed;   /* no memory for buf: write through */
} wal_file;

static sqlite3_vfs walbuf_vfs;

static sqlite3_vfs *real_vfs(void)
{
    return (sqlite3_vfs *)walbuf_vfs.pAppData;
}

static int flush(wal_file *w)
{
    int rc;

    if (w->len == 0)
        return SQLITE_OK;
    rc = w->real->pMethods->xWrite(w->real, w->buf, (int)w->len, w->off);
    w->len = 0;
    return rc;
}

static int wal_close(sqlite3_file *f)
{
    wal_file *w = (wal_file *)f;
    int rc = flush(w), rc2 = w->real->pMethods->xClose(w->real);

    sqlite3_free(w->buf);
    w->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *f, void *out, int amt, sqlite3_int64 off)
{
    wal_file *w = (wal_file *)f;
    int rc = flush(w);

    return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, out, amt, off);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int wal_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off)
{
    wal_file *w = (wal_file *)f;
    bool commit_page = w->commit_page;
    int rc = SQLITE_OK;

    /* a frame's header: its second word is the database's size after a commit, else 0 */
    w->commit_page =
        amt == FRAME_HEADER && off >= WAL_HEADER && be32((const unsigned char *)data + 4) != 0;
    if (w->len > 0 && (off != w->off + (sqlite3_int64)w->len || w->len + (size_t)amt > WALBUF_CAP))
        rc = flush(w);
    if (rc != SQLITE_OK)
        return rc;
    if (w->buf == NULL && !w->buf_failed) {
        w->buf = sqlite3_malloc(WALBUF_CAP);
        w->buf_failed = w->buf == NULL;
    }
    if (w->buf == NULL || (size_t)amt > WALBUF_CAP)
        return w->real->pMethods->xWrite(w->real, data, amt, off);
    if (w->len == 0)
        w->off = off;
    memcpy(w->buf + w->len, data, (size_t)amt);
    w->len += (size_t)amt;
    return commit_page ? flush(w) : SQLITE_OK;
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    wal_file *w = (wal_file *)f;
    int rc = flush(w);

    return rc != SQLITE_OK ? rc : w->real->pMethods->xTruncate(w->real, size);
}

static int wal_sync(sqlite3_file *f, int flags)
{
    wal_file *w = (wal_file *)f;
    int rc = flush(w);

    return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int wal_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    wal_file *w = (wal_file *)f;
    int rc = flush(w);

    return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int wal_lock(sqlite3_file *f, int level)
{
    wal_file *w = (wal_file *)f;

    return w->real->pMethods->xLock(w->real, level);
}

static int wal_unlock(sqlite3_file *f, int level)
{
    wal_file *w = (wal_file *)f;

    return w->real->pMethods->xUnlock(w->real, level);
}

static int wal_check_reserved(sqlite3_file *f, int *out)
{
    wal_file *w = (wal_file *)f;

    return w->real->pMethods->xCheckReservedLock(w->real, out);
}

static int wal_file_control(sqlite3_file *f, int op, void *arg)
{
    wal_file *w = (wal_file *)f;
    int rc = flush(w);

    return rc != SQLITE_OK ? rc : w->real->pMethods->xFileControl(w->real, op, arg);
}

static int wal_sector_size(sqlite3_file *f)
{
    wal_file *w = (wal_file *)f;

    return w->real->pMethods->xSectorSize(w->real);
}

static int wal_device(sqlite3_file *f)
{
    wal_file *w = (wal_file *)f;

    return w->real->pMethods->xDeviceCharacteristics(w->real);
}

/* Version 1: SQLite maps no WAL file and keeps its shared memory beside the database. */
static const sqlite3_io_methods wal_io = {
    .iVersion = 1,
    .xClose = wal_close,
    .xRead = wal_read,
    .xWrite = wal_write,
    .xTruncate = wal_truncate,
    .xSync = wal_sync,
    .xFileSize = wal_file_size,
    .xLock = wal_lock,
    .xUnlock = wal_unlock,
    .xCheckReservedLock = wal_check_reserved,
    .xFileControl = wal_file_control,
    .xSectorSize = wal_sector_size,
    .xDeviceCharacteristics = wal_device,
};

/* Every file but a WAL is the system VFS's own, opened in the space SQLite gave this one. */
static int vfs_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                    int *out_flags)
{
    sqlite3_vfs *real = real_vfs();
    wal_file *w = (wal_file *)f;
    int rc;

    (void)vfs;
    if ((flags & SQLITE_OPEN_WAL) == 0)
        return real->xOpen(real, name, f, flags, out_flags);
    memset(w, 0, sizeof(*w));
    w->real = (sqlite3_file *)(w + 1);
    rc = real->xOpen(real, name, w->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        /* SQLite closes what has methods; the system VFS left the real file closed */
        w->base.pMethods = NULL;
        return rc;
    }
    w->base.pMethods = &wal_io;
    return SQLITE_OK;
}

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return real_vfs()->xDelete(real_vfs(), name, sync_dir);
}

static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return real_vfs()->xAccess(real_vfs(), name, flags, out);
}

static int vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return real_vfs()->xFullPathname(real_vfs(), name, n, out);
}

static void *vfs_dlopen(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return real_vfs()->xDlOpen(real_vfs(), name);
}

static void vfs_dlerror(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    real_vfs()->xDlError(real_vfs(), n, out);
}

static void (*vfs_dlsym(sqlite3_vfs *vfs, void *lib, const char *sym))(void)
{
    (void)vfs;
    return real_vfs()->xDlSym(real_vfs(), lib, sym);
}

static void vfs_dlclose(sqlite3_vfs *vfs, void *lib)
{
    (void)vfs;
    real_vfs()->xDlClose(real_vfs(), lib);
}

static int vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs()->xRandomness(real_vfs(), n, out);
}

static int vfs_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return real_vfs()->xSleep(real_vfs(), us);
}

static int vfs_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return real_vfs()->xCurrentTime(real_vfs(), out);
}

static int vfs_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs()->xGetLastError(real_vfs(), n, out);
}

static int vfs_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return real_vfs()->xCurrentTimeInt64(real_vfs(), out);
}

int kbr_sqlite_walbuf_register(void)
{
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);

    if (real == NULL || real->iVersion < 2)
        return SQLITE_ERROR;
    walbuf_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(wal_file) + real->szOsFile,
        .mxPathname = real->mxPathname,
        .zName = KBR_SQLITE_VFS,
        .pAppData = real,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_full_pathname,
        .xDlOpen = vfs_dlopen,
        .xDlError = vfs_dlerror,
        .xDlSym = vfs_dlsym,
        .xDlClose = vfs_dlclose,
        .xRandomness = vfs_randomness,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_current_time,
        .xGetLastError = vfs_last_error,
        .xCurrentTimeInt64 = vfs_current_time64,
    };
    return sqlite3_vfs_register(&walbuf_vfs, 0);
}
