/* agl_alloc — abort-on-OOM allocation wrappers. */
#include "agl_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n, const char *file, int line)
{
    fprintf(stderr, "agl: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void *agl_malloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n, file, line);
    return p;
}

void *agl_calloc_at(size_t n, size_t sz, const char *file, int line)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) oom(n * sz, file, line);
    return p;
}

void *agl_realloc_at(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n, file, line);
    return q;
}

char *agl_strdup_at(const char *s, const char *file, int line)
{
    return agl_strndup_at(s, strlen(s), file, line);
}

char *agl_strndup_at(const char *s, size_t n, const char *file, int line)
{
    char *p = agl_malloc_at(n + 1, file, line);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}
