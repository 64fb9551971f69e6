/* agl_trace — OTLP span writer (JSON or protobuf), the reward span and Python-literal values. */
#include "agl_trace.h"
#include "agl_util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void agl_otlp_begin(agl_otlp_writer *w, agl_buf *b)
{
    w->b = b;
    w->n_res = w->n_span = w->n_attr = 0;
    w->proto = false;
    w->depth = 0;
    agl_buf_puts(b, "{\"resourceSpans\":[");
}

void agl_otlp_begin_proto(agl_otlp_writer *w, agl_buf *b)
{
    w->b = b;
    w->n_res = w->n_span = w->n_attr = 0;
    w->proto = true;
    w->depth = 0;
}

/* ---- protobuf encoding (opentelemetry/proto/trace/v1/trace.proto field numbers) ----
 * Written by hand rather than through the protobuf-c messages libagl also links (stored decodes
 * with them): the writer emits each field as the proxy produces it, in the same single pass as
 * the JSON form, with no message tree to allocate and pack per recorded call. */

static void pb_varint(agl_buf *b, uint64_t v)
{
    unsigned char t[10];
    int n = 0;
    do {
        t[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) t[n] |= 0x80;
        n++;
    } while (v);
    agl_buf_put(b, t, (size_t)n);
}

static void pb_tag(agl_buf *b, unsigned field, unsigned wire)
{
    pb_varint(b, (uint64_t)field << 3 | wire);
}

static void pb_bytes(agl_buf *b, unsigned field, const void *p, size_t n)
{
    pb_tag(b, field, 2);
    pb_varint(b, n);
    agl_buf_put(b, p, n);
}

static void pb_fixed64(agl_buf *b, unsigned field, uint64_t v)
{
    pb_tag(b, field, 1);
    unsigned char t[8];
    for (int i = 0; i < 8; i++) t[i] = (unsigned char)(v >> (8 * i));
    agl_buf_put(b, t, 8);
}

/* A nested message: its length is not known until it closes, so 5 bytes are kept for it and
 * filled with a padded varint (0x80-continued groups; parsers accept it, as the encoding of a
 * length is not required to be minimal). */
static void pb_open(agl_otlp_writer *w, unsigned field)
{
    pb_tag(w->b, field, 2);
    static const unsigned char hold[5] = {0x80, 0x80, 0x80, 0x80, 0};
    agl_buf_put(w->b, hold, 5);
    w->open[w->depth++] = w->b->len;
}

static void pb_close(agl_otlp_writer *w)
{
    size_t at = w->open[--w->depth], n = w->b->len - at;
    unsigned char *p = (unsigned char *)w->b->data + at - 5;
    for (int i = 0; i < 5; i++)
        p[i] = (unsigned char)(((n >> (7 * i)) & 0x7f) | (i < 4 ? 0x80 : 0));
}

static void pb_hex_id(agl_buf *b, unsigned field, const char *hex)
{
    unsigned char id[16];
    size_t n = strlen(hex) / 2;
    if (n > sizeof id) n = sizeof id;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + k];
            v = v << 4 | (unsigned)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
        }
        id[i] = (unsigned char)v;
    }
    pb_bytes(b, field, id, n);
}

/* KeyValue{key, value: AnyValue{...}} as field `field`; leaves the AnyValue open. */
static void pb_kv_open(agl_otlp_writer *w, unsigned field, const char *key)
{
    pb_open(w, field);
    pb_bytes(w->b, 1, key, strlen(key));
    pb_open(w, 2);
}

static void pb_kv_close(agl_otlp_writer *w)
{
    pb_close(w);
    pb_close(w);
}

static void pb_kv_str(agl_otlp_writer *w, unsigned field, const char *key, const char *v, size_t n)
{
    pb_kv_open(w, field, key);
    pb_bytes(w->b, 1, v, n);
    pb_kv_close(w);
}

static void kv_str(agl_buf *b, const char *key, const char *v)
{
    agl_buf_puts(b, "{\"key\":");
    agl_buf_json_str(b, key);
    agl_buf_puts(b, ",\"value\":{\"stringValue\":");
    agl_buf_json_str(b, v);
    agl_buf_puts(b, "}}");
}

static void close_resource(agl_otlp_writer *w)
{
    if (w->n_res == 0) return;
    if (w->proto) {
        pb_close(w); /* ScopeSpans */
        pb_close(w); /* ResourceSpans */
    } else {
        agl_buf_puts(w->b, "]}]}");
    }
}

void agl_otlp_resource(agl_otlp_writer *w, const char *rollout_id, const char *attempt_id,
                       int64_t seq)
{
    close_resource(w);
    agl_buf *b = w->b;
    if (w->proto) {
        w->n_res++;
        pb_open(w, 1); /* ExportTraceServiceRequest.resource_spans */
        pb_open(w, 1); /* ResourceSpans.resource */
        pb_kv_str(w, 1, "service.name", "agl-runnerd", strlen("agl-runnerd"));
        pb_kv_str(w, 1, "agentlightning.rollout_id", rollout_id, strlen(rollout_id));
        pb_kv_str(w, 1, "agentlightning.attempt_id", attempt_id, strlen(attempt_id));
        if (seq >= 0) {
            pb_kv_open(w, 1, "agentlightning.span_sequence_id");
            pb_tag(b, 3, 0);
            pb_varint(b, (uint64_t)seq);
            pb_kv_close(w);
        }
        pb_close(w);
        pb_open(w, 2); /* ResourceSpans.scope_spans */
        pb_open(w, 1); /* ScopeSpans.scope */
        pb_bytes(b, 1, "agl", 3);
        pb_close(w);
        w->n_span = 0;
        return;
    }
    if (w->n_res++) agl_buf_putc(b, ',');
    agl_buf_puts(b, "{\"resource\":{\"attributes\":[");
    kv_str(b, "service.name", "agl-runnerd");
    agl_buf_putc(b, ',');
    kv_str(b, "agentlightning.rollout_id", rollout_id);
    agl_buf_putc(b, ',');
    kv_str(b, "agentlightning.attempt_id", attempt_id);
    if (seq >= 0)
        agl_buf_printf(b,
                       ",{\"key\":\"agentlightning.span_sequence_id\",\"value\":{\"intValue\":"
                       "\"%" PRId64 "\"}}",
                       seq);
    agl_buf_puts(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"agl\"},\"spans\":[");
    w->n_span = 0;
}

/* Epoch seconds to seconds and nanoseconds, split to keep precision. */
static void split_nanos(double t, uint64_t *sec, uint64_t *ns)
{
    if (t <= 0) {
        *sec = *ns = 0;
        return;
    }
    *sec = (uint64_t)t;
    *ns = (uint64_t)llround((t - (double)*sec) * 1e9);
    if (*ns >= 1000000000ULL) {
        (*sec)++;
        *ns -= 1000000000ULL;
    }
}

static void put_nanos(agl_buf *b, double t)
{
    /* Nanoseconds as a decimal string (OTLP/JSON int64 encoding). */
    uint64_t sec, ns;
    split_nanos(t, &sec, &ns);
    if (!sec && !ns)
        agl_buf_puts(b, "\"0\"");
    else
        agl_buf_printf(b, "\"%" PRIu64 "%09" PRIu64 "\"", sec, ns);
}

void agl_otlp_span_begin(agl_otlp_writer *w, const char *trace_id, const char *span_id,
                         const char *parent_id, const char *name, double start, double end,
                         agl_span_status status, const char *status_message)
{
    agl_buf *b = w->b;
    if (w->proto) {
        w->n_span++;
        pb_open(w, 2); /* ScopeSpans.spans */
        pb_hex_id(b, 1, trace_id);
        pb_hex_id(b, 2, span_id);
        if (parent_id) pb_hex_id(b, 4, parent_id);
        pb_bytes(b, 5, name, strlen(name));
        pb_tag(b, 6, 0);
        pb_varint(b, 1); /* SPAN_KIND_INTERNAL */
        uint64_t sec, ns;
        split_nanos(start, &sec, &ns);
        pb_fixed64(b, 7, sec * 1000000000ULL + ns);
        split_nanos(end, &sec, &ns);
        pb_fixed64(b, 8, sec * 1000000000ULL + ns);
        pb_open(w, 15); /* Status */
        if (status_message && *status_message)
            pb_bytes(b, 2, status_message, strlen(status_message));
        pb_tag(b, 3, 0);
        pb_varint(b, (uint64_t)status);
        pb_close(w);
        w->n_attr = 0;
        return;
    }
    if (w->n_span++) agl_buf_putc(b, ',');
    agl_buf_puts(b, "{\"traceId\":");
    agl_buf_json_str(b, trace_id);
    agl_buf_puts(b, ",\"spanId\":");
    agl_buf_json_str(b, span_id);
    if (parent_id) {
        agl_buf_puts(b, ",\"parentSpanId\":");
        agl_buf_json_str(b, parent_id);
    }
    agl_buf_puts(b, ",\"name\":");
    agl_buf_json_str(b, name);
    agl_buf_puts(b, ",\"kind\":1,\"startTimeUnixNano\":");
    put_nanos(b, start);
    agl_buf_puts(b, ",\"endTimeUnixNano\":");
    put_nanos(b, end);
    agl_buf_printf(b, ",\"status\":{\"code\":%d", (int)status);
    if (status_message && *status_message) {
        agl_buf_puts(b, ",\"message\":");
        agl_buf_json_str(b, status_message);
    }
    agl_buf_puts(b, "},\"attributes\":[");
    w->n_attr = 0;
}

static void attr_key(agl_otlp_writer *w, const char *key)
{
    if (w->n_attr++) agl_buf_putc(w->b, ',');
    agl_buf_puts(w->b, "{\"key\":");
    agl_buf_json_str(w->b, key);
    agl_buf_puts(w->b, ",\"value\":");
}

void agl_otlp_attr_str(agl_otlp_writer *w, const char *key, const char *v)
{
    agl_otlp_attr_strn(w, key, v ? v : "", v ? strlen(v) : 0);
}

void agl_otlp_attr_strn(agl_otlp_writer *w, const char *key, const char *v, size_t n)
{
    if (w->proto) {
        pb_kv_str(w, 9, key, v, n);
        return;
    }
    attr_key(w, key);
    agl_buf_puts(w->b, "{\"stringValue\":");
    agl_buf_json_strn(w->b, v, n);
    agl_buf_puts(w->b, "}}");
}

void agl_otlp_attr_int(agl_otlp_writer *w, const char *key, int64_t v)
{
    if (w->proto) {
        pb_kv_open(w, 9, key);
        pb_tag(w->b, 3, 0);
        pb_varint(w->b, (uint64_t)v);
        pb_kv_close(w);
        return;
    }
    attr_key(w, key);
    agl_buf_printf(w->b, "{\"intValue\":\"%" PRId64 "\"}}", v);
}

static void pb_double(agl_buf *b, unsigned field, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    pb_fixed64(b, field, bits);
}

void agl_otlp_attr_double(agl_otlp_writer *w, const char *key, double v)
{
    if (w->proto) {
        pb_kv_open(w, 9, key);
        pb_double(w->b, 4, isfinite(v) ? v : 0.0);
        pb_kv_close(w);
        return;
    }
    attr_key(w, key);
    agl_buf_puts(w->b, "{\"doubleValue\":");
    if (isfinite(v))
        agl_buf_json_double(w->b, v);
    else
        agl_buf_puts(w->b, "0");
    agl_buf_puts(w->b, "}}");
}

void agl_otlp_attr_bool(agl_otlp_writer *w, const char *key, bool v)
{
    if (w->proto) {
        pb_kv_open(w, 9, key);
        pb_tag(w->b, 2, 0);
        pb_varint(w->b, v ? 1 : 0);
        pb_kv_close(w);
        return;
    }
    attr_key(w, key);
    agl_buf_puts(w->b, v ? "{\"boolValue\":true}}" : "{\"boolValue\":false}}");
}

void agl_otlp_attr_int_array(agl_otlp_writer *w, const char *key, const int64_t *v, size_t n)
{
    if (w->proto) {
        pb_kv_open(w, 9, key);
        pb_open(w, 5); /* AnyValue.array_value */
        for (size_t i = 0; i < n; i++) {
            pb_open(w, 1);
            pb_tag(w->b, 3, 0);
            pb_varint(w->b, (uint64_t)v[i]);
            pb_close(w);
        }
        pb_close(w);
        pb_kv_close(w);
        return;
    }
    attr_key(w, key);
    agl_buf_puts(w->b, "{\"arrayValue\":{\"values\":[");
    for (size_t i = 0; i < n; i++)
        agl_buf_printf(w->b, "%s{\"intValue\":\"%" PRId64 "\"}", i ? "," : "", v[i]);
    agl_buf_puts(w->b, "]}}}");
}

void agl_otlp_attr_double_array(agl_otlp_writer *w, const char *key, const double *v, size_t n)
{
    if (w->proto) {
        pb_kv_open(w, 9, key);
        pb_open(w, 5);
        for (size_t i = 0; i < n; i++) {
            pb_open(w, 1);
            pb_double(w->b, 4, isfinite(v[i]) ? v[i] : -9999.0);
            pb_close(w);
        }
        pb_close(w);
        pb_kv_close(w);
        return;
    }
    attr_key(w, key);
    agl_buf_puts(w->b, "{\"arrayValue\":{\"values\":[");
    for (size_t i = 0; i < n; i++) {
        agl_buf_puts(w->b, i ? ",{\"doubleValue\":" : "{\"doubleValue\":");
        if (isfinite(v[i]))
            agl_buf_json_double(w->b, v[i]);
        else
            agl_buf_puts(w->b, "-9999.0");
        agl_buf_putc(w->b, '}');
    }
    agl_buf_puts(w->b, "]}}}");
}

void agl_otlp_span_end(agl_otlp_writer *w)
{
    if (w->proto)
        pb_close(w);
    else
        agl_buf_puts(w->b, "]}");
}

void agl_otlp_end(agl_otlp_writer *w)
{
    close_resource(w);
    if (!w->proto) agl_buf_puts(w->b, "]}");
}

void agl_otlp_reward_span(agl_otlp_writer *w, double value)
{
    char tid[33], sid[17];
    agl_trace_id_new(tid);
    agl_span_id_new(sid);
    double now = agl_now();
    agl_otlp_span_begin(w, tid, sid, NULL, "agentlightning.annotation", now, now, AGL_SPAN_OK,
                        NULL);
    agl_otlp_attr_str(w, "agentlightning.reward.0.name", "primary");
    agl_otlp_attr_double(w, "agentlightning.reward.0.value", value);
    agl_otlp_span_end(w);
}

void agl_trace_id_new(char *out)
{
    agl_id_new(out, 33, "", 32);
}

void agl_span_id_new(char *out)
{
    agl_id_new(out, 17, "", 16);
}

/* ---- Python literals ---- */

static void pystr(agl_buf *b, const char *s, size_t n)
{
    agl_buf_putc(b, '\'');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '\\':
            agl_buf_puts(b, "\\\\");
            break;
        case '\'':
            agl_buf_puts(b, "\\'");
            break;
        case '\n':
            agl_buf_puts(b, "\\n");
            break;
        case '\r':
            agl_buf_puts(b, "\\r");
            break;
        case '\t':
            agl_buf_puts(b, "\\t");
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                agl_buf_printf(b, "\\x%02x", c);
            else
                agl_buf_putc(b, (char)c); /* UTF-8 passes through, as repr() keeps it */
        }
    }
    agl_buf_putc(b, '\'');
}

void agl_pyrepr(agl_buf *b, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        int first = 1;
        agl_buf_putc(b, '{');
        json_object_foreach((json_t *)v, k, x)
        {
            if (!first) agl_buf_puts(b, ", ");
            first = 0;
            pystr(b, k, strlen(k));
            agl_buf_puts(b, ": ");
            agl_pyrepr(b, x);
        }
        agl_buf_putc(b, '}');
        break;
    }
    case JSON_ARRAY: {
        agl_buf_putc(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) agl_buf_puts(b, ", ");
            agl_pyrepr(b, json_array_get(v, i));
        }
        agl_buf_putc(b, ']');
        break;
    }
    case JSON_STRING:
        pystr(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        agl_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        /* vLLM writes -9999.0 for a -inf logprob; non-finite values have no literal. */
        agl_buf_json_double(b, isfinite(d) ? d : -9999.0);
        break;
    }
    case JSON_TRUE:
        agl_buf_puts(b, "True");
        break;
    case JSON_FALSE:
        agl_buf_puts(b, "False");
        break;
    default:
        agl_buf_puts(b, "None");
        break;
    }
}
