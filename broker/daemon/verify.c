/*
 * verify.c - keybrokerd -c FILE --verify-store: the store checked against its own log
 * (kbr_audit_verify_store), reported on stdout.  It needs neither the HSM nor the store lock
 * (it reads one snapshot, so a running broker may go on serving), and it never creates a
 * store: a store that is not there is an error.  The scratch store it rebuilds goes beside
 * the store, on the file system that already has room for one like it.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kbd.h"

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

kbr_err kbd_verify_store(const kbd_config *cfg, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_audit_verify_stats stats;
    const char *url = cfg->store;
    char *path = NULL, *dir;
    struct timespec t0;
    struct stat sb;

    KBR_ENSURE(strncmp(url, "sqlite:", 7) == 0,
               kbr_fail(msg, KBR_ERR_CONFIG, "store %s: only sqlite: stores can be verified", url));
    path = strndup(url + 7, strcspn(url + 7, "?"));
    KBR_ENSURE(path != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(stat(path, &sb) == 0 && S_ISREG(sb.st_mode),
               kbr_fail(msg, KBR_ERR_STORE, "store %s: %s", path,
                        errno == ENOENT ? "no such store (keybrokerd --init creates one)"
                                        : "not a store file"));
    dir = dirname(path);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    err = kbr_audit_verify_store(url, dir, &stats, msg);
    if (err == KBR_ERR_CONFLICT) /* msg names the first difference */
        fprintf(stderr, "keybrokerd: store %s differs from its audit log:\n", url + 7);
    KBR_GUARD(err);
    printf("store %s matches its audit log: %lld entries, %lld effects, %lld documents; "
           "%lld rows in %lld tables compared (%.1f s)\n",
           url + 7, (long long)stats.entries, (long long)stats.effects, (long long)stats.documents,
           (long long)stats.rows, (long long)stats.tables, seconds_since(&t0));
out:
    free(path);
    return err;
}
