/* agl_store_client — the store API as typed C calls (store-api.md §3) on agl_http_client. */
#include "agl_store_client.h"
#include "agl_alloc.h"
#include "agl_buf.h"
#include "agl_http_client.h"

#include <stdlib.h>
#include <string.h>

struct agl_store_client {
    agl_http_client *http;
    char *url;
};

static const double no_retry[1] = {0};

agl_store_client *agl_store_client_new(const char *url, bool retry, agl_error *err)
{
    agl_http_client_opts o = {0};
    if (!retry) {
        o.retry_delays = no_retry;
        o.n_retry_delays = 0;
    }
    agl_http_client *h = agl_http_client_new(url, &o);
    if (!h) {
        agl_error_set(err, AGL_E_INVALID, "store", "store URL '%s' is not an http(s) URL", url);
        return NULL;
    }
    agl_store_client *c = agl_calloc(1, sizeof *c);
    c->http = h;
    c->url = agl_strdup(url);
    size_t n = strlen(c->url);
    while (n > 0 && c->url[n - 1] == '/') c->url[--n] = 0;
    return c;
}

void agl_store_client_free(agl_store_client *c)
{
    if (!c) return;
    agl_http_client_free(c->http);
    free(c->url);
    free(c);
}

const char *agl_store_client_url(const agl_store_client *c)
{
    return c->url;
}

void agl_store_path_segment(agl_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    agl_buf_putc(b, '/');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p)) {
            agl_buf_putc(b, (char)*p);
        } else {
            agl_buf_putc(b, '%');
            agl_buf_putc(b, hex[*p >> 4]);
            agl_buf_putc(b, hex[*p & 15]);
        }
    }
}

agl_code agl_store_call(agl_store_client *c, const char *method, const char *path, const char *body,
                        json_t **out, agl_error *err)
{
    if (out) *out = NULL;
    agl_http_response resp;
    agl_http_response_init(&resp);
    agl_code code = agl_http_json(c->http, method, path, body, &resp, err);
    if (code == AGL_OK && out) {
        *out = agl_json_parse(resp.body.data ? resp.body.data : "", resp.body.len, err);
        if (!*out) {
            code = agl_error_set(err, AGL_E_INTERNAL, NULL,
                                 "store answered %s %s with a body that is not JSON", method, path);
        }
    }
    agl_http_response_free(&resp);
    return code;
}

agl_code agl_store_dequeue(agl_store_client *c, const char *worker_id, agl_arena *a, agl_rollout *r,
                           agl_attempt *at, bool *got, agl_error *err)
{
    *got = false;
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_puts(&b, "{\"limit\":1,\"worker_id\":");
    agl_buf_json_str(&b, worker_id);
    agl_buf_putc(&b, '}');
    json_t *j = NULL;
    agl_code code = agl_store_call(c, "POST", "/v1/agl/queues/rollouts/dequeue", b.data, &j, err);
    agl_buf_free(&b);
    if (code != AGL_OK) return code;
    if (!json_is_array(j)) {
        json_decref(j);
        return agl_error_set(err, AGL_E_INTERNAL, NULL, "dequeue answer is not a list");
    }
    if (json_array_size(j) > 0) {
        bool has_attempt = false;
        code = agl_attempted_rollout_parse(json_array_get(j, 0), a, r, at, &has_attempt, err);
        if (code == AGL_OK && !has_attempt)
            code = agl_error_set(err, AGL_E_INTERNAL, NULL, "dequeued rollout has no attempt");
        *got = code == AGL_OK;
    }
    json_decref(j);
    return code;
}

agl_code agl_store_get_resources(agl_store_client *c, const char *resources_id, json_t **out,
                                 agl_error *err)
{
    agl_buf p;
    agl_buf_init(&p);
    agl_buf_puts(&p, "/v1/agl/resources");
    if (resources_id)
        agl_store_path_segment(&p, resources_id);
    else
        agl_buf_puts(&p, "/latest");
    agl_code code = agl_store_call(c, "GET", p.data, NULL, out, err);
    agl_buf_free(&p);
    if (code == AGL_OK && json_is_null(*out)) {
        json_decref(*out);
        *out = NULL;
    }
    return code;
}

agl_code agl_store_update_worker(agl_store_client *c, const char *worker_id, const char *stats_json,
                                 agl_error *err)
{
    agl_buf p, b;
    agl_buf_init(&p);
    agl_buf_init(&b);
    agl_buf_puts(&p, "/v1/agl/workers");
    agl_store_path_segment(&p, worker_id);
    if (stats_json) {
        agl_buf_puts(&b, "{\"heartbeat_stats\":");
        agl_buf_puts(&b, stats_json);
        agl_buf_putc(&b, '}');
    }
    agl_code code = agl_store_call(c, "POST", p.data, stats_json ? b.data : NULL, NULL, err);
    agl_buf_free(&p);
    agl_buf_free(&b);
    return code;
}

agl_code agl_store_update_attempt(agl_store_client *c, const char *rollout_id,
                                  const char *attempt_id, const char *body_json, agl_error *err)
{
    agl_buf p;
    agl_buf_init(&p);
    agl_buf_puts(&p, "/v1/agl/rollouts");
    agl_store_path_segment(&p, rollout_id);
    agl_buf_puts(&p, "/attempts");
    agl_store_path_segment(&p, attempt_id);
    agl_code code = agl_store_call(c, "POST", p.data, body_json, NULL, err);
    agl_buf_free(&p);
    return code;
}

agl_code agl_store_next_sequence_id(agl_store_client *c, const char *rollout_id,
                                    const char *attempt_id, int64_t *seq, agl_error *err)
{
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_puts(&b, "{\"rollout_id\":");
    agl_buf_json_str(&b, rollout_id);
    agl_buf_puts(&b, ",\"attempt_id\":");
    agl_buf_json_str(&b, attempt_id);
    agl_buf_putc(&b, '}');
    json_t *j = NULL;
    agl_code code = agl_store_call(c, "POST", "/v1/agl/spans/next", b.data, &j, err);
    agl_buf_free(&b);
    if (code != AGL_OK) return code;
    json_t *s = json_object_get(j, "sequence_id");
    if (!json_is_integer(s))
        code = agl_error_set(err, AGL_E_INTERNAL, NULL, "spans/next answer has no sequence_id");
    else
        *seq = json_integer_value(s);
    json_decref(j);
    return code;
}

agl_code agl_store_export_otlp_json(agl_store_client *c, const char *json, size_t len,
                                    agl_error *err)
{
    (void)len;
    return agl_store_call(c, "POST", "/v1/traces", json, NULL, err);
}

agl_code agl_store_export_otlp_protobuf(agl_store_client *c, const void *data, size_t len,
                                        agl_error *err)
{
    agl_http_response resp;
    agl_http_response_init(&resp);
    agl_code code = agl_http_call(c->http, "POST", "/v1/traces", "application/x-protobuf", data,
                                  len, &resp, err);
    agl_http_response_free(&resp);
    return code;
}
