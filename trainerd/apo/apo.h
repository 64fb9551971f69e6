/* apo — internal interfaces of `trainerd apo` (algorithms.md §1). The pieces are separate so
 * the unit tests reach them: apo_core.c (random draws, batch iterators, parent sampling, ranking,
 * placeholders), apo_input.c (datasets, seed), apo_prompts.c (critic and editor messages),
 * apo_eval.c (evaluations through the store), apo_state.c (resumable state), apo.c (the run). */
#ifndef TRAINERD_APO_H
#define TRAINERD_APO_H

#include "agl_err.h"
#include "agl_llm_client.h"
#include "agl_store_client.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- apo_core.c: deterministic randomness (every draw happens on the main thread, in the
 * same order on every run with the same seed, which is what makes a restart replayable) ---- */
typedef struct apo_rng {
    uint64_t s[4];
} apo_rng;

void apo_rng_seed(apo_rng *r, uint64_t seed);
uint64_t apo_rng_next(apo_rng *r);
size_t apo_rng_below(apo_rng *r, size_t n); /* uniform in [0, n); n > 0 */
void apo_rng_shuffle(apo_rng *r, size_t *v, size_t n);

/* batch_iter_over_dataset of the reference (algorithms.md §1.3): infinite; batch >= n gives a
 * fresh permutation of everything each time; otherwise epochs of shuffled indices fill a running
 * batch that skips indices it already holds and carries over epoch boundaries. */
typedef struct apo_batch_iter {
    size_t n, batch;
    size_t *perm, pos; /* current epoch and the next position in it */
    size_t *cur, ncur; /* running batch */
    apo_rng *rng;
} apo_batch_iter;

void apo_batch_iter_init(apo_batch_iter *it, size_t n, size_t batch, apo_rng *rng);
/* Writes the next batch to out (capacity >= apo_batch_iter_size) and returns its size. */
size_t apo_batch_iter_next(apo_batch_iter *it, size_t *out);
size_t apo_batch_iter_size(const apo_batch_iter *it);
void apo_batch_iter_free(apo_batch_iter *it);

/* Parent sampling (§1.8): with fewer than width beam members, member i % beam_len for i in
 * 0..width-1; otherwise width distinct members drawn without replacement (random.sample order). */
void apo_sample_parents(apo_rng *r, size_t beam_len, size_t width, size_t *out);

/* Stable descending ranking: order[] receives 0..n-1 sorted by score, ties (and NaN last) kept in
 * index order — the reference's sorted(..., reverse=True) keeps older candidates first. */
void apo_rank(const double *score, size_t n, size_t *order);

/* f-string fields of a template ({name}, {name:spec}, {name!r}, {a.b}, {a[0]} → the base name;
 * {{ and }} are literal). Returns the number of distinct names written to names (each malloc'd,
 * caller frees with apo_names_free), or -1 with why filled for an unbalanced brace. */
int apo_placeholders(const char *tmpl, char ***names, char *why, size_t why_cap);
void apo_names_free(char **names, int n);
/* 0 when every placeholder of seed appears in cand; otherwise -1 and why names the first
 * missing one (or cand's syntax error). */
int apo_placeholders_check(const char *seed, const char *cand, char *why, size_t why_cap);

/* FNV-1a 64 over bytes, chained: h = apo_hash(h, p, n); start with APO_HASH_INIT. */
#define APO_HASH_INIT 0xcbf29ce484222325ULL
uint64_t apo_hash(uint64_t h, const void *p, size_t n);

/* ---- apo_input.c ---- */
typedef struct apo_dataset {
    size_t n;
    json_t **items; /* owned */
    char *text;     /* the raw file, for the run id */
} apo_dataset;

/* Reads JSON Lines: one task per non-blank line. Errors name file:line. */
agl_code apo_dataset_load(const char *path, apo_dataset *out, agl_error *err);
void apo_dataset_free(apo_dataset *d);

/* The seed: a text file (the template itself), or a JSON object of NamedResources holding the
 * prompt template under resource_name (NULL name: the first prompt_template) plus any other
 * resources (e.g. main_llm) published with every candidate. */
typedef struct apo_seed {
    char *resource_name;
    char *template_text;
    json_t *resources; /* NamedResources to publish, the template slot included */
} apo_seed;

agl_code apo_seed_load(const char *path, const char *resource_name, apo_seed *out, agl_error *err);
void apo_seed_free(apo_seed *s);

/* ---- apo_prompts.c: critic and editor messages (texts under trainerd/apo/prompts/) ---- */
#define APO_N_CRITIQUE_VARIANTS 3
#define APO_N_EDIT_VARIANTS 2
/* results: array of {status, final_reward, messages} (the messages adapter's output). Returns
 * a new reference to the chat messages array. */
json_t *apo_critique_messages(int variant, const char *template_text, const json_t *results);
json_t *apo_edit_messages(int variant, const char *template_text, const char *critique);
/* The editor's answer as a template: strips a wrapping ``` fence or <template> tags, which
 * models add despite being asked not to. Caller frees. */
char *apo_clean_edit(const char *answer);

/* ---- apo_eval.c: one evaluation = one candidate on a list of tasks, through the store ---- */
typedef struct apo_progress apo_progress;

typedef struct apo_eval {
    /* in */
    const char *resources_id; /* the candidate's version, published beforehand */
    const char *mode;         /* "train" or "val" */
    size_t n;
    size_t *tasks; /* indices into ds */
    const apo_dataset *ds;
    double timeout_s;
    char **known_ids; /* rollout ids of an earlier run of this evaluation (resume), or NULL */
    /* out */
    char **rollout_ids; /* n, malloc'd */
    size_t n_finished;
    double score;
    json_t *results; /* array of {rollout_id, status, final_reward, messages}; may be NULL */
} apo_eval;

/* Publishes {resource_name: template} + the seed's other resources under resources_id. */
agl_code apo_publish(agl_store_client *sc, const apo_seed *seed, const char *resources_id,
                     const char *template_text, agl_error *err);
/* Enqueues one rollout per task (or adopts known_ids) and fills rollout_ids. */
agl_code apo_eval_enqueue(agl_store_client *sc, apo_eval *ev, agl_error *err);
/* Waits on the store until every rollout is terminal or the deadline; counts finished ones into
 * progress as they finish. */
agl_code apo_eval_wait(agl_store_client *sc, apo_eval *ev, apo_progress *pg, agl_error *err);
/* Reads the finished rollouts' rewards and messages (POST /v1/agl/messages/search) and sets
 * results, n_finished and score (§1.4 step 5: missing rewards count 0, unfinished ones are
 * left out). */
agl_code apo_eval_collect(agl_store_client *sc, apo_eval *ev, bool want_results, agl_error *err);
void apo_eval_free(apo_eval *ev);

/* ---- progress (apo.c) ---- */
struct apo_progress {
    pthread_mutex_t mu;
    double t0;
    int round, rounds;
    long rollouts_done, rollouts_total;
    int evals_done, evals_total; /* this round's candidate evaluations */
    double best;
    char best_version[32];
    double last_print;
};
void apo_progress_rollouts(apo_progress *pg, long n);

#endif
