"""trainerd apo end to end: stored + runnerd (built-in `prompt` agent) + trainerd apo against a
scripted OpenAI-compatible LLM server, the only test double. The server plays three models:

* agent-model: answers a review's sentiment. It is right more often when the prompt asks for one
  word and for lowercase (deterministically per review, so scores are reproducible);
* critic-model: returns a critique naming those two instructions;
* editor-model: adds one missing instruction to the template it is shown, and on every fourth
  call drops the {text} placeholder (APO must reject that child).

APO must raise the validation score of the seed, publish the best prompt and write the report.
Bad input and unreachable services must fail before any rollout is enqueued."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import expect
from runnerd_support import Runnerd

import harness

TRAINERD = os.path.join(os.path.dirname(harness.stored_binary()), "trainerd")

INSTR_ONE_WORD = "Answer with exactly one word."
INSTR_LOWER = "Use lowercase letters only."
SEED = "Classify the sentiment of this review: {text}"

WORDS_POS = ["great", "lovely", "superb", "fine", "charming", "excellent", "fun", "moving"]
WORDS_NEG = ["dull", "awful", "boring", "weak", "messy", "tedious", "flat", "clumsy"]


def make_tasks(n: int, salt: str) -> list[dict]:
    out = []
    for i in range(n):
        pos = i % 2 == 0
        w = (WORDS_POS if pos else WORDS_NEG)[(i * 3 + len(salt)) % 8]
        out.append({"text": f"{salt} review {i}: the film was {w}.",
                    "expected": "positive" if pos else "negative", "grader": "exact"})
    return out


def accuracy(prompt: str) -> float:
    p = prompt.lower()
    acc = 0.15
    if "one word" in p:
        acc += 0.35
    if "lowercase" in p:
        acc += 0.45
    return acc


def bucket(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


class ScriptedLLM:
    def __init__(self, labels: dict[str, str], delay: float = 0.0):
        self.labels = labels  # review text -> expected label
        self.delay = delay
        self.calls: list[dict] = []  # {"model", "messages", "t", "max_tokens"}
        self.edits = 0
        self.lock = threading.Lock()
        llm = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _json(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    return self._json(200, {"object": "list", "data": [
                        {"id": m, "object": "model"} for m in
                        ("agent-model", "critic-model", "editor-model")]})
                self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                text = llm.answer(body.get("model"), body.get("messages") or [],
                                  body.get("max_tokens"))
                n = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
                self._json(200, {
                    "id": "chatcmpl-" + os.urandom(6).hex(), "object": "chat.completion",
                    "created": int(time.time()), "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": n, "completion_tokens": len(text.split()),
                              "total_tokens": n + len(text.split())}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, model: str, messages: list[dict], max_tokens=None) -> str:
        with self.lock:
            self.calls.append({"model": model, "messages": messages, "t": time.time(),
                               "max_tokens": max_tokens})
        if self.delay:  # after recording, so a call from a killed client still counts
            time.sleep(self.delay)
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if model == "agent-model":
            review = next((t for t in self.labels if t in user), None)
            if review is None:
                return "I cannot tell."
            label = self.labels[review]
            if bucket(review) < accuracy(user):
                return label
            return f"The sentiment of this review is {label.capitalize()}."
        if model == "critic-model":
            return ("- The answers add whole sentences; demand a single word.\n"
                    "- Capitalised labels fail the check; require lowercase output.")
        if model == "editor-model":
            m = re.search(r"<template>\n(.*?)\n</template>", user, re.S)
            tmpl = m.group(1) if m else SEED
            with self.lock:
                self.edits += 1
                k = self.edits
            if k % 4 == 3:
                return tmpl.replace("{text}", "the review")
            for instr in (INSTR_ONE_WORD, INSTR_LOWER) if k % 2 else (INSTR_LOWER, INSTR_ONE_WORD):
                if instr not in tmpl:
                    return tmpl + "\n" + instr
            return tmpl
        return "?"

    def by_model(self, model):
        with self.lock:
            return [c for c in self.calls if c["model"] == model]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def write_jsonl(path, items):
    with open(path, "w") as f:
        for t in items:
            f.write(json.dumps(t) + "\n")


@pytest.fixture
def setup(tmp_path):
    train, val = make_tasks(16, "train"), make_tasks(16, "val")
    labels = {t["text"]: t["expected"] for t in train + val}
    llm = ScriptedLLM(labels)
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "val.jsonl", val)
    (tmp_path / "seed.json").write_text(json.dumps({
        "main_llm": {"resource_type": "llm", "endpoint": llm.url, "model": "agent-model",
                     "sampling_parameters": {"temperature": 0.0}},
        "prompt_template": {"resource_type": "prompt_template", "template": SEED,
                            "engine": "f-string"}}))
    yield tmp_path, llm, val
    llm.close()


def apo_argv(store_url, tmp, llm_url, *extra):
    return [TRAINERD, "apo", "--store", store_url, "--train", str(tmp / "train.jsonl"),
            "--val", str(tmp / "val.jsonl"), "--seed-prompt", str(tmp / "seed.json"),
            "--llm-base-url", llm_url, "--gradient-model", "critic-model",
            "--edit-model", "editor-model", "--beam-width", "2", "--branch-factor", "2",
            "--rounds", "2", "--gradient-batch-size", "3", "--val-batch-size", "8",
            "--seed", "7", "--llm-retries", "1", "--output", str(tmp / "best.txt"), *extra]


def run_apo(argv, timeout=90):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def test_apo_improves_the_prompt(store, setup):
    tmp, llm, val = setup
    seed_acc = sum(bucket(t["text"]) < accuracy(SEED) for t in val) / len(val)
    runner = Runnerd(store.url, "--workers", "8", "--agent", "prompt", "--poll-interval", "0.1",
                     "--log-level", "info")
    try:
        t0 = time.monotonic()
        p = run_apo(apo_argv(store.url, tmp, llm.url, "--llm-max-tokens", "300"))
        wall = time.monotonic() - t0
    finally:
        runner.kill()
    assert p.returncode == 0, p.stderr[-6000:]
    assert wall < 60, wall

    rep = json.loads((tmp / "best.txt.report.json").read_text())
    best_text = (tmp / "best.txt").read_text()
    # the seed's score is what the scripted model gives it, and APO beats it clearly
    assert rep["seed_score"] == pytest.approx(seed_acc)
    assert rep["best"]["score"] > rep["seed_score"] + 0.3, rep["best"]
    assert rep["best"]["text"] == best_text
    assert "{text}" in best_text and INSTR_LOWER in best_text
    assert rep["best"]["version"] != "v0"

    # published as apo-best with the other resources kept
    snap = expect(store.get("/resources/apo-best"), 200)
    assert snap["resources"]["prompt_template"]["template"] == best_text
    assert snap["resources"]["main_llm"]["model"] == "agent-model"

    # every candidate in the report; rejected children lost the placeholder
    cands = {c["version"]: c for c in rep["candidates"]}
    assert len(cands) == 1 + 2 * 2 * 2
    assert cands["v0"]["status"] == "seed" and cands["v0"]["parent"] is None
    rejected = [c for c in rep["candidates"] if c["status"] == "rejected"]
    assert rejected and all("{text}" in c["reason"] for c in rejected)
    assert all(not c["evaluations"] or c["status"] != "rejected" or
               all(e["kind"] == "train_batch" for e in c["evaluations"])
               for c in rep["candidates"])
    assert "APO rejected" not in p.stderr and "rejected" in p.stderr
    ok = [c for c in rep["candidates"] if c["status"] == "ok"]
    assert all(c["critique"] and c["parent"] for c in ok)
    assert rep["llm_usage"]["calls"] == len(llm.by_model("critic-model")) + \
        len(llm.by_model("editor-model"))
    assert rep["llm_usage"]["total_tokens"] > 0
    # --llm-max-tokens bounds the critic and editor calls only
    assert rep["params"]["llm_max_tokens"] == 300
    assert {c["max_tokens"] for c in llm.by_model("critic-model") + llm.by_model("editor-model")} \
        == {300}
    assert all(c["max_tokens"] is None for c in llm.by_model("agent-model"))
    assert [r["round"] for r in rep["rounds"]] == [0, 1, 2]

    # rollouts went through the store with the candidate's version as resources_id
    ev = next(e for e in cands["v0"]["evaluations"] if e["kind"] == "full_val")
    assert len(ev["rollout_ids"]) == len(val) and ev["finished"] == len(val)
    r0 = store.rollout(ev["rollout_ids"][0])
    assert r0["resources_id"] == "v0" and r0["mode"] == "val"
    assert expect(store.get("/resources/v0"), 200)["resources"]["prompt_template"][
        "template"] == SEED

    # the critic saw the runs: rewards and the agent's conversation
    crit = llm.by_model("critic-model")
    assert len(crit) == 2 * 2 * 2
    shown = "\n".join(m["content"] for m in crit[0]["messages"])
    assert "final reward" in shown and "review" in shown and SEED in shown

    # concurrency: all of round 1's critique batches were enqueued before the first critique
    grad_ids = [i for c in rep["candidates"] for e in c["evaluations"]
                if e["kind"] == "train_batch" and e["round"] == 1 for i in e["rollout_ids"]]
    assert len(grad_ids) == 2 * 2 * 3
    starts = [store.rollout(i)["start_time"] for i in grad_ids]
    assert max(starts) < min(c["t"] for c in crit)

    # progress lines
    assert re.search(r"apo: round 2/2: \d+/\d+ candidates evaluated, \d+/\d+ rollouts, best",
                     p.stderr), p.stderr[-3000:]


def test_apo_bad_input_fails_before_any_work(store, setup, tmp_path):
    tmp, llm, _ = setup
    base = apo_argv(store.url, tmp, llm.url)

    bad = tmp / "bad.jsonl"
    bad.write_text('{"text": "a"}\n\n{"text": oops}\n')
    argv = list(base)
    argv[argv.index(str(tmp / "train.jsonl"))] = str(bad)
    p = run_apo(argv)
    assert p.returncode == 2 and f"{bad}:3: not valid JSON" in p.stderr, p.stderr

    empty = tmp / "empty.jsonl"
    empty.write_text("\n\n")
    argv[argv.index(str(bad))] = str(empty)
    p = run_apo(argv)
    assert p.returncode == 2 and "no tasks" in p.stderr, p.stderr

    p = run_apo(base + ["--resource-name", "system_prompt"])
    assert p.returncode == 2 and "no resource named 'system_prompt'" in p.stderr, p.stderr

    noseed = tmp / "noprompt.json"
    noseed.write_text(json.dumps({"main_llm": {"resource_type": "llm", "endpoint": llm.url,
                                               "model": "agent-model"}}))
    argv = list(base)
    argv[argv.index(str(tmp / "seed.json"))] = str(noseed)
    p = run_apo(argv)
    assert p.returncode == 2 and "no prompt_template resource" in p.stderr, p.stderr

    p = run_apo([a if a != store.url else "http://127.0.0.1:9" for a in base])
    assert p.returncode == 1 and "cannot reach the store at http://127.0.0.1:9" in p.stderr, \
        p.stderr

    p = run_apo([a if a != llm.url else "http://127.0.0.1:9/v1" for a in base])
    assert p.returncode == 1 and "llm server http://127.0.0.1:9/v1 is unreachable" in p.stderr, \
        p.stderr

    p = run_apo([TRAINERD, "apo", "--train", "x"])
    assert p.returncode == 2 and "--val is required" in p.stderr

    # nothing was enqueued, nothing asked of the models
    assert store.stats()["total_rollouts"] == 0
    assert not llm.calls or all(c["model"] is None for c in llm.calls)


def state_snapshot(store):
    page = expect(store.get("/resources", params={"limit": 1000}), 200)
    ids = [r["resources_id"] for r in page["items"] if r["resources_id"].startswith("apo-state-")]
    if not ids:
        return None
    snap = expect(store.get(f"/resources/{ids[0]}"), 200)
    return json.loads(snap["resources"]["apo_state"]["template"])


def all_rollout_ids(store):
    page = expect(store.get("/rollouts", params={"limit": 10000}), 200)
    return {r["rollout_id"] for r in page["items"]}


def test_apo_resumes_after_a_kill(store, setup):
    tmp, llm, _ = setup
    llm.delay = 0.2  # slow enough to kill it mid-round
    runner = Runnerd(store.url, "--workers", "8", "--agent", "prompt", "--poll-interval", "0.1",
                     "--log-level", "info")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
    try:
        argv = apo_argv(store.url, tmp, llm.url)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)

        def children():
            st = state_snapshot(store)
            return len((st or {}).get("children", {}))
        deadline = time.monotonic() + 40
        while children() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        k = children()
        assert 2 <= k < 8, k
        before = all_rollout_ids(store)
        critiques_before = len(llm.by_model("critic-model"))
        p = run_apo(argv)
    finally:
        runner.kill()
    assert p.returncode == 0, p.stderr[-6000:]
    assert "resuming run apo-state-" in p.stderr
    rep = json.loads((tmp / "best.txt.report.json").read_text())
    assert rep["best"]["score"] > rep["seed_score"]
    # children recorded before the kill are not generated again
    assert len(llm.by_model("critic-model")) - critiques_before == 2 * 2 * 2 - k
    # rollouts enqueued before the kill are reused by the evaluations that own them
    used = {i for c in rep["candidates"] for e in c["evaluations"] for i in e["rollout_ids"]}
    seed_ids = next(e for e in rep["candidates"][0]["evaluations"]
                    if e["kind"] == "full_val")["rollout_ids"]
    assert set(seed_ids) <= before
    assert len(before & used) >= len(before) - 2 * 3
    assert all_rollout_ids(store) == before | used
