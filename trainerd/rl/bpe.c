/* bpe — byte-level BPE encode/decode (see bpe.h). The reference is HuggingFace `tokenizers`:
 * models/bpe (merge ranks, word.rs merge order), pre_tokenizers/byte_level.rs (GPT-2 regex and
 * alphabet), pre_tokenizers/digits.rs, tokenizer/added_vocabulary.rs (leftmost-longest split)
 * and decoders (ByteLevel: a token whose characters all belong to the alphabet becomes their
 * bytes, any other token its own UTF-8; the concatenation is decoded lossily). The order of
 * added-token splitting and normalisation is AddedVocabulary::extract_and_normalize: tokens with
 * normalized = false are split out of the raw text, the normalizer runs on each piece between
 * them, and tokens with normalized = true are split out of the normalized pieces (matching their
 * own normalized content). */
#include "bpe.h"

#include "agl_alloc.h"
#include "gguf.h" /* RL_ERRLEN */
#include "unicode.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Added tokens of one kind (matched in raw or in normalized text), longest first. */
typedef struct {
    int n;
    int *id;
    char **s; /* what is matched: the token string, normalized for the normalized set */
    size_t *len;
    unsigned char first[256]; /* first bytes of s */
} added_set;

struct rl_bpe {
    int vocab, pretok, ignore_merges, byte_fallback, unk, norm, finished;
    char **str; /* token strings (byte-level alphabet), NUL-terminated */
    size_t *slen;
    char **bytes; /* what each token decodes to */
    size_t *blen;
    unsigned char *added;      /* 0: model token, 1: added, 2: added and special */
    unsigned char *added_norm; /* added token matched after normalisation */
    int *vh;                   /* open-addressing hash: string -> id (-1 empty) */
    size_t vmask;
    /* merges as given (strings), resolved to ids by finish */
    char **ml, **mr;
    int nm, capm;
    uint64_t *mkey; /* (left << 32 | right) + 1, 0 = empty */
    int *mrank, *mout;
    size_t mmask;
    int byte_id[256]; /* id of the one-character token of each byte, or -1 */
    int fb_id[256];   /* "<0xHH>" ids for byte fallback, or -1 */
    added_set raw, normd;
};

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the 68 others to U+0100.. in
 * byte order. */
static uint32_t byte_cp[256];
static int cp_byte[0x144];

static void alphabet_init(void)
{
    if (byte_cp['!']) return;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_cp[b] = keep ? (uint32_t)b : (uint32_t)(0x100 + n++);
    }
    for (int c = 0; c < 0x144; c++) cp_byte[c] = -1;
    for (int b = 0; b < 256; b++) cp_byte[byte_cp[b]] = b;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

rl_bpe *rl_bpe_new(int vocab, int pretok)
{
    alphabet_init();
    rl_bpe *b = agl_calloc(1, sizeof *b);
    b->vocab = vocab;
    b->pretok = pretok;
    b->unk = -1;
    b->str = agl_calloc((size_t)vocab, sizeof *b->str);
    b->slen = agl_calloc((size_t)vocab, sizeof *b->slen);
    b->bytes = agl_calloc((size_t)vocab, sizeof *b->bytes);
    b->blen = agl_calloc((size_t)vocab, sizeof *b->blen);
    b->added = agl_calloc((size_t)vocab, 1);
    b->added_norm = agl_calloc((size_t)vocab, 1);
    return b;
}

static void added_set_free(added_set *a)
{
    for (int i = 0; i < a->n; i++) free(a->s[i]);
    free(a->id), free(a->s), free(a->len);
}

void rl_bpe_free(rl_bpe *b)
{
    if (!b) return;
    added_set_free(&b->raw);
    added_set_free(&b->normd);
    for (int i = 0; i < b->vocab; i++) {
        free(b->str[i]);
        free(b->bytes[i]);
    }
    for (int i = 0; i < b->nm; i++) {
        free(b->ml[i]);
        free(b->mr[i]);
    }
    free(b->str), free(b->slen), free(b->bytes), free(b->blen), free(b->added), free(b->vh);
    free(b->ml), free(b->mr), free(b->mkey), free(b->mrank), free(b->mout), free(b->added_norm);
    free(b);
}

void rl_bpe_set_token(rl_bpe *b, int id, const char *s, size_t len)
{
    if (id < 0 || id >= b->vocab) return;
    free(b->str[id]);
    b->str[id] = agl_strndup(s, len);
    b->slen[id] = len;
}

void rl_bpe_set_added(rl_bpe *b, int id, int special)
{
    if (id >= 0 && id < b->vocab) b->added[id] = special ? 2 : 1;
}

void rl_bpe_set_added_normalized(rl_bpe *b, int id, int normalized)
{
    if (id >= 0 && id < b->vocab) b->added_norm[id] = normalized != 0;
}

void rl_bpe_set_normalizer(rl_bpe *b, int norm)
{
    b->norm = norm;
}

int rl_bpe_normalizer(const rl_bpe *b)
{
    return b->norm;
}

int rl_bpe_added_normalized(const rl_bpe *b, int id)
{
    return id >= 0 && id < b->vocab && b->added[id] && b->added_norm[id];
}

void rl_bpe_add_merge(rl_bpe *b, const char *l, size_t ll, const char *r, size_t rl)
{
    if (b->nm == b->capm) {
        b->capm = b->capm ? 2 * b->capm : 1024;
        b->ml = agl_realloc(b->ml, sizeof *b->ml * b->capm);
        b->mr = agl_realloc(b->mr, sizeof *b->mr * b->capm);
    }
    b->ml[b->nm] = agl_strndup(l, ll);
    b->mr[b->nm] = agl_strndup(r, rl);
    b->nm++;
}

void rl_bpe_set_options(rl_bpe *b, int ignore_merges, int byte_fallback, int unk)
{
    b->ignore_merges = ignore_merges;
    b->byte_fallback = byte_fallback;
    b->unk = unk;
}

static int lookup(const rl_bpe *b, const char *s, size_t n)
{
    for (size_t h = hash_bytes(s, n) & b->vmask;; h = (h + 1) & b->vmask) {
        int id = b->vh[h];
        if (id < 0) return -1;
        if (b->slen[id] == n && !memcmp(b->str[id], s, n)) return id;
    }
}

int rl_bpe_token_id(const rl_bpe *b, const char *s)
{
    return lookup(b, s, strlen(s));
}

static void merge_put(rl_bpe *b, int l, int r, int rank, int out)
{
    uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
    for (size_t h = hash_u64(key) & b->mmask;; h = (h + 1) & b->mmask) {
        if (b->mkey[h] == key) return; /* a repeated merge keeps its first (lowest) rank */
        if (!b->mkey[h]) {
            b->mkey[h] = key;
            b->mrank[h] = rank;
            b->mout[h] = out;
            return;
        }
    }
}

/* Rank of merging l r (INT_MAX when there is none) and the merged id in *out. */
static int merge_get(const rl_bpe *b, int l, int r, int *out)
{
    uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
    for (size_t h = hash_u64(key) & b->mmask;; h = (h + 1) & b->mmask) {
        if (!b->mkey[h]) return INT_MAX;
        if (b->mkey[h] == key) {
            *out = b->mout[h];
            return b->mrank[h];
        }
    }
}

/* What a token decodes to under the ByteLevel decoder, given its string s[0..n). */
static void token_bytes_set(rl_bpe *b, int id, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t o = 0;
    char *out = agl_malloc(n + 1);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += rl_utf8_next(s + i, n - i, &cp);
        if (cp >= 0x144 || cp_byte[cp] < 0) { /* not all in the alphabet: the raw string */
            memcpy(out, s, n);
            o = n;
            break;
        }
        out[o++] = (char)cp_byte[cp];
    }
    free(b->bytes[id]);
    b->bytes[id] = out;
    b->blen[id] = o;
}

/* Normalizes text[0..len) as the tokenizer's normalizer does: NULL when it is unchanged (the
 * text is used as is), else a malloc'd copy of *out_len bytes. */
static char *normalize(const rl_bpe *b, const char *text, size_t len, size_t *out_len)
{
    return b->norm == RL_NORM_NFC ? rl_uni_nfc(text, len, out_len) : NULL;
}

/* Collects the added tokens with added_norm == normalized, sorted for leftmost-longest matching
 * (longer first, then lower id); the normalized ones match their normalized content, as
 * AddedVocabulary::refresh_added_tokens builds its split_normalized_trie. */
static void added_set_build(rl_bpe *b, added_set *a, int normalized)
{
    a->id = agl_malloc(sizeof(int) * (size_t)(b->vocab ? b->vocab : 1));
    a->s = agl_malloc(sizeof(char *) * (size_t)(b->vocab ? b->vocab : 1));
    a->len = agl_malloc(sizeof(size_t) * (size_t)(b->vocab ? b->vocab : 1));
    for (int id = 0; id < b->vocab; id++) {
        if (!b->added[id] || b->added_norm[id] != normalized || !b->slen[id]) continue;
        size_t len = b->slen[id];
        char *s = normalized ? normalize(b, b->str[id], len, &len) : NULL;
        a->id[a->n] = id;
        a->s[a->n] = s ? s : agl_strndup(b->str[id], len);
        a->len[a->n] = len;
        a->first[(unsigned char)a->s[a->n][0]] = 1;
        /* `tokenizers` (0.23) also decodes such a token as its normalized content */
        if (s) token_bytes_set(b, id, s, len);
        for (int j = a->n++; j > 0 && a->len[j] > a->len[j - 1]; j--) { /* insertion sort */
            int t = a->id[j];
            char *ts = a->s[j];
            size_t tl = a->len[j];
            a->id[j] = a->id[j - 1], a->s[j] = a->s[j - 1], a->len[j] = a->len[j - 1];
            a->id[j - 1] = t, a->s[j - 1] = ts, a->len[j - 1] = tl;
        }
    }
}

int rl_bpe_finish(rl_bpe *b, char *err)
{
    b->vmask = pow2_at_least(2 * (size_t)b->vocab) - 1;
    b->vh = agl_malloc(sizeof(int) * (b->vmask + 1));
    memset(b->vh, 0xFF, sizeof(int) * (b->vmask + 1));
    for (int id = 0; id < b->vocab; id++) {
        if (!b->str[id]) {
            snprintf(err, RL_ERRLEN, "tokenizer: no string for token id %d", id);
            return -1;
        }
        token_bytes_set(b, id, b->str[id], b->slen[id]);
        size_t h = hash_bytes(b->str[id], b->slen[id]) & b->vmask;
        int dup = 0;
        for (; b->vh[h] >= 0; h = (h + 1) & b->vmask) {
            int o = b->vh[h];
            if (b->slen[o] == b->slen[id] && !memcmp(b->str[o], b->str[id], b->slen[id])) dup = 1;
        }
        if (!dup) b->vh[h] = id; /* duplicates (padding entries) keep the first id */
    }
    char buf[8];
    for (int c = 0; c < 256; c++) {
        int n = rl_utf8_put(byte_cp[c], buf);
        b->byte_id[c] = lookup(b, buf, (size_t)n);
        char fb[8];
        snprintf(fb, sizeof fb, "<0x%02X>", c);
        b->fb_id[c] = lookup(b, fb, strlen(fb));
    }
    b->mmask = pow2_at_least(2 * (size_t)b->nm) - 1;
    b->mkey = agl_calloc(b->mmask + 1, sizeof *b->mkey);
    b->mrank = agl_malloc(sizeof(int) * (b->mmask + 1));
    b->mout = agl_malloc(sizeof(int) * (b->mmask + 1));
    agl_buf cat;
    agl_buf_init(&cat);
    for (int i = 0; i < b->nm; i++) {
        int l = rl_bpe_token_id(b, b->ml[i]), r = rl_bpe_token_id(b, b->mr[i]);
        agl_buf_reset(&cat);
        agl_buf_puts(&cat, b->ml[i]);
        agl_buf_puts(&cat, b->mr[i]);
        int o = lookup(b, cat.data, cat.len);
        if (l < 0 || r < 0 || o < 0) {
            snprintf(err, RL_ERRLEN,
                     "tokenizer: merge %d (\"%.60s %.60s\") names a token that is "
                     "not in the vocabulary",
                     i, b->ml[i], b->mr[i]);
            agl_buf_free(&cat);
            return -1;
        }
        merge_put(b, l, r, i, o);
        free(b->ml[i]);
        free(b->mr[i]);
    }
    agl_buf_free(&cat);
    free(b->ml), free(b->mr);
    b->ml = b->mr = NULL;
    b->nm = 0;
    added_set_build(b, &b->raw, 0);
    added_set_build(b, &b->normd, 1);
    b->finished = 1;
    return 0;
}

int rl_bpe_vocab(const rl_bpe *b)
{
    return b->vocab;
}

int rl_bpe_pretok(const rl_bpe *b)
{
    return b->pretok;
}

const char *rl_bpe_pretok_name(int pretok)
{
    static const char *const names[RL_PRE_COUNT] = {"gpt2", "digits+gpt2", "qwen2", "llama3"};
    return pretok >= 0 && pretok < RL_PRE_COUNT ? names[pretok] : "?";
}

int rl_bpe_added_kind(const rl_bpe *b, int id)
{
    return id >= 0 && id < b->vocab ? b->added[id] : 0;
}

void rl_bpe_get_options(const rl_bpe *b, int *ignore_merges, int *byte_fallback, int *unk)
{
    *ignore_merges = b->ignore_merges;
    *byte_fallback = b->byte_fallback;
    *unk = b->unk;
}

static int cmp_rank(const void *a, const void *b)
{
    const int *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

int rl_bpe_merges(const rl_bpe *b, int **pairs)
{
    int n = 0;
    for (size_t h = 0; b->mkey && h <= b->mmask; h++) n += b->mkey[h] != 0;
    int *t = agl_malloc(sizeof(int) * 3 * (size_t)(n ? n : 1)), k = 0;
    for (size_t h = 0; b->mkey && h <= b->mmask; h++) {
        if (!b->mkey[h]) continue;
        uint64_t key = b->mkey[h] - 1;
        t[3 * k] = b->mrank[h];
        t[3 * k + 1] = (int)(uint32_t)(key >> 32);
        t[3 * k + 2] = (int)(uint32_t)key;
        k++;
    }
    qsort(t, (size_t)n, 3 * sizeof(int), cmp_rank);
    int *out = agl_malloc(sizeof(int) * 2 * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) out[2 * i] = t[3 * i + 1], out[2 * i + 1] = t[3 * i + 2];
    free(t);
    *pairs = out;
    return n;
}

const char *rl_bpe_token_str(const rl_bpe *b, int id)
{
    return id >= 0 && id < b->vocab ? b->str[id] : NULL;
}

int rl_bpe_is_special(const rl_bpe *b, int id)
{
    return id >= 0 && id < b->vocab && b->added[id] == 2;
}

/* ---------------------------------------------------------------- pre-tokenizers */
enum { C_L = 1, C_N, C_S, C_O };

static int char_class(uint32_t cp)
{
    if (rl_uni_is_letter(cp)) return C_L;
    if (rl_uni_is_number(cp)) return C_N;
    if (rl_uni_is_space(cp)) return C_S;
    return C_O;
}

static uint32_t ascii_lower(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Length of 's|'t|'re|'ve|'m|'ll|'d at i (cp[i] == '\''), 0 when none. */
static int contraction(const uint32_t *cp, int i, int e, int icase)
{
    if (i + 1 >= e) return 0;
    uint32_t a = icase ? ascii_lower(cp[i + 1]) : cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= e) return 0;
    uint32_t c = icase ? ascii_lower(cp[i + 2]) : cp[i + 2];
    if ((a == 'r' && c == 'e') || (a == 'v' && c == 'e') || (a == 'l' && c == 'l')) return 3;
    return 0;
}

static int run_of(const unsigned char *k, int i, int e, int cls)
{
    while (i < e && k[i] == cls) i++;
    return i;
}

/* The whitespace alternatives shared by both regex families: \s+(?!\S)|\s+ at i. */
static int whitespace_end(const unsigned char *k, int i, int e)
{
    int j = run_of(k, i, e, C_S);
    if (j == e) return e;
    if (j - i >= 2) return j - 1; /* leave the last one to prefix the next pre-token */
    return i + 1;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int gpt2_next(const uint32_t *cp, const unsigned char *k, int i, int e)
{
    if (cp[i] == '\'') {
        int l = contraction(cp, i, e, 0);
        if (l) return i + l;
    }
    if (k[i] != C_S) return run_of(k, i, e, k[i]);
    if (cp[i] == ' ' && i + 1 < e && k[i + 1] != C_S) return run_of(k, i + 1, e, k[i + 1]);
    return whitespace_end(k, i, e);
}

/* Qwen2 (maxd 1) and Llama 3 (maxd 3):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxd}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ */
static int cl100k_next(const uint32_t *cp, const unsigned char *k, int i, int e, int maxd)
{
    if (cp[i] == '\'') {
        int l = contraction(cp, i, e, 1);
        if (l) return i + l;
    }
    if (k[i] == C_L) return run_of(k, i, e, C_L);
    if (cp[i] != '\r' && cp[i] != '\n' && k[i] != C_N && i + 1 < e && k[i + 1] == C_L)
        return run_of(k, i + 1, e, C_L);
    if (k[i] == C_N) {
        int j = i;
        while (j < e && k[j] == C_N && j - i < maxd) j++;
        return j;
    }
    int j = i;
    if (cp[j] == ' ' && j + 1 < e && k[j + 1] == C_O) j++;
    if (k[j] == C_O) {
        j = run_of(k, j, e, C_O);
        while (j < e && (cp[j] == '\r' || cp[j] == '\n')) j++;
        return j;
    }
    /* k[i] is whitespace here: \s*[\r\n]+ ends after the run's last newline */
    int w = run_of(k, i, e, C_S), nl = -1;
    for (int x = i; x < w; x++)
        if (cp[x] == '\r' || cp[x] == '\n') nl = x;
    if (nl >= 0) return nl + 1;
    return whitespace_end(k, i, e);
}

typedef struct {
    size_t *v;
    int n, cap;
} spanvec;

static void span_push(spanvec *s, size_t a, size_t z)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = agl_realloc(s->v, sizeof(size_t) * 2 * (size_t)s->cap);
    }
    s->v[2 * s->n] = a;
    s->v[2 * s->n + 1] = z;
    s->n++;
}

/* Splits text into pre-tokens, appending byte spans (offset by base). */
static void pretokenize(int pretok, const char *text, size_t len, size_t base, spanvec *out)
{
    if (!len) return;
    uint32_t *cp = agl_malloc(sizeof(uint32_t) * len);
    unsigned char *k = agl_malloc(len);
    size_t *off = agl_malloc(sizeof(size_t) * (len + 1));
    int n = 0;
    for (size_t i = 0; i < len; n++) {
        off[n] = i;
        i += rl_utf8_next((const unsigned char *)text + i, len - i, &cp[n]);
        k[n] = (unsigned char)char_class(cp[n]);
    }
    off[n] = len;
    int i = 0;
    while (i < n) {
        int j;
        switch (pretok) {
        case RL_PRE_DIGITS_GPT2: {
            /* Digits(individual_digits): each number character is a piece of its own and the
             * regex runs on the stretches between them */
            if (k[i] == C_N) {
                j = i + 1;
                break;
            }
            int e = i;
            while (e < n && k[e] != C_N) e++;
            j = gpt2_next(cp, k, i, e);
            break;
        }
        case RL_PRE_QWEN2:
            j = cl100k_next(cp, k, i, n, 1);
            break;
        case RL_PRE_LLAMA3:
            j = cl100k_next(cp, k, i, n, 3);
            break;
        default:
            j = gpt2_next(cp, k, i, n);
            break;
        }
        span_push(out, base + off[i], base + off[j]);
        i = j;
    }
    free(cp), free(k), free(off);
}

int rl_bpe_pretokenize(int pretok, const char *text, size_t len, size_t **spans)
{
    spanvec s = {0};
    pretokenize(pretok, text, len, 0, &s);
    *spans = s.v;
    return s.n;
}

/* ---------------------------------------------------------------- encode */
typedef struct {
    int *v;
    int n, cap;
} idvec;

static void id_push(idvec *o, int id)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->v = agl_realloc(o->v, sizeof(int) * (size_t)o->cap);
    }
    o->v[o->n++] = id;
}

/* BPE of one pre-token: its bytes as alphabet characters, then the lowest-rank adjacent pair
 * merged (leftmost on ties) until no pair has a merge — the order of word.rs merge_all. */
static void bpe_word(const rl_bpe *b, const unsigned char *s, size_t n, idvec *out, int *sym,
                     int *nxt, agl_buf *tmp)
{
    if (b->ignore_merges) {
        agl_buf_reset(tmp);
        char u[4];
        for (size_t i = 0; i < n; i++) agl_buf_put(tmp, u, (size_t)rl_utf8_put(byte_cp[s[i]], u));
        int id = lookup(b, tmp->data, tmp->len);
        if (id >= 0) {
            id_push(out, id);
            return;
        }
    }
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int id = b->byte_id[s[i]];
        if (id < 0 && b->byte_fallback) id = b->fb_id[s[i]];
        if (id < 0) id = b->unk;
        if (id < 0) continue; /* `tokenizers` drops what it cannot represent */
        sym[m++] = id;
    }
    if (!m) return;
    for (int i = 0; i < m; i++) nxt[i] = i + 1 < m ? i + 1 : -1;
    for (;;) {
        int best = -1, best_rank = INT_MAX, best_out = -1;
        for (int i = 0; nxt[i] >= 0; i = nxt[i]) {
            int o, r = merge_get(b, sym[i], sym[nxt[i]], &o);
            if (r < best_rank) best_rank = r, best = i, best_out = o;
        }
        if (best < 0) break;
        sym[best] = best_out;
        nxt[best] = nxt[nxt[best]];
    }
    for (int i = 0; i >= 0; i = nxt[i]) id_push(out, sym[i]);
}

static void encode_plain(const rl_bpe *b, const char *text, size_t len, idvec *out)
{
    spanvec sp = {0};
    pretokenize(b->pretok, text, len, 0, &sp);
    size_t maxw = 0;
    for (int i = 0; i < sp.n; i++)
        if (sp.v[2 * i + 1] - sp.v[2 * i] > maxw) maxw = sp.v[2 * i + 1] - sp.v[2 * i];
    int *sym = agl_malloc(sizeof(int) * (maxw + 1)), *nxt = agl_malloc(sizeof(int) * (maxw + 1));
    agl_buf tmp;
    agl_buf_init(&tmp);
    for (int i = 0; i < sp.n; i++)
        bpe_word(b, (const unsigned char *)text + sp.v[2 * i], sp.v[2 * i + 1] - sp.v[2 * i], out,
                 sym, nxt, &tmp);
    agl_buf_free(&tmp);
    free(sym), free(nxt), free(sp.v);
}

/* Index in a of the longest added token starting at text[i], or -1. */
static int added_at(const added_set *a, const char *text, size_t len, size_t i)
{
    if (!a->first[(unsigned char)text[i]]) return -1;
    for (int k = 0; k < a->n; k++) /* sorted longest first */
        if (a->len[k] <= len - i && !memcmp(text + i, a->s[k], a->len[k])) return k;
    return -1;
}

typedef void encode_fn(const rl_bpe *b, const char *text, size_t len, idvec *out);

/* Splits the added tokens of a out of text (leftmost-longest) and encodes the pieces between
 * them with gap. */
static void split_added(const rl_bpe *b, const added_set *a, const char *text, size_t len,
                        encode_fn *gap, idvec *out)
{
    size_t seg = 0;
    if (a->n)
        for (size_t i = 0; i < len;) {
            int k = added_at(a, text, len, i);
            if (k < 0) {
                i++;
                continue;
            }
            gap(b, text + seg, i - seg, out);
            id_push(out, a->id[k]);
            i += a->len[k];
            seg = i;
        }
    gap(b, text + seg, len - seg, out);
}

/* A piece of raw text between non-normalized added tokens: normalized, then split on the
 * normalized added tokens. */
static void encode_piece(const rl_bpe *b, const char *text, size_t len, idvec *out)
{
    size_t nlen;
    char *norm = normalize(b, text, len, &nlen);
    if (norm) text = norm, len = nlen;
    split_added(b, &b->normd, text, len, encode_plain, out);
    free(norm);
}

int *rl_bpe_encode(const rl_bpe *b, const char *text, size_t len, int parse_special, int *n)
{
    idvec out = {0};
    if (parse_special)
        split_added(b, &b->raw, text, len, encode_piece, &out);
    else {
        size_t nlen;
        char *norm = normalize(b, text, len, &nlen);
        encode_plain(b, norm ? norm : text, norm ? nlen : len, &out);
        free(norm);
    }
    if (!out.v) out.v = agl_malloc(sizeof(int));
    *n = out.n;
    return out.v;
}

/* ---------------------------------------------------------------- decode */
const char *rl_bpe_token_bytes(const rl_bpe *b, int id, size_t *len)
{
    if (id < 0 || id >= b->vocab) return NULL;
    *len = b->blen[id];
    return b->bytes[id];
}

/* Appends s[0..n) with invalid UTF-8 replaced by U+FFFD (maximal subparts, like Rust's
 * from_utf8_lossy). Unless final, an unfinished character at the end is left unconsumed.
 * Returns the bytes consumed. */
static size_t put_lossy(agl_buf *out, const unsigned char *s, size_t n, int final)
{
    size_t i = 0;
    while (i < n) {
        int inc;
        size_t v = rl_utf8_valid_prefix(s + i, n - i, &inc);
        agl_buf_put(out, s + i, v);
        i += v;
        if (i == n || (inc && !final)) break;
        agl_buf_put(out, "\xEF\xBF\xBD", 3);
        i += (size_t)rl_utf8_bad_len(s + i, n - i);
    }
    return i;
}

void rl_bpe_decode(const rl_bpe *b, const int *ids, int n, int skip_special, agl_buf *out)
{
    agl_buf raw;
    agl_buf_init(&raw);
    for (int i = 0; i < n; i++) {
        size_t l;
        const char *s = rl_bpe_token_bytes(b, ids[i], &l);
        if (!s || (skip_special && b->added[ids[i]] == 2)) continue;
        agl_buf_put(&raw, s, l);
    }
    put_lossy(out, (const unsigned char *)raw.data, raw.len, 1);
    if (!out->data) agl_buf_put(out, "", 0);
    agl_buf_free(&raw);
}

void rl_bpe_stream_push(const rl_bpe *b, rl_bpe_stream *st, int id, int skip_special, agl_buf *out)
{
    size_t l;
    const char *s = rl_bpe_token_bytes(b, id, &l);
    if (!s || (skip_special && b->added[id] == 2)) return;
    unsigned char stack[256], *tmp = l + 4 <= sizeof stack ? stack : agl_malloc(l + 4);
    memcpy(tmp, st->pend, (size_t)st->n);
    memcpy(tmp + st->n, s, l);
    size_t n = (size_t)st->n + l, used = put_lossy(out, tmp, n, 0);
    st->n = (int)(n - used); /* at most 3: an unfinished character */
    memcpy(st->pend, tmp + used, (size_t)st->n);
    if (tmp != stack) free(tmp);
}

void rl_bpe_stream_flush(rl_bpe_stream *st, agl_buf *out)
{
    put_lossy(out, st->pend, (size_t)st->n, 1);
    st->n = 0;
}
