/* agl_trace — OTLP/JSON span writer, the reward span and Python-literal values. */
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
    agl_buf_puts(b, "{\"resourceSpans\":[");
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
    if (w->n_res > 0) agl_buf_puts(w->b, "]}]}");
}

void agl_otlp_resource(agl_otlp_writer *w, const char *rollout_id, const char *attempt_id,
                       int64_t seq)
{
    close_resource(w);
    agl_buf *b = w->b;
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

static void put_nanos(agl_buf *b, double t)
{
    /* Nanoseconds as a decimal string (OTLP/JSON int64 encoding); split to keep precision. */
    if (t <= 0) {
        agl_buf_puts(b, "\"0\"");
        return;
    }
    uint64_t sec = (uint64_t)t;
    uint64_t ns = (uint64_t)llround((t - (double)sec) * 1e9);
    if (ns >= 1000000000ULL) {
        sec++;
        ns -= 1000000000ULL;
    }
    agl_buf_printf(b, "\"%" PRIu64 "%09" PRIu64 "\"", sec, ns);
}

void agl_otlp_span_begin(agl_otlp_writer *w, const char *trace_id, const char *span_id,
                         const char *parent_id, const char *name, double start, double end,
                         agl_span_status status, const char *status_message)
{
    agl_buf *b = w->b;
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
    attr_key(w, key);
    agl_buf_puts(w->b, "{\"stringValue\":");
    agl_buf_json_strn(w->b, v, n);
    agl_buf_puts(w->b, "}}");
}

void agl_otlp_attr_int(agl_otlp_writer *w, const char *key, int64_t v)
{
    attr_key(w, key);
    agl_buf_printf(w->b, "{\"intValue\":\"%" PRId64 "\"}}", v);
}

void agl_otlp_attr_double(agl_otlp_writer *w, const char *key, double v)
{
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
    attr_key(w, key);
    agl_buf_puts(w->b, v ? "{\"boolValue\":true}}" : "{\"boolValue\":false}}");
}

void agl_otlp_attr_int_array(agl_otlp_writer *w, const char *key, const int64_t *v, size_t n)
{
    attr_key(w, key);
    agl_buf_puts(w->b, "{\"arrayValue\":{\"values\":[");
    for (size_t i = 0; i < n; i++)
        agl_buf_printf(w->b, "%s{\"intValue\":\"%" PRId64 "\"}", i ? "," : "", v[i]);
    agl_buf_puts(w->b, "]}}}");
}

void agl_otlp_attr_double_array(agl_otlp_writer *w, const char *key, const double *v, size_t n)
{
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
    agl_buf_puts(w->b, "]}");
}

void agl_otlp_end(agl_otlp_writer *w)
{
    close_resource(w);
    agl_buf_puts(w->b, "]}");
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
