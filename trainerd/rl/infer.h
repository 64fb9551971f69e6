/* infer — the inference-only decoder of `trainerd serve` and `trainerd model` (issue 9): a Q8_0
 * copy of a model's matrices (qmatmul.h; norms, biases, embeddings and RoPE tables stay the fp32
 * model's) and a batched KV-cache step that reads each weight once per step for all the rows of
 * the batch, parallel over OpenMP threads within each matrix.
 *
 * The fp32 decoder (rl_model_step, rl_model_forward) is untouched and stays what the trainer
 * uses: `trainerd rl` must score its samples with exactly the numbers it trains on. This copy is
 * an approximation (per-block int8 weights and activations, llama.cpp's Q8_0 scheme); the
 * integration tests bound its distance to fp32 on SmolLM2. A row's numbers do not depend on the
 * other rows of its batch, so batching does not change what a sequence generates. */
#ifndef RL_INFER_H
#define RL_INFER_H

#include "model.h"

#include <stddef.h>

typedef enum { RL_INFER_FP32, RL_INFER_Q8_0 } rl_infer_dtype;

/* "fp32" / "q8_0"; returns 0, or -1 for another name. */
int rl_infer_dtype_parse(const char *s, rl_infer_dtype *d);
const char *rl_infer_dtype_name(rl_infer_dtype d);

typedef struct rl_infer rl_infer;

/* Quantises m's matrices. m must outlive the result and is read by every step (embeddings,
 * norms, biases, RoPE). Returns NULL with a message in err when a matrix's inner dimension is not
 * a multiple of 32 (hidden, heads * head_dim, intermediate). Free with rl_infer_free. */
rl_infer *rl_infer_new(const rl_model *m, char *err, size_t errlen);
/* Quantises m's matrices again, after they changed (an optimizer step). */
void rl_infer_refresh(rl_infer *inf);
void rl_infer_free(rl_infer *inf);
/* Bytes of the quantised copy. */
size_t rl_infer_bytes(const rl_infer *inf);

typedef struct {
    rl_kv *kv;     /* the sequence's cache (rl_kv_init_cap with the model's config) */
    int token;     /* fed at the next position of kv */
    float *logits; /* vocab floats written when not NULL */
} rl_infer_row;

/* Feeds n rows. The rows of one sequence are adjacent and in order: a sequence's first row goes
 * to position kv->len, the next to kv->len + 1, ... (a whole prompt is one call), and each kv->len
 * advances past its rows; every position must be < kv->cap. Uses inf's scratch: one call at a
 * time per rl_infer. */
void rl_infer_step(rl_infer *inf, const rl_infer_row *rows, int n);

#endif
