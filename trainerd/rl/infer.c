/* infer — the batched Q8_0 decoder (see infer.h). Layout: per layer one matrix for q|k|v stacked
 * (one pass over xn instead of three) and one for gate|up, then o_proj and down_proj; the LM
 * head last. Each matrix is split over OpenMP threads by output rows. */
#include "infer.h"

#include "agl_alloc.h"
#include "qmatmul.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* output rows per OpenMP task: small enough to balance two threads on a shared machine, large
 * enough that the dynamic schedule's bookkeeping stays invisible */
#define ROWS_PER_TASK 32

typedef struct {
    rl_q8_mat qkv, o, gu, down;
    float *bqkv; /* q|k|v biases (Qwen2), or NULL */
} layer;

struct rl_infer {
    const rl_model *m;
    layer *ly;
    rl_q8_mat head;
    /* scratch for `cap` rows */
    int cap, natt, lgcap;
    float *x, *xn, *qkv, *ao, *tmp, *gu, *h, *xd, *att, *lg;
    int8_t *xq;
    int *pos, *lrow;
};

int rl_infer_dtype_parse(const char *s, rl_infer_dtype *d)
{
    if (!strcmp(s, "fp32"))
        *d = RL_INFER_FP32;
    else if (!strcmp(s, "q8_0"))
        *d = RL_INFER_Q8_0;
    else
        return -1;
    return 0;
}

const char *rl_infer_dtype_name(rl_infer_dtype d)
{
    return d == RL_INFER_Q8_0 ? "q8_0" : "fp32";
}

#define LAYER(ptr, l, sz) ((ptr) + (size_t)(l) * (sz))

rl_infer *rl_infer_new(const rl_model *m, char *err, size_t errlen)
{
    const rl_config *c = &m->cfg;
    int C = c->hidden, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim, I = c->inter;
    if (C % RL_Q8_BLOCK || QD % RL_Q8_BLOCK || I % RL_Q8_BLOCK) {
        snprintf(err, errlen,
                 "q8_0 needs hidden (%d), heads * head_dim (%d) and intermediate (%d) to be "
                 "multiples of %d",
                 C, QD, I, RL_Q8_BLOCK);
        return NULL;
    }
    rl_infer *inf = agl_calloc(1, sizeof *inf);
    inf->m = m;
    inf->ly = agl_calloc((size_t)c->layers, sizeof *inf->ly);
    for (int l = 0; l < c->layers; l++) {
        layer *y = &inf->ly[l];
        rl_q8_mat_alloc(&y->qkv, QD + 2 * KD, C);
        rl_q8_mat_alloc(&y->o, C, QD);
        rl_q8_mat_alloc(&y->gu, 2 * I, C);
        rl_q8_mat_alloc(&y->down, C, I);
        if (c->qkv_bias) y->bqkv = agl_malloc(sizeof(float) * (size_t)(QD + 2 * KD));
    }
    rl_q8_mat_alloc(&inf->head, c->vocab, C);
    rl_infer_refresh(inf);
    return inf;
}

void rl_infer_refresh(rl_infer *inf)
{
    const rl_model *m = inf->m;
    const rl_config *c = &m->cfg;
    int C = c->hidden, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim, I = c->inter;
#pragma omp parallel for schedule(dynamic)
    for (int l = 0; l < c->layers; l++) {
        layer *y = &inf->ly[l];
        rl_q8_mat_set(&y->qkv, 0, LAYER(m->t[RL_WQ], l, (size_t)QD * C), QD);
        rl_q8_mat_set(&y->qkv, QD, LAYER(m->t[RL_WK], l, (size_t)KD * C), KD);
        rl_q8_mat_set(&y->qkv, QD + KD, LAYER(m->t[RL_WV], l, (size_t)KD * C), KD);
        rl_q8_mat_set(&y->o, 0, LAYER(m->t[RL_WO], l, (size_t)C * QD), C);
        rl_q8_mat_set(&y->gu, 0, LAYER(m->t[RL_WG], l, (size_t)I * C), I);
        rl_q8_mat_set(&y->gu, I, LAYER(m->t[RL_WU], l, (size_t)I * C), I);
        rl_q8_mat_set(&y->down, 0, LAYER(m->t[RL_WD], l, (size_t)C * I), C);
        if (y->bqkv) {
            memcpy(y->bqkv, LAYER(m->t[RL_BQ], l, QD), sizeof(float) * QD);
            memcpy(y->bqkv + QD, LAYER(m->t[RL_BK], l, KD), sizeof(float) * KD);
            memcpy(y->bqkv + QD + KD, LAYER(m->t[RL_BV], l, KD), sizeof(float) * KD);
        }
    }
    int V = c->vocab, nt = (V + 1023) / 1024;
#pragma omp parallel for schedule(dynamic)
    for (int t = 0; t < nt; t++) {
        int r0 = t * 1024, n = V - r0 < 1024 ? V - r0 : 1024;
        rl_q8_mat_set(&inf->head, r0, m->t[RL_HEAD] + (size_t)r0 * C, n);
    }
}

static size_t mat_bytes(const rl_q8_mat *w)
{
    return (size_t)w->rows * w->cols + sizeof(float) * (size_t)w->rows * (w->cols / RL_Q8_BLOCK);
}

size_t rl_infer_bytes(const rl_infer *inf)
{
    size_t b = mat_bytes(&inf->head);
    for (int l = 0; l < inf->m->cfg.layers; l++) {
        const layer *y = &inf->ly[l];
        b += mat_bytes(&y->qkv) + mat_bytes(&y->o) + mat_bytes(&y->gu) + mat_bytes(&y->down);
    }
    return b;
}

static void scratch_free(rl_infer *inf)
{
    free(inf->x), free(inf->xn), free(inf->qkv), free(inf->ao), free(inf->tmp), free(inf->gu);
    free(inf->h), free(inf->xd), free(inf->xq), free(inf->pos), free(inf->lrow);
}

void rl_infer_free(rl_infer *inf)
{
    if (!inf) return;
    for (int l = 0; l < inf->m->cfg.layers; l++) {
        layer *y = &inf->ly[l];
        rl_q8_mat_free(&y->qkv), rl_q8_mat_free(&y->o), rl_q8_mat_free(&y->gu);
        rl_q8_mat_free(&y->down), free(y->bqkv);
    }
    rl_q8_mat_free(&inf->head);
    scratch_free(inf);
    free(inf->att), free(inf->lg);
    free(inf->ly);
    free(inf);
}

static void ensure_scratch(rl_infer *inf, int n)
{
    const rl_config *c = &inf->m->cfg;
    int nth = omp_get_max_threads();
    if (nth > inf->natt) { /* one attention row per thread */
        free(inf->att);
        inf->att = agl_malloc(sizeof(float) * (size_t)nth * c->max_seq);
        inf->natt = nth;
    }
    if (n <= inf->cap) return;
    scratch_free(inf);
    size_t C = c->hidden, QD = (size_t)c->heads * c->head_dim,
           KD = (size_t)c->kv_heads * c->head_dim, I = c->inter, K = I > QD ? I : QD;
    if (C > K) K = C;
    inf->x = agl_malloc(sizeof(float) * n * C);
    inf->xn = agl_malloc(sizeof(float) * n * C);
    inf->qkv = agl_malloc(sizeof(float) * n * (QD + 2 * KD));
    inf->ao = agl_malloc(sizeof(float) * n * QD);
    inf->tmp = agl_malloc(sizeof(float) * n * C);
    inf->gu = agl_malloc(sizeof(float) * n * 2 * I);
    inf->h = agl_malloc(sizeof(float) * n * I);
    inf->xq = agl_malloc(n * K);
    inf->xd = agl_malloc(sizeof(float) * n * (K / RL_Q8_BLOCK));
    inf->pos = agl_malloc(sizeof(int) * n);
    inf->lrow = agl_malloc(sizeof(int) * n);
    inf->cap = n;
}

static inline float dotf(const float *a, const float *b, int n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* out (N, w->rows) = x (N, w->cols) . w^T + bias, x already quantised */
static void matmul(float *out, const rl_q8_mat *w, const int8_t *xq, const float *xd, int N,
                   const float *bias)
{
    int nt = (w->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
#pragma omp parallel for schedule(dynamic)
    for (int t = 0; t < nt; t++) {
        int o0 = t * ROWS_PER_TASK,
            o1 = o0 + ROWS_PER_TASK < w->rows ? o0 + ROWS_PER_TASK : w->rows;
        rl_q8_matmul(out, (size_t)w->rows, w, xq, xd, N, bias, o0, o1);
    }
}

/* xn = rmsnorm(x) * w per row (the formula of rl_model_step), then quantised into xq/xd */
static void norm_quant(rl_infer *inf, const float *x, const float *w, int n, int C, float eps)
{
#pragma omp parallel for schedule(static) if (n > 8)
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * C;
        float *o = inf->xn + (size_t)r * C;
        float s = 1.0f / sqrtf(dotf(xr, xr, C) / C + eps);
        for (int i = 0; i < C; i++) o[i] = xr[i] * s * w[i];
        rl_q8_quantize(inf->xq + (size_t)r * C, inf->xd + (size_t)r * (C / RL_Q8_BLOCK), o, C);
    }
}

static void quant_rows(rl_infer *inf, const float *x, int n, int K)
{
#pragma omp parallel for schedule(static) if (n > 8)
    for (int r = 0; r < n; r++)
        rl_q8_quantize(inf->xq + (size_t)r * K, inf->xd + (size_t)r * (K / RL_Q8_BLOCK),
                       x + (size_t)r * K, K);
}

static inline void rope_vec(float *x, const float *cs, const float *sn, int D)
{
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cs[i] - b * sn[i];
        x[i + half] = b * cs[i] + a * sn[i];
    }
}

static inline float sigmoidf(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

void rl_infer_step(rl_infer *inf, const rl_infer_row *rows, int n)
{
    if (n < 1) return;
    const rl_model *m = inf->m;
    const rl_config *c = &m->cfg;
    int C = c->hidden, H = c->heads, KV = c->kv_heads, D = c->head_dim, QD = H * D, KD = KV * D,
        QKD = QD + 2 * KD, I = c->inter, rep = H / KV, half = D / 2;
    float scale = 1.0f / sqrtf((float)D);
    ensure_scratch(inf, n);
    int *pos = inf->pos;
    for (int r = 0; r < n; r++) {
        pos[r] = r > 0 && rows[r - 1].kv == rows[r].kv ? pos[r - 1] + 1 : rows[r].kv->len;
        memcpy(inf->x + (size_t)r * C, m->t[RL_EMBED] + (size_t)rows[r].token * C,
               sizeof(float) * C);
    }
    for (int l = 0; l < c->layers; l++) {
        const layer *y = &inf->ly[l];
        norm_quant(inf, inf->x, LAYER(m->t[RL_LN1], l, C), n, C, c->rms_eps);
        matmul(inf->qkv, &y->qkv, inf->xq, inf->xd, n, y->bqkv);
        /* RoPE, then this position's k and v into the cache: every row's keys are in place
         * before any row attends, so a prompt's rows see each other */
#pragma omp parallel for schedule(static) if (n > 8)
        for (int r = 0; r < n; r++) {
            float *q = inf->qkv + (size_t)r * QKD, *k = q + QD, *v = k + KD;
            const float *cs = m->rope_cos + (size_t)pos[r] * half,
                        *sn = m->rope_sin + (size_t)pos[r] * half;
            for (int h = 0; h < H; h++) rope_vec(q + h * D, cs, sn, D);
            for (int h = 0; h < KV; h++) rope_vec(k + h * D, cs, sn, D);
            rl_kv *kv = rows[r].kv;
            size_t at = ((size_t)l * kv->cap + pos[r]) * KD;
            memcpy(kv->k + at, k, sizeof(float) * KD);
            memcpy(kv->v + at, v, sizeof(float) * KD);
        }
#pragma omp parallel for collapse(2) schedule(dynamic)
        for (int r = 0; r < n; r++)
            for (int h = 0; h < H; h++) {
                const rl_kv *kv = rows[r].kv;
                const float *q = inf->qkv + (size_t)r * QKD + h * D,
                            *kc = kv->k + (size_t)l * kv->cap * KD + (h / rep) * D,
                            *vc = kv->v + (size_t)l * kv->cap * KD + (h / rep) * D;
                float *att = inf->att + (size_t)omp_get_thread_num() * c->max_seq, mx = -INFINITY,
                      sum = 0.0f, *o = inf->ao + (size_t)r * QD + h * D;
                for (int s = 0; s <= pos[r]; s++) {
                    att[s] = scale * dotf(q, kc + (size_t)s * KD, D);
                    if (att[s] > mx) mx = att[s];
                }
                for (int s = 0; s <= pos[r]; s++) {
                    att[s] = expf(att[s] - mx);
                    sum += att[s];
                }
                for (int d = 0; d < D; d++) o[d] = 0.0f;
                for (int s = 0; s <= pos[r]; s++) {
                    float p = att[s] / sum;
                    const float *vs = vc + (size_t)s * KD;
                    for (int d = 0; d < D; d++) o[d] += p * vs[d];
                }
            }
        quant_rows(inf, inf->ao, n, QD);
        matmul(inf->tmp, &y->o, inf->xq, inf->xd, n, NULL);
        for (size_t i = 0; i < (size_t)n * C; i++) inf->x[i] += inf->tmp[i];
        norm_quant(inf, inf->x, LAYER(m->t[RL_LN2], l, C), n, C, c->rms_eps);
        matmul(inf->gu, &y->gu, inf->xq, inf->xd, n, NULL);
#pragma omp parallel for schedule(static) if (n > 8)
        for (int r = 0; r < n; r++) {
            const float *g = inf->gu + (size_t)r * 2 * I, *u = g + I;
            float *h = inf->h + (size_t)r * I;
            for (int i = 0; i < I; i++) h[i] = g[i] * sigmoidf(g[i]) * u[i];
        }
        quant_rows(inf, inf->h, n, I);
        matmul(inf->tmp, &y->down, inf->xq, inf->xd, n, NULL);
        for (size_t i = 0; i < (size_t)n * C; i++) inf->x[i] += inf->tmp[i];
    }
    for (int r = 0; r < n; r++) rows[r].kv->len = pos[r] + 1;
    /* the head only for the rows that want logits (a prompt needs its last row's) */
    int nl = 0;
    for (int r = 0; r < n; r++)
        if (rows[r].logits) {
            memcpy(inf->tmp + (size_t)nl * C, inf->x + (size_t)r * C, sizeof(float) * C);
            inf->lrow[nl++] = r;
        }
    if (!nl) return;
    norm_quant(inf, inf->tmp, m->t[RL_LNF], nl, C, c->rms_eps);
    /* the head's rows go to a buffer (kept: a fresh one would be page faults every step), then
     * to each caller's array */
    if (nl > inf->lgcap) {
        free(inf->lg);
        inf->lg = agl_malloc(sizeof(float) * (size_t)nl * c->vocab);
        inf->lgcap = nl;
    }
    matmul(inf->lg, &inf->head, inf->xq, inf->xd, nl, NULL);
    for (int k = 0; k < nl; k++)
        memcpy(rows[inf->lrow[k]].logits, inf->lg + (size_t)k * c->vocab, sizeof(float) * c->vocab);
}
