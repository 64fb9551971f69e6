/* bench_proxy_load — closed-loop HTTP load generator for the proxy benchmark: C threads, each
 * with one kept-alive HTTP/1.1 connection over a plain socket (like loadgen.c: in profiles a
 * libcurl client took ~14% of the two cores the proxy, the upstream and the store share),
 * POSTing the same body for a fixed time. A reply counts when its status is 200 and its body
 * is complete (Content-Length or chunked framing) and, for a streamed reply, ends its event
 * stream with "data: [DONE]". Prints one JSON line {requests, errors, rps, p50_ms, p90_ms,
 * p99_ms}.
 * Usage: bench_proxy_load URL BODY CONCURRENCY SECONDS [HEADER...] */
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

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

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

/* A connection's read buffer: bytes [off, len) are unread. */
typedef struct {
    int fd;
    char *b;
    size_t off, len, cap;
} conn;

static bool fill(conn *c)
{
    if (c->off == c->len) c->off = c->len = 0;
    if (c->len == c->cap) {
        if (c->off) {
            memmove(c->b, c->b + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        } else {
            c->cap = c->cap ? c->cap * 2 : 65536;
            c->b = realloc(c->b, c->cap);
        }
    }
    ssize_t r = recv(c->fd, c->b + c->len, c->cap - c->len, 0);
    if (r <= 0) return false;
    c->len += (size_t)r;
    return true;
}

/* One line ending in CRLF, without it (pointer into the buffer, valid until the next fill). */
static char *line(conn *c)
{
    for (;;) {
        char *s = c->b + c->off;
        char *e = memchr(s, '\n', c->len - c->off);
        if (e) {
            c->off = (size_t)(e + 1 - c->b);
            if (e > s && e[-1] == '\r') e--;
            *e = 0;
            return s;
        }
        if (!fill(c)) return NULL;
    }
}

/* Appends n body bytes to the tail check window (the last bytes seen). */
static void keep_tail(char *tail, size_t *tl, const char *p, size_t n)
{
    const size_t cap = 64;
    if (n >= cap) {
        memcpy(tail, p + n - cap, cap);
        *tl = cap;
        return;
    }
    if (*tl + n > cap) {
        size_t drop = *tl + n - cap;
        memmove(tail, tail + drop, *tl - drop);
        *tl -= drop;
    }
    memcpy(tail + *tl, p, n);
    *tl += n;
}

static bool body_bytes(conn *c, size_t n, char *tail, size_t *tl)
{
    while (n) {
        if (c->off == c->len && !fill(c)) return false;
        size_t k = c->len - c->off < n ? c->len - c->off : n;
        keep_tail(tail, tl, c->b + c->off, k);
        c->off += k;
        n -= k;
    }
    return true;
}

/* Reads one response; false when the connection broke or the reply is not a complete 200. */
static bool response(conn *c, bool *keep)
{
    char *l = line(c);
    if (!l) return false;
    int status = 0;
    if (sscanf(l, "HTTP/1.%*d %d", &status) != 1) return false;
    long clen = -1;
    bool chunked = false, stream = false;
    *keep = true;
    while ((l = line(c)) && *l) {
        if (!strncasecmp(l, "Content-Length:", 15))
            clen = atol(l + 15);
        else if (!strncasecmp(l, "Transfer-Encoding:", 18) && strcasestr(l, "chunked"))
            chunked = true;
        else if (!strncasecmp(l, "Content-Type:", 13) && strcasestr(l, "event-stream"))
            stream = true;
        else if (!strncasecmp(l, "Connection:", 11) && strcasestr(l, "close"))
            *keep = false;
    }
    if (!l) return false;
    char tail[64];
    size_t tl = 0;
    if (chunked) {
        for (;;) {
            if (!(l = line(c))) return false;
            size_t n = strtoul(l, NULL, 16);
            if (n == 0) break;
            if (!body_bytes(c, n, tail, &tl) || !(l = line(c))) return false;
        }
        while ((l = line(c)) && *l) {
        } /* trailers, then the empty line */
        if (!l) return false;
    } else if (clen >= 0) {
        if (!body_bytes(c, (size_t)clen, tail, &tl)) return false;
    } else {
        return false; /* no framing: not what the proxy or the upstream send */
    }
    if (status != 200) return false;
    if (stream) {
        static const char done[] = "data: [DONE]";
        tail[tl < sizeof tail ? tl : sizeof tail - 1] = 0;
        if (!strstr(tail, done)) return false;
    }
    return true;
}

static void *run(void *arg)
{
    job *j = arg;
    conn c = {.fd = -1};
    while (now() < j->until) {
        if (c.fd < 0 && (c.fd = dial(j)) < 0) {
            j->errors++;
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        double t0 = now();
        bool keep = false;
        bool ok = send(c.fd, j->req, j->req_len, MSG_NOSIGNAL) == (ssize_t)j->req_len &&
                  response(&c, &keep);
        double dt = now() - t0;
        if (!ok || !keep) {
            close(c.fd);
            c.fd = -1;
            c.off = c.len = 0;
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
    free(c.b);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
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
    double t0 = now();
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
    double el = now() - t0;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < conc; i++) {
        memcpy(all + k, jobs[i].lat, jobs[i].n * sizeof *all);
        k += jobs[i].n;
        free(jobs[i].lat);
    }
    qsort(all, total, sizeof *all, cmp);
#define PCT(p) (total ? all[(size_t)((p) * (total - 1))] * 1000.0 : 0.0)
    printf("{\"requests\":%zu,\"errors\":%zu,\"rps\":%.1f,\"p50_ms\":%.4f,\"p90_ms\":%.4f,"
           "\"p99_ms\":%.4f}\n",
           total, errors, total / el, PCT(0.50), PCT(0.90), PCT(0.99));
    free(all);
    free(jobs);
    free(th);
    free(req);
    free(host);
    free(port);
    return 0;
}
