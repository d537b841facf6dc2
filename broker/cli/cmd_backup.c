/*
 * cmd_backup.c - keybroker backup --out FILE: a consistent copy of the broker's store,
 * taken while it serves (GET /v1/backup, op admin) and recorded in its audit log.
 *
 * The copy is written to a temporary file beside FILE (mode 0600: it holds every token's
 * record and every device's), checked against the length and SHA-256 the broker sent,
 * flushed to disk, and only then renamed to FILE; anything short of that leaves FILE as it
 * was.  "--out -" writes to standard output instead (to pipe into encryption), checked the
 * same way, after the fact, and so does a FILE that is a FIFO or character device of the user
 * (written in place, never replaced).  What kbr_file_write refuses (a symbolic link, a
 * directory, a FIFO others may read) is refused before the copy is asked for.  Interrupted
 * (SIGINT, SIGTERM, SIGHUP) while the copy arrives, it removes its temporary file before it
 * dies of the signal: a copy of every token's record is not left behind under a name nobody
 * looks for.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const cli_opt backup_opts[] = {
    {"out", CLI_OPT_STR, true, "FILE"},
};

/* The temporary file being written, for the signal handler; NULL when there is none. */
static char *volatile partial;
static const int interrupts[] = {SIGINT, SIGTERM, SIGHUP};

static void on_interrupt(int sig)
{
    char *p = partial;

    if (p != NULL)
        unlink(p);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* While a temporary file is written, an interrupt removes it; old[] keeps what was there.  A
 * signal ignored when the command started (nohup, a background job) stays ignored. */
static void guard_partial(char *tmp, struct sigaction old[3])
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    partial = tmp;
    for (size_t i = 0; i < 3; i++) {
        sigaction(interrupts[i], NULL, &old[i]);
        if (old[i].sa_handler != SIG_IGN)
            sigaction(interrupts[i], &sa, NULL);
    }
}

static void unguard_partial(const struct sigaction old[3])
{
    for (size_t i = 0; i < 3; i++)
        sigaction(interrupts[i], &old[i], NULL);
    partial = NULL;
}

static kbr_err temp_beside(const char *path, char **tmp, int *fd, cli_error *ce)
{
    if (asprintf(tmp, "%s.partial-XXXXXX", path) < 0) {
        *tmp = NULL;
        return KBR_ERR_NOMEM;
    }
    *fd = mkostemp(*tmp, O_CLOEXEC);
    if (*fd < 0) {
        kbr_err err = cli_fail(ce, KBR_ERR_IO, "io_error", "cannot create a file beside %s: %s",
                               path, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return err;
    }
    return KBR_OK;
}

/* What arrived is what the broker said it sent. */
static kbr_err check_received(const cli_download *got, char hex[65], cli_error *ce)
{
    kbr_hex_encode_buf(got->sha256, sizeof(got->sha256), hex);
    if (got->content_length >= 0 && got->received != got->content_length)
        return cli_fail(ce, KBR_ERR_IO, "incomplete", "the copy arrived short: %lld of %lld bytes",
                        got->received, got->content_length);
    if (got->backup_sha256[0] == '\0')
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                        "the broker sent no X-Backup-SHA256 to check the copy against");
    if (strcmp(hex, got->backup_sha256) != 0)
        return cli_fail(ce, KBR_ERR_IO, "corrupt",
                        "the copy's SHA-256 is %s, the broker sent one of %s", hex,
                        got->backup_sha256);
    return KBR_OK;
}

static kbr_err sync_dir_of(const char *path)
{
    char *copy = strdup(path);
    int dfd = copy != NULL ? open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    kbr_err err = dfd >= 0 && fsync(dfd) == 0 ? KBR_OK : KBR_ERR_IO;

    if (dfd >= 0)
        close(dfd);
    free(copy);
    return err;
}

static kbr_err report(cli_ctx *ctx, const char *out, const cli_download *got, const char *hex,
                      cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *j;
    /* with --out -, stdout holds the copy: the report goes to stderr */
    FILE *f = strcmp(out, "-") == 0 ? stderr : ctx->out;

    if (!ctx->json) {
        fprintf(f,
                "backup %s: %lld bytes, the audit log up to entry %lld, sha256 %s; recorded as "
                "audit entry %lld\n",
                out, got->received, got->backup_last_seq, hex, got->audit_seq);
        return KBR_OK;
    }
    j = json_pack("{s:s,s:I,s:s,s:I,s:I}", "file", out, "bytes", (json_int_t)got->received,
                  "sha256", hex, "last_seq", (json_int_t)got->backup_last_seq, "audit_seq",
                  (json_int_t)got->audit_seq);
    KBR_ENSURE(j != NULL, KBR_ERR_NOMEM);
    err = cli_print_json(f, j, ce);
out:
    json_decref(j);
    return err;
}

static kbr_err backup(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *out = cli_args_str(ctx->args, "out");
    bool to_stdout = strcmp(out, "-") == 0, in_place = false;
    char *tmp = NULL, hex[65];
    int fd = -1;
    struct stat sb;
    struct sigaction old[3];
    bool guarded = false;
    cli_download got;

    if (!to_stdout) {
        /* before the copy is made and recorded: where it may not go, it is not asked for */
        KBR_GUARD(cli_check_out("out", out, 0600, ce));
        in_place = lstat(out, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISCHR(sb.st_mode));
    }
    if (to_stdout)
        fd = STDOUT_FILENO;
    else if (in_place) {
        fd = open(out, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        KBR_ENSURE(fd >= 0, cli_fail(ce, KBR_ERR_IO, "io_error", "cannot open %s: %s", out,
                                     strerror(errno)));
    } else {
        KBR_GUARD(temp_beside(out, &tmp, &fd, ce));
        guard_partial(tmp, old);
        guarded = true;
    }
    KBR_GUARD(cli_get_to_fd(ctx->client, "/v1/backup", fd, &got, ce));
    KBR_GUARD(check_received(&got, hex, ce));
    if (!to_stdout && !in_place) {
        KBR_ENSURE(fsync(fd) == 0, cli_fail(ce, KBR_ERR_IO, "io_error", "cannot flush %s: %s", tmp,
                                            strerror(errno)));
        KBR_ENSURE(close(fd) == 0, cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write %s: %s", tmp,
                                            strerror(errno)));
        fd = -1;
        KBR_ENSURE(rename(tmp, out) == 0,
                   cli_fail(ce, KBR_ERR_IO, "io_error", "cannot rename %s to %s: %s", tmp, out,
                            strerror(errno)));
        unguard_partial(old);
        guarded = false;
        free(tmp);
        tmp = NULL;
        KBR_ENSURE(sync_dir_of(out) == KBR_OK,
                   cli_fail(ce, KBR_ERR_IO, "io_error", "cannot flush the directory of %s", out));
    }
    err = report(ctx, out, &got, hex, ce);
out:
    if (fd >= 0 && !to_stdout)
        close(fd);
    if (tmp != NULL)
        unlink(tmp);
    if (guarded)
        unguard_partial(old);
    free(tmp);
    return err;
}

const cli_command cli_cmd_backup = {
    {"backup", NULL, NULL},
    "--out FILE",
    "a consistent copy of the broker's store, made while it serves and recorded in its audit "
    "log (op admin, a token limited to nothing); FILE - is standard output",
    {backup_opts, 1, NULL, 0, 0},
    true,
    backup,
};
