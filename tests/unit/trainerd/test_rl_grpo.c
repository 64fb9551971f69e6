/* Unit tests for trainerd/rl/grpo: advantages (identical rewards, singleton group, Bessel std,
 * Dr. GRPO), finite-difference checks of dL/dlogp for every aggregation and KL type, clip
 * fraction, and that splitting a batch over "ranks" with global denominators sums to the
 * single-rank loss and gradient. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../trainerd/rl/grpo.h"
#include "../../../trainerd/rl/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void test_advantages(void **state)
{
    float r[] = {1, 1, 1, 0, 1, 0.5f, 2};
    int g[] = {0, 0, 0, 1, 1, 2, 3};
    float a[7];
    rl_grpo_advantages(r, g, 7, 1, 1e-6f, a);
    assert_true(a[0] == 0 && a[1] == 0 && a[2] == 0); /* zero-variance group */
    /* group {0,1}: mean .5, Bessel std sqrt(.5) */
    assert_true(fabsf(a[3] + 0.5f / sqrtf(0.5f)) < 1e-5f);
    assert_true(fabsf(a[4] - 0.5f / sqrtf(0.5f)) < 1e-5f);
    assert_true(fabsf(a[5] - 0.5f) < 1e-5f);  /* singleton: mean 0, std 1 */
    assert_true(fabsf(a[6] - 2.0f) < 1e-5f);  /* 2 / (1 + eps) */
    rl_grpo_advantages(r, g, 7, 0, 1e-6f, a); /* Dr. GRPO: no std */
    assert_true(fabsf(a[3] + 0.5f) < 1e-6f && fabsf(a[4] - 0.5f) < 1e-6f);
}

enum { B = 4, T = 5 };
static float logp[B * T], old[B * T], ref[B * T], mask[B * T], adv[B];

static void make_inputs(void)
{
    uint64_t rng = 1234;
    for (int n = 0; n < B * T; n++) {
        logp[n] = -0.2f - 2.0f * rl_rng_uniform(&rng);
        /* ratios spread over [0.6, 1.5] so both clip sides are hit */
        old[n] = logp[n] - logf(0.6f + 0.9f * rl_rng_uniform(&rng));
        ref[n] = logp[n] + 0.8f * rl_rng_normal(&rng);
        mask[n] = (n % T) < 1 + (n / T) % T ? 1.0f : 0.0f; /* lengths 1..4 */
    }
    for (int b = 0; b < B; b++) adv[b] = (b % 2 ? 1.0f : -1.3f) * (1 + b);
    adv[0] = -4.0f; /* dual clip territory */
}

static double loss_at(const rl_grpo_cfg *c, const float *lp, float *d, rl_grpo_stats *st)
{
    double nt = 0;
    for (int n = 0; n < B * T; n++) nt += mask[n];
    rl_grpo_loss(c, lp, old, ref, adv, mask, B, T, nt, B, d, st);
    return st->loss;
}

static void fd_check(rl_agg agg, rl_kl kl)
{
    make_inputs();
    rl_grpo_cfg c = {.clip_low = 0.2f,
                     .clip_high = 0.28f,
                     .clip_c = 3.0f,
                     .kl_coef = 0.1f,
                     .kl_type = kl,
                     .agg = agg};
    float d[B * T], dd[B * T], lp[B * T];
    rl_grpo_stats st;
    loss_at(&c, logp, d, &st);
    assert_true(st.ntok > 0);
    for (int n = 0; n < B * T; n++) {
        const double h = 1e-3;
        memcpy(lp, logp, sizeof lp);
        lp[n] = (float)(logp[n] + h);
        double up = loss_at(&c, lp, dd, &st);
        lp[n] = (float)(logp[n] - h);
        double dn = loss_at(&c, lp, dd, &st);
        double fd = (up - dn) / (2 * h);
        if (mask[n] == 0.0f) assert_true(d[n] == 0.0f);
        assert_true(fabs(fd - d[n]) < 1e-3 * (1.0 + fabs(fd)));
    }
}

static void test_fd_token_mean(void **state)
{
    fd_check(RL_AGG_TOKEN_MEAN, RL_KL_NONE);
    fd_check(RL_AGG_TOKEN_MEAN, RL_KL_K3);
}

static void test_fd_seq_mean_token_sum(void **state)
{
    fd_check(RL_AGG_SEQ_MEAN_TOKEN_SUM, RL_KL_K1);
    fd_check(RL_AGG_SEQ_MEAN_TOKEN_SUM, RL_KL_NONE);
}

static void test_fd_seq_mean_token_mean(void **state)
{
    fd_check(RL_AGG_SEQ_MEAN_TOKEN_MEAN, RL_KL_K3);
    fd_check(RL_AGG_SEQ_MEAN_TOKEN_MEAN, RL_KL_NONE);
}

/* With logp == old_logp (one update per batch) the ratio is 1, nothing clips and
 * dL/dlogp = -A / N_tokens under token-mean. */
static void test_on_policy_weights(void **state)
{
    make_inputs();
    rl_grpo_cfg c = {.clip_low = 0.2f, .clip_high = 0.2f, .clip_c = 3.0f, .agg = RL_AGG_TOKEN_MEAN};
    float d[B * T];
    rl_grpo_stats st;
    double nt = 0;
    for (int n = 0; n < B * T; n++) nt += mask[n];
    rl_grpo_loss(&c, logp, logp, NULL, adv, mask, B, T, nt, B, d, &st);
    assert_true(st.clipfrac == 0.0 && st.approx_kl == 0.0);
    for (int n = 0; n < B * T; n++)
        if (mask[n] != 0.0f) assert_true(fabsf(d[n] + adv[n / T] / (float)nt) < 1e-7f);
}

/* Two "ranks" each holding two sequences, normalised by global counts, sum to one rank. */
static void test_split_equals_whole(void **state)
{
    make_inputs();
    for (int agg = 0; agg < 3; agg++) {
        rl_grpo_cfg c = {.clip_low = 0.2f,
                         .clip_high = 0.2f,
                         .clip_c = 3.0f,
                         .kl_coef = 0.05f,
                         .kl_type = RL_KL_K3,
                         .agg = (rl_agg)agg};
        float d[B * T], d2[B * T];
        rl_grpo_stats st, s0, s1;
        double nt = 0;
        for (int n = 0; n < B * T; n++) nt += mask[n];
        rl_grpo_loss(&c, logp, old, ref, adv, mask, B, T, nt, B, d, &st);
        int h = B / 2 * T;
        rl_grpo_loss(&c, logp, old, ref, adv, mask, B / 2, T, nt, B, d2, &s0);
        rl_grpo_loss(&c, logp + h, old + h, ref + h, adv + B / 2, mask + h, B / 2, T, nt, B, d2 + h,
                     &s1);
        assert_true(fabs(s0.loss + s1.loss - st.loss) < 1e-6);
        assert_memory_equal(d, d2, sizeof d);
    }
}

static void test_parse(void **state)
{
    rl_agg a;
    rl_kl k;
    assert_int_equal(rl_agg_parse("seq-mean-token-mean", &a), 0);
    assert_int_equal(a, RL_AGG_SEQ_MEAN_TOKEN_MEAN);
    assert_int_equal(rl_agg_parse("bogus", &a), -1);
    assert_int_equal(rl_kl_parse("low_var_kl", &k), 0);
    assert_int_equal(k, RL_KL_K3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advantages),
        cmocka_unit_test(test_fd_token_mean),
        cmocka_unit_test(test_fd_seq_mean_token_sum),
        cmocka_unit_test(test_fd_seq_mean_token_mean),
        cmocka_unit_test(test_on_policy_weights),
        cmocka_unit_test(test_split_equals_whole),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
