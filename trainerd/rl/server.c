/* server — OpenAI-compatible policy server with vLLM token-id fields (see server.h). */
#include "server.h"
#include "../trainerd.h"
#include "pretrained.h"
#include "rl_int.h"

#include "agl_alloc.h"
#include "agl_buf.h"
#include "agl_util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_BODY (16L << 20)
#define MAX_N 128   /* choices per request */
#define MAX_TOP 20  /* top log-prob alternatives */
#define MAX_STOP 16 /* stop strings */
#define MAX_PROMPTS 64

/* ---------------------------------------------------------------- requests and sequences */
typedef struct job job;

typedef struct seq {
    job *j;
    int idx;           /* choice index in the response */
    const int *prompt; /* borrowed from the job */
    int np;
    rl_kv kv;
    float *scratch, *logits;
    uint64_t rng;
    int cap;   /* most tokens this sequence may produce */
    int *out;  /* generated ids */
    float *lp; /* raw log-prob of each */
    int *top_id;
    float *top_lp; /* cap x j->top */
    int n;
    agl_buf text;     /* decoded text (special tokens decode to nothing) */
    rl_bpe_stream st; /* BPE: bytes of a character not complete yet */
    int *offset;      /* text offset where each token's text starts */
    size_t keep;      /* final text length (stop strings trimmed) */
    int started, done;
    int feed;         /* infer path: the token sampled last, fed at the next step */
    int stop_str;     /* index of the stop string that ended it, or -1 */
    int stop_tok;     /* stop_token_ids entry that ended it, or -1 */
    int length;       /* 1 = ended by the token limit */
    int sent;         /* stream: tokens whose chunks are formatted */
    agl_buf pend;     /* stream: chunks formatted during the last step, not yet in j->out */
    struct seq *next; /* pending queue */
} seq;

struct job {
    int chat;
    int nprompt, *np;
    int **prompt;
    int n; /* choices per prompt */
    int max_tokens, has_max;
    float temperature, top_p;
    char *stop[MAX_STOP];
    size_t stop_len[MAX_STOP];
    int nstop;
    int *stop_ids, nstop_ids;
    int ignore_eos;
    int logprobs;     /* 1 when the response carries log-probs */
    int top;          /* alternatives per position */
    int as_ids;       /* return_tokens_as_token_ids */
    int keep_special; /* skip_special_tokens: false (BPE: special tokens' text kept) */
    int stream, stream_usage;
    uint64_t seed;
    seq *seqs; /* nprompt * n */
    int nseq, remaining;
    long version;
    /* stream: the SSE bytes not sent yet (the engine appends, the connection thread drains; both
     * under s->mu), signalled on `ready`; cancel = the client is gone */
    char id[64];
    long created;
    agl_buf out;
    size_t out_off;
    int cancel, finished;
    pthread_cond_t ready;
};

#define NREC 8192
typedef struct {
    char id[64];
    int *ids; /* prompt then response */
    float *lp;
    int np, nr;
} rec;

struct rl_server {
    rl_model *m;
    rl_infer *inf; /* --infer-dtype q8_0: the batched quantised decoder, else NULL (fp32) */
    const rl_tok *tok;
    char name[128];
    char url[300];
    int port, max_batch;
    uint64_t seed;
    struct MHD_Daemon *d;
    pthread_t engine;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_rwlock_t weights;
    seq *head, *tail; /* pending sequences */
    int stopping;
    long version;
    atomic_long requests, tokens, counter;
    FILE *log;
    pthread_mutex_t log_mu;
    rec *recs; /* ring of the last NREC responses' choice 0 */
    long nrec;
    pthread_mutex_t rec_mu;
};

static void remember(rl_server *s, const job *j, const char *id)
{
    const seq *q = &j->seqs[0];
    pthread_mutex_lock(&s->rec_mu);
    rec *r = &s->recs[s->nrec++ % NREC];
    free(r->ids);
    free(r->lp);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->np = q->np;
    r->nr = q->n;
    r->ids = agl_malloc(sizeof(int) * (size_t)(q->np + q->n));
    memcpy(r->ids, q->prompt, sizeof(int) * (size_t)q->np);
    memcpy(r->ids + q->np, q->out, sizeof(int) * (size_t)q->n);
    r->lp = agl_malloc(sizeof(float) * (size_t)(q->n + 1));
    memcpy(r->lp, q->lp, sizeof(float) * (size_t)q->n);
    pthread_mutex_unlock(&s->rec_mu);
}

int rl_server_lookup(rl_server *s, const char *id, const int *prompt, int np, const int *resp,
                     int nr, float *lp)
{
    int rc = -1;
    pthread_mutex_lock(&s->rec_mu);
    long lo = s->nrec > NREC ? s->nrec - NREC : 0;
    for (long i = s->nrec - 1; id && i >= lo; i--) {
        rec *r = &s->recs[i % NREC];
        if (strcmp(r->id, id)) continue;
        rc = r->np == np && r->nr == nr && !memcmp(r->ids, prompt, sizeof(int) * (size_t)np) &&
             !memcmp(r->ids + np, resp, sizeof(int) * (size_t)nr);
        if (rc) memcpy(lp, r->lp, sizeof(float) * (size_t)nr);
        break;
    }
    pthread_mutex_unlock(&s->rec_mu);
    return rc;
}

/* ---------------------------------------------------------------- decoding */
static double logsumexp(const float *x, int n)
{
    int at = 0; /* n >= 1 */
    for (int i = 1; i < n; i++)
        if (x[i] > x[at]) at = i;
    double s = 1.0, mx = x[at]; /* the max term */
    for (int i = 0; i < n; i++)
        if (i != at) s += exp((double)x[i] - mx);
    return mx + log(s);
}

static void seq_release(seq *q)
{
    rl_kv_free(&q->kv);
    free(q->scratch);
    free(q->logits);
    q->scratch = q->logits = NULL;
}

static void stream_emit(const rl_server *s, seq *q);
static void stream_head(const rl_server *s, job *j);

/* Samples the next token of q from q->logits and checks the stop conditions (sets q->done).
 * Runs on an OpenMP thread; touches only q. */
static int seq_sample(const rl_server *s, seq *q)
{
    const rl_model *m = s->m;
    const job *j = q->j;
    int V = m->cfg.vocab;
    float *lg = q->logits;
    /* only the ids that can be sampled (pad/bos of char tokenizers and ids past the tokenizer
     * never are): the log-probs are those of the distribution sampled from, which the trainer
     * recomputes over the same support (rl_sample_support) */
    int lo, hi;
    rl_sample_support(s->tok, V, &lo, &hi);
    for (int i = 0; i < V; i++)
        if (i < lo || i >= hi) lg[i] = -INFINITY;
    double lse = logsumexp(lg, V);
    if (j->top > 0) { /* top alternatives among the ids that can be sampled, raw log-probs */
        int *ti = q->top_id + (size_t)q->n * j->top, k = 0;
        float *tl = q->top_lp + (size_t)q->n * j->top;
        for (int i = s->tok->pre ? 0 : RL_TOK_EOS; i < s->tok->vocab; i++) { /* sorted top-k */
            if (k == j->top && lg[i] <= lg[ti[k - 1]]) continue;
            int p = k < j->top ? k++ : k - 1;
            while (p > 0 && lg[ti[p - 1]] < lg[i]) ti[p] = ti[p - 1], p--;
            ti[p] = i;
        }
        for (int a = 0; a < k; a++) tl[a] = (float)(lg[ti[a]] - lse);
        for (int a = k; a < j->top; a++) ti[a] = -1;
    }
    float tlp;
    int id = rl_sample(lg, V, s->tok, j->temperature, j->top_p, &q->rng, &tlp);
    /* rl_sample masks other ids but never the one it picks: lg[id] is still the raw logit */
    q->out[q->n] = id;
    q->lp[q->n] = (float)(lg[id] - lse);
    q->offset[q->n] = (int)q->text.len;
    q->n++;
    size_t before = q->text.len;
    if (s->tok->pre) { /* the text of exactly the sampled ids; whole characters only */
        rl_bpe_stream_push(s->tok->pre->bpe, &q->st, id, !j->keep_special, &q->text);
    } else {
        char piece[8];
        int n = rl_tok_decode(s->tok, id, piece, sizeof piece);
        if (n > 0) agl_buf_put(&q->text, piece, (size_t)n);
    }
    int pl = (int)(q->text.len - before);
    q->keep = q->text.len;
    if (rl_tok_is_stop(s->tok, id) && !j->ignore_eos) q->done = 1;
    for (int k = 0; !q->done && k < j->nstop_ids; k++)
        if (id == j->stop_ids[k]) q->done = 1, q->stop_tok = id;
    for (int k = 0; !q->done && pl > 0 && k < j->nstop; k++) {
        /* a stop string that ends inside the new piece */
        size_t L = j->stop_len[k];
        size_t from = before + 1 > L ? before + 1 - L : 0;
        for (size_t p = from; p + L <= q->text.len; p++)
            if (!memcmp(q->text.data + p, j->stop[k], L)) {
                q->done = 1, q->stop_str = k, q->keep = p;
                break;
            }
    }
    if (!q->done && (q->n >= q->cap || q->kv.len >= q->kv.cap)) q->done = 1, q->length = 1;
    if (q->done && q->st.n) { /* a character cut off by the end: U+FFFD, as the one-shot decode */
        rl_bpe_stream_flush(&q->st, &q->text);
        if (q->stop_str < 0) q->keep = q->text.len;
    }
    return id;
}

/* fp32: advances one sequence by one token: prefill on the first call, then sample and feed the
 * token with rl_model_step. Runs on an OpenMP thread; touches only q and reads the model. */
static void seq_advance(const rl_server *s, seq *q)
{
    const rl_model *m = s->m;
    if (!q->started) {
        rl_kv_init_cap(&q->kv, &m->cfg, q->np + q->cap - 1); /* the last token is not fed */
        q->scratch = agl_malloc(sizeof(float) * rl_step_scratch_size(&m->cfg));
        q->logits = agl_malloc(sizeof(float) * m->cfg.vocab);
        for (int t = 0; t < q->np; t++)
            rl_model_step(m, &q->kv, q->prompt[t], t == q->np - 1 ? q->logits : NULL, q->scratch);
        q->started = 1;
    }
    int id = seq_sample(s, q);
    if (!q->done) rl_model_step(m, &q->kv, id, q->logits, q->scratch);
    if (q->done) seq_release(q);
    if (q->j->stream) stream_emit(s, q);
}

/* q8_0: one step of the batched decoder. Every active sequence's pending tokens (its whole prompt
 * on its first step, then the token it sampled last) go through one rl_infer_step, which reads
 * each weight once for all of them; then each sequence samples, in parallel. */
static void step_infer(rl_server *s, seq **act, int na)
{
    const rl_model *m = s->m;
    int nr = 0;
    for (int i = 0; i < na; i++) nr += act[i]->started ? 1 : act[i]->np;
    rl_infer_row *rows = agl_malloc(sizeof *rows * (size_t)nr);
    nr = 0;
    for (int i = 0; i < na; i++) {
        seq *q = act[i];
        if (q->started) {
            rows[nr++] = (rl_infer_row){&q->kv, q->feed, q->logits};
            continue;
        }
        rl_kv_init_cap(&q->kv, &m->cfg, q->np + q->cap - 1); /* the last token is not fed */
        q->logits = agl_malloc(sizeof(float) * m->cfg.vocab);
        for (int t = 0; t < q->np; t++)
            rows[nr++] = (rl_infer_row){&q->kv, q->prompt[t], t == q->np - 1 ? q->logits : NULL};
        q->started = 1;
    }
    rl_infer_step(s->inf, rows, nr);
    free(rows);
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < na; i++) {
        seq *q = act[i];
        q->feed = seq_sample(s, q);
        if (q->done) seq_release(q);
        if (q->j->stream) stream_emit(s, q);
    }
}

static void *engine_main(void *arg)
{
    rl_server *s = arg;
    seq **act = agl_malloc(sizeof *act * (size_t)s->max_batch);
    int na = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (na < s->max_batch && s->head) {
            act[na++] = s->head;
            s->head = s->head->next;
            if (!s->head) s->tail = NULL;
        }
        if (na == 0) {
            if (s->stopping) break;
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        pthread_rwlock_rdlock(&s->weights);
        if (s->inf) {
            step_infer(s, act, na);
        } else {
#pragma omp parallel for schedule(dynamic, 1)
            for (int i = 0; i < na; i++) seq_advance(s, act[i]);
        }
        pthread_rwlock_unlock(&s->weights);
        pthread_mutex_lock(&s->mu);
        int k = 0, wake = 0;
        for (int i = 0; i < na; i++) {
            seq *q = act[i];
            job *j = q->j;
            if (j->stream) { /* hand this step's chunks to the connection thread */
                if (q->pend.len) agl_buf_put(&j->out, q->pend.data, q->pend.len);
                agl_buf_reset(&q->pend);
                pthread_cond_broadcast(&j->ready);
            }
            if (!q->done && !j->cancel) {
                act[k++] = q;
                continue;
            }
            if (!q->done) seq_release(q); /* cancelled: the client went away */
            atomic_fetch_add(&s->tokens, q->n);
            if (--j->remaining == 0) wake = 1;
        }
        na = k;
        if (wake) pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
    free(act);
    return NULL;
}

/* Queues the job's sequences (the engine starts on them at its next step). */
static void job_queue(rl_server *s, job *j)
{
    int total = j->nprompt * j->n;
    j->seqs = agl_calloc((size_t)total, sizeof(seq));
    j->nseq = j->remaining = total;
    uint64_t base = j->seed;
    for (int p = 0; p < j->nprompt; p++)
        for (int c = 0; c < j->n; c++) {
            seq *q = &j->seqs[p * j->n + c];
            q->j = j;
            q->idx = p * j->n + c;
            q->prompt = j->prompt[p];
            q->np = j->np[p];
            q->rng = rl_mix64(base ^ rl_mix64((uint64_t)q->idx + 1));
            int room = s->m->cfg.max_seq - q->np + 1;
            q->cap = j->max_tokens < room ? j->max_tokens : room;
            if (q->cap < 1) q->cap = 1;
            q->out = agl_malloc(sizeof(int) * (size_t)q->cap);
            q->lp = agl_malloc(sizeof(float) * (size_t)q->cap);
            q->offset = agl_malloc(sizeof(int) * (size_t)(q->cap + 1));
            if (j->top > 0) {
                q->top_id = agl_malloc(sizeof(int) * (size_t)q->cap * j->top);
                q->top_lp = agl_malloc(sizeof(float) * (size_t)q->cap * j->top);
            }
            agl_buf_init(&q->text);
            q->stop_str = q->stop_tok = -1;
        }
    if (j->stream) stream_head(s, j); /* the engine does not see the job yet */
    pthread_mutex_lock(&s->mu);
    j->version = s->version;
    for (int i = 0; i < total; i++) {
        seq *q = &j->seqs[i];
        q->next = NULL;
        if (s->tail)
            s->tail->next = q;
        else
            s->head = q;
        s->tail = q;
    }
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
}

/* Queues the job's sequences and waits until all are done. */
static void run_job(rl_server *s, job *j)
{
    job_queue(s, j);
    pthread_mutex_lock(&s->mu);
    while (j->remaining > 0) pthread_cond_wait(&s->done, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static void job_free(job *j)
{
    for (int i = 0; i < j->nseq; i++) {
        seq *q = &j->seqs[i];
        free(q->out), free(q->lp), free(q->offset), free(q->top_id), free(q->top_lp);
        agl_buf_free(&q->text);
        agl_buf_free(&q->pend);
    }
    agl_buf_free(&j->out);
    free(j->seqs);
    for (int p = 0; p < j->nprompt; p++) free(j->prompt[p]);
    free(j->prompt);
    free(j->np);
    for (int k = 0; k < j->nstop; k++) free(j->stop[k]);
    free(j->stop_ids);
}

/* ---------------------------------------------------------------- request parsing */
typedef struct {
    int status;
    char msg[300];
    const char *param;
} req_err;

static int fail(req_err *e, const char *param, const char *fmt, const char *arg)
{
    e->status = 400;
    e->param = param;
    snprintf(e->msg, sizeof e->msg, fmt, arg ? arg : "");
    return -1;
}

/* Appends a prompt (ids) to the job. */
static void add_prompt(job *j, int *ids, int n)
{
    j->prompt = agl_realloc(j->prompt, sizeof(int *) * (size_t)(j->nprompt + 1));
    j->np = agl_realloc(j->np, sizeof(int) * (size_t)(j->nprompt + 1));
    j->prompt[j->nprompt] = ids;
    j->np[j->nprompt++] = n;
}

static int encode_text(const rl_server *s, const char *text, size_t len, job *j, req_err *e,
                       const char *param)
{
    if (s->tok->pre) { /* special tokens in the text are parsed, as vLLM's tokenizer does */
        const rl_pretrained *p = s->tok->pre;
        int n, *ids = rl_bpe_encode(p->bpe, text, len, 1, &n);
        if (p->add_bos && p->bos >= 0 && !(n > 0 && ids[0] == p->bos)) {
            ids = agl_realloc(ids, sizeof(int) * (size_t)(n + 1));
            memmove(ids + 1, ids, sizeof(int) * (size_t)n);
            ids[0] = p->bos;
            n++;
        }
        add_prompt(j, ids, n);
        return 0;
    }
    int *ids = agl_malloc(sizeof(int) * (len + 1));
    ids[0] = RL_TOK_BOS;
    int n = rl_tok_encode(s->tok, text, len, ids + 1, (int)len);
    if (n < 0) {
        free(ids);
        return fail(e, param, "the prompt has characters outside the model's tokenizer (%.80s)",
                    s->tok->spec);
    }
    add_prompt(j, ids, n + 1);
    return 0;
}

static int id_list(const rl_server *s, json_t *arr, job *j, req_err *e)
{
    size_t n = json_array_size(arr);
    int *ids = agl_malloc(sizeof(int) * (n + 1));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= s->m->cfg.vocab) {
            free(ids);
            return fail(e, "prompt", "token ids must be integers in [0, vocab_size)%s", NULL);
        }
        ids[i] = (int)json_integer_value(v);
    }
    add_prompt(j, ids, (int)n);
    return 0;
}

/* Text of a chat message content: a string, or a list of {"type": "text", "text": ...} parts. */
static int content_text(json_t *c, agl_buf *b)
{
    if (json_is_string(c)) {
        agl_buf_put(b, json_string_value(c), json_string_length(c));
        return 0;
    }
    if (json_is_null(c)) return 0;
    if (!json_is_array(c)) return -1;
    size_t i;
    json_t *part;
    json_array_foreach(c, i, part)
    {
        json_t *t = json_object_get(part, "text");
        if (!json_is_string(t)) return -1;
        agl_buf_put(b, json_string_value(t), json_string_length(t));
    }
    return 0;
}

/* A real checkpoint's chat: the messages rendered with its chat template (+ the assistant
 * header unless add_generation_prompt is false), then tokenized with special tokens parsed. */
static int chat_prompt(const rl_server *s, json_t *body, json_t *msgs, job *j, req_err *e)
{
    const rl_pretrained *p = s->tok->pre;
    if (p->chat.kind == RL_CHAT_NONE)
        return fail(e, "messages",
                    "the model has no chat template it recognises (start the server with "
                    "--chat-template chatml|llama3, or use /v1/completions)%s",
                    NULL);
    size_t n = json_array_size(msgs), i;
    rl_chat_msg *m = agl_calloc(n, sizeof *m);
    agl_buf *txt = agl_calloc(n, sizeof *txt);
    json_t *msg;
    int rc = 0;
    json_array_foreach(msgs, i, msg)
    {
        agl_buf_init(&txt[i]);
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (!role) {
            rc = fail(e, "messages", "every message needs a role%s", NULL);
            break;
        }
        if (content_text(json_object_get(msg, "content"), &txt[i])) {
            rc = fail(e, "messages", "message content must be text%s", NULL);
            break;
        }
        agl_buf_putc(&txt[i], 0); /* NUL-terminated even when empty */
        m[i].role = role;
        m[i].content = txt[i].data;
    }
    if (rc == 0) {
        json_t *agp = json_object_get(body, "add_generation_prompt");
        char *r = rl_chat_render(&p->chat, m, (int)n, !json_is_false(agp));
        rc = encode_text(s, r, strlen(r), j, e, "messages");
        free(r);
    }
    for (size_t k = 0; k < n; k++) agl_buf_free(&txt[k]);
    free(txt);
    free(m);
    return rc;
}

static int num(json_t *body, const char *key, double dflt, double lo, double hi, double *out,
               req_err *e)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v)) return fail(e, key, "%s must be a number", key);
    *out = json_number_value(v);
    if (*out < lo || *out > hi) return fail(e, key, "%s is out of range", key);
    return 0;
}

static int parse_job(rl_server *s, json_t *body, int chat, job *j, req_err *e)
{
    memset(j, 0, sizeof *j);
    j->chat = chat;
    if (!json_is_object(body)) return fail(e, NULL, "the body must be a JSON object%s", NULL);
    if (chat) {
        json_t *msgs = json_object_get(body, "messages");
        if (!json_is_array(msgs) || !json_array_size(msgs))
            return fail(e, "messages", "messages must be a non-empty list%s", NULL);
        if (s->tok->pre) {
            if (chat_prompt(s, body, msgs, j, e)) return -1;
        } else {
            agl_buf b;
            agl_buf_init(&b);
            size_t i;
            json_t *msg;
            json_array_foreach(msgs, i, msg)
            {
                if (content_text(json_object_get(msg, "content"), &b)) {
                    agl_buf_free(&b);
                    return fail(e, "messages", "message content must be text%s", NULL);
                }
            }
            int rc = encode_text(s, b.data ? b.data : "", b.len, j, e, "messages");
            agl_buf_free(&b);
            if (rc) return rc;
        }
    } else {
        json_t *p = json_object_get(body, "prompt");
        if (json_is_string(p)) {
            if (encode_text(s, json_string_value(p), json_string_length(p), j, e, "prompt"))
                return -1;
        } else if (json_is_array(p) && json_array_size(p) > 0) {
            json_t *first = json_array_get(p, 0);
            if (json_is_integer(first)) {
                if (id_list(s, p, j, e)) return -1;
            } else {
                if (json_array_size(p) > MAX_PROMPTS)
                    return fail(e, "prompt", "at most 64 prompts per request%s", NULL);
                size_t i;
                json_t *x;
                json_array_foreach(p, i, x)
                {
                    if (json_is_string(x)) {
                        if (encode_text(s, json_string_value(x), json_string_length(x), j, e,
                                        "prompt"))
                            return -1;
                    } else if (json_is_array(x)) {
                        if (id_list(s, x, j, e)) return -1;
                    } else {
                        return fail(e, "prompt", "prompt must be text or token ids%s", NULL);
                    }
                }
            }
        } else {
            return fail(e, "prompt", "prompt must be a string, a list of strings or token ids%s",
                        NULL);
        }
    }
    for (int p = 0; p < j->nprompt; p++) {
        if (j->np[p] < 1) return fail(e, "prompt", "the prompt is empty%s", NULL);
        if (j->np[p] > s->m->cfg.max_seq) {
            char n[32];
            snprintf(n, sizeof n, "%d", s->m->cfg.max_seq);
            return fail(e, "prompt", "the prompt is longer than the model's context (%s tokens)",
                        n);
        }
    }
    double v;
    if (num(body, "n", 1, 1, MAX_N, &v, e)) return -1;
    j->n = (int)v;
    json_t *mt = json_object_get(body, "max_tokens");
    if ((!mt || json_is_null(mt)) && chat) mt = json_object_get(body, "max_completion_tokens");
    if (mt && !json_is_null(mt)) {
        if (!json_is_integer(mt) || json_integer_value(mt) < 1)
            return fail(e, "max_tokens", "max_tokens must be a positive integer%s", NULL);
        j->max_tokens = json_integer_value(mt) > 1 << 20 ? 1 << 20 : (int)json_integer_value(mt);
    } else {
        j->max_tokens = chat ? s->m->cfg.max_seq : 16; /* vLLM: 16 for completions */
    }
    if (num(body, "temperature", 1.0, 0, 100, &v, e)) return -1;
    j->temperature = (float)v;
    if (num(body, "top_p", 1.0, 0, 1, &v, e)) return -1;
    j->top_p = v <= 0 ? 1e-6f : (float)v;
    json_t *sd = json_object_get(body, "seed");
    if (sd && !json_is_null(sd)) {
        if (!json_is_integer(sd)) return fail(e, "seed", "seed must be an integer%s", NULL);
        j->seed = rl_mix64((uint64_t)json_integer_value(sd));
    } else {
        j->seed = rl_mix64(s->seed ^ rl_mix64((uint64_t)atomic_fetch_add(&s->counter, 1) + 7) ^
                           (uint64_t)time(NULL));
    }
    json_t *st = json_object_get(body, "stop");
    if (json_is_string(st)) {
        if (json_string_length(st)) {
            j->stop_len[0] = json_string_length(st);
            j->stop[j->nstop++] = agl_strdup(json_string_value(st));
        }
    } else if (json_is_array(st)) {
        size_t i;
        json_t *x;
        json_array_foreach(st, i, x)
        {
            if (!json_is_string(x)) return fail(e, "stop", "stop must be strings%s", NULL);
            if (j->nstop == MAX_STOP) return fail(e, "stop", "at most 16 stop strings%s", NULL);
            if (!json_string_length(x)) continue;
            j->stop_len[j->nstop] = json_string_length(x);
            j->stop[j->nstop++] = agl_strdup(json_string_value(x));
        }
    } else if (st && !json_is_null(st)) {
        return fail(e, "stop", "stop must be a string or a list of strings%s", NULL);
    }
    json_t *sti = json_object_get(body, "stop_token_ids");
    if (json_is_array(sti)) {
        j->stop_ids = agl_malloc(sizeof(int) * (json_array_size(sti) + 1));
        size_t i;
        json_t *x;
        json_array_foreach(sti, i, x)
        {
            if (!json_is_integer(x)) return fail(e, "stop_token_ids", "ids must be integers%s", 0);
            j->stop_ids[j->nstop_ids++] = (int)json_integer_value(x);
        }
    }
    j->ignore_eos = json_is_true(json_object_get(body, "ignore_eos"));
    j->as_ids = json_is_true(json_object_get(body, "return_tokens_as_token_ids"));
    j->keep_special = json_is_false(json_object_get(body, "skip_special_tokens"));
    json_t *lp = json_object_get(body, "logprobs");
    if (chat) {
        j->logprobs = json_is_true(lp);
        json_t *tl = json_object_get(body, "top_logprobs");
        if (j->logprobs && json_is_integer(tl)) j->top = (int)json_integer_value(tl);
    } else if (json_is_integer(lp)) {
        j->logprobs = 1;
        j->top = (int)json_integer_value(lp);
        if (j->top < 0) j->top = MAX_TOP; /* -1 = all in vLLM; capped here */
    } else if (json_is_true(lp)) {
        j->logprobs = 1; /* what runnerd's --logprobs sends to chat and completions alike */
    }
    if (j->top < 0 || j->top > MAX_TOP)
        return fail(e, "logprobs", "at most 20 top log-probs%s", NULL);
    j->stream = json_is_true(json_object_get(body, "stream"));
    j->stream_usage =
        json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
    return 0;
}

/* ---------------------------------------------------------------- responses */
static json_t *ids_json(const int *ids, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* The text of token id alone (a BPE token that is part of a character: U+FFFD, like a lossy
 * decode; special tokens as their content) into out, reset first. */
static void token_str(const rl_server *s, const job *j, int id, agl_buf *out)
{
    agl_buf_reset(out);
    agl_buf_putc(out, 0); /* data is non-NULL and NUL-terminated from here on */
    out->len = 0;
    if (j->as_ids) {
        agl_buf_printf(out, "token_id:%d", id);
        return;
    }
    if (s->tok->pre) {
        rl_bpe_decode(s->tok->pre->bpe, &id, 1, 0, out);
        return;
    }
    static const char *const special[] = {"<pad>", "<bos>", "<eos>"};
    if (id >= 0 && id < 3) {
        agl_buf_puts(out, special[id]);
        return;
    }
    char t[8];
    int n = rl_tok_decode(s->tok, id, t, sizeof t);
    if (n > 0) agl_buf_put(out, t, (size_t)n);
}

/* OpenAI's "bytes" of a token: its own UTF-8 bytes (BPE: the raw bytes, a partial character
 * included). */
static json_t *token_bytes_json(const rl_server *s, const job *j, int id, const agl_buf *t)
{
    json_t *a = json_array();
    size_t n = t->len;
    const unsigned char *p = (const unsigned char *)t->data;
    if (s->tok->pre && !j->as_ids) {
        const char *raw = rl_bpe_token_bytes(s->tok->pre->bpe, id, &n);
        p = (const unsigned char *)raw;
        if (!raw) n = 0;
    }
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(p[i]));
    return a;
}

/* Token k's text clipped to the kept (stop-trimmed) text. */
static json_t *piece_json(const seq *q, int k)
{
    size_t a = (size_t)q->offset[k], b = k + 1 < q->n ? (size_t)q->offset[k + 1] : q->text.len;
    if (b > q->keep) b = q->keep;
    if (a > b) a = b;
    return json_stringn(q->text.data ? q->text.data + a : "", b - a);
}

static json_t *top_json(const rl_server *s, const seq *q, int k, int chat)
{
    const job *j = q->j;
    agl_buf t;
    agl_buf_init(&t);
    if (chat) {
        json_t *arr = json_array();
        for (int a = 0; a < j->top; a++) {
            int id = q->top_id[(size_t)k * j->top + a];
            if (id < 0) break;
            token_str(s, j, id, &t);
            json_array_append_new(arr,
                                  json_pack("{s:s%, s:f, s:o}", "token", t.data, t.len, "logprob",
                                            (double)q->top_lp[(size_t)k * j->top + a], "bytes",
                                            token_bytes_json(s, j, id, &t)));
        }
        agl_buf_free(&t);
        return arr;
    }
    json_t *obj = json_object();
    for (int a = 0; a < j->top; a++) {
        int id = q->top_id[(size_t)k * j->top + a];
        if (id < 0) break;
        token_str(s, j, id, &t);
        json_object_setn_new(obj, t.data, t.len, json_real(q->top_lp[(size_t)k * j->top + a]));
    }
    agl_buf_free(&t);
    return obj;
}

/* Log-probs of tokens [k0, k1) in the chat ("content") or the legacy completions shape. */
static json_t *logprobs_json(const rl_server *s, const seq *q, int k0, int k1)
{
    const job *j = q->j;
    agl_buf t;
    agl_buf_init(&t);
    if (j->chat) {
        json_t *content = json_array();
        for (int k = k0; k < k1; k++) {
            token_str(s, j, q->out[k], &t);
            json_array_append_new(
                content, json_pack("{s:s%, s:f, s:o, s:o}", "token", t.data, t.len, "logprob",
                                   (double)q->lp[k], "bytes", token_bytes_json(s, j, q->out[k], &t),
                                   "top_logprobs", j->top ? top_json(s, q, k, 1) : json_array()));
        }
        agl_buf_free(&t);
        return json_pack("{s:o}", "content", content);
    }
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (int k = k0; k < k1; k++) {
        token_str(s, j, q->out[k], &t);
        json_array_append_new(toks, json_stringn(t.data, t.len));
        json_array_append_new(lps, json_real(q->lp[k]));
        json_array_append_new(tops, j->top ? top_json(s, q, k, 0) : json_null());
        json_array_append_new(offs, json_integer(q->offset[k]));
    }
    agl_buf_free(&t);
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs",
                     tops, "text_offset", offs);
}

static const char *finish_reason(const seq *q)
{
    return q->length ? "length" : "stop";
}

static json_t *stop_reason(const seq *q)
{
    if (q->stop_str >= 0) return json_string(q->j->stop[q->stop_str]);
    if (q->stop_tok >= 0) return json_integer(q->stop_tok);
    return json_null();
}

static json_t *usage_json(const job *j)
{
    long pt = 0, ct = 0;
    for (int p = 0; p < j->nprompt; p++) pt += (long)j->np[p] * j->n;
    for (int i = 0; i < j->nseq; i++) ct += j->seqs[i].n;
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)pt, "completion_tokens",
                     (json_int_t)ct, "total_tokens", (json_int_t)(pt + ct));
}

static json_t *response_json(const rl_server *s, const job *j, const char *id, long created)
{
    char fp[48];
    snprintf(fp, sizeof fp, "policy-v%ld", j->version);
    json_t *choices = json_array();
    for (int i = 0; i < j->nseq; i++) {
        const seq *q = &j->seqs[i];
        json_t *text = json_stringn(q->text.data ? q->text.data : "", q->keep);
        json_t *c =
            json_pack("{s:i, s:s, s:o, s:o}", "index", q->idx, "finish_reason", finish_reason(q),
                      "stop_reason", stop_reason(q), "token_ids", ids_json(q->out, q->n));
        if (j->chat)
            json_object_set_new(c, "message",
                                json_pack("{s:s, s:o, s:o}", "role", "assistant", "content", text,
                                          "tool_calls", json_array()));
        else
            json_object_set_new(c, "text", text);
        json_object_set_new(c, "logprobs",
                            j->logprobs ? logprobs_json(s, q, 0, q->n) : json_null());
        if (!j->chat) json_object_set_new(c, "prompt_token_ids", ids_json(q->prompt, q->np));
        json_array_append_new(choices, c);
    }
    json_t *r = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:o}", "id", id, "object",
                          j->chat ? "chat.completion" : "text_completion", "created",
                          (json_int_t)created, "model", s->name, "system_fingerprint", fp,
                          "choices", choices, "usage", usage_json(j));
    if (j->chat) json_object_set_new(r, "prompt_token_ids", ids_json(j->prompt[0], j->np[0]));
    return r;
}

static void sse(agl_buf *b, json_t *ev)
{
    char *t = json_dumps(ev, JSON_COMPACT);
    agl_buf_puts(b, "data: ");
    agl_buf_puts(b, t);
    agl_buf_puts(b, "\n\n");
    free(t);
    json_decref(ev);
}

/* ---------------------------------------------------------------- streaming (SSE)
 * vLLM's chunk shapes: token_ids per chunk, prompt_token_ids in the first chunk (chat: the role
 * chunk of choice 0; completions: each choice's first token). The chunks of a sequence are
 * formatted by the engine as it samples (stream_emit, on the sequence's OpenMP thread) and
 * drained by the connection thread (stream_read), so each token goes out as it is produced. */
static json_t *stream_base(const rl_server *s, const job *j)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", j->id, "object",
                     j->chat ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)j->created, "model", s->name);
}

/* Chat: every choice's role chunk, before any token. */
static void stream_head(const rl_server *s, job *j)
{
    for (int i = 0; j->chat && i < j->nseq; i++) {
        json_t *ev = stream_base(s, j);
        json_object_set_new(ev, "choices",
                            json_pack("[{s:i, s:{s:s, s:s}, s:n, s:n}]", "index", j->seqs[i].idx,
                                      "delta", "role", "assistant", "content", "", "logprobs",
                                      "finish_reason"));
        if (i == 0) json_object_set_new(ev, "prompt_token_ids", ids_json(j->prompt[0], j->np[0]));
        sse(&j->out, ev);
    }
}

/* The chunk of token k (the last one, once the sequence is done, carries the finish reason). */
static void stream_chunk(const rl_server *s, const seq *q, int k, agl_buf *b)
{
    const job *j = q->j;
    json_t *ev = stream_base(s, j),
           *ch = json_pack("{s:i, s:o}", "index", q->idx, "token_ids", ids_json(q->out + k, 1));
    if (j->chat)
        json_object_set_new(ch, "delta", json_pack("{s:o}", "content", piece_json(q, k)));
    else
        json_object_set_new(ch, "text", piece_json(q, k));
    json_object_set_new(ch, "logprobs", j->logprobs ? logprobs_json(s, q, k, k + 1) : json_null());
    int last = q->done && k == q->n - 1;
    json_object_set_new(ch, "finish_reason", last ? json_string(finish_reason(q)) : json_null());
    if (last) json_object_set_new(ch, "stop_reason", stop_reason(q));
    if (!j->chat && k == 0) json_object_set_new(ch, "prompt_token_ids", ids_json(q->prompt, q->np));
    json_object_set_new(ev, "choices", json_pack("[o]", ch));
    sse(b, ev);
}

/* Formats into q->pend the chunks of the tokens that are final: all once the sequence is done;
 * before, those whose text ends before the longest tail of the text that begins a stop string
 * (a stop string completed later trims the text from its start, so those pieces may shrink). */
static void stream_emit(const rl_server *s, seq *q)
{
    const job *j = q->j;
    int upto = q->n;
    if (!q->done) {
        size_t len = q->text.len, h = len;
        for (int k = 0; k < j->nstop; k++) {
            size_t L = j->stop_len[k];
            for (size_t p = len + 1 > L ? len + 1 - L : 0; p < h; p++)
                if (!memcmp(q->text.data + p, j->stop[k], len - p)) {
                    h = p;
                    break;
                }
        }
        while (upto > q->sent &&
               (upto < q->n ? (size_t)q->offset[upto] : q->text.len) > h) /* end of upto - 1 */
            upto--;
    }
    for (int k = q->sent; k < upto; k++) stream_chunk(s, q, k, &q->pend);
    q->sent = upto;
}

/* After the last token: the usage chunk (stream_options.include_usage) and [DONE]. */
static void stream_tail(const rl_server *s, const job *j, agl_buf *b)
{
    if (j->stream_usage) {
        json_t *ev = stream_base(s, j);
        json_object_set_new(ev, "choices", json_array());
        json_object_set_new(ev, "usage", usage_json(j));
        sse(b, ev);
    }
    agl_buf_puts(b, "data: [DONE]\n\n");
}

static void log_job(rl_server *s, const job *j, const char *id, long created)
{
    if (!s->log) return;
    json_t *ch = json_array();
    for (int i = 0; i < j->nseq; i++) {
        const seq *q = &j->seqs[i];
        json_t *lps = json_array();
        for (int k = 0; k < q->n; k++) json_array_append_new(lps, json_real(q->lp[k]));
        json_array_append_new(ch, json_pack("{s:i, s:o, s:o, s:o, s:s}", "index", q->idx,
                                            "prompt_token_ids", ids_json(q->prompt, q->np),
                                            "token_ids", ids_json(q->out, q->n), "logprobs", lps,
                                            "finish_reason", finish_reason(q)));
    }
    json_t *line =
        json_pack("{s:s, s:I, s:s, s:I, s:f, s:f, s:o}", "id", id, "created", (json_int_t)created,
                  "endpoint", j->chat ? "chat" : "completions", "version", (json_int_t)j->version,
                  "temperature", (double)j->temperature, "top_p", (double)j->top_p, "choices", ch);
    char *t = json_dumps(line, JSON_COMPACT);
    pthread_mutex_lock(&s->log_mu);
    fprintf(s->log, "%s\n", t);
    fflush(s->log);
    pthread_mutex_unlock(&s->log_mu);
    free(t);
    json_decref(line);
}

/* ---------------------------------------------------------------- HTTP */
typedef struct {
    agl_buf body;
    int too_large;
} conn_state;

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *data, size_t len,
                             const char *ctype)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *conn, unsigned status, json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return reply(conn, status, t, strlen(t), "application/json");
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *msg,
                                   const char *type, const char *param)
{
    return reply_json(conn, status,
                      json_pack("{s:{s:s, s:s, s:o, s:i}}", "error", "message", msg, "type", type,
                                "param", param ? json_string(param) : json_null(), "code",
                                (int)status));
}

/* A streamed response: the job lives until MHD frees the response (the end of the stream, or the
 * client gone, or the server stopping). */
typedef struct {
    rl_server *s;
    job *j;
    struct MHD_Connection *conn;
} stream_ctx;

/* Whether the client closed its side (checked while no token is ready; a write to a closed
 * connection fails anyway, this only notices it sooner). */
static int client_gone(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd pf = {.fd = ci->connect_fd, .events = POLLIN};
    if (poll(&pf, 1, 0) <= 0) return 0;
    if (pf.revents & (POLLHUP | POLLERR | POLLNVAL)) return 1;
    char c;
    ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* MHD's content reader, on the connection's own thread (MHD_USE_THREAD_PER_CONNECTION, so it may
 * block): the next bytes of j->out, waiting for the engine to append them. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_ctx *c = cls;
    rl_server *s = c->s;
    job *j = c->j;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (j->out_off < j->out.len) {
            size_t n = j->out.len - j->out_off;
            if (n > max) n = max;
            memcpy(buf, j->out.data + j->out_off, n);
            j->out_off += n;
            if (j->out_off == j->out.len) agl_buf_reset(&j->out), j->out_off = 0;
            pthread_mutex_unlock(&s->mu);
            return (ssize_t)n;
        }
        if (j->finished) {
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (j->remaining == 0) { /* every chunk sent: record the response, then [DONE] */
            pthread_mutex_unlock(&s->mu);
            atomic_fetch_add(&s->requests, 1);
            log_job(s, j, j->id, j->created);
            remember(s, j, j->id);
            agl_buf tail;
            agl_buf_init(&tail);
            stream_tail(s, j, &tail);
            pthread_mutex_lock(&s->mu);
            agl_buf_put(&j->out, tail.data, tail.len);
            agl_buf_free(&tail);
            j->finished = 1;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        if (pthread_cond_timedwait(&j->ready, &s->mu, &ts) == ETIMEDOUT &&
            j->out_off == j->out.len && j->remaining > 0 && client_gone(c->conn)) {
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR; /* stream_free cancels the job */
        }
    }
}

/* MHD frees the response: cancel what is still generating, wait for the engine to drop it. */
static void stream_free(void *cls)
{
    stream_ctx *c = cls;
    rl_server *s = c->s;
    job *j = c->j;
    pthread_mutex_lock(&s->mu);
    if (j->remaining > 0) {
        j->cancel = 1;
        seq **pp = &s->head, *last = NULL; /* sequences not started yet leave the queue now */
        while (*pp) {
            if ((*pp)->j == j) {
                *pp = (*pp)->next;
                j->remaining--;
            } else {
                last = *pp;
                pp = &(*pp)->next;
            }
        }
        s->tail = last;
        while (j->remaining > 0) pthread_cond_wait(&j->ready, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    job_free(j);
    pthread_cond_destroy(&j->ready);
    free(j);
    free(c);
}

static enum MHD_Result handle_generate(rl_server *s, struct MHD_Connection *conn, int chat,
                                       const conn_state *cs)
{
    json_error_t jerr;
    json_t *body = json_loadb(cs->body.data ? cs->body.data : "", cs->body.len, 0, &jerr);
    if (!body) {
        char m[300];
        snprintf(m, sizeof m, "invalid JSON body: %s", jerr.text);
        return reply_error(conn, 400, m, "invalid_request_error", NULL);
    }
    job *j = agl_malloc(sizeof *j);
    req_err e = {0};
    if (parse_job(s, body, chat, j, &e)) {
        json_decref(body);
        job_free(j);
        free(j);
        return reply_error(conn, (unsigned)e.status, e.msg, "invalid_request_error", e.param);
    }
    json_decref(body);
    if (j->stream) {
        agl_id_new(j->id, sizeof j->id, chat ? "chatcmpl-" : "cmpl-", 24);
        j->created = (long)time(NULL);
        pthread_cond_init(&j->ready, NULL);
        job_queue(s, j);
        stream_ctx *c = agl_malloc(sizeof *c);
        c->s = s, c->j = j, c->conn = conn;
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024,
                                                                   stream_read, c, stream_free);
        if (!r) {
            stream_free(c);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/event-stream; charset=utf-8");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r); /* the connection holds it; stream_free runs when it is done */
        return ret;
    }
    run_job(s, j);
    atomic_fetch_add(&s->requests, 1);
    char id[64];
    agl_id_new(id, sizeof id, chat ? "chatcmpl-" : "cmpl-", 24);
    long created = (long)time(NULL);
    log_job(s, j, id, created);
    remember(s, j, id);
    enum MHD_Result ret = reply_json(conn, 200, response_json(s, j, id, created));
    job_free(j);
    free(j);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    rl_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        cs = agl_calloc(1, sizeof *cs);
        agl_buf_init(&cs->body);
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) {
        if (cs->body.len + *upload_size > (size_t)MAX_BODY) cs->too_large = 1;
        if (!cs->too_large) agl_buf_put(&cs->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    size_t ul = strlen(url);
    while (ul > 1 && url[ul - 1] == '/') ul--;
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)(ul < 255 ? ul : 255), url);
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(path, "/health") || !strcmp(path, "/v1/health")) {
        if (!get) return reply_error(conn, 405, "Method Not Allowed", "invalid_request_error", 0);
        return reply_json(conn, 200, json_pack("{s:s}", "status", "ok"));
    }
    if (!strcmp(path, "/v1/models")) {
        if (!get) return reply_error(conn, 405, "Method Not Allowed", "invalid_request_error", 0);
        return reply_json(conn, 200,
                          json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:s, s:i}]}", "object", "list",
                                    "data", "id", s->name, "object", "model", "created",
                                    (json_int_t)time(NULL), "owned_by", "agl", "root", s->name,
                                    "max_model_len", s->m->cfg.max_seq));
    }
    int chat = !strcmp(path, "/v1/chat/completions");
    if (chat || !strcmp(path, "/v1/completions")) {
        if (!post) return reply_error(conn, 405, "Method Not Allowed", "invalid_request_error", 0);
        if (cs->too_large)
            return reply_error(conn, 413, "request body too large", "invalid_request_error", 0);
        return handle_generate(s, conn, chat, cs);
    }
    return reply_error(conn, 404, "Not Found", "not_found_error", NULL);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    conn_state *cs = *con_cls;
    if (!cs) return;
    agl_buf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {}

rl_server *rl_server_start(rl_model *m, const rl_tok *tok, const rl_server_opts *o, char *err,
                           size_t errlen)
{
    char host[256];
    const char *listen = o->listen ? o->listen : "127.0.0.1:0";
    const char *colon = strrchr(listen, ':');
    if (!colon) {
        snprintf(err, errlen, "--listen: expected HOST:PORT, got '%s'", listen);
        return NULL;
    }
    size_t hl = (size_t)(colon - listen);
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, listen, hl);
    host[hl] = 0;
    char *hp = host;
    if (hp[0] == '[' && hl > 1 && hp[hl - 1] == ']') hp[hl - 1] = 0, hp++;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(hp[0] ? hp : NULL, colon + 1, &hints, &ai);
    if (gai) {
        snprintf(err, errlen, "--listen: cannot resolve '%s': %s", listen, gai_strerror(gai));
        return NULL;
    }
    rl_infer *inf = NULL;
    if (o->infer_dtype == RL_INFER_Q8_0 && !(inf = rl_infer_new(m, err, errlen))) {
        freeaddrinfo(ai);
        return NULL;
    }
    rl_server *s = agl_calloc(1, sizeof *s);
    s->m = m;
    s->inf = inf;
    s->tok = tok;
    s->max_batch = o->max_batch > 0 ? o->max_batch : 64;
    s->seed = o->seed;
    snprintf(s->name, sizeof s->name, "%s", o->model_name ? o->model_name : "policy");
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->log_mu, NULL);
    pthread_mutex_init(&s->rec_mu, NULL);
    s->recs = agl_calloc(NREC, sizeof(rec));
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->weights, &ra);
    pthread_rwlockattr_destroy(&ra);
    if (o->log_path && !(s->log = fopen(o->log_path, "a"))) {
        snprintf(err, errlen, "cannot open %s", o->log_path);
        freeaddrinfo(ai);
        rl_infer_free(s->inf);
        free(s->recs);
        free(s);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, 0u, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
                            NULL, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        snprintf(err, errlen, "cannot listen on %s (address in use?)", listen);
        if (s->log) fclose(s->log);
        rl_infer_free(s->inf);
        free(s->recs);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    const char *h = hp;
    if (!h[0] || !strcmp(h, "0.0.0.0") || !strcmp(h, "::")) h = "127.0.0.1";
    if (strchr(h, ':'))
        snprintf(s->url, sizeof s->url, "http://[%s]:%d/v1", h, s->port);
    else
        snprintf(s->url, sizeof s->url, "http://%s:%d/v1", h, s->port);
    pthread_create(&s->engine, NULL, engine_main, s);
    return s;
}

int rl_server_port(const rl_server *s)
{
    return s->port;
}

const char *rl_server_url(const rl_server *s)
{
    return s->url;
}

void rl_server_pause(rl_server *s)
{
    pthread_rwlock_wrlock(&s->weights);
}

void rl_server_resume(rl_server *s, long version)
{
    if (s->inf) rl_infer_refresh(s->inf); /* the weights may have changed */
    pthread_mutex_lock(&s->mu);
    s->version = version;
    pthread_mutex_unlock(&s->mu);
    pthread_rwlock_unlock(&s->weights);
}

void rl_server_stats(rl_server *s, long *requests, long *tokens)
{
    *requests = atomic_load(&s->requests);
    *tokens = atomic_load(&s->tokens);
}

void rl_server_stop(rl_server *s)
{
    if (!s) return;
    MHD_stop_daemon(s->d); /* waits for the connection threads, hence for their jobs */
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->engine, NULL);
    if (s->log) fclose(s->log);
    pthread_rwlock_destroy(&s->weights);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->done);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->log_mu);
    pthread_mutex_destroy(&s->rec_mu);
    for (int i = 0; i < NREC; i++) free(s->recs[i].ids), free(s->recs[i].lp);
    free(s->recs);
    rl_infer_free(s->inf);
    free(s);
}

/* ---------------------------------------------------------------- trainerd serve */
int trainerd_serve_main(int argc, char **argv)
{
    rl_opts o;
    if (rl_parse_opts("serve", argc, argv, &o)) return 2;
    rl_run r;
    if (rl_run_open(&r, &o)) return 1;
    /* the server threads inherit a mask without the stop signals; main waits for them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    rl_server_opts so = {.listen = o.listen,
                         .model_name = o.model_name,
                         .max_batch = o.max_batch,
                         .log_path = o.serve_log,
                         .seed = o.seed};
    if (o.infer_dtype) rl_infer_dtype_parse(o.infer_dtype, &so.infer_dtype); /* checked */
    char err[300];
    rl_server *s = rl_server_start(r.m, &r.tok, &so, err, sizeof err);
    if (!s) {
        fprintf(stderr, "trainerd serve: %s\n", err);
        rl_run_close(&r);
        return 1;
    }
    printf("trainerd serve: %s serving %s (%zu parameters, context %d, %s) on %s\n", o.model_name,
           o.model, r.m->nparams, r.m->cfg.max_seq, rl_infer_dtype_name(so.infer_dtype),
           rl_server_url(s));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    long nreq, ntok;
    rl_server_stats(s, &nreq, &ntok);
    rl_server_stop(s);
    printf("trainerd serve: stopped by signal %d after %ld requests, %ld tokens\n", sig, nreq,
           ntok);
    rl_run_close(&r);
    return 0;
}
