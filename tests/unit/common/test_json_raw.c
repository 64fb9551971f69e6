/* Unit tests for agl_json_raw_find: the verbatim text of a value by path. */
#include "agl_json_raw.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

static const char *find(const char *text, const char *const *path, int depth, char *out)
{
    size_t off, len;
    if (!agl_json_raw_find(text, strlen(text), path, depth, &off, &len)) return NULL;
    memcpy(out, text + off, len);
    out[len] = 0;
    return out;
}

static void test_paths(void **state)
{
    char out[256];
    const char *doc = "{ \"rollouts\" : [ {\"input\": {\"big\": 123456789012345678901234567890,"
                      " \"f\": 2.50}, \"metadata\":null},\n {\"input\" : \"s\\\"x\"} ] }";
    const char *p0[] = {"rollouts", "0", "input"};
    assert_string_equal(find(doc, p0, 3, out),
                        "{\"big\": 123456789012345678901234567890, \"f\": 2.50}");
    const char *p1[] = {"rollouts", "1", "input"};
    assert_string_equal(find(doc, p1, 3, out), "\"s\\\"x\"");
    const char *p2[] = {"rollouts", "0", "metadata"};
    assert_string_equal(find(doc, p2, 3, out), "null");
    const char *p3[] = {"rollouts", "2", "input"};
    assert_null(find(doc, p3, 3, out));
    const char *p4[] = {"missing"};
    assert_null(find(doc, p4, 1, out));
    assert_string_equal(find("  [1, 2] ", NULL, 0, out), "[1, 2]");
}

static void test_duplicates_last_wins_and_escaped_keys(void **state)
{
    char out[64];
    const char *path[] = {"a"};
    assert_string_equal(find("{\"a\":1,\"a\":[2]}", path, 1, out), "[2]");
    /* an escaped key is not matched: the caller falls back to the parsed value */
    assert_null(find("{\"\\u0061\":1}", path, 1, out));
}

static void test_malformed(void **state)
{
    char out[64];
    const char *path[] = {"a"};
    assert_null(find("{\"a\":", path, 1, out));
    assert_null(find("{\"a\" 1}", path, 1, out));
    assert_null(find("{\"b\":[1,2}", path, 1, out));
    assert_null(find("\"unterminated", NULL, 0, out));
    char deep[2100];
    memset(deep, '[', 2000);
    deep[2000] = 0;
    assert_null(find(deep, NULL, 0, out)); /* depth bounded, no stack overflow */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_duplicates_last_wins_and_escaped_keys),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
