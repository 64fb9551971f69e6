/* chat — chat templates rendered in C (no Jinja): ChatML (`<|im_start|>role\ncontent<|im_end|>\n`;
 * SmolLM2, Qwen2) and Llama 3 (`<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`).
 * The kind is recognised from the checkpoint's Jinja template (tokenizer.chat_template), or
 * named explicitly; a template that injects a default system message when the conversation has
 * none (SmolLM2, Qwen2.5) keeps doing so: the message is read out of the template text. */
#ifndef RL_CHAT_H
#define RL_CHAT_H

enum { RL_CHAT_NONE = 0, RL_CHAT_CHATML, RL_CHAT_LLAMA3 };

typedef struct {
    int kind;
    char *default_system; /* NULL when the template adds none; owned */
    char *bos;            /* text placed before the first message (Llama 3: <|begin_of_text|>) */
} rl_chat;

typedef struct {
    const char *role; /* "system", "user", "assistant", "tool" */
    const char *content;
} rl_chat_msg;

/* Chooses the template: `name` ("chatml" or "llama3") overrides; otherwise the Jinja text
 * `jinja` is recognised. Returns 0, or -1 with err naming what was not recognised. */
int rl_chat_init(rl_chat *c, const char *jinja, const char *name, char *err);
void rl_chat_free(rl_chat *c);
const char *rl_chat_name(const rl_chat *c);
/* Renders messages (and, when add_generation_prompt, the assistant header). Returns a malloc'd
 * string (caller frees). */
char *rl_chat_render(const rl_chat *c, const rl_chat_msg *msgs, int n, int add_generation_prompt);
/* The text of the token that ends an assistant turn ("<|im_end|>", "<|eot_id|>"). */
const char *rl_chat_stop(const rl_chat *c);

#endif
