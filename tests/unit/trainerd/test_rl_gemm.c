/* Unit tests for trainerd/rl/gemm: C += A @ B against a double-precision reference for the three
 * stride patterns the model uses (x W^T, dY W, dY^T x), shapes with partial tiles and several K
 * blocks, and bitwise equality of 1 and 2 threads on products large enough to run in parallel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../trainerd/rl/gemm.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static float *rnd(size_t n, unsigned *seed)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)rand_r(seed) / RAND_MAX - 0.5f;
    return p;
}

/* Runs C0 + A @ B for op pattern `kind` (0: A (M,K) B^T stored (N,K); 1: A (M,K), B (K,N);
 * 2: A^T stored (K,M), B (K,N)) and returns the max error relative to sum |a||b|. */
static double check(int kind, int M, int N, int K, float **out)
{
    unsigned seed = 7u + (unsigned)(kind * 131 + M * 17 + N * 5 + K);
    float *a = rnd((size_t)M * K, &seed), *b = rnd((size_t)K * N, &seed),
          *c = rnd((size_t)M * N, &seed);
    float *c0 = malloc((size_t)M * N * sizeof(float));
    memcpy(c0, c, (size_t)M * N * sizeof(float));
    rl_gemm_mat A, B;
    if (kind == 2)
        A = (rl_gemm_mat){a, 1, M};
    else
        A = (rl_gemm_mat){a, K, 1};
    if (kind == 0)
        B = (rl_gemm_mat){b, 1, K};
    else
        B = (rl_gemm_mat){b, N, 1};
    rl_gemm(M, N, K, A, B, c, N);
    double worst = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = c0[(size_t)i * N + j], mag = fabs(s);
            for (int k = 0; k < K; k++) {
                double x = A.p[i * A.rs + k * A.cs], y = B.p[k * B.rs + j * B.cs];
                s += x * y;
                mag += fabs(x * y);
            }
            double e = fabs(c[(size_t)i * N + j] - s) / (mag + 1e-30);
            if (e > worst) worst = e;
        }
    free(a), free(b), free(c0);
    if (out)
        *out = c;
    else
        free(c);
    return worst;
}

static void test_gemm_matches_reference(void **state)
{
    /* partial MR and NR tiles, K over several KC blocks, single rows and columns */
    static const int shapes[][3] = {{1, 1, 1},     {7, 5, 3},      {13, 33, 257}, {64, 176, 64},
                                    {50, 17, 600}, {200, 300, 40}, {1, 1000, 9}};
    for (int kind = 0; kind < 3; kind++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            double e = check(kind, shapes[s][0], shapes[s][1], shapes[s][2], NULL);
            if (e > 1e-5)
                fail_msg("kind %d shape %dx%dx%d (%s): relative error %g", kind, shapes[s][0],
                         shapes[s][1], shapes[s][2], rl_gemm_kernel_name(), e);
        }
}

static void test_gemm_threads_bitwise(void **state)
{
    for (int kind = 0; kind < 3; kind++) {
        float *c[2];
        for (int r = 0; r < 2; r++) {
            omp_set_num_threads(r + 1);
            check(kind, 203, 301, 300, &c[r]);
        }
        assert_memory_equal(c[0], c[1], (size_t)203 * 301 * sizeof(float));
        free(c[0]), free(c[1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_matches_reference),
        cmocka_unit_test(test_gemm_threads_bitwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
