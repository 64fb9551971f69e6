/* bench — `trainerd bench train`: times full training steps of the CPU decoder (forward,
 * backward, AdamW with global-norm clipping) on random tokens, for tests/bench/bench_train.py,
 * which runs the same step in PyTorch beside it. Prints one JSON object on stdout. Generation
 * is measured through the policy server (`trainerd serve`) by the same script. */
#include "../trainerd.h"

#include "agl_alloc.h"
#include "ckpt.h"
#include "gemm.h"
#include "model.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: trainerd bench train --model CONFIG.json|CKPT [options]\n\n"
               "  --batch B      sequences per step (default 8)\n"
               "  --seq T        positions per sequence (default: the model's max, at most 256)\n"
               "  --steps N      timed steps (default 5)\n"
               "  --warmup N     untimed steps first (default 1)\n"
               "  --seed S       init and token seed (default 1)\n"
               "Threads: OMP_NUM_THREADS. Prints a JSON object: params, tokens per step, the\n"
               "time of each timed step split into forward / backward / AdamW, tokens/s.\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int bench_train(const char *model, int B, int T, int steps, int warmup, uint64_t seed)
{
    const char *err = NULL;
    rl_model *m = rl_ckpt_load(model, NULL, NULL, NULL, &err);
    if (!m) {
        fprintf(stderr, "trainerd bench: %s\n", err);
        return 1;
    }
    uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    FILE *f = fopen(model, "r"); /* a config.json: random weights, as trainerd rl would start */
    if (f) {
        char c0 = 0;
        if (fread(&c0, 1, 1, f) == 1 && c0 == '{') rl_model_init(m, &rng);
        fclose(f);
    }
    const rl_config *c = &m->cfg;
    if (T <= 0) T = c->max_seq < 256 ? c->max_seq : 256;
    if (T > c->max_seq) {
        fprintf(stderr, "trainerd bench: --seq %d exceeds max_position_embeddings %d\n", T,
                c->max_seq);
        rl_model_free(m);
        return 2;
    }
    int N = B * T;
    int *tok = agl_malloc(sizeof(int) * (size_t)N), *tgt = agl_malloc(sizeof(int) * (size_t)N);
    float *dlogp = agl_malloc(sizeof(float) * (size_t)N);
    for (int n = 0; n < N; n++) tok[n] = (int)(rl_rng_u64(&rng) % (uint64_t)c->vocab);
    /* next-token loss at every position but each sequence's last: loss = mean NLL */
    int scored = 0;
    for (int n = 0; n < N; n++) {
        tgt[n] = (n % T == T - 1) ? -1 : tok[n + 1];
        scored += tgt[n] >= 0;
    }
    for (int n = 0; n < N; n++) dlogp[n] = tgt[n] >= 0 ? -1.0f / (float)scored : 0.0f;
    rl_adamw opt = {.lr = 1e-4f,
                    .beta1 = 0.9f,
                    .beta2 = 0.95f,
                    .eps = 1e-8f,
                    .weight_decay = 0.1f,
                    .grad_clip = 1.0f};
    double tf = 0, tb = 0, to = 0, loss = 0;
    printf("{\"params\":%zu,\"batch\":%d,\"seq\":%d,\"tokens_per_step\":%d,\"threads\":%d,"
           "\"gemm_kernel\":\"%s\",\"step_s\":[",
           m->nparams, B, T, N,
#ifdef _OPENMP
           omp_get_max_threads(),
#else
           1,
#endif
           rl_gemm_kernel_name());
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_s();
        rl_model_forward(m, tok, tgt, B, T);
        double t1 = now_s();
        rl_model_zero_grad(m);
        rl_model_backward(m, dlogp);
        double t2 = now_s();
        rl_model_adamw(m, &opt);
        double t3 = now_s();
        if (s < warmup) continue;
        printf(s > warmup ? ",%.6f" : "%.6f", t3 - t0);
        tf += t1 - t0, tb += t2 - t1, to += t3 - t2;
        loss = 0;
        for (int n = 0; n < N; n++) loss -= tgt[n] >= 0 ? m->a.logp[n] : 0.0f;
        loss /= scored;
    }
    double tot = tf + tb + to;
    printf("],\"forward_s\":%.6f,\"backward_s\":%.6f,\"adamw_s\":%.6f,\"tokens_per_s\":%.3f,"
           "\"last_loss\":%.6f}\n",
           tf / steps, tb / steps, to / steps, steps > 0 && tot > 0 ? N * steps / tot : 0.0, loss);
    free(tok), free(tgt), free(dlogp);
    rl_model_free(m);
    return 0;
}

int trainerd_bench_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train")) {
        fprintf(stderr, "trainerd bench: unknown benchmark '%s' (train)\n", argv[1]);
        return 2;
    }
    const char *model = NULL;
    int B = 8, T = 0, steps = 5, warmup = 1;
    long seed = 1;
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},  {"batch", required_argument, 0, 'b'},
        {"seq", required_argument, 0, 't'},    {"steps", required_argument, 0, 'n'},
        {"warmup", required_argument, 0, 'w'}, {"seed", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc - 1, argv + 1, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'm':
            model = optarg;
            break;
        case 'b':
            B = atoi(optarg);
            break;
        case 't':
            T = atoi(optarg);
            break;
        case 'n':
            steps = atoi(optarg);
            break;
        case 'w':
            warmup = atoi(optarg);
            break;
        case 's':
            seed = atol(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!model || B < 1 || steps < 1 || warmup < 0) {
        fprintf(stderr, "trainerd bench: --model is required; --batch and --steps must be >= 1\n");
        return 2;
    }
    return bench_train(model, B, T, steps, warmup, (uint64_t)seed);
}
