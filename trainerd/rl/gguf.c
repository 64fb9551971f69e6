/* gguf — GGUF v3 reader and dequantisation (see gguf.h). Layout per ggml docs/gguf.md:
 *   u32 magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
 *   kv_count x { string key, u32 type, value },  tensor_count x { string name, u32 n_dims,
 *   u64 ne[n_dims], u32 type, u64 offset }, padding to general.alignment (default 32), data.
 * A string is u64 length + bytes (no NUL); an array is u32 element type + u64 count + values. */
#include "gguf.h"

#include "agl_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */

static const char *const type_names[] = {
    [0] = "F32",     [1] = "F16",      [2] = "Q4_0",   [3] = "Q4_1",    [6] = "Q5_0",
    [7] = "Q5_1",    [8] = "Q8_0",     [9] = "Q8_1",   [10] = "Q2_K",   [11] = "Q3_K",
    [12] = "Q4_K",   [13] = "Q5_K",    [14] = "Q6_K",  [15] = "Q8_K",   [16] = "IQ2_XXS",
    [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S",
    [22] = "IQ2_S",  [23] = "IQ4_XS",  [24] = "I8",    [25] = "I16",    [26] = "I32",
    [27] = "I64",    [28] = "F64",     [29] = "IQ1_M", [30] = "BF16",   [34] = "TQ1_0",
    [35] = "TQ2_0",  [39] = "MXFP4",
};

const char *rl_ggml_type_name(uint32_t type, char buf[16])
{
    if (type < sizeof type_names / sizeof type_names[0] && type_names[type])
        return type_names[type];
    snprintf(buf, 16, "type %u", type);
    return buf;
}

/* Elements per block and bytes per block of the supported types; 0 for the others. */
static void type_block(uint32_t type, uint64_t *blk, uint64_t *bytes)
{
    *blk = 1;
    *bytes = 0;
    switch (type) {
    case RL_GGML_F32:
        *bytes = 4;
        break;
    case RL_GGML_F16:
    case RL_GGML_BF16:
        *bytes = 2;
        break;
    case RL_GGML_Q4_0:
        *blk = 32, *bytes = 18;
        break; /* f16 d, 16 bytes of nibbles */
    case RL_GGML_Q4_1:
        *blk = 32, *bytes = 20;
        break; /* f16 d, f16 m, 16 bytes of nibbles */
    case RL_GGML_Q8_0:
        *blk = 32, *bytes = 34;
        break; /* f16 d, 32 int8 */
    default:
        break;
    }
}

int rl_ggml_type_supported(uint32_t type)
{
    uint64_t blk, bytes;
    type_block(type, &blk, &bytes);
    return bytes != 0;
}

/* ---------------------------------------------------------------- bounded cursor */
typedef struct {
    const unsigned char *p, *end;
    int bad;
} cur;

static const unsigned char *take(cur *c, uint64_t n)
{
    if (c->bad || (uint64_t)(c->end - c->p) < n) {
        c->bad = 1;
        return NULL;
    }
    const unsigned char *r = c->p;
    c->p += n;
    return r;
}

static uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t take32(cur *c)
{
    const unsigned char *p = take(c, 4);
    return p ? rd32(p) : 0;
}

static uint64_t take64(cur *c)
{
    const unsigned char *p = take(c, 8);
    return p ? rd64(p) : 0;
}

static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case RL_GGUF_U8:
    case RL_GGUF_I8:
    case RL_GGUF_BOOL:
        return 1;
    case RL_GGUF_U16:
    case RL_GGUF_I16:
        return 2;
    case RL_GGUF_U32:
    case RL_GGUF_I32:
    case RL_GGUF_F32:
        return 4;
    case RL_GGUF_U64:
    case RL_GGUF_I64:
    case RL_GGUF_F64:
        return 8;
    default:
        return 0;
    }
}

/* Skips one value of type t (not an array); returns 0 or -1. */
static int skip_value(cur *c, uint32_t t)
{
    if (t == RL_GGUF_STRING) {
        uint64_t n = take64(c);
        return take(c, n) ? 0 : -1;
    }
    size_t s = scalar_size(t);
    return s && take(c, s) ? 0 : -1;
}

/* ---------------------------------------------------------------- open / close */
rl_gguf *rl_gguf_open(const char *path, char *err)
{
    uint32_t probe = 1;
    if (*(unsigned char *)&probe != 1) {
        snprintf(err, RL_ERRLEN, "gguf: big-endian hosts are not supported");
        return NULL;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, RL_ERRLEN, "gguf: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) || st.st_size < 24) {
        snprintf(err, RL_ERRLEN, "gguf: %s: too short to be a GGUF file", path);
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, RL_ERRLEN, "gguf: cannot map %s: %s", path, strerror(errno));
        return NULL;
    }
    rl_gguf *g = agl_calloc(1, sizeof *g);
    g->map = map;
    g->size = (size_t)st.st_size;
    cur c = {g->map, g->map + g->size, 0};
    if (take32(&c) != GGUF_MAGIC) {
        snprintf(err, RL_ERRLEN, "gguf: %s: bad magic (not a GGUF file)", path);
        goto fail;
    }
    g->version = take32(&c);
    if (g->version != 2 && g->version != 3) {
        snprintf(err, RL_ERRLEN, "gguf: %s: unsupported version %u (expected 3)", path, g->version);
        goto fail;
    }
    uint64_t nt = take64(&c), nkv = take64(&c);
    /* each kv takes >= 12 bytes and each tensor >= 24: bounds the allocations below */
    if (nkv > g->size / 12 || nt > g->size / 24) {
        snprintf(err, RL_ERRLEN, "gguf: %s: implausible counts (%llu keys, %llu tensors)", path,
                 (unsigned long long)nkv, (unsigned long long)nt);
        goto fail;
    }
    g->n_kv = nkv;
    g->n_tensors = nt;
    g->kv = agl_calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = agl_calloc(nt ? nt : 1, sizeof *g->tensors);
    g->alignment = 32;
    for (uint64_t i = 0; i < nkv; i++) {
        rl_gguf_kv *kv = &g->kv[i];
        kv->key_len = take64(&c);
        kv->key = (const char *)take(&c, kv->key_len);
        kv->type = take32(&c);
        if (c.bad) break;
        kv->data = c.p;
        if (kv->type == RL_GGUF_ARRAY) {
            kv->elem_type = take32(&c);
            kv->n = take64(&c);
            kv->data = c.p;
            if (kv->elem_type == RL_GGUF_ARRAY) {
                snprintf(err, RL_ERRLEN, "gguf: %s: nested arrays are not supported (key %.*s)",
                         path, (int)kv->key_len, kv->key);
                goto fail;
            }
            if (kv->elem_type == RL_GGUF_STRING) {
                for (uint64_t j = 0; j < kv->n && !c.bad; j++) skip_value(&c, RL_GGUF_STRING);
            } else {
                size_t s = scalar_size(kv->elem_type);
                if (!s || kv->n > (uint64_t)(c.end - c.p) / s)
                    c.bad = 1;
                else
                    take(&c, kv->n * s);
            }
        } else {
            if (kv->type == RL_GGUF_STRING) {
                kv->n = take64(&c);
                kv->data = take(&c, kv->n);
            } else if (skip_value(&c, kv->type)) {
                c.bad = 1;
            }
        }
        if (c.bad) break;
        if (kv->key_len == 17 && !memcmp(kv->key, "general.alignment", 17)) {
            if (kv->type != RL_GGUF_U32 || rd32(kv->data) == 0 ||
                (rd32(kv->data) & (rd32(kv->data) - 1))) {
                snprintf(err, RL_ERRLEN, "gguf: %s: general.alignment must be a u32 power of 2",
                         path);
                goto fail;
            }
            g->alignment = rd32(kv->data);
        }
    }
    if (c.bad) {
        snprintf(err, RL_ERRLEN, "gguf: %s: truncated or corrupt metadata", path);
        goto fail;
    }
    for (uint64_t i = 0; i < nt; i++) {
        rl_gguf_tensor *t = &g->tensors[i];
        uint64_t nl = take64(&c);
        const char *name = (const char *)take(&c, nl);
        t->n_dims = take32(&c);
        if (c.bad || t->n_dims < 1 || t->n_dims > 4) {
            snprintf(err, RL_ERRLEN, "gguf: %s: corrupt tensor directory (entry %llu)", path,
                     (unsigned long long)i);
            goto fail;
        }
        t->name = agl_strndup(name, nl);
        t->nelem = 1;
        for (uint32_t d = 0; d < 4; d++) {
            t->ne[d] = d < t->n_dims ? take64(&c) : 1;
            if (t->ne[d] && t->nelem > UINT64_MAX / t->ne[d])
                c.bad = 1;
            else
                t->nelem *= t->ne[d];
        }
        t->type = take32(&c);
        t->offset = take64(&c);
        if (c.bad) {
            snprintf(err, RL_ERRLEN, "gguf: %s: corrupt tensor directory (entry %llu)", path,
                     (unsigned long long)i);
            goto fail;
        }
    }
    size_t hdr = (size_t)(c.p - g->map);
    size_t data_off = (hdr + g->alignment - 1) / g->alignment * g->alignment;
    if (data_off > g->size && g->n_tensors == 0) data_off = g->size; /* metadata-only file */
    if (data_off > g->size) {
        snprintf(err, RL_ERRLEN, "gguf: %s: truncated before the tensor data", path);
        goto fail;
    }
    uint64_t data_len = g->size - data_off;
    for (size_t i = 0; i < g->n_tensors; i++) {
        rl_gguf_tensor *t = &g->tensors[i];
        uint64_t blk, bytes;
        type_block(t->type, &blk, &bytes);
        if (t->offset % g->alignment) {
            snprintf(err, RL_ERRLEN, "gguf: %s: tensor %s: offset %llu not aligned to %llu", path,
                     t->name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
            goto fail;
        }
        if (bytes) {
            if (t->ne[0] % blk) {
                char tb[16];
                snprintf(err, RL_ERRLEN,
                         "gguf: %s: tensor %s: row of %llu is not a multiple of "
                         "the %s block (%llu)",
                         path, t->name, (unsigned long long)t->ne[0],
                         rl_ggml_type_name(t->type, tb), (unsigned long long)blk);
                goto fail;
            }
            t->nbytes = t->nelem / blk * bytes;
        }
        if (t->offset > data_len || t->nbytes > data_len - t->offset) {
            snprintf(err, RL_ERRLEN, "gguf: %s: tensor %s extends past the end of the file", path,
                     t->name);
            goto fail;
        }
        t->data = g->map + data_off + t->offset;
    }
    return g;
fail:
    rl_gguf_close(g);
    return NULL;
}

void rl_gguf_close(rl_gguf *g)
{
    if (!g) return;
    for (size_t i = 0; i < g->n_tensors; i++) free((void *)g->tensors[i].name);
    free(g->tensors);
    free(g->kv);
    if (g->map) munmap((void *)g->map, g->size);
    free(g);
}

/* ---------------------------------------------------------------- metadata */
const rl_gguf_kv *rl_gguf_get(const rl_gguf *g, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key_len == n && !memcmp(g->kv[i].key, key, n)) return &g->kv[i];
    return NULL;
}

/* Reads a scalar of type t at p as integer / float; returns 0 when t is not numeric. */
static int scalar_num(uint32_t t, const unsigned char *p, int64_t *iv, double *fv)
{
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f;
    double d;
    switch (t) {
    case RL_GGUF_U8:
    case RL_GGUF_BOOL:
        *iv = p[0];
        break;
    case RL_GGUF_I8:
        *iv = (int8_t)p[0];
        break;
    case RL_GGUF_U16:
        memcpy(&u16, p, 2), *iv = u16;
        break;
    case RL_GGUF_I16:
        memcpy(&u16, p, 2), *iv = (int16_t)u16;
        break;
    case RL_GGUF_U32:
        memcpy(&u32, p, 4), *iv = u32;
        break;
    case RL_GGUF_I32:
        memcpy(&u32, p, 4), *iv = (int32_t)u32;
        break;
    case RL_GGUF_U64:
        memcpy(&u64, p, 8), *iv = (int64_t)u64;
        break;
    case RL_GGUF_I64:
        memcpy(&u64, p, 8), *iv = (int64_t)u64;
        break;
    case RL_GGUF_F32:
        memcpy(&f, p, 4), *fv = f, *iv = (int64_t)f;
        return 2;
    case RL_GGUF_F64:
        memcpy(&d, p, 8), *fv = d, *iv = (int64_t)d;
        return 2;
    default:
        return 0;
    }
    *fv = (double)*iv;
    return 1;
}

int64_t rl_gguf_int(const rl_gguf *g, const char *key, int64_t def)
{
    const rl_gguf_kv *kv = rl_gguf_get(g, key);
    int64_t iv;
    double fv;
    return kv && scalar_num(kv->type, kv->data, &iv, &fv) ? iv : def;
}

double rl_gguf_float(const rl_gguf *g, const char *key, double def)
{
    const rl_gguf_kv *kv = rl_gguf_get(g, key);
    int64_t iv;
    double fv;
    return kv && scalar_num(kv->type, kv->data, &iv, &fv) ? fv : def;
}

char *rl_gguf_str(const rl_gguf *g, const char *key)
{
    const rl_gguf_kv *kv = rl_gguf_get(g, key);
    if (!kv || kv->type != RL_GGUF_STRING) return NULL;
    return agl_strndup((const char *)kv->data, kv->n);
}

void rl_gguf_iter_init(rl_gguf_iter *it, const rl_gguf_kv *kv)
{
    it->kv = kv;
    it->i = 0;
    it->p = kv->data;
}

int rl_gguf_iter_str(rl_gguf_iter *it, const char **s, size_t *len)
{
    if (it->kv->type != RL_GGUF_ARRAY || it->kv->elem_type != RL_GGUF_STRING || it->i >= it->kv->n)
        return -1;
    *len = rd64(it->p); /* bounds were checked at open */
    *s = (const char *)it->p + 8;
    it->p += 8 + *len;
    it->i++;
    return 0;
}

int64_t rl_gguf_arr_int(const rl_gguf_kv *kv, uint64_t i, int64_t def)
{
    size_t s = scalar_size(kv->elem_type);
    int64_t iv;
    double fv;
    if (kv->type != RL_GGUF_ARRAY || !s || i >= kv->n) return def;
    return scalar_num(kv->elem_type, kv->data + i * s, &iv, &fv) == 1 ? iv : def;
}

const rl_gguf_tensor *rl_gguf_tensor_find(const rl_gguf *g, const char *name)
{
    for (size_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

/* ---------------------------------------------------------------- dequantisation */
float rl_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13); /* inf / nan */
    } else if (exp) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man) { /* subnormal: renormalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FF) << 13);
    } else {
        bits = sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float rl_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int rl_gguf_dequant(uint32_t type, const void *src, float *dst, size_t n)
{
    const unsigned char *s = src;
    switch (type) {
    case RL_GGML_F32:
        memcpy(dst, s, n * 4);
        return 0;
    case RL_GGML_F16:
        for (size_t i = 0; i < n; i++) dst[i] = rl_f16_to_f32(rd16(s + 2 * i));
        return 0;
    case RL_GGML_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = rl_bf16_to_f32(rd16(s + 2 * i));
        return 0;
    default:
        break;
    }
    if (n % 32) return -1;
    size_t nb = n / 32;
    switch (type) {
    case RL_GGML_Q8_0: /* x = d * q */
        for (size_t b = 0; b < nb; b++, s += 34, dst += 32) {
            float d = rl_f16_to_f32(rd16(s));
            for (int j = 0; j < 32; j++) dst[j] = d * (float)(int8_t)s[2 + j];
        }
        return 0;
    case RL_GGML_Q4_0: /* x[j] = d * (lo nibble - 8), x[j+16] = d * (hi nibble - 8) */
        for (size_t b = 0; b < nb; b++, s += 18, dst += 32) {
            float d = rl_f16_to_f32(rd16(s));
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)((s[2 + j] & 0x0F) - 8);
                dst[j + 16] = d * (float)((s[2 + j] >> 4) - 8);
            }
        }
        return 0;
    case RL_GGML_Q4_1: /* x[j] = d * lo nibble + m, x[j+16] = d * hi nibble + m */
        for (size_t b = 0; b < nb; b++, s += 20, dst += 32) {
            float d = rl_f16_to_f32(rd16(s)), m = rl_f16_to_f32(rd16(s + 2));
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)(s[4 + j] & 0x0F) + m;
                dst[j + 16] = d * (float)(s[4 + j] >> 4) + m;
            }
        }
        return 0;
    default:
        return -1;
    }
}

int rl_gguf_tensor_f32(const rl_gguf_tensor *t, float *out, char *err)
{
    char tb[16];
    if (!rl_ggml_type_supported(t->type)) {
        snprintf(err, RL_ERRLEN,
                 "gguf: tensor %s has type %s, which is not supported (F32, F16, "
                 "BF16, Q8_0, Q4_0 and Q4_1 are)",
                 t->name, rl_ggml_type_name(t->type, tb));
        return -1;
    }
    if (rl_gguf_dequant(t->type, t->data, out, t->nelem)) {
        snprintf(err, RL_ERRLEN, "gguf: tensor %s: cannot dequantise %s", t->name,
                 rl_ggml_type_name(t->type, tb));
        return -1;
    }
    return 0;
}
