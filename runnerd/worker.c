/* worker — the worker pool: each worker thread registers with the store, dequeues rollouts
 * (polling with jitter, backing off while the queue is empty), fetches the rollout's
 * resources, runs the agent, pushes its spans and reward, and finishes the attempt. One
 * heartbeat thread reports every worker (update_worker) and the attempt each is running
 * (last_heartbeat_time), so a dead runner's attempts turn unresponsive. */
#include "agent.h"
#include "agl_alloc.h"
#include "agl_log.h"
#include "agl_store_client.h"
#include "agl_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

typedef struct worker {
    struct worker_pool *wp;
    int slot;
    char id[160];
    pthread_t th;
    pthread_mutex_t mu; /* guards cur_* and orders attempt heartbeats before the finish */
    bool busy;
    char cur_rid[128], cur_aid[128];
} worker;

struct worker_pool {
    const runnerd_cfg *cfg;
    proxy *px;
    int n;
    worker *w;
    atomic_int live;
    atomic_bool stop_hb;
    pthread_t hb;
};

runnerd_state runnerd_run = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

bool runnerd_sleep(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = (double)ts.tv_sec + ts.tv_nsec / 1e9 + seconds;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    pthread_mutex_lock(&runnerd_run.mu);
    while (!atomic_load(&runnerd_run.drain)) {
        if (pthread_cond_timedwait(&runnerd_run.cv, &runnerd_run.mu, &ts)) break;
    }
    bool woke = atomic_load(&runnerd_run.drain);
    pthread_mutex_unlock(&runnerd_run.mu);
    return woke;
}

void runnerd_request_drain(void)
{
    pthread_mutex_lock(&runnerd_run.mu);
    atomic_store(&runnerd_run.drain, 1);
    pthread_cond_broadcast(&runnerd_run.cv);
    pthread_mutex_unlock(&runnerd_run.mu);
}

void runnerd_request_abort(void)
{
    atomic_store(&runnerd_run.abort, 1);
    runnerd_request_drain();
}

static double jitter(double v, double frac)
{
    double r = (double)rand() / RAND_MAX; /* only spreads polls; quality does not matter */
    double x = v * (1.0 + frac * (2.0 * r - 1.0));
    return x < 0.01 ? 0.01 : x;
}

/* ---- heartbeat ---- */

static char *snapshot_json(const worker *w)
{
    struct utsname u;
    uname(&u);
    struct sysinfo si;
    sysinfo(&si);
    double unit = si.mem_unit ? si.mem_unit : 1;
    double total = si.totalram * unit / 1e9, avail = (si.freeram + si.bufferram) * unit / 1e9;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    json_t *j = json_pack("{s:s,s:s,s:s,s:i,s:f,s:f,s:f,s:f}", "timestamp", ts, "host", u.nodename,
                          "os", u.sysname, "cpu_cores", (int)sysconf(_SC_NPROCESSORS_ONLN),
                          "mem_total_gb", total, "mem_used_gb", total - avail, "mem_pct",
                          total > 0 ? 100.0 * (total - avail) / total : 0.0, "load_1m",
                          si.loads[0] / 65536.0);
    (void)w;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static void *heartbeat_main(void *arg)
{
    worker_pool *wp = arg;
    agl_error err;
    agl_store_client *sc = agl_store_client_new(wp->cfg->store_url, false, &err);
    if (!sc) return NULL;
    while (!atomic_load(&wp->stop_hb)) {
        for (int i = 0; i < wp->n; i++) {
            worker *w = &wp->w[i];
            char *stats = snapshot_json(w);
            if (agl_store_update_worker(sc, w->id, stats, &err) != AGL_OK)
                agl_warn("heartbeat of %s failed: %s", w->id, err.msg);
            free(stats);
            pthread_mutex_lock(&w->mu);
            if (w->busy) {
                char body[96];
                snprintf(body, sizeof body, "{\"last_heartbeat_time\":%.6f}", agl_now());
                if (agl_store_update_attempt(sc, w->cur_rid, w->cur_aid, body, &err) != AGL_OK)
                    agl_warn("heartbeat of attempt %s failed: %s", w->cur_aid, err.msg);
            }
            pthread_mutex_unlock(&w->mu);
        }
        double left = jitter(wp->cfg->heartbeat_interval, 0.1);
        while (left > 0 && !atomic_load(&wp->stop_hb)) {
            agl_sleep(left < 0.1 ? left : 0.1);
            left -= 0.1;
        }
    }
    agl_store_client_free(sc);
    return NULL;
}

/* ---- one rollout ---- */

/* ProxyLLM.get_base_url (algorithms.md §3.1.7). */
static char *proxy_llm_url(const char *endpoint, const char *rid, const char *aid)
{
    agl_buf b;
    agl_buf_init(&b);
    size_t n = strlen(endpoint);
    while (n && endpoint[n - 1] == '/') n--;
    bool v1 = n >= 3 && !strncmp(endpoint + n - 3, "/v1", 3);
    agl_buf_put(&b, endpoint, v1 ? n - 3 : n);
    agl_buf_printf(&b, "/rollout/%s/attempt/%s%s", rid, aid, v1 ? "/v1" : "");
    return agl_buf_steal(&b);
}

static void finish(worker *w, agl_store_client *sc, const agl_rollout *r, const agl_attempt *at,
                   const char *error)
{
    agl_error err;
    const char *body = error ? "{\"status\":\"failed\"}" : "{\"status\":\"succeeded\"}";
    if (agl_store_update_attempt(sc, r->rollout_id, at->attempt_id, body, &err) != AGL_OK)
        agl_error("%s: cannot finish attempt %s of %s: %s", w->id, at->attempt_id, r->rollout_id,
                  err.msg);
    else if (error)
        agl_warn("%s: rollout %s attempt %s failed: %s", w->id, r->rollout_id, at->attempt_id,
                 error);
    else
        agl_info("%s: rollout %s attempt %s succeeded", w->id, r->rollout_id, at->attempt_id);
}

static void run_rollout(worker *w, agl_store_client *sc, const agl_rollout *r,
                        const agl_attempt *at)
{
    const runnerd_cfg *cfg = w->wp->cfg;
    agl_error err;
    agl_info("%s: running rollout %s attempt %s", w->id, r->rollout_id, at->attempt_id);
    pthread_mutex_lock(&w->mu);
    snprintf(w->cur_rid, sizeof w->cur_rid, "%s", r->rollout_id);
    snprintf(w->cur_aid, sizeof w->cur_aid, "%s", at->attempt_id);
    w->busy = true;
    pthread_mutex_unlock(&w->mu);

    agent_ctx ctx = {.cfg = cfg, .rollout = r, .attempt = at};
    json_t *ru = NULL;
    char *base_url = NULL, *upstream = NULL;
    agl_buf sb;
    agl_buf_init(&sb);
    agl_otlp_writer sw;
    agl_otlp_begin(&sw, &sb);
    agl_otlp_resource(&sw, r->rollout_id, at->attempt_id, -1);
    ctx.spans = &sw;

    ctx.input = agl_json_parse(r->input, strlen(r->input), &err);
    if (!ctx.input) ctx.input = json_null();
    if (agl_store_get_resources(sc, r->resources_id, &ru, &err) != AGL_OK) {
        snprintf(ctx.error, sizeof ctx.error, "cannot fetch resources %s: %s",
                 r->resources_id ? r->resources_id : "latest", err.msg);
    }
    ctx.resources = json_incref(json_object_get(ru, "resources"));
    if (!json_is_object(ctx.resources)) {
        json_decref(ctx.resources);
        ctx.resources = json_object();
    }
    json_t *llm = proxy_find_llm(ctx.resources);
    ctx.model = json_string_value(json_object_get(llm, "model"));
    const char *endpoint = json_string_value(json_object_get(llm, "endpoint"));
    const char *ltype = json_string_value(json_object_get(llm, "resource_type"));
    if (endpoint && ltype && !strcmp(ltype, "proxy_llm"))
        upstream = proxy_llm_url(endpoint, r->rollout_id, at->attempt_id);
    else if (endpoint)
        upstream = agl_strdup(endpoint);
    proxy_register_attempt(w->wp->px, r->rollout_id, at->attempt_id, upstream,
                           json_string_value(json_object_get(llm, "api_key")));
    agl_buf ub;
    agl_buf_init(&ub);
    agl_buf_puts(&ub, proxy_url(w->wp->px));
    agl_buf_puts(&ub, "/rollout");
    agl_store_path_segment(&ub, r->rollout_id);
    agl_buf_puts(&ub, "/attempt");
    agl_store_path_segment(&ub, at->attempt_id);
    agl_buf_puts(&ub, "/v1");
    base_url = agl_buf_steal(&ub);
    ctx.llm_base_url = base_url;

    double timeout = r->config.has_timeout ? r->config.timeout_seconds : cfg->exec_timeout;
    if (timeout > 0) {
        double left = timeout - (agl_now() - at->start_time);
        ctx.deadline = agl_monotonic() + (left > 0.05 ? left : 0.05);
    }

    if (!ctx.error[0]) {
        char body[128];
        snprintf(body, sizeof body, "{\"status\":\"running\",\"last_heartbeat_time\":%.6f}",
                 agl_now());
        if (agl_store_update_attempt(sc, r->rollout_id, at->attempt_id, body, &err) != AGL_OK)
            agl_warn("%s: cannot mark attempt %s running: %s", w->id, at->attempt_id, err.msg);
        const char *kind = cfg->agent;
        if (!strcmp(kind, "prompt")) {
            agent_prompt_run(&ctx);
        } else if (!strncmp(kind, "exec:", 5)) {
            ctx.agent_arg = kind + 5;
            agent_exec_run(&ctx);
        } else {
            ctx.agent_arg = kind + 5;
            agent_http_run(&ctx);
        }
    }
    if (!ctx.error[0] && atomic_load(&runnerd_run.abort))
        snprintf(ctx.error, sizeof ctx.error, "aborted by a second SIGTERM");

    proxy_unregister_attempt(w->wp->px, at->attempt_id);
    proxy_flush(w->wp->px);
    if (ctx.error[0]) {
        char tid[33], sid[17];
        agl_trace_id_new(tid);
        agl_span_id_new(sid);
        double now = agl_now();
        agl_otlp_span_begin(&sw, tid, sid, NULL, "agentlightning.exception", now, now,
                            AGL_SPAN_ERROR, ctx.error);
        agl_otlp_attr_str(&sw, "exception.type", "AgentError");
        agl_otlp_attr_str(&sw, "exception.message", ctx.error);
        agl_otlp_span_end(&sw);
    } else if (ctx.has_reward) {
        agl_otlp_reward_span(&sw, ctx.reward);
    }
    bool any = sw.n_span > 0;
    agl_otlp_end(&sw);
    if (any && agl_store_export_otlp_json(sc, sb.data, sb.len, &err) != AGL_OK)
        agl_warn("%s: spans of attempt %s lost: %s", w->id, at->attempt_id, err.msg);

    pthread_mutex_lock(&w->mu);
    w->busy = false;
    pthread_mutex_unlock(&w->mu);
    finish(w, sc, r, at, ctx.error[0] ? ctx.error : NULL);

    agl_buf_free(&sb);
    json_decref(ctx.input);
    json_decref(ctx.resources);
    json_decref(ru);
    free(base_url);
    free(upstream);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    worker_pool *wp = w->wp;
    const runnerd_cfg *cfg = wp->cfg;
    agl_error err;
    agl_store_client *sc = agl_store_client_new(cfg->store_url, true, &err);
    agl_store_client *dq = agl_store_client_new(cfg->store_url, false, &err);
    char *stats = snapshot_json(w);
    if (agl_store_update_worker(sc, w->id, stats, &err) != AGL_OK)
        agl_warn("%s: cannot register with the store: %s", w->id, err.msg);
    free(stats);
    long processed = 0;
    double backoff = 0.05;
    bool warned = false;
    while (!atomic_load(&runnerd_run.drain) &&
           (cfg->max_rollouts <= 0 || processed < cfg->max_rollouts)) {
        agl_arena a;
        agl_arena_init(&a);
        agl_rollout r;
        agl_attempt at;
        bool got = false;
        agl_code code = agl_store_dequeue(dq, w->id, &a, &r, &at, &got, &err);
        if (code != AGL_OK && !warned) {
            agl_warn("%s: dequeue failed (will keep trying): %s", w->id, err.msg);
            warned = true;
        }
        if (!got) {
            agl_arena_free(&a);
            runnerd_sleep(jitter(backoff, 0.2));
            backoff = backoff * 2 < cfg->poll_interval ? backoff * 2 : cfg->poll_interval;
            continue;
        }
        warned = false;
        backoff = 0.05;
        run_rollout(w, sc, &r, &at);
        agl_arena_free(&a);
        processed++;
    }
    agl_info("%s: stopping after %ld rollout(s)", w->id, processed);
    agl_store_client_free(sc);
    agl_store_client_free(dq);
    atomic_fetch_sub(&wp->live, 1);
    return NULL;
}

worker_pool *worker_pool_start(const runnerd_cfg *cfg, proxy *px)
{
    worker_pool *wp = agl_calloc(1, sizeof *wp);
    wp->cfg = cfg;
    wp->px = px;
    wp->n = (int)cfg->workers;
    wp->w = agl_calloc((size_t)wp->n, sizeof *wp->w);
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    srand((unsigned)(getpid() ^ (unsigned)(agl_monotonic() * 1e6)));
    atomic_store(&wp->live, wp->n);
    for (int i = 0; i < wp->n; i++) {
        worker *w = &wp->w[i];
        w->wp = wp;
        w->slot = i;
        if (cfg->worker_prefix && *cfg->worker_prefix)
            snprintf(w->id, sizeof w->id, "%s%d", cfg->worker_prefix, i);
        else
            snprintf(w->id, sizeof w->id, "%s:Worker-%d", host, i);
        pthread_mutex_init(&w->mu, NULL);
    }
    for (int i = 0; i < wp->n; i++) pthread_create(&wp->w[i].th, NULL, worker_main, &wp->w[i]);
    if (cfg->heartbeat_interval > 0) pthread_create(&wp->hb, NULL, heartbeat_main, wp);
    return wp;
}

int worker_pool_live(worker_pool *wp)
{
    return atomic_load(&wp->live);
}

void worker_pool_join(worker_pool *wp)
{
    for (int i = 0; i < wp->n; i++) pthread_join(wp->w[i].th, NULL);
    atomic_store(&wp->stop_hb, true);
    if (wp->cfg->heartbeat_interval > 0) pthread_join(wp->hb, NULL);
    for (int i = 0; i < wp->n; i++) pthread_mutex_destroy(&wp->w[i].mu);
    free(wp->w);
    free(wp);
}
