/* agl_arena — bump allocator for memory that dies together (one request, one batch).
 * Nothing is freed individually; agl_arena_free() releases everything at once. */
#ifndef AGL_ARENA_H
#define AGL_ARENA_H

#include <stddef.h>

typedef struct agl_arena_chunk agl_arena_chunk;
typedef struct agl_arena {
    agl_arena_chunk *head;
    size_t total; /* bytes handed out, for metrics and tests */
} agl_arena;

void agl_arena_init(agl_arena *a);
void *agl_arena_alloc(agl_arena *a, size_t n); /* 16-byte aligned, never NULL (aborts on OOM) */
void *agl_arena_calloc(agl_arena *a, size_t n);
char *agl_arena_strdup(agl_arena *a, const char *s); /* NULL in, NULL out */
char *agl_arena_strndup(agl_arena *a, const char *s, size_t n);
char *agl_arena_printf(agl_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void agl_arena_free(agl_arena *a); /* releases all chunks; the arena can be reused */

#endif
