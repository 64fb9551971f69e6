/* Unit tests for trainerd/rl/model: finite-difference gradient checks of every tensor (so every
 * layer's backward) under an arbitrary per-token dL/dlogp, KV-cache decoding against the full
 * forward, thread-count independence of gradients, and AdamW. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../trainerd/rl/model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TB = 2, TT = 6 };

static rl_config tiny(int bias, int tie)
{
    /* hidden != heads*head_dim and kv_heads < heads on purpose: exercises GQA and the general
     * projection shapes */
    rl_config c = {.vocab = 11,
                   .hidden = 8,
                   .layers = 2,
                   .heads = 4,
                   .kv_heads = 2,
                   .head_dim = 4,
                   .inter = 12,
                   .max_seq = 8,
                   .rope_theta = 10000.0f,
                   .rms_eps = 1e-5f,
                   .qkv_bias = bias,
                   .tie_embed = tie};
    return c;
}

/* A model with large random weights so every nonlinearity is exercised. */
static rl_model *make_model(rl_config c, uint64_t seed)
{
    rl_model *m = rl_model_new(&c);
    uint64_t rng = seed;
    for (size_t i = 0; i < m->nparams; i++) m->params[i] = 0.4f * rl_rng_normal(&rng);
    for (int i = 0; i < c.layers * c.hidden; i++) {
        m->t[RL_LN1][i] += 1.0f;
        m->t[RL_LN2][i] += 1.0f;
    }
    return m;
}

static int tokens[TB * TT], targets[TB * TT];
static float coef[TB * TT];

static void make_batch(void)
{
    uint64_t rng = 99;
    for (int n = 0; n < TB * TT; n++) {
        tokens[n] = (int)(rl_rng_u64(&rng) % 11);
        targets[n] = (n % TT == 1) ? -1 : (int)(rl_rng_u64(&rng) % 11); /* one ignored slot */
        coef[n] = targets[n] < 0 ? 0.0f : rl_rng_normal(&rng);
    }
}

static double objective(rl_model *m)
{
    rl_model_forward(m, tokens, targets, TB, TT);
    double s = 0.0;
    for (int n = 0; n < TB * TT; n++) s += (double)coef[n] * m->a.logp[n];
    return s;
}

/* Central differences on up to `per` elements of every tensor. */
static void grad_check(int bias, int tie)
{
    make_batch();
    rl_model *m = make_model(tiny(bias, tie), 7 + bias + 2 * tie);
    rl_model_zero_grad(m);
    objective(m);
    rl_model_backward(m, coef);
    float *an = malloc(m->nparams * sizeof(float));
    memcpy(an, m->grads, m->nparams * sizeof(float));
    int checked = 0;
    for (int k = 0; k < RL_NTENSORS; k++) {
        if (m->sizes[k] == 0) continue;
        size_t off = (size_t)(m->t[k] - m->params), n = m->sizes[k];
        size_t stride = n > 24 ? n / 24 : 1;
        double maxerr = 0.0;
        for (size_t i = 0; i < n; i += stride) {
            float *p = m->params + off + i, save = *p;
            const float h = 4e-3f;
            *p = save + h;
            double up = objective(m);
            *p = save - h;
            double dn = objective(m);
            *p = save;
            double fd = (up - dn) / (2.0 * (double)h), a = an[off + i];
            double err = fabs(fd - a) / (fabs(fd) + fabs(a) + 1e-2);
            if (err > maxerr) maxerr = err;
            checked++;
        }
        if (getenv("RL_VERBOSE") || maxerr > 2e-2)
            fprintf(stderr, "tensor %s: max rel err %g\n", rl_tensor_names[k], maxerr);
        assert_true(maxerr <= 2e-2);
    }
    assert_true(checked > 100);
    free(an);
    rl_model_free(m);
}

static void test_grad_untied_bias(void **state)
{
    grad_check(1, 0);
}

static void test_grad_tied_nobias(void **state)
{
    grad_check(0, 1);
}

static void test_kv_decode_matches_forward(void **state)
{
    make_batch();
    rl_config c = tiny(1, 0);
    rl_model *m = make_model(c, 3);
    rl_model_forward(m, tokens, targets, TB, TT);
    float *scratch = malloc(rl_step_scratch_size(&c) * sizeof(float)), logits[11];
    for (int b = 0; b < TB; b++) {
        rl_kv kv;
        rl_kv_init(&kv, &c);
        for (int t = 0; t < TT; t++) {
            rl_model_step(m, &kv, tokens[b * TT + t], logits, scratch);
            double mx = logits[0], s = 0;
            for (int i = 1; i < 11; i++) mx = logits[i] > mx ? logits[i] : mx;
            for (int i = 0; i < 11; i++) s += exp(logits[i] - mx);
            for (int i = 0; i < 11; i++) {
                double p = exp(logits[i] - mx) / s;
                assert_true(fabs(p - m->a.prob[(b * TT + t) * 11 + i]) < 1e-5);
            }
        }
        assert_int_equal(kv.len, TT);
        rl_kv_free(&kv);
    }
    free(scratch);
    rl_model_free(m);
}

/* support_lo/hi (the ids the RL sampler can draw): the softmax, the target log-probs and the
 * entropy are those over the support only, and ids outside it get probability 0, so the backward
 * gives their logits no gradient (the head rows of never-sampled ids stay as they are). */
static void test_softmax_support(void **state)
{
    make_batch();
    rl_config c = tiny(0, 0);
    rl_model *m = make_model(c, 4);
    float *scratch = malloc(rl_step_scratch_size(&c) * sizeof(float)), logits[11];
    int tg[TB * TT];
    for (int n = 0; n < TB * TT; n++) tg[n] = n % TT == 1 ? -1 : 2 + targets[n] % 7; /* in [2, 9) */
    m->support_lo = 2, m->support_hi = 9;
    rl_model_forward(m, tokens, tg, TB, TT);
    for (int b = 0; b < TB; b++) {
        rl_kv kv;
        rl_kv_init(&kv, &c);
        for (int t = 0; t < TT; t++) {
            int n = b * TT + t;
            rl_model_step(m, &kv, tokens[n], logits, scratch);
            double mx = logits[2], s = 0, ent = 0;
            for (int i = 2; i < 9; i++) mx = logits[i] > mx ? logits[i] : mx;
            for (int i = 2; i < 9; i++) s += exp(logits[i] - mx);
            for (int i = 0; i < 11; i++) {
                double p = i >= 2 && i < 9 ? exp(logits[i] - mx) / s : 0.0;
                assert_true(fabs(p - m->a.prob[n * 11 + i]) < 1e-5);
                if (p > 0) ent -= p * log(p);
            }
            assert_true(fabs(ent - m->a.ent[n]) < 1e-4);
            if (tg[n] >= 0) assert_true(fabs(logits[tg[n]] - mx - log(s) - m->a.logp[n]) < 1e-4);
        }
        rl_kv_free(&kv);
    }
    float dl[TB * TT];
    for (int n = 0; n < TB * TT; n++) dl[n] = tg[n] >= 0 ? coef[n] + 0.5f : 0.0f;
    rl_model_zero_grad(m);
    rl_model_backward(m, dl);
    for (int i = 0; i < 11; i++)
        for (int k = 0; k < c.hidden; k++)
            if (i < 2 || i >= 9) assert_true(m->gt[RL_HEAD][i * c.hidden + k] == 0.0f);
    free(scratch);
    rl_model_free(m);
}

static void test_threads_bitwise(void **state)
{
    make_batch();
    rl_model *m = make_model(tiny(1, 0), 5);
    float *g[2];
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(r + 1);
        rl_model_zero_grad(m);
        objective(m);
        rl_model_backward(m, coef);
        g[r] = malloc(m->nparams * sizeof(float));
        memcpy(g[r], m->grads, m->nparams * sizeof(float));
    }
    assert_memory_equal(g[0], g[1], m->nparams * sizeof(float));
    free(g[0]);
    free(g[1]);
    rl_model_free(m);
}

static void test_adamw_step(void **state)
{
    rl_config c = tiny(0, 1);
    rl_model *m = rl_model_new(&c);
    for (size_t i = 0; i < m->nparams; i++) {
        m->params[i] = 1.0f;
        m->grads[i] = (i % 2) ? 3.0f : -4.0f;
    }
    rl_adamw o = {.lr = 0.1f,
                  .beta1 = 0.9f,
                  .beta2 = 0.95f,
                  .eps = 1e-8f,
                  .weight_decay = 0.0f,
                  .grad_clip = 0.0f};
    double norm = rl_model_adamw(m, &o);
    assert_true(fabs(norm - sqrt(m->nparams * 12.5)) < 1e-3 * norm);
    /* first step with bias correction moves each weight by lr * sign(g) */
    assert_true(fabsf(m->params[0] - 1.1f) < 1e-5f);
    assert_true(fabsf(m->params[1] - 0.9f) < 1e-5f);
    /* clipping: the update direction is unchanged but the moments see the clipped gradient */
    for (size_t i = 0; i < m->nparams; i++) m->grads[i] = 2.0f;
    o.grad_clip = 1.0f;
    rl_model_adamw(m, &o);
    float g = 1.0f / sqrtf((float)m->nparams); /* 2 * clip / (2 sqrt(n)) */
    float expect_m = 0.9f * (0.1f * 3.0f) + 0.1f * g;
    assert_true(fabsf(m->m[1] - expect_m) < 1e-5f);
    rl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_untied_bias),          cmocka_unit_test(test_grad_tied_nobias),
        cmocka_unit_test(test_kv_decode_matches_forward), cmocka_unit_test(test_softmax_support),
        cmocka_unit_test(test_threads_bitwise),           cmocka_unit_test(test_adamw_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
