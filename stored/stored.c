/* stored — background work of the store process: the LISTEN thread that turns
 * agl_rollout_done notifications (from any stored on the database) into wake-ups of local
 * waiters, and the watchdog that runs the unhealthy-attempt scan on a timer. */
#include "stored.h"
#include "agl_log.h"
#include "agl_util.h"
#include "store.h"

#include <poll.h>
#include <string.h>

void stored_done_broadcast(stored_ctx *ctx)
{
    pthread_mutex_lock(&ctx->done_mu);
    ctx->done_gen++;
    pthread_cond_broadcast(&ctx->done_cv);
    pthread_mutex_unlock(&ctx->done_mu);
}

void stored_scan_maybe(stored_ctx *ctx, bool force)
{
    double now = agl_monotonic();
    pthread_mutex_lock(&ctx->scan_mu);
    bool due = force || ctx->last_scan == 0 || now - ctx->last_scan >= ctx->scan_interval;
    if (due) ctx->last_scan = now;
    pthread_mutex_unlock(&ctx->scan_mu);
    if (!due) return;
    agl_error err;
    if (store_scan(ctx->pool, &err) < 0) agl_warn("scan skipped: %s", err.msg);
}

static void *listener_main(void *arg)
{
    stored_ctx *ctx = arg;
    PGconn *pg = NULL;
    while (!ctx->stopping) {
        if (!pg || PQstatus(pg) != CONNECTION_OK) {
            if (pg) PQfinish(pg);
            pg = PQconnectdb(db_pool_conninfo(ctx->pool));
            PGresult *r = PQexec(pg, "LISTEN agl_rollout_done");
            bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (!ok) {
                agl_sleep(1);
                continue;
            }
            /* Something may have finished while we were not listening. */
            stored_done_broadcast(ctx);
        }
        struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
        int rc = poll(&pfd, 1, 250);
        if (rc <= 0) continue;
        if (!PQconsumeInput(pg)) continue; /* broken: reconnect on the next turn */
        bool any = false;
        PGnotify *n;
        while ((n = PQnotifies(pg)) != NULL) {
            any = true;
            PQfreemem(n);
        }
        if (any) stored_done_broadcast(ctx);
    }
    if (pg) PQfinish(pg);
    return NULL;
}

static void *watchdog_main(void *arg)
{
    stored_ctx *ctx = arg;
    double period = ctx->scan_interval > 0 ? ctx->scan_interval : 1.0;
    double next = agl_monotonic() + period;
    while (!ctx->stopping) {
        agl_sleep(0.2);
        if (agl_monotonic() < next) continue;
        stored_scan_maybe(ctx, false);
        next = agl_monotonic() + period;
    }
    return NULL;
}

void stored_background_start(stored_ctx *ctx)
{
    ctx->listener_running = pthread_create(&ctx->listener, NULL, listener_main, ctx) == 0;
    ctx->watchdog_running = pthread_create(&ctx->watchdog, NULL, watchdog_main, ctx) == 0;
}

void stored_background_stop(stored_ctx *ctx)
{
    ctx->stopping = true;
    stored_done_broadcast(ctx);
    if (ctx->listener_running) pthread_join(ctx->listener, NULL);
    if (ctx->watchdog_running) pthread_join(ctx->watchdog, NULL);
    ctx->listener_running = ctx->watchdog_running = false;
}
