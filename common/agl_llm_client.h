/* agl_llm_client — an OpenAI-compatible chat-completions client (OpenAI, OpenRouter, vLLM,
 * llama.cpp server) over libcurl, for the trainers and runnerd. Owns the retry policy for model
 * calls (429, 408, 5xx and network failures, exponential backoff with jitter), the API key
 * (Authorization: Bearer, from an environment variable) and usage accounting.
 *
 * Threading: a client is thread-safe; it keeps a small pool of kept-alive connections, so
 * several threads may call agl_llm_chat on one client at once. */
#ifndef AGL_LLM_CLIENT_H
#define AGL_LLM_CLIENT_H

#include "agl_err.h"

#include <jansson.h>
#include <stdint.h>

typedef struct agl_llm_client agl_llm_client; /* opaque */

/* Zero-initialise; every zero field means "the default". */
typedef struct agl_llm_opts {
    const char *base_url;    /* …/v1 (required); a trailing '/' is ignored */
    const char *api_key_env; /* variable holding the key; NULL → OPENAI_API_KEY; unset → no key */
    double timeout_s;        /* limit on one attempt; 0 → 120 s */
    double connect_timeout_s; /* 0 → 5 s */
    int max_retries;          /* attempts after the first; 0 → 5; < 0 → none */
    double backoff_s;         /* first retry delay, doubled each time; 0 → 1 s */
    double backoff_max_s;     /* cap on one delay; 0 → 30 s */
    double price_in_per_mtok; /* USD per million prompt tokens, for cost accounting */
    double price_out_per_mtok;
} agl_llm_opts;

/* Usage of one call or a running total. cost_usd: the provider's `usage.cost` when it sends one
 * (OpenRouter), else tokens × the configured prices. */
typedef struct agl_llm_usage {
    int64_t calls;    /* completed calls (a response with a choice) */
    int64_t failures; /* calls that ended in an error after their retries */
    int64_t retries;  /* extra attempts */
    int64_t prompt_tokens, completion_tokens, total_tokens;
    double cost_usd;
    double seconds; /* wall time spent in calls, retries and backoff included */
} agl_llm_usage;

/* Returns NULL with err set when the URL is not http(s). Caller frees with agl_llm_client_free. */
agl_llm_client *agl_llm_client_new(const agl_llm_opts *opts, agl_error *err);
void agl_llm_client_free(agl_llm_client *c);
const char *agl_llm_client_url(const agl_llm_client *c);
/* 1 when an API key was found in the environment. */
int agl_llm_client_has_key(const agl_llm_client *c);

/* POST /chat/completions {model, messages, temperature?} merged with `extra` (an object of
 * further request fields, or NULL). temperature < 0 leaves it out. On success *content receives
 * choices[0].message.content (malloc'd, caller frees; NULL when the model sent null), and the
 * call's usage is added to *usage (if non-NULL) and to the client's total.
 * Errors: AGL_E_UNAVAILABLE (no answer, or 408/429/5xx after every retry), AGL_E_BAD_REQUEST /
 * AGL_E_INVALID / AGL_E_NOT_FOUND (the server refused the request: not retried; the message
 * carries its error text), AGL_E_INTERNAL (an answer that is not a chat completion). */
agl_code agl_llm_chat(agl_llm_client *c, const char *model, const json_t *messages,
                      double temperature, const json_t *extra, char **content, agl_llm_usage *usage,
                      agl_error *err);

/* GET /models once, without retries and with a short timeout: tells whether the server is
 * reachable and takes the key. AGL_OK also when the server has no /models route (404/405).
 * AGL_E_UNAVAILABLE when nothing answers, AGL_E_BAD_REQUEST for 401/403 (key refused). */
agl_code agl_llm_ping(agl_llm_client *c, double timeout_s, agl_error *err);

/* The client's running total. */
void agl_llm_client_usage(agl_llm_client *c, agl_llm_usage *out);
/* a += b. */
void agl_llm_usage_add(agl_llm_usage *a, const agl_llm_usage *b);

/* Delay before retry number k (0-based) with the opts' backoff: backoff_s · 2^k capped at
 * backoff_max_s, times a factor in [0.75, 1.25) taken from u ∈ [0, 1). Exposed for tests. */
double agl_llm_backoff(const agl_llm_opts *opts, int k, double u);

#endif
