/* tok — char/byte tokenizer (see tok.h). */
#include "tok.h"

#include <stdio.h>
#include <string.h>

int rl_tok_init(rl_tok *t, const char *spec, const char **err)
{
    memset(t, 0, sizeof *t);
    snprintf(t->spec, sizeof t->spec, "%s", spec);
    for (int i = 0; i < 256; i++) t->id_of[i] = -1;
    if (!strcmp(spec, "bytes")) {
        for (int i = 0; i < 256; i++) t->chars[i] = (unsigned char)i;
        t->nchars = 256;
    } else if (!strncmp(spec, "chars:", 6) && spec[6]) {
        for (const unsigned char *p = (const unsigned char *)spec + 6; *p; p++) {
            if (t->id_of[*p] >= 0) continue;
            t->id_of[*p] = 3 + t->nchars;
            t->chars[t->nchars++] = *p;
        }
    } else {
        if (err) *err = "tokenizer: expected \"bytes\" or \"chars:<alphabet>\"";
        return -1;
    }
    for (int i = 0; i < t->nchars; i++) t->id_of[t->chars[i]] = 3 + i;
    t->vocab = 3 + t->nchars;
    t->pad = RL_TOK_PAD, t->bos = RL_TOK_BOS, t->eos = RL_TOK_EOS, t->eot = -1;
    return 0;
}

int rl_tok_encode(const rl_tok *t, const char *text, size_t len, int *out, int cap)
{
    if ((size_t)cap < len) return -1;
    for (size_t i = 0; i < len; i++) {
        int id = t->id_of[(unsigned char)text[i]];
        if (id < 0) return -1;
        out[i] = id;
    }
    return (int)len;
}

int rl_tok_decode(const rl_tok *t, int id, char *out, int cap)
{
    if (cap < 1) return 0;
    out[0] = 0;
    if (id < 3 || id >= t->vocab || cap < 2) return 0;
    out[0] = (char)t->chars[id - 3];
    out[1] = 0;
    return 1;
}
