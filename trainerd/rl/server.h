/* server — the policy server of `trainerd serve` and `trainerd rl --store` (issue 8): an
 * OpenAI-compatible HTTP API over the CPU decoder (libmicrohttpd, one thread per connection)
 * with vLLM's token-id fields, so that runnerd's LLM proxy records the exact ids sampled.
 *
 *   GET  /v1/models, /health
 *   POST /v1/completions        prompt: string | [string] | [int] | [[int]]
 *   POST /v1/chat/completions   messages rendered with the "raw" template: BOS, then the text
 *                               of every message in order (the char models have no chat format)
 *
 * Request fields: max_tokens (max_completion_tokens), temperature (0 = greedy), top_p, n, seed,
 * stop (string or list; trimmed from the text), stop_token_ids, ignore_eos, logprobs (int for
 * completions, bool + top_logprobs for chat), return_tokens_as_token_ids, stream (+
 * stream_options.include_usage; one SSE chunk per token as it is sampled). Unknown fields such as
 * return_token_ids are accepted; token ids are always returned: choices[i].token_ids, and
 * prompt_token_ids per choice (completions) or at the top level (chat). Log-probs are the
 * model's raw log-softmax (temperature 1, before top-p), like vLLM's default raw_logprobs, so they
 * compare directly with the trainer's recomputed log-probs.
 *
 * Concurrency: requests from all connections are decoded together by one engine thread
 * (continuous batching: every step advances each active sequence by one token, sequences in
 * parallel over OpenMP threads; new requests join at the next step; with infer_dtype q8_0 the
 * sequences of a step share one pass over the weights instead). Each sequence has its own
 * RNG (from the request's seed and choice index), so results do not depend on batching. The
 * trainer takes the weights exclusively for its optimizer step (rl_server_pause/resume). */
#ifndef RL_SERVER_H
#define RL_SERVER_H

#include "infer.h"
#include "model.h"
#include "tok.h"

#include <stdint.h>

typedef struct rl_server rl_server;

typedef struct {
    const char *listen;     /* HOST:PORT; port 0 picks a free one */
    const char *model_name; /* id in /v1/models and in responses */
    int max_batch;          /* sequences decoded together */
    const char *log_path;   /* JSON line per served request, or NULL */
    uint64_t seed;          /* mixed into the seed of requests that name none */
    /* RL_INFER_FP32 (0, the default): rl_model_step, the trainer's exact numbers; RL_INFER_Q8_0:
     * the batched quantised decoder of infer.h, requantised at each rl_server_resume */
    rl_infer_dtype infer_dtype;
} rl_server_opts;

/* Starts serving model m (read-only except between pause/resume) with tokenizer tok; both must
 * outlive the server. Returns NULL with a message in err on failure. */
rl_server *rl_server_start(rl_model *m, const rl_tok *tok, const rl_server_opts *o, char *err,
                           size_t errlen);
int rl_server_port(const rl_server *s);
/* "http://HOST:PORT/v1" for the listen address (127.0.0.1 when it is a wildcard). */
const char *rl_server_url(const rl_server *s);
/* Exclusive access to the weights: waits for the decode step in flight, blocks the next. */
void rl_server_pause(rl_server *s);
/* Ends the pause; responses from now on report `version` (system_fingerprint "policy-vN"). */
void rl_server_resume(rl_server *s, long version);
/* The server remembers choice 0 of its last 8192 responses (what runnerd's proxy records as a
 * triplet). Looks up response `id`: returns 1 when the prompt and response ids equal what it
 * generated (then lp[k] = its log-prob of response token k, nr floats), 0 when they differ, -1
 * when the id is unknown (evicted, or not this server's). */
int rl_server_lookup(rl_server *s, const char *id, const int *prompt, int np, const int *resp,
                     int nr, float *lp);
/* Requests served and tokens generated so far. */
void rl_server_stats(rl_server *s, long *requests, long *tokens);
void rl_server_stop(rl_server *s);

#endif
