/* adapter — the reference's span adapters, server-side (algorithms.md §2): spans of one rollout
 * attempt → triplets (TracerTraceToTriplet, LlmProxyTraceToTriplet), trajectory merging of
 * triplets, and chat messages (TraceToMessages). Pure functions over parsed span documents; the
 * HTTP side is adapter_api.c. Where the reference would raise on malformed input, we say so in
 * the function's comment and do something defined instead. */
#ifndef STORED_ADAPTER_H
#define STORED_ADAPTER_H

#include "agl_arena.h"
#include "agl_buf.h"
#include "agl_err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* One stored span, as the adapters see it. */
typedef struct adapter_span {
    const char *span_id;
    const char *parent_id; /* NULL = no parent */
    const char *name;
    int64_t sequence_id;
    bool has_start, has_end;
    double start, end;
    json_t *attrs; /* object, borrowed from doc */
    json_t *doc;   /* owned reference (adapter_spans_free) */
} adapter_span;

typedef struct adapter_spans {
    adapter_span *v;
    int n, cap;
} adapter_spans;

void adapter_spans_init(adapter_spans *s);
/* Parses one span document (the JSON text of a Span) and appends it. */
agl_code adapter_spans_add(adapter_spans *s, const char *doc, agl_error *err);
void adapter_spans_free(adapter_spans *s);

typedef enum { ADAPTER_TRACER, ADAPTER_LLM_PROXY, ADAPTER_AUTO } adapter_kind;
typedef enum { REWARD_FIRST_OCCURRENCE, REWARD_FIRST_SIBLING } reward_policy;

/* TracerTraceToTriplet's parameters, reference defaults from adapter_opts_default. */
typedef struct adapter_opts {
    adapter_kind kind;
    bool repair_hierarchy;
    const char *llm_call_match; /* Python regex (re.search), see adapter_regex_compile */
    const char *agent_match;    /* NULL = any agent */
    bool exclude_llm_call_in_reward;
    reward_policy reward_match;
    bool skip_empty_token_spans;
} adapter_opts;

void adapter_opts_default(adapter_opts *o);
/* Checks that the regexes compile (400 otherwise). */
agl_code adapter_opts_check(const adapter_opts *o, agl_error *err);

/* Spans (in store order: sequence_id, then insertion) → JSON array of Triplets. Returns a new
 * reference. No spans → empty array (the reference raises; the trainer skips such rollouts). */
json_t *adapter_triplets(const adapter_spans *s, const adapter_opts *o);

/* The trainer's "final reward" of a rollout: the reward of the last triplet that has one, or
 * NULL (borrowed from triplets). */
json_t *adapter_final_reward(const json_t *triplets);

/* Trajectory level (algorithms.md §6.3): consecutive triplets whose prompt+response token ids
 * start with the previous turn's are merged; observation tokens are masked 0. Returns a new
 * array of {turns, prompt_ids, response_ids, response_mask, reward}. */
json_t *adapter_trajectories(const json_t *triplets, const json_t *final_reward);

/* TraceToMessages: a JSON array of {messages, tools}. On input the reference rejects (a prompt
 * that is not a list, a prompt message without a role...) returns NULL with *why set. */
json_t *adapter_messages(const adapter_spans *s, const char **why);

/* find_final_reward: the reward of the last span carrying one, or NULL (new reference). */
json_t *adapter_span_final_reward(const adapter_spans *s);

/* ---- building blocks, exposed for the unit tests ---- */

/* filter_and_unflatten_attributes(attrs, prefix): new reference (empty object if nothing). */
json_t *adapter_unflatten(const json_t *attrs, const char *prefix);
/* group_genai_dict(attrs, prefix) of agentlightning/adapter/messages.py. */
json_t *adapter_group_genai(const json_t *attrs, const char *prefix);
/* ast.literal_eval subset: lists, tuples, dicts, strings, numbers, True/False/None. Tuples
 * become {"__tuple__": [...]} so that list checks fail on them as in Python. NULL if text is
 * not such a literal. */
json_t *adapter_py_literal(const char *text);
/* get_reward_value(span): true and *value when the span carries a numeric reward. */
bool adapter_reward_value(const char *name, const json_t *attrs, double *value);

#endif
