/* runnerd — shared configuration and run state of the runner daemon (worker pool, agents,
 * proxy). main.c fills a runnerd_cfg from the command line; workers read it. */
#ifndef RUNNERD_H
#define RUNNERD_H

#include "proxy.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct runnerd_cfg {
    const char *store_url;
    long workers;
    const char *agent; /* prompt | exec:COMMAND | http:URL */
    const char *grader;
    const char *worker_prefix;
    double poll_interval;
    double heartbeat_interval;
    long max_rollouts;   /* per worker; 0 = unlimited */
    double exec_timeout; /* when the rollout has no timeout_seconds; 0 = none */
    long stderr_limit;
    const char *upstream_key_env;
} runnerd_cfg;

/* Process-wide run state: drain/abort flags set from the signal loop in main. */
typedef struct runnerd_state {
    atomic_int drain; /* 1: take no new rollout */
    atomic_int abort; /* 1: abort the current attempts as failed */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when drain/abort change, wakes sleeping workers */
} runnerd_state;

extern runnerd_state runnerd_run;

/* Sleeps up to seconds; returns early (true) when drain or abort was requested. */
bool runnerd_sleep(double seconds);
void runnerd_request_drain(void);
void runnerd_request_abort(void);

/* ---- workers (worker.c) ---- */
typedef struct worker_pool worker_pool;
worker_pool *worker_pool_start(const runnerd_cfg *cfg, proxy *px);
/* Number of workers still running. */
int worker_pool_live(worker_pool *wp);
/* Joins every worker and the heartbeat thread, frees wp. */
void worker_pool_join(worker_pool *wp);

#endif
