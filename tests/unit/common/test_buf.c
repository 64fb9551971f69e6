/* Unit tests for agl_buf: growth, JSON string escaping and Python-repr number formatting
 * (store-api.md §1.2: shortest round-trip floats, integral values as `2.0`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agl_buf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Formats v with agl_buf_json_double into a static buffer. */
static const char *D(double v)
{
    static char out[64];
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_json_double(&b, v);
    snprintf(out, sizeof out, "%s", b.data);
    agl_buf_free(&b);
    return out;
}

static void test_put_and_growth(void **state)
{
    agl_buf b;
    agl_buf_init(&b);
    for (int i = 0; i < 1000; i++) agl_buf_putc(&b, (char)('a' + i % 26));
    assert_int_equal(b.len, 1000);
    assert_int_equal(strlen(b.data), 1000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[999], 'a' + 999 % 26);
    agl_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    agl_buf_printf(&b, "%d-%s", 42, "x");
    assert_string_equal(b.data, "42-x");
    /* printf longer than its 256-byte fast path */
    char big[600];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = 0;
    agl_buf_printf(&b, "[%s]", big);
    assert_int_equal(b.len, 4 + 2 + 599);
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], 0);
    char *s = agl_buf_steal(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(strncmp(s, "42-x[zzz", 8), 0);
    free(s);

    /* stealing an empty buffer yields "" */
    s = agl_buf_steal(&b);
    assert_string_equal(s, "");
    free(s);
}

static void test_json_string_escaping(void **state)
{
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_json_str(&b, "plain");
    agl_buf_putc(&b, ' ');
    agl_buf_json_str(&b, "q\"b\\n\nr\rt\tb\bf\f");
    agl_buf_putc(&b, ' ');
    agl_buf_json_str(&b, "\x01\x1f\x7f");
    agl_buf_putc(&b, ' ');
    agl_buf_json_str(&b, NULL);
    agl_buf_putc(&b, ' ');
    agl_buf_json_str(&b, "caf\xc3\xa9 \xf0\x9f\x98\x80"); /* UTF-8 passes unescaped */
    assert_string_equal(b.data,
                        "\"plain\" \"q\\\"b\\\\n\\nr\\rt\\tb\\bf\\f\" \"\\u0001\\u001f\x7f\" "
                        "null \"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    agl_buf_reset(&b);
    /* embedded NULs are escaped, length-driven */
    agl_buf_json_strn(&b, "a\0b", 3);
    assert_string_equal(b.data, "\"a\\u0000b\"");
    agl_buf_reset(&b);
    agl_buf_json_strn(&b, "", 0);
    assert_string_equal(b.data, "\"\"");
    agl_buf_reset(&b);
    agl_buf_json_key(&b, "k");
    agl_buf_json_raw(&b, NULL);
    agl_buf_putc(&b, ',');
    agl_buf_json_raw(&b, "{\"x\":[1,2.0]}");
    assert_string_equal(b.data, "\"k\":null,{\"x\":[1,2.0]}");
    agl_buf_free(&b);
}

static void test_doubles_python_repr(void **state)
{
    assert_string_equal(D(0.1), "0.1");
    assert_string_equal(D(0.7), "0.7");
    assert_string_equal(D(2.0), "2.0");
    assert_string_equal(D(0.0), "0.0");
    assert_string_equal(D(-0.0), "-0.0");
    assert_string_equal(D(-1.5), "-1.5");
    assert_string_equal(D(1e-05), "1e-05");
    assert_string_equal(D(0.0001), "0.0001");
    assert_string_equal(D(1733212345.6789012), "1733212345.6789012");
    assert_string_equal(D(1733212351.0), "1733212351.0");
    assert_string_equal(D(0.1 + 0.2), "0.30000000000000004");
    assert_string_equal(D(1e16), "1e+16");
    assert_string_equal(D(1.5e300), "1.5e+300");
    assert_string_equal(D(5e-324), "5e-324");
    assert_string_equal(D(123456789.0), "123456789.0");
}

/* Integral values with trailing zeros: Python repr keeps positional notation below 1e16
 * (repr(600.0) == '600.0', repr(1e15) == '1000000000000000.0'). */
static void test_doubles_trailing_zeros(void **state)
{
    assert_string_equal(D(600.0), "600.0");
    assert_string_equal(D(120.0), "120.0");
    assert_string_equal(D(100.0), "100.0");
    assert_string_equal(D(1733212340.0), "1733212340.0");
    assert_string_equal(D(1e15), "1000000000000000.0");
    assert_string_equal(D(12000.5), "12000.5");
}

static void test_doubles_non_finite(void **state)
{
    assert_string_equal(D(NAN), "NaN");
    assert_string_equal(D(INFINITY), "Infinity");
    assert_string_equal(D(-INFINITY), "-Infinity");
}

static void test_doubles_round_trip(void **state)
{
    /* Whatever the text, it must read back as the same double. */
    const double vals[] = {1733212345.6789012,
                           0.1,
                           1.0 / 3,
                           2.5e-8,
                           123.456,
                           9007199254740993.0,
                           1.7976931348623157e308,
                           2.2250738585072014e-308};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        assert_true(strtod(D(vals[i]), NULL) == vals[i]);
}

static void test_opt_double_and_int(void **state)
{
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_json_opt_double(&b, 0, 5.0);
    agl_buf_putc(&b, ',');
    agl_buf_json_opt_double(&b, 1, 5.0);
    agl_buf_putc(&b, ',');
    agl_buf_json_int(&b, 0);
    agl_buf_putc(&b, ',');
    agl_buf_json_int(&b, -1);
    agl_buf_putc(&b, ',');
    agl_buf_json_int(&b, INT64_MAX);
    agl_buf_putc(&b, ',');
    agl_buf_json_int(&b, INT64_MIN);
    assert_string_equal(b.data, "null,5.0,0,-1,9223372036854775807,-9223372036854775808");
    agl_buf_free(&b);

    char out[32];
    assert_int_equal(agl_format_double(out, sizeof out, 2.0), 3);
    assert_string_equal(out, "2.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_and_growth),      cmocka_unit_test(test_json_string_escaping),
        cmocka_unit_test(test_doubles_python_repr), cmocka_unit_test(test_doubles_trailing_zeros),
        cmocka_unit_test(test_doubles_non_finite),  cmocka_unit_test(test_doubles_round_trip),
        cmocka_unit_test(test_opt_double_and_int),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
