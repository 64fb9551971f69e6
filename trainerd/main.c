/* trainerd — the algorithm side of agl (apo, rl, sft). This build provides the command-line
 * surface; the algorithms are tracked in issues 7 and 8 and refuse to start until they land. */
#include "agl_config.h"
#include "agl_log.h"

#include <stdio.h>
#include <string.h>

static const char *const log_formats[] = {"text", "json", NULL};

int main(int argc, char **argv)
{
    const char *store = "http://127.0.0.1:4747", *log_format = "text";
    agl_option opts[] = {
        {"store", "AGL_TRAINER_STORE", AGL_OPT_STR, &store, "URL", "stored base URL", NULL},
        {"log-format", "AGL_TRAINER_LOG_FORMAT", AGL_OPT_STR, &log_format, "text|json",
         "log line format", log_formats},
        {NULL, NULL, 0, NULL, NULL, NULL, NULL},
    };
    agl_cli cli = {.prog = "trainerd",
                   .usage = "apo|rl|sft [options]",
                   .summary = "agl trainer: apo (prompt optimisation), rl (GRPO), sft.",
                   .epilog = NULL,
                   .opts = opts};
    char **rest;
    int nrest;
    int rc = agl_config_parse(&cli, argc, argv, 1, &rest, &nrest);
    if (rc) return rc == 1 ? 0 : 2;
    if (nrest != 1 || (strcmp(rest[0], "apo") && strcmp(rest[0], "rl") && strcmp(rest[0], "sft"))) {
        fprintf(stderr, "trainerd: expected one algorithm: apo, rl or sft (see --help)\n");
        return 2;
    }
    agl_log_setup("trainerd", log_format, NULL);
    agl_error("trainerd %s is not part of this build yet (tracked in issues 7 and 8)", rest[0]);
    return 1;
}
