/* model_cli — `trainerd model SUB --model PATH ...` (see model_cli.h):
 *   info                      config, tokenizer and chat template as JSON
 *   tokenize --in FILE.jsonl  one JSON string per line -> {"ids", "text", "stream_ok"} per line
 *   logits --out F.safetensors --prompt TEXT...   KV-cache logits (and the training forward's
 *                             softmax) of each prompt, for comparison with a reference
 *   generate (--prompt TEXT | --user TEXT [--system TEXT]) [--max-tokens N]   greedy decoding
 * logits and generate decode with the fp32 model (rl_model_step) or, with --infer-dtype q8_0,
 * with the quantised inference copy (infer.h). */
#include "model_cli.h"

#include "agl_alloc.h"
#include "agl_buf.h"
#include "ckpt.h"
#include "hf.h"
#include "infer.h"
#include "pretrained.h"
#include "qmatmul.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PROMPTS 16

typedef struct {
    const char *model, *tokenizer, *in, *out, *prompt[MAX_PROMPTS], *user, *system, *chat_template;
    int nprompt, max_tokens, max_seq, no_special;
    rl_infer_dtype dtype;
} cli_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: trainerd model info|tokenize|logits|generate --model FILE.gguf|HF_DIR "
               "[options]\n\n"
               "  --in FILE.jsonl        tokenize: one JSON string per line\n"
               "  --tokenizer FILE.json  tokenize: a tokenizer.json alone instead of --model\n"
               "  --no-special           tokenize: added tokens in the text are plain text\n"
               "  --prompt TEXT          logits/generate: raw prompt (repeatable for logits)\n"
               "  --out FILE             logits: safetensors output\n"
               "  --user TEXT            generate: a user message rendered by the chat template\n"
               "  --system TEXT          generate: a system message\n"
               "  --max-tokens N         generate: at most N new tokens (default 32)\n"
               "  --max-seq N            cap the context length (default: the model's, at most "
               "4096)\n"
               "  --chat-template NAME   chatml or llama3 instead of the checkpoint's\n"
               "  --infer-dtype T        logits/generate: fp32 (default; the trainer's exact "
               "numbers)\n"
               "                         or q8_0 (int8 weight copy, about 3x faster decoding, "
               "logits\n"
               "                         within ~0.5 of fp32 on SmolLM2; docs/performance.md)\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int same_text(const agl_buf *a, const agl_buf *b)
{
    return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int cmd_info(const rl_pretrained *p)
{
    const rl_config *c = &p->model->cfg;
    json_t *o = rl_config_to_json(c);
    json_object_set_new(o, "model_type", json_string(p->arch));
    json_object_set_new(o, "format", json_string(p->format));
    json_object_set_new(o, "tokenizer_vocab", json_integer(rl_bpe_vocab(p->bpe)));
    json_object_set_new(o, "pre_tokenizer", json_string(rl_bpe_pretok_name(rl_bpe_pretok(p->bpe))));
    json_object_set_new(o, "bos_token_id", json_integer(p->bos));
    json_object_set_new(o, "eos_token_id", json_integer(p->eos));
    json_object_set_new(o, "pad_token_id", json_integer(p->pad));
    json_object_set_new(o, "eot_token_id", json_integer(p->eot));
    json_object_set_new(o, "add_bos", json_boolean(p->add_bos));
    json_object_set_new(o, "chat_template", json_string(rl_chat_name(&p->chat)));
    json_object_set_new(o, "default_system",
                        p->chat.default_system ? json_string(p->chat.default_system) : json_null());
    json_object_set_new(o, "nparams", json_integer((json_int_t)p->model->nparams));
    json_dumpf(o, stdout, JSON_INDENT(1) | JSON_SORT_KEYS);
    printf("\n");
    json_decref(o);
    return 0;
}

static int cmd_tokenize(const rl_bpe *bpe, const cli_opts *o)
{
    FILE *f = o->in ? fopen(o->in, "r") : stdin;
    if (!f) {
        fprintf(stderr, "trainerd model: cannot open %s\n", o->in);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    agl_buf out, txt, st;
    agl_buf_init(&out), agl_buf_init(&txt), agl_buf_init(&st);
    int rc = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!json_is_string(j)) {
            fprintf(stderr, "trainerd model: line is not a JSON string: %s\n", je.text);
            json_decref(j);
            rc = 1;
            break;
        }
        int n, *ids = rl_bpe_encode(bpe, json_string_value(j), json_string_length(j),
                                    !o->no_special, &n);
        agl_buf_reset(&txt), agl_buf_reset(&st);
        rl_bpe_decode(bpe, ids, n, 0, &txt);
        rl_bpe_stream s = {0};
        for (int i = 0; i < n; i++) rl_bpe_stream_push(bpe, &s, ids[i], 0, &st);
        rl_bpe_stream_flush(&s, &st);
        agl_buf_reset(&out);
        agl_buf_puts(&out, "{\"ids\":[");
        for (int i = 0; i < n; i++) agl_buf_printf(&out, i ? ",%d" : "%d", ids[i]);
        agl_buf_puts(&out, "],\"text\":");
        agl_buf_json_strn(&out, txt.data ? txt.data : "", txt.len);
        agl_buf_printf(&out, ",\"stream_ok\":%s}\n", same_text(&st, &txt) ? "true" : "false");
        fwrite(out.data, 1, out.len, stdout);
        free(ids);
        json_decref(j);
    }
    free(line);
    agl_buf_free(&out), agl_buf_free(&txt), agl_buf_free(&st);
    if (f != stdin) fclose(f);
    return rc;
}

static int cmd_logits(const rl_pretrained *p, const cli_opts *o)
{
    if (!o->out || !o->nprompt) {
        fprintf(stderr, "trainerd model logits: --out and at least one --prompt are required\n");
        return 2;
    }
    const rl_config *c = &p->model->cfg;
    int V = c->vocab, nt = 3 * o->nprompt;
    char(*names)[32] = agl_calloc((size_t)nt, sizeof *names);
    const char **np = agl_calloc((size_t)nt, sizeof *np);
    int *ndims = agl_calloc((size_t)nt, sizeof *ndims);
    long(*shapes)[4] = agl_calloc((size_t)nt, sizeof *shapes);
    const float **data = agl_calloc((size_t)nt, sizeof *data);
    float *scratch = agl_malloc(sizeof(float) * rl_step_scratch_size(c));
    rl_infer *inf = NULL;
    if (o->dtype == RL_INFER_Q8_0) {
        char err[200];
        if (!(inf = rl_infer_new(p->model, err, sizeof err))) {
            fprintf(stderr, "trainerd model logits: %s\n", err);
            return 1;
        }
    }
    for (int i = 0; i < o->nprompt; i++) {
        int T, *ids = rl_pretrained_encode(p, o->prompt[i], &T);
        if (T < 1 || T > c->max_seq) {
            fprintf(stderr, "trainerd model logits: prompt %d has %d tokens\n", i, T);
            return 1;
        }
        float *lg = agl_malloc(sizeof(float) * (size_t)T * V), *tk = agl_malloc(sizeof(float) * T);
        rl_kv kv;
        rl_kv_init_cap(&kv, c, T);
        for (int t = 0; t < T; t++) tk[t] = (float)ids[t];
        if (inf) { /* the whole prompt in one batched step, logits at every position */
            rl_infer_row *rows = agl_malloc(sizeof *rows * (size_t)T);
            for (int t = 0; t < T; t++) rows[t] = (rl_infer_row){&kv, ids[t], lg + (size_t)t * V};
            rl_infer_step(inf, rows, T);
            free(rows);
        } else {
            for (int t = 0; t < T; t++)
                rl_model_step(p->model, &kv, ids[t], lg + (size_t)t * V, scratch);
        }
        rl_kv_free(&kv);
        /* the training forward of the same sequence: its softmax must agree with the steps */
        int *tg = agl_malloc(sizeof(int) * T);
        for (int t = 0; t < T; t++) tg[t] = t + 1 < T ? ids[t + 1] : -1;
        rl_model_forward(p->model, ids, tg, 1, T);
        float *pr = agl_malloc(sizeof(float) * (size_t)T * V);
        memcpy(pr, p->model->a.prob, sizeof(float) * (size_t)T * V);
        snprintf(names[3 * i], 32, "logits.%d", i);
        snprintf(names[3 * i + 1], 32, "tokens.%d", i);
        snprintf(names[3 * i + 2], 32, "prob.%d", i);
        ndims[3 * i] = 2, shapes[3 * i][0] = T, shapes[3 * i][1] = V, data[3 * i] = lg;
        ndims[3 * i + 1] = 1, shapes[3 * i + 1][0] = T, data[3 * i + 1] = tk;
        ndims[3 * i + 2] = 2, shapes[3 * i + 2][0] = T, shapes[3 * i + 2][1] = V,
                      data[3 * i + 2] = pr;
        free(ids), free(tg);
    }
    for (int i = 0; i < nt; i++) np[i] = names[i];
    int rc = rl_safetensors_write(o->out, nt, np, ndims, (const long(*)[4])shapes, data, NULL);
    if (rc) fprintf(stderr, "trainerd model logits: cannot write %s\n", o->out);
    for (int i = 0; i < nt; i++) free((void *)data[i]);
    free(names), free(np), free(ndims), free(shapes), free(data), free(scratch);
    rl_infer_free(inf);
    return rc ? 1 : 0;
}

static int cmd_generate(const rl_pretrained *p, const cli_opts *o)
{
    char *text;
    if (o->user) {
        if (!p->chat.kind) {
            fprintf(stderr, "trainerd model generate: the checkpoint has no chat template I "
                            "recognise; pass --chat-template chatml|llama3 or --prompt\n");
            return 1;
        }
        rl_chat_msg m[2];
        int n = 0;
        if (o->system) m[n++] = (rl_chat_msg){"system", o->system};
        m[n++] = (rl_chat_msg){"user", o->user};
        text = rl_chat_render(&p->chat, m, n, 1);
    } else if (o->nprompt) {
        text = agl_strdup(o->prompt[0]);
    } else {
        fprintf(stderr, "trainerd model generate: --prompt or --user is required\n");
        return 2;
    }
    const rl_config *c = &p->model->cfg;
    int T, *ids = rl_pretrained_encode(p, text, &T);
    if (T + o->max_tokens > c->max_seq) {
        fprintf(stderr, "trainerd model generate: %d + %d tokens exceed the context %d\n", T,
                o->max_tokens, c->max_seq);
        return 1;
    }
    float *lg = agl_malloc(sizeof(float) * c->vocab),
          *scratch = agl_malloc(sizeof(float) * rl_step_scratch_size(c));
    int V = rl_bpe_vocab(p->bpe); /* sample only ids the tokenizer defines */
    rl_infer *inf = NULL;
    if (o->dtype == RL_INFER_Q8_0) {
        char err[200];
        if (!(inf = rl_infer_new(p->model, err, sizeof err))) {
            fprintf(stderr, "trainerd model generate: %s\n", err);
            return 1;
        }
    }
    rl_kv kv;
    rl_kv_init_cap(&kv, c, T + o->max_tokens);
    double t0 = now_s();
    if (inf) {
        rl_infer_row *rows = agl_malloc(sizeof *rows * (size_t)T);
        for (int t = 0; t < T; t++) rows[t] = (rl_infer_row){&kv, ids[t], t + 1 == T ? lg : NULL};
        rl_infer_step(inf, rows, T);
        free(rows);
    } else {
        for (int t = 0; t < T; t++)
            rl_model_step(p->model, &kv, ids[t], t + 1 == T ? lg : NULL, scratch);
    }
    double t1 = now_s();
    int *gen = agl_malloc(sizeof(int) * (size_t)(o->max_tokens + 1)), ng = 0;
    agl_buf streamed;
    agl_buf_init(&streamed);
    rl_bpe_stream st = {0};
    const char *finish = "length";
    while (ng < o->max_tokens) {
        int id = argmax(lg, V);
        gen[ng++] = id;
        if (rl_pretrained_is_stop(p, id)) {
            finish = "stop";
            break;
        }
        rl_bpe_stream_push(p->bpe, &st, id, 1, &streamed);
        if (ng < o->max_tokens) {
            if (inf)
                rl_infer_step(inf, &(rl_infer_row){&kv, id, lg}, 1);
            else
                rl_model_step(p->model, &kv, id, lg, scratch);
        }
    }
    rl_bpe_stream_flush(&st, &streamed);
    double t2 = now_s();
    agl_buf full, out;
    agl_buf_init(&full), agl_buf_init(&out);
    rl_bpe_decode(p->bpe, gen, ng, 1, &full);
    agl_buf_puts(&out, "{\"prompt\":");
    agl_buf_json_str(&out, text);
    agl_buf_printf(&out, ",\"prompt_tokens\":%d,\"ids\":[", T);
    for (int i = 0; i < ng; i++) agl_buf_printf(&out, i ? ",%d" : "%d", gen[i]);
    agl_buf_puts(&out, "],\"text\":");
    agl_buf_json_strn(&out, full.data ? full.data : "", full.len);
    agl_buf_printf(&out,
                   ",\"stream_ok\":%s,\"finish_reason\":\"%s\",\"prefill_s\":%.3f,"
                   "\"decode_tok_s\":%.2f,\"infer_dtype\":\"%s\",\"kernel\":\"%s\"}\n",
                   same_text(&streamed, &full) ? "true" : "false", finish, t1 - t0,
                   ng > 1 ? (ng - 1) / (t2 - t1) : 0.0, rl_infer_dtype_name(o->dtype),
                   inf ? rl_q8_kernel() : "fp32");
    fwrite(out.data, 1, out.len, stdout);
    agl_buf_free(&full), agl_buf_free(&out), agl_buf_free(&streamed);
    rl_kv_free(&kv);
    rl_infer_free(inf);
    free(lg), free(scratch), free(gen), free(ids), free(text);
    return 0;
}

int trainerd_model_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    cli_opts o = {.max_tokens = 32};
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"in", required_argument, 0, 'i'},
                                       {"tokenizer", required_argument, 0, 't'},
                                       {"out", required_argument, 0, 'o'},
                                       {"prompt", required_argument, 0, 'p'},
                                       {"user", required_argument, 0, 'u'},
                                       {"system", required_argument, 0, 's'},
                                       {"max-tokens", required_argument, 0, 'n'},
                                       {"max-seq", required_argument, 0, 'q'},
                                       {"chat-template", required_argument, 0, 'c'},
                                       {"no-special", no_argument, 0, 'x'},
                                       {"infer-dtype", required_argument, 0, 'd'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc - 1, argv + 1, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'm':
            o.model = optarg;
            break;
        case 't':
            o.tokenizer = optarg;
            break;
        case 'i':
            o.in = optarg;
            break;
        case 'o':
            o.out = optarg;
            break;
        case 'p':
            if (o.nprompt == MAX_PROMPTS) {
                fprintf(stderr, "trainerd model: at most %d prompts\n", MAX_PROMPTS);
                return 2;
            }
            o.prompt[o.nprompt++] = optarg;
            break;
        case 'u':
            o.user = optarg;
            break;
        case 's':
            o.system = optarg;
            break;
        case 'n':
            o.max_tokens = atoi(optarg);
            break;
        case 'q':
            o.max_seq = atoi(optarg);
            break;
        case 'c':
            o.chat_template = optarg;
            break;
        case 'x':
            o.no_special = 1;
            break;
        case 'd':
            if (rl_infer_dtype_parse(optarg, &o.dtype)) {
                fprintf(stderr, "trainerd model: --infer-dtype is fp32 or q8_0, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    char err[RL_ERRLEN];
    if (!strcmp(sub, "tokenize") && o.tokenizer) {
        rl_bpe *b = rl_hf_tokenizer_file(o.tokenizer, err);
        if (!b) {
            fprintf(stderr, "trainerd model: %s\n", err);
            return 1;
        }
        int rc = cmd_tokenize(b, &o);
        rl_bpe_free(b);
        return rc;
    }
    if (!o.model) {
        fprintf(stderr, "trainerd model: --model is required\n");
        return 2;
    }
    if (o.max_tokens < 1) o.max_tokens = 1;
    rl_pretrained p;
    rl_pretrained_opts po = {.max_seq = o.max_seq > 0 ? o.max_seq : 4096,
                             .chat_template = o.chat_template};
    if (rl_pretrained_load(&p, o.model, &po, err)) {
        fprintf(stderr, "trainerd model: %s\n", err);
        return 1;
    }
    int rc;
    if (!strcmp(sub, "info"))
        rc = cmd_info(&p);
    else if (!strcmp(sub, "tokenize"))
        rc = cmd_tokenize(p.bpe, &o);
    else if (!strcmp(sub, "logits"))
        rc = cmd_logits(&p, &o);
    else if (!strcmp(sub, "generate"))
        rc = cmd_generate(&p, &o);
    else {
        fprintf(stderr,
                "trainerd model: unknown subcommand '%s' (info, tokenize, logits, "
                "generate)\n",
                sub);
        rc = 2;
    }
    rl_pretrained_free(&p);
    return rc;
}
