/*
 * log.c - keybrokerd's log: one line per event on standard error, as text
 * ("keybrokerd: message") or as one JSON object per line (log_format =
 * json: time, level, event, process, pid, request_id when a request is the
 * subject, message), for a collector to parse without patterns.
 *
 * With log_file set, standard error itself is that file (opened O_APPEND
 * and put on descriptor 2), so what libraries or a sanitizer print lands
 * beside the broker's own lines.  Each line is one write(2): on an
 * O_APPEND file lines of the three processes never interleave.  Reopening
 * (SIGHUP, for logrotate) opens the file by its name again and puts it on
 * descriptor 2; the network process does so at once, the HSM keeper and
 * HSM process before their next line (kbd_log_reopen_later, from their
 * signal handler).
 *
 * Text a message carries from outside (a path, a peer) is written with its
 * control characters escaped, so no request can start a line of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "kbd.h"

#define LINE_MAX_BYTES 4096

static struct {
    atomic_bool json;    /* set on the event thread by a reload, read by every thread */
    char *file;          /* log_file, or NULL: descriptor 2 as it was given */
    const char *process; /* "keybrokerd", "hsm-keeper", "hsm" */
    volatile sig_atomic_t reopen;
} logger = {.process = "keybrokerd"};

static const char *level_name(kbd_log_level level)
{
    switch (level) {
    case KBD_LOG_ERROR:
        return "error";
    case KBD_LOG_WARN:
        return "warning";
    default:
        return "info";
    }
}

/* Opens path for appending and puts it on descriptor 2. */
static kbr_err open_on_stderr(const char *path, kbr_msg *msg)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);

    if (fd < 0)
        return kbr_fail(msg, KBR_ERR_CONFIG, "log_file %s: %s", path, strerror(errno));
    if (fd != STDERR_FILENO) {
        if (dup2(fd, STDERR_FILENO) < 0) {
            int e = errno;
            close(fd);
            return kbr_fail(msg, KBR_ERR_IO, "log_file %s: %s", path, strerror(e));
        }
        close(fd);
    }
    return KBR_OK;
}

kbr_err kbd_log_setup(const kbd_config *cfg, kbr_msg *msg)
{
    char *file = NULL;

    if (cfg->log_file != NULL) {
        file = strdup(cfg->log_file);
        if (file == NULL)
            return KBR_ERR_NOMEM;
        if (open_on_stderr(file, msg) != KBR_OK) {
            free(file);
            return KBR_ERR_CONFIG;
        }
    }
    free(logger.file);
    logger.file = file;
    atomic_store(&logger.json, cfg->log_json);
    return KBR_OK;
}

kbr_err kbd_log_reopen(kbr_msg *msg)
{
    logger.reopen = 0;
    return logger.file != NULL ? open_on_stderr(logger.file, msg) : KBR_OK;
}

void kbd_log_reopen_later(void)
{
    logger.reopen = 1;
}

void kbd_log_process(const char *name)
{
    logger.process = name;
}

void kbd_log_cleanup(void)
{
    free(logger.file);
    logger.file = NULL;
}

/* Text with control characters escaped, into out (always terminated). */
static void clean(const char *in, char *out, size_t n)
{
    size_t o = 0;

    for (const unsigned char *c = (const unsigned char *)in; *c != '\0' && o + 5 < n; c++) {
        if (*c < 0x20 || *c == 0x7f)
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", *c);
        else
            out[o++] = (char)*c;
    }
    out[o] = '\0';
}

static void now_text(char out[32])
{
    struct timeval tv;
    struct tm tm;
    size_t n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(tv.tv_usec / 1000) % 1000u);
}

static void write_line(const char *line, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        line += n;
        len -= (size_t)n;
    }
}

void kbd_logv(kbd_log_level level, const char *event, const char *request_id, const char *fmt,
              va_list ap)
{
    char text[LINE_MAX_BYTES], line[LINE_MAX_BYTES + 64];
    int n;

    if (logger.reopen) {
        kbr_msg ignored = {{0}};
        (void)kbd_log_reopen(&ignored);
    }
    vsnprintf(text, sizeof(text), fmt, ap);
    if (atomic_load(&logger.json)) {
        char when[32];
        json_t *o;
        char *dumped;

        now_text(when);
        o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s*,s:s}", "time", when, "level", level_name(level),
                      "event", event, "process", logger.process, "pid", (int)getpid(), "request_id",
                      request_id, "message", text);
        /* a message that is not UTF-8 is still logged, with its bytes escaped */
        if (o == NULL) {
            char safe[LINE_MAX_BYTES];
            for (char *c = text; *c != '\0'; c++)
                if ((unsigned char)*c >= 0x80)
                    *c = '?';
            clean(text, safe, sizeof(safe));
            o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s*,s:s}", "time", when, "level",
                          level_name(level), "event", event, "process", logger.process, "pid",
                          (int)getpid(), "request_id", request_id, "message", safe);
        }
        dumped = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
                           : NULL;
        json_decref(o);
        if (dumped == NULL)
            return;
        n = (int)strlen(dumped);
        /* jansson allocates with room to spare for nothing: one more byte for the newline */
        char *with_nl = realloc(dumped, (size_t)n + 2);
        if (with_nl == NULL) {
            free(dumped);
            return;
        }
        with_nl[n] = '\n';
        write_line(with_nl, (size_t)n + 1);
        free(with_nl);
        return;
    } else {
        char safe[LINE_MAX_BYTES];
        clean(text, safe, sizeof(safe));
        n = request_id != NULL
                ? snprintf(line, sizeof(line), "keybrokerd: %s (request %s)\n", safe, request_id)
                : snprintf(line, sizeof(line), "keybrokerd: %s\n", safe);
    }
    if (n > 0)
        write_line(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void kbd_log(kbd_log_level level, const char *event, const char *request_id, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    kbd_logv(level, event, request_id, fmt, ap);
    va_end(ap);
}
