/* otlp — OTLP/HTTP trace payloads to stored Span JSON (store-api.md §6).
 * Both encodings end up as protobuf-c message structs allocated from the request arena
 * (protobuf via protobuf-c's unpacker, OTLP/JSON via jansson), and one converter turns those
 * into agl_otlp_span records whose JSON mirrors the reference's spans_from_proto(). */
#include "otlp.h"

#include "agl_alloc.h"
#include "agl_buf.h"

#include "google/rpc/status.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Common__V1__ArrayValue pb_array;
typedef Opentelemetry__Proto__Common__V1__KeyValueList pb_kvlist;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Resource__V1__Resource pb_resource;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rspans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_sspans;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Trace__V1__Span__Event pb_event;
typedef Opentelemetry__Proto__Trace__V1__Span__Link pb_link;
typedef Opentelemetry__Proto__Trace__V1__Status pb_status;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest pb_request;

#define ANY_NOT_SET OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET
#define ANY_STRING OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
#define ANY_BOOL OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE
#define ANY_INT OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE
#define ANY_DOUBLE OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE
#define ANY_ARRAY OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE
#define ANY_KVLIST OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE
#define ANY_BYTES OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE

#define PARSE_PREFIX "Unable to parse OTLP traces payload: "
#define REQUEST_TYPE "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"

static const char hexdig[] = "0123456789abcdef";

/* ------------------------------------------------------------------------------------------
 * Attribute lists. Python builds a dict from the KeyValue list, so a repeated key keeps the
 * position of its first occurrence and the value of its last one; attr_view reproduces that.
 */

typedef struct attr_view {
    pb_kv **kv; /* one entry per distinct key, first-seen order, last value */
    size_t n;
} attr_view;

static const char *kv_key(const pb_kv *kv)
{
    return kv->key ? kv->key : "";
}

static attr_view attr_view_of(agl_arena *a, pb_kv *const *kvs, size_t n)
{
    attr_view v = {NULL, 0};
    if (n == 0) return v;
    v.kv = agl_arena_alloc(a, n * sizeof *v.kv);
    size_t cap = 8;
    while (cap < 2 * n) cap *= 2;
    size_t *slot = agl_arena_calloc(a, cap * sizeof *slot); /* index + 1 into v.kv; 0 = free */
    for (size_t i = 0; i < n; i++) {
        const char *key = kv_key(kvs[i]);
        uint32_t h = 2166136261u; /* FNV-1a */
        for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 16777619u;
        size_t s = h & (cap - 1);
        while (slot[s] && strcmp(kv_key(v.kv[slot[s] - 1]), key) != 0) s = (s + 1) & (cap - 1);
        if (slot[s]) {
            v.kv[slot[s] - 1] = kvs[i];
        } else {
            v.kv[v.n++] = kvs[i];
            slot[s] = v.n;
        }
    }
    return v;
}

static bool any_is_set(const pb_any *v)
{
    return v && v->value_case != ANY_NOT_SET;
}

/* dict.get(key): the value, or NULL when absent or unset (Python's None). */
static const pb_any *attr_get(attr_view v, const char *key)
{
    for (size_t i = 0; i < v.n; i++)
        if (strcmp(kv_key(v.kv[i]), key) == 0)
            return any_is_set(v.kv[i]->value) ? v.kv[i]->value : NULL;
    return NULL;
}

/* Kind of a scalar for the "all elements of one type" rule of §2.9; ints and doubles mix. */
enum { K_BAD, K_STR, K_BOOL, K_NUM };

static int scalar_kind(const pb_any *v)
{
    if (!v) return K_BAD;
    switch (v->value_case) {
    case ANY_STRING:
    case ANY_BYTES:
        return K_STR; /* bytes become a hex string */
    case ANY_BOOL:
        return K_BOOL;
    case ANY_INT:
    case ANY_DOUBLE:
        return K_NUM;
    default:
        return K_BAD;
    }
}

static bool attr_value_valid(const pb_any *v)
{
    if (!v) return false;
    if (v->value_case != ANY_ARRAY) return scalar_kind(v) != K_BAD;
    const pb_array *arr = v->array_value;
    int kind = 0;
    for (size_t i = 0; arr && i < arr->n_values; i++) {
        int k = scalar_kind(arr->values[i]);
        if (k == K_BAD || (kind && k != kind)) return false;
        kind = k;
    }
    return true;
}

/* Returns the first key whose value is not a valid Span attribute, or NULL. */
static const char *attr_view_invalid(attr_view v)
{
    for (size_t i = 0; i < v.n; i++)
        if (!attr_value_valid(v.kv[i]->value)) return kv_key(v.kv[i]);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * JSON writing of converted values.
 */

static void put_hex(agl_buf *b, const uint8_t *p, size_t len)
{
    agl_buf_reserve(b, 2 * len);
    for (size_t i = 0; i < len; i++) {
        b->data[b->len++] = hexdig[p[i] >> 4];
        b->data[b->len++] = hexdig[p[i] & 15];
    }
    b->data[b->len] = 0;
}

/* Lowercase hex of an id, left-padded with '0' to width (longer ids are kept whole). */
static char *hex_id(agl_arena *a, const ProtobufCBinaryData *d, size_t width)
{
    size_t hl = 2 * d->len, pad = hl < width ? width - hl : 0;
    char *s = agl_arena_alloc(a, pad + hl + 1), *q = s;
    memset(q, '0', pad);
    q += pad;
    for (size_t i = 0; i < d->len; i++) {
        *q++ = hexdig[d->data[i] >> 4];
        *q++ = hexdig[d->data[i] & 15];
    }
    *q = 0;
    return s;
}

static void write_attrs(agl_arena *a, agl_buf *b, attr_view v);

/* §6.3 convert(AnyValue). Only valid attribute values reach here from the span paths, but
 * every case is written so the function is total. */
static void write_any(agl_arena *a, agl_buf *b, const pb_any *v)
{
    switch (v ? v->value_case : ANY_NOT_SET) {
    case ANY_STRING:
        agl_buf_json_str(b, v->string_value);
        break;
    case ANY_BOOL:
        agl_buf_puts(b, v->bool_value ? "true" : "false");
        break;
    case ANY_INT:
        agl_buf_json_int(b, v->int_value);
        break;
    case ANY_DOUBLE:
        agl_buf_json_double(b, v->double_value);
        break;
    case ANY_BYTES:
        agl_buf_putc(b, '"');
        put_hex(b, v->bytes_value.data, v->bytes_value.len);
        agl_buf_putc(b, '"');
        break;
    case ANY_ARRAY:
        agl_buf_putc(b, '[');
        for (size_t i = 0; v->array_value && i < v->array_value->n_values; i++) {
            if (i) agl_buf_putc(b, ',');
            write_any(a, b, v->array_value->values[i]);
        }
        agl_buf_putc(b, ']');
        break;
    case ANY_KVLIST:
        if (v->kvlist_value)
            write_attrs(a, b, attr_view_of(a, v->kvlist_value->values, v->kvlist_value->n_values));
        else
            agl_buf_puts(b, "{}");
        break;
    default:
        agl_buf_puts(b, "null");
    }
}

static void write_attrs(agl_arena *a, agl_buf *b, attr_view v)
{
    agl_buf_putc(b, '{');
    for (size_t i = 0; i < v.n; i++) {
        if (i) agl_buf_putc(b, ',');
        agl_buf_json_str(b, kv_key(v.kv[i]));
        agl_buf_putc(b, ':');
        write_any(a, b, v.kv[i]->value);
    }
    agl_buf_putc(b, '}');
}

/* Python's int / int for v > 1e12 ns: the double nearest to v / 1e9 (ties to even).
 * (double)v / 1e9 rounds twice once v > 2^53, so its neighbours are checked exactly. */
static double ns_to_seconds(uint64_t v)
{
    double d = (double)v / 1e9, best = d;
    unsigned __int128 best_err = 0, target = (unsigned __int128)v << 43;
    bool have = false;
    double c = nextafter(nextafter(d, 0), 0);
    for (int i = 0; i < 5; i++, c = nextafter(c, INFINITY)) {
        /* c in [1e3, 2^35): c = m * 2^e with e in [-43, -18], so c * 2^43 is an integer. */
        int ex;
        double f = frexp(c, &ex);
        uint64_t m = (uint64_t)ldexp(f, 53);
        int shift = ex - 53 + 43;
        if (shift < 0 || shift > 40) continue;
        unsigned __int128 scaled = ((unsigned __int128)m << shift) * 1000000000u;
        unsigned __int128 err = scaled > target ? scaled - target : target - scaled;
        if (!have || err < best_err || (err == best_err && (m & 1) == 0)) {
            best = c;
            best_err = err;
            have = true;
        }
    }
    return best;
}

/* §6.3 ts(): null for 0, seconds for nanosecond values, small values taken as seconds. */
static bool otlp_ts(uint64_t v, double *out)
{
    if (v == 0) return false;
    *out = v > 1000000000000ull ? ns_to_seconds(v) : (double)v;
    return true;
}

static void write_ts(agl_buf *b, uint64_t v)
{
    double s;
    if (otlp_ts(v, &s))
        agl_buf_json_double(b, s);
    else
        agl_buf_puts(b, "null");
}

static void write_context(agl_buf *b, const char *trace_id, const char *span_id)
{
    agl_buf_printf(b,
                   "{\"trace_id\":\"%s\",\"span_id\":\"%s\",\"is_remote\":false,"
                   "\"trace_state\":{}}",
                   trace_id, span_id);
}

/* ------------------------------------------------------------------------------------------
 * Python str() of attribute values, for rollout/attempt ids that are not strings, and the
 * int(str(value)) rule of span_sequence_id.
 */

static void py_float_repr(agl_buf *b, double v)
{
    if (isnan(v)) {
        agl_buf_puts(b, "nan");
        return;
    }
    if (isinf(v)) {
        agl_buf_puts(b, v < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[40];
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* tmp = [-]D[.DDD]e[+-]XX → digits and decimal exponent, then repr's layout: plain
     * notation for 1e-4 <= |v| < 1e16, scientific otherwise. */
    const char *p = tmp;
    if (*p == '-') agl_buf_putc(b, *p++);
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    int exp = atoi(p + 1);
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            agl_buf_puts(b, "0.");
            for (int i = -1; i > exp; i--) agl_buf_putc(b, '0');
            agl_buf_put(b, digits, nd);
        } else {
            size_t ip = (size_t)exp + 1;
            for (size_t i = 0; i < ip; i++) agl_buf_putc(b, i < nd ? digits[i] : '0');
            agl_buf_putc(b, '.');
            if (nd > ip)
                agl_buf_put(b, digits + ip, nd - ip);
            else
                agl_buf_putc(b, '0');
        }
    } else {
        agl_buf_putc(b, digits[0]);
        if (nd > 1) {
            agl_buf_putc(b, '.');
            agl_buf_put(b, digits + 1, nd - 1);
        }
        agl_buf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    }
}

static void py_str_repr(agl_buf *b, const char *s)
{
    char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    agl_buf_putc(b, q);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\' || *p == (unsigned char)q) {
            agl_buf_putc(b, '\\');
            agl_buf_putc(b, (char)*p);
        } else if (*p == '\n') {
            agl_buf_puts(b, "\\n");
        } else if (*p == '\r') {
            agl_buf_puts(b, "\\r");
        } else if (*p == '\t') {
            agl_buf_puts(b, "\\t");
        } else if (*p < 0x20 || *p == 0x7f) {
            agl_buf_printf(b, "\\x%02x", *p);
        } else {
            agl_buf_putc(b, (char)*p);
        }
    }
    agl_buf_putc(b, q);
}

static void py_str(agl_arena *a, agl_buf *b, const pb_any *v, bool repr);

static void py_repr(agl_arena *a, agl_buf *b, const pb_any *v)
{
    py_str(a, b, v, true);
}

/* str(value) (repr when nested in a container) of the Python value convert() produces. */
static void py_str(agl_arena *a, agl_buf *b, const pb_any *v, bool repr)
{
    switch (v ? v->value_case : ANY_NOT_SET) {
    case ANY_STRING:
        if (repr)
            py_str_repr(b, v->string_value);
        else
            agl_buf_puts(b, v->string_value);
        break;
    case ANY_BYTES:
        if (repr) agl_buf_putc(b, '\'');
        put_hex(b, v->bytes_value.data, v->bytes_value.len);
        if (repr) agl_buf_putc(b, '\'');
        break;
    case ANY_BOOL:
        agl_buf_puts(b, v->bool_value ? "True" : "False");
        break;
    case ANY_INT:
        agl_buf_printf(b, "%lld", (long long)v->int_value);
        break;
    case ANY_DOUBLE:
        py_float_repr(b, v->double_value);
        break;
    case ANY_ARRAY:
        agl_buf_putc(b, '[');
        for (size_t i = 0; v->array_value && i < v->array_value->n_values; i++) {
            if (i) agl_buf_puts(b, ", ");
            py_repr(a, b, v->array_value->values[i]);
        }
        agl_buf_putc(b, ']');
        break;
    case ANY_KVLIST: {
        attr_view kv = {NULL, 0};
        if (v->kvlist_value)
            kv = attr_view_of(a, v->kvlist_value->values, v->kvlist_value->n_values);
        agl_buf_putc(b, '{');
        for (size_t i = 0; i < kv.n; i++) {
            if (i) agl_buf_puts(b, ", ");
            py_str_repr(b, kv_key(kv.kv[i]));
            agl_buf_puts(b, ": ");
            py_repr(a, b, kv.kv[i]->value);
        }
        agl_buf_putc(b, '}');
        break;
    }
    default:
        agl_buf_puts(b, "None");
    }
}

static const char *id_string(agl_arena *a, const pb_any *v)
{
    if (v->value_case == ANY_STRING) return v->string_value;
    agl_buf b;
    agl_buf_init(&b);
    py_str(a, &b, v, false);
    char *s = agl_arena_strndup(a, b.data ? b.data : "", b.len);
    agl_buf_free(&b);
    return s;
}

static bool py_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* Python int(text) restricted to int64: optional surrounding whitespace, optional sign,
 * decimal digits with single underscores between them. */
static bool py_int_parse(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    while (n && py_space((unsigned char)s[n - 1])) n--;
    while (i < n && py_space((unsigned char)s[i])) i++;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i >= n) return false;
    uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    bool prev_digit = false;
    for (; i < n; i++) {
        char c = s[i];
        if (c == '_') {
            if (!prev_digit || i + 1 >= n || s[i + 1] < '0' || s[i + 1] > '9') return false;
            prev_digit = false;
            continue;
        }
        if (c < '0' || c > '9') return false;
        unsigned dgt = (unsigned)(c - '0');
        if (acc > (lim - dgt) / 10) return false; /* beyond int64: treated as unusable */
        acc = acc * 10 + dgt;
        prev_digit = true;
    }
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return true;
}

/* §6.3: int(str(value)); non-integers, negatives and (here) values beyond int64 are
 * "missing", so the store allocates an id. */
static bool sequence_id_of(agl_arena *a, const pb_any *v, int64_t *out)
{
    if (!v) return false;
    int64_t s;
    switch (v->value_case) {
    case ANY_INT:
        s = v->int_value;
        break;
    case ANY_STRING:
        if (!py_int_parse(v->string_value, strlen(v->string_value), &s)) return false;
        break;
    case ANY_BYTES: {
        /* the hex text of the bytes, e.g. b"\x05" → "05" → 5 */
        const char *h = id_string(a, v);
        if (!py_int_parse(h, strlen(h), &s)) return false;
        break;
    }
    default:
        return false; /* str() of bools, floats, lists never parses as an int */
    }
    if (s < 0) return false;
    *out = s;
    return true;
}

/* ------------------------------------------------------------------------------------------
 * The converter shared by both encodings.
 */

typedef struct conv {
    agl_arena *a;
    agl_error *err;
    agl_buf out;          /* rest_json of every span, each followed by a NUL */
    agl_buf res;          /* the "resource" object of the current ResourceSpans */
    agl_otlp_span *spans; /* capacity = number of spans in the request */
    size_t *offs;         /* offset of each span's rest_json in out */
    size_t n, skipped;
} conv;

static agl_code invalid_attr(conv *c, const char *where, const char *key)
{
    return agl_error_set(c->err, AGL_E_INVALID, where,
                         "attribute '%s' of the %s is not a valid span attribute value "
                         "(objects, null and mixed-type or nested arrays are rejected; the "
                         "reference store fails such requests with 500)",
                         key, where);
}

static agl_code convert_span(conv *c, const pb_span *sp, attr_view rattrs)
{
    agl_arena *a = c->a;
    attr_view sattrs = attr_view_of(a, sp->attributes, sp->n_attributes);

    /* Each routing key independently: the span's value wins, else the resource's. */
    const pb_any *rid = attr_get(sattrs, AGL_OTLP_ROLLOUT_ID_KEY);
    const pb_any *aid = attr_get(sattrs, AGL_OTLP_ATTEMPT_ID_KEY);
    const pb_any *sid = attr_get(sattrs, AGL_OTLP_SEQUENCE_ID_KEY);
    if (!rid) rid = attr_get(rattrs, AGL_OTLP_ROLLOUT_ID_KEY);
    if (!aid) aid = attr_get(rattrs, AGL_OTLP_ATTEMPT_ID_KEY);
    if (!sid) sid = attr_get(rattrs, AGL_OTLP_SEQUENCE_ID_KEY);
    if (!rid || !aid) {
        c->skipped++; /* the reference logs a warning and drops the span */
        return AGL_OK;
    }

    /* The reference validates only spans it keeps (pydantic, on Span construction). */
    const char *bad = attr_view_invalid(sattrs);
    if (bad) return invalid_attr(c, "span", bad);
    attr_view *eattrs = agl_arena_alloc(a, (sp->n_events + 1) * sizeof *eattrs);
    for (size_t i = 0; i < sp->n_events; i++) {
        eattrs[i] = attr_view_of(a, sp->events[i]->attributes, sp->events[i]->n_attributes);
        if ((bad = attr_view_invalid(eattrs[i]))) return invalid_attr(c, "span event", bad);
    }
    attr_view *lattrs = agl_arena_alloc(a, (sp->n_links + 1) * sizeof *lattrs);
    for (size_t i = 0; i < sp->n_links; i++) {
        lattrs[i] = attr_view_of(a, sp->links[i]->attributes, sp->links[i]->n_attributes);
        if ((bad = attr_view_invalid(lattrs[i]))) return invalid_attr(c, "span link", bad);
    }

    agl_otlp_span *o = &c->spans[c->n];
    memset(o, 0, sizeof *o);
    o->rollout_id = id_string(a, rid);
    o->attempt_id = id_string(a, aid);
    o->has_sequence_id = sequence_id_of(a, sid, &o->sequence_id);
    o->trace_id = hex_id(a, &sp->trace_id, 32);
    o->span_id = hex_id(a, &sp->span_id, 16);
    o->parent_id = sp->parent_span_id.len ? hex_id(a, &sp->parent_span_id, 16) : NULL;
    o->name = sp->name ? sp->name : "";
    o->has_start_time = otlp_ts(sp->start_time_unix_nano, &o->start_time);
    o->has_end_time = otlp_ts(sp->end_time_unix_nano, &o->end_time);

    agl_buf *b = &c->out;
    c->offs[c->n] = b->len;
    agl_buf_printf(b, "\"trace_id\":\"%s\",\"span_id\":\"%s\",\"parent_id\":", o->trace_id,
                   o->span_id);
    if (o->parent_id)
        agl_buf_printf(b, "\"%s\"", o->parent_id);
    else
        agl_buf_puts(b, "null");
    agl_buf_puts(b, ",\"name\":");
    agl_buf_json_str(b, o->name);

    const pb_status *st = sp->status;
    int code = st ? (int)st->code : 0;
    const char *msg = st && st->message && *st->message ? st->message : NULL;
    agl_buf_printf(b, ",\"status\":{\"status_code\":\"%s\",\"description\":",
                   code == 1   ? "OK"
                   : code == 2 ? "ERROR"
                               : "UNSET");
    agl_buf_json_str(b, msg);

    agl_buf_puts(b, "},\"attributes\":");
    write_attrs(a, b, sattrs);

    agl_buf_puts(b, ",\"events\":[");
    for (size_t i = 0; i < sp->n_events; i++) {
        const pb_event *ev = sp->events[i];
        agl_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        agl_buf_json_str(b, ev->name ? ev->name : "");
        agl_buf_puts(b, ",\"attributes\":");
        write_attrs(a, b, eattrs[i]);
        agl_buf_puts(b, ",\"timestamp\":");
        write_ts(b, ev->time_unix_nano);
        agl_buf_putc(b, '}');
    }

    agl_buf_puts(b, "],\"links\":[");
    for (size_t i = 0; i < sp->n_links; i++) {
        const pb_link *ln = sp->links[i];
        agl_buf_puts(b, i ? ",{\"context\":" : "{\"context\":");
        write_context(b, hex_id(a, &ln->trace_id, 32), hex_id(a, &ln->span_id, 16));
        agl_buf_puts(b, ",\"attributes\":");
        if (lattrs[i].n) /* `attrs or None`: an empty dict becomes null */
            write_attrs(a, b, lattrs[i]);
        else
            agl_buf_puts(b, "null");
        agl_buf_putc(b, '}');
    }

    agl_buf_puts(b, "],\"start_time\":");
    write_ts(b, sp->start_time_unix_nano);
    agl_buf_puts(b, ",\"end_time\":");
    write_ts(b, sp->end_time_unix_nano);
    agl_buf_puts(b, ",\"context\":");
    write_context(b, o->trace_id, o->span_id);
    agl_buf_puts(b, ",\"parent\":null,\"resource\":");
    agl_buf_put(b, c->res.data, c->res.len);
    agl_buf_put(b, "", 1); /* NUL terminator of this span's rest_json */
    o->rest_len = b->len - 1 - c->offs[c->n];
    c->n++;
    return AGL_OK;
}

static agl_code convert_request(const pb_request *req, agl_arena *a, agl_otlp_span **spans,
                                size_t *n, size_t *skipped, agl_error *err)
{
    conv c = {.a = a, .err = err};
    size_t total = 0;
    for (size_t i = 0; i < req->n_resource_spans; i++)
        for (size_t j = 0; j < req->resource_spans[i]->n_scope_spans; j++)
            total += req->resource_spans[i]->scope_spans[j]->n_spans;
    c.spans = agl_arena_alloc(a, (total + 1) * sizeof *c.spans);
    c.offs = agl_arena_alloc(a, (total + 1) * sizeof *c.offs);
    agl_buf_init(&c.out);
    agl_buf_init(&c.res);

    agl_code rc = AGL_OK;
    for (size_t i = 0; i < req->n_resource_spans && rc == AGL_OK; i++) {
        const pb_rspans *rs = req->resource_spans[i];
        attr_view rattrs = {NULL, 0};
        if (rs->resource)
            rattrs = attr_view_of(a, rs->resource->attributes, rs->resource->n_attributes);
        /* The reference builds the OtelResource before looking at any span, so a bad
         * resource attribute fails the request even when every span would be skipped. */
        const char *bad = attr_view_invalid(rattrs);
        if (bad) {
            rc = invalid_attr(&c, "resource", bad);
            break;
        }
        agl_buf_reset(&c.res);
        agl_buf_puts(&c.res, "{\"attributes\":");
        write_attrs(a, &c.res, rattrs);
        agl_buf_puts(&c.res, ",\"schema_url\":");
        agl_buf_json_str(&c.res, rs->schema_url ? rs->schema_url : "");
        agl_buf_putc(&c.res, '}');
        for (size_t j = 0; j < rs->n_scope_spans && rc == AGL_OK; j++) {
            const pb_sspans *ss = rs->scope_spans[j];
            for (size_t k = 0; k < ss->n_spans && rc == AGL_OK; k++)
                rc = convert_span(&c, ss->spans[k], rattrs);
        }
    }

    if (rc == AGL_OK) {
        char *text = agl_arena_alloc(a, c.out.len + 1);
        if (c.out.len) memcpy(text, c.out.data, c.out.len);
        text[c.out.len] = 0;
        for (size_t i = 0; i < c.n; i++) c.spans[i].rest_json = text + c.offs[i];
        *spans = c.spans;
        *n = c.n;
        *skipped = c.skipped;
    }
    agl_buf_free(&c.out);
    agl_buf_free(&c.res);
    return rc;
}

static void empty_result(agl_otlp_span **spans, size_t *n, size_t *skipped)
{
    *spans = NULL;
    *n = 0;
    *skipped = 0;
}

/* ------------------------------------------------------------------------------------------
 * Binary protobuf.
 */

/* protobuf-c neither checks UTF-8 in string fields nor bounds the nesting of messages
 * (its unpacker recurses, so a deeply nested payload would overflow the stack). upb, the
 * reference's parser, rejects both; this pre-pass over the wire bytes does the same. */
enum { PB_OK, PB_CORRUPT, PB_UTF8, PB_DEPTH };

static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t byte = *(*p)++;
        r |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII 8 bytes at a time: attribute values are mostly ASCII. */
        while (n - i >= 8) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            if (x & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

static int pb_prescan(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth)
{
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t tag, v;
        if (!pb_varint(&p, end, &tag)) return PB_CORRUPT;
        switch (tag & 7) {
        case 0:
            if (!pb_varint(&p, end, &v)) return PB_CORRUPT;
            break;
        case 1:
            if (end - p < 8) return PB_CORRUPT;
            p += 8;
            break;
        case 5:
            if (end - p < 4) return PB_CORRUPT;
            p += 4;
            break;
        case 2: {
            if (!pb_varint(&p, end, &v) || v > (uint64_t)(end - p)) return PB_CORRUPT;
            uint64_t id = tag >> 3;
            const ProtobufCFieldDescriptor *f =
                d && id <= 0x1fffffff ? protobuf_c_message_descriptor_get_field(d, (unsigned)id)
                                      : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (depth + 1 > AGL_OTLP_MAX_DEPTH) return PB_DEPTH;
                int rc = pb_prescan(f->descriptor, p, (size_t)v, depth + 1);
                if (rc != PB_OK) return rc;
            } else if (f && f->type == PROTOBUF_C_TYPE_STRING && !utf8_valid(p, (size_t)v)) {
                return PB_UTF8;
            }
            p += v;
            break;
        }
        default:
            return PB_CORRUPT; /* groups: unknown to OTLP and to protobuf-c */
        }
    }
    return PB_OK;
}

static void *arena_pb_alloc(void *data, size_t size)
{
    return agl_arena_alloc(data, size ? size : 1);
}

static void arena_pb_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr; /* released with the arena */
}

agl_code agl_otlp_decode_protobuf(const uint8_t *buf, size_t len, agl_arena *a,
                                  agl_otlp_span **spans, size_t *n, size_t *skipped, agl_error *err)
{
    empty_result(spans, n, skipped);
    if (len == 0) return AGL_OK; /* an empty body is a valid empty request */
    static const char *const why[] = {
        [PB_CORRUPT] = "Wire format was corrupt",
        [PB_UTF8] = "String field had bad UTF-8",
        [PB_DEPTH] = "Exceeded maximum nesting depth",
    };
    int rc = pb_prescan(
        &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor, buf,
        len, 0);
    ProtobufCAllocator alloc = {arena_pb_alloc, arena_pb_free, a};
    pb_request *req = NULL;
    if (rc == PB_OK) {
        req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            &alloc, len, buf);
        if (!req) rc = PB_CORRUPT;
    }
    if (rc != PB_OK)
        return agl_error_set(err, AGL_E_BAD_REQUEST, "body",
                             PARSE_PREFIX "Error parsing message with type '" REQUEST_TYPE "': %s",
                             why[rc]);
    return convert_request(req, a, spans, n, skipped, err);
}

/* ------------------------------------------------------------------------------------------
 * OTLP/JSON → the same protobuf-c structs.
 */

typedef struct jctx {
    agl_arena *a;
    agl_error *err;
} jctx;

static bool jfail(jctx *j, const char *field, const char *what)
{
    agl_error_set(j->err, AGL_E_BAD_REQUEST, "body", PARSE_PREFIX "field '%s' %s", field, what);
    return false;
}

/* Field lookup by the JSON name, then the proto name; JSON null counts as absent. */
static json_t *jget(json_t *obj, const char *camel, const char *snake)
{
    json_t *v = json_object_get(obj, camel);
    if (!v && snake) v = json_object_get(obj, snake);
    return json_is_null(v) ? NULL : v;
}

static bool jstr(jctx *j, json_t *obj, const char *camel, const char *snake, char **out)
{
    json_t *v = jget(obj, camel, snake);
    if (!v) return true;
    if (!json_is_string(v)) return jfail(j, camel, "must be a string");
    *out = agl_arena_strndup(j->a, json_string_value(v), json_string_length(v));
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* trace/span ids: hex text (OTLP/JSON deviates from proto3 JSON's base64 here). */
static bool jhex(jctx *j, json_t *obj, const char *camel, const char *snake,
                 ProtobufCBinaryData *out)
{
    json_t *v = jget(obj, camel, snake);
    if (!v) return true;
    if (!json_is_string(v)) return jfail(j, camel, "must be a hex string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n % 2) return jfail(j, camel, "must be a hex string of even length");
    uint8_t *d = agl_arena_alloc(j->a, n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return jfail(j, camel, "must be a hex string");
        d[i] = (uint8_t)(hi << 4 | lo);
    }
    out->data = d;
    out->len = n / 2;
    return true;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* bytesValue: base64, standard or URL-safe alphabet, padding optional (as protobuf's JSON
 * parser accepts). */
static bool jb64(jctx *j, json_t *v, const char *field, ProtobufCBinaryData *out)
{
    if (!json_is_string(v)) return jfail(j, field, "must be a base64 string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    while (n && s[n - 1] == '=') n--;
    if (n % 4 == 1) return jfail(j, field, "must be a base64 string");
    uint8_t *d = agl_arena_alloc(j->a, n * 3 / 4 + 1);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int x = b64val(s[i]);
        if (x < 0) return jfail(j, field, "must be a base64 string");
        acc = acc << 6 | (uint32_t)x;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            d[o++] = (uint8_t)(acc >> bits);
        }
    }
    out->data = d;
    out->len = o;
    return true;
}

/* int64 / fixed64 values: JSON numbers or decimal strings. */
static bool jint(jctx *j, json_t *v, const char *field, bool is_unsigned, int64_t *s64,
                 uint64_t *u64)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (is_unsigned && x < 0) return jfail(j, field, "must not be negative");
        if (s64) *s64 = (int64_t)x;
        if (u64) *u64 = (uint64_t)x;
        return true;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x != floor(x) || x < (is_unsigned ? 0 : -9223372036854775808.0) ||
            x >= (is_unsigned ? 18446744073709551616.0 : 9223372036854775808.0))
            return jfail(j, field, "must be an integer");
        if (s64) *s64 = (int64_t)x;
        if (u64) *u64 = (uint64_t)x;
        return true;
    }
    if (!json_is_string(v)) return jfail(j, field, "must be an integer or a decimal string");
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    if (is_unsigned) {
        if (*s == '-' || *s == '+' || *s == ' ' || !*s)
            return jfail(j, field, "must be an integer");
        unsigned long long x = strtoull(s, &end, 10);
        if (errno || *end) return jfail(j, field, "must be an integer");
        *u64 = x;
    } else {
        if (*s == ' ' || *s == '+' || !*s) return jfail(j, field, "must be an integer");
        long long x = strtoll(s, &end, 10);
        if (errno || *end) return jfail(j, field, "must be an integer");
        *s64 = x;
    }
    return true;
}

static bool ju64(jctx *j, json_t *obj, const char *camel, const char *snake, uint64_t *out)
{
    json_t *v = jget(obj, camel, snake);
    return !v || jint(j, v, camel, true, NULL, out);
}

static bool jdouble(jctx *j, json_t *v, const char *field, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (!json_is_string(v)) return jfail(j, field, "must be a number");
    const char *s = json_string_value(v);
    if (!strcmp(s, "NaN")) {
        *out = NAN;
    } else if (!strcmp(s, "Infinity")) {
        *out = INFINITY;
    } else if (!strcmp(s, "-Infinity")) {
        *out = -INFINITY;
    } else {
        char *end;
        *out = strtod(s, &end);
        if (!*s || *end || isspace((unsigned char)*s)) return jfail(j, field, "must be a number");
    }
    return true;
}

static bool jobject(jctx *j, json_t *v, const char *field)
{
    return json_is_object(v) || jfail(j, field, "must be an object");
}

static bool jarray(jctx *j, json_t *v, const char *field)
{
    return json_is_array(v) || jfail(j, field, "must be an array");
}

static void *jalloc_ptrs(jctx *j, size_t n, size_t *count)
{
    *count = n;
    return agl_arena_alloc(j->a, (n + 1) * sizeof(void *));
}

static bool jkvs(jctx *j, json_t *obj, const char *camel, pb_kv ***out, size_t *n);

static bool jany(jctx *j, json_t *v, pb_any *out)
{
    opentelemetry__proto__common__v1__any_value__init(out);
    if (!jobject(j, v, "value")) return false;
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x)
    {
        if (json_is_null(x)) continue;
        int which = !strcmp(key, "stringValue") || !strcmp(key, "string_value")   ? ANY_STRING
                    : !strcmp(key, "boolValue") || !strcmp(key, "bool_value")     ? ANY_BOOL
                    : !strcmp(key, "intValue") || !strcmp(key, "int_value")       ? ANY_INT
                    : !strcmp(key, "doubleValue") || !strcmp(key, "double_value") ? ANY_DOUBLE
                    : !strcmp(key, "arrayValue") || !strcmp(key, "array_value")   ? ANY_ARRAY
                    : !strcmp(key, "kvlistValue") || !strcmp(key, "kvlist_value") ? ANY_KVLIST
                    : !strcmp(key, "bytesValue") || !strcmp(key, "bytes_value")   ? ANY_BYTES
                                                                                  : 0;
        if (!which) continue; /* unknown keys are ignored (OTLP/JSON receivers must) */
        if (out->value_case != ANY_NOT_SET)
            return jfail(j, key, "is a second value in one AnyValue");
        out->value_case = which;
        switch (which) {
        case ANY_STRING:
            if (!json_is_string(x)) return jfail(j, key, "must be a string");
            out->string_value =
                agl_arena_strndup(j->a, json_string_value(x), json_string_length(x));
            break;
        case ANY_BOOL:
            if (!json_is_boolean(x)) return jfail(j, key, "must be a boolean");
            out->bool_value = json_is_true(x);
            break;
        case ANY_INT:
            if (!jint(j, x, key, false, &out->int_value, NULL)) return false;
            break;
        case ANY_DOUBLE:
            if (!jdouble(j, x, key, &out->double_value)) return false;
            break;
        case ANY_BYTES:
            if (!jb64(j, x, key, &out->bytes_value)) return false;
            break;
        case ANY_ARRAY: {
            if (!jobject(j, x, key)) return false;
            pb_array *arr = agl_arena_alloc(j->a, sizeof *arr);
            opentelemetry__proto__common__v1__array_value__init(arr);
            json_t *vals = jget(x, "values", NULL);
            if (vals) {
                if (!jarray(j, vals, "values")) return false;
                arr->values = jalloc_ptrs(j, json_array_size(vals), &arr->n_values);
                for (size_t i = 0; i < arr->n_values; i++) {
                    arr->values[i] = agl_arena_alloc(j->a, sizeof *arr->values[i]);
                    if (!jany(j, json_array_get(vals, i), arr->values[i])) return false;
                }
            }
            out->array_value = arr;
            break;
        }
        case ANY_KVLIST: {
            if (!jobject(j, x, key)) return false;
            pb_kvlist *kl = agl_arena_alloc(j->a, sizeof *kl);
            opentelemetry__proto__common__v1__key_value_list__init(kl);
            if (!jkvs(j, x, "values", &kl->values, &kl->n_values)) return false;
            out->kvlist_value = kl;
            break;
        }
        }
    }
    return true;
}

static bool jkvs(jctx *j, json_t *obj, const char *camel, pb_kv ***out, size_t *n)
{
    json_t *arr = jget(obj, camel, NULL);
    if (!arr) return true;
    if (!jarray(j, arr, camel)) return false;
    pb_kv **kvs = jalloc_ptrs(j, json_array_size(arr), n);
    for (size_t i = 0; i < *n; i++) {
        json_t *e = json_array_get(arr, i);
        if (!jobject(j, e, camel)) return false;
        pb_kv *kv = kvs[i] = agl_arena_alloc(j->a, sizeof *kv);
        opentelemetry__proto__common__v1__key_value__init(kv);
        if (!jstr(j, e, "key", NULL, &kv->key)) return false;
        json_t *val = jget(e, "value", NULL);
        if (val) {
            kv->value = agl_arena_alloc(j->a, sizeof *kv->value);
            if (!jany(j, val, kv->value)) return false;
        }
    }
    *out = kvs;
    return true;
}

static const char *const status_code_names[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                                "STATUS_CODE_ERROR"};

static bool jstatus(jctx *j, json_t *v, pb_status **out)
{
    if (!jobject(j, v, "status")) return false;
    pb_status *st = agl_arena_alloc(j->a, sizeof *st);
    opentelemetry__proto__trace__v1__status__init(st);
    if (!jstr(j, v, "message", NULL, &st->message)) return false;
    json_t *code = jget(v, "code", NULL);
    if (json_is_integer(code)) {
        st->code = (int)json_integer_value(code);
    } else if (json_is_string(code)) {
        size_t k = 0;
        while (k < 3 && strcmp(json_string_value(code), status_code_names[k])) k++;
        if (k == 3) return jfail(j, "code", "is not a StatusCode");
        st->code = (int)k;
    } else if (code) {
        return jfail(j, "code", "must be an integer or a StatusCode name");
    }
    *out = st;
    return true;
}

static bool jspan(jctx *j, json_t *v, pb_span *sp)
{
    opentelemetry__proto__trace__v1__span__init(sp);
    if (!jobject(j, v, "spans")) return false;
    if (!jhex(j, v, "traceId", "trace_id", &sp->trace_id) ||
        !jhex(j, v, "spanId", "span_id", &sp->span_id) ||
        !jhex(j, v, "parentSpanId", "parent_span_id", &sp->parent_span_id) ||
        !jstr(j, v, "name", NULL, &sp->name) ||
        !ju64(j, v, "startTimeUnixNano", "start_time_unix_nano", &sp->start_time_unix_nano) ||
        !ju64(j, v, "endTimeUnixNano", "end_time_unix_nano", &sp->end_time_unix_nano) ||
        !jkvs(j, v, "attributes", &sp->attributes, &sp->n_attributes))
        return false;

    json_t *evs = jget(v, "events", NULL);
    if (evs) {
        if (!jarray(j, evs, "events")) return false;
        sp->events = jalloc_ptrs(j, json_array_size(evs), &sp->n_events);
        for (size_t i = 0; i < sp->n_events; i++) {
            json_t *e = json_array_get(evs, i);
            pb_event *ev = sp->events[i] = agl_arena_alloc(j->a, sizeof *ev);
            opentelemetry__proto__trace__v1__span__event__init(ev);
            if (!jobject(j, e, "events") ||
                !ju64(j, e, "timeUnixNano", "time_unix_nano", &ev->time_unix_nano) ||
                !jstr(j, e, "name", NULL, &ev->name) ||
                !jkvs(j, e, "attributes", &ev->attributes, &ev->n_attributes))
                return false;
        }
    }
    json_t *lns = jget(v, "links", NULL);
    if (lns) {
        if (!jarray(j, lns, "links")) return false;
        sp->links = jalloc_ptrs(j, json_array_size(lns), &sp->n_links);
        for (size_t i = 0; i < sp->n_links; i++) {
            json_t *e = json_array_get(lns, i);
            pb_link *ln = sp->links[i] = agl_arena_alloc(j->a, sizeof *ln);
            opentelemetry__proto__trace__v1__span__link__init(ln);
            if (!jobject(j, e, "links") || !jhex(j, e, "traceId", "trace_id", &ln->trace_id) ||
                !jhex(j, e, "spanId", "span_id", &ln->span_id) ||
                !jkvs(j, e, "attributes", &ln->attributes, &ln->n_attributes))
                return false;
        }
    }
    json_t *st = jget(v, "status", NULL);
    return !st || jstatus(j, st, &sp->status);
}

static bool jresource_spans(jctx *j, json_t *v, pb_rspans *rs)
{
    opentelemetry__proto__trace__v1__resource_spans__init(rs);
    if (!jobject(j, v, "resourceSpans") || !jstr(j, v, "schemaUrl", "schema_url", &rs->schema_url))
        return false;
    json_t *res = jget(v, "resource", NULL);
    if (res) {
        if (!jobject(j, res, "resource")) return false;
        rs->resource = agl_arena_alloc(j->a, sizeof *rs->resource);
        opentelemetry__proto__resource__v1__resource__init(rs->resource);
        if (!jkvs(j, res, "attributes", &rs->resource->attributes, &rs->resource->n_attributes))
            return false;
    }
    json_t *sss = jget(v, "scopeSpans", "scope_spans");
    if (!sss) return true;
    if (!jarray(j, sss, "scopeSpans")) return false;
    rs->scope_spans = jalloc_ptrs(j, json_array_size(sss), &rs->n_scope_spans);
    for (size_t i = 0; i < rs->n_scope_spans; i++) {
        json_t *e = json_array_get(sss, i);
        pb_sspans *ss = rs->scope_spans[i] = agl_arena_alloc(j->a, sizeof *ss);
        opentelemetry__proto__trace__v1__scope_spans__init(ss);
        if (!jobject(j, e, "scopeSpans")) return false;
        json_t *spans = jget(e, "spans", NULL);
        if (!spans) continue;
        if (!jarray(j, spans, "spans")) return false;
        ss->spans = jalloc_ptrs(j, json_array_size(spans), &ss->n_spans);
        for (size_t k = 0; k < ss->n_spans; k++) {
            ss->spans[k] = agl_arena_alloc(j->a, sizeof *ss->spans[k]);
            if (!jspan(j, json_array_get(spans, k), ss->spans[k])) return false;
        }
    }
    return true;
}

agl_code agl_otlp_decode_json(const char *text, size_t len, agl_arena *a, agl_otlp_span **spans,
                              size_t *n, size_t *skipped, agl_error *err)
{
    empty_result(spans, n, skipped);
    if (len == 0) return AGL_OK;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root)
        return agl_error_set(err, AGL_E_BAD_REQUEST, "body", PARSE_PREFIX "%s (line %d, column %d)",
                             jerr.text, jerr.line, jerr.column);
    jctx j = {a, err};
    pb_request *req = agl_arena_alloc(a, sizeof *req);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(req);
    bool ok = jobject(&j, root, "ExportTraceServiceRequest");
    json_t *rss = ok ? jget(root, "resourceSpans", "resource_spans") : NULL;
    if (rss) ok = jarray(&j, rss, "resourceSpans");
    if (ok && rss) {
        req->resource_spans = jalloc_ptrs(&j, json_array_size(rss), &req->n_resource_spans);
        for (size_t i = 0; ok && i < req->n_resource_spans; i++) {
            req->resource_spans[i] = agl_arena_alloc(a, sizeof *req->resource_spans[i]);
            ok = jresource_spans(&j, json_array_get(rss, i), req->resource_spans[i]);
        }
    }
    json_decref(root);
    if (!ok) return err ? err->code : AGL_E_BAD_REQUEST;
    return convert_request(req, a, spans, n, skipped, err);
}

/* ------------------------------------------------------------------------------------------
 * gzip and the Status body.
 */

agl_code agl_gunzip(const uint8_t *in, size_t len, size_t limit, agl_arena *a, uint8_t **out,
                    size_t *outlen, agl_error *err)
{
    *out = NULL;
    *outlen = 0;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) /* 16: gzip framing only */
        return agl_error_set(err, AGL_E_INTERNAL, "body", "cannot initialise zlib");
    /* Inflate into a heap buffer that grows up to limit + 1 bytes (the extra byte detects
     * overflow), then copy the result into the arena once. */
    if (limit > SIZE_MAX / 4) limit = SIZE_MAX / 4;
    size_t cap = len < 1024 ? 4096 : len < limit ? len * 4 : limit + 1, used = 0;
    if (cap > limit + 1) cap = limit + 1;
    uint8_t *tmp = agl_malloc(cap + 1);
    const size_t chunk = (size_t)1 << 30; /* zlib counts in uInt */
    agl_code rc = AGL_OK;
    zs.next_in = (Bytef *)in;
    while (len > 0) {
        size_t consumed = (size_t)(zs.next_in - in);
        if (zs.avail_in == 0) {
            if (consumed == len) {
                rc = agl_error_set(err, AGL_E_BAD_REQUEST, "body",
                                   "invalid gzip body: compressed data ended before the "
                                   "end-of-stream marker was reached");
                break;
            }
            zs.avail_in = (uInt)(len - consumed < chunk ? len - consumed : chunk);
        }
        if (used == cap) {
            cap = cap > limit / 2 ? limit + 1 : cap * 2;
            tmp = agl_realloc(tmp, cap + 1);
        }
        zs.next_out = tmp + used;
        zs.avail_out = (uInt)(cap - used < chunk ? cap - used : chunk);
        uInt room = zs.avail_out;
        int z = inflate(&zs, Z_NO_FLUSH);
        used += room - zs.avail_out;
        if (used > limit) {
            rc = agl_error_set(err, AGL_E_TOO_LARGE, "body",
                               "gzip body inflates to more than %zu bytes", limit);
            break;
        }
        if (z == Z_STREAM_END) {
            /* Another member may follow; anything else after a member is an error, as in
             * Python's gzip.decompress. */
            if (zs.avail_in == 0 && (size_t)(zs.next_in - in) == len) break;
            inflateReset(&zs);
        } else if (z != Z_OK && z != Z_BUF_ERROR) {
            rc = agl_error_set(err, AGL_E_BAD_REQUEST, "body", "invalid gzip body: %s",
                               zs.msg ? zs.msg : "corrupt data");
            break;
        }
    }
    inflateEnd(&zs);
    if (rc == AGL_OK) {
        uint8_t *o = agl_arena_alloc(a, used + 1);
        if (used) memcpy(o, tmp, used);
        o[used] = 0;
        *out = o;
        *outlen = used;
    }
    free(tmp);
    return rc;
}

size_t agl_otlp_status_body(const char *message, agl_arena *a, uint8_t **out)
{
    Google__Rpc__Status st;
    google__rpc__status__init(&st);
    st.message = (char *)(message ? message : "");
    size_t n = google__rpc__status__get_packed_size(&st);
    *out = agl_arena_alloc(a, n + 1);
    return google__rpc__status__pack(&st, *out);
}
