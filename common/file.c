/*
 * file.c - reading whole files, and writing them without replacing anything
 * that the path does not name as a file.
 *
 * kbr_file_write() is how tokens, certificates, signatures and the daemon's
 * port file reach the disk, often as root.  It looks at what the path names
 * (lstat: the last component is never followed) and writes in the one way
 * that cannot harm it:
 *
 *   nothing, or a regular file   a new file beside it, renamed over it
 *   "-"                          standard output
 *   a FIFO or character device   written in place, nothing created or cut
 *   anything else                refused, with the reason
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kbr_common.h"

kbr_err kbr_file_read(const char *path, size_t limit, char **out, size_t *outlen)
{
    kbr_err err = KBR_OK;
    FILE *f = NULL;
    char *buf = NULL;
    size_t n;

    *out = NULL;
    if (outlen != NULL)
        *outlen = 0;
    f = fopen(path, "rb");
    KBR_ENSURE(f != NULL, KBR_ERR_IO);
    buf = malloc(limit + 1);
    KBR_ENSURE(buf != NULL, KBR_ERR_NOMEM);
    n = fread(buf, 1, limit + 1, f);
    KBR_ENSURE(!ferror(f), KBR_ERR_IO);
    KBR_ENSURE(n <= limit, KBR_ERR_TOO_LARGE);
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    if (outlen != NULL)
        *outlen = n;
out:
    free(buf);
    if (f != NULL)
        fclose(f);
    return err;
}

typedef enum {
    DEST_REPLACE,  /* nothing there yet, or a regular file */
    DEST_IN_PLACE, /* a FIFO or a character device */
    DEST_STDOUT,   /* "-" */
} dest_kind;

/*
 * A FIFO or terminal is written as it stands, so whoever holds its other end
 * reads what is written: one that belongs to another user may have been put
 * there to catch a token.  Root's (/dev/null, /dev/tty) and the caller's own
 * are trusted, as OpenSSH trusts files owned by the user or root.  And
 * whoever opens a FIFO first reads from it: a secret (a mode without group
 * or other bits) goes only into one that nobody else may open for reading.
 * A device's permissions say nothing of the kind (/dev/null is 0666).
 */
static kbr_err in_place_trusted(const char *path, const struct stat *st, unsigned mode,
                                kbr_msg *msg)
{
    if (st->st_uid != geteuid() && st->st_uid != 0)
        return kbr_fail(msg, KBR_ERR_IO,
                        "%s: a %s that belongs to uid %lu, not to this user or root: whoever "
                        "holds its other end would read what is written",
                        path, S_ISFIFO(st->st_mode) ? "FIFO" : "device", (unsigned long)st->st_uid);
    if (S_ISFIFO(st->st_mode) && (mode & 077) == 0 && (st->st_mode & (S_IRGRP | S_IROTH)) != 0)
        return kbr_fail(msg, KBR_ERR_IO,
                        "%s: other users may read from this FIFO (mode %03o), and what is "
                        "written is for its owner alone (mode %03o)",
                        path, (unsigned)(st->st_mode & 0777), mode & 0777);
    return KBR_OK;
}

/*
 * A symbolic link is refused rather than followed or replaced: following it
 * writes into whatever directory the link points at (a planted link is the
 * classic way to make root write where it should not), and replacing it
 * writes somewhere the user did not mean.  Naming the file itself is always
 * possible, and "-" covers /dev/stdout.
 */
static kbr_err dest_classify(const char *path, unsigned mode, dest_kind *kind, struct stat *st,
                             kbr_msg *msg)
{
    memset(st, 0, sizeof(*st));
    if (strcmp(path, "-") == 0) {
        *kind = DEST_STDOUT;
        return KBR_OK;
    }
    if (path[0] == '\0')
        return kbr_fail(msg, KBR_ERR_IO, "an empty file name");
    if (lstat(path, st) != 0) {
        if (errno != ENOENT)
            return kbr_fail(msg, KBR_ERR_IO, "%s: %s", path, strerror(errno));
        *kind = DEST_REPLACE;
        return KBR_OK;
    }
    if (S_ISREG(st->st_mode)) {
        *kind = DEST_REPLACE;
        return KBR_OK;
    }
    if (S_ISFIFO(st->st_mode) || S_ISCHR(st->st_mode)) {
        *kind = DEST_IN_PLACE;
        return in_place_trusted(path, st, mode, msg);
    }
    if (S_ISLNK(st->st_mode))
        return kbr_fail(msg, KBR_ERR_IO,
                        "%s: is a symbolic link, which is not followed: name the file itself "
                        "(or - for standard output)",
                        path);
    if (S_ISDIR(st->st_mode))
        return kbr_fail(msg, KBR_ERR_IO, "%s: is a directory", path);
    if (S_ISBLK(st->st_mode))
        return kbr_fail(msg, KBR_ERR_IO, "%s: is a block device; refusing to write onto it", path);
    return kbr_fail(msg, KBR_ERR_IO, "%s: is a socket or other special file; refusing", path);
}

/* The directory a file of path is created in. Caller frees. */
static kbr_err dir_of(const char *path, char **out)
{
    char *copy = strdup(path);

    *out = NULL;
    if (copy == NULL)
        return KBR_ERR_NOMEM;
    *out = strdup(dirname(copy));
    free(copy);
    return *out != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return KBR_ERR_IO;
        p += n;
        len -= (size_t)n;
    }
    return KBR_OK;
}

/* close() can be the first to report a failed write (NFS, quotas): that is a failed write. */
static kbr_err close_written(int *fd, const char *path, kbr_msg *msg)
{
    int rc = close(*fd);

    *fd = -1;
    if (rc != 0)
        return kbr_fail(msg, KBR_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return KBR_OK;
}

/* After a rename, the directory entry itself must reach the disk. */
static kbr_err sync_dir(const char *path, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *dir = NULL;
    int fd = -1;

    KBR_GUARD(dir_of(path, &dir));
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    KBR_ENSURE(fd >= 0, kbr_fail(msg, KBR_ERR_IO, "%s: cannot open its directory: %s", path,
                                 strerror(errno)));
    /* some file systems cannot sync a directory and say so with EINVAL */
    KBR_ENSURE(
        fsync(fd) == 0 || errno == EINVAL,
        kbr_fail(msg, KBR_ERR_IO, "%s: cannot sync its directory: %s", path, strerror(errno)));
out:
    if (fd >= 0)
        close(fd);
    free(dir);
    return err;
}

/*
 * mkostemp() creates the temporary file with O_EXCL, mode 0600 and a name
 * nobody can guess: it never opens something planted in its place, and a
 * secret is never readable by others, not even before the chmod.  Readers of
 * path see the old content or the new, never a part.
 */
/*
 * A write killed between creating its temporary file and renaming it leaves that file (0600,
 * perhaps a token) beside the path.  Each later write of the same path removes such files: a
 * regular file of this user named PATH.tmp.XXXXXX, untouched for a minute, which no write
 * still under way can be (each renames its own within milliseconds).  Best effort: what cannot
 * be read or removed stays.
 */
#define LEFTOVER_AGE_SECONDS 60

static void remove_leftovers(const char *path)
{
    char *copy = strdup(path), *dir = NULL, *base;
    size_t prefix_len;
    DIR *d = NULL;
    const struct dirent *e;
    struct stat st;
    time_t now = time(NULL);

    if (copy == NULL || dir_of(path, &dir) != KBR_OK)
        goto out;
    base = basename(copy);
    prefix_len = strlen(base);
    d = opendir(dir);
    if (d == NULL)
        goto out;
    while ((e = readdir(d)) != NULL) {
        const char *tail = e->d_name + prefix_len;

        if (strncmp(e->d_name, base, prefix_len) != 0 || strncmp(tail, ".tmp.", 5) != 0 ||
            strlen(tail + 5) != 6 ||
            strspn(tail + 5, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "abcdefghijklmnopqrstuvwxyz0123456789") != 6)
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            st.st_uid != geteuid() || now - st.st_mtime < LEFTOVER_AGE_SECONDS)
            continue;
        (void)unlinkat(dirfd(d), e->d_name, 0);
    }
out:
    if (d != NULL)
        closedir(d);
    free(dir);
    free(copy);
}

static kbr_err write_replace(const char *path, const void *data, size_t len, unsigned mode,
                             kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char tmp[PATH_MAX];
    int fd = -1;
    bool created = false;

    KBR_ENSURE(snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) < (int)sizeof(tmp),
               kbr_fail(msg, KBR_ERR_IO, "%s: the name is too long", path));
    fd = mkostemp(tmp, O_CLOEXEC);
    KBR_ENSURE(fd >= 0, kbr_fail(msg, KBR_ERR_IO, "%s: cannot create a file beside it: %s", path,
                                 strerror(errno)));
    created = true;
    KBR_ENSURE(fchmod(fd, (mode_t)mode) == 0 && write_all(fd, data, len) == KBR_OK &&
                   fsync(fd) == 0,
               kbr_fail(msg, KBR_ERR_IO, "%s: cannot write: %s", path, strerror(errno)));
    KBR_GUARD(close_written(&fd, path, msg));
    KBR_ENSURE(rename(tmp, path) == 0,
               kbr_fail(msg, KBR_ERR_IO, "%s: cannot replace: %s", path, strerror(errno)));
    created = false;
    remove_leftovers(path);
    KBR_GUARD(sync_dir(path, msg));
out:
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    return err;
}

/*
 * No O_CREAT, so nothing is made if the node went away; no O_TRUNC, which
 * means nothing to a FIFO or device; O_NOFOLLOW and the inode check make sure
 * the node written is the one that was checked.  Opening a FIFO waits for its
 * reader.
 */
static kbr_err write_in_place(const char *path, const struct stat *seen, const void *data,
                              size_t len, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    struct stat st;
    int fd = open(path, O_WRONLY | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);

    KBR_ENSURE(fd >= 0, kbr_fail(msg, KBR_ERR_IO, "%s: cannot open: %s", path, strerror(errno)));
    KBR_ENSURE(fstat(fd, &st) == 0 && st.st_dev == seen->st_dev && st.st_ino == seen->st_ino,
               kbr_fail(msg, KBR_ERR_IO, "%s: was replaced while it was being opened", path));
    KBR_ENSURE(write_all(fd, data, len) == KBR_OK,
               kbr_fail(msg, KBR_ERR_IO, "%s: cannot write: %s", path, strerror(errno)));
    KBR_GUARD(close_written(&fd, path, msg));
out:
    if (fd >= 0)
        close(fd);
    return err;
}

/* What stdio holds goes first, so the data lands where the caller's output order puts it. */
static kbr_err write_stdout(const void *data, size_t len, kbr_msg *msg)
{
    if (fflush(stdout) != 0 || write_all(STDOUT_FILENO, data, len) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_IO, "standard output: %s", strerror(errno));
    return KBR_OK;
}

kbr_err kbr_file_write(const char *path, const void *data, size_t len, unsigned mode, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    dest_kind kind;
    struct stat st;

    KBR_GUARD(dest_classify(path, mode, &kind, &st, msg));
    if (kind == DEST_STDOUT)
        err = write_stdout(data, len, msg);
    else if (kind == DEST_IN_PLACE)
        err = write_in_place(path, &st, data, len, msg);
    else
        err = write_replace(path, data, len, mode, msg);
out:
    return err;
}

kbr_err kbr_file_write_check(const char *path, unsigned mode, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    dest_kind kind;
    struct stat st;
    char *dir = NULL;

    KBR_GUARD(dest_classify(path, mode, &kind, &st, msg));
    if (kind != DEST_REPLACE)
        goto out;
    /* the new file is created beside the old one and renamed over it */
    KBR_GUARD(dir_of(path, &dir));
    KBR_ENSURE(access(dir, W_OK | X_OK) == 0,
               kbr_fail(msg, KBR_ERR_IO, "%s: directory %s: %s", path, dir, strerror(errno)));
out:
    free(dir);
    return err;
}
