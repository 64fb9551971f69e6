/* Unit tests for trainerd/rl/ckpt and tok: a checkpoint round trip restores weights, AdamW
 * moments, step and state words exactly; the safetensors header is 8-byte aligned JSON; the
 * char tokenizer maps text to ids and back and rejects bytes outside its alphabet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../trainerd/rl/ckpt.h"
#include "../../../trainerd/rl/tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_roundtrip(void **state)
{
    rl_config c = {.vocab = 9,
                   .hidden = 8,
                   .layers = 2,
                   .heads = 2,
                   .kv_heads = 1,
                   .head_dim = 4,
                   .inter = 6,
                   .max_seq = 8,
                   .rope_theta = 1e4f,
                   .rms_eps = 1e-6f,
                   .qkv_bias = 1,
                   .tie_embed = 0};
    rl_model *m = rl_model_new(&c);
    uint64_t rng = 5;
    rl_model_init(m, &rng);
    for (size_t i = 0; i < m->nparams; i++) m->m[i] = (float)i, m->v[i] = 1.0f / (i + 1);
    m->step = 17;
    uint64_t st[RL_STATE_WORDS] = {123, 4, 5}, st2[RL_STATE_WORDS] = {0};
    char dir[] = "/tmp/rl_ckpt_XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *err = NULL;
    assert_int_equal(rl_ckpt_save(dir, m, "chars:abc", st, &err), 0);
    char spec[300];
    int has = 0;
    rl_model *m2 = rl_ckpt_load(dir, spec, st2, &has, &err);
    assert_non_null(m2);
    assert_true(has);
    assert_string_equal(spec, "chars:abc");
    assert_int_equal(m2->step, 17);
    assert_memory_equal(st, st2, sizeof st);
    assert_memory_equal(m->params, m2->params, m->nparams * sizeof(float));
    assert_memory_equal(m->m, m2->m, m->nparams * sizeof(float));
    assert_memory_equal(m->v, m2->v, m->nparams * sizeof(float));
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "rb");
    unsigned char len8[8];
    assert_int_equal(fread(len8, 1, 8, f), 8);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)len8[i] << (8 * i);
    assert_int_equal(hl % 8, 0);
    assert_int_equal(fgetc(f), '{');
    fclose(f);
    /* a model without the state file loads weights only */
    snprintf(path, sizeof path, "%s/trainer_state.bin", dir);
    unlink(path);
    rl_model *m3 = rl_ckpt_load(dir, spec, st2, &has, &err);
    assert_non_null(m3);
    assert_false(has);
    assert_memory_equal(m->params, m3->params, m->nparams * sizeof(float));
    const char *rm[] = {"model.safetensors", "config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, rm[i]);
        unlink(path);
    }
    rmdir(dir);
    rl_model_free(m);
    rl_model_free(m2);
    rl_model_free(m3);
}

static void test_tokenizer(void **state)
{
    rl_tok t;
    const char *err = NULL;
    assert_int_equal(rl_tok_init(&t, "chars:0123456789=", &err), 0);
    assert_int_equal(t.vocab, 14);
    int ids[8];
    assert_int_equal(rl_tok_encode(&t, "90=", 3, ids, 8), 3);
    assert_int_equal(ids[0], 3 + 9);
    assert_int_equal(ids[2], 3 + 10);
    assert_int_equal(rl_tok_encode(&t, "9a", 2, ids, 8), -1);
    char out[4];
    assert_int_equal(rl_tok_decode(&t, ids[1], out, 4), 1);
    assert_string_equal(out, "0");
    assert_int_equal(rl_tok_decode(&t, RL_TOK_EOS, out, 4), 0);
    assert_int_equal(rl_tok_init(&t, "bytes", &err), 0);
    assert_int_equal(t.vocab, 259);
    assert_int_equal(rl_tok_init(&t, "bpe", &err), -1);
    assert_non_null(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
