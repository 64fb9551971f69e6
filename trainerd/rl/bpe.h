/* bpe — byte-level BPE tokenizer identical to HuggingFace `tokenizers` for the GPT-2 family
 * (GPT-2, SmolLM/StarCoder, Qwen2, Llama 3): added/special tokens split out first (longest
 * match), the model's pre-tokenizer regex implemented as a hand-written scanner over Unicode
 * classes, GPT-2's byte-to-unicode alphabet, merges applied lowest rank first, optional byte
 * fallback, and decoding back to bytes (lossy UTF-8 only where a token sequence is invalid),
 * including a streaming decoder that holds back a partial UTF-8 character between tokens.
 * Normalizers: none or NFC (Qwen2), run where `tokenizers` runs them (between added tokens).
 * Not supported: other normalizers, sentencepiece/Metaspace vocabularies, dropout,
 * lstrip/rstrip on added tokens. */
#ifndef RL_BPE_H
#define RL_BPE_H

#include "agl_buf.h"

#include <stddef.h>

/* Pre-tokenizers (what runs between added-token splitting and BPE). */
enum {
    RL_PRE_GPT2,        /* ByteLevel(use_regex): 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
                           ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    RL_PRE_DIGITS_GPT2, /* Digits(individual_digits) then the GPT-2 regex (SmolLM, StarCoder) */
    RL_PRE_QWEN2,       /* cl100k-style regex with single digits \p{N} (Qwen2) */
    RL_PRE_LLAMA3,      /* cl100k-style regex with \p{N}{1,3} (Llama 3) */
    RL_PRE_COUNT
};

/* Normalizers (what runs on the text between added tokens, before pre-tokenising). */
enum {
    RL_NORM_NONE,
    RL_NORM_NFC, /* Unicode NFC (tokenizer.json "normalizer": {"type": "NFC"}) */
};

typedef struct rl_bpe rl_bpe;

/* Builder: a tokenizer for `vocab` ids with pre-tokenizer `pretok`. Set every token string (in
 * the byte-level alphabet, as vocabularies store them), mark added tokens, add merges in rank
 * order, then rl_bpe_finish. Caller frees with rl_bpe_free. */
rl_bpe *rl_bpe_new(int vocab, int pretok);
void rl_bpe_free(rl_bpe *b);
void rl_bpe_set_token(rl_bpe *b, int id, const char *s, size_t len);
/* Marks id as an added token (matched verbatim in the text before pre-tokenising); special
 * ones are dropped by decode when skip_special is set. */
void rl_bpe_set_added(rl_bpe *b, int id, int special);
/* Marks added token id as normalized (tokenizer.json "normalized": true): it is matched in the
 * normalized text, after the added tokens that are not (the default), and by its own normalized
 * content. Set before rl_bpe_finish. */
void rl_bpe_set_added_normalized(rl_bpe *b, int id, int normalized);
/* Sets the normalizer (RL_NORM_*; RL_NORM_NONE by default). Set before rl_bpe_finish. */
void rl_bpe_set_normalizer(rl_bpe *b, int norm);
/* Appends a merge "left right" (rank = number of merges added before). */
void rl_bpe_add_merge(rl_bpe *b, const char *l, size_t ll, const char *r, size_t rl);
/* ignore_merges: a pre-token that is itself in the vocabulary is one token (Llama 3).
 * byte_fallback: bytes without a token become "<0xHH>" tokens. unk: id for unknown, or -1. */
void rl_bpe_set_options(rl_bpe *b, int ignore_merges, int byte_fallback, int unk);
/* Builds the lookup tables. Returns 0, or -1 with err (RL_ERRLEN bytes) filled: missing token
 * strings, duplicates, merges naming unknown tokens are reported with the offending entry. */
int rl_bpe_finish(rl_bpe *b, char *err);

int rl_bpe_vocab(const rl_bpe *b);
int rl_bpe_pretok(const rl_bpe *b);
const char *rl_bpe_pretok_name(int pretok);
/* Id of the token whose vocabulary string is s, or -1. */
int rl_bpe_token_id(const rl_bpe *b, const char *s);
/* The vocabulary string of id (byte-level alphabet), or NULL. */
const char *rl_bpe_token_str(const rl_bpe *b, int id);
int rl_bpe_is_special(const rl_bpe *b, int id);
/* 0: a model token, 1: an added token, 2: an added special token. */
int rl_bpe_added_kind(const rl_bpe *b, int id);
/* Whether id is an added token marked normalized. */
int rl_bpe_added_normalized(const rl_bpe *b, int id);
int rl_bpe_normalizer(const rl_bpe *b);
/* What rl_bpe_set_options set. */
void rl_bpe_get_options(const rl_bpe *b, int *ignore_merges, int *byte_fallback, int *unk);
/* The merges of a finished tokenizer in rank order: returns the count and a malloc'd array of
 * 2*count token ids (left, right) in *pairs (caller frees). */
int rl_bpe_merges(const rl_bpe *b, int **pairs);

/* Encodes text[0..len). parse_special: added tokens in the text become their ids (what
 * `tokenizers` does by default); 0 treats them as plain text (for untrusted user content): the
 * whole text is normalized and encoded.
 * Returns a malloc'd array (caller frees) and its length in *n. */
int *rl_bpe_encode(const rl_bpe *b, const char *text, size_t len, int parse_special, int *n);
/* The bytes id decodes to (*len of them; not NUL-terminated), or NULL for a bad id. */
const char *rl_bpe_token_bytes(const rl_bpe *b, int id, size_t *len);
/* Appends the text of ids to out: bytes concatenated, then invalid UTF-8 replaced by U+FFFD
 * (as `tokenizers`' ByteLevel decoder does). */
void rl_bpe_decode(const rl_bpe *b, const int *ids, int n, int skip_special, agl_buf *out);

/* Streaming decode: push one id at a time; only complete UTF-8 characters are appended, a
 * character split across tokens is held until its last byte arrives. The concatenation of all
 * pushes and the final flush equals rl_bpe_decode of the whole sequence. */
typedef struct {
    unsigned char pend[4];
    int n;
} rl_bpe_stream;
void rl_bpe_stream_push(const rl_bpe *b, rl_bpe_stream *st, int id, int skip_special, agl_buf *out);
void rl_bpe_stream_flush(rl_bpe_stream *st, agl_buf *out);

/* Pre-tokenizer alone (for tests): splits text into pre-token byte ranges; returns count and a
 * malloc'd array of 2*count offsets (start, end) in *spans. Added tokens are not considered. */
int rl_bpe_pretokenize(int pretok, const char *text, size_t len, size_t **spans);

#endif
