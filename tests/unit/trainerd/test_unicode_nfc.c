/* Unit tests for the NFC normalizer of trainerd/rl/unicode and its place in the BPE encoder:
 * hand cases for each part of UAX #15 (decomposition incl. Hangul, canonical reordering,
 * composition incl. Hangul LV/LVT, blocking, singletons, composition exclusions, non-starter
 * decompositions), the no-copy fast path, invalid UTF-8, and AddedVocabulary's order (tokens
 * with normalized = false split out of the raw text, normalized ones out of the NFC text). The
 * expected strings were taken from Python's unicodedata.normalize("NFC", s); the comparison on
 * thousands of generated strings and with HF `tokenizers` is
 * tests/integration/test_tokenizer_nfc.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../trainerd/rl/bpe.h"
#include "../../../trainerd/rl/gguf.h"
#include "../../../trainerd/rl/hf.h"
#include "../../../trainerd/rl/unicode.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NFC of in must be want (a NULL result means "unchanged"). */
static void expect_nfc(const char *in, const char *want)
{
    size_t n;
    char *out = rl_uni_nfc(in, strlen(in), &n);
    const char *got = out ? out : in;
    size_t glen = out ? n : strlen(in);
    if (glen != strlen(want) || memcmp(got, want, glen)) {
        fprintf(stderr, "NFC of");
        for (const char *p = in; *p; p++) fprintf(stderr, " %02X", (unsigned char)*p);
        fprintf(stderr, ": got");
        for (size_t i = 0; i < glen; i++) fprintf(stderr, " %02X", (unsigned char)got[i]);
        fprintf(stderr, "\n");
        fail();
    }
    if (out) assert_int_equal(out[n], 0);
    free(out);
}

static void test_fast_path(void **state)
{
    size_t n = 99;
    const char *nfc[] = {"",
                         "plain ASCII text\n",
                         "caf\xc3\xa9 na\xc3\xafve", /* precomposed */
                         "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xe6\x97\xa5\xe6\x9c\xac",
                         "\xff\xfe\xc3", /* invalid bytes are starters */
                         "a\xcc\xa3\xcc\x82x" /* in order, but U+0323 is Maybe */};
    for (int i = 0; i < 5; i++) {
        assert_true(rl_uni_is_nfc_quick(nfc[i], strlen(nfc[i])));
        assert_null(rl_uni_nfc(nfc[i], strlen(nfc[i]), &n));
    }
    assert_int_equal(n, 99); /* untouched */
    assert_false(rl_uni_is_nfc_quick(nfc[5], strlen(nfc[5])));
    assert_false(rl_uni_is_nfc_quick("e\xcc\x81", 3));         /* Maybe: U+0301 */
    assert_false(rl_uni_is_nfc_quick("\xe2\x84\xab", 3));      /* No: U+212B */
    assert_false(rl_uni_is_nfc_quick("x\xcc\x95\xcc\x80", 5)); /* classes 232 then 230 */
    assert_false(rl_uni_is_nfc_quick("x\xcc\x80\xcc\x95", 5)); /* U+0300 is Maybe */
    assert_int_equal(rl_uni_combining_class(0x301), 230);
    assert_int_equal(rl_uni_combining_class(0x323), 220);
    assert_int_equal(rl_uni_combining_class(0x41), 0);
    assert_int_equal(rl_uni_combining_class(0x10FFFF), 0);
}

static void test_compose(void **state)
{
    expect_nfc("e\xcc\x81", "\xc3\xa9");                        /* e U+0301 -> é */
    expect_nfc("\xe2\x84\xab", "\xc3\x85");                     /* singleton U+212B -> U+00C5 */
    expect_nfc("A\xcc\x8a", "\xc3\x85");                        /* A U+030A -> U+00C5 */
    expect_nfc("a\xcc\x82\xcc\xa3", "\xe1\xba\xad");            /* a 0302 0323 -> U+1EAD */
    expect_nfc("a\xcc\xa3\xcc\x82", "\xe1\xba\xad");            /* a 0323 0302 -> U+1EAD */
    expect_nfc("\xe1\xb8\x8b\xcc\xa3", "\xe1\xb8\x8d\xcc\x87"); /* 1E0B 0323 -> 1E0D 0307 */
    expect_nfc("q\xcc\x87\xcc\xa3", "q\xcc\xa3\xcc\x87");       /* reordered, nothing composes */
    expect_nfc("a\xcc\x81\xcc\x81", "\xc3\xa1\xcc\x81");        /* the second 0301 is blocked */
    expect_nfc("a\xcc\x96\xcc\x81", "\xc3\xa1\xcc\x96");        /* 0316 (220) does not block 230 */
    expect_nfc("\xcc\x81"
               "a",
               "\xcc\x81"
               "a");                                        /* no starter before the mark */
    expect_nfc("\xe0\xad\x87\xe0\xac\xbe", "\xe0\xad\x8b"); /* two starters: 0B47 0B3E -> 0B4B */
    /* ... but not across a mark in between */
    expect_nfc("\xe0\xad\x87\xcc\x80\xe0\xac\xbe", "\xe0\xad\x87\xcc\x80\xe0\xac\xbe");
}

static void test_exclusions(void **state)
{
    expect_nfc("\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc"); /* U+0958: composition exclusion */
    expect_nfc("\xe0\xa4\x95\xe0\xa4\xbc", "\xe0\xa4\x95\xe0\xa4\xbc");
    expect_nfc("\xcd\x84", "\xcc\x88\xcc\x81"); /* U+0344: non-starter decomposition */
    expect_nfc("\xcd\xb4", "\xca\xb9");         /* U+0374 -> U+02B9 (singleton) */
}

static void test_hangul(void **state)
{
    expect_nfc("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"); /* L V T -> U+AC01 */
    expect_nfc("\xe1\x84\x80\xe1\x85\xa1", "\xea\xb0\x80");             /* L V -> U+AC00 */
    expect_nfc("\xea\xb0\x80\xe1\x86\xa8", "\xea\xb0\x81");             /* LV T -> LVT */
    /* U+11A7 is TBASE, not a trailing consonant: nothing composes */
    expect_nfc("\xea\xb0\x80\xe1\x86\xa7", "\xea\xb0\x80\xe1\x86\xa7");
    /* an LVT syllable takes no second T */
    expect_nfc("\xea\xb0\x81\xe1\x86\xa8", "\xea\xb0\x81\xe1\x86\xa8");
}

static void test_invalid_utf8(void **state)
{
    /* bytes that are not UTF-8 stay as they are, and nothing composes across them */
    expect_nfc("e\xff\xcc\x81", "e\xff\xcc\x81");
    expect_nfc("\xc3"
               "e\xcc\x81\xed\xa0\x80",
               "\xc3\xc3\xa9\xed\xa0\x80");
}

/* GPT-2 bytes_to_unicode of one byte (test independence: written out again). */
static int byte_str(int b, char *out)
{
    int n = 0, cp = -1;
    for (int c = 0; c < 256; c++) {
        int keep = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
        int v = keep ? c : 256 + n++;
        if (c == b) cp = v;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    out[2] = 0;
    return 2;
}

enum { ID_EACUTE = 256, ID_X, ID_O_RAW, ID_U_NORM, NV };

/* Bytes, a merged "é", and three added tokens: "<x>" (special), "o" U+0301 (raw content, not
 * normalized) and "u" U+0308 (normalized: matches its NFC form "ü"). */
static rl_bpe *tiny(int norm)
{
    rl_bpe *b = rl_bpe_new(NV, RL_PRE_QWEN2);
    rl_bpe_set_normalizer(b, norm);
    char s[4];
    for (int c = 0; c < 256; c++) rl_bpe_set_token(b, c, s, (size_t)byte_str(c, s));
    const char *extra[] = {"\xc3\x83\xc2\xa9", "<x>", "o\xcc\x81", "u\xcc\x88"};
    for (int i = 0; i < NV - 256; i++) rl_bpe_set_token(b, 256 + i, extra[i], strlen(extra[i]));
    rl_bpe_add_merge(b, "\xc3\x83", 2, "\xc2\xa9", 2);
    rl_bpe_set_added(b, ID_X, 1);
    rl_bpe_set_added(b, ID_O_RAW, 0);
    rl_bpe_set_added(b, ID_U_NORM, 0);
    rl_bpe_set_added_normalized(b, ID_U_NORM, 1);
    char err[RL_ERRLEN];
    assert_int_equal(rl_bpe_finish(b, err), 0);
    return b;
}

static void expect_ids(const rl_bpe *b, const char *text, int special, const int *want, int n)
{
    int got, *ids = rl_bpe_encode(b, text, strlen(text), special, &got);
    if (got != n) fail_msg("\"%s\": %d ids, want %d", text, got, n);
    for (int i = 0; i < n; i++)
        if (ids[i] != want[i]) fail_msg("\"%s\": id %d is %d, want %d", text, i, ids[i], want[i]);
    free(ids);
}

static void test_bpe_nfc(void **state)
{
    rl_bpe *b = tiny(RL_NORM_NFC);
    assert_int_equal(rl_bpe_normalizer(b), RL_NORM_NFC);
    expect_ids(b, "\xc3\xa9", 1, (int[]){ID_EACUTE}, 1);
    expect_ids(b, "e\xcc\x81", 1, (int[]){ID_EACUTE}, 1);
    expect_ids(b, "<x>e\xcc\x81<x>", 1, (int[]){ID_X, ID_EACUTE, ID_X}, 3);
    /* the raw added token is matched before NFC would compose it away */
    expect_ids(b, "o\xcc\x81", 1, (int[]){ID_O_RAW}, 1);
    expect_ids(b, "\xc3\xb3", 1, (int[]){0xC3, 0xB3}, 2);
    /* the normalized one matches in the NFC text, by its NFC content */
    expect_ids(b, "u\xcc\x88", 1, (int[]){ID_U_NORM}, 1);
    expect_ids(b, "\xc3\xbc", 1, (int[]){ID_U_NORM}, 1);
    /* added tokens as text: everything normalized */
    expect_ids(b, "<x>e\xcc\x81", 0, (int[]){'<', 'x', '>', ID_EACUTE}, 4);
    expect_ids(b, "o\xcc\x81u\xcc\x88", 0, (int[]){0xC3, 0xB3, 0xC3, 0xBC}, 4);
    rl_bpe_free(b);

    b = tiny(RL_NORM_NONE); /* no normalizer: the decomposed text is encoded as it is */
    expect_ids(b, "e\xcc\x81", 1, (int[]){'e', 0xCC, 0x81}, 3);
    expect_ids(b, "u\xcc\x88", 1, (int[]){ID_U_NORM}, 1);
    expect_ids(b, "\xc3\xbc", 1, (int[]){0xC3, 0xBC}, 2);
    rl_bpe_free(b);
}

static void test_hf_round_trip(void **state)
{
    rl_bpe *b = tiny(RL_NORM_NFC);
    json_t *tj = rl_hf_tokenizer_to_json(b);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(tj, "normalizer"), "type")), "NFC");
    char err[RL_ERRLEN];
    rl_bpe *c = rl_hf_tokenizer(tj, err);
    assert_non_null(c);
    assert_int_equal(rl_bpe_normalizer(c), RL_NORM_NFC);
    assert_true(rl_bpe_added_normalized(c, ID_U_NORM));
    assert_false(rl_bpe_added_normalized(c, ID_O_RAW));
    assert_false(rl_bpe_added_normalized(c, ID_X));
    expect_ids(c, "<x>e\xcc\x81u\xcc\x88", 1, (int[]){ID_X, ID_EACUTE, ID_U_NORM}, 3);
    rl_bpe_free(c);
    /* an unsupported normalizer is still an error */
    json_object_set_new(tj, "normalizer", json_pack("{s:s}", "type", "NFKC"));
    assert_null(rl_hf_tokenizer(tj, err));
    assert_non_null(strstr(err, "\"NFKC\" is not supported"));
    json_decref(tj);
    rl_bpe_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_path),     cmocka_unit_test(test_compose),
        cmocka_unit_test(test_exclusions),    cmocka_unit_test(test_hangul),
        cmocka_unit_test(test_invalid_utf8),  cmocka_unit_test(test_bpe_nfc),
        cmocka_unit_test(test_hf_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
