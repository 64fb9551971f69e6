/* agl_buf — growable buffer and JSON writing primitives. */
#include "agl_buf.h"
#include "agl_alloc.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
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
        /* Skip 8 plain bytes at a time (no control byte, quote or backslash): span attributes
         * are kilobytes of mostly plain text. Bit tricks: a byte of x below k sets its top bit
         * in (x - k*ones) & ~x & highs (exact as a yes/no); "equal" is "xor below 1". */
        while (n - i >= 8) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
            uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
            if (((x - ones * 0x20) & ~x) & highs) break;
            if ((((q - ones) & ~q) | ((bs - ones) & ~bs)) & highs) break;
            i += 8;
        }
        if (i >= n) break;
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

/* Writes digits (no trailing zeros) times 10^exp10 the way Python's repr lays out a float:
 * plain notation for 1e-4 <= |v| < 1e16 (with ".0" when integral), else d.ddde+XX. */
static int repr_layout(char *out, size_t cap, bool neg, uint64_t digits, int exp10)
{
    char d[24], r[24];
    int nd = 0;
    do r[nd++] = (char)('0' + digits % 10);
    while ((digits /= 10) != 0);
    for (int i = 0; i < nd; i++) d[i] = r[nd - 1 - i];
    char buf[48], *w = buf;
    if (neg) *w++ = '-';
    int e = nd - 1 + exp10; /* decimal exponent of the leading digit */
    if (e < -4 || e >= 16) {
        *w++ = d[0];
        if (nd > 1) *w++ = '.';
        for (int i = 1; i < nd; i++) *w++ = d[i];
        w += sprintf(w, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    } else if (e < 0) {
        *w++ = '0';
        *w++ = '.';
        for (int i = -1; i > e; i--) *w++ = '0';
        for (int i = 0; i < nd; i++) *w++ = d[i];
    } else {
        for (int i = 0; i <= e; i++) *w++ = i < nd ? d[i] : '0';
        *w++ = '.';
        if (nd <= e + 1) *w++ = '0';
        for (int i = e + 1; i < nd; i++) *w++ = d[i];
    }
    *w = 0;
    return snprintf(out, cap, "%s", buf);
}

/* Shortest round-trip digits by exact integer arithmetic, for the doubles that dominate the
 * wire: integers below 2^53 and values in [2^27, 2^53) with a fraction — Unix timestamps in
 * seconds are 2^30..2^31, and an OTLP batch carries two per span. The snprintf/strtod search
 * below cost a fifth of stored's CPU on OTLP ingestion. With v = m * 2^e2 (-25 <= e2 <= -1)
 * the rounding interval's bounds and v itself are exact integers in units of 10^-k (k = 2-e2,
 * 5^k * 2^55 < 2^128); the answer is the coarsest power of ten with a multiple inside the
 * interval (bounds included iff m is even, as strtod rounds half to even), and of those
 * multiples the nearest to v (ties to even), as Python's repr (David Gay's mode 0) picks.
 * Returns false when v is outside that range. */
static bool format_double_exact(char *out, size_t cap, double v, int *n)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    bool neg = bits >> 63;
    int be = (int)((bits >> 52) & 0x7ff);
    if (be == 0 || be == 0x7ff) return false; /* zero, subnormal, inf, nan */
    uint64_t m = (bits & ((1ull << 52) - 1)) | (1ull << 52);
    int e2 = be - 1075;
    if (e2 > 0 || e2 < -52) return false;
    if (!(m & ((1ull << -e2) - 1))) {
        /* Integers below 2^53 print exactly: the half-ulp interval holds no shorter decimal. */
        uint64_t iv = m >> -e2;
        int z = 0;
        while (iv % 10 == 0) iv /= 10, z++;
        *n = repr_layout(out, cap, neg, iv, z);
        return true;
    }
    if (e2 < -25) return false;
    int k = 2 - e2;
    unsigned __int128 p5 = 1;
    for (int i = 0; i < k; i++) p5 *= 5;
    /* In units of 2^(e2-2): v = 4m, upper bound 4m+2, lower bound 4m-2 (4m-1 when m is a
     * power of two: the next double down is half as far). */
    unsigned __int128 V = (unsigned __int128)(4 * m) * p5;
    unsigned __int128 HI = (unsigned __int128)(4 * m + 2) * p5;
    unsigned __int128 LO = (unsigned __int128)(4 * m - (m == (1ull << 52) && be > 1 ? 1 : 2)) * p5;
    bool incl = (m & 1) == 0;
    /* Drop d0 digits at once so the rest fits 64 bits (HI < 2^118 < 10^36). */
    int d0 = 0;
    unsigned __int128 p0 = 1;
    while (HI / p0 >= (unsigned __int128)1e19) p0 *= 10, d0++;
    /* smallest multiple of 10^d in the interval, and the largest, in units of 10^d */
    uint64_t lo_q = (uint64_t)(LO / p0), hi_q = (uint64_t)(HI / p0);
    bool lo_rem = LO % p0 != 0, hi_rem = HI % p0 != 0;
    uint64_t cl = lo_q + (lo_rem || !incl);
    uint64_t ch = hi_q - (!hi_rem && !incl);
    if (cl > ch) return false; /* 17+ digits below the cut: not expected, take the slow path */
    int d = d0;
    for (;;) {
        /* nested ceil/floor compose: ceil(ceil(x/a)/b) = ceil(x/ab) */
        uint64_t ncl = cl / 10 + (cl % 10 != 0), nch = ch / 10;
        if (ncl > nch) break;
        cl = ncl, ch = nch, d++;
    }
    unsigned __int128 p = 1;
    for (int i = 0; i < d; i++) p *= 10;
    uint64_t c = (uint64_t)(V / p);
    unsigned __int128 r2 = (V % p) * 2;
    if (r2 > p || (r2 == p && (c & 1))) c++;
    if (c < cl) c = cl;
    if (c > ch) c = ch;
    int exp10 = d - k;
    while (c % 10 == 0) c /= 10, exp10++;
    *n = repr_layout(out, cap, neg, c, exp10);
    return true;
}

int agl_format_double(char *out, size_t cap, double v)
{
    if (isnan(v)) return snprintf(out, cap, "NaN");
    if (isinf(v)) return snprintf(out, cap, v > 0 ? "Infinity" : "-Infinity");
    int fast;
    if (format_double_exact(out, cap, v, &fast)) return fast;
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
