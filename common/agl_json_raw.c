/* agl_json_raw — a small JSON scanner that finds the text span of a value by path. */
#include "agl_json_raw.h"

#include <stdlib.h>
#include <string.h>

typedef struct scan {
    const char *s;
    size_t len, i;
    int depth;
} scan;

#define MAX_DEPTH 512

static void ws(scan *c)
{
    while (c->i < c->len && strchr(" \t\r\n", c->s[c->i]) && c->s[c->i]) c->i++;
}

/* Skips a string; *plain tells whether it contained no escape. */
static bool skip_string(scan *c, bool *plain)
{
    if (c->i >= c->len || c->s[c->i] != '"') return false;
    c->i++;
    if (plain) *plain = true;
    while (c->i < c->len) {
        char ch = c->s[c->i++];
        if (ch == '"') return true;
        if (ch == '\\') {
            if (plain) *plain = false;
            if (c->i >= c->len) return false;
            c->i++;
        }
    }
    return false;
}

static bool skip_value(scan *c);

static bool skip_container(scan *c, char open, char close)
{
    if (++c->depth > MAX_DEPTH) return false;
    c->i++; /* open */
    ws(c);
    if (c->i < c->len && c->s[c->i] == close) {
        c->i++;
        c->depth--;
        return true;
    }
    for (;;) {
        ws(c);
        if (open == '{') {
            if (!skip_string(c, NULL)) return false;
            ws(c);
            if (c->i >= c->len || c->s[c->i] != ':') return false;
            c->i++;
            ws(c);
        }
        if (!skip_value(c)) return false;
        ws(c);
        if (c->i >= c->len) return false;
        if (c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->s[c->i] == close) {
            c->i++;
            c->depth--;
            return true;
        }
        return false;
    }
}

static bool skip_value(scan *c)
{
    ws(c);
    if (c->i >= c->len) return false;
    char ch = c->s[c->i];
    if (ch == '"') return skip_string(c, NULL);
    if (ch == '{') return skip_container(c, '{', '}');
    if (ch == '[') return skip_container(c, '[', ']');
    /* number, true, false, null: up to the next delimiter */
    size_t start = c->i;
    while (c->i < c->len && !strchr(",]} \t\r\n", c->s[c->i]) && c->s[c->i]) c->i++;
    return c->i > start;
}

bool agl_json_raw_find(const char *text, size_t len, const char *const *path, int depth,
                       size_t *off, size_t *vlen)
{
    scan c = {text, len, 0, 0};
    for (int level = 0; level <= depth; level++) {
        ws(&c);
        if (level == depth) {
            size_t start = c.i;
            if (!skip_value(&c)) return false;
            *off = start;
            *vlen = c.i - start;
            return true;
        }
        if (c.i >= c.len) return false;
        const char *want = path[level];
        if (c.s[c.i] == '[') {
            char *end;
            long idx = strtol(want, &end, 10);
            if (*end || idx < 0) return false;
            c.i++;
            for (long k = 0;; k++) {
                ws(&c);
                if (c.i >= c.len || c.s[c.i] == ']') return false;
                if (k == idx) break;
                if (!skip_value(&c)) return false;
                ws(&c);
                if (c.i >= c.len || c.s[c.i] != ',') return false;
                c.i++;
            }
            continue;
        }
        if (c.s[c.i] != '{') return false;
        /* Scan the whole object: the last matching key wins. */
        size_t found = 0;
        bool have = false;
        size_t wl = strlen(want);
        c.i++;
        ws(&c);
        if (c.i < c.len && c.s[c.i] == '}') return false;
        for (;;) {
            ws(&c);
            size_t kstart = c.i + 1;
            bool plain;
            if (!skip_string(&c, &plain)) return false;
            size_t klen = c.i - 1 - kstart;
            ws(&c);
            if (c.i >= c.len || c.s[c.i] != ':') return false;
            c.i++;
            ws(&c);
            if (plain && klen == wl && !memcmp(c.s + kstart, want, wl)) {
                found = c.i;
                have = true;
            }
            if (!skip_value(&c)) return false;
            ws(&c);
            if (c.i >= c.len) return false;
            if (c.s[c.i] == ',') {
                c.i++;
                continue;
            }
            if (c.s[c.i] == '}') break;
            return false;
        }
        if (!have) return false;
        c.i = found;
    }
    return false;
}
