/* rl — `trainerd sft` and `trainerd rl` (issue 8): supervised fine-tuning on (prompt, response)
 * JSONL and GRPO on (prompt, answer) tasks with a built-in verifier, data parallel over MPI
 * ranks (whole groups per rank, global token counts, summed gradients). Without --store the loop
 * generates with the trainer's own KV-cache decoder; `trainerd rl --store URL` (loop_store.c)
 * serves the policy over HTTP (server.c) and trains on the token ids runnerd's proxy recorded. */
#include "../trainerd.h"
#include "ckpt.h"
#include "dist.h"
#include "grpo.h"
#include "infer.h"
#include "model.h"
#include "pretrained.h"
#include "rl_int.h"
#include "tok.h"

#include "agl_alloc.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* ---------------------------------------------------------------- options */
static void opts_default(rl_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 100;
    o->batch = 32;
    o->prompts = 16;
    o->group = 8;
    o->max_new = 8;
    o->save_every = 0;
    o->val_every = 10;
    o->val_n = 200;
    o->norm_std = 1;
    o->seed = 1;
    o->temperature = 1.0f;
    o->top_p = 1.0f;
    o->adv_eps = 1e-6f;
    o->listen = "127.0.0.1:0";
    o->model_name = "policy";
    o->adapter = "llm_proxy";
    o->rollout_timeout = 600;
    o->max_batch = 64;
    o->opt = (rl_adamw){.lr = 3e-3f,
                        .beta1 = 0.9f,
                        .beta2 = 0.95f,
                        .eps = 1e-8f,
                        .weight_decay = 0.0f,
                        .grad_clip = 1.0f};
    o->grpo = (rl_grpo_cfg){.clip_low = 0.2f,
                            .clip_high = 0.2f,
                            .clip_c = 3.0f,
                            .kl_coef = 0.0f,
                            .kl_type = RL_KL_NONE,
                            .agg = RL_AGG_TOKEN_MEAN};
}

static void usage(const char *cmd, FILE *f)
{
    if (!strcmp(cmd, "serve")) {
        fprintf(f,
                "usage: trainerd serve --model CHECKPOINT_DIR|CONFIG.json [options]\n\n"
                "OpenAI-compatible policy server: GET /v1/models, POST /v1/completions and\n"
                "/v1/chat/completions (temperature, top_p, max_tokens, stop, stop_token_ids,\n"
                "seed, n, logprobs, stream), answering vLLM's token-id fields\n"
                "(prompt_token_ids, choices[].token_ids) so runnerd's proxy records them.\n\n"
                "  --model PATH          checkpoint directory (or config.json: random weights),\n"
                "                        or a real checkpoint: FILE.gguf or a HF folder\n"
                "                        (chat template, BPE tokenizer, eos/eot stops)\n"
                "  --max-seq N           real checkpoints: context cap (default 2048)\n"
                "  --chat-template NAME  real checkpoints: chatml | llama3 override\n"
                "  --tokenizer SPEC      bytes | chars:ALPHABET (default: from the checkpoint)\n"
                "  --listen HOST:PORT    address (default 127.0.0.1:0 = any free port; the\n"
                "                        chosen URL is printed on stdout)\n"
                "  --model-name NAME     model id (default policy)\n"
                "  --max-batch N         sequences decoded together (default 64)\n"
                "  --infer-dtype T       fp32 (default: rl_model_step, the numbers `trainerd rl`\n"
                "                        trains on) or q8_0 (int8 copy of the matrices, batched\n"
                "                        decoding: several times the tokens/s, log-probs within\n"
                "                        ~0.5 of fp32; see docs/performance.md)\n"
                "  --serve-log FILE      JSON line per served completion (ids, logprobs)\n"
                "  --threads N           OpenMP threads (default: OMP_NUM_THREADS)\n"
                "  --seed N              seed of requests that name none (default 1)\n");
        return;
    }
    fprintf(
        f, "usage: trainerd %s --model CONFIG.json|CHECKPOINT_DIR --train FILE.jsonl [options]\n\n",
        cmd);
    if (!strcmp(cmd, "sft"))
        fprintf(f, "Supervised fine-tuning on JSONL lines {\"prompt\": ..., \"response\": ...}.\n"
                   "Loss: mean next-token cross-entropy over response tokens and EOS.\n\n");
    else
        fprintf(f, "GRPO on JSONL tasks {\"prompt\": ..., \"answer\": ...}; reward = matched\n"
                   "positions of answer+EOS / (len+1), exact match when all match.\n"
                   "With --store the tasks are rollout inputs, rewards come from the agents and\n"
                   "the update uses the token ids of the triplets stored recorded.\n\n");
    fprintf(f,
            "  --model PATH          config.json (random init), checkpoint directory, or a real\n"
            "                        checkpoint: FILE.gguf or a HF folder (llama / qwen2,\n"
            "                        tokenizer.json); saved back as a HF folder\n"
            "  --max-seq N           real checkpoints: context cap (default 2048)\n"
            "  --chat-template NAME  real checkpoints: chatml | llama3 (default: its own)\n"
            "  --raw-prompts         real checkpoints: prompts are not wrapped in the chat\n"
            "                        template (default: one user turn + generation prompt)\n"
            "  --tokenizer SPEC      bytes | chars:ALPHABET (default: from the checkpoint)\n"
            "  --train FILE          training JSONL\n"
            "  --val FILE            held-out JSONL (greedy reward / exact match)\n"
            "  --out DIR             checkpoint directory (written every --save-every and at end)\n"
            "  --resume DIR          continue a run bit-for-bit from a checkpoint\n"
            "  --steps N             total optimizer steps (default 100)\n"
            "  --lr X --wd X --clip X --beta2 X   AdamW (3e-3, 0, 1.0, 0.95)\n"
            "  --seed N              RNG seed (default 1)\n"
            "  --threads N           OpenMP threads (default: OMP_NUM_THREADS)\n"
            "  --save-every N --val-every N --val-n N\n"
            "  --log FILE            JSON line per step\n"
            "  --quiet               no per-step line on stdout\n"
            "  --keep-optimizer      with --model DIR: continue its AdamW moments (SFT -> RL)\n");
    if (!strcmp(cmd, "sft")) {
        fprintf(f, "  --batch N             sequences per step (default 32)\n");
        return;
    }
    fprintf(f, "  --prompts N           prompts per step (default 16), split over MPI ranks\n"
               "  --group N             samples per prompt G (default 8)\n"
               "  --max-new N           max response tokens (default 8)\n"
               "  --temperature X --top-p X\n"
               "  --clip-low X --clip-high X --clip-c X   (0.2, 0.2, 3.0 dual clip)\n"
               "  --agg token-mean|seq-mean-token-sum|seq-mean-token-mean\n"
               "  --kl none|k1|k3 --kl-coef X   KL to the initial policy\n"
               "  --no-std              Dr. GRPO advantages (no std division)\n"
               "  --shuffle-rewards     negative control: permute rewards across the batch\n"
               "  --dump-check FILE     testing: write weights, a batch, logp and GRPO loss\n"
               "  --store URL           train through stored + runnerd: serve the policy,\n"
               "                        publish it as main_llm, enqueue prompts x group\n"
               "                        rollouts per step, train on their triplets\n"
               "  --listen HOST:PORT    policy server address (default 127.0.0.1:0 = any port)\n"
               "  --serve-url URL       base URL published in main_llm (default from --listen)\n"
               "  --model-name NAME     model id of the policy server (default policy)\n"
               "  --max-batch N         sequences the server decodes together (default 64)\n"
               "  --serve-log FILE      JSON line per served completion (ids, logprobs)\n"
               "  --adapter NAME        triplet adapter: llm_proxy|auto|tracer (llm_proxy)\n"
               "  --resources FILE      JSON object of resources published with main_llm in\n"
               "                        every snapshot (e.g. a prompt_template for runnerd's\n"
               "                        prompt agent)\n"
               "  --rollout-timeout S   longest wait for a step's rollouts (600; 0 = none)\n");
}

int rl_parse_opts(const char *cmd, int argc, char **argv, rl_opts *o)
{
    opts_default(o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define STR(name, field)                                                                           \
    if (!strcmp(a, name)) {                                                                        \
        if (!v) goto missing;                                                                      \
        o->field = v;                                                                              \
        i++;                                                                                       \
        continue;                                                                                  \
    }
#define INT(name, field)                                                                           \
    if (!strcmp(a, name)) {                                                                        \
        if (!v) goto missing;                                                                      \
        o->field = atoi(v);                                                                        \
        i++;                                                                                       \
        continue;                                                                                  \
    }
#define FLT(name, field)                                                                           \
    if (!strcmp(a, name)) {                                                                        \
        if (!v) goto missing;                                                                      \
        o->field = strtof(v, NULL);                                                                \
        i++;                                                                                       \
        continue;                                                                                  \
    }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(cmd, stdout);
            exit(0);
        }
        STR("--model", model);
        STR("--train", data);
        STR("--data", data);
        STR("--val", val);
        STR("--out", out);
        STR("--resume", resume);
        STR("--log", log_path);
        STR("--tokenizer", tokenizer);
        STR("--dump-check", dump_check);
        STR("--store", store);
        STR("--listen", listen);
        STR("--serve-url", serve_url);
        STR("--model-name", model_name);
        STR("--serve-log", serve_log);
        STR("--adapter", adapter);
        STR("--resources", resources);
        INT("--max-batch", max_batch);
        if (!strcmp(cmd, "serve")) STR("--infer-dtype", infer_dtype);
        INT("--max-seq", max_seq);
        STR("--chat-template", chat_template);
        if (!strcmp(a, "--raw-prompts")) {
            o->raw_prompts = 1;
            continue;
        }
        if (!strcmp(a, "--rollout-timeout") && v) {
            o->rollout_timeout = strtod(v, NULL);
            i++;
            continue;
        }
        INT("--steps", steps);
        INT("--batch", batch);
        INT("--prompts", prompts);
        INT("--group", group);
        INT("--max-new", max_new);
        INT("--threads", threads);
        INT("--save-every", save_every);
        INT("--val-every", val_every);
        INT("--val-n", val_n);
        FLT("--lr", opt.lr);
        FLT("--wd", opt.weight_decay);
        FLT("--clip", opt.grad_clip);
        FLT("--beta2", opt.beta2);
        FLT("--temperature", temperature);
        FLT("--top-p", top_p);
        FLT("--clip-low", grpo.clip_low);
        FLT("--clip-high", grpo.clip_high);
        FLT("--clip-c", grpo.clip_c);
        FLT("--kl-coef", grpo.kl_coef);
        if (!strcmp(a, "--seed") && v) {
            o->seed = strtoull(v, NULL, 10);
            i++;
            continue;
        }
        if (!strcmp(a, "--agg") && v) {
            if (rl_agg_parse(v, &o->grpo.agg)) {
                fprintf(stderr, "trainerd %s: unknown --agg '%s'\n", cmd, v);
                return -1;
            }
            i++;
            continue;
        }
        if (!strcmp(a, "--kl") && v) {
            if (rl_kl_parse(v, &o->grpo.kl_type)) {
                fprintf(stderr, "trainerd %s: unknown --kl '%s'\n", cmd, v);
                return -1;
            }
            i++;
            continue;
        }
        if (!strcmp(a, "--no-std")) {
            o->norm_std = 0;
            continue;
        }
        if (!strcmp(a, "--shuffle-rewards")) {
            o->shuffle_rewards = 1;
            continue;
        }
        if (!strcmp(a, "--keep-optimizer")) {
            o->keep_optimizer = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
            continue;
        }
        fprintf(stderr, "trainerd %s: unknown option '%s' (see --help)\n", cmd, a);
        return -1;
    missing:
        fprintf(stderr, "trainerd %s: option %s needs a value\n", cmd, a);
        return -1;
#undef STR
#undef INT
#undef FLT
    }
    if (!strcmp(cmd, "serve") && !o->model) {
        fprintf(stderr, "trainerd serve: --model CHECKPOINT_DIR|CONFIG.json is required\n");
        return -1;
    }
    if (o->max_batch < 1) o->max_batch = 1;
    rl_infer_dtype dt;
    if (o->infer_dtype && rl_infer_dtype_parse(o->infer_dtype, &dt)) {
        fprintf(stderr, "trainerd %s: --infer-dtype is fp32 or q8_0, not '%s'\n", cmd,
                o->infer_dtype);
        return -1;
    }
    if (!o->model && !o->resume) {
        fprintf(stderr, "trainerd %s: --model or --resume is required\n", cmd);
        return -1;
    }
    if (o->steps < 0 || o->batch < 1 || o->prompts < 1 || o->group < 1 || o->max_new < 1) {
        fprintf(stderr, "trainerd %s: steps, batch, prompts, group and max-new must be positive\n",
                cmd);
        return -1;
    }
    if (o->threads > 0) omp_set_num_threads(o->threads);
    return 0;
}

void rl_dataset_free(rl_dataset *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->ex[i].p);
        free(d->ex[i].r);
    }
    free(d->ex);
    d->ex = NULL;
    d->n = 0;
}

/* Reads JSONL with keys `pkey` and `rkey`. Returns 0 or -1 (message printed). */
int rl_dataset_load(rl_dataset *d, const char *path, const rl_tok *tok, const char *rkey,
                    int max_seq, int chat)
{
    FILE *f = fopen(path, "r");
    memset(d, 0, sizeof *d);
    if (!f) {
        fprintf(stderr, "trainerd: cannot open %s\n", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0, cap_ex = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        json_t *j = json_loads(line, 0, NULL);
        const char *p = json_string_value(json_object_get(j, "prompt"));
        const char *r = json_string_value(json_object_get(j, rkey));
        if (!r) /* sft evaluates on tasks and rl accepts sft data: the other key also works */
            r = json_string_value(
                json_object_get(j, strcmp(rkey, "answer") ? "answer" : "response"));
        if (!p || !r) {
            fprintf(stderr, "trainerd: %s:%d: expected {\"prompt\": str, \"%s\": str}\n", path,
                    lineno, rkey);
            json_decref(j);
            rc = -1;
            break;
        }
        rl_example e;
        int nr;
        if (tok->pre) {
            e.p = rl_pretrained_encode_prompt(tok->pre, p, chat, &e.np);
            int *ri = rl_bpe_encode(tok->pre->bpe, r, strlen(r), 1, &nr);
            int end = tok->eot >= 0 && tok->pre->chat.kind && chat ? tok->eot : tok->eos;
            e.r = agl_realloc(ri, sizeof(int) * (size_t)(nr + 1));
            e.r[nr] = end;
            if (end < 0) nr = -1;
        } else {
            size_t lp = strlen(p), lr = strlen(r);
            e.p = agl_malloc(sizeof(int) * (lp + 1));
            e.r = agl_malloc(sizeof(int) * (lr + 1));
            e.p[0] = RL_TOK_BOS;
            e.np = 1 + rl_tok_encode(tok, p, lp, e.p + 1, (int)lp);
            nr = rl_tok_encode(tok, r, lr, e.r, (int)lr);
            if (nr >= 0) e.r[nr] = RL_TOK_EOS;
        }
        json_decref(j);
        if (e.np < 1 || nr < 0 || e.np + nr + 1 > max_seq) {
            fprintf(stderr,
                    "trainerd: %s:%d: text outside the tokenizer's alphabet or longer than "
                    "max_position_embeddings (or no end token)\n",
                    path, lineno);
            free(e.p);
            free(e.r);
            rc = -1;
            break;
        }
        e.nr = nr + 1;
        if (d->n == cap_ex) {
            cap_ex = cap_ex ? 2 * cap_ex : 64;
            d->ex = agl_realloc(d->ex, sizeof *d->ex * (size_t)cap_ex);
        }
        d->ex[d->n++] = e;
    }
    free(line);
    fclose(f);
    if (rc == 0 && d->n == 0) {
        fprintf(stderr, "trainerd: %s has no examples\n", path);
        rc = -1;
    }
    if (rc) rl_dataset_free(d);
    return rc;
}

void rl_batch_build(rl_batch *bt, int B, const int *const *prompt, const int *np,
                    const int *const *resp, const int *nr)
{
    int T = 1;
    for (int b = 0; b < B; b++)
        if (np[b] + nr[b] - 1 > T) T = np[b] + nr[b] - 1;
    bt->B = B;
    bt->T = T;
    bt->tokens = agl_calloc((size_t)B * T, sizeof(int));
    bt->targets = agl_malloc(sizeof(int) * (size_t)B * T);
    bt->mask = agl_calloc((size_t)B * T, sizeof(float));
    for (int b = 0; b < B; b++) {
        int *tk = bt->tokens + (size_t)b * T, *tg = bt->targets + (size_t)b * T;
        for (int t = 0; t < T; t++) tg[t] = -1;
        int len = np[b] + nr[b];
        for (int t = 0; t < len - 1; t++) tk[t] = t < np[b] ? prompt[b][t] : resp[b][t - np[b]];
        for (int t = np[b] - 1; t < len - 1; t++) {
            tg[t] = resp[b][t - np[b] + 1];
            bt->mask[(size_t)b * T + t] = 1.0f;
        }
    }
}

void rl_batch_free(rl_batch *bt)
{
    free(bt->tokens);
    free(bt->targets);
    free(bt->mask);
}

/* ---------------------------------------------------------------- generation */
uint64_t rl_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return (x ^ (x >> 31)) | 1;
}

void rl_sample_support(const rl_tok *tok, int V, int *lo, int *hi)
{
    *lo = tok && tok->pre ? 0 : RL_TOK_EOS;
    *hi = tok && tok->vocab > *lo && tok->vocab < V ? tok->vocab : V;
}

/* Samples one id from logits (only ids in rl_sample_support). temperature 0 = greedy. Returns
 * the id and its log-prob under the temperature-scaled distribution. */
int rl_sample(float *logits, int V, const rl_tok *tok, float temp, float top_p, uint64_t *rng,
              float *lp)
{
    int best, hi;
    rl_sample_support(tok, V, &best, &hi);
    for (int i = 0; i < V; i++)
        if (i < best || i >= hi) logits[i] = -INFINITY;
    for (int i = best + 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    double mx = logits[best], s = 0.0;
    double t = temp > 0 ? temp : 1.0;
    for (int i = 0; i < V; i++) s += exp((logits[i] - mx) / t);
    if (temp <= 0) {
        *lp = (float)(-log(s));
        return best;
    }
    double u = rl_rng_uniform(rng) * s, keep = s;
    if (top_p < 1.0f) { /* nucleus: smallest top set whose mass reaches top_p */
        float *p = agl_malloc(sizeof(float) * V);
        for (int i = 0; i < V; i++) p[i] = (float)(exp((logits[i] - mx) / t) / s);
        double mass = 0.0;
        keep = 0.0;
        while (mass < top_p) {
            int j = -1;
            for (int i = 0; i < V; i++)
                if (p[i] >= 0 && (j < 0 || p[i] > p[j])) j = i;
            if (j < 0) break;
            mass += p[j];
            keep += p[j] * s;
            p[j] = -1.0f; /* marks kept */
        }
        for (int i = 0; i < V; i++)
            if (p[i] >= 0) logits[i] = -INFINITY;
        free(p);
        u = rl_rng_uniform(rng) * keep;
    }
    double acc = 0.0;
    int pick = best;
    for (int i = 0; i < V; i++) {
        double e = exp((logits[i] - mx) / t);
        if (e == 0.0) continue;
        acc += e;
        if (u < acc) {
            pick = i;
            break;
        }
    }
    *lp = (float)((logits[pick] - mx) / t - log(s));
    return pick;
}

/* Generates up to max_new tokens (stopping at EOS) for n prompts. Sequence i samples with an
 * RNG derived from (seed, base + i) only, so results do not depend on threads or ranks. out[i]
 * holds max_new ids; len[i] how many were produced. */
void rl_generate(const rl_model *m, const rl_tok *tok, int n, int base, const int *const *prompt,
                 const int *np, int max_new, float temp, float top_p, uint64_t seed, int *out,
                 int *len, float *lps)
{
    const rl_config *c = &m->cfg;
#pragma omp parallel
    {
        rl_kv kv;
        rl_kv_init(&kv, c);
        float *scratch = agl_malloc(sizeof(float) * rl_step_scratch_size(c));
        float *logits = agl_malloc(sizeof(float) * c->vocab);
#pragma omp for schedule(dynamic)
        for (int i = 0; i < n; i++) {
            uint64_t rng = rl_mix64(seed ^ rl_mix64((uint64_t)(base + i) + 1));
            kv.len = 0;
            for (int t = 0; t < np[i]; t++)
                rl_model_step(m, &kv, prompt[i][t], t == np[i] - 1 ? logits : NULL, scratch);
            int k = 0;
            while (k < max_new && kv.len < c->max_seq) {
                float lp;
                int id = rl_sample(logits, c->vocab, tok, temp, top_p, &rng, &lp);
                out[(size_t)i * max_new + k] = id;
                if (lps) lps[(size_t)i * max_new + k] = lp;
                k++;
                if (rl_tok_is_stop(tok, id) || k == max_new || kv.len >= c->max_seq) break;
                rl_model_step(m, &kv, id, logits, scratch);
            }
            len[i] = k;
        }
        rl_kv_free(&kv);
        free(scratch);
        free(logits);
    }
}

/* Partial credit: matched positions of answer+EOS over its length; exact when all match and
 * the response has exactly that length. */
float rl_verify(const int *resp, int nr, const rl_example *e, int *exact)
{
    int match = 0;
    for (int i = 0; i < e->nr && i < nr; i++) match += resp[i] == e->r[i];
    *exact = match == e->nr && nr == e->nr;
    return (float)match / (float)e->nr;
}

/* ---------------------------------------------------------------- shared helpers */
double rl_now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec * 1e-6;
}

/* A real checkpoint (GGUF file / HF folder): weights, BPE tokenizer and chat template; --resume
 * on a folder saved by rl_pretrained_save also restores its trainer_state.bin. */
static int run_open_pretrained(rl_run *r, const rl_opts *o, const char *src)
{
    if (o->tokenizer) {
        fprintf(stderr, "trainerd: --tokenizer does not apply to %s (it has its own)\n", src);
        return -1;
    }
    r->pre = agl_calloc(1, sizeof *r->pre);
    rl_pretrained_opts po = {.max_seq = o->max_seq > 0 ? o->max_seq : 2048,
                             .chat_template = o->chat_template};
    char err[RL_ERRLEN];
    if (rl_pretrained_load(r->pre, src, &po, err)) {
        fprintf(stderr, "trainerd: %s\n", err);
        free(r->pre);
        r->pre = NULL;
        return -1;
    }
    r->m = r->pre->model;
    rl_tok_from_pretrained(&r->tok, r->pre);
    if (r->tok.eos < 0 && r->tok.eot < 0) {
        fprintf(stderr, "trainerd: %s names no eos token\n", src);
        rl_run_close(r);
        return -1;
    }
    int has_state = 0;
    uint64_t dummy[RL_STATE_WORDS] = {0};
    const char *e = NULL;
    if ((o->resume || o->keep_optimizer) &&
        rl_ckpt_load_state(src, r->m, o->resume ? r->state : dummy, &has_state, &e)) {
        fprintf(stderr, "trainerd: %s\n", e);
        rl_run_close(r);
        return -1;
    }
    if (o->resume && !has_state) {
        fprintf(stderr, "trainerd: %s has no trainer_state.bin to resume from\n", o->resume);
        rl_run_close(r);
        return -1;
    }
    if (!o->resume) {
        r->state[0] = rl_mix64(o->seed ^ 0xD00D);
        r->state[1] = 0;
        if (!has_state) r->m->step = 0;
    }
    return 0;
}

void rl_run_close(rl_run *r)
{
    if (r->pre) {
        rl_pretrained_free(r->pre); /* frees the model too */
        free(r->pre);
    } else {
        rl_model_free(r->m);
    }
    r->pre = NULL;
    r->m = NULL;
}

int rl_run_open(rl_run *r, const rl_opts *o)
{
    const char *err = NULL;
    char spec[300] = "";
    int has_state = 0;
    memset(r, 0, sizeof *r);
    const char *src = o->resume ? o->resume : o->model;
    if (rl_pretrained_detect(src)) return run_open_pretrained(r, o, src);
    /* --model DIR starts a new run from those weights; only --resume restores the optimizer,
     * step counter and RNG state */
    uint64_t dummy[RL_STATE_WORDS];
    int kept = 0;
    r->m = rl_ckpt_load(o->resume ? o->resume : o->model, spec,
                        o->resume           ? r->state
                        : o->keep_optimizer ? dummy
                                            : NULL,
                        o->resume ? &has_state : &kept, &err);
    if (!r->m) {
        fprintf(stderr, "trainerd: %s\n", err);
        return -1;
    }
    if (o->tokenizer) snprintf(spec, sizeof spec, "%s", o->tokenizer);
    if (!spec[0]) snprintf(spec, sizeof spec, "bytes");
    if (rl_tok_init(&r->tok, spec, &err)) {
        fprintf(stderr, "trainerd: %s\n", err);
        return -1;
    }
    if (r->tok.vocab > r->m->cfg.vocab) {
        fprintf(stderr, "trainerd: tokenizer needs %d ids but the model's vocab_size is %d\n",
                r->tok.vocab, r->m->cfg.vocab);
        return -1;
    }
    if (o->resume && !has_state) {
        fprintf(stderr, "trainerd: %s has no trainer_state.bin to resume from\n", o->resume);
        return -1;
    }
    if (!has_state) {
        int fresh = 1;
        /* a checkpoint dir given as --model keeps its weights; a config.json initialises */
        FILE *f = fopen(o->model, "r");
        if (f) {
            char c0 = 0;
            fresh = fread(&c0, 1, 1, f) == 1 && c0 == '{';
            fclose(f);
        }
        uint64_t init = rl_mix64(o->seed);
        if (fresh) rl_model_init(r->m, &init);
        r->state[0] = rl_mix64(o->seed ^ 0xD00D);
        r->state[1] = 0;
        if (!kept) r->m->step = 0; /* --keep-optimizer keeps moments and bias-correction step */
    }
    return 0;
}

int rl_run_save(rl_run *r, const rl_opts *o, const char *dir)
{
    const char *err;
    if (rl_dist_rank() != 0 || !dir) return 0;
    if (r->pre) {
        char e[RL_ERRLEN];
        if (rl_pretrained_save(dir, r->pre, r->m, r->state, e)) {
            fprintf(stderr, "trainerd: %s\n", e);
            return -1;
        }
        return 0;
    }
    if (rl_ckpt_save(dir, r->m, r->tok.spec, r->state, &err)) {
        fprintf(stderr, "trainerd: %s (%s)\n", err, dir);
        return -1;
    }
    return 0;
}

/* Sums gradients over ranks (each rank's loss is already normalised by global counts). */
static void allreduce_grads(rl_model *m)
{
    rl_dist_sum_f(m->grads, m->nparams);
}

/* Greedy evaluation on up to n examples: mean reward and exact-match fraction. */
void rl_evaluate(const rl_model *m, const rl_tok *tok, const rl_dataset *d, int n, int max_new,
                 double *reward, double *exact)
{
    if (n > d->n) n = d->n;
    const int **pp = agl_malloc(sizeof *pp * n);
    int *np = agl_malloc(sizeof(int) * n), *len = agl_malloc(sizeof(int) * n);
    int *out = agl_malloc(sizeof(int) * (size_t)n * max_new);
    for (int i = 0; i < n; i++) {
        pp[i] = d->ex[i].p;
        np[i] = d->ex[i].np;
    }
    rl_generate(m, tok, n, 0, pp, np, max_new, 0.0f, 1.0f, 0, out, len, NULL);
    double rs = 0, es = 0;
    for (int i = 0; i < n; i++) {
        int ex;
        rs += rl_verify(out + (size_t)i * max_new, len[i], &d->ex[i], &ex);
        es += ex;
    }
    *reward = rs / n;
    *exact = es / n;
    free(pp);
    free(np);
    free(len);
    free(out);
}

/* ---------------------------------------------------------------- sft */
int trainerd_sft_main(int argc, char **argv)
{
    rl_opts o;
    rl_dist_init(&argc, &argv);
    if (rl_parse_opts("sft", argc, argv, &o)) return 2;
    if (!o.data) {
        fprintf(stderr, "trainerd sft: --train FILE.jsonl is required\n");
        return 2;
    }
    rl_run r;
    if (rl_run_open(&r, &o)) return 1;
    rl_dataset d, val = {0};
    if (rl_dataset_load(&d, o.data, &r.tok, "response", r.m->cfg.max_seq, !o.raw_prompts)) return 1;
    if (o.val && rl_dataset_load(&val, o.val, &r.tok, "response", r.m->cfg.max_seq, !o.raw_prompts))
        return 1;
    FILE *logf = o.log_path && rl_dist_rank() == 0 ? fopen(o.log_path, "a") : NULL;
    int rank = rl_dist_rank(), world = rl_dist_world();
    int B = o.batch, *pick = agl_malloc(sizeof(int) * B), rc = 0;
    float *dlogp = NULL;
    while ((int)r.state[1] < o.steps) {
        double t0 = rl_now_s();
        for (int b = 0; b < B; b++) pick[b] = (int)(rl_rng_u64(&r.state[0]) % (uint64_t)d.n);
        /* rank r trains on its contiguous slice of the global batch */
        int lo = B * rank / world, hi = B * (rank + 1) / world, nb = hi - lo;
        const int **pp = agl_malloc(sizeof *pp * (nb + 1)),
                  **rr = agl_malloc(sizeof *rr * (nb + 1));
        int *np = agl_malloc(sizeof(int) * (nb + 1)), *nr = agl_malloc(sizeof(int) * (nb + 1));
        for (int b = 0; b < nb; b++) {
            rl_example *e = &d.ex[pick[lo + b]];
            pp[b] = e->p, np[b] = e->np, rr[b] = e->r, nr[b] = e->nr;
        }
        rl_batch bt;
        rl_batch_build(&bt, nb, pp, np, rr, nr);
        double ntok = 0, loss = 0;
        for (int n = 0; n < bt.B * bt.T; n++) ntok += bt.mask[n];
        rl_dist_sum_d(&ntok, 1);
        rl_model_forward(r.m, bt.tokens, bt.targets, bt.B, bt.T);
        dlogp = agl_realloc(dlogp, sizeof(float) * (size_t)bt.B * bt.T);
        for (int n = 0; n < bt.B * bt.T; n++) {
            dlogp[n] = bt.mask[n] != 0.0f ? (float)(-1.0 / ntok) : 0.0f;
            loss -= bt.mask[n] * r.m->a.logp[n] / ntok;
        }
        rl_dist_sum_d(&loss, 1);
        rl_model_zero_grad(r.m);
        rl_model_backward(r.m, dlogp);
        allreduce_grads(r.m);
        double gn = rl_model_adamw(r.m, &o.opt);
        r.state[1]++;
        double dt = rl_now_s() - t0;
        long step = (long)r.state[1];
        double vr = -1, ve = -1;
        if (val.n && (step % o.val_every == 0 || step == o.steps))
            rl_evaluate(r.m, &r.tok, &val, o.val_n, 16, &vr, &ve);
        if (rank == 0) {
            if (!o.quiet)
                printf("sft step %ld/%d loss %.4f grad_norm %.3f tokens/s %.0f%s", step, o.steps,
                       loss, gn, ntok / dt, vr >= 0 ? "" : "\n");
            if (!o.quiet && vr >= 0) printf(" val_reward %.3f val_exact %.3f\n", vr, ve);
            fflush(stdout);
            if (logf) {
                fprintf(logf,
                        "{\"step\":%ld,\"loss\":%.6f,\"grad_norm\":%.6f,\"tokens_per_s\":%.1f",
                        step, loss, gn, ntok / dt);
                if (vr >= 0) fprintf(logf, ",\"val_reward\":%.4f,\"val_exact\":%.4f", vr, ve);
                fprintf(logf, "}\n");
                fflush(logf);
            }
        }
        rl_batch_free(&bt);
        free(pp);
        free(rr);
        free(np);
        free(nr);
        if (o.save_every > 0 && step % o.save_every == 0 && o.out) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/step_%06ld", o.out, step);
            if (rank == 0) {
                rl_run_save(&r, &o, o.out); /* ensure the parent exists */
                if (rl_run_save(&r, &o, dir)) rc = 1;
            }
        }
    }
    if (o.out && rl_run_save(&r, &o, o.out)) rc = 1;
    if (logf) fclose(logf);
    free(pick);
    free(dlogp);
    rl_dataset_free(&d);
    rl_dataset_free(&val);
    rl_run_close(&r);
    rl_dist_finalize();
    return rc;
}

/* ---------------------------------------------------------------- rl (GRPO) */
typedef struct {
    double reward_mean, reward_std, zero_var, clipfrac, approx_kl, entropy, resp_len, loss, kl;
    double tokens, exact;
} step_stats;

/* Testing aid: a random model and batch, logp and the GRPO loss/gradient, all in one
 * safetensors file a numpy reference re-computes (tests/integration/test_rl_numpy.py). */
static int dump_check(const rl_opts *o)
{
    rl_run r;
    if (rl_run_open(&r, o)) return 1;
    rl_model *m = r.m;
    uint64_t rng = rl_mix64(o->seed ^ 77);
    for (size_t i = 0; i < m->nparams; i++) m->params[i] += 0.3f * rl_rng_normal(&rng);
    int G = o->group, P = o->prompts, B = P * G, T = m->cfg.max_seq < 12 ? m->cfg.max_seq : 12;
    int N = B * T, V = m->cfg.vocab;
    int *tokens = agl_malloc(sizeof(int) * N), *targets = agl_malloc(sizeof(int) * N);
    float *mask = agl_calloc(N, sizeof(float)), *old = agl_malloc(sizeof(float) * N),
          *ref = agl_malloc(sizeof(float) * N), *dl = agl_malloc(sizeof(float) * N);
    float *rew = agl_malloc(sizeof(float) * B), *adv = agl_malloc(sizeof(float) * B),
          *grp = agl_malloc(sizeof(float) * B);
    int *gi = agl_malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++) {
        int plen = 2 + (int)(rl_rng_u64(&rng) % 3),
            len = plen + 1 + (int)(rl_rng_u64(&rng) % (T - plen));
        for (int t = 0; t < T; t++) {
            int n = b * T + t;
            tokens[n] = (int)(rl_rng_u64(&rng) % (uint64_t)V);
            targets[n] = t >= plen - 1 && t < len - 1 ? (int)(rl_rng_u64(&rng) % (uint64_t)V) : -1;
            mask[n] = targets[n] >= 0 ? 1.0f : 0.0f;
        }
        gi[b] = b / G;
        grp[b] = (float)gi[b];
        rew[b] = (float)(rl_rng_u64(&rng) % 3) * 0.5f;
    }
    rl_grpo_advantages(rew, gi, B, o->norm_std, o->adv_eps, adv);
    rl_model_forward(m, tokens, targets, B, T);
    for (int n = 0; n < N; n++) {
        old[n] = m->a.logp[n] + 0.3f * rl_rng_normal(&rng);
        ref[n] = m->a.logp[n] + 0.3f * rl_rng_normal(&rng);
    }
    double ntok = 0;
    for (int n = 0; n < N; n++) ntok += mask[n];
    rl_grpo_stats st;
    rl_grpo_loss(&o->grpo, m->a.logp, old, ref, adv, mask, B, T, ntok, B, dl, &st);
    float *ftok = agl_malloc(sizeof(float) * N), *ftgt = agl_malloc(sizeof(float) * N);
    for (int n = 0; n < N; n++) ftok[n] = (float)tokens[n], ftgt[n] = (float)targets[n];
    float loss = (float)st.loss;
    /* model tensors first, then the check tensors */
    const char *err;
    int rc = rl_ckpt_save(o->dump_check, m, r.tok.spec, NULL, &err);
    if (rc == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/check.safetensors", o->dump_check);
        const char *names[] = {"tokens",  "targets", "mask", "old_logp", "ref_logp",
                               "rewards", "groups",  "adv",  "logp",     "entropy",
                               "prob",    "dlogp",   "loss"};
        int nd[] = {2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 3, 2, 1};
        long sh[13][4] = {{B, T}, {B, T}, {B, T}, {B, T},    {B, T}, {B}, {B},
                          {B},    {B, T}, {B, T}, {B, T, V}, {B, T}, {1}};
        const float *data[] = {ftok, ftgt,      mask,     old,       ref, rew,  grp,
                               adv,  m->a.logp, m->a.ent, m->a.prob, dl,  &loss};
        char meta[512];
        snprintf(meta, sizeof meta,
                 "{\"clip_low\":%g,\"clip_high\":%g,\"clip_c\":%g,\"kl_coef\":%g,\"kl\":%d,"
                 "\"agg\":%d,\"norm_std\":%d,\"adv_eps\":%g}",
                 o->grpo.clip_low, o->grpo.clip_high, o->grpo.clip_c, o->grpo.kl_coef,
                 (int)o->grpo.kl_type, (int)o->grpo.agg, o->norm_std, o->adv_eps);
        rc = rl_safetensors_write(path, 13, names, nd, (const long(*)[4])sh, data, meta);
    }
    if (rc) fprintf(stderr, "trainerd: cannot write %s\n", o->dump_check);
    free(tokens), free(targets), free(mask), free(old), free(ref), free(dl), free(rew);
    free(adv), free(grp), free(gi), free(ftok), free(ftgt);
    rl_run_close(&r);
    return rc ? 1 : 0;
}

static void grpo_step(rl_run *r, const rl_opts *o, const rl_dataset *d, const rl_model *ref,
                      step_stats *ss)
{
    int P = o->prompts, G = o->group, rank = rl_dist_rank(), world = rl_dist_world();
    int *pick = agl_malloc(sizeof(int) * P);
    for (int p = 0; p < P; p++) pick[p] = (int)(rl_rng_u64(&r->state[0]) % (uint64_t)d->n);
    uint64_t gen_seed = rl_rng_u64(&r->state[0]);
    uint64_t perm_seed = rl_rng_u64(&r->state[0]);
    /* whole groups per rank: rank takes prompts [plo, phi) */
    int plo = P * rank / world, phi = P * (rank + 1) / world, B = (phi - plo) * G;
    int BG = P * G; /* global sequences */
    const int **pp = agl_malloc(sizeof *pp * (BG + 1));
    int *np = agl_malloc(sizeof(int) * (BG + 1)), *len = agl_malloc(sizeof(int) * (BG + 1));
    int *out = agl_malloc(sizeof(int) * (size_t)(BG + 1) * o->max_new);
    for (int i = 0; i < BG; i++) {
        pp[i] = d->ex[pick[i / G]].p;
        np[i] = d->ex[pick[i / G]].np;
    }
    /* every rank generates only its own sequences; RNG streams are keyed by the global index */
    int s0 = plo * G;
    rl_generate(r->m, &r->tok, B, s0, pp + s0, np + s0, o->max_new, o->temperature, o->top_p,
                gen_seed, out, len, NULL);
    float *rew = agl_calloc((size_t)BG + 1, sizeof(float));
    double exact = 0;
    for (int i = 0; i < B; i++) {
        int ex;
        rew[s0 + i] =
            rl_verify(out + (size_t)i * o->max_new, len[i], &d->ex[pick[(s0 + i) / G]], &ex);
        exact += ex;
    }
    rl_dist_sum_f(rew, (size_t)BG); /* all ranks see all rewards (for stats and the shuffle) */
    if (o->shuffle_rewards) {
        uint64_t prng = perm_seed;
        for (int i = BG - 1; i > 0; i--) {
            int j = (int)(rl_rng_u64(&prng) % (uint64_t)(i + 1));
            float t = rew[i];
            rew[i] = rew[j];
            rew[j] = t;
        }
    }
    int *gi = agl_malloc(sizeof(int) * (BG + 1));
    float *adv = agl_malloc(sizeof(float) * (BG + 1));
    for (int i = 0; i < BG; i++) gi[i] = i / G;
    rl_grpo_advantages(rew, gi, BG, o->norm_std, o->adv_eps, adv);
    /* stats over the global batch */
    double rs = 0, rq = 0;
    int zero = 0;
    for (int i = 0; i < BG; i++) rs += rew[i];
    for (int i = 0; i < BG; i++) rq += (rew[i] - rs / BG) * (rew[i] - rs / BG);
    for (int p = 0; p < P; p++) {
        int same = 1;
        for (int k = 1; k < G; k++) same &= rew[p * G + k] == rew[p * G];
        zero += same;
    }
    ss->reward_mean = rs / BG;
    ss->reward_std = BG > 1 ? sqrt(rq / (BG - 1)) : 0;
    ss->zero_var = (double)zero / P;
    /* training batch: this rank's sequences */
    const int **rr = agl_malloc(sizeof *rr * (B + 1));
    for (int i = 0; i < B; i++) rr[i] = out + (size_t)i * o->max_new;
    rl_batch bt;
    rl_batch_build(&bt, B, pp + s0, np + s0, rr, len);
    int N = bt.B * bt.T;
    double cnt[2] = {0, 0}; /* tokens, non-empty sequences */
    for (int n = 0; n < N; n++) cnt[0] += bt.mask[n];
    for (int i = 0; i < B; i++) cnt[1] += len[i] > 0;
    rl_dist_sum_d(cnt, 2);
    float *refl = NULL, *old = agl_malloc(sizeof(float) * N), *dl = agl_malloc(sizeof(float) * N);
    if (ref && o->grpo.kl_type != RL_KL_NONE) {
        rl_model_forward((rl_model *)ref, bt.tokens, bt.targets, bt.B, bt.T);
        refl = agl_malloc(sizeof(float) * N);
        memcpy(refl, ref->a.logp, sizeof(float) * N);
    }
    rl_model_forward(r->m, bt.tokens, bt.targets, bt.B, bt.T);
    /* one update per batch (μ = 1): π_old is the current policy, recomputed by the trainer */
    memcpy(old, r->m->a.logp, sizeof(float) * N);
    rl_grpo_stats st;
    rl_grpo_loss(&o->grpo, r->m->a.logp, old, refl, adv + s0, bt.mask, bt.B, bt.T, cnt[0], cnt[1],
                 dl, &st);
    double ent = 0;
    for (int n = 0; n < N; n++) ent += bt.mask[n] * r->m->a.ent[n];
    rl_model_zero_grad(r->m);
    rl_model_backward(r->m, dl);
    allreduce_grads(r->m);
    double m[7] = {st.loss, st.kl, st.clipfrac, st.approx_kl, ent, exact, 0};
    for (int i = 0; i < B; i++) m[6] += len[i];
    rl_dist_sum_d(m, 7);
    ss->loss = m[0];
    ss->kl = m[1];
    ss->clipfrac = m[2] / cnt[0];
    ss->approx_kl = m[3] / cnt[0];
    ss->entropy = m[4] / cnt[0];
    ss->exact = m[5] / BG;
    ss->resp_len = m[6] / BG;
    ss->tokens = cnt[0];
    rl_model_adamw(r->m, &o->opt);
    rl_batch_free(&bt);
    free(pick), free(pp), free(np), free(len), free(out), free(rew), free(gi), free(adv);
    free(rr), free(refl), free(old), free(dl);
}

int trainerd_rl_main(int argc, char **argv)
{
    rl_opts o;
    rl_dist_init(&argc, &argv);
    if (rl_parse_opts("rl", argc, argv, &o)) return 2;
    if (o.dump_check) return dump_check(&o);
    if (!o.data) {
        fprintf(stderr, "trainerd rl: --train FILE.jsonl is required\n");
        return 2;
    }
    if (o.store) {
        int rc = rl_store_main(&o);
        rl_dist_finalize();
        return rc;
    }
    rl_run r;
    if (rl_run_open(&r, &o)) return 1;
    rl_sample_support(&r.tok, r.m->cfg.vocab, &r.m->support_lo, &r.m->support_hi);
    rl_dataset d, val = {0};
    if (rl_dataset_load(&d, o.data, &r.tok, "answer", r.m->cfg.max_seq, !o.raw_prompts)) return 1;
    if (o.val && rl_dataset_load(&val, o.val, &r.tok, "answer", r.m->cfg.max_seq, !o.raw_prompts))
        return 1;
    if (o.prompts % rl_dist_world()) {
        fprintf(stderr, "trainerd rl: --prompts must be a multiple of the number of ranks\n");
        return 2;
    }
    rl_model *ref = NULL;
    if (o.grpo.kl_type != RL_KL_NONE) {
        ref = rl_model_new(&r.m->cfg);
        memcpy(ref->params, r.m->params, sizeof(float) * r.m->nparams);
    }
    int rank = rl_dist_rank(), rc = 0;
    FILE *logf = o.log_path && rank == 0 ? fopen(o.log_path, "a") : NULL;
    if (val.n && r.state[1] == 0) {
        double vr, ve;
        rl_evaluate(r.m, &r.tok, &val, o.val_n, o.max_new, &vr, &ve);
        if (rank == 0 && !o.quiet) printf("rl step 0 val_reward %.3f val_exact %.3f\n", vr, ve);
        if (logf) {
            fprintf(logf, "{\"step\":0,\"val_reward\":%.4f,\"val_exact\":%.4f}\n", vr, ve);
            fflush(logf);
        }
    }
    while ((int)r.state[1] < o.steps) {
        double t0 = rl_now_s();
        step_stats ss;
        grpo_step(&r, &o, &d, ref, &ss);
        r.state[1]++;
        long step = (long)r.state[1];
        double dt = rl_now_s() - t0, vr = -1, ve = -1;
        if (val.n && (step % o.val_every == 0 || step == o.steps))
            rl_evaluate(r.m, &r.tok, &val, o.val_n, o.max_new, &vr, &ve);
        if (rank == 0) {
            if (!o.quiet) {
                printf("rl step %ld/%d reward %.3f±%.3f exact %.2f zero_var %.2f clip %.3f "
                       "kl %.4f ent %.3f len %.1f tok/s %.0f",
                       step, o.steps, ss.reward_mean, ss.reward_std, ss.exact, ss.zero_var,
                       ss.clipfrac, ss.approx_kl, ss.entropy, ss.resp_len, ss.tokens / dt);
                if (vr >= 0) printf(" | val_reward %.3f val_exact %.3f", vr, ve);
                printf("\n");
                fflush(stdout);
            }
            if (logf) {
                fprintf(logf,
                        "{\"step\":%ld,\"reward_mean\":%.5f,\"reward_std\":%.5f,\"exact\":%.4f,"
                        "\"zero_var_frac\":%.4f,\"clip_frac\":%.5f,\"approx_kl\":%.6f,"
                        "\"kl\":%.6f,\"entropy\":%.5f,\"response_len\":%.3f,\"loss\":%.6f,"
                        "\"tokens_per_s\":%.1f,\"step_s\":%.4f",
                        step, ss.reward_mean, ss.reward_std, ss.exact, ss.zero_var, ss.clipfrac,
                        ss.approx_kl, ss.kl, ss.entropy, ss.resp_len, ss.loss, ss.tokens / dt, dt);
                if (vr >= 0) fprintf(logf, ",\"val_reward\":%.4f,\"val_exact\":%.4f", vr, ve);
                fprintf(logf, "}\n");
                fflush(logf);
            }
        }
        if (o.save_every > 0 && step % o.save_every == 0 && o.out) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/step_%06ld", o.out, step);
            if (rl_run_save(&r, &o, o.out) || rl_run_save(&r, &o, dir)) rc = 1;
        }
    }
    if (o.out && rl_run_save(&r, &o, o.out)) rc = 1;
    if (logf) fclose(logf);
    rl_model_free(ref);
    rl_dataset_free(&d);
    rl_dataset_free(&val);
    rl_run_close(&r);
    rl_dist_finalize();
    return rc;
}
