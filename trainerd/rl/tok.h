/* tok — the tokenizer interface of the trainer and its small char/byte tokenizer for models
 * trained from random init. Ids 0..2 are pad, bos, eos; then one id per character of the
 * alphabet ("chars:0123456789=" or "bytes" for all 256 byte values). A real checkpoint's
 * byte-level BPE tokenizer (pretrained.h) plugs in through `pre` (rl_tok_from_pretrained): then
 * bos/eos/eot/pad are the checkpoint's ids, nothing is excluded from sampling, and callers use
 * the BPE functions for text (rl_tok_encode/decode are for the char tokenizers only). */
#ifndef RL_TOK_H
#define RL_TOK_H

#include <stddef.h>

struct rl_pretrained;

enum { RL_TOK_PAD = 0, RL_TOK_BOS = 1, RL_TOK_EOS = 2 };

typedef struct rl_tok {
    char spec[300]; /* what rl_tok_new was given; saved into checkpoints */
    int vocab;      /* 3 + alphabet size */
    int nchars;
    unsigned char chars[256]; /* id - 3 -> byte */
    int id_of[256];           /* byte -> id, or -1 */
    /* ids of the special tokens: RL_TOK_* for the char tokenizers, the checkpoint's for BPE;
     * -1 when absent. eot = the chat template's end-of-turn token. */
    int pad, bos, eos, eot;
    const struct rl_pretrained *pre; /* non-NULL: a real checkpoint's BPE + chat template */
} rl_tok;

/* Whether id ends generation (eos, or the chat end-of-turn token). */
static inline int rl_tok_is_stop(const rl_tok *t, int id)
{
    return id == t->eos || (t->eot >= 0 && id == t->eot);
}

/* spec: "bytes" or "chars:<alphabet>". Returns 0, or -1 with *err set. */
int rl_tok_init(rl_tok *t, const char *spec, const char **err);
/* Encodes len bytes of text into out (capacity cap). Returns the count, or -1 if a byte is
 * outside the alphabet or cap is too small. */
int rl_tok_encode(const rl_tok *t, const char *text, size_t len, int *out, int cap);
/* Appends the bytes of token id to out (capacity cap, NUL-terminated); special tokens decode to
 * nothing. Returns bytes written. */
int rl_tok_decode(const rl_tok *t, int id, char *out, int cap);

#endif
