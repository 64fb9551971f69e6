/* Unit tests for stored/list.c: list SQL is assembled only from whitelisted fragments, values
 * travel as $n parameters, null ordering and stable ties follow store-api.md §5.3. */
#include "../../../stored/list.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

static const sort_field fields[] = {
    {"rollout_id", "r.rollout_id", SORT_STR},
    {"start_time", "r.start_time", SORT_TIME},
    {"mode", "r.mode", SORT_STR},
    {"input", "r.input", SORT_JSON},
    {"num", "r.num", SORT_NUM},
    {NULL, NULL, 0},
};

static void build(agl_arena *a, list_q *q, bool or_logic, agl_buf *sql, list_sql *s)
{
    list_sql_init(s, a, or_logic);
    list_cond(s, agl_arena_printf(a, "r.status = ANY(%s::text[])", list_param(s, "{\"a\"}")));
    list_cond(s, agl_arena_printf(a, "strpos(r.rollout_id, %s::text) > 0",
                                  list_param(s, "x'; DROP TABLE rollouts; --")));
    agl_buf_init(sql);
    list_build(s, sql, "r.rollout_id", "rollouts r", NULL, q, fields, "r.pos");
}

static void test_and_or_and_parameters(void **state)
{
    agl_arena a;
    agl_arena_init(&a);
    list_q q = {.limit = 10, .offset = 5, .sort_by = NULL};
    agl_buf sql;
    list_sql s;
    build(&a, &q, false, &sql, &s);
    assert_string_equal(sql.data,
                        "SELECT r.rollout_id, count(*) OVER () FROM rollouts r WHERE TRUE AND "
                        "((r.status = ANY($1::text[])) AND (strpos(r.rollout_id, $2::text) > 0)) "
                        "ORDER BY r.pos ASC LIMIT $3 OFFSET $4");
    assert_int_equal(s.n, 4);
    /* the hostile value is a parameter, never SQL text */
    assert_null(strstr(sql.data, "DROP"));
    assert_string_equal(s.params[1], "x'; DROP TABLE rollouts; --");
    assert_string_equal(s.params[2], "10");
    assert_string_equal(s.params[3], "5");
    agl_buf_free(&sql);
    list_sql_free(&s);

    q.limit = -1; /* no limit: LIMIT NULL */
    build(&a, &q, true, &sql, &s);
    assert_non_null(strstr(sql.data, ") OR ("));
    assert_null(s.params[2]);
    agl_buf_reset(&sql);
    list_build_count(&s, &sql, "rollouts r", "r.x = 1");
    assert_string_equal(sql.data, "SELECT count(*) FROM rollouts r WHERE r.x = 1 AND "
                                  "((r.status = ANY($1::text[])) OR (strpos(r.rollout_id, "
                                  "$2::text) > 0))");
    agl_buf_free(&sql);
    list_sql_free(&s);
    agl_arena_free(&a);
}

static const char *order_by(agl_arena *a, const char *field, bool desc)
{
    list_q q = {.limit = -1, .sort_by = field, .desc = desc};
    list_sql s;
    list_sql_init(&s, a, false);
    agl_buf sql;
    agl_buf_init(&sql);
    list_build(&s, &sql, "x", "t", NULL, &q, fields, "pos");
    const char *o = agl_arena_strdup(a, strstr(sql.data, "ORDER BY"));
    agl_buf_free(&sql);
    list_sql_free(&s);
    return o;
}

static void test_sort_kinds(void **state)
{
    agl_arena a;
    agl_arena_init(&a);
    /* *_time: nulls as +infinity (PostgreSQL's default placement), ties in storage order */
    assert_string_equal(order_by(&a, "start_time", false),
                        "ORDER BY r.start_time ASC, pos ASC LIMIT $1 OFFSET $2");
    assert_string_equal(order_by(&a, "start_time", true),
                        "ORDER BY r.start_time DESC, pos ASC LIMIT $1 OFFSET $2");
    /* other strings: null as "", byte-wise */
    assert_string_equal(order_by(&a, "mode", true),
                        "ORDER BY COALESCE(r.mode, '') COLLATE \"C\" DESC, pos ASC LIMIT $1 "
                        "OFFSET $2");
    assert_non_null(strstr(order_by(&a, "input", false), "COALESCE((r.input)::text, '')"));
    assert_non_null(strstr(order_by(&a, "num", false), "COALESCE(r.num, 0) ASC"));
    agl_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_and_or_and_parameters),
        cmocka_unit_test(test_sort_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
