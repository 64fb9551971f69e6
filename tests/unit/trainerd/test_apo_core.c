/* Unit tests for trainerd/apo/apo_core.c and apo_prompts.c: the reference's batch iterator (no
 * duplicates within a batch, epochs carried over, full permutations when the batch covers the
 * dataset), parent sampling, stable ranking, placeholder checks, the critic/editor messages. */
#include "../../../trainerd/apo/apo.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <string.h>

static void test_batches_have_no_duplicates_and_cover_epochs(void **state)
{
    apo_rng rng;
    apo_rng_seed(&rng, 42);
    apo_batch_iter it;
    const size_t n = 10, b = 4;
    apo_batch_iter_init(&it, n, b, &rng);
    assert_int_equal(apo_batch_iter_size(&it), b);
    size_t seen[10] = {0}, out[4];
    for (int k = 0; k < 250; k++) {
        assert_int_equal(apo_batch_iter_next(&it, out), b);
        for (size_t i = 0; i < b; i++) {
            assert_true(out[i] < n);
            for (size_t j = 0; j < i; j++) assert_true(out[i] != out[j]);
            seen[out[i]]++;
        }
    }
    /* 1000 draws over 10 items: every item about 100 times (each epoch uses each at most once,
     * so no item can run far ahead of the others) */
    for (size_t i = 0; i < n; i++) assert_in_range(seen[i], 80, 110);
    apo_batch_iter_free(&it);
}

static void test_partial_batch_carries_over_the_epoch(void **state)
{
    /* n = 3, batch = 2: the second batch takes the last index of epoch 1 and the first
     * acceptable index of epoch 2 */
    apo_rng rng;
    apo_rng_seed(&rng, 7);
    apo_batch_iter it;
    apo_batch_iter_init(&it, 3, 2, &rng);
    size_t a[2], b2[2], c[2];
    apo_batch_iter_next(&it, a);
    size_t first_epoch[3];
    memcpy(first_epoch, it.perm, sizeof first_epoch);
    apo_batch_iter_next(&it, b2);
    assert_int_equal(b2[0], first_epoch[2]); /* carried from epoch 1 */
    assert_true(b2[1] != b2[0]);
    apo_batch_iter_next(&it, c);
    assert_true(c[0] != c[1]);
    apo_batch_iter_free(&it);
}

static void test_batch_covering_the_dataset_is_a_permutation(void **state)
{
    apo_rng rng;
    apo_rng_seed(&rng, 1);
    apo_batch_iter it;
    apo_batch_iter_init(&it, 5, 16, &rng);
    assert_int_equal(apo_batch_iter_size(&it), 5);
    size_t out[5];
    int differs = 0;
    size_t prev[5] = {0};
    for (int k = 0; k < 20; k++) {
        assert_int_equal(apo_batch_iter_next(&it, out), 5);
        int mask = 0;
        for (int i = 0; i < 5; i++) mask |= 1 << out[i];
        assert_int_equal(mask, 31);
        if (k && memcmp(prev, out, sizeof out)) differs = 1;
        memcpy(prev, out, sizeof out);
    }
    assert_true(differs); /* reshuffled each time */
    apo_batch_iter_free(&it);
}

static void test_same_seed_same_batches(void **state)
{
    apo_rng r1, r2;
    apo_rng_seed(&r1, 99);
    apo_rng_seed(&r2, 99);
    apo_batch_iter a, b;
    apo_batch_iter_init(&a, 13, 4, &r1);
    apo_batch_iter_init(&b, 13, 4, &r2);
    for (int k = 0; k < 30; k++) {
        size_t x[4], y[4];
        apo_batch_iter_next(&a, x);
        apo_batch_iter_next(&b, y);
        assert_memory_equal(x, y, sizeof x);
    }
    apo_batch_iter_free(&a);
    apo_batch_iter_free(&b);
}

static void test_parent_sampling(void **state)
{
    apo_rng rng;
    apo_rng_seed(&rng, 3);
    size_t out[4];
    /* a beam smaller than the width is replicated in order */
    apo_sample_parents(&rng, 1, 4, out);
    for (int i = 0; i < 4; i++) assert_int_equal(out[i], 0);
    apo_sample_parents(&rng, 3, 4, out);
    size_t want[4] = {0, 1, 2, 0};
    assert_memory_equal(out, want, sizeof want);
    /* a full beam: distinct members, every member picked over many draws */
    int count[6] = {0};
    for (int k = 0; k < 600; k++) {
        apo_sample_parents(&rng, 6, 4, out);
        for (int i = 0; i < 4; i++) {
            assert_true(out[i] < 6);
            for (int j = 0; j < i; j++) assert_true(out[i] != out[j]);
            count[out[i]]++;
        }
    }
    for (int i = 0; i < 6; i++) assert_in_range(count[i], 300, 500); /* 400 expected */
    /* width == beam: a permutation */
    apo_sample_parents(&rng, 4, 4, out);
    int mask = 0;
    for (int i = 0; i < 4; i++) mask |= 1 << out[i];
    assert_int_equal(mask, 15);
}

static void test_rank_is_stable_and_descending(void **state)
{
    double s[] = {0.5, 0.75, 0.5, NAN, 0.75, 0.25, 0.5};
    size_t order[7];
    apo_rank(s, 7, order);
    size_t want[7] = {1, 4, 0, 2, 6, 5, 3}; /* ties keep creation order; NaN last */
    assert_memory_equal(order, want, sizeof want);
    double one[] = {1.0};
    apo_rank(one, 1, order);
    assert_int_equal(order[0], 0);
}

static void test_placeholders(void **state)
{
    char **names, why[128];
    int n = apo_placeholders("Q: {question} {{literal}} {ctx.name} {question} {n:>4} {x!r} "
                             "{y[0]} {w:{width}}",
                             &names, why, sizeof why);
    assert_int_equal(n, 6);
    const char *want[] = {"question", "ctx", "n", "x", "y", "w"};
    for (int i = 0; i < n; i++) assert_string_equal(names[i], want[i]);
    apo_names_free(names, n);
    assert_int_equal(apo_placeholders("no fields {{here}}", &names, why, sizeof why), 0);
    apo_names_free(names, 0);
    assert_int_equal(apo_placeholders("broken {field", &names, why, sizeof why), -1);
    assert_non_null(strstr(why, "unclosed"));
    assert_int_equal(apo_placeholders("stray } brace", &names, why, sizeof why), -1);

    const char *seed = "Review: {text}\nLanguage: {lang}";
    assert_int_equal(apo_placeholders_check(seed, "Say one word.\n{lang} {text}", why, sizeof why),
                     0);
    assert_int_equal(apo_placeholders_check(seed, "Review: {text}", why, sizeof why), -1);
    assert_string_equal(why, "placeholder {lang} of the seed is missing");
    /* an escaped brace is not a placeholder */
    assert_int_equal(apo_placeholders_check(seed, "{{text}} {lang}", why, sizeof why), -1);
    assert_int_equal(apo_placeholders_check(seed, "{text} {lang", why, sizeof why), -1);
    /* new placeholders are allowed (the agent's rendering decides) */
    assert_int_equal(apo_placeholders_check(seed, "{text} {lang} {extra}", why, sizeof why), 0);
}

static void test_clean_edit(void **state)
{
    char *s = apo_clean_edit("```text\nDo {x}.\nThen stop.\n```\n");
    assert_string_equal(s, "Do {x}.\nThen stop.");
    free(s);
    s = apo_clean_edit("  <template>\nDo {x}.\n</template>");
    assert_string_equal(s, "Do {x}.");
    free(s);
    s = apo_clean_edit("\nPlain {x} answer.\n\n");
    assert_string_equal(s, "Plain {x} answer.");
    free(s);
    s = apo_clean_edit("Keep ``` inside {x} text");
    assert_string_equal(s, "Keep ``` inside {x} text");
    free(s);
}

static void test_critic_and_editor_messages(void **state)
{
    json_t *results = json_loads(
        "[{\"rollout_id\":\"ro-1\",\"status\":\"succeeded\",\"final_reward\":0.0,"
        "\"messages\":[{\"messages\":[{\"role\":\"user\",\"content\":\"Q: 2+2\"},"
        "{\"role\":\"assistant\",\"content\":\"five\"}],\"tools\":null}]},"
        "{\"rollout_id\":\"ro-2\",\"status\":\"failed\",\"final_reward\":null,\"messages\":[]}]",
        0, NULL);
    assert_non_null(results);
    for (int v = 0; v < APO_N_CRITIQUE_VARIANTS; v++) {
        json_t *m = apo_critique_messages(v, "Q: {question}", results);
        assert_int_equal(json_array_size(m), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "role")),
                            "system");
        const char *u = json_string_value(json_object_get(json_array_get(m, 1), "content"));
        assert_non_null(strstr(u, "<template>\nQ: {question}\n</template>"));
        assert_non_null(strstr(u, "Run 1 — status: succeeded, final reward: 0"));
        assert_non_null(strstr(u, "[assistant] five"));
        assert_non_null(strstr(u, "Run 2 — status: failed, final reward: none"));
        assert_null(strstr(u, "{{")); /* every marker replaced */
        json_decref(m);
    }
    for (int v = 0; v < APO_N_EDIT_VARIANTS; v++) {
        json_t *m = apo_edit_messages(v, "Q: {question}", "- be brief");
        const char *sys = json_string_value(json_object_get(json_array_get(m, 0), "content"));
        const char *u = json_string_value(json_object_get(json_array_get(m, 1), "content"));
        assert_non_null(strstr(sys, "{placeholder}"));
        assert_non_null(strstr(u, "Q: {question}"));
        assert_non_null(strstr(u, "- be brief"));
        json_decref(m);
    }
    json_decref(results);
}

static void test_hash_is_stable(void **state)
{
    uint64_t h = apo_hash(APO_HASH_INIT, "abc", 3);
    assert_true(h == 0xe71fa2190541574bULL); /* FNV-1a 64 of "abc" */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_have_no_duplicates_and_cover_epochs),
        cmocka_unit_test(test_partial_batch_carries_over_the_epoch),
        cmocka_unit_test(test_batch_covering_the_dataset_is_a_permutation),
        cmocka_unit_test(test_same_seed_same_batches),
        cmocka_unit_test(test_parent_sampling),
        cmocka_unit_test(test_rank_is_stable_and_descending),
        cmocka_unit_test(test_placeholders),
        cmocka_unit_test(test_clean_edit),
        cmocka_unit_test(test_critic_and_editor_messages),
        cmocka_unit_test(test_hash_is_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
