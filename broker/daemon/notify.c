/*
 * notify.c - the service manager's readiness protocol (sd_notify(3), without libsystemd):
 * one datagram to the unix socket named by NOTIFY_SOCKET ("@name" for the abstract
 * namespace).  keybrokerd says READY=1 once it listens, RELOADING=1 and READY=1 around a
 * SIGHUP reload, and STOPPING=1 when it stops accepting; with Type=notify a unit is thus
 * started only once requests can be served.  Without NOTIFY_SOCKET nothing is sent.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kbd.h"

void kbd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = path != NULL ? strlen(path) : 0;
    char text[256];
    struct timespec ts;
    socklen_t len;
    int fd;

    if (n == 0 || n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
        return;
    memcpy(sa.sun_path, path, n);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    /* a reload names the monotonic time it began, as systemd 253 and later ask */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (strcmp(state, "RELOADING=1") == 0)
        snprintf(text, sizeof(text), "%s\nMONOTONIC_USEC=%llu", state,
                 (unsigned long long)ts.tv_sec * 1000000ULL +
                     (unsigned long long)ts.tv_nsec / 1000);
    else
        snprintf(text, sizeof(text), "%s", state);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    (void)sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    close(fd);
}
