/* store — rollout/attempt/worker state machine (store-api.md §4) over db statements. */
#include "store.h"
#include "agl_log.h"
#include "agl_util.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P(...) ((const char *const[]){__VA_ARGS__})
#define NP(arr) ((int)(sizeof(arr) / sizeof(arr[0])))

static const char *opt_double(store_tx *t, bool has, double v)
{
    return has ? store_fmt_double(t->arena, v) : NULL;
}

/* Writes whose result is not read: held back and pipelined with what follows (db.h). */
static agl_code exec_ok(store_tx *t, db_stmt s, int n, const char *const *params, agl_error *err)
{
    return db_exec_deferred(t->db, s, n, params, err);
}

agl_code store_latest_resources_id(store_tx *t, const char **out, agl_error *err)
{
    PGresult *res = db_exec(t->db, SQL_RESOURCES_LATEST, 0, NULL, err);
    if (!res) return err->code;
    *out = PQntuples(res) ? agl_arena_strdup(t->arena, PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    return AGL_OK;
}

agl_code store_rollout_insert(store_tx *t, const store_rollout_in *in, const char *resources_id,
                              PGresult **latest, bool enqueue, agl_rollout *out, agl_error *err)
{
    char id[32];
    agl_id_new(id, sizeof id, "ro-", 12);
    memset(out, 0, sizeof *out);
    out->rollout_id = agl_arena_strdup(t->arena, id);
    out->input = in->input;
    out->start_time = t->now;
    out->mode = in->mode;
    out->resources_id = latest ? NULL : resources_id;
    out->status = enqueue ? AGL_RS_QUEUING : AGL_RS_PREPARING;
    out->config = in->config;
    out->metadata = in->metadata ? in->metadata : "{}";
    const agl_rollout_config *c = &out->config;
    const char *const params[] = {
        out->rollout_id,
        out->input,
        store_fmt_double(t->arena, out->start_time),
        out->mode >= 0 ? agl_mode_names[out->mode] : NULL,
        out->resources_id,
        agl_rollout_status_names[out->status],
        opt_double(t, c->has_timeout, c->timeout_seconds),
        opt_double(t, c->has_unresponsive, c->unresponsive_seconds),
        store_fmt_int(t->arena, c->max_attempts),
        store_retry_json(t->arena, c),
        out->metadata,
        enqueue ? "t" : "f",
        latest ? "t" : "f",
    };
    return db_exec_held(t->db, SQL_ROLLOUT_INSERT, NP(params), params, latest, err);
}

/* Reads (and PQclear()s) a ROLLOUT_WITH_LATEST result. */
static void rollout_from_result(store_tx *t, PGresult *res, agl_rollout *r, agl_attempt *latest,
                                bool *has_attempt, bool *found)
{
    *found = PQntuples(res) > 0;
    *has_attempt = false;
    if (*found) {
        store_row_rollout(res, 0, 0, t->arena, r);
        agl_attempt tmp;
        *has_attempt =
            store_row_attempt(res, 0, DB_ROLLOUT_NCOLS, t->arena, latest ? latest : &tmp);
    }
    PQclear(res);
}

agl_code store_rollout_get(store_tx *t, const char *rollout_id, bool for_update, agl_rollout *r,
                           agl_attempt *latest, bool *has_attempt, bool *found, agl_error *err)
{
    PGresult *res = db_exec(t->db, for_update ? SQL_ROLLOUT_GET_FOR_UPDATE : SQL_ROLLOUT_GET, 1,
                            P(rollout_id), err);
    if (!res) return err->code;
    rollout_from_result(t, res, r, latest, has_attempt, found);
    return AGL_OK;
}

/* Writes every mutable column of r. enqueue: append to the queue tail unless already queued. */
static agl_code rollout_save(store_tx *t, const agl_rollout *r, bool enqueue, agl_error *err)
{
    const agl_rollout_config *c = &r->config;
    const char *const params[] = {
        r->rollout_id,
        r->input,
        r->mode >= 0 ? agl_mode_names[r->mode] : NULL,
        r->resources_id,
        agl_rollout_status_names[r->status],
        opt_double(t, r->has_end_time, r->end_time),
        opt_double(t, c->has_timeout, c->timeout_seconds),
        opt_double(t, c->has_unresponsive, c->unresponsive_seconds),
        store_fmt_int(t->arena, c->max_attempts),
        store_retry_json(t->arena, c),
        r->metadata,
        enqueue ? "t" : "f",
    };
    return exec_ok(t, SQL_ROLLOUT_UPDATE, NP(params), params, err);
}

/* A status write with its side effects (§3 E08): terminal → end_time = now and waiters are
 * woken; queuing/requeuing → enqueued unless already in the queue. */
static agl_code rollout_set_status(store_tx *t, agl_rollout *r, int status, agl_error *err)
{
    r->status = status;
    bool terminal = agl_rollout_status_terminal(status);
    if (terminal) {
        r->has_end_time = true;
        r->end_time = t->now;
    }
    bool enqueue = status == AGL_RS_QUEUING || status == AGL_RS_REQUEUING;
    agl_code code = rollout_save(t, r, enqueue, err);
    if (code == AGL_OK && terminal) {
        code = exec_ok(t, SQL_NOTIFY_DONE, 1, P(r->rollout_id), err);
        t->notify_done = true;
    }
    return code;
}

agl_code store_attempt_create(store_tx *t, agl_rollout *r, const char *worker_id, bool from_queue,
                              agl_attempt *out, agl_error *err)
{
    char id[16];
    agl_id_new(id, sizeof id, "at-", 8);
    memset(out, 0, sizeof *out);
    out->rollout_id = r->rollout_id;
    out->attempt_id = agl_arena_strdup(t->arena, id);
    out->start_time = t->now;
    out->status = AGL_AS_PREPARING;
    out->worker_id = worker_id;
    /* The caller holds the rollout's row lock (or inserted it in this transaction), so its
     * attempt count cannot move: the new sequence id is known without reading the statement's
     * result, and the statement is held back to travel with what follows. */
    out->sequence_id = r->num_attempts + 1;
    const char *const params[] = {r->rollout_id, out->attempt_id,
                                  store_fmt_double(t->arena, t->now), worker_id,
                                  from_queue ? "t" : "f"};
    agl_code code = exec_ok(t, SQL_ROLLOUT_ADD_ATTEMPT, NP(params), params, err);
    if (code != AGL_OK) return code;
    r->num_attempts = out->sequence_id;
    r->status = AGL_RS_PREPARING;
    return AGL_OK;
}

agl_code store_rollout_update(store_tx *t, const char *rollout_id, const store_rollout_patch *p,
                              agl_rollout *out, agl_error *err)
{
    bool found, has_attempt;
    agl_code code = store_rollout_get(t, rollout_id, true, out, NULL, &has_attempt, &found, err);
    if (code != AGL_OK) return code;
    if (!found)
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "rollout %s not found", rollout_id);
    if (p->has_input) out->input = p->input;
    if (p->has_mode) out->mode = p->mode;
    if (p->has_resources_id) out->resources_id = p->resources_id;
    if (p->has_config) out->config = p->config;
    if (p->has_metadata) out->metadata = p->metadata;
    if (p->has_status) return rollout_set_status(t, out, p->status, err);
    return rollout_save(t, out, false, err);
}

/* §4.3: the rollout status implied by its latest attempt. */
static int derive_rollout_status(const agl_rollout_config *c, const agl_attempt *a)
{
    switch (a->status) {
    case AGL_AS_PREPARING:
        return AGL_RS_PREPARING;
    case AGL_AS_RUNNING:
        return AGL_RS_RUNNING;
    case AGL_AS_SUCCEEDED:
        return AGL_RS_SUCCEEDED;
    default:
        break;
    }
    for (int i = 0; i < c->n_retry; i++)
        if (c->retry[i] == a->status && a->sequence_id < c->max_attempts) return AGL_RS_REQUEUING;
    return AGL_RS_FAILED;
}

agl_code store_worker_sync(store_tx *t, const agl_attempt *a, agl_error *err)
{
    if (!a->worker_id || !a->worker_id[0]) return AGL_OK;
    const char *status;
    bool busy = false;
    switch (a->status) {
    case AGL_AS_PREPARING:
    case AGL_AS_RUNNING:
        status = "busy", busy = true;
        break;
    case AGL_AS_SUCCEEDED:
    case AGL_AS_FAILED:
        status = "idle";
        break;
    default:
        status = "unknown";
        break;
    }
    const char *const params[] = {a->worker_id,
                                  status,
                                  store_fmt_double(t->arena, t->now),
                                  busy ? a->rollout_id : NULL,
                                  busy ? a->attempt_id : NULL,
                                  "f"};
    return exec_ok(t, SQL_WORKER_SYNC, NP(params), params, err);
}

agl_code store_attempt_update(store_tx *t, const char *rollout_id, const char *attempt_id,
                              const store_attempt_patch *p, agl_attempt *out, agl_error *err)
{
    agl_rollout r;
    agl_attempt latest;
    bool found, has_attempt;
    PGresult *res = NULL;
    agl_code code;
    if (strcmp(attempt_id, "latest")) {
        /* A named attempt: lock the rollout and read the attempt in one round trip. The
         * attempt's SELECT .. FOR UPDATE is its own statement, run after the rollout lock is
         * held, so it sees any attempt change committed while that lock was awaited. */
        PGresult *ro = NULL;
        if (db_exec_held(t->db, SQL_ROLLOUT_GET_FOR_UPDATE, 1, P(rollout_id), &ro, err) != AGL_OK)
            return err->code;
        res = db_exec(t->db, SQL_ATTEMPT_GET, 2, P(rollout_id, attempt_id), err);
        if (!res) return err->code;
        rollout_from_result(t, ro, &r, &latest, &has_attempt, &found);
    } else {
        code = store_rollout_get(t, rollout_id, true, &r, &latest, &has_attempt, &found, err);
        if (code != AGL_OK) return code;
        if (found && has_attempt &&
            !(res = db_exec(t->db, SQL_ATTEMPT_GET, 2, P(rollout_id, latest.attempt_id), err)))
            return err->code;
    }
    if (!found || !has_attempt) {
        PQclear(res);
        if (!found)
            return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "rollout %s not found", rollout_id);
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "rollout %s has no attempts", rollout_id);
    }
    bool ok = PQntuples(res) > 0 && store_row_attempt(res, 0, 0, t->arena, out);
    PQclear(res);
    if (!ok)
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "attempt %s of rollout %s not found",
                             attempt_id, rollout_id);

    if (p->has_worker_id) out->worker_id = p->worker_id;
    if (p->has_status) {
        out->status = p->status;
        if (p->status == AGL_AS_FAILED || p->status == AGL_AS_SUCCEEDED) {
            out->has_end_time = true;
            out->end_time = t->now;
        }
    }
    if (p->has_last_heartbeat_time) {
        out->has_last_heartbeat_time = true;
        out->last_heartbeat_time = p->last_heartbeat_time;
    }
    if (p->has_metadata) out->metadata = p->metadata;
    const char *const params[] = {
        out->rollout_id,
        out->attempt_id,
        agl_attempt_status_names[out->status],
        opt_double(t, out->has_end_time, out->end_time),
        out->worker_id,
        opt_double(t, out->has_last_heartbeat_time, out->last_heartbeat_time),
        out->metadata,
    };
    code = exec_ok(t, SQL_ATTEMPT_UPDATE, NP(params), params, err);
    if (code != AGL_OK) return code;

    /* Every update of the latest attempt re-derives the rollout status (§4.3). */
    if (out->sequence_id == latest.sequence_id) {
        int derived = derive_rollout_status(&r.config, out);
        if (derived != r.status) code = rollout_set_status(t, &r, derived, err);
        if (code != AGL_OK) return code;
    }
    bool has_worker = out->worker_id && out->worker_id[0];
    if ((p->has_worker_id && has_worker) || (p->has_status && has_worker))
        code = store_worker_sync(t, out, err);
    return code;
}

agl_code store_dequeue(store_tx *t, long limit, const char *worker_id, agl_rollout **rs,
                       agl_attempt **as, int *n, agl_error *err)
{
    *n = 0;
    *rs = agl_arena_alloc(t->arena, sizeof **rs * (size_t)(limit > 0 ? limit : 1));
    *as = agl_arena_alloc(t->arena, sizeof **as * (size_t)(limit > 0 ? limit : 1));
    while (*n < limit) {
        PGresult *res =
            db_exec(t->db, SQL_QUEUE_PICK, 1, P(store_fmt_int(t->arena, limit - *n)), err);
        if (!res) return err->code;
        int rows = PQntuples(res);
        agl_code code = AGL_OK;
        for (int i = 0; i < rows && code == AGL_OK; i++) {
            agl_rollout *r = &(*rs)[*n];
            store_row_rollout(res, i, 0, t->arena, r);
            if (r->status != AGL_RS_QUEUING && r->status != AGL_RS_REQUEUING) {
                /* Lazy deletion: a rollout that left the queuing states drops out here. */
                code = exec_ok(t, SQL_QUEUE_DROP, 1, P(r->rollout_id), err);
                continue;
            }
            code = store_attempt_create(t, r, worker_id, true, &(*as)[*n], err);
            if (code == AGL_OK) (*n)++;
        }
        PQclear(res);
        if (code != AGL_OK) return code;
        if (rows == 0) break;
    }
    if (!worker_id) return AGL_OK;
    if (*n > 0) {
        const agl_attempt *last = &(*as)[*n - 1];
        if (!worker_id[0]) return AGL_OK;
        const char *const params[] = {
            worker_id,        "busy",           store_fmt_double(t->arena, t->now),
            last->rollout_id, last->attempt_id, "t"};
        return exec_ok(t, SQL_WORKER_SYNC, NP(params), params, err);
    }
    return exec_ok(t, SQL_WORKER_DEQUEUE_IDLE, 2, P(worker_id, store_fmt_double(t->arena, t->now)),
                   err);
}

agl_code store_span_counter_raise(store_tx *t, const char *rollout_id, int64_t to, agl_error *err)
{
    return exec_ok(t, SQL_SPAN_COUNTER_RAISE, 2, P(rollout_id, store_fmt_int(t->arena, to)), err);
}

agl_code store_span_counter_next(store_tx *t, const char *rollout_id, int64_t count, int64_t *first,
                                 agl_error *err)
{
    PGresult *res = db_exec(t->db, SQL_SPAN_COUNTER_NEXT, 2,
                            P(rollout_id, store_fmt_int(t->arena, count)), err);
    if (!res) return err->code;
    *first = db_int(res, 0, 0) - count + 1;
    PQclear(res);
    return AGL_OK;
}

agl_code store_span_seq_next(store_tx *t, const char *rollout_id, int64_t *seq, agl_error *err)
{
    PGresult *res = db_exec(t->db, SQL_SPAN_SEQ_NEXT, 1, P(rollout_id), err);
    if (!res) return err->code;
    *seq = db_int(res, 0, 0);
    PQclear(res);
    return AGL_OK;
}

/* A PostgreSQL array literal of strings: {"a","b\"c"}. */
static char *pg_text_array(agl_arena *a, const char *const *v, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++) cap += 2 * strlen(v[i]) + 3;
    char *out = agl_arena_alloc(a, cap), *w = out;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i) *w++ = ',';
        *w++ = '"';
        for (const char *s = v[i]; *s; s++) {
            if (*s == '"' || *s == '\\') *w++ = '\\';
            *w++ = *s;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = 0;
    return out;
}

agl_code store_span_seq_next_many(store_tx *t, const char *const *rollout_ids, size_t n,
                                  int64_t *seq, agl_error *err)
{
    if (!n) return AGL_OK;
    PGresult *res =
        db_exec(t->db, SQL_SPAN_SEQ_NEXT_MANY, 1, P(pg_text_array(t->arena, rollout_ids, n)), err);
    if (!res) return err->code;
    for (size_t i = 0; i < n; i++) seq[i] = db_int(res, (int)i, 0);
    PQclear(res);
    return AGL_OK;
}

agl_code store_span_add_one(store_tx *t, const agl_span *s, bool *inserted, agl_error *err)
{
    const char *const params[] = {
        s->rollout_id,
        s->attempt_id,
        s->span_id,
        store_fmt_int(t->arena, s->sequence_id),
        s->trace_id,
        s->parent_id,
        s->name,
        opt_double(t, s->has_start_time, s->start_time),
        opt_double(t, s->has_end_time, s->end_time),
        s->json,
        store_fmt_double(t->arena, t->now),
    };
    PGresult *res = db_exec(t->db, SQL_SPAN_ADD_ONE, NP(params), params, err);
    if (!res) {
        if (err->code == AGL_E_NOT_FOUND)
            agl_error_set(err, AGL_E_NOT_FOUND, NULL, "attempt %s of rollout %s not found",
                          s->attempt_id, s->rollout_id);
        return err->code;
    }
    bool found = db_int(res, 0, 0) > 0, attempt_found = db_int(res, 0, 3) > 0;
    *inserted = db_int(res, 0, 1) > 0;
    PQclear(res);
    if (!found)
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "rollout %s not found", s->rollout_id);
    if (!attempt_found)
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "attempt %s of rollout %s not found",
                             s->attempt_id, s->rollout_id);
    if (*inserted) metrics_spans_ingested(1);
    return AGL_OK;
}

agl_code store_spans_insert(store_tx *t, const char *rollout_id, const char *attempt_id,
                            agl_span *spans, int n, bool *inserted, agl_error *err)
{
    PGresult *res = db_exec(t->db, SQL_SPAN_TARGET_LOCK, 2, P(rollout_id, attempt_id), err);
    if (!res) return err->code;
    bool found = PQntuples(res) > 0;
    int64_t latest_seq = found ? db_int(res, 0, 0) : 0;
    bool attempt_found = found && db_int(res, 0, 1) > 0;
    PQclear(res);
    if (!found)
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "rollout %s not found", rollout_id);
    if (!attempt_found)
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "attempt %s of rollout %s not found",
                             attempt_id, rollout_id);
    int added = 0;
    /* One prepared INSERT per span, pipelined: PostgreSQL runs them back to back instead of
     * waiting for a round trip (and two context switches) each — +30–40% sustained recorded
     * LLM calls through runnerd's proxy (docs/runnerd.md). A single INSERT .. SELECT FROM
     * unnest() of array parameters cost PostgreSQL three times the CPU for a 512-span OTLP
     * batch (parsing the array literals and validating json[]). */
    const char *const **params = agl_arena_alloc(t->arena, sizeof *params * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        const agl_span *s = &spans[i];
        const char **p = agl_arena_alloc(t->arena, sizeof *p * 10);
        p[0] = rollout_id;
        p[1] = attempt_id;
        p[2] = s->span_id;
        p[3] = store_fmt_int(t->arena, s->sequence_id);
        p[4] = s->trace_id;
        p[5] = s->parent_id;
        p[6] = s->name;
        p[7] = opt_double(t, s->has_start_time, s->start_time);
        p[8] = opt_double(t, s->has_end_time, s->end_time);
        p[9] = s->json;
        params[i] = p;
    }
    PGresult **res_all = agl_arena_alloc(t->arena, sizeof *res_all * (size_t)(n ? n : 1));
    agl_code code = db_exec_many(t->db, SQL_SPAN_INSERT, n, 10, params, res_all, err);
    for (int i = 0; code == AGL_OK && i < n; i++) {
        inserted[i] = PQntuples(res_all[i]) > 0;
        added += inserted[i];
        PQclear(res_all[i]);
    }
    if (code != AGL_OK) {
        if (code == AGL_E_NOT_FOUND)
            agl_error_set(err, AGL_E_NOT_FOUND, NULL, "attempt %s of rollout %s not found",
                          attempt_id, rollout_id);
        return code;
    }
    if (!added) return AGL_OK;
    metrics_spans_ingested(added);
    /* Stored spans are the attempt's heartbeat (§4.6). */
    res = db_exec(t->db, SQL_ATTEMPT_HEARTBEAT, 3,
                  P(rollout_id, attempt_id, store_fmt_double(t->arena, t->now)), err);
    if (!res) return err->code;
    int64_t seq = PQntuples(res) ? db_int(res, 0, 0) : -1;
    PQclear(res);
    if (seq == latest_seq)
        return exec_ok(t, SQL_ROLLOUT_SET_RUNNING_IF_LATEST, 2,
                       P(rollout_id, store_fmt_int(t->arena, seq)), err);
    return AGL_OK;
}

int store_scan(db_pool *pool, agl_error *err)
{
    db_conn *db;
    if (db_acquire(pool, &db, err) != AGL_OK) return -1;
    agl_arena arena;
    agl_arena_init(&arena);
    store_tx t = {db, &arena, agl_now(), false};
    int marked = 0;
    PGresult *cand = db_exec(db, SQL_SCAN_CANDIDATES, 1, P(store_fmt_double(&arena, t.now)), err);
    for (int i = 0; cand && i < PQntuples(cand); i++) {
        const char *rid = PQgetvalue(cand, i, 0);
        const char *aid = PQgetvalue(cand, i, 1);
        store_attempt_patch p = {.has_status = true,
                                 .status = agl_attempt_status_from(PQgetvalue(cand, i, 2))};
        agl_attempt out;
        agl_error e;
        /* Re-check under the lock: another stored may have handled it meanwhile. */
        agl_rollout r;
        agl_attempt latest;
        bool found, has_attempt;
        if (db_begin(db, &e) != AGL_OK) break;
        agl_code code = store_rollout_get(&t, rid, true, &r, &latest, &has_attempt, &found, &e);
        bool still = code == AGL_OK && found && has_attempt &&
                     (r.status == AGL_RS_PREPARING || r.status == AGL_RS_RUNNING) &&
                     !strcmp(latest.attempt_id, aid);
        /* The E13 path also syncs the worker (→ unknown) since a status is supplied. */
        if (still) code = store_attempt_update(&t, rid, aid, &p, &out, &e);
        if (code == AGL_OK && db_commit(db, &e) == AGL_OK) {
            if (still) {
                marked++;
                agl_info("attempt %s of rollout %s marked %s", aid, rid,
                         agl_attempt_status_names[p.status]);
            }
        } else {
            db_rollback(db);
            agl_warn("scan could not mark attempt %s of rollout %s: %s", aid, rid, e.msg);
        }
    }
    if (cand) PQclear(cand);
    db_release(pool, db);
    agl_arena_free(&arena);
    return marked;
}
