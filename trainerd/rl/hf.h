/* hf — HuggingFace checkpoint folders: config.json (model_type llama / qwen2), model.safetensors
 * or sharded model-*.safetensors with model.safetensors.index.json (F32, BF16, F16), and
 * tokenizer.json (+ tokenizer_config.json for the chat template and special tokens). The loader
 * itself is rl_hf_load (pretrained.h); this header exposes the pieces tests use. */
#ifndef RL_HF_H
#define RL_HF_H

#include "bpe.h"

#include <stddef.h>
#include <stdint.h>

/* A mmap'ed safetensors file. */
typedef struct rl_st rl_st;
rl_st *rl_st_open(const char *path, char *err);
void rl_st_close(rl_st *s);
/* Copies tensor `name` as fp32 into out (numel floats) after checking its element count.
 * Returns 0, 1 when the file has no such tensor, or -1 with err filled. */
int rl_st_read_f32(const rl_st *s, const char *name, float *out, size_t numel, char *err);
int rl_st_has(const rl_st *s, const char *name);

/* Builds a tokenizer from a parsed tokenizer.json (a json_t *). Returns NULL with err filled
 * (naming the unsupported model type / pre-tokenizer). */
struct json_t;
rl_bpe *rl_hf_tokenizer(struct json_t *tj, char *err);
rl_bpe *rl_hf_tokenizer_file(const char *path, char *err);
/* A tokenizer.json (json_t *, caller decrefs) for b: BPE model (vocab, merges in rank order as
 * pairs, ignore_merges, byte_fallback, unk), added tokens, the pre-tokenizer chain of b's family
 * and the ByteLevel decoder — what rl_hf_tokenizer reads back to the same tokenizer and what
 * HuggingFace `tokenizers` loads. */
struct json_t *rl_hf_tokenizer_to_json(const rl_bpe *b);

#endif
