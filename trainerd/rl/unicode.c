/* unicode — UTF-8, character classes for the pre-tokenizers and NFC (see unicode.h). */
#include "unicode.h"

#include "agl_alloc.h"

#include <stdint.h>
#include <stdlib.h>

#define RL_UTF8_BAD 0x8000FFFDu

/* Expected length of a sequence starting with lead byte b, 0 if b cannot start one. */
static int lead_len(unsigned b)
{
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Whether byte k (1-based) of a sequence led by b is acceptable (RFC 3629 table: no overlongs,
 * no surrogates, nothing above U+10FFFF). */
static int cont_ok(unsigned lead, int k, unsigned b)
{
    if ((b & 0xC0) != 0x80) return 0;
    if (k != 1) return 1;
    if (lead == 0xE0) return b >= 0xA0;
    if (lead == 0xED) return b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90;
    if (lead == 0xF4) return b <= 0x8F;
    return 1;
}

int rl_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    int len = lead_len(s[0]);
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    if (len == 0 || (size_t)len > n) {
        *cp = RL_UTF8_BAD;
        return 1;
    }
    for (int k = 1; k < len; k++)
        if (!cont_ok(s[0], k, s[k])) {
            *cp = RL_UTF8_BAD;
            return 1;
        }
    uint32_t c = s[0] & (0xFF >> (len + 1));
    for (int k = 1; k < len; k++) c = (c << 6) | (s[k] & 0x3F);
    *cp = c;
    return len;
}

size_t rl_utf8_valid_prefix(const unsigned char *s, size_t n, int *incomplete)
{
    size_t i = 0;
    *incomplete = 0;
    while (i < n) {
        int len = lead_len(s[i]);
        if (len == 0) return i;
        int k = 1;
        while (k < len && i + k < n && cont_ok(s[i], k, s[i + k])) k++;
        if (k < len) {
            *incomplete = i + k == n; /* ran out of bytes, not into a bad one */
            return i;
        }
        i += len;
    }
    return i;
}

int rl_utf8_bad_len(const unsigned char *s, size_t n)
{
    int len = lead_len(s[0]), k = 1;
    if (len <= 1) return 1;
    while (k < len && (size_t)k < n && cont_ok(s[0], k, s[k])) k++;
    return k;
}

int rl_utf8_put(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static int in_ranges(const uint32_t (*r)[2], unsigned n, uint32_t cp)
{
    unsigned lo = 0, hi = n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

int rl_uni_is_letter(uint32_t cp)
{
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(rl_uni_letter, rl_uni_letter_n, cp);
}

int rl_uni_is_number(uint32_t cp)
{
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(rl_uni_number, rl_uni_number_n, cp);
}

int rl_uni_is_space(uint32_t cp)
{
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

/* ---------------------------------------------------------------- NFC (UAX #15) */
/* Hangul syllables: S = SBASE + (L * VCOUNT + V) * TCOUNT + T (Unicode 3.12). */
enum {
    SBASE = 0xAC00,
    LBASE = 0x1100,
    VBASE = 0x1161,
    TBASE = 0x11A7,
    LCOUNT = 19,
    VCOUNT = 21,
    TCOUNT = 28,
    NCOUNT = VCOUNT * TCOUNT,
    SCOUNT = LCOUNT * NCOUNT
};
/* What an invalid byte b becomes among the code points: above U+10FFFF (no table matches it,
 * class 0, composes with nothing) and it keeps the byte to be written back. */
#define NFC_RAW(b) (0x80000000u | (b))
#define NFC_IS_RAW(c) ((c)&0x80000000u)
/* Below U+0300 every character has class 0 and NFC_Quick_Check Yes (asserted by unicode_gen.py). */
#define NFC_QUIET 0x300

/* Whether cp may have a non-zero class or a quick check other than Yes (the block bitmap of
 * unicode_nfc_tab.c: one bit per 128 code points). */
static int nfc_busy(uint32_t cp)
{
    return cp >= NFC_QUIET && cp < 0x40000 && (rl_uni_nfc_busy[cp >> 12] >> ((cp >> 7) & 31) & 1);
}

int rl_uni_combining_class(uint32_t cp)
{
    if (!nfc_busy(cp)) return 0;
    unsigned lo = 0, hi = rl_uni_ccc_n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (cp < rl_uni_ccc[mid][0])
            hi = mid;
        else if (cp > rl_uni_ccc[mid][1])
            lo = mid + 1;
        else
            return (int)rl_uni_ccc[mid][2];
    }
    return 0;
}

int rl_uni_is_nfc_quick(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    int last = 0;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0xCC) { /* ASCII, continuation bytes (invalid here) and leads below U+0300 */
            i += u[i] >= 0xC2 && i + 1 < n && (u[i + 1] & 0xC0) == 0x80 ? 2 : 1;
            last = 0;
            continue;
        }
        uint32_t cp;
        i += (size_t)rl_utf8_next(u + i, n - i, &cp);
        if (!nfc_busy(cp)) { /* CJK, Hangul syllables, most scripts */
            last = 0;
            continue;
        }
        int ccc = rl_uni_combining_class(cp);
        if ((ccc && last > ccc) || in_ranges(rl_uni_nfc_qc, rl_uni_nfc_qc_n, cp)) return 0;
        last = ccc;
    }
    return 1;
}

/* Appends the full canonical decomposition of cp to d (at most 4 code points). */
static size_t decompose(uint32_t cp, uint32_t *d)
{
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE, t = s % TCOUNT;
        d[0] = LBASE + s / NCOUNT;
        d[1] = VBASE + (s % NCOUNT) / TCOUNT;
        if (!t) return 2;
        d[2] = TBASE + t;
        return 3;
    }
    if (cp >= 0xC0 && !NFC_IS_RAW(cp)) {
        unsigned lo = 0, hi = rl_uni_decomp_n;
        while (lo < hi) {
            unsigned mid = (lo + hi) / 2;
            if (cp < rl_uni_decomp[mid][0])
                hi = mid;
            else if (cp > rl_uni_decomp[mid][0])
                lo = mid + 1;
            else {
                const uint32_t *p = rl_uni_decomp_cp + rl_uni_decomp[mid][1];
                for (uint32_t k = 0; k < rl_uni_decomp[mid][2]; k++) d[k] = p[k];
                return rl_uni_decomp[mid][2];
            }
        }
    }
    d[0] = cp;
    return 1;
}

/* The primary composite of a + b, or 0 when there is none. */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    unsigned lo = 0, hi = rl_uni_comp_n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        const uint32_t *c = rl_uni_comp[mid];
        if (a < c[0] || (a == c[0] && b < c[1]))
            hi = mid;
        else if (a > c[0] || b > c[1])
            lo = mid + 1;
        else
            return c[2];
    }
    return 0;
}

char *rl_uni_nfc(const char *s, size_t n, size_t *out_len)
{
    if (rl_uni_is_nfc_quick(s, n)) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    /* a character of k >= 2 bytes decomposes into at most 4 <= 2k code points (asserted by
     * unicode_gen.py), an ASCII or invalid byte stays one */
    uint32_t *d = agl_malloc(sizeof(uint32_t) * (2 * n + 1));
    unsigned char *cc = agl_malloc(2 * n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = rl_utf8_next(u + i, n - i, &cp);
        if (cp == RL_UTF8_BAD) cp = NFC_RAW(u[i]);
        i += (size_t)len;
        size_t k = decompose(cp, d + m);
        for (size_t j = m; j < m + k; j++) {
            /* canonical ordering: insertion sort (stable) of each run of non-starters */
            uint32_t c = d[j];
            int cl = rl_uni_combining_class(c);
            size_t p = j;
            if (cl)
                for (; p > 0 && cc[p - 1] > cl; p--) d[p] = d[p - 1], cc[p] = cc[p - 1];
            d[p] = c;
            cc[p] = (unsigned char)cl;
        }
        m += k;
    }
    /* canonical composition: each character joins the last starter unless blocked, i.e. unless
     * a character in between (all kept, so the last one written has the highest class of the
     * sorted run) is a starter or has a class >= its own */
    size_t o = 0, starter = SIZE_MAX;
    for (size_t j = 0; j < m; j++) {
        uint32_t c = d[j];
        int cl = cc[j];
        if (starter != SIZE_MAX) {
            int adjacent = o == starter + 1, prev = cc[o - 1];
            if (adjacent || (prev && prev < cl)) {
                uint32_t x = compose(d[starter], c);
                if (x) {
                    d[starter] = x;
                    continue;
                }
            }
        }
        if (!cl) starter = o;
        d[o] = c;
        cc[o] = (unsigned char)cl;
        o++;
    }
    char *out = agl_malloc(4 * o + 1);
    size_t len = 0;
    for (size_t j = 0; j < o; j++) {
        if (NFC_IS_RAW(d[j]))
            out[len++] = (char)(d[j] & 0xFF);
        else
            len += (size_t)rl_utf8_put(d[j], out + len);
    }
    out[len] = 0;
    free(d), free(cc);
    *out_len = len;
    return out;
}
