/* metrics — counters kept in process memory and rendered in the Prometheus text format; store
 * gauges come from one query at scrape time (so every stored on a database reports the same
 * store state, and its own request traffic). */
#include "metrics.h"
#include "agl_util.h"
#include "db_sql_ext.h"
#include "stored.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NB (sizeof bounds / sizeof bounds[0])

typedef struct hist {
    uint64_t buckets[NB + 1]; /* non-cumulative; last = above the largest bound */
    double sum;
    uint64_t count;
} hist;

static void hist_add(hist *h, double v)
{
    size_t i = 0;
    while (i < NB && v > bounds[i]) i++;
    h->buckets[i]++;
    h->sum += v;
    h->count++;
}

/* One (route, method) pair: its latency histogram and counts per status. */
#define MAX_SERIES 256
#define MAX_STATUS 12
typedef struct series {
    const char *route;
    const char *method;
    hist latency;
    int statuses[MAX_STATUS];
    uint64_t counts[MAX_STATUS];
    int nstatus;
} series;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static series table[MAX_SERIES];
static int nseries;
static hist db_hist;
/* Every query records its latency: a lock of its own keeps it off the request counters' lock. */
static pthread_mutex_t db_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_long spans_ingested, spans_retired;

static const char *method_label(const char *m)
{
    static const char *const known[] = {"GET",   "POST", "PUT",     "DELETE",
                                        "PATCH", "HEAD", "OPTIONS", NULL};
    for (int i = 0; known[i]; i++)
        if (m && !strcmp(m, known[i])) return known[i];
    return "other"; /* client-chosen text never becomes a label */
}

void metrics_request(const char *route, const char *method, int status, double seconds)
{
    const char *rl = route ? route : "unmatched";
    const char *ml = method_label(method);
    pthread_mutex_lock(&mu);
    series *s = NULL;
    for (int i = 0; i < nseries && !s; i++)
        if (table[i].route == rl && table[i].method == ml) s = &table[i];
    if (!s && nseries < MAX_SERIES) {
        s = &table[nseries++];
        s->route = rl;
        s->method = ml;
    }
    if (s) {
        hist_add(&s->latency, seconds);
        int k = 0;
        while (k < s->nstatus && s->statuses[k] != status) k++;
        if (k == s->nstatus && k < MAX_STATUS) s->statuses[s->nstatus++] = status;
        if (k < s->nstatus) s->counts[k]++;
    }
    pthread_mutex_unlock(&mu);
}

void metrics_spans_ingested(long n)
{
    atomic_fetch_add(&spans_ingested, n);
}

void metrics_spans_retired(long n)
{
    atomic_fetch_add(&spans_retired, n);
}

void metrics_db_query(double seconds)
{
    pthread_mutex_lock(&db_mu);
    hist_add(&db_hist, seconds);
    pthread_mutex_unlock(&db_mu);
}

/* ---- rendering ---- */

static void head(agl_buf *b, const char *name, const char *type, const char *help)
{
    agl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void num(agl_buf *b, double v)
{
    char tmp[40];
    agl_format_double(tmp, sizeof tmp, v);
    agl_buf_puts(b, tmp);
}

static void hist_write(agl_buf *b, const char *name, const char *labels, const hist *h)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i < NB; i++) {
        cum += h->buckets[i];
        agl_buf_printf(b, "%s_bucket{%s%sle=\"", name, labels, sep);
        num(b, bounds[i]);
        agl_buf_printf(b, "\"} %llu\n", (unsigned long long)cum);
    }
    agl_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                   (unsigned long long)h->count);
    agl_buf_printf(b, "%s_sum%s%s%s ", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "");
    num(b, h->sum);
    agl_buf_printf(b, "\n%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels,
                   labels[0] ? "}" : "", (unsigned long long)h->count);
}

static void write_requests(agl_buf *b)
{
    pthread_mutex_lock(&mu);
    int n = nseries;
    series *copy = malloc(sizeof *copy * (size_t)(n ? n : 1));
    memcpy(copy, table, sizeof *copy * (size_t)n);
    pthread_mutex_lock(&db_mu);
    hist db = db_hist;
    pthread_mutex_unlock(&db_mu);
    pthread_mutex_unlock(&mu);

    head(b, "agl_http_requests_total", "counter",
         "HTTP requests handled, by route, method and status.");
    for (int i = 0; i < n; i++)
        for (int k = 0; k < copy[i].nstatus; k++)
            agl_buf_printf(
                b, "agl_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                copy[i].route, copy[i].method, copy[i].statuses[k],
                (unsigned long long)copy[i].counts[k]);
    head(b, "agl_http_request_duration_seconds", "histogram",
         "Time from the complete request to the response being queued, by route and method.");
    for (int i = 0; i < n; i++) {
        char labels[256];
        snprintf(labels, sizeof labels, "route=\"%s\",method=\"%s\"", copy[i].route,
                 copy[i].method);
        hist_write(b, "agl_http_request_duration_seconds", labels, &copy[i].latency);
    }
    free(copy);
    head(b, "agl_db_query_duration_seconds", "histogram",
         "Database round trips (prepared statement executions) of this process.");
    hist_write(b, "agl_db_query_duration_seconds", "", &db);
    head(b, "agl_spans_ingested_total", "counter",
         "Spans stored by this process (duplicates excluded).");
    agl_buf_printf(b, "agl_spans_ingested_total %ld\n", atomic_load(&spans_ingested));
    head(b, "agl_spans_retired_total", "counter", "Spans deleted by retention in this process.");
    agl_buf_printf(b, "agl_spans_retired_total %ld\n", atomic_load(&spans_retired));
}

static void write_process(agl_buf *b, stored_ctx *ctx)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long vsz = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &vsz, &rss) != 2) vsz = rss = 0;
        fclose(f);
    }
    head(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    agl_buf_printf(b, "process_resident_memory_bytes %llu\n", rss * (unsigned long long)page);
    head(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    agl_buf_printf(b, "process_virtual_memory_bytes %llu\n", vsz * (unsigned long long)page);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    head(b, "process_cpu_seconds_total", "counter", "User and system CPU time in seconds.");
    agl_buf_puts(b, "process_cpu_seconds_total ");
    num(b, cpu);
    agl_buf_putc(b, '\n');
    head(b, "process_start_time_seconds", "gauge", "Start time of the process since the epoch.");
    agl_buf_puts(b, "process_start_time_seconds ");
    num(b, ctx->started);
    agl_buf_putc(b, '\n');
    int size = 0, idle = 0;
    db_pool_stats(ctx->pool, &size, &idle);
    head(b, "agl_db_pool_connections", "gauge", "Database connections of the pool by state.");
    agl_buf_printf(b, "agl_db_pool_connections{state=\"in_use\"} %d\n", size - idle);
    agl_buf_printf(b, "agl_db_pool_connections{state=\"idle\"} %d\n", idle);
    head(b, "agl_db_pool_size", "gauge", "Configured size of the database pool.");
    agl_buf_printf(b, "agl_db_pool_size %d\n", size);
}

/* Store state, from the database: one family per kind, every known status present. */
static agl_code write_store(agl_req *r, agl_error *err)
{
    static const char *const rollout_st[] = {"queuing",   "preparing", "running",   "failed",
                                             "succeeded", "cancelled", "requeuing", NULL};
    static const char *const attempt_st[] = {"preparing",    "running", "failed", "succeeded",
                                             "unresponsive", "timeout", NULL};
    static const char *const worker_st[] = {"idle", "busy", "unknown", NULL};
    db_conn *db;
    agl_code code = req_db_single(r, &db, err);
    if (code) return code;
    PGresult *res = db_exec_dynamic(db, db_sql_metrics_gauges, 0, NULL, err);
    if (!res) return err->code;
    int rows = PQntuples(res);
    struct {
        const char *kind, *name, *help;
        const char *const *statuses;
    } fams[] = {
        {"rollouts", "agl_rollouts", "Rollouts by status.", rollout_st},
        {"attempts", "agl_attempts", "Attempts by status.", attempt_st},
        {"workers", "agl_workers", "Workers by status.", worker_st},
    };
    agl_buf *b = &r->out;
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        head(b, fams[f].name, "gauge", fams[f].help);
        for (int s = 0; fams[f].statuses[s]; s++) {
            long long v = 0;
            for (int i = 0; i < rows; i++)
                if (!strcmp(PQgetvalue(res, i, 0), fams[f].kind) &&
                    !strcmp(PQgetvalue(res, i, 1), fams[f].statuses[s]))
                    v = atoll(PQgetvalue(res, i, 2));
            agl_buf_printf(b, "%s{status=\"%s\"} %lld\n", fams[f].name, fams[f].statuses[s], v);
        }
    }
    struct {
        const char *kind, *name, *help;
    } singles[] = {
        {"queue", "agl_queue_depth", "Rollouts waiting in the queue."},
        {"spans", "agl_spans", "Spans currently stored."},
        {"db_bytes", "agl_database_size_bytes", "Size of the database in bytes."},
    };
    for (size_t f = 0; f < sizeof singles / sizeof singles[0]; f++) {
        long long v = 0;
        for (int i = 0; i < rows; i++)
            if (!strcmp(PQgetvalue(res, i, 0), singles[f].kind)) v = atoll(PQgetvalue(res, i, 2));
        head(b, singles[f].name, "gauge", singles[f].help);
        agl_buf_printf(b, "%s %lld\n", singles[f].name, v);
    }
    PQclear(res);
    return AGL_OK;
}

agl_code metrics_h_metrics(agl_req *r, agl_error *err)
{
    agl_code code = write_store(r, err);
    if (code) return code;
    write_requests(&r->out);
    write_process(&r->out, r->ctx);
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return AGL_OK;
}
