/* Unit tests for trainerd/rl/gguf: a GGUF v3 file written here byte by byte (metadata of several
 * types, a string array, tensors of every supported type with known values, alignment 64) reads
 * back exactly; the block formulas of Q8_0 / Q4_0 / Q4_1 and the F16 / BF16 conversions give
 * the values computed by hand; corrupt files and unsupported tensor types fail with a message
 * that names the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../trainerd/rl/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    unsigned char *p;
    size_t n, cap;
} wbuf;

static void put(wbuf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void u32(wbuf *b, uint32_t v)
{
    put(b, &v, 4);
}
static void u64(wbuf *b, uint64_t v)
{
    put(b, &v, 8);
}
static void str(wbuf *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad(wbuf *b, size_t a)
{
    while (b->n % a) put(b, "", 1);
}

static uint16_t h16(float f) /* exact for the small values used here */
{
    if (f == 0) return 0;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint32_t sign = (bits >> 16) & 0x8000, exp = ((bits >> 23) & 0xFF) - 127 + 15,
             man = (bits >> 13) & 0x3FF;
    return (uint16_t)(sign | exp << 10 | man);
}

typedef struct {
    const char *name;
    uint32_t type;
    uint64_t ne0, ne1;
    wbuf data;
} wtensor;

static char *write_file(const wbuf *b)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/gguf_test_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b->p, b->n), (ssize_t)b->n);
    close(fd);
    return path;
}

/* Header + metadata (alignment 64) + the tensors. */
static wbuf build(wtensor *t, int nt, uint32_t version)
{
    wbuf b = {0};
    u32(&b, 0x46554747u);
    u32(&b, version);
    u64(&b, (uint64_t)nt);
    u64(&b, 5);
    str(&b, "general.architecture");
    u32(&b, 8);
    str(&b, "llama");
    str(&b, "general.alignment");
    u32(&b, 4);
    u32(&b, 64);
    str(&b, "llama.rope.freq_base");
    u32(&b, 6);
    float th = 100000.0f;
    put(&b, &th, 4);
    str(&b, "tokenizer.ggml.tokens");
    u32(&b, 9);
    u32(&b, 8);
    u64(&b, 3);
    str(&b, "a");
    str(&b, "\xc4\xa0"
            "b");
    str(&b, "<|x|>");
    str(&b, "tokenizer.ggml.token_type");
    u32(&b, 9);
    u32(&b, 5);
    u64(&b, 3);
    int32_t ty[3] = {1, 1, 3};
    put(&b, ty, sizeof ty);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        str(&b, t[i].name);
        u32(&b, 2);
        u64(&b, t[i].ne0);
        u64(&b, t[i].ne1);
        u32(&b, t[i].type);
        u64(&b, off);
        off += (t[i].data.n + 63) / 64 * 64;
    }
    pad(&b, 64);
    for (int i = 0; i < nt; i++) {
        put(&b, t[i].data.p, t[i].data.n);
        pad(&b, 64);
    }
    return b;
}

/* Expected values: 64 elements x[i] = (i % 16) - 8 + 0.5 * (i / 32). */
static float want(int i)
{
    return (float)(i % 16) - 8.0f + 0.5f * (float)(i / 32);
}

static void make_tensors(wtensor *t)
{
    memset(t, 0, sizeof(wtensor) * 6);
    const char *names[6] = {"f32", "f16", "bf16", "q8", "q4_0", "q4_1"};
    uint32_t types[6] = {RL_GGML_F32,  RL_GGML_F16,  RL_GGML_BF16,
                         RL_GGML_Q8_0, RL_GGML_Q4_0, RL_GGML_Q4_1};
    for (int k = 0; k < 6; k++) {
        t[k].name = names[k];
        t[k].type = types[k];
        t[k].ne0 = 32;
        t[k].ne1 = 2;
    }
    for (int i = 0; i < 64; i++) {
        float v = want(i);
        put(&t[0].data, &v, 4);
        uint16_t h = h16(v);
        put(&t[1].data, &h, 2);
        uint32_t bits;
        memcpy(&bits, &v, 4);
        uint16_t bf = (uint16_t)(bits >> 16);
        put(&t[2].data, &bf, 2);
    }
    for (int blk = 0; blk < 2; blk++) {
        /* Q8_0: d = 0.5, q = 2 * x */
        uint16_t d = h16(0.5f);
        put(&t[3].data, &d, 2);
        for (int j = 0; j < 32; j++) {
            int8_t q = (int8_t)(2 * want(blk * 32 + j));
            put(&t[3].data, &q, 1);
        }
        /* Q4_0 stores (x/d + 8): block 0 with d = 1 holds x = i%16 - 8 exactly; block 1 has
         * x + 0.5 which Q4_0 cannot hold, so it uses d = 1 and the test expects x - 0.5 */
        d = h16(1.0f);
        put(&t[4].data, &d, 2);
        for (int j = 0; j < 16; j++) {
            unsigned lo = (unsigned)(j % 16), hi = (unsigned)((j + 16) % 16);
            unsigned char q = (unsigned char)(lo | hi << 4);
            put(&t[4].data, &q, 1);
        }
        /* Q4_1: d = 1, m = -8 + 0.5 * blk, nibble = i % 16 */
        uint16_t dm[2] = {h16(1.0f), h16(-8.0f + 0.5f * blk)};
        put(&t[5].data, dm, 4);
        for (int j = 0; j < 16; j++) {
            unsigned char q = (unsigned char)(j | ((j + 16) % 16) << 4);
            put(&t[5].data, &q, 1);
        }
    }
}

static void test_read_and_dequant(void **state)
{
    wtensor t[6];
    make_tensors(t);
    wbuf b = build(t, 6, 3);
    char *path = write_file(&b);
    char err[RL_ERRLEN] = "";
    rl_gguf *g = rl_gguf_open(path, err);
    assert_non_null(g);
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->n_tensors, 6);
    char *arch = rl_gguf_str(g, "general.architecture");
    assert_string_equal(arch, "llama");
    free(arch);
    assert_true(rl_gguf_float(g, "llama.rope.freq_base", 0) == 100000.0);
    assert_int_equal(rl_gguf_int(g, "general.alignment", 0), 64);
    assert_int_equal(rl_gguf_int(g, "missing", -7), -7);
    const rl_gguf_kv *toks = rl_gguf_get(g, "tokenizer.ggml.tokens");
    rl_gguf_iter it;
    rl_gguf_iter_init(&it, toks);
    const char *s;
    size_t len;
    const char *expect[3] = {"a",
                             "\xc4\xa0"
                             "b",
                             "<|x|>"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rl_gguf_iter_str(&it, &s, &len), 0);
        assert_int_equal(len, strlen(expect[i]));
        assert_memory_equal(s, expect[i], len);
    }
    assert_int_equal(rl_gguf_iter_str(&it, &s, &len), -1);
    assert_int_equal(rl_gguf_arr_int(rl_gguf_get(g, "tokenizer.ggml.token_type"), 2, 0), 3);
    float out[64];
    for (int k = 0; k < 6; k++) {
        const rl_gguf_tensor *tt = rl_gguf_tensor_find(g, t[k].name);
        assert_non_null(tt);
        assert_int_equal(tt->nelem, 64);
        assert_int_equal((tt->data - g->map) % 64, 0);
        assert_int_equal(rl_gguf_tensor_f32(tt, out, err), 0);
        for (int i = 0; i < 64; i++) {
            float w = want(i);
            if (t[k].type == RL_GGML_Q4_0) w = (float)(i % 16) - 8.0f;
            assert_true(fabsf(out[i] - w) == 0.0f);
        }
    }
    rl_gguf_close(g);
    unlink(path);
    for (int k = 0; k < 6; k++) free(t[k].data.p);
    free(b.p);
}

static void test_half_conversions(void **state)
{
    assert_true(rl_f16_to_f32(0x3C00) == 1.0f);
    assert_true(rl_f16_to_f32(0xC000) == -2.0f);
    assert_true(rl_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(rl_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(rl_f16_to_f32(0x03FF) == ldexpf(1023.0f, -24));
    assert_true(isinf(rl_f16_to_f32(0x7C00)));
    assert_true(isnan(rl_f16_to_f32(0x7E00)));
    assert_true(signbit(rl_f16_to_f32(0x8000)));
    assert_true(rl_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(rl_bf16_to_f32(0xC0A0) == -5.0f);
}

static void expect_error(wbuf *b, const char *needle)
{
    char *path = write_file(b);
    char err[RL_ERRLEN] = "";
    rl_gguf *g = rl_gguf_open(path, err);
    unlink(path);
    assert_null(g);
    if (!strstr(err, needle)) fail_msg("error \"%s\" lacks \"%s\"", err, needle);
}

static void test_errors(void **state)
{
    wtensor t[6];
    make_tensors(t);
    wbuf b = build(t, 6, 3);
    b.p[0] = 'X';
    expect_error(&b, "bad magic");
    free(b.p);
    b = build(t, 6, 4);
    expect_error(&b, "unsupported version 4");
    free(b.p);
    b = build(t, 6, 3);
    b.n = 200; /* inside the metadata */
    expect_error(&b, "truncated or corrupt metadata");
    free(b.p);
    b = build(t, 6, 3);
    b.n -= 64; /* the last tensor's data is cut */
    expect_error(&b, "tensor q4_1 extends past the end");
    free(b.p);
    /* an unsupported type opens (the directory is valid) but names itself on use */
    t[5].type = 12; /* Q4_K */
    t[5].ne0 = 256, t[5].ne1 = 1;
    b = build(t, 6, 3);
    char *path = write_file(&b);
    char err[RL_ERRLEN] = "";
    rl_gguf *g = rl_gguf_open(path, err);
    assert_non_null(g);
    float out[256];
    assert_int_equal(rl_gguf_tensor_f32(rl_gguf_tensor_find(g, "q4_1"), out, err), -1);
    assert_non_null(strstr(err, "tensor q4_1 has type Q4_K, which is not supported"));
    rl_gguf_close(g);
    unlink(path);
    free(b.p);
    /* a quantised row that is not a whole number of blocks */
    for (int k = 0; k < 6; k++) free(t[k].data.p);
    make_tensors(t);
    t[3].ne0 = 16, t[3].ne1 = 4;
    b = build(t, 6, 3);
    expect_error(&b, "not a multiple of the Q8_0 block");
    free(b.p);
    for (int k = 0; k < 6; k++) free(t[k].data.p);
    char tb[16];
    assert_string_equal(rl_ggml_type_name(14, tb), "Q6_K");
    assert_string_equal(rl_ggml_type_name(99, tb), "type 99");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_and_dequant),
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
