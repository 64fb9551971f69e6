/* Unit tests for trainerd/apo/apo_input.c: JSON Lines datasets (blank lines skipped, errors name
 * file:line) and the seed prompt as text or as a NamedResources document. */
#include "../../../trainerd/apo/apo.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static const char *write_tmp(const char *text)
{
    snprintf(path, sizeof path, "/tmp/apo-unit-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_dataset(void **state)
{
    apo_dataset d;
    agl_error e;
    const char *p = write_tmp("{\"q\": 1}\n\n  \n[2]\n\"three\"");
    assert_int_equal(apo_dataset_load(p, &d, &e), AGL_OK);
    assert_int_equal(d.n, 3);
    assert_int_equal(json_integer_value(json_object_get(d.items[0], "q")), 1);
    assert_string_equal(json_string_value(d.items[2]), "three");
    apo_dataset_free(&d);
    unlink(p);

    p = write_tmp("{\"q\": 1}\n\n{\"q\": }\n");
    assert_int_equal(apo_dataset_load(p, &d, &e), AGL_E_INVALID);
    char want[128];
    snprintf(want, sizeof want, "%s:3: not valid JSON", p);
    assert_non_null(strstr(e.msg, want));
    unlink(p);

    p = write_tmp("\n\n");
    assert_int_equal(apo_dataset_load(p, &d, &e), AGL_E_INVALID);
    assert_non_null(strstr(e.msg, "no tasks"));
    unlink(p);

    assert_int_equal(apo_dataset_load("/nonexistent/x.jsonl", &d, &e), AGL_E_IO);
    assert_non_null(strstr(e.msg, "cannot open /nonexistent/x.jsonl"));
}

static void test_seed_text_and_resources(void **state)
{
    apo_seed s;
    agl_error e;
    const char *p = write_tmp("Answer: {question}\n");
    assert_int_equal(apo_seed_load(p, NULL, &s, &e), AGL_OK);
    assert_string_equal(s.template_text, "Answer: {question}");
    assert_string_equal(s.resource_name, "prompt_template");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(s.resources, "prompt_template"), "engine")),
                        "f-string");
    apo_seed_free(&s);
    unlink(p);

    p = write_tmp("{\"main_llm\":{\"resource_type\":\"llm\",\"endpoint\":\"http://x/v1\","
                  "\"model\":\"m\"},\"sys\":{\"resource_type\":\"prompt_template\","
                  "\"template\":\"Do {x}\",\"engine\":\"f-string\"}}");
    assert_int_equal(apo_seed_load(p, NULL, &s, &e), AGL_OK);
    assert_string_equal(s.resource_name, "sys");
    assert_string_equal(s.template_text, "Do {x}");
    assert_non_null(json_object_get(s.resources, "main_llm"));
    apo_seed_free(&s);
    assert_int_equal(apo_seed_load(p, "prompt", &s, &e), AGL_E_INVALID);
    assert_non_null(strstr(e.msg, "no resource named 'prompt'"));
    assert_int_equal(apo_seed_load(p, "main_llm", &s, &e), AGL_E_INVALID);
    assert_non_null(strstr(e.msg, "is not a prompt_template"));
    unlink(p);

    p = write_tmp("{\"main_llm\":{\"resource_type\":\"llm\",\"endpoint\":\"http://x/v1\","
                  "\"model\":\"m\"}}");
    assert_int_equal(apo_seed_load(p, NULL, &s, &e), AGL_E_INVALID);
    assert_non_null(strstr(e.msg, "no prompt_template resource"));
    unlink(p);

    p = write_tmp("  \n");
    assert_int_equal(apo_seed_load(p, NULL, &s, &e), AGL_E_INVALID);
    assert_non_null(strstr(e.msg, "empty"));
    unlink(p);

    /* a JSON object that is not resources is a template like any text */
    p = write_tmp("{\"answer\": \"{{x}}\"}");
    assert_int_equal(apo_seed_load(p, NULL, &s, &e), AGL_OK);
    assert_string_equal(s.template_text, "{\"answer\": \"{{x}}\"}");
    apo_seed_free(&s);
    unlink(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataset),
        cmocka_unit_test(test_seed_text_and_resources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
