/* runnerd — the worker side of agl: workers that pull rollouts from stored and run agents,
 * and the LLM proxy that records every call. This build provides the command-line surface;
 * the worker pool and proxy are tracked in issue 6 and refuse to start until they land. */
#include "agl_config.h"
#include "agl_log.h"

#include <stdio.h>

static const char *const log_formats[] = {"text", "json", NULL};

int main(int argc, char **argv)
{
    const char *store = "http://127.0.0.1:4747", *agent = "prompt", *log_format = "text";
    long workers = 1;
    agl_option opts[] = {
        {"store", "AGL_RUNNER_STORE", AGL_OPT_STR, &store, "URL", "stored base URL", NULL},
        {"workers", "AGL_RUNNER_WORKERS", AGL_OPT_INT, &workers, "N", "number of workers", NULL},
        {"agent", "AGL_RUNNER_AGENT", AGL_OPT_STR, &agent, "KIND[:ARG]",
         "agent to run: prompt, exec:COMMAND or http:URL", NULL},
        {"log-format", "AGL_RUNNER_LOG_FORMAT", AGL_OPT_STR, &log_format, "text|json",
         "log line format", log_formats},
        {NULL, NULL, 0, NULL, NULL, NULL, NULL},
    };
    agl_cli cli = {.prog = "runnerd",
                   .usage = "[options]",
                   .summary = "agl runner: workers that dequeue rollouts from stored, run agents "
                              "and report spans and rewards.",
                   .epilog = NULL,
                   .opts = opts};
    int rc = agl_config_parse(&cli, argc, argv, 1, NULL, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    agl_log_setup("runnerd", log_format, NULL);
    agl_error("the worker pool is not part of this build yet (tracked in issue 6)");
    return 1;
}
