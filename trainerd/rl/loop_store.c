/* loop_store — `trainerd rl --store URL` (issue 8): GRPO through the real system.
 *
 * The trainer serves its policy (server.c) and publishes it as the `main_llm` resource; each
 * step it enqueues prompts x group rollouts of tasks from --train (the task object is the
 * rollout input), waits for them (POST /v1/agl/waits/rollouts), pulls their triplets with token
 * ids (POST /v1/agl/triplets/search, adapter llm_proxy: what runnerd's LLM proxy recorded) and
 * runs the GRPO update on exactly those ids — no re-tokenising. Every rollout's reward (the
 * agent's, as the store's final_reward) goes to every triplet of that rollout; advantages are
 * per rollout within the group of rollouts of the same task (rollout-level advantage, spec
 * algorithms.md §6.6). After the update the server answers with the new weights and a new
 * resources snapshot is published, which the next step's rollouts name. Validation enqueues
 * the first --val-n held-out tasks in mode "val" against a temperature-0 snapshot. */
#include "agl_alloc.h"
#include "agl_buf.h"
#include "agl_http_client.h"
#include "agl_store_client.h"
#include "agl_util.h"
#include "dist.h"
#include "rl_int.h"
#include "server.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    json_t **task; /* the JSONL objects, sent as rollout inputs */
    int n;
} taskset;

static int tasks_load(taskset *t, const char *path)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "trainerd rl: cannot open %s\n", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        json_t *j = json_loads(line, 0, NULL);
        if (!json_is_object(j)) {
            fprintf(stderr, "trainerd rl: %s:%d: expected a JSON object per line\n", path, lineno);
            json_decref(j);
            rc = -1;
            break;
        }
        t->task = agl_realloc(t->task, sizeof(json_t *) * (size_t)(t->n + 1));
        t->task[t->n++] = j;
    }
    free(line);
    fclose(f);
    if (!rc && !t->n) {
        fprintf(stderr, "trainerd rl: %s has no tasks\n", path);
        rc = -1;
    }
    return rc;
}

static void tasks_free(taskset *t)
{
    for (int i = 0; i < t->n; i++) json_decref(t->task[i]);
    free(t->task);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------- store calls */
static json_t *call(agl_store_client *sc, const char *path, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    json_t *out = NULL;
    agl_error err;
    if (agl_store_call(sc, "POST", path, text, &out, &err) != AGL_OK) {
        fprintf(stderr, "trainerd rl: POST %s: %s\n", path, err.msg);
        out = NULL;
    }
    free(text);
    return out;
}

/* Reads --resources: a JSON object whose values are resource objects (each with a
 * resource_type), published with every snapshot. Returns it (owned), or NULL (message printed). */
static json_t *resources_load(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) {
        fprintf(stderr, "trainerd rl: --resources %s:%d: %s\n", path, je.line, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        fprintf(stderr, "trainerd rl: --resources %s: expected a JSON object of resources\n", path);
        json_decref(j);
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        if (!json_is_string(json_object_get(v, "resource_type"))) {
            fprintf(stderr,
                    "trainerd rl: --resources %s: resource \"%s\" is not an object with a "
                    "resource_type\n",
                    path, k);
            json_decref(j);
            return NULL;
        }
    }
    if (json_object_get(j, "main_llm"))
        fprintf(stderr, "trainerd rl: --resources %s: main_llm is replaced by the policy's\n",
                path);
    return j;
}

/* Publishes main_llm (with the --resources ones); returns the new resources id (caller frees) or
 * NULL. */
static char *publish(agl_store_client *sc, rl_server *srv, const rl_opts *o, const json_t *extra,
                     float temperature)
{
    json_t *res = extra ? json_deep_copy(extra) : json_object();
    json_object_set_new(res, "main_llm",
                        json_pack("{s:s, s:s, s:s, s:{s:f, s:f, s:i}}", "resource_type", "llm",
                                  "endpoint", o->serve_url ? o->serve_url : rl_server_url(srv),
                                  "model", o->model_name, "sampling_parameters", "temperature",
                                  (double)temperature, "top_p", (double)o->top_p, "max_tokens",
                                  o->max_new));
    json_t *out = call(sc, "/v1/agl/resources", res);
    const char *id = json_string_value(json_object_get(out, "resources_id"));
    char *r = id ? agl_strdup(id) : NULL;
    json_decref(out);
    return r;
}

/* Enqueues one rollout per task index; fills ids (caller frees each). Returns 0 or -1. */
static int enqueue(agl_store_client *sc, const taskset *ts, const int *pick, int n, int G,
                   const char *mode, const char *rid, const rl_opts *o, long step, char **ids)
{
    json_t *list = json_array();
    for (int i = 0; i < n * G; i++) {
        json_t *cfg = json_pack("{s:i}", "max_attempts", 1);
        if (o->rollout_timeout > 0)
            json_object_set_new(cfg, "timeout_seconds", json_real(o->rollout_timeout));
        json_array_append_new(list,
                              json_pack("{s:O, s:s, s:s, s:o, s:{s:I, s:i, s:i}}", "input",
                                        ts->task[pick[i / G]], "mode", mode, "resources_id", rid,
                                        "config", cfg, "metadata", "step", (json_int_t)step,
                                        "group", i / G, "task_index", pick[i / G]));
    }
    json_t *out = call(sc, "/v1/agl/queues/rollouts/enqueue", json_pack("{s:o}", "rollouts", list));
    int rc = json_array_size(out) == (size_t)(n * G) ? 0 : -1;
    for (int i = 0; !rc && i < n * G; i++) {
        const char *id = json_string_value(json_object_get(json_array_get(out, i), "rollout_id"));
        if (!id) rc = -1;
        ids[i] = id ? agl_strdup(id) : NULL;
    }
    json_decref(out);
    return rc;
}

static volatile sig_atomic_t g_stop;
static void on_signal(int sig)
{
    g_stop = 1;
}

/* Waits until every rollout is terminal or the timeout passes; returns how many finished. */
static int wait_all(agl_store_client *sc, char **ids, int n, double timeout)
{
    double deadline = timeout > 0 ? agl_monotonic() + timeout : 0;
    int done = 0;
    while (!g_stop) {
        json_t *want = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(want, json_string(ids[i]));
        json_t *out = call(sc, "/v1/agl/waits/rollouts",
                           json_pack("{s:o, s:f}", "rollout_ids", want, "timeout", 2.0));
        int failed = out == NULL;
        done = (int)json_array_size(out);
        json_decref(out);
        if (done >= n || (deadline && agl_monotonic() > deadline)) break;
        if (failed) agl_sleep(0.5);
    }
    return done;
}

/* POST /v1/agl/triplets/search for these rollouts; returns the items array (owned). */
static json_t *triplets(agl_store_client *sc, char **ids, int n, const char *adapter)
{
    json_t *want = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(want, json_string(ids[i]));
    json_t *page =
        call(sc, "/v1/agl/triplets/search",
             json_pack("{s:o, s:s, s:i}", "rollout_id_in", want, "adapter", adapter, "limit", n));
    json_t *items = json_incref(json_object_get(page, "items"));
    json_decref(page);
    return items;
}

static int index_of(char **ids, int n, const char *id)
{
    for (int i = 0; id && i < n; i++)
        if (!strcmp(ids[i], id)) return i;
    return -1;
}

/* Copies an int list into a new array; -1 when it is not a list of ids in [lo, hi). */
static int id_array(json_t *a, int lo, int hi, int **out)
{
    size_t n = json_array_size(a);
    *out = NULL;
    if (!json_is_array(a)) return -1;
    int *ids = agl_malloc(sizeof(int) * (n + 1));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) >= hi) {
            free(ids);
            return -1;
        }
        ids[i] = (int)json_integer_value(v);
    }
    *out = ids;
    return (int)n;
}

/* ---------------------------------------------------------------- one step */
typedef struct {
    double reward_mean, reward_std, exact, zero_var, clipfrac, approx_kl, kl, entropy, resp_len;
    double loss, tokens, wait_s, train_s, lp_diff;
    int rollouts, finished, succeeded, rows, dropped, verified, mismatched;
} store_stats;

typedef struct {
    int *p, np, *r, nr, rollout;
    char *response_id; /* the LLM response the triplet came from */
} row;

static void rows_free(row *rows, int n)
{
    for (int i = 0; i < n; i++) {
        free(rows[i].p);
        free(rows[i].r);
        free(rows[i].response_id);
    }
    free(rows);
}

/* Turns the triplets of the listed rollouts into training rows; fills each rollout's reward
 * (NAN when it did not succeed or produced no usable triplet). Returns the row count. */
static int collect(json_t *items, char **ids, int n, const rl_model *m, float *reward, row **out,
                   store_stats *ss)
{
    int nrows = 0, cap = 0;
    row *rows = NULL;
    for (int i = 0; i < n; i++) reward[i] = NAN;
    size_t k;
    json_t *it;
    json_array_foreach(items, k, it)
    {
        int ri = index_of(ids, n, json_string_value(json_object_get(it, "rollout_id")));
        const char *status = json_string_value(json_object_get(it, "status"));
        if (ri < 0 || !status || strcmp(status, "succeeded")) continue;
        ss->succeeded++;
        json_t *fr = json_object_get(it, "final_reward");
        float rew = json_is_number(fr) ? (float)json_number_value(fr) : 0.0f; /* fillna 0 */
        size_t t;
        json_t *tr;
        int used = 0;
        json_array_foreach(json_object_get(it, "triplets"), t, tr)
        {
            row w = {.rollout = ri};
            w.np = id_array(json_object_get(json_object_get(tr, "prompt"), "token_ids"), 0,
                            m->cfg.vocab, &w.p);
            json_t *resp = json_object_get(tr, "response");
            /* response ids the policy cannot sample (outside its support) have no log-prob */
            w.nr = id_array(json_object_get(resp, "token_ids"), m->support_lo, m->support_hi, &w.r);
            if (w.np < 1 || w.nr < 1 || w.np + w.nr - 1 > m->cfg.max_seq) {
                free(w.p), free(w.r);
                ss->dropped++;
                continue;
            }
            const char *rid =
                json_string_value(json_object_get(json_object_get(tr, "metadata"), "response_id"));
            w.response_id = rid ? agl_strdup(rid) : NULL;
            if (nrows == cap) {
                cap = cap ? 2 * cap : 64;
                rows = agl_realloc(rows, sizeof *rows * (size_t)cap);
            }
            rows[nrows++] = w;
            used = 1;
        }
        if (used) reward[ri] = rew;
    }
    *out = rows;
    return nrows;
}

static int grpo_store_step(rl_run *r, const rl_opts *o, agl_store_client *sc, rl_server *srv,
                           const taskset *ts, const char *rid, const rl_model *ref, store_stats *ss)
{
    int P = o->prompts, G = o->group, N = P * G, rc = 0;
    memset(ss, 0, sizeof *ss);
    int *pick = agl_malloc(sizeof(int) * (size_t)P);
    for (int p = 0; p < P; p++) pick[p] = (int)(rl_rng_u64(&r->state[0]) % (uint64_t)ts->n);
    uint64_t perm_seed = rl_rng_u64(&r->state[0]);
    char **ids = agl_calloc((size_t)N, sizeof(char *));
    double t0 = rl_now_s();
    if (enqueue(sc, ts, pick, P, G, "train", rid, o, (long)r->state[1] + 1, ids)) {
        fprintf(stderr, "trainerd rl: cannot enqueue the step's rollouts\n");
        rc = -1;
        goto out;
    }
    ss->rollouts = N;
    ss->finished = wait_all(sc, ids, N, o->rollout_timeout);
    json_t *items = triplets(sc, ids, N, o->adapter);
    ss->wait_s = rl_now_s() - t0;
    double t1 = rl_now_s();
    float *rew = agl_malloc(sizeof(float) * (size_t)N);
    row *rows = NULL;
    int nrows = collect(items, ids, N, r->m, rew, &rows, ss);
    json_decref(items);
    ss->rows = nrows;
    /* rollouts that count: succeeded with at least one usable triplet */
    int *live = agl_malloc(sizeof(int) * (size_t)N), *grp = agl_malloc(sizeof(int) * (size_t)N);
    float *lr = agl_malloc(sizeof(float) * (size_t)N), *la = agl_malloc(sizeof(float) * (size_t)N);
    float *adv = agl_calloc((size_t)N, sizeof(float));
    int nl = 0;
    for (int i = 0; i < N; i++)
        if (!isnan(rew[i])) live[nl] = i, grp[nl] = i / G, lr[nl++] = rew[i];
    if (o->shuffle_rewards) {
        uint64_t prng = perm_seed;
        for (int i = nl - 1; i > 0; i--) {
            int j = (int)(rl_rng_u64(&prng) % (uint64_t)(i + 1));
            float t = lr[i];
            lr[i] = lr[j];
            lr[j] = t;
        }
    }
    rl_grpo_advantages(lr, grp, nl, o->norm_std, o->adv_eps, la);
    double rs = 0, rq = 0, ex = 0;
    for (int i = 0; i < nl; i++) adv[live[i]] = la[i], rs += lr[i], ex += lr[i] >= 1.0f - 1e-6f;
    for (int i = 0; i < nl; i++) rq += (lr[i] - rs / nl) * (lr[i] - rs / nl);
    int groups = 0, zero = 0;
    for (int p = 0; p < P; p++) {
        int cnt = 0, same = 1;
        float first = 0;
        for (int i = 0; i < nl; i++)
            if (grp[i] == p) {
                if (cnt++ == 0)
                    first = lr[i];
                else
                    same &= lr[i] == first;
            }
        groups += cnt > 0;
        zero += cnt > 0 && same;
    }
    ss->reward_mean = nl ? rs / nl : 0;
    ss->reward_std = nl > 1 ? sqrt(rq / (nl - 1)) : 0;
    ss->exact = nl ? ex / nl : 0;
    ss->zero_var = groups ? (double)zero / groups : 0;
    if (nrows > 0) {
        const int **pp = agl_malloc(sizeof *pp * (size_t)nrows),
                  **rr = agl_malloc(sizeof *rr * (size_t)nrows);
        int *np = agl_malloc(sizeof(int) * (size_t)nrows), *nr = agl_malloc(sizeof(int) * nrows);
        float *radv = agl_malloc(sizeof(float) * (size_t)nrows);
        for (int i = 0; i < nrows; i++) {
            pp[i] = rows[i].p, np[i] = rows[i].np, rr[i] = rows[i].r, nr[i] = rows[i].nr;
            radv[i] = adv[rows[i].rollout];
        }
        rl_batch bt;
        rl_batch_build(&bt, nrows, pp, np, rr, nr);
        int NT = bt.B * bt.T;
        double ntok = 0, nseq = nrows, len = 0;
        for (int n = 0; n < NT; n++) ntok += bt.mask[n];
        for (int i = 0; i < nrows; i++) len += nr[i];
        float *refl = NULL, *old = agl_malloc(sizeof(float) * NT),
              *dl = agl_malloc(sizeof(float) * NT);
        if (ref && o->grpo.kl_type != RL_KL_NONE) {
            rl_model_forward((rl_model *)ref, bt.tokens, bt.targets, bt.B, bt.T);
            refl = agl_malloc(sizeof(float) * NT);
            memcpy(refl, ref->a.logp, sizeof(float) * NT);
        }
        /* the forward reads the weights only; generation may run beside it */
        rl_model_forward(r->m, bt.tokens, bt.targets, bt.B, bt.T);
        memcpy(old, r->m->a.logp, sizeof(float) * NT); /* μ = 1: π_old recomputed here */
        /* the rows' ids against what the server generated for that response, and its
         * log-probs against the trainer's on the same positions (same weights: equal up to
         * float rounding) */
        double diff = 0;
        long nd = 0;
        float *slp = agl_malloc(sizeof(float) * (size_t)(bt.T + 1));
        for (int i = 0; i < nrows; i++) {
            int v = rl_server_lookup(srv, rows[i].response_id, pp[i], np[i], rr[i], nr[i], slp);
            ss->verified += v == 1;
            ss->mismatched += v == 0;
            for (int k = 0; v == 1 && k < nr[i]; k++, nd++)
                diff += fabs(slp[k] - r->m->a.logp[(size_t)i * bt.T + np[i] - 1 + k]);
        }
        free(slp);
        ss->lp_diff = nd ? diff / nd : NAN;
        rl_grpo_stats st;
        rl_grpo_loss(&o->grpo, r->m->a.logp, old, refl, radv, bt.mask, bt.B, bt.T, ntok, nseq, dl,
                     &st);
        double ent = 0;
        for (int n = 0; n < NT; n++) ent += bt.mask[n] * r->m->a.ent[n];
        rl_model_zero_grad(r->m);
        rl_model_backward(r->m, dl);
        rl_server_pause(srv); /* AdamW writes the weights the server reads */
        rl_model_adamw(r->m, &o->opt);
        rl_server_resume(srv, (long)r->state[1] + 1);
        ss->loss = st.loss;
        ss->kl = st.kl;
        ss->clipfrac = st.clipfrac / ntok;
        ss->approx_kl = st.approx_kl / ntok;
        ss->entropy = ent / ntok;
        ss->resp_len = len / nrows;
        ss->tokens = ntok;
        rl_batch_free(&bt);
        free(pp), free(rr), free(np), free(nr), free(radv), free(refl), free(old), free(dl);
    } else {
        fprintf(stderr,
                "trainerd rl: step %ld: no usable triplets (%d/%d rollouts finished, "
                "%d succeeded); no update\n",
                (long)r->state[1] + 1, ss->finished, N, ss->succeeded);
        rl_server_pause(srv);
        rl_server_resume(srv, (long)r->state[1] + 1);
    }
    ss->train_s = rl_now_s() - t1;
    rows_free(rows, nrows);
    free(rew), free(live), free(grp), free(lr), free(la), free(adv);
out:
    for (int i = 0; i < N; i++) free(ids[i]);
    free(ids);
    free(pick);
    return rc;
}

/* Greedy held-out reward through the system: mode "val" rollouts on a temperature-0 snapshot. */
static int validate(agl_store_client *sc, rl_server *srv, const rl_opts *o, const json_t *extra,
                    const taskset *val, long step, double *reward, double *exact)
{
    int n = o->val_n < val->n ? o->val_n : val->n, rc = -1;
    char *rid = publish(sc, srv, o, extra, 0.0f);
    int *pick = agl_malloc(sizeof(int) * (size_t)n);
    char **ids = agl_calloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++) pick[i] = i;
    if (rid && !enqueue(sc, val, pick, n, 1, "val", rid, o, step, ids)) {
        wait_all(sc, ids, n, o->rollout_timeout);
        json_t *items = triplets(sc, ids, n, o->adapter);
        double rs = 0, es = 0;
        size_t k;
        json_t *it;
        json_array_foreach(items, k, it)
        {
            json_t *fr = json_object_get(it, "final_reward");
            double v = json_is_number(fr) ? json_number_value(fr) : 0.0;
            rs += v;
            es += v >= 1.0 - 1e-6;
        }
        json_decref(items);
        *reward = rs / n; /* unfinished or failed rollouts count as 0 */
        *exact = es / n;
        rc = 0;
    }
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids);
    free(pick);
    free(rid);
    return rc;
}

int rl_store_main(rl_opts *o)
{
    if (rl_dist_world() > 1) {
        fprintf(stderr, "trainerd rl: --store runs on one rank (MPI data parallelism is for the "
                        "in-process loop)\n");
        return 2;
    }
    rl_run r;
    if (rl_run_open(&r, o)) return 1;
    /* the trained softmax covers exactly the ids the policy server samples */
    rl_sample_support(&r.tok, r.m->cfg.vocab, &r.m->support_lo, &r.m->support_hi);
    taskset ts, val = {0};
    json_t *extra = NULL;
    if (tasks_load(&ts, o->data) || (o->val && tasks_load(&val, o->val)) ||
        (o->resources && !(extra = resources_load(o->resources)))) {
        tasks_free(&ts);
        tasks_free(&val);
        rl_run_close(&r);
        return 1;
    }
    agl_http_global_init();
    agl_error err;
    agl_store_client *sc = agl_store_client_new(o->store, true, &err);
    if (!sc) {
        fprintf(stderr, "trainerd rl: --store %s: %s\n", o->store, err.msg);
        json_decref(extra);
        return 2;
    }
    rl_server_opts so = {.listen = o->listen,
                         .model_name = o->model_name,
                         .max_batch = o->max_batch,
                         .log_path = o->serve_log,
                         .seed = o->seed};
    char emsg[300];
    rl_server *srv = rl_server_start(r.m, &r.tok, &so, emsg, sizeof emsg);
    if (!srv) {
        fprintf(stderr, "trainerd rl: %s\n", emsg);
        agl_store_client_free(sc);
        json_decref(extra);
        return 1;
    }
    rl_server_pause(srv);
    rl_server_resume(srv, (long)r.state[1]);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rl_model *ref = NULL;
    if (o->grpo.kl_type != RL_KL_NONE) {
        ref = rl_model_new(&r.m->cfg);
        memcpy(ref->params, r.m->params, sizeof(float) * r.m->nparams);
    }
    FILE *logf = o->log_path ? fopen(o->log_path, "a") : NULL;
    int rc = 0;
    char *rid = publish(sc, srv, o, extra, o->temperature);
    if (!rid) {
        rc = 1;
        goto done;
    }
    if (!o->quiet) {
        printf("rl --store %s: policy %s at %s, main_llm %s; %d prompts x %d per step\n", o->store,
               o->model_name, o->serve_url ? o->serve_url : rl_server_url(srv), rid, o->prompts,
               o->group);
        fflush(stdout);
    }
    if (val.n && r.state[1] == 0) {
        double vr = 0, ve = 0;
        if (!validate(sc, srv, o, extra, &val, 0, &vr, &ve)) {
            if (!o->quiet) printf("rl step 0 val_reward %.3f val_exact %.3f\n", vr, ve);
            if (logf) {
                fprintf(logf, "{\"step\":0,\"val_reward\":%.4f,\"val_exact\":%.4f}\n", vr, ve);
                fflush(logf);
            }
        }
    }
    while ((int)r.state[1] < o->steps && !g_stop) {
        double t0 = rl_now_s();
        store_stats ss;
        if (grpo_store_step(&r, o, sc, srv, &ts, rid, ref, &ss)) {
            rc = 1;
            break;
        }
        r.state[1]++;
        long step = (long)r.state[1];
        free(rid);
        rid = publish(sc, srv, o, extra, o->temperature); /* the updated policy, a new version */
        if (!rid) {
            rc = 1;
            break;
        }
        double dt = rl_now_s() - t0, vr = -1, ve = -1;
        if (val.n && (step % o->val_every == 0 || step == o->steps))
            if (validate(sc, srv, o, extra, &val, step, &vr, &ve)) vr = ve = -1;
        if (!o->quiet) {
            printf("rl step %ld/%d reward %.3f±%.3f exact %.2f zero_var %.2f clip %.3f kl %.4f "
                   "ent %.3f len %.1f rollouts %d/%d rows %d wait %.2fs train %.2fs",
                   step, o->steps, ss.reward_mean, ss.reward_std, ss.exact, ss.zero_var,
                   ss.clipfrac, ss.approx_kl, ss.entropy, ss.resp_len, ss.succeeded, ss.rollouts,
                   ss.rows, ss.wait_s, ss.train_s);
            if (vr >= 0) printf(" | val_reward %.3f val_exact %.3f", vr, ve);
            printf("\n");
            fflush(stdout);
        }
        if (logf) {
            fprintf(logf,
                    "{\"step\":%ld,\"reward_mean\":%.5f,\"reward_std\":%.5f,\"exact\":%.4f,"
                    "\"zero_var_frac\":%.4f,\"clip_frac\":%.5f,\"approx_kl\":%.6f,\"kl\":%.6f,"
                    "\"entropy\":%.5f,\"response_len\":%.3f,\"loss\":%.6f,\"tokens\":%.0f,"
                    "\"rollouts\":%d,\"finished\":%d,\"succeeded\":%d,\"rows\":%d,"
                    "\"rows_dropped\":%d,\"ids_verified\":%d,\"ids_mismatched\":%d,\"wait_s\":%.4f,"
                    "\"train_s\":%.4f,\"step_s\":%.4f,"
                    "\"resources_id\":\"%s\"",
                    step, ss.reward_mean, ss.reward_std, ss.exact, ss.zero_var, ss.clipfrac,
                    ss.approx_kl, ss.kl, ss.entropy, ss.resp_len, ss.loss, ss.tokens, ss.rollouts,
                    ss.finished, ss.succeeded, ss.rows, ss.dropped, ss.verified, ss.mismatched,
                    ss.wait_s, ss.train_s, dt, rid);
            if (!isnan(ss.lp_diff)) fprintf(logf, ",\"server_logprob_abs_diff\":%.6g", ss.lp_diff);
            if (vr >= 0) fprintf(logf, ",\"val_reward\":%.4f,\"val_exact\":%.4f", vr, ve);
            fprintf(logf, "}\n");
            fflush(logf);
        }
        if (o->save_every > 0 && step % o->save_every == 0 && o->out) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/step_%06ld", o->out, step);
            if (rl_run_save(&r, o, o->out) || rl_run_save(&r, o, dir)) rc = 1;
        }
    }
    if (g_stop)
        fprintf(stderr, "trainerd rl: stopped by a signal after step %ld of %d\n", (long)r.state[1],
                o->steps);
    if (o->out && rl_run_save(&r, o, o->out)) rc = 1;
done:
    free(rid);
    if (logf) fclose(logf);
    rl_server_stop(srv);
    agl_store_client_free(sc);
    rl_model_free(ref);
    tasks_free(&ts);
    tasks_free(&val);
    json_decref(extra);
    rl_run_close(&r);
    return rc;
}
