/* model — forward, backward, AdamW and KV-cache decoding of the fp32 CPU decoder (see model.h).
 * Shapes in comments: B sequences, T positions, N = B*T, C hidden, H heads, KV kv-heads,
 * D head_dim, I intermediate, V vocab. */
#include "model.h"

#include "agl_alloc.h"
#include "gemm.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rl_tensor_names[RL_NTENSORS] = {
    "model.embed_tokens.weight",
    "model.layers.%d.input_layernorm.weight",
    "model.layers.%d.self_attn.q_proj.weight",
    "model.layers.%d.self_attn.q_proj.bias",
    "model.layers.%d.self_attn.k_proj.weight",
    "model.layers.%d.self_attn.k_proj.bias",
    "model.layers.%d.self_attn.v_proj.weight",
    "model.layers.%d.self_attn.v_proj.bias",
    "model.layers.%d.self_attn.o_proj.weight",
    "model.layers.%d.post_attention_layernorm.weight",
    "model.layers.%d.mlp.gate_proj.weight",
    "model.layers.%d.mlp.up_proj.weight",
    "model.layers.%d.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
};

int rl_tensor_is_layered(int kind)
{
    return kind != RL_EMBED && kind != RL_LNF && kind != RL_HEAD;
}

/* ---------------------------------------------------------------- RNG */
uint64_t rl_rng_u64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

float rl_rng_uniform(uint64_t *s)
{
    return (float)((rl_rng_u64(s) >> 40) * (1.0 / 16777216.0));
}

float rl_rng_normal(uint64_t *s)
{
    double u1 = ((rl_rng_u64(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (rl_rng_u64(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

/* ---------------------------------------------------------------- config */
const char *rl_config_check(const rl_config *c)
{
    if (c->vocab < 2 || c->hidden < 1 || c->layers < 1 || c->heads < 1 || c->kv_heads < 1 ||
        c->head_dim < 2 || c->inter < 1 || c->max_seq < 2)
        return "model config: vocab, hidden, layers, heads, kv heads, head dim, intermediate and "
               "max positions must be positive";
    if (c->head_dim % 2) return "model config: head_dim must be even (RoPE rotates pairs)";
    if (c->heads % c->kv_heads) return "model config: heads must be a multiple of kv heads";
    if (!(c->rope_theta > 0) || !(c->rms_eps > 0))
        return "model config: rope_theta and rms_norm_eps must be positive";
    return NULL;
}

static int json_int(json_t *o, const char *k, int def)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static double json_num(json_t *o, const char *k, double def)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : def;
}

int rl_config_from_json(rl_config *c, json_t *o, const char **err)
{
    memset(c, 0, sizeof *c);
    c->vocab = json_int(o, "vocab_size", 0);
    c->hidden = json_int(o, "hidden_size", 0);
    c->layers = json_int(o, "num_hidden_layers", 0);
    c->heads = json_int(o, "num_attention_heads", 0);
    c->kv_heads = json_int(o, "num_key_value_heads", c->heads);
    c->head_dim = json_int(o, "head_dim", c->heads ? c->hidden / c->heads : 0);
    c->inter = json_int(o, "intermediate_size", 0);
    c->max_seq = json_int(o, "max_position_embeddings", 64);
    c->rope_theta = (float)json_num(o, "rope_theta", 10000.0);
    c->rms_eps = (float)json_num(o, "rms_norm_eps", 1e-6);
    c->qkv_bias = json_is_true(json_object_get(o, "attention_bias"));
    json_t *tie = json_object_get(o, "tie_word_embeddings");
    c->tie_embed = tie ? json_is_true(tie) : 1;
    const char *e = rl_config_check(c);
    if (err) *err = e;
    return e ? -1 : 0;
}

json_t *rl_config_to_json(const rl_config *c)
{
    return json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:b}",
                     "model_type", "qwen2", "vocab_size", c->vocab, "hidden_size", c->hidden,
                     "num_hidden_layers", c->layers, "num_attention_heads", c->heads,
                     "num_key_value_heads", c->kv_heads, "head_dim", c->head_dim,
                     "intermediate_size", c->inter, "max_position_embeddings", c->max_seq,
                     "rope_theta", (double)c->rope_theta, "rms_norm_eps", (double)c->rms_eps,
                     "attention_bias", c->qkv_bias, "tie_word_embeddings", c->tie_embed);
}

/* ---------------------------------------------------------------- allocation */
size_t rl_tensor_layer_size(const rl_model *m, int kind)
{
    return rl_tensor_is_layered(kind) ? m->sizes[kind] / (size_t)m->cfg.layers : m->sizes[kind];
}

rl_model *rl_model_new(const rl_config *c)
{
    rl_model *m = agl_calloc(1, sizeof *m);
    m->cfg = *c;
    size_t L = c->layers, C = c->hidden, V = c->vocab, QD = (size_t)c->heads * c->head_dim,
           KD = (size_t)c->kv_heads * c->head_dim, I = c->inter;
    size_t *s = m->sizes;
    s[RL_EMBED] = V * C;
    s[RL_LN1] = L * C;
    s[RL_WQ] = L * QD * C;
    s[RL_BQ] = c->qkv_bias ? L * QD : 0;
    s[RL_WK] = L * KD * C;
    s[RL_BK] = c->qkv_bias ? L * KD : 0;
    s[RL_WV] = L * KD * C;
    s[RL_BV] = c->qkv_bias ? L * KD : 0;
    s[RL_WO] = L * C * QD;
    s[RL_LN2] = L * C;
    s[RL_WG] = L * I * C;
    s[RL_WU] = L * I * C;
    s[RL_WD] = L * C * I;
    s[RL_LNF] = C;
    s[RL_HEAD] = c->tie_embed ? 0 : V * C;
    for (int i = 0; i < RL_NTENSORS; i++) m->nparams += s[i];
    m->params = agl_calloc(m->nparams, sizeof(float));
    m->grads = agl_calloc(m->nparams, sizeof(float));
    m->m = agl_calloc(m->nparams, sizeof(float));
    m->v = agl_calloc(m->nparams, sizeof(float));
    size_t off = 0;
    for (int i = 0; i < RL_NTENSORS; i++) {
        m->t[i] = m->params + off;
        m->gt[i] = m->grads + off;
        off += s[i];
    }
    if (c->tie_embed) {
        m->t[RL_HEAD] = m->t[RL_EMBED];
        m->gt[RL_HEAD] = m->gt[RL_EMBED];
    }
    int half = c->head_dim / 2;
    m->rope_cos = agl_malloc(sizeof(float) * (size_t)c->max_seq * half);
    m->rope_sin = agl_malloc(sizeof(float) * (size_t)c->max_seq * half);
    for (int p = 0; p < c->max_seq; p++)
        for (int i = 0; i < half; i++) {
            double inv = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
            m->rope_cos[p * half + i] = (float)cos(p * inv);
            m->rope_sin[p * half + i] = (float)sin(p * inv);
        }
    return m;
}

void rl_model_free(rl_model *m)
{
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->m);
    free(m->v);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->act_mem);
    free(m->scratch);
    free(m);
}

void rl_model_init(rl_model *m, uint64_t *rng)
{
    float resid = 1.0f / sqrtf(2.0f * m->cfg.layers);
    for (int k = 0; k < RL_NTENSORS; k++) {
        float *p = m->params + (m->t[k] - m->params);
        size_t n = m->sizes[k];
        if (k == RL_LN1 || k == RL_LN2 || k == RL_LNF) {
            for (size_t i = 0; i < n; i++) p[i] = 1.0f;
        } else if (k == RL_BQ || k == RL_BK || k == RL_BV) {
            memset(p, 0, n * sizeof(float));
        } else {
            float sd = (k == RL_WO || k == RL_WD) ? 0.02f * resid : 0.02f;
            for (size_t i = 0; i < n; i++) p[i] = sd * rl_rng_normal(rng);
        }
    }
}

static void ensure_acts(rl_model *m, int B, int T)
{
    const rl_config *c = &m->cfg;
    size_t L = c->layers, C = c->hidden, N = (size_t)B * T, QD = (size_t)c->heads * c->head_dim,
           KD = (size_t)c->kv_heads * c->head_dim, I = c->inter, V = c->vocab, H = c->heads;
    size_t sz[] = {(L + 1) * N * C, L * N * C,  L * N * C,  L * N,
                   L * N * QD,      L * N * KD, L * N * KD, L * B * H * T * T,
                   L * N * QD,      L * N * C,  L * N,      L * N * I,
                   L * N * I,       L * N * I,  N * C,      N,
                   N * V,           N,          N};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) total += sz[i];
    if (total > m->act_n) {
        free(m->act_mem);
        m->act_mem = agl_malloc(total * sizeof(float));
        m->act_n = total;
    }
    float **ptrs[] = {&m->a.res, &m->a.mid, &m->a.xn1,  &m->a.rs1,  &m->a.q,  &m->a.k, &m->a.v,
                      &m->a.att, &m->a.ao,  &m->a.xn2,  &m->a.rs2,  &m->a.g,  &m->a.u, &m->a.h,
                      &m->a.xf,  &m->a.rsf, &m->a.prob, &m->a.logp, &m->a.ent};
    float *p = m->act_mem;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
        *ptrs[i] = p;
        p += sz[i];
    }
    /* backward scratch: dres, dmid, dxn (N*C each), dq, dao (N*QD), dk, dv (N*KD), dg, du, dh
     * (N*I), dlogits (N*V) */
    size_t sn = 3 * N * C + 2 * N * QD + 2 * N * KD + 3 * N * I + N * V;
    if (sn > m->scratch_n) {
        free(m->scratch);
        m->scratch = agl_malloc(sn * sizeof(float));
        m->scratch_n = sn;
    }
    m->B = B;
    m->T = T;
}

/* ---------------------------------------------------------------- kernels */
static inline float dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* out (N, OC) = in (N, IC) @ w (OC, IC)^T + b (OC, optional) */
static void matmul_fwd(float *out, const float *in, const float *w, const float *b, int N, int IC,
                       int OC)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] = b ? b[o] : 0.0f;
    rl_gemm(N, OC, IC, (rl_gemm_mat){in, IC, 1}, (rl_gemm_mat){w, 1, IC}, out, OC);
}

/* din += dout @ w; dw += dout^T @ in; db += sum_n dout. rl_gemm sums each output in one fixed
 * order, and so does the bias loop. */
static void matmul_bwd(float *din, float *dw, float *db, const float *dout, const float *in,
                       const float *w, int N, int IC, int OC)
{
    if (din) rl_gemm(N, IC, OC, (rl_gemm_mat){dout, OC, 1}, (rl_gemm_mat){w, IC, 1}, din, IC);
    rl_gemm(OC, IC, N, (rl_gemm_mat){dout, 1, OC}, (rl_gemm_mat){in, IC, 1}, dw, IC);
    if (db) {
#pragma omp parallel for schedule(static)
        for (int o = 0; o < OC; o++) {
            float bs = 0.0f;
            for (int n = 0; n < N; n++) bs += dout[(size_t)n * OC + o];
            db[o] += bs;
        }
    }
}

static void rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int N, int C,
                        float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float r = 1.0f / sqrtf(dot(xr, xr, C) / C + eps);
        rstd[n] = r;
        for (int i = 0; i < C; i++) out[(size_t)n * C + i] = xr[i] * r * w[i];
    }
}

/* y = x * r * w, r = (mean(x^2)+eps)^-1/2:
 * dx = r*(dy*w) - x * r^3/C * sum(dy*w*x); dw += dy*x*r */
static void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rstd,
                        const float *w, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *g = dy + (size_t)n * C;
        float r = rstd[n], s = 0.0f;
        for (int i = 0; i < C; i++) s += g[i] * w[i] * xr[i];
        float k = r * r * r * s / C;
        for (int i = 0; i < C; i++) dx[(size_t)n * C + i] += r * g[i] * w[i] - xr[i] * k;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < C; i++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++) s += dy[(size_t)n * C + i] * x[(size_t)n * C + i] * rstd[n];
        dw[i] += s;
    }
}

/* Half-split rotation (HF rotate_half): pair (i, i + D/2) at angle pos * theta^(-2i/D). */
static inline void rope_vec(float *x, const float *cs, const float *sn, int D, int sign)
{
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half], c = cs[i], s = sign * sn[i];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

static void rope_apply(const rl_model *m, float *x, int B, int T, int heads, int sign)
{
    int D = m->cfg.head_dim, half = D / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < B * T; n++)
        for (int h = 0; h < heads; h++) {
            int pos = n % T;
            rope_vec(x + ((size_t)n * heads + h) * D, m->rope_cos + (size_t)pos * half,
                     m->rope_sin + (size_t)pos * half, D, sign);
        }
}

static void attn_fwd(const rl_model *m, float *ao, float *att, const float *q, const float *k,
                     const float *v, int B, int T)
{
    int H = m->cfg.heads, KV = m->cfg.kv_heads, D = m->cfg.head_dim, rep = H / KV;
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *qv = q + (((size_t)b * T + t) * H + h) * D;
                float *p = att + (((size_t)b * H + h) * T + t) * T;
                int g = h / rep;
                float mx = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    p[s] = scale * dot(qv, k + (((size_t)b * T + s) * KV + g) * D, D);
                    if (p[s] > mx) mx = p[s];
                }
                float sum = 0.0f;
                for (int s = 0; s <= t; s++) {
                    p[s] = expf(p[s] - mx);
                    sum += p[s];
                }
                for (int s = 0; s <= t; s++) p[s] /= sum;
                for (int s = t + 1; s < T; s++) p[s] = 0.0f;
                float *o = ao + (((size_t)b * T + t) * H + h) * D;
                for (int d = 0; d < D; d++) o[d] = 0.0f;
                for (int s = 0; s <= t; s++) {
                    const float *vv = v + (((size_t)b * T + s) * KV + g) * D;
                    for (int d = 0; d < D; d++) o[d] += p[s] * vv[d];
                }
            }
}

/* One thread per (sequence, kv head) so dk/dv of a kv head are summed in one fixed order. */
static void attn_bwd(const rl_model *m, float *dq, float *dk, float *dv, const float *dao,
                     const float *att, const float *q, const float *k, const float *v, int B, int T)
{
    int H = m->cfg.heads, KV = m->cfg.kv_heads, D = m->cfg.head_dim, rep = H / KV;
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < KV; g++) {
            float *dp = agl_malloc(sizeof(float) * T);
            for (int h = g * rep; h < (g + 1) * rep; h++)
                for (int t = 0; t < T; t++) {
                    const float *p = att + (((size_t)b * H + h) * T + t) * T;
                    const float *go = dao + (((size_t)b * T + t) * H + h) * D;
                    const float *qv = q + (((size_t)b * T + t) * H + h) * D;
                    float *dqv = dq + (((size_t)b * T + t) * H + h) * D;
                    float acc = 0.0f;
                    for (int s = 0; s <= t; s++) {
                        size_t ks = (((size_t)b * T + s) * KV + g) * D;
                        dp[s] = dot(go, v + ks, D);
                        acc += p[s] * dp[s];
                        for (int d = 0; d < D; d++) dv[ks + d] += p[s] * go[d];
                    }
                    for (int s = 0; s <= t; s++) {
                        size_t ks = (((size_t)b * T + s) * KV + g) * D;
                        float ds = scale * p[s] * (dp[s] - acc);
                        for (int d = 0; d < D; d++) {
                            dqv[d] += ds * k[ks + d];
                            dk[ks + d] += ds * qv[d];
                        }
                    }
                }
            free(dp);
        }
}

static inline float sigmoidf(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* ---------------------------------------------------------------- forward / backward */
#define LAYER(ptr, l, sz) ((ptr) + (size_t)(l) * (sz))

void rl_model_forward(rl_model *m, const int *tokens, const int *targets, int B, int T)
{
    const rl_config *c = &m->cfg;
    ensure_acts(m, B, T);
    m->tokens = tokens;
    m->targets = targets;
    int N = B * T, C = c->hidden, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim,
        I = c->inter, V = c->vocab;
    size_t NC = (size_t)N * C;
    rl_acts *a = &m->a;
    for (int n = 0; n < N; n++)
        memcpy(a->res + (size_t)n * C, m->t[RL_EMBED] + (size_t)tokens[n] * C, sizeof(float) * C);
    for (int l = 0; l < c->layers; l++) {
        float *x = LAYER(a->res, l, NC), *mid = LAYER(a->mid, l, NC),
              *out = LAYER(a->res, l + 1, NC);
        float *xn1 = LAYER(a->xn1, l, NC), *q = LAYER(a->q, l, (size_t)N * QD),
              *k = LAYER(a->k, l, (size_t)N * KD), *v = LAYER(a->v, l, (size_t)N * KD);
        float *ao = LAYER(a->ao, l, (size_t)N * QD), *xn2 = LAYER(a->xn2, l, NC);
        float *g = LAYER(a->g, l, (size_t)N * I), *u = LAYER(a->u, l, (size_t)N * I),
              *h = LAYER(a->h, l, (size_t)N * I);
        rmsnorm_fwd(xn1, LAYER(a->rs1, l, N), x, LAYER(m->t[RL_LN1], l, C), N, C, c->rms_eps);
        matmul_fwd(q, xn1, LAYER(m->t[RL_WQ], l, (size_t)QD * C),
                   c->qkv_bias ? LAYER(m->t[RL_BQ], l, QD) : NULL, N, C, QD);
        matmul_fwd(k, xn1, LAYER(m->t[RL_WK], l, (size_t)KD * C),
                   c->qkv_bias ? LAYER(m->t[RL_BK], l, KD) : NULL, N, C, KD);
        matmul_fwd(v, xn1, LAYER(m->t[RL_WV], l, (size_t)KD * C),
                   c->qkv_bias ? LAYER(m->t[RL_BV], l, KD) : NULL, N, C, KD);
        rope_apply(m, q, B, T, c->heads, 1);
        rope_apply(m, k, B, T, c->kv_heads, 1);
        attn_fwd(m, ao, LAYER(a->att, l, (size_t)B * c->heads * T * T), q, k, v, B, T);
        matmul_fwd(mid, ao, LAYER(m->t[RL_WO], l, (size_t)C * QD), NULL, N, QD, C);
        for (size_t i = 0; i < NC; i++) mid[i] += x[i];
        rmsnorm_fwd(xn2, LAYER(a->rs2, l, N), mid, LAYER(m->t[RL_LN2], l, C), N, C, c->rms_eps);
        matmul_fwd(g, xn2, LAYER(m->t[RL_WG], l, (size_t)I * C), NULL, N, C, I);
        matmul_fwd(u, xn2, LAYER(m->t[RL_WU], l, (size_t)I * C), NULL, N, C, I);
        for (size_t i = 0; i < (size_t)N * I; i++) h[i] = g[i] * sigmoidf(g[i]) * u[i];
        matmul_fwd(out, h, LAYER(m->t[RL_WD], l, (size_t)C * I), NULL, N, I, C);
        for (size_t i = 0; i < NC; i++) out[i] += mid[i];
    }
    rmsnorm_fwd(a->xf, a->rsf, LAYER(a->res, c->layers, NC), m->t[RL_LNF], N, C, c->rms_eps);
    matmul_fwd(a->prob, a->xf, m->t[RL_HEAD], NULL, N, C, V);
    int lo = m->support_lo, hi = m->support_hi > 0 && m->support_hi <= V ? m->support_hi : V;
    if (lo < 0 || lo >= hi) lo = 0;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *z = a->prob + (size_t)n * V;
        for (int i = 0; i < V; i++) /* ids outside the support: probability 0 */
            if (i < lo || i >= hi) z[i] = -INFINITY;
        float mx = z[lo];
        for (int i = lo + 1; i < hi; i++)
            if (z[i] > mx) mx = z[i];
        double sum = 0.0;
        for (int i = lo; i < hi; i++) sum += exp((double)(z[i] - mx));
        // cppcheck-suppress invalidFunctionArg ; sum >= 1: the max term is exp(0)
        double lse = mx + log(sum);
        a->logp[n] = targets && targets[n] >= 0 ? (float)(z[targets[n]] - lse) : 0.0f;
        double ent = 0.0;
        for (int i = 0; i < V; i++) {
            double lp = z[i] - lse, p = exp(lp);
            z[i] = (float)p;
            if (p > 0) ent -= p * lp;
        }
        a->ent[n] = (float)ent;
    }
}

void rl_model_zero_grad(rl_model *m)
{
    memset(m->grads, 0, m->nparams * sizeof(float));
}

void rl_model_backward(rl_model *m, const float *dlogp)
{
    const rl_config *c = &m->cfg;
    int B = m->B, T = m->T, N = B * T, C = c->hidden, QD = c->heads * c->head_dim,
        KD = c->kv_heads * c->head_dim, I = c->inter, V = c->vocab;
    size_t NC = (size_t)N * C;
    rl_acts *a = &m->a;
    float *s = m->scratch;
    float *dres = s, *dmid = s + NC, *dxn = s + 2 * NC, *dq = s + 3 * NC,
          *dao = dq + (size_t)N * QD, *dk = dao + (size_t)N * QD, *dv = dk + (size_t)N * KD,
          *dg = dv + (size_t)N * KD, *du = dg + (size_t)N * I, *dh = du + (size_t)N * I,
          *dlog = dh + (size_t)N * I;
    /* d logp_y / dz = onehot(y) - p */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float w = (m->targets && m->targets[n] >= 0) ? dlogp[n] : 0.0f;
        float *d = dlog + (size_t)n * V;
        const float *p = a->prob + (size_t)n * V;
        for (int i = 0; i < V; i++) d[i] = -w * p[i];
        if (w != 0.0f) d[m->targets[n]] += w;
    }
    memset(dxn, 0, NC * sizeof(float));
    matmul_bwd(dxn, m->gt[RL_HEAD], NULL, dlog, a->xf, m->t[RL_HEAD], N, C, V);
    memset(dres, 0, NC * sizeof(float));
    rmsnorm_bwd(dres, m->gt[RL_LNF], dxn, LAYER(a->res, c->layers, NC), a->rsf, m->t[RL_LNF], N, C);
    for (int l = c->layers - 1; l >= 0; l--) {
        float *x = LAYER(a->res, l, NC), *mid = LAYER(a->mid, l, NC);
        float *xn1 = LAYER(a->xn1, l, NC), *q = LAYER(a->q, l, (size_t)N * QD),
              *k = LAYER(a->k, l, (size_t)N * KD), *v = LAYER(a->v, l, (size_t)N * KD);
        float *ao = LAYER(a->ao, l, (size_t)N * QD), *xn2 = LAYER(a->xn2, l, NC);
        float *g = LAYER(a->g, l, (size_t)N * I), *u = LAYER(a->u, l, (size_t)N * I),
              *h = LAYER(a->h, l, (size_t)N * I);
        /* MLP: out = mid + down(silu(gate(xn2)) * up(xn2)) */
        memcpy(dmid, dres, NC * sizeof(float));
        memset(dh, 0, (size_t)N * I * sizeof(float));
        matmul_bwd(dh, LAYER(m->gt[RL_WD], l, (size_t)C * I), NULL, dres, h,
                   LAYER(m->t[RL_WD], l, (size_t)C * I), N, I, C);
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < (size_t)N * I; i++) {
            float sg = sigmoidf(g[i]), si = g[i] * sg;
            du[i] = dh[i] * si;
            dg[i] = dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        }
        memset(dxn, 0, NC * sizeof(float));
        matmul_bwd(dxn, LAYER(m->gt[RL_WG], l, (size_t)I * C), NULL, dg, xn2,
                   LAYER(m->t[RL_WG], l, (size_t)I * C), N, C, I);
        matmul_bwd(dxn, LAYER(m->gt[RL_WU], l, (size_t)I * C), NULL, du, xn2,
                   LAYER(m->t[RL_WU], l, (size_t)I * C), N, C, I);
        rmsnorm_bwd(dmid, LAYER(m->gt[RL_LN2], l, C), dxn, mid, LAYER(a->rs2, l, N),
                    LAYER(m->t[RL_LN2], l, C), N, C);
        /* attention: mid = x + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))) */
        memcpy(dres, dmid, NC * sizeof(float));
        memset(dao, 0, (size_t)N * QD * sizeof(float));
        matmul_bwd(dao, LAYER(m->gt[RL_WO], l, (size_t)C * QD), NULL, dmid, ao,
                   LAYER(m->t[RL_WO], l, (size_t)C * QD), N, QD, C);
        memset(dq, 0, (size_t)N * QD * sizeof(float));
        memset(dk, 0, (size_t)N * KD * sizeof(float));
        memset(dv, 0, (size_t)N * KD * sizeof(float));
        attn_bwd(m, dq, dk, dv, dao, LAYER(a->att, l, (size_t)B * c->heads * T * T), q, k, v, B, T);
        rope_apply(m, dq, B, T, c->heads, -1); /* the rotation's transpose is the inverse */
        rope_apply(m, dk, B, T, c->kv_heads, -1);
        memset(dxn, 0, NC * sizeof(float));
        matmul_bwd(dxn, LAYER(m->gt[RL_WQ], l, (size_t)QD * C),
                   c->qkv_bias ? LAYER(m->gt[RL_BQ], l, QD) : NULL, dq, xn1,
                   LAYER(m->t[RL_WQ], l, (size_t)QD * C), N, C, QD);
        matmul_bwd(dxn, LAYER(m->gt[RL_WK], l, (size_t)KD * C),
                   c->qkv_bias ? LAYER(m->gt[RL_BK], l, KD) : NULL, dk, xn1,
                   LAYER(m->t[RL_WK], l, (size_t)KD * C), N, C, KD);
        matmul_bwd(dxn, LAYER(m->gt[RL_WV], l, (size_t)KD * C),
                   c->qkv_bias ? LAYER(m->gt[RL_BV], l, KD) : NULL, dv, xn1,
                   LAYER(m->t[RL_WV], l, (size_t)KD * C), N, C, KD);
        rmsnorm_bwd(dres, LAYER(m->gt[RL_LN1], l, C), dxn, x, LAYER(a->rs1, l, N),
                    LAYER(m->t[RL_LN1], l, C), N, C);
    }
    /* embedding: one thread per vocab row keeps the sum order fixed */
    float *ge = m->gt[RL_EMBED];
#pragma omp parallel for schedule(static)
    for (int vtok = 0; vtok < V; vtok++)
        for (int n = 0; n < N; n++)
            if (m->tokens[n] == vtok)
                for (int i = 0; i < C; i++) ge[(size_t)vtok * C + i] += dres[(size_t)n * C + i];
}

/* ---------------------------------------------------------------- optimiser */
double rl_model_grad_norm(const rl_model *m)
{
    double s = 0.0;
    for (size_t i = 0; i < m->nparams; i++) s += (double)m->grads[i] * m->grads[i];
    return sqrt(s);
}

double rl_model_adamw(rl_model *m, const rl_adamw *o)
{
    double norm = rl_model_grad_norm(m);
    float scale = 1.0f;
    if (o->grad_clip > 0 && norm > o->grad_clip) scale = (float)(o->grad_clip / norm);
    m->step++;
    float bc1 = 1.0f - powf(o->beta1, (float)m->step), bc2 = 1.0f - powf(o->beta2, (float)m->step);
    for (int k = 0; k < RL_NTENSORS; k++) {
        if (k == RL_HEAD && m->cfg.tie_embed) continue;
        int decay =
            !(k == RL_LN1 || k == RL_LN2 || k == RL_LNF || k == RL_BQ || k == RL_BK || k == RL_BV);
        size_t off = (size_t)(m->t[k] - m->params), n = m->sizes[k];
        float wd = decay ? o->weight_decay : 0.0f;
#pragma omp parallel for schedule(static)
        for (size_t i = off; i < off + n; i++) {
            float g = m->grads[i] * scale;
            m->m[i] = o->beta1 * m->m[i] + (1.0f - o->beta1) * g;
            m->v[i] = o->beta2 * m->v[i] + (1.0f - o->beta2) * g * g;
            float mh = m->m[i] / bc1, vh = m->v[i] / bc2;
            m->params[i] -= o->lr * (mh / (sqrtf(vh) + o->eps) + wd * m->params[i]);
        }
    }
    return norm;
}

/* ---------------------------------------------------------------- KV-cache decoding */
void rl_kv_init_cap(rl_kv *kv, const rl_config *c, int cap)
{
    if (cap > c->max_seq || cap < 1) cap = c->max_seq;
    size_t n = (size_t)c->layers * cap * c->kv_heads * c->head_dim;
    kv->k = agl_malloc(n * sizeof(float));
    kv->v = agl_malloc(n * sizeof(float));
    kv->len = 0;
    kv->cap = cap;
}

void rl_kv_init(rl_kv *kv, const rl_config *c)
{
    rl_kv_init_cap(kv, c, c->max_seq);
}

void rl_kv_free(rl_kv *kv)
{
    free(kv->k);
    free(kv->v);
    kv->k = kv->v = NULL;
}

size_t rl_step_scratch_size(const rl_config *c)
{
    return 3 * (size_t)c->hidden + 2 * (size_t)c->heads * c->head_dim +
           2 * (size_t)c->kv_heads * c->head_dim + 2 * (size_t)c->inter + (size_t)c->max_seq;
}

static void vec_matmul(float *out, const float *in, const float *w, const float *b, int IC, int OC)
{
    for (int o = 0; o < OC; o++) out[o] = (b ? b[o] : 0.0f) + dot(in, w + (size_t)o * IC, IC);
}

static void vec_rmsnorm(float *out, const float *x, const float *w, int C, float eps)
{
    float r = 1.0f / sqrtf(dot(x, x, C) / C + eps);
    for (int i = 0; i < C; i++) out[i] = x[i] * r * w[i];
}

void rl_model_step(const rl_model *m, rl_kv *kv, int token, float *logits, float *scratch)
{
    const rl_config *c = &m->cfg;
    int C = c->hidden, H = c->heads, KV = c->kv_heads, D = c->head_dim, QD = H * D, KD = KV * D,
        I = c->inter, rep = H / KV, pos = kv->len, half = D / 2;
    float *x = scratch, *xn = x + C, *tmp = xn + C, *q = tmp + C, *ao = q + QD, *kk = ao + QD,
          *vv = kk + KD, *g = vv + KD, *u = g + I, *att = u + I;
    float scale = 1.0f / sqrtf((float)D);
    const float *cs = m->rope_cos + (size_t)pos * half, *sn = m->rope_sin + (size_t)pos * half;
    memcpy(x, m->t[RL_EMBED] + (size_t)token * C, sizeof(float) * C);
    for (int l = 0; l < c->layers; l++) {
        float *kc = kv->k + (size_t)l * kv->cap * KD, *vc = kv->v + (size_t)l * kv->cap * KD;
        vec_rmsnorm(xn, x, LAYER(m->t[RL_LN1], l, C), C, c->rms_eps);
        vec_matmul(q, xn, LAYER(m->t[RL_WQ], l, (size_t)QD * C),
                   c->qkv_bias ? LAYER(m->t[RL_BQ], l, QD) : NULL, C, QD);
        vec_matmul(kk, xn, LAYER(m->t[RL_WK], l, (size_t)KD * C),
                   c->qkv_bias ? LAYER(m->t[RL_BK], l, KD) : NULL, C, KD);
        vec_matmul(vv, xn, LAYER(m->t[RL_WV], l, (size_t)KD * C),
                   c->qkv_bias ? LAYER(m->t[RL_BV], l, KD) : NULL, C, KD);
        for (int h = 0; h < H; h++) rope_vec(q + h * D, cs, sn, D, 1);
        for (int h = 0; h < KV; h++) rope_vec(kk + h * D, cs, sn, D, 1);
        memcpy(kc + (size_t)pos * KD, kk, sizeof(float) * KD);
        memcpy(vc + (size_t)pos * KD, vv, sizeof(float) * KD);
        for (int h = 0; h < H; h++) {
            int gh = h / rep;
            float mx = -INFINITY, sum = 0.0f;
            for (int s = 0; s <= pos; s++) {
                att[s] = scale * dot(q + h * D, kc + (size_t)s * KD + gh * D, D);
                if (att[s] > mx) mx = att[s];
            }
            for (int s = 0; s <= pos; s++) {
                att[s] = expf(att[s] - mx);
                sum += att[s];
            }
            float *o = ao + h * D;
            for (int d = 0; d < D; d++) o[d] = 0.0f;
            for (int s = 0; s <= pos; s++) {
                float p = att[s] / sum;
                const float *vs = vc + (size_t)s * KD + gh * D;
                for (int d = 0; d < D; d++) o[d] += p * vs[d];
            }
        }
        vec_matmul(tmp, ao, LAYER(m->t[RL_WO], l, (size_t)C * QD), NULL, QD, C);
        for (int i = 0; i < C; i++) x[i] += tmp[i];
        vec_rmsnorm(xn, x, LAYER(m->t[RL_LN2], l, C), C, c->rms_eps);
        vec_matmul(g, xn, LAYER(m->t[RL_WG], l, (size_t)I * C), NULL, C, I);
        vec_matmul(u, xn, LAYER(m->t[RL_WU], l, (size_t)I * C), NULL, C, I);
        for (int i = 0; i < I; i++) g[i] = g[i] * sigmoidf(g[i]) * u[i];
        vec_matmul(tmp, g, LAYER(m->t[RL_WD], l, (size_t)C * I), NULL, I, C);
        for (int i = 0; i < C; i++) x[i] += tmp[i];
    }
    kv->len++;
    if (logits) {
        vec_rmsnorm(xn, x, m->t[RL_LNF], C, c->rms_eps);
        vec_matmul(logits, xn, m->t[RL_HEAD], NULL, C, c->vocab);
    }
}
