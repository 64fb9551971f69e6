/* agl_util — random ids, clocks, systemd readiness. */
#include "agl_util.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

void agl_id_new(char *out, size_t cap, const char *prefix, int nhex)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[32];
    size_t nbytes = (size_t)(nhex + 1) / 2;
    if (nbytes > sizeof rnd) nbytes = sizeof rnd;
    size_t got = 0;
    while (got < nbytes) {
        ssize_t r = getrandom(rnd + got, nbytes - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* cannot happen on Linux >= 3.17 once the pool is ready */
        got += (size_t)r;
    }
    size_t pl = strlen(prefix);
    size_t k = 0;
    for (; k < pl && k + 1 < cap; k++) out[k] = prefix[k];
    for (int i = 0; i < nhex && k + 1 < cap; i++) {
        unsigned char byte = rnd[i / 2];
        out[k++] = hex[(i & 1) ? (byte & 15) : (byte >> 4)];
    }
    out[k] = 0;
}

double agl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double agl_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void agl_sleep(double seconds)
{
    if (seconds <= 0) return;
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void agl_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !path[0] || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    if (sa.sun_path[0] == '@') sa.sun_path[0] = 0; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0) {
        /* best effort: systemd then falls back to its start timeout */
    }
    close(fd);
}
