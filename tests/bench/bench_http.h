/* bench_http.h — the plain-socket HTTP/1.1 client of the benchmark load generators (loadgen.c,
 * bench_proxy_load.c). No client library in the hot path: in profiles a libcurl client took ~14%
 * of the two cores the servers under test share. One kept-alive connection, requests written
 * whole, responses framed by Content-Length or chunked encoding (trailers skipped) with status,
 * body, "Connection: close" and an event-stream content type reported.
 *
 * Header-only (static inline functions): each load generator is a single translation unit built by
 * its own rule (Makefile, bench_proxy.py). A socket is blocking unless the connection has a wait
 * hook, which is called whenever it would block; loadgen's hook yields to its epoll loop. */
#ifndef BENCH_HTTP_H
#define BENCH_HTTP_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

static inline double bh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- growable byte buffer, always NUL-terminated ---- */

typedef struct {
    char *p;
    size_t len, cap;
} bh_buf;

static inline void bh_buf_need(bh_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) abort();
    b->cap = cap;
}

static inline void bh_buf_put(bh_buf *b, const void *d, size_t n)
{
    bh_buf_need(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
}

static inline void bh_buf_printf(bh_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void bh_buf_printf(bh_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    bh_buf_need(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- one kept-alive connection ---- */

typedef struct bh_conn {
    int fd;
    bh_buf in;         /* bytes received, not yet consumed */
    bh_buf body;       /* body of the last response */
    int status;        /* status of the last response */
    bool close_after;  /* the last response said "Connection: close" */
    bool event_stream; /* the last response was text/event-stream */
    /* Non-blocking socket: returns once the socket may be ready (for_write: for a send).
     * NULL: the socket blocks. */
    void (*wait)(struct bh_conn *c, bool for_write);
} bh_conn;

static inline int bh_send_all(bh_conn *c, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN && c->wait) {
            c->wait(c, true);
            continue;
        }
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Reads more bytes into c->in; -1 on EOF/error. */
static inline int bh_fill(bh_conn *c)
{
    bh_buf_need(&c->in, 65536);
    ssize_t r;
    while ((r = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1, 0)) < 0 &&
           ((errno == EAGAIN && c->wait) || errno == EINTR))
        if (errno == EAGAIN) c->wait(c, false);
    if (r <= 0) return -1;
    c->in.len += (size_t)r;
    c->in.p[c->in.len] = 0;
    return 0;
}

static inline void bh_consume(bh_conn *c, size_t n)
{
    memmove(c->in.p, c->in.p + n, c->in.len - n);
    c->in.len -= n;
    c->in.p[c->in.len] = 0;
}

/* Length of the CRLF-terminated line at the start of c->in, CRLF included (reads as needed);
 * 0 on a broken connection. */
static inline size_t bh_line(bh_conn *c)
{
    char *nl;
    while (!c->in.p || !(nl = strstr(c->in.p, "\r\n")))
        if (bh_fill(c) < 0) return 0;
    return (size_t)(nl - c->in.p) + 2;
}

/* True when the header line [line, end) names `name` and its value contains `word`. */
static inline bool bh_header_has(const char *line, const char *end, const char *name,
                                 const char *word)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n)) return false;
    const char *w = strcasestr(line + n, word);
    return w && w < end;
}

/* Reads one response into c->status / c->body / c->close_after / c->event_stream; -1 when the
 * connection broke or the response has no framing (neither server under test sends that). */
static inline int bh_read_response(bh_conn *c)
{
    char *end;
    while (!c->in.p || !(end = strstr(c->in.p, "\r\n\r\n")))
        if (bh_fill(c) < 0) return -1;
    size_t hlen = (size_t)(end - c->in.p) + 4;
    if (sscanf(c->in.p, "HTTP/1.%*d %d", &c->status) != 1) return -1;
    long clen = -1;
    bool chunked = false;
    c->close_after = c->event_stream = false;
    for (char *line = strstr(c->in.p, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        const char *eol = strstr(line, "\r\n");
        if (!strncasecmp(line, "content-length:", 15)) clen = strtol(line + 15, NULL, 10);
        chunked |= bh_header_has(line, eol, "transfer-encoding:", "chunked");
        c->close_after |= bh_header_has(line, eol, "connection:", "close");
        c->event_stream |= bh_header_has(line, eol, "content-type:", "event-stream");
    }
    bh_consume(c, hlen);
    c->body.len = 0;
    bh_buf_need(&c->body, 0);
    c->body.p[0] = 0;
    if (chunked) {
        for (;;) {
            size_t line = bh_line(c);
            if (!line) return -1;
            size_t n = strtoul(c->in.p, NULL, 16);
            if (n == 0) { /* last chunk: skip any trailers up to the empty line */
                bh_consume(c, line);
                while ((line = bh_line(c)) > 2) bh_consume(c, line);
                if (!line) return -1;
                bh_consume(c, line);
                break;
            }
            while (c->in.len < line + n + 2)
                if (bh_fill(c) < 0) return -1;
            bh_buf_put(&c->body, c->in.p + line, n);
            bh_consume(c, line + n + 2);
        }
    } else if (clen >= 0) {
        while (c->in.len < (size_t)clen)
            if (bh_fill(c) < 0) return -1;
        bh_buf_put(&c->body, c->in.p, (size_t)clen);
        bh_consume(c, (size_t)clen);
    } else {
        return -1;
    }
    return 0;
}

/* ---- latency percentiles ---- */

static inline int bh_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Percentile p (0..1) of the sorted v[0..n), linearly interpolated. */
static inline double bh_pct(const double *v, size_t n, double p)
{
    if (!n) return 0;
    double r = p * (double)(n - 1);
    size_t lo = (size_t)r;
    if (lo + 1 >= n) return v[n - 1];
    return v[lo] + (v[lo + 1] - v[lo]) * (r - (double)lo);
}

#endif
