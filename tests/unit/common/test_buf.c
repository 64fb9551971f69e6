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

/* The exact-integer fast path (integers below 2^53, values in [2^27, 2^53) with a fraction:
 * timestamps) against Python's repr: the goldens were printed by CPython 3.11, including the
 * neighbours of a power of two where the interval below is half as wide. */
static void test_doubles_fast_path_goldens(void **state)
{
    static const struct {
        double v;
        const char *repr;
    } g[] = {
        {1764100000.0005, "1764100000.0005"},       {1764100000.1234567, "1764100000.1234567"},
        {1764100000.000001, "1764100000.000001"},   {1073741824.0, "1073741824.0"},
        {1073741824.0000002, "1073741824.0000002"}, {1073741823.9999999, "1073741823.9999999"},
        {134217728.00000003, "134217728.00000003"}, {9007199254740991.0, "9007199254740991.0"},
        {4503599627370496.0, "4503599627370496.0"}, {134217728.5, "134217728.5"},
        {4503599627370495.5, "4503599627370495.5"}, {67108864.25, "67108864.25"},
        {-1764100000.0005, "-1764100000.0005"},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) assert_string_equal(D(g[i].v), g[i].repr);
}

/* Shortest digits by search, independent of the formatter: the fewest significant digits whose
 * correctly rounded %e reads back as v. */
static int search_digits(double v)
{
    char t[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(t, sizeof t, "%.*e", p - 1, v);
        if (strtod(t, NULL) == v) return p;
    }
    return 17;
}

static int significant_digits(const char *s)
{
    int n = 0, lead = 1, trailing = 0;
    for (; *s && *s != 'e'; s++) {
        if (*s < '0' || *s > '9') continue;
        if (lead && *s == '0') continue;
        lead = 0;
        n++;
        trailing = *s == '0' ? trailing + 1 : 0;
    }
    return n - trailing > 0 ? n - trailing : 1;
}

/* 200,000 pseudo-random timestamps and wide-range values: every text reads back as the same
 * double and has no more digits than the search finds (a power of two may need fewer). */
static void test_doubles_shortest_sweep(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double v;
        if (i % 2)
            v = 1.6e9 + (double)(x >> 11) / 9007199254740992.0 * 3e8;
        else {
            uint64_t bits =
                0x41A0000000000000ull + x % (0x4340000000000000ull - 0x41A0000000000000ull);
            memcpy(&v, &bits, sizeof v);
        }
        const char *s = D(v);
        assert_true(strtod(s, NULL) == v);
        assert_true(significant_digits(s) <= search_digits(v));
    }
}

/* The 8-bytes-at-a-time scan against a byte-by-byte escaper: one special byte at every
 * offset of a 24-byte string, plus bytes that must pass through (0x7f, UTF-8, 0x20). */
static void ref_escape(char *w, const char *s, size_t n)
{
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            *w++ = '\\', *w++ = (char)c;
        else if (c == '\n')
            *w++ = '\\', *w++ = 'n';
        else if (c == '\r')
            *w++ = '\\', *w++ = 'r';
        else if (c == '\t')
            *w++ = '\\', *w++ = 't';
        else if (c == '\b')
            *w++ = '\\', *w++ = 'b';
        else if (c == '\f')
            *w++ = '\\', *w++ = 'f';
        else if (c < 0x20)
            w += sprintf(w, "\\u%04x", c);
        else
            *w++ = (char)c;
    }
    *w++ = '"';
    *w = 0;
}

static void test_json_string_escaping_every_offset(void **state)
{
    const unsigned char specials[] = {'"', '\\', 0x01, 0x1f, '\n', 0x00, 0x7f, 0xc3, ' ', '~'};
    for (size_t k = 0; k < sizeof specials; k++)
        for (size_t at = 0; at < 24; at++)
            for (size_t len = at + 1; len <= 24; len += 7) {
                char in[32], want[256];
                memset(in, 'a', sizeof in);
                in[at] = (char)specials[k];
                ref_escape(want, in, len);
                agl_buf b;
                agl_buf_init(&b);
                agl_buf_json_strn(&b, in, len);
                assert_string_equal(b.data, want);
                agl_buf_free(&b);
            }
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
        cmocka_unit_test(test_put_and_growth),
        cmocka_unit_test(test_json_string_escaping),
        cmocka_unit_test(test_doubles_python_repr),
        cmocka_unit_test(test_doubles_trailing_zeros),
        cmocka_unit_test(test_doubles_non_finite),
        cmocka_unit_test(test_doubles_round_trip),
        cmocka_unit_test(test_opt_double_and_int),
        cmocka_unit_test(test_doubles_fast_path_goldens),
        cmocka_unit_test(test_doubles_shortest_sweep),
        cmocka_unit_test(test_json_string_escaping_every_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
