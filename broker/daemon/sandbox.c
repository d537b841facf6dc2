/*
 * sandbox.c - what keybrokerd's processes give up once they are set up:
 * new privileges (PR_SET_NO_NEW_PRIVS) and the system calls an intruder
 * wants and the broker never makes (a seccomp filter, raw BPF).
 *
 * A deny-list, not an allow-list.  The HSM process runs whatever the
 * vendor's PKCS#11 module calls (token files, sockets to a network HSM,
 * threads of its own), and both processes run on whatever libc and
 * sanitizer runtime they were built with: an allow-list breaks on the first
 * call nobody foresaw, a deny-list of calls no part of the broker has any
 * use for cannot.  A denied call fails with EPERM, so a library probing a
 * feature sees it missing instead of killing the broker; a call made
 * through another architecture's table (i386 or x32 numbers on x86-64) kills
 * the process, since the numbers below mean nothing there.
 *
 * Every process refuses:
 *   - running a program: execve, execveat;
 *   - reaching into another process: ptrace, process_vm_readv/writev,
 *     pidfd_getfd, kcmp;
 *   - the kernel's own business: kexec_load/kexec_file_load,
 *     init/finit/delete_module, bpf, perf_event_open, userfaultfd, the key
 *     rings (add_key, request_key, keyctl), reboot, swapon/swapoff, acct,
 *     quotactl, syslog, iopl/ioperm, uselib, vhangup, lookup_dcookie,
 *     fanotify_init, io_uring;
 *   - file systems and namespaces: mount and the new mount API, umount2,
 *     pivot_root, chroot, unshare, setns, open_by_handle_at,
 *     name_to_handle_at, mknod/mknodat;
 *   - the clock and the host's names: settimeofday, clock_settime,
 *     clock_adjtime, adjtimex, sethostname, setdomainname.
 * The network process also refuses to make processes: fork, vfork, clone
 * without CLONE_THREAD (threads are still made), and clone3 answers ENOSYS,
 * which is glibc's cue to make its threads with clone.
 *
 * What they may still do: the network process opens files (the store, its
 * TLS files), listens and accepts, makes threads, maps memory; the HSM
 * processes open, write, rename and lock files (SoftHSM2's token
 * directory), open sockets, make threads and, for the one that restarts the
 * HSM process, processes.  Neither can run a program, so what an intruder
 * brings must live inside the process it took.
 *
 * Builds with AddressSanitizer keep ptrace and clone: LeakSanitizer stops
 * the process's threads with them to look for leaks at exit.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kbd.h"
#include "hsmproc.h"

#if defined(__x86_64__)
#define KBD_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define KBD_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* -1 ends each list; calls an architecture does not have are left out by the preprocessor. */
static const long denied_everywhere[] = {
    __NR_execve,
    __NR_execveat,
#if !KBD_SANITIZED
    __NR_ptrace,
#endif
    __NR_process_vm_readv,
    __NR_process_vm_writev,
#ifdef __NR_pidfd_getfd
    __NR_pidfd_getfd,
#endif
    __NR_kcmp,
    __NR_kexec_load,
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
    __NR_init_module,
    __NR_finit_module,
    __NR_delete_module,
    __NR_bpf,
    __NR_perf_event_open,
    __NR_userfaultfd,
    __NR_add_key,
    __NR_request_key,
    __NR_keyctl,
    __NR_reboot,
    __NR_swapon,
    __NR_swapoff,
    __NR_acct,
    __NR_quotactl,
#ifdef __NR_quotactl_fd
    __NR_quotactl_fd,
#endif
    __NR_syslog,
#ifdef __NR_iopl
    __NR_iopl,
#endif
#ifdef __NR_ioperm
    __NR_ioperm,
#endif
#ifdef __NR_uselib
    __NR_uselib,
#endif
    __NR_vhangup,
    __NR_lookup_dcookie,
    __NR_fanotify_init,
#ifdef __NR_io_uring_setup
    __NR_io_uring_setup,
    __NR_io_uring_enter,
    __NR_io_uring_register,
#endif
    __NR_mount,
#ifdef __NR_move_mount
    __NR_move_mount,
    __NR_open_tree,
    __NR_fsopen,
    __NR_fsconfig,
    __NR_fsmount,
    __NR_fspick,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
    __NR_umount2,
    __NR_pivot_root,
    __NR_chroot,
    __NR_unshare,
    __NR_setns,
    __NR_open_by_handle_at,
    __NR_name_to_handle_at,
#ifdef __NR_mknod
    __NR_mknod,
#endif
    __NR_mknodat,
    __NR_settimeofday,
    __NR_clock_settime,
    __NR_clock_adjtime,
    __NR_adjtimex,
    __NR_sethostname,
    __NR_setdomainname,
    -1,
};

static const long denied_network[] = {
#if !KBD_SANITIZED
#ifdef __NR_fork
    __NR_fork,
#endif
#ifdef __NR_vfork
    __NR_vfork,
#endif
#endif
    -1,
};

#ifdef KBD_AUDIT_ARCH

/* The low 32 bits of the first argument, where clone's flags are on x86-64 and arm64. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG0_LO offsetof(struct seccomp_data, args[0])
#else
#define ARG0_LO (offsetof(struct seccomp_data, args[0]) + 4)
#endif

#define FILTER_MAX 256

typedef struct {
    struct sock_filter f[FILTER_MAX];
    unsigned short n;
} filter;

static void emit(filter *p, struct sock_filter ins)
{
    /* the lists above are fixed: overflowing is a bug caught by the first start */
    if (p->n < FILTER_MAX)
        p->f[p->n] = ins;
    p->n++;
}

static void deny_list(filter *p, const long *nrs)
{
    for (size_t i = 0; nrs[i] >= 0; i++) {
        emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (__u32)nrs[i], 0, 1));
        emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
    }
}

/* Threads yes, processes no: clone passes only with CLONE_THREAD; clone3 says it is not there. */
static void deny_processes(filter *p)
{
#if !KBD_SANITIZED && (defined(__x86_64__) || defined(__aarch64__))
#ifdef __NR_clone3
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
#endif
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4));
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LO));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
#else
    (void)p;
#endif
}

static void build(filter *p, bool network)
{
    p->n = 0;
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                         offsetof(struct seccomp_data, arch)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, KBD_AUDIT_ARCH, 1, 0));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    emit(p,
         (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#if defined(__x86_64__)
    /* x32 numbers carry bit 30 under the same AUDIT_ARCH */
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
#endif
    deny_list(p, denied_everywhere);
    if (network) {
        deny_list(p, denied_network);
        deny_processes(p);
    }
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

static kbr_err install(bool network, kbr_msg *msg)
{
    filter p;
    struct sock_fprog prog;

    build(&p, network);
    if (p.n > FILTER_MAX)
        return kbr_fail(msg, KBR_ERR_INTERNAL, "seccomp filter: %u instructions, room for %d", p.n,
                        FILTER_MAX);
    prog.len = p.n;
    prog.filter = p.f;
    /* TSYNC: every thread of the process, should a library have started one already */
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
        return kbr_fail(msg, KBR_ERR_INTERNAL, "cannot install the seccomp filter: %s",
                        strerror(errno));
    return KBR_OK;
}

#else

static kbr_err install(bool network, kbr_msg *msg)
{
    (void)network;
    (void)msg;
    fprintf(stderr, "keybrokerd: no seccomp filter for this architecture; "
                    "no new privileges only\n");
    return KBR_OK;
}

#endif

static kbr_err sandbox(bool network, kbr_msg *msg)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return kbr_fail(msg, KBR_ERR_INTERNAL, "cannot set no_new_privs: %s", strerror(errno));
    return install(network, msg);
}

kbr_err kbd_sandbox_network(kbr_msg *msg)
{
    return sandbox(true, msg);
}

kbr_err kbd_sandbox_hsm(kbr_msg *msg)
{
    return sandbox(false, msg);
}
