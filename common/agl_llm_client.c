/* agl_llm_client — OpenAI-compatible chat completions with retries and usage accounting.
 * Retries are ours, not agl_http_client's: model servers answer 429 when rate-limited, which the
 * store client's policy does not retry, and model calls want longer, growing delays. */
#include "agl_llm_client.h"
#include "agl_alloc.h"
#include "agl_http_client.h"
#include "agl_log.h"
#include "agl_util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX 32

struct agl_llm_client {
    agl_llm_opts o;
    char *base_url;
    char *auth_header; /* "Authorization: Bearer …" or NULL */
    pthread_mutex_t mu;
    agl_http_client *pool[POOL_MAX]; /* idle connections */
    int n_pool;
    agl_llm_usage total;
    uint64_t rng;
};

static const double no_retry[1] = {0};

agl_llm_client *agl_llm_client_new(const agl_llm_opts *opts, agl_error *err)
{
    if (!opts || !opts->base_url ||
        (strncmp(opts->base_url, "http://", 7) && strncmp(opts->base_url, "https://", 8))) {
        agl_error_set(err, AGL_E_INVALID, "llm-base-url",
                      "llm base url '%s' is not an http:// or https:// URL",
                      opts && opts->base_url ? opts->base_url : "");
        return NULL;
    }
    agl_llm_client *c = agl_calloc(1, sizeof *c);
    c->o = *opts;
    if (c->o.timeout_s <= 0) c->o.timeout_s = 120;
    if (c->o.connect_timeout_s <= 0) c->o.connect_timeout_s = 5;
    if (c->o.max_retries == 0) c->o.max_retries = 5;
    if (c->o.max_retries < 0) c->o.max_retries = 0;
    if (c->o.backoff_s <= 0) c->o.backoff_s = 1;
    if (c->o.backoff_max_s <= 0) c->o.backoff_max_s = 30;
    size_t n = strlen(opts->base_url);
    while (n > 0 && opts->base_url[n - 1] == '/') n--;
    c->base_url = agl_strndup(opts->base_url, n);
    c->o.base_url = c->base_url;
    const char *key = getenv(opts->api_key_env ? opts->api_key_env : "OPENAI_API_KEY");
    if (key && *key) {
        size_t len = strlen(key) + 32;
        c->auth_header = agl_malloc(len);
        snprintf(c->auth_header, len, "Authorization: Bearer %s", key);
    }
    c->o.api_key_env = NULL; /* not kept: the caller's string may not outlive us */
    pthread_mutex_init(&c->mu, NULL);
    c->rng = (uint64_t)(agl_now() * 1e6) ^ (uint64_t)(uintptr_t)c;
    return c;
}

void agl_llm_client_free(agl_llm_client *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_pool; i++) agl_http_client_free(c->pool[i]);
    pthread_mutex_destroy(&c->mu);
    free(c->auth_header);
    free(c->base_url);
    free(c);
}

const char *agl_llm_client_url(const agl_llm_client *c)
{
    return c->base_url;
}

int agl_llm_client_has_key(const agl_llm_client *c)
{
    return c->auth_header != NULL;
}

static agl_http_client *conn_get(agl_llm_client *c, double timeout_s)
{
    pthread_mutex_lock(&c->mu);
    agl_http_client *h = c->n_pool ? c->pool[--c->n_pool] : NULL;
    pthread_mutex_unlock(&c->mu);
    if (h) return h;
    const char *headers[2] = {c->auth_header, NULL};
    agl_http_client_opts ho = {.connect_timeout_s = c->o.connect_timeout_s,
                               .request_timeout_s = timeout_s,
                               .retry_delays = no_retry,
                               .n_retry_delays = 0,
                               .headers = c->auth_header ? headers : NULL};
    return agl_http_client_new(c->base_url, &ho);
}

static void conn_put(agl_llm_client *c, agl_http_client *h)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_pool < POOL_MAX) {
        c->pool[c->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    agl_http_client_free(h);
}

static double rng_unit(agl_llm_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    uint64_t x = c->rng;
    pthread_mutex_unlock(&c->mu);
    return (double)(x >> 11) / 9007199254740992.0;
}

double agl_llm_backoff(const agl_llm_opts *o, int k, double u)
{
    double base = o->backoff_s > 0 ? o->backoff_s : 1,
           cap = o->backoff_max_s > 0 ? o->backoff_max_s : 30;
    double d = base * pow(2.0, k);
    if (d > cap) d = cap;
    return d * (0.75 + 0.5 * u);
}

void agl_llm_usage_add(agl_llm_usage *a, const agl_llm_usage *b)
{
    a->calls += b->calls;
    a->failures += b->failures;
    a->retries += b->retries;
    a->prompt_tokens += b->prompt_tokens;
    a->completion_tokens += b->completion_tokens;
    a->total_tokens += b->total_tokens;
    a->cost_usd += b->cost_usd;
    a->seconds += b->seconds;
}

void agl_llm_client_usage(agl_llm_client *c, agl_llm_usage *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->total;
    pthread_mutex_unlock(&c->mu);
}

static int retryable_status(long s)
{
    return s == 408 || s == 429 || s >= 500;
}

/* The OpenAI error body {"error":{"message":…}} (or a bare detail/message), for messages. */
static void server_error_text(const agl_http_response *r, char *out, size_t cap)
{
    json_t *doc = json_loadb(r->body.data, r->body.len, JSON_DECODE_ANY, NULL);
    json_t *e = json_object_get(doc, "error");
    const char *m = json_string_value(json_object_get(e, "message"));
    if (!m) m = json_string_value(e);
    if (!m) m = json_string_value(json_object_get(doc, "detail"));
    if (!m) m = json_string_value(json_object_get(doc, "message"));
    if (m)
        snprintf(out, cap, "%s", m);
    else
        snprintf(out, cap, "%.200s", r->body.data ? r->body.data : "");
    json_decref(doc);
}

static void account(agl_llm_client *c, const agl_llm_usage *u, agl_llm_usage *caller)
{
    pthread_mutex_lock(&c->mu);
    agl_llm_usage_add(&c->total, u);
    pthread_mutex_unlock(&c->mu);
    if (caller) agl_llm_usage_add(caller, u);
}

static int64_t int_field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* Parses a chat completion into *content and u; AGL_E_INTERNAL when it is not one. */
static agl_code parse_completion(agl_llm_client *c, const agl_http_response *r, char **content,
                                 agl_llm_usage *u, agl_error *err)
{
    json_t *doc = json_loadb(r->body.data, r->body.len, 0, NULL);
    json_t *msg = json_object_get(json_array_get(json_object_get(doc, "choices"), 0), "message");
    if (!json_is_object(msg)) {
        json_decref(doc);
        return agl_error_set(err, AGL_E_INTERNAL, "",
                             "%s/chat/completions answered something that is not a chat "
                             "completion: %.200s",
                             c->base_url, r->body.data ? r->body.data : "");
    }
    json_t *ct = json_object_get(msg, "content");
    *content = json_is_string(ct) ? agl_strdup(json_string_value(ct)) : NULL;
    json_t *usage = json_object_get(doc, "usage");
    u->prompt_tokens = int_field(usage, "prompt_tokens");
    u->completion_tokens = int_field(usage, "completion_tokens");
    u->total_tokens = int_field(usage, "total_tokens");
    if (!u->total_tokens) u->total_tokens = u->prompt_tokens + u->completion_tokens;
    json_t *cost = json_object_get(usage, "cost");
    if (json_is_number(cost))
        u->cost_usd = json_number_value(cost);
    else
        u->cost_usd = ((double)u->prompt_tokens * c->o.price_in_per_mtok +
                       (double)u->completion_tokens * c->o.price_out_per_mtok) /
                      1e6;
    u->calls = 1;
    json_decref(doc);
    return AGL_OK;
}

agl_code agl_llm_chat(agl_llm_client *c, const char *model, const json_t *messages,
                      double temperature, const json_t *extra, char **content, agl_llm_usage *usage,
                      agl_error *err)
{
    *content = NULL;
    json_t *body = json_object();
    if (json_is_object(extra)) json_object_update(body, (json_t *)extra);
    json_object_set_new(body, "model", json_string(model));
    json_object_set(body, "messages", (json_t *)messages);
    if (temperature >= 0) json_object_set_new(body, "temperature", json_real(temperature));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    agl_llm_usage u = {0};
    double t0 = agl_monotonic();
    agl_code code = AGL_E_UNAVAILABLE;
    for (int k = 0;; k++) {
        agl_http_client *h = conn_get(c, c->o.timeout_s);
        if (!h) {
            code = agl_error_set(err, AGL_E_INTERNAL, "", "cannot create an http client for %s",
                                 c->base_url);
            break;
        }
        agl_http_response r;
        agl_error e;
        agl_code rc = agl_http_request(h, "POST", "/chat/completions", "application/json", text,
                                       strlen(text), &r, &e);
        char why[400];
        int retry = 0;
        if (rc == AGL_E_UNAVAILABLE) {
            snprintf(why, sizeof why, "%s", e.msg);
            retry = 1;
            agl_http_client_free(h); /* the connection may be half-dead */
            h = NULL;
        } else if (rc != AGL_OK) {
            code = agl_error_set(err, rc, "", "%s", e.msg);
        } else if (r.status >= 200 && r.status < 300) {
            code = parse_completion(c, &r, content, &u, err);
        } else {
            char se[300];
            server_error_text(&r, se, sizeof se);
            snprintf(why, sizeof why, "status %ld: %s", r.status, se);
            if (retryable_status(r.status)) {
                retry = 1;
            } else {
                code = agl_error_set(err,
                                     r.status == 401 || r.status == 403
                                         ? AGL_E_BAD_REQUEST
                                         : agl_http_status_code(r.status),
                                     "", "%s/chat/completions (model %s) refused the request: %s",
                                     c->base_url, model, why);
            }
        }
        agl_http_response_free(&r);
        if (h) conn_put(c, h);
        if (!retry) break;
        if (k >= c->o.max_retries) {
            code = agl_error_set(err, AGL_E_UNAVAILABLE, "",
                                 "%s/chat/completions (model %s) failed after %d attempts: %s",
                                 c->base_url, model, k + 1, why);
            break;
        }
        double d = agl_llm_backoff(&c->o, k, rng_unit(c));
        agl_warn("llm %s: %s; retrying in %.2f s (attempt %d of %d)", c->base_url, why, d, k + 2,
                 c->o.max_retries + 1);
        u.retries++;
        agl_sleep(d);
    }
    free(text);
    if (code != AGL_OK) u.failures = 1;
    u.seconds = agl_monotonic() - t0;
    account(c, &u, usage);
    return code;
}

agl_code agl_llm_ping(agl_llm_client *c, double timeout_s, agl_error *err)
{
    const char *headers[2] = {c->auth_header, NULL};
    agl_http_client_opts ho = {.connect_timeout_s = timeout_s,
                               .request_timeout_s = timeout_s,
                               .retry_delays = no_retry,
                               .n_retry_delays = 0,
                               .headers = c->auth_header ? headers : NULL};
    agl_http_client *h = agl_http_client_new(c->base_url, &ho);
    if (!h) return agl_error_set(err, AGL_E_INVALID, "", "bad llm url %s", c->base_url);
    agl_http_response r;
    agl_error e;
    agl_code rc = agl_http_request(h, "GET", "/models", NULL, NULL, 0, &r, &e);
    agl_http_client_free(h);
    if (rc != AGL_OK) {
        agl_http_response_free(&r);
        return agl_error_set(err, rc == AGL_E_UNAVAILABLE ? AGL_E_UNAVAILABLE : rc, "",
                             "llm server %s is unreachable: %s", c->base_url, e.msg);
    }
    long s = r.status;
    char se[300] = "";
    if (s >= 400) server_error_text(&r, se, sizeof se);
    agl_http_response_free(&r);
    if (s == 401 || s == 403)
        return agl_error_set(err, AGL_E_BAD_REQUEST, "",
                             "llm server %s refused the API key (status %ld: %s)%s", c->base_url, s,
                             se, c->auth_header ? "" : "; no key was set");
    if (s >= 500)
        return agl_error_set(err, AGL_E_UNAVAILABLE, "", "llm server %s answers status %ld: %s",
                             c->base_url, s, se);
    return AGL_OK;
}
