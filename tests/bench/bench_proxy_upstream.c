/* bench_proxy_upstream — a fast local OpenAI-compatible upstream for the proxy benchmark:
 * answers POST .../chat/completions with a fixed completion (token ids included), or with 8
 * SSE chunks and [DONE] when the body asks for "stream": true. Usage: bench_proxy_upstream PORT */
#define _GNU_SOURCE 1 /* memmem */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char reply[] =
    "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\","
    "\"prompt_token_ids\":[1,2,3,4],\"choices\":[{\"index\":0,\"message\":{\"role\":"
    "\"assistant\",\"content\":\"hello from the bench upstream\"},\"finish_reason\":\"stop\","
    "\"token_ids\":[5,6,7,8,9]}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5,"
    "\"total_tokens\":9}}";

#define N_EVENTS 8

typedef struct {
    int i;
    int stream;
    size_t body;
} req;

static ssize_t sse(void *cls, uint64_t pos, char *buf, size_t max)
{
    int *i = cls;
    (void)pos;
    if (*i > N_EVENTS) return MHD_CONTENT_READER_END_OF_STREAM;
    int n;
    if (*i == N_EVENTS)
        n = snprintf(buf, max, "data: [DONE]\n\n");
    else
        n = snprintf(buf, max,
                     "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\","
                     "\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
                     "{\"content\":\"w%d \"},\"token_ids\":[%d],\"finish_reason\":%s}]}\n\n",
                     *i, 100 + *i, *i == N_EVENTS - 1 ? "\"stop\"" : "null");
    (*i)++;
    return n;
}

static enum MHD_Result on_req(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version;
    req *r = *con_cls;
    if (!r) {
        *con_cls = calloc(1, sizeof *r);
        return MHD_YES;
    }
    if (*size) {
        /* "stream": true, with or without blanks around the colon */
        const char *k = memmem(data, *size, "\"stream\"", 8);
        if (k) {
            k += 8;
            while (k < data + *size && (*k == ' ' || *k == ':')) k++;
            if ((size_t)(data + *size - k) >= 4 && !memcmp(k, "true", 4)) r->stream = 1;
        }
        *size = 0;
        return MHD_YES;
    }
    struct MHD_Response *resp;
    if (r->stream) {
        int *i = calloc(1, sizeof *i);
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse, i, free);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    } else {
        resp = MHD_create_response_from_buffer(sizeof reply - 1, (void *)reply,
                                               MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Content-Type", "application/json");
    }
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void done(void *cls, struct MHD_Connection *c, void **con_cls,
                 enum MHD_RequestTerminationCode t)
{
    (void)cls, (void)c, (void)t;
    free(*con_cls);
    *con_cls = NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_proxy_upstream PORT\n");
        return 2;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)atoi(argv[1]), NULL, NULL,
        on_req, NULL, MHD_OPTION_NOTIFY_COMPLETED, done, NULL, MHD_OPTION_THREAD_POOL_SIZE, 4u,
        MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "bench_proxy_upstream: cannot listen on %s\n", argv[1]);
        return 1;
    }
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    sigprocmask(SIG_BLOCK, &s, NULL);
    int sig;
    sigwait(&s, &sig);
    MHD_stop_daemon(d);
    return 0;
}
