/* gguf — a reader for GGUF v3 files (llama.cpp's model format): header, metadata key/values,
 * tensor directory and data alignment, and dequantisation of F32, F16, BF16, Q8_0, Q4_0 and
 * Q4_1 tensors to fp32 with the block formulas of the GGUF specification (ggml docs/gguf.md).
 * The file is mmap'ed read-only; every string and array returned points into the mapping and
 * lives until rl_gguf_close. All multi-byte values are little-endian (checked: big-endian
 * hosts are refused). */
#ifndef RL_GGUF_H
#define RL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#define RL_ERRLEN 256 /* size of the err buffers of gguf, bpe, chat, hf and pretrained */

/* GGUF metadata value types (gguf.md "gguf_metadata_value_type"). */
enum {
    RL_GGUF_U8 = 0,
    RL_GGUF_I8 = 1,
    RL_GGUF_U16 = 2,
    RL_GGUF_I16 = 3,
    RL_GGUF_U32 = 4,
    RL_GGUF_I32 = 5,
    RL_GGUF_F32 = 6,
    RL_GGUF_BOOL = 7,
    RL_GGUF_STRING = 8,
    RL_GGUF_ARRAY = 9,
    RL_GGUF_U64 = 10,
    RL_GGUF_I64 = 11,
    RL_GGUF_F64 = 12,
};

/* ggml tensor types this reader dequantises (values from ggml.h's enum ggml_type). */
enum {
    RL_GGML_F32 = 0,
    RL_GGML_F16 = 1,
    RL_GGML_Q4_0 = 2,
    RL_GGML_Q4_1 = 3,
    RL_GGML_Q8_0 = 8,
    RL_GGML_BF16 = 30,
};

typedef struct {
    const char *key; /* not NUL-terminated: key_len bytes */
    size_t key_len;
    uint32_t type;             /* RL_GGUF_* */
    uint32_t elem_type;        /* arrays: element type */
    uint64_t n;                /* arrays: element count; strings: byte length */
    const unsigned char *data; /* the value (for arrays of strings: the first length prefix) */
} rl_gguf_kv;

typedef struct {
    const char *name; /* NUL-terminated copy */
    uint32_t n_dims;
    uint64_t ne[4];  /* ne[0] varies fastest: a (rows, cols) matrix has ne = {cols, rows} */
    uint32_t type;   /* ggml type */
    uint64_t offset; /* from the start of the data section */
    uint64_t nelem, nbytes;
    const unsigned char *data;
} rl_gguf_tensor;

typedef struct rl_gguf {
    const unsigned char *map;
    size_t size;
    uint32_t version;
    uint64_t alignment;
    size_t n_kv, n_tensors;
    rl_gguf_kv *kv;
    rl_gguf_tensor *tensors;
} rl_gguf;

/* Opens and validates path (magic, version 2 or 3, bounds of every key, tensor and array,
 * alignment of tensor offsets, sizes of supported types). Returns NULL with err filled. Caller
 * frees with rl_gguf_close. */
rl_gguf *rl_gguf_open(const char *path, char *err);
void rl_gguf_close(rl_gguf *g);

const rl_gguf_kv *rl_gguf_get(const rl_gguf *g, const char *key);
/* Scalar accessors: integer / float / bool of any width convert; return def when the key is
 * missing or of another kind. */
int64_t rl_gguf_int(const rl_gguf *g, const char *key, int64_t def);
double rl_gguf_float(const rl_gguf *g, const char *key, double def);
/* Copies a string value into a new NUL-terminated string (caller frees), or NULL. */
char *rl_gguf_str(const rl_gguf *g, const char *key);
/* Array of strings: walks element i (0-based, sequential access is O(1) per step through the
 * iterator). */
typedef struct {
    const rl_gguf_kv *kv;
    uint64_t i;
    const unsigned char *p;
} rl_gguf_iter;
void rl_gguf_iter_init(rl_gguf_iter *it, const rl_gguf_kv *kv);
/* Next string of a string array: sets *s / *len, returns 0, or -1 at the end. */
int rl_gguf_iter_str(rl_gguf_iter *it, const char **s, size_t *len);
/* Element i of an integer array (any integer width), or def. */
int64_t rl_gguf_arr_int(const rl_gguf_kv *kv, uint64_t i, int64_t def);

const rl_gguf_tensor *rl_gguf_tensor_find(const rl_gguf *g, const char *name);
/* Name of a ggml type ("Q4_K", ...) for messages; "type 99" style for unknown ones. */
const char *rl_ggml_type_name(uint32_t type, char buf[16]);
/* Whether rl_gguf_dequant supports a type. */
int rl_ggml_type_supported(uint32_t type);
/* Dequantises n elements (a multiple of the block size) of type from src into dst. */
int rl_gguf_dequant(uint32_t type, const void *src, float *dst, size_t n);
/* Dequantises a whole tensor into out (nelem floats). Returns 0 or -1 with err naming the
 * tensor and type. */
int rl_gguf_tensor_f32(const rl_gguf_tensor *t, float *out, char *err);

float rl_f16_to_f32(uint16_t h);
float rl_bf16_to_f32(uint16_t h);

#endif
