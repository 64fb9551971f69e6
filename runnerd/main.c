/* runnerd — the worker side of agl: a pool of workers that pull rollouts from stored and run
 * agents (built-in prompt agent, any executable, an HTTP service), and the LLM proxy that
 * records every model call of those agents as spans. main reads like the table of contents:
 * parse options, start the proxy, start the workers, wait for signals, drain. */
#include "agl_config.h"
#include "agl_http_client.h"
#include "agl_log.h"
#include "agl_util.h"
#include "runnerd.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const log_formats[] = {"text", "json", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const graders[] = {"exact", "contains", "regex", "number", "json", NULL};
static const char *const on_off[] = {"on", "off", NULL};

static int check_agent(const char *agent)
{
    if (!strcmp(agent, "prompt")) return 0;
    if (!strncmp(agent, "exec:", 5) && agent[5]) return 0;
    if (!strncmp(agent, "http:", 5) &&
        (!strncmp(agent + 5, "http://", 7) || !strncmp(agent + 5, "https://", 8)))
        return 0;
    fprintf(stderr,
            "runnerd: --agent '%s' is not one of prompt, exec:COMMAND, http:http://HOST/PATH\n",
            agent);
    return -1;
}

int main(int argc, char **argv)
{
    runnerd_cfg cfg = {.store_url = "http://127.0.0.1:4747",
                       .workers = 1,
                       .agent = "prompt",
                       .grader = "exact",
                       .worker_prefix = "",
                       .poll_interval = 2.0,
                       .heartbeat_interval = 10.0,
                       .max_rollouts = 0,
                       .exec_timeout = 0,
                       .stderr_limit = 16384,
                       .upstream_key_env = "OPENAI_API_KEY"};
    const char *log_format = "text", *log_level = "info", *proxy_listen = "127.0.0.1:0";
    const char *proxy_public = "", *upstream = "", *token_ids = "on";
    int proxy_only = 0, logprobs = 0;
    double upstream_timeout = 600;
    agl_option opts[] = {
        {"store", "AGL_RUNNER_STORE", AGL_OPT_STR, &cfg.store_url, "URL", "stored base URL", NULL},
        {"workers", "AGL_RUNNER_WORKERS", AGL_OPT_INT, &cfg.workers, "N", "number of workers",
         NULL},
        {"agent", "AGL_RUNNER_AGENT", AGL_OPT_STR, &cfg.agent, "KIND[:ARG]",
         "agent to run: prompt, exec:COMMAND or http:URL", NULL},
        {"grader", "AGL_RUNNER_GRADER", AGL_OPT_STR, &cfg.grader, "NAME",
         "prompt agent grader when the task names none", graders},
        {"max-rollouts", "AGL_RUNNER_MAX_ROLLOUTS", AGL_OPT_INT, &cfg.max_rollouts, "N",
         "each worker stops after N rollouts (0 = never)", NULL},
        {"poll-interval", "AGL_RUNNER_POLL_INTERVAL", AGL_OPT_DOUBLE, &cfg.poll_interval, "S",
         "longest wait between dequeues of an empty queue", NULL},
        {"heartbeat-interval", "AGL_RUNNER_HEARTBEAT_INTERVAL", AGL_OPT_DOUBLE,
         &cfg.heartbeat_interval, "S", "worker and attempt heartbeat period (0 = off)", NULL},
        {"exec-timeout", "AGL_RUNNER_EXEC_TIMEOUT", AGL_OPT_DOUBLE, &cfg.exec_timeout, "S",
         "agent time limit when the rollout sets no timeout_seconds (0 = none)", NULL},
        {"stderr-limit", "AGL_RUNNER_STDERR_LIMIT", AGL_OPT_INT, &cfg.stderr_limit, "BYTES",
         "tail of an exec agent's stderr kept on its span", NULL},
        {"worker-prefix", "AGL_RUNNER_WORKER_PREFIX", AGL_OPT_STR, &cfg.worker_prefix, "PREFIX",
         "worker ids are PREFIX<slot> (default <hostname>:Worker-<slot>)", NULL},
        {"proxy-listen", "AGL_RUNNER_PROXY_LISTEN", AGL_OPT_STR, &proxy_listen, "HOST:PORT",
         "LLM proxy address (port 0 = any free port)", NULL},
        {"proxy-url", "AGL_RUNNER_PROXY_URL", AGL_OPT_STR, &proxy_public, "URL",
         "proxy base URL given to agents (default from --proxy-listen)", NULL},
        {"proxy-only", "AGL_RUNNER_PROXY_ONLY", AGL_OPT_FLAG, &proxy_only, NULL,
         "run only the LLM proxy, no workers", NULL},
        {"upstream", "AGL_RUNNER_UPSTREAM", AGL_OPT_STR, &upstream, "URL",
         "OpenAI base URL (…/v1) for calls whose attempt has no main_llm resource here", NULL},
        {"upstream-api-key-env", "AGL_RUNNER_UPSTREAM_API_KEY_ENV", AGL_OPT_STR,
         &cfg.upstream_key_env, "NAME",
         "environment variable holding the upstream API key (kept from agents)", NULL},
        {"upstream-timeout", "AGL_RUNNER_UPSTREAM_TIMEOUT", AGL_OPT_DOUBLE, &upstream_timeout, "S",
         "limit on one upstream call", NULL},
        {"token-ids", "AGL_RUNNER_TOKEN_IDS", AGL_OPT_STR, &token_ids, "on|off",
         "ask upstreams for return_token_ids (dropped when refused)", on_off},
        {"logprobs", "AGL_RUNNER_LOGPROBS", AGL_OPT_FLAG, &logprobs, NULL,
         "ask upstreams for logprobs", NULL},
        {"log-format", "AGL_RUNNER_LOG_FORMAT", AGL_OPT_STR, &log_format, "text|json",
         "log line format", log_formats},
        {"log-level", "AGL_RUNNER_LOG_LEVEL", AGL_OPT_STR, &log_level, "LEVEL",
         "debug, info, warn or error", log_levels},
        {NULL, NULL, 0, NULL, NULL, NULL, NULL},
    };
    agl_cli cli = {.prog = "runnerd",
                   .usage = "[options]",
                   .summary = "agl runner: workers that dequeue rollouts from stored, run agents "
                              "and report spans and rewards, and the LLM proxy that records "
                              "every model call of those agents.",
                   .epilog = "SIGTERM: finish the current rollouts, take no new one, exit 0. "
                             "A second SIGTERM aborts them as failed.",
                   .opts = opts};
    int rc = agl_config_parse(&cli, argc, argv, 1, NULL, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (cfg.workers < 1 || cfg.workers > 4096) {
        fprintf(stderr, "runnerd: --workers must be between 1 and 4096, not %ld\n", cfg.workers);
        return 2;
    }
    if (cfg.poll_interval <= 0 || cfg.heartbeat_interval < 0) {
        fprintf(stderr, "runnerd: --poll-interval must be > 0 and --heartbeat-interval >= 0\n");
        return 2;
    }
    if (!proxy_only && check_agent(cfg.agent)) return 2;
    agl_log_setup("runnerd", log_format, log_level);
    if (agl_http_global_init() != AGL_OK) {
        agl_error("cannot initialise libcurl");
        return 1;
    }

    /* Signals go to the loop below only; threads (and spawned agents) never see them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *key = getenv(cfg.upstream_key_env);
    proxy_opts po = {.listen = proxy_listen,
                     .public_url = proxy_public,
                     .store_url = cfg.store_url,
                     .upstream = upstream,
                     .api_key = key,
                     .token_ids = !strcmp(token_ids, "on"),
                     .logprobs = logprobs != 0,
                     .upstream_timeout_s = upstream_timeout};
    agl_error err;
    proxy *px = proxy_start(&po, &err);
    if (!px) {
        agl_error("%s", err.msg);
        return 1;
    }
    agl_info("LLM proxy on %s (upstream %s)", proxy_url(px),
             *upstream ? upstream : "from each rollout's main_llm");

    worker_pool *wp = NULL;
    if (!proxy_only) {
        wp = worker_pool_start(&cfg, px);
        agl_info("%ld worker(s) running agent %s against %s", cfg.workers, cfg.agent,
                 cfg.store_url);
    }
    agl_sd_notify("READY=1");
    int nsig = 0;
    for (;;) {
        if (wp && worker_pool_live(wp) == 0) break;
        struct timespec ts = {0, 200 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig < 0) continue;
        nsig++;
        if (!wp) break;
        if (nsig == 1) {
            agl_info("signal %d: draining (finishing current rollouts, taking no new one)", sig);
            runnerd_request_drain();
        } else {
            agl_warn("signal %d again: aborting current rollouts as failed", sig);
            runnerd_request_abort();
        }
    }
    if (wp) worker_pool_join(wp);
    proxy_stop(px);
    agl_info("stopped");
    return 0;
}
