/* otlp — decoding of OTLP/HTTP trace exports (E29, store-api.md §6) into stored Spans.
 * Owns the wire side only: gunzip, protobuf / OTLP-JSON parsing, the §6.3 conversion to
 * Span JSON and the google.rpc.Status error body. Sequence-id allocation and insertion
 * (§5.1, §6.4) belong to the store. */
#ifndef STORED_OTLP_H
#define STORED_OTLP_H

#include "agl_arena.h"
#include "agl_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Attribute keys that route a span (§6.3). */
#define AGL_OTLP_ROLLOUT_ID_KEY "agentlightning.rollout_id"
#define AGL_OTLP_ATTEMPT_ID_KEY "agentlightning.attempt_id"
#define AGL_OTLP_SEQUENCE_ID_KEY "agentlightning.span_sequence_id"

/* Sub-message nesting allowed in a protobuf payload, as in upb (the Python reference's
 * parser); deeper payloads are rejected before protobuf-c, whose unpacker recurses. */
#define AGL_OTLP_MAX_DEPTH 100

/* One converted span. Every pointer is allocated from the arena given to the decoder. */
typedef struct agl_otlp_span {
    const char *rollout_id; /* from span attrs, else resource attrs (per key, §6.3) */
    const char *attempt_id;
    bool has_sequence_id; /* false → the store allocates one */
    int64_t sequence_id;  /* >= 0 when has_sequence_id */
    const char *trace_id, *span_id, *parent_id /* NULL = null */, *name;
    bool has_start_time, has_end_time;
    double start_time, end_time;
    /* JSON text of every Span key AFTER sequence_id, starting with "\"trace_id\":" and
     * without the closing brace, so the store writes
     * {"rollout_id":..,"attempt_id":..,"sequence_id":N, + rest + "}" once N is known. */
    const char *rest_json;
    size_t rest_len; /* strlen(rest_json) */
} agl_otlp_span;

/* Decodes an ExportTraceServiceRequest (binary protobuf); an empty buffer is a valid empty
 * request. Spans lacking rollout or attempt id are skipped (counted in *skipped), without
 * their attributes being checked. On return *spans holds *n spans in document order.
 * Errors:
 *   AGL_E_BAD_REQUEST  "Unable to parse OTLP traces payload: ..." — corrupt wire format,
 *                      invalid UTF-8 in a string field, nesting deeper than
 *                      AGL_OTLP_MAX_DEPTH (all parse failures in the reference too);
 *   AGL_E_INVALID      an attribute value (span, event, link or resource) is not a valid Span
 *                      attribute (object, null, mixed-type or nested array, §2.9). The
 *                      reference fails such requests with 500; callers answer 400.
 * Everything is allocated from a; nothing needs freeing besides the arena. */
agl_code agl_otlp_decode_protobuf(const uint8_t *buf, size_t len, agl_arena *a,
                                  agl_otlp_span **spans, size_t *n, size_t *skipped,
                                  agl_error *err);

/* Same for OTLP/JSON (the OTLP JSON encoding: lowerCamelCase keys — snake_case accepted
 * too — trace/span ids as hex strings, bytesValue as base64, int64/fixed64 as decimal
 * strings or numbers, enums as integers or names, unknown keys ignored). Malformed JSON or
 * a value of the wrong type is AGL_E_BAD_REQUEST. */
agl_code agl_otlp_decode_json(const char *text, size_t len, agl_arena *a, agl_otlp_span **spans,
                              size_t *n, size_t *skipped, agl_error *err);

/* gunzip (Content-Encoding: gzip); concatenated members are decoded one after another, as
 * Python's gzip.decompress does. The output (NUL-terminated, *outlen excludes the NUL) is
 * allocated from a. An inflated size over limit → AGL_E_TOO_LARGE; corrupt, truncated or
 * trailing non-gzip data → AGL_E_BAD_REQUEST. Empty input gives empty output. */
agl_code agl_gunzip(const uint8_t *in, size_t len, size_t limit, agl_arena *a, uint8_t **out,
                    size_t *outlen, agl_error *err);

/* Serialised google.rpc.Status {message} (code left 0, so omitted) for 400 bodies. *out is
 * allocated from a; returns its length. */
size_t agl_otlp_status_body(const char *message, agl_arena *a, uint8_t **out);

#endif
