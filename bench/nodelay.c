/* Diagnostic preload for bench/mesos-executor.sh (FRAMEWORK_NODELAY=1): sets TCP_NODELAY on
   every TCP socket a process connects, in processes whose command line contains $NODELAY_ONLY
   (every process when unset). libprocess turns Nagle off only on the sockets it accepts, so a
   client such as mesos-execute keeps it on its connection to the master. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int wanted(void) {
    static int decided = -1;
    if (decided < 0) {
        const char *only = getenv("NODELAY_ONLY");
        char cmdline[256] = {0};
        FILE *f = fopen("/proc/self/cmdline", "r");
        if (f) {
            size_t n = fread(cmdline, 1, sizeof cmdline - 1, f);
            (void)n;
            fclose(f);
        }
        decided = !only || !*only || strstr(cmdline, only) != NULL;
    }
    return decided;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    if (wanted() && addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
        int on = 1, saved = errno;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        errno = saved;
    }
    return real(fd, addr, len);
}
