/* Unit tests for agl_config: defaults < environment < command line, --help/--version,
 * one-line errors with exit code 2. */
#include "agl_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <string.h>

static const char *listen_addr;
static long threads;
static double ratio;
static int verbose;
static const char *fmt;
static const char *const formats[] = {"text", "json", NULL};

static agl_option opts[] = {
    {"listen", "AGL_T_LISTEN", AGL_OPT_STR, &listen_addr, "HOST:PORT", "address", NULL},
    {"threads", "AGL_T_THREADS", AGL_OPT_INT, &threads, "N", "threads", NULL},
    {"ratio", "AGL_T_RATIO", AGL_OPT_DOUBLE, &ratio, "R", "ratio", NULL},
    {"verbose", "AGL_T_VERBOSE", AGL_OPT_FLAG, &verbose, NULL, "chatty", NULL},
    {"log-format", NULL, AGL_OPT_STR, &fmt, "F", "format", formats},
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};
static agl_cli cli = {"t", "[options]", "test program", NULL, opts};

static int reset(void **state)
{
    listen_addr = "127.0.0.1:1";
    threads = 0;
    ratio = 0.5;
    verbose = 0;
    fmt = "text";
    unsetenv("AGL_T_LISTEN");
    unsetenv("AGL_T_THREADS");
    unsetenv("AGL_T_VERBOSE");
    return 0;
}

static int parse(int argc, const char **argv)
{
    return agl_config_parse(&cli, argc, (char **)argv, 1, NULL, NULL);
}

static void test_defaults_kept(void **state)
{
    const char *argv[] = {"t"};
    assert_int_equal(parse(1, argv), 0);
    assert_string_equal(listen_addr, "127.0.0.1:1");
    assert_int_equal(threads, 0);
}

static void test_cli_values_and_equals_form(void **state)
{
    const char *argv[] = {"t",   "--listen",  "0.0.0.0:9",    "--threads=4", "--ratio",
                          "2.5", "--verbose", "--log-format", "json"};
    assert_int_equal(parse(9, argv), 0);
    assert_string_equal(listen_addr, "0.0.0.0:9");
    assert_int_equal(threads, 4);
    assert_true(ratio == 2.5);
    assert_int_equal(verbose, 1);
    assert_string_equal(fmt, "json");
}

static void test_env_then_cli_precedence(void **state)
{
    setenv("AGL_T_LISTEN", "env:1", 1);
    setenv("AGL_T_THREADS", "7", 1);
    setenv("AGL_T_VERBOSE", "yes", 1);
    const char *argv[] = {"t", "--threads", "3"};
    assert_int_equal(parse(3, argv), 0);
    assert_string_equal(listen_addr, "env:1"); /* env beats default */
    assert_int_equal(threads, 3);              /* cli beats env */
    assert_int_equal(verbose, 1);
}

static void test_errors_exit_2(void **state)
{
    const char *unknown[] = {"t", "--nope"};
    assert_int_equal(parse(2, unknown), 2);
    const char *badint[] = {"t", "--threads", "x"};
    assert_int_equal(parse(3, badint), 2);
    const char *missing[] = {"t", "--listen"};
    assert_int_equal(parse(2, missing), 2);
    const char *choice[] = {"t", "--log-format", "xml"};
    assert_int_equal(parse(3, choice), 2);
    const char *positional[] = {"t", "extra"};
    assert_int_equal(parse(2, positional), 2);
    setenv("AGL_T_THREADS", "many", 1);
    const char *none[] = {"t"};
    assert_int_equal(parse(1, none), 2);
}

static void test_help_and_version_exit_0(void **state)
{
    const char *help[] = {"t", "--help"};
    assert_int_equal(parse(2, help), 1);
    const char *version[] = {"t", "--version"};
    assert_int_equal(parse(2, version), 1);
}

static void test_positional_rest(void **state)
{
    const char *argv[] = {"t", "apo", "--threads", "2", "x"};
    char **rest;
    int n;
    assert_int_equal(agl_config_parse(&cli, 5, (char **)argv, 1, &rest, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rest[0], "apo");
    assert_string_equal(rest[1], "x");
    assert_int_equal(threads, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_kept, reset),
        cmocka_unit_test_setup(test_cli_values_and_equals_form, reset),
        cmocka_unit_test_setup(test_env_then_cli_precedence, reset),
        cmocka_unit_test_setup(test_errors_exit_2, reset),
        cmocka_unit_test_setup(test_help_and_version_exit_0, reset),
        cmocka_unit_test_setup(test_positional_rest, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
