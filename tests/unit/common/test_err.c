/* Unit tests for agl_err: the single mapping of error codes to HTTP status and JSON bodies
 * (store-api.md §1.3). Bodies are parsed back with jansson so the tests check structure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agl_err.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Renders e and parses the body; asserts it is valid JSON. */
static json_t *render(const agl_error *e, int *status)
{
    char *body = agl_error_http(e, status);
    assert_non_null(body);
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    if (!j) fail_msg("error body is not JSON: %s (%s)", body, je.text);
    free(body);
    return j;
}

static void test_422_body_loc_segments(void **state)
{
    agl_error e;
    int status = 0;
    assert_int_equal(agl_error_set(&e, AGL_E_INVALID, "body.rollouts.0.mode",
                                   "input should be '%s', '%s' or '%s'", "train", "val", "test"),
                     AGL_E_INVALID);
    json_t *j = render(&e, &status);
    assert_int_equal(status, 422);
    json_t *detail = json_object_get(j, "detail");
    assert_true(json_is_array(detail));
    assert_int_equal(json_array_size(detail), 1);
    json_t *d0 = json_array_get(detail, 0);
    json_t *loc = json_object_get(d0, "loc");
    assert_int_equal(json_array_size(loc), 4);
    assert_string_equal(json_string_value(json_array_get(loc, 0)), "body");
    assert_string_equal(json_string_value(json_array_get(loc, 1)), "rollouts");
    /* numeric segments are list indices: JSON integers, as pydantic writes them */
    assert_true(json_is_integer(json_array_get(loc, 2)));
    assert_int_equal(json_integer_value(json_array_get(loc, 2)), 0);
    assert_string_equal(json_string_value(json_array_get(loc, 3)), "mode");
    assert_string_equal(json_string_value(json_object_get(d0, "msg")),
                        "input should be 'train', 'val' or 'test'");
    assert_true(json_is_string(json_object_get(d0, "type")));
    json_decref(j);
}

static void test_422_body_escapes_and_single_segment(void **state)
{
    agl_error e;
    int status = 0;
    agl_error_set(&e, AGL_E_INVALID, "body", "invalid json: \"quoted\"\n");
    json_t *j = render(&e, &status);
    json_t *d0 = json_array_get(json_object_get(j, "detail"), 0);
    json_t *loc = json_object_get(d0, "loc");
    assert_int_equal(json_array_size(loc), 1);
    assert_string_equal(json_string_value(json_array_get(loc, 0)), "body");
    assert_string_equal(json_string_value(json_object_get(d0, "msg")),
                        "invalid json: \"quoted\"\n");
    json_decref(j);

    agl_error_set(&e, AGL_E_INVALID, "body.events.12.attributes.k1", "bad");
    j = render(&e, &status);
    loc = json_object_get(json_array_get(json_object_get(j, "detail"), 0), "loc");
    assert_int_equal(json_array_size(loc), 5);
    assert_int_equal(json_integer_value(json_array_get(loc, 2)), 12);
    assert_string_equal(json_string_value(json_array_get(loc, 4)), "k1");
    json_decref(j);
}

static void test_400_body(void **state)
{
    agl_error e;
    int status = 0;
    agl_error_set(&e, AGL_E_BAD_REQUEST, "", "Limit must be greater than 0 or -1 for no limit");
    json_t *j = render(&e, &status);
    assert_int_equal(status, 400);
    assert_int_equal(json_object_size(j), 2);
    assert_string_equal(json_string_value(json_object_get(j, "detail")),
                        "Limit must be greater than 0 or -1 for no limit");
    assert_string_equal(json_string_value(json_object_get(j, "error_type")), "bad_request");
    json_decref(j);

    /* a location is folded into the detail text */
    agl_error_set(&e, AGL_E_BAD_REQUEST, "status", "it cannot be a null value");
    j = render(&e, &status);
    assert_string_equal(json_string_value(json_object_get(j, "detail")),
                        "status: it cannot be a null value");
    assert_string_equal(json_string_value(json_object_get(j, "error_type")), "bad_request");
    json_decref(j);
}

static void test_status_mapping(void **state)
{
    static const struct {
        agl_code code;
        int status;
        const char *name;
    } cases[] = {
        {AGL_OK, 200, "ok"},
        {AGL_E_INVALID, 422, "invalid"},
        {AGL_E_BAD_REQUEST, 400, "bad_request"},
        {AGL_E_NOT_FOUND, 404, "not_found"},
        {AGL_E_METHOD, 405, "method_not_allowed"},
        {AGL_E_CONFLICT, 409, "conflict"},
        {AGL_E_TOO_LARGE, 413, "too_large"},
        {AGL_E_UNAVAILABLE, 503, "unavailable"},
        {AGL_E_INTERNAL, 500, "internal"},
        {AGL_E_IO, 500, "io"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(agl_code_http_status(cases[i].code), cases[i].status);
        assert_string_equal(agl_code_name(cases[i].code), cases[i].name);
    }
    assert_int_equal(agl_code_http_status((agl_code)99), 500);
    assert_string_equal(agl_code_name((agl_code)99), "internal");

    agl_error e;
    int status = 0;
    agl_error_set(&e, AGL_E_INTERNAL, NULL, "Internal server error");
    json_t *j = render(&e, &status);
    assert_int_equal(status, 500);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "Internal server error");
    assert_string_equal(json_string_value(json_object_get(j, "error_type")), "internal");
    json_decref(j);
}

static void test_set_null_and_clear(void **state)
{
    /* a NULL error sink still returns the code, so `return agl_error_set(NULL, ...)` works */
    assert_int_equal(agl_error_set(NULL, AGL_E_NOT_FOUND, "x", "y"), AGL_E_NOT_FOUND);
    agl_error e;
    agl_error_set(&e, AGL_E_CONFLICT, "a.b", "msg %d", 7);
    assert_int_equal(e.code, AGL_E_CONFLICT);
    assert_string_equal(e.loc, "a.b");
    assert_string_equal(e.msg, "msg 7");
    agl_error_clear(&e);
    assert_int_equal(e.code, AGL_OK);
    assert_string_equal(e.loc, "");
    assert_string_equal(e.msg, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_422_body_loc_segments),
        cmocka_unit_test(test_422_body_escapes_and_single_segment),
        cmocka_unit_test(test_400_body),
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_set_null_and_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
