/* agl_http_client — libcurl client: one kept-alive easy handle per client, the reference
 * client's retry policy (store-api.md §7: network errors, 408 and 5xx retried after 1, 2, 5 s;
 * other 4xx returned at once) and the HTTP-status → agl_code mapping for JSON calls. */
#include "agl_http_client.h"
#include "agl_alloc.h"
#include "agl_log.h"
#include "agl_util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#ifndef AGL_VERSION
#define AGL_VERSION "dev"
#endif

#define AGL_HTTP_DEFAULT_CONNECT_S 5.0
#define AGL_HTTP_DEFAULT_REQUEST_S 30.0
/* Jitter is a fraction of each delay, added on top: enough to de-synchronise many runners
 * hammering a restarting store, small enough that the reference's schedule still holds. */
#define AGL_HTTP_JITTER 0.10

static const double default_retry_delays[] = {1.0, 2.0, 5.0};

struct agl_http_client {
    CURL *curl;
    char *base_url; /* without trailing '/' */
    agl_buf url;    /* scratch: base_url + path of the current request */
    double connect_timeout_s;
    double request_timeout_s;
    double *retry_delays;
    size_t n_retry_delays;
    char *user_agent;
    char **headers; /* NULL-terminated copies of opts->headers */
    uint64_t rng;   /* xorshift state for jitter; per client so no locking is needed */
    char errbuf[CURL_ERROR_SIZE];
};

/* ---- global init ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

agl_code agl_http_global_init(void)
{
    /* curl_global_init is not thread-safe in the curl versions we support; pthread_once
     * makes the first caller do it and every other caller wait for it. */
    pthread_once(&global_once, global_init_once);
    return global_rc == CURLE_OK ? AGL_OK : AGL_E_INTERNAL;
}

/* ---- client lifetime ---- */

static uint64_t rng_seed(const void *salt)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
        s = (uint64_t)(uintptr_t)salt ^ (uint64_t)(agl_monotonic() * 1e9);
    return s ? s : 0x9e3779b97f4a7c15ULL; /* xorshift must not start at 0 */
}

/* Uniform double in [0, 1). */
static double rng_next(agl_http_client *c)
{
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0; /* 2^53 */
}

agl_http_client *agl_http_client_new(const char *base_url, const agl_http_client_opts *opts)
{
    static const agl_http_client_opts no_opts;
    if (!opts) opts = &no_opts;
    if (!base_url ||
        (strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0))
        return NULL;
    if (agl_http_global_init() != AGL_OK) return NULL;
    CURL *curl = curl_easy_init();
    if (!curl) return NULL;

    agl_http_client *c = agl_calloc(1, sizeof *c);
    c->curl = curl;
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/') n--;
    c->base_url = agl_strndup(base_url, n);
    agl_buf_init(&c->url);
    c->connect_timeout_s =
        opts->connect_timeout_s != 0 ? opts->connect_timeout_s : AGL_HTTP_DEFAULT_CONNECT_S;
    c->request_timeout_s =
        opts->request_timeout_s != 0 ? opts->request_timeout_s : AGL_HTTP_DEFAULT_REQUEST_S;

    const double *delays = opts->retry_delays ? opts->retry_delays : default_retry_delays;
    c->n_retry_delays =
        opts->retry_delays ? opts->n_retry_delays : sizeof default_retry_delays / sizeof(double);
    c->retry_delays = agl_calloc(c->n_retry_delays ? c->n_retry_delays : 1, sizeof(double));
    for (size_t i = 0; i < c->n_retry_delays; i++)
        c->retry_delays[i] = delays[i] > 0 ? delays[i] : 0;

    c->user_agent = agl_strdup(opts->user_agent ? opts->user_agent : "agl/" AGL_VERSION);
    size_t nh = 0;
    while (opts->headers && opts->headers[nh]) nh++;
    c->headers = agl_calloc(nh + 1, sizeof(char *));
    for (size_t i = 0; i < nh; i++) c->headers[i] = agl_strdup(opts->headers[i]);
    c->rng = rng_seed(c);
    return c;
}

void agl_http_client_free(agl_http_client *c)
{
    if (!c) return;
    curl_easy_cleanup(c->curl); /* also closes the kept-alive connection */
    for (size_t i = 0; c->headers[i]; i++) free(c->headers[i]);
    free(c->headers);
    free(c->user_agent);
    free(c->retry_delays);
    agl_buf_free(&c->url);
    free(c->base_url);
    free(c);
}

/* ---- responses ---- */

void agl_http_response_init(agl_http_response *r)
{
    r->status = 0;
    agl_buf_init(&r->body);
    r->content_type = NULL;
}

void agl_http_response_free(agl_http_response *r)
{
    if (!r) return;
    agl_buf_free(&r->body);
    free(r->content_type);
    agl_http_response_init(r);
}

static size_t write_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    agl_buf_put((agl_buf *)userdata, ptr, size * nmemb);
    return size * nmemb;
}

/* ---- one attempt ---- */

typedef enum { ATTEMPT_RESPONSE, ATTEMPT_RETRYABLE, ATTEMPT_FATAL } attempt_kind;

/* Failures the reference client retries (aiohttp ClientConnectorError, ClientOSError,
 * ServerDisconnectedError, asyncio.TimeoutError): the server may come back. */
static int curl_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static long ms(double seconds)
{
    return seconds > 0 ? (long)(seconds * 1000.0 + 0.5) : 0;
}

/* Sets every option from scratch. curl_easy_reset keeps the connection cache, so this does
 * not cost the kept-alive connection, and no option from a previous request (method, body)
 * can leak into this one. */
static CURLcode setup(agl_http_client *c, const char *method, const char *content_type,
                      const void *body, size_t len, struct curl_slist **hdrs, agl_buf *sink)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    c->errbuf[0] = 0;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if ((rc = curl_easy_setopt(h, opt, val)) != CURLE_OK) return rc;                           \
    } while (0)
    SET(CURLOPT_URL, c->url.data);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    /* Without NOSIGNAL curl uses SIGALRM for DNS timeouts, which is unsafe in threaded daemons. */
    SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (c->connect_timeout_s > 0) SET(CURLOPT_CONNECTTIMEOUT_MS, ms(c->connect_timeout_s));
    if (c->request_timeout_s > 0) SET(CURLOPT_TIMEOUT_MS, ms(c->request_timeout_s));
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_USERAGENT, c->user_agent);
    SET(CURLOPT_WRITEFUNCTION, write_body);
    SET(CURLOPT_WRITEDATA, sink);

    int sends_body = body != NULL || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0);
    if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (sends_body) {
        /* POSTFIELDS with an explicit size sends Content-Length (0 for a body-less POST, as
         * the reference client does) and allows NUL bytes in the body. */
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
        SET(CURLOPT_POSTFIELDS, body ? (const char *)body : "");
        if (strcmp(method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }

    struct curl_slist *l = NULL;
    for (size_t i = 0; c->headers[i]; i++) {
        struct curl_slist *n = curl_slist_append(l, c->headers[i]);
        if (!n) goto oom;
        l = n;
    }
    char ct[256];
    if (content_type && sends_body)
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    else /* "Name:" with no value removes curl's default application/x-www-form-urlencoded */
        snprintf(ct, sizeof ct, "Content-Type:");
    /* "Expect:" stops curl from sending Expect: 100-continue with big bodies (over 1 MiB in
     * curl >= 7.80, 1 KiB before) and waiting for the go-ahead: a round trip (or a 1 s stall
     * against servers that ignore it) the store never needs. */
    const char *fixed[] = {ct, "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        struct curl_slist *n = curl_slist_append(l, fixed[i]);
        if (!n) goto oom;
        l = n;
    }
    *hdrs = l;
    SET(CURLOPT_HTTPHEADER, l);
#undef SET
    return CURLE_OK;
oom:
    curl_slist_free_all(l);
    return CURLE_OUT_OF_MEMORY;
}

static const char *curl_text(agl_http_client *c, CURLcode rc)
{
    return c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
}

static attempt_kind attempt(agl_http_client *c, const char *method, const char *content_type,
                            const void *body, size_t len, agl_http_response *out, CURLcode *rc)
{
    agl_http_response_free(out);
    struct curl_slist *hdrs = NULL;
    *rc = setup(c, method, content_type, body, len, &hdrs, &out->body);
    if (*rc == CURLE_OK) *rc = curl_easy_perform(c->curl);
    curl_slist_free_all(hdrs);
    if (*rc != CURLE_OK) {
        agl_http_response_free(out);
        return curl_retryable(*rc) ? ATTEMPT_RETRYABLE : ATTEMPT_FATAL;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &out->status);
    char *ct = NULL;
    /* the pointer is owned by the handle and dies with the next request: copy it */
    if (curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        out->content_type = agl_strdup(ct);
    agl_buf_put(&out->body, "", 0); /* guarantees a NUL-terminated, non-NULL body */
    /* 408 and 5xx mean "this server, right now": the reference client retries them. */
    if (out->status == 408 || out->status >= 500) return ATTEMPT_RETRYABLE;
    return ATTEMPT_RESPONSE;
}

agl_code agl_http_request(agl_http_client *c, const char *method, const char *path,
                          const char *content_type, const void *body, size_t len,
                          agl_http_response *out, agl_error *err)
{
    agl_http_response_init(out);
    if (!c || !method || !path)
        return agl_error_set(err, AGL_E_INTERNAL, "", "agl_http_request: missing argument");
    agl_buf_reset(&c->url);
    agl_buf_puts(&c->url, c->base_url);
    if (path[0] != '/') agl_buf_putc(&c->url, '/');
    agl_buf_puts(&c->url, path);

    size_t attempts = c->n_retry_delays + 1;
    CURLcode rc = CURLE_OK;
    for (size_t i = 0; i < attempts; i++) {
        attempt_kind k = attempt(c, method, content_type, body, len, out, &rc);
        if (k == ATTEMPT_RESPONSE) return AGL_OK;
        if (k == ATTEMPT_FATAL) {
            if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
                return agl_error_set(err, AGL_E_INVALID, "url", "invalid url %s: %s", c->url.data,
                                     curl_text(c, rc));
            return agl_error_set(err, AGL_E_INTERNAL, "", "http %s %s failed: %s", method,
                                 c->url.data, curl_text(c, rc));
        }
        if (i + 1 == attempts) break;
        double d = c->retry_delays[i];
        d += d * AGL_HTTP_JITTER * rng_next(c);
        if (out->status)
            agl_warn("http %s %s: status %ld, retrying in %.2f s (attempt %zu of %zu)", method,
                     c->url.data, out->status, d, i + 2, attempts);
        else
            agl_warn("http %s %s: %s, retrying in %.2f s (attempt %zu of %zu)", method, c->url.data,
                     curl_text(c, rc), d, i + 2, attempts);
        agl_sleep(d);
    }
    /* The last attempt got a 408/5xx: a response all the same, for the caller to judge. */
    if (out->status) return AGL_OK;
    return agl_error_set(err, AGL_E_UNAVAILABLE, "", "cannot reach %s %s after %zu attempts: %s",
                         method, c->url.data, attempts, curl_text(c, rc));
}

/* ---- JSON convenience ---- */

agl_code agl_http_status_code(long status)
{
    switch (status) {
    case 400:
        return AGL_E_BAD_REQUEST;
    case 404:
        return AGL_E_NOT_FOUND;
    case 405:
        return AGL_E_METHOD;
    case 409:
        return AGL_E_CONFLICT;
    case 413:
        return AGL_E_TOO_LARGE;
    case 422:
        return AGL_E_INVALID;
    case 408:
    case 429:
    case 502:
    case 503:
    case 504:
        return AGL_E_UNAVAILABLE; /* the peer is overloaded or restarting: try again later */
    default:
        return AGL_E_INTERNAL; /* a 500, or a 4xx meaning we sent something it never takes */
    }
}

/* pydantic's loc is a list of strings and integers; agl_error.loc is dotted. */
static void join_loc(json_t *loc, char *out, size_t cap)
{
    size_t n = 0, i;
    json_t *v;
    out[0] = 0;
    json_array_foreach(loc, i, v)
    {
        char seg[64];
        if (json_is_string(v))
            snprintf(seg, sizeof seg, "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(seg, sizeof seg, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else
            continue;
        int w = snprintf(out + n, cap - n, "%s%s", n ? "." : "", seg);
        if (w < 0 || (size_t)w >= cap - n) return;
        n += (size_t)w;
    }
}

static agl_code error_from_response(const char *method, const char *path,
                                    const agl_http_response *r, agl_error *err)
{
    agl_code code = agl_http_status_code(r->status);
    json_t *doc = json_loadb(r->body.data, r->body.len, JSON_DECODE_ANY, NULL);
    json_t *detail = json_is_object(doc) ? json_object_get(doc, "detail") : NULL;
    json_t *first = json_is_array(detail) ? json_array_get(detail, 0) : NULL;
    if (json_is_string(detail)) {
        agl_error_set(err, code, "", "%s", json_string_value(detail));
    } else if (json_is_object(first) && json_is_string(json_object_get(first, "msg"))) {
        char loc[128];
        join_loc(json_object_get(first, "loc"), loc, sizeof loc);
        agl_error_set(err, code, loc, "%s", json_string_value(json_object_get(first, "msg")));
    } else if (detail) {
        char *text = json_dumps(detail, JSON_COMPACT | JSON_ENCODE_ANY);
        agl_error_set(err, code, "", "%s", text ? text : "?");
        free(text);
    } else if (r->body.len > 0 && !doc) {
        /* e.g. the text/plain "Internal Server Error" of a non-/v1/agl route */
        agl_error_set(err, code, "", "http %ld from %s %s: %.200s", r->status, method, path,
                      r->body.data);
    } else {
        agl_error_set(err, code, "", "http %ld from %s %s", r->status, method, path);
    }
    json_decref(doc);
    return code;
}

agl_code agl_http_call(agl_http_client *c, const char *method, const char *path,
                       const char *content_type, const void *body, size_t len,
                       agl_http_response *out, agl_error *err)
{
    agl_code rc = agl_http_request(c, method, path, content_type, body, len, out, err);
    if (rc != AGL_OK) return rc;
    if (out->status >= 400) return error_from_response(method, path, out, err);
    return AGL_OK;
}

agl_code agl_http_json(agl_http_client *c, const char *method, const char *path,
                       const char *json_body, agl_http_response *out, agl_error *err)
{
    return agl_http_call(c, method, path, json_body ? "application/json" : NULL, json_body,
                         json_body ? strlen(json_body) : 0, out, err);
}
