/*
 * verify_store.c - keybrokerd -c FILE --verify-store: the store checked against its own log
 * (kbr_audit_verify_store), reported on stdout.  It needs neither the HSM nor the store lock
 * (it reads one snapshot, so a running broker may go on serving), and it never writes the
 * store it checks: a store that is not there is an error, and it is read without being
 * created, locked, migrated or switched to WAL mode, so a backup copy kept as evidence is the
 * same file after its check.  A store of an older schema is checked as a copy taken to this
 * broker's schema, one whose -wal holds commits but lost its -shm as a copy of both (read
 * in place, SQLite would make a -shm beside it, or fail to), and one whose -journal holds an
 * interrupted change as a copy with the change rolled back (which in place would write to
 * the store).  The scratch store it rebuilds, and those copies, go in a directory of the
 * check's own (mode 0700) made beside the store, on the file system that already has room for
 * one like it, or in the directory --scratch-dir names (a store on read-only media, a backup
 * kept as evidence).
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "kbd.h"
#include "modes.h"
#include "kbr_cra.h"

/* The check's directory, and the files it makes there (the scratch store, the copy of a
 * store of an older schema, and that of a store whose -wal lost its -shm or whose -journal
 * holds an interrupted change, each with the files SQLite keeps beside it): removed if the
 * check is interrupted (async-signal-safe). */
#define SCRATCH_NAME "rebuild.db"
#define COPY_NAME    "copy.db"
#define LOGGED_NAME  "logged.db"
static char made_dir[4096];
static char made[12][4200];
static const int caught[] = {SIGINT, SIGTERM, SIGHUP};

static void on_signal(int sig)
{
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++)
        if (made[i][0] != '\0')
            unlink(made[i]);
    if (made_dir[0] != '\0')
        rmdir(made_dir);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* The files of the directory made (made_dir), and the handlers that remove them. */
static void catch_signals(void)
{
    static const char *const tails[] = {"", "-wal", "-shm", "-journal"};

    for (int i = 0; i < 4; i++) {
        snprintf(made[i], sizeof(made[i]), "%s/" SCRATCH_NAME "%s", made_dir, tails[i]);
        snprintf(made[4 + i], sizeof(made[4 + i]), "%s/" COPY_NAME "%s", made_dir, tails[i]);
        snprintf(made[8 + i], sizeof(made[8 + i]), "%s/" LOGGED_NAME "%s", made_dir, tails[i]);
    }
    for (size_t i = 0; i < sizeof(caught) / sizeof(caught[0]); i++)
        signal(caught[i], on_signal);
}

/*
 * The check's own directory, made (mkdtemp: new, mode 0700, so nothing another user placed in
 * a shared directory is opened) in dir, with the signals that would leave it behind blocked
 * until their handlers know it.
 */
static kbr_err make_scratch_dir(const char *dir, bool named, kbr_msg *msg)
{
    sigset_t block, old;
    kbr_err err = KBR_OK;

    if ((size_t)snprintf(made_dir, sizeof(made_dir), "%s/.keybroker-verify.XXXXXX", dir) >=
        sizeof(made_dir) - 32) {
        made_dir[0] = '\0';
        return kbr_fail(msg, KBR_ERR_CONFIG, "scratch directory %s: name too long", dir);
    }
    sigemptyset(&block);
    for (size_t i = 0; i < sizeof(caught) / sizeof(caught[0]); i++)
        sigaddset(&block, caught[i]);
    sigprocmask(SIG_BLOCK, &block, &old);
    if (mkdtemp(made_dir) == NULL) {
        err =
            kbr_fail(msg, KBR_ERR_STORE,
                     "cannot make a scratch directory in %s: %s (the store is rebuilt there, "
                     "in about its size%s)",
                     dir, strerror(errno), named ? "" : "; --scratch-dir names another directory");
        made_dir[0] = '\0';
    } else {
        catch_signals();
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return err;
}

/*
 * A store of an older schema, which the rebuild cannot compare with this broker's: a
 * consistent copy of it (one snapshot) written to copy_path and taken to this broker's
 * schema there, as the next start would take the store itself.  info describes the store
 * (its schema version and this broker's); *copied says whether the copy was made (only for
 * an older schema: a current one is checked in place, and an empty or newer one is refused
 * by the check).
 */
static kbr_err migrated_copy(const char *url, const char *copy_path, kbr_store_info *info,
                             bool *copied, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_store *st = NULL;
    char copy_url[4300];

    *copied = false;
    KBR_GUARD(kbr_store_open_readonly(url, &st, info, msg));
    if (info->schema_version == 0 || info->schema_version >= info->current_version)
        goto out;
    KBR_GUARD(kbr_store_copy_to(st, copy_path, msg));
    *copied = true;
    kbr_store_close(st);
    st = NULL;
    snprintf(copy_url, sizeof(copy_url), "sqlite:%s", copy_path);
    KBR_GUARD(kbr_store_open(copy_url, &st, msg)); /* the copy, migrated */
out:
    kbr_store_close(st);
    return err;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * The markets of every batch as the CRA figures read them: an ISO 3166-1 alpha-2 code
 * (kbr_market_check).  A batch an older broker accepted with another ("EL", "UK", "EU",
 * "de") matches its log, yet View C and incidents count its devices in no member state; each
 * such market is named on stderr, and the check fails.
 */
static kbr_err verify_markets(const char *url, int64_t *batches, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_store *st = NULL;
    kbr_store_info info;
    json_t *list = NULL;
    const json_t *b, *m;
    size_t i, j, bad = 0, bad_batches = 0;
    kbr_msg why = {{0}};

    *batches = 0;
    KBR_GUARD(kbr_store_open_readonly(url, &st, &info, msg));
    KBR_GUARD(kbr_store_batch_list(st, &list));
    json_array_foreach(list, i, b)
    {
        size_t before = bad;

        json_array_foreach(json_object_get(b, "markets"), j, m)
        {
            const char *code = json_string_value(m);

            if (code != NULL && kbr_market_check(code, &why) == KBR_OK)
                continue;
            fprintf(stderr, "keybrokerd: batch %s (product %s, created %s): market[%zu]: %s\n",
                    json_string_value(json_object_get(b, "batch")),
                    json_string_value(json_object_get(b, "product")),
                    json_string_value(json_object_get(b, "created_at")), j,
                    code != NULL ? why.text : "not a string");
            bad++;
        }
        bad_batches += bad > before;
    }
    *batches = (int64_t)json_array_size(list);
    KBR_ENSURE(bad == 0, kbr_fail(msg, KBR_ERR_CONFLICT,
                                  "%zu market%s of %zu batch%s %s no ISO 3166-1 alpha-2 code: "
                                  "their devices count in no member state",
                                  bad, bad == 1 ? "" : "s", bad_batches,
                                  bad_batches == 1 ? "" : "es", bad == 1 ? "is" : "are"));
out:
    json_decref(list);
    kbr_store_close(st);
    return err;
}

/* The store, named shown, matched its log: said, and the markets of checked's batches read. */
static kbr_err report_match(const char *shown, const char *checked,
                            const kbr_audit_verify_stats *stats, const struct timespec *t0,
                            kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    int64_t batches = 0;

    printf("store %s matches its audit log: %lld entries, %lld effects, %lld documents; "
           "%lld rows in %lld tables compared (%.1f s)\n",
           shown, (long long)stats->entries, (long long)stats->effects, (long long)stats->documents,
           (long long)stats->rows, (long long)stats->tables, seconds_since(t0));
    KBR_GUARD(verify_markets(checked, &batches, msg));
    printf("every market of its %lld batches is an ISO 3166-1 alpha-2 code\n", (long long)batches);
out:
    return err;
}

/*
 * A store that is not a file (PostgreSQL): read in one snapshot, rebuilt in a scratch store in
 * scratch_dir (or $TMPDIR, or /tmp), and compared; nothing of the store's own is copied.
 */
static kbr_err verify_served(const char *url, const char *scratch_dir, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_audit_verify_stats stats;
    char *shown = kbr_store_shown(url), scratch_path[4200];
    const char *tmp = getenv("TMPDIR");
    struct timespec t0;

    scratch_path[0] = '\0';
    KBR_ENSURE(shown != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(make_scratch_dir(scratch_dir != NULL           ? scratch_dir
                               : tmp != NULL && *tmp != '\0' ? tmp
                                                             : "/tmp",
                               scratch_dir != NULL, msg));
    snprintf(scratch_path, sizeof(scratch_path), "%s/" SCRATCH_NAME, made_dir);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    err = kbr_audit_verify_store(url, scratch_path, &stats, msg);
    if (err == KBR_ERR_CONFLICT) /* msg names the first difference */
        fprintf(stderr, "keybrokerd: store %s differs from its audit log:\n", shown);
    KBR_GUARD(err);
    KBR_GUARD(report_match(shown, url, &stats, &t0, msg));
out:
    if (made_dir[0] != '\0') {
        kbr_store_remove_files(scratch_path);
        rmdir(made_dir);
    }
    free(shown);
    return err;
}

kbr_err kbd_verify_store(const kbd_config *cfg, const char *scratch_dir, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_audit_verify_stats stats;
    const char *url = cfg->store, *checked;
    char *path = NULL, *dir = NULL, scratch_path[4200], copy_path[4200], copy_url[4300];
    char logged_path[4200], logged_url[4300];
    struct timespec t0;
    struct stat sb;
    kbr_store_info info;
    kbr_store_pending pending = KBR_STORE_AT_REST;
    bool copied = false, logged = false;

    KBR_GUARD(kbr_store_file(url, &path, msg));
    if (path == NULL)
        return verify_served(url, scratch_dir, msg);
    KBR_ENSURE(stat(path, &sb) == 0,
               kbr_fail(msg, KBR_ERR_STORE, "store %s: %s", path,
                        errno == ENOENT ? "no such store (keybrokerd --init creates one)"
                                        : strerror(errno)));
    KBR_ENSURE(S_ISREG(sb.st_mode),
               kbr_fail(msg, KBR_ERR_STORE, "store %s: not a store file", path));
    dir = strdup(path); /* dirname() writes into what it is given */
    KBR_ENSURE(dir != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(make_scratch_dir(scratch_dir != NULL ? scratch_dir : dirname(dir),
                               scratch_dir != NULL, msg));
    snprintf(scratch_path, sizeof(scratch_path), "%s/" SCRATCH_NAME, made_dir);
    snprintf(copy_path, sizeof(copy_path), "%s/" COPY_NAME, made_dir);
    snprintf(logged_path, sizeof(logged_path), "%s/" LOGGED_NAME, made_dir);
    snprintf(logged_url, sizeof(logged_url), "sqlite:%s", logged_path);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* a -wal without its -shm, or an interrupted change in a -journal, is read from a copy:
     * beside the store SQLite would make a -shm or roll the change back, or could not
     * (read-only media) */
    KBR_GUARD(kbr_store_copy_pending(path, logged_path, &pending, msg));
    logged = pending != KBR_STORE_AT_REST;
    if (pending == KBR_STORE_UNINDEXED_LOG)
        printf("store %s has a write-ahead log without its index (-shm): checked as a copy of "
               "both; the store itself is not changed\n",
               path);
    if (pending == KBR_STORE_HOT_JOURNAL)
        printf("store %s has a change that was interrupted, in its rollback journal "
               "(-journal): checked as a copy of both with the change rolled back; the store "
               "itself is not changed\n",
               path);
    err = migrated_copy(logged ? logged_url : url, copy_path, &info, &copied, msg);
    KBR_GUARD(err);
    snprintf(copy_url, sizeof(copy_url), "sqlite:%s", copy_path);
    checked = copied ? copy_url : logged ? logged_url : url;
    if (copied)
        printf("store %s has schema version %d: checked as a copy taken to version %d; the "
               "store itself is not changed (the next start migrates it)\n",
               path, info.schema_version, info.current_version);
    err = kbr_audit_verify_store(checked, scratch_path, &stats, msg);
    if (err == KBR_ERR_CONFLICT) /* msg names the first difference */
        fprintf(stderr, "keybrokerd: store %s differs from its audit log:\n", path);
    KBR_GUARD(err);
    KBR_GUARD(report_match(path, checked, &stats, &t0, msg));
out:
    if (made_dir[0] != '\0') {
        kbr_store_remove_files(copy_path);
        kbr_store_remove_files(logged_path);
        kbr_store_remove_files(scratch_path);
        rmdir(made_dir);
    }
    free(dir);
    free(path);
    return err;
}
