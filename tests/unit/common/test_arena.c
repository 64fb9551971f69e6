/* Unit tests for agl_arena and agl_util ids. */
#include "agl_arena.h"
#include "agl_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

static void test_alignment_and_reuse(void **state)
{
    agl_arena a;
    agl_arena_init(&a);
    for (int i = 1; i < 2000; i += 7) {
        void *p = agl_arena_alloc(&a, (size_t)i);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)i); /* ASan catches overlap/overflow */
    }
    void *big = agl_arena_alloc(&a, 1 << 20); /* larger than a chunk */
    memset(big, 1, 1 << 20);
    assert_true(a.total >= (1 << 20));
    agl_arena_free(&a);
    assert_int_equal(a.total, 0);
    assert_null(a.head);
    char *s = agl_arena_printf(&a, "%s-%d", "x", 42);
    assert_string_equal(s, "x-42");
    assert_null(agl_arena_strdup(&a, NULL));
    assert_string_equal(agl_arena_strndup(&a, "abcdef", 3), "abc");
    agl_arena_free(&a);
}

static void test_ids(void **state)
{
    char a[32], b[32];
    agl_id_new(a, sizeof a, "ro-", 12);
    agl_id_new(b, sizeof b, "ro-", 12);
    assert_int_equal(strlen(a), AGL_ROLLOUT_ID_LEN);
    assert_memory_equal(a, "ro-", 3);
    for (int i = 3; i < 15; i++) assert_non_null(strchr("0123456789abcdef", a[i]));
    assert_string_not_equal(a, b);
    agl_id_new(a, sizeof a, "at-", 8);
    assert_int_equal(strlen(a), AGL_ATTEMPT_ID_LEN);
    agl_id_new(a, 6, "rs-", 12); /* truncated to the buffer, still terminated */
    assert_int_equal(strlen(a), 5);
}

static void test_clocks(void **state)
{
    double t = agl_now();
    assert_true(t > 1.7e9);
    double m0 = agl_monotonic();
    agl_sleep(0.01);
    assert_true(agl_monotonic() - m0 >= 0.009);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_reuse),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
