/* Unit tests for runnerd/grader.c: f-string rendering and the five graders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../../runnerd/agent.h"

static void test_render(void **state)
{
    (void)state;
    char err[256];
    json_t *in = json_pack("{s:s,s:i,s:{s:b}}", "question", "2+2?", "n", 7, "obj", "x", 1);
    char *s = agent_render_fstring("Q: {question} n={n:>3} {{lit}} {obj}", in, err, sizeof err);
    assert_non_null(s);
    assert_string_equal(s, "Q: 2+2? n=7 {lit} {\"x\":true}");
    free(s);
    assert_null(agent_render_fstring("{missing}", in, err, sizeof err));
    assert_non_null(strstr(err, "{missing}"));
    assert_null(agent_render_fstring("{open", in, err, sizeof err));
    json_decref(in);
    json_t *str = json_string("raw task");
    s = agent_render_fstring("task: {input}", str, err, sizeof err);
    assert_string_equal(s, "task: raw task");
    free(s);
    json_decref(str);
}

static double grade(const char *g, const char *answer, json_t *expected)
{
    char err[256];
    double r = agent_grade(g, answer, expected, err, sizeof err);
    json_decref(expected);
    return r;
}

static void test_graders(void **state)
{
    (void)state;
    assert_true(grade("exact", "  Paris\n", json_string("paris")) == 1.0);
    assert_true(grade("exact", "Paris, France", json_string("paris")) == 0.0);
    assert_true(grade("contains", "It is Paris.", json_string("paris")) == 1.0);
    assert_true(grade("regex", "answer: 42", json_string("[0-9]+$")) == 1.0);
    assert_true(grade("regex", "answer: x", json_string("[0-9]+$")) == 0.0);
    assert_true(grade("number", "so 1,234.5 in total", json_real(1234.5)) == 1.0);
    assert_true(grade("number", "first 3 then -7", json_string("-7")) == 1.0);
    assert_true(grade("number", "no digits", json_integer(1)) == 0.0);
    assert_true(
        grade("json", "here: ```json\n{\"a\": [1, 2]}\n```", json_string("{\"a\":[1,2]}")) == 1.0);
    assert_true(grade("json", "{\"a\": 1}", json_pack("{s:i}", "a", 2)) == 0.0);
    assert_true(grade("exact", "5", json_integer(5)) == 1.0);
    assert_true(grade("nope", "x", json_string("x")) < 0);
    assert_true(grade("regex", "x", json_string("(")) < 0);
    assert_true(grade("exact", "x", NULL) < 0);
}

static void test_reward_line(void **state)
{
    (void)state;
    double r = -1;
    bool was_null = false;
    assert_true(agent_parse_reward("{\"reward\": 0.25}", 16, &r, &was_null));
    assert_true(r == 0.25);
    assert_true(agent_parse_reward("{\"reward\": true}", 16, &r, &was_null));
    assert_true(r == 1.0);
    assert_false(agent_parse_reward("{\"reward\": null}", 16, &r, &was_null));
    assert_true(was_null);
    assert_false(agent_parse_reward("done", 4, &r, &was_null));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_graders),
        cmocka_unit_test(test_reward_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
