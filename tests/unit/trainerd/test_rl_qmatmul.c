/* Unit tests for trainerd/rl/qmatmul: Q8_0 quantisation bounds, every kernel this CPU runs
 * against the scalar reference (and the reference against float64), row-tile invariance (a row's
 * result does not depend on the rows batched with it), row ranges, and the int16-saturation
 * worst case of the AVX2 kernel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../trainerd/rl/model.h" /* rl_rng_* */
#include "../../../trainerd/rl/qmatmul.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill(float *x, size_t n, uint64_t seed, float sd)
{
    uint64_t rng = seed;
    for (size_t i = 0; i < n; i++) x[i] = sd * rl_rng_normal(&rng);
}

static void test_quantize_bounds(void **state)
{
    float x[96];
    fill(x, 96, 7, 3.0f);
    for (int i = 64; i < 96; i++) x[i] = 0.0f; /* an all-zero block */
    x[5] = 40.0f;                              /* an outlier sets block 0's scale */
    int8_t q[96];
    float d[3];
    rl_q8_quantize(q, d, x, 96);
    assert_true(fabsf(d[0] - 40.0f / 127.0f) < 1e-6f);
    assert_int_equal(q[5], 127);
    assert_true(d[2] == 0.0f);
    for (int i = 0; i < 96; i++) {
        assert_true(q[i] >= -127 && q[i] <= 127);
        /* round to nearest: the error is at most half a step */
        assert_true(fabsf(d[i / 32] * q[i] - x[i]) <= 0.5f * d[i / 32] * (1.0f + 1e-5f));
    }
    for (int i = 64; i < 96; i++) assert_int_equal(q[i], 0);
}

/* random W (rows x cols) and X (N x cols), quantised */
typedef struct {
    rl_q8_mat w;
    int8_t *xq;
    float *xd, *bias;
    int N;
} problem;

static problem make(int rows, int cols, int N, uint64_t seed)
{
    problem p = {.N = N};
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * N * cols);
    fill(w, (size_t)rows * cols, seed, 0.05f);
    fill(x, (size_t)N * cols, seed + 1, 2.0f);
    rl_q8_mat_alloc(&p.w, rows, cols);
    rl_q8_mat_set(&p.w, 0, w, rows);
    p.xq = malloc((size_t)N * cols);
    p.xd = malloc(sizeof(float) * N * (cols / 32));
    for (int n = 0; n < N; n++)
        rl_q8_quantize(p.xq + (size_t)n * cols, p.xd + (size_t)n * (cols / 32),
                       x + (size_t)n * cols, cols);
    p.bias = malloc(sizeof(float) * rows);
    fill(p.bias, rows, seed + 2, 1.0f);
    free(w), free(x);
    return p;
}

static void drop(problem *p)
{
    rl_q8_mat_free(&p->w);
    free(p->xq), free(p->xd), free(p->bias);
}

/* sum over blocks of |int32 sum * scales|: the scale of the rounding error of any summation order
 */
static double magnitude(const problem *p, int o, int n)
{
    int K = p->w.cols, nb = K / 32;
    double m = 0.0;
    for (int b = 0; b < nb; b++) {
        long s = 0;
        for (int i = 0; i < 32; i++)
            s += (long)p->w.q[(size_t)o * K + b * 32 + i] * p->xq[(size_t)n * K + b * 32 + i];
        m += fabs((double)s * p->w.d[(size_t)o * nb + b] * p->xd[(size_t)n * nb + b]);
    }
    return m;
}

static void test_reference_vs_float64(void **state)
{
    problem p = make(17, 160, 3, 11);
    float out[3 * 17];
    rl_q8_matmul_ref(out, 17, &p.w, p.xq, p.xd, 3, NULL, 0, 17);
    int K = 160, nb = 5;
    for (int n = 0; n < 3; n++)
        for (int o = 0; o < 17; o++) {
            double e = 0.0;
            for (int b = 0; b < nb; b++) {
                long s = 0;
                for (int i = 0; i < 32; i++)
                    s += (long)p.w.q[o * K + b * 32 + i] * p.xq[n * K + b * 32 + i];
                e += (double)s * ((double)p.w.d[o * nb + b] * p.xd[n * nb + b]);
            }
            assert_true(fabs(out[n * 17 + o] - e) <= 1e-6 * magnitude(&p, o, n) + 1e-9);
        }
    drop(&p);
}

/* Every kernel against the reference: |fast - ref| <= 1e-5 * sum |terms| (both are fp32 sums of
 * the same exact int32 block sums, in different orders), for row counts around the 4-row tile and
 * an odd number of blocks (the AVX-512 kernel's 256-bit tail). */
static void test_kernels_match_reference(void **state)
{
    const int shapes[][2] = {{37, 64}, {29, 96}, {33, 576}, {20, 1536}};
    for (int k = 0;; k++) {
        const char *name;
        rl_q8_matmul_fn *fn = rl_q8_kernel_at(k, &name);
        if (!fn) break;
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int N = 1; N <= 9; N++) {
                int R = shapes[s][0], K = shapes[s][1];
                problem p = make(R, K, N, 100 + s * 10 + N);
                float *ref = malloc(sizeof(float) * N * R), *got = malloc(sizeof(float) * N * R);
                const float *bias = N % 2 ? p.bias : NULL;
                rl_q8_matmul_ref(ref, R, &p.w, p.xq, p.xd, N, bias, 0, R);
                fn(got, R, &p.w, p.xq, p.xd, N, bias, 0, R);
                for (int n = 0; n < N; n++)
                    for (int o = 0; o < R; o++) {
                        double tol = 1e-5 * magnitude(&p, o, n) + 1e-6;
                        if (fabs(got[n * R + o] - ref[n * R + o]) > tol)
                            fail_msg("%s: %dx%d N=%d row %d col %d: %g vs %g", name, R, K, N, n, o,
                                     got[n * R + o], ref[n * R + o]);
                    }
                free(ref), free(got);
                drop(&p);
            }
    }
}

/* A row computed in a batch of 9 (two 4-row tiles and a single) equals the same row computed
 * alone, bit for bit, in every kernel; [o0, o1) writes those columns only. */
static void test_tile_invariance_and_ranges(void **state)
{
    int R = 40, K = 224, N = 9;
    problem p = make(R, K, N, 5);
    for (int k = 0;; k++) {
        const char *name;
        rl_q8_matmul_fn *fn = rl_q8_kernel_at(k, &name);
        if (!fn) break;
        float all[9 * 40], one[40];
        fn(all, R, &p.w, p.xq, p.xd, N, p.bias, 0, R);
        for (int n = 0; n < N; n++) {
            fn(one, R, &p.w, p.xq + (size_t)n * K, p.xd + (size_t)n * (K / 32), 1, p.bias, 0, R);
            if (memcmp(one, all + n * R, sizeof one)) fail_msg("%s: row %d differs", name, n);
        }
        float part[9 * 40];
        for (int i = 0; i < 9 * 40; i++) part[i] = -999.0f;
        fn(part, R, &p.w, p.xq, p.xd, N, p.bias, 7, 19);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < R; o++) {
                if (o >= 7 && o < 19)
                    assert_memory_equal(&part[n * R + o], &all[n * R + o], sizeof(float));
                else
                    assert_true(part[n * R + o] == -999.0f);
            }
    }
    drop(&p);
}

/* w and x at +-127 everywhere, same and opposite signs: the largest pair sums (2 * 127 * 127) that
 * AVX2's maddubs must hold in int16; the results are exact integers times the scales. */
static void test_extremes(void **state)
{
    int K = 64;
    rl_q8_mat w;
    rl_q8_mat_alloc(&w, 2, K);
    for (int i = 0; i < K; i++) w.q[i] = 127, w.q[K + i] = -127;
    for (int b = 0; b < 4; b++) w.d[b] = 1.0f;
    int8_t xq[2 * 64];
    float xd[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    for (int i = 0; i < K; i++) xq[i] = -127, xq[K + i] = -127 + 2 * (i % 2) * 127;
    for (int k = 0;; k++) {
        const char *name;
        rl_q8_matmul_fn *fn = rl_q8_kernel_at(k, &name);
        if (!fn) break;
        float out[4];
        fn(out, 2, &w, xq, xd, 2, NULL, 0, 2);
        assert_true(out[0] == -64.0f * 127 * 127); /* row 0: 127 * -127 */
        assert_true(out[1] == 64.0f * 127 * 127);
        assert_true(out[2] == 0.0f); /* alternating signs cancel */
        assert_true(out[3] == 0.0f);
    }
    rl_q8_mat_free(&w);
}

static void test_kernel_names(void **state)
{
    const char *name;
    assert_non_null(rl_q8_kernel_at(0, &name));
    assert_string_equal(name, "scalar");
    const char *best = rl_q8_kernel();
    int found = 0;
    for (int k = 0; rl_q8_kernel_at(k, &name); k++) found |= !strcmp(name, best);
    assert_true(found);
    printf("q8_0 kernels: best here is %s\n", best);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_bounds),
        cmocka_unit_test(test_reference_vs_float64),
        cmocka_unit_test(test_kernels_match_reference),
        cmocka_unit_test(test_tile_invariance_and_ranges),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_kernel_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
