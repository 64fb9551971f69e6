/* Unit tests for agl_llm_client against a scripted libmicrohttpd server: retries on 429/503 with
 * backoff, no retry on 400, the Bearer key from the named variable, usage and cost accounting,
 * /models pings, a body that is not a completion. */
#include "agl_buf.h"
#include "agl_http_client.h"
#include "agl_llm_client.h"
#include "agl_log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <string.h>
#include <sys/socket.h>

static struct {
    struct MHD_Daemon *d;
    char base[64];
    atomic_int fail_429, fail_503; /* answered before a success */
    atomic_int requests;
    char auth[128];
    char last_body[2048];
} srv;

typedef struct {
    agl_buf body;
} req_ctx;

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_ctx *ctx = *con_cls;
    if (!ctx) return;
    agl_buf_free(&ctx->body);
    free(ctx);
    *con_cls = NULL;
}

static enum MHD_Result json_reply(struct MHD_Connection *conn, unsigned status, const char *json)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static const char completion[] =
    "{\"id\":\"c1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
    "{\"role\":\"assistant\",\"content\":\"hello\"},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":500,\"total_tokens\":1500}}";

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
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    snprintf(srv.auth, sizeof srv.auth, "%s", auth ? auth : "none");
    snprintf(srv.last_body, sizeof srv.last_body, "%s", ctx->body.data ? ctx->body.data : "");
    if (!strcmp(url, "/v1/models")) return json_reply(conn, 200, "{\"data\":[]}");
    if (!strcmp(url, "/locked/models"))
        return json_reply(conn, 401, "{\"error\":{\"message\":\"bad key\"}}");
    if (!strcmp(url, "/v1/chat/completions")) {
        if (atomic_fetch_sub(&srv.fail_429, 1) > 0)
            return json_reply(conn, 429, "{\"error\":{\"message\":\"rate limited\"}}");
        if (atomic_fetch_sub(&srv.fail_503, 1) > 0)
            return json_reply(conn, 503, "{\"error\":{\"message\":\"overloaded\"}}");
        return json_reply(conn, 200, completion);
    }
    if (!strcmp(url, "/bad/chat/completions"))
        return json_reply(conn, 400, "{\"error\":{\"message\":\"unknown model\"}}");
    if (!strcmp(url, "/odd/chat/completions")) return json_reply(conn, 200, "{\"x\":1}");
    if (!strcmp(url, "/router/chat/completions"))
        return json_reply(conn, 200,
                          "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null}}],"
                          "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":0,\"cost\":0.25}}");
    return json_reply(conn, 404, "{\"detail\":\"Not Found\"}");
}

static int group_setup(void **state)
{
    agl_log_setup("test", "text", "error");
    assert_int_equal(agl_http_global_init(), AGL_OK);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                             handler, NULL, MHD_OPTION_SOCK_ADDR, &addr,
                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!srv.d) return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) return -1;
    snprintf(srv.base, sizeof srv.base, "http://127.0.0.1:%u", (unsigned)info->port);
    return 0;
}

static int group_teardown(void **state)
{
    MHD_stop_daemon(srv.d);
    return 0;
}

static agl_llm_client *client(const char *prefix, int retries)
{
    char url[128];
    snprintf(url, sizeof url, "%s%s", srv.base, prefix);
    agl_llm_opts o = {.base_url = url,
                      .api_key_env = "AGL_TEST_LLM_KEY",
                      .max_retries = retries,
                      .backoff_s = 0.01,
                      .backoff_max_s = 0.02,
                      .price_in_per_mtok = 2.0,
                      .price_out_per_mtok = 8.0};
    agl_error e;
    agl_llm_client *c = agl_llm_client_new(&o, &e);
    assert_non_null(c);
    return c;
}

static json_t *one_message(void)
{
    return json_pack("[{s:s,s:s}]", "role", "user", "content", "hi");
}

static void test_retries_then_succeeds_with_usage(void **state)
{
    setenv("AGL_TEST_LLM_KEY", "sk-test", 1);
    agl_llm_client *c = client("/v1/", 3);
    assert_true(agl_llm_client_has_key(c));
    char want[96];
    snprintf(want, sizeof want, "%s/v1", srv.base);
    assert_string_equal(agl_llm_client_url(c), want); /* trailing '/' dropped */
    atomic_store(&srv.fail_429, 1);
    atomic_store(&srv.fail_503, 1);
    atomic_store(&srv.requests, 0);
    json_t *m = one_message();
    char *out = NULL;
    agl_llm_usage u = {0};
    agl_error e;
    assert_int_equal(agl_llm_chat(c, "gpt-x", m, 0.5, NULL, &out, &u, &e), AGL_OK);
    assert_string_equal(out, "hello");
    free(out);
    assert_int_equal(atomic_load(&srv.requests), 3);
    assert_string_equal(srv.auth, "Bearer sk-test");
    json_t *sent = json_loads(srv.last_body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(sent, "model")), "gpt-x");
    assert_true(json_real_value(json_object_get(sent, "temperature")) == 0.5);
    assert_int_equal(json_array_size(json_object_get(sent, "messages")), 1);
    json_decref(sent);
    assert_int_equal(u.calls, 1);
    assert_int_equal(u.retries, 2);
    assert_int_equal(u.total_tokens, 1500);
    assert_true(u.cost_usd > 0.0059 && u.cost_usd < 0.0061); /* 1000×2/1e6 + 500×8/1e6 */
    agl_llm_usage t;
    agl_llm_client_usage(c, &t);
    assert_int_equal(t.prompt_tokens, 1000);
    /* no temperature when negative */
    assert_int_equal(agl_llm_chat(c, "gpt-x", m, -1, NULL, &out, NULL, &e), AGL_OK);
    free(out);
    sent = json_loads(srv.last_body, 0, NULL);
    assert_null(json_object_get(sent, "temperature"));
    json_decref(sent);
    json_decref(m);
    agl_llm_client_free(c);
    unsetenv("AGL_TEST_LLM_KEY");
}

static void test_gives_up_and_does_not_retry_client_errors(void **state)
{
    agl_llm_client *c = client("/v1", 2);
    assert_false(agl_llm_client_has_key(c));
    json_t *m = one_message();
    char *out = NULL;
    agl_error e;
    atomic_store(&srv.fail_429, 10);
    atomic_store(&srv.requests, 0);
    assert_int_equal(agl_llm_chat(c, "m", m, 1, NULL, &out, NULL, &e), AGL_E_UNAVAILABLE);
    assert_int_equal(atomic_load(&srv.requests), 3);
    assert_non_null(strstr(e.msg, "failed after 3 attempts"));
    assert_non_null(strstr(e.msg, "rate limited"));
    assert_string_equal(srv.auth, "none");
    atomic_store(&srv.fail_429, 0);
    agl_llm_client_free(c);

    c = client("/bad", 5);
    atomic_store(&srv.requests, 0);
    assert_int_equal(agl_llm_chat(c, "m", m, 1, NULL, &out, NULL, &e), AGL_E_BAD_REQUEST);
    assert_int_equal(atomic_load(&srv.requests), 1);
    assert_non_null(strstr(e.msg, "unknown model"));
    agl_llm_usage t;
    agl_llm_client_usage(c, &t);
    assert_int_equal(t.failures, 1);
    agl_llm_client_free(c);

    c = client("/odd", 0);
    assert_int_equal(agl_llm_chat(c, "m", m, 1, NULL, &out, NULL, &e), AGL_E_INTERNAL);
    assert_non_null(strstr(e.msg, "not a chat completion"));
    agl_llm_client_free(c);

    c = client("/router", 0);
    agl_llm_usage u = {0};
    assert_int_equal(agl_llm_chat(c, "m", m, 1, NULL, &out, &u, &e), AGL_OK);
    assert_null(out);                /* content null */
    assert_true(u.cost_usd == 0.25); /* the provider's own cost wins */
    agl_llm_client_free(c);

    /* nothing listening */
    agl_llm_opts o = {.base_url = "http://127.0.0.1:9/v1", .max_retries = 1, .backoff_s = 0.01};
    c = agl_llm_client_new(&o, &e);
    assert_int_equal(agl_llm_chat(c, "m", m, 1, NULL, &out, NULL, &e), AGL_E_UNAVAILABLE);
    assert_int_equal(agl_llm_ping(c, 1, &e), AGL_E_UNAVAILABLE);
    assert_non_null(strstr(e.msg, "is unreachable"));
    agl_llm_client_free(c);
    json_decref(m);
}

static void test_ping_and_bad_url(void **state)
{
    agl_error e;
    agl_llm_client *c = client("/v1", 0);
    assert_int_equal(agl_llm_ping(c, 2, &e), AGL_OK);
    agl_llm_client_free(c);
    c = client("/locked", 0);
    assert_int_equal(agl_llm_ping(c, 2, &e), AGL_E_BAD_REQUEST);
    assert_non_null(strstr(e.msg, "refused the API key"));
    agl_llm_client_free(c);
    c = client("/nothing-here", 0); /* no /models route: still fine */
    assert_int_equal(agl_llm_ping(c, 2, &e), AGL_OK);
    agl_llm_client_free(c);
    agl_llm_opts o = {.base_url = "ftp://x"};
    assert_null(agl_llm_client_new(&o, &e));
    assert_non_null(strstr(e.msg, "not an http"));
}

static void test_backoff(void **state)
{
    agl_llm_opts o = {.backoff_s = 1, .backoff_max_s = 5};
    assert_true(agl_llm_backoff(&o, 0, 0.5) == 1.0);
    assert_true(agl_llm_backoff(&o, 2, 0.5) == 4.0);
    assert_true(agl_llm_backoff(&o, 3, 0.5) == 5.0); /* capped */
    assert_true(agl_llm_backoff(&o, 1, 0.0) == 1.5); /* jitter ×0.75 … ×1.25 */
    assert_true(agl_llm_backoff(&o, 1, 0.999) < 2.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retries_then_succeeds_with_usage),
        cmocka_unit_test(test_gives_up_and_does_not_retry_client_errors),
        cmocka_unit_test(test_ping_and_bad_url),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
