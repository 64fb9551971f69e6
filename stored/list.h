/* list — the list/search endpoints' shared machinery: pagination, sort validation against a
 * model's declared fields, filter conditions, and assembly of the SQL text from whitelisted
 * fragments (user input only ever travels as $n parameters). */
#ifndef STORED_LIST_H
#define STORED_LIST_H

#include "agl_arena.h"
#include "agl_buf.h"
#include "agl_err.h"
#include "http.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { SORT_TIME, SORT_STR, SORT_NUM, SORT_JSON } sort_kind;

typedef struct sort_field {
    const char *name; /* declared model field */
    const char *expr; /* SQL expression */
    sort_kind kind;
} sort_field;

typedef struct list_q {
    int64_t limit, offset;
    const char *sort_by; /* NULL = storage order */
    bool desc;
    bool or_logic;
} list_q;

#define LIST_MAX_PARAMS 32

typedef struct list_sql {
    agl_arena *a;
    agl_buf where; /* conditions joined by the filter logic */
    int nconds;
    bool or_logic;
    const char *params[LIST_MAX_PARAMS];
    int n;
} list_sql;

/* Reads limit/offset/sort_by/sort_order/filter_logic from the query string (GET) or the JSON
 * body (POST), applying defaults; then validates sort_by, limit and offset in the reference's
 * order (422 for types and enums, 400 for the rest). default_sort may be NULL. */
agl_code list_q_parse(agl_req *r, const json_t *body, const sort_field *fields,
                      const char *default_sort, list_q *q, agl_error *err);

void list_sql_init(list_sql *s, agl_arena *a, bool or_logic);
void list_sql_free(list_sql *s);
/* Adds a parameter and returns its placeholder ("$3"). */
const char *list_param(list_sql *s, const char *value);
/* Adds one filter condition (a fragment using placeholders from list_param). */
void list_cond(list_sql *s, const char *fragment);
/* Builds "SELECT <cols>, count(*) OVER () FROM <from> WHERE <scope> AND (<conds>) ORDER BY ...
 * LIMIT .. OFFSET .." into out. scope may be NULL. */
void list_build(list_sql *s, agl_buf *out, const char *cols, const char *from, const char *scope,
                const list_q *q, const sort_field *fields, const char *pos_col);
/* Builds the matching count(*) query (used when the page is empty past the end). */
void list_build_count(list_sql *s, agl_buf *out, const char *from, const char *scope);

/* Reads string-list filters: from the JSON body (array or null) or repeated query keys.
 * *present false when absent. Returns 422 on wrong types. */
agl_code list_str_array(agl_req *r, const json_t *body, const char *key, const char ***out, int *n,
                        bool *present, agl_error *err);
/* A single optional string filter from body or query. */
agl_code list_str(agl_req *r, const json_t *body, const char *key, const char **out,
                  agl_error *err);

#endif
