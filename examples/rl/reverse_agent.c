/* reverse_agent — the C exec agent of `make demo`: the reverse-digits task of
 * examples/rl/reverse_agent.py, without a Python interpreter per rollout.
 *
 *   cc -O2 -o reverse_agent examples/rl/reverse_agent.c -ljansson
 *   runnerd --agent exec:./reverse_agent ...
 *
 * runnerd starts one process per rollout, and the GRPO demo runs 256 rollouts per step, so
 * start-up cost is the agent's whole budget: a Python interpreter (~50 ms of CPU) and even
 * loading libcurl with its TLS and protocol libraries (~30% of the loop's CPU in a profile)
 * were the bottleneck on 2 cores. This agent speaks the one HTTP/1.1 request it needs over a
 * plain socket to runnerd's proxy (http:// only) and links only jansson.
 *
 * stdin: {"input": {"prompt": "123=", "answer": "321"}, "resources": {"main_llm": {...}}, ...};
 * OPENAI_BASE_URL is runnerd's proxy URL for this attempt (which records the token ids). The
 * reward, printed as the last stdout line, is trainerd's verifier (rl.c rl_verify): matched
 * positions of answer + end-of-sequence over len(answer) + 1; the end-of-sequence position
 * matches when the model stopped by itself right after len(answer) characters. */
#define _GNU_SOURCE /* strcasestr */
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* POSTs body to url (http://host[:port]/path) and returns the response body (malloc'd, NUL
 * terminated) with *status set, or NULL with a message in err. */
static char *http_post(const char *url, const char *path_suffix, const char *body, int *status,
                       char *err, size_t cap)
{
    char host[256], port[16] = "80";
    const char *p = url;
    if (strncmp(p, "http://", 7)) {
        snprintf(err, cap, "only http:// URLs are supported: %s", url);
        return NULL;
    }
    p += 7;
    size_t hl = strcspn(p, ":/");
    snprintf(host, sizeof host, "%.*s", (int)hl, p);
    p += hl;
    if (*p == ':') {
        size_t pl = strcspn(++p, "/");
        snprintf(port, sizeof port, "%.*s", (int)pl, p);
        p += pl;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai)) {
        snprintf(err, cap, "cannot resolve %s", host);
        return NULL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
        freeaddrinfo(ai);
        snprintf(err, cap, "cannot connect to %s:%s", host, port);
        return NULL;
    }
    freeaddrinfo(ai);
    size_t blen = strlen(body);
    char *req = malloc(blen + strlen(p) + strlen(path_suffix) + 512);
    int n = sprintf(req,
                    "POST %s%s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                    p, path_suffix, host, port, blen, body);
    for (int off = 0; off < n;) {
        ssize_t w = write(fd, req + off, (size_t)(n - off));
        if (w <= 0) break;
        off += (int)w;
    }
    free(req);
    size_t len = 0, rcap = 8192;
    char *resp = malloc(rcap);
    for (ssize_t r; (r = read(fd, resp + len, rcap - len - 1)) > 0;) {
        len += (size_t)r;
        if (len + 1 == rcap) resp = realloc(resp, rcap *= 2);
    }
    close(fd);
    resp[len] = 0;
    char *hdr_end = strstr(resp, "\r\n\r\n");
    if (!hdr_end || sscanf(resp, "HTTP/1.%*d %d", status) != 1) {
        snprintf(err, cap, "bad HTTP response from %s", url);
        free(resp);
        return NULL;
    }
    char *out = hdr_end + 4;
    if (strcasestr(resp, "transfer-encoding: chunked") && strcasestr(resp, "chunked") < hdr_end) {
        /* de-chunk in place: size line, data, CRLF, ... 0 */
        char *w = out, *r = out;
        for (unsigned long sz; (sz = strtoul(r, &r, 16)) > 0;) {
            r = strstr(r, "\r\n");
            if (!r) break;
            memmove(w, r + 2, sz);
            w += sz;
            r += 2 + sz + 2;
        }
        *w = 0;
    }
    memmove(resp, out, strlen(out) + 1);
    return resp;
}

/* Copies the main_llm resource's sampling parameters the policy server understands. */
static void add_sampling(json_t *req, json_t *task)
{
    static const char *const keys[] = {"temperature", "top_p", "max_tokens", "seed", "stop", NULL};
    json_t *sp = json_object_get(json_object_get(json_object_get(task, "resources"), "main_llm"),
                                 "sampling_parameters");
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(sp, keys[i]);
        if (v) json_object_set(req, keys[i], v);
    }
}

static double reward(const char *text, const char *finish, const char *answer)
{
    size_t nt = strlen(text), na = strlen(answer), match = 0;
    for (size_t i = 0; i < nt && i < na; i++) match += text[i] == answer[i];
    if (finish && !strcmp(finish, "stop") && nt == na) match++;
    return (double)match / (double)(na + 1);
}

int main(void)
{
    json_error_t je;
    json_t *task = json_loadf(stdin, 0, &je);
    const char *base = getenv("OPENAI_BASE_URL");
    json_t *in = json_object_get(task, "input");
    const char *prompt = json_string_value(json_object_get(in, "prompt"));
    const char *answer = json_string_value(json_object_get(in, "answer"));
    if (!task || !base || !prompt || !answer) {
        fprintf(stderr, "reverse_agent: need a JSON task with input.prompt and input.answer on "
                        "stdin and OPENAI_BASE_URL\n");
        return 2;
    }
    const char *model = json_string_value(json_object_get(json_object_get(task, "llm"), "model"));
    json_t *req = json_pack("{s:s,s:s}", "model", model ? model : "policy", "prompt", prompt);
    add_sampling(req, task);
    char *body = json_dumps(req, JSON_COMPACT);
    char err[512] = "";
    int status = 0;
    char *out = http_post(base, "/completions", body, &status, err, sizeof err);
    json_t *resp = out && status == 200 ? json_loads(out, 0, &je) : NULL;
    json_t *choice = json_array_get(json_object_get(resp, "choices"), 0);
    const char *text = json_string_value(json_object_get(choice, "text"));
    int exit_code = 0;
    if (!text) {
        fprintf(stderr, "reverse_agent: LLM call failed: %s (HTTP %d) %s\n", err, status,
                out ? out : "");
        exit_code = 1;
    } else {
        const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
        double r = reward(text, finish, answer);
        fprintf(stderr, "prompt '%s' answer '%s' (%s) reward %.3f\n", prompt, text,
                finish ? finish : "?", r);
        printf("{\"reward\": %.17g}\n", r);
    }
    json_decref(resp);
    json_decref(req);
    json_decref(task);
    free(body);
    free(out);
    return exit_code;
}
