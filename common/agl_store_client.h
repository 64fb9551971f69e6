/* agl_store_client — typed calls of the LightningStore API (store-api.md §3) over
 * agl_http_client, for runnerd and trainerd. Owns one kept-alive connection per client.
 * Not thread-safe: one client per thread. Every returned jansson value is owned by the caller
 * (json_decref); strings parsed into models come from the caller's arena. */
#ifndef AGL_STORE_CLIENT_H
#define AGL_STORE_CLIENT_H

#include "agl_arena.h"
#include "agl_err.h"
#include "agl_model.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct agl_store_client agl_store_client; /* opaque */

/* url: stored base URL (http://host:port). retry: false disables retries (for calls the
 * reference client does not retry, e.g. dequeue, and for latency-critical callers).
 * Returns NULL with err set when the URL is unusable. Free with agl_store_client_free. */
agl_store_client *agl_store_client_new(const char *url, bool retry, agl_error *err);
void agl_store_client_free(agl_store_client *c);
const char *agl_store_client_url(const agl_store_client *c);

/* Generic JSON call: method + path under the base URL, body JSON text (NULL = no body).
 * On a 2xx answer *out (if non-NULL) receives the parsed body (JSON null included); HTTP
 * errors become agl codes with the server's detail as message. */
agl_code agl_store_call(agl_store_client *c, const char *method, const char *path, const char *body,
                        json_t **out, agl_error *err);

/* POST /v1/agl/queues/rollouts/dequeue {"limit":1,"worker_id":w}. *got tells whether a
 * rollout was claimed; r/at are filled (strings in a) when it was. */
agl_code agl_store_dequeue(agl_store_client *c, const char *worker_id, agl_arena *a, agl_rollout *r,
                           agl_attempt *at, bool *got, agl_error *err);

/* GET /v1/agl/resources/{id} (or /latest when id is NULL). *out = the ResourcesUpdate object,
 * or NULL when the store has none. */
agl_code agl_store_get_resources(agl_store_client *c, const char *resources_id, json_t **out,
                                 agl_error *err);

/* POST /v1/agl/workers/{id} with {"heartbeat_stats": stats_json} (stats_json NULL: no body). */
agl_code agl_store_update_worker(agl_store_client *c, const char *worker_id, const char *stats_json,
                                 agl_error *err);

/* POST /v1/agl/rollouts/{rid}/attempts/{aid} with body_json (an object of the fields to set). */
agl_code agl_store_update_attempt(agl_store_client *c, const char *rollout_id,
                                  const char *attempt_id, const char *body_json, agl_error *err);

/* POST /v1/agl/spans/next → *seq. */
agl_code agl_store_next_sequence_id(agl_store_client *c, const char *rollout_id,
                                    const char *attempt_id, int64_t *seq, agl_error *err);

/* POST /v1/traces with an OTLP/JSON ExportTraceServiceRequest. */
agl_code agl_store_export_otlp_json(agl_store_client *c, const char *json, size_t len,
                                    agl_error *err);
/* The same for a binary OTLP protobuf ExportTraceServiceRequest (application/x-protobuf). */
agl_code agl_store_export_otlp_protobuf(agl_store_client *c, const void *data, size_t len,
                                        agl_error *err);

/* Appends "/" + s percent-encoded (path segment) to b. */
void agl_store_path_segment(agl_buf *b, const char *s);

#endif
