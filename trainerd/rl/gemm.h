/* gemm — the fp32 matrix product behind the training forward and backward (model.c).
 * C += A @ B with A and B given by strides, so the three products of a linear layer (x W^T,
 * dY W, dY^T x) need no transposed copies. Packed panels and a register-blocked micro-kernel,
 * compiled for AVX-512, AVX2+FMA and plain C and picked at run time. */
#ifndef RL_GEMM_H
#define RL_GEMM_H

#include <stddef.h>

/* A read-only matrix view: element (i, j) is p[i * rs + j * cs]. */
typedef struct {
    const float *p;
    ptrdiff_t rs, cs;
} rl_gemm_mat;

/* C (M x N, row stride ldc) += A (M x K) @ B (K x N). OpenMP inside. Every element of C is summed
 * in one fixed order (k ascending in blocks of a fixed size) by whichever thread owns its tile,
 * so the result does not depend on the number of threads. Safe to call from several threads at
 * once (all state is per call). */
void rl_gemm(int M, int N, int K, rl_gemm_mat A, rl_gemm_mat B, float *C, ptrdiff_t ldc);

/* The micro-kernel in use: "avx512", "avx2" or "generic" (for benchmarks and logs). */
const char *rl_gemm_kernel_name(void);

#endif
