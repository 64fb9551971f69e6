/* rl_int — what rl.c (sft, in-process rl), loop_store.c (rl through stored + runnerd) and
 * server.c (the policy server) share inside trainerd/rl: options, data, batches, the run state
 * and the sampling helpers. Internal to trainerd; not a library interface. */
#ifndef RL_INT_H
#define RL_INT_H

#include "ckpt.h"
#include "grpo.h"
#include "model.h"
#include "tok.h"

#include <stdint.h>

/* ---------------------------------------------------------------- options */
typedef struct {
    const char *model, *data, *val, *out, *resume, *log_path, *tokenizer, *dump_check;
    int steps, batch, prompts, group, max_new, threads, save_every, val_every, val_n;
    int norm_std, shuffle_rewards, quiet, keep_optimizer;
    uint64_t seed;
    float temperature, top_p, adv_eps;
    rl_adamw opt;
    rl_grpo_cfg grpo;
    /* trainerd rl --store / trainerd serve */
    const char *store, *listen, *serve_url, *model_name, *serve_log, *adapter;
    const char *resources;   /* JSON object of resources published beside main_llm (--store) */
    double rollout_timeout;  /* seconds a step waits for its rollouts (0 = no limit) */
    int max_batch;           /* sequences the policy server decodes together */
    const char *infer_dtype; /* trainerd serve: fp32 | q8_0 (NULL = fp32) */
    /* real checkpoints (GGUF file / HF folder, pretrained.h) */
    int max_seq;               /* cap on the context (default 2048 for real checkpoints) */
    const char *chat_template; /* chatml | llama3: override the checkpoint's */
    int raw_prompts;           /* data prompts are not wrapped in the chat template */
} rl_opts;

/* Parses the options of `trainerd CMD` ("sft", "rl", "serve"); prints and returns -1 on error. */
int rl_parse_opts(const char *cmd, int argc, char **argv, rl_opts *o);

/* ---------------------------------------------------------------- data */
typedef struct {
    int *p, np; /* prompt ids (BOS prepended) */
    int *r, nr; /* response / answer ids (EOS appended) */
} rl_example;

typedef struct {
    rl_example *ex;
    int n;
} rl_dataset;

/* Reads JSONL with keys "prompt" and `rkey`. Char tokenizers: BOS + prompt, response + EOS.
 * A real checkpoint's tokenizer: the prompt rendered as one user turn of its chat template
 * (unless chat is 0 or it has none; then BOS when the checkpoint adds one), the response followed
 * by the end-of-turn token (eos without a template). Returns 0 or -1 (message printed). */
int rl_dataset_load(rl_dataset *d, const char *path, const rl_tok *tok, const char *rkey,
                    int max_seq, int chat);
void rl_dataset_free(rl_dataset *d);

/* A batch of sequences [prompt ; response], right-padded to T. Targets score response tokens. */
typedef struct {
    int B, T;
    int *tokens, *targets;
    float *mask; /* 1 where targets[n] is a response token */
} rl_batch;

void rl_batch_build(rl_batch *bt, int B, const int *const *prompt, const int *np,
                    const int *const *resp, const int *nr);
void rl_batch_free(rl_batch *bt);

/* ---------------------------------------------------------------- run state */
struct rl_pretrained;
typedef struct {
    rl_model *m;
    rl_tok tok;
    struct rl_pretrained *pre; /* a real checkpoint's tokenizer and metadata, or NULL; owns m */
    uint64_t state[RL_STATE_WORDS]; /* [0] data RNG, [1] steps done */
} rl_run;

/* Loads --model/--resume (and the tokenizer); returns 0 or -1 (message printed). */
int rl_run_open(rl_run *r, const rl_opts *o);
/* Saves a checkpoint into dir on rank 0 (a real checkpoint as an HF folder with its tokenizer,
 * rl_pretrained_save). Returns 0 or -1 (message printed). */
int rl_run_save(rl_run *r, const rl_opts *o, const char *dir);
/* Frees the model (and the real checkpoint's tokenizer). */
void rl_run_close(rl_run *r);

/* ---------------------------------------------------------------- sampling */
uint64_t rl_mix64(uint64_t x);
/* The ids the sampler may draw, [lo, hi): never ids past the tokenizer's vocabulary (a model's
 * vocab padded for its matrices), and for char tokenizers never pad and bos. The RL loops train
 * the softmax over exactly these ids (rl_model.support_lo/hi): a policy that puts mass on ids it
 * never samples is not the one that generated the batch (issue 8: through the store, the mass on
 * the never-sampled ids grew to ~17% and learning stalled). */
void rl_sample_support(const rl_tok *tok, int V, int *lo, int *hi);
/* Samples one id from logits (logits are modified): only ids in rl_sample_support.
 * temperature 0 = greedy. Returns the id and its log-prob under the temperature-scaled
 * distribution. */
int rl_sample(float *logits, int V, const rl_tok *tok, float temp, float top_p, uint64_t *rng,
              float *lp);
/* In-process batched generation (see rl.c); stops at rl_tok_is_stop. */
void rl_generate(const rl_model *m, const rl_tok *tok, int n, int base, const int *const *prompt,
                 const int *np, int max_new, float temp, float top_p, uint64_t seed, int *out,
                 int *len, float *lps);
/* Built-in verifier: matched positions of answer+EOS over its length. */
float rl_verify(const int *resp, int nr, const rl_example *e, int *exact);
/* Greedy evaluation on up to n examples: mean reward and exact-match fraction. */
void rl_evaluate(const rl_model *m, const rl_tok *tok, const rl_dataset *d, int n, int max_new,
                 double *reward, double *exact);
double rl_now_s(void);

/* `trainerd rl --store URL`: the loop through stored + runnerd (loop_store.c). */
int rl_store_main(rl_opts *o);

#endif
