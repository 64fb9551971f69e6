"""GRPO on a real checkpoint through the whole system (issue 9): SmolLM2-135M-Instruct (the GGUF
fixture of test_real_model.py) trained by `trainerd rl --store` on rollouts of runnerd's built-in
`prompt` agent, reduced to two tiny steps (examples/smollm2/grpo.sh is the longer run).

* `--resources FILE` publishes the prompt template beside the policy's `main_llm` in every
  snapshot, so the prompt agent renders it, asks the policy server through runnerd's recording
  proxy (chat completions, the checkpoint's ChatML template) and grades the answer (`contains`).
* Every step's rollouts succeed, each yields one triplet whose ids are exactly what the server
  generated (verified by the trainer against the server's record; log-probs agree), and the
  rollout's final reward in the store is the grader's verdict on the answer text the proxy
  recorded; the prompt ids decode (saved tokenizer.json, `tokenizers`) to the ChatML rendering
  of the filled-in template.
* The run saves an HF folder that `trainerd serve` reloads without the GGUF and answers from; when
  a group's rewards differed (a non-zero advantage), the saved weights differ from the GGUF's.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import openai
import tokenizers

from conftest import expect
from runnerd_support import Runnerd
from test_real_model import (  # noqa: F401  (fixtures)
    ENV, REPO, dequant, gguf_meta, gguf_path, read_safetensors, trainerd)
from test_real_model_train import Serve

TEMPLATE = "What is the capital of {country}? Answer with one word."
TASKS = [{"country": "France", "expected": "Paris", "grader": "contains"},
         {"country": "Japan", "expected": "Tokyo", "grader": "contains"}]


def test_grpo_store_loop_on_smollm2(store, gguf_path, gguf_meta, tmp_path):  # noqa: F811
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    res = tmp_path / "resources.json"
    res.write_text(json.dumps({"prompt_template": {"resource_type": "prompt_template",
                                                   "template": TEMPLATE, "engine": "f-string"}}))
    runner = Runnerd(store.url, "--agent", "prompt", "--grader", "contains", "--workers", "4",
                     "--poll-interval", "0.1", "--log-level", "info")
    steps, P, G = 2, 1, 4
    log, serve_log, out = tmp_path / "rl.jsonl", tmp_path / "serve.jsonl", tmp_path / "policy"
    try:
        r = subprocess.run(
            [trainerd(), "rl", "--store", store.url, "--model", gguf_path, "--model-name", "smollm2",
             "--resources", str(res), "--train", str(train), "--steps", str(steps), "--prompts",
             str(P), "--group", str(G), "--max-new", "8", "--max-seq", "256", "--temperature", "1",
             "--lr", "1e-5", "--seed", "1", "--threads", "2", "--log", str(log), "--serve-log",
             str(serve_log), "--out", str(out), "--rollout-timeout", "120"],
            env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + runner.log()[-3000:]
    finally:
        runner.kill()

    rows = [json.loads(line) for line in open(log)]
    assert [x["step"] for x in rows] == [1, 2], r.stdout[-3000:] + r.stderr[-3000:]
    for x in rows:
        assert x["rollouts"] == x["finished"] == x["succeeded"] == x["rows"] == P * G, x
        assert x["rows_dropped"] == 0 and x["tokens"] > 0
        assert x["ids_verified"] == P * G and x["ids_mismatched"] == 0, x
        assert x["server_logprob_abs_diff"] < 1e-3, x
        assert 0 <= x["reward_mean"] <= 1

    # every snapshot carries the template next to the policy
    snaps = expect(store.get("/resources", params={"limit": 100}), 200)["items"]
    assert len(snaps) == steps + 1
    for s in snaps:
        assert s["resources"]["prompt_template"]["template"] == TEMPLATE
        assert s["resources"]["main_llm"]["model"] == "smollm2"

    ro = expect(store.post("/rollouts/search", {"limit": 100}), 200)["items"]
    assert len(ro) == steps * P * G and all(x["status"] == "succeeded" for x in ro)
    served = {}
    for line in open(serve_log):
        e = json.loads(line)
        served[e["id"]] = e
    page = expect(store.post("/triplets/search", {"rollout_id_in": [x["rollout_id"] for x in ro],
                                                  "adapter": "llm_proxy", "limit": 100}), 200)
    assert len(page["items"]) == len(ro)
    tok = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    inputs = {x["rollout_id"]: x["input"] for x in ro}
    rewards = []
    for it in page["items"]:
        (t,) = it["triplets"]
        e = served[t["metadata"]["response_id"]]
        ch = e["choices"][0]
        assert t["prompt"]["token_ids"] == ch["prompt_token_ids"]
        assert t["response"]["token_ids"] == ch["token_ids"]
        task = inputs[it["rollout_id"]]
        question = TEMPLATE.format(**task)
        prompt = tok.decode(t["prompt"]["token_ids"], skip_special_tokens=False)
        assert prompt.endswith(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
        # the reward in the store is the contains grader on the answer the proxy recorded
        (llm,) = [s for s in store.spans(it["rollout_id"])["items"] if s["name"] == "litellm_request"]
        answer = llm["attributes"]["gen_ai.completion.0.content"]
        assert answer == tok.decode(ch["token_ids"], skip_special_tokens=True)
        assert it["final_reward"] == (1.0 if task["expected"].lower() in answer.lower() else 0.0)
        rewards.append(it["final_reward"])

    # the saved folder reloads without the GGUF and serves
    for f in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / f).exists(), f
    s = Serve(out, "--max-seq", "256")
    try:
        c = openai.OpenAI(base_url=s.url, api_key="none", max_retries=0, timeout=120)
        q = c.chat.completions.create(model="policy", messages=[{"role": "user", "content":
                                      TEMPLATE.format(country="Germany")}], temperature=0, max_tokens=8)
        assert q.choices[0].message.content and q.choices[0].model_extra["token_ids"]
    finally:
        s.stop()
    # an update with a non-zero advantage moved the weights (zero-variance groups give none)
    # (AdamW from zero moments with zero gradients and no weight decay changes nothing)
    base = dequant(*gguf_meta[1]["output_norm.weight"])
    saved = read_safetensors(out / "model.safetensors")["model.norm.weight"]
    assert base.shape == saved.shape
    moved = any(x["zero_var_frac"] < 1 for x in rows)
    assert (not np.array_equal(base, saved)) == moved, (rewards, rows)


def test_resources_file_is_checked(tmp_path):
    """A bad --resources file stops `trainerd rl --store` before it serves or enqueues anything
    (the store URL is never contacted)."""
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"prompt": "12=", "answer": "21"}) + "\n")
    cases = {"[1, 2]": "expected a JSON object of resources",
             '{"prompt_template": {"template": "x"}}': 'resource "prompt_template" is not an object',
             "{nope": "--resources"}
    for text, msg in cases.items():
        res = tmp_path / "res.json"
        res.write_text(text)
        r = subprocess.run([trainerd(), "rl", "--store", "http://127.0.0.1:9", "--model",
                            f"{REPO}/examples/rl/model_tiny.json", "--train", str(train),
                            "--resources", str(res)], env=ENV, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and msg in r.stderr, (text, r.stderr)
