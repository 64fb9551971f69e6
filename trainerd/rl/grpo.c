/* grpo — advantages and the clipped surrogate loss (see grpo.h). */
#include "grpo.h"

#include "agl_alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rl_grpo_advantages(const float *rewards, const int *group, int n, int norm_std, float eps,
                        float *adv)
{
    for (int i = 0; i < n; i++) {
        double sum = 0.0, sq = 0.0;
        int cnt = 0;
        for (int j = 0; j < n; j++)
            if (group[j] == group[i]) {
                sum += rewards[j];
                cnt++;
            }
        double mean = 0.0, sd = 1.0;
        if (cnt > 1) {
            mean = sum / cnt;
            for (int j = 0; j < n; j++)
                if (group[j] == group[i]) sq += (rewards[j] - mean) * (rewards[j] - mean);
            sd = sqrt(sq / (cnt - 1));
        }
        adv[i] = norm_std ? (float)((rewards[i] - mean) / (sd + eps)) : (float)(rewards[i] - mean);
    }
}

int rl_agg_parse(const char *s, rl_agg *out)
{
    if (!strcmp(s, "token-mean"))
        *out = RL_AGG_TOKEN_MEAN;
    else if (!strcmp(s, "seq-mean-token-sum"))
        *out = RL_AGG_SEQ_MEAN_TOKEN_SUM;
    else if (!strcmp(s, "seq-mean-token-mean"))
        *out = RL_AGG_SEQ_MEAN_TOKEN_MEAN;
    else
        return -1;
    return 0;
}

int rl_kl_parse(const char *s, rl_kl *out)
{
    if (!strcmp(s, "none"))
        *out = RL_KL_NONE;
    else if (!strcmp(s, "k1") || !strcmp(s, "kl"))
        *out = RL_KL_K1;
    else if (!strcmp(s, "k3") || !strcmp(s, "low_var_kl"))
        *out = RL_KL_K3;
    else
        return -1;
    return 0;
}

static double clampd(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

void rl_grpo_loss(const rl_grpo_cfg *cfg, const float *logp, const float *old_logp,
                  const float *ref_logp, const float *adv, const float *mask, int B, int T,
                  double global_tokens, double global_seqs, float *dlogp, rl_grpo_stats *st)
{
    memset(st, 0, sizeof *st);
    for (int b = 0; b < B; b++) {
        double len = 0.0;
        for (int t = 0; t < T; t++) len += mask[(size_t)b * T + t];
        /* aggregation weight of each token of this sequence */
        double w = 0.0;
        if (len > 0) {
            if (cfg->agg == RL_AGG_TOKEN_MEAN)
                w = global_tokens > 0 ? 1.0 / global_tokens : 0.0;
            else if (cfg->agg == RL_AGG_SEQ_MEAN_TOKEN_SUM)
                w = 1.0 / global_seqs;
            else
                w = 1.0 / (global_seqs * len);
        }
        double A = adv[b];
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t;
            dlogp[n] = 0.0f;
            if (mask[n] == 0.0f) continue;
            st->ntok += 1.0;
            /* policy term: verl compute_policy_loss_vanilla */
            double raw = (double)logp[n] - old_logp[n];
            double lr = clampd(raw, -20.0, 20.0), rho = exp(lr);
            double dlr = (raw > -20.0 && raw < 20.0) ? 1.0 : 0.0; /* d lr / d logp */
            double l1 = -A * rho;
            double rc = clampd(rho, 1.0 - cfg->clip_low, 1.0 + cfg->clip_high);
            double l2 = -A * rc;
            double l, dl;
            if (l2 > l1) {
                st->clipfrac += 1.0;
                l = l2;
                dl = (rho > 1.0 - cfg->clip_low && rho < 1.0 + cfg->clip_high) ? -A * rho * dlr
                                                                               : 0.0;
            } else {
                l = l1;
                dl = -A * rho * dlr;
            }
            if (A < 0 && cfg->clip_c > 1.0f && l > -A * cfg->clip_c) {
                l = -A * cfg->clip_c; /* dual clip: bounded loss, no gradient */
                dl = 0.0;
            }
            st->approx_kl += -lr;
            st->pg_loss += w * l;
            double total = l, dtotal = dl;
            if (cfg->kl_type != RL_KL_NONE && ref_logp) {
                double delta = (double)logp[n] - ref_logp[n], kl, dkl;
                if (cfg->kl_type == RL_KL_K1) {
                    kl = delta;
                    dkl = 1.0;
                } else { /* k3 with d = ref - logp, clamped as verl does */
                    double d = -delta, dc = clampd(d, -20.0, 20.0), e = exp(dc);
                    kl = e - dc - 1.0;
                    dkl = (d > -20.0 && d < 20.0) ? -(e - 1.0) : 0.0;
                    if (kl > 10.0 || kl < -10.0) {
                        kl = clampd(kl, -10.0, 10.0);
                        dkl = 0.0;
                    }
                }
                st->kl += w * kl;
                total += cfg->kl_coef * kl;
                dtotal += cfg->kl_coef * dkl;
            }
            st->loss += w * total;
            dlogp[n] = (float)(w * dtotal);
        }
    }
}
