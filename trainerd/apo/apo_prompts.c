/* apo_prompts — the critic's and the editor's chat messages. The texts live in
 * trainerd/apo/prompts/ (one .txt per variant) and are linked into the binary (.incbin, paths
 * relative to the repository root where make runs); a line "=== user ===" splits the system part
 * from the user part, and {{PROMPT}}, {{RUNS}}, {{CRITIQUE}} are replaced. */
#include "agl_alloc.h"
#include "agl_buf.h"
#include "apo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define APO_EMBED(sym, path)                                                                       \
    __asm__(".pushsection .rodata\n.global " #sym "\n" #sym ":\n.incbin \"" path                   \
            "\"\n.byte 0\n.popsection\n");                                                         \
    extern const char sym[]

APO_EMBED(apo_prompt_critique_1, "trainerd/apo/prompts/critique_1.txt");
APO_EMBED(apo_prompt_critique_2, "trainerd/apo/prompts/critique_2.txt");
APO_EMBED(apo_prompt_critique_3, "trainerd/apo/prompts/critique_3.txt");
APO_EMBED(apo_prompt_edit_1, "trainerd/apo/prompts/edit_1.txt");
APO_EMBED(apo_prompt_edit_2, "trainerd/apo/prompts/edit_2.txt");

static const char *const critique_texts[APO_N_CRITIQUE_VARIANTS] = {
    apo_prompt_critique_1, apo_prompt_critique_2, apo_prompt_critique_3};
static const char *const edit_texts[APO_N_EDIT_VARIANTS] = {apo_prompt_edit_1, apo_prompt_edit_2};

#define MSG_LIMIT 4000 /* characters of one message shown to the critic */

/* Copies src into b replacing each {{KEY}} by its value. */
static void render(agl_buf *b, const char *src, size_t n, const char *const *kv)
{
    for (size_t i = 0; i < n;) {
        bool done = false;
        if (src[i] == '{' && i + 1 < n && src[i + 1] == '{') {
            for (int k = 0; kv[k] && !done; k += 2) {
                size_t kl = strlen(kv[k]);
                if (i + 2 + kl + 2 <= n && !strncmp(src + i + 2, kv[k], kl) &&
                    !strncmp(src + i + 2 + kl, "}}", 2)) {
                    agl_buf_puts(b, kv[k + 1]);
                    i += kl + 4;
                    done = true;
                }
            }
        }
        if (!done) agl_buf_putc(b, src[i++]);
    }
}

static json_t *messages_from(const char *text, const char *const *kv)
{
    static const char split[] = "=== user ===\n";
    const char *u = strstr(text, split);
    json_t *msgs = json_array();
    agl_buf b;
    agl_buf_init(&b);
    render(&b, text, u ? (size_t)(u - text) : strlen(text), kv);
    while (b.len && b.data[b.len - 1] == '\n') b.data[--b.len] = 0;
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", u ? "system" : "user", "content",
                                          b.data ? b.data : ""));
    if (u) {
        agl_buf_reset(&b);
        u += sizeof split - 1;
        render(&b, u, strlen(u), kv);
        while (b.len && b.data[b.len - 1] == '\n') b.data[--b.len] = 0;
        json_array_append_new(
            msgs, json_pack("{s:s,s:s}", "role", "user", "content", b.data ? b.data : ""));
    }
    agl_buf_free(&b);
    return msgs;
}

static void put_clipped(agl_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (n <= MSG_LIMIT) {
        agl_buf_puts(b, s);
        return;
    }
    agl_buf_put(b, s, MSG_LIMIT);
    agl_buf_printf(b, " …[%zu more characters]", n - MSG_LIMIT);
}

static void render_runs(agl_buf *b, const json_t *results)
{
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r)
    {
        json_t *rw = json_object_get(r, "final_reward");
        const char *st = json_string_value(json_object_get(r, "status"));
        agl_buf_printf(b, "### Run %zu — status: %s, final reward: ", i + 1, st ? st : "?");
        if (json_is_number(rw))
            agl_buf_printf(b, "%g\n", json_number_value(rw));
        else
            agl_buf_puts(b, "none\n");
        json_t *convs = json_object_get(r, "messages");
        if (!json_is_array(convs) || json_array_size(convs) == 0) {
            agl_buf_puts(b, "(no model calls were recorded)\n\n");
            continue;
        }
        size_t j;
        json_t *conv;
        json_array_foreach(convs, j, conv)
        {
            if (json_array_size(convs) > 1) agl_buf_printf(b, "Model call %zu:\n", j + 1);
            size_t k;
            json_t *m;
            json_array_foreach(json_object_get(conv, "messages"), k, m)
            {
                const char *role = json_string_value(json_object_get(m, "role"));
                json_t *c = json_object_get(m, "content");
                agl_buf_printf(b, "[%s] ", role ? role : "?");
                if (json_is_string(c)) {
                    put_clipped(b, json_string_value(c));
                } else if (c && !json_is_null(c)) {
                    char *d = json_dumps(c, JSON_COMPACT);
                    put_clipped(b, d ? d : "");
                    free(d);
                }
                json_t *tc = json_object_get(m, "tool_calls");
                if (json_is_array(tc) && json_array_size(tc)) {
                    char *d = json_dumps(tc, JSON_COMPACT);
                    agl_buf_puts(b, " tool calls: ");
                    put_clipped(b, d ? d : "");
                    free(d);
                }
                agl_buf_putc(b, '\n');
            }
        }
        agl_buf_putc(b, '\n');
    }
    if (json_array_size(results) == 0) agl_buf_puts(b, "(no run finished)\n");
}

json_t *apo_critique_messages(int variant, const char *template_text, const json_t *results)
{
    agl_buf runs;
    agl_buf_init(&runs);
    render_runs(&runs, results);
    while (runs.len && runs.data[runs.len - 1] == '\n') runs.data[--runs.len] = 0;
    const char *kv[] = {"PROMPT", template_text, "RUNS", runs.data ? runs.data : "", NULL};
    json_t *m = messages_from(critique_texts[variant % APO_N_CRITIQUE_VARIANTS], kv);
    agl_buf_free(&runs);
    return m;
}

json_t *apo_edit_messages(int variant, const char *template_text, const char *critique)
{
    const char *kv[] = {"PROMPT", template_text, "CRITIQUE", critique, NULL};
    return messages_from(edit_texts[variant % APO_N_EDIT_VARIANTS], kv);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    return p;
}

char *apo_clean_edit(const char *answer)
{
    const char *s = skip_ws(answer);
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1])) n--;
    if (n >= 6 && !strncmp(s, "```", 3) && !strncmp(s + n - 3, "```", 3)) {
        const char *nl = memchr(s, '\n', n);
        if (nl && nl < s + n - 3) {
            size_t m = (size_t)(s + n - 3 - (nl + 1));
            while (m && strchr("\r\n", nl[1 + m - 1])) m--;
            return agl_strndup(nl + 1, m);
        }
    }
    static const char open[] = "<template>", close[] = "</template>";
    if (n >= sizeof open + sizeof close - 2 && !strncmp(s, open, sizeof open - 1) &&
        !strncmp(s + n - (sizeof close - 1), close, sizeof close - 1)) {
        const char *b = s + sizeof open - 1;
        size_t m = n - (sizeof open - 1) - (sizeof close - 1);
        while (m && (*b == '\n' || *b == '\r')) b++, m--;
        while (m && strchr("\r\n", b[m - 1])) m--;
        return agl_strndup(b, m);
    }
    return agl_strndup(s, n);
}
