/* agl_buf — a growable byte buffer and the JSON writer primitives built on it.
 * Responses are written straight into an agl_buf (no intermediate JSON trees on the hot
 * path); the helpers here own JSON string escaping and number formatting. */
#ifndef AGL_BUF_H
#define AGL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct agl_buf {
    char *data; /* always NUL-terminated once anything was written */
    size_t len;
    size_t cap;
} agl_buf;

void agl_buf_init(agl_buf *b);
void agl_buf_free(agl_buf *b);
void agl_buf_reset(agl_buf *b); /* len = 0, keeps capacity */
void agl_buf_reserve(agl_buf *b, size_t extra);
void agl_buf_put(agl_buf *b, const void *p, size_t n);
void agl_buf_puts(agl_buf *b, const char *s);
void agl_buf_putc(agl_buf *b, char c);
void agl_buf_printf(agl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the data (malloc'd, NUL-terminated, caller frees with free()) and re-inits b. */
char *agl_buf_steal(agl_buf *b);

/* JSON writers. A NULL string writes `null`. */
void agl_buf_json_str(agl_buf *b, const char *s);
void agl_buf_json_strn(agl_buf *b, const char *s, size_t n);
/* Shortest text that reads back as the same double, Python-repr style (`2.0`, `1e-05`);
 * NaN/Infinity as Python's json writes them. */
void agl_buf_json_double(agl_buf *b, double v);
/* Writes v, or `null` when !has. */
void agl_buf_json_opt_double(agl_buf *b, int has, double v);
void agl_buf_json_int(agl_buf *b, int64_t v);
/* Raw JSON text inserted verbatim; NULL writes `null`. */
void agl_buf_json_raw(agl_buf *b, const char *raw);
/* `"key":` — key must not need escaping beyond what agl_buf_json_str does. */
void agl_buf_json_key(agl_buf *b, const char *key);

/* Formats v like agl_buf_json_double into out (>= 32 bytes); returns length. */
int agl_format_double(char *out, size_t cap, double v);

#endif
