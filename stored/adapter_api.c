/* adapter_api — triplets and messages endpoints: select a page of rollouts with the list
 * machinery (filters travel as $n parameters), load the spans of their latest attempts in one
 * query, run the adapters, and write one item per rollout. */
#include "adapter_api.h"
#include "adapter.h"
#include "agl_model.h"
#include "db_sql_ext.h"
#include "list.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P(...) ((const char *const[]){__VA_ARGS__})

typedef enum { OUT_TRIPLETS, OUT_MESSAGES } out_kind;

typedef struct req_opts {
    adapter_opts ad;
    bool trajectory;
} req_opts;

/* One selected rollout. */
typedef struct sel {
    const char *rollout_id, *status, *mode, *resources_id, *attempt_id;
} sel;

/* ---- option parsing (JSON body for POST, query string for GET) ---- */

static const char *loc_of(agl_req *r, const json_t *body, const char *key)
{
    return agl_arena_printf(&r->arena, "%s.%s", body ? "body" : "query", key);
}

static agl_code get_bool(agl_req *r, const json_t *body, const char *key, bool *out, agl_error *err)
{
    if (body) {
        json_t *v = json_object_get(body, key);
        if (!v || json_is_null(v)) return AGL_OK;
        if (!json_is_boolean(v))
            return agl_error_set(err, AGL_E_INVALID, loc_of(r, body, key),
                                 "input should be a valid boolean");
        *out = json_is_true(v);
        return AGL_OK;
    }
    const char *s = req_query(r, key);
    if (!s) return AGL_OK;
    if (!strcmp(s, "true") || !strcmp(s, "1"))
        *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "0"))
        *out = false;
    else
        return agl_error_set(err, AGL_E_INVALID, loc_of(r, body, key),
                             "input should be a valid boolean");
    return AGL_OK;
}

/* An enumerated string option: *idx receives the position of the value in names. */
static agl_code get_choice(agl_req *r, const json_t *body, const char *key,
                           const char *const *names, int *idx, agl_error *err)
{
    const char *v;
    agl_code code = list_str(r, body, key, &v, err);
    if (code || !v) return code;
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], v)) {
            *idx = i;
            return AGL_OK;
        }
    agl_buf msg;
    agl_buf_init(&msg);
    agl_buf_puts(&msg, "input should be ");
    for (int i = 0; names[i]; i++)
        agl_buf_printf(&msg, "%s'%s'", i == 0 ? "" : names[i + 1] ? ", " : " or ", names[i]);
    agl_error_set(err, AGL_E_INVALID, loc_of(r, body, key), "%s", msg.data);
    agl_buf_free(&msg);
    return err->code;
}

static agl_code parse_opts(agl_req *r, const json_t *body, out_kind kind, req_opts *o,
                           agl_error *err)
{
    static const char *const kinds[] = {"tracer", "llm_proxy", "auto", NULL};
    static const char *const levels[] = {"transition", "trajectory", NULL};
    static const char *const policies[] = {"first_occurrence", "first_sibling", NULL};
    memset(o, 0, sizeof *o);
    adapter_opts_default(&o->ad);
    if (kind == OUT_MESSAGES) return AGL_OK;
    int k = (int)o->ad.kind, level = 0, pol = (int)o->ad.reward_match;
    const char *s;
    agl_code code;
    if ((code = get_choice(r, body, "adapter", kinds, &k, err)) ||
        (code = get_choice(r, body, "level", levels, &level, err)) ||
        (code = get_choice(r, body, "reward_match", policies, &pol, err)) ||
        (code = get_bool(r, body, "repair_hierarchy", &o->ad.repair_hierarchy, err)) ||
        (code = get_bool(r, body, "exclude_llm_call_in_reward", &o->ad.exclude_llm_call_in_reward,
                         err)) ||
        (code = get_bool(r, body, "skip_empty_token_spans", &o->ad.skip_empty_token_spans, err)))
        return code;
    o->ad.kind = (adapter_kind)k;
    o->ad.reward_match = (reward_policy)pol;
    o->trajectory = level == 1;
    if ((code = list_str(r, body, "llm_call_match", &s, err))) return code;
    if (s) o->ad.llm_call_match = s;
    if ((code = list_str(r, body, "agent_match", &s, err))) return code;
    if (s) o->ad.agent_match = s;
    return adapter_opts_check(&o->ad, err);
}

static agl_code get_time(agl_req *r, const json_t *body, const char *key, const char **out,
                         agl_error *err)
{
    *out = NULL;
    double d;
    if (body) {
        json_t *v = json_object_get(body, key);
        if (!v || json_is_null(v)) return AGL_OK;
        if (!json_is_number(v))
            return agl_error_set(err, AGL_E_INVALID, loc_of(r, body, key),
                                 "input should be a valid number");
        d = json_number_value(v);
    } else {
        const char *s = req_query(r, key);
        if (!s) return AGL_OK;
        char *end;
        errno = 0;
        d = strtod(s, &end);
        if (errno || end == s || *end)
            return agl_error_set(err, AGL_E_INVALID, loc_of(r, body, key),
                                 "input should be a valid number");
    }
    *out = agl_arena_printf(&r->arena, "%.17g", d);
    return AGL_OK;
}

/* ---- spans → items ---- */

static void write_sel_head(agl_req *r, const sel *s)
{
    agl_buf *b = &r->out;
    agl_buf_puts(b, "{\"rollout_id\":");
    agl_buf_json_str(b, s->rollout_id);
    agl_buf_puts(b, ",\"attempt_id\":");
    agl_buf_json_str(b, s->attempt_id);
    agl_buf_puts(b, ",\"status\":");
    agl_buf_json_str(b, s->status);
    agl_buf_puts(b, ",\"mode\":");
    agl_buf_json_str(b, s->mode);
    agl_buf_puts(b, ",\"resources_id\":");
    agl_buf_json_str(b, s->resources_id);
}

static void write_item(agl_req *r, const sel *s, const adapter_spans *spans, out_kind kind,
                       const req_opts *o)
{
    agl_buf *b = &r->out;
    write_sel_head(r, s);
    if (kind == OUT_TRIPLETS) {
        json_t *trip = adapter_triplets(spans, &o->ad);
        /* The last triplet's reward; a rollout whose reward is not attached to any LLM call
         * (or that made none) still reports the reward its spans carry. */
        json_t *owned = NULL;
        json_t *fr = adapter_final_reward(trip);
        if (!fr) fr = owned = adapter_span_final_reward(spans);
        agl_buf_puts(b, ",\"final_reward\":");
        agl_json_write(b, fr ? fr : json_null());
        agl_buf_puts(b, ",\"triplets\":");
        agl_json_write(b, trip);
        if (o->trajectory) {
            json_t *traj = adapter_trajectories(trip, fr);
            agl_buf_puts(b, ",\"trajectories\":");
            agl_json_write(b, traj);
            json_decref(traj);
        }
        json_decref(owned);
        json_decref(trip);
    } else {
        const char *why = NULL;
        json_t *fr = adapter_span_final_reward(spans);
        json_t *msgs = adapter_messages(spans, &why);
        agl_buf_puts(b, ",\"final_reward\":");
        agl_json_write(b, fr ? fr : json_null());
        agl_buf_puts(b, ",\"messages\":");
        agl_json_write(b, msgs ? msgs : json_null());
        if (!msgs) {
            agl_buf_puts(b, ",\"error\":");
            agl_buf_json_str(b, why);
        }
        json_decref(msgs);
        json_decref(fr);
    }
    agl_buf_putc(b, '}');
}

/* Loads the spans of every selected attempt in one query and writes the items, in order. */
static agl_code write_items(agl_req *r, db_conn *db, const sel *sels, int n, out_kind kind,
                            const req_opts *o, agl_error *err)
{
    const char **rids = agl_arena_alloc(&r->arena, sizeof *rids * (size_t)(n + 1));
    const char **aids = agl_arena_alloc(&r->arena, sizeof *aids * (size_t)(n + 1));
    int *which = agl_arena_alloc(&r->arena, sizeof *which * (size_t)(n + 1));
    int m = 0;
    for (int i = 0; i < n; i++)
        if (sels[i].attempt_id) {
            rids[m] = sels[i].rollout_id;
            aids[m] = sels[i].attempt_id;
            which[m++] = i;
        }
    PGresult *res = NULL;
    if (m) {
        res = db_exec_dynamic(
            db, db_sql_adapter_spans, 2,
            P(store_text_array(&r->arena, rids, m), store_text_array(&r->arena, aids, m)), err);
        if (!res) return err->code;
    }
    int rows = res ? PQntuples(res) : 0, row = 0;
    agl_code code = AGL_OK;
    for (int i = 0; i < n; i++) {
        adapter_spans spans;
        adapter_spans_init(&spans);
        /* rows are ordered by k.ord, the 1-based position among the rollouts with attempts */
        while (row < rows) {
            int ord = atoi(PQgetvalue(res, row, 0)) - 1;
            if (ord < 0 || ord >= m || which[ord] != i) break;
            if ((code = adapter_spans_add(&spans, PQgetvalue(res, row, 1), err))) break;
            row++;
        }
        if (code) {
            adapter_spans_free(&spans);
            break;
        }
        if (i) agl_buf_putc(&r->out, ',');
        write_item(r, &sels[i], &spans, kind, o);
        adapter_spans_free(&spans);
    }
    if (res) PQclear(res);
    return code;
}

/* ---- search ---- */

static const sort_field adapter_sort_fields[] = {
    {"rollout_id", "r.rollout_id", SORT_STR},
    {"start_time", "r.start_time", SORT_TIME},
    {"end_time", "r.end_time", SORT_TIME},
    {"status", "r.status", SORT_STR},
    {"mode", "r.mode", SORT_STR},
    {NULL, NULL, 0},
};

static agl_code search(agl_req *r, out_kind kind, agl_error *err)
{
    json_t *body;
    agl_code code = req_json(r, true, &body, err);
    if (code) return code;
    if (json_is_null(body)) body = NULL;
    if (body && !json_is_object(body))
        return agl_error_set(err, AGL_E_INVALID, "body", "input should be a valid dictionary");
    /* An empty object reads the same as no body; list helpers want the object. */
    json_t *empty = NULL;
    if (!body) body = empty = json_object();
    req_opts o;
    list_q q;
    const char **ids, **statuses, **modes;
    int nids, nstatus, nmodes;
    bool has_ids, has_status, has_modes;
    const char *resources_id, *from, *to, *end_from, *end_to;
    if ((code = parse_opts(r, body, kind, &o, err)) ||
        (code = list_str_array(r, body, "rollout_id_in", &ids, &nids, &has_ids, err)) ||
        (code = list_str_array(r, body, "status_in", &statuses, &nstatus, &has_status, err)) ||
        (code = list_str_array(r, body, "mode_in", &modes, &nmodes, &has_modes, err)) ||
        (code = list_str(r, body, "resources_id", &resources_id, err)) ||
        (code = get_time(r, body, "start_time_from", &from, err)) ||
        (code = get_time(r, body, "start_time_to", &to, err)) ||
        (code = get_time(r, body, "end_time_from", &end_from, err)) ||
        (code = get_time(r, body, "end_time_to", &end_to, err)) ||
        (code = list_q_parse(r, body, adapter_sort_fields, NULL, &q, err)))
        goto out;
    for (int i = 0; i < nstatus; i++)
        if (agl_rollout_status_from(statuses[i]) < 0) {
            code = agl_error_set(err, AGL_E_INVALID,
                                 agl_arena_printf(&r->arena, "body.status_in.%d", i),
                                 "input should be a valid rollout status");
            goto out;
        }
    for (int i = 0; i < nmodes; i++)
        if (agl_mode_from(modes[i]) < 0) {
            code =
                agl_error_set(err, AGL_E_INVALID, agl_arena_printf(&r->arena, "body.mode_in.%d", i),
                              "input should be 'train', 'val' or 'test'");
            goto out;
        }
    db_conn *db;
    if ((code = req_db(r, &db, err))) goto out;
    list_sql s;
    list_sql_init(&s, &r->arena, false);
    /* Every filter must hold (the scope), whatever filter_logic says. */
    agl_buf scope;
    agl_buf_init(&scope);
    agl_buf_puts(&scope, "TRUE");
    if (has_ids)
        agl_buf_printf(&scope, " AND r.rollout_id = ANY(%s::text[])",
                       list_param(&s, store_text_array(&r->arena, ids, nids)));
    if (has_status)
        agl_buf_printf(&scope, " AND r.status = ANY(%s::text[])",
                       list_param(&s, store_text_array(&r->arena, statuses, nstatus)));
    if (has_modes)
        agl_buf_printf(&scope, " AND r.mode = ANY(%s::text[])",
                       list_param(&s, store_text_array(&r->arena, modes, nmodes)));
    if (resources_id)
        agl_buf_printf(&scope, " AND r.resources_id = %s::text", list_param(&s, resources_id));
    if (from) agl_buf_printf(&scope, " AND r.start_time >= %s::float8", list_param(&s, from));
    if (to) agl_buf_printf(&scope, " AND r.start_time < %s::float8", list_param(&s, to));
    if (end_from) agl_buf_printf(&scope, " AND r.end_time >= %s::float8", list_param(&s, end_from));
    if (end_to) agl_buf_printf(&scope, " AND r.end_time < %s::float8", list_param(&s, end_to));
    const char *from_sql = "rollouts r LEFT JOIN attempts a ON a.rollout_id = r.rollout_id AND "
                           "a.sequence_id = r.num_attempts";
    const char *scope_sql = agl_arena_strndup(&r->arena, scope.data, scope.len);
    agl_buf_free(&scope);
    agl_buf sql;
    agl_buf_init(&sql);
    list_build(&s, &sql, "r.rollout_id, r.status, r.mode, r.resources_id, a.attempt_id", from_sql,
               scope_sql, &q, adapter_sort_fields, "r.pos");
    PGresult *res = db_exec_dynamic(db, sql.data, s.n, s.params, err);
    agl_buf_free(&sql);
    if (!res) {
        code = err->code;
        list_sql_free(&s);
        goto out;
    }
    int n = PQntuples(res);
    int64_t total = n ? db_int(res, 0, 5) : 0;
    sel *sels = agl_arena_calloc(&r->arena, sizeof *sels * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
        const char **f[5] = {&sels[i].rollout_id, &sels[i].status, &sels[i].mode,
                             &sels[i].resources_id, &sels[i].attempt_id};
        for (int c = 0; c < 5; c++) *f[c] = agl_arena_strdup(&r->arena, db_val(res, i, c));
    }
    PQclear(res);
    if (n == 0 && q.offset > 0) {
        agl_buf_init(&sql);
        list_build_count(&s, &sql, from_sql, scope_sql);
        res = db_exec_dynamic(db, sql.data, s.n - 2, s.params, err);
        agl_buf_free(&sql);
        if (!res) {
            code = err->code;
            list_sql_free(&s);
            goto out;
        }
        total = db_int(res, 0, 0);
        PQclear(res);
    }
    list_sql_free(&s);
    agl_page_begin(&r->out);
    if ((code = write_items(r, db, sels, n, kind, &o, err))) goto out;
    agl_page_end(&r->out, q.limit, q.offset, total);
out:
    json_decref(empty);
    return code;
}

/* ---- one rollout ---- */

static agl_code one(agl_req *r, out_kind kind, agl_error *err)
{
    req_opts o;
    agl_code code = parse_opts(r, NULL, kind, &o, err);
    if (code) return code;
    const char *attempt = req_query(r, "attempt_id");
    db_conn *db;
    if ((code = req_db(r, &db, err))) return code;
    PGresult *res = db_exec_dynamic(db, db_sql_adapter_latest, 1, P(r->param[0]), err);
    if (!res) return err->code;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "rollout %s not found", r->param[0]);
    }
    sel s = {0};
    const char **f[5] = {&s.rollout_id, &s.status, &s.mode, &s.resources_id, &s.attempt_id};
    for (int c = 0; c < 5; c++) *f[c] = agl_arena_strdup(&r->arena, db_val(res, 0, c));
    PQclear(res);
    if (attempt && strcmp(attempt, "latest")) s.attempt_id = attempt;
    return write_items(r, db, &s, 1, kind, &o, err);
}

agl_code adapter_h_triplets_search(agl_req *r, agl_error *err)
{
    return search(r, OUT_TRIPLETS, err);
}

agl_code adapter_h_messages_search(agl_req *r, agl_error *err)
{
    return search(r, OUT_MESSAGES, err);
}

agl_code adapter_h_rollout_triplets(agl_req *r, agl_error *err)
{
    return one(r, OUT_TRIPLETS, err);
}

agl_code adapter_h_rollout_messages(agl_req *r, agl_error *err)
{
    return one(r, OUT_MESSAGES, err);
}
