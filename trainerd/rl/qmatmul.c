/* qmatmul — Q8_0 matrices and int8 matrix kernels (see qmatmul.h). */
#include "qmatmul.h"

#include "agl_alloc.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RL_Q8_X86 1
#endif

void rl_q8_mat_alloc(rl_q8_mat *w, int rows, int cols)
{
    w->rows = rows;
    w->cols = cols;
    w->q = agl_malloc((size_t)rows * cols);
    w->d = agl_malloc(sizeof(float) * (size_t)rows * (cols / RL_Q8_BLOCK));
}

void rl_q8_mat_free(rl_q8_mat *w)
{
    free(w->q);
    free(w->d);
    w->q = NULL;
    w->d = NULL;
}

void rl_q8_quantize(int8_t *q, float *d, const float *x, int n)
{
    for (int b = 0; b < n / RL_Q8_BLOCK; b++) {
        const float *xb = x + b * RL_Q8_BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < RL_Q8_BLOCK; i++) amax = fmaxf(amax, fabsf(xb[i]));
        float s = amax / 127.0f, is = s > 0.0f ? 1.0f / s : 0.0f;
        d[b] = s;
        /* |x * is| <= 127 up to rounding, so q stays in [-127, 127]: never -128, which the AVX2
         * kernel's sign trick could not negate */
        for (int i = 0; i < RL_Q8_BLOCK; i++) q[b * RL_Q8_BLOCK + i] = (int8_t)roundf(xb[i] * is);
    }
}

void rl_q8_mat_set(rl_q8_mat *w, int row0, const float *src, int n)
{
    int nb = w->cols / RL_Q8_BLOCK;
    for (int r = 0; r < n; r++)
        rl_q8_quantize(w->q + (size_t)(row0 + r) * w->cols, w->d + (size_t)(row0 + r) * nb,
                       src + (size_t)r * w->cols, w->cols);
}

/* ---------------------------------------------------------------- scalar reference */
void rl_q8_matmul_ref(float *out, size_t ld, const rl_q8_mat *w, const int8_t *xq, const float *xd,
                      int N, const float *bias, int o0, int o1)
{
    int K = w->cols, nb = K / RL_Q8_BLOCK;
    for (int o = o0; o < o1; o++) {
        const int8_t *wq = w->q + (size_t)o * K;
        const float *wd = w->d + (size_t)o * nb;
        for (int n = 0; n < N; n++) {
            const int8_t *x = xq + (size_t)n * K;
            const float *dx = xd + (size_t)n * nb;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                int32_t s = 0;
                for (int i = 0; i < RL_Q8_BLOCK; i++)
                    s += (int32_t)wq[b * RL_Q8_BLOCK + i] * x[b * RL_Q8_BLOCK + i];
                acc += (float)s * (wd[b] * dx[b]);
            }
            out[(size_t)n * ld + o] = (bias ? bias[o] : 0.0f) + acc;
        }
    }
}

#ifdef RL_Q8_X86
/* ---------------------------------------------------------------- AVX2 (+FMA) */
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One block of 32: the int32 sums of |w| * (x with w's sign) in 8 lanes. maddubs multiplies
 * unsigned by signed bytes, hence |w| and the sign moved onto x; pairs stay below 2*127*127, so
 * its int16 saturation never triggers. */
AVX2 static inline __m256 block_avx2(__m256i aw, __m256i w, const int8_t *x)
{
    __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x), w);
    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(p);
}

/* Four activation rows share each weight block load; every row's sum sees the same operations in
 * the same order as in the one-row loop, so tiling does not change a result. */
AVX2 static void matmul_avx2(float *out, size_t ld, const rl_q8_mat *w, const int8_t *xq,
                             const float *xd, int N, const float *bias, int o0, int o1)
{
    int K = w->cols, nb = K / RL_Q8_BLOCK;
    for (int o = o0; o < o1; o++) {
        const int8_t *wq = w->q + (size_t)o * K;
        const float *wd = w->d + (size_t)o * nb;
        float b0 = bias ? bias[o] : 0.0f;
        int n = 0;
        for (; n + 4 <= N; n += 4) {
            const int8_t *x0 = xq + (size_t)n * K;
            const float *d0 = xd + (size_t)n * nb;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int b = 0; b < nb; b++) {
                __m256i wv = _mm256_loadu_si256((const __m256i *)(wq + b * RL_Q8_BLOCK));
                __m256i aw = _mm256_sign_epi8(wv, wv);
                const int8_t *xb = x0 + b * RL_Q8_BLOCK;
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(wd[b] * d0[b]), block_avx2(aw, wv, xb), a0);
                a1 = _mm256_fmadd_ps(_mm256_set1_ps(wd[b] * d0[nb + b]), block_avx2(aw, wv, xb + K),
                                     a1);
                a2 = _mm256_fmadd_ps(_mm256_set1_ps(wd[b] * d0[2 * nb + b]),
                                     block_avx2(aw, wv, xb + 2 * K), a2);
                a3 = _mm256_fmadd_ps(_mm256_set1_ps(wd[b] * d0[3 * nb + b]),
                                     block_avx2(aw, wv, xb + 3 * K), a3);
            }
            out[(size_t)n * ld + o] = b0 + hsum8(a0);
            out[(size_t)(n + 1) * ld + o] = b0 + hsum8(a1);
            out[(size_t)(n + 2) * ld + o] = b0 + hsum8(a2);
            out[(size_t)(n + 3) * ld + o] = b0 + hsum8(a3);
        }
        for (; n < N; n++) {
            const int8_t *x0 = xq + (size_t)n * K;
            const float *d0 = xd + (size_t)n * nb;
            __m256 a0 = _mm256_setzero_ps();
            for (int b = 0; b < nb; b++) {
                __m256i wv = _mm256_loadu_si256((const __m256i *)(wq + b * RL_Q8_BLOCK));
                __m256i aw = _mm256_sign_epi8(wv, wv);
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(wd[b] * d0[b]),
                                     block_avx2(aw, wv, x0 + b * RL_Q8_BLOCK), a0);
            }
            out[(size_t)n * ld + o] = b0 + hsum8(a0);
        }
    }
}

/* ---------------------------------------------------------------- AVX-512 VNNI */
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))

AVX512 static inline float hsum16(__m512 v)
{
    __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    return _mm_cvtss_f32(t);
}

/* Two blocks of 32 at once: lanes 0-7 hold block b's int32 sums, lanes 8-15 block b+1's.
 * dpbusd takes unsigned x signed bytes like maddubs, without the int16 step. */
AVX512 static inline __m512 pair_vnni(__m512i aw, __mmask64 neg, const int8_t *x)
{
    __m512i xv = _mm512_loadu_si512((const void *)x);
    __m512i sx = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, sx));
}

AVX512 static inline __m512 pair_scale(const float *wd, const float *dx)
{
    return _mm512_insertf32x8(_mm512_set1_ps(wd[0] * dx[0]), _mm256_set1_ps(wd[1] * dx[1]), 1);
}

/* The odd last block, 256 bits wide. */
AVX512 static inline __m256 tail_vnni(__m256i aw, __m256i w, const int8_t *x)
{
    __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x), w);
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx));
}

/* Same structure as matmul_avx2: one weight load per pair of blocks for four rows. */
AVX512 static void matmul_vnni(float *out, size_t ld, const rl_q8_mat *w, const int8_t *xq,
                               const float *xd, int N, const float *bias, int o0, int o1)
{
    int K = w->cols, nb = K / RL_Q8_BLOCK, np = nb / 2;
    for (int o = o0; o < o1; o++) {
        const int8_t *wq = w->q + (size_t)o * K;
        const float *wd = w->d + (size_t)o * nb;
        float b0 = bias ? bias[o] : 0.0f;
        int n = 0;
        for (; n + 4 <= N; n += 4) {
            const int8_t *x0 = xq + (size_t)n * K;
            const float *d0 = xd + (size_t)n * nb;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int p = 0; p < np; p++) {
                __m512i wv = _mm512_loadu_si512((const void *)(wq + p * 64));
                __m512i aw = _mm512_abs_epi8(wv);
                __mmask64 neg = _mm512_movepi8_mask(wv);
                const int8_t *xb = x0 + p * 64;
                const float *wb = wd + 2 * p, *db = d0 + 2 * p;
                a0 = _mm512_fmadd_ps(pair_scale(wb, db), pair_vnni(aw, neg, xb), a0);
                a1 = _mm512_fmadd_ps(pair_scale(wb, db + nb), pair_vnni(aw, neg, xb + K), a1);
                a2 = _mm512_fmadd_ps(pair_scale(wb, db + 2 * nb), pair_vnni(aw, neg, xb + 2 * K),
                                     a2);
                a3 = _mm512_fmadd_ps(pair_scale(wb, db + 3 * nb), pair_vnni(aw, neg, xb + 3 * K),
                                     a3);
            }
            float s[4] = {hsum16(a0), hsum16(a1), hsum16(a2), hsum16(a3)};
            if (nb & 1) {
                int b = nb - 1;
                __m256i wv = _mm256_loadu_si256((const __m256i *)(wq + b * RL_Q8_BLOCK));
                __m256i aw = _mm256_sign_epi8(wv, wv);
                for (int k = 0; k < 4; k++)
                    s[k] += hsum8(_mm256_mul_ps(_mm256_set1_ps(wd[b] * d0[k * nb + b]),
                                                tail_vnni(aw, wv, x0 + k * K + b * RL_Q8_BLOCK)));
            }
            for (int k = 0; k < 4; k++) out[(size_t)(n + k) * ld + o] = b0 + s[k];
        }
        for (; n < N; n++) {
            const int8_t *x0 = xq + (size_t)n * K;
            const float *d0 = xd + (size_t)n * nb;
            __m512 a0 = _mm512_setzero_ps();
            for (int p = 0; p < np; p++) {
                __m512i wv = _mm512_loadu_si512((const void *)(wq + p * 64));
                a0 = _mm512_fmadd_ps(
                    pair_scale(wd + 2 * p, d0 + 2 * p),
                    pair_vnni(_mm512_abs_epi8(wv), _mm512_movepi8_mask(wv), x0 + p * 64), a0);
            }
            float s = hsum16(a0);
            if (nb & 1) {
                int b = nb - 1;
                __m256i wv = _mm256_loadu_si256((const __m256i *)(wq + b * RL_Q8_BLOCK));
                s += hsum8(
                    _mm256_mul_ps(_mm256_set1_ps(wd[b] * d0[b]),
                                  tail_vnni(_mm256_sign_epi8(wv, wv), wv, x0 + b * RL_Q8_BLOCK)));
            }
            out[(size_t)n * ld + o] = b0 + s;
        }
    }
}
#endif

/* ---------------------------------------------------------------- dispatch */
typedef struct {
    const char *name;
    rl_q8_matmul_fn *fn;
} kernel;

/* The kernels this CPU runs, slowest first. */
static int kernels(kernel *k)
{
    int n = 0;
    k[n++] = (kernel){"scalar", rl_q8_matmul_ref};
#ifdef RL_Q8_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        k[n++] = (kernel){"avx2", matmul_avx2};
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni"))
        k[n++] = (kernel){"avx512vnni", matmul_vnni};
#endif
    return n;
}

rl_q8_matmul_fn *rl_q8_kernel_at(int i, const char **name)
{
    kernel k[4];
    int n = kernels(k);
    if (i < 0 || i >= n) return NULL;
    if (name) *name = k[i].name;
    return k[i].fn;
}

/* AGL_Q8_KERNEL=scalar|avx2|avx512vnni forces a kernel (when the CPU has it): for comparing
 * them, and a way around a kernel suspected of a bug. */
static kernel best;
static void pick(void)
{
    kernel k[4];
    int n = kernels(k);
    best = k[n - 1];
    const char *env = getenv("AGL_Q8_KERNEL");
    for (int i = 0; env && i < n; i++)
        if (!strcmp(env, k[i].name)) best = k[i];
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

void rl_q8_matmul(float *out, size_t ld, const rl_q8_mat *w, const int8_t *xq, const float *xd,
                  int N, const float *bias, int o0, int o1)
{
    pthread_once(&once, pick);
    best.fn(out, ld, w, xq, xd, N, bias, o0, o1);
}

const char *rl_q8_kernel(void)
{
    pthread_once(&once, pick);
    return best.name;
}
