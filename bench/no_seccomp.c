/*
 * no_seccomp.c - for bench/instructions.sh only: valgrind does not implement
 * seccomp(2), so keybrokerd under callgrind would stop at its sandbox.  This
 * preload answers that one call with success and passes every other
 * syscall(2) on.  It is never built into, or installed with, the broker.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/syscall.h>

long syscall(long n, ...);

long syscall(long n, ...)
{
    static long (*real)(long, ...);
    long a[6];
    va_list ap;

    va_start(ap, n);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (n == SYS_seccomp)
        return 0;
    if (real == NULL)
        real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
