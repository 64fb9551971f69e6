/* store_rows — reading database rows into model structs, and formatting SQL parameters. */
#include "agl_buf.h"
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *store_fmt_double(agl_arena *a, double v)
{
    char tmp[40];
    agl_format_double(tmp, sizeof tmp, v);
    return agl_arena_strdup(a, tmp);
}

const char *store_fmt_int(agl_arena *a, int64_t v)
{
    return agl_arena_printf(a, "%" PRId64, v);
}

const char *store_text_array(agl_arena *a, const char *const *v, int n)
{
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_putc(&b, '{');
    for (int i = 0; i < n; i++) {
        if (i) agl_buf_putc(&b, ',');
        agl_buf_putc(&b, '"');
        for (const char *p = v[i]; *p; p++) {
            if (*p == '"' || *p == '\\') agl_buf_putc(&b, '\\');
            agl_buf_putc(&b, *p);
        }
        agl_buf_putc(&b, '"');
    }
    agl_buf_putc(&b, '}');
    const char *s = agl_arena_strndup(a, b.data, b.len);
    agl_buf_free(&b);
    return s;
}

const char *store_retry_json(agl_arena *a, const agl_rollout_config *c)
{
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_putc(&b, '[');
    for (int i = 0; i < c->n_retry; i++) {
        if (i) agl_buf_putc(&b, ',');
        agl_buf_json_str(&b, agl_attempt_status_names[c->retry[i]]);
    }
    agl_buf_putc(&b, ']');
    const char *s = agl_arena_strndup(a, b.data, b.len);
    agl_buf_free(&b);
    return s;
}

static const char *dup_val(const PGresult *res, int row, int col, agl_arena *a)
{
    return agl_arena_strdup(a, db_val(res, row, col));
}

/* retry_condition is stored as the JSON array the client sent, e.g. ["failed","timeout"]. */
static void parse_retry(const char *text, agl_rollout_config *c)
{
    c->n_retry = 0;
    if (!text) return;
    const char *p = text;
    while ((p = strchr(p, '"')) != NULL) {
        const char *q = strchr(p + 1, '"');
        if (!q) break;
        char name[32];
        size_t n = (size_t)(q - p - 1);
        if (n < sizeof name) {
            memcpy(name, p + 1, n);
            name[n] = 0;
            int s = agl_attempt_status_from(name);
            if (s >= 0 && c->n_retry < (int)sizeof c->retry) c->retry[c->n_retry++] = (int8_t)s;
        }
        p = q + 1;
    }
}

void store_row_rollout(const PGresult *res, int row, int col, agl_arena *a, agl_rollout *r)
{
    memset(r, 0, sizeof *r);
    r->rollout_id = dup_val(res, row, col + 0, a);
    r->input = dup_val(res, row, col + 1, a);
    r->start_time = db_double(res, row, col + 2, NULL);
    r->end_time = db_double(res, row, col + 3, &r->has_end_time);
    const char *mode = db_val(res, row, col + 4);
    r->mode = mode ? agl_mode_from(mode) : AGL_MODE_NONE;
    r->resources_id = dup_val(res, row, col + 5, a);
    r->status = agl_rollout_status_from(PQgetvalue(res, row, col + 6));
    r->config.timeout_seconds = db_double(res, row, col + 7, &r->config.has_timeout);
    r->config.unresponsive_seconds = db_double(res, row, col + 8, &r->config.has_unresponsive);
    r->config.max_attempts = db_int(res, row, col + 9);
    parse_retry(db_val(res, row, col + 10), &r->config);
    r->metadata = dup_val(res, row, col + 11, a);
    r->num_attempts = db_int(res, row, col + 12);
}

bool store_row_attempt(const PGresult *res, int row, int col, agl_arena *a, agl_attempt *at)
{
    memset(at, 0, sizeof *at);
    if (PQgetisnull(res, row, col)) return false;
    at->rollout_id = dup_val(res, row, col + 0, a);
    at->attempt_id = dup_val(res, row, col + 1, a);
    at->sequence_id = db_int(res, row, col + 2);
    at->start_time = db_double(res, row, col + 3, NULL);
    at->end_time = db_double(res, row, col + 4, &at->has_end_time);
    at->status = agl_attempt_status_from(PQgetvalue(res, row, col + 5));
    at->worker_id = dup_val(res, row, col + 6, a);
    at->last_heartbeat_time = db_double(res, row, col + 7, &at->has_last_heartbeat_time);
    at->metadata = dup_val(res, row, col + 8, a);
    return true;
}

void store_row_worker(const PGresult *res, int row, int col, agl_arena *a, agl_worker *w)
{
    memset(w, 0, sizeof *w);
    w->worker_id = dup_val(res, row, col + 0, a);
    w->status = agl_worker_status_from(PQgetvalue(res, row, col + 1));
    w->heartbeat_stats = dup_val(res, row, col + 2, a);
    w->last_heartbeat_time = db_double(res, row, col + 3, &w->has_last_heartbeat_time);
    w->last_dequeue_time = db_double(res, row, col + 4, &w->has_last_dequeue_time);
    w->last_busy_time = db_double(res, row, col + 5, &w->has_last_busy_time);
    w->last_idle_time = db_double(res, row, col + 6, &w->has_last_idle_time);
    w->current_rollout_id = dup_val(res, row, col + 7, a);
    w->current_attempt_id = dup_val(res, row, col + 8, a);
}

void store_row_resources(const PGresult *res, int row, int col, agl_arena *a,
                         agl_resources_update *u)
{
    memset(u, 0, sizeof *u);
    u->resources_id = dup_val(res, row, col + 0, a);
    u->create_time = db_double(res, row, col + 1, NULL);
    u->update_time = db_double(res, row, col + 2, NULL);
    u->version = db_int(res, row, col + 3);
    u->resources = dup_val(res, row, col + 4, a);
}
