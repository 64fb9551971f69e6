/* agl_model — the LightningStore data models (store-api.md §2) and their JSON codecs.
 * Parsers validate like the reference's pydantic models and report the offending field in
 * agl_error.loc; writers emit the reference's field order. Free-form JSON (input, metadata,
 * stats, sampling parameters) is carried as raw JSON text and written back verbatim.
 * Memory: every string a parser produces is allocated from the caller's arena. */
#ifndef AGL_MODEL_H
#define AGL_MODEL_H

#include "agl_arena.h"
#include "agl_buf.h"
#include "agl_err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- enumerations (string tables index by the enum value) ---- */
typedef enum {
    AGL_RS_QUEUING,
    AGL_RS_PREPARING,
    AGL_RS_RUNNING,
    AGL_RS_FAILED,
    AGL_RS_SUCCEEDED,
    AGL_RS_CANCELLED,
    AGL_RS_REQUEUING,
    AGL_RS__COUNT
} agl_rollout_status;

typedef enum {
    AGL_AS_PREPARING,
    AGL_AS_RUNNING,
    AGL_AS_FAILED,
    AGL_AS_SUCCEEDED,
    AGL_AS_UNRESPONSIVE,
    AGL_AS_TIMEOUT,
    AGL_AS__COUNT
} agl_attempt_status;

typedef enum { AGL_MODE_NONE = -1, AGL_MODE_TRAIN, AGL_MODE_VAL, AGL_MODE_TEST } agl_mode;
typedef enum { AGL_WS_IDLE, AGL_WS_BUSY, AGL_WS_UNKNOWN, AGL_WS__COUNT } agl_worker_status;

extern const char *const agl_rollout_status_names[AGL_RS__COUNT];
extern const char *const agl_attempt_status_names[AGL_AS__COUNT];
extern const char *const agl_mode_names[3];
extern const char *const agl_worker_status_names[AGL_WS__COUNT];

/* Returns the enum value, or -1 when s is not one of the names. */
int agl_rollout_status_from(const char *s);
int agl_attempt_status_from(const char *s);
int agl_mode_from(const char *s);
int agl_worker_status_from(const char *s);
bool agl_rollout_status_terminal(int s); /* failed, succeeded, cancelled */

/* ---- models ---- */
typedef struct agl_rollout_config {
    bool has_timeout;
    double timeout_seconds;
    bool has_unresponsive;
    double unresponsive_seconds;
    int64_t max_attempts; /* >= 1 */
    int n_retry;          /* retry_condition in request order */
    int8_t retry[AGL_AS__COUNT * 2];
} agl_rollout_config;

typedef struct agl_rollout {
    const char *rollout_id;
    const char *input; /* raw JSON text, never NULL ("null" for JSON null) */
    double start_time;
    bool has_end_time;
    double end_time;
    int mode;                 /* agl_mode, AGL_MODE_NONE = null */
    const char *resources_id; /* NULL = null */
    int status;               /* agl_rollout_status */
    agl_rollout_config config;
    const char *metadata; /* raw JSON object text, NULL = null */
    int64_t num_attempts; /* attempts made so far (stored's row; not part of the wire model) */
} agl_rollout;

typedef struct agl_attempt {
    const char *rollout_id;
    const char *attempt_id;
    int64_t sequence_id;
    double start_time;
    bool has_end_time;
    double end_time;
    int status;            /* agl_attempt_status */
    const char *worker_id; /* NULL = null */
    bool has_last_heartbeat_time;
    double last_heartbeat_time;
    const char *metadata; /* raw JSON object text, NULL = null */
} agl_attempt;

typedef struct agl_worker {
    const char *worker_id;
    int status;                  /* agl_worker_status */
    const char *heartbeat_stats; /* raw JSON object text, NULL = null */
    bool has_last_heartbeat_time, has_last_dequeue_time, has_last_busy_time, has_last_idle_time;
    double last_heartbeat_time, last_dequeue_time, last_busy_time, last_idle_time;
    const char *current_rollout_id; /* NULL = null */
    const char *current_attempt_id; /* NULL = null */
} agl_worker;

typedef struct agl_resources_update {
    const char *resources_id;
    double create_time;
    double update_time;
    int64_t version;
    const char *resources; /* normalised NamedResources JSON object text */
} agl_resources_update;

/* A Span keeps its whole JSON document (unknown keys included) plus the columns the store
 * indexes. The document is the source of truth for everything else. */
typedef struct agl_span {
    const char *rollout_id;
    const char *attempt_id;
    int64_t sequence_id;
    const char *trace_id;
    const char *span_id;
    const char *parent_id; /* NULL = null */
    const char *name;
    bool has_start_time, has_end_time;
    double start_time, end_time;
    const char *json; /* the complete span as compact JSON text (verbatim key order) */
} agl_span;

/* ---- codecs: writers (append to b) ---- */
void agl_rollout_config_write(agl_buf *b, const agl_rollout_config *c);
void agl_rollout_write(agl_buf *b, const agl_rollout *r);
/* AttemptedRollout: the rollout followed by "attempt" when a != NULL (key omitted otherwise). */
void agl_attempted_rollout_write(agl_buf *b, const agl_rollout *r, const agl_attempt *a);
void agl_attempt_write(agl_buf *b, const agl_attempt *a);
void agl_worker_write(agl_buf *b, const agl_worker *w);
void agl_resources_update_write(agl_buf *b, const agl_resources_update *u);
void agl_span_write(agl_buf *b, const agl_span *s); /* writes s->json */

/* ---- codecs: parsers (j is a parsed jansson value; loc prefixes error locations) ---- */
void agl_rollout_config_default(agl_rollout_config *c);
agl_code agl_rollout_config_parse(const json_t *j, const char *loc, agl_rollout_config *out,
                                  agl_error *err);
agl_code agl_rollout_parse(const json_t *j, agl_arena *a, agl_rollout *out, agl_error *err);
/* Parses a Rollout or AttemptedRollout; *has_attempt tells which (attempt filled if so). */
agl_code agl_attempted_rollout_parse(const json_t *j, agl_arena *a, agl_rollout *r, agl_attempt *at,
                                     bool *has_attempt, agl_error *err);
agl_code agl_attempt_parse(const json_t *j, agl_arena *a, agl_attempt *out, agl_error *err);
agl_code agl_worker_parse(const json_t *j, agl_arena *a, agl_worker *out, agl_error *err);
agl_code agl_resources_update_parse(const json_t *j, agl_arena *a, agl_resources_update *out,
                                    agl_error *err);
/* NamedResources: validates each resource by resource_type (llm, proxy_llm, prompt_template),
 * fills defaults, drops unknown keys inside a resource, and returns the normalised object as
 * compact JSON text in *out_json (arena). */
agl_code agl_named_resources_parse(const json_t *j, const char *loc, agl_arena *a,
                                   const char **out_json, agl_error *err);
/* Span: all 16 keys required; attributes restricted to primitives and homogeneous arrays;
 * unknown keys kept at every level of the Span family. */
agl_code agl_span_parse(const json_t *j, const char *loc, agl_arena *a, agl_span *out,
                        agl_error *err);
/* Validates an Attributes object (store-api.md §2.9). */
agl_code agl_attributes_check(const json_t *j, const char *loc, agl_error *err);

/* ---- helpers shared by parsers and the store ---- */
/* Writes j as compact JSON (object key order preserved, shortest round-trip doubles). */
void agl_json_write(agl_buf *b, const json_t *j);
/* Compact JSON text of j, allocated from a (object key order preserved). */
const char *agl_json_dump(agl_arena *a, const json_t *j);
/* Parses text (NUL-terminated) into a jansson value with the decoding flags agl uses
 * everywhere (JSON_DECODE_ANY | JSON_ALLOW_NUL); NULL + err (AGL_E_INVALID) on failure. */
json_t *agl_json_parse(const char *text, size_t len, agl_error *err);

/* PaginatedResult envelope: writes {"items":[ then the caller writes items separated by ','
 * then agl_page_end writes ],"limit":..,"offset":..,"total":..}. */
void agl_page_begin(agl_buf *b);
void agl_page_end(agl_buf *b, int64_t limit, int64_t offset, int64_t total);

#endif
