/* unicode — UTF-8 and character classes for the pre-tokenizers (see unicode.h). */
#include "unicode.h"

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
