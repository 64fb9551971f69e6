/* ckpt — checkpoints: a directory holding model.safetensors (HF Qwen2 tensor names, F32),
 * config.json (HF keys plus "agl_tokenizer") and trainer_state.bin (AdamW moments, step and the
 * trainer's RNG/data state) so that a run resumes bit-for-bit. safetensors per the format's
 * README: u64 LE header length, JSON header padded with spaces to 8 bytes, hole-free data. */
#ifndef RL_CKPT_H
#define RL_CKPT_H

#include "model.h"

#include <stdint.h>

#define RL_STATE_WORDS 8 /* trainer state words saved beside the optimizer */

/* Writes f32 tensors to path. names/shapes/data arrays of n entries; ndims[i] <= 4. */
int rl_safetensors_write(const char *path, int n, const char *const *names, const int *ndims,
                         const long (*shapes)[4], const float *const *data, const char *meta_json);

/* Saves model + config + tokenizer spec (+ optimizer state and `state` words when state != NULL)
 * into dir (created). Returns 0 or -1 with *err set (static string). */
int rl_ckpt_save(const char *dir, const rl_model *m, const char *tok_spec, const uint64_t *state,
                 const char **err);
/* Loads a checkpoint dir, or a config.json file for a fresh (zero) model. Returns a new model
 * (caller frees) and fills tok_spec (cap 300) when the config names one. When state != NULL and
 * the dir has trainer_state.bin, restores AdamW moments, step and state words; *has_state says
 * whether it did. */
rl_model *rl_ckpt_load(const char *path, char *tok_spec, uint64_t *state, int *has_state,
                       const char **err);
/* Restores AdamW moments, step and the state words from dir/trainer_state.bin into m. Returns 0
 * (*has_state = whether the file exists) or -1 with *err set when it does not match m. */
int rl_ckpt_load_state(const char *dir, rl_model *m, uint64_t *state, int *has_state,
                       const char **err);

#endif
