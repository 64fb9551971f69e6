"""The quantised inference path (`--infer-dtype q8_0`, trainerd/rl/infer.c + qmatmul.c) on
SmolLM2-135M-Instruct (the GGUF fixture of test_real_model.py), against the exact fp32 decoder.

* logits of 4 prompts (101 positions): the gap to fp32 is bounded (tolerances below, measured
  values beside them), the top-1 token agrees at most positions and, where it does not, fp32 had
  a near tie;
* greedy chat answers stay right (Japan -> Tokyo, Germany -> Berlin);
* `trainerd serve --infer-dtype q8_0`: a request's ids and log-probs do not depend on what it is
  batched with (6 concurrent sampled requests == the same 6 one after another; 6 prompts in one
  request == each alone), served log-probs stay close to the fp32 server's, streaming works;
* `--infer-dtype` is rejected by `trainerd rl` and names the valid values.
No timing is asserted here; speed is `make bench-gen` (docs/performance.md).
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess

import numpy as np
import pytest

from test_real_model import (  # noqa: F401  (fixtures)
    ENV, REPO, gguf_path, read_safetensors, run_model, trainerd)
from test_real_model_train import Serve

PROMPTS = [
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. 1234",
    "def add(a, b):\n    return a + b  # 你好 café",
    "Photosynthesis is the process by which green plants use sunlight to make food from carbon "
    "dioxide and water. It takes place in the chloroplasts, and",
]


def logits(gguf, dtype, tmp_path):
    out = tmp_path / f"logits-{dtype}.safetensors"
    args = ["logits", "--model", gguf, "--out", str(out), "--infer-dtype", dtype]
    for p in PROMPTS:
        args += ["--prompt", p]
    run_model(*args)
    return read_safetensors(out)


def log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def test_q8_logits_close_to_fp32(gguf_path, tmp_path):
    ref, got = logits(gguf_path, "fp32", tmp_path), logits(gguf_path, "q8_0", tmp_path)
    worst = mean = agree = n = 0
    lp_worst = tie_worst = 0.0
    for i in range(len(PROMPTS)):
        assert (ref[f"tokens.{i}"] == got[f"tokens.{i}"]).all()
        a, b = ref[f"logits.{i}"].astype(np.float64), got[f"logits.{i}"].astype(np.float64)
        d = np.abs(a - b)
        worst, mean = max(worst, d.max()), mean + d.mean(-1).sum()
        # log-prob of fp32's favourite token under each: what sampling and the trainer see
        top = a.argmax(-1)
        la, lb = log_softmax(a), log_softmax(b)
        rows = np.arange(len(top))
        lp_worst = max(lp_worst, np.abs(la[rows, top] - lb[rows, top]).max())
        bt = b.argmax(-1)
        agree += (bt == top).sum()
        n += len(top)
        # where the favourites differ, fp32 ranked q8_0's pick within a near tie
        tie_worst = max(tie_worst, (a[rows, top] - a[rows, bt]).max())
    mean /= n
    print(f"q8_0 vs fp32 over {n} positions: max |dlogit| {worst:.3f}, mean {mean:.3f}, "
          f"max |dlogp(top)| {lp_worst:.3f}, top-1 agreement {agree}/{n}, "
          f"largest fp32 gap where top-1 differs {tie_worst:.3f}")
    assert worst <= 3.0  # measured 2.26 (logits of magnitude 20-37)
    assert mean <= 0.35  # measured 0.255
    assert lp_worst <= 0.6  # measured 0.45
    assert agree >= 0.9 * n  # measured 94 of 101
    assert tie_worst <= 0.6  # measured 0.26


def test_q8_greedy_answers(gguf_path):
    for country, city in (("Japan", "Tokyo"), ("Germany", "Berlin")):
        r = run_model("generate", "--model", gguf_path, "--user",
                      f"What is the capital of {country}?", "--max-tokens", "24",
                      "--infer-dtype", "q8_0")
        out = json.loads(r.stdout)
        assert city in out["text"], out
        assert out["infer_dtype"] == "q8_0" and out["stream_ok"], out


def complete(s, body):
    import urllib.request
    req = urllib.request.Request(s.url + "/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def test_q8_server_batching_invariance(gguf_path):
    prompts = ["Once upon a time", "The capital of Italy is", "def square(x):",
               "1, 2, 3, 4,", "Water boils at", "My favourite colour is"]
    s = Serve(gguf_path, "--infer-dtype", "q8_0", "--max-batch", "16")
    try:
        def one(i):
            return complete(s, {"prompt": prompts[i], "max_tokens": 16, "temperature": 0.8,
                                "seed": 100 + i, "logprobs": 1})["choices"][0]
        alone = [one(i) for i in range(len(prompts))]
        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as ex:
            together = list(ex.map(one, range(len(prompts))))
        for a, b in zip(alone, together):
            assert a["token_ids"] == b["token_ids"]
            assert a["logprobs"]["token_logprobs"] == b["logprobs"]["token_logprobs"]
        # six prompts in one request, greedy, against each alone
        multi = complete(s, {"prompt": prompts, "max_tokens": 12, "temperature": 0})["choices"]
        for i, p in enumerate(prompts):
            single = complete(s, {"prompt": p, "max_tokens": 12, "temperature": 0})["choices"][0]
            assert multi[i]["token_ids"] == single["token_ids"], i
        # streaming: the pieces make the non-streamed text
        import urllib.request
        body = {"prompt": prompts[0], "max_tokens": 12, "temperature": 0, "stream": True}
        req = urllib.request.Request(s.url + "/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        text = ""
        with urllib.request.urlopen(req, timeout=120) as r:
            for line in r:
                if line.startswith(b"data: {"):
                    text += json.loads(line[6:])["choices"][0]["text"]
        assert text == multi[0]["text"]
        q8 = complete(s, {"prompt": prompts[1], "max_tokens": 8, "temperature": 0,
                          "logprobs": 1})["choices"][0]
    finally:
        s.stop()
    # the same greedy continuation scored by the fp32 server: log-probs close
    f = Serve(gguf_path, "--max-batch", "16")
    try:
        fp = complete(f, {"prompt": prompts[1], "max_tokens": 8, "temperature": 0,
                          "logprobs": 1})["choices"][0]
    finally:
        f.stop()
    k = 0
    while k < 8 and fp["token_ids"][k] == q8["token_ids"][k]:
        k += 1
    assert k >= 1, (fp["token_ids"], q8["token_ids"])
    d = np.abs(np.array(fp["logprobs"]["token_logprobs"][:k]) -
               np.array(q8["logprobs"]["token_logprobs"][:k]))
    print(f"served log-probs, {k} shared greedy tokens: max |fp32 - q8_0| = {d.max():.3f}")
    assert d.max() <= 0.6


def test_infer_dtype_options(gguf_path, tmp_path):
    r = subprocess.run([trainerd(), "serve", "--model", gguf_path, "--infer-dtype", "q4"],
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=60)
    assert r.returncode != 0 and "fp32 or q8_0" in r.stderr, r.stderr
    r = subprocess.run([trainerd(), "rl", "--model", gguf_path, "--infer-dtype", "q8_0"],
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=60)
    assert r.returncode != 0 and "--infer-dtype" in r.stderr, r.stderr
    r = run_model("generate", "--model", gguf_path, "--prompt", "Hi", "--infer-dtype", "int4",
                  check=False)
    assert r.returncode == 2 and "fp32 or q8_0" in r.stderr
    for cmd in (["serve", "--help"], ["model", "--help"]):
        h = subprocess.run([trainerd(), *cmd], capture_output=True, text=True, env=ENV, cwd=REPO)
        assert "--infer-dtype" in h.stdout, cmd
