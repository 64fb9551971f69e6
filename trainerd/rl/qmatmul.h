/* qmatmul — Q8_0 weight matrices and the int8 matrix kernels of the inference-only decoder
 * (infer.c, issue 9). A row is cut into blocks of 32 values, each stored as int8 q with one fp32
 * scale d (value = d * q, d = max|x| / 127), the GGUF Q8_0 formula with the scale kept in fp32.
 * Activations are quantised the same way per row, so a dot product is, per block, an exact int32
 * sum times da * db, summed in fp32 (llama.cpp's vec_dot_q8_0_q8_0).
 *
 * Kernels: a scalar reference (rl_q8_matmul_ref) and, on x86-64, AVX2 and AVX-512 VNNI versions
 * picked at run time by CPUID, so a build without -march still works on any x86-64 and uses the
 * wide instructions where the CPU has them. Each dot product is summed in the same order whatever
 * the number of activation rows N and the row range [o0, o1), so a sequence's numbers do not
 * depend on what it is batched with. */
#ifndef RL_QMATMUL_H
#define RL_QMATMUL_H

#include <stddef.h>
#include <stdint.h>

#define RL_Q8_BLOCK 32

typedef struct {
    int rows, cols; /* cols is a multiple of RL_Q8_BLOCK */
    int8_t *q;      /* rows x cols */
    float *d;       /* rows x cols/32 scales */
} rl_q8_mat;

/* Allocates w for rows x cols (cols % 32 == 0). Caller frees with rl_q8_mat_free. */
void rl_q8_mat_alloc(rl_q8_mat *w, int rows, int cols);
void rl_q8_mat_free(rl_q8_mat *w);
/* Quantises src (n rows x w->cols floats) into rows [row0, row0 + n) of w. */
void rl_q8_mat_set(rl_q8_mat *w, int row0, const float *src, int n);

/* Quantises n floats (n % 32 == 0): q[i] = round(x[i] / d_b), d_b = max|x| of the block / 127
 * (0 for an all-zero block). */
void rl_q8_quantize(int8_t *q, float *d, const float *x, int n);

/* out[n * ld + o] = bias[o] (0 when bias is NULL) + w row o . x row n, for o in [o0, o1) and
 * n in [0, N); x rows are w->cols values apart (xq) and w->cols/32 scales apart (xd). */
typedef void rl_q8_matmul_fn(float *out, size_t ld, const rl_q8_mat *w, const int8_t *xq,
                             const float *xd, int N, const float *bias, int o0, int o1);
rl_q8_matmul_fn rl_q8_matmul_ref;
/* The fastest kernel this CPU runs (chosen once, thread-safe). */
void rl_q8_matmul(float *out, size_t ld, const rl_q8_mat *w, const int8_t *xq, const float *xd,
                  int N, const float *bias, int o0, int o1);
/* The kernel rl_q8_matmul uses: "avx512vnni", "avx2" or "scalar". */
const char *rl_q8_kernel(void);

/* For tests and benchmarks: kernel i of those this CPU can run (i = 0 is the scalar reference),
 * or NULL past the last; *name gets its name. */
rl_q8_matmul_fn *rl_q8_kernel_at(int i, const char **name);

#endif
