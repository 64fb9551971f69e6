/* agl_arena — chunked bump allocator. */
#include "agl_arena.h"
#include "agl_alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct agl_arena_chunk {
    agl_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define ARENA_CHUNK 8192

void agl_arena_init(agl_arena *a)
{
    a->head = NULL;
    a->total = 0;
}

void *agl_arena_alloc(agl_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    agl_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = agl_malloc(sizeof *c + cap);
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->total += n;
    return p;
}

void *agl_arena_calloc(agl_arena *a, size_t n)
{
    void *p = agl_arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

char *agl_arena_strndup(agl_arena *a, const char *s, size_t n)
{
    if (!s) return NULL;
    char *p = agl_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *agl_arena_strdup(agl_arena *a, const char *s)
{
    return s ? agl_arena_strndup(a, s, strlen(s)) : NULL;
}

char *agl_arena_printf(agl_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = agl_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void agl_arena_free(agl_arena *a)
{
    agl_arena_chunk *c = a->head;
    while (c) {
        agl_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    agl_arena_init(a);
}
