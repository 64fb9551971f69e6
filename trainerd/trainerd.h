/* trainerd — the algorithm side of agl. Each algorithm is a subcommand with its own options;
 * main.c only dispatches. */
#ifndef TRAINERD_H
#define TRAINERD_H

/* argv[0] is the subcommand name ("apo", "rl", "sft", "serve", "model", "bench"); the return value
 * is the exit status. */
int trainerd_apo_main(int argc, char **argv);
int trainerd_rl_main(int argc, char **argv);
int trainerd_sft_main(int argc, char **argv);
int trainerd_serve_main(int argc, char **argv);
int trainerd_model_main(int argc, char **argv);
int trainerd_bench_main(int argc, char **argv);

#endif
