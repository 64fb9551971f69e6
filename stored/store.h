/* store — the LightningStore state machine on top of db: rollouts, attempts, the queue,
 * workers, resources, spans (store-api.md §4–§5). Functions run inside the caller's
 * transaction; they never build SQL and never talk HTTP. */
#ifndef STORED_STORE_H
#define STORED_STORE_H

#include "agl_model.h"
#include "db.h"

typedef struct store_tx {
    db_conn *db;
    agl_arena *arena;
    double now;       /* one clock reading per request */
    bool notify_done; /* set when a rollout became terminal */
} store_tx;

/* Input of enqueue (E02) and start_rollout (E04). */
typedef struct store_rollout_in {
    const char *input; /* raw JSON */
    int mode;
    bool has_resources_id;
    const char *resources_id; /* NULL = resolve to latest */
    agl_rollout_config config;
    const char *metadata; /* raw JSON object, NULL → {} */
} store_rollout_in;

/* Partial updates: has_x = key present in the body. */
typedef struct store_rollout_patch {
    bool has_input, has_mode, has_resources_id, has_status, has_config, has_metadata;
    const char *input;
    int mode;
    const char *resources_id;
    int status;
    agl_rollout_config config;
    const char *metadata;
} store_rollout_patch;

typedef struct store_attempt_patch {
    bool has_status, has_worker_id, has_last_heartbeat_time, has_metadata;
    int status;
    const char *worker_id;
    double last_heartbeat_time;
    const char *metadata;
} store_attempt_patch;

/* Latest resources id, or NULL when none exist. */
agl_code store_latest_resources_id(store_tx *t, const char **out, agl_error *err);
/* latest: NULL to store resources_id as given; otherwise the rollout gets the latest
 * resources, looked up by the INSERT itself, and *latest receives the row holding that id once
 * the insert has run (db_exec_held: at the next statement or at COMMIT). */
agl_code store_rollout_insert(store_tx *t, const store_rollout_in *in, const char *resources_id,
                              PGresult **latest, bool enqueue, agl_rollout *out, agl_error *err);
/* Loads a rollout and its latest attempt (*has_attempt). *found false when unknown. */
agl_code store_rollout_get(store_tx *t, const char *rollout_id, bool for_update, agl_rollout *r,
                           agl_attempt *latest, bool *has_attempt, bool *found, agl_error *err);
/* Creates attempt n+1 on a rollout the caller has locked; the rollout becomes preparing. */
agl_code store_attempt_create(store_tx *t, agl_rollout *r, const char *worker_id, bool from_queue,
                              agl_attempt *out, agl_error *err);
agl_code store_rollout_update(store_tx *t, const char *rollout_id, const store_rollout_patch *p,
                              agl_rollout *out, agl_error *err);
/* E13 (attempt_id may be "latest"); also used by the scan. */
agl_code store_attempt_update(store_tx *t, const char *rollout_id, const char *attempt_id,
                              const store_attempt_patch *p, agl_attempt *out, agl_error *err);
agl_code store_worker_sync(store_tx *t, const agl_attempt *a, agl_error *err);
/* E03: claims up to limit rollouts; *out has n AttemptedRollouts (rollouts + attempts). */
agl_code store_dequeue(store_tx *t, long limit, const char *worker_id, agl_rollout **rs,
                       agl_attempt **as, int *n, agl_error *err);

/* Span ingestion: one (rollout, attempt) group at a time. spans[i].json must be complete.
 * Unknown rollout/attempt → AGL_E_NOT_FOUND. *inserted[i] tells which were new. */
agl_code store_spans_insert(store_tx *t, const char *rollout_id, const char *attempt_id,
                            agl_span *spans, int n, bool *inserted, agl_error *err);
/* E24: one span in one autocommit statement (counter raise, insert, heartbeat). *inserted
 * false for a duplicate; unknown rollout or attempt → AGL_E_NOT_FOUND. */
agl_code store_span_add_one(store_tx *t, const agl_span *s, bool *inserted, agl_error *err);
agl_code store_span_counter_raise(store_tx *t, const char *rollout_id, int64_t to, agl_error *err);
/* Allocates count consecutive sequence ids; returns the first. */
agl_code store_span_counter_next(store_tx *t, const char *rollout_id, int64_t count, int64_t *first,
                                 agl_error *err);
/* E25 (POST /v1/agl/spans/next): the next id, committed without waiting for the WAL flush —
 * only in an autocommit transaction of its own (req_db_single), never inside a write tx. */
agl_code store_span_seq_next(store_tx *t, const char *rollout_id, int64_t *seq, agl_error *err);
/* The same for n requests at once (rollout ids may repeat): seq[i] for rollout_ids[i], ids of
 * one rollout increasing in request order. One statement, same commit rule. */
agl_code store_span_seq_next_many(store_tx *t, const char *const *rollout_ids, size_t n,
                                  int64_t *seq, agl_error *err);

/* Row readers (store_rows.c). Return false when the row's columns at col are NULL. */
void store_row_rollout(const PGresult *res, int row, int col, agl_arena *a, agl_rollout *r);
bool store_row_attempt(const PGresult *res, int row, int col, agl_arena *a, agl_attempt *at);
void store_row_worker(const PGresult *res, int row, int col, agl_arena *a, agl_worker *w);
void store_row_resources(const PGresult *res, int row, int col, agl_arena *a,
                         agl_resources_update *u);

/* Unhealthy-attempt scan (store-api.md §4.5) over the whole store; each mark in its own
 * transaction. Returns how many attempts were marked. */
int store_scan(db_pool *pool, agl_error *err);

/* Text helpers for parameters. */
const char *store_fmt_double(agl_arena *a, double v);
const char *store_fmt_int(agl_arena *a, int64_t v);
/* PostgreSQL text[] literal of the given strings. */
const char *store_text_array(agl_arena *a, const char *const *v, int n);
const char *store_retry_json(agl_arena *a, const agl_rollout_config *c);

#endif
