/*
 * hsmproc.c - the HSM in processes of its own, so that the process parsing
 * HTTP, TLS, JSON, CSRs and COSE never maps the vendor's PKCS#11 module nor
 * holds the PIN.
 *
 * keybrokerd forks once at start, before it has a thread or reads a
 * request:
 *
 *   keybrokerd          the network process: HTTP, TLS, tokens, store, audit;
 *   |                   its kbr_hsm sessions are connections (remote.c)
 *   `- HSM keeper       one thread; never loads the module nor reads the PIN;
 *      |                passes each new connection on, starts the HSM process
 *      |                and starts it again when it dies
 *      `- HSM process   reads pin_file, loads the module, logs in, and serves
 *                       each connection on a thread and PKCS#11 session of
 *                       its own (kbr_hsm_serve)
 *
 * The keeper exists because by the time an HSM process needs replacing the
 * network process has threads, and a threaded process cannot safely fork a
 * child that goes on to load a module.
 *
 * An HSM process that dies is replaced, the daemon is not stopped.  Its
 * connections close, so the calls in flight fail with KBR_ERR_HSM: their
 * requests answer 503 hsm_unavailable and release nothing (a reply waits
 * for its audit record, and a failed call has no signature to release).  The
 * network process says so once (kbd_note_hsm), the keeper says which
 * process died and how, and starts another at once; each session connects
 * again on its next call.  That is the promise the broker already makes for
 * a token that drops out (503 until it is back, no restart), and it keeps
 * the network process's state (verified tokens, reservations in flight,
 * client connections) that restarting the whole daemon would throw away.
 * An HSM process that cannot come up (token absent, PIN refused) is tried
 * again after a wait that doubles from 0.1 s to 2 s, like the login backoff.
 * If the keeper itself dies no connection can be made any more: the network
 * process then stops with exit status 1 (kbd_hsmproc_reap), for its service
 * manager to start it again.
 *
 * The HSM processes ignore SIGINT and SIGTERM: the network process decides
 * when they end (its control socket closes), so a signal to the whole
 * process group lets in-flight requests finish before the HSM goes.  SIGHUP
 * only reopens their log (the network process passes it on to the keeper,
 * the keeper to the HSM process).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kbd.h"
#include "hsmproc.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS   2000
/* How long a closing HSM process may take to log out and finalize the module. */
#define FINISH_WAIT_MS 10000

typedef struct {
    const kbd_config *cfg;
    int net;         /* control socket to the network process */
    pid_t pid;       /* the HSM process, 0 when there is none */
    int ctl;         /* control socket to it, -1 when there is none */
    bool up;         /* it said it came up */
    bool said_down;  /* a failure to come up was logged since the last one that came up */
    long backoff_ms; /* after a failure to come up */
    double start_at; /* monotonic seconds: when to start the next one */
} keeper;

/* ---- the HSM process ---- */

static int hsm_main(const kbd_config *cfg, int ctl)
{
    kbr_msg msg = {{0}};
    kbr_hsm *hsm = NULL;
    kbr_err err;

    prctl(PR_SET_NAME, "kbrd-hsm", 0, 0, 0);
    kbd_log_process("hsm");
    /* the PIN is read here and nowhere else in a serving broker */
    err = kbd_open_hsm(cfg, &hsm, &msg);
    if (kbr_hsm_ctl_send_status(ctl, err, msg.text) != KBR_OK || err != KBR_OK) {
        kbr_hsm_close(hsm);
        return 1;
    }
    /* the network process reads and proposes the audit record; this process decides */
    err = kbr_hsm_serve(hsm, ctl, &(kbr_hsm_data_policy){KBD_RECORD_LABEL, kbd_record_check, NULL});
    kbr_hsm_close(hsm);
    return err == KBR_OK ? 0 : 1;
}

/* ---- the keeper ---- */

static void keep_only(int fd)
{
    if (fd > 3)
        close_range(3, (unsigned)fd - 1, 0);
    close_range((unsigned)fd + 1, ~0u, 0);
}

static kbr_err hsm_start(keeper *k)
{
    int sv[2];
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return KBR_ERR_INTERNAL;
    pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return KBR_ERR_INTERNAL;
    }
    if (pid == 0) {
        keep_only(sv[1]);
        exit(hsm_main(k->cfg, sv[1]));
    }
    close(sv[1]);
    k->pid = pid;
    k->ctl = sv[0];
    k->up = false;
    return KBR_OK;
}

static void describe(int status, char *out, size_t n)
{
    if (WIFSIGNALED(status))
        snprintf(out, n, "was killed by signal %d", WTERMSIG(status));
    else
        snprintf(out, n, "exited with status %d", WEXITSTATUS(status));
}

/* The HSM process is gone or going: collect it and plan the next one. */
static void hsm_reap(keeper *k)
{
    int status = 0;
    char how[64];

    close(k->ctl);
    k->ctl = -1;
    while (waitpid(k->pid, &status, 0) < 0 && errno == EINTR)
        ;
    describe(status, how, sizeof(how));
    if (k->up) {
        kbd_log(KBD_LOG_ERROR, "hsm.process_died", NULL,
                "the HSM process (pid %d) %s; starting another", (int)k->pid, how);
        k->backoff_ms = 0;
        k->start_at = kbr_monotonic_seconds();
    } else {
        k->backoff_ms = k->backoff_ms == 0 ? BACKOFF_FIRST_MS : k->backoff_ms * 2;
        if (k->backoff_ms > BACKOFF_MAX_MS)
            k->backoff_ms = BACKOFF_MAX_MS;
        k->start_at = kbr_monotonic_seconds() + (double)k->backoff_ms / 1000.0;
    }
    k->pid = 0;
    k->up = false;
}

/* The HSM process's control socket stirred: its word that it came up, or its end. */
static void hsm_event(keeper *k)
{
    kbr_msg msg = {{0}};
    kbr_err status = KBR_OK;
    char byte;
    ssize_t n;

    if (!k->up) {
        kbr_err err = kbr_hsm_ctl_recv_status(k->ctl, &status, &msg);
        if (err == KBR_OK && status == KBR_OK) {
            if (k->said_down)
                kbd_log(KBD_LOG_INFO, "hsm.process_up", NULL, "the HSM process (pid %d) is up",
                        (int)k->pid);
            k->up = true;
            k->said_down = false;
            k->backoff_ms = 0;
            return;
        }
        /* said once until one comes up, not at every try */
        if (!k->said_down)
            kbd_log(KBD_LOG_ERROR, "hsm.process_failed", NULL,
                    "the HSM process could not start: %s; trying again",
                    err != KBR_OK         ? "it stopped before it said so"
                    : msg.text[0] != '\0' ? msg.text
                                          : kbr_err_str(status));
        k->said_down = true;
        hsm_reap(k);
        return;
    }
    n = recv(k->ctl, &byte, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    /* it says nothing after coming up: anything else is its end, or a process gone wrong */
    if (n > 0)
        kill(k->pid, SIGKILL);
    hsm_reap(k);
}

/* One connection from the network process passed on; false when the network process is gone. */
static bool pass_on(keeper *k)
{
    int fd = -1;
    kbr_err err = kbr_hsm_ctl_recv_fd(k->net, &fd);

    if (err == KBR_ERR_BAD_REQUEST) {
        kbd_log(KBD_LOG_ERROR, "hsm.control_refused", NULL, "HSM keeper: refused a control record");
        return true;
    }
    if (err != KBR_OK || fd < 0)
        return false;
    /*
     * With no HSM process, or one that just died, the connection simply closes
     * here: that session's call answers 503 and its next one connects again.
     */
    if (k->pid != 0)
        (void)kbr_hsm_ctl_send_fd(k->ctl, fd);
    close(fd);
    return true;
}

static int poll_timeout(const keeper *k)
{
    double wait;

    if (k->pid != 0)
        return -1;
    wait = k->start_at - kbr_monotonic_seconds();
    return wait <= 0 ? 0 : (int)(wait * 1000.0) + 1;
}

/* SIGHUP (passed on by the network process): reopen the log, and have the HSM process do so. */
static volatile sig_atomic_t hup;

static void on_hup(int sig)
{
    (void)sig;
    hup = 1;
    kbd_log_reopen_later();
}

static void keep(keeper *k)
{
    for (;;) {
        struct pollfd p[2] = {{k->net, POLLIN, 0}, {k->ctl, POLLIN, 0}};

        if (poll(p, 2, poll_timeout(k)) < 0 && errno != EINTR)
            return;
        if (hup) {
            kbr_msg ignored = {{0}};
            hup = 0;
            (void)kbd_log_reopen(&ignored);
            if (k->pid != 0)
                kill(k->pid, SIGHUP);
        }
        if (k->pid == 0 && kbr_monotonic_seconds() >= k->start_at && hsm_start(k) != KBR_OK) {
            k->start_at = kbr_monotonic_seconds() + BACKOFF_MAX_MS / 1000.0;
            continue;
        }
        if (k->ctl >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
            hsm_event(k);
        if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !pass_on(k))
            return;
    }
}

/* The network process is gone or closing: let the HSM process log out and finalize. */
static void finish(keeper *k)
{
    int status;

    if (k->pid == 0)
        return;
    close(k->ctl);
    k->ctl = -1;
    for (int waited = 0; waited < FINISH_WAIT_MS; waited += 20) {
        if (waitpid(k->pid, &status, WNOHANG) == k->pid)
            return;
        poll(NULL, 0, 20);
    }
    kbd_log(KBD_LOG_WARN, "hsm.process_killed", NULL,
            "the HSM process (pid %d) did not finish; killing it", (int)k->pid);
    kill(k->pid, SIGKILL);
    waitpid(k->pid, &status, 0);
}

/* The first HSM process, whose outcome the network process waits for. */
static kbr_err first_start(keeper *k, kbr_msg *msg)
{
    kbr_err err = KBR_OK, status = KBR_OK;

    KBR_ENSURE(hsm_start(k) == KBR_OK,
               kbr_fail(msg, KBR_ERR_INTERNAL, "cannot start the HSM process"));
    err = kbr_hsm_ctl_recv_status(k->ctl, &status, msg);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, KBR_ERR_HSM, "the HSM process stopped before it came up"));
    err = status;
    KBR_ENSURE(err == KBR_OK, err);
    k->up = true;
out:
    if (err != KBR_OK && k->pid != 0) {
        k->up = false;
        hsm_reap(k);
    }
    return err;
}

static int keeper_main(const kbd_config *cfg, int net)
{
    keeper k = {.cfg = cfg, .net = net, .pid = 0, .ctl = -1};
    kbr_msg msg = {{0}};
    kbr_err err;
    struct sigaction sa = {.sa_handler = on_hup};

    prctl(PR_SET_NAME, "kbrd-hsm-keeper", 0, 0, 0);
    kbd_log_process("hsm-keeper");
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    /* not SIG_IGN: a SIGHUP reopens the log (the HSM process inherits the handler) */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    keep_only(net);
    err = kbd_sandbox_hsm(&msg);
    if (err == KBR_OK)
        err = first_start(&k, &msg);
    if (kbr_hsm_ctl_send_status(net, err, msg.text) != KBR_OK || err != KBR_OK) {
        finish(&k);
        return 1;
    }
    keep(&k);
    finish(&k);
    return 0;
}

/* ---- the network process's side ---- */

kbr_err kbd_hsmproc_start(kbd *d, kbr_msg *msg)
{
    kbr_err err = KBR_OK, status = KBR_OK;
    int sv[2] = {-1, -1};
    pid_t pid;

    KBR_ENSURE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0,
               kbr_fail(msg, KBR_ERR_INTERNAL, "cannot make the HSM control socket"));
    /* nothing buffered may be written twice */
    fflush(NULL);
    pid = fork();
    KBR_ENSURE(pid >= 0, kbr_fail(msg, KBR_ERR_INTERNAL, "cannot start the HSM keeper"));
    if (pid == 0) {
        close(sv[0]);
        exit(keeper_main(&d->cfg, sv[1]));
    }
    close(sv[1]);
    sv[1] = -1;
    d->hsm_pid = pid;
    err = kbr_hsm_ctl_recv_status(sv[0], &status, msg);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, KBR_ERR_HSM, "the HSM keeper stopped before the HSM came up"));
    err = status;
    KBR_ENSURE(err == KBR_OK, err);
    KBR_GUARD(kbr_hsm_remote_open(sv[0], &d->hsm));
    sv[0] = -1;
out:
    if (sv[0] >= 0)
        close(sv[0]);
    if (err != KBR_OK && d->hsm_pid > 0) {
        waitpid(d->hsm_pid, NULL, 0);
        d->hsm_pid = 0;
    }
    return err;
}

void kbd_hsmproc_hup(kbd *d)
{
    if (d->hsm_pid > 0)
        kill(d->hsm_pid, SIGHUP);
}

bool kbd_hsmproc_reap(kbd *d)
{
    int status = 0;
    char how[64];

    if (d->hsm_pid <= 0 || waitpid(d->hsm_pid, &status, WNOHANG) != d->hsm_pid)
        return false;
    describe(status, how, sizeof(how));
    kbd_log(KBD_LOG_ERROR, "hsm.keeper_died", NULL, "the HSM keeper (pid %d) %s", (int)d->hsm_pid,
            how);
    d->hsm_pid = 0;
    return true;
}

void kbd_hsmproc_stop(kbd *d)
{
    /* closing the control socket is the keeper's signal to finish */
    kbr_hsm_close(d->hsm);
    d->hsm = NULL;
    if (d->hsm_pid > 0)
        while (waitpid(d->hsm_pid, NULL, 0) < 0 && errno == EINTR)
            ;
    d->hsm_pid = 0;
}
