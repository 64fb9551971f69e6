/* list — pagination, sorting and filters for the list/search endpoints (store-api.md §5.3). */
#include "list.h"
#include "agl_alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static agl_code parse_int_text(const char *s, const char *loc, int64_t *out, agl_error *err)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return agl_error_set(err, AGL_E_INVALID, loc,
                             "input should be a valid integer, unable to parse string as an "
                             "integer");
    *out = v;
    return AGL_OK;
}

static agl_code get_int(agl_req *r, const json_t *body, const char *key, int64_t def, int64_t *out,
                        agl_error *err)
{
    char loc[64];
    *out = def;
    if (body) {
        snprintf(loc, sizeof loc, "body.%s", key);
        json_t *v = json_object_get(body, key);
        if (!v || json_is_null(v)) return AGL_OK;
        if (json_is_integer(v)) {
            *out = json_integer_value(v);
            return AGL_OK;
        }
        if (json_is_real(v) && json_real_value(v) == (double)(int64_t)json_real_value(v)) {
            *out = (int64_t)json_real_value(v);
            return AGL_OK;
        }
        return agl_error_set(err, AGL_E_INVALID, loc, "input should be a valid integer");
    }
    snprintf(loc, sizeof loc, "query.%s", key);
    const char *s = req_query(r, key);
    if (!s) return AGL_OK;
    return parse_int_text(s, loc, out, err);
}

agl_code list_str(agl_req *r, const json_t *body, const char *key, const char **out, agl_error *err)
{
    *out = NULL;
    if (body) {
        json_t *v = json_object_get(body, key);
        if (!v || json_is_null(v)) return AGL_OK;
        if (!json_is_string(v)) {
            char loc[64];
            snprintf(loc, sizeof loc, "body.%s", key);
            return agl_error_set(err, AGL_E_INVALID, loc, "input should be a valid string");
        }
        *out = agl_arena_strdup(&r->arena, json_string_value(v));
        return AGL_OK;
    }
    *out = req_query(r, key);
    return AGL_OK;
}

agl_code list_str_array(agl_req *r, const json_t *body, const char *key, const char ***out, int *n,
                        bool *present, agl_error *err)
{
    *n = 0;
    *present = false;
    *out = NULL;
    if (body) {
        json_t *v = json_object_get(body, key);
        if (!v || json_is_null(v)) return AGL_OK;
        char loc[64];
        snprintf(loc, sizeof loc, "body.%s", key);
        if (!json_is_array(v))
            return agl_error_set(err, AGL_E_INVALID, loc, "input should be a valid list");
        size_t cnt = json_array_size(v);
        const char **vals = agl_arena_alloc(&r->arena, sizeof *vals * (cnt ? cnt : 1));
        for (size_t i = 0; i < cnt; i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_string(e)) {
                snprintf(loc, sizeof loc, "body.%s.%zu", key, i);
                return agl_error_set(err, AGL_E_INVALID, loc, "input should be a valid string");
            }
            vals[i] = agl_arena_strdup(&r->arena, json_string_value(e));
        }
        *out = vals;
        *n = (int)cnt;
        *present = true;
        return AGL_OK;
    }
    *n = req_query_all(r, key, out);
    *present = *n > 0;
    return AGL_OK;
}

static agl_code get_enum(agl_req *r, const json_t *body, const char *key, const char *a,
                         const char *b, bool *is_b, agl_error *err)
{
    const char *v;
    agl_code code = list_str(r, body, key, &v, err);
    if (code != AGL_OK) return code;
    *is_b = false;
    if (!v || !strcmp(v, a)) return AGL_OK;
    if (!strcmp(v, b)) {
        *is_b = true;
        return AGL_OK;
    }
    char loc[64];
    snprintf(loc, sizeof loc, "%s.%s", body ? "body" : "query", key);
    return agl_error_set(err, AGL_E_INVALID, loc, "input should be '%s' or '%s'", a, b);
}

agl_code list_q_parse(agl_req *r, const json_t *body, const sort_field *fields,
                      const char *default_sort, list_q *q, agl_error *err)
{
    memset(q, 0, sizeof *q);
    agl_code code;
    if ((code = get_int(r, body, "limit", -1, &q->limit, err))) return code;
    if ((code = get_int(r, body, "offset", 0, &q->offset, err))) return code;
    if ((code = get_enum(r, body, "sort_order", "asc", "desc", &q->desc, err))) return code;
    if ((code = get_enum(r, body, "filter_logic", "and", "or", &q->or_logic, err))) return code;
    /* sort_by: absent → default; explicit JSON null → storage order (E26). */
    q->sort_by = default_sort;
    if (body) {
        json_t *v = json_object_get(body, "sort_by");
        if (v && json_is_null(v))
            q->sort_by = NULL;
        else if (v && !json_is_string(v))
            return agl_error_set(err, AGL_E_INVALID, "body.sort_by",
                                 "input should be a valid string");
        else if (v)
            q->sort_by = agl_arena_strdup(&r->arena, json_string_value(v));
    } else {
        const char *s = req_query(r, "sort_by");
        if (s) q->sort_by = s;
    }
    if (q->sort_by) {
        bool ok = false;
        for (const sort_field *f = fields; f->name; f++)
            if (!strcmp(f->name, q->sort_by)) ok = true;
        if (!ok) {
            agl_buf names;
            agl_buf_init(&names);
            for (const sort_field *f = fields; f->name; f++)
                agl_buf_printf(&names, "%s%s", f == fields ? "" : ", ", f->name);
            agl_error_set(err, AGL_E_BAD_REQUEST, NULL,
                          "Invalid sort_by: %s, allowed fields are: %s", q->sort_by, names.data);
            agl_buf_free(&names);
            return err->code;
        }
    }
    if (q->limit == 0 || q->limit < -1)
        return agl_error_set(err, AGL_E_BAD_REQUEST, NULL,
                             "Limit must be greater than 0 or -1 for no limit");
    if (q->offset < 0)
        return agl_error_set(err, AGL_E_BAD_REQUEST, NULL,
                             "Offset must be greater than or equal to 0");
    return AGL_OK;
}

void list_sql_init(list_sql *s, agl_arena *a, bool or_logic)
{
    memset(s, 0, sizeof *s);
    s->a = a;
    s->or_logic = or_logic;
    agl_buf_init(&s->where);
}

void list_sql_free(list_sql *s)
{
    agl_buf_free(&s->where);
}

const char *list_param(list_sql *s, const char *value)
{
    if (s->n == LIST_MAX_PARAMS) abort(); /* callers add a fixed, small number of filters */
    s->params[s->n++] = value;
    return agl_arena_printf(s->a, "$%d", s->n);
}

void list_cond(list_sql *s, const char *fragment)
{
    if (s->nconds++) agl_buf_puts(&s->where, s->or_logic ? " OR " : " AND ");
    agl_buf_printf(&s->where, "(%s)", fragment);
}

static void where_clause(list_sql *s, agl_buf *out, const char *scope)
{
    agl_buf_puts(out, " WHERE ");
    agl_buf_puts(out, scope ? scope : "TRUE");
    if (s->nconds) agl_buf_printf(out, " AND (%s)", s->where.data);
}

void list_build(list_sql *s, agl_buf *out, const char *cols, const char *from, const char *scope,
                const list_q *q, const sort_field *fields, const char *pos_col)
{
    agl_buf_printf(out, "SELECT %s, count(*) OVER () FROM %s", cols, from);
    where_clause(s, out, scope);
    agl_buf_puts(out, " ORDER BY ");
    if (q->sort_by) {
        for (const sort_field *f = fields; f->name; f++) {
            if (strcmp(f->name, q->sort_by)) continue;
            const char *dir = q->desc ? "DESC" : "ASC";
            switch (f->kind) {
            /* *_time: null sorts as +infinity — PostgreSQL's default null placement. */
            case SORT_TIME:
                agl_buf_printf(out, "%s %s", f->expr, dir);
                break;
            /* other nullable strings sort as "" (byte-wise, like Python). */
            case SORT_STR:
                agl_buf_printf(out, "COALESCE(%s, '') COLLATE \"C\" %s", f->expr, dir);
                break;
            case SORT_NUM:
                agl_buf_printf(out, "COALESCE(%s, 0) %s", f->expr, dir);
                break;
            case SORT_JSON:
                agl_buf_printf(out, "COALESCE((%s)::text, '') COLLATE \"C\" %s", f->expr, dir);
                break;
            }
            agl_buf_puts(out, ", ");
        }
    }
    /* Ties (and no sort at all) keep storage order, also under DESC. */
    agl_buf_printf(out, "%s ASC", pos_col);
    /* Two statements: argument evaluation order is unspecified in C, and the placeholders
     * must come out as $n-1 (limit) and $n (offset) — list_build_count relies on it. */
    const char *lim =
        list_param(s, q->limit < 0 ? NULL : agl_arena_printf(s->a, "%" PRId64, q->limit));
    const char *off = list_param(s, agl_arena_printf(s->a, "%" PRId64, q->offset));
    agl_buf_printf(out, " LIMIT %s OFFSET %s", lim, off);
}

void list_build_count(list_sql *s, agl_buf *out, const char *from, const char *scope)
{
    agl_buf_printf(out, "SELECT count(*) FROM %s", from);
    where_clause(s, out, scope);
}
