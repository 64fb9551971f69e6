/* Unit tests for agl_model: JSON codecs of the store-api.md §2 models. Golden texts are the
 * spec's own examples (compacted), so a writer that drifts from the reference wire format
 * fails here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agl_model.h"

#include <stdlib.h>
#include <string.h>

static agl_arena A;
static agl_buf B;
static agl_error E;

static int setup(void **state)
{
    agl_arena_init(&A);
    agl_buf_init(&B);
    agl_error_clear(&E);
    return 0;
}

static int teardown(void **state)
{
    agl_arena_free(&A);
    agl_buf_free(&B);
    return 0;
}

/* Parsed tree of text; trees are owned by a small pool released in teardown-free fashion by
 * the caller with json_decref. */
static json_t *P(const char *text)
{
    agl_error e;
    agl_error_clear(&e);
    json_t *j = agl_json_parse(text, strlen(text), &e);
    if (!j) fail_msg("test input does not parse: %s", e.msg);
    return j;
}

/* The spec's pretty-printed example with the whitespace between tokens removed: the
 * reference's compact separators=(",", ":") form. */
static const char *compact(const char *s)
{
    char *out = agl_arena_alloc(&A, strlen(s) + 1), *o = out;
    int in_str = 0;
    for (; *s; s++) {
        if (in_str) {
            *o++ = *s;
            if (*s == '\\')
                *o++ = *++s;
            else if (*s == '"')
                in_str = 0;
        } else if (*s == '"') {
            in_str = 1;
            *o++ = *s;
        } else if (*s != ' ' && *s != '\n' && *s != '\t' && *s != '\r') {
            *o++ = *s;
        }
    }
    *o = 0;
    return out;
}

static const char *bufstr(void)
{
    return B.data ? B.data : "";
}

/* ---- spec examples (store-api.md §2) ---- */

static const char *CONFIG_EX =
    "{\"timeout_seconds\": 600.0, \"unresponsive_seconds\": 120.0, \"max_attempts\": 3, "
    "\"retry_condition\": [\"timeout\", \"unresponsive\"]}";

static const char *ROLLOUT_EX =
    "{\n"
    "  \"rollout_id\": \"ro-3f9c2a7b1d04\",\n"
    "  \"input\": {\"question\": \"What is 17*3?\", \"answer\": \"51\"},\n"
    "  \"start_time\": 1733212345.6789012,\n"
    "  \"end_time\": null,\n"
    "  \"mode\": \"train\",\n"
    "  \"resources_id\": \"rs-8a1b2c3d4e5f\",\n"
    "  \"status\": \"queuing\",\n"
    "  \"config\": {\"timeout_seconds\": null, \"unresponsive_seconds\": null, \"max_attempts\": "
    "1, \"retry_condition\": []},\n"
    "  \"metadata\": {}\n"
    "}";

static const char *ATTEMPT_EX = "{\n"
                                "  \"rollout_id\": \"ro-3f9c2a7b1d04\",\n"
                                "  \"attempt_id\": \"at-7d793037\",\n"
                                "  \"sequence_id\": 1,\n"
                                "  \"start_time\": 1733212350.1022,\n"
                                "  \"end_time\": null,\n"
                                "  \"status\": \"running\",\n"
                                "  \"worker_id\": \"Worker-0\",\n"
                                "  \"last_heartbeat_time\": 1733212351.9071,\n"
                                "  \"metadata\": null\n"
                                "}";

static const char *ATTEMPTED_EX =
    "{\n"
    "  \"rollout_id\": \"ro-3f9c2a7b1d04\", \"input\": {\"question\": \"What is 17*3?\"},\n"
    "  \"start_time\": 1733212345.6789012, \"end_time\": null, \"mode\": \"train\",\n"
    "  \"resources_id\": \"rs-8a1b2c3d4e5f\", \"status\": \"preparing\",\n"
    "  \"config\": {\"timeout_seconds\": null, \"unresponsive_seconds\": null, \"max_attempts\": "
    "1, \"retry_condition\": []},\n"
    "  \"metadata\": {},\n"
    "  \"attempt\": {\"rollout_id\": \"ro-3f9c2a7b1d04\", \"attempt_id\": \"at-7d793037\", "
    "\"sequence_id\": 1,\n"
    "              \"start_time\": 1733212350.1022, \"end_time\": null, \"status\": "
    "\"preparing\",\n"
    "              \"worker_id\": \"Worker-0\", \"last_heartbeat_time\": null, \"metadata\": "
    "null}\n"
    "}";

static const char *WORKER_EX =
    "{\n"
    "  \"worker_id\": \"Worker-0\", \"status\": \"busy\",\n"
    "  \"heartbeat_stats\": {\"cpu_usage_pct\": 37.5, \"mem_pct\": 61.2, \"host\": \"node-3\", "
    "\"timestamp\": \"2024-12-03T08:05:51\"},\n"
    "  \"last_heartbeat_time\": 1733212351.01, \"last_dequeue_time\": 1733212350.1019,\n"
    "  \"last_busy_time\": 1733212350.1025, \"last_idle_time\": 1733212290.4,\n"
    "  \"current_rollout_id\": \"ro-3f9c2a7b1d04\", \"current_attempt_id\": \"at-7d793037\"\n"
    "}";

static const char *RESOURCES_EX =
    "{\n"
    "  \"resources_id\": \"rs-8a1b2c3d4e5f\",\n"
    "  \"create_time\": 1733212001.52, \"update_time\": 1733212001.52, \"version\": 1,\n"
    "  \"resources\": {\n"
    "    \"main_llm\": {\"resource_type\": \"llm\", \"endpoint\": \"http://10.0.0.5:8000/v1\", "
    "\"model\": \"Qwen2.5-7B-Instruct\",\n"
    "                 \"api_key\": null, \"sampling_parameters\": {\"temperature\": 0.7, "
    "\"max_tokens\": 512}},\n"
    "    \"system_prompt\": {\"resource_type\": \"prompt_template\", \"template\": \"You are a "
    "helpful assistant. {question}\", \"engine\": \"f-string\"}\n"
    "  }\n"
    "}";

static const char *PROXY_LLM_EX =
    "{\"resource_type\": \"proxy_llm\", \"endpoint\": \"http://10.0.0.7:12358/v1\", \"model\": "
    "\"Qwen2.5-7B-Instruct\",\n"
    " \"api_key\": null, \"sampling_parameters\": {\"temperature\": 1.0}}";

static const char *SPAN_EX =
    "{\n"
    "  \"rollout_id\": \"ro-3f9c2a7b1d04\",\n"
    "  \"attempt_id\": \"at-7d793037\",\n"
    "  \"sequence_id\": 3,\n"
    "  \"trace_id\": \"4bf92f3577b34da6a3ce929d0e0e4736\",\n"
    "  \"span_id\": \"00f067aa0ba902b7\",\n"
    "  \"parent_id\": \"53995c3f42cd8ad8\",\n"
    "  \"name\": \"openai.chat\",\n"
    "  \"status\": {\"status_code\": \"OK\", \"description\": null},\n"
    "  \"attributes\": {\"gen_ai.request.model\": \"Qwen2.5-7B-Instruct\", "
    "\"gen_ai.usage.prompt_tokens\": 42,\n"
    "                 \"llm.is_streaming\": false, \"gen_ai.request.temperature\": 0.7,\n"
    "                 \"gen_ai.response.finish_reasons\": [\"stop\"]},\n"
    "  \"events\": [{\"name\": \"first_token\", \"attributes\": {\"latency_ms\": 180.5}, "
    "\"timestamp\": 1733212351.2}],\n"
    "  \"links\": [],\n"
    "  \"start_time\": 1733212351.0,\n"
    "  \"end_time\": 1733212352.25,\n"
    "  \"context\": {\"trace_id\": \"4bf92f3577b34da6a3ce929d0e0e4736\", \"span_id\": "
    "\"00f067aa0ba902b7\",\n"
    "              \"is_remote\": false, \"trace_state\": {}},\n"
    "  \"parent\": null,\n"
    "  \"resource\": {\"attributes\": {\"service.name\": \"unknown_service\", "
    "\"telemetry.sdk.language\": \"python\",\n"
    "                              \"agentlightning.rollout_id\": \"ro-3f9c2a7b1d04\",\n"
    "                              \"agentlightning.attempt_id\": \"at-7d793037\"},\n"
    "               \"schema_url\": \"\"}\n"
    "}";

/* A Span whose parts carry the §2.12 Link and Event. */
static const char *SPAN_LINK_EX =
    "{\"rollout_id\": \"ro-1\", \"attempt_id\": \"at-1\", \"sequence_id\": 1, \"trace_id\": "
    "\"t\", \"span_id\": \"s\", \"parent_id\": null, \"name\": \"n\",\n"
    " \"status\": {\"status_code\": \"ERROR\", \"description\": \"boom\"}, \"attributes\": {},\n"
    " \"links\": [{\"context\": {\"trace_id\": \"0af7651916cd43dd8448eb211c80319c\", "
    "\"span_id\": \"b7ad6b7169203331\",\n"
    "                        \"is_remote\": false, \"trace_state\": {}},\n"
    "            \"attributes\": {\"link.kind\": \"follows_from\"}}],\n"
    " \"events\": [{\"name\": \"exception\", \"attributes\": {\"exception.type\": "
    "\"ValueError\", \"exception.message\": \"bad\"},\n"
    "             \"timestamp\": 1733212352.2}],\n"
    " \"start_time\": null, \"end_time\": null, \"context\": null, \"parent\": null,\n"
    " \"resource\": {\"attributes\": {}, \"schema_url\": \"\"}}";

static const char *ATTEMPT_PAGE_EX =
    "{\"items\": [{\"rollout_id\": \"ro-3f9c2a7b1d04\", \"attempt_id\": \"at-1f2e3d4c\", "
    "\"sequence_id\": 1,\n"
    "            \"start_time\": 1733212350.1, \"end_time\": 1733212390.7, \"status\": "
    "\"failed\", \"worker_id\": \"Worker-0\",\n"
    "            \"last_heartbeat_time\": 1733212389.9, \"metadata\": null},\n"
    "           {\"rollout_id\": \"ro-3f9c2a7b1d04\", \"attempt_id\": \"at-7d793037\", "
    "\"sequence_id\": 2,\n"
    "            \"start_time\": 1733212401.3, \"end_time\": null, \"status\": \"running\", "
    "\"worker_id\": \"Worker-1\",\n"
    "            \"last_heartbeat_time\": 1733212410.2, \"metadata\": null}],\n"
    " \"limit\": -1, \"offset\": 0, \"total\": 2}";

/* ---- helpers that parse and expect a validation failure ---- */

static void expect_invalid(agl_code rc, const char *loc, const char *msg_part)
{
    assert_int_equal(rc, AGL_E_INVALID);
    assert_int_equal(E.code, AGL_E_INVALID);
    assert_string_equal(E.loc, loc);
    if (msg_part && !strstr(E.msg, msg_part))
        fail_msg("message \"%s\" lacks \"%s\"", E.msg, msg_part);
}

static void span_invalid(const char *text, const char *loc, const char *msg_part)
{
    agl_span s;
    json_t *j = P(text);
    agl_error_clear(&E);
    expect_invalid(agl_span_parse(j, "body", &A, &s, &E), loc, msg_part);
    json_decref(j);
}

/* SPAN_EX with the text `from` replaced by `to` (must occur once). */
static const char *span_with(const char *from, const char *to)
{
    const char *base = compact(SPAN_EX);
    const char *p = strstr(base, from);
    if (!p) fail_msg("fixture lacks %s", from);
    size_t n = strlen(base) - strlen(from) + strlen(to);
    char *out = agl_arena_alloc(&A, n + 1);
    size_t pre = (size_t)(p - base);
    memcpy(out, base, pre);
    strcpy(out + pre, to);
    strcat(out, p + strlen(from));
    return out;
}

/* ---- enumerations ---- */

static void test_enums(void **state)
{
    assert_string_equal(agl_rollout_status_names[AGL_RS_REQUEUING], "requeuing");
    assert_string_equal(agl_attempt_status_names[AGL_AS_UNRESPONSIVE], "unresponsive");
    assert_string_equal(agl_mode_names[AGL_MODE_TEST], "test");
    assert_string_equal(agl_worker_status_names[AGL_WS_UNKNOWN], "unknown");
    assert_int_equal(agl_rollout_status_from("cancelled"), AGL_RS_CANCELLED);
    assert_int_equal(agl_rollout_status_from("timeout"), -1);
    assert_int_equal(agl_attempt_status_from("timeout"), AGL_AS_TIMEOUT);
    assert_int_equal(agl_attempt_status_from("queuing"), -1);
    assert_int_equal(agl_mode_from("val"), AGL_MODE_VAL);
    assert_int_equal(agl_mode_from("Train"), -1);
    assert_int_equal(agl_mode_from(NULL), -1);
    assert_int_equal(agl_worker_status_from("busy"), AGL_WS_BUSY);
    assert_int_equal(agl_worker_status_from(""), -1);
    int terminal = 0;
    for (int s = 0; s < AGL_RS__COUNT; s++) terminal += agl_rollout_status_terminal(s);
    assert_int_equal(terminal, 3);
    assert_true(agl_rollout_status_terminal(AGL_RS_FAILED));
    assert_true(agl_rollout_status_terminal(AGL_RS_SUCCEEDED));
    assert_true(agl_rollout_status_terminal(AGL_RS_CANCELLED));
    assert_false(agl_rollout_status_terminal(AGL_RS_REQUEUING));
}

/* ---- helpers: agl_json_dump / agl_json_parse ---- */

static void test_json_dump_numbers_and_order(void **state)
{
    json_t *j = P("{\"z\": 0.1, \"a\": 1.0, \"m\": 1e-05, \"i\": 42, \"n\": -7, "
                  "\"big\": 9223372036854775807, \"t\": 1733212345.6789012, \"e\": 1.50}");
    assert_string_equal(agl_json_dump(&A, j), "{\"z\":0.1,\"a\":1.0,\"m\":1e-05,\"i\":42,\"n\":-7,"
                                              "\"big\":9223372036854775807,"
                                              "\"t\":1733212345.6789012,\"e\":1.5}");
    json_decref(j);
}

static void test_json_dump_strings(void **state)
{
    /* Embedded NUL in a value (jansson refuses it in keys), escapes, non-ASCII as UTF-8. */
    json_t *j = P("{\"kx\": \"a\\u0000b\", \"q\": \"\\\"\\\\\\n\\t\\u0001\", "
                  "\"u\": \"\\u00e9\\ud83d\\ude00\", \"arr\": [true, false, null, [], {}]}");
    assert_string_equal(agl_json_dump(&A, j),
                        "{\"kx\":\"a\\u0000b\",\"q\":\"\\\"\\\\\\n\\t\\u0001\","
                        "\"u\":\"\xc3\xa9\xf0\x9f\x98\x80\",\"arr\":[true,false,null,[],{}]}");
    json_decref(j);
    assert_string_equal(agl_json_dump(&A, NULL), "null");
}

static void test_json_dump_scalars(void **state)
{
    json_t *j = P("\"free text task\"");
    assert_string_equal(agl_json_dump(&A, j), "\"free text task\"");
    json_decref(j);
    j = P("null");
    assert_string_equal(agl_json_dump(&A, j), "null");
    json_decref(j);
    j = P("2.0");
    assert_string_equal(agl_json_dump(&A, j), "2.0");
    json_decref(j);
}

static void test_json_parse_errors(void **state)
{
    json_t *j = agl_json_parse("{\"a\": 1,", 8, &E);
    assert_null(j);
    assert_int_equal(E.code, AGL_E_INVALID);
    assert_string_equal(E.loc, "body");
    assert_non_null(strstr(E.msg, "line 1"));
    assert_non_null(strstr(E.msg, "column"));

    agl_error_clear(&E);
    assert_null(agl_json_parse("", 0, &E));
    assert_int_equal(E.code, AGL_E_INVALID);

    /* jansson cannot hold a NUL inside an object key: such a body is refused as a whole. */
    agl_error_clear(&E);
    assert_null(agl_json_parse("{\"a\\u0000\": 1}", 14, &E));
    assert_int_equal(E.code, AGL_E_INVALID);
    assert_string_equal(E.loc, "body");

    /* len bounds the text: trailing garbage beyond len is not read. */
    j = agl_json_parse("[1]garbage", 3, &E);
    assert_non_null(j);
    assert_true(json_is_array(j));
    json_decref(j);
}

/* ---- RolloutConfig ---- */

static void test_config_default_and_example(void **state)
{
    agl_rollout_config c;
    agl_rollout_config_default(&c);
    agl_rollout_config_write(&B, &c);
    assert_string_equal(bufstr(), "{\"timeout_seconds\":null,\"unresponsive_seconds\":null,"
                                  "\"max_attempts\":1,\"retry_condition\":[]}");

    json_t *j = P(CONFIG_EX);
    assert_int_equal(agl_rollout_config_parse(j, "body.config", &c, &E), AGL_OK);
    assert_true(c.has_timeout);
    assert_true(c.timeout_seconds == 600.0);
    assert_int_equal(c.max_attempts, 3);
    assert_int_equal(c.n_retry, 2);
    assert_int_equal(c.retry[0], AGL_AS_TIMEOUT);
    assert_int_equal(c.retry[1], AGL_AS_UNRESPONSIVE);
    agl_buf_reset(&B);
    agl_rollout_config_write(&B, &c);
    assert_string_equal(bufstr(), compact(CONFIG_EX));
    json_decref(j);
}

static void test_config_partial_takes_defaults(void **state)
{
    /* §2.12: the two omitted config keys become null; ints are accepted as seconds. */
    agl_rollout_config c;
    json_t *j = P("{\"max_attempts\": 3, \"retry_condition\": [\"failed\"]}");
    assert_int_equal(agl_rollout_config_parse(j, "body.config", &c, &E), AGL_OK);
    agl_rollout_config_write(&B, &c);
    assert_string_equal(bufstr(), "{\"timeout_seconds\":null,\"unresponsive_seconds\":null,"
                                  "\"max_attempts\":3,\"retry_condition\":[\"failed\"]}");
    json_decref(j);

    j = P("{\"timeout_seconds\": 600, \"unresponsive_seconds\": null, \"max_attempts\": 2.0}");
    assert_int_equal(agl_rollout_config_parse(j, "c", &c, &E), AGL_OK);
    agl_buf_reset(&B);
    agl_rollout_config_write(&B, &c);
    assert_string_equal(bufstr(), "{\"timeout_seconds\":600.0,\"unresponsive_seconds\":null,"
                                  "\"max_attempts\":2,\"retry_condition\":[]}");
    json_decref(j);

    j = P("{\"unknown\": 1}");
    assert_int_equal(agl_rollout_config_parse(j, "c", &c, &E), AGL_OK);
    assert_int_equal(c.max_attempts, 1);
    assert_false(c.has_timeout);
    assert_int_equal(c.n_retry, 0);
    json_decref(j);
}

static void config_invalid(const char *text, const char *loc, const char *msg)
{
    agl_rollout_config c;
    json_t *j = P(text);
    agl_error_clear(&E);
    expect_invalid(agl_rollout_config_parse(j, "body.rollouts.0.config", &c, &E), loc, msg);
    json_decref(j);
}

static void test_config_invalid(void **state)
{
    config_invalid("{\"max_attempts\": 0}", "body.rollouts.0.config.max_attempts",
                   "greater than or equal to 1");
    config_invalid("{\"max_attempts\": -2}", "body.rollouts.0.config.max_attempts",
                   "greater than or equal to 1");
    config_invalid("{\"max_attempts\": 2.5}", "body.rollouts.0.config.max_attempts",
                   "fractional part");
    config_invalid("{\"max_attempts\": true}", "body.rollouts.0.config.max_attempts",
                   "valid integer");
    config_invalid("{\"max_attempts\": \"3\"}", "body.rollouts.0.config.max_attempts",
                   "valid integer");
    config_invalid("{\"max_attempts\": null}", "body.rollouts.0.config.max_attempts",
                   "valid integer");
    config_invalid("{\"timeout_seconds\": \"10\"}", "body.rollouts.0.config.timeout_seconds",
                   "valid number");
    config_invalid("{\"unresponsive_seconds\": false}",
                   "body.rollouts.0.config.unresponsive_seconds", "valid number");
    config_invalid("{\"retry_condition\": \"failed\"}", "body.rollouts.0.config.retry_condition",
                   "valid list");
    config_invalid("{\"retry_condition\": [\"failed\", \"cancelled\"]}",
                   "body.rollouts.0.config.retry_condition.1",
                   "input should be 'preparing', 'running', 'failed', 'succeeded', "
                   "'unresponsive' or 'timeout'");
    config_invalid("[]", "body.rollouts.0.config", "valid dictionary");
}

static void test_config_retry_many_duplicates(void **state)
{
    /* More entries than the fixed array holds: duplicates are squeezed, no status is lost. */
    agl_rollout_config c;
    json_t *j = P("{\"retry_condition\": [\"failed\",\"failed\",\"failed\",\"failed\",\"failed\","
                  "\"failed\",\"failed\",\"failed\",\"failed\",\"failed\",\"failed\",\"failed\","
                  "\"timeout\",\"failed\",\"unresponsive\"]}");
    assert_int_equal(agl_rollout_config_parse(j, "c", &c, &E), AGL_OK);
    agl_rollout_config_write(&B, &c);
    assert_non_null(strstr(bufstr(), "\"retry_condition\":[\"failed\",\"timeout\",\"failed\","
                                     "\"unresponsive\"]"));
    json_decref(j);
}

/* ---- Rollout ---- */

static void test_rollout_roundtrip(void **state)
{
    agl_rollout r;
    json_t *j = P(ROLLOUT_EX);
    assert_int_equal(agl_rollout_parse(j, &A, &r, &E), AGL_OK);
    assert_string_equal(r.rollout_id, "ro-3f9c2a7b1d04");
    assert_string_equal(r.input, "{\"question\":\"What is 17*3?\",\"answer\":\"51\"}");
    assert_true(r.start_time == 1733212345.6789012);
    assert_false(r.has_end_time);
    assert_int_equal(r.mode, AGL_MODE_TRAIN);
    assert_string_equal(r.resources_id, "rs-8a1b2c3d4e5f");
    assert_int_equal(r.status, AGL_RS_QUEUING);
    assert_string_equal(r.metadata, "{}");
    agl_rollout_write(&B, &r);
    assert_string_equal(bufstr(), compact(ROLLOUT_EX));
    json_decref(j);
}

static void test_rollout_nulls_and_scalar_input(void **state)
{
    agl_rollout r;
    json_t *j = P("{\"rollout_id\":\"ro-1\",\"input\":\"free text task\",\"start_time\":5,"
                  "\"end_time\":7.25,\"mode\":null,\"resources_id\":null,\"status\":\"succeeded\","
                  "\"config\":{\"max_attempts\":2},\"metadata\":null}");
    assert_int_equal(agl_rollout_parse(j, &A, &r, &E), AGL_OK);
    assert_int_equal(r.mode, AGL_MODE_NONE);
    assert_null(r.resources_id);
    assert_null(r.metadata);
    agl_rollout_write(&B, &r);
    /* Integer times come back as float seconds; nulls stay null (never omitted). */
    assert_string_equal(bufstr(),
                        "{\"rollout_id\":\"ro-1\",\"input\":\"free text task\",\"start_time\":5.0,"
                        "\"end_time\":7.25,\"mode\":null,\"resources_id\":null,"
                        "\"status\":\"succeeded\",\"config\":{\"timeout_seconds\":null,"
                        "\"unresponsive_seconds\":null,\"max_attempts\":2,\"retry_condition\":[]},"
                        "\"metadata\":null}");
    json_decref(j);

    /* input null is a value, written as null; absent optional keys take the model defaults. */
    j = P("{\"rollout_id\":\"ro-2\",\"input\":null,\"start_time\":1.5}");
    assert_int_equal(agl_rollout_parse(j, &A, &r, &E), AGL_OK);
    assert_string_equal(r.input, "null");
    assert_int_equal(r.status, AGL_RS_QUEUING);
    assert_int_equal(r.config.max_attempts, 1);
    agl_buf_reset(&B);
    agl_rollout_write(&B, &r);
    assert_string_equal(bufstr(),
                        "{\"rollout_id\":\"ro-2\",\"input\":null,\"start_time\":1.5,"
                        "\"end_time\":null,\"mode\":null,\"resources_id\":null,"
                        "\"status\":\"queuing\",\"config\":{\"timeout_seconds\":null,"
                        "\"unresponsive_seconds\":null,\"max_attempts\":1,\"retry_condition\":[]},"
                        "\"metadata\":null}");
    json_decref(j);
}

static void rollout_invalid(const char *text, const char *loc, const char *msg)
{
    agl_rollout r;
    json_t *j = P(text);
    agl_error_clear(&E);
    expect_invalid(agl_rollout_parse(j, &A, &r, &E), loc, msg);
    json_decref(j);
}

static void test_rollout_invalid(void **state)
{
    rollout_invalid("{\"rollout_id\":\"r\",\"start_time\":1}", "input", "field required");
    rollout_invalid("{\"input\":1,\"start_time\":1}", "rollout_id", "field required");
    rollout_invalid("{\"rollout_id\":\"r\",\"input\":1}", "start_time", "field required");
    rollout_invalid("{\"rollout_id\":5,\"input\":1,\"start_time\":1}", "rollout_id",
                    "input should be a valid string");
    rollout_invalid("{\"rollout_id\":\"r\",\"input\":1,\"start_time\":true}", "start_time",
                    "valid number");
    rollout_invalid("{\"rollout_id\":\"r\",\"input\":1,\"start_time\":\"1\"}", "start_time",
                    "valid number");
    rollout_invalid("{\"rollout_id\":\"r\",\"input\":1,\"start_time\":1,\"mode\":\"eval\"}", "mode",
                    "input should be 'train', 'val' or 'test'");
    rollout_invalid("{\"rollout_id\":\"r\",\"input\":1,\"start_time\":1,\"status\":\"done\"}",
                    "status", "'queuing', 'preparing'");
    rollout_invalid("{\"rollout_id\":\"r\",\"input\":1,\"start_time\":1,\"status\":null}", "status",
                    NULL);
    rollout_invalid("{\"rollout_id\":\"r\",\"input\":1,\"start_time\":1,\"config\":null}", "config",
                    "valid dictionary");
    rollout_invalid(
        "{\"rollout_id\":\"r\",\"input\":1,\"start_time\":1,\"config\":{\"max_attempts\":0}}",
        "config.max_attempts", NULL);
    rollout_invalid("{\"rollout_id\":\"r\",\"input\":1,\"start_time\":1,\"metadata\":[]}",
                    "metadata", "valid dictionary");
    rollout_invalid("{\"rollout_id\":\"r\",\"input\":1,\"start_time\":1,\"resources_id\":3}",
                    "resources_id", "valid string");
    rollout_invalid("[1]", "", "valid dictionary");
}

/* ---- Attempt ---- */

static void test_attempt_roundtrip(void **state)
{
    agl_attempt a;
    json_t *j = P(ATTEMPT_EX);
    assert_int_equal(agl_attempt_parse(j, &A, &a, &E), AGL_OK);
    assert_string_equal(a.attempt_id, "at-7d793037");
    assert_int_equal(a.sequence_id, 1);
    assert_int_equal(a.status, AGL_AS_RUNNING);
    assert_string_equal(a.worker_id, "Worker-0");
    assert_true(a.has_last_heartbeat_time);
    assert_true(a.last_heartbeat_time == 1733212351.9071);
    assert_null(a.metadata);
    agl_attempt_write(&B, &a);
    assert_string_equal(bufstr(), compact(ATTEMPT_EX));
    json_decref(j);
}

static void test_attempt_defaults_and_invalid(void **state)
{
    agl_attempt a;
    json_t *j = P("{\"rollout_id\":\"r\",\"attempt_id\":\"a\",\"sequence_id\":2.0,"
                  "\"start_time\":3,\"worker_id\":\"\",\"metadata\":{\"note\":\"moved\"}}");
    assert_int_equal(agl_attempt_parse(j, &A, &a, &E), AGL_OK);
    agl_attempt_write(&B, &a);
    assert_string_equal(bufstr(), "{\"rollout_id\":\"r\",\"attempt_id\":\"a\",\"sequence_id\":2,"
                                  "\"start_time\":3.0,\"end_time\":null,\"status\":\"preparing\","
                                  "\"worker_id\":\"\",\"last_heartbeat_time\":null,"
                                  "\"metadata\":{\"note\":\"moved\"}}");
    json_decref(j);

    j = P("{\"rollout_id\":\"r\",\"attempt_id\":\"a\",\"sequence_id\":1.5,\"start_time\":3}");
    expect_invalid(agl_attempt_parse(j, &A, &a, &E), "sequence_id", "fractional part");
    json_decref(j);
    j = P("{\"rollout_id\":\"r\",\"attempt_id\":\"a\",\"start_time\":3}");
    expect_invalid(agl_attempt_parse(j, &A, &a, &E), "sequence_id", "field required");
    json_decref(j);
    j = P("{\"rollout_id\":\"r\",\"attempt_id\":\"a\",\"sequence_id\":1,\"start_time\":3,"
          "\"status\":\"queuing\"}");
    expect_invalid(agl_attempt_parse(j, &A, &a, &E), "status",
                   "input should be 'preparing', 'running', 'failed', 'succeeded', "
                   "'unresponsive' or 'timeout'");
    json_decref(j);
}

/* ---- AttemptedRollout ---- */

static void test_attempted_rollout_roundtrip(void **state)
{
    agl_rollout r;
    agl_attempt a;
    bool has = false;
    json_t *j = P(ATTEMPTED_EX);
    assert_int_equal(agl_attempted_rollout_parse(j, &A, &r, &a, &has, &E), AGL_OK);
    assert_true(has);
    assert_int_equal(r.status, AGL_RS_PREPARING);
    assert_int_equal(a.status, AGL_AS_PREPARING);
    assert_false(a.has_last_heartbeat_time);
    agl_attempted_rollout_write(&B, &r, &a);
    assert_string_equal(bufstr(), compact(ATTEMPTED_EX));
    json_decref(j);
}

static void test_attempted_rollout_without_attempt(void **state)
{
    agl_rollout r;
    agl_attempt a;
    bool has = true;
    json_t *j = P(ROLLOUT_EX);
    assert_int_equal(agl_attempted_rollout_parse(j, &A, &r, &a, &has, &E), AGL_OK);
    assert_false(has);
    /* §2.5: no attempt means no "attempt" key at all, never "attempt":null. */
    agl_attempted_rollout_write(&B, &r, NULL);
    assert_string_equal(bufstr(), compact(ROLLOUT_EX));
    assert_null(strstr(bufstr(), "\"attempt\""));
    json_decref(j);

    /* A plain rollout writer never emits the key either. */
    j = P(ATTEMPTED_EX);
    assert_int_equal(agl_attempted_rollout_parse(j, &A, &r, &a, &has, &E), AGL_OK);
    agl_buf_reset(&B);
    agl_rollout_write(&B, &r);
    assert_null(strstr(bufstr(), "\"attempt\""));
    assert_int_equal(B.data[B.len - 1], '}');
    json_decref(j);
}

static void test_attempted_rollout_invalid(void **state)
{
    agl_rollout r;
    agl_attempt a;
    bool has;
    json_t *j = P("{\"rollout_id\":\"ro-1\",\"input\":1,\"start_time\":1,\"attempt\":null}");
    expect_invalid(agl_attempted_rollout_parse(j, &A, &r, &a, &has, &E), "attempt",
                   "valid dictionary");
    assert_false(has);
    json_decref(j);

    j = P("{\"rollout_id\":\"ro-1\",\"input\":1,\"start_time\":1,\"attempt\":{\"rollout_id\":"
          "\"ro-2\",\"attempt_id\":\"a\",\"sequence_id\":1,\"start_time\":1}}");
    expect_invalid(agl_attempted_rollout_parse(j, &A, &r, &a, &has, &E), "attempt.rollout_id",
                   "inconsistent rollout_id");
    assert_false(has);
    json_decref(j);

    j = P("{\"rollout_id\":\"ro-1\",\"input\":1,\"start_time\":1,\"attempt\":{\"rollout_id\":"
          "\"ro-1\",\"sequence_id\":1,\"start_time\":1}}");
    expect_invalid(agl_attempted_rollout_parse(j, &A, &r, &a, &has, &E), "attempt.attempt_id",
                   "field required");
    json_decref(j);
}

/* ---- Worker ---- */

static void test_worker_roundtrip(void **state)
{
    agl_worker w;
    json_t *j = P(WORKER_EX);
    assert_int_equal(agl_worker_parse(j, &A, &w, &E), AGL_OK);
    assert_int_equal(w.status, AGL_WS_BUSY);
    assert_string_equal(w.current_attempt_id, "at-7d793037");
    assert_true(w.last_idle_time == 1733212290.4);
    agl_worker_write(&B, &w);
    assert_string_equal(bufstr(), compact(WORKER_EX));
    json_decref(j);

    j = P("{\"worker_id\":\"Worker-9\"}");
    assert_int_equal(agl_worker_parse(j, &A, &w, &E), AGL_OK);
    agl_buf_reset(&B);
    agl_worker_write(&B, &w);
    assert_string_equal(bufstr(), "{\"worker_id\":\"Worker-9\",\"status\":\"unknown\","
                                  "\"heartbeat_stats\":null,\"last_heartbeat_time\":null,"
                                  "\"last_dequeue_time\":null,\"last_busy_time\":null,"
                                  "\"last_idle_time\":null,\"current_rollout_id\":null,"
                                  "\"current_attempt_id\":null}");
    json_decref(j);

    j = P("{\"worker_id\":\"w\",\"status\":\"sleeping\"}");
    expect_invalid(agl_worker_parse(j, &A, &w, &E), "status",
                   "input should be 'idle', 'busy' or 'unknown'");
    json_decref(j);
    j = P("{\"worker_id\":\"w\",\"heartbeat_stats\":[1]}");
    expect_invalid(agl_worker_parse(j, &A, &w, &E), "heartbeat_stats", "valid dictionary");
    json_decref(j);
}

/* ---- Resources ---- */

static void test_resources_update_roundtrip(void **state)
{
    agl_resources_update u;
    json_t *j = P(RESOURCES_EX);
    assert_int_equal(agl_resources_update_parse(j, &A, &u, &E), AGL_OK);
    assert_string_equal(u.resources_id, "rs-8a1b2c3d4e5f");
    assert_int_equal(u.version, 1);
    agl_resources_update_write(&B, &u);
    assert_string_equal(bufstr(), compact(RESOURCES_EX));
    json_decref(j);

    j = P("{\"resources_id\":\"x\",\"create_time\":1,\"update_time\":2,\"version\":3,"
          "\"resources\":{}}");
    assert_int_equal(agl_resources_update_parse(j, &A, &u, &E), AGL_OK);
    agl_buf_reset(&B);
    agl_resources_update_write(&B, &u);
    assert_string_equal(bufstr(), "{\"resources_id\":\"x\",\"create_time\":1.0,"
                                  "\"update_time\":2.0,\"version\":3,\"resources\":{}}");
    json_decref(j);

    j = P("{\"resources_id\":\"x\",\"create_time\":1,\"update_time\":2,\"resources\":{}}");
    expect_invalid(agl_resources_update_parse(j, &A, &u, &E), "version", "field required");
    json_decref(j);
    j = P("{\"resources_id\":\"x\",\"create_time\":1,\"update_time\":2,\"version\":1,"
          "\"resources\":{\"p\":{\"resource_type\":\"prompt_template\",\"template\":\"t\"}}}");
    expect_invalid(agl_resources_update_parse(j, &A, &u, &E), "resources.p.engine",
                   "field required");
    json_decref(j);
}

static void test_named_resources_normalised(void **state)
{
    const char *out = NULL;
    char text[1024];
    snprintf(text, sizeof text, "{\"proxy\": %s}", PROXY_LLM_EX);
    json_t *j = P(text);
    assert_int_equal(agl_named_resources_parse(j, "body.resources", &A, &out, &E), AGL_OK);
    assert_string_equal(out, compact(text));
    json_decref(j);

    /* Defaults filled, unknown keys dropped, resource_type first, map order kept. */
    j = P("{\"z_llm\": {\"model\": \"m\", \"extra\": 1, \"endpoint\": \"http://e/v1\", "
          "\"resource_type\": \"llm\"},"
          " \"a_prompt\": {\"engine\": \"jinja\", \"template\": \"{{x}}\", \"foo\": [1], "
          "\"resource_type\": \"prompt_template\"},"
          " \"k\": {\"resource_type\": \"llm\", \"endpoint\": \"e\", \"model\": \"m\", "
          "\"api_key\": \"sk-1\", \"sampling_parameters\": {\"top_p\": 1.0, \"n\": 2}}}");
    assert_int_equal(agl_named_resources_parse(j, "body", &A, &out, &E), AGL_OK);
    assert_string_equal(out, "{\"z_llm\":{\"resource_type\":\"llm\",\"endpoint\":\"http://e/v1\","
                             "\"model\":\"m\",\"api_key\":null,\"sampling_parameters\":{}},"
                             "\"a_prompt\":{\"resource_type\":\"prompt_template\","
                             "\"template\":\"{{x}}\",\"engine\":\"jinja\"},"
                             "\"k\":{\"resource_type\":\"llm\",\"endpoint\":\"e\",\"model\":\"m\","
                             "\"api_key\":\"sk-1\",\"sampling_parameters\":{\"top_p\":1.0,"
                             "\"n\":2}}}");
    json_decref(j);

    j = P("{}");
    assert_int_equal(agl_named_resources_parse(j, "body", &A, &out, &E), AGL_OK);
    assert_string_equal(out, "{}");
    json_decref(j);
}

static void resources_invalid(const char *text, const char *loc, const char *msg)
{
    const char *out = NULL;
    json_t *j = P(text);
    agl_error_clear(&E);
    expect_invalid(agl_named_resources_parse(j, "body", &A, &out, &E), loc, msg);
    json_decref(j);
}

static void test_named_resources_invalid(void **state)
{
    resources_invalid("{\"main_llm\": {\"endpoint\": \"e\", \"model\": \"m\"}}",
                      "body.main_llm.resource_type", "discriminator 'resource_type'");
    resources_invalid("{\"main_llm\": {\"resource_type\": \"gpu\", \"endpoint\": \"e\"}}",
                      "body.main_llm.resource_type", "'gpu'");
    resources_invalid("{\"main_llm\": {\"resource_type\": 1}}", "body.main_llm.resource_type",
                      NULL);
    resources_invalid("{\"main_llm\": {\"resource_type\": \"llm\", \"model\": \"m\"}}",
                      "body.main_llm.endpoint", "field required");
    resources_invalid("{\"main_llm\": {\"resource_type\": \"proxy_llm\", \"endpoint\": \"e\"}}",
                      "body.main_llm.model", "field required");
    resources_invalid("{\"l\": {\"resource_type\": \"llm\", \"endpoint\": \"e\", \"model\": 7}}",
                      "body.l.model", "valid string");
    resources_invalid("{\"l\": {\"resource_type\": \"llm\", \"endpoint\": \"e\", \"model\": \"m\", "
                      "\"api_key\": 5}}",
                      "body.l.api_key", "valid string");
    resources_invalid("{\"l\": {\"resource_type\": \"llm\", \"endpoint\": \"e\", \"model\": \"m\", "
                      "\"sampling_parameters\": null}}",
                      "body.l.sampling_parameters", "valid dictionary");
    resources_invalid("{\"p\": {\"resource_type\": \"prompt_template\", \"template\": \"t\", "
                      "\"engine\": \"mustache\"}}",
                      "body.p.engine", "input should be 'jinja', 'f-string' or 'poml'");
    resources_invalid("{\"p\": {\"resource_type\": \"prompt_template\", \"engine\": \"poml\"}}",
                      "body.p.template", "field required");
    resources_invalid("{\"p\": \"llm\"}", "body.p", "valid dictionary");
    resources_invalid("[]", "body", "valid dictionary");
}

/* ---- Span ---- */

static void test_span_roundtrip(void **state)
{
    agl_span s;
    json_t *j = P(SPAN_EX);
    assert_int_equal(agl_span_parse(j, "body", &A, &s, &E), AGL_OK);
    assert_string_equal(s.rollout_id, "ro-3f9c2a7b1d04");
    assert_string_equal(s.attempt_id, "at-7d793037");
    assert_int_equal(s.sequence_id, 3);
    assert_string_equal(s.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(s.span_id, "00f067aa0ba902b7");
    assert_string_equal(s.parent_id, "53995c3f42cd8ad8");
    assert_string_equal(s.name, "openai.chat");
    assert_true(s.has_start_time && s.start_time == 1733212351.0);
    assert_true(s.has_end_time && s.end_time == 1733212352.25);
    assert_string_equal(s.json, compact(SPAN_EX));
    agl_span_write(&B, &s);
    assert_string_equal(bufstr(), compact(SPAN_EX));
    json_decref(j);

    /* The §2.12 Link and Event survive inside a span, nullable keys may be null. */
    j = P(SPAN_LINK_EX);
    assert_int_equal(agl_span_parse(j, "body", &A, &s, &E), AGL_OK);
    assert_null(s.parent_id);
    assert_false(s.has_start_time);
    assert_false(s.has_end_time);
    assert_string_equal(s.json, compact(SPAN_LINK_EX));
    json_decref(j);
}

static void test_span_keeps_unknown_keys(void **state)
{
    agl_span s;
    const char *in =
        "{\"kind\":\"SpanKind.CLIENT\",\"rollout_id\":\"r\",\"attempt_id\":\"a\",\"sequence_id\":1,"
        "\"trace_id\":\"t\",\"span_id\":\"s\",\"parent_id\":\"p\",\"name\":\"n\","
        "\"status\":{\"x\":{\"deep\":[1,2.5]},\"status_code\":\"UNSET\",\"description\":null},"
        "\"attributes\":{\"k\":1},"
        "\"events\":[{\"name\":\"e\",\"attributes\":{},\"timestamp\":null,\"ev_extra\":true}],"
        "\"links\":[{\"context\":{\"trace_id\":\"t2\",\"span_id\":\"s2\",\"is_remote\":true,"
        "\"trace_state\":{\"vendor\":\"v1\"},\"ctx_extra\":null},\"attributes\":null,"
        "\"link_extra\":0.1}],"
        "\"start_time\":1.5,\"end_time\":2.5,"
        "\"context\":{\"trace_id\":\"t\",\"span_id\":\"s\",\"is_remote\":false,"
        "\"trace_state\":{},\"c_extra\":\"c\"},"
        "\"parent\":{\"trace_id\":\"t\",\"span_id\":\"p\",\"is_remote\":false,"
        "\"trace_state\":{},\"p_extra\":[]},"
        "\"resource\":{\"attributes\":{},\"schema_url\":\"\"},"
        "\"instrumentation_scope\":{\"name\":\"x\",\"version\":null}}";
    json_t *j = P(in);
    assert_int_equal(agl_span_parse(j, "body", &A, &s, &E), AGL_OK);
    assert_string_equal(s.json, in);
    json_decref(j);
}

static void test_span_defaults_and_normalisation(void **state)
{
    /* Missing status.description, event timestamp and link attributes are filled with null;
     * OtelResource extras dropped; integer times become float seconds; 3.0 sequence id an
     * integer. Everything else stays in input key order. */
    agl_span s;
    json_t *j = P(
        "{\"rollout_id\":\"r\",\"attempt_id\":\"a\",\"sequence_id\":3.0,\"trace_id\":\"t\","
        "\"span_id\":\"s\",\"parent_id\":null,\"name\":\"n\",\"status\":{\"status_code\":\"OK\"},"
        "\"attributes\":{\"f\":[1,2.5],\"b\":[true,false],\"e\":[],\"s\":[\"a\",\"b\"]},"
        "\"events\":[{\"name\":\"e\",\"attributes\":{\"k\":\"v\"}},"
        "{\"name\":\"e2\",\"attributes\":{},\"timestamp\":7}],"
        "\"links\":[{\"context\":{\"trace_id\":\"t\",\"span_id\":\"s\",\"is_remote\":false,"
        "\"trace_state\":{}}}],"
        "\"start_time\":1733212351,\"end_time\":null,\"context\":null,\"parent\":null,"
        "\"resource\":{\"attributes\":{\"service.name\":\"svc\"},\"extra\":1,\"schema_url\":\"u\","
        "\"more\":{}}}");
    assert_int_equal(agl_span_parse(j, "body", &A, &s, &E), AGL_OK);
    assert_int_equal(s.sequence_id, 3);
    assert_true(s.has_start_time && s.start_time == 1733212351.0);
    assert_string_equal(
        s.json, "{\"rollout_id\":\"r\",\"attempt_id\":\"a\",\"sequence_id\":3,\"trace_id\":\"t\","
                "\"span_id\":\"s\",\"parent_id\":null,\"name\":\"n\","
                "\"status\":{\"status_code\":\"OK\",\"description\":null},"
                "\"attributes\":{\"f\":[1,2.5],\"b\":[true,false],\"e\":[],\"s\":[\"a\",\"b\"]},"
                "\"events\":[{\"name\":\"e\",\"attributes\":{\"k\":\"v\"},\"timestamp\":null},"
                "{\"name\":\"e2\",\"attributes\":{},\"timestamp\":7.0}],"
                "\"links\":[{\"context\":{\"trace_id\":\"t\",\"span_id\":\"s\",\"is_remote\":false,"
                "\"trace_state\":{}},\"attributes\":null}],"
                "\"start_time\":1733212351.0,\"end_time\":null,\"context\":null,\"parent\":null,"
                "\"resource\":{\"attributes\":{\"service.name\":\"svc\"},\"schema_url\":\"u\"}}");
    json_decref(j);
}

static void test_span_input_not_modified(void **state)
{
    /* The parser normalises a private copy: the caller's tree is left as it was. */
    agl_span s;
    json_t *j = P(span_with("\"status\":{\"status_code\":\"OK\",\"description\":null}",
                            "\"status\":{\"status_code\":\"OK\"}"));
    const char *before = agl_json_dump(&A, j);
    assert_int_equal(agl_span_parse(j, "body", &A, &s, &E), AGL_OK);
    assert_string_equal(agl_json_dump(&A, j), before);
    assert_non_null(strstr(s.json, "\"status\":{\"status_code\":\"OK\",\"description\":null}"));
    json_decref(j);
}

static void test_span_required_keys(void **state)
{
    static const char *const keys[] = {
        "rollout_id", "attempt_id", "sequence_id", "trace_id", "span_id", "parent_id",
        "name",       "status",     "attributes",  "events",   "links",   "start_time",
        "end_time",   "context",    "parent",      "resource",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *j = P(SPAN_EX);
        agl_span s;
        char loc[64];
        assert_int_equal(json_object_del(j, keys[i]), 0);
        agl_error_clear(&E);
        snprintf(loc, sizeof loc, "body.%s", keys[i]);
        expect_invalid(agl_span_parse(j, "body", &A, &s, &E), loc, "field required");
        json_decref(j);
    }
}

static void test_span_invalid(void **state)
{
    span_invalid(span_with("\"sequence_id\":3", "\"sequence_id\":\"3\""), "body.sequence_id",
                 "valid integer");
    span_invalid(span_with("\"name\":\"openai.chat\"", "\"name\":null"), "body.name",
                 "valid string");
    span_invalid(span_with("\"parent_id\":\"53995c3f42cd8ad8\"", "\"parent_id\":12"),
                 "body.parent_id", "valid string");
    span_invalid(span_with("\"status_code\":\"OK\"", "\"status_code\":\"FINE\""),
                 "body.status.status_code", "input should be 'UNSET', 'OK' or 'ERROR'");
    span_invalid(span_with("\"status\":{\"status_code\":\"OK\",\"description\":null}",
                           "\"status\":{\"description\":\"x\"}"),
                 "body.status.status_code", "field required");
    span_invalid(span_with("\"description\":null", "\"description\":1"), "body.status.description",
                 "valid string");
    span_invalid(
        span_with("\"status\":{\"status_code\":\"OK\",\"description\":null}", "\"status\":null"),
        "body.status", "valid dictionary");
    span_invalid(span_with("\"llm.is_streaming\":false", "\"llm.is_streaming\":null"),
                 "body.attributes.llm.is_streaming", NULL);
    span_invalid(span_with("\"latency_ms\":180.5", "\"latency_ms\":{\"v\":1}"),
                 "body.events.0.attributes.latency_ms", NULL);
    span_invalid(span_with("\"timestamp\":1733212351.2", "\"timestamp\":\"now\""),
                 "body.events.0.timestamp", "valid number");
    span_invalid(span_with("{\"name\":\"first_token\",", "{\"name\":5,"), "body.events.0.name",
                 "valid string");
    span_invalid(span_with("\"events\":[{", "\"events\":[1,{"), "body.events.0",
                 "valid dictionary");
    span_invalid(span_with("\"links\":[]", "\"links\":{}"), "body.links", "valid list");
    span_invalid(span_with("\"links\":[]", "\"links\":[{\"attributes\":{}}]"),
                 "body.links.0.context", "field required");
    span_invalid(span_with("\"links\":[]", "\"links\":[{\"context\":{\"span_id\":\"s\","
                                           "\"is_remote\":false,\"trace_state\":{}}}]"),
                 "body.links.0.context.trace_id", "field required");
    span_invalid(span_with("\"links\":[]", "\"links\":[{\"context\":null}]"),
                 "body.links.0.context", "valid dictionary");
    span_invalid(span_with("\"links\":[]",
                           "\"links\":[{\"context\":{\"trace_id\":\"t\",\"span_id\":\"s\","
                           "\"is_remote\":false,\"trace_state\":{}},\"attributes\":{\"a\":[1,"
                           "\"x\"]}}]"),
                 "body.links.0.attributes.a", NULL);
    span_invalid(span_with("\"is_remote\":false", "\"is_remote\":0"), "body.context.is_remote",
                 "valid boolean");
    span_invalid(span_with("\"trace_state\":{}", "\"trace_state\":{\"k\":1}"),
                 "body.context.trace_state.k", "valid string");
    span_invalid(span_with("\"trace_state\":{}", "\"trace_state\":[]"), "body.context.trace_state",
                 "valid dictionary");
    span_invalid(span_with("\"parent\":null", "\"parent\":{\"trace_id\":\"t\"}"),
                 "body.parent.span_id", "field required");
    span_invalid(span_with("\"start_time\":1733212351.0", "\"start_time\":true"), "body.start_time",
                 "valid number");
    span_invalid(span_with(",\"schema_url\":\"\"", ""), "body.resource.schema_url",
                 "field required");
    span_invalid(span_with("\"service.name\":\"unknown_service\"", "\"service.name\":null"),
                 "body.resource.attributes.service.name", NULL);
    span_invalid("[]", "body", "valid dictionary");
}

static void attr_ok(const char *text)
{
    json_t *j = P(text);
    agl_error_clear(&E);
    if (agl_attributes_check(j, "a", &E) != AGL_OK)
        fail_msg("%s rejected: %s: %s", text, E.loc, E.msg);
    json_decref(j);
}

static void attr_bad(const char *text, const char *loc)
{
    json_t *j = P(text);
    agl_error_clear(&E);
    expect_invalid(agl_attributes_check(j, "body.attributes", &E), loc, NULL);
    json_decref(j);
}

static void test_attributes_check(void **state)
{
    attr_ok("{}");
    attr_ok("{\"s\":\"x\",\"t\":true,\"f\":false,\"i\":-3,\"r\":0.5,\"big\":9223372036854775807}");
    attr_ok("{\"e\":[],\"ss\":[\"a\",\"\"],\"bb\":[true,true,false],\"ii\":[1,2],"
            "\"rr\":[0.5,1.5],\"mixed_num\":[1,2.5,3]}");
    attr_bad("{\"ok\":1,\"o\":{}}", "body.attributes.o");
    attr_bad("{\"n\":null}", "body.attributes.n");
    attr_bad("{\"m\":[\"a\",1]}", "body.attributes.m");
    attr_bad("{\"m\":[true,1]}", "body.attributes.m");
    attr_bad("{\"m\":[1,true]}", "body.attributes.m");
    attr_bad("{\"m\":[null]}", "body.attributes.m");
    attr_bad("{\"m\":[[1]]}", "body.attributes.m");
    attr_bad("{\"m\":[{}]}", "body.attributes.m");
    attr_bad("[]", "body.attributes");
    attr_bad("null", "body.attributes");
}

/* ---- PaginatedResult ---- */

static void test_page_envelope(void **state)
{
    json_t *j = P(ATTEMPT_PAGE_EX);
    json_t *items = json_object_get(j, "items");
    size_t i;
    json_t *it;
    agl_page_begin(&B);
    json_array_foreach(items, i, it)
    {
        agl_attempt a;
        assert_int_equal(agl_attempt_parse(it, &A, &a, &E), AGL_OK);
        if (i) agl_buf_putc(&B, ',');
        agl_attempt_write(&B, &a);
    }
    agl_page_end(&B, -1, 0, 2);
    assert_string_equal(bufstr(), compact(ATTEMPT_PAGE_EX));
    json_decref(j);

    agl_buf_reset(&B);
    agl_page_begin(&B);
    agl_page_end(&B, 3, 10, 0);
    assert_string_equal(bufstr(), "{\"items\":[],\"limit\":3,\"offset\":10,\"total\":0}");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_enums),
        T(test_json_dump_numbers_and_order),
        T(test_json_dump_strings),
        T(test_json_dump_scalars),
        T(test_json_parse_errors),
        T(test_config_default_and_example),
        T(test_config_partial_takes_defaults),
        T(test_config_invalid),
        T(test_config_retry_many_duplicates),
        T(test_rollout_roundtrip),
        T(test_rollout_nulls_and_scalar_input),
        T(test_rollout_invalid),
        T(test_attempt_roundtrip),
        T(test_attempt_defaults_and_invalid),
        T(test_attempted_rollout_roundtrip),
        T(test_attempted_rollout_without_attempt),
        T(test_attempted_rollout_invalid),
        T(test_worker_roundtrip),
        T(test_resources_update_roundtrip),
        T(test_named_resources_normalised),
        T(test_named_resources_invalid),
        T(test_span_roundtrip),
        T(test_span_keeps_unknown_keys),
        T(test_span_defaults_and_normalisation),
        T(test_span_input_not_modified),
        T(test_span_required_keys),
        T(test_span_invalid),
        T(test_attributes_check),
        T(test_page_envelope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
