"""NFC normalisation of the BPE tokenizer (Qwen2's tokenizer.json declares
`"normalizer": {"type": "NFC"}`), through `trainerd model tokenize`, against independent
references:

* the normalizer alone: a byte-level tokenizer.json with no merges and an NFC normalizer, so that
  decode(encode(s)) is exactly our NFC of s, compared with Python's
  `unicodedata.normalize("NFC", s)` on >= 3,000 generated strings rich in combining marks
  (several per base, in and out of canonical order), Hangul jamo and syllables, decomposed Latin,
  singletons, composition exclusions and random code points; the ids also equal HF `tokenizers`;
* the whole tokenizer: SmolLM2's vocabulary behind the Qwen2 pre-tokenizer with the NFC
  normalizer, plus two extra added tokens (one normalized = true with non-NFC content, one
  normalized = false with decomposed content, to check AddedVocabulary::extract_and_normalize's
  order), gives ids identical to `tokenizers` on the NFD forms of the real-model corpus and on
  generated non-NFC text;
* a GGUF whose `tokenizer.ggml.pre` is "qwen2" normalizes too (the HF tokenizer it was converted
  from declares NFC; GGUF has no normalizer metadata): SmolLM2's GGUF with its pre patched.

The reference Unicode version is Python's unicodedata (14.0, the version of our tables);
strings compared with `tokenizers` (whose unicode-normalization crate may be newer) keep to code
points assigned in that version."""

from __future__ import annotations

import json
import random
import struct
import unicodedata

import pytest
import tokenizers  # tests/requirements.txt

from test_real_model import (  # noqa: F401  (gguf_path and gguf_meta are fixtures)
    SPLIT, corpus, gguf_meta, gguf_path, run_model, tokenizer_json)

QWEN2_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": SPLIT["qwen2"]}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def bytes_only_tokenizer():
    alpha = bytes_to_unicode()
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": {"type": "NFC"}, "pre_tokenizer": QWEN2_PRE, "post_processor": None,
        "decoder": BYTE_LEVEL,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {alpha[b]: b for b in range(256)}, "merges": []},
    }


def assigned(s):
    return all(unicodedata.category(c) != "Cn" for c in s)


def marks():
    """Combining marks of several classes, and the second halves of composition pairs."""
    out = [c for c in range(0x300, 0x370)]
    out += [0x483, 0x591, 0x5B0, 0x5BC, 0x610, 0x64B, 0x670, 0x93C, 0x94D, 0x9BE, 0x9D7, 0xB3E,
            0xB56, 0xB57, 0xBBE, 0xBD7, 0xC56, 0xCC2, 0xCD5, 0xCD6, 0xD3E, 0xD57, 0xDCA, 0xDCF,
            0xDDF, 0xE38, 0xE48, 0xF71, 0xF72, 0xF80, 0x102E, 0x1B35, 0x1DC0, 0x1DCE, 0x20D0,
            0x20E1, 0x302A, 0x302E, 0x3099, 0x309A, 0xFE20, 0x1D165, 0x1D16E, 0x110BA, 0x11127]
    return out


def generated(n, seed):
    rng = random.Random(seed)
    mk = marks()
    decomposable = [c for c in range(0xC0, 0x2000) if unicodedata.decomposition(chr(c))
                    and not unicodedata.decomposition(chr(c)).startswith("<")]
    special = [0x212B, 0x2126, 0x212A, 0x0958, 0x095F, 0x0344, 0x0374, 0x037E, 0x0387, 0x1F71,
               0x2ADC, 0xF900, 0xFA10, 0x2F800, 0x0F73, 0x0F75, 0x0F81, 0x1B06, 0x0B4B, 0x0DDD]
    out = []
    for _ in range(n):
        s = []
        for _ in range(rng.randint(1, 14)):
            r = rng.random()
            if r < 0.30:
                s.append(chr(rng.choice(mk)))
            elif r < 0.40:  # a base with several marks, in random order
                s.append(chr(rng.choice(b"aeiouAEOSnz")) + "".join(
                    chr(rng.choice(mk)) for _ in range(rng.randint(1, 4))))
            elif r < 0.50:  # Hangul jamo: L V, L V T, stray V or T
                s.append(chr(rng.randint(0x1100, 0x1112)) + chr(rng.randint(0x1161, 0x1175))
                         + (chr(rng.randint(0x11A7, 0x11C2)) if rng.random() < 0.5 else ""))
            elif r < 0.55:
                s.append(chr(rng.choice([rng.randint(0x1161, 0x1175), rng.randint(0x11A8, 0x11C2)])))
            elif r < 0.60:
                s.append(chr(rng.randint(0xAC00, 0xD7A3)))
            elif r < 0.70:  # decomposed (or precomposed) Latin, Greek, Cyrillic...
                c = chr(rng.choice(decomposable))
                s.append(unicodedata.normalize("NFD", c) if rng.random() < 0.7 else c)
            elif r < 0.75:
                s.append(chr(rng.choice(special)))
            elif r < 0.88:  # anything at all (no surrogates)
                c = rng.randint(0x80, 0x3FFFF)
                s.append(chr(c if not 0xD800 <= c < 0xE000 else 0x41))
            else:
                s.append(rng.choice([" ", "  ", "\n", "x", "Qu", "'s", "12", ".", "é"]))
        out.append("".join(s))
    return out


def tokenize(tmp_path, strings, *src):
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps(s) + "\n" for s in strings))
    r = run_model("tokenize", *src, "--in", str(f), timeout=120)
    rows = [json.loads(l) for l in r.stdout.split("\n") if l]  # not splitlines: U+2028
    assert len(rows) == len(strings)
    return rows


def test_nfc_matches_unicodedata(tmp_path):
    fixed = ["e\u0301", "\u212b", "a\u0302\u0323", "a\u0323\u0302", "\u1100\u1161\u11a8",
             "\uac00\u11a8", "\uac00\u11a7", "\u0958", "\u0344", "a\u0301\u0301", "\u0301a",
             "\u0b47\u0300\u0b3e", "\u0b47\u0b3e", "\u1e0b\u0323", "q\u0307\u0323", "plain ascii",
             "caf\u00e9", "\u05d1\u05bc\u05b0", "\u0915\u093c\u094d", "\U0001d15e\U0001d165"]
    strings = fixed + generated(3000, seed=15)
    path = tmp_path / "tokenizer.json"
    tj = bytes_only_tokenizer()
    path.write_text(json.dumps(tj))
    rows = tokenize(tmp_path, strings, "--tokenizer", str(path))
    bad = [(ascii(s), ascii(r["text"])) for s, r in zip(strings, rows)
           if r["text"] != unicodedata.normalize("NFC", s)]
    assert not bad, f"{len(bad)} of {len(strings)} differ from unicodedata, e.g. {bad[:3]}"
    changed = sum(unicodedata.normalize("NFC", s) != s for s in strings)
    assert changed > 2000  # the corpus is mostly not NFC
    tok = tokenizers.Tokenizer.from_str(json.dumps(tj))
    mism = [ascii(s) for s, r in zip(strings, rows)
            if assigned(s) and r["ids"] != tok.encode(s, add_special_tokens=False).ids]
    assert not mism, f"{len(mism)} differ from tokenizers, e.g. {mism[:3]}"


def nfc_tokenizer_json(meta):
    tj = tokenizer_json(meta, "qwen2")
    tj["normalizer"] = {"type": "NFC"}
    V = len(meta["tokenizer.ggml.tokens"])
    tj["added_tokens"] += [
        {"id": V, "content": "e\u0301t\u00e9", "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": True, "special": False},
        {"id": V + 1, "content": "o\u0301", "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": False},
    ]
    return tj


def check_ids(tok, rows, strings):
    """ids equal to `tok` (and the normalizer matters: without it, many differ)."""
    plain = json.loads(tok.to_str())
    plain["normalizer"] = None
    plain = tokenizers.Tokenizer.from_str(json.dumps(plain))
    assert sum(plain.encode(s, add_special_tokens=False).ids
               != tok.encode(s, add_special_tokens=False).ids for s in strings) > len(strings) // 4
    mism = []
    for s, row in zip(strings, rows):
        ref = tok.encode(s, add_special_tokens=False).ids
        if row["ids"] != ref:
            mism.append((ascii(s), row["ids"][:20], ref[:20]))
        assert row["stream_ok"], ascii(s)
        assert tok.decode(row["ids"], skip_special_tokens=False) == row["text"], ascii(s)
    assert not mism, f"{len(mism)} of {len(strings)} differ, e.g. {mism[:3]}"


def test_qwen2_nfc_tokenizer_matches_tokenizers(gguf_meta, tmp_path):
    meta, _ = gguf_meta
    tj = nfc_tokenizer_json(meta)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(tj))
    tok = tokenizers.Tokenizer.from_str(json.dumps(tj))
    base = corpus()
    strings = [unicodedata.normalize("NFD", s) for s in base]
    strings += [s for s in generated(1500, seed=16) if assigned(s)]
    strings += ["\u00e9t\u00e9 e\u0301te\u0301 <|im_start|>e\u0301t\u00e9<|im_end|>",
                "o\u0301 \u00f3 o\u0301\u0301 <|im_start|>o\u0301", "e\u0301to\u0301",
                "<|im_start|>user\nCafe\u0301 \u1100\u1161\u11a8<|im_end|>\n"]
    assert sum(unicodedata.normalize("NFC", s) != s for s in strings) > 1000
    rows = tokenize(tmp_path, strings, "--tokenizer", str(path))
    check_ids(tok, rows, strings)


def gguf_with_pre(src, dst, pre):
    """Copies the GGUF at src to dst with tokenizer.ggml.pre replaced by pre, keeping the header
    size (general.name grows or shrinks by the difference) so that tensor offsets stay valid."""
    data = bytearray(open(src, "rb").read())
    n_kv = struct.unpack_from("<Q", data, 16)[0]  # after magic, version, tensor count
    off = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    spans = {}

    def skip(t, o):
        if t == 8:
            return o + 8 + struct.unpack_from("<Q", data, o)[0]
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, o)
            o += 12
            if et in sizes:
                return o + n * sizes[et]
            for _ in range(n):
                o = skip(et, o)
            return o
        return o + sizes[t]

    for _ in range(n_kv):
        klen = struct.unpack_from("<Q", data, off)[0]
        key = bytes(data[off + 8:off + 8 + klen]).decode()
        off += 8 + klen
        t = struct.unpack_from("<I", data, off)[0]
        off += 4
        if t == 8 and key in ("tokenizer.ggml.pre", "general.name"):
            spans[key] = (off, skip(t, off))
        off = skip(t, off)
    if len(spans) < 2:
        return False
    (po, pe), (no, ne) = spans["tokenizer.ggml.pre"], spans["general.name"]
    old_name = bytes(data[no + 8:ne])
    new_name = old_name + b"_" * ((pe - po - 8) - len(pre.encode()))
    if len(new_name) < 1:
        return False
    pieces = {po: struct.pack("<Q", len(pre.encode())) + pre.encode(),
              no: struct.pack("<Q", len(new_name)) + new_name}
    ends = {po: pe, no: ne}
    out, last = bytearray(), 0
    for o in sorted(pieces):
        out += data[last:o] + pieces[o]
        last = ends[o]
    out += data[last:]
    assert len(out) == len(data)
    open(dst, "wb").write(out)
    return True


def test_gguf_qwen2_pre_normalizes(gguf_path, gguf_meta, tmp_path):
    meta, _ = gguf_meta
    dst = tmp_path / "qwen2pre.gguf"
    if not gguf_with_pre(gguf_path, dst, "qwen2"):
        pytest.skip("GGUF header has no general.name to rebalance")
    info = json.loads(run_model("info", "--model", str(dst)).stdout)
    assert info["pre_tokenizer"] == "qwen2"
    tj = tokenizer_json(meta, "qwen2")
    tj["normalizer"] = {"type": "NFC"}
    tok = tokenizers.Tokenizer.from_str(json.dumps(tj))
    strings = [unicodedata.normalize("NFD", s) for s in corpus()[:300]]
    strings += [s for s in generated(300, seed=17) if assigned(s)]
    check_ids(tok, tokenize(tmp_path, strings, "--model", str(dst)), strings)
