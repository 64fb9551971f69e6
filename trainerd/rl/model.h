/* model — a Llama/Qwen2-family decoder in fp32 on the CPU (the reference path of issue 8).
 * RMSNorm, half-split RoPE, GQA attention with optional q/k/v bias, SwiGLU MLP, tied or separate
 * LM head. llm.c's layout: every per-layer tensor holds all L layers contiguously, parameters,
 * gradients and AdamW moments share one flat layout, activations live in one allocation.
 * Backward functions accumulate (+=) into gradients. OpenMP parallelises every kernel so that
 * each output element is summed by one thread in a fixed order: results do not depend on the
 * number of threads (needed for bitwise resume and for -np 2 == -np 1). */
#ifndef RL_MODEL_H
#define RL_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int vocab;    /* vocab_size */
    int hidden;   /* hidden_size C */
    int layers;   /* num_hidden_layers L */
    int heads;    /* num_attention_heads H */
    int kv_heads; /* num_key_value_heads (GQA when < heads) */
    int head_dim; /* D; hidden need not equal H*D */
    int inter;    /* intermediate_size */
    int max_seq;  /* max_position_embeddings: upper bound on T (KV cache size) */
    float rope_theta;
    float rms_eps;
    int qkv_bias;  /* Qwen2: bias on q, k, v (never on o) */
    int tie_embed; /* tie_word_embeddings */
} rl_config;

enum {
    RL_EMBED,
    RL_LN1,
    RL_WQ,
    RL_BQ,
    RL_WK,
    RL_BK,
    RL_WV,
    RL_BV,
    RL_WO,
    RL_LN2,
    RL_WG,
    RL_WU,
    RL_WD,
    RL_LNF,
    RL_HEAD,
    RL_NTENSORS
};

typedef struct {
    float *res;  /* (L+1, N, C) residual stream entering each layer; res[L] leaves the last */
    float *mid;  /* (L, N, C) after the attention residual */
    float *xn1;  /* (L, N, C) */
    float *rs1;  /* (L, N) reciprocal rms */
    float *q;    /* (L, N, H*D) after RoPE */
    float *k;    /* (L, N, KV*D) after RoPE */
    float *v;    /* (L, N, KV*D) */
    float *att;  /* (L, B, H, T, T) softmax probabilities */
    float *ao;   /* (L, N, H*D) attention output before o_proj */
    float *xn2;  /* (L, N, C) */
    float *rs2;  /* (L, N) */
    float *g;    /* (L, N, I) gate pre-activation */
    float *u;    /* (L, N, I) up */
    float *h;    /* (L, N, I) silu(g)*u */
    float *xf;   /* (N, C) final norm output */
    float *rsf;  /* (N) */
    float *prob; /* (N, V) softmax of the logits */
    float *logp; /* (N) log-prob of the target token (0 where target < 0) */
    float *ent;  /* (N) entropy of the distribution */
} rl_acts;

typedef struct {
    rl_config cfg;
    size_t sizes[RL_NTENSORS];
    size_t nparams;
    float *params, *grads, *m, *v; /* one flat layout each */
    float *t[RL_NTENSORS];         /* views into params */
    float *gt[RL_NTENSORS];        /* views into grads */
    long step;                     /* AdamW steps taken */
    float *rope_cos, *rope_sin;    /* (max_seq, D/2) */
    /* activations of the last forward, sized for B x T */
    int B, T;
    rl_acts a;
    float *act_mem, *scratch;
    size_t act_n, scratch_n;
    const int *tokens, *targets; /* borrowed for backward */
    /* the softmax's support: ids outside [support_lo, support_hi) get probability 0 (and no
     * gradient); support_hi 0 = all ids. The RL loops set it to the ids the sampler can draw
     * (rl_sample_support), so the trained policy is the one that generates. */
    int support_lo, support_hi;
} rl_model;

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
} rl_adamw;

/* Tensor names as in HF Qwen2/Llama safetensors; "%d" is the layer index. */
extern const char *const rl_tensor_names[RL_NTENSORS];

/* Checks the config; returns NULL when valid, else a message. */
const char *rl_config_check(const rl_config *c);
/* Fills a config from a JSON object (HF config.json keys). Returns 0 or -1 with *err set. */
struct json_t;
int rl_config_from_json(rl_config *c, struct json_t *obj, const char **err);
struct json_t *rl_config_to_json(const rl_config *c);

/* Allocates a model (parameters zero). Caller frees with rl_model_free. */
rl_model *rl_model_new(const rl_config *c);
void rl_model_free(rl_model *m);
/* Random init: matrices N(0, 0.02) (o_proj and down_proj scaled by 1/sqrt(2L)), norms 1,
 * biases 0, from the given RNG state. */
void rl_model_init(rl_model *m, uint64_t *rng);
/* Element count of tensor kind `kind` for one layer (the whole tensor for non-layer kinds). */
size_t rl_tensor_layer_size(const rl_model *m, int kind);
int rl_tensor_is_layered(int kind);

/* Training forward on B sequences of length T (right-padded; pad tokens need no special id).
 * targets[n] is the next-token id to score at position n, or -1 (an id outside the support
 * scores -inf). Fills a.logp and a.ent. */
void rl_model_forward(rl_model *m, const int *tokens, const int *targets, int B, int T);
/* Backward from dL/dlogp per position (dlogp[n] must be 0 where targets[n] < 0);
 * accumulates into grads. */
void rl_model_backward(rl_model *m, const float *dlogp);
void rl_model_zero_grad(rl_model *m);
/* Global L2 norm of the gradient. */
double rl_model_grad_norm(const rl_model *m);
/* Scales the gradient by min(1, clip/norm) when clip > 0, then one AdamW step (decoupled
 * weight decay on matrices only, bias correction). Returns the pre-clip gradient norm. */
double rl_model_adamw(rl_model *m, const rl_adamw *opt);

/* ---- generation with a KV cache ---- */
typedef struct {
    float *k, *v; /* (L, cap, KV*D) */
    int len;      /* positions filled */
    int cap;      /* positions it holds (<= max_seq) */
} rl_kv;

void rl_kv_init(rl_kv *kv, const rl_config *c);
/* A cache for at most cap positions (clamped to [1, max_seq]): what a server needs for one
 * sequence of prompt + max_tokens instead of the model's whole context. */
void rl_kv_init_cap(rl_kv *kv, const rl_config *c, int cap);
void rl_kv_free(rl_kv *kv);
/* Scratch floats one rl_model_step call needs. */
size_t rl_step_scratch_size(const rl_config *c);
/* Feeds one token at position kv->len (< kv->cap), writes the next-token logits (V) when logits !=
 * NULL, and advances the cache. Thread-safe across distinct kv/scratch (reads the model only). */
void rl_model_step(const rl_model *m, rl_kv *kv, int token, float *logits, float *scratch);

/* ---- RNG (xorshift64*, checkpointable as one u64) ---- */
uint64_t rl_rng_u64(uint64_t *s);
float rl_rng_uniform(uint64_t *s); /* [0, 1) */
float rl_rng_normal(uint64_t *s);

#endif
