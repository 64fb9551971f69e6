/* agent — the three agent kinds a worker can run on a rollout: the built-in prompt-template
 * agent (agent_prompt.c), any executable (agent_exec.c) and an HTTP agent service
 * (agent_http.c). Each fills the result; the worker turns it into spans and the final status. */
#ifndef RUNNERD_AGENT_H
#define RUNNERD_AGENT_H

#include "agl_buf.h"
#include "agl_model.h"
#include "agl_trace.h"
#include "runnerd.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct agent_ctx {
    const runnerd_cfg *cfg;
    const agl_rollout *rollout;
    const agl_attempt *attempt;
    json_t *input;            /* the task input (parsed) */
    json_t *resources;        /* NamedResources object ({} when none) */
    const char *llm_base_url; /* OpenAI base URL for this attempt (the proxy, ends in /v1) */
    const char *model;        /* main_llm model, or NULL */
    double deadline;          /* monotonic deadline, 0 = none */
    const char *agent_arg;    /* COMMAND or URL */

    /* results */
    bool has_reward;
    double reward;
    char error[512];        /* non-empty: the attempt failed for this reason */
    agl_otlp_writer *spans; /* extra spans of this attempt (resource already opened) */
} agent_ctx;

/* Each returns 0 on success, -1 when ctx->error was set. */
int agent_prompt_run(agent_ctx *ctx);
int agent_exec_run(agent_ctx *ctx);
int agent_http_run(agent_ctx *ctx);

/* The JSON handed to exec and http agents: rollout/attempt ids, mode, input, resources and
 * the LLM endpoint to use. Caller frees. */
char *agent_task_json(const agent_ctx *ctx);

/* Reads {"reward": x} (x a number or bool, or null) from text; true when a reward was found. */
bool agent_parse_reward(const char *text, size_t len, double *reward, bool *found_null);

/* ---- graders and templates (grader.c) ---- */
/* Renders an f-string template with the fields of input (an object; {{ and }} are literal
 * braces, format specs after ':' or '!' are ignored). Returns malloc'd text, or NULL with a
 * reason in err (cap bytes). */
char *agent_render_fstring(const char *tmpl, json_t *input, char *err, size_t cap);
/* Grades answer against expected with grader exact|contains|regex|number|json. Returns the
 * reward (0..1) or -1 with a reason in err for an unknown grader or a bad expected value. */
double agent_grade(const char *grader, const char *answer, json_t *expected, char *err, size_t cap);

#endif
