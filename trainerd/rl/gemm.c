/* gemm — C += A @ B in fp32 for the training path (see gemm.h). The BLIS loop order: B is packed
 * in KC x NR panels (a block of NC columns), A in MR x KC panels (a block of MC rows), and a
 * micro-kernel keeps an MR x NR tile of C in vector registers while it walks k. The kernel is
 * written once with GCC vector extensions and compiled three times (AVX-512, AVX2+FMA, plain);
 * the best one the CPU supports is picked at first use (AGL_GEMM_KERNEL=generic|avx2|avx512
 * forces one). Determinism: every C element is (((C + t_0) + t_1) + ...) where t_b is the
 * k-ascending sum over KC block b, computed by the same code whatever tile or thread it lands
 * on; threads only split the set of tiles. */
#include "gemm.h"

#include "agl_alloc.h"

#include <stdlib.h>
#include <string.h>

enum { KC = 256, NC = 4096, MC_PANELS = 16 };

typedef void (*ukernel_fn)(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc, int mr,
                           int nr);

/* One MR x NR tile: c[i * ldc + j] += sum_k a[k * MR + i] * b[k * NR + j] for i < mr, j < nr.
 * a and b are packed and zero-padded to MR and NR, so the loop is branch-free; a partial tile
 * goes through a buffer, with the same additions as a full one. */
#define UKERNEL(NAME, TARGET, VW, MR, NV)                                                          \
    TARGET static void NAME(int kc, const float *restrict a, const float *restrict b,              \
                            float *restrict c, ptrdiff_t ldc, int mr, int nr)                      \
    {                                                                                              \
        typedef float vf __attribute__((vector_size((VW)*4)));                                     \
        vf acc[MR][NV];                                                                            \
        _Pragma("GCC unroll 16") for (int i = 0; i < (MR); i++)                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) acc[i][v] = (vf){0};            \
        for (int k = 0; k < kc; k++, a += (MR), b += (NV) * (VW)) {                                \
            vf bv[NV];                                                                             \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                                 \
                memcpy(&bv[v], b + v * (VW), sizeof(vf));                                          \
            _Pragma("GCC unroll 16") for (int i = 0; i < (MR); i++)                                \
                _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) acc[i][v] += a[i] * bv[v];  \
        }                                                                                          \
        if (mr == (MR) && nr == (NV) * (VW)) {                                                     \
            _Pragma("GCC unroll 16") for (int i = 0; i < (MR); i++)                                \
                _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                             \
            {                                                                                      \
                vf cv;                                                                             \
                memcpy(&cv, c + i * ldc + v * (VW), sizeof(vf));                                   \
                cv += acc[i][v];                                                                   \
                memcpy(c + i * ldc + v * (VW), &cv, sizeof(vf));                                   \
            }                                                                                      \
        } else {                                                                                   \
            float t[MR][(NV) * (VW)];                                                              \
            for (int i = 0; i < (MR); i++)                                                         \
                for (int v = 0; v < (NV); v++) memcpy(&t[i][v * (VW)], &acc[i][v], sizeof(vf));    \
            for (int i = 0; i < mr; i++)                                                           \
                for (int j = 0; j < nr; j++) c[i * ldc + j] += t[i][j];                            \
        }                                                                                          \
    }

/* Plain C: 8-wide vectors (the compiler lowers them to whatever the baseline target has). */
UKERNEL(ukernel_generic, , 8, 6, 2)
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_X86_KERNELS 1
/* AVX2+FMA: 6 x 16 tile = 12 ymm accumulators + 2 for B + 1 broadcast of the 16 registers. */
UKERNEL(ukernel_avx2, __attribute__((target("avx2,fma"))), 8, 6, 2)
/* AVX-512: 12 x 32 tile = 24 zmm accumulators + 2 for B + broadcasts, of 32 registers. */
UKERNEL(ukernel_avx512, __attribute__((target("avx512f,fma"))), 16, 12, 2)
#endif

typedef struct {
    const char *name;
    ukernel_fn fn;
    int mr, nr;
} kernel;

static const kernel kernels[] = {
    {"generic", ukernel_generic, 6, 16},
#ifdef HAVE_X86_KERNELS
    {"avx2", ukernel_avx2, 6, 16},
    {"avx512", ukernel_avx512, 12, 32},
#endif
};

static const kernel *pick_kernel(void)
{
    static const kernel *chosen; /* set once; a race only stores the same value */
    if (chosen) return chosen;
    const kernel *k = &kernels[0];
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) k = &kernels[1];
    if (__builtin_cpu_supports("avx512f")) k = &kernels[2];
#endif
    const char *want = getenv("AGL_GEMM_KERNEL");
    for (size_t i = 0; want && i < sizeof kernels / sizeof kernels[0]; i++)
        if (!strcmp(want, kernels[i].name) && kernels + i <= k) k = &kernels[i];
    chosen = k;
    return k;
}

const char *rl_gemm_kernel_name(void)
{
    return pick_kernel()->name;
}

/* dst[k * MR + i] = A(row0 + i, k0 + k), rows past `rows` zero. */
static void pack_a(float *dst, rl_gemm_mat A, int row0, int rows, int k0, int kc, int MR)
{
    if (A.cs == 1) {
        for (int i = 0; i < MR; i++) {
            if (i >= rows) {
                for (int k = 0; k < kc; k++) dst[k * MR + i] = 0.0f;
                continue;
            }
            const float *src = A.p + (ptrdiff_t)(row0 + i) * A.rs + k0;
            for (int k = 0; k < kc; k++) dst[k * MR + i] = src[k];
        }
    } else {
        for (int k = 0; k < kc; k++) {
            const float *src = A.p + (ptrdiff_t)(k0 + k) * A.cs + (ptrdiff_t)row0 * A.rs;
            for (int i = 0; i < rows; i++) dst[k * MR + i] = src[i * A.rs];
            for (int i = rows; i < MR; i++) dst[k * MR + i] = 0.0f;
        }
    }
}

/* dst[k * NR + j] = B(k0 + k, col0 + j), columns past `cols` zero. */
static void pack_b(float *dst, rl_gemm_mat B, int k0, int kc, int col0, int cols, int NR)
{
    if (B.cs == 1) {
        for (int k = 0; k < kc; k++) {
            memcpy(dst + k * NR, B.p + (ptrdiff_t)(k0 + k) * B.rs + col0, sizeof(float) * cols);
            for (int j = cols; j < NR; j++) dst[k * NR + j] = 0.0f;
        }
    } else {
        for (int j = 0; j < NR; j++) {
            if (j >= cols) {
                for (int k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
                continue;
            }
            const float *src = B.p + (ptrdiff_t)(col0 + j) * B.cs + (ptrdiff_t)k0 * B.rs;
            for (int k = 0; k < kc; k++) dst[k * NR + j] = src[k * B.rs];
        }
    }
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

void rl_gemm(int M, int N, int K, rl_gemm_mat A, rl_gemm_mat B, float *C, ptrdiff_t ldc)
{
    if (M <= 0 || N <= 0 || K <= 0) return;
    const kernel *kn = pick_kernel();
    const int MR = kn->mr, NR = kn->nr, MC = MR * MC_PANELS;
    int ncmax = imin(NC, N), kcmax = imin(KC, K), mcmax = imin(MC, M);
    size_t bn = (size_t)kcmax * ((ncmax + NR - 1) / NR) * NR,
           an = (size_t)kcmax * ((mcmax + MR - 1) / MR) * MR;
    float *Bp = agl_malloc(sizeof(float) * (bn + an)), *Ap = Bp + bn;
    /* Threads cost more than they save on the tiny products of small models. */
    double work = (double)M * N * K;
#pragma omp parallel if (work > 1 << 18)
    for (int jc = 0; jc < N; jc += NC) {
        int nc = imin(NC, N - jc), npan = (nc + NR - 1) / NR;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = imin(KC, K - pc);
#pragma omp for schedule(static)
            for (int jp = 0; jp < npan; jp++)
                pack_b(Bp + (size_t)jp * kc * NR, B, pc, kc, jc + jp * NR, imin(NR, nc - jp * NR),
                       NR);
            for (int ic = 0; ic < M; ic += MC) {
                int mc = imin(MC, M - ic), mpan = (mc + MR - 1) / MR;
#pragma omp for schedule(static)
                for (int ip = 0; ip < mpan; ip++)
                    pack_a(Ap + (size_t)ip * kc * MR, A, ic + ip * MR, imin(MR, mc - ip * MR), pc,
                           kc, MR);
                    /* B panel outer: a thread's run of tiles reuses one B panel from L1 across the
                     * A panels of the block (L2). */
#pragma omp for collapse(2) schedule(static)
                for (int jp = 0; jp < npan; jp++)
                    for (int ip = 0; ip < mpan; ip++)
                        kn->fn(kc, Ap + (size_t)ip * kc * MR, Bp + (size_t)jp * kc * NR,
                               C + (ptrdiff_t)(ic + ip * MR) * ldc + jc + jp * NR, ldc,
                               imin(MR, mc - ip * MR), imin(NR, nc - jp * NR));
            }
        }
    }
    free(Bp);
}
