"""Real checkpoints through `trainerd serve` and `trainerd sft` (issue 9), on SmolLM2-135M-Instruct
(the GGUF fixture of test_real_model.py).

* `trainerd serve --model FILE.gguf` with the real `openai` SDK: /v1/chat/completions renders the
  checkpoint's ChatML template (SmolLM2's default system message included) and tokenizes it with
  the BPE tokenizer — prompt_token_ids equal `tokenizers`' ids of the reference rendering; a
  capital-city question is answered correctly and generation stops at <|im_end|>; the text is the
  decode of exactly the sampled ids (checked against `tokenizers`' decode), also for sampled
  multilingual output where tokens split UTF-8 characters, and streamed pieces concatenate to it;
  /v1/completions tokenizes string prompts like `tokenizers`, and id prompts round-trip; log-probs
  in vLLM's/OpenAI's fields.
* `trainerd sft --model FILE.gguf` for two steps on one example: the loss falls, the output folder
  (model.safetensors + config.json + tokenizer.json + tokenizer_config.json) reloads without the
  GGUF: its logits differ from the base model's and match a float64 numpy forward of the saved
  tensors; its tokenizer.json gives `tokenizers` the same ids as the reference; `--steps 0` saves
  exactly the dequantised GGUF weights and a reload + save is bit-exact; `trainerd serve` serves the
  saved folder.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import openai
import pytest
import tokenizers

from test_real_model import (  # noqa: F401  (fixtures)
    ENV, REPO, corpus, forward_logits, gguf_meta, gguf_path, gguf_weights, read_safetensors,
    run_model, tokenizer_json, trainerd)

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
EOT = 2  # <|im_end|>: SmolLM2's eos and ChatML end of turn


def chatml(messages, system=SYSTEM):
    """ChatML as SmolLM2's template renders it (default system message when none is given)."""
    if messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}] + messages
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
        "<|im_start|>assistant\n"


class Serve:
    def __init__(self, model, *args):
        self.proc = subprocess.Popen([trainerd(), "serve", "--model", str(model), "--threads", "2",
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=ENV, cwd=REPO)
        line = self.proc.stdout.readline()
        assert " on http://" in line, line + self.proc.stdout.read()
        self.url = line.rsplit(" on ", 1)[1].strip()
        self.client = openai.OpenAI(base_url=self.url, api_key="none", max_retries=0, timeout=120)

    def stop(self):
        self.proc.terminate()
        out = self.proc.communicate(timeout=20)[0]
        assert self.proc.returncode == 0, out
        return out


@pytest.fixture(scope="module")
def ref_tok(gguf_meta):
    return tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json(gguf_meta[0])))


@pytest.fixture(scope="module")
def served(gguf_path):
    s = Serve(gguf_path, "--max-batch", "8")
    yield s
    s.stop()


def test_serve_chat_template_and_answer(served, gguf_meta, ref_tok):
    c = served.client
    assert [m.id for m in c.models.list().data] == ["policy"]
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    r = c.chat.completions.create(model="policy", messages=msgs, temperature=0, max_tokens=32,
                                  logprobs=True, top_logprobs=3)
    prompt = chatml(msgs)
    try:  # the checkpoint's own Jinja template, rendered as transformers does, when available
        import jinja2
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        tpl = gguf_meta[0]["tokenizer.chat_template"].decode()
        assert env.from_string(tpl).render(messages=msgs, add_generation_prompt=True) == prompt
    except ImportError:
        pass
    assert r.model_extra["prompt_token_ids"] == ref_tok.encode(prompt, add_special_tokens=False).ids
    ch = r.choices[0]
    ids = ch.model_extra["token_ids"]
    assert "Paris" in ch.message.content, ch.message.content
    assert ch.finish_reason == "stop" and ids[-1] == EOT
    assert ch.message.content == ref_tok.decode(ids, skip_special_tokens=True)
    lps = ch.logprobs.content
    assert len(lps) == len(ids)
    for k, e in enumerate(lps):  # greedy: the sampled token is the top alternative
        assert e.logprob <= 0 and abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6
        assert bytes(e.bytes) == ref_tok.decode([ids[k]], skip_special_tokens=False).encode() \
            or ids[k] == EOT or "\ufffd" in e.token
    # the same conversation as raw token ids through /v1/completions: the same greedy answer
    r2 = c.completions.create(model="policy", prompt=r.model_extra["prompt_token_ids"],
                              temperature=0, max_tokens=32)
    assert r2.choices[0].model_extra["token_ids"] == ids
    assert r2.choices[0].text == ch.message.content
    # a system message replaces the default one; a second question
    msgs = [{"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What is the capital of Japan?"}]
    r = c.chat.completions.create(model="policy", messages=msgs, temperature=0, max_tokens=32)
    assert r.model_extra["prompt_token_ids"] == \
        ref_tok.encode(chatml(msgs), add_special_tokens=False).ids
    assert "Tokyo" in r.choices[0].message.content


def test_serve_text_is_decode_of_sampled_ids(served, ref_tok):
    """Sampled multilingual text: every choice's text is `tokenizers`' decode of its ids, tokens
    that split a UTF-8 character occur, and streamed pieces concatenate to the same text."""
    c = served.client
    prompt = "日本語と中国語で挨拶を書いてください。😀 Ünïcödé: "
    r = c.completions.create(model="policy", prompt=prompt, max_tokens=24, n=6, seed=11,
                             temperature=1.0, logprobs=1)
    want = ref_tok.encode(prompt, add_special_tokens=False).ids
    split = 0
    for ch in r.choices:
        x = ch.model_extra
        assert x["prompt_token_ids"] == want
        ids = x["token_ids"]
        assert ch.text == ref_tok.decode(ids, skip_special_tokens=True), (ch.text, ids)
        split += sum("\ufffd" in ref_tok.decode([i]) for i in ids)
        assert len(ch.logprobs.tokens) == len(ids) and ch.logprobs.text_offset[0] == 0
    assert split > 0, "no sampled token split a character: the partial-UTF-8 path was not hit"
    print(f"serve: {sum(len(ch.model_extra['token_ids']) for ch in r.choices)} sampled tokens, "
          f"{split} of them part of a split character")
    # streaming: per-chunk ids and text pieces; pieces hold whole characters only
    s = c.completions.create(model="policy", prompt=prompt, max_tokens=24, n=6, seed=11,
                             temperature=1.0, stream=True)
    text, ids = {}, {}
    for ev in s:
        for ch in ev.choices:
            text[ch.index] = text.get(ch.index, "") + ch.text
            ids.setdefault(ch.index, []).extend(ch.model_extra["token_ids"])
    for ch in r.choices:
        assert ids[ch.index] == ch.model_extra["token_ids"] and text[ch.index] == ch.text


def test_sft_save_reload(gguf_path, gguf_meta, ref_tok, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"prompt": "What is the capital of France?",
                                "response": "Paris is the capital of France."}) + "\n")
    out, log = tmp_path / "sft", tmp_path / "sft.jsonl"
    r = subprocess.run([trainerd(), "sft", "--model", gguf_path, "--train", str(data), "--steps",
                        "2", "--batch", "1", "--lr", "1e-4", "--out", str(out), "--log", str(log),
                        "--threads", "2", "--quiet"], capture_output=True, text=True, env=ENV,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    losses = [json.loads(l)["loss"] for l in log.read_text().splitlines()]
    assert len(losses) == 2 and losses[1] < losses[0], losses
    for f in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
              "trainer_state.bin"):
        assert (out / f).exists(), f
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["max_position_embeddings"] == 8192
    info = json.loads(run_model("info", "--model", str(out)).stdout)
    assert info["format"] == "safetensors" and info["chat_template"] == "chatml"
    assert info["eos_token_id"] == EOT

    # the written tokenizer.json: the same ids as the reference in `tokenizers` and in ours
    strings = corpus()[::7]
    tok = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    for s in strings:
        assert tok.encode(s, add_special_tokens=False).ids == \
            ref_tok.encode(s, add_special_tokens=False).ids, s

    # logits of the reloaded folder: differ from the base, equal a numpy forward of the saved file
    prompt = chatml([{"role": "user", "content": "What is the capital of France?"}])
    a, b = tmp_path / "base.safetensors", tmp_path / "tuned.safetensors"
    run_model("logits", "--model", gguf_path, "--out", str(a), "--prompt", prompt)
    run_model("logits", "--model", str(out), "--out", str(b), "--prompt", prompt)
    base, tuned = read_safetensors(a), read_safetensors(b)
    assert (base["tokens.0"] == tuned["tokens.0"]).all()
    diff = np.abs(base["logits.0"] - tuned["logits.0"]).max()
    assert diff > 1e-2, diff
    W = read_safetensors(out / "model.safetensors")
    ref = forward_logits(W, cfg, tuned["tokens.0"].astype(int))
    err = np.abs(tuned["logits.0"] - ref).max()
    assert err <= 5e-4, err
    print(f"sft: losses {losses}, max |tuned - base| {diff:.3f}, |C - numpy| {err:.2e}")

    # serving the saved folder (no GGUF): chat works and reports the tuned model's ids
    s = Serve(out)
    try:
        rr = s.client.chat.completions.create(
            model="policy", messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0, max_tokens=24)
        ids = rr.choices[0].model_extra["token_ids"]
        assert rr.model_extra["prompt_token_ids"] == tuned["tokens.0"].astype(int).tolist()
        assert rr.choices[0].message.content == ref_tok.decode(ids, skip_special_tokens=True)
        assert "Paris" in rr.choices[0].message.content
    finally:
        s.stop()


def test_save_is_exact(gguf_path, gguf_meta, tmp_path):
    """--steps 0: the saved tensors are exactly the dequantised GGUF (q/k permutation undone);
    reloading that folder and saving again is bit-exact."""
    a, b = tmp_path / "a", tmp_path / "b"
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"prompt": "Hi", "response": "Hello!"}) + "\n")
    for src, dst in ((gguf_path, a), (a, b)):
        r = subprocess.run([trainerd(), "sft", "--model", str(src), "--train", str(data),
                            "--steps", "0", "--out", str(dst), "--quiet"], capture_output=True,
                           text=True, env=ENV, timeout=120)
        assert r.returncode == 0, r.stderr
    W, _ = gguf_weights(*gguf_meta)
    got = read_safetensors(a / "model.safetensors")
    assert sorted(got) == sorted(W)
    for k in W:
        assert np.array_equal(got[k], W[k].astype(np.float32)), k
    again = read_safetensors(b / "model.safetensors")
    for k in W:
        assert np.array_equal(again[k], got[k]), k
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_grpo_step_on_gguf(gguf_path, tmp_path):
    """`trainerd rl --model FILE.gguf`: one GRPO step (chat-rendered prompts, answers ending in
    <|im_end|>, sampling stops there) runs and saves a folder that reloads."""
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in [
        {"prompt": "What is the capital of France? One word.", "answer": "Paris"},
        {"prompt": "What is the capital of Italy? One word.", "answer": "Rome"}]))
    out, log = tmp_path / "rl", tmp_path / "rl.jsonl"
    r = subprocess.run([trainerd(), "rl", "--model", gguf_path, "--train", str(tasks), "--prompts",
                        "1", "--group", "2", "--max-new", "6", "--steps", "1", "--lr", "1e-5",
                        "--threads", "2", "--out", str(out), "--log", str(log), "--quiet"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    row = json.loads(log.read_text().splitlines()[-1])
    assert row["step"] == 1 and 1 <= row["response_len"] <= 6, row
    info = json.loads(run_model("info", "--model", str(out)).stdout)
    assert info["format"] == "safetensors" and info["model_type"] == "llama"
