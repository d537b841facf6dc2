/*
 * test_sandbox.c - keybrokerd's process sandbox (broker/daemon/sandbox.c),
 * each profile installed in a child of this test: no new privileges, the
 * filter in place, the denied calls answering EPERM, and what the process
 * still needs (threads, files, sockets; processes for the HSM side) still
 * working.  The probes are harmless where the filter is missing (umount2 of
 * a path that is no mount, unshare of nothing), so a broken filter fails
 * the test without touching the machine.
 */
#include "../../broker/daemon/hsmproc.h"
#include "../../broker/daemon/kbd.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

static int report = -1;

/* In the child: a failed check writes its line to the parent and ends the child. */
#define CHILD_CHECK(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            int line_ = __LINE__;                                                                  \
            if (write(report, &line_, sizeof(line_)) < 0)                                          \
                _exit(3);                                                                          \
            _exit(2);                                                                              \
        }                                                                                          \
    } while (0)

static bool denied(long rc)
{
    return rc == -1 && errno == EPERM;
}

static void *thread_main(void *arg)
{
    return arg;
}

static bool seccomp_filtered(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strstr(buf, "\nSeccomp:\t2\n") != NULL && strstr(buf, "\nNoNewPrivs:\t1\n") != NULL;
}

/* What both profiles refuse, and what both still allow. */
static void common_checks(void)
{
    char *const argv[] = {"true", NULL};
    pthread_t th;
    void *ret = NULL;
    int sv[2], fd;

    CHILD_CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
    CHILD_CHECK(seccomp_filtered());
    CHILD_CHECK(denied(execve("/bin/true", argv, NULL)));
    CHILD_CHECK(denied(syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, NULL, 0)));
    CHILD_CHECK(denied(process_vm_readv(getppid(), NULL, 0, NULL, 0, 0)));
    CHILD_CHECK(denied(umount2("/kbr-sandbox-test-no-such-mount", 0)));
    CHILD_CHECK(denied(unshare(0)));
    CHILD_CHECK(denied(syscall(SYS_bpf, -1, NULL, 0)));
    CHILD_CHECK(denied(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0)));
    CHILD_CHECK(denied(syscall(SYS_finit_module, -1, "", 0)));
    CHILD_CHECK(denied(syscall(SYS_keyctl, 0, 0, 0, 0, 0)));
#ifdef SYS_io_uring_setup
    CHILD_CHECK(denied(syscall(SYS_io_uring_setup, 0, NULL)));
#endif
#if !KBD_SANITIZED
    CHILD_CHECK(denied(ptrace(PTRACE_TRACEME, 0, NULL, NULL)));
#endif
    /* still there: threads, files, sockets, time */
    CHILD_CHECK(pthread_create(&th, NULL, thread_main, (void *)&report) == 0);
    CHILD_CHECK(pthread_join(th, &ret) == 0 && ret == (void *)&report);
    fd = open("/proc/self/stat", O_RDONLY);
    CHILD_CHECK(fd >= 0);
    close(fd);
    CHILD_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[0]);
    close(sv[1]);
    CHILD_CHECK(kbr_monotonic_seconds() > 0);
}

static void network_profile(void)
{
    kbr_msg msg = {{0}};

    CHILD_CHECK(kbd_sandbox_network(&msg) == KBR_OK);
    common_checks();
#if !KBD_SANITIZED
    /* no new processes: fork (clone without CLONE_THREAD) and vfork are refused */
    CHILD_CHECK(denied(fork()));
#ifdef SYS_vfork
    CHILD_CHECK(denied(syscall(SYS_vfork)));
#endif
#endif
}

static void hsm_profile(void)
{
    kbr_msg msg = {{0}};
    int status = 0;
    pid_t pid;

    CHILD_CHECK(kbd_sandbox_hsm(&msg) == KBR_OK);
    common_checks();
    /* the keeper starts HSM processes */
    pid = fork();
    CHILD_CHECK(pid >= 0);
    if (pid == 0)
        _exit(7);
    CHILD_CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 7);
}

static void run_in_child(void (*profile)(void))
{
    int p[2], status = 0, line = 0;
    pid_t pid;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        report = p[1];
        profile();
        _exit(0);
    }
    close(p[1]);
    if (read(p[0], &line, sizeof(line)) == (ssize_t)sizeof(line))
        fail_msg("sandboxed child: check at test_sandbox.c:%d failed", line);
    close(p[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_network_profile(void **state)
{
    (void)state;
    run_in_child(network_profile);
}

static void test_hsm_profile(void **state)
{
    (void)state;
    run_in_child(hsm_profile);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_network_profile),
        cmocka_unit_test(test_hsm_profile),
    };

    return cmocka_run_group_tests_name("sandbox", tests, NULL, NULL);
}
