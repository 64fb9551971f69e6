/* agent_http — the agent is an HTTP service: POST it the task document (agent_task_json),
 * read {"reward": x} back. The service calls the LLM at the "llm.base_url" it was given. */
#include "agent.h"
#include "agl_http_client.h"
#include "agl_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int agent_http_run(agent_ctx *ctx)
{
    /* split URL into base (scheme://host:port) and path */
    const char *url = ctx->agent_arg;
    const char *hs = strstr(url, "://");
    const char *path = hs ? strchr(hs + 3, '/') : NULL;
    char base[512];
    snprintf(base, sizeof base, "%.*s", path ? (int)(path - url) : (int)strlen(url), url);
    static const double no_retry[1] = {0};
    agl_http_client_opts o = {.retry_delays = no_retry, .n_retry_delays = 0};
    if (ctx->deadline > 0) {
        o.request_timeout_s = ctx->deadline - agl_monotonic();
        if (o.request_timeout_s < 0.05) o.request_timeout_s = 0.05;
    } else {
        o.request_timeout_s = -1;
    }
    agl_http_client *hc = agl_http_client_new(base, &o);
    if (!hc) {
        snprintf(ctx->error, sizeof ctx->error, "http agent: '%s' is not an http(s) URL", url);
        return -1;
    }
    char *task = agent_task_json(ctx);
    agl_http_response resp;
    agl_http_response_init(&resp);
    agl_error err;
    double t0 = agl_monotonic();
    agl_code code = agl_http_json(hc, "POST", path ? path : "/", task, &resp, &err);
    double dur = agl_monotonic() - t0;
    free(task);
    agl_http_client_free(hc);
    if (code != AGL_OK) {
        if (resp.status)
            snprintf(ctx->error, sizeof ctx->error, "http agent answered %ld: %s", resp.status,
                     err.msg);
        else
            snprintf(ctx->error, sizeof ctx->error, "http agent %s failed: %s", url, err.msg);
    } else {
        double r;
        bool was_null;
        if (agent_parse_reward(resp.body.data, resp.body.len, &r, &was_null)) {
            ctx->has_reward = true;
            ctx->reward = r;
        }
    }
    char tid[33], sid[17];
    agl_trace_id_new(tid);
    agl_span_id_new(sid);
    double wend = agl_now();
    agl_otlp_span_begin(ctx->spans, tid, sid, NULL, "agentlightning.operation", wend - dur, wend,
                        ctx->error[0] ? AGL_SPAN_ERROR : AGL_SPAN_OK, ctx->error);
    agl_otlp_attr_str(ctx->spans, "agentlightning.operation.name", "runnerd.http");
    agl_otlp_attr_str(ctx->spans, "runnerd.http.url", url);
    agl_otlp_attr_int(ctx->spans, "http.status_code", resp.status);
    agl_otlp_attr_double(ctx->spans, "runnerd.http.duration_ms", dur * 1000.0);
    agl_otlp_span_end(ctx->spans);
    agl_http_response_free(&resp);
    return ctx->error[0] ? -1 : 0;
}
