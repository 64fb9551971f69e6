/* apo_core — the pure parts of APO: seeded randomness, the reference's dataset batch iterator,
 * parent sampling, stable ranking and f-string placeholder checks. No I/O. */
#include "agl_alloc.h"
#include "apo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* xoshiro256** seeded through splitmix64. */
static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void apo_rng_seed(apo_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t apo_rng_next(apo_rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

size_t apo_rng_below(apo_rng *r, size_t n)
{
    /* rejection sampling: no modulo bias */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = apo_rng_next(r);
    while (x >= lim);
    return (size_t)(x % n);
}

void apo_rng_shuffle(apo_rng *r, size_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = apo_rng_below(r, i), t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ---- batch iterator ---- */

void apo_batch_iter_init(apo_batch_iter *it, size_t n, size_t batch, apo_rng *rng)
{
    memset(it, 0, sizeof *it);
    it->n = n;
    it->batch = batch;
    it->rng = rng;
    it->perm = agl_calloc(n ? n : 1, sizeof(size_t));
    it->cur = agl_calloc(batch ? batch : 1, sizeof(size_t));
    it->pos = n; /* forces a shuffle on the first call */
}

size_t apo_batch_iter_size(const apo_batch_iter *it)
{
    return it->batch >= it->n ? it->n : it->batch;
}

static void new_epoch(apo_batch_iter *it)
{
    for (size_t i = 0; i < it->n; i++) it->perm[i] = i;
    apo_rng_shuffle(it->rng, it->perm, it->n);
    it->pos = 0;
}

size_t apo_batch_iter_next(apo_batch_iter *it, size_t *out)
{
    if (it->n == 0) return 0;
    if (it->batch >= it->n) {
        new_epoch(it);
        memcpy(out, it->perm, it->n * sizeof(size_t));
        it->pos = it->n;
        return it->n;
    }
    for (;;) {
        if (it->pos >= it->n) new_epoch(it);
        size_t idx = it->perm[it->pos++];
        bool dup = false;
        for (size_t i = 0; i < it->ncur && !dup; i++) dup = it->cur[i] == idx;
        if (dup) continue; /* the reference drops it for this epoch */
        it->cur[it->ncur++] = idx;
        if (it->ncur == it->batch) {
            memcpy(out, it->cur, it->batch * sizeof(size_t));
            it->ncur = 0;
            return it->batch;
        }
    }
}

void apo_batch_iter_free(apo_batch_iter *it)
{
    free(it->perm);
    free(it->cur);
    it->perm = it->cur = NULL;
}

/* ---- parents and ranking ---- */

void apo_sample_parents(apo_rng *r, size_t beam_len, size_t width, size_t *out)
{
    if (beam_len < width) {
        for (size_t i = 0; i < width; i++) out[i] = i % beam_len;
        return;
    }
    /* random.sample(range(beam_len), width): a partial Fisher-Yates over the index pool */
    size_t *pool = agl_malloc(beam_len * sizeof(size_t));
    for (size_t i = 0; i < beam_len; i++) pool[i] = i;
    for (size_t i = 0; i < width; i++) {
        size_t j = i + apo_rng_below(r, beam_len - i), t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        out[i] = pool[i];
    }
    free(pool);
}

static bool ranks_before(double a, size_t ia, double b, size_t ib)
{
    if (isnan(a) != isnan(b)) return !isnan(a);
    if (!isnan(a) && a != b) return a > b;
    return ia < ib;
}

void apo_rank(const double *score, size_t n, size_t *order)
{
    /* insertion sort: stable, and n is a few dozen at most */
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        while (j > 0 && ranks_before(score[i], i, score[order[j - 1]], order[j - 1])) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* ---- placeholders ---- */

void apo_names_free(char **names, int n)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

int apo_placeholders(const char *t, char ***names, char *why, size_t why_cap)
{
    int n = 0, cap = 4;
    char **v = agl_malloc((size_t)cap * sizeof(char *));
    for (size_t i = 0; t[i]; i++) {
        if (t[i] == '}') {
            if (t[i + 1] == '}') {
                i++;
                continue;
            }
            snprintf(why, why_cap, "single '}' at offset %zu", i);
            apo_names_free(v, n);
            return -1;
        }
        if (t[i] != '{') continue;
        if (t[i + 1] == '{') {
            i++;
            continue;
        }
        size_t j = i + 1, depth = 1;
        while (t[j] && depth) { /* format specs may nest: {x:{w}} */
            if (t[j] == '{') depth++;
            if (t[j] == '}') depth--;
            if (depth) j++;
        }
        if (!t[j]) {
            snprintf(why, why_cap, "unclosed '{' at offset %zu", i);
            apo_names_free(v, n);
            return -1;
        }
        size_t k = i + 1;
        while (k < j && !strchr(":!.[", t[k])) k++;
        char *name = agl_strndup(t + i + 1, k - i - 1);
        bool seen = false;
        for (int m = 0; m < n && !seen; m++) seen = !strcmp(v[m], name);
        if (seen) {
            free(name);
        } else {
            if (n == cap) v = agl_realloc(v, (size_t)(cap *= 2) * sizeof(char *));
            v[n++] = name;
        }
        i = j;
    }
    *names = v;
    return n;
}

int apo_placeholders_check(const char *seed, const char *cand, char *why, size_t why_cap)
{
    char **sn, **cn;
    int ns = apo_placeholders(seed, &sn, why, why_cap);
    if (ns < 0) return 0; /* an unparsable seed has nothing we could hold a child to */
    int nc = apo_placeholders(cand, &cn, why, why_cap);
    if (nc < 0) {
        apo_names_free(sn, ns);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < ns && !rc; i++) {
        bool found = false;
        for (int j = 0; j < nc && !found; j++) found = !strcmp(sn[i], cn[j]);
        if (!found) {
            snprintf(why, why_cap, "placeholder {%s} of the seed is missing", sn[i]);
            rc = -1;
        }
    }
    apo_names_free(sn, ns);
    apo_names_free(cn, nc);
    return rc;
}

uint64_t apo_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
