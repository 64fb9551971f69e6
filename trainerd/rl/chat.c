/* chat — ChatML and Llama 3 templates (see chat.h). */
#include "chat.h"

#include "agl_alloc.h"
#include "agl_buf.h"
#include "gguf.h" /* RL_ERRLEN */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The default system message of a ChatML template: the literal after "<|im_start|>system" up to
 * "<|im_end|>" in a Jinja string (the branch taken when messages[0] is not a system message),
 * with Jinja escapes (\n, \\) undone; NULL when that text is not a plain literal. */
static char *system_literal(const char *p)
{
    if (p[0] == '\n')
        p++;
    else if (p[0] == '\\' && p[1] == 'n')
        p += 2;
    else
        return NULL;
    const char *e = strstr(p, "<|im_end|>");
    if (!e) return NULL;
    agl_buf b;
    agl_buf_init(&b);
    for (const char *q = p; q < e; q++) {
        if (*q == '\'' || *q == '"' || *q == '{' || *q == '}') { /* not a plain literal */
            agl_buf_free(&b);
            return NULL;
        }
        if (*q == '\\' && q + 1 < e) {
            q++;
            agl_buf_putc(&b, *q == 'n' ? '\n' : *q);
        } else {
            agl_buf_putc(&b, *q);
        }
    }
    if (!b.len) {
        agl_buf_free(&b);
        return NULL;
    }
    return agl_buf_steal(&b);
}

/* The first "<|im_start|>system\n...<|im_end|>" of the template whose content is a plain
 * literal (Qwen2.5's tools branch concatenates messages[0] there and is skipped). */
static char *chatml_default_system(const char *j)
{
    static const char tag[] = "<|im_start|>system";
    for (const char *p = strstr(j, tag); p; p = strstr(p + 1, tag)) {
        char *s = system_literal(p + strlen(tag));
        if (s) return s;
    }
    return NULL;
}

int rl_chat_init(rl_chat *c, const char *jinja, const char *name, char *err)
{
    memset(c, 0, sizeof *c);
    if (name && *name) {
        if (!strcmp(name, "chatml"))
            c->kind = RL_CHAT_CHATML;
        else if (!strcmp(name, "llama3"))
            c->kind = RL_CHAT_LLAMA3;
        else {
            snprintf(err, RL_ERRLEN, "chat template: unknown name \"%s\" (chatml or llama3)", name);
            return -1;
        }
    } else if (jinja && strstr(jinja, "<|im_start|>")) {
        c->kind = RL_CHAT_CHATML;
    } else if (jinja && strstr(jinja, "<|start_header_id|>")) {
        c->kind = RL_CHAT_LLAMA3;
    } else {
        snprintf(err, RL_ERRLEN, "chat template: %s; name one with --chat-template chatml|llama3",
                 jinja ? "not recognised (neither ChatML nor Llama 3)" : "the checkpoint has none");
        return -1;
    }
    if (c->kind == RL_CHAT_CHATML && jinja) c->default_system = chatml_default_system(jinja);
    if (c->kind == RL_CHAT_LLAMA3) c->bos = agl_strdup("<|begin_of_text|>");
    return 0;
}

void rl_chat_free(rl_chat *c)
{
    free(c->default_system);
    free(c->bos);
    memset(c, 0, sizeof *c);
}

const char *rl_chat_name(const rl_chat *c)
{
    return c->kind == RL_CHAT_CHATML ? "chatml" : c->kind == RL_CHAT_LLAMA3 ? "llama3" : "none";
}

const char *rl_chat_stop(const rl_chat *c)
{
    return c->kind == RL_CHAT_LLAMA3 ? "<|eot_id|>" : "<|im_end|>";
}

/* Jinja's `| trim` (Python str.strip): the Llama 3 template trims every content. */
static void put_trimmed(agl_buf *b, const char *s)
{
    const char *e = s + strlen(s);
    while (s < e && (*s == ' ' || (*s >= '\t' && *s <= '\r'))) s++;
    while (e > s && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r'))) e--;
    agl_buf_put(b, s, (size_t)(e - s));
}

char *rl_chat_render(const rl_chat *c, const rl_chat_msg *msgs, int n, int add_generation_prompt)
{
    agl_buf b;
    agl_buf_init(&b);
    if (c->bos) agl_buf_puts(&b, c->bos);
    if (c->kind == RL_CHAT_LLAMA3) {
        for (int i = 0; i < n; i++) {
            agl_buf_printf(&b, "<|start_header_id|>%s<|end_header_id|>\n\n", msgs[i].role);
            put_trimmed(&b, msgs[i].content ? msgs[i].content : "");
            agl_buf_puts(&b, "<|eot_id|>");
        }
        if (add_generation_prompt)
            agl_buf_puts(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else {
        if (c->default_system && n > 0 && strcmp(msgs[0].role, "system"))
            agl_buf_printf(&b, "<|im_start|>system\n%s<|im_end|>\n", c->default_system);
        for (int i = 0; i < n; i++)
            agl_buf_printf(&b, "<|im_start|>%s\n%s<|im_end|>\n", msgs[i].role,
                           msgs[i].content ? msgs[i].content : "");
        if (add_generation_prompt) agl_buf_puts(&b, "<|im_start|>assistant\n");
    }
    if (!b.data) agl_buf_puts(&b, "");
    return agl_buf_steal(&b);
}
