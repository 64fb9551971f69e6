/* api — the route table of stored and the handlers of the /v1/agl routes (store-api.md §3).
 * Handlers parse and validate, call store_* inside the request's transaction, and write the
 * JSON response. Literal segments come before {id} segments, as in the reference. */
#include "adapter_api.h"
#include "agl_json_raw.h"
#include "agl_log.h"
#include "agl_util.h"
#include "list.h"
#include "metrics.h"
#include "otlp.h"
#include "store.h"
#include "stored.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P(...) ((const char *const[]){__VA_ARGS__})

static store_tx tx_of(agl_req *r, db_conn *db)
{
    return (store_tx){db, &r->arena, agl_now(), false};
}

static agl_code tx_end(agl_req *r, store_tx *t, agl_code code)
{
    if (t->notify_done) r->notify_done = true;
    return code;
}

/* ---- body field helpers ---- */

/* Free-form JSON is kept as the client wrote it: the value's text is cut out of the body
 * (big integers, number spelling survive); re-serialising the parsed value is the fallback. */
static const char *raw_value(agl_req *r, const json_t *v, const char *const *path, int depth)
{
    size_t off, len;
    if (agl_json_raw_find(r->body.data, r->body.len, path, depth, &off, &len))
        return agl_arena_strndup(&r->arena, r->body.data + off, len);
    return agl_json_dump(&r->arena, v);
}

static agl_code need_object(const json_t *j, const char *loc, agl_error *err)
{
    if (json_is_object(j)) return AGL_OK;
    return agl_error_set(err, AGL_E_INVALID, loc, "input should be a valid dictionary");
}

/* Explicit null on a key that may be omitted but not nulled (§5.6) → 400. */
static agl_code not_null(const json_t *body, const char *key, agl_error *err)
{
    json_t *v = json_object_get(body, key);
    if (v && json_is_null(v))
        return agl_error_set(err, AGL_E_BAD_REQUEST, NULL,
                             "%s is invalid; it cannot be a null value.", key);
    return AGL_OK;
}

static agl_code opt_string(agl_req *r, const json_t *body, const char *key, const char **out,
                           agl_error *err)
{
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v || json_is_null(v)) return AGL_OK;
    if (!json_is_string(v))
        return agl_error_set(err, AGL_E_INVALID, agl_arena_printf(&r->arena, "body.%s", key),
                             "input should be a valid string");
    *out = agl_arena_strdup(&r->arena, json_string_value(v));
    return AGL_OK;
}

static agl_code opt_mode(agl_req *r, const json_t *v, const char *loc, int *mode, agl_error *err)
{
    *mode = AGL_MODE_NONE;
    if (!v || json_is_null(v)) return AGL_OK;
    int m = json_is_string(v) ? agl_mode_from(json_string_value(v)) : -1;
    if (m < 0)
        return agl_error_set(err, AGL_E_INVALID, loc, "input should be 'train', 'val' or 'test'");
    *mode = m;
    return AGL_OK;
}

static agl_code opt_metadata(agl_req *r, const json_t *v, const char *loc, const char *const *path,
                             int depth, const char **out, agl_error *err)
{
    *out = NULL;
    if (!v || json_is_null(v)) return AGL_OK;
    if (!json_is_object(v))
        return agl_error_set(err, AGL_E_INVALID, loc, "input should be a valid dictionary");
    *out = raw_value(r, v, path, depth);
    return AGL_OK;
}

/* EnqueueRolloutRequest / start_rollout body element (§2.6). */
static agl_code parse_rollout_in(agl_req *r, const json_t *j, const char *loc,
                                 const char *const *path, int depth, store_rollout_in *in,
                                 agl_error *err)
{
    /* path/depth locate j in the body; one more slot names the field. */
    const char *fpath[4] = {path[0], path[1], NULL, NULL};
    agl_code code = need_object(j, loc, err);
    if (code) return code;
    memset(in, 0, sizeof *in);
    json_t *input = json_object_get(j, "input");
    if (!input)
        return agl_error_set(err, AGL_E_INVALID, agl_arena_printf(&r->arena, "%s.input", loc),
                             "field required");
    fpath[depth] = "input";
    in->input = raw_value(r, input, fpath, depth + 1);
    if ((code = opt_mode(r, json_object_get(j, "mode"), agl_arena_printf(&r->arena, "%s.mode", loc),
                         &in->mode, err)))
        return code;
    json_t *res = json_object_get(j, "resources_id");
    if (res && !json_is_null(res)) {
        if (!json_is_string(res))
            return agl_error_set(err, AGL_E_INVALID,
                                 agl_arena_printf(&r->arena, "%s.resources_id", loc),
                                 "input should be a valid string");
        in->has_resources_id = true;
        in->resources_id = agl_arena_strdup(&r->arena, json_string_value(res));
    }
    json_t *cfg = json_object_get(j, "config");
    agl_rollout_config_default(&in->config);
    if (cfg && !json_is_null(cfg) &&
        (code = agl_rollout_config_parse(cfg, agl_arena_printf(&r->arena, "%s.config", loc),
                                         &in->config, err)))
        return code;
    fpath[depth] = "metadata";
    return opt_metadata(r, json_object_get(j, "metadata"),
                        agl_arena_printf(&r->arena, "%s.metadata", loc), fpath, depth + 1,
                        &in->metadata, err);
}

/* ---- E01 health, E18 statistics ---- */

static agl_code h_health(agl_req *r, agl_error *err)
{
    agl_buf_puts(&r->out, "{\"status\":\"ok\"}");
    return AGL_OK;
}

static agl_code h_statistics(agl_req *r, agl_error *err)
{
    db_conn *db;
    agl_code code = req_db_single(r, &db, err);
    if (code) return code;
    PGresult *res = db_exec(db, SQL_STATISTICS, 0, NULL, err);
    if (!res) return err->code;
    agl_buf_printf(&r->out,
                   "{\"name\":\"agl-stored\",\"total_rollouts\":%s,\"total_attempts\":%s,"
                   "\"total_spans\":%s,\"total_resources\":%s,\"total_workers\":%s,"
                   "\"uptime\":",
                   PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                   PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4));
    agl_buf_json_double(&r->out, agl_now() - r->ctx->started);
    agl_buf_printf(&r->out, ",\"database_bytes\":%s}", PQgetvalue(res, 0, 5));
    PQclear(res);
    return AGL_OK;
}

/* ---- rollouts ---- */

static agl_code h_enqueue(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, false, &body, err);
    if (code || (code = need_object(body, "body", err))) return code;
    json_t *list = json_object_get(body, "rollouts");
    if (!list) return agl_error_set(err, AGL_E_INVALID, "body.rollouts", "field required");
    if (!json_is_array(list))
        return agl_error_set(err, AGL_E_INVALID, "body.rollouts", "input should be a valid list");
    size_t n = json_array_size(list);
    store_rollout_in *ins = agl_arena_alloc(&r->arena, sizeof *ins * (n ? n : 1));
    /* Validate everything first: a bad element rejects the whole batch. */
    for (size_t i = 0; i < n; i++) {
        const char *path[2] = {"rollouts", agl_arena_printf(&r->arena, "%zu", i)};
        if ((code = parse_rollout_in(r, json_array_get(list, i),
                                     agl_arena_printf(&r->arena, "body.rollouts.%zu", i), path, 2,
                                     &ins[i], err)))
            return code;
    }
    db_conn *db;
    if ((code = req_db(r, &db, err))) return code;
    store_tx t = tx_of(r, db);
    const char *latest = NULL;
    bool need_latest = false;
    for (size_t i = 0; i < n; i++) need_latest |= !ins[i].has_resources_id;
    /* "Latest resources" is resolved once for the whole batch, as the reference does. */
    if (need_latest && (code = store_latest_resources_id(&t, &latest, err))) return code;
    agl_buf_putc(&r->out, '[');
    for (size_t i = 0; i < n; i++) {
        agl_rollout ro;
        code = store_rollout_insert(&t, &ins[i],
                                    ins[i].has_resources_id ? ins[i].resources_id : latest, NULL,
                                    true, &ro, err);
        if (code) return code;
        if (i) agl_buf_putc(&r->out, ',');
        agl_rollout_write(&r->out, &ro);
    }
    agl_buf_putc(&r->out, ']');
    r->status = 201;
    return AGL_OK;
}

static agl_code h_dequeue(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, true, &body, err);
    if (code) return code;
    long limit = 1;
    const char *worker = NULL;
    if (!json_is_null(body)) {
        if ((code = need_object(body, "body", err))) return code;
        json_t *l = json_object_get(body, "limit");
        if (l && !json_is_null(l)) {
            if (!json_is_integer(l))
                return agl_error_set(err, AGL_E_INVALID, "body.limit",
                                     "input should be a valid integer");
            limit = (long)json_integer_value(l);
        }
        if ((code = opt_string(r, body, "worker_id", &worker, err))) return code;
    }
    agl_buf_putc(&r->out, '[');
    if (limit > 0) {
        db_conn *db;
        if ((code = req_db(r, &db, err))) return code;
        store_tx t = tx_of(r, db);
        agl_rollout *rs;
        agl_attempt *as;
        int n;
        if ((code = store_dequeue(&t, limit, worker, &rs, &as, &n, err))) return code;
        for (int i = 0; i < n; i++) {
            if (i) agl_buf_putc(&r->out, ',');
            agl_attempted_rollout_write(&r->out, &rs[i], &as[i]);
        }
    }
    agl_buf_putc(&r->out, ']');
    return AGL_OK;
}

static agl_code h_start_rollout(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, false, &body, err);
    if (code) return code;
    store_rollout_in in;
    const char *path[2] = {NULL, NULL};
    if ((code = parse_rollout_in(r, body, "body", path, 0, &in, err))) return code;
    const char *worker;
    if ((code = opt_string(r, body, "worker_id", &worker, err))) return code;
    db_conn *db;
    if ((code = req_db(r, &db, err))) return code;
    store_tx t = tx_of(r, db);
    /* Nothing here reads a result before COMMIT (the latest resources are looked up by the
     * INSERT, the attempt's sequence id is 1), so the whole transaction is one round trip. */
    PGresult *latest = NULL;
    agl_rollout ro;
    agl_attempt at;
    if ((code = store_rollout_insert(&t, &in, in.resources_id, in.has_resources_id ? NULL : &latest,
                                     false, &ro, err)))
        return code;
    if ((code = store_attempt_create(&t, &ro, worker, false, &at, err))) return code;
    if ((code = store_worker_sync(&t, &at, err))) return code;
    if ((code = req_db_done(r, err))) return code;
    if (latest) {
        ro.resources_id =
            PQntuples(latest) ? agl_arena_strdup(&r->arena, db_val(latest, 0, 0)) : NULL;
        PQclear(latest);
    }
    agl_attempted_rollout_write(&r->out, &ro, &at);
    r->status = 201;
    return AGL_OK;
}

static agl_code h_get_rollout(agl_req *r, agl_error *err)
{
    db_conn *db;
    agl_code code = req_db_single(r, &db, err);
    if (code) return code;
    store_tx t = tx_of(r, db);
    agl_rollout ro;
    agl_attempt at;
    bool found, has_at;
    if ((code = store_rollout_get(&t, r->param[0], false, &ro, &at, &has_at, &found, err)))
        return code;
    if (!found)
        agl_buf_puts(&r->out, "null");
    else
        agl_attempted_rollout_write(&r->out, &ro, has_at ? &at : NULL);
    return AGL_OK;
}

static agl_code h_update_rollout(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, false, &body, err);
    if (code || (code = need_object(body, "body", err))) return code;
    store_rollout_patch p;
    memset(&p, 0, sizeof p);
    if ((code = not_null(body, "status", err)) || (code = not_null(body, "config", err)))
        return code;
    json_t *v;
    if ((v = json_object_get(body, "input"))) {
        p.has_input = true;
        p.input = raw_value(r, v, P("input"), 1);
    }
    if ((v = json_object_get(body, "mode"))) {
        p.has_mode = true;
        if ((code = opt_mode(r, v, "body.mode", &p.mode, err))) return code;
    }
    if ((v = json_object_get(body, "resources_id"))) {
        p.has_resources_id = true;
        if ((code = opt_string(r, body, "resources_id", &p.resources_id, err))) return code;
    }
    if ((v = json_object_get(body, "status"))) {
        p.has_status = true;
        p.status = json_is_string(v) ? agl_rollout_status_from(json_string_value(v)) : -1;
        if (p.status < 0)
            return agl_error_set(err, AGL_E_INVALID, "body.status",
                                 "input should be 'queuing', 'preparing', 'running', 'failed', "
                                 "'succeeded', 'cancelled' or 'requeuing'");
    }
    if ((v = json_object_get(body, "config"))) {
        p.has_config = true;
        if ((code = agl_rollout_config_parse(v, "body.config", &p.config, err))) return code;
    }
    if ((v = json_object_get(body, "metadata"))) {
        p.has_metadata = true;
        if ((code = opt_metadata(r, v, "body.metadata", P("metadata"), 1, &p.metadata, err)))
            return code;
    }
    db_conn *db;
    if ((code = req_db(r, &db, err))) return code;
    store_tx t = tx_of(r, db);
    agl_rollout ro;
    code = store_rollout_update(&t, r->param[0], &p, &ro, err);
    if (code == AGL_OK) agl_rollout_write(&r->out, &ro);
    return tx_end(r, &t, code);
}

static agl_code h_start_attempt(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, true, &body, err);
    if (code) return code;
    const char *worker = NULL;
    if (!json_is_null(body)) {
        if ((code = need_object(body, "body", err))) return code;
        if ((code = opt_string(r, body, "worker_id", &worker, err))) return code;
    }
    db_conn *db;
    if ((code = req_db(r, &db, err))) return code;
    store_tx t = tx_of(r, db);
    agl_rollout ro;
    agl_attempt at;
    bool found, has_at;
    if ((code = store_rollout_get(&t, r->param[0], true, &ro, &at, &has_at, &found, err)))
        return code;
    if (!found)
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "rollout %s not found", r->param[0]);
    if ((code = store_attempt_create(&t, &ro, worker, false, &at, err))) return code;
    if ((code = store_worker_sync(&t, &at, err))) return code;
    agl_attempted_rollout_write(&r->out, &ro, &at);
    r->status = 201;
    return AGL_OK;
}

static const sort_field rollout_fields[] = {
    {"rollout_id", "r.rollout_id", SORT_STR},
    {"input", "r.input", SORT_JSON},
    {"start_time", "r.start_time", SORT_TIME},
    {"end_time", "r.end_time", SORT_TIME},
    {"mode", "r.mode", SORT_STR},
    {"resources_id", "r.resources_id", SORT_STR},
    {"status", "r.status", SORT_STR},
    {"config", "json_build_array(r.timeout_seconds, r.unresponsive_seconds, r.max_attempts)",
     SORT_JSON},
    {"metadata", "r.metadata", SORT_JSON},
    {NULL, NULL, 0},
};

/* Runs a list query and writes the PaginatedResult; write_row renders one row. */
typedef void (*row_writer)(agl_req *r, const PGresult *res, int row);

static agl_code run_list(agl_req *r, db_conn *db, list_sql *s, const list_q *q, const char *cols,
                         const char *from, const char *scope, const sort_field *fields,
                         const char *pos_col, int ncols, row_writer write_row, agl_error *err)
{
    agl_buf sql;
    agl_buf_init(&sql);
    list_build(s, &sql, cols, from, scope, q, fields, pos_col);
    PGresult *res = db_exec_dynamic(db, sql.data, s->n, s->params, err);
    agl_buf_free(&sql);
    if (!res) return err->code;
    int rows = PQntuples(res);
    int64_t total = rows ? db_int(res, 0, ncols) : 0;
    agl_page_begin(&r->out);
    for (int i = 0; i < rows; i++) {
        if (i) agl_buf_putc(&r->out, ',');
        write_row(r, res, i);
    }
    PQclear(res);
    if (rows == 0 && q->offset > 0) {
        /* Past the end: the window count is unavailable, count separately. */
        agl_buf_init(&sql);
        list_build_count(s, &sql, from, scope);
        res = db_exec_dynamic(db, sql.data, s->n - 2, s->params, err);
        agl_buf_free(&sql);
        if (!res) return err->code;
        total = db_int(res, 0, 0);
        PQclear(res);
    }
    agl_page_end(&r->out, q->limit, q->offset, total);
    return AGL_OK;
}

static void write_rollout_row(agl_req *r, const PGresult *res, int row)
{
    agl_rollout ro;
    agl_attempt at;
    store_row_rollout(res, row, 0, &r->arena, &ro);
    bool has = store_row_attempt(res, row, DB_ROLLOUT_NCOLS, &r->arena, &at);
    agl_attempted_rollout_write(&r->out, &ro, has ? &at : NULL);
}

static agl_code list_rollouts(agl_req *r, const json_t *body, agl_error *err)
{
    list_q q;
    const char **status_in, **id_in;
    int nstatus, nid;
    bool has_status, has_id;
    const char *contains;
    agl_code code;
    if ((code = list_str_array(r, body, "status_in", &status_in, &nstatus, &has_status, err)) ||
        (code = list_str_array(r, body, "rollout_id_in", &id_in, &nid, &has_id, err)) ||
        (code = list_str(r, body, "rollout_id_contains", &contains, err)))
        return code;
    for (int i = 0; i < nstatus; i++)
        if (agl_rollout_status_from(status_in[i]) < 0)
            return agl_error_set(
                err, AGL_E_INVALID,
                agl_arena_printf(&r->arena, "%s.status_in.%d", body ? "body" : "query", i),
                "input should be a valid rollout status");
    if ((code = list_q_parse(r, body, rollout_fields, NULL, &q, err))) return code;
    db_conn *db;
    if ((code = req_db_single(r, &db, err))) return code;
    list_sql s;
    list_sql_init(&s, &r->arena, q.or_logic);
    if (has_status)
        list_cond(
            &s, agl_arena_printf(&r->arena, "r.status = ANY(%s::text[])",
                                 list_param(&s, store_text_array(&r->arena, status_in, nstatus))));
    if (has_id)
        list_cond(&s, agl_arena_printf(&r->arena, "r.rollout_id = ANY(%s::text[])",
                                       list_param(&s, store_text_array(&r->arena, id_in, nid))));
    if (contains)
        list_cond(&s, agl_arena_printf(&r->arena, "strpos(r.rollout_id, %s::text) > 0",
                                       list_param(&s, contains)));
    code = run_list(r, db, &s, &q, DB_ROLLOUT_COLS ", " DB_ATTEMPT_COLS,
                    "rollouts r LEFT JOIN attempts a ON a.rollout_id = r.rollout_id AND "
                    "a.sequence_id = r.num_attempts",
                    NULL, rollout_fields, "r.pos", DB_ROLLOUT_NCOLS + DB_ATTEMPT_NCOLS,
                    write_rollout_row, err);
    list_sql_free(&s);
    return code;
}

static agl_code h_list_rollouts(agl_req *r, agl_error *err)
{
    return list_rollouts(r, NULL, err);
}

static agl_code search_body(agl_req *r, json_t **body, agl_error *err)
{
    agl_code code = req_json(r, true, body, err);
    if (code) return code;
    if (json_is_null(*body)) {
        json_decref(r->json);
        r->json = json_object();
        *body = r->json;
    }
    return need_object(*body, "body", err);
}

static agl_code h_search_rollouts(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = search_body(r, &body, err);
    return code ? code : list_rollouts(r, body, err);
}

/* ---- attempts ---- */

static const sort_field attempt_fields[] = {
    {"rollout_id", "a.rollout_id", SORT_STR},
    {"attempt_id", "a.attempt_id", SORT_STR},
    {"sequence_id", "a.sequence_id", SORT_NUM},
    {"start_time", "a.start_time", SORT_TIME},
    {"end_time", "a.end_time", SORT_TIME},
    {"status", "a.status", SORT_STR},
    {"worker_id", "a.worker_id", SORT_STR},
    {"last_heartbeat_time", "a.last_heartbeat_time", SORT_TIME},
    {"metadata", "a.metadata", SORT_JSON},
    {NULL, NULL, 0},
};

static void write_attempt_row(agl_req *r, const PGresult *res, int row)
{
    agl_attempt at;
    store_row_attempt(res, row, 0, &r->arena, &at);
    agl_attempt_write(&r->out, &at);
}

static agl_code list_attempts(agl_req *r, const json_t *body, agl_error *err)
{
    list_q q;
    agl_code code = list_q_parse(r, body, attempt_fields, "sequence_id", &q, err);
    if (code) return code;
    db_conn *db;
    if ((code = req_db_single(r, &db, err))) return code;
    list_sql s;
    list_sql_init(&s, &r->arena, false);
    const char *scope =
        agl_arena_printf(&r->arena, "a.rollout_id = %s", list_param(&s, r->param[0]));
    code = run_list(r, db, &s, &q, DB_ATTEMPT_COLS, "attempts a", scope, attempt_fields, "a.pos",
                    DB_ATTEMPT_NCOLS, write_attempt_row, err);
    list_sql_free(&s);
    return code;
}

static agl_code h_list_attempts(agl_req *r, agl_error *err)
{
    return list_attempts(r, NULL, err);
}

static agl_code h_search_attempts(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = search_body(r, &body, err);
    return code ? code : list_attempts(r, body, err);
}

static agl_code h_latest_attempt(agl_req *r, agl_error *err)
{
    db_conn *db;
    agl_code code = req_db_single(r, &db, err);
    if (code) return code;
    PGresult *res = db_exec(db, SQL_ATTEMPT_GET_LATEST, 1, P(r->param[0]), err);
    if (!res) return err->code;
    agl_attempt at;
    if (PQntuples(res) && store_row_attempt(res, 0, 0, &r->arena, &at))
        agl_attempt_write(&r->out, &at);
    else
        agl_buf_puts(&r->out, "null");
    PQclear(res);
    return AGL_OK;
}

static agl_code h_update_attempt(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, false, &body, err);
    if (code || (code = need_object(body, "body", err))) return code;
    static const char *const keys[] = {"status", "worker_id", "last_heartbeat_time", "metadata"};
    for (int i = 0; i < 4; i++)
        if ((code = not_null(body, keys[i], err))) return code;
    store_attempt_patch p;
    memset(&p, 0, sizeof p);
    json_t *v;
    if ((v = json_object_get(body, "status"))) {
        p.has_status = true;
        p.status = json_is_string(v) ? agl_attempt_status_from(json_string_value(v)) : -1;
        if (p.status < 0)
            return agl_error_set(err, AGL_E_INVALID, "body.status",
                                 "input should be 'preparing', 'running', 'failed', 'succeeded', "
                                 "'unresponsive' or 'timeout'");
    }
    if ((v = json_object_get(body, "worker_id"))) {
        p.has_worker_id = true;
        if ((code = opt_string(r, body, "worker_id", &p.worker_id, err))) return code;
    }
    if ((v = json_object_get(body, "last_heartbeat_time"))) {
        if (!json_is_number(v))
            return agl_error_set(err, AGL_E_INVALID, "body.last_heartbeat_time",
                                 "input should be a valid number");
        p.has_last_heartbeat_time = true;
        p.last_heartbeat_time = json_number_value(v);
    }
    if ((v = json_object_get(body, "metadata"))) {
        p.has_metadata = true;
        if ((code = opt_metadata(r, v, "body.metadata", P("metadata"), 1, &p.metadata, err)))
            return code;
    }
    db_conn *db;
    if ((code = req_db(r, &db, err))) return code;
    store_tx t = tx_of(r, db);
    agl_attempt at;
    code = store_attempt_update(&t, r->param[0], r->param[1], &p, &at, err);
    if (code == AGL_OK) agl_attempt_write(&r->out, &at);
    return tx_end(r, &t, code);
}

/* ---- workers ---- */

static const sort_field worker_fields[] = {
    {"worker_id", "worker_id", SORT_STR},
    {"status", "status", SORT_STR},
    {"heartbeat_stats", "heartbeat_stats", SORT_JSON},
    {"last_heartbeat_time", "last_heartbeat_time", SORT_TIME},
    {"last_dequeue_time", "last_dequeue_time", SORT_TIME},
    {"last_busy_time", "last_busy_time", SORT_TIME},
    {"last_idle_time", "last_idle_time", SORT_TIME},
    {"current_rollout_id", "current_rollout_id", SORT_STR},
    {"current_attempt_id", "current_attempt_id", SORT_STR},
    {NULL, NULL, 0},
};

static void write_worker_row(agl_req *r, const PGresult *res, int row)
{
    agl_worker w;
    store_row_worker(res, row, 0, &r->arena, &w);
    agl_worker_write(&r->out, &w);
}

static agl_code list_workers(agl_req *r, const json_t *body, agl_error *err)
{
    list_q q;
    const char **status_in;
    int nstatus;
    bool has_status;
    const char *contains;
    agl_code code;
    if ((code = list_str_array(r, body, "status_in", &status_in, &nstatus, &has_status, err)) ||
        (code = list_str(r, body, "worker_id_contains", &contains, err)))
        return code;
    for (int i = 0; i < nstatus; i++)
        if (agl_worker_status_from(status_in[i]) < 0)
            return agl_error_set(
                err, AGL_E_INVALID,
                agl_arena_printf(&r->arena, "%s.status_in.%d", body ? "body" : "query", i),
                "input should be 'idle', 'busy' or 'unknown'");
    if ((code = list_q_parse(r, body, worker_fields, NULL, &q, err))) return code;
    db_conn *db;
    if ((code = req_db_single(r, &db, err))) return code;
    list_sql s;
    list_sql_init(&s, &r->arena, q.or_logic);
    if (has_status)
        list_cond(
            &s, agl_arena_printf(&r->arena, "status = ANY(%s::text[])",
                                 list_param(&s, store_text_array(&r->arena, status_in, nstatus))));
    if (contains)
        list_cond(&s, agl_arena_printf(&r->arena, "strpos(worker_id, %s::text) > 0",
                                       list_param(&s, contains)));
    code = run_list(r, db, &s, &q, DB_WORKER_COLS, "workers", NULL, worker_fields, "pos", 9,
                    write_worker_row, err);
    list_sql_free(&s);
    return code;
}

static agl_code h_list_workers(agl_req *r, agl_error *err)
{
    return list_workers(r, NULL, err);
}

static agl_code h_search_workers(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = search_body(r, &body, err);
    return code ? code : list_workers(r, body, err);
}

static agl_code h_get_worker(agl_req *r, agl_error *err)
{
    db_conn *db;
    agl_code code = req_db_single(r, &db, err);
    if (code) return code;
    PGresult *res = db_exec(db, SQL_WORKER_GET, 1, P(r->param[0]), err);
    if (!res) return err->code;
    if (PQntuples(res))
        write_worker_row(r, res, 0);
    else
        agl_buf_puts(&r->out, "null");
    PQclear(res);
    return AGL_OK;
}

static agl_code h_update_worker(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, true, &body, err);
    if (code) return code;
    const char *stats = NULL;
    bool has_stats = false;
    if (!json_is_null(body)) {
        if ((code = need_object(body, "body", err))) return code;
        if ((code = not_null(body, "heartbeat_stats", err))) return code;
        json_t *v = json_object_get(body, "heartbeat_stats");
        if (v) {
            has_stats = true;
            if ((code = opt_metadata(r, v, "body.heartbeat_stats", P("heartbeat_stats"), 1, &stats,
                                     err)))
                return code;
        }
    }
    db_conn *db;
    if ((code = req_db_single(r, &db, err))) return code;
    PGresult *res = db_exec(
        db, SQL_WORKER_HEARTBEAT, 4,
        P(r->param[0], stats, store_fmt_double(&r->arena, agl_now()), has_stats ? "t" : "f"), err);
    if (!res) return err->code;
    write_worker_row(r, res, 0);
    PQclear(res);
    return AGL_OK;
}

/* ---- resources ---- */

static const sort_field resources_fields[] = {
    {"resources_id", "resources_id", SORT_STR}, {"create_time", "create_time", SORT_TIME},
    {"update_time", "update_time", SORT_TIME},  {"version", "version", SORT_NUM},
    {"resources", "resources", SORT_JSON},      {NULL, NULL, 0},
};

static void write_resources_row(agl_req *r, const PGresult *res, int row)
{
    agl_resources_update u;
    store_row_resources(res, row, 0, &r->arena, &u);
    agl_resources_update_write(&r->out, &u);
}

static agl_code h_list_resources(agl_req *r, agl_error *err)
{
    list_q q;
    const char *exact, *contains;
    agl_code code;
    if ((code = list_str(r, NULL, "resources_id", &exact, err)) ||
        (code = list_str(r, NULL, "resources_id_contains", &contains, err)) ||
        (code = list_q_parse(r, NULL, resources_fields, NULL, &q, err)))
        return code;
    db_conn *db;
    if ((code = req_db_single(r, &db, err))) return code;
    list_sql s;
    list_sql_init(&s, &r->arena, false); /* always AND (§5.3) */
    if (exact)
        list_cond(&s,
                  agl_arena_printf(&r->arena, "resources_id = %s::text", list_param(&s, exact)));
    if (contains)
        list_cond(&s, agl_arena_printf(&r->arena, "strpos(resources_id, %s::text) > 0",
                                       list_param(&s, contains)));
    code = run_list(r, db, &s, &q, DB_RESOURCES_COLS, "resources", NULL, resources_fields, "pos", 5,
                    write_resources_row, err);
    list_sql_free(&s);
    return code;
}

static agl_code write_resources(agl_req *r, bool upsert, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, false, &body, err);
    if (code || (code = need_object(body, "body", err))) return code;
    const char *norm;
    if ((code = agl_named_resources_parse(body, "body", &r->arena, &norm, err))) return code;
    char id[32];
    if (!upsert) agl_id_new(id, sizeof id, "rs-", 12);
    db_conn *db;
    if ((code = req_db_single(r, &db, err))) return code;
    PGresult *res =
        db_exec(db, upsert ? SQL_RESOURCES_UPSERT : SQL_RESOURCES_INSERT, 3,
                P(upsert ? r->param[0] : id, store_fmt_double(&r->arena, agl_now()), norm), err);
    if (!res) return err->code;
    write_resources_row(r, res, 0);
    PQclear(res);
    r->status = upsert ? 200 : 201;
    return AGL_OK;
}

static agl_code h_add_resources(agl_req *r, agl_error *err)
{
    return write_resources(r, false, err);
}

static agl_code h_update_resources(agl_req *r, agl_error *err)
{
    return write_resources(r, true, err);
}

static agl_code get_resources(agl_req *r, db_stmt s, int n, const char *const *params,
                              agl_error *err)
{
    db_conn *db;
    agl_code code = req_db_single(r, &db, err);
    if (code) return code;
    PGresult *res = db_exec(db, s, n, params, err);
    if (!res) return err->code;
    if (PQntuples(res))
        write_resources_row(r, res, 0);
    else
        agl_buf_puts(&r->out, "null");
    PQclear(res);
    return AGL_OK;
}

static agl_code h_latest_resources(agl_req *r, agl_error *err)
{
    return get_resources(r, SQL_RESOURCES_LATEST, 0, NULL, err);
}

static agl_code h_get_resources(agl_req *r, agl_error *err)
{
    return get_resources(r, SQL_RESOURCES_GET, 1, P(r->param[0]), err);
}

/* ---- spans ---- */

static agl_code h_add_span(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, false, &body, err);
    if (code) return code;
    agl_span sp;
    if ((code = agl_span_parse(body, "body", &r->arena, &sp, err))) return code;
    db_conn *db;
    if ((code = req_db_single(r, &db, err))) return code;
    store_tx t = tx_of(r, db);
    bool inserted = false;
    if ((code = store_span_add_one(&t, &sp, &inserted, err))) return code;
    if (inserted)
        agl_span_write(&r->out, &sp);
    else
        agl_buf_puts(&r->out, "null"); /* duplicate (rollout, attempt, span_id) */
    r->status = 201;
    return AGL_OK;
}

/* agl extension: a JSON array of {rollout_id, attempt_id} allocates one id per element in one
 * statement and answers an array of {"sequence_id": n} in the same order. runnerd's LLM proxy
 * sends its concurrent calls' allocations this way (docs/compat.md). */
#define NEXT_SEQ_MAX_BATCH 4096

static agl_code next_seq_batch(agl_req *r, json_t *body, agl_error *err)
{
    size_t n = json_array_size(body);
    if (n > NEXT_SEQ_MAX_BATCH)
        return agl_error_set(err, AGL_E_INVALID, "body", "at most 4096 allocations per request");
    const char **rids = agl_arena_alloc(&r->arena, (n ? n : 1) * sizeof *rids);
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(body, i);
        json_t *rid = json_object_get(it, "rollout_id"), *aid = json_object_get(it, "attempt_id");
        const char *why = !json_is_object(it)           ? "input should be a valid dictionary"
                          : !rid                        ? "field required"
                          : !json_is_string(rid)        ? "input should be a valid string"
                          : aid && !json_is_string(aid) ? "input should be a valid string"
                          : !aid                        ? "field required"
                                                        : NULL;
        if (why) {
            const char *field =
                !json_is_object(it) || !rid || !json_is_string(rid) ? "rollout_id" : "attempt_id";
            return agl_error_set(err, AGL_E_INVALID,
                                 json_is_object(it)
                                     ? agl_arena_printf(&r->arena, "body.%zu.%s", i, field)
                                     : agl_arena_printf(&r->arena, "body.%zu", i),
                                 why);
        }
        rids[i] = json_string_value(rid);
    }
    db_conn *db;
    agl_code code;
    if ((code = req_db_single(r, &db, err))) return code;
    store_tx t = tx_of(r, db);
    int64_t *seq = agl_arena_alloc(&r->arena, (n ? n : 1) * sizeof *seq);
    if ((code = store_span_seq_next_many(&t, rids, n, seq, err))) return code;
    agl_buf_putc(&r->out, '[');
    for (size_t i = 0; i < n; i++)
        agl_buf_printf(&r->out, "%s{\"sequence_id\":%" PRId64 "}", i ? "," : "", seq[i]);
    agl_buf_putc(&r->out, ']');
    return AGL_OK;
}

static agl_code h_next_seq(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, false, &body, err);
    if (code) return code;
    if (json_is_array(body)) return next_seq_batch(r, body, err);
    if ((code = need_object(body, "body", err))) return code;
    json_t *rid = json_object_get(body, "rollout_id");
    json_t *aid = json_object_get(body, "attempt_id");
    if (!rid || !json_is_string(rid))
        return agl_error_set(err, AGL_E_INVALID, "body.rollout_id",
                             rid ? "input should be a valid string" : "field required");
    if (!aid || !json_is_string(aid))
        return agl_error_set(err, AGL_E_INVALID, "body.attempt_id",
                             aid ? "input should be a valid string" : "field required");
    db_conn *db;
    if ((code = req_db_single(r, &db, err))) return code;
    store_tx t = tx_of(r, db);
    int64_t seq;
    if ((code = store_span_seq_next(&t, json_string_value(rid), &seq, err))) return code;
    agl_buf_printf(&r->out, "{\"sequence_id\":%" PRId64 "}", seq);
    return AGL_OK;
}

static const sort_field span_fields[] = {
    {"rollout_id", "s.rollout_id", SORT_STR},
    {"attempt_id", "s.attempt_id", SORT_STR},
    {"sequence_id", "s.sequence_id", SORT_NUM},
    {"trace_id", "s.trace_id", SORT_STR},
    {"span_id", "s.span_id", SORT_STR},
    {"parent_id", "s.parent_id", SORT_STR},
    {"name", "s.name", SORT_STR},
    {"status", "s.doc->'status'", SORT_JSON},
    {"attributes", "s.doc->'attributes'", SORT_JSON},
    {"events", "s.doc->'events'", SORT_JSON},
    {"links", "s.doc->'links'", SORT_JSON},
    {"start_time", "s.start_time", SORT_TIME},
    {"end_time", "s.end_time", SORT_TIME},
    {"context", "s.doc->'context'", SORT_JSON},
    {"parent", "s.doc->'parent'", SORT_JSON},
    {"resource", "s.doc->'resource'", SORT_JSON},
    {NULL, NULL, 0},
};

static void write_span_row(agl_req *r, const PGresult *res, int row)
{
    agl_buf_puts(&r->out, PQgetvalue(res, row, 0));
}

static agl_code list_spans(agl_req *r, const json_t *body, agl_error *err)
{
    const char *rollout_id, *attempt_id;
    agl_code code;
    if ((code = list_str(r, body, "rollout_id", &rollout_id, err)) ||
        (code = list_str(r, body, "attempt_id", &attempt_id, err)))
        return code;
    if (!rollout_id)
        return agl_error_set(err, AGL_E_INVALID, body ? "body.rollout_id" : "query.rollout_id",
                             "field required");
    static const char *const cols[] = {"trace_id", "span_id", "parent_id", "name"};
    const char *eq[4], *contains[4];
    for (int i = 0; i < 4; i++) {
        char key[32];
        if ((code = list_str(r, body, cols[i], &eq[i], err))) return code;
        snprintf(key, sizeof key, "%s_contains", cols[i]);
        if ((code = list_str(r, body, key, &contains[i], err))) return code;
    }
    list_q q;
    if ((code = list_q_parse(r, body, span_fields, "sequence_id", &q, err))) return code;
    db_conn *db;
    if ((code = req_db_single(r, &db, err))) return code;
    if (attempt_id && !strcmp(attempt_id, "latest")) {
        PGresult *res = db_exec(db, SQL_ATTEMPT_GET_LATEST, 1, P(rollout_id), err);
        if (!res) return err->code;
        bool none = PQntuples(res) == 0;
        attempt_id = none ? NULL : agl_arena_strdup(&r->arena, PQgetvalue(res, 0, 1));
        PQclear(res);
        if (none) {
            agl_page_begin(&r->out);
            agl_page_end(&r->out, q.limit, q.offset, 0);
            return AGL_OK;
        }
    }
    list_sql s;
    list_sql_init(&s, &r->arena, q.or_logic);
    const char *scope =
        agl_arena_printf(&r->arena, "s.rollout_id = %s::text", list_param(&s, rollout_id));
    if (attempt_id)
        scope = agl_arena_printf(&r->arena, "%s AND s.attempt_id = %s::text", scope,
                                 list_param(&s, attempt_id));
    for (int i = 0; i < 4; i++) {
        if (eq[i])
            list_cond(
                &s, agl_arena_printf(&r->arena, "s.%s = %s::text", cols[i], list_param(&s, eq[i])));
        if (contains[i])
            list_cond(&s, agl_arena_printf(&r->arena, "strpos(s.%s, %s::text) > 0", cols[i],
                                           list_param(&s, contains[i])));
    }
    code = run_list(r, db, &s, &q, "s.doc", "spans s", scope, span_fields, "s.pos", 1,
                    write_span_row, err);
    list_sql_free(&s);
    return code;
}

static agl_code h_list_spans(agl_req *r, agl_error *err)
{
    return list_spans(r, NULL, err);
}

static agl_code h_search_spans(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = search_body(r, &body, err);
    return code ? code : list_spans(r, body, err);
}

/* ---- E28 wait_for_rollouts ---- */

static agl_code h_wait(agl_req *r, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, false, &body, err);
    if (code || (code = need_object(body, "body", err))) return code;
    json_t *ids = json_object_get(body, "rollout_ids");
    if (!ids) return agl_error_set(err, AGL_E_INVALID, "body.rollout_ids", "field required");
    if (!json_is_array(ids))
        return agl_error_set(err, AGL_E_INVALID, "body.rollout_ids",
                             "input should be a valid list");
    size_t n = json_array_size(ids);
    const char **idv = agl_arena_alloc(&r->arena, sizeof *idv * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(ids, i);
        if (!json_is_string(e))
            return agl_error_set(err, AGL_E_INVALID,
                                 agl_arena_printf(&r->arena, "body.rollout_ids.%zu", i),
                                 "input should be a valid string");
        idv[i] = json_string_value(e);
    }
    json_t *to = json_object_get(body, "timeout");
    bool forever = !to || json_is_null(to);
    if (!forever && !json_is_number(to))
        return agl_error_set(err, AGL_E_INVALID, "body.timeout", "input should be a valid number");
    double timeout = forever ? 0 : json_number_value(to);
    double deadline = agl_monotonic() + timeout;
    const char *arr = store_text_array(&r->arena, idv, (int)n);
    stored_ctx *ctx = r->ctx;

    for (;;) {
        pthread_mutex_lock(&ctx->done_mu);
        uint64_t gen = ctx->done_gen;
        pthread_mutex_unlock(&ctx->done_mu);

        db_conn *db;
        if ((code = req_db_single(r, &db, err))) return code;
        PGresult *res = db_exec(db, SQL_WAIT_STATUS, 1, P(arr), err);
        if (!res) return err->code;
        int rows = PQntuples(res);
        agl_rollout *rs = agl_arena_alloc(&r->arena, sizeof *rs * (size_t)(rows ? rows : 1));
        bool pending = false;
        for (int i = 0; i < rows; i++) {
            store_row_rollout(res, i, 0, &r->arena, &rs[i]);
            pending |= !agl_rollout_status_terminal(rs[i].status);
        }
        PQclear(res);
        bool expired = !forever && agl_monotonic() >= deadline;
        if (!pending || expired || ctx->stopping) {
            /* Finished ones, in request order (duplicates repeat). */
            agl_buf_putc(&r->out, '[');
            bool first = true;
            for (size_t i = 0; i < n; i++)
                for (int k = 0; k < rows; k++)
                    if (!strcmp(rs[k].rollout_id, idv[i]) &&
                        agl_rollout_status_terminal(rs[k].status)) {
                        if (!first) agl_buf_putc(&r->out, ',');
                        first = false;
                        agl_rollout_write(&r->out, &rs[k]);
                    }
            agl_buf_putc(&r->out, ']');
            return AGL_OK;
        }
        /* Give the connection back while sleeping: waiters must not starve the pool. */
        if ((code = req_db_done(r, err))) return code;
        double now = agl_monotonic();
        double wake = forever ? now + 5 : (deadline < now + 5 ? deadline : now + 5);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double abs = (double)ts.tv_sec + ts.tv_nsec / 1e9 + (wake - now);
        ts.tv_sec = (time_t)abs;
        ts.tv_nsec = (long)((abs - (double)ts.tv_sec) * 1e9);
        pthread_mutex_lock(&ctx->done_mu);
        while (ctx->done_gen == gen && !ctx->stopping) {
            if (pthread_cond_timedwait(&ctx->done_cv, &ctx->done_mu, &ts) != 0) break;
        }
        pthread_mutex_unlock(&ctx->done_mu);
    }
}

/* ---- OTLP ---- */

static agl_code h_traces(agl_req *r, agl_error *err)
{
    r->proto_errors = true;
    const char *ctype = req_header(r, "Content-Type");
    char media[128] = "";
    if (ctype) {
        size_t n = strcspn(ctype, ";");
        while (n && ctype[n - 1] == ' ') n--;
        snprintf(media, sizeof media, "%.*s", (int)n, ctype);
    }
    bool json = !strcmp(media, "application/json");
    if (!json && strcmp(media, "application/x-protobuf"))
        return agl_error_set(err, AGL_E_BAD_REQUEST, NULL,
                             "Unsupported Content-Type '%s', expected 'application/x-protobuf' "
                             "or 'application/json'",
                             media);
    const uint8_t *data = (const uint8_t *)r->body.data;
    size_t len = r->body.len;
    const char *enc = req_header(r, "Content-Encoding");
    agl_code code;
    if (enc && !strcasecmp(enc, "gzip")) {
        uint8_t *out;
        size_t outlen;
        if ((code = agl_gunzip(data, len, 64u << 20, &r->arena, &out, &outlen, err))) return code;
        data = out;
        len = outlen;
    }
    agl_otlp_span *spans = NULL;
    size_t n = 0, skipped = 0;
    if (len) {
        code = json ? agl_otlp_decode_json((const char *)data, len, &r->arena, &spans, &n, &skipped,
                                           err)
                    : agl_otlp_decode_protobuf(data, len, &r->arena, &spans, &n, &skipped, err);
        if (code) return code;
    }
    if (skipped) agl_debug("otlp: %zu spans without rollout/attempt ids skipped", skipped);
    r->content_type = json ? "application/json" : "application/x-protobuf";
    if (json) agl_buf_puts(&r->out, "{}");
    if (!n) return AGL_OK;

    db_conn *db;
    if ((code = req_db(r, &db, err))) return code;
    store_tx t = tx_of(r, db);
    /* Missing sequence ids: allocated per rollout in document order (§5.1). */
    bool *done = agl_arena_calloc(&r->arena, n);
    for (size_t i = 0; i < n; i++) {
        if (done[i] || spans[i].has_sequence_id) continue;
        int64_t count = 0;
        for (size_t k = i; k < n; k++)
            if (!spans[k].has_sequence_id && !strcmp(spans[k].rollout_id, spans[i].rollout_id))
                count++;
        int64_t next;
        if ((code = store_span_counter_next(&t, spans[i].rollout_id, count, &next, err)))
            return code;
        for (size_t k = i; k < n; k++)
            if (!spans[k].has_sequence_id && !done[k] &&
                !strcmp(spans[k].rollout_id, spans[i].rollout_id)) {
                spans[k].sequence_id = next++;
                spans[k].has_sequence_id = true;
                done[k] = true;
            }
    }
    /* Insert grouped by (rollout, attempt) in order of first appearance (§6.4). */
    memset(done, 0, n);
    agl_span *group = agl_arena_alloc(&r->arena, sizeof *group * n);
    bool *inserted = agl_arena_alloc(&r->arena, n);
    for (size_t i = 0; i < n; i++) {
        if (done[i]) continue;
        int g = 0;
        int64_t max_seq = 0;
        for (size_t k = i; k < n; k++) {
            if (done[k] || strcmp(spans[k].rollout_id, spans[i].rollout_id) ||
                strcmp(spans[k].attempt_id, spans[i].attempt_id))
                continue;
            done[k] = true;
            agl_otlp_span *o = &spans[k];
            agl_span *s = &group[g++];
            memset(s, 0, sizeof *s);
            s->rollout_id = o->rollout_id;
            s->attempt_id = o->attempt_id;
            s->sequence_id = o->sequence_id;
            s->trace_id = o->trace_id;
            s->span_id = o->span_id;
            s->parent_id = o->parent_id;
            s->name = o->name;
            s->has_start_time = o->has_start_time;
            s->start_time = o->start_time;
            s->has_end_time = o->has_end_time;
            s->end_time = o->end_time;
            agl_buf b;
            agl_buf_init(&b);
            agl_buf_puts(&b, "{\"rollout_id\":");
            agl_buf_json_str(&b, o->rollout_id);
            agl_buf_puts(&b, ",\"attempt_id\":");
            agl_buf_json_str(&b, o->attempt_id);
            agl_buf_printf(&b, ",\"sequence_id\":%" PRId64 ",", o->sequence_id);
            agl_buf_put(&b, o->rest_json, o->rest_len);
            agl_buf_putc(&b, '}');
            s->json = agl_arena_strndup(&r->arena, b.data, b.len);
            agl_buf_free(&b);
            if (o->sequence_id > max_seq) max_seq = o->sequence_id;
        }
        if ((code = store_span_counter_raise(&t, spans[i].rollout_id, max_seq, err))) return code;
        if ((code = store_spans_insert(&t, spans[i].rollout_id, spans[i].attempt_id, group, g,
                                       inserted, err)))
            return code;
    }
    return AGL_OK;
}

static agl_code h_not_implemented(agl_req *r, agl_error *err)
{
    r->status = 501;
    return AGL_OK;
}

/* ---- route table ---- */

typedef struct route {
    const char *method;
    const char *pattern; /* "{}" = one path segment parameter */
    agl_handler fn;
    bool scan; /* runs the unhealthy-attempt scan first (§4.5) */
} route;

static const route routes[] = {
    {"GET", "/v1/agl/health", h_health, false},
    {"POST", "/v1/agl/queues/rollouts/enqueue", h_enqueue, true},
    {"POST", "/v1/agl/queues/rollouts/dequeue", h_dequeue, true},
    {"POST", "/v1/agl/rollouts", h_start_rollout, true},
    {"GET", "/v1/agl/rollouts", h_list_rollouts, true},
    {"POST", "/v1/agl/rollouts/search", h_search_rollouts, true},
    {"GET", "/v1/agl/rollouts/{}", h_get_rollout, true},
    {"POST", "/v1/agl/rollouts/{}", h_update_rollout, true},
    {"POST", "/v1/agl/rollouts/{}/attempts", h_start_attempt, true},
    {"POST", "/v1/agl/rollouts/{}/attempts/search", h_search_attempts, true},
    {"POST", "/v1/agl/rollouts/{}/attempts/{}", h_update_attempt, true},
    {"GET", "/v1/agl/workers", h_list_workers, true},
    {"POST", "/v1/agl/workers/search", h_search_workers, true},
    {"GET", "/v1/agl/workers/{}", h_get_worker, false},
    {"POST", "/v1/agl/workers/{}", h_update_worker, false},
    {"GET", "/v1/agl/statistics", h_statistics, false},
    {"GET", "/v1/agl/rollouts/{}/attempts", h_list_attempts, true},
    {"GET", "/v1/agl/rollouts/{}/attempts/latest", h_latest_attempt, true},
    {"GET", "/v1/agl/resources", h_list_resources, false},
    {"POST", "/v1/agl/resources", h_add_resources, false},
    {"GET", "/v1/agl/resources/latest", h_latest_resources, false},
    {"POST", "/v1/agl/resources/{}", h_update_resources, true},
    {"GET", "/v1/agl/resources/{}", h_get_resources, false},
    {"POST", "/v1/agl/spans", h_add_span, false},
    {"GET", "/v1/agl/spans", h_list_spans, true},
    {"POST", "/v1/agl/spans/search", h_search_spans, true},
    {"POST", "/v1/agl/spans/next", h_next_seq, false},
    {"POST", "/v1/agl/waits/rollouts", h_wait, true},
    /* extensions (docs/api.md) */
    {"POST", "/v1/agl/triplets/search", adapter_h_triplets_search, false},
    {"GET", "/v1/agl/rollouts/{}/triplets", adapter_h_rollout_triplets, false},
    {"POST", "/v1/agl/messages/search", adapter_h_messages_search, false},
    {"GET", "/v1/agl/rollouts/{}/messages", adapter_h_rollout_messages, false},
    {"GET", "/metrics", metrics_h_metrics, false},
    {"POST", "/v1/traces", h_traces, false},
    {"POST", "/v1/metrics", h_not_implemented, false},
    {"POST", "/v1/logs", h_not_implemented, false},
    {"POST", "/v1/development/profiles", h_not_implemented, false},
};

/* Matches path against pattern; fills params (arena copies). */
static bool match(agl_req *r, const char *pattern, const char *path, const char **params, int *np)
{
    *np = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/') return false;
        p++, s++;
        const char *pe = strchr(p, '/');
        const char *se = strchr(s, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t sl = se ? (size_t)(se - s) : strlen(s);
        if (pl == 2 && !strncmp(p, "{}", 2)) {
            if (sl == 0 || *np == 3) return false;
            params[(*np)++] = agl_arena_strndup(&r->arena, s, sl);
        } else if (pl != sl || strncmp(p, s, pl)) {
            return false;
        }
        p += pl, s += sl;
    }
    return !*p && !*s;
}

agl_code stored_dispatch(agl_req *r, agl_error *err)
{
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const char *params[3];
        int np;
        if (!match(r, routes[i].pattern, r->path, params, &np)) continue;
        path_known = true;
        if (strcmp(routes[i].method, r->method)) continue;
        memcpy(r->param, params, sizeof params);
        r->nparam = np;
        r->route = routes[i].pattern;
        if (routes[i].scan) stored_scan_maybe(r->ctx, false);
        return routes[i].fn(r, err);
    }
    if (path_known) return agl_error_set(err, AGL_E_METHOD, NULL, "Method Not Allowed");
    return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "Not Found");
}
