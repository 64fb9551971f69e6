/* Unit tests for trainerd/rl/bpe and chat on a hand-built byte-level vocabulary: merges apply
 * lowest rank first (leftmost on ties), added tokens split out first (longest match, or kept as
 * text), the pre-tokenizer regexes of GPT-2 / SmolLM / Qwen2 / Llama 3 split the tricky cases
 * (whitespace runs, contractions, digits), decoding is exact for valid UTF-8 and lossy (U+FFFD)
 * for invalid bytes, and the streaming decoder holds back partial characters. The comparison with
 * HuggingFace `tokenizers` on real vocabularies is tests/integration/test_real_model.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../trainerd/rl/bpe.h"
#include "../../../trainerd/rl/chat.h"
#include "../../../trainerd/rl/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2 bytes_to_unicode written out again here (test independence). */
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

enum { ID_HE = 256, ID_LO, ID_HEL, ID_HELLO, ID_GW, ID_AA, ID_END, ID_ENDX, ID_EXTRA, NV };

static rl_bpe *tiny(int pretok)
{
    rl_bpe *b = rl_bpe_new(NV, pretok);
    char s[4];
    for (int c = 0; c < 256; c++) rl_bpe_set_token(b, c, s, (size_t)byte_str(c, s));
    const char *extra[] = {"he", "lo",      "hel",      "hello",  "\xc4\xa0w",
                           "aa", "<|end|>", "<|end|>x", "<extra>"};
    for (int i = 0; i < NV - 256; i++) rl_bpe_set_token(b, 256 + i, extra[i], strlen(extra[i]));
    rl_bpe_add_merge(b, "h", 1, "e", 1);
    rl_bpe_add_merge(b, "l", 1, "o", 1);
    rl_bpe_add_merge(b, "he", 2, "l", 1);
    rl_bpe_add_merge(b, "hel", 3, "lo", 2);
    rl_bpe_add_merge(b, "\xc4\xa0", 2, "w", 1);
    rl_bpe_add_merge(b, "a", 1, "a", 1);
    rl_bpe_set_added(b, ID_END, 1);
    rl_bpe_set_added(b, ID_ENDX, 1);
    rl_bpe_set_added(b, ID_EXTRA, 0);
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

static void test_merges(void **state)
{
    rl_bpe *b = tiny(RL_PRE_GPT2);
    expect_ids(b, "hello", 1, (int[]){ID_HELLO}, 1);
    expect_ids(b, "helo", 1, (int[]){ID_HE, ID_LO}, 2); /* "l o" (rank 1) before "he l" (2) */
    expect_ids(b, "aaa", 1, (int[]){ID_AA, 'a'}, 2);    /* leftmost on equal rank */
    expect_ids(b, "aaaa", 1, (int[]){ID_AA, ID_AA}, 2);
    /* " w" is one pre-token: the space byte (U+0120 in the alphabet) merges with w */
    expect_ids(b, "hello world", 1, (int[]){ID_HELLO, ID_GW, 'o', 'r', 'l', 'd'}, 6);
    expect_ids(b, "", 1, NULL, 0);
    assert_int_equal(rl_bpe_token_id(b, "hello"), ID_HELLO);
    assert_int_equal(rl_bpe_token_id(b, "nope"), -1);
    rl_bpe_free(b);
}

static void test_added_tokens(void **state)
{
    rl_bpe *b = tiny(RL_PRE_GPT2);
    expect_ids(b, "a<|end|>b", 1, (int[]){'a', ID_END, 'b'}, 3);
    expect_ids(b, "<|end|>x<extra>", 1, (int[]){ID_ENDX, ID_EXTRA}, 2); /* longest match */
    expect_ids(b, "<|end|", 1, (int[]){'<', '|', 'e', 'n', 'd', '|'}, 6);
    /* as plain text: "<|" is one punctuation pre-token, "end" letters, "|>" punctuation */
    expect_ids(b, "<|end|>", 0, (int[]){'<', '|', 'e', 'n', 'd', '|', '>'}, 7);
    agl_buf out;
    agl_buf_init(&out);
    int ids[] = {'a', ID_END, ID_EXTRA, 'b'};
    rl_bpe_decode(b, ids, 4, 0, &out);
    assert_string_equal(out.data, "a<|end|><extra>b");
    agl_buf_reset(&out);
    rl_bpe_decode(b, ids, 4, 1, &out); /* skip_special drops special tokens only */
    assert_string_equal(out.data, "a<extra>b");
    agl_buf_free(&out);
    rl_bpe_free(b);
}

/* Pre-tokens of text under pretok, joined with '|'. */
static char *split(int pretok, const char *text)
{
    size_t *sp;
    int n = rl_bpe_pretokenize(pretok, text, strlen(text), &sp);
    static char out[512];
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        if (i) out[o++] = '|';
        memcpy(out + o, text + sp[2 * i], sp[2 * i + 1] - sp[2 * i]);
        o += sp[2 * i + 1] - sp[2 * i];
    }
    out[o] = 0;
    free(sp);
    return out;
}

static void test_pretokenizers(void **state)
{
    assert_string_equal(split(RL_PRE_GPT2, "Hello  world\n\nfoo's 123"),
                        "Hello| | world|\n|\n|foo|'s| 123");
    assert_string_equal(split(RL_PRE_GPT2, "a \n b   "), "a| \n| b|   ");
    assert_string_equal(split(RL_PRE_GPT2, "x\tY ?!'s DON'T"), "x|\t|Y| ?!'|s| DON|'|T");
    assert_string_equal(split(RL_PRE_GPT2, "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd"),
                        "caf\xc3\xa9| \xe4\xbd\xa0\xe5\xa5\xbd");
    assert_string_equal(split(RL_PRE_DIGITS_GPT2, "a 12b"), "a| |1|2|b");
    assert_string_equal(split(RL_PRE_QWEN2, "12345 x"), "1|2|3|4|5| x");
    assert_string_equal(split(RL_PRE_LLAMA3, "12345 x"), "123|45| x");
    assert_string_equal(split(RL_PRE_LLAMA3, "DON'T (hi)\n\n  x"), "DON|'T| (|hi|)\n\n| | x");
    assert_string_equal(split(RL_PRE_LLAMA3, "a  \n\n b"), "a|  \n\n| b");
    assert_string_equal(split(RL_PRE_QWEN2, "x\ty"), "x|\ty");
    assert_string_equal(rl_bpe_pretok_name(RL_PRE_DIGITS_GPT2), "digits+gpt2");
}

static void test_decode_utf8(void **state)
{
    rl_bpe *b = tiny(RL_PRE_GPT2);
    /* "é😀" is 2 + 4 bytes; byte tokens split both characters */
    const char *text = "\xc3\xa9\xf0\x9f\x98\x80!";
    int n, *ids = rl_bpe_encode(b, text, strlen(text), 1, &n);
    assert_int_equal(n, 7);
    agl_buf out;
    agl_buf_init(&out);
    rl_bpe_stream st = {0};
    size_t after[7] = {0, 2, 2, 2, 2, 6, 7}; /* bytes out after each push */
    for (int i = 0; i < n; i++) {
        rl_bpe_stream_push(b, &st, ids[i], 0, &out);
        assert_int_equal(out.len, after[i]);
    }
    rl_bpe_stream_flush(&st, &out);
    assert_string_equal(out.data, text);
    free(ids);
    /* invalid bytes: a lone 0xFF, a truncated 3-byte sequence before 'A', one at the end */
    int bad[] = {0xFF, 'x', 0xE2, 0x82, 'A', 0xF0, 0x9F};
    agl_buf_reset(&out);
    rl_bpe_decode(b, bad, 7, 0, &out);
    assert_string_equal(out.data, "\xef\xbf\xbdx\xef\xbf\xbd"
                                  "A\xef\xbf\xbd");
    agl_buf_reset(&out);
    st.n = 0;
    for (int i = 0; i < 7; i++) rl_bpe_stream_push(b, &st, bad[i], 0, &out);
    assert_int_equal(st.n, 2); /* F0 9F may still become a character */
    rl_bpe_stream_flush(&st, &out);
    assert_string_equal(out.data, "\xef\xbf\xbdx\xef\xbf\xbd"
                                  "A\xef\xbf\xbd");
    agl_buf_free(&out);
    rl_bpe_free(b);
}

static void test_finish_errors(void **state)
{
    char err[RL_ERRLEN];
    rl_bpe *b = rl_bpe_new(2, RL_PRE_GPT2);
    rl_bpe_set_token(b, 0, "a", 1);
    assert_int_equal(rl_bpe_finish(b, err), -1);
    assert_non_null(strstr(err, "no string for token id 1"));
    rl_bpe_free(b);
    b = rl_bpe_new(2, RL_PRE_GPT2);
    rl_bpe_set_token(b, 0, "a", 1);
    rl_bpe_set_token(b, 1, "b", 1);
    rl_bpe_add_merge(b, "a", 1, "b", 1);
    assert_int_equal(rl_bpe_finish(b, err), -1);
    assert_non_null(strstr(err, "merge 0 (\"a b\")"));
    rl_bpe_free(b);
}

static const char SMOL_TEMPLATE[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

static void test_chat(void **state)
{
    rl_chat c;
    char err[RL_ERRLEN];
    assert_int_equal(rl_chat_init(&c, SMOL_TEMPLATE, NULL, err), 0);
    assert_string_equal(rl_chat_name(&c), "chatml");
    assert_string_equal(c.default_system,
                        "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    rl_chat_msg m[2] = {{"user", "Hi"}, {"assistant", "Hello!"}};
    char *s = rl_chat_render(&c, m, 1, 1);
    assert_string_equal(s, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
                           "trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                           "<|im_start|>assistant\n");
    free(s);
    rl_chat_msg ms[2] = {{"system", "Be brief."}, {"user", "Hi"}};
    s = rl_chat_render(&c, ms, 2, 0);
    assert_string_equal(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"
                           "<|im_end|>\n");
    free(s);
    assert_string_equal(rl_chat_stop(&c), "<|im_end|>");
    rl_chat_free(&c);
    assert_int_equal(rl_chat_init(&c, "{{ '<|start_header_id|>' }}", NULL, err), 0);
    s = rl_chat_render(&c, m, 2, 1);
    assert_string_equal(s, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi"
                           "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!"
                           "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    free(s);
    assert_string_equal(rl_chat_stop(&c), "<|eot_id|>");
    rl_chat_free(&c);
    assert_int_equal(rl_chat_init(&c, "{{ bos_token }}[INST]", NULL, err), -1);
    assert_non_null(strstr(err, "not recognised"));
    assert_int_equal(rl_chat_init(&c, NULL, "vicuna", err), -1);
    assert_non_null(strstr(err, "unknown name \"vicuna\""));
    assert_int_equal(rl_chat_init(&c, "{{ '<|start_header_id|>' }}", "chatml", err), 0);
    assert_int_equal(c.kind, RL_CHAT_CHATML); /* the name overrides the template */
    assert_null(c.default_system);
    rl_chat_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merges),        cmocka_unit_test(test_added_tokens),
        cmocka_unit_test(test_pretokenizers), cmocka_unit_test(test_decode_utf8),
        cmocka_unit_test(test_finish_errors), cmocka_unit_test(test_chat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
