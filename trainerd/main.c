/* trainerd — the algorithm side of agl: `trainerd apo|rl|sft [options]`. main() dispatches to
 * the subcommand, which parses its own options (see `trainerd SUBCOMMAND --help`). */
#include "agl_config.h"
#include "trainerd.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} subcommands[] = {
    {"apo", trainerd_apo_main, "automatic prompt optimisation (beam search with an LLM critic)"},
    {"rl", trainerd_rl_main, "GRPO reinforcement learning of a policy model"},
    {"sft", trainerd_sft_main, "supervised fine-tuning"},
    {"serve", trainerd_serve_main, "OpenAI-compatible policy server (token ids, log-probs)"},
    {"model", trainerd_model_main, "inspect a real checkpoint: info, tokenize, logits, generate"},
    {"bench", trainerd_bench_main, "time training steps of the CPU decoder (bench_train.py)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: trainerd SUBCOMMAND [options]\n\nagl trainer. Subcommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-6s %s\n", subcommands[i].name, subcommands[i].what);
    fprintf(out, "\n  --help     show this help and exit\n  --version  show the version and "
                 "exit\n  --log-format text|json  (per subcommand)\n\n"
                 "`trainerd SUBCOMMAND --help` lists the options of each.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(
            stderr,
            "trainerd: expected a subcommand: apo, rl, sft, serve, model or bench (see --help)\n");
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("trainerd (agl) %s\n", agl_version);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(argv[1], subcommands[i].name)) return subcommands[i].run(argc - 1, argv + 1);
    if (argv[1][0] == '-')
        fprintf(stderr, "trainerd: unknown option '%s' (see --help)\n", argv[1]);
    else
        fprintf(stderr,
                "trainerd: unknown subcommand '%s': expected apo, rl, sft, serve, model or bench\n",
                argv[1]);
    return 2;
}
