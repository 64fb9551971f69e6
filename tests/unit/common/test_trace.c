/* Unit tests for common/agl_trace.c: Python literals and the OTLP/JSON writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "agl_trace.h"

static void test_pyrepr(void **state)
{
    (void)state;
    json_t *v =
        json_loads("{\"ids\":[1,2],\"s\":\"it's\\n\",\"f\":0.5,\"t\":true,\"n\":null}", 0, NULL);
    agl_buf b;
    agl_buf_init(&b);
    agl_pyrepr(&b, v);
    assert_string_equal(b.data,
                        "{'ids': [1, 2], 's': 'it\\'s\\n', 'f': 0.5, 't': True, 'n': None}");
    agl_buf_free(&b);
    json_decref(v);
}

static void test_otlp_document(void **state)
{
    (void)state;
    agl_buf b;
    agl_buf_init(&b);
    agl_otlp_writer w;
    agl_otlp_begin(&w, &b);
    agl_otlp_resource(&w, "ro-1", "at-1", 7);
    agl_otlp_span_begin(&w, "0123456789abcdef0123456789abcdef", "0123456789abcdef", NULL, "x",
                        1700000000.25, 1700000001.5, AGL_SPAN_OK, NULL);
    int64_t ids[] = {3, 4};
    agl_otlp_attr_int_array(&w, "ids", ids, 2);
    agl_otlp_attr_str(&w, "s", "v");
    agl_otlp_span_end(&w);
    agl_otlp_reward_span(&w, 0.5);
    agl_otlp_end(&w);
    json_error_t e;
    json_t *j = json_loads(b.data, 0, &e);
    assert_non_null(j);
    assert_int_equal(strncmp(b.data, AGL_OTLP_HEAD, strlen(AGL_OTLP_HEAD)), 0);
    json_t *rs = json_array_get(json_object_get(j, "resourceSpans"), 0);
    json_t *spans = json_object_get(json_array_get(json_object_get(rs, "scopeSpans"), 0), "spans");
    assert_int_equal(json_array_size(spans), 2);
    json_t *s0 = json_array_get(spans, 0);
    assert_string_equal(json_string_value(json_object_get(s0, "startTimeUnixNano")),
                        "1700000000250000000");
    json_t *s1 = json_array_get(spans, 1);
    assert_string_equal(json_string_value(json_object_get(s1, "name")),
                        "agentlightning.annotation");
    json_decref(j);
    agl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pyrepr),
        cmocka_unit_test(test_otlp_document),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
