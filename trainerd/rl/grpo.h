/* grpo — group-relative advantages and the clipped policy loss, as verl's core_algos defines
 * them (spec rl-trainer.md §2.2): per-token loss, optional KL to a reference (k1 / k3), and the
 * token-mean / seq-mean-token-sum / seq-mean-token-mean aggregations. The loss returns dL/dlogp
 * per token; the model turns that into dL/dlogits as w * (onehot - p). Denominators are global
 * (over all data-parallel ranks) so summing per-rank losses and gradients gives the global value.
 */
#ifndef RL_GRPO_H
#define RL_GRPO_H

typedef enum { RL_AGG_TOKEN_MEAN, RL_AGG_SEQ_MEAN_TOKEN_SUM, RL_AGG_SEQ_MEAN_TOKEN_MEAN } rl_agg;
typedef enum { RL_KL_NONE, RL_KL_K1, RL_KL_K3 } rl_kl;

typedef struct {
    float clip_low, clip_high; /* ε_low, ε_high (0.2, 0.2) */
    float clip_c;              /* dual-clip constant for A < 0 (verl 3.0); <= 1 disables */
    float kl_coef;             /* β */
    rl_kl kl_type;
    rl_agg agg;
} rl_grpo_cfg;

typedef struct {
    double loss, pg_loss, kl;   /* aggregated values (this rank's share of the global value) */
    double clipfrac, approx_kl; /* sums over this rank's valid tokens (divide by global tokens) */
    double ntok;                /* valid tokens on this rank */
} rl_grpo_stats;

/* adv[i] for n samples with group ids group[i]: (r - mean) / (std + eps) with Bessel-corrected
 * std, or r - mean when !norm_std (Dr. GRPO). A group of one sample gets mean 0, std 1. */
void rl_grpo_advantages(const float *rewards, const int *group, int n, int norm_std, float eps,
                        float *adv);

/* Per-token GRPO loss over B sequences x T positions. mask[n] in {0,1} marks response tokens;
 * adv[b] is sequence b's advantage; ref_logp may be NULL when kl_type is none. global_tokens
 * and global_seqs are the valid-token and non-empty-sequence counts over all ranks. Writes
 * dlogp[n] = dL/dlogp (0 off the mask) and fills *st. */
void rl_grpo_loss(const rl_grpo_cfg *cfg, const float *logp, const float *old_logp,
                  const float *ref_logp, const float *adv, const float *mask, int B, int T,
                  double global_tokens, double global_seqs, float *dlogp, rl_grpo_stats *st);

/* Parses "token-mean" etc.; returns -1 if unknown. */
int rl_agg_parse(const char *s, rl_agg *out);
int rl_kl_parse(const char *s, rl_kl *out);

#endif
