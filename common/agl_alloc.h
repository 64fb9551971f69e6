/* agl_alloc — allocation wrappers that abort with file:line on out-of-memory.
 * A daemon that cannot allocate a few bytes cannot answer anyone usefully; dying loudly
 * is better than threading NULL checks through every call site. */
#ifndef AGL_ALLOC_H
#define AGL_ALLOC_H

#include <stddef.h>

void *agl_malloc_at(size_t n, const char *file, int line);
void *agl_calloc_at(size_t n, size_t sz, const char *file, int line);
void *agl_realloc_at(void *p, size_t n, const char *file, int line);
char *agl_strdup_at(const char *s, const char *file, int line);
char *agl_strndup_at(const char *s, size_t n, const char *file, int line);

#define agl_malloc(n) agl_malloc_at((n), __FILE__, __LINE__)
#define agl_calloc(n, sz) agl_calloc_at((n), (sz), __FILE__, __LINE__)
#define agl_realloc(p, n) agl_realloc_at((p), (n), __FILE__, __LINE__)
#define agl_strdup(s) agl_strdup_at((s), __FILE__, __LINE__)
#define agl_strndup(s, n) agl_strndup_at((s), (n), __FILE__, __LINE__)

#endif
