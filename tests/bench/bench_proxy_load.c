/* bench_proxy_load — closed-loop HTTP load generator for the proxy benchmark: C threads, each
 * with one kept-alive HTTP/1.1 connection over a plain socket (bench_http.h, shared with
 * loadgen.c), POSTing the same body for a fixed time. A reply counts when its status is 200 and its
 * body is complete (Content-Length or chunked framing) and, for a streamed reply, ends its event
 * stream with "data: [DONE]". Prints one JSON line {requests, errors, rps, p50_ms, p90_ms,
 * p99_ms}.
 * Usage: bench_proxy_load URL BODY CONCURRENCY SECONDS [HEADER...] */
#include "bench_http.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *host, *port;
    const char *req; /* the whole request, headers and body */
    size_t req_len;
    double until;
    double *lat;
    size_t n, cap, errors;
} job;

static int dial(const job *j)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(j->host, j->port, &hints, &ai) != 0) return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    int one = 1;
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* A complete 200 whose event stream, if it is one, ends with "data: [DONE]". */
static bool reply_ok(const bh_conn *c)
{
    if (c->status != 200) return false;
    if (!c->event_stream) return true;
    const char *tail = c->body.p + (c->body.len > 64 ? c->body.len - 64 : 0);
    return strstr(tail, "data: [DONE]") != NULL;
}

static void *run(void *arg)
{
    job *j = arg;
    bh_conn c = {.fd = -1};
    while (bh_now() < j->until) {
        if (c.fd < 0 && (c.fd = dial(j)) < 0) {
            j->errors++;
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        double t0 = bh_now();
        bool sent = bh_send_all(&c, j->req, j->req_len) == 0,
             read = sent && bh_read_response(&c) == 0, ok = read && reply_ok(&c);
        double dt = bh_now() - t0;
        if (!read || c.close_after) {
            close(c.fd);
            c.fd = -1;
            c.in.len = 0;
        }
        if (!ok) {
            j->errors++;
            continue;
        }
        if (j->n == j->cap) {
            j->cap = j->cap ? j->cap * 2 : 4096;
            j->lat = realloc(j->lat, j->cap * sizeof *j->lat);
        }
        j->lat[j->n++] = dt;
    }
    if (c.fd >= 0) close(c.fd);
    free(c.in.p);
    free(c.body.p);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_proxy_load URL BODY CONCURRENCY SECONDS [HEADER...]\n");
        return 2;
    }
    int conc = atoi(argv[3]);
    double secs = atof(argv[4]);
    /* http://HOST:PORT/PATH */
    const char *u = argv[1];
    if (strncmp(u, "http://", 7)) {
        fprintf(stderr, "bench_proxy_load: only http:// URLs\n");
        return 2;
    }
    u += 7;
    const char *slash = strchr(u, '/'), *colon = strchr(u, ':');
    if (!slash || !colon || colon > slash) {
        fprintf(stderr, "bench_proxy_load: URL must be http://HOST:PORT/PATH\n");
        return 2;
    }
    char *host = strndup(u, (size_t)(colon - u)),
         *port = strndup(colon + 1, (size_t)(slash - colon - 1));
    size_t blen = strlen(argv[2]), cap = blen + 4096;
    for (int i = 5; i < argc; i++) cap += strlen(argv[i]) + 2;
    char *req = malloc(cap);
    int n = snprintf(req, cap,
                     "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n",
                     slash, host, port, blen);
    for (int i = 5; i < argc; i++) n += snprintf(req + n, cap - (size_t)n, "%s\r\n", argv[i]);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    memcpy(req + n, argv[2], blen);
    size_t req_len = (size_t)n + blen;
    job *jobs = calloc((size_t)conc, sizeof *jobs);
    pthread_t *th = calloc((size_t)conc, sizeof *th);
    double t0 = bh_now();
    for (int i = 0; i < conc; i++) {
        jobs[i] =
            (job){.host = host, .port = port, .req = req, .req_len = req_len, .until = t0 + secs};
        pthread_create(&th[i], NULL, run, &jobs[i]);
    }
    size_t total = 0, errors = 0;
    for (int i = 0; i < conc; i++) {
        pthread_join(th[i], NULL);
        total += jobs[i].n;
        errors += jobs[i].errors;
    }
    double el = bh_now() - t0;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < conc; i++) {
        memcpy(all + k, jobs[i].lat, jobs[i].n * sizeof *all);
        k += jobs[i].n;
        free(jobs[i].lat);
    }
    qsort(all, total, sizeof *all, bh_cmp_double);
    printf("{\"requests\":%zu,\"errors\":%zu,\"rps\":%.1f,\"p50_ms\":%.4f,\"p90_ms\":%.4f,"
           "\"p99_ms\":%.4f}\n",
           total, errors, total / el, bh_pct(all, total, 0.50) * 1e3,
           bh_pct(all, total, 0.90) * 1e3, bh_pct(all, total, 0.99) * 1e3);
    free(all);
    free(jobs);
    free(th);
    free(req);
    free(host);
    free(port);
    return 0;
}
