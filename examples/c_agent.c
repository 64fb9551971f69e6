/* c_agent — an agent for `runnerd --agent exec:./c_agent`, in C with libcurl and jansson.
 *
 *   cc -O2 -o c_agent examples/c_agent.c -lcurl -ljansson
 *
 * The task is JSON on stdin ({"input": {"question", "answer"}, "llm": {"model"}, ...});
 * OPENAI_BASE_URL is runnerd's proxy URL for this attempt. Prints {"reward": x} last. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct buf {
    char *p;
    size_t n;
};

static size_t on_data(char *d, size_t sz, size_t nm, void *ud)
{
    struct buf *b = ud;
    char *q = realloc(b->p, b->n + sz * nm + 1);
    if (!q) return 0;
    memcpy(q + b->n, d, sz * nm);
    b->p = q;
    b->n += sz * nm;
    b->p[b->n] = 0;
    return sz * nm;
}

int main(void)
{
    json_error_t je;
    json_t *task = json_loadf(stdin, 0, &je);
    const char *base = getenv("OPENAI_BASE_URL");
    if (!task || !base) {
        fprintf(stderr, "c_agent: need a JSON task on stdin and OPENAI_BASE_URL\n");
        return 2;
    }
    json_t *in = json_object_get(task, "input");
    const char *q = json_string_value(json_object_get(in, "question"));
    const char *expected = json_string_value(json_object_get(in, "answer"));
    const char *model = json_string_value(json_object_get(json_object_get(task, "llm"), "model"));
    json_t *req = json_pack("{s:s,s:[{s:s,s:s}]}", "model", model ? model : "default", "messages",
                            "role", "user", "content", q ? q : "");
    char *body = json_dumps(req, JSON_COMPACT);
    char url[2048], auth[512];
    snprintf(url, sizeof url, "%s/chat/completions", base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s",
             getenv("OPENAI_API_KEY") ? getenv("OPENAI_API_KEY") : "none");

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, auth);
    struct buf out = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
        fprintf(stderr, "c_agent: LLM call failed: %s (HTTP %ld) %s\n", curl_easy_strerror(rc),
                status, out.p ? out.p : "");
        return 1;
    }
    json_t *resp = json_loads(out.p, 0, &je);
    const char *answer = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(resp, "choices"), 0), "message"),
        "content"));
    fprintf(stderr, "answer: %s\n", answer ? answer : "(none)");
    double reward = 0.0;
    if (answer && expected && *expected) {
        /* case-insensitive "contains" */
        size_t n = strlen(expected);
        for (const char *p = answer; *p && reward == 0.0; p++)
            if (!strncasecmp(p, expected, n)) reward = 1.0;
    }
    printf("{\"reward\": %.1f}\n", reward);
    json_decref(resp);
    json_decref(req);
    json_decref(task);
    free(body);
    free(out.p);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    return 0;
}
