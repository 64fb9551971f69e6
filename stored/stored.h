/* stored — process-wide state shared by handlers: the database pool, the scan schedule and
 * the rollout-finished notifier that wait_for_rollouts sleeps on. */
#ifndef STORED_STORED_H
#define STORED_STORED_H

#include "db.h"
#include "http.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct stored_ctx {
    db_pool *pool;
    double started;       /* agl_now() at start, for statistics.uptime */
    double scan_interval; /* seconds between unhealthy-attempt scans; 0 = before each request */
    pthread_mutex_t scan_mu;
    double last_scan; /* monotonic */
    /* Rollout-finished notifications (LISTEN agl_rollout_done, and local commits). */
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    uint64_t done_gen;
    volatile bool stopping;
    pthread_t listener;
    bool listener_running;
    pthread_t watchdog;
    bool watchdog_running;
};

/* Wakes wait_for_rollouts waiters of this process. */
void stored_done_broadcast(stored_ctx *ctx);
/* Starts the LISTEN thread (cross-process wake-ups) and the periodic watchdog scan. */
void stored_background_start(stored_ctx *ctx);
void stored_background_stop(stored_ctx *ctx);

/* Runs the unhealthy-attempt scan (store-api.md §4.5) if it is due (force: always). */
void stored_scan_maybe(stored_ctx *ctx, bool force);

/* The route table and its dispatch (api.c). */
agl_code stored_dispatch(agl_req *r, agl_error *err);

#endif
