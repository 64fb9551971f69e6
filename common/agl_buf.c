/* agl_buf — growable buffer and JSON writing primitives. */
#include "agl_buf.h"
#include "agl_alloc.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void agl_buf_init(agl_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void agl_buf_free(agl_buf *b)
{
    free(b->data);
    agl_buf_init(b);
}

void agl_buf_reset(agl_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

void agl_buf_reserve(agl_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    b->data = agl_realloc(b->data, cap);
    b->cap = cap;
}

void agl_buf_put(agl_buf *b, const void *p, size_t n)
{
    agl_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void agl_buf_puts(agl_buf *b, const char *s)
{
    agl_buf_put(b, s, strlen(s));
}

void agl_buf_putc(agl_buf *b, char c)
{
    agl_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = 0;
}

void agl_buf_printf(agl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        agl_buf_put(b, small, (size_t)n);
        return;
    }
    agl_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *agl_buf_steal(agl_buf *b)
{
    if (!b->data) agl_buf_reserve(b, 0), b->data[0] = 0;
    char *d = b->data;
    agl_buf_init(b);
    return d;
}

void agl_buf_json_str(agl_buf *b, const char *s)
{
    if (!s) {
        agl_buf_put(b, "null", 4);
        return;
    }
    agl_buf_json_strn(b, s, strlen(s));
}

void agl_buf_json_strn(agl_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    agl_buf_reserve(b, n + 2);
    agl_buf_putc(b, '"');
    size_t run = 0; /* copy unescaped runs in one memcpy */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (i > run) agl_buf_put(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
            agl_buf_put(b, "\\\"", 2);
            break;
        case '\\':
            agl_buf_put(b, "\\\\", 2);
            break;
        case '\n':
            agl_buf_put(b, "\\n", 2);
            break;
        case '\r':
            agl_buf_put(b, "\\r", 2);
            break;
        case '\t':
            agl_buf_put(b, "\\t", 2);
            break;
        case '\b':
            agl_buf_put(b, "\\b", 2);
            break;
        case '\f':
            agl_buf_put(b, "\\f", 2);
            break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            agl_buf_put(b, esc, 6);
        }
        }
    }
    if (n > run) agl_buf_put(b, s + run, n - run);
    agl_buf_putc(b, '"');
}

int agl_format_double(char *out, size_t cap, double v)
{
    if (isnan(v)) return snprintf(out, cap, "NaN");
    if (isinf(v)) return snprintf(out, cap, v > 0 ? "Infinity" : "-Infinity");
    /* Shortest number of significant digits that round-trips, as Python's repr does. Digit
     * counts that round-trip are upward closed, so: most doubles on the wire are timestamps
     * needing 16-17 digits (try 15, 16, 17); those that fit in 15 are usually short (0.1,
     * 600.0), found quickly by counting up from 1. */
    char sci[40];
    int prec = 15;
    snprintf(sci, sizeof sci, "%.14e", v);
    if (strtod(sci, NULL) == v) {
        for (prec = 1; prec < 15; prec++) {
            snprintf(sci, sizeof sci, "%.*e", prec - 1, v);
            if (strtod(sci, NULL) == v) break;
        }
    } else {
        for (prec = 16; prec < 17; prec++) {
            snprintf(sci, sizeof sci, "%.*e", prec - 1, v);
            if (strtod(sci, NULL) == v) break;
        }
    }
    snprintf(sci, sizeof sci, "%.*e", prec - 1, v);
    int exp10 = atoi(strchr(sci, 'e') + 1);
    /* repr switches to exponent notation outside 1e-4 <= |v| < 1e16 ("1e-05", "1e+16"). */
    if (exp10 < -4 || exp10 >= 16) return snprintf(out, cap, "%s", sci);
    int decimals = prec - 1 - exp10;
    int n = snprintf(out, cap, "%.*f", decimals > 0 ? decimals : 0, v);
    /* Keep the value a float on the wire: "600" -> "600.0". */
    if (!strchr(out, '.') && n > 0 && (size_t)n + 2 < cap) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = 0;
    }
    return n;
}

void agl_buf_json_double(agl_buf *b, double v)
{
    char tmp[40];
    int n = agl_format_double(tmp, sizeof tmp, v);
    agl_buf_put(b, tmp, (size_t)n);
}

void agl_buf_json_opt_double(agl_buf *b, int has, double v)
{
    if (has)
        agl_buf_json_double(b, v);
    else
        agl_buf_put(b, "null", 4);
}

void agl_buf_json_int(agl_buf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    agl_buf_put(b, tmp, (size_t)n);
}

void agl_buf_json_raw(agl_buf *b, const char *raw)
{
    agl_buf_puts(b, raw ? raw : "null");
}

void agl_buf_json_key(agl_buf *b, const char *key)
{
    agl_buf_json_str(b, key);
    agl_buf_putc(b, ':');
}
