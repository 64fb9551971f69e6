/* pretrained — real checkpoints for the fp32 decoder of model.h: a GGUF file (llama.cpp) or a
 * HuggingFace folder (config.json + *.safetensors + tokenizer.json), Llama or Qwen2
 * architecture. Loads weights (dequantised to fp32), the byte-level BPE tokenizer, the special
 * token ids and the chat template into one bundle. */
#ifndef RL_PRETRAINED_H
#define RL_PRETRAINED_H

#include "bpe.h"
#include "chat.h"
#include "gguf.h" /* RL_ERRLEN */
#include "model.h"

typedef struct rl_pretrained {
    rl_model *model;
    rl_bpe *bpe;
    rl_chat chat; /* kind RL_CHAT_NONE when the checkpoint has no template it recognises */
    char *chat_template_src; /* the checkpoint's Jinja text, or NULL; owned */
    int bos, eos, pad, unk;  /* -1 when absent */
    int eot;                 /* id of the chat template's end-of-turn token, or -1 */
    int add_bos;             /* prepend bos when encoding a prompt */
    char arch[32];           /* "llama", "qwen2" */
    char format[16];         /* "gguf", "safetensors" */
    int context;             /* the checkpoint's context length (before any --max-seq cap) */
    char *src_dir;           /* the HF folder it came from (its tokenizer files are copied on
                                save), or NULL for a GGUF; owned */
} rl_pretrained;

typedef struct {
    int max_seq;               /* > 0: cap the context (KV cache / RoPE tables) to this many */
    const char *chat_template; /* "chatml" / "llama3" override, or NULL */
} rl_pretrained_opts;

/* Loads path: a .gguf file, or a folder with config.json. Returns 0, or -1 with err filled
 * (names the unsupported architecture / tensor type / tokenizer when that is the reason).
 * Free with rl_pretrained_free. */
int rl_pretrained_load(rl_pretrained *p, const char *path, const rl_pretrained_opts *o, char *err);
void rl_pretrained_free(rl_pretrained *p);
/* Whether path looks like a real checkpoint (a .gguf file, or a folder with tokenizer.json)
 * rather than an agl checkpoint / config of model.h. */
int rl_pretrained_detect(const char *path);

/* Encodes a prompt the way the checkpoint expects (bos first when add_bos), special tokens in
 * the text parsed. Caller frees the array. */
int *rl_pretrained_encode(const rl_pretrained *p, const char *text, int *n);
/* Whether id ends generation (eos or the chat end-of-turn token). */
int rl_pretrained_is_stop(const rl_pretrained *p, int id);

/* A tokenizer (tok.h) over p's BPE, special ids and chat template; p must outlive it. */
struct rl_tok;
void rl_tok_from_pretrained(struct rl_tok *t, const rl_pretrained *p);

/* Encodes a prompt for training / serving: with a chat template (kind != RL_CHAT_NONE) and
 * chat set, the text is rendered as one user turn plus the generation prompt; otherwise bos (when
 * the checkpoint adds one) + text. Special tokens in the text are parsed, as `tokenizers` does. */
int *rl_pretrained_encode_prompt(const rl_pretrained *p, const char *text, int chat, int *n);

/* Saves m (weights trained from p) as a HuggingFace folder dir: model.safetensors (F32, HF
 * names), config.json (model_type = p->arch, the original context length, bos/eos ids),
 * tokenizer.json + tokenizer_config.json (copied from the source folder, or written from the
 * GGUF's vocabulary, merges, pre-tokenizer, special tokens and chat template), and
 * trainer_state.bin when state != NULL. Reloads with rl_pretrained_load, no GGUF needed.
 * Returns 0, or -1 with err filled. */
int rl_pretrained_save(const char *dir, const rl_pretrained *p, const rl_model *m,
                       const uint64_t *state, char *err);

/* Internal to the loaders (pretrained.c, hf.c). */
int rl_pretrained_finish(rl_pretrained *p, const rl_pretrained_opts *o, char *err);
int rl_hf_load(rl_pretrained *p, const char *dir, const rl_pretrained_opts *o, char *err);
/* Pre-tokenizer named by llama.cpp's tokenizer.ggml.pre, or -1. */
int rl_pretok_from_gguf_name(const char *pre, int *ignore_merges);

#endif
