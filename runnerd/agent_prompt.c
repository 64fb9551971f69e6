/* agent_prompt — the built-in agent APO optimises: render the PromptTemplate resource with the
 * task's fields, ask the attempt's LLM through the proxy, grade the answer against the task's
 * expected answer. */
#include "agent.h"
#include "agl_alloc.h"
#include "agl_http_client.h"
#include "agl_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const expected_keys[] = {"expected", "answer", "expected_answer",
                                            "target",   "label",  NULL};

static json_t *find_template(json_t *resources)
{
    const char *k;
    json_t *v;
    json_object_foreach(resources, k, v)
    {
        json_t *t = json_object_get(v, "resource_type");
        if (json_is_string(t) && !strcmp(json_string_value(t), "prompt_template")) return v;
    }
    return NULL;
}

static json_t *sampling_parameters(json_t *resources)
{
    json_t *llm = json_object_get(resources, "main_llm");
    if (!llm) {
        const char *k;
        json_t *v;
        json_object_foreach(resources, k, v)
        {
            const char *t = json_string_value(json_object_get(v, "resource_type"));
            if (t && (!strcmp(t, "llm") || !strcmp(t, "proxy_llm"))) {
                llm = v;
                break;
            }
        }
    }
    return json_object_get(llm, "sampling_parameters");
}

int agent_prompt_run(agent_ctx *ctx)
{
    json_t *tmpl = find_template(ctx->resources);
    if (!tmpl) {
        snprintf(ctx->error, sizeof ctx->error,
                 "prompt agent: the rollout's resources have no prompt_template");
        return -1;
    }
    const char *engine = json_string_value(json_object_get(tmpl, "engine"));
    if (engine && strcmp(engine, "f-string")) {
        snprintf(ctx->error, sizeof ctx->error,
                 "prompt agent: template engine '%s' is not supported (only f-string)", engine);
        return -1;
    }
    if (!ctx->model) {
        snprintf(ctx->error, sizeof ctx->error,
                 "prompt agent: the rollout's resources have no llm (main_llm) resource");
        return -1;
    }
    char why[256];
    char *prompt = agent_render_fstring(json_string_value(json_object_get(tmpl, "template")),
                                        ctx->input, why, sizeof why);
    if (!prompt) {
        snprintf(ctx->error, sizeof ctx->error, "prompt agent: %s", why);
        return -1;
    }

    json_t *body = json_object();
    json_t *sp = sampling_parameters(ctx->resources);
    if (json_is_object(sp)) json_object_update(body, sp);
    json_object_set_new(body, "model", json_string(ctx->model));
    json_object_set_new(body, "messages",
                        json_pack("[{s:s,s:s}]", "role", "user", "content", prompt));
    free(prompt);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    static const double no_retry[1] = {0};
    agl_http_client_opts o = {.retry_delays = no_retry, .n_retry_delays = 0};
    if (ctx->deadline > 0) {
        o.request_timeout_s = ctx->deadline - agl_monotonic();
        if (o.request_timeout_s < 0.05) o.request_timeout_s = 0.05;
    } else {
        o.request_timeout_s = -1;
    }
    agl_http_client *hc = agl_http_client_new(ctx->llm_base_url, &o);
    agl_http_response resp;
    agl_http_response_init(&resp);
    agl_error err;
    agl_code code = hc ? agl_http_json(hc, "POST", "/chat/completions", text, &resp, &err)
                       : agl_error_set(&err, AGL_E_INVALID, NULL, "bad LLM URL");
    free(text);
    agl_http_client_free(hc);
    if (code != AGL_OK) {
        snprintf(ctx->error, sizeof ctx->error, "prompt agent: LLM call failed: %s", err.msg);
        agl_http_response_free(&resp);
        return -1;
    }
    json_t *j = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    agl_http_response_free(&resp);
    json_t *content = json_object_get(
        json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message"), "content");
    if (!json_is_string(content)) {
        json_decref(j);
        snprintf(ctx->error, sizeof ctx->error, "prompt agent: the LLM answer has no content");
        return -1;
    }
    json_t *expected = NULL;
    for (int i = 0; expected_keys[i] && !expected; i++)
        expected = json_object_get(ctx->input, expected_keys[i]);
    const char *grader = json_string_value(json_object_get(ctx->input, "grader"));
    if (!grader) grader = ctx->cfg->grader;
    double r = agent_grade(grader, json_string_value(content), expected, why, sizeof why);
    json_decref(j);
    if (r < 0) {
        snprintf(ctx->error, sizeof ctx->error, "prompt agent: %s", why);
        return -1;
    }
    ctx->has_reward = true;
    ctx->reward = r;
    return 0;
}
