/* proxy — the LLM proxy: libmicrohttpd front (a thread per client connection, so a streaming
 * reply may block in its reader), libcurl multi back end driving the upstream call while an
 * allocator thread gets the call's sequence id from the store (concurrent calls' allocations
 * share one request), and an exporter thread that batches the recorded spans into OTLP
 * protobuf posts to the store. */
#include "proxy.h"
#include "agl_alloc.h"
#include "agl_buf.h"
#include "agl_log.h"
#include "agl_store_client.h"
#include "agl_trace.h"
#include "agl_util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT_BATCH 64
#define SEQ_BATCH 256

/* One call's sequence-id allocation, queued for the allocator thread. The call's thread waits
 * in curl_multi_poll; the allocator wakes it with curl_multi_wakeup. */
typedef struct seq_req {
    struct seq_req *next;
    const char *rollout_id, *attempt_id; /* the call's; valid until done */
    CURLM *wake;
    int64_t seq;
    bool ok;
    atomic_bool done;
} seq_req;
#define MAX_BODY (64u << 20)

typedef struct reg_entry {
    struct reg_entry *next;
    char *rollout_id, *attempt_id, *endpoint, *api_key;
    bool looked_up; /* found in the store by the proxy itself (proxy-only mode), not a worker */
} reg_entry;

/* Store look-ups cached per attempt; past this many the oldest are forgotten. */
#define LOOKUP_CACHE 1024

typedef struct export_item {
    struct export_item *next;
    char *doc; /* a whole OTLP protobuf document */
    size_t len;
} export_item;

struct proxy {
    struct MHD_Daemon *d;
    char url[256];
    char *store_url, *upstream, *api_key;
    bool token_ids, logprobs;
    atomic_bool upstream_refuses_token_ids;
    double upstream_timeout_s;

    pthread_mutex_t reg_mu;
    reg_entry *reg;

    pthread_t exporter;
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv, done_cv;
    export_item *q_head, *q_tail;
    unsigned long long enq, done, lost; /* recorded calls queued, exported, refused */
    bool stopping;

    /* sequence-id allocator: a queue, one thread, one request in flight at a time, so calls
     * that start while a request is out share the next one (group allocation) */
    pthread_t allocator;
    pthread_mutex_t seq_mu;
    pthread_cond_t seq_cv, seq_done_cv;
    seq_req *seq_head, **seq_tail;
    bool seq_stopping;
};

/* ---- per-thread curl handles: a connection's requests run on one thread, so keep-alive to
 * the upstream and the store lasts as long as the client keeps its connection. ---- */

typedef struct tls {
    CURLM *m;
    CURL *up;
} tls;

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *v)
{
    tls *t = v;
    if (!t) return;
    curl_easy_cleanup(t->up);
    curl_multi_cleanup(t->m);
    free(t);
}

static void tls_init_key(void)
{
    pthread_key_create(&tls_key, tls_free);
}

static tls *tls_get(void)
{
    pthread_once(&tls_once, tls_init_key);
    tls *t = pthread_getspecific(tls_key);
    if (!t) {
        t = agl_calloc(1, sizeof *t);
        t->m = curl_multi_init();
        t->up = curl_easy_init();
        pthread_setspecific(tls_key, t);
    }
    return t;
}

/* ---- one proxied call ---- */

typedef enum { OP_CHAT, OP_COMPLETIONS } call_op;

typedef struct call {
    proxy *p;
    tls *t;
    call_op op;
    bool attributed, stream;
    char *rollout_id, *attempt_id;
    json_t *req;    /* request body as sent upstream */
    char *req_text; /* its JSON text */
    char *up_url;   /* full upstream URL */
    char *auth;     /* Authorization header line, or NULL */
    struct curl_slist *up_hdrs;
    double t0, t_first, t_end; /* monotonic */
    double w0;                 /* wall clock at start */

    /* upstream */
    bool up_done, headers_done, up_added;
    CURLcode up_rc;
    long status;
    agl_buf resp;       /* whole body (non-stream) or what the reader has not sent yet */
    size_t resp_off;    /* streaming: bytes of resp already handed to the client */
    char *content_type; /* upstream's */
    char up_err[CURL_ERROR_SIZE];

    /* store sequence id: st_added while the allocator has the request */
    bool st_done, st_added;
    seq_req sr;
    int64_t seq;

    /* streaming assembly */
    agl_buf line;
    json_t *synth; /* the response rebuilt from chunks */
    bool saw_done, stream_error, recorded;
} call;

static void seq_cancel(call *c);

static void call_free(call *c)
{
    if (!c) return;
    if (c->st_added) seq_cancel(c);
    if (c->t) {
        if (c->up_added) curl_multi_remove_handle(c->t->m, c->t->up);
    }
    json_decref(c->req);
    json_decref(c->synth);
    free(c->req_text);
    free(c->up_url);
    free(c->auth);
    free(c->rollout_id);
    free(c->attempt_id);
    free(c->content_type);
    curl_slist_free_all(c->up_hdrs);
    agl_buf_free(&c->resp);
    agl_buf_free(&c->line);
    free(c);
}

static size_t up_write(char *ptr, size_t size, size_t n, void *ud)
{
    call *c = ud;
    if (c->resp.len == c->resp_off && c->t_first == 0) c->t_first = agl_monotonic();
    agl_buf_put(&c->resp, ptr, size * n);
    return size * n;
}

static size_t up_header(char *ptr, size_t size, size_t n, void *ud)
{
    call *c = ud;
    size_t len = size * n;
    if (len >= 5 && !strncmp(ptr, "HTTP/", 5)) {
        c->headers_done = false; /* a new response (e.g. after a 100) */
        long st = 0;
        const char *sp = memchr(ptr, ' ', len);
        if (sp) st = strtol(sp + 1, NULL, 10);
        c->status = st;
    } else if (len <= 2 && (ptr[0] == '\r' || ptr[0] == '\n')) {
        if (c->status >= 200) c->headers_done = true;
    } else if (len > 13 && !strncasecmp(ptr, "content-type:", 13)) {
        const char *v = ptr + 13;
        size_t vl = len - 13;
        while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ')) vl--;
        free(c->content_type);
        c->content_type = agl_strndup(v, vl);
    }
    return len;
}

static void start_upstream(call *c)
{
    CURL *e = c->t->up;
    curl_easy_reset(e);
    c->up_done = c->headers_done = false;
    c->status = 0;
    agl_buf_reset(&c->resp);
    c->resp_off = 0;
    c->t_first = 0;
    c->up_err[0] = 0;
    curl_slist_free_all(c->up_hdrs);
    c->up_hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    c->up_hdrs = curl_slist_append(c->up_hdrs, c->stream ? "Accept: text/event-stream"
                                                         : "Accept: application/json");
    c->up_hdrs = curl_slist_append(c->up_hdrs, "Expect:");
    if (c->auth) c->up_hdrs = curl_slist_append(c->up_hdrs, c->auth);
    curl_easy_setopt(e, CURLOPT_URL, c->up_url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->up_hdrs);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->req_text);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(c->req_text));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, up_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, up_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->up_err);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    if (c->p->upstream_timeout_s > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(c->p->upstream_timeout_s * 1000));
    curl_multi_add_handle(c->t->m, e);
    c->up_added = true;
}

static void start_seq(call *c)
{
    proxy *p = c->p;
    c->sr = (seq_req){.rollout_id = c->rollout_id, .attempt_id = c->attempt_id, .wake = c->t->m};
    atomic_init(&c->sr.done, false);
    pthread_mutex_lock(&p->seq_mu);
    *p->seq_tail = &c->sr;
    p->seq_tail = &c->sr.next;
    pthread_cond_signal(&p->seq_cv);
    pthread_mutex_unlock(&p->seq_mu);
    c->st_added = true;
}

/* The call goes away before its id came back (client gone): take the request out of the queue,
 * or wait for the batch that carries it, so the allocator never writes into freed memory. */
static void seq_cancel(call *c)
{
    proxy *p = c->p;
    pthread_mutex_lock(&p->seq_mu);
    for (seq_req **pp = &p->seq_head; *pp; pp = &(*pp)->next) {
        if (*pp == &c->sr) {
            *pp = c->sr.next;
            if (!*pp) p->seq_tail = pp;
            c->st_added = false;
            break;
        }
    }
    while (c->st_added && !atomic_load(&c->sr.done)) pthread_cond_wait(&p->seq_done_cv, &p->seq_mu);
    pthread_mutex_unlock(&p->seq_mu);
    c->st_added = false;
}

static void seq_collect(call *c)
{
    if (!c->st_added || !atomic_load(&c->sr.done)) return;
    /* the allocator sets done and wakes this thread's multi handle under seq_mu: taking it
     * once here means the wake-up is over before the thread (and its handle) can go away */
    pthread_mutex_lock(&c->p->seq_mu);
    pthread_mutex_unlock(&c->p->seq_mu);
    c->st_added = false;
    c->st_done = true;
    if (c->sr.ok)
        c->seq = c->sr.seq;
    else
        agl_warn("proxy: no sequence id from the store for %s/%s; the store will assign one when "
                 "the span arrives",
                 c->rollout_id, c->attempt_id);
}

/* The allocator thread: takes everything queued (up to SEQ_BATCH), allocates it with one
 * POST /v1/agl/spans/next of an array (stored's batch extension), hands the ids back. */
static void *allocator_main(void *arg)
{
    proxy *p = arg;
    agl_error err;
    agl_store_client *sc = agl_store_client_new(p->store_url, true, &err);
    agl_buf b;
    agl_buf_init(&b);
    seq_req *batch[SEQ_BATCH];
    pthread_mutex_lock(&p->seq_mu);
    for (;;) {
        while (!p->seq_head && !p->seq_stopping) pthread_cond_wait(&p->seq_cv, &p->seq_mu);
        if (!p->seq_head) break;
        int n = 0;
        while (p->seq_head && n < SEQ_BATCH) {
            batch[n++] = p->seq_head;
            p->seq_head = p->seq_head->next;
        }
        if (!p->seq_head) p->seq_tail = &p->seq_head;
        pthread_mutex_unlock(&p->seq_mu);

        agl_buf_reset(&b);
        agl_buf_putc(&b, '[');
        for (int i = 0; i < n; i++) {
            agl_buf_puts(&b, i ? ",{\"rollout_id\":" : "{\"rollout_id\":");
            agl_buf_json_str(&b, batch[i]->rollout_id);
            agl_buf_puts(&b, ",\"attempt_id\":");
            agl_buf_json_str(&b, batch[i]->attempt_id);
            agl_buf_putc(&b, '}');
        }
        agl_buf_putc(&b, ']');
        json_t *out = NULL;
        if (sc && agl_store_call(sc, "POST", "/v1/agl/spans/next", b.data, &out, &err) != AGL_OK)
            agl_warn("proxy: sequence ids for %d call(s) failed: %s", n, err.msg);
        for (int i = 0; i < n; i++) {
            json_t *s = json_object_get(json_array_get(out, (size_t)i), "sequence_id");
            batch[i]->ok = json_is_integer(s);
            batch[i]->seq = batch[i]->ok ? json_integer_value(s) : 0;
        }
        json_decref(out);

        pthread_mutex_lock(&p->seq_mu);
        for (int i = 0; i < n; i++) {
            CURLM *wake = batch[i]->wake; /* the call may go once it sees done: copy first */
            atomic_store(&batch[i]->done, true);
            curl_multi_wakeup(wake);
        }
        pthread_cond_broadcast(&p->seq_done_cv);
    }
    pthread_mutex_unlock(&p->seq_mu);
    agl_buf_free(&b);
    agl_store_client_free(sc);
    return NULL;
}

/* Runs the transfers until done(c) holds or both transfers ended. */
static void drive(call *c, bool (*done)(const call *))
{
    for (;;) {
        int running = 0;
        curl_multi_perform(c->t->m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(c->t->m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            if (msg->easy_handle == c->t->up && c->up_added) {
                c->up_done = true;
                c->up_rc = msg->data.result;
                c->t_end = agl_monotonic();
                curl_multi_remove_handle(c->t->m, c->t->up);
                c->up_added = false;
            }
        }
        seq_collect(c);
        if (done(c) || (!c->up_added && !c->st_added)) return;
        curl_multi_poll(c->t->m, NULL, 0, 1000, NULL);
    }
}

static bool until_up_done(const call *c)
{
    return c->up_done;
}
static bool until_all_done(const call *c)
{
    return c->up_done && (c->st_done || !c->attributed);
}
static bool until_stream_ready(const call *c)
{
    return c->up_done || (c->headers_done && c->resp.len > 0);
}
static bool until_stream_data(const call *c)
{
    return c->up_done || c->resp.len > c->resp_off;
}
static bool until_seq(const call *c)
{
    return c->st_done || !c->attributed;
}

/* ---- assembling a streamed response ---- */

static void append_str(json_t *obj, const char *key, json_t *piece)
{
    if (!json_is_string(piece)) return;
    json_t *cur = json_object_get(obj, key);
    if (!json_is_string(cur)) {
        json_object_set(obj, key, piece);
        return;
    }
    size_t a = json_string_length(cur), b = json_string_length(piece);
    char *s = agl_malloc(a + b + 1);
    memcpy(s, json_string_value(cur), a);
    memcpy(s + a, json_string_value(piece), b);
    s[a + b] = 0;
    json_object_set_new(obj, key, json_stringn_nocheck(s, a + b));
    free(s);
}

static void append_array(json_t *obj, const char *key, json_t *items)
{
    if (!json_is_array(items)) return;
    json_t *cur = json_object_get(obj, key);
    if (!json_is_array(cur)) {
        cur = json_array();
        json_object_set_new(obj, key, cur);
    }
    json_array_extend(cur, items);
}

static json_t *synth_choice(json_t *synth, size_t idx, call_op op)
{
    json_t *choices = json_object_get(synth, "choices");
    while (json_array_size(choices) <= idx) {
        json_t *ch =
            json_pack("{s:I,s:n}", "index", (json_int_t)json_array_size(choices), "finish_reason");
        if (op == OP_CHAT)
            json_object_set_new(ch, "message",
                                json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
        else
            json_object_set_new(ch, "text", json_string(""));
        json_array_append_new(choices, ch);
    }
    return json_array_get(choices, idx);
}

static void merge_tool_calls(json_t *msg, json_t *deltas)
{
    json_t *tcs = json_object_get(msg, "tool_calls");
    if (!tcs) {
        tcs = json_array();
        json_object_set_new(msg, "tool_calls", tcs);
    }
    size_t i;
    json_t *d;
    json_array_foreach(deltas, i, d)
    {
        json_t *ix = json_object_get(d, "index");
        size_t k = json_is_integer(ix) ? (size_t)json_integer_value(ix) : i;
        while (json_array_size(tcs) <= k)
            json_array_append_new(tcs, json_pack("{s:n,s:s,s:{s:s,s:s}}", "id", "type", "function",
                                                 "function", "name", "", "arguments", ""));
        json_t *tc = json_array_get(tcs, k);
        json_t *v = json_object_get(d, "id");
        if (json_is_string(v)) json_object_set(tc, "id", v);
        json_t *fn = json_object_get(d, "function");
        json_t *tfn = json_object_get(tc, "function");
        append_str(tfn, "name", json_object_get(fn, "name"));
        append_str(tfn, "arguments", json_object_get(fn, "arguments"));
    }
}

static void merge_chunk(call *c, json_t *chunk)
{
    if (!c->synth)
        c->synth = json_pack("{s:s,s:[]}", "object",
                             c->op == OP_CHAT ? "chat.completion" : "text_completion", "choices");
    static const char *const top[] = {"id", "model", "created", "system_fingerprint",
                                      "prompt_token_ids"};
    for (size_t i = 0; i < sizeof top / sizeof *top; i++) {
        json_t *v = json_object_get(chunk, top[i]);
        if (v && !json_is_null(v) && !json_object_get(c->synth, top[i]))
            json_object_set(c->synth, top[i], v);
    }
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_object(usage)) json_object_set(c->synth, "usage", usage);
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(chunk, "choices"), i, ch)
    {
        json_t *ix = json_object_get(ch, "index");
        json_t *sc =
            synth_choice(c->synth, json_is_integer(ix) ? (size_t)json_integer_value(ix) : i, c->op);
        json_t *fr = json_object_get(ch, "finish_reason");
        if (json_is_string(fr)) json_object_set(sc, "finish_reason", fr);
        append_array(sc, "token_ids", json_object_get(ch, "token_ids"));
        json_t *pti = json_object_get(ch, "prompt_token_ids");
        if (json_is_array(pti)) json_object_set(sc, "prompt_token_ids", pti);
        json_t *lp = json_object_get(ch, "logprobs");
        if (json_is_object(lp)) {
            json_t *slp = json_object_get(sc, "logprobs");
            if (!json_is_object(slp)) {
                slp = json_object();
                json_object_set_new(sc, "logprobs", slp);
            }
            if (c->op == OP_CHAT) {
                append_array(slp, "content", json_object_get(lp, "content"));
            } else {
                static const char *const keys[] = {"tokens", "token_logprobs", "top_logprobs",
                                                   "text_offset"};
                for (size_t k = 0; k < 4; k++)
                    append_array(slp, keys[k], json_object_get(lp, keys[k]));
            }
        }
        if (c->op == OP_COMPLETIONS) {
            append_str(sc, "text", json_object_get(ch, "text"));
            continue;
        }
        json_t *delta = json_object_get(ch, "delta");
        json_t *msg = json_object_get(sc, "message");
        json_t *role = json_object_get(delta, "role");
        if (json_is_string(role)) json_object_set(msg, "role", role);
        append_str(msg, "content", json_object_get(delta, "content"));
        append_str(msg, "reasoning_content", json_object_get(delta, "reasoning_content"));
        json_t *tcs = json_object_get(delta, "tool_calls");
        if (json_is_array(tcs)) merge_tool_calls(msg, tcs);
    }
}

/* Feeds bytes of the SSE stream; complete "data:" lines are parsed and merged. */
static void sse_feed(call *c, const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *nl = memchr(data + i, '\n', n - i);
        if (!nl) { /* a partial line: keep it for the next chunk */
            agl_buf_put(&c->line, data + i, n - i);
            return;
        }
        agl_buf_put(&c->line, data + i, (size_t)(nl - (data + i)));
        i = (size_t)(nl - data);
        size_t len = c->line.len;
        const char *l = c->line.data ? c->line.data : "";
        if (len && l[len - 1] == '\r') len--;
        if (len >= 5 && !strncmp(l, "data:", 5)) {
            const char *v = l + 5;
            size_t vl = len - 5;
            while (vl && *v == ' ') v++, vl--;
            if (vl == 6 && !strncmp(v, "[DONE]", 6)) {
                c->saw_done = true;
            } else {
                json_t *j = json_loadb(v, vl, 0, NULL);
                if (json_is_object(j)) {
                    if (json_object_get(j, "error")) c->stream_error = true;
                    merge_chunk(c, j);
                }
                json_decref(j);
            }
        }
        agl_buf_reset(&c->line);
    }
}

/* ---- recording ---- */

static void enqueue_doc(proxy *p, char *doc, size_t len)
{
    export_item *it = agl_calloc(1, sizeof *it);
    it->doc = doc;
    it->len = len;
    pthread_mutex_lock(&p->q_mu);
    if (p->q_tail)
        p->q_tail->next = it;
    else
        p->q_head = it;
    p->q_tail = it;
    p->enq++;
    pthread_cond_signal(&p->q_cv);
    pthread_mutex_unlock(&p->q_mu);
}

static void attr_json(agl_otlp_writer *w, const char *key, json_t *v)
{
    if (!v || json_is_null(v)) return;
    if (json_is_string(v)) {
        agl_otlp_attr_strn(w, key, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        agl_otlp_attr_int(w, key, json_integer_value(v));
    } else if (json_is_real(v)) {
        agl_otlp_attr_double(w, key, json_real_value(v));
    } else if (json_is_boolean(v)) {
        agl_otlp_attr_bool(w, key, json_is_true(v));
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        agl_otlp_attr_str(w, key, s);
        free(s);
    }
}

/* Token ids as an int64 list; returns count (0 when absent or not all integers). */
static size_t int_list(json_t *a, int64_t **out)
{
    *out = NULL;
    if (!json_is_array(a) || json_array_size(a) == 0) return 0;
    size_t n = json_array_size(a);
    int64_t *v = agl_malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(a, i);
        if (!json_is_integer(x)) {
            free(v);
            return 0;
        }
        v[i] = json_integer_value(x);
    }
    *out = v;
    return n;
}

static void write_messages(agl_otlp_writer *w, call *c)
{
    char key[96];
    if (c->op == OP_COMPLETIONS) {
        json_t *pr = json_object_get(c->req, "prompt");
        agl_otlp_attr_str(w, "gen_ai.prompt.0.role", "user");
        attr_json(w, "gen_ai.prompt.0.content", pr);
        return;
    }
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(c->req, "messages"), i, m)
    {
        static const char *const fields[] = {"role", "content", "name", "tool_call_id",
                                             "tool_calls"};
        for (size_t k = 0; k < sizeof fields / sizeof *fields; k++) {
            snprintf(key, sizeof key, "gen_ai.prompt.%zu.%s", i, fields[k]);
            attr_json(w, key, json_object_get(m, fields[k]));
        }
    }
    json_array_foreach(json_object_get(c->req, "tools"), i, m)
    {
        json_t *fn = json_object_get(m, "function");
        snprintf(key, sizeof key, "gen_ai.request.functions.%zu.name", i);
        attr_json(w, key, json_object_get(fn, "name"));
        snprintf(key, sizeof key, "gen_ai.request.functions.%zu.description", i);
        attr_json(w, key, json_object_get(fn, "description"));
        snprintf(key, sizeof key, "gen_ai.request.functions.%zu.parameters", i);
        json_t *params = json_object_get(fn, "parameters");
        if (params) {
            char *s = json_dumps(params, JSON_COMPACT | JSON_ENCODE_ANY);
            agl_otlp_attr_str(w, key, s);
            free(s);
        }
    }
}

static void write_completions(agl_otlp_writer *w, call *c, json_t *resp)
{
    char key[96];
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(resp, "choices"), i, ch)
    {
        json_t *msg = json_object_get(ch, "message");
        snprintf(key, sizeof key, "gen_ai.completion.%zu.role", i);
        if (c->op == OP_CHAT) {
            attr_json(w, key, json_object_get(msg, "role"));
            snprintf(key, sizeof key, "gen_ai.completion.%zu.content", i);
            attr_json(w, key, json_object_get(msg, "content"));
            json_t *tcs = json_object_get(msg, "tool_calls");
            if (json_array_size(tcs)) {
                snprintf(key, sizeof key, "gen_ai.completion.%zu.tool_calls", i);
                attr_json(w, key, tcs);
            }
        } else {
            agl_otlp_attr_str(w, key, "assistant");
            snprintf(key, sizeof key, "gen_ai.completion.%zu.content", i);
            attr_json(w, key, json_object_get(ch, "text"));
        }
        snprintf(key, sizeof key, "gen_ai.completion.%zu.finish_reason", i);
        attr_json(w, key, json_object_get(ch, "finish_reason"));
    }
}

static void record(call *c, json_t *resp, const char *error)
{
    if (!c->attributed || c->recorded) return;
    c->recorded = true;
    proxy *p = c->p;
    double end_mono = c->t_end ? c->t_end : agl_monotonic();
    double start = c->w0, end = c->w0 + (end_mono - c->t0);
    char tid[33], root[17], child[17];
    agl_trace_id_new(tid);
    agl_span_id_new(root);
    agl_span_id_new(child);

    json_t *choice0 = json_array_get(json_object_get(resp, "choices"), 0);
    int64_t *prompt_ids = NULL, *resp_ids = NULL;
    json_t *pti = json_object_get(resp, "prompt_token_ids");
    if (!pti) pti = json_object_get(choice0, "prompt_token_ids");
    size_t n_prompt = int_list(pti, &prompt_ids);
    json_t *rti = json_object_get(choice0, "token_ids");
    if (!rti) rti = json_array_get(json_object_get(resp, "response_token_ids"), 0);
    size_t n_resp = int_list(rti, &resp_ids);
    json_t *rid = json_object_get(resp, "id");

    agl_buf b;
    agl_buf_init(&b);
    agl_otlp_writer w;
    /* protobuf: the store decodes it into an arena, where OTLP/JSON costs it a jansson tree
     * (docs/runnerd.md) */
    agl_otlp_begin_proto(&w, &b);
    agl_otlp_resource(&w, c->rollout_id, c->attempt_id, c->seq);
    agl_otlp_span_begin(&w, tid, root, NULL, "litellm_request", start, end,
                        error ? AGL_SPAN_ERROR : AGL_SPAN_OK, error);
    agl_otlp_attr_str(&w, "gen_ai.system", "openai");
    static const char *const params[] = {
        "model", "temperature", "top_p", "max_tokens",       "max_completion_tokens",
        "n",     "stop",        "seed",  "presence_penalty", "frequency_penalty"};
    char key[96];
    for (size_t i = 0; i < sizeof params / sizeof *params; i++) {
        snprintf(key, sizeof key, "gen_ai.request.%s", params[i]);
        attr_json(&w, key, json_object_get(c->req, params[i]));
    }
    write_messages(&w, c);
    write_completions(&w, c, resp);
    attr_json(&w, "gen_ai.response.id", rid);
    attr_json(&w, "gen_ai.response.model", json_object_get(resp, "model"));
    json_t *usage = json_object_get(resp, "usage");
    attr_json(&w, "gen_ai.usage.prompt_tokens", json_object_get(usage, "prompt_tokens"));
    attr_json(&w, "gen_ai.usage.completion_tokens", json_object_get(usage, "completion_tokens"));
    attr_json(&w, "gen_ai.usage.total_tokens", json_object_get(usage, "total_tokens"));
    if (n_prompt) agl_otlp_attr_int_array(&w, "prompt_token_ids", prompt_ids, n_prompt);
    if (n_resp) agl_otlp_attr_int_array(&w, "response_token_ids", resp_ids, n_resp);
    json_t *lpc = json_object_get(json_object_get(choice0, "logprobs"), "content");
    if (lpc) attr_json(&w, "logprobs.content", lpc);
    agl_otlp_attr_bool(&w, "llm.is_streaming", c->stream);
    agl_buf hdr;
    agl_buf_init(&hdr);
    agl_buf_puts(&hdr, "{'x-rollout-id': ");
    json_t *tmp = json_string(c->rollout_id);
    agl_pyrepr(&hdr, tmp);
    json_decref(tmp);
    agl_buf_puts(&hdr, ", 'x-attempt-id': ");
    tmp = json_string(c->attempt_id);
    agl_pyrepr(&hdr, tmp);
    json_decref(tmp);
    agl_buf_printf(&hdr, ", 'x-sequence-id': '%lld'}", (long long)c->seq);
    agl_otlp_attr_str(&w, "metadata.requester_custom_headers", hdr.data);
    agl_buf_free(&hdr);
    agl_otlp_attr_str(&w, "agl.proxy.upstream", c->up_url);
    agl_otlp_attr_int(&w, "http.status_code", c->status);
    agl_otlp_attr_double(&w, "agl.proxy.latency_ms", (end_mono - c->t0) * 1000.0);
    if (c->stream && c->t_first > 0)
        agl_otlp_attr_double(&w, "agl.proxy.ttft_ms", (c->t_first - c->t0) * 1000.0);
    if (error) {
        agl_otlp_attr_str(&w, "error.type", "upstream_error");
        agl_otlp_attr_str(&w, "error.message", error);
    }
    agl_otlp_span_end(&w);

    agl_otlp_span_begin(&w, tid, child, root, "raw_gen_ai_request", start, end,
                        error ? AGL_SPAN_ERROR : AGL_SPAN_OK, error);
    attr_json(&w, "llm.hosted_vllm.id", rid);
    agl_buf lit;
    agl_buf_init(&lit);
    if (pti && json_is_array(pti)) {
        agl_pyrepr(&lit, pti);
        agl_otlp_attr_str(&w, "llm.hosted_vllm.prompt_token_ids", lit.data);
        agl_buf_reset(&lit);
    }
    json_t *choices = json_object_get(resp, "choices");
    if (json_is_array(choices)) {
        agl_pyrepr(&lit, choices);
        agl_otlp_attr_str(&w, "llm.hosted_vllm.choices", lit.data);
        agl_buf_reset(&lit);
        json_t *all = json_array();
        size_t i;
        json_t *ch;
        json_array_foreach(choices, i, ch)
        {
            json_t *ti = json_object_get(ch, "token_ids");
            if (json_is_array(ti)) json_array_append(all, ti);
        }
        if (json_array_size(all)) {
            agl_pyrepr(&lit, all);
            agl_otlp_attr_str(&w, "llm.hosted_vllm.response_token_ids", lit.data);
        }
        json_decref(all);
    }
    agl_buf_free(&lit);
    agl_otlp_span_end(&w);
    agl_otlp_end(&w);
    free(prompt_ids);
    free(resp_ids);
    size_t len = b.len;
    enqueue_doc(p, agl_buf_steal(&b), len);
}

/* ---- exporter ---- */

static void *exporter_main(void *arg)
{
    proxy *p = arg;
    agl_error err;
    agl_store_client *sc = agl_store_client_new(p->store_url, true, &err);
    agl_buf b;
    agl_buf_init(&b);
    pthread_mutex_lock(&p->q_mu);
    for (;;) {
        while (!p->q_head && !p->stopping) pthread_cond_wait(&p->q_cv, &p->q_mu);
        if (!p->q_head && p->stopping) break;
        export_item *batch = p->q_head;
        int n = 0;
        export_item *last = batch;
        while (last->next && n < EXPORT_BATCH - 1) last = last->next, n++;
        n++;
        p->q_head = last->next;
        if (!p->q_head) p->q_tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&p->q_mu);

        /* protobuf documents merge by concatenation (resource_spans is a repeated field) */
        agl_buf_reset(&b);
        for (export_item *it = batch; it; it = it->next) agl_buf_put(&b, it->doc, it->len);
        if (!sc || agl_store_export_otlp_protobuf(sc, b.data, b.len, &err) != AGL_OK) {
            agl_warn("proxy: %d recorded LLM call(s) lost: the store refused the spans: %s", n,
                     err.msg);
            pthread_mutex_lock(&p->q_mu);
            p->lost += (unsigned long long)n;
            pthread_mutex_unlock(&p->q_mu);
        }
        while (batch) {
            export_item *nx = batch->next;
            free(batch->doc);
            free(batch);
            batch = nx;
        }
        pthread_mutex_lock(&p->q_mu);
        p->done += (unsigned long long)n;
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->q_mu);
    agl_buf_free(&b);
    agl_store_client_free(sc);
    return NULL;
}

void proxy_flush(proxy *p)
{
    pthread_mutex_lock(&p->q_mu);
    unsigned long long ticket = p->enq;
    while (p->done < ticket) pthread_cond_wait(&p->done_cv, &p->q_mu);
    pthread_mutex_unlock(&p->q_mu);
}

/* ---- registry ---- */

void proxy_register_attempt(proxy *p, const char *rollout_id, const char *attempt_id,
                            const char *endpoint, const char *api_key)
{
    reg_entry *e = agl_calloc(1, sizeof *e);
    e->rollout_id = agl_strdup(rollout_id);
    e->attempt_id = agl_strdup(attempt_id);
    e->endpoint = endpoint ? agl_strdup(endpoint) : NULL;
    e->api_key = api_key ? agl_strdup(api_key) : NULL;
    pthread_mutex_lock(&p->reg_mu);
    e->next = p->reg;
    p->reg = e;
    pthread_mutex_unlock(&p->reg_mu);
}

json_t *proxy_find_llm(json_t *resources)
{
    json_t *llm = json_object_get(resources, "main_llm");
    if (llm) return llm;
    const char *k;
    json_t *v;
    json_object_foreach(resources, k, v)
    {
        const char *t = json_string_value(json_object_get(v, "resource_type"));
        if (t && (!strcmp(t, "llm") || !strcmp(t, "proxy_llm"))) return v;
    }
    return NULL;
}

static void reg_free(reg_entry *e)
{
    free(e->rollout_id);
    free(e->attempt_id);
    free(e->endpoint);
    free(e->api_key);
    free(e);
}

/* An attempt no worker of this runnerd registered (the proxy runs standalone, or serves other
 * runners): its upstream is the endpoint of its rollout's main_llm resource, read from the store
 * once and cached. A proxy_llm resource names a proxy, not a model server, so it is not
 * followed (that would loop back here); --upstream then applies. */
static void lookup_in_store(proxy *p, const char *rid, const char *aid)
{
    if (!p->store_url || !rid || !aid) return;
    agl_error err;
    agl_store_client *sc = agl_store_client_new(p->store_url, false, &err);
    if (!sc) return;
    agl_buf path;
    agl_buf_init(&path);
    agl_buf_puts(&path, "/v1/agl/rollouts");
    agl_store_path_segment(&path, rid);
    json_t *ro = NULL, *ru = NULL;
    /* Cached even when no llm endpoint is found (endpoint NULL = the default upstream), so an
     * attempt without one does not cost a store round trip per call; not cached when the store
     * could not answer. */
    bool answered =
        agl_store_call(sc, "GET", path.data, NULL, &ro, &err) == AGL_OK && json_is_object(ro) &&
        agl_store_get_resources(sc, json_string_value(json_object_get(ro, "resources_id")), &ru,
                                &err) == AGL_OK;
    if (answered) {
        json_t *llm = ru ? proxy_find_llm(json_object_get(ru, "resources")) : NULL;
        const char *type = json_string_value(json_object_get(llm, "resource_type"));
        const char *endpoint = json_string_value(json_object_get(llm, "endpoint"));
        bool usable = endpoint && type && !strcmp(type, "llm");
        reg_entry *e = agl_calloc(1, sizeof *e);
        e->rollout_id = agl_strdup(rid);
        e->attempt_id = agl_strdup(aid);
        e->endpoint = usable ? agl_strdup(endpoint) : NULL;
        const char *key = usable ? json_string_value(json_object_get(llm, "api_key")) : NULL;
        e->api_key = key ? agl_strdup(key) : NULL;
        e->looked_up = true;
        pthread_mutex_lock(&p->reg_mu);
        e->next = p->reg;
        p->reg = e;
        int kept = 0;
        for (reg_entry **pp = &p->reg; *pp;) {
            if ((*pp)->looked_up && ++kept > LOOKUP_CACHE) {
                reg_entry *old = *pp;
                *pp = old->next;
                reg_free(old);
            } else {
                pp = &(*pp)->next;
            }
        }
        pthread_mutex_unlock(&p->reg_mu);
    }
    json_decref(ro);
    json_decref(ru);
    agl_buf_free(&path);
    agl_store_client_free(sc);
}

void proxy_unregister_attempt(proxy *p, const char *attempt_id)
{
    pthread_mutex_lock(&p->reg_mu);
    for (reg_entry **pp = &p->reg; *pp; pp = &(*pp)->next) {
        if (!strcmp((*pp)->attempt_id, attempt_id)) {
            reg_entry *e = *pp;
            *pp = e->next;
            reg_free(e);
            break;
        }
    }
    pthread_mutex_unlock(&p->reg_mu);
}

/* Upstream base URL and key for an attempt (malloc'd copies; *base NULL when none). */
static bool find_registered(proxy *p, const char *attempt_id, char **base, char **key)
{
    bool found = false;
    pthread_mutex_lock(&p->reg_mu);
    for (reg_entry *e = p->reg; e; e = e->next) {
        if (!strcmp(e->attempt_id, attempt_id)) {
            if (e->endpoint) *base = agl_strdup(e->endpoint);
            if (e->api_key) *key = agl_strdup(e->api_key);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&p->reg_mu);
    return found;
}

static void resolve_upstream(proxy *p, const char *rollout_id, const char *attempt_id, char **base,
                             char **key)
{
    *base = *key = NULL;
    if (attempt_id && !find_registered(p, attempt_id, base, key)) {
        lookup_in_store(p, rollout_id, attempt_id);
        find_registered(p, attempt_id, base, key);
    }
    if (!*base && p->upstream) *base = agl_strdup(p->upstream);
    if (!*key && p->api_key) *key = agl_strdup(p->api_key);
    if (*base) {
        size_t n = strlen(*base);
        while (n && (*base)[n - 1] == '/') (*base)[--n] = 0;
    }
}

/* ---- HTTP front ---- */

typedef struct req {
    agl_buf body;
    bool too_large;
} req;

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (ctype) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* OpenAI-style error body, with our usual "detail" beside it. */
static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *type,
                                   const char *msg)
{
    json_t *j = json_pack("{s:{s:s,s:s,s:n},s:s}", "error", "message", msg, "type", type, "code",
                          "detail", msg);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    enum MHD_Result r = reply(conn, status, "application/json", s, strlen(s));
    free(s);
    return r;
}

/* Splits url into rollout/attempt ids (path form) and the OpenAI tail ("/chat/completions"
 * etc., without /v1). Returns false when the path is not a proxy route. */
static bool route(const char *url, char **rid, char **aid, const char **tail)
{
    *rid = *aid = NULL;
    if (!strncmp(url, "/rollout/", 9)) {
        const char *r0 = url + 9, *r1 = strchr(r0, '/');
        if (!r1 || r1 == r0 || strncmp(r1, "/attempt/", 9)) return false;
        const char *a0 = r1 + 9, *a1 = strchr(a0, '/');
        if (!a1) a1 = a0 + strlen(a0);
        if (a1 == a0) return false;
        *rid = agl_strndup(r0, (size_t)(r1 - r0));
        *aid = agl_strndup(a0, (size_t)(a1 - a0));
        url = a1;
    }
    if (!strncmp(url, "/v1/", 4)) url += 3;
    *tail = url;
    return true;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    call *c = cls;
    (void)pos;
    if (c->resp.len == c->resp_off && !c->up_done) drive(c, until_stream_data);
    size_t avail = c->resp.len - c->resp_off;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, c->resp.data + c->resp_off, n);
        sse_feed(c, c->resp.data + c->resp_off, n);
        c->resp_off += n;
        if (c->resp_off == c->resp.len) {
            agl_buf_reset(&c->resp);
            c->resp_off = 0;
        }
        return (ssize_t)n;
    }
    /* Upstream finished: the sequence id must exist before the client sees the end, so that
     * anything the agent records next sorts after this call. */
    drive(c, until_seq);
    if (c->up_rc != CURLE_OK) {
        char msg[CURL_ERROR_SIZE + 64];
        snprintf(msg, sizeof msg, "upstream stream broke: %s",
                 c->up_err[0] ? c->up_err : curl_easy_strerror(c->up_rc));
        record(c, c->synth, msg);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    record(c, c->synth, c->stream_error ? "upstream sent an error event in the stream" : NULL);
    return MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls)
{
    call *c = cls;
    if (!c->recorded) {
        c->t_end = agl_monotonic();
        record(c, c->synth, "client closed the stream before it ended");
    }
    call_free(c);
}

static bool refuses_token_ids(const call *c)
{
    if (c->status != 400 && c->status != 422) return false;
    return c->resp.data &&
           (strstr(c->resp.data, "return_token_ids") || strstr(c->resp.data, "logprobs"));
}

static enum MHD_Result handle_call(proxy *p, struct MHD_Connection *conn, call_op op, char *rid,
                                   char *aid, req *r)
{
    char *base = NULL, *key = NULL;
    resolve_upstream(p, rid, aid, &base, &key);
    if (!base) {
        free(rid);
        free(aid);
        free(key);
        return reply_error(conn, 502, "upstream_error",
                           "no upstream for this call: the attempt's rollout has no llm "
                           "resource and runnerd has no --upstream");
    }
    json_error_t jerr;
    json_t *body = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &jerr);
    if (!json_is_object(body)) {
        json_decref(body);
        free(base);
        free(key);
        free(rid);
        free(aid);
        char msg[300];
        snprintf(msg, sizeof msg, "request body is not a JSON object: %s", jerr.text);
        return reply_error(conn, 400, "invalid_request_error", msg);
    }
    call *c = agl_calloc(1, sizeof *c);
    c->p = p;
    c->t = tls_get();
    c->op = op;
    c->req = body;
    c->rollout_id = rid;
    c->attempt_id = aid;
    c->attributed = rid && aid;
    c->seq = -1;
    c->stream = json_is_true(json_object_get(body, "stream"));
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_printf(&b, "%s%s", base, op == OP_CHAT ? "/chat/completions" : "/completions");
    c->up_url = agl_buf_steal(&b);
    free(base);
    if (key) {
        agl_buf_printf(&b, "Authorization: Bearer %s", key);
        c->auth = agl_buf_steal(&b);
        free(key);
    } else {
        const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        if (a) {
            agl_buf_printf(&b, "Authorization: %s", a);
            c->auth = agl_buf_steal(&b);
        }
    }
    bool asked_ids = false;
    if (c->attributed && p->token_ids && !atomic_load(&p->upstream_refuses_token_ids) &&
        !json_object_get(body, "return_token_ids")) {
        json_object_set_new(body, "return_token_ids", json_true());
        asked_ids = true;
    }
    if (c->attributed && p->logprobs && !json_object_get(body, "logprobs")) {
        json_object_set_new(body, "logprobs", op == OP_CHAT ? json_true() : json_integer(1));
        asked_ids = true;
    }
    c->req_text = json_dumps(body, JSON_COMPACT);
    c->t0 = agl_monotonic();
    c->w0 = agl_now();
    start_upstream(c);
    if (c->attributed) start_seq(c);

    for (;;) {
        drive(c, c->stream ? until_stream_ready : until_up_done);
        if (c->up_done && asked_ids && c->up_rc == CURLE_OK && refuses_token_ids(c)) {
            /* The upstream does not know return_token_ids/logprobs (e.g. the OpenAI API):
             * drop them, remember it, and send the call again. */
            agl_warn("proxy: upstream %s refuses token ids/logprobs; calling it without them",
                     c->up_url);
            atomic_store(&p->upstream_refuses_token_ids, true);
            json_object_del(body, "return_token_ids");
            if (p->logprobs) json_object_del(body, "logprobs");
            free(c->req_text);
            c->req_text = json_dumps(body, JSON_COMPACT);
            asked_ids = false;
            start_upstream(c);
            continue;
        }
        break;
    }

    if (!c->up_done && c->stream && c->status >= 200 && c->status < 300) {
        struct MHD_Response *resp = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 16384, stream_reader, c, stream_free);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                c->content_type ? c->content_type : "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        enum MHD_Result ret = MHD_queue_response(conn, (unsigned)c->status, resp);
        MHD_destroy_response(resp);
        return ret;
    }

    /* Complete (non-streaming call, an error, or a stream that ended at once). */
    drive(c, until_all_done);
    enum MHD_Result ret;
    if (c->up_rc != CURLE_OK) {
        char msg[CURL_ERROR_SIZE + 128];
        bool timeout = c->up_rc == CURLE_OPERATION_TIMEDOUT;
        snprintf(msg, sizeof msg, "upstream %s %s: %s", c->up_url, timeout ? "timed out" : "failed",
                 c->up_err[0] ? c->up_err : curl_easy_strerror(c->up_rc));
        c->status = timeout ? 504 : 502;
        record(c, NULL, msg);
        ret = reply_error(conn, (unsigned)c->status, "upstream_error", msg);
    } else {
        json_t *resp = NULL;
        if (c->stream) {
            sse_feed(c, c->resp.data ? c->resp.data : "", c->resp.len);
            sse_feed(c, "\n", 1);
            resp = json_incref(c->synth);
        } else {
            resp = json_loadb(c->resp.data ? c->resp.data : "", c->resp.len, 0, NULL);
        }
        char msg[256] = "";
        if (c->status >= 400) {
            json_t *em = json_object_get(json_object_get(resp, "error"), "message");
            if (!em) em = json_object_get(resp, "detail");
            snprintf(msg, sizeof msg, "upstream answered %ld: %s", c->status,
                     json_is_string(em) ? json_string_value(em) : "(no message)");
        }
        record(c, resp, c->status >= 400 ? msg : NULL);
        json_decref(resp);
        const char *ct = c->content_type ? c->content_type : "application/json";
        if (c->status >= 400 && strncmp(ct, "application/json", 16)) {
            ret = reply_error(conn, (unsigned)c->status, "upstream_error", msg);
        } else {
            ret = reply(conn, (unsigned)(c->status ? c->status : 502), ct,
                        c->resp.data ? c->resp.data : "", c->resp.len);
        }
    }
    call_free(c);
    return ret;
}

static size_t models_write(char *ptr, size_t size, size_t n, void *ud)
{
    agl_buf_put(ud, ptr, size * n);
    return size * n;
}

static enum MHD_Result handle_models(proxy *p, struct MHD_Connection *conn, const char *aid)
{
    char *base = NULL, *key = NULL;
    resolve_upstream(p, NULL, aid, &base, &key);
    if (!base) {
        free(key);
        static const char empty[] = "{\"object\":\"list\",\"data\":[]}";
        return reply(conn, 200, "application/json", empty, sizeof empty - 1);
    }
    tls *t = tls_get();
    CURL *e = t->up;
    curl_easy_reset(e);
    agl_buf url, out, auth;
    agl_buf_init(&url);
    agl_buf_init(&out);
    agl_buf_init(&auth);
    agl_buf_printf(&url, "%s/models", base);
    struct curl_slist *h = NULL;
    if (key) {
        agl_buf_printf(&auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth.data);
    }
    curl_easy_setopt(e, CURLOPT_URL, url.data);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, models_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    CURLcode rc = curl_easy_perform(e);
    long st = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &st);
    enum MHD_Result ret;
    if (rc != CURLE_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "upstream %s failed: %s", url.data, curl_easy_strerror(rc));
        ret = reply_error(conn, 502, "upstream_error", msg);
    } else {
        ret = reply(conn, (unsigned)st, "application/json", out.data ? out.data : "", out.len);
    }
    curl_slist_free_all(h);
    agl_buf_free(&url);
    agl_buf_free(&out);
    agl_buf_free(&auth);
    free(base);
    free(key);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    proxy *p = cls;
    (void)version;
    req *r = *con_cls;
    if (!r) {
        r = agl_calloc(1, sizeof *r);
        agl_buf_init(&r->body);
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->body.len + *upload_size > MAX_BODY)
            r->too_large = true;
        else
            agl_buf_put(&r->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_large)
        return reply_error(conn, 413, "invalid_request_error", "request body too large");
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/health")) {
        /* With the recording counters: calls recorded, their spans acknowledged by the store,
         * and calls whose spans the store refused; recorded - exported - lost are queued. */
        pthread_mutex_lock(&p->q_mu);
        unsigned long long enq = p->enq, done = p->done, lost = p->lost;
        pthread_mutex_unlock(&p->q_mu);
        char ok[160];
        int n = snprintf(ok, sizeof ok,
                         "{\"status\":\"ok\",\"recorded_calls\":%llu,\"exported_calls\":%llu,"
                         "\"lost_calls\":%llu}",
                         enq, done - lost, lost);
        return reply(conn, 200, "application/json", ok, (size_t)n);
    }
    char *rid = NULL, *aid = NULL;
    const char *tail = NULL;
    if (!route(url, &rid, &aid, &tail)) return reply_error(conn, 404, "not_found", "Not Found");
    if (!rid) {
        const char *hr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-rollout-id");
        const char *ha = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-attempt-id");
        if (hr && ha && *hr && *ha) {
            rid = agl_strdup(hr);
            aid = agl_strdup(ha);
        }
    }
    call_op op;
    if (!strcmp(tail, "/chat/completions"))
        op = OP_CHAT;
    else if (!strcmp(tail, "/completions"))
        op = OP_COMPLETIONS;
    else if (!strcmp(tail, "/models")) {
        enum MHD_Result ret =
            strcmp(method, "GET")
                ? reply_error(conn, 405, "invalid_request_error", "Method Not Allowed")
                : handle_models(p, conn, aid);
        free(rid);
        free(aid);
        return ret;
    } else {
        free(rid);
        free(aid);
        return reply_error(conn, 404, "not_found", "Not Found");
    }
    if (strcmp(method, "POST")) {
        free(rid);
        free(aid);
        return reply_error(conn, 405, "invalid_request_error", "Method Not Allowed");
    }
    return handle_call(p, conn, op, rid, aid, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    req *r = *con_cls;
    if (!r) return;
    agl_buf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = 0;
    agl_debug("proxy http: %s", line);
}

proxy *proxy_start(const proxy_opts *o, agl_error *err)
{
    const char *colon = strrchr(o->listen, ':');
    if (!colon || colon == o->listen)
        return agl_error_set(err, AGL_E_INVALID, "proxy-listen",
                             "--proxy-listen '%s' is not HOST:PORT", o->listen),
               NULL;
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - o->listen), o->listen);
    if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        char *rb = strchr(host, ']');
        if (rb) *rb = 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, colon + 1, &hints, &ai);
    if (gai) {
        agl_error_set(err, AGL_E_INVALID, "proxy-listen", "cannot resolve '%s': %s", o->listen,
                      gai_strerror(gai));
        return NULL;
    }
    proxy *p = agl_calloc(1, sizeof *p);
    p->store_url = agl_strdup(o->store_url);
    size_t sl = strlen(p->store_url);
    while (sl && p->store_url[sl - 1] == '/') p->store_url[--sl] = 0;
    p->upstream = o->upstream && *o->upstream ? agl_strdup(o->upstream) : NULL;
    p->api_key = o->api_key && *o->api_key ? agl_strdup(o->api_key) : NULL;
    p->token_ids = o->token_ids;
    p->logprobs = o->logprobs;
    p->upstream_timeout_s = o->upstream_timeout_s;
    pthread_mutex_init(&p->reg_mu, NULL);
    pthread_mutex_init(&p->q_mu, NULL);
    pthread_cond_init(&p->q_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    pthread_mutex_init(&p->seq_mu, NULL);
    pthread_cond_init(&p->seq_cv, NULL);
    pthread_cond_init(&p->seq_done_cv, NULL);
    p->seq_tail = &p->seq_head;

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    p->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, p, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, p,
                            MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_CONNECTION_LIMIT, 4096u,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!p->d) {
        agl_error_set(err, AGL_E_IO, "proxy-listen", "cannot listen on %s (address in use?)",
                      o->listen);
        proxy_stop(p);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(p->d, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : 0;
    if (o->public_url && *o->public_url) {
        snprintf(p->url, sizeof p->url, "%s", o->public_url);
        size_t n = strlen(p->url);
        while (n && p->url[n - 1] == '/') p->url[--n] = 0;
    } else {
        const char *h = host;
        if (!strcmp(h, "0.0.0.0") || !*h) h = "127.0.0.1";
        bool v6 = strchr(h, ':') != NULL;
        if (!strcmp(h, "::")) h = "::1";
        snprintf(p->url, sizeof p->url, v6 ? "http://[%s]:%d" : "http://%s:%d", h, port);
    }
    pthread_create(&p->exporter, NULL, exporter_main, p);
    pthread_create(&p->allocator, NULL, allocator_main, p);
    return p;
}

const char *proxy_url(const proxy *p)
{
    return p->url;
}

void proxy_stop(proxy *p)
{
    if (!p) return;
    if (p->d) {
        MHD_stop_daemon(p->d);
        pthread_mutex_lock(&p->q_mu);
        p->stopping = true;
        pthread_cond_broadcast(&p->q_cv);
        pthread_mutex_unlock(&p->q_mu);
        pthread_join(p->exporter, NULL);
        if (p->seq_tail) { /* the allocator started */
            pthread_mutex_lock(&p->seq_mu);
            p->seq_stopping = true;
            pthread_cond_broadcast(&p->seq_cv);
            pthread_mutex_unlock(&p->seq_mu);
            pthread_join(p->allocator, NULL);
        }
    }
    while (p->reg) {
        reg_entry *e = p->reg;
        p->reg = e->next;
        free(e->rollout_id);
        free(e->attempt_id);
        free(e->endpoint);
        free(e->api_key);
        free(e);
    }
    free(p->store_url);
    free(p->upstream);
    free(p->api_key);
    free(p);
}
