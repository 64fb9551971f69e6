/* agl_model — JSON codecs for the LightningStore models (store-api.md §2).
 * Writers stream straight into an agl_buf in the reference's field order; parsers walk a
 * jansson tree, validate like the reference's pydantic models and name the first offending
 * field in agl_error.loc. Free-form JSON is re-serialised by our own compact writer. */
#include "agl_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- enumerations ---- */

const char *const agl_rollout_status_names[AGL_RS__COUNT] = {
    "queuing", "preparing", "running", "failed", "succeeded", "cancelled", "requeuing",
};
const char *const agl_attempt_status_names[AGL_AS__COUNT] = {
    "preparing", "running", "failed", "succeeded", "unresponsive", "timeout",
};
const char *const agl_mode_names[3] = {"train", "val", "test"};
const char *const agl_worker_status_names[AGL_WS__COUNT] = {"idle", "busy", "unknown"};

static const char *const resource_type_names[] = {"llm", "proxy_llm", "prompt_template"};
static const char *const engine_names[] = {"jinja", "f-string", "poml"};
static const char *const status_code_names[] = {"UNSET", "OK", "ERROR"};

#define NELEM(x) ((int)(sizeof(x) / sizeof((x)[0])))

static int name_index(const char *const *names, int n, const char *s)
{
    if (!s) return -1;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

int agl_rollout_status_from(const char *s)
{
    return name_index(agl_rollout_status_names, AGL_RS__COUNT, s);
}

int agl_attempt_status_from(const char *s)
{
    return name_index(agl_attempt_status_names, AGL_AS__COUNT, s);
}

int agl_mode_from(const char *s)
{
    return name_index(agl_mode_names, NELEM(agl_mode_names), s);
}

int agl_worker_status_from(const char *s)
{
    return name_index(agl_worker_status_names, AGL_WS__COUNT, s);
}

bool agl_rollout_status_terminal(int s)
{
    return s == AGL_RS_FAILED || s == AGL_RS_SUCCEEDED || s == AGL_RS_CANCELLED;
}

/* Name of an enum value, or NULL (written as JSON null) when out of range. */
static const char *enum_name(const char *const *names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : NULL;
}

/* ---- compact JSON of a jansson tree ---- */

void agl_json_write(agl_buf *b, const json_t *j)
{
    if (!j) {
        agl_buf_puts(b, "null");
        return;
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *key;
        size_t klen;
        json_t *v;
        bool first = true;
        agl_buf_putc(b, '{');
        /* jansson keeps insertion order, so input key order survives. */
        json_object_keylen_foreach((json_t *)j, key, klen, v)
        {
            if (!first) agl_buf_putc(b, ',');
            first = false;
            agl_buf_json_strn(b, key, klen);
            agl_buf_putc(b, ':');
            agl_json_write(b, v);
        }
        agl_buf_putc(b, '}');
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        agl_buf_putc(b, '[');
        json_array_foreach((json_t *)j, i, v)
        {
            if (i) agl_buf_putc(b, ',');
            agl_json_write(b, v);
        }
        agl_buf_putc(b, ']');
        break;
    }
    case JSON_STRING:
        /* JSON_ALLOW_NUL strings may hold embedded NULs: always go by length. */
        agl_buf_json_strn(b, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        agl_buf_json_int(b, (int64_t)json_integer_value(j));
        break;
    case JSON_REAL:
        agl_buf_json_double(b, json_real_value(j));
        break;
    case JSON_TRUE:
        agl_buf_puts(b, "true");
        break;
    case JSON_FALSE:
        agl_buf_puts(b, "false");
        break;
    case JSON_NULL:
        agl_buf_puts(b, "null");
        break;
    }
}

const char *agl_json_dump(agl_arena *a, const json_t *j)
{
    agl_buf b;
    agl_buf_init(&b);
    agl_json_write(&b, j);
    const char *out = agl_arena_strndup(a, b.data, b.len);
    agl_buf_free(&b);
    return out;
}

json_t *agl_json_parse(const char *text, size_t len, agl_error *err)
{
    json_error_t je;
    json_t *j = json_loadb(text ? text : "", text ? len : 0, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    /* Integers beyond 64 bits: parse again with every integer as a real so the request can be
     * validated; free-form values are then taken verbatim from the text (agl_json_raw_find). */
    if (!j && strstr(je.text, "too big integer"))
        j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!j)
        agl_error_set(err, AGL_E_INVALID, "body", "invalid json: %s (line %d, column %d)", je.text,
                      je.line, je.column);
    return j;
}

/* ---- error locations ---- */

#define LOC_MAX sizeof(((agl_error *)0)->loc)

/* out = base.seg (just seg when base is empty), truncated to fit agl_error.loc. */
static const char *loc_key(char *out, const char *base, const char *seg)
{
    size_t n = 0;
    if (base && *base) {
        size_t bl = strnlen(base, LOC_MAX - 2);
        memcpy(out, base, bl);
        out[bl] = '.';
        n = bl + 1;
    }
    size_t sl = strnlen(seg, LOC_MAX - 1 - n);
    memcpy(out + n, seg, sl);
    out[n + sl] = 0;
    return out;
}

static const char *loc_idx(char *out, const char *base, size_t i)
{
    char seg[24];
    snprintf(seg, sizeof seg, "%zu", i);
    return loc_key(out, base, seg);
}

static agl_code invalid(agl_error *err, const char *loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static agl_code invalid(agl_error *err, const char *loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    agl_error_vset(err, AGL_E_INVALID, loc ? loc : "", fmt, ap);
    va_end(ap);
    return AGL_E_INVALID;
}

/* pydantic's Literal message: "input should be 'a', 'b' or 'c'". */
static agl_code invalid_enum(agl_error *err, const char *loc, const char *const *names, int n)
{
    char list[256];
    size_t off = 0;
    list[0] = 0;
    for (int i = 0; i < n && off < sizeof list; i++) {
        const char *sep = i == 0 ? "" : (i == n - 1 ? " or " : ", ");
        off += (size_t)snprintf(list + off, sizeof list - off, "%s'%s'", sep, names[i]);
    }
    return invalid(err, loc, "input should be %s", list);
}

/* ---- value checks (loc names the value itself) ---- */

#define MSG_REQUIRED "field required"
#define MSG_STRING "input should be a valid string"
#define MSG_NUMBER "input should be a valid number"
#define MSG_INT "input should be a valid integer"
#define MSG_BOOL "input should be a valid boolean"
#define MSG_DICT "input should be a valid dictionary"
#define MSG_LIST "input should be a valid list"

/* Numbers are JSON integers or reals; booleans are not numbers here. */
static agl_code check_number(const json_t *v, const char *loc, double *out, agl_error *err)
{
    if (!json_is_number(v)) return invalid(err, loc, MSG_NUMBER);
    *out = json_number_value(v);
    return AGL_OK;
}

/* Integers are JSON integers or integral reals (pydantic's lax int accepts 3.0). */
static agl_code check_int(const json_t *v, const char *loc, int64_t *out, agl_error *err)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return AGL_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d)) return invalid(err, loc, "input should be a finite number");
        if (d != floor(d))
            return invalid(err, loc, MSG_INT ", got a number with a fractional part");
        if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return invalid(err, loc, MSG_INT ", got a number out of range");
        *out = (int64_t)d;
        return AGL_OK;
    }
    return invalid(err, loc, MSG_INT);
}

static agl_code check_enum(const json_t *v, const char *loc, const char *const *names, int n,
                           int *out, agl_error *err)
{
    int i = json_is_string(v) ? name_index(names, n, json_string_value(v)) : -1;
    if (i < 0) return invalid_enum(err, loc, names, n);
    *out = i;
    return AGL_OK;
}

/* ---- field access (base is the location of the containing object) ---- */

/* *v = the key's value; a missing key is an error only when required. */
static agl_code field(const json_t *o, const char *base, const char *key, bool required, json_t **v,
                      agl_error *err)
{
    *v = json_object_get(o, key);
    if (!*v && required) {
        char l[LOC_MAX];
        return invalid(err, loc_key(l, base, key), MSG_REQUIRED);
    }
    return AGL_OK;
}

static agl_code need_object(const json_t *o, const char *loc, agl_error *err)
{
    return json_is_object(o) ? AGL_OK : invalid(err, loc, MSG_DICT);
}

/* Required string (never null). */
static agl_code req_str(const json_t *o, const char *base, const char *key, agl_arena *a,
                        const char **out, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    if (field(o, base, key, true, &v, err)) return AGL_E_INVALID;
    if (!json_is_string(v)) return invalid(err, loc_key(l, base, key), MSG_STRING);
    *out = agl_arena_strndup(a, json_string_value(v), json_string_length(v));
    return AGL_OK;
}

/* Optional string | null; absent or null give NULL. */
static agl_code opt_str(const json_t *o, const char *base, const char *key, bool required,
                        agl_arena *a, const char **out, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    *out = NULL;
    if (field(o, base, key, required, &v, err)) return AGL_E_INVALID;
    if (!v || json_is_null(v)) return AGL_OK;
    if (!json_is_string(v)) return invalid(err, loc_key(l, base, key), MSG_STRING);
    *out = agl_arena_strndup(a, json_string_value(v), json_string_length(v));
    return AGL_OK;
}

static agl_code req_num(const json_t *o, const char *base, const char *key, double *out,
                        agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    if (field(o, base, key, true, &v, err)) return AGL_E_INVALID;
    return check_number(v, loc_key(l, base, key), out, err);
}

/* number | null; absent and null both give has = false. */
static agl_code opt_num(const json_t *o, const char *base, const char *key, bool required,
                        bool *has, double *out, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    *has = false;
    *out = 0;
    if (field(o, base, key, required, &v, err)) return AGL_E_INVALID;
    if (!v || json_is_null(v)) return AGL_OK;
    if (check_number(v, loc_key(l, base, key), out, err)) return AGL_E_INVALID;
    *has = true;
    return AGL_OK;
}

static agl_code req_int(const json_t *o, const char *base, const char *key, int64_t *out,
                        agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    if (field(o, base, key, true, &v, err)) return AGL_E_INVALID;
    return check_int(v, loc_key(l, base, key), out, err);
}

/* Enum with a default when absent; null is an error unless nullable (then *out = -1). */
static agl_code opt_enum(const json_t *o, const char *base, const char *key,
                         const char *const *names, int n, int dflt, bool nullable, int *out,
                         agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    *out = dflt;
    if (field(o, base, key, false, &v, err)) return AGL_E_INVALID;
    if (!v) return AGL_OK;
    if (nullable && json_is_null(v)) {
        *out = -1;
        return AGL_OK;
    }
    return check_enum(v, loc_key(l, base, key), names, n, out, err);
}

/* object | null as raw JSON text; absent and null give NULL. */
static agl_code opt_obj_raw(const json_t *o, const char *base, const char *key, agl_arena *a,
                            const char **out, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    *out = NULL;
    if (field(o, base, key, false, &v, err)) return AGL_E_INVALID;
    if (!v || json_is_null(v)) return AGL_OK;
    if (!json_is_object(v)) return invalid(err, loc_key(l, base, key), MSG_DICT);
    *out = agl_json_dump(a, v);
    return AGL_OK;
}

/* ---- RolloutConfig ---- */

void agl_rollout_config_default(agl_rollout_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_attempts = 1;
}

/* Appends a retry status. The array holds twice the number of statuses, so it only fills up
 * with duplicates; then they are squeezed out (first occurrence kept), which leaves the set
 * of statuses, and thus the retry behaviour, unchanged. */
static void retry_push(agl_rollout_config *c, int s)
{
    const int cap = NELEM(c->retry);
    if (c->n_retry == cap) {
        bool seen[AGL_AS__COUNT] = {false};
        int n = 0;
        for (int i = 0; i < c->n_retry; i++) {
            if (seen[c->retry[i]]) continue;
            seen[c->retry[i]] = true;
            c->retry[n++] = c->retry[i];
        }
        c->n_retry = n;
        if (seen[s]) return;
    }
    c->retry[c->n_retry++] = (int8_t)s;
}

agl_code agl_rollout_config_parse(const json_t *j, const char *loc, agl_rollout_config *out,
                                  agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    agl_rollout_config c;
    agl_rollout_config_default(&c);
    if (need_object(j, loc, err)) return AGL_E_INVALID;

    if (opt_num(j, loc, "timeout_seconds", false, &c.has_timeout, &c.timeout_seconds, err) ||
        opt_num(j, loc, "unresponsive_seconds", false, &c.has_unresponsive, &c.unresponsive_seconds,
                err))
        return AGL_E_INVALID;

    v = json_object_get(j, "max_attempts");
    if (v) {
        loc_key(l, loc, "max_attempts");
        if (check_int(v, l, &c.max_attempts, err)) return AGL_E_INVALID;
        if (c.max_attempts < 1)
            return invalid(err, l, "input should be greater than or equal to 1");
    }

    v = json_object_get(j, "retry_condition");
    if (v) {
        loc_key(l, loc, "retry_condition");
        if (!json_is_array(v)) return invalid(err, l, MSG_LIST);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            char le[LOC_MAX];
            int s;
            if (check_enum(e, loc_idx(le, l, i), agl_attempt_status_names, AGL_AS__COUNT, &s, err))
                return AGL_E_INVALID;
            retry_push(&c, s);
        }
    }
    *out = c;
    return AGL_OK;
}

void agl_rollout_config_write(agl_buf *b, const agl_rollout_config *c)
{
    agl_buf_puts(b, "{\"timeout_seconds\":");
    agl_buf_json_opt_double(b, c->has_timeout, c->timeout_seconds);
    agl_buf_puts(b, ",\"unresponsive_seconds\":");
    agl_buf_json_opt_double(b, c->has_unresponsive, c->unresponsive_seconds);
    agl_buf_puts(b, ",\"max_attempts\":");
    agl_buf_json_int(b, c->max_attempts);
    agl_buf_puts(b, ",\"retry_condition\":[");
    for (int i = 0; i < c->n_retry; i++) {
        if (i) agl_buf_putc(b, ',');
        agl_buf_json_str(b, enum_name(agl_attempt_status_names, AGL_AS__COUNT, c->retry[i]));
    }
    agl_buf_puts(b, "]}");
}

/* ---- Rollout / Attempt / AttemptedRollout ---- */

/* Rollout fields without the closing brace, so AttemptedRollout can append "attempt". */
static void rollout_write_open(agl_buf *b, const agl_rollout *r)
{
    agl_buf_puts(b, "{\"rollout_id\":");
    agl_buf_json_str(b, r->rollout_id);
    agl_buf_puts(b, ",\"input\":");
    agl_buf_json_raw(b, r->input);
    agl_buf_puts(b, ",\"start_time\":");
    agl_buf_json_double(b, r->start_time);
    agl_buf_puts(b, ",\"end_time\":");
    agl_buf_json_opt_double(b, r->has_end_time, r->end_time);
    agl_buf_puts(b, ",\"mode\":");
    agl_buf_json_str(b, enum_name(agl_mode_names, NELEM(agl_mode_names), r->mode));
    agl_buf_puts(b, ",\"resources_id\":");
    agl_buf_json_str(b, r->resources_id);
    agl_buf_puts(b, ",\"status\":");
    agl_buf_json_str(b, enum_name(agl_rollout_status_names, AGL_RS__COUNT, r->status));
    agl_buf_puts(b, ",\"config\":");
    agl_rollout_config_write(b, &r->config);
    agl_buf_puts(b, ",\"metadata\":");
    agl_buf_json_raw(b, r->metadata);
}

void agl_rollout_write(agl_buf *b, const agl_rollout *r)
{
    rollout_write_open(b, r);
    agl_buf_putc(b, '}');
}

void agl_attempted_rollout_write(agl_buf *b, const agl_rollout *r, const agl_attempt *a)
{
    rollout_write_open(b, r);
    /* The client tells Rollout from AttemptedRollout by the key's presence (§2.5): never
     * write "attempt":null. */
    if (a) {
        agl_buf_puts(b, ",\"attempt\":");
        agl_attempt_write(b, a);
    }
    agl_buf_putc(b, '}');
}

void agl_attempt_write(agl_buf *b, const agl_attempt *a)
{
    agl_buf_puts(b, "{\"rollout_id\":");
    agl_buf_json_str(b, a->rollout_id);
    agl_buf_puts(b, ",\"attempt_id\":");
    agl_buf_json_str(b, a->attempt_id);
    agl_buf_puts(b, ",\"sequence_id\":");
    agl_buf_json_int(b, a->sequence_id);
    agl_buf_puts(b, ",\"start_time\":");
    agl_buf_json_double(b, a->start_time);
    agl_buf_puts(b, ",\"end_time\":");
    agl_buf_json_opt_double(b, a->has_end_time, a->end_time);
    agl_buf_puts(b, ",\"status\":");
    agl_buf_json_str(b, enum_name(agl_attempt_status_names, AGL_AS__COUNT, a->status));
    agl_buf_puts(b, ",\"worker_id\":");
    agl_buf_json_str(b, a->worker_id);
    agl_buf_puts(b, ",\"last_heartbeat_time\":");
    agl_buf_json_opt_double(b, a->has_last_heartbeat_time, a->last_heartbeat_time);
    agl_buf_puts(b, ",\"metadata\":");
    agl_buf_json_raw(b, a->metadata);
    agl_buf_putc(b, '}');
}

/* Parsers of server responses follow the reference models: required keys are those without a
 * default there (Rollout: rollout_id, input, start_time). */
agl_code agl_rollout_parse(const json_t *j, agl_arena *a, agl_rollout *out, agl_error *err)
{
    agl_rollout r;
    json_t *v;
    memset(&r, 0, sizeof r);
    if (need_object(j, "", err) || req_str(j, "", "rollout_id", a, &r.rollout_id, err) ||
        field(j, "", "input", true, &v, err))
        return AGL_E_INVALID;
    r.input = agl_json_dump(a, v);
    if (req_num(j, "", "start_time", &r.start_time, err) ||
        opt_num(j, "", "end_time", false, &r.has_end_time, &r.end_time, err) ||
        opt_enum(j, "", "mode", agl_mode_names, NELEM(agl_mode_names), AGL_MODE_NONE, true, &r.mode,
                 err) ||
        opt_str(j, "", "resources_id", false, a, &r.resources_id, err) ||
        opt_enum(j, "", "status", agl_rollout_status_names, AGL_RS__COUNT, AGL_RS_QUEUING, false,
                 &r.status, err))
        return AGL_E_INVALID;
    v = json_object_get(j, "config");
    if (v) {
        if (agl_rollout_config_parse(v, "config", &r.config, err)) return AGL_E_INVALID;
    } else {
        agl_rollout_config_default(&r.config);
    }
    if (opt_obj_raw(j, "", "metadata", a, &r.metadata, err)) return AGL_E_INVALID;
    *out = r;
    return AGL_OK;
}

static agl_code attempt_parse_at(const json_t *j, const char *loc, agl_arena *a, agl_attempt *out,
                                 agl_error *err)
{
    agl_attempt t;
    memset(&t, 0, sizeof t);
    if (need_object(j, loc, err) || req_str(j, loc, "rollout_id", a, &t.rollout_id, err) ||
        req_str(j, loc, "attempt_id", a, &t.attempt_id, err) ||
        req_int(j, loc, "sequence_id", &t.sequence_id, err) ||
        req_num(j, loc, "start_time", &t.start_time, err) ||
        opt_num(j, loc, "end_time", false, &t.has_end_time, &t.end_time, err) ||
        opt_enum(j, loc, "status", agl_attempt_status_names, AGL_AS__COUNT, AGL_AS_PREPARING, false,
                 &t.status, err) ||
        opt_str(j, loc, "worker_id", false, a, &t.worker_id, err) ||
        opt_num(j, loc, "last_heartbeat_time", false, &t.has_last_heartbeat_time,
                &t.last_heartbeat_time, err) ||
        opt_obj_raw(j, loc, "metadata", a, &t.metadata, err))
        return AGL_E_INVALID;
    *out = t;
    return AGL_OK;
}

agl_code agl_attempt_parse(const json_t *j, agl_arena *a, agl_attempt *out, agl_error *err)
{
    return attempt_parse_at(j, "", a, out, err);
}

agl_code agl_attempted_rollout_parse(const json_t *j, agl_arena *a, agl_rollout *r, agl_attempt *at,
                                     bool *has_attempt, agl_error *err)
{
    agl_attempt tmp;
    *has_attempt = false;
    if (agl_rollout_parse(j, a, r, err)) return AGL_E_INVALID;
    const json_t *v = json_object_get(j, "attempt");
    if (!v) return AGL_OK;
    /* "attempt":null is not a valid AttemptedRollout (the reference client fails on it). */
    if (attempt_parse_at(v, "attempt", a, at ? at : &tmp, err)) return AGL_E_INVALID;
    if (strcmp((at ? at : &tmp)->rollout_id, r->rollout_id) != 0)
        return invalid(err, "attempt.rollout_id",
                       "value error, inconsistent rollout_id between rollout and attempt");
    *has_attempt = true;
    return AGL_OK;
}

/* ---- Worker ---- */

void agl_worker_write(agl_buf *b, const agl_worker *w)
{
    agl_buf_puts(b, "{\"worker_id\":");
    agl_buf_json_str(b, w->worker_id);
    agl_buf_puts(b, ",\"status\":");
    agl_buf_json_str(b, enum_name(agl_worker_status_names, AGL_WS__COUNT, w->status));
    agl_buf_puts(b, ",\"heartbeat_stats\":");
    agl_buf_json_raw(b, w->heartbeat_stats);
    agl_buf_puts(b, ",\"last_heartbeat_time\":");
    agl_buf_json_opt_double(b, w->has_last_heartbeat_time, w->last_heartbeat_time);
    agl_buf_puts(b, ",\"last_dequeue_time\":");
    agl_buf_json_opt_double(b, w->has_last_dequeue_time, w->last_dequeue_time);
    agl_buf_puts(b, ",\"last_busy_time\":");
    agl_buf_json_opt_double(b, w->has_last_busy_time, w->last_busy_time);
    agl_buf_puts(b, ",\"last_idle_time\":");
    agl_buf_json_opt_double(b, w->has_last_idle_time, w->last_idle_time);
    agl_buf_puts(b, ",\"current_rollout_id\":");
    agl_buf_json_str(b, w->current_rollout_id);
    agl_buf_puts(b, ",\"current_attempt_id\":");
    agl_buf_json_str(b, w->current_attempt_id);
    agl_buf_putc(b, '}');
}

agl_code agl_worker_parse(const json_t *j, agl_arena *a, agl_worker *out, agl_error *err)
{
    agl_worker w;
    memset(&w, 0, sizeof w);
    if (need_object(j, "", err) || req_str(j, "", "worker_id", a, &w.worker_id, err) ||
        opt_enum(j, "", "status", agl_worker_status_names, AGL_WS__COUNT, AGL_WS_UNKNOWN, false,
                 &w.status, err) ||
        opt_obj_raw(j, "", "heartbeat_stats", a, &w.heartbeat_stats, err) ||
        opt_num(j, "", "last_heartbeat_time", false, &w.has_last_heartbeat_time,
                &w.last_heartbeat_time, err) ||
        opt_num(j, "", "last_dequeue_time", false, &w.has_last_dequeue_time, &w.last_dequeue_time,
                err) ||
        opt_num(j, "", "last_busy_time", false, &w.has_last_busy_time, &w.last_busy_time, err) ||
        opt_num(j, "", "last_idle_time", false, &w.has_last_idle_time, &w.last_idle_time, err) ||
        opt_str(j, "", "current_rollout_id", false, a, &w.current_rollout_id, err) ||
        opt_str(j, "", "current_attempt_id", false, a, &w.current_attempt_id, err))
        return AGL_E_INVALID;
    *out = w;
    return AGL_OK;
}

/* ---- Resources ---- */

/* Writes one validated, normalised resource object (§2.8) to b. */
static agl_code resource_write(agl_buf *b, const json_t *r, const char *loc, agl_error *err)
{
    char l[LOC_MAX];
    json_t *v;
    if (need_object(r, loc, err)) return AGL_E_INVALID;
    loc_key(l, loc, "resource_type");
    v = json_object_get(r, "resource_type");
    if (!v) return invalid(err, l, "unable to extract tag using discriminator 'resource_type'");
    int type = json_is_string(v) ? name_index(resource_type_names, NELEM(resource_type_names),
                                              json_string_value(v))
                                 : -1;
    if (type < 0 && json_is_string(v))
        return invalid(err, l,
                       "input tag '%.64s' found using 'resource_type' does not match any of the "
                       "expected tags: 'llm', 'proxy_llm', 'prompt_template'",
                       json_string_value(v));
    if (type < 0) return invalid(err, l, MSG_STRING);

    agl_buf_puts(b, "{\"resource_type\":");
    agl_buf_json_str(b, resource_type_names[type]);
    if (type == 2) { /* prompt_template */
        json_t *tpl, *eng;
        int engine;
        if (field(r, loc, "template", true, &tpl, err)) return AGL_E_INVALID;
        if (!json_is_string(tpl)) return invalid(err, loc_key(l, loc, "template"), MSG_STRING);
        if (field(r, loc, "engine", true, &eng, err) ||
            check_enum(eng, loc_key(l, loc, "engine"), engine_names, NELEM(engine_names), &engine,
                       err))
            return AGL_E_INVALID;
        agl_buf_puts(b, ",\"template\":");
        agl_json_write(b, tpl);
        agl_buf_puts(b, ",\"engine\":");
        agl_buf_json_str(b, engine_names[engine]);
        agl_buf_putc(b, '}');
        return AGL_OK;
    }
    /* llm and proxy_llm share their fields. */
    json_t *endpoint, *model, *key, *sp;
    if (field(r, loc, "endpoint", true, &endpoint, err)) return AGL_E_INVALID;
    if (!json_is_string(endpoint)) return invalid(err, loc_key(l, loc, "endpoint"), MSG_STRING);
    if (field(r, loc, "model", true, &model, err)) return AGL_E_INVALID;
    if (!json_is_string(model)) return invalid(err, loc_key(l, loc, "model"), MSG_STRING);
    key = json_object_get(r, "api_key");
    if (key && !json_is_null(key) && !json_is_string(key))
        return invalid(err, loc_key(l, loc, "api_key"), MSG_STRING);
    sp = json_object_get(r, "sampling_parameters");
    if (sp && !json_is_object(sp))
        return invalid(err, loc_key(l, loc, "sampling_parameters"), MSG_DICT);
    agl_buf_puts(b, ",\"endpoint\":");
    agl_json_write(b, endpoint);
    agl_buf_puts(b, ",\"model\":");
    agl_json_write(b, model);
    agl_buf_puts(b, ",\"api_key\":");
    agl_json_write(b, key); /* absent -> null */
    agl_buf_puts(b, ",\"sampling_parameters\":");
    if (sp)
        agl_json_write(b, sp);
    else
        agl_buf_puts(b, "{}");
    agl_buf_putc(b, '}');
    return AGL_OK;
}

agl_code agl_named_resources_parse(const json_t *j, const char *loc, agl_arena *a,
                                   const char **out_json, agl_error *err)
{
    const char *name;
    size_t nlen;
    json_t *r;
    bool first = true;
    agl_buf b;
    if (need_object(j, loc, err)) return AGL_E_INVALID;
    agl_buf_init(&b);
    agl_buf_putc(&b, '{');
    json_object_keylen_foreach((json_t *)j, name, nlen, r)
    {
        char l[LOC_MAX];
        if (!first) agl_buf_putc(&b, ',');
        first = false;
        agl_buf_json_strn(&b, name, nlen);
        agl_buf_putc(&b, ':');
        if (resource_write(&b, r, loc_key(l, loc, name), err)) {
            agl_buf_free(&b);
            return AGL_E_INVALID;
        }
    }
    agl_buf_putc(&b, '}');
    *out_json = agl_arena_strndup(a, b.data, b.len);
    agl_buf_free(&b);
    return AGL_OK;
}

void agl_resources_update_write(agl_buf *b, const agl_resources_update *u)
{
    agl_buf_puts(b, "{\"resources_id\":");
    agl_buf_json_str(b, u->resources_id);
    agl_buf_puts(b, ",\"create_time\":");
    agl_buf_json_double(b, u->create_time);
    agl_buf_puts(b, ",\"update_time\":");
    agl_buf_json_double(b, u->update_time);
    agl_buf_puts(b, ",\"version\":");
    agl_buf_json_int(b, u->version);
    agl_buf_puts(b, ",\"resources\":");
    agl_buf_json_raw(b, u->resources);
    agl_buf_putc(b, '}');
}

agl_code agl_resources_update_parse(const json_t *j, agl_arena *a, agl_resources_update *out,
                                    agl_error *err)
{
    agl_resources_update u;
    json_t *v;
    memset(&u, 0, sizeof u);
    if (need_object(j, "", err) || req_str(j, "", "resources_id", a, &u.resources_id, err) ||
        req_num(j, "", "create_time", &u.create_time, err) ||
        req_num(j, "", "update_time", &u.update_time, err) ||
        req_int(j, "", "version", &u.version, err) || field(j, "", "resources", true, &v, err) ||
        agl_named_resources_parse(v, "resources", a, &u.resources, err))
        return AGL_E_INVALID;
    *out = u;
    return AGL_OK;
}

/* ---- Span family (§2.9) ----
 * The span is validated on a private deep copy which is normalised in place (defaults added,
 * OtelResource extras dropped, times made reals) and then serialised as the stored document.
 * Replacing a value with json_object_set keeps the key's position; new keys go last. */

typedef enum { ATTR_STR, ATTR_BOOL, ATTR_NUM, ATTR_OTHER } attr_kind;

static attr_kind attr_kind_of(const json_t *v)
{
    if (json_is_string(v)) return ATTR_STR;
    if (json_is_boolean(v)) return ATTR_BOOL;
    if (json_is_number(v)) return ATTR_NUM; /* ints and reals mix as a float array */
    return ATTR_OTHER;
}

agl_code agl_attributes_check(const json_t *j, const char *loc, agl_error *err)
{
    const char *key;
    json_t *v;
    if (need_object(j, loc, err)) return AGL_E_INVALID;
    json_object_foreach((json_t *)j, key, v)
    {
        char l[LOC_MAX];
        if (!json_is_array(v)) {
            if (attr_kind_of(v) != ATTR_OTHER) continue;
            return invalid(err, loc_key(l, loc, key),
                           "attribute value should be a string, boolean, number or an array of "
                           "one of those");
        }
        size_t i;
        json_t *e;
        attr_kind kind = ATTR_OTHER;
        json_array_foreach(v, i, e)
        {
            attr_kind k = attr_kind_of(e);
            if (k == ATTR_OTHER)
                return invalid(err, loc_key(l, loc, key),
                               "attribute array elements should be strings, booleans or numbers");
            if (i > 0 && k != kind)
                return invalid(err, loc_key(l, loc, key),
                               "attribute array elements should all have the same type");
            kind = k;
        }
    }
    return AGL_OK;
}

static agl_code req_field_str(const json_t *o, const char *base, const char *key, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    if (field(o, base, key, true, &v, err)) return AGL_E_INVALID;
    return json_is_string(v) ? AGL_OK : invalid(err, loc_key(l, base, key), MSG_STRING);
}

/* number | null under key; an integer becomes a real (the reference's float field). A missing
 * key is required, or set to null when !required. */
static agl_code span_time(json_t *o, const char *base, const char *key, bool required, bool *has,
                          double *out, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    *has = false;
    *out = 0;
    if (field(o, base, key, required, &v, err)) return AGL_E_INVALID;
    if (!v) {
        json_object_set_new(o, key, json_null());
        return AGL_OK;
    }
    if (json_is_null(v)) return AGL_OK;
    if (check_number(v, loc_key(l, base, key), out, err)) return AGL_E_INVALID;
    if (json_is_integer(v)) json_object_set_new(o, key, json_real(*out));
    *has = true;
    return AGL_OK;
}

static agl_code span_context_check(const json_t *c, const char *loc, agl_error *err)
{
    json_t *v, *s;
    char l[LOC_MAX];
    const char *key;
    if (need_object(c, loc, err) || req_field_str(c, loc, "trace_id", err) ||
        req_field_str(c, loc, "span_id", err) || field(c, loc, "is_remote", true, &v, err))
        return AGL_E_INVALID;
    if (!json_is_boolean(v)) return invalid(err, loc_key(l, loc, "is_remote"), MSG_BOOL);
    if (field(c, loc, "trace_state", true, &v, err) ||
        need_object(v, loc_key(l, loc, "trace_state"), err))
        return AGL_E_INVALID;
    json_object_foreach(v, key, s)
    {
        char le[LOC_MAX];
        if (!json_is_string(s)) return invalid(err, loc_key(le, l, key), MSG_STRING);
    }
    return AGL_OK;
}

/* SpanContext | null under key (required key). */
static agl_code span_opt_context(const json_t *o, const char *base, const char *key, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    if (field(o, base, key, true, &v, err)) return AGL_E_INVALID;
    if (json_is_null(v)) return AGL_OK;
    return span_context_check(v, loc_key(l, base, key), err);
}

static agl_code trace_status_fix(json_t *st, const char *loc, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    int code;
    if (need_object(st, loc, err) || field(st, loc, "status_code", true, &v, err) ||
        check_enum(v, loc_key(l, loc, "status_code"), status_code_names, NELEM(status_code_names),
                   &code, err))
        return AGL_E_INVALID;
    v = json_object_get(st, "description");
    if (!v) {
        json_object_set_new(st, "description", json_null());
    } else if (!json_is_null(v) && !json_is_string(v)) {
        return invalid(err, loc_key(l, loc, "description"), MSG_STRING);
    }
    return AGL_OK;
}

static agl_code event_fix(json_t *e, const char *loc, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    bool has;
    double t;
    if (need_object(e, loc, err) || req_field_str(e, loc, "name", err) ||
        field(e, loc, "attributes", true, &v, err) ||
        agl_attributes_check(v, loc_key(l, loc, "attributes"), err) ||
        span_time(e, loc, "timestamp", false, &has, &t, err))
        return AGL_E_INVALID;
    return AGL_OK;
}

static agl_code link_fix(json_t *k, const char *loc, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    if (need_object(k, loc, err) || field(k, loc, "context", true, &v, err) ||
        span_context_check(v, loc_key(l, loc, "context"), err))
        return AGL_E_INVALID;
    v = json_object_get(k, "attributes");
    if (!v) {
        json_object_set_new(k, "attributes", json_null());
    } else if (!json_is_null(v) && agl_attributes_check(v, loc_key(l, loc, "attributes"), err)) {
        return AGL_E_INVALID;
    }
    return AGL_OK;
}

/* OtelResource is the one Span part that does not keep unknown keys. */
static agl_code resource_fix(json_t *r, const char *loc, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    const char *key;
    size_t klen;
    void *tmp;
    if (need_object(r, loc, err) || field(r, loc, "attributes", true, &v, err) ||
        agl_attributes_check(v, loc_key(l, loc, "attributes"), err) ||
        req_field_str(r, loc, "schema_url", err))
        return AGL_E_INVALID;
    json_object_keylen_foreach_safe(r, tmp, key, klen, v)
    {
        bool known = (klen == 10 && memcmp(key, "attributes", 10) == 0) ||
                     (klen == 10 && memcmp(key, "schema_url", 10) == 0);
        if (!known) json_object_deln(r, key, klen);
    }
    return AGL_OK;
}

/* Array of Event or Link under key, each normalised by fix. */
static agl_code span_list(json_t *o, const char *base, const char *key,
                          agl_code (*fix)(json_t *, const char *, agl_error *), agl_error *err)
{
    json_t *v, *e;
    char l[LOC_MAX];
    size_t i;
    if (field(o, base, key, true, &v, err)) return AGL_E_INVALID;
    loc_key(l, base, key);
    if (!json_is_array(v)) return invalid(err, l, MSG_LIST);
    json_array_foreach(v, i, e)
    {
        char le[LOC_MAX];
        if (fix(e, loc_idx(le, l, i), err)) return AGL_E_INVALID;
    }
    return AGL_OK;
}

static agl_code span_fix(json_t *s, const char *loc, agl_arena *a, agl_span *out, agl_error *err)
{
    json_t *v;
    char l[LOC_MAX];
    if (need_object(s, loc, err) || req_str(s, loc, "rollout_id", a, &out->rollout_id, err) ||
        req_str(s, loc, "attempt_id", a, &out->attempt_id, err) ||
        req_int(s, loc, "sequence_id", &out->sequence_id, err))
        return AGL_E_INVALID;
    /* 3.0 is accepted like pydantic does, and stored as the integer it means. */
    if (!json_is_integer(json_object_get(s, "sequence_id")))
        json_object_set_new(s, "sequence_id", json_integer((json_int_t)out->sequence_id));
    if (req_str(s, loc, "trace_id", a, &out->trace_id, err) ||
        req_str(s, loc, "span_id", a, &out->span_id, err) ||
        opt_str(s, loc, "parent_id", true, a, &out->parent_id, err) ||
        req_str(s, loc, "name", a, &out->name, err) || field(s, loc, "status", true, &v, err) ||
        trace_status_fix(v, loc_key(l, loc, "status"), err) ||
        field(s, loc, "attributes", true, &v, err) ||
        agl_attributes_check(v, loc_key(l, loc, "attributes"), err) ||
        span_list(s, loc, "events", event_fix, err) || span_list(s, loc, "links", link_fix, err) ||
        span_time(s, loc, "start_time", true, &out->has_start_time, &out->start_time, err) ||
        span_time(s, loc, "end_time", true, &out->has_end_time, &out->end_time, err) ||
        span_opt_context(s, loc, "context", err) || span_opt_context(s, loc, "parent", err) ||
        field(s, loc, "resource", true, &v, err) ||
        resource_fix(v, loc_key(l, loc, "resource"), err))
        return AGL_E_INVALID;
    return AGL_OK;
}

agl_code agl_span_parse(const json_t *j, const char *loc, agl_arena *a, agl_span *out,
                        agl_error *err)
{
    agl_span sp;
    memset(&sp, 0, sizeof sp);
    if (!loc) loc = "";
    if (need_object(j, loc, err)) return AGL_E_INVALID;
    json_t *copy = json_deep_copy(j);
    if (!copy) return agl_error_set(err, AGL_E_INTERNAL, loc, "out of memory copying span");
    agl_code rc = span_fix(copy, loc, a, &sp, err);
    if (rc == AGL_OK) {
        sp.json = agl_json_dump(a, copy);
        *out = sp;
    }
    json_decref(copy);
    return rc;
}

void agl_span_write(agl_buf *b, const agl_span *s)
{
    agl_buf_json_raw(b, s->json);
}

/* ---- PaginatedResult ---- */

void agl_page_begin(agl_buf *b)
{
    agl_buf_puts(b, "{\"items\":[");
}

void agl_page_end(agl_buf *b, int64_t limit, int64_t offset, int64_t total)
{
    agl_buf_puts(b, "],\"limit\":");
    agl_buf_json_int(b, limit);
    agl_buf_puts(b, ",\"offset\":");
    agl_buf_json_int(b, offset);
    agl_buf_puts(b, ",\"total\":");
    agl_buf_json_int(b, total);
    agl_buf_putc(b, '}');
}
