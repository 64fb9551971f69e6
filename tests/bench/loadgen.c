/* loadgen — closed-loop load generator for the store benchmark (tests/bench/bench_store.py).
 * Replays the reference's micro workloads (algorithms.md §7.3) and OTLP ingestion against any
 * server speaking the /v1/agl API over kept-alive HTTP/1.1 connections on plain sockets
 * (bench_http.h: no client library in the hot path, so the client is never the bottleneck),
 * statuses checked and ids taken from the JSON responses.
 *
 * Threading is pgbench's: a few threads (--threads, default 2 like the benchmark's `pgbench -j 2`),
 * each multiplexing its share of the connections with epoll. Every connection runs its compound
 * op as straight-line code in a coroutine (ucontext) that yields to its thread's epoll loop when
 * a socket would block. One thread per connection (the first design) cost the client twice
 * pgbench's CPU per op on this 2-core machine: a wake-up per response, where an epoll loop
 * collects several responses per wake-up under load.
 *
 * Usage: loadgen URL MODE CONCURRENCY SECONDS [--count N] [--payload FILE]
 *   MODE: worker | dequeue-empty | rollout | dequeue-only | dequeue-update | otlp
 *   --count N   dequeue modes: pre-enqueue N rollouts (512 per request) and stop after N
 *               successful dequeues (or SECONDS, whichever comes first)
 *   --ops N     stop after N ops in total (benchmark uses 1 to trace one op's SQL)
 *   --no-prefill dequeue modes: use what is already queued
 *   --threads N event threads (default 2; at most CONCURRENCY)
 *   --payload F otlp: a serialized ExportTraceServiceRequest whose resource attributes carry the
 *               placeholder ids ro-000000000000 / at-00000000 (patched per request)
 * Prints one JSON line: ops, errors, requests, seconds, ops_s, req_s, p50_ms, p95_ms, p99_ms.
 * One op = the whole compound operation of the mode; its latency covers every request in it. */
#define _GNU_SOURCE 1 /* memmem */
#include "bench_http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <ucontext.h>
#include <unistd.h>

enum mode { M_WORKER, M_DEQ_EMPTY, M_ROLLOUT, M_DEQ_ONLY, M_DEQ_UPDATE, M_OTLP };
static const char *const mode_names[] = {"worker",       "dequeue-empty",  "rollout",
                                         "dequeue-only", "dequeue-update", "otlp"};

static struct sockaddr_in server;
static char host_hdr[128];
static enum mode mode;
static double deadline;
static long count_limit;       /* dequeue modes: successes wanted in total */
static atomic_long claimed;    /* dequeue modes: successes so far */
static atomic_bool queue_dry;  /* a dequeue came back empty: stop everyone */
static atomic_long worker_seq; /* spreads ops over 1024 worker ids */
static long ops_limit = -1;    /* --ops */
static int nthreads = 2;       /* --threads */
static atomic_long ops_started;
static uint8_t *payload; /* otlp */
static size_t payload_len, off_rid, off_aid;

/* A realistic heartbeat body: the shape and size (~350 B) of agentlightning's
 * system_snapshot() that runners send. */
static const char heartbeat_body[] =
    "{\"heartbeat_stats\":{\"timestamp\":\"2025-11-25T22:50:37\",\"host\":\"bench-host\","
    "\"os\":\"Linux-6.1.0-x86_64-with-glibc2.36\",\"cpu_name\":\"\",\"cpu_cores\":2,"
    "\"cpu_threads\":2,\"cpu_usage_pct\":42.5,\"mem_used_gb\":1.41,\"mem_total_gb\":23.54,"
    "\"mem_pct\":8.6,\"disk_used_gb\":19.79,\"disk_total_gb\":251.97,\"disk_pct\":20.7,"
    "\"bytes_sent_mb\":1130.32,\"bytes_recv_mb\":2716.36}}";

/* ---- one kept-alive HTTP/1.1 connection ---- */

typedef struct sched sched;

typedef struct {
    bh_conn h;      /* first: bench_http's wait hook gets this conn as its bh_conn */
    sched *s;       /* the event thread running this connection; NULL: blocking socket */
    ucontext_t ctx; /* the coroutine running the ops */
    bool done;      /* its run() has returned */
    bh_buf req;     /* request being sent */
    uint64_t rng;
    /* per-thread results */
    double *lat;
    size_t nlat, caplat;
    long errors, requests;
    char first_error[256];
} conn;

/* ---- event threads: an epoll loop resuming the coroutine whose socket became ready ---- */

struct sched {
    int ep;
    ucontext_t main; /* the loop's own context */
    conn *cur;       /* the coroutine being started (run()'s argument) */
};

/* Suspends the coroutine until its socket is readable (or also writable, for a send that would
 * block). Sockets sit in epoll edge-triggered, reading interest only; a resume without progress
 * just retries and yields again. */
static void wait_fd(bh_conn *hc, bool for_write)
{
    conn *c = (conn *)hc;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
    if (for_write) {
        ev.events |= EPOLLOUT;
        epoll_ctl(c->s->ep, EPOLL_CTL_MOD, hc->fd, &ev);
    }
    swapcontext(&c->ctx, &c->s->main);
    if (for_write) {
        ev.events = EPOLLIN | EPOLLET;
        epoll_ctl(c->s->ep, EPOLL_CTL_MOD, hc->fd, &ev);
    }
}

static int conn_open(conn *c)
{
    int fd = c->h.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&server, sizeof server) != 0) {
        close(fd);
        c->h.fd = -1;
        return -1;
    }
    if (c->s) { /* connect blocked briefly (loopback); everything after it yields instead */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
        epoll_ctl(c->s->ep, EPOLL_CTL_ADD, fd, &ev);
        c->h.wait = wait_fd;
    }
    c->h.in.len = 0;
    return 0;
}

/* One request; reconnects once if the kept-alive connection was closed under us. Returns the
 * HTTP status, or -1 on a transport failure. */
static int http(conn *c, const char *method, const char *path, const char *ctype, const void *body,
                size_t len)
{
    c->req.len = 0;
    bh_buf_printf(&c->req,
                  "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: agl-loadgen\r\nAccept: */*\r\n"
                  "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                  method, path, host_hdr, ctype, len);
    c->requests++;
    bh_conn *h = &c->h;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (h->fd < 0 && conn_open(c) < 0) continue;
        if (bh_send_all(h, c->req.p, c->req.len) == 0 && (!len || bh_send_all(h, body, len) == 0) &&
            bh_read_response(h) == 0) {
            if (h->close_after) {
                close(h->fd);
                h->fd = -1;
            }
            return h->status;
        }
        close(h->fd);
        h->fd = -1;
    }
    return -1;
}

static int post_json(conn *c, const char *path, const char *body, size_t len)
{
    return http(c, "POST", path, "application/json", body, len);
}

/* Copies the string value of "key":"..." (first occurrence) into out. */
static bool json_str(const char *json, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p) return false;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != '"') return false;
    p++;
    size_t n = strcspn(p, "\"");
    if (n >= cap) return false;
    memcpy(out, p, n);
    out[n] = 0;
    return true;
}

static bool fail(conn *c, const char *what, int status)
{
    c->errors++;
    if (!c->first_error[0])
        snprintf(c->first_error, sizeof c->first_error, "%s: status %d: %.160s", what, status,
                 c->h.body.p ? c->h.body.p : "");
    return false;
}

/* ---- random text (xorshift) ---- */

static uint64_t rnd(conn *c)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

static void rnd_alnum(conn *c, bh_buf *b, int n)
{
    static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    bh_buf_need(b, (size_t)n);
    for (int i = 0; i < n; i++) b->p[b->len++] = al[rnd(c) % 62];
    b->p[b->len] = 0;
}

static void rnd_hex(conn *c, char *out, int n)
{
    for (int i = 0; i < n; i++) out[i] = "0123456789abcdef"[rnd(c) % 16];
    out[n] = 0;
}

/* attributes object of n entries: key 3–20 chars, value 5–300 chars (§7.3) */
static void rnd_attributes(conn *c, bh_buf *b, int n)
{
    bh_buf_put(b, "{", 1);
    for (int i = 0; i < n; i++) {
        if (i) bh_buf_put(b, ",", 1);
        bh_buf_printf(b, "\"k%d_", i);
        rnd_alnum(c, b, 2 + (int)(rnd(c) % 16));
        bh_buf_put(b, "\":\"", 3);
        rnd_alnum(c, b, 5 + (int)(rnd(c) % 296));
        bh_buf_put(b, "\"", 1);
    }
    bh_buf_put(b, "}", 1);
}

/* A Span as the Python client serialises it (every key, extras none). */
static void span_json(conn *c, bh_buf *b, const char *rid, const char *aid, long seq, int nattr)
{
    char trace[33], span[17];
    rnd_hex(c, trace, 32);
    rnd_hex(c, span, 16);
    b->len = 0;
    bh_buf_printf(
        b,
        "{\"rollout_id\":\"%s\",\"attempt_id\":\"%s\",\"sequence_id\":%ld,\"trace_id\":\"%s\","
        "\"span_id\":\"%s\",\"parent_id\":null,\"name\":\"bench-span-%ld\",\"status\":"
        "{\"status_code\":\"OK\",\"description\":null},\"attributes\":",
        rid, aid, seq, trace, span, seq);
    rnd_attributes(c, b, nattr);
    bh_buf_printf(b,
                  ",\"events\":[],\"links\":[],\"start_time\":1764100000.25,\"end_time\":"
                  "1764100000.5,\"context\":{\"trace_id\":\"%s\",\"span_id\":\"%s\",\"is_remote\":"
                  "false,\"trace_state\":{}},\"parent\":null,\"resource\":{\"attributes\":{},"
                  "\"schema_url\":\"\"}}",
                  trace, span);
}

/* ---- the compound operations ---- */

static bool heartbeat(conn *c, int worker)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/agl/workers/bench-worker-%d", worker);
    int st = post_json(c, path, heartbeat_body, sizeof heartbeat_body - 1);
    return st == 200 || fail(c, "heartbeat", st);
}

static bool start_rollout(conn *c, long i, char *rid, char *aid)
{
    char body[256];
    int n =
        snprintf(body, sizeof body,
                 "{\"input\":{\"task\":%ld},\"mode\":null,\"resources_id\":null,\"config\":null,"
                 "\"metadata\":null,\"worker_id\":null}",
                 i);
    int st = post_json(c, "/v1/agl/rollouts", body, (size_t)n);
    if (st != 201) return fail(c, "start_rollout", st);
    if (!json_str(c->h.body.p, "rollout_id", rid, 32) ||
        !json_str(c->h.body.p, "attempt_id", aid, 32))
        return fail(c, "start_rollout ids", st);
    return true;
}

static bool add_span(conn *c, bh_buf *tmp, const char *rid, const char *aid, long seq, int nattr)
{
    span_json(c, tmp, rid, aid, seq, nattr);
    int st = post_json(c, "/v1/agl/spans", tmp->p, tmp->len);
    if (st != 201 || strncmp(c->h.body.p, "{", 1)) return fail(c, "add_span", st);
    return true;
}

static bool finish_attempt(conn *c, const char *rid, const char *aid)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/agl/rollouts/%s/attempts/%s", rid, aid);
    int st = post_json(c, path, "{\"status\":\"succeeded\"}", 22);
    return st == 200 || fail(c, "update_attempt", st);
}

/* 1: claimed one, 0: queue empty, -1: error */
static int dequeue(conn *c, const char *worker, char *rid, char *aid)
{
    char body[128];
    int n = worker ? snprintf(body, sizeof body, "{\"limit\":1,\"worker_id\":\"%s\"}", worker)
                   : snprintf(body, sizeof body, "{\"limit\":1}");
    int st = post_json(c, "/v1/agl/queues/rollouts/dequeue", body, (size_t)n);
    if (st != 200) return fail(c, "dequeue", st), -1;
    if (!strncmp(c->h.body.p, "[]", 2)) return 0;
    if (!json_str(c->h.body.p, "rollout_id", rid, 32) ||
        !json_str(c->h.body.p, "attempt_id", aid, 32))
        return fail(c, "dequeue ids", st), -1;
    return 1;
}

static bool next_seq(conn *c, const char *rid, const char *aid)
{
    char body[128];
    int n = snprintf(body, sizeof body, "{\"rollout_id\":\"%s\",\"attempt_id\":\"%s\"}", rid, aid);
    int st = post_json(c, "/v1/agl/spans/next", body, (size_t)n);
    if (st != 200 || !strstr(c->h.body.p, "sequence_id")) return fail(c, "spans/next", st);
    return true;
}

/* Runs one op of the mode; returns 1 success, 0 failure, -1 "stop" (dequeue source exhausted). */
static int one_op(conn *c, long i, int tid, bh_buf *tmp, double *t0)
{
    char rid[32], aid[32], worker[48];
    int w = (int)(atomic_fetch_add(&worker_seq, 1) % 1024);
    snprintf(worker, sizeof worker, "bench-worker-%d", w);
    switch (mode) {
    case M_WORKER:
        return heartbeat(c, w);
    case M_DEQ_EMPTY: {
        int d = dequeue(c, worker, rid, aid);
        if (d != 0) return d > 0 ? fail(c, "dequeue-empty got a rollout", 200) : 0;
        return heartbeat(c, w);
    }
    case M_ROLLOUT:
        if (!start_rollout(c, i, rid, aid)) return 0;
        for (int k = 1; k <= 4; k++)
            if (!add_span(c, tmp, rid, aid, k, 1)) return 0;
        return finish_attempt(c, rid, aid);
    case M_DEQ_ONLY:
    case M_DEQ_UPDATE: {
        if (atomic_fetch_add(&claimed, 1) >= count_limit) return -1;
        int d = dequeue(c, mode == M_DEQ_ONLY ? NULL : worker, rid, aid);
        if (d == 0) { /* nothing left to claim: the run ends here */
            atomic_store(&queue_dry, true);
            return -1;
        }
        if (d < 0) return 0;
        if (mode == M_DEQ_ONLY) return 1;
        for (int k = 0; k < 4; k++)
            if (!next_seq(c, rid, aid)) return 0;
        for (int k = 1; k <= 4; k++)
            if (!add_span(c, tmp, rid, aid, k, 32)) return 0;
        return finish_attempt(c, rid, aid);
    }
    case M_OTLP: {
        /* The rollout the batch belongs to is made first and is not part of the timed op. */
        if (!start_rollout(c, i, rid, aid)) return 0;
        memcpy(tmp->p + off_rid, rid, 15);
        memcpy(tmp->p + off_aid, aid, 11);
        *t0 = bh_now();
        int st = http(c, "POST", "/v1/traces", "application/x-protobuf", tmp->p, payload_len);
        return st == 200 || fail(c, "otlp", st);
    }
    }
    return 0;
}

typedef struct {
    conn c; /* first: the epoll loop's conn * is the coroutine's worker_arg * */
    int tid;
    long ops;
} worker_arg;

static void run(worker_arg *wa)
{
    conn *c = &wa->c;
    c->h.fd = -1;
    c->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(wa->tid + 1);
    bh_buf tmp = {0};
    if (mode == M_OTLP) bh_buf_put(&tmp, payload, payload_len); /* private copy to patch */
    for (long i = 0; bh_now() < deadline && !atomic_load(&queue_dry); i++) {
        if (ops_limit >= 0 && atomic_fetch_add(&ops_started, 1) >= ops_limit) break;
        double t0 = bh_now();
        int r = one_op(c, i * 1000 + wa->tid, wa->tid, &tmp, &t0);
        if (r < 0) break;
        if (r == 0) continue;
        if (c->nlat == c->caplat) {
            c->caplat = c->caplat ? c->caplat * 2 : 4096;
            c->lat = realloc(c->lat, sizeof *c->lat * c->caplat);
        }
        c->lat[c->nlat++] = (bh_now() - t0) * 1e3;
        wa->ops++;
    }
    if (c->h.fd >= 0) close(c->h.fd);
    free(tmp.p);
}

/* makecontext passes only ints: the coroutine finds its argument in its thread's scheduler. */
static _Thread_local sched *this_sched;

static void coro_main(void)
{
    worker_arg *wa = (worker_arg *)(void *)this_sched->cur;
    run(wa);
    wa->c.done = true; /* returning resumes uc_link, the epoll loop */
}

typedef struct {
    worker_arg *wa; /* this thread's connections */
    int n;
} thread_arg;

enum { CORO_STACK = 256 * 1024 };

static void *event_thread(void *arg)
{
    thread_arg *ta = arg;
    sched s = {.ep = epoll_create1(EPOLL_CLOEXEC)};
    this_sched = &s;
    char *stacks = malloc((size_t)ta->n * CORO_STACK);
    if (s.ep < 0 || !stacks) abort();
    int live = ta->n;
    for (int i = 0; i < ta->n; i++) { /* each coroutine runs until its first wait */
        conn *c = &ta->wa[i].c;
        c->s = &s;
        getcontext(&c->ctx);
        c->ctx.uc_stack.ss_sp = stacks + (size_t)i * CORO_STACK;
        c->ctx.uc_stack.ss_size = CORO_STACK;
        c->ctx.uc_link = &s.main;
        makecontext(&c->ctx, coro_main, 0);
        s.cur = c;
        swapcontext(&s.main, &c->ctx);
        live -= c->done;
    }
    struct epoll_event ev[64];
    while (live > 0) {
        int n = epoll_wait(s.ep, ev, 64, 60000);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "loadgen: no response in 60 s\n");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            conn *c = ev[i].data.ptr;
            if (c->done) continue;
            swapcontext(&s.main, &c->ctx);
            live -= c->done;
        }
    }
    close(s.ep);
    free(stacks);
    return NULL;
}

/* Fills the queue with n rollouts, 512 per enqueue request (not timed). */
static int prefill(long n)
{
    conn c = {.h.fd = -1};
    bh_buf b = {0};
    for (long done = 0; done < n;) {
        long k = n - done < 512 ? n - done : 512;
        b.len = 0;
        bh_buf_put(&b, "{\"rollouts\":[", 13);
        for (long i = 0; i < k; i++)
            bh_buf_printf(&b, "%s{\"input\":{\"task\":%ld},\"mode\":\"train\"}", i ? "," : "",
                          done + i);
        bh_buf_put(&b, "]}", 2);
        int st = post_json(&c, "/v1/agl/queues/rollouts/enqueue", b.p, b.len);
        if (st != 201 && st != 200) {
            fprintf(stderr, "loadgen: enqueue failed: status %d: %.200s\n", st,
                    c.h.body.p ? c.h.body.p : "");
            return -1;
        }
        done += k;
    }
    if (c.h.fd >= 0) close(c.h.fd);
    free(b.p);
    free(c.h.in.p), free(c.req.p), free(c.h.body.p);
    return 0;
}

static int load_payload(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    payload = malloc((size_t)n);
    if (!payload || fread(payload, 1, (size_t)n, f) != (size_t)n) return fclose(f), -1;
    fclose(f);
    payload_len = (size_t)n;
    uint8_t *r = memmem(payload, payload_len, "ro-000000000000", 15);
    uint8_t *a = memmem(payload, payload_len, "at-00000000", 11);
    if (!r || !a) return -1;
    off_rid = (size_t)(r - payload);
    off_aid = (size_t)(a - payload);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: loadgen URL MODE CONCURRENCY SECONDS [--count N] [--ops N] "
                        "[--no-prefill] [--threads N] [--payload F]\n");
        return 2;
    }
    const char *url = argv[1];
    int m = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(argv[2], mode_names[i])) m = i;
    if (m < 0) {
        fprintf(stderr, "loadgen: unknown mode %s\n", argv[2]);
        return 2;
    }
    mode = (enum mode)m;
    int conc = atoi(argv[3]);
    double seconds = atof(argv[4]);
    long count = 8192;
    const char *payload_path = NULL;
    bool do_prefill = true;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--no-prefill")) do_prefill = false;
        if (i + 1 >= argc) continue;
        if (!strcmp(argv[i], "--count"))
            count = atol(argv[++i]);
        else if (!strcmp(argv[i], "--ops"))
            ops_limit = atol(argv[++i]);
        else if (!strcmp(argv[i], "--threads"))
            nthreads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--payload"))
            payload_path = argv[++i];
    }
    char host[64];
    int port;
    if (sscanf(url, "http://%63[^:]:%d", host, &port) != 2) {
        fprintf(stderr, "loadgen: URL must be http://HOST:PORT\n");
        return 2;
    }
    snprintf(host_hdr, sizeof host_hdr, "%s:%d", host, port);
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &server.sin_addr) != 1) {
        fprintf(stderr, "loadgen: host must be a numeric IPv4 address\n");
        return 2;
    }
    if (mode == M_OTLP && (!payload_path || load_payload(payload_path) != 0)) {
        fprintf(stderr, "loadgen: otlp needs --payload FILE with placeholder ids\n");
        return 2;
    }
    if (mode == M_DEQ_ONLY || mode == M_DEQ_UPDATE) {
        count_limit = count;
        if (do_prefill && prefill(count) != 0) return 1;
    }

    if (nthreads < 1) nthreads = 1;
    if (nthreads > conc) nthreads = conc;
    worker_arg *wa = calloc((size_t)conc, sizeof *wa);
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    thread_arg *ta = calloc((size_t)nthreads, sizeof *ta);
    double start = bh_now();
    deadline = start + seconds;
    for (int i = 0; i < conc; i++) wa[i].tid = i;
    for (int t = 0, first = 0; t < nthreads; t++) { /* connections dealt out evenly */
        int n = conc / nthreads + (t < conc % nthreads);
        ta[t] = (thread_arg){wa + first, n};
        first += n;
        pthread_create(&th[t], NULL, event_thread, &ta[t]);
    }
    for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
    long ops = 0, errors = 0, requests = 0;
    size_t nlat = 0;
    const char *first_error = NULL;
    for (int i = 0; i < conc; i++) {
        ops += wa[i].ops;
        errors += wa[i].c.errors;
        requests += wa[i].c.requests;
        nlat += wa[i].c.nlat;
        if (!first_error && wa[i].c.first_error[0]) first_error = wa[i].c.first_error;
    }
    double elapsed = bh_now() - start;
    double *all = malloc(sizeof *all * (nlat ? nlat : 1));
    size_t k = 0;
    for (int i = 0; i < conc; i++) {
        memcpy(all + k, wa[i].c.lat, sizeof *all * wa[i].c.nlat);
        k += wa[i].c.nlat;
    }
    qsort(all, nlat, sizeof *all, bh_cmp_double);
    printf("{\"mode\":\"%s\",\"concurrency\":%d,\"ops\":%ld,\"errors\":%ld,\"requests\":%ld,"
           "\"seconds\":%.3f,\"ops_s\":%.1f,\"req_s\":%.1f,\"p50_ms\":%.3f,\"p95_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"queue_dry\":%s",
           mode_names[mode], conc, ops, errors, requests, elapsed, ops / elapsed,
           requests / elapsed, bh_pct(all, nlat, 0.50), bh_pct(all, nlat, 0.95),
           bh_pct(all, nlat, 0.99), atomic_load(&queue_dry) ? "true" : "false");
    if (first_error) {
        printf(",\"first_error\":\"");
        for (const char *p = first_error; *p; p++)
            if (*p == '"' || *p == '\\')
                printf("\\%c", *p);
            else if ((unsigned char)*p >= 0x20)
                putchar(*p);
        printf("\"");
    }
    printf("}\n");
    for (int i = 0; i < conc; i++) {
        conn *c = &wa[i].c;
        free(c->h.in.p), free(c->h.body.p), free(c->req.p), free(c->lat);
    }
    free(all), free(ta), free(th), free(wa), free(payload);
    return 0;
}
