/* proxy — runnerd's OpenAI-compatible LLM proxy. Forwards /v1/chat/completions,
 * /v1/completions and /v1/models to the upstream model server and records every attributed
 * call (URL /rollout/{rid}/attempt/{aid}/v1/... or x-rollout-id/x-attempt-id headers) as spans
 * of that attempt in the reference LLMProxy's attribute format (algorithms.md §3.1.5):
 * a `litellm_request` span (gen_ai.* attributes, token ids) with a `raw_gen_ai_request` child
 * (llm.hosted_vllm.* Python-literal attributes). Streams pass through chunk by chunk while the
 * proxy assembles the full response and its token ids for the span. */
#ifndef RUNNERD_PROXY_H
#define RUNNERD_PROXY_H

#include "agl_err.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct proxy proxy; /* opaque */

typedef struct proxy_opts {
    const char *listen;     /* HOST:PORT; port 0 picks a free one */
    const char *public_url; /* base URL agents use; NULL → http://<listen host>:<port> */
    const char *store_url;  /* where spans go and sequence ids come from */
    const char *upstream;   /* default upstream OpenAI base URL (…/v1), or NULL */
    const char *api_key;    /* injected as Authorization: Bearer, or NULL */
    bool token_ids;         /* ask upstreams for return_token_ids (dropped if they refuse) */
    bool logprobs;          /* ask upstreams for logprobs */
    double upstream_timeout_s;
} proxy_opts;

/* Starts the HTTP server and the span exporter. NULL + err when the address cannot be used. */
proxy *proxy_start(const proxy_opts *o, agl_error *err);
/* Base URL of the proxy (no trailing '/'), e.g. http://127.0.0.1:4748. */
const char *proxy_url(const proxy *p);

/* The LLM resource agents use: main_llm, else the first llm/proxy_llm one (borrowed; NULL when
 * there is none). */
json_t *proxy_find_llm(json_t *resources);

/* Tells the proxy which upstream serves an attempt (the attempt's main_llm resource).
 * endpoint NULL → the default upstream. Strings are copied. */
void proxy_register_attempt(proxy *p, const char *rollout_id, const char *attempt_id,
                            const char *endpoint, const char *api_key);
void proxy_unregister_attempt(proxy *p, const char *attempt_id);

/* Blocks until every span recorded before the call has been sent to the store (or dropped
 * after the store refused it). */
void proxy_flush(proxy *p);

/* Stops serving (in-flight calls finish), flushes the exporter and frees p. NULL is a no-op. */
void proxy_stop(proxy *p);

#endif
