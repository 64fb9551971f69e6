/* pretrained — GGUF checkpoints into model.h's decoder, and what both loaders share (see
 * pretrained.h). GGUF tensor names (llama.cpp's llama / qwen2 architectures): token_embd,
 * blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down},
 * output_norm, output (absent when tied). A tensor with ne = {in, out} is the row-major
 * (out, in) matrix of HF, so no transpose. llama.cpp's converter permutes the q and k rows of
 * *llama* models to interleaved RoPE pairs (convert_hf_to_gguf.py LlamaModel.permute); we undo
 * it to get back HF's half-split layout. qwen2 GGUFs use NEOX (half-split) RoPE, unpermuted. */
#include "pretrained.h"
#include "ckpt.h"
#include "hf.h"
#include "tok.h"

#include "agl_alloc.h"
#include "agl_buf.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const gguf_names[RL_NTENSORS] = {
    [RL_EMBED] = "token_embd.weight",      [RL_LN1] = "blk.%d.attn_norm.weight",
    [RL_WQ] = "blk.%d.attn_q.weight",      [RL_BQ] = "blk.%d.attn_q.bias",
    [RL_WK] = "blk.%d.attn_k.weight",      [RL_BK] = "blk.%d.attn_k.bias",
    [RL_WV] = "blk.%d.attn_v.weight",      [RL_BV] = "blk.%d.attn_v.bias",
    [RL_WO] = "blk.%d.attn_output.weight", [RL_LN2] = "blk.%d.ffn_norm.weight",
    [RL_WG] = "blk.%d.ffn_gate.weight",    [RL_WU] = "blk.%d.ffn_up.weight",
    [RL_WD] = "blk.%d.ffn_down.weight",    [RL_LNF] = "output_norm.weight",
    [RL_HEAD] = "output.weight",
};

int rl_pretok_from_gguf_name(const char *pre, int *ignore_merges)
{
    *ignore_merges = 0;
    if (!pre || !strcmp(pre, "gpt-2") || !strcmp(pre, "gpt2")) return RL_PRE_GPT2;
    if (!strcmp(pre, "smollm") || !strcmp(pre, "starcoder") || !strcmp(pre, "refact") ||
        !strcmp(pre, "codeshell"))
        return RL_PRE_DIGITS_GPT2;
    if (!strcmp(pre, "qwen2")) return RL_PRE_QWEN2;
    if (!strcmp(pre, "llama3") || !strcmp(pre, "llama-bpe") || !strcmp(pre, "llama-v3")) {
        *ignore_merges = 1;
        return RL_PRE_LLAMA3;
    }
    return -1;
}

/* In-place inverse of llama.cpp's permute on a (heads*D, cols) matrix: GGUF row h*D + 2j + s
 * holds HF row h*D + s*D/2 + j. */
static void unpermute_rows(float *w, int heads, int D, size_t cols)
{
    float *tmp = agl_malloc(sizeof(float) * (size_t)D * cols);
    for (int h = 0; h < heads; h++) {
        float *blk = w + (size_t)h * D * cols;
        for (int j = 0; j < D / 2; j++)
            for (int s = 0; s < 2; s++)
                memcpy(tmp + (size_t)(s * (D / 2) + j) * cols, blk + (size_t)(2 * j + s) * cols,
                       sizeof(float) * cols);
        memcpy(blk, tmp, sizeof(float) * (size_t)D * cols);
    }
    free(tmp);
}

static int gguf_config(const rl_gguf *g, const char *arch, rl_config *c, char *err)
{
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    memset(c, 0, sizeof *c);
    c->hidden = (int)rl_gguf_int(g, KEY("embedding_length"), 0);
    c->layers = (int)rl_gguf_int(g, KEY("block_count"), 0);
    c->heads = (int)rl_gguf_int(g, KEY("attention.head_count"), 0);
    c->kv_heads = (int)rl_gguf_int(g, KEY("attention.head_count_kv"), c->heads);
    c->head_dim =
        (int)rl_gguf_int(g, KEY("attention.key_length"), c->heads ? c->hidden / c->heads : 0);
    c->inter = (int)rl_gguf_int(g, KEY("feed_forward_length"), 0);
    c->max_seq = (int)rl_gguf_int(g, KEY("context_length"), 2048);
    c->rope_theta = (float)rl_gguf_float(g, KEY("rope.freq_base"), 10000.0);
    c->rms_eps = (float)rl_gguf_float(g, KEY("attention.layer_norm_rms_epsilon"), 1e-5);
    int rot = (int)rl_gguf_int(g, KEY("rope.dimension_count"), c->head_dim);
    if (rot != c->head_dim) {
        snprintf(err, RL_ERRLEN,
                 "gguf: partial rotary embeddings (%d of %d dims) are not "
                 "supported",
                 rot, c->head_dim);
        return -1;
    }
    char *scaling = rl_gguf_str(g, KEY("rope.scaling.type"));
    if (scaling && strcmp(scaling, "none")) {
        snprintf(err, RL_ERRLEN, "gguf: RoPE scaling \"%s\" is not supported", scaling);
        free(scaling);
        return -1;
    }
    free(scaling);
    if (rl_gguf_tensor_find(g, "rope_freqs.weight")) {
        snprintf(err, RL_ERRLEN,
                 "gguf: RoPE frequency factors (Llama 3.1 rope_freqs) are not "
                 "supported");
        return -1;
    }
#undef KEY
    const rl_gguf_kv *toks = rl_gguf_get(g, "tokenizer.ggml.tokens");
    const rl_gguf_tensor *emb = rl_gguf_tensor_find(g, "token_embd.weight");
    if (!emb) {
        snprintf(err, RL_ERRLEN, "gguf: tensor token_embd.weight is missing");
        return -1;
    }
    c->vocab = (int)emb->ne[1];
    if (toks && toks->n > (uint64_t)c->vocab) {
        snprintf(err, RL_ERRLEN, "gguf: %llu tokens but an embedding of %d rows",
                 (unsigned long long)toks->n, c->vocab);
        return -1;
    }
    c->qkv_bias = rl_gguf_tensor_find(g, "blk.0.attn_q.bias") != NULL;
    c->tie_embed = rl_gguf_tensor_find(g, "output.weight") == NULL;
    const char *e = rl_config_check(c);
    if (e) {
        snprintf(err, RL_ERRLEN, "gguf: %s", e);
        return -1;
    }
    return 0;
}

static int gguf_weights(const rl_gguf *g, rl_model *m, int permuted, char *err)
{
    const rl_config *c = &m->cfg;
    for (int k = 0; k < RL_NTENSORS; k++) {
        if (!m->sizes[k]) continue;
        int layers = rl_tensor_is_layered(k) ? c->layers : 1;
        size_t per = rl_tensor_layer_size(m, k);
        for (int l = 0; l < layers; l++) {
            char name[96];
            snprintf(name, sizeof name, gguf_names[k], l);
            const rl_gguf_tensor *t = rl_gguf_tensor_find(g, name);
            if (!t) {
                snprintf(err, RL_ERRLEN, "gguf: tensor %s is missing", name);
                return -1;
            }
            if (t->nelem != per) {
                snprintf(err, RL_ERRLEN,
                         "gguf: tensor %s has %llu elements, the config implies "
                         "%zu",
                         name, (unsigned long long)t->nelem, per);
                return -1;
            }
            float *dst = m->t[k] + (size_t)l * per;
            if (rl_gguf_tensor_f32(t, dst, err)) return -1;
            if (!permuted) continue;
            if (k == RL_WQ) unpermute_rows(dst, c->heads, c->head_dim, (size_t)c->hidden);
            if (k == RL_WK) unpermute_rows(dst, c->kv_heads, c->head_dim, (size_t)c->hidden);
            if (k == RL_BQ) unpermute_rows(dst, c->heads, c->head_dim, 1);
            if (k == RL_BK) unpermute_rows(dst, c->kv_heads, c->head_dim, 1);
        }
    }
    return 0;
}

static int gguf_tokenizer(const rl_gguf *g, rl_pretrained *p, char *err)
{
    char *model = rl_gguf_str(g, "tokenizer.ggml.model"),
         *pre = rl_gguf_str(g, "tokenizer.ggml.pre");
    int rc = -1, im = 0, pt = -1;
    const rl_gguf_kv *toks = rl_gguf_get(g, "tokenizer.ggml.tokens"),
                     *types = rl_gguf_get(g, "tokenizer.ggml.token_type"),
                     *merges = rl_gguf_get(g, "tokenizer.ggml.merges");
    if (!model || strcmp(model, "gpt2")) {
        snprintf(err, RL_ERRLEN,
                 "gguf: tokenizer model \"%s\" is not supported (byte-level BPE "
                 "\"gpt2\" is)",
                 model ? model : "(none)");
        goto out;
    }
    pt = rl_pretok_from_gguf_name(pre, &im);
    if (pt < 0) {
        snprintf(err, RL_ERRLEN,
                 "gguf: pre-tokenizer \"%s\" is not supported (gpt-2, smollm, "
                 "starcoder, qwen2, llama-bpe are)",
                 pre);
        goto out;
    }
    if (!toks || !merges) {
        snprintf(err, RL_ERRLEN, "gguf: tokenizer.ggml.tokens or .merges is missing");
        goto out;
    }
    p->bpe = rl_bpe_new((int)toks->n, pt);
    /* GGUF has no normalizer metadata. The HF tokenizers that convert to pre "qwen2" (Qwen1.5,
     * Qwen2, Qwen2.5, Qwen3) declare NFC, so it is applied as `tokenizers` does; llama.cpp
     * applies none there and differs from both on input that is not NFC. */
    if (pt == RL_PRE_QWEN2) rl_bpe_set_normalizer(p->bpe, RL_NORM_NFC);
    rl_gguf_iter it;
    rl_gguf_iter_init(&it, toks);
    const char *s;
    size_t len;
    for (int id = 0; rl_gguf_iter_str(&it, &s, &len) == 0; id++) {
        rl_bpe_set_token(p->bpe, id, s, len);
        /* llama_token_type: 3 control (special added token), 4 user-defined (added) */
        int64_t ty = types ? rl_gguf_arr_int(types, (uint64_t)id, 1) : 1;
        if (ty == 3 || ty == 4) rl_bpe_set_added(p->bpe, id, ty == 3);
    }
    rl_gguf_iter_init(&it, merges);
    while (rl_gguf_iter_str(&it, &s, &len) == 0) {
        const char *sp = memchr(s, ' ', len);
        if (!sp) {
            snprintf(err, RL_ERRLEN, "gguf: merge \"%.*s\" has no space", (int)len, s);
            goto out;
        }
        rl_bpe_add_merge(p->bpe, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp - s) - 1);
    }
    p->bos = (int)rl_gguf_int(g, "tokenizer.ggml.bos_token_id", -1);
    p->eos = (int)rl_gguf_int(g, "tokenizer.ggml.eos_token_id", -1);
    p->pad = (int)rl_gguf_int(g, "tokenizer.ggml.padding_token_id", -1);
    p->unk = (int)rl_gguf_int(g, "tokenizer.ggml.unknown_token_id", -1);
    p->add_bos = (int)rl_gguf_int(g, "tokenizer.ggml.add_bos_token", 0);
    /* byte-level vocabularies cover every byte: unk is never needed by BPE itself */
    rl_bpe_set_options(p->bpe, im, 0, -1);
    if (rl_bpe_finish(p->bpe, err)) goto out;
    p->chat_template_src = rl_gguf_str(g, "tokenizer.chat_template");
    rc = 0;
out:
    free(model);
    free(pre);
    return rc;
}

static int load_gguf(rl_pretrained *p, const char *path, const rl_pretrained_opts *o, char *err)
{
    rl_gguf *g = rl_gguf_open(path, err);
    if (!g) return -1;
    int rc = -1;
    char *arch = rl_gguf_str(g, "general.architecture");
    if (!arch || (strcmp(arch, "llama") && strcmp(arch, "qwen2"))) {
        snprintf(err, RL_ERRLEN, "gguf: architecture \"%s\" is not supported (llama, qwen2 are)",
                 arch ? arch : "(none)");
        goto out;
    }
    snprintf(p->arch, sizeof p->arch, "%s", arch);
    snprintf(p->format, sizeof p->format, "gguf");
    rl_config c;
    if (gguf_config(g, arch, &c, err)) goto out;
    p->context = c.max_seq;
    if (o && o->max_seq > 0 && o->max_seq < c.max_seq) c.max_seq = o->max_seq;
    if (gguf_tokenizer(g, p, err)) goto out;
    p->model = rl_model_new(&c);
    if (gguf_weights(g, p->model, !strcmp(arch, "llama"), err)) goto out;
    rc = rl_pretrained_finish(p, o, err);
out:
    free(arch);
    rl_gguf_close(g);
    return rc;
}

int rl_pretrained_finish(rl_pretrained *p, const rl_pretrained_opts *o, char *err)
{
    int v = rl_bpe_vocab(p->bpe);
    if (v > p->model->cfg.vocab) {
        snprintf(err, RL_ERRLEN, "tokenizer has %d tokens, the model %d", v, p->model->cfg.vocab);
        return -1;
    }
    char cerr[RL_ERRLEN];
    const char *name = o ? o->chat_template : NULL;
    if (rl_chat_init(&p->chat, p->chat_template_src, name, cerr)) {
        if (name) { /* an explicit override that is wrong is an error; a missing one is not */
            snprintf(err, RL_ERRLEN, "%s", cerr);
            return -1;
        }
        p->chat.kind = RL_CHAT_NONE;
    }
    p->eot = p->chat.kind ? rl_bpe_token_id(p->bpe, rl_chat_stop(&p->chat)) : -1;
    return 0;
}

int rl_pretrained_load(rl_pretrained *p, const char *path, const rl_pretrained_opts *o, char *err)
{
    memset(p, 0, sizeof *p);
    p->bos = p->eos = p->pad = p->unk = p->eot = -1;
    struct stat sb;
    int rc;
    if (stat(path, &sb)) {
        snprintf(err, RL_ERRLEN, "model: %s does not exist", path);
        return -1;
    }
    rc = S_ISDIR(sb.st_mode) ? rl_hf_load(p, path, o, err) : load_gguf(p, path, o, err);
    if (rc) rl_pretrained_free(p);
    return rc;
}

void rl_pretrained_free(rl_pretrained *p)
{
    rl_model_free(p->model);
    rl_bpe_free(p->bpe);
    rl_chat_free(&p->chat);
    free(p->chat_template_src);
    free(p->src_dir);
    memset(p, 0, sizeof *p);
}

int rl_pretrained_detect(const char *path)
{
    struct stat sb;
    if (stat(path, &sb)) return 0;
    if (!S_ISDIR(sb.st_mode)) {
        FILE *f = fopen(path, "rb");
        char magic[4] = {0};
        int ok = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
        if (f) fclose(f);
        return ok;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", path);
    return stat(p, &sb) == 0;
}

int *rl_pretrained_encode(const rl_pretrained *p, const char *text, int *n)
{
    int m, *ids = rl_bpe_encode(p->bpe, text, strlen(text), 1, &m);
    if (p->add_bos && p->bos >= 0 && !(m > 0 && ids[0] == p->bos)) {
        ids = agl_realloc(ids, sizeof(int) * (size_t)(m + 1));
        memmove(ids + 1, ids, sizeof(int) * (size_t)m);
        ids[0] = p->bos;
        m++;
    }
    *n = m;
    return ids;
}

int rl_pretrained_is_stop(const rl_pretrained *p, int id)
{
    return id == p->eos || (p->eot >= 0 && id == p->eot);
}

/* ---------------------------------------------------------------- trainer / server glue */
void rl_tok_from_pretrained(rl_tok *t, const rl_pretrained *p)
{
    memset(t, 0, sizeof *t);
    snprintf(t->spec, sizeof t->spec, "bpe");
    t->vocab = rl_bpe_vocab(p->bpe);
    t->pad = p->pad, t->bos = p->bos, t->eos = p->eos, t->eot = p->eot;
    t->pre = p;
}

int *rl_pretrained_encode_prompt(const rl_pretrained *p, const char *text, int chat, int *n)
{
    if (!chat || p->chat.kind == RL_CHAT_NONE) return rl_pretrained_encode(p, text, n);
    rl_chat_msg msg = {"user", text};
    char *r = rl_chat_render(&p->chat, &msg, 1, 1);
    int *ids = rl_pretrained_encode(p, r, n);
    free(r);
    return ids;
}

static int copy_file(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    if (!f) return errno == ENOENT ? 1 : -1;
    FILE *g = fopen(to, "wb");
    int ok = g != NULL;
    char buf[65536];
    size_t r;
    while (ok && (r = fread(buf, 1, sizeof buf, f)) > 0) ok = fwrite(buf, 1, r, g) == r;
    fclose(f);
    if (g && fclose(g)) ok = 0;
    return ok ? 0 : -1;
}

static int dump_json(json_t *j, const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    return rc;
}

static json_t *tok_or_null(const rl_pretrained *p, int id)
{
    const char *s = id >= 0 ? rl_bpe_token_str(p->bpe, id) : NULL;
    return s ? json_string(s) : json_null();
}

int rl_pretrained_save(const char *dir, const rl_pretrained *p, const rl_model *m,
                       const uint64_t *state, char *err)
{
    const char *e = NULL;
    if (rl_ckpt_save(dir, m, NULL, state, &e)) { /* weights (HF names), trainer state */
        snprintf(err, RL_ERRLEN, "%.100s (%.100s)", e, dir);
        return -1;
    }
    /* config.json: HF keys of the checkpoint's own architecture */
    json_t *cfg = rl_config_to_json(&m->cfg);
    int qwen = !strcmp(p->arch, "qwen2");
    json_object_set_new(cfg, "model_type", json_string(p->arch));
    json_object_set_new(cfg, "architectures",
                        json_pack("[s]", qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"));
    json_object_set_new(cfg, "max_position_embeddings",
                        json_integer(p->context > 0 ? p->context : m->cfg.max_seq));
    json_object_set_new(cfg, "hidden_act", json_string("silu"));
    json_object_set_new(cfg, "rope_scaling", json_null());
    json_object_set_new(cfg, "torch_dtype", json_string("float32"));
    json_object_set_new(cfg, "bos_token_id", p->bos >= 0 ? json_integer(p->bos) : json_null());
    json_object_set_new(cfg, "eos_token_id", p->eos >= 0 ? json_integer(p->eos) : json_null());
    if (dump_json(cfg, dir, "config.json")) {
        snprintf(err, RL_ERRLEN, "cannot write %.150s/config.json", dir);
        return -1;
    }
    /* tokenizer files: the source folder's own, unless saving over it */
    char a[PATH_MAX], b[PATH_MAX];
    int same = p->src_dir && realpath(p->src_dir, a) && realpath(dir, b) && !strcmp(a, b);
    if (same) return 0;
    if (p->src_dir) {
        static const char *const files[] = {"tokenizer.json",
                                            "tokenizer_config.json",
                                            "special_tokens_map.json",
                                            "generation_config.json",
                                            "vocab.json",
                                            "merges.txt"};
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            char from[4096], to[4096];
            snprintf(from, sizeof from, "%s/%s", p->src_dir, files[i]);
            snprintf(to, sizeof to, "%s/%s", dir, files[i]);
            if (copy_file(from, to) < 0) {
                snprintf(err, RL_ERRLEN, "cannot copy %.100s to %.100s", files[i], dir);
                return -1;
            }
        }
        return 0;
    }
    if (dump_json(rl_hf_tokenizer_to_json(p->bpe), dir, "tokenizer.json")) {
        snprintf(err, RL_ERRLEN, "cannot write %.150s/tokenizer.json", dir);
        return -1;
    }
    json_t *tc = json_pack("{s:b, s:b, s:o, s:o, s:o, s:o, s:i, s:s, s:b}", "add_bos_token",
                           p->add_bos, "add_eos_token", 0, "bos_token", tok_or_null(p, p->bos),
                           "eos_token", tok_or_null(p, p->eos), "pad_token", tok_or_null(p, p->pad),
                           "unk_token", tok_or_null(p, p->unk), "model_max_length",
                           p->context > 0 ? p->context : m->cfg.max_seq, "tokenizer_class",
                           "PreTrainedTokenizerFast", "clean_up_tokenization_spaces", 0);
    if (p->chat_template_src)
        json_object_set_new(tc, "chat_template", json_string(p->chat_template_src));
    if (dump_json(tc, dir, "tokenizer_config.json")) {
        snprintf(err, RL_ERRLEN, "cannot write %.150s/tokenizer_config.json", dir);
        return -1;
    }
    return 0;
}
