/* hf — HuggingFace folders into the decoder and the BPE tokenizer (see hf.h, pretrained.h).
 * safetensors per ../shared/spec/rl-trainer.md §3.2 (u64 LE header length, JSON header, offsets
 * relative to the data buffer); tokenizer.json per §3.3. */
#include "hf.h"

#include "agl_alloc.h"
#include "gguf.h" /* RL_ERRLEN, rl_f16_to_f32 */
#include "pretrained.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- safetensors */
struct rl_st {
    const unsigned char *map, *data;
    size_t size, dlen;
    json_t *hdr;
    char path[512];
};

rl_st *rl_st_open(const char *path, char *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, RL_ERRLEN, "safetensors: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) || sb.st_size < 8) {
        close(fd);
        snprintf(err, RL_ERRLEN, "safetensors: %s is too short", path);
        return NULL;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, RL_ERRLEN, "safetensors: cannot map %s: %s", path, strerror(errno));
        return NULL;
    }
    rl_st *s = agl_calloc(1, sizeof *s);
    s->map = map;
    s->size = (size_t)sb.st_size;
    snprintf(s->path, sizeof s->path, "%s", path);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)s->map[i] << (8 * i);
    if (hl > 100000000ULL || 8 + hl > s->size) {
        snprintf(err, RL_ERRLEN, "safetensors: %s has a bad header length", path);
        rl_st_close(s);
        return NULL;
    }
    s->hdr = json_loadb((const char *)s->map + 8, hl, 0, NULL);
    if (!json_is_object(s->hdr)) {
        snprintf(err, RL_ERRLEN, "safetensors: %s: header is not a JSON object", path);
        rl_st_close(s);
        return NULL;
    }
    s->data = s->map + 8 + hl;
    s->dlen = s->size - 8 - hl;
    return s;
}

void rl_st_close(rl_st *s)
{
    if (!s) return;
    json_decref(s->hdr);
    if (s->map) munmap((void *)s->map, s->size);
    free(s);
}

int rl_st_has(const rl_st *s, const char *name)
{
    return json_object_get(s->hdr, name) != NULL;
}

int rl_st_read_f32(const rl_st *s, const char *name, float *out, size_t numel, char *err)
{
    json_t *e = json_object_get(s->hdr, name);
    if (!e) return 1;
    const char *dt = json_string_value(json_object_get(e, "dtype"));
    json_t *sh = json_object_get(e, "shape"), *offs = json_object_get(e, "data_offsets");
    size_t n = 1, idx;
    json_t *d;
    json_array_foreach(sh, idx, d) n *= (size_t)json_integer_value(d);
    json_int_t b0 = json_integer_value(json_array_get(offs, 0)),
               b1 = json_integer_value(json_array_get(offs, 1));
    size_t esz = !dt                                           ? 0
                 : !strcmp(dt, "F32")                          ? 4
                 : (!strcmp(dt, "BF16") || !strcmp(dt, "F16")) ? 2
                                                               : 0;
    if (!esz) {
        snprintf(err, RL_ERRLEN,
                 "safetensors: %.160s: tensor %s has dtype %s (F32, BF16 and F16 are "
                 "read)",
                 s->path, name, dt ? dt : "(none)");
        return -1;
    }
    if (n != numel) {
        snprintf(err, RL_ERRLEN, "safetensors: tensor %s has %zu elements, the config implies %zu",
                 name, n, numel);
        return -1;
    }
    if (b0 < 0 || b1 < b0 || (size_t)b1 > s->dlen || (size_t)(b1 - b0) != n * esz) {
        snprintf(err, RL_ERRLEN, "safetensors: %.160s: tensor %s has bad data offsets", s->path,
                 name);
        return -1;
    }
    const unsigned char *p = s->data + b0;
    if (esz == 4) {
        memcpy(out, p, n * 4);
    } else {
        int bf = !strcmp(dt, "BF16");
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            out[i] = bf ? rl_bf16_to_f32(h) : rl_f16_to_f32(h);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- tokenizer.json */
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                                "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                                "\\s+(?!\\S)|\\s+";

static int is_type(json_t *o, const char *t)
{
    const char *s = json_string_value(json_object_get(o, "type"));
    return s && !strcmp(s, t);
}

/* Recognises the pre_tokenizer chains of the supported families. */
static int hf_pretok(json_t *pt, char *err)
{
    if (is_type(pt, "ByteLevel") && json_is_true(json_object_get(pt, "use_regex")) &&
        !json_is_true(json_object_get(pt, "add_prefix_space")))
        return RL_PRE_GPT2;
    json_t *seq = is_type(pt, "Sequence") ? json_object_get(pt, "pretokenizers") : NULL;
    if (json_array_size(seq) == 2) {
        json_t *a = json_array_get(seq, 0), *b = json_array_get(seq, 1);
        int bl = is_type(b, "ByteLevel") && !json_is_true(json_object_get(b, "add_prefix_space"));
        if (bl && is_type(a, "Digits") && json_is_true(json_object_get(a, "individual_digits")) &&
            json_is_true(json_object_get(b, "use_regex")))
            return RL_PRE_DIGITS_GPT2;
        const char *re = json_string_value(json_object_get(json_object_get(a, "pattern"), "Regex"));
        const char *beh = json_string_value(json_object_get(a, "behavior"));
        if (bl && is_type(a, "Split") && re && beh && !strcmp(beh, "Isolated") &&
            !json_is_true(json_object_get(a, "invert")) &&
            !json_is_true(json_object_get(b, "use_regex"))) {
            if (!strcmp(re, RE_QWEN2)) return RL_PRE_QWEN2;
            if (!strcmp(re, RE_LLAMA3)) return RL_PRE_LLAMA3;
            snprintf(err, RL_ERRLEN, "tokenizer.json: Split regex not supported: %.120s", re);
            return -1;
        }
    }
    char *dump = json_dumps(pt, JSON_COMPACT);
    snprintf(err, RL_ERRLEN, "tokenizer.json: pre_tokenizer not supported: %.160s",
             dump ? dump : "null");
    free(dump);
    return -1;
}

rl_bpe *rl_hf_tokenizer(json_t *tj, char *err)
{
    json_t *model = json_object_get(tj, "model"), *vocab = json_object_get(model, "vocab"),
           *merges = json_object_get(model, "merges"), *added = json_object_get(tj, "added_tokens");
    if (!is_type(model, "BPE") || !json_is_object(vocab) || !json_is_array(merges)) {
        const char *t = json_string_value(json_object_get(model, "type"));
        snprintf(err, RL_ERRLEN, "tokenizer.json: model type \"%s\" is not supported (BPE is)",
                 t ? t : "(none)");
        return NULL;
    }
    json_t *norm = json_object_get(tj, "normalizer");
    int nfc = is_type(norm, "NFC");
    if (norm && !json_is_null(norm) && !nfc) {
        const char *t = json_string_value(json_object_get(norm, "type"));
        snprintf(err, RL_ERRLEN, "tokenizer.json: normalizer \"%s\" is not supported", t ? t : "?");
        return NULL;
    }
    const char *pfx = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *sfx = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if ((pfx && *pfx) || (sfx && *sfx)) {
        snprintf(err, RL_ERRLEN, "tokenizer.json: subword prefixes/suffixes are not supported");
        return NULL;
    }
    int pt = hf_pretok(json_object_get(tj, "pre_tokenizer"), err);
    if (pt < 0) return NULL;
    int maxid = -1;
    const char *key;
    json_t *v;
    size_t i;
    json_object_foreach(vocab, key, v)
    {
        if (json_integer_value(v) > maxid) maxid = (int)json_integer_value(v);
    }
    json_array_foreach(added, i, v)
    {
        int id = (int)json_integer_value(json_object_get(v, "id"));
        if (id > maxid) maxid = id;
    }
    rl_bpe *b = rl_bpe_new(maxid + 1, pt);
    rl_bpe_set_normalizer(b, nfc ? RL_NORM_NFC : RL_NORM_NONE);
    json_object_foreach(vocab, key, v)
    {
        rl_bpe_set_token(b, (int)json_integer_value(v), key, strlen(key));
    }
    json_array_foreach(added, i, v)
    {
        int id = (int)json_integer_value(json_object_get(v, "id"));
        const char *c = json_string_value(json_object_get(v, "content"));
        if (!c) continue;
        int special = json_is_true(json_object_get(v, "special"));
        json_t *nz = json_object_get(v, "normalized"); /* AddedToken's default: !special */
        rl_bpe_set_token(b, id, c, strlen(c));
        rl_bpe_set_added(b, id, special);
        rl_bpe_set_added_normalized(b, id, nz ? json_is_true(nz) : !special);
    }
    json_array_foreach(merges, i, v)
    {
        if (json_is_string(v)) { /* legacy "left right" */
            const char *s = json_string_value(v), *sp = strchr(s, ' ');
            if (!sp) {
                snprintf(err, RL_ERRLEN, "tokenizer.json: merge \"%.60s\" has no space", s);
                rl_bpe_free(b);
                return NULL;
            }
            rl_bpe_add_merge(b, s, (size_t)(sp - s), sp + 1, strlen(sp + 1));
        } else { /* ["left", "right"] */
            const char *l = json_string_value(json_array_get(v, 0)),
                       *r = json_string_value(json_array_get(v, 1));
            if (!l || !r) {
                snprintf(err, RL_ERRLEN, "tokenizer.json: merge %zu is malformed", i);
                rl_bpe_free(b);
                return NULL;
            }
            rl_bpe_add_merge(b, l, strlen(l), r, strlen(r));
        }
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    rl_bpe_set_options(b, json_is_true(json_object_get(model, "ignore_merges")),
                       json_is_true(json_object_get(model, "byte_fallback")), -1);
    if (rl_bpe_finish(b, err)) {
        rl_bpe_free(b);
        return NULL;
    }
    if (unk)
        rl_bpe_set_options(b, json_is_true(json_object_get(model, "ignore_merges")),
                           json_is_true(json_object_get(model, "byte_fallback")),
                           rl_bpe_token_id(b, unk));
    return b;
}

rl_bpe *rl_hf_tokenizer_file(const char *path, char *err)
{
    json_error_t je;
    json_t *tj = json_load_file(path, 0, &je);
    if (!tj) {
        snprintf(err, RL_ERRLEN, "tokenizer.json: cannot read %.160s: %.60s", path, je.text);
        return NULL;
    }
    rl_bpe *b = rl_hf_tokenizer(tj, err);
    json_decref(tj);
    return b;
}

static json_t *byte_level(int use_regex)
{
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                     "trim_offsets", 1, "use_regex", use_regex);
}

json_t *rl_hf_tokenizer_to_json(const rl_bpe *b)
{
    json_t *pre;
    int pt = rl_bpe_pretok(b);
    if (pt == RL_PRE_GPT2)
        pre = byte_level(1);
    else if (pt == RL_PRE_DIGITS_GPT2)
        pre = json_pack("{s:s, s:[{s:s, s:b}, o]}", "type", "Sequence", "pretokenizers", "type",
                        "Digits", "individual_digits", 1, byte_level(1));
    else
        pre = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, o]}", "type", "Sequence",
                        "pretokenizers", "type", "Split", "pattern", "Regex",
                        pt == RL_PRE_QWEN2 ? RE_QWEN2 : RE_LLAMA3, "behavior", "Isolated", "invert",
                        0, byte_level(0));
    int V = rl_bpe_vocab(b), im, bf, unk;
    rl_bpe_get_options(b, &im, &bf, &unk);
    json_t *vocab = json_object(), *added = json_array();
    for (int id = 0; id < V; id++) {
        const char *t = rl_bpe_token_str(b, id);
        if (!t) continue;
        if (!json_object_get(vocab, t)) json_object_set_new(vocab, t, json_integer(id));
        int k = rl_bpe_added_kind(b, id);
        if (k)
            json_array_append_new(
                added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", t,
                                 "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized",
                                 rl_bpe_added_normalized(b, id), "special", k == 2));
    }
    int *pairs, nm = rl_bpe_merges(b, &pairs);
    json_t *merges = json_array();
    for (int i = 0; i < nm; i++)
        json_array_append_new(merges, json_pack("[s, s]", rl_bpe_token_str(b, pairs[2 * i]),
                                                rl_bpe_token_str(b, pairs[2 * i + 1])));
    free(pairs);
    const char *unk_s = unk >= 0 ? rl_bpe_token_str(b, unk) : NULL;
    json_t *model = json_pack(
        "{s:s, s:n, s:o, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token",
        unk_s ? json_string(unk_s) : json_null(), "continuing_subword_prefix", "end_of_word_suffix",
        "fuse_unk", 0, "byte_fallback", bf, "ignore_merges", im, "vocab", vocab, "merges", merges);
    json_t *norm =
        rl_bpe_normalizer(b) == RL_NORM_NFC ? json_pack("{s:s}", "type", "NFC") : json_null();
    return json_pack("{s:s, s:n, s:n, s:o, s:o, s:o, s:n, s:o, s:o}", "version", "1.0",
                     "truncation", "padding", "added_tokens", added, "normalizer", norm,
                     "pre_tokenizer", pre, "post_processor", "decoder", byte_level(1), "model",
                     model);
}

/* ---------------------------------------------------------------- the folder */
/* A special token of tokenizer_config.json: a string or {"content": ...}. */
static const char *tok_content(json_t *v)
{
    return json_is_string(v) ? json_string_value(v)
                             : json_string_value(json_object_get(v, "content"));
}

static int hf_config(json_t *cj, rl_config *c, char *err)
{
    const char *mt = json_string_value(json_object_get(cj, "model_type"));
    if (!mt || (strcmp(mt, "llama") && strcmp(mt, "qwen2"))) {
        snprintf(err, RL_ERRLEN,
                 "config.json: model_type \"%s\" is not supported (llama, qwen2 "
                 "are)",
                 mt ? mt : "(none)");
        return -1;
    }
    json_t *rs = json_object_get(cj, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        const char *t = json_string_value(json_object_get(rs, "rope_type"));
        if (!t) t = json_string_value(json_object_get(rs, "type"));
        if (!t || strcmp(t, "default")) {
            snprintf(err, RL_ERRLEN, "config.json: rope_scaling \"%s\" is not supported",
                     t ? t : "?");
            return -1;
        }
    }
    const char *e;
    if (rl_config_from_json(c, cj, &e)) {
        snprintf(err, RL_ERRLEN, "config.json: %s", e);
        return -1;
    }
    /* rl_config_from_json reads attention_bias (Llama's key); Qwen2 always has q/k/v bias */
    if (!strcmp(mt, "qwen2")) c->qkv_bias = 1;
    return 0;
}

int rl_hf_load(rl_pretrained *p, const char *dir, const rl_pretrained_opts *o, char *err)
{
    char path[4096];
    json_error_t je;
    int rc = -1, nfiles = 0;
    rl_st *files[64] = {0};
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *cj = json_load_file(path, 0, &je), *tc = NULL, *idx = NULL;
    if (!cj) {
        snprintf(err, RL_ERRLEN, "model: cannot read %.160s: %.60s", path, je.text);
        return -1;
    }
    rl_config c;
    if (hf_config(cj, &c, err)) goto out;
    snprintf(p->arch, sizeof p->arch, "%s", json_string_value(json_object_get(cj, "model_type")));
    snprintf(p->format, sizeof p->format, "safetensors");
    p->context = c.max_seq;
    p->src_dir = agl_strdup(dir);
    if (o && o->max_seq > 0 && o->max_seq < c.max_seq) c.max_seq = o->max_seq;
    /* weights: one file or the shards of model.safetensors.index.json */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    idx = json_load_file(path, 0, &je);
    if (idx) {
        json_t *wm = json_object_get(idx, "weight_map"), *v;
        const char *k;
        json_t *seen = json_object();
        json_object_foreach(wm, k, v)
        {
            const char *f = json_string_value(v);
            if (!f || json_object_get(seen, f)) continue;
            if (nfiles == 64) {
                snprintf(err, RL_ERRLEN, "model: more than 64 safetensors shards");
                json_decref(seen);
                goto out;
            }
            json_object_set_new(seen, f, json_true());
            snprintf(path, sizeof path, "%s/%s", dir, f);
            if (!(files[nfiles++] = rl_st_open(path, err))) {
                json_decref(seen);
                goto out;
            }
        }
        json_decref(seen);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (!(files[nfiles++] = rl_st_open(path, err))) goto out;
    }
    json_t *tie = json_object_get(cj, "tie_word_embeddings");
    if (!json_is_boolean(tie)) { /* absent: tied exactly when there is no lm_head */
        c.tie_embed = 1;
        for (int f = 0; f < nfiles; f++)
            if (rl_st_has(files[f], "lm_head.weight")) c.tie_embed = 0;
    }
    p->model = rl_model_new(&c);
    rl_model *m = p->model;
    for (int k = 0; k < RL_NTENSORS; k++) {
        if (!m->sizes[k]) continue;
        int layers = rl_tensor_is_layered(k) ? c.layers : 1;
        size_t per = rl_tensor_layer_size(m, k);
        for (int l = 0; l < layers; l++) {
            char name[128];
            snprintf(name, sizeof name, rl_tensor_names[k], l);
            int r = 1;
            for (int f = 0; f < nfiles && r == 1; f++)
                r = rl_st_read_f32(files[f], name, m->t[k] + (size_t)l * per, per, err);
            if (r == 1) snprintf(err, RL_ERRLEN, "safetensors: tensor %s is missing", name);
            if (r) goto out;
        }
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (!(p->bpe = rl_hf_tokenizer_file(path, err))) goto out;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    tc = json_load_file(path, 0, &je);
    json_t *ct = json_object_get(tc, "chat_template");
    if (json_is_array(ct)) { /* [{"name": "default", "template": ...}, ...] */
        size_t i;
        json_t *e, *pick = NULL;
        json_array_foreach(ct, i, e)
        {
            const char *nm = json_string_value(json_object_get(e, "name"));
            if (!pick || (nm && !strcmp(nm, "default"))) pick = e;
        }
        ct = json_object_get(pick, "template");
    }
    if (json_is_string(ct)) p->chat_template_src = agl_strdup(json_string_value(ct));
    const char *bos = tok_content(json_object_get(tc, "bos_token")),
               *eos = tok_content(json_object_get(tc, "eos_token")),
               *pad = tok_content(json_object_get(tc, "pad_token"));
    p->bos = bos ? rl_bpe_token_id(p->bpe, bos) : -1;
    p->eos = eos ? rl_bpe_token_id(p->bpe, eos) : -1;
    p->pad = pad ? rl_bpe_token_id(p->bpe, pad) : -1;
    p->add_bos = json_is_true(json_object_get(tc, "add_bos_token"));
    if (p->eos < 0) {
        json_t *e = json_object_get(cj, "eos_token_id");
        p->eos = json_is_integer(e) ? (int)json_integer_value(e) : -1;
    }
    rc = rl_pretrained_finish(p, o, err);
out:
    for (int f = 0; f < nfiles; f++) rl_st_close(files[f]);
    json_decref(cj);
    json_decref(tc);
    json_decref(idx);
    return rc;
}
