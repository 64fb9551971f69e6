/* test_http_client — agl_http_client against a libmicrohttpd server started inside the test:
 * echo, retry on 503/408/500 with tiny delays, no retry on 4xx, JSON detail → agl_error,
 * keep-alive (several requests over one connection), refused and silent peers →
 * AGL_E_UNAVAILABLE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agl_buf.h"
#include "agl_err.h"
#include "agl_http_client.h"
#include "agl_log.h"
#include "agl_util.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the test server ---- */

static struct {
    struct MHD_Daemon *d;
    uint16_t port;
    char base[64];
    atomic_int fail_remaining; /* /flaky answers 503 this many times, then 200 */
    atomic_int requests;       /* requests seen (all routes) */
    atomic_int connections;    /* TCP connections accepted */
} srv;

typedef struct {
    agl_buf body;
} req_ctx;

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe)
{
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&srv.connections, 1);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_ctx *ctx = *con_cls;
    if (!ctx) return;
    agl_buf_free(&ctx->body);
    free(ctx);
    *con_cls = NULL;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             const void *body, size_t len, const char *const *hdrs)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
    for (size_t i = 0; hdrs && hdrs[i]; i += 2) MHD_add_response_header(r, hdrs[i], hdrs[i + 1]);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result json_reply(struct MHD_Connection *conn, unsigned status, const char *json)
{
    return reply(conn, status, "application/json", json, strlen(json), NULL);
}

static const char *hdr_or(struct MHD_Connection *conn, const char *name, const char *dflt)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    return v ? v : dflt;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    req_ctx *ctx = *con_cls;
    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        agl_buf_init(&ctx->body);
        *con_cls = ctx;
        atomic_fetch_add(&srv.requests, 1);
        return MHD_YES;
    }
    if (*upload_data_size) {
        agl_buf_put(&ctx->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (strcmp(url, "/echo") == 0)
        return reply(conn, 200, hdr_or(conn, "Content-Type", "application/octet-stream"),
                     ctx->body.data ? ctx->body.data : "", ctx->body.len, NULL);
    if (strcmp(url, "/info") == 0) {
        /* what the server saw, as one line the tests compare whole */
        char info[512];
        int n = snprintf(info, sizeof info, "%s ctype=%s clen=%s ua=%s extra=%s expect=%s", method,
                         hdr_or(conn, "Content-Type", "none"),
                         hdr_or(conn, "Content-Length", "none"), hdr_or(conn, "User-Agent", "none"),
                         hdr_or(conn, "X-Extra", "none"), hdr_or(conn, "Expect", "none"));
        return reply(conn, 200, "text/plain", info, (size_t)n, NULL);
    }
    if (strcmp(url, "/flaky") == 0) {
        if (atomic_fetch_sub(&srv.fail_remaining, 1) > 0)
            return json_reply(conn, 503, "{\"detail\":\"busy\"}");
        return json_reply(conn, 200, "{\"ok\":true}");
    }
    if (strcmp(url, "/missing") == 0) return json_reply(conn, 404, "{\"detail\":\"x\"}");
    if (strcmp(url, "/bad") == 0)
        return json_reply(conn, 400, "{\"detail\":\"Limit must be greater than 0\"}");
    if (strcmp(url, "/conflict") == 0)
        return json_reply(conn, 409, "{\"detail\":\"attempt already finished\"}");
    if (strcmp(url, "/invalid") == 0)
        return json_reply(conn, 422,
                          "{\"detail\":[{\"type\":\"missing\",\"loc\":[\"body\",\"rollouts\",0,"
                          "\"input\"],\"msg\":\"Field required\",\"input\":{}}]}");
    if (strcmp(url, "/timeout408") == 0) return json_reply(conn, 408, "{\"detail\":\"slow\"}");
    if (strcmp(url, "/boom") == 0)
        return reply(conn, 500, "text/plain", "Internal Server Error", 21, NULL);
    return json_reply(conn, 404, "{\"detail\":\"Not Found\"}");
}

static int group_setup(void **state)
{
    agl_log_setup("test", "text", "error"); /* retries warn; keep the test output readable */
    assert_int_equal(agl_http_global_init(), AGL_OK);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                             handler, NULL, MHD_OPTION_SOCK_ADDR, &addr,
                             MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!srv.d) return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) return -1;
    srv.port = info->port;
    snprintf(srv.base, sizeof srv.base, "http://127.0.0.1:%u", (unsigned)srv.port);
    return 0;
}

static int group_teardown(void **state)
{
    MHD_stop_daemon(srv.d);
    return 0;
}

static int reset_counters(void **state)
{
    atomic_store(&srv.fail_remaining, 0);
    atomic_store(&srv.requests, 0);
    atomic_store(&srv.connections, 0);
    return 0;
}

/* ---- helpers ---- */

static const double tiny_delays[] = {0.01, 0.01, 0.01};

static agl_http_client *client_with(const double *delays, size_t n)
{
    agl_http_client_opts o = {.retry_delays = delays, .n_retry_delays = n};
    agl_http_client *c = agl_http_client_new(srv.base, &o);
    assert_non_null(c);
    return c;
}

static agl_http_client *tiny_client(void)
{
    return client_with(tiny_delays, 3);
}

/* A port with nothing listening: bind an ephemeral port, then close it. */
static uint16_t refused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- tests ---- */

static void test_echo_binary_body(void **state)
{
    agl_http_client *c = tiny_client();
    const char body[] = {'a', 0, 'b', '\n', (char)0xff, 'z'};
    agl_http_response r;
    agl_error e = {0};
    assert_int_equal(
        agl_http_request(c, "POST", "/echo", "application/x-test", body, sizeof body, &r, &e),
        AGL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, sizeof body);
    assert_memory_equal(r.body.data, body, sizeof body);
    assert_int_equal(r.body.data[r.body.len], 0); /* NUL-terminated for string users */
    assert_string_equal(r.content_type, "application/x-test");
    assert_int_equal(atomic_load(&srv.requests), 1);
    agl_http_response_free(&r);
    assert_null(r.body.data);
    assert_null(r.content_type);
    agl_http_client_free(c);
}

static void test_large_body_roundtrip(void **state)
{
    /* Over 1 MiB, where curl would otherwise send Expect: 100-continue and wait for it. */
    agl_http_client *c = tiny_client();
    size_t n = 2 * 1024 * 1024 + 17;
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++) body[i] = (char)('a' + i % 26);
    agl_http_response r;
    assert_int_equal(agl_http_request(c, "PUT", "/echo", "text/plain", body, n, &r, NULL), AGL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, n);
    assert_memory_equal(r.body.data, body, n);
    agl_http_response_free(&r);
    assert_int_equal(agl_http_request(c, "POST", "/info", "text/plain", body, n, &r, NULL), AGL_OK);
    assert_string_equal(r.body.data, "POST ctype=text/plain clen=2097169 ua=agl/" AGL_VERSION
                                     " extra=none expect=none");
    agl_http_response_free(&r);
    free(body);
    agl_http_client_free(c);
}

static void test_empty_body_get_and_json(void **state)
{
    agl_http_client *c = tiny_client();
    agl_http_response r;
    agl_error e = {0};
    /* body-less POST: Content-Length 0, no (form) content type — what the reference sends */
    assert_int_equal(agl_http_json(c, "POST", "/echo", NULL, &r, &e), AGL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    assert_non_null(r.body.data);
    assert_string_equal(r.body.data, "");
    assert_string_equal(r.content_type, "application/octet-stream"); /* request had none */
    agl_http_response_free(&r);

    assert_int_equal(agl_http_request(c, "GET", "/echo", NULL, NULL, 0, &r, &e), AGL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    agl_http_response_free(&r);

    assert_int_equal(agl_http_json(c, "POST", "/echo", "{\"limit\":2}", &r, &e), AGL_OK);
    assert_string_equal(r.body.data, "{\"limit\":2}");
    assert_string_equal(r.content_type, "application/json");
    agl_http_response_free(&r);
    assert_int_equal(atomic_load(&srv.requests), 3);

    /* what went on the wire */
    assert_int_equal(agl_http_json(c, "POST", "/info", NULL, &r, &e), AGL_OK);
    assert_string_equal(r.body.data,
                        "POST ctype=none clen=0 ua=agl/" AGL_VERSION " extra=none expect=none");
    agl_http_response_free(&r);
    assert_int_equal(agl_http_request(c, "GET", "/info", NULL, NULL, 0, &r, &e), AGL_OK);
    assert_string_equal(r.body.data,
                        "GET ctype=none clen=none ua=agl/" AGL_VERSION " extra=none expect=none");
    agl_http_response_free(&r);
    assert_int_equal(agl_http_json(c, "DELETE", "/info", "{}", &r, &e), AGL_OK);
    assert_string_equal(r.body.data, "DELETE ctype=application/json clen=2 ua=agl/" AGL_VERSION
                                     " extra=none expect=none");
    agl_http_response_free(&r);
    agl_http_client_free(c);
}

static void test_keepalive_one_connection(void **state)
{
    agl_http_client *c = tiny_client();
    for (int i = 0; i < 5; i++) {
        agl_http_response r;
        const char *method = (i % 2) ? "GET" : "POST";
        assert_int_equal(agl_http_json(c, method, "/echo", i % 2 ? NULL : "{}", &r, NULL), AGL_OK);
        assert_int_equal(r.status, 200);
        agl_http_response_free(&r);
    }
    assert_int_equal(atomic_load(&srv.requests), 5);
    assert_int_equal(atomic_load(&srv.connections), 1);

    /* a second client object has its own handle and hence its own connection */
    agl_http_client *c2 = tiny_client();
    agl_http_response r;
    assert_int_equal(agl_http_json(c2, "GET", "/echo", NULL, &r, NULL), AGL_OK);
    agl_http_response_free(&r);
    assert_int_equal(atomic_load(&srv.connections), 2);
    agl_http_client_free(c2);
    agl_http_client_free(c);
}

static void test_retry_503_then_success(void **state)
{
    const double delays[] = {0.05, 0.05, 0.05};
    agl_http_client *c = client_with(delays, 3);
    atomic_store(&srv.fail_remaining, 2);
    agl_http_response r;
    agl_error e = {0};
    double t0 = agl_monotonic();
    assert_int_equal(agl_http_json(c, "POST", "/flaky", "{}", &r, &e), AGL_OK);
    double took = agl_monotonic() - t0;
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "{\"ok\":true}");
    assert_int_equal(atomic_load(&srv.requests), 3);
    assert_true(took >= 0.1); /* slept both configured delays */
    /* a 503 does not cost the connection: the retries reuse it */
    assert_int_equal(atomic_load(&srv.connections), 1);
    agl_http_response_free(&r);
    agl_http_client_free(c);
}

static void test_retry_exhausted_returns_last_5xx(void **state)
{
    agl_http_client *c = tiny_client();
    atomic_store(&srv.fail_remaining, 1000);
    agl_http_response r;
    agl_error e = {0};
    /* transport level: a response is a response, the caller judges the status */
    assert_int_equal(agl_http_request(c, "GET", "/flaky", NULL, NULL, 0, &r, &e), AGL_OK);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body.data, "{\"detail\":\"busy\"}");
    assert_int_equal(atomic_load(&srv.requests), 4); /* 1 + 3 retries */
    agl_http_response_free(&r);

    atomic_store(&srv.requests, 0);
    assert_int_equal(agl_http_json(c, "GET", "/flaky", NULL, &r, &e), AGL_E_UNAVAILABLE);
    assert_int_equal(e.code, AGL_E_UNAVAILABLE);
    assert_string_equal(e.msg, "busy");
    assert_int_equal(r.status, 503); /* response kept for the caller */
    assert_int_equal(atomic_load(&srv.requests), 4);
    agl_http_response_free(&r);
    agl_http_client_free(c);
}

static void test_408_and_500_retried(void **state)
{
    agl_http_client *c = tiny_client();
    agl_http_response r;
    agl_error e = {0};
    assert_int_equal(agl_http_json(c, "GET", "/timeout408", NULL, &r, &e), AGL_E_UNAVAILABLE);
    assert_int_equal(r.status, 408);
    assert_string_equal(e.msg, "slow");
    assert_int_equal(atomic_load(&srv.requests), 4);
    agl_http_response_free(&r);

    atomic_store(&srv.requests, 0);
    assert_int_equal(agl_http_json(c, "POST", "/boom", "{}", &r, &e), AGL_E_INTERNAL);
    assert_int_equal(r.status, 500);
    assert_string_equal(r.content_type, "text/plain");
    /* non-JSON error body: the message says what and where */
    assert_non_null(strstr(e.msg, "http 500 from POST /boom"));
    assert_non_null(strstr(e.msg, "Internal Server Error"));
    assert_int_equal(atomic_load(&srv.requests), 4);
    agl_http_response_free(&r);
    agl_http_client_free(c);
}

static void test_404_not_retried(void **state)
{
    agl_http_client *c = tiny_client();
    agl_http_response r;
    agl_error e = {0};
    assert_int_equal(agl_http_request(c, "GET", "/missing", NULL, NULL, 0, &r, &e), AGL_OK);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body.data, "{\"detail\":\"x\"}");
    assert_int_equal(atomic_load(&srv.requests), 1);
    agl_http_response_free(&r);

    assert_int_equal(agl_http_json(c, "GET", "/missing", NULL, &r, &e), AGL_E_NOT_FOUND);
    assert_int_equal(e.code, AGL_E_NOT_FOUND);
    assert_string_equal(e.msg, "x");
    assert_int_equal(atomic_load(&srv.requests), 2);
    agl_http_response_free(&r);
    agl_http_client_free(c);
}

static void test_json_error_mapping(void **state)
{
    agl_http_client *c = tiny_client();
    agl_http_response r;
    agl_error e = {0};

    assert_int_equal(agl_http_json(c, "POST", "/invalid", "{}", &r, &e), AGL_E_INVALID);
    assert_string_equal(e.msg, "Field required");
    assert_string_equal(e.loc, "body.rollouts.0.input");
    agl_http_response_free(&r);

    assert_int_equal(agl_http_json(c, "GET", "/bad", NULL, &r, &e), AGL_E_BAD_REQUEST);
    assert_string_equal(e.msg, "Limit must be greater than 0");
    assert_string_equal(e.loc, "");
    agl_http_response_free(&r);

    assert_int_equal(agl_http_json(c, "POST", "/conflict", "{}", &r, &e), AGL_E_CONFLICT);
    assert_string_equal(e.msg, "attempt already finished");
    agl_http_response_free(&r);

    assert_int_equal(atomic_load(&srv.requests), 3); /* no 4xx was retried */
    agl_http_client_free(c);
}

static void test_status_code_table(void **state)
{
    assert_int_equal(agl_http_status_code(400), AGL_E_BAD_REQUEST);
    assert_int_equal(agl_http_status_code(404), AGL_E_NOT_FOUND);
    assert_int_equal(agl_http_status_code(405), AGL_E_METHOD);
    assert_int_equal(agl_http_status_code(409), AGL_E_CONFLICT);
    assert_int_equal(agl_http_status_code(413), AGL_E_TOO_LARGE);
    assert_int_equal(agl_http_status_code(422), AGL_E_INVALID);
    assert_int_equal(agl_http_status_code(429), AGL_E_UNAVAILABLE);
    assert_int_equal(agl_http_status_code(503), AGL_E_UNAVAILABLE);
    assert_int_equal(agl_http_status_code(500), AGL_E_INTERNAL);
    assert_int_equal(agl_http_status_code(403), AGL_E_INTERNAL);
}

static void test_no_retry_option(void **state)
{
    static const double none[1] = {0};
    agl_http_client *c = client_with(none, 0);
    atomic_store(&srv.fail_remaining, 5);
    agl_http_response r;
    assert_int_equal(agl_http_request(c, "GET", "/flaky", NULL, NULL, 0, &r, NULL), AGL_OK);
    assert_int_equal(r.status, 503);
    assert_int_equal(atomic_load(&srv.requests), 1);
    agl_http_response_free(&r);
    agl_http_client_free(c);
}

static void test_refused_port_unavailable(void **state)
{
    char base[64], url[96];
    uint16_t port = refused_port();
    snprintf(base, sizeof base, "http://127.0.0.1:%u", (unsigned)port);
    snprintf(url, sizeof url, "%s/v1/agl/health", base);
    agl_http_client_opts o = {.retry_delays = tiny_delays, .n_retry_delays = 3};
    agl_http_client *c = agl_http_client_new(base, &o);
    assert_non_null(c);
    agl_http_response r;
    agl_error e = {0};
    double t0 = agl_monotonic();
    assert_int_equal(agl_http_json(c, "GET", "/v1/agl/health", NULL, &r, &e), AGL_E_UNAVAILABLE);
    assert_true(agl_monotonic() - t0 >= 0.03); /* all three delays were slept */
    assert_int_equal(e.code, AGL_E_UNAVAILABLE);
    assert_non_null(strstr(e.msg, url));
    assert_non_null(strstr(e.msg, "after 4 attempts"));
    assert_non_null(
        strstr(e.msg, "onnect")); /* curl's text: "Couldn't connect"/"Failed to connect" */
    assert_int_equal(r.status, 0);
    assert_null(r.body.data);
    agl_http_response_free(&r);
    agl_http_client_free(c);
}

static void test_silent_peer_times_out(void **state)
{
    /* A socket that listens but never accepts: the kernel completes the handshake, so the
     * request is sent and no answer ever comes — the request timeout must fire. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));

    agl_http_client_opts o = {
        .request_timeout_s = 0.2, .retry_delays = tiny_delays, .n_retry_delays = 1};
    agl_http_client *c = agl_http_client_new(base, &o);
    agl_http_response r;
    agl_error e = {0};
    double t0 = agl_monotonic();
    assert_int_equal(agl_http_request(c, "POST", "/x", "application/json", "{}", 2, &r, &e),
                     AGL_E_UNAVAILABLE);
    assert_true(agl_monotonic() - t0 >= 0.4); /* two attempts, each hit the 0.2 s timeout */
    assert_non_null(strstr(e.msg, base));
    assert_non_null(strstr(e.msg, "after 2 attempts"));
    assert_non_null(strstr(e.msg, "timed out"));
    agl_http_response_free(&r);
    agl_http_client_free(c);
    close(fd);
}

static void test_url_and_headers(void **state)
{
    /* trailing '/' on the base and a path without one still make a single '/' */
    char base[80];
    snprintf(base, sizeof base, "%s/", srv.base);
    const char *const extra[] = {"X-Extra: 42", NULL};
    agl_http_client_opts o = {.user_agent = "agl-test/1", .headers = extra};
    agl_http_client *c = agl_http_client_new(base, &o);
    assert_non_null(c);
    agl_http_response r;
    /* /info matched exactly, so the URL was base + "/info" */
    assert_int_equal(agl_http_request(c, "PUT", "info", "text/plain", "hi", 2, &r, NULL), AGL_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data,
                        "PUT ctype=text/plain clen=2 ua=agl-test/1 extra=42 expect=none");
    agl_http_response_free(&r);
    agl_http_client_free(c);
}

static void test_bad_base_url(void **state)
{
    assert_null(agl_http_client_new(NULL, NULL));
    assert_null(agl_http_client_new("ftp://127.0.0.1/", NULL));
    assert_null(agl_http_client_new("127.0.0.1:4747", NULL));
    agl_http_client *c = agl_http_client_new("http://127.0.0.1:4747", NULL); /* defaults */
    assert_non_null(c);
    agl_http_client_free(c);
    agl_http_client_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_echo_binary_body, reset_counters),
        cmocka_unit_test_setup(test_large_body_roundtrip, reset_counters),
        cmocka_unit_test_setup(test_empty_body_get_and_json, reset_counters),
        cmocka_unit_test_setup(test_keepalive_one_connection, reset_counters),
        cmocka_unit_test_setup(test_retry_503_then_success, reset_counters),
        cmocka_unit_test_setup(test_retry_exhausted_returns_last_5xx, reset_counters),
        cmocka_unit_test_setup(test_408_and_500_retried, reset_counters),
        cmocka_unit_test_setup(test_404_not_retried, reset_counters),
        cmocka_unit_test_setup(test_json_error_mapping, reset_counters),
        cmocka_unit_test(test_status_code_table),
        cmocka_unit_test_setup(test_no_retry_option, reset_counters),
        cmocka_unit_test(test_refused_port_unavailable),
        cmocka_unit_test(test_silent_peer_times_out),
        cmocka_unit_test_setup(test_url_and_headers, reset_counters),
        cmocka_unit_test(test_bad_base_url),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
