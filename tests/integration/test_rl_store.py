"""The policy server and `trainerd rl --store` through the real system (issue 8).

* `trainerd serve` against the real `openai` SDK: /v1/models, /v1/completions and
  /v1/chat/completions with n, seed, temperature, top_p, max_tokens, stop, logprobs and
  streaming, vLLM's token-id fields, determinism under concurrent (batched) requests.
* stored + runnerd (exec agent examples/rl/reverse_agent.py through runnerd's LLM proxy) +
  `trainerd rl --store` for three GRPO steps on the tiny model: rollouts flow, the triplets carry
  exactly the token ids the server generated, the agents' rewards match those ids, the update
  runs on them and every step publishes a new `main_llm` snapshot that the next step's rollouts
  use.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time

import openai
import pytest

from conftest import expect
from runnerd_support import Runnerd
from test_rl_numpy import REPO, trainerd

PY = sys.executable
ALPHABET = "0123456789="


def enc(text):
    """The tiny model's tokenizer (chars:0123456789=): ids 0 pad, 1 bos, 2 eos, then chars."""
    return [3 + ALPHABET.index(c) for c in text]


def dec(ids):
    return "".join(ALPHABET[i - 3] for i in ids if i >= 3)


def verify(resp_ids, answer):
    """trainerd's built-in verifier: matched positions of answer+EOS over its length."""
    target = enc(answer) + [2]
    return sum(1 for a, b in zip(resp_ids, target) if a == b) / len(target)


def env():
    return dict(os.environ, OMP_NUM_THREADS="2", OMP_WAIT_POLICY="passive")


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """Tasks and a weak SFT warm start of examples/rl/model_tiny.json (as in `make demo`)."""
    d = tmp_path_factory.mktemp("rlstore")
    subprocess.run([PY, os.path.join(REPO, "examples/rl/make_tasks.py"), str(d)], check=True)
    subprocess.run([trainerd(), "sft", "--model", os.path.join(REPO, "examples/rl/model_tiny.json"),
                    "--train", str(d / "train_sft.jsonl"), "--steps", "20", "--batch", "32",
                    "--lr", "3e-3", "--seed", "1", "--out", str(d / "warm"), "--quiet"],
                   check=True, env=env(), timeout=60)
    return d


class Serve:
    def __init__(self, model, *args):
        self.proc = subprocess.Popen([trainerd(), "serve", "--model", str(model), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env(), cwd=REPO)
        line = self.proc.stdout.readline()
        assert " on http://" in line, line + self.proc.stdout.read()
        self.url = line.rsplit(" on ", 1)[1].strip()

    def stop(self):
        self.proc.terminate()
        out = self.proc.communicate(timeout=10)[0]
        assert self.proc.returncode == 0, out
        return out


@pytest.fixture
def server(warm):
    s = Serve(warm / "warm", "--serve-log", str(warm / "serve.jsonl"), "--max-batch", "8")
    yield s
    s.stop()


def test_serve_openai_sdk(server):
    c = openai.OpenAI(base_url=server.url, api_key="none")
    assert [m.id for m in c.models.list().data] == ["policy"]

    # completions: n choices, token ids, legacy logprobs, same seed -> same sample
    r = c.completions.create(model="policy", prompt="123=", max_tokens=5, n=3, seed=7,
                             temperature=1.0, logprobs=2, extra_body={"return_token_ids": True})
    assert len(r.choices) == 3 and r.usage.prompt_tokens == 15
    for ch in r.choices:
        x = ch.model_extra
        assert x["prompt_token_ids"] == [1] + enc("123=")
        ids = x["token_ids"]
        assert 1 <= len(ids) <= 5 and ch.text == dec(ids)
        assert ch.finish_reason == ("stop" if ids[-1] == 2 else "length")
        lp = ch.logprobs
        assert len(lp.token_logprobs) == len(ids) == len(lp.tokens) == len(lp.top_logprobs)
        for v, top in zip(lp.token_logprobs, lp.top_logprobs):
            assert v <= 0 and len(top) == 2 and max(top.values()) >= v - 1e-6
    again = c.completions.create(model="policy", prompt="123=", max_tokens=5, n=3, seed=7)
    assert [ch.model_extra["token_ids"] for ch in again.choices] == \
        [ch.model_extra["token_ids"] for ch in r.choices]

    # prompt as token ids; max_tokens 1 -> one token, "length" unless it is EOS
    r = c.completions.create(model="policy", prompt=[1] + enc("45="), max_tokens=1, seed=1)
    ids = r.choices[0].model_extra["token_ids"]
    assert len(ids) == 1 and r.choices[0].finish_reason == ("stop" if ids == [2] else "length")

    # chat: prompt_token_ids at the top level; greedy picks the top log-prob
    r = c.chat.completions.create(model="policy", messages=[{"role": "user", "content": "123="}],
                                  temperature=0, logprobs=True, top_logprobs=3, max_tokens=6)
    assert r.model_extra["prompt_token_ids"] == [1] + enc("123=")
    ids = r.choices[0].model_extra["token_ids"]
    assert r.choices[0].message.content == dec(ids)
    content = r.choices[0].logprobs.content
    assert len(content) == len(ids)
    for t in content:
        assert abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6

    # stop strings are trimmed from the text but the ids stay the ones sampled
    greedy = dec(ids)
    if len(greedy) >= 2:
        cut = greedy[1]
        s = c.chat.completions.create(model="policy", temperature=0, stop=[cut], max_tokens=6,
                                      messages=[{"role": "user", "content": "123="}])
        assert s.choices[0].message.content == greedy[:greedy.index(cut)]
        assert s.choices[0].finish_reason == "stop"
        assert s.choices[0].model_extra["stop_reason"] == cut

    # streaming: the same sample as without streaming, ids per chunk, prompt ids first
    kw = dict(model="policy", messages=[{"role": "user", "content": "904="}], seed=11,
              max_tokens=5)
    full = c.chat.completions.create(**kw)
    text, sids, first = "", [], None
    for chunk in c.chat.completions.create(stream=True, **kw):
        first = first or chunk.model_extra.get("prompt_token_ids")
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            sids += chunk.choices[0].model_extra.get("token_ids") or []
    assert first == [1] + enc("904=")
    assert text == full.choices[0].message.content
    assert sids == full.choices[0].model_extra["token_ids"]

    # errors in OpenAI's shape
    with pytest.raises(openai.BadRequestError, match="outside the model's tokenizer"):
        c.completions.create(model="policy", prompt="abc")
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model="policy", prompt="1=", top_p=2)


def test_serve_logprobs_are_those_of_the_sampled_distribution(server):
    """The tiny model's matrices have 16 ids, its tokenizer 14 (pad, bos, eos, 11 chars): the
    server samples only eos and the chars, so the log-probs it reports (and the trainer
    recomputes, rl_sample_support) are those of the softmax over exactly these 12 ids. They used
    to be the raw 16-way softmax: the mass on the never-sampled ids went untrained, grew to ~17%
    through the store, and GRPO stalled there while the in-process loop learned."""
    c = openai.OpenAI(base_url=server.url, api_key="none")
    r = c.completions.create(model="policy", prompt="123=", max_tokens=5, n=4, seed=3,
                             temperature=1.0, logprobs=12)
    for ch in r.choices:
        lp = ch.logprobs
        for tok, v, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            assert len(top) == 12  # every id that can be sampled, and only those
            assert abs(sum(math.exp(x) for x in top.values()) - 1.0) < 1e-4, top
            assert abs(top[tok] - v) < 1e-6


def test_serve_concurrent_requests_are_batched_deterministically(server):
    c = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
    prompts = [f"{i:03d}=" for i in range(0, 960, 60)]

    def one(p, seed):
        r = c.completions.create(model="policy", prompt=p, max_tokens=5, seed=seed, n=2)
        return [ch.model_extra["token_ids"] for ch in r.choices]

    alone = [one(p, i) for i, p in enumerate(prompts)]
    got = [None] * len(prompts)

    def worker(i):
        got[i] = one(prompts[i], i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert got == alone


def test_rl_store_loop(store, warm, tmp_path):
    # the agent uses the chat API here (examples/rl/store_demo.sh uses completions)
    runner = Runnerd(store.url, "--agent", f"exec:{PY} examples/rl/reverse_agent.py",
                     "--workers", "4", "--poll-interval", "0.1", "--log-level", "info",
                     env={"AGENT_API": "chat"})
    steps, P, G = 3, 4, 4
    log, serve_log, out = tmp_path / "rl.jsonl", tmp_path / "serve.jsonl", tmp_path / "policy"
    try:
        r = subprocess.run(
            [trainerd(), "rl", "--store", store.url, "--model", str(warm / "warm"),
             "--keep-optimizer", "--train", str(warm / "train.jsonl"), "--val",
             str(warm / "val.jsonl"), "--val-n", "8", "--val-every", "2", "--steps", str(steps),
             "--prompts", str(P), "--group", str(G), "--max-new", "5", "--lr", "3e-3",
             "--seed", "1", "--log", str(log), "--serve-log", str(serve_log), "--out", str(out),
             "--rollout-timeout", "30"],
            env=env(), cwd=REPO, capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + runner.log()[-3000:]
    finally:
        runner.kill()

    rows = [json.loads(line) for line in open(log)]
    train = [x for x in rows if "rollouts" in x]
    assert [x["step"] for x in train] == [1, 2, 3]
    for x in train:
        assert x["rollouts"] == x["finished"] == x["succeeded"] == x["rows"] == P * G, x
        assert x["tokens"] > 0 and x["rows_dropped"] == 0
        # every row's ids are those the server generated for that response id, and with the
        # same weights the trainer's log-probs of them equal the server's at the same positions
        assert x["ids_verified"] == P * G and x["ids_mismatched"] == 0, x
        assert x["server_logprob_abs_diff"] < 1e-4, x
    vals = [x["step"] for x in rows if "val_reward" in x]
    assert vals == [0, 2, 3]

    # a new main_llm snapshot after every update, named by the next step's rollouts
    snaps = expect(store.get("/resources", params={"limit": 100}), 200)["items"]
    llm = [s for s in snaps if s["resources"]["main_llm"]["sampling_parameters"]["temperature"] > 0]
    assert len(llm) == steps + 1
    endpoints = {s["resources"]["main_llm"]["endpoint"] for s in snaps}
    assert len(endpoints) == 1 and endpoints.pop().endswith("/v1")
    published = [s["resources_id"] for s in llm]
    assert [x["resources_id"] for x in train] == published[1:]
    ro = expect(store.post("/rollouts/search", {"limit": 1000}), 200)["items"]
    assert sum(x["mode"] == "val" for x in ro) == 8 * len(vals)
    ro = [x for x in ro if x["mode"] == "train"]
    assert len(ro) == steps * P * G and all(x["status"] == "succeeded" for x in ro)
    by_step = {}
    for x in ro:
        by_step.setdefault(x["metadata"]["step"], set()).add(x["resources_id"])
    assert [by_step[s] for s in (1, 2, 3)] == [{published[0]}, {published[1]}, {published[2]}]

    # triplets carry exactly the ids the server generated; rewards agree with those ids
    served = {}
    for line in open(serve_log):
        e = json.loads(line)
        served[e["id"]] = e
    page = expect(store.post("/triplets/search", {"rollout_id_in": [x["rollout_id"] for x in ro],
                                                  "adapter": "llm_proxy", "limit": 100}), 200)
    assert len(page["items"]) == len(ro)
    inputs = {x["rollout_id"]: x["input"] for x in ro}
    versions = set()
    for it in page["items"]:
        (t,) = it["triplets"]
        e = served[t["metadata"]["response_id"]]
        versions.add(e["version"])
        ch = e["choices"][0]
        task = inputs[it["rollout_id"]]
        assert t["prompt"]["token_ids"] == ch["prompt_token_ids"] == [1] + enc(task["prompt"])
        assert t["response"]["token_ids"] == ch["token_ids"]
        assert it["final_reward"] == pytest.approx(verify(ch["token_ids"], task["answer"])), (
            it, e, task, [(x["name"], x["attributes"]) for x in store.spans(it["rollout_id"])["items"]])
    assert versions == {0, 1, 2}  # step s sampled from the policy after s-1 updates

    # the update changed the weights
    a = (warm / "warm" / "model.safetensors").read_bytes()
    b = (out / "model.safetensors").read_bytes()
    assert len(a) == len(b) and a != b
