/* ckpt — safetensors model files and the optimizer sidecar (see ckpt.h). */
#include "ckpt.h"

#include "agl_alloc.h"
#include "agl_buf.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATE_MAGIC 0x314C52474C4741ULL /* "AGLRL1" */

typedef struct {
    char name[128];
    int ndim;
    long shape[4];
    const float *data;
    size_t numel;
} st_entry;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

int rl_safetensors_write(const char *path, int n, const char *const *names, const int *ndims,
                         const long (*shapes)[4], const float *const *data, const char *meta_json)
{
    st_entry *e = agl_calloc((size_t)n, sizeof *e);
    for (int i = 0; i < n; i++) {
        snprintf(e[i].name, sizeof e[i].name, "%s", names[i]);
        e[i].ndim = ndims[i];
        e[i].numel = 1;
        for (int d = 0; d < ndims[i]; d++) {
            e[i].shape[d] = shapes[i][d];
            e[i].numel *= (size_t)shapes[i][d];
        }
        e[i].data = data[i];
    }
    /* the reference writer orders equal-alignment tensors by name */
    qsort(e, (size_t)n, sizeof *e, cmp_entry);
    json_t *hdr = json_object();
    if (meta_json)
        json_object_set_new(hdr, "__metadata__",
                            json_pack("{s:s, s:s}", "format", "pt", "agl", meta_json));
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < e[i].ndim; d++)
            json_array_append_new(shape, json_integer(e[i].shape[d]));
        size_t end = off + e[i].numel * 4;
        json_object_set_new(hdr, e[i].name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)end));
        off = end;
    }
    char *h = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hdr);
    size_t hl = strlen(h), padded = (hl + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    int rc = -1;
    if (f) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h, 1, hl, f) == hl;
        for (size_t i = hl; i < padded && ok; i++) ok = fputc(' ', f) != EOF;
        for (int i = 0; i < n && ok; i++)
            ok = fwrite(e[i].data, 4, e[i].numel, f) == e[i].numel; /* host is little-endian */
        if (fclose(f) == 0 && ok) rc = 0;
    }
    free(h);
    free(e);
    return rc;
}

/* shape of one layer's slice of tensor kind k */
static int tensor_shape(const rl_model *m, int k, long shape[4])
{
    const rl_config *c = &m->cfg;
    long C = c->hidden, QD = (long)c->heads * c->head_dim, KD = (long)c->kv_heads * c->head_dim,
         I = c->inter, V = c->vocab;
    switch (k) {
    case RL_EMBED:
    case RL_HEAD:
        shape[0] = V, shape[1] = C;
        return 2;
    case RL_LN1:
    case RL_LN2:
    case RL_LNF:
        shape[0] = C;
        return 1;
    case RL_WQ:
        shape[0] = QD, shape[1] = C;
        return 2;
    case RL_BQ:
        shape[0] = QD;
        return 1;
    case RL_WK:
    case RL_WV:
        shape[0] = KD, shape[1] = C;
        return 2;
    case RL_BK:
    case RL_BV:
        shape[0] = KD;
        return 1;
    case RL_WO:
        shape[0] = C, shape[1] = QD;
        return 2;
    case RL_WG:
    case RL_WU:
        shape[0] = I, shape[1] = C;
        return 2;
    default:
        shape[0] = C, shape[1] = I;
        return 2; /* RL_WD */
    }
}

/* Enumerates (name, shape, pointer) for every stored tensor of m. Returns the count. */
static int list_tensors(const rl_model *m, char (*names)[128], int *ndims, long (*shapes)[4],
                        float **ptrs)
{
    int n = 0;
    for (int k = 0; k < RL_NTENSORS; k++) {
        if (m->sizes[k] == 0) continue; /* absent bias, tied head */
        int layers = rl_tensor_is_layered(k) ? m->cfg.layers : 1;
        size_t per = rl_tensor_layer_size(m, k);
        for (int l = 0; l < layers; l++) {
            if (names) snprintf(names[n], 128, rl_tensor_names[k], l);
            if (ndims) ndims[n] = tensor_shape(m, k, shapes[n]);
            if (ptrs) ptrs[n] = m->t[k] + (size_t)l * per;
            n++;
        }
    }
    return n;
}

static int write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    agl_buf b;
    agl_buf_init(&b);
    char tmp[65536];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) agl_buf_put(&b, tmp, r);
    fclose(f);
    *len = b.len;
    return b.data;
}

int rl_ckpt_save(const char *dir, const rl_model *m, const char *tok_spec, const uint64_t *state,
                 const char **err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        *err = "checkpoint: cannot create the directory";
        return -1;
    }
    char path[4096];
    int n = list_tensors(m, NULL, NULL, NULL, NULL);
    char(*names)[128] = agl_malloc(sizeof *names * (size_t)n);
    int *ndims = agl_malloc(sizeof *ndims * (size_t)n);
    long(*shapes)[4] = agl_calloc((size_t)n, sizeof *shapes);
    float **ptrs = agl_malloc(sizeof *ptrs * (size_t)n);
    list_tensors(m, names, ndims, shapes, ptrs);
    const char **np = agl_malloc(sizeof *np * (size_t)n);
    for (int i = 0; i < n; i++) np[i] = names[i];
    json_t *cfg = rl_config_to_json(&m->cfg);
    if (tok_spec) json_object_set_new(cfg, "agl_tokenizer", json_string(tok_spec));
    char *cj = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(cfg);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = rl_safetensors_write(path, n, np, ndims, (const long(*)[4])shapes,
                                  (const float *const *)ptrs, cj);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (rc == 0) rc = write_all(path, cj, strlen(cj));
    if (rc == 0 && state) {
        snprintf(path, sizeof path, "%s/trainer_state.bin", dir);
        FILE *f = fopen(path, "wb");
        uint64_t hdr[4] = {STATE_MAGIC, 1, (uint64_t)m->step, (uint64_t)m->nparams};
        int ok = f && fwrite(hdr, 8, 4, f) == 4 &&
                 fwrite(state, 8, RL_STATE_WORDS, f) == RL_STATE_WORDS &&
                 fwrite(m->m, 4, m->nparams, f) == m->nparams &&
                 fwrite(m->v, 4, m->nparams, f) == m->nparams;
        if (f && fclose(f) != 0) ok = 0;
        rc = ok ? 0 : -1;
    }
    if (rc) *err = "checkpoint: write failed";
    free(cj);
    free(np);
    free(names);
    free(ndims);
    free(shapes);
    free(ptrs);
    return rc;
}

static uint16_t le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Loads the tensors of model.safetensors into m; F32 and BF16 accepted. */
static int load_safetensors(rl_model *m, const char *path, const char **err)
{
    size_t len;
    char *buf = read_all(path, &len);
    if (!buf) {
        *err = "checkpoint: cannot read model.safetensors";
        return -1;
    }
    uint64_t hl = 0;
    for (int i = 0; i < 8 && len >= 8; i++) hl |= (uint64_t)(unsigned char)buf[i] << (8 * i);
    if (len < 8 || hl > 100000000ULL || 8 + hl > len) {
        free(buf);
        *err = "checkpoint: model.safetensors has a bad header length";
        return -1;
    }
    json_t *hdr = json_loadb(buf + 8, hl, 0, NULL);
    const unsigned char *data = (const unsigned char *)buf + 8 + hl;
    size_t dlen = len - 8 - hl;
    int n = list_tensors(m, NULL, NULL, NULL, NULL), rc = hdr ? 0 : -1;
    if (!hdr) *err = "checkpoint: model.safetensors header is not JSON";
    char(*names)[128] = agl_malloc(sizeof *names * (size_t)n);
    int *ndims = agl_malloc(sizeof *ndims * (size_t)n);
    long(*shapes)[4] = agl_calloc((size_t)n, sizeof *shapes);
    float **ptrs = agl_malloc(sizeof *ptrs * (size_t)n);
    list_tensors(m, names, ndims, shapes, ptrs);
    for (int i = 0; i < n && rc == 0; i++) {
        json_t *e = json_object_get(hdr, names[i]);
        const char *dt = json_string_value(json_object_get(e, "dtype"));
        json_t *sh = json_object_get(e, "shape"), *offs = json_object_get(e, "data_offsets");
        size_t numel = 1;
        int shape_ok = json_is_array(sh) && (int)json_array_size(sh) == ndims[i];
        for (int d = 0; shape_ok && d < ndims[i]; d++) {
            shape_ok = json_integer_value(json_array_get(sh, d)) == shapes[i][d];
            numel *= (size_t)shapes[i][d];
        }
        size_t b0 = (size_t)json_integer_value(json_array_get(offs, 0)),
               b1 = (size_t)json_integer_value(json_array_get(offs, 1));
        if (!dt || !shape_ok || b1 < b0 || b1 > dlen) {
            *err = "checkpoint: a tensor is missing or has the wrong shape for the config";
            rc = -1;
        } else if (!strcmp(dt, "F32") && b1 - b0 == numel * 4) {
            memcpy(ptrs[i], data + b0, numel * 4);
        } else if (!strcmp(dt, "BF16") && b1 - b0 == numel * 2) {
            for (size_t j = 0; j < numel; j++) {
                uint32_t u = (uint32_t)le16(data + b0 + 2 * j) << 16;
                memcpy(ptrs[i] + j, &u, 4);
            }
        } else {
            *err = "checkpoint: unsupported dtype (F32 and BF16 are read)";
            rc = -1;
        }
    }
    json_decref(hdr);
    free(buf);
    free(names);
    free(ndims);
    free(shapes);
    free(ptrs);
    return rc;
}

int rl_ckpt_load_state(const char *dir, rl_model *m, uint64_t *state, int *has_state,
                       const char **err)
{
    char p[4096];
    if (has_state) *has_state = 0;
    snprintf(p, sizeof p, "%s/trainer_state.bin", dir);
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    uint64_t hdr[4];
    int ok = fread(hdr, 8, 4, f) == 4 && hdr[0] == STATE_MAGIC && hdr[1] == 1 &&
             hdr[3] == m->nparams && fread(state, 8, RL_STATE_WORDS, f) == RL_STATE_WORDS &&
             fread(m->m, 4, m->nparams, f) == m->nparams &&
             fread(m->v, 4, m->nparams, f) == m->nparams;
    fclose(f);
    if (!ok) {
        *err = "checkpoint: trainer_state.bin does not match the model";
        return -1;
    }
    m->step = (long)hdr[2];
    if (has_state) *has_state = 1;
    return 0;
}

rl_model *rl_ckpt_load(const char *path, char *tok_spec, uint64_t *state, int *has_state,
                       const char **err)
{
    struct stat sb;
    char cfgpath[4096], p[4096];
    int is_dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (has_state) *has_state = 0;
    snprintf(cfgpath, sizeof cfgpath, is_dir ? "%s/config.json" : "%s", path);
    json_error_t je;
    json_t *cj = json_load_file(cfgpath, 0, &je);
    if (!cj) {
        *err = "checkpoint: cannot read config.json";
        return NULL;
    }
    rl_config c;
    if (rl_config_from_json(&c, cj, err) != 0) {
        json_decref(cj);
        return NULL;
    }
    const char *ts = json_string_value(json_object_get(cj, "agl_tokenizer"));
    if (tok_spec) snprintf(tok_spec, 300, "%s", ts ? ts : "");
    json_decref(cj);
    rl_model *m = rl_model_new(&c);
    if (!is_dir) return m;
    snprintf(p, sizeof p, "%s/model.safetensors", path);
    if (load_safetensors(m, p, err) != 0) {
        rl_model_free(m);
        return NULL;
    }
    if (state && rl_ckpt_load_state(path, m, state, has_state, err)) {
        rl_model_free(m);
        return NULL;
    }
    return m;
}
