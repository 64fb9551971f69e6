/* agl_trace — writes spans as an OTLP ExportTraceServiceRequest, JSON or protobuf (the store
 * ingests both on POST /v1/traces, store-api.md §6), plus the agentlightning conventions built on
 * it: the reward annotation span (algorithms.md §2.2) and Python-literal attribute values, which
 * the reference's LLM-proxy adapter parses with ast.literal_eval (algorithms.md §2.4). */
#ifndef AGL_TRACE_H
#define AGL_TRACE_H

#include "agl_buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { AGL_SPAN_UNSET = 0, AGL_SPAN_OK = 1, AGL_SPAN_ERROR = 2 } agl_span_status;

/* A writer appends to b; the caller owns b. Call order:
 *   agl_otlp_begin, { agl_otlp_resource, { agl_otlp_span_begin, attrs..., agl_otlp_span_end }* }*,
 *   agl_otlp_end. */
typedef struct agl_otlp_writer {
    agl_buf *b;
    int n_res, n_span, n_attr;
    bool proto;     /* protobuf instead of JSON (agl_otlp_begin_proto) */
    int depth;      /* protobuf: messages open */
    size_t open[8]; /* protobuf: where each open message's length goes */
} agl_otlp_writer;

void agl_otlp_begin(agl_otlp_writer *w, agl_buf *b);
/* The same request as protobuf (application/x-protobuf). Documents of this writer merge into
 * one request by plain concatenation (a repeated field appends). */
void agl_otlp_begin_proto(agl_otlp_writer *w, agl_buf *b);
/* Text around the resourceSpans list of every document the writer produces, so that several
 * documents can be merged into one request by concatenating what lies between. */
#define AGL_OTLP_HEAD "{\"resourceSpans\":["
#define AGL_OTLP_TAIL "]}"
/* Opens a resource (closing the previous one) carrying agentlightning.rollout_id /
 * attempt_id and, when seq >= 0, agentlightning.span_sequence_id (all spans of the resource
 * then share it; with seq < 0 the store allocates one per span in document order). */
void agl_otlp_resource(agl_otlp_writer *w, const char *rollout_id, const char *attempt_id,
                       int64_t seq);
/* trace_id: 32 hex, span_id/parent_id: 16 hex (parent NULL = root). Times in epoch seconds. */
void agl_otlp_span_begin(agl_otlp_writer *w, const char *trace_id, const char *span_id,
                         const char *parent_id, const char *name, double start, double end,
                         agl_span_status status, const char *status_message);
void agl_otlp_attr_str(agl_otlp_writer *w, const char *key, const char *v);
void agl_otlp_attr_strn(agl_otlp_writer *w, const char *key, const char *v, size_t n);
void agl_otlp_attr_int(agl_otlp_writer *w, const char *key, int64_t v);
void agl_otlp_attr_double(agl_otlp_writer *w, const char *key, double v);
void agl_otlp_attr_bool(agl_otlp_writer *w, const char *key, bool v);
void agl_otlp_attr_int_array(agl_otlp_writer *w, const char *key, const int64_t *v, size_t n);
void agl_otlp_attr_double_array(agl_otlp_writer *w, const char *key, const double *v, size_t n);
void agl_otlp_span_end(agl_otlp_writer *w);
void agl_otlp_end(agl_otlp_writer *w);

/* The reward annotation span of the reference's emit_reward(): name
 * "agentlightning.annotation", status OK, agentlightning.reward.0.name = "primary",
 * agentlightning.reward.0.value = value, start = end = now. */
void agl_otlp_reward_span(agl_otlp_writer *w, double value);

/* Fresh random ids: trace 32 hex (out >= 33 bytes), span 16 hex (out >= 17 bytes). */
void agl_trace_id_new(char *out);
void agl_span_id_new(char *out);

/* Appends the Python literal (repr) of a JSON value to b: dicts {'k': v}, lists [..],
 * strings in single quotes, True/False/None, ints and floats as Python prints them. */
void agl_pyrepr(agl_buf *b, const json_t *v);

#endif
