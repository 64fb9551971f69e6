/* apo — `trainerd apo`: Automatic Prompt Optimisation (issue 7, algorithms.md §1).
 *
 * A beam search over prompt templates, as the reference does it — batch iterators, parent
 * sampling, critique then edit, selection on one shared validation batch, the leader re-scored on
 * the whole validation set, history best — with its evaluations running concurrently: every
 * critique batch of a round is in flight at once, each child is scored on the round's validation
 * batch as soon as it exists, the beam is re-scored meanwhile, and a round's leader is scored on
 * the full validation set while the next round already runs (only the history best needs it).
 *
 * All randomness is drawn on the main thread from one seeded generator, in an order that does
 * not depend on timing. With the outcome of every finished step kept in the store (a resources
 * snapshot "apo-state-<run id>"), a restarted run replays the same draws, takes finished steps
 * from the state and re-attaches to rollouts that were still running. */
#include "../trainerd.h"
#include "agl_alloc.h"
#include "agl_buf.h"
#include "agl_config.h"
#include "agl_http_client.h"
#include "agl_log.h"
#include "agl_util.h"
#include "apo.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct apo_opts {
    const char *store, *train, *val, *seed_prompt, *resource_name, *llm_base_url, *llm_key_env;
    const char *gradient_model, *edit_model, *output, *report, *publish_best_as;
    const char *log_format, *log_level;
    long beam_width, branch_factor, rounds, grad_batch, val_batch, llm_retries, seed;
    long llm_max_tokens; /* max_tokens of the critic and editor calls (0: not sent) */
    double temperature, rollout_timeout, llm_timeout, price_in, price_out;
    int no_initial_validation, fresh;
} apo_opts;

typedef struct cand {
    char version[24];
    char *text;
    int parent;         /* index into run.cands, -1 for the seed */
    int round;          /* round that created it, 0 for the seed */
    const char *status; /* "seed", "ok", "rejected" (lost a placeholder), "failed" */
    char *reason, *critique;
    double score; /* score on the current round's validation batch (NAN: none yet) */
    bool published;
    json_t *evals; /* [{round, kind, score, finished, rollout_ids}] for the report */
    agl_llm_usage usage;
} cand;

typedef struct run {
    apo_opts o;
    apo_dataset train, val;
    apo_seed seed;
    agl_llm_client *llm;
    json_t *llm_extra; /* further fields of the critic and editor requests (max_tokens), or NULL */
    cand **cands;
    size_t ncand, capcand;
    pthread_mutex_t mu; /* guards cands' evals/usage, state, failure */
    json_t *state;      /* {"run_id","seed","evals":{key:{...}},"children":{version:{...}}} */
    char state_id[48];
    agl_store_client *state_sc;
    apo_progress pg;
    bool failed;
    agl_error fail;
    long rollouts_enqueued;
} run;

/* ---- progress ---- */

static void progress_print(apo_progress *pg, bool force)
{
    double now = agl_monotonic();
    if (!force && now - pg->last_print < 1.0) return;
    pg->last_print = now;
    double el = now - pg->t0;
    char eta[32] = "?";
    if (pg->rollouts_done > 0 && pg->rollouts_total > pg->rollouts_done)
        snprintf(eta, sizeof eta, "%.0fs",
                 el / (double)pg->rollouts_done * (double)(pg->rollouts_total - pg->rollouts_done));
    else if (pg->rollouts_total <= pg->rollouts_done)
        snprintf(eta, sizeof eta, "0s");
    char best[64] = "none yet";
    if (!isnan(pg->best)) snprintf(best, sizeof best, "%.3f (%s)", pg->best, pg->best_version);
    agl_info("apo: round %d/%d: %d/%d candidates evaluated, %ld/%ld rollouts, best %s, "
             "elapsed %.0fs, eta %s",
             pg->round, pg->rounds, pg->evals_done, pg->evals_total, pg->rollouts_done,
             pg->rollouts_total, best, el, eta);
}

void apo_progress_rollouts(apo_progress *pg, long n)
{
    pthread_mutex_lock(&pg->mu);
    pg->rollouts_done += n;
    progress_print(pg, false);
    pthread_mutex_unlock(&pg->mu);
}

static void progress_eval_done(apo_progress *pg, int round)
{
    pthread_mutex_lock(&pg->mu);
    if (round == pg->round) pg->evals_done++;
    progress_print(pg, false);
    pthread_mutex_unlock(&pg->mu);
}

static void progress_best(apo_progress *pg, double score, const char *version)
{
    pthread_mutex_lock(&pg->mu);
    if (isnan(pg->best) || score > pg->best) {
        pg->best = score;
        snprintf(pg->best_version, sizeof pg->best_version, "%s", version);
    }
    pthread_mutex_unlock(&pg->mu);
}

/* ---- failure: the first store failure stops the run (its state is kept for a restart) ---- */

static void run_fail(run *R, const agl_error *e, const char *what)
{
    pthread_mutex_lock(&R->mu);
    if (!R->failed) {
        R->failed = true;
        agl_error_set(&R->fail, e->code, e->loc, "%s: %.300s", what, e->msg);
    }
    pthread_mutex_unlock(&R->mu);
}

static bool run_failed(run *R)
{
    pthread_mutex_lock(&R->mu);
    bool f = R->failed;
    pthread_mutex_unlock(&R->mu);
    return f;
}

/* ---- resumable state ---- */

/* Called with R->mu held. */
static void state_save_locked(run *R)
{
    char *text = json_dumps(R->state, JSON_COMPACT);
    json_t *res = json_pack("{s:{s:s,s:s,s:s}}", "apo_state", "resource_type", "prompt_template",
                            "template", text, "engine", "f-string");
    char *body = json_dumps(res, JSON_COMPACT);
    json_decref(res);
    free(text);
    agl_buf path;
    agl_buf_init(&path);
    agl_buf_puts(&path, "/v1/agl/resources");
    agl_store_path_segment(&path, R->state_id);
    agl_error e;
    if (agl_store_call(R->state_sc, "POST", path.data, body, NULL, &e) != AGL_OK)
        agl_warn("apo: cannot save the run state (a restart would redo this step): %s", e.msg);
    agl_buf_free(&path);
    free(body);
}

static json_t *state_section(run *R, const char *name)
{
    json_t *s = json_object_get(R->state, name);
    if (!s) {
        s = json_object();
        json_object_set_new(R->state, name, s);
    }
    return s;
}

/* A copy of the state of evaluation key, or NULL. */
static json_t *state_eval(run *R, const char *key)
{
    pthread_mutex_lock(&R->mu);
    json_t *v = json_deep_copy(json_object_get(state_section(R, "evals"), key));
    pthread_mutex_unlock(&R->mu);
    return v;
}

static void state_put(run *R, const char *section, const char *key, json_t *v)
{
    pthread_mutex_lock(&R->mu);
    json_object_set_new(state_section(R, section), key, v);
    state_save_locked(R);
    pthread_mutex_unlock(&R->mu);
}

static json_t *ids_json(char **ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(ids[i]));
    return a;
}

/* ---- one evaluation, with state ---- */

static bool publish_cand(run *R, agl_store_client *sc, cand *c)
{
    if (c->published) return true;
    agl_error e;
    if (apo_publish(sc, &R->seed, c->version, c->text, &e) != AGL_OK) {
        run_fail(R, &e, "cannot publish a candidate's resources");
        return false;
    }
    c->published = true;
    return true;
}

/* Evaluates c on tasks (indices into ds); returns false after a store failure. *results (if
 * non-NULL) receives the rollout results for the critic. */
static bool evaluate(run *R, agl_store_client *sc, cand *c, const char *key, int round,
                     const char *kind, const apo_dataset *ds, const char *mode, const size_t *tasks,
                     size_t n, double *score, json_t **results)
{
    apo_eval ev = {.resources_id = c->version,
                   .mode = mode,
                   .n = n,
                   .tasks = (size_t *)tasks,
                   .ds = ds,
                   .timeout_s = R->o.rollout_timeout,
                   .score = 0};
    json_t *st = state_eval(R, key);
    char **known = NULL;
    if (st && json_array_size(json_object_get(st, "rollout_ids")) == n) {
        known = agl_calloc(n ? n : 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
            known[i] =
                (char *)json_string_value(json_array_get(json_object_get(st, "rollout_ids"), i));
        ev.known_ids = known;
    }
    bool done = st && json_is_true(json_object_get(st, "done"));
    agl_error e;
    bool ok = true;
    if (apo_eval_enqueue(sc, &ev, &e) != AGL_OK) {
        run_fail(R, &e, "cannot enqueue rollouts");
        ok = false;
    }
    if (ok && !known) {
        pthread_mutex_lock(&R->mu);
        R->rollouts_enqueued += (long)n;
        pthread_mutex_unlock(&R->mu);
        state_put(R, "evals", key,
                  json_pack("{s:o,s:b}", "rollout_ids", ids_json(ev.rollout_ids, n), "done", 0));
    }
    if (ok && done) {
        ev.score = json_number_value(json_object_get(st, "score"));
        ev.n_finished = (size_t)json_integer_value(json_object_get(st, "finished"));
        apo_progress_rollouts(&R->pg, (long)n);
        if (results && apo_eval_collect(sc, &ev, true, &e) != AGL_OK) {
            run_fail(R, &e, "cannot read rollout results");
            ok = false;
        }
        ev.score = json_number_value(json_object_get(st, "score")); /* the recorded one */
    } else if (ok) {
        if (apo_eval_wait(sc, &ev, &R->pg, &e) != AGL_OK) {
            run_fail(R, &e, "cannot wait for rollouts");
            ok = false;
        } else if (apo_eval_collect(sc, &ev, results != NULL, &e) != AGL_OK) {
            run_fail(R, &e, "cannot read rollout results");
            ok = false;
        } else {
            state_put(R, "evals", key,
                      json_pack("{s:o,s:b,s:f,s:I}", "rollout_ids", ids_json(ev.rollout_ids, n),
                                "done", 1, "score", ev.score, "finished",
                                (json_int_t)ev.n_finished));
        }
    }
    if (ok) {
        *score = ev.score;
        pthread_mutex_lock(&R->mu);
        json_array_append_new(c->evals,
                              json_pack("{s:i,s:s,s:f,s:I,s:I,s:o}", "round", round, "kind", kind,
                                        "score", ev.score, "tasks", (json_int_t)n, "finished",
                                        (json_int_t)ev.n_finished, "rollout_ids",
                                        ids_json(ev.rollout_ids, n)));
        pthread_mutex_unlock(&R->mu);
        agl_info("apo: [round %d] %s %s on %zu %s tasks: %.3f (%zu finished)", round, c->version,
                 kind, n, mode, ev.score, ev.n_finished);
        if (results) {
            *results = ev.results;
            ev.results = NULL;
        }
    }
    free(known);
    json_decref(st);
    apo_eval_free(&ev);
    return ok;
}

/* ---- threads ---- */

typedef struct eval_job {
    run *R;
    cand *c;
    char key[96];
    int round;
    const char *kind;
    const apo_dataset *ds;
    const char *mode;
    const size_t *tasks;
    size_t n;
    double score;
    bool ok;
    pthread_t th;
} eval_job;

static void *eval_thread(void *arg)
{
    eval_job *j = arg;
    agl_error e;
    agl_store_client *sc = agl_store_client_new(j->R->o.store, true, &e);
    j->ok = sc && publish_cand(j->R, sc, j->c) &&
            evaluate(j->R, sc, j->c, j->key, j->round, j->kind, j->ds, j->mode, j->tasks, j->n,
                     &j->score, NULL);
    agl_store_client_free(sc);
    if (j->ok && !strcmp(j->kind, "val_batch")) progress_eval_done(&j->R->pg, j->round);
    if (j->ok && !strcmp(j->kind, "full_val")) progress_best(&j->R->pg, j->score, j->c->version);
    return NULL;
}

typedef struct grad_job {
    run *R;
    cand *parent, *child;
    int round;
    size_t *grad, ngrad;
    const size_t *valb;
    size_t nval;
    int cvar, evar;
    uint64_t subseed;
    bool ok; /* false only after a store failure */
    pthread_t th;
} grad_job;

/* A child that failed on an LLM error is not recorded, so a restart tries it again. */
static void child_record(run *R, cand *c)
{
    if (!strcmp(c->status, "failed")) return;
    state_put(R, "children", c->version,
              json_pack("{s:s?,s:s,s:s?,s:s?}", "text", c->text, "status", c->status, "reason",
                        c->reason, "critique", c->critique));
}

/* The critique-then-edit step (§1.5, §1.6) for one child. Sets child->text/status. */
static void make_child(grad_job *j, const json_t *results)
{
    run *R = j->R;
    cand *p = j->parent, *c = j->child;
    /* at most gradient_batch_size results, sampled without replacement (§1.5) */
    json_t *shown = json_array();
    size_t nr = json_array_size(results), g = (size_t)R->o.grad_batch;
    if (nr <= g) {
        if (nr < g)
            agl_warn("apo: %s: only %zu of %zu rollouts finished; the critic sees those",
                     c->version, nr, g);
        json_array_extend(shown, (json_t *)results);
    } else {
        apo_rng rng;
        apo_rng_seed(&rng, j->subseed);
        size_t *pick = agl_malloc(g * sizeof(size_t));
        apo_sample_parents(&rng, nr, g, pick);
        for (size_t i = 0; i < g; i++) json_array_append(shown, json_array_get(results, pick[i]));
        free(pick);
    }
    json_t *msgs = apo_critique_messages(j->cvar, p->text, shown);
    json_decref(shown);
    char *critique = NULL;
    agl_error e;
    agl_llm_usage u = {0};
    agl_code rc = agl_llm_chat(R->llm, R->o.gradient_model, msgs, R->o.temperature, R->llm_extra,
                               &critique, &u, &e);
    json_decref(msgs);
    if (rc != AGL_OK) {
        agl_error("apo: %s: the critique call failed: %s", c->version, e.msg);
        c->status = "failed";
        c->reason = agl_strdup(e.msg);
        goto out;
    }
    if (!critique || !*critique) {
        /* §1.6: no critique → the parent's text, unchanged, becomes the child */
        agl_warn("apo: %s: the critic returned nothing; the child keeps %s's text", c->version,
                 p->version);
        c->text = agl_strdup(p->text);
        c->status = "ok";
        goto out;
    }
    c->critique = critique;
    msgs = apo_edit_messages(j->evar, p->text, critique);
    char *edited = NULL;
    rc = agl_llm_chat(R->llm, R->o.edit_model, msgs, R->o.temperature, R->llm_extra, &edited, &u,
                      &e);
    json_decref(msgs);
    if (rc != AGL_OK) {
        agl_error("apo: %s: the edit call failed: %s", c->version, e.msg);
        c->status = "failed";
        c->reason = agl_strdup(e.msg);
        goto out;
    }
    char *clean = edited ? apo_clean_edit(edited) : NULL;
    free(edited);
    if (!clean || !*clean) {
        agl_error("apo: %s: the editor returned no template", c->version);
        c->status = "failed";
        c->reason = agl_strdup("the editor returned no template");
        free(clean);
        goto out;
    }
    c->text = clean;
    char why[256];
    if (apo_placeholders_check(R->seed.template_text, clean, why, sizeof why)) {
        agl_warn("apo: %s rejected: %s", c->version, why);
        c->status = "rejected";
        c->reason = agl_strdup(why);
        goto out;
    }
    c->status = "ok";
out:
    pthread_mutex_lock(&R->mu);
    agl_llm_usage_add(&c->usage, &u);
    pthread_mutex_unlock(&R->mu);
}

static void *grad_thread(void *arg)
{
    grad_job *j = arg;
    run *R = j->R;
    cand *c = j->child;
    agl_error e;
    agl_store_client *sc = agl_store_client_new(R->o.store, true, &e);
    j->ok = sc != NULL;
    pthread_mutex_lock(&R->mu);
    json_t *rec = json_deep_copy(json_object_get(state_section(R, "children"), c->version));
    pthread_mutex_unlock(&R->mu);
    char key[96];
    snprintf(key, sizeof key, "r%d/grad/%s", j->round, c->version);
    double s;
    json_t *results = NULL;
    /* with a child recorded before a restart the evaluation is in the state too: this only
     * lists it for the report, without store work */
    j->ok = j->ok && evaluate(R, sc, j->parent, key, j->round, "train_batch", &R->train, "train",
                              j->grad, j->ngrad, &s, rec ? NULL : &results);
    if (j->ok && rec) {
        const char *t = json_string_value(json_object_get(rec, "text"));
        const char *st = json_string_value(json_object_get(rec, "status"));
        const char *why = json_string_value(json_object_get(rec, "reason"));
        const char *cr = json_string_value(json_object_get(rec, "critique"));
        c->text = t ? agl_strdup(t) : NULL;
        c->status = st && !strcmp(st, "ok")         ? "ok"
                    : st && !strcmp(st, "rejected") ? "rejected"
                                                    : "failed";
        c->reason = why ? agl_strdup(why) : NULL;
        c->critique = cr ? agl_strdup(cr) : NULL;
    } else if (j->ok) {
        make_child(j, results);
        child_record(R, c);
        if (c->text)
            agl_info("apo: [round %d] %s from %s (%s):\n%s", j->round, c->version,
                     j->parent->version, c->status, c->text);
    }
    json_decref(results);
    json_decref(rec);
    if (j->ok && !strcmp(c->status, "ok") && !run_failed(R)) {
        snprintf(key, sizeof key, "r%d/val/%s", j->round, c->version);
        j->ok = publish_cand(R, sc, c) && evaluate(R, sc, c, key, j->round, "val_batch", &R->val,
                                                   "val", j->valb, j->nval, &c->score, NULL);
        if (j->ok) progress_eval_done(&R->pg, j->round);
    }
    agl_store_client_free(sc);
    return NULL;
}

static void start_thread(pthread_t *th, void *(*fn)(void *), void *arg)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 1 << 20);
    if (pthread_create(th, &a, fn, arg)) {
        agl_error("apo: cannot start a thread: %s", strerror(errno));
        abort();
    }
    pthread_attr_destroy(&a);
}

/* ---- candidates ---- */

static cand *cand_new(run *R, const char *text, int parent, int round)
{
    if (R->ncand == R->capcand) {
        R->capcand = R->capcand ? R->capcand * 2 : 32;
        R->cands = agl_realloc(R->cands, R->capcand * sizeof(cand *));
    }
    cand *c = agl_calloc(1, sizeof *c);
    snprintf(c->version, sizeof c->version, "v%zu", R->ncand);
    c->text = text ? agl_strdup(text) : NULL;
    c->parent = parent;
    c->round = round;
    c->score = NAN;
    c->evals = json_array();
    R->cands[R->ncand++] = c;
    return c;
}

static int cand_index(run *R, const cand *c)
{
    for (size_t i = 0; i < R->ncand; i++)
        if (R->cands[i] == c) return (int)i;
    return -1;
}

static void cand_free(cand *c)
{
    free(c->text);
    free(c->reason);
    free(c->critique);
    json_decref(c->evals);
    free(c);
}

/* ---- report ---- */

static json_t *usage_json(const agl_llm_usage *u)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f}", "calls", (json_int_t)u->calls, "failures",
                     (json_int_t)u->failures, "retries", (json_int_t)u->retries, "prompt_tokens",
                     (json_int_t)u->prompt_tokens, "completion_tokens",
                     (json_int_t)u->completion_tokens, "total_tokens", (json_int_t)u->total_tokens,
                     "cost_usd", u->cost_usd, "seconds", u->seconds);
}

static json_t *opt_num(double v)
{
    return isnan(v) || isinf(v) ? json_null() : json_real(v);
}

static int write_text(const char *path, const char *text)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---- the run ---- */

static uint64_t run_id_hash(const run *R)
{
    const apo_opts *o = &R->o;
    uint64_t h = APO_HASH_INIT;
    char *res = json_dumps(R->seed.resources, JSON_COMPACT | JSON_SORT_KEYS);
    const char *parts[] = {R->train.text,         R->val.text,       res,
                           R->seed.resource_name, o->gradient_model, o->edit_model};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        h = apo_hash(h, parts[i], strlen(parts[i]) + 1);
    free(res);
    char nums[256];
    snprintf(nums, sizeof nums, "%ld/%ld/%ld/%ld/%ld/%.17g/%ld/%d", o->beam_width, o->branch_factor,
             o->rounds, o->grad_batch, o->val_batch, o->temperature, o->seed,
             o->no_initial_validation);
    return apo_hash(h, nums, strlen(nums));
}

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &s, sizeof s) != (ssize_t)sizeof s) s = 0;
        close(fd);
    }
    if (!s) s = (uint64_t)(agl_now() * 1e6) ^ (uint64_t)getpid();
    return s & ((1ULL << 53) - 1); /* exact in JSON */
}

static int join_evals(run *R, eval_job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) pthread_join(jobs[i].th, NULL);
    return run_failed(R) ? -1 : 0;
}

static void eval_job_set(eval_job *j, run *R, cand *c, int round, const char *kind,
                         const apo_dataset *ds, const char *mode, const size_t *tasks, size_t n)
{
    memset(j, 0, sizeof *j);
    j->R = R;
    j->c = c;
    j->round = round;
    j->kind = kind;
    j->ds = ds;
    j->mode = mode;
    j->tasks = tasks;
    j->n = n;
    j->score = NAN;
    snprintf(j->key, sizeof j->key, "r%d/%s/%s", round, kind, c->version);
}

static int apo_run(run *R)
{
    apo_opts *o = &R->o;
    const size_t W = (size_t)o->beam_width, B = (size_t)o->branch_factor;
    uint64_t seed;
    pthread_mutex_lock(&R->mu);
    json_t *js = json_object_get(R->state, "seed");
    if (json_is_integer(js)) {
        seed = (uint64_t)json_integer_value(js);
    } else {
        seed = o->seed ? (uint64_t)o->seed : random_seed();
        json_object_set_new(R->state, "seed", json_integer((json_int_t)seed));
        state_save_locked(R);
    }
    pthread_mutex_unlock(&R->mu);
    agl_info("apo: random seed %llu", (unsigned long long)seed);
    apo_rng rng;
    apo_rng_seed(&rng, seed);
    apo_batch_iter grad_it, val_it;
    apo_batch_iter_init(&grad_it, R->train.n, (size_t)o->grad_batch, &rng);
    apo_batch_iter_init(&val_it, R->val.n, (size_t)o->val_batch, &rng);
    size_t gsz = apo_batch_iter_size(&grad_it), vsz = apo_batch_iter_size(&val_it);

    size_t *full = agl_malloc(R->val.n * sizeof(size_t));
    for (size_t i = 0; i < R->val.n; i++) full[i] = i; /* stored order (§1.3) */

    /* planned rollouts, for the ETA */
    R->pg.rollouts_total = o->no_initial_validation ? 0 : (long)R->val.n;
    for (long r = 0; r < o->rounds; r++) {
        size_t beam = r == 0 ? 1 : W;
        R->pg.rollouts_total += (long)(W * B * gsz + (beam + W * B) * vsz + R->val.n);
    }

    cand *seedc = cand_new(R, R->seed.template_text, -1, 0);
    seedc->status = "seed";
    size_t nleaders = (size_t)o->rounds + 1;
    eval_job *leaders = agl_calloc(nleaders, sizeof(eval_job));
    size_t nl = 0;
    int rc = 0;
    {
        agl_error e;
        agl_store_client *sc = agl_store_client_new(o->store, true, &e);
        bool ok = sc && publish_cand(R, sc, seedc);
        agl_store_client_free(sc);
        if (!ok) rc = -1;
    }
    if (!rc && !o->no_initial_validation) {
        eval_job_set(&leaders[nl], R, seedc, 0, "full_val", &R->val, "val", full, R->val.n);
        snprintf(leaders[nl].key, sizeof leaders[nl].key, "seed/full_val/%s", seedc->version);
        start_thread(&leaders[nl].th, eval_thread, &leaders[nl]);
        nl++;
    }

    size_t nbeam = 1;
    cand **beam = agl_calloc(W + 1, sizeof(cand *));
    beam[0] = seedc;
    size_t *parents = agl_malloc(W * sizeof(size_t));
    size_t **valbs = agl_calloc((size_t)o->rounds, sizeof(size_t *));
    grad_job *jobs = agl_calloc(W * B, sizeof(grad_job));
    eval_job *bev = agl_calloc(W, sizeof(eval_job));
    for (int rnd = 1; rnd <= o->rounds && !rc; rnd++) {
        pthread_mutex_lock(&R->pg.mu);
        R->pg.round = rnd;
        R->pg.evals_done = 0;
        R->pg.evals_total = (int)(nbeam + W * B);
        progress_print(&R->pg, true);
        pthread_mutex_unlock(&R->pg.mu);

        /* every random draw of the round, on this thread, before anything starts */
        apo_sample_parents(&rng, nbeam, W, parents);
        valbs[rnd - 1] = agl_malloc(vsz * sizeof(size_t));
        size_t *valb = valbs[rnd - 1];
        apo_batch_iter_next(&val_it, valb);
        size_t nj = 0;
        for (size_t p = 0; p < W; p++)
            for (size_t b = 0; b < B; b++, nj++) {
                grad_job *j = &jobs[nj];
                memset(j, 0, sizeof *j);
                j->R = R;
                j->parent = beam[parents[p]];
                j->child = cand_new(R, NULL, cand_index(R, j->parent), rnd);
                j->round = rnd;
                j->grad = agl_malloc(gsz * sizeof(size_t));
                j->ngrad = apo_batch_iter_next(&grad_it, j->grad);
                j->valb = valb;
                j->nval = vsz;
                j->cvar = (int)apo_rng_below(&rng, APO_N_CRITIQUE_VARIANTS);
                j->evar = (int)apo_rng_below(&rng, APO_N_EDIT_VARIANTS);
                j->subseed = apo_rng_next(&rng);
            }
        {
            char list[512] = "";
            size_t used = 0;
            for (size_t p = 0; p < W && used < sizeof list - 32; p++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", p ? ", " : "",
                                         beam[parents[p]]->version);
            agl_info("apo: round %d/%ld: parents %s; %zu children to generate", rnd, o->rounds,
                     list, W * B);
        }
        /* parents are beam members: publish them once, before their rollouts are enqueued */
        agl_error e;
        agl_store_client *sc = agl_store_client_new(o->store, true, &e);
        for (size_t i = 0; i < nbeam && sc; i++)
            if (!publish_cand(R, sc, beam[i])) break;
        agl_store_client_free(sc);
        if (run_failed(R)) {
            rc = -1;
            break;
        }
        /* critique batches first (they gate the LLM work), then the beam's validation batch */
        for (size_t i = 0; i < nj; i++) start_thread(&jobs[i].th, grad_thread, &jobs[i]);
        for (size_t i = 0; i < nbeam; i++) {
            eval_job_set(&bev[i], R, beam[i], rnd, "val_batch", &R->val, "val", valb, vsz);
            start_thread(&bev[i].th, eval_thread, &bev[i]);
        }
        for (size_t i = 0; i < nj; i++) pthread_join(jobs[i].th, NULL);
        if (join_evals(R, bev, nbeam)) rc = -1;
        for (size_t i = 0; i < nbeam; i++) beam[i]->score = bev[i].score;
        if (rc || run_failed(R)) {
            rc = -1;
            break;
        }

        /* selection: beam + children in creation order, stable by score (§1.8) */
        size_t nall = 0;
        cand **all = agl_calloc(nbeam + nj, sizeof(cand *));
        double *sc_all = agl_calloc(nbeam + nj, sizeof(double));
        for (size_t i = 0; i < nbeam; i++) all[nall++] = beam[i];
        for (size_t i = 0; i < nj; i++)
            if (!strcmp(jobs[i].child->status, "ok")) all[nall++] = jobs[i].child;
        for (size_t i = 0; i < nall; i++) sc_all[i] = all[i]->score;
        size_t *order = agl_malloc((nall ? nall : 1) * sizeof(size_t));
        apo_rank(sc_all, nall, order);
        nbeam = nall < W ? nall : W;
        agl_buf sel;
        agl_buf_init(&sel);
        for (size_t i = 0; i < nbeam; i++) {
            beam[i] = all[order[i]];
            agl_buf_printf(&sel, "%s%s:%.3f", i ? ", " : "", beam[i]->version, beam[i]->score);
        }
        agl_info("apo: round %d/%ld: beam %s", rnd, o->rounds, sel.data ? sel.data : "");
        agl_buf_free(&sel);
        free(order);
        free(sc_all);
        free(all);
        for (size_t i = 0; i < nj; i++) free(jobs[i].grad);
        if (nbeam == 0) {
            agl_error("apo: no candidate left in the beam");
            rc = -1;
            break;
        }
        /* the leader on the full validation set, overlapping the next round */
        eval_job_set(&leaders[nl], R, beam[0], rnd, "full_val", &R->val, "val", full, R->val.n);
        start_thread(&leaders[nl].th, eval_thread, &leaders[nl]);
        nl++;
    }
    if (join_evals(R, leaders, nl)) rc = -1;

    /* history best, in round order: strictly better replaces (§1.8) */
    cand *best = seedc;
    double best_score = -INFINITY;
    json_t *rounds = json_array();
    for (size_t i = 0; i < nl && !rc; i++) {
        eval_job *l = &leaders[i];
        if (l->score > best_score) {
            best_score = l->score;
            best = l->c;
        }
        json_array_append_new(rounds,
                              json_pack("{s:i,s:s,s:o}", "round", l->round, "leader", l->c->version,
                                        "leader_full_val_score", opt_num(l->score)));
    }

    if (!rc) {
        agl_error e;
        agl_store_client *sc = agl_store_client_new(o->store, true, &e);
        if (!sc || apo_publish(sc, &R->seed, o->publish_best_as, best->text, &e) != AGL_OK) {
            agl_error("apo: cannot publish the best prompt as '%s': %s", o->publish_best_as, e.msg);
            rc = -1;
        }
        agl_store_client_free(sc);
    }
    if (!rc) {
        agl_info("apo: best prompt %s, full validation score %.3f (seed %.3f), published as '%s'",
                 best->version, best_score,
                 o->no_initial_validation || nl == 0 ? NAN : leaders[0].score, o->publish_best_as);
        if (o->output && write_text(o->output, best->text)) {
            agl_error("apo: cannot write %s: %s", o->output, strerror(errno));
            rc = -1;
        }
    }
    if (!rc && (o->report || o->output)) {
        char rp[4096];
        if (o->report && *o->report)
            snprintf(rp, sizeof rp, "%s", o->report);
        else
            snprintf(rp, sizeof rp, "%s.report.json", o->output);
        agl_llm_usage total;
        agl_llm_client_usage(R->llm, &total);
        json_t *cands = json_array();
        for (size_t i = 0; i < R->ncand; i++) {
            cand *c = R->cands[i];
            json_array_append_new(
                cands,
                json_pack("{s:s,s:s?,s:i,s:s?,s:s?,s:s?,s:s?,s:O,s:o}", "version", c->version,
                          "parent", c->parent >= 0 ? R->cands[c->parent]->version : NULL, "round",
                          c->round, "status", c->status ? c->status : "not_generated", "reason",
                          c->reason, "text", c->text, "critique", c->critique, "evaluations",
                          c->evals, "llm_usage", usage_json(&c->usage)));
        }
        json_t *rep = json_pack(
            "{s:s,s:s,s:I,s:{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:f,s:I,s:f,s:b},"
            "s:{s:s,s:o,s:s},s:o,s:o,s:o,s:o,s:I,s:f}",
            "run_id", R->state_id, "resource_name", R->seed.resource_name, "seed", (json_int_t)seed,
            "params", "store", o->store, "llm_base_url", o->llm_base_url, "gradient_model",
            o->gradient_model, "edit_model", o->edit_model, "beam_width", (int)o->beam_width,
            "branch_factor", (int)o->branch_factor, "rounds", (int)o->rounds, "gradient_batch_size",
            (int)o->grad_batch, "val_batch_size", (int)o->val_batch, "temperature", o->temperature,
            "llm_max_tokens", (json_int_t)o->llm_max_tokens, "rollout_timeout", o->rollout_timeout,
            "initial_validation", !o->no_initial_validation, "best", "version", best->version,
            "score", opt_num(best_score), "text", best->text, "seed_score",
            opt_num(o->no_initial_validation || nl == 0 ? NAN : leaders[0].score), "rounds", rounds,
            "candidates", cands, "llm_usage", usage_json(&total), "rollouts",
            (json_int_t)R->rollouts_enqueued, "wall_seconds", agl_monotonic() - R->pg.t0);
        rounds = NULL;
        char *text = json_dumps(rep, JSON_INDENT(2));
        json_decref(rep);
        if (!text || write_text(rp, text)) {
            agl_error("apo: cannot write the report %s: %s", rp, strerror(errno));
            rc = -1;
        } else {
            agl_info("apo: report written to %s", rp);
        }
        free(text);
    }
    json_decref(rounds);
    if (R->failed) agl_error("apo: %s (restart with the same arguments to resume)", R->fail.msg);

    for (int r = 0; r < o->rounds; r++) free(valbs[r]);
    free(valbs);
    free(jobs);
    free(bev);
    free(beam);
    free(parents);
    free(leaders);
    free(full);
    apo_batch_iter_free(&grad_it);
    apo_batch_iter_free(&val_it);
    return rc;
}

/* ---- checks before any work ---- */

static int check_store(const char *url)
{
    agl_error e;
    agl_store_client *sc = agl_store_client_new(url, false, &e);
    if (!sc) {
        fprintf(stderr, "trainerd apo: %s\n", e.msg);
        return -1;
    }
    json_t *out = NULL;
    agl_code rc = agl_store_call(sc, "GET", "/v1/agl/health", NULL, &out, &e);
    json_decref(out);
    agl_store_client_free(sc);
    if (rc != AGL_OK) {
        fprintf(stderr, "trainerd apo: cannot reach the store at %s: %s\n", url, e.msg);
        return -1;
    }
    return 0;
}

static const char *const log_formats[] = {"text", "json", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

int trainerd_apo_main(int argc, char **argv)
{
    run R;
    memset(&R, 0, sizeof R);
    apo_opts *o = &R.o;
    *o = (apo_opts){.store = "http://127.0.0.1:4747",
                    .llm_key_env = "OPENAI_API_KEY",
                    .gradient_model = "gpt-5-mini",
                    .edit_model = "gpt-4.1-mini",
                    .publish_best_as = "apo-best",
                    .log_format = "text",
                    .log_level = "info",
                    .beam_width = 4,
                    .branch_factor = 4,
                    .rounds = 3,
                    .grad_batch = 4,
                    .val_batch = 16,
                    .llm_retries = 5,
                    .temperature = 1.0,
                    .rollout_timeout = 3600,
                    .llm_timeout = 300};
    agl_option opts[] = {
        {"store", "AGL_APO_STORE", AGL_OPT_STR, &o->store, "URL", "stored base URL", NULL},
        {"train", "AGL_APO_TRAIN", AGL_OPT_STR, &o->train, "FILE.jsonl",
         "training tasks (critique batches), one JSON value per line", NULL},
        {"val", "AGL_APO_VAL", AGL_OPT_STR, &o->val, "FILE.jsonl",
         "validation tasks (selection and scoring), one JSON value per line", NULL},
        {"seed-prompt", "AGL_APO_SEED_PROMPT", AGL_OPT_STR, &o->seed_prompt, "FILE",
         "the seed template (text), or a JSON object of resources holding it", NULL},
        {"resource-name", "AGL_APO_RESOURCE_NAME", AGL_OPT_STR, &o->resource_name, "NAME",
         "resource the template is published under (default prompt_template; for a JSON seed the "
         "first prompt_template)",
         NULL},
        {"llm-base-url", "AGL_APO_LLM_BASE_URL", AGL_OPT_STR, &o->llm_base_url, "URL",
         "OpenAI-compatible base URL (…/v1) of the critic and editor models", NULL},
        {"llm-api-key-env", "AGL_APO_LLM_API_KEY_ENV", AGL_OPT_STR, &o->llm_key_env, "NAME",
         "environment variable holding the API key", NULL},
        {"llm-timeout", "AGL_APO_LLM_TIMEOUT", AGL_OPT_DOUBLE, &o->llm_timeout, "S",
         "limit on one LLM call attempt", NULL},
        {"llm-retries", "AGL_APO_LLM_RETRIES", AGL_OPT_INT, &o->llm_retries, "N",
         "retries of an LLM call on 429/5xx/timeouts, with backoff", NULL},
        {"gradient-model", "AGL_APO_GRADIENT_MODEL", AGL_OPT_STR, &o->gradient_model, "MODEL",
         "model that writes the critique", NULL},
        {"edit-model", "AGL_APO_EDIT_MODEL", AGL_OPT_STR, &o->edit_model, "MODEL",
         "model that rewrites the template", NULL},
        {"beam-width", "AGL_APO_BEAM_WIDTH", AGL_OPT_INT, &o->beam_width, "N",
         "survivors per round, and parents sampled per round", NULL},
        {"branch-factor", "AGL_APO_BRANCH_FACTOR", AGL_OPT_INT, &o->branch_factor, "N",
         "children per parent per round", NULL},
        {"rounds", "AGL_APO_ROUNDS", AGL_OPT_INT, &o->rounds, "N", "beam search rounds", NULL},
        {"gradient-batch-size", "AGL_APO_GRADIENT_BATCH_SIZE", AGL_OPT_INT, &o->grad_batch, "N",
         "training tasks per critique", NULL},
        {"val-batch-size", "AGL_APO_VAL_BATCH_SIZE", AGL_OPT_INT, &o->val_batch, "N",
         "validation tasks per selection", NULL},
        {"temperature", "AGL_APO_TEMPERATURE", AGL_OPT_DOUBLE, &o->temperature, "T",
         "temperature of the critic and editor calls (< 0: not sent)", NULL},
        {"llm-max-tokens", "AGL_APO_LLM_MAX_TOKENS", AGL_OPT_INT, &o->llm_max_tokens, "N",
         "max_tokens of the critic and editor calls (0: not sent)", NULL},
        {"rollout-timeout", "AGL_APO_ROLLOUT_TIMEOUT", AGL_OPT_DOUBLE, &o->rollout_timeout, "S",
         "longest wait for one evaluation's rollouts; late ones are not scored", NULL},
        {"no-initial-validation", "AGL_APO_NO_INITIAL_VALIDATION", AGL_OPT_FLAG,
         &o->no_initial_validation, NULL, "do not score the seed on the full validation set", NULL},
        {"seed", "AGL_APO_SEED", AGL_OPT_INT, &o->seed, "N",
         "random seed (0 = random; a resumed run keeps its own)", NULL},
        {"fresh", "AGL_APO_FRESH", AGL_OPT_FLAG, &o->fresh, NULL,
         "ignore the state of an earlier run with the same arguments", NULL},
        {"output", "AGL_APO_OUTPUT", AGL_OPT_STR, &o->output, "FILE",
         "write the best template here (and the report to FILE.report.json)", NULL},
        {"report", "AGL_APO_REPORT", AGL_OPT_STR, &o->report, "FILE", "write the JSON report here",
         NULL},
        {"publish-best-as", "AGL_APO_PUBLISH_BEST_AS", AGL_OPT_STR, &o->publish_best_as, "ID",
         "resources id the best prompt is published under", NULL},
        {"llm-price-in", "AGL_APO_LLM_PRICE_IN", AGL_OPT_DOUBLE, &o->price_in, "USD",
         "price per million prompt tokens, for the report's cost", NULL},
        {"llm-price-out", "AGL_APO_LLM_PRICE_OUT", AGL_OPT_DOUBLE, &o->price_out, "USD",
         "price per million completion tokens", NULL},
        {"log-format", "AGL_APO_LOG_FORMAT", AGL_OPT_STR, &o->log_format, "text|json",
         "log line format", log_formats},
        {"log-level", "AGL_APO_LOG_LEVEL", AGL_OPT_STR, &o->log_level, "LEVEL",
         "debug, info, warn or error", log_levels},
        {NULL, NULL, 0, NULL, NULL, NULL, NULL},
    };
    agl_cli cli = {
        .prog = "trainerd apo",
        .usage = "--train FILE --val FILE --seed-prompt FILE --llm-base-url URL [options]",
        .summary = "Automatic prompt optimisation: a beam search over prompt templates in which an "
                   "LLM critiques graded runs and rewrites the template. Rollouts go through the "
                   "store, so any runner (runnerd, Python agentlightning) serves them.",
        .epilog = "Killed and restarted with the same arguments, it resumes from the store.",
        .opts = opts};
    int prc = agl_config_parse(&cli, argc, argv, 1, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    const char *missing = !o->train          ? "--train"
                          : !o->val          ? "--val"
                          : !o->seed_prompt  ? "--seed-prompt"
                          : !o->llm_base_url ? "--llm-base-url"
                                             : NULL;
    if (missing) {
        fprintf(stderr, "trainerd apo: %s is required (see --help)\n", missing);
        return 2;
    }
    struct {
        const char *name;
        long v;
    } pos[] = {{"--beam-width", o->beam_width},
               {"--branch-factor", o->branch_factor},
               {"--rounds", o->rounds},
               {"--gradient-batch-size", o->grad_batch},
               {"--val-batch-size", o->val_batch}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v < 1 || pos[i].v > 100000) {
            fprintf(stderr, "trainerd apo: %s must be between 1 and 100000, not %ld\n", pos[i].name,
                    pos[i].v);
            return 2;
        }
    if (o->rollout_timeout <= 0 || o->llm_timeout <= 0) {
        fprintf(stderr, "trainerd apo: --rollout-timeout and --llm-timeout must be > 0\n");
        return 2;
    }
    if (!*o->publish_best_as) {
        fprintf(stderr, "trainerd apo: --publish-best-as must not be empty\n");
        return 2;
    }
    agl_log_setup("trainerd", o->log_format, o->log_level);
    if (agl_http_global_init() != AGL_OK) {
        fprintf(stderr, "trainerd apo: cannot initialise libcurl\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    agl_error e;
    if (apo_dataset_load(o->train, &R.train, &e) != AGL_OK ||
        apo_dataset_load(o->val, &R.val, &e) != AGL_OK ||
        apo_seed_load(o->seed_prompt, o->resource_name, &R.seed, &e) != AGL_OK) {
        fprintf(stderr, "trainerd apo: %s\n", e.msg);
        apo_dataset_free(&R.train);
        apo_dataset_free(&R.val);
        return 2;
    }
    char **ph;
    char why[256];
    int nph = apo_placeholders(R.seed.template_text, &ph, why, sizeof why);
    if (nph < 0) {
        fprintf(stderr, "trainerd apo: the seed template is not a valid f-string template: %s\n",
                why);
        return 2;
    }
    apo_names_free(ph, nph);

    int rc = 1;
    agl_llm_opts lo = {.base_url = o->llm_base_url,
                       .api_key_env = o->llm_key_env,
                       .timeout_s = o->llm_timeout,
                       .max_retries = o->llm_retries > 0 ? (int)o->llm_retries : -1,
                       .price_in_per_mtok = o->price_in,
                       .price_out_per_mtok = o->price_out};
    R.llm = agl_llm_client_new(&lo, &e);
    if (o->llm_max_tokens > 0)
        R.llm_extra = json_pack("{s:I}", "max_tokens", (json_int_t)o->llm_max_tokens);
    if (!R.llm) {
        fprintf(stderr, "trainerd apo: %s\n", e.msg);
        rc = 2;
        goto out;
    }
    if (check_store(o->store)) goto out;
    if (agl_llm_ping(R.llm, 10, &e) != AGL_OK) {
        fprintf(stderr, "trainerd apo: %s\n", e.msg);
        goto out;
    }

    pthread_mutex_init(&R.mu, NULL);
    pthread_mutex_init(&R.pg.mu, NULL);
    R.pg.t0 = agl_monotonic();
    R.pg.rounds = (int)o->rounds;
    R.pg.best = NAN;
    R.state_sc = agl_store_client_new(o->store, true, &e);
    snprintf(R.state_id, sizeof R.state_id, "apo-state-%016llx",
             (unsigned long long)run_id_hash(&R));
    json_t *prev = NULL;
    if (!o->fresh && agl_store_get_resources(R.state_sc, R.state_id, &prev, &e) == AGL_OK && prev) {
        const char *t = json_string_value(json_object_get(
            json_object_get(json_object_get(prev, "resources"), "apo_state"), "template"));
        R.state = t ? json_loads(t, 0, NULL) : NULL;
        if (R.state)
            agl_info("apo: resuming run %s: %zu evaluations and %zu children recorded", R.state_id,
                     json_object_size(json_object_get(R.state, "evals")),
                     json_object_size(json_object_get(R.state, "children")));
    }
    json_decref(prev);
    if (!json_is_object(R.state)) {
        json_decref(R.state);
        R.state = json_pack("{s:s}", "run_id", R.state_id);
        agl_info("apo: run %s: %zu train and %zu val tasks, resource '%s'", R.state_id, R.train.n,
                 R.val.n, R.seed.resource_name);
    }
    rc = apo_run(&R) ? 1 : 0;
    agl_llm_usage u;
    agl_llm_client_usage(R.llm, &u);
    agl_info("apo: %s; %lld LLM calls, %lld tokens, $%.4f", rc ? "failed" : "done",
             (long long)u.calls, (long long)u.total_tokens, u.cost_usd);
    for (size_t i = 0; i < R.ncand; i++) cand_free(R.cands[i]);
    free(R.cands);
    json_decref(R.state);
    agl_store_client_free(R.state_sc);
    pthread_mutex_destroy(&R.mu);
    pthread_mutex_destroy(&R.pg.mu);
out:
    agl_llm_client_free(R.llm);
    json_decref(R.llm_extra);
    apo_seed_free(&R.seed);
    apo_dataset_free(&R.train);
    apo_dataset_free(&R.val);
    return rc;
}
