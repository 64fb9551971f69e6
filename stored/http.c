/* http — libmicrohttpd glue: body accumulation with a size cap, transaction bracketing,
 * error rendering and graceful shutdown. Routing itself is in api.c. */
#include "http.h"
#include "agl_alloc.h"
#include "agl_log.h"
#include "agl_model.h"
#include "agl_util.h"
#include "metrics.h"
#include "otlp.h"
#include "stored.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stored_http {
    struct MHD_Daemon *d;
    stored_ctx *ctx;
    long max_body;
    char *cors;    /* ",origin1,origin2," or NULL when CORS is off */
    bool cors_any; /* "*" configured */
    atomic_int inflight;
    int port;
};

/* ---- request helpers used by handlers ---- */

agl_code req_db(agl_req *r, db_conn **out, agl_error *err)
{
    if (!r->db) {
        agl_code code = db_acquire(r->ctx->pool, &r->db, err);
        if (code != AGL_OK) return code;
    }
    if (!r->in_tx) {
        agl_code code = db_begin(r->db, err);
        if (code != AGL_OK) return code;
        r->in_tx = true;
    }
    *out = r->db;
    return AGL_OK;
}

agl_code req_db_single(agl_req *r, db_conn **out, agl_error *err)
{
    if (!r->db) {
        agl_code code = db_acquire(r->ctx->pool, &r->db, err);
        if (code != AGL_OK) return code;
    }
    *out = r->db;
    return AGL_OK;
}

agl_code req_db_done(agl_req *r, agl_error *err)
{
    agl_code code = AGL_OK;
    if (r->db && r->in_tx) {
        code = db_commit(r->db, err);
        r->commit_failed = code != AGL_OK;
        /* a failed pipeline leaves the transaction aborted: never pool it that way */
        if (code != AGL_OK) db_rollback(r->db);
    }
    r->in_tx = false;
    if (r->db) db_release(r->ctx->pool, r->db);
    r->db = NULL;
    if (code == AGL_OK && r->notify_done) {
        stored_done_broadcast(r->ctx);
        r->notify_done = false;
    }
    return code;
}

agl_code req_json(agl_req *r, bool allow_empty, json_t **out, agl_error *err)
{
    if (r->json) {
        *out = r->json;
        return AGL_OK;
    }
    size_t i = 0;
    while (i < r->body.len && strchr(" \t\r\n", r->body.data[i])) i++;
    if (i == r->body.len) {
        if (!allow_empty) return agl_error_set(err, AGL_E_INVALID, "body", "field required");
        r->json = json_null();
        *out = r->json;
        return AGL_OK;
    }
    r->json = agl_json_parse(r->body.data, r->body.len, err);
    if (!r->json) return err->code;
    *out = r->json;
    return AGL_OK;
}

const char *req_query(agl_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

struct query_collect {
    agl_req *r;
    const char *key;
    const char **vals;
    int n, cap;
};

static enum MHD_Result collect_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct query_collect *q = cls;
    if (strcmp(key, q->key)) return MHD_YES;
    if (q->n == q->cap) {
        int cap = q->cap ? q->cap * 2 : 8;
        const char **nv = agl_arena_alloc(&q->r->arena, sizeof *nv * (size_t)cap);
        if (q->n) memcpy(nv, q->vals, sizeof *nv * (size_t)q->n);
        q->vals = nv;
        q->cap = cap;
    }
    q->vals[q->n++] = value ? value : "";
    return MHD_YES;
}

int req_query_all(agl_req *r, const char *key, const char ***out)
{
    struct query_collect q = {r, key, NULL, 0, 0};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_cb, &q);
    *out = q.vals;
    return q.n;
}

const char *req_header(agl_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

void req_reply(agl_req *r, int status)
{
    r->status = status;
}

/* ---- framework ---- */

static void req_free(agl_req *r)
{
    if (r->db) {
        db_rollback(r->db);
        db_release(r->ctx->pool, r->db);
    }
    if (r->json) json_decref(r->json);
    agl_buf_free(&r->body);
    agl_buf_free(&r->out);
    agl_arena_free(&r->arena);
    free(r);
}

static void render_error(agl_req *r, const agl_error *e)
{
    agl_buf_reset(&r->out);
    r->content_encoding = NULL;
    if (r->proto_errors) {
        uint8_t *body;
        size_t n = agl_otlp_status_body(e->msg, &r->arena, &body);
        agl_buf_put(&r->out, body, n);
        /* OTLP exporters retry 5xx/408 only; a payload problem is a plain 400. */
        r->status = e->code == AGL_E_INVALID ? 400 : agl_code_http_status(e->code);
        r->content_type = "application/x-protobuf";
        return;
    }
    int status;
    char *body = agl_error_http(e, &status);
    agl_buf_puts(&r->out, body);
    free(body);
    r->status = status;
    r->content_type = NULL;
}

static void run_request(agl_req *r)
{
    agl_error err;
    agl_code code = AGL_OK;
    agl_error_clear(&err);
    /* A deadlock or serialization failure is retried: each try is a fresh transaction. So is a
     * connection that turned out dead (database restarted, backend killed): the transaction
     * died with it, so one more try on a fresh connection is safe — unless COMMIT itself was
     * what failed, where the outcome is unknown and the client must decide. */
    for (int attempt = 0; attempt < 4; attempt++) {
        agl_buf_reset(&r->out);
        r->status = 200;
        r->content_type = NULL;
        r->content_encoding = NULL;
        r->notify_done = false;
        r->commit_failed = false;
        agl_error_clear(&err);
        code = stored_dispatch(r, &err);
        if (code == AGL_OK) {
            code = req_db_done(r, &err); /* commits, pools the connection, wakes waiters */
        } else if (r->db) {
            db_rollback(r->db);
            r->in_tx = false;
            db_release(r->ctx->pool, r->db);
            r->db = NULL;
        }
        bool retry = (code == AGL_E_CONFLICT && attempt < 3) ||
                     (code == AGL_E_UNAVAILABLE && attempt == 0 && !r->commit_failed);
        if (!retry) break;
        agl_debug("retrying %s %s: %s", r->method, r->path, err.msg);
    }
    if (code == AGL_OK) return;
    if (code == AGL_E_INTERNAL || code == AGL_E_IO)
        agl_error("%s %s failed: %s", r->method, r->path, err.msg);
    render_error(r, &err);
}

/* ---- CORS (store-api.md §1.5), only when --cors-origin is given ---- */

static bool cors_allowed(const stored_http *h, const char *origin)
{
    if (h->cors_any) return true;
    size_t n = strlen(origin);
    for (const char *p = h->cors; (p = strstr(p, origin)) != NULL; p++)
        if (p[-1] == ',' && p[n] == ',') return true;
    return false;
}

static void cors_headers(const stored_http *h, agl_req *r, struct MHD_Response *resp)
{
    const char *origin = h->cors ? req_header(r, "Origin") : NULL;
    if (!origin) return;
    if (cors_allowed(h, origin)) {
        /* With credentials allowed, a wildcard is only sent when no cookie is involved. */
        bool echo = !h->cors_any || req_header(r, "Cookie");
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", echo ? origin : "*");
        if (echo) MHD_add_response_header(resp, "Vary", "Origin");
    }
    MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "*");
}

/* Answers a CORS preflight; returns false when the request is not one. */
static bool cors_preflight(const stored_http *h, agl_req *r, enum MHD_Result *ret)
{
    if (!h->cors || strcmp(r->method, "OPTIONS")) return false;
    const char *origin = req_header(r, "Origin");
    if (!origin || !req_header(r, "Access-Control-Request-Method")) return false;
    bool ok = cors_allowed(h, origin);
    const char *text = ok ? "OK" : "Disallowed CORS origin";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (ok) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                                "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT");
        const char *hdrs = req_header(r, "Access-Control-Request-Headers");
        if (hdrs) MHD_add_response_header(resp, "Access-Control-Allow-Headers", hdrs);
        MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    *ret = MHD_queue_response(r->conn, ok ? 200 : 400, resp);
    MHD_destroy_response(resp);
    return true;
}

static enum MHD_Result send_reply(stored_http *h, agl_req *r)
{
    struct MHD_Response *resp;
    if (r->out.len == 0 && r->status == 501) {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        size_t len = r->out.len;
        char *data = agl_buf_steal(&r->out);
        resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                r->content_type ? r->content_type : "application/json");
    }
    if (r->content_encoding)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, r->content_encoding);
    cors_headers(h, r, resp);
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    stored_http *h = cls;
    agl_req *r = *con_cls;
    if (!r) {
        r = agl_calloc(1, sizeof *r);
        agl_arena_init(&r->arena);
        agl_buf_init(&r->body);
        agl_buf_init(&r->out);
        r->ctx = h->ctx;
        r->conn = conn;
        r->method = agl_arena_strdup(&r->arena, method);
        r->path = agl_arena_strdup(&r->arena, url);
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoll(cl, NULL, 10) > h->max_body) r->too_large = true;
        atomic_fetch_add(&h->inflight, 1);
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_large && r->body.len + *upload_size > (size_t)h->max_body) {
            r->too_large = true;
            agl_buf_free(&r->body);
        }
        if (!r->too_large) agl_buf_put(&r->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    enum MHD_Result pre;
    if (cors_preflight(h, r, &pre)) return pre;
    double t0 = agl_monotonic();
    if (r->too_large) {
        agl_error e;
        agl_error_set(&e, AGL_E_TOO_LARGE, NULL, "request body exceeds the limit of %ld bytes",
                      h->max_body);
        render_error(r, &e);
    } else {
        run_request(r);
    }
    metrics_request(r->route, r->method, r->status, agl_monotonic() - t0);
    return send_reply(h, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    stored_http *h = cls;
    agl_req *r = *con_cls;
    if (!r) return;
    req_free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&h->inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    agl_debug("http: %s", msg);
}

stored_http *stored_http_start(stored_ctx *ctx, const stored_http_opts *o, agl_error *err)
{
    char host[256];
    const char *colon = strrchr(o->listen, ':');
    if (!colon) {
        agl_error_set(err, AGL_E_BAD_REQUEST, "listen", "expected HOST:PORT, got '%s'", o->listen);
        return NULL;
    }
    size_t hl = (size_t)(colon - o->listen);
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, o->listen, hl);
    host[hl] = 0;
    char *hp = host;
    if (hp[0] == '[' && hl > 1 && hp[hl - 1] == ']') hp[hl - 1] = 0, hp++;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(hp[0] ? hp : NULL, colon + 1, &hints, &ai);
    if (gai != 0) {
        agl_error_set(err, AGL_E_BAD_REQUEST, "listen", "cannot resolve '%s': %s", o->listen,
                      gai_strerror(gai));
        return NULL;
    }
    stored_http *h = agl_calloc(1, sizeof *h);
    h->ctx = ctx;
    h->max_body = o->max_body;
    if (o->cors && *o->cors) {
        h->cors = agl_malloc(strlen(o->cors) + 3);
        sprintf(h->cors, ",%s,", o->cors);
        for (char *p = h->cors; *p; p++)
            if (*p == ' ') *p = ','; /* "a, b" works too */
        h->cors_any = strstr(h->cors, ",*,") != NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (o->threads <= 0)
        flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC;
    else
        flags |= MHD_USE_EPOLL | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->conn_timeout,
                            MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
                            NULL, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
                            o->threads > 0 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
                            (unsigned)o->threads, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        free(h->cors);
        free(h);
        agl_error_set(err, AGL_E_IO, "listen", "cannot listen on %s (address in use?)", o->listen);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : 0;
    return h;
}

int stored_http_port(stored_http *h)
{
    return h->port;
}

void stored_http_stop(stored_http *h)
{
    if (!h) return;
    MHD_quiesce_daemon(h->d);
    /* Let requests already being handled finish (bounded), then close everything. */
    double deadline = agl_monotonic() + 15;
    while (atomic_load(&h->inflight) > 0 && agl_monotonic() < deadline) agl_sleep(0.02);
    MHD_stop_daemon(h->d);
    free(h->cors);
    free(h);
}
