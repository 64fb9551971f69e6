/* retention — the span sweeper; see retention.h. */
#include "retention.h"
#include "agl_alloc.h"
#include "agl_log.h"
#include "agl_util.h"
#include "db_sql_ext.h"
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const modes[3] = {"train", "val", "test"};

agl_code retention_parse_duration(const char *text, double *seconds, agl_error *err)
{
    *seconds = 0;
    if (!text || !*text || !strcmp(text, "off")) return AGL_OK;
    char *end;
    double v = strtod(text, &end);
    double unit = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        unit = 60, end++;
    else if (*end == 'h')
        unit = 3600, end++;
    else if (*end == 'd')
        unit = 86400, end++;
    if (end == text || *end || v < 0 || v != v)
        return agl_error_set(err, AGL_E_BAD_REQUEST, "retain-spans",
                             "expected a duration like 3600, 90s, 15m, 12h or 7d, got '%s'", text);
    *seconds = v * unit;
    return AGL_OK;
}

/* Deletes in batches until a batch comes back short; returns the count or -1. */
static long sweep_one(PGconn *conn, double cutoff, const char *in, const char *out, int batch,
                      const volatile int *stop)
{
    char cut[64], lim[32];
    snprintf(cut, sizeof cut, "%.17g", cutoff);
    snprintf(lim, sizeof lim, "%d", batch);
    const char *params[4] = {cut, in, out, lim};
    long total = 0;
    while (!*stop) {
        PGresult *res = PQexecParams(conn, db_sql_retention_delete, 4, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            agl_warn("retention: %s", PQerrorMessage(conn));
            PQclear(res);
            return -1;
        }
        long n = atol(PQgetvalue(res, 0, 0));
        PQclear(res);
        total += n;
        if (n) metrics_spans_retired(n);
        if (n < batch) break;
        agl_sleep(0.005); /* let request transactions through between batches */
    }
    return total;
}

long retention_sweep(PGconn *conn, const retention_opts *o, double now, const volatile int *stop)
{
    long total = 0;
    char excluded[64] = "{";
    for (int m = 0; m < 3; m++) {
        if (o->mode[m] < 0) continue;
        if (strlen(excluded) > 1) strcat(excluded, ",");
        strcat(excluded, modes[m]);
        if (o->mode[m] == 0) continue; /* kept forever */
        char in[16];
        snprintf(in, sizeof in, "{%s}", modes[m]);
        long n = sweep_one(conn, now - o->mode[m], in, "{}", o->batch, stop);
        if (n < 0) return -1;
        total += n;
    }
    strcat(excluded, "}");
    if (o->all > 0) {
        long n = sweep_one(conn, now - o->all, NULL, excluded, o->batch, stop);
        if (n < 0) return -1;
        total += n;
    }
    return total;
}

struct retention {
    char *conninfo;
    retention_opts o;
    pthread_t th;
    volatile int stop;
};

static void *main_loop(void *arg)
{
    retention *r = arg;
    PGconn *conn = NULL;
    double next = agl_monotonic();
    while (!r->stop) {
        if (agl_monotonic() < next) {
            agl_sleep(0.1);
            continue;
        }
        next = agl_monotonic() + r->o.interval;
        if (!conn || PQstatus(conn) != CONNECTION_OK) {
            if (conn) PQfinish(conn);
            conn = PQconnectdb(r->conninfo);
            if (PQstatus(conn) != CONNECTION_OK) {
                agl_warn("retention: cannot connect: %s", PQerrorMessage(conn));
                continue;
            }
        }
        long n = retention_sweep(conn, &r->o, agl_now(), &r->stop);
        if (n > 0) agl_info("retention: deleted %ld spans", n);
    }
    if (conn) PQfinish(conn);
    return NULL;
}

retention *retention_start(db_pool *pool, const retention_opts *o)
{
    bool any = o->all > 0;
    for (int m = 0; m < 3; m++) any |= o->mode[m] > 0;
    if (!any) return NULL;
    retention *r = agl_calloc(1, sizeof *r);
    r->conninfo = agl_strdup(db_pool_conninfo(pool));
    r->o = *o;
    if (r->o.batch < 1) r->o.batch = 1000;
    if (r->o.interval <= 0) r->o.interval = 60;
    if (pthread_create(&r->th, NULL, main_loop, r) != 0) {
        free(r->conninfo);
        free(r);
        return NULL;
    }
    return r;
}

void retention_stop(retention *r)
{
    if (!r) return;
    r->stop = 1;
    pthread_join(r->th, NULL);
    free(r->conninfo);
    free(r);
}
