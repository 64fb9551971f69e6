"""runnerd's worker pool end to end with a real stored: every agent kind (built-in prompt agent,
exec agents in Python/shell/C from examples/, an HTTP agent service), failure reasons on spans,
graceful drain on SIGTERM, abort on a second SIGTERM, and a runner killed mid-rollout whose
attempt turns unresponsive and whose rollout is requeued and finished by another runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from runnerd_support import (REPO, FakeUpstream, Runnerd, reward_of, wait_rollouts,
                             wait_until)

PY = sys.executable


@pytest.fixture
def upstream():
    up = FakeUpstream(reply=lambda msgs: "The answer is 42.")
    yield up
    up.close()


def llm_resources(store, upstream, template="Question: {question}"):
    return store.add_resources({
        "main_llm": {"resource_type": "llm", "endpoint": upstream.url, "model": "fake-model",
                     "sampling_parameters": {"temperature": 0.1}},
        "prompt": {"resource_type": "prompt_template", "template": template,
                   "engine": "f-string"}})


def spans_of(store, rid):
    return store.spans(rid, attempt_id="latest")["items"]


def test_prompt_agent_with_graders(store, upstream):
    llm_resources(store, upstream)
    tasks = [{"question": "life?", "expected": "42", "grader": "number"},
             {"question": "life?", "expected": "the answer is 42.", "grader": "exact"},
             {"question": "life?", "expected": "answer", "grader": "contains"},
             {"question": "life?", "expected": "^The .* 4[0-9]", "grader": "regex"},
             {"question": "life?", "expected": "43", "grader": "number"}]
    ids = [store.enqueue_one(input=t, mode="train")["rollout_id"] for t in tasks]
    r = Runnerd(store.url, "--workers", "2", "--agent", "prompt", "--poll-interval", "0.2")
    try:
        done = wait_rollouts(store, ids)
        assert all(x["status"] == "succeeded" for x in done.values()), done
        rewards = [reward_of(spans_of(store, i)) for i in ids]
        assert rewards == [1.0, 1.0, 1.0, 1.0, 0.0]
        spans = spans_of(store, ids[0])
        llm = next(s for s in spans if s["name"] == "litellm_request")
        reward = next(s for s in spans if s["name"] == "agentlightning.annotation")
        assert llm["attributes"]["gen_ai.prompt.0.content"] == "Question: life?"
        assert llm["attributes"]["gen_ai.request.temperature"] == 0.1
        assert reward["sequence_id"] > llm["sequence_id"]
        assert reward["attributes"]["agentlightning.reward.0.name"] == "primary"
        # a missing placeholder fails the attempt with the reason on a span
        bad = store.enqueue_one(input={"other": 1})["rollout_id"]
        assert wait_rollouts(store, [bad])[bad]["status"] == "failed"
        exc = next(s for s in spans_of(store, bad) if s["name"] == "agentlightning.exception")
        assert "{question}" in exc["attributes"]["exception.message"]
    finally:
        r.kill()


@pytest.mark.parametrize("agent", ["python", "shell", "c"])
def test_example_exec_agents(store, upstream, agent, tmp_path):
    if agent == "python":
        cmd = f"{PY} examples/python_agent.py"
    elif agent == "shell":
        cmd = "sh examples/curl_agent.sh"
    else:
        exe = tmp_path / "c_agent"
        subprocess.run(["cc", "-O1", "-o", str(exe), "examples/c_agent.c", "-lcurl",
                        "-ljansson"], check=True, cwd=REPO)
        cmd = str(exe)
    llm_resources(store, upstream, template="{question}")
    ids = [store.enqueue_one(input={"question": "meaning of life?", "answer": a})["rollout_id"]
           for a in ("42", "41")]
    r = Runnerd(store.url, "--agent", f"exec:{cmd}", "--poll-interval", "0.2",
                env={"OPENAI_API_KEY": "sk-secret"})
    try:
        done = wait_rollouts(store, ids, timeout=30)
        assert [done[i]["status"] for i in ids] == ["succeeded", "succeeded"], r.log()
        assert [reward_of(spans_of(store, i)) for i in ids] == [1.0, 0.0]
        spans = spans_of(store, ids[0])
        names = [s["name"] for s in spans]
        assert "litellm_request" in names and "agentlightning.operation" in names
        op = next(s for s in spans if s["name"] == "agentlightning.operation")
        assert op["attributes"]["runnerd.exec.exit_code"] == 0
        assert "answer:" in op["attributes"]["runnerd.exec.stderr"]
        # the agent never saw the upstream key; the upstream did
        assert all(q["headers"]["Authorization"] == "Bearer sk-secret"
                   for q in upstream.requests)
    finally:
        r.kill()


def test_exec_agent_streaming_and_environment(store, upstream, tmp_path):
    llm_resources(store, upstream)
    script = tmp_path / "envdump.sh"
    script.write_text('cat > "$OUT_DIR/$AGL_ROLLOUT_ID.stdin"\n'
                      'env | grep -E "^(OPENAI|AGL)_" | sort > "$OUT_DIR/$AGL_ROLLOUT_ID.env"\n'
                      f'AGENT_STREAM=1 {PY} {REPO}/examples/python_agent.py '
                      '< "$OUT_DIR/$AGL_ROLLOUT_ID.stdin"\n')
    rid = store.enqueue_one(input={"question": "q", "answer": "42"}, mode="val")["rollout_id"]
    r = Runnerd(store.url, "--agent", f"exec:sh {script}", "--poll-interval", "0.2",
                env={"OUT_DIR": str(tmp_path), "OPENAI_API_KEY": "sk-secret"})
    try:
        assert wait_rollouts(store, [rid])[rid]["status"] == "succeeded", r.log()
        env = dict(line.split("=", 1) for line in
                   (tmp_path / f"{rid}.env").read_text().splitlines())
        att = store.latest_attempt(rid)
        assert env["AGL_ROLLOUT_ID"] == rid and env["AGL_ATTEMPT_ID"] == att["attempt_id"]
        assert env["OPENAI_BASE_URL"] == \
            f"{r.proxy_url}/rollout/{rid}/attempt/{att['attempt_id']}/v1"
        assert env["OPENAI_API_KEY"] != "sk-secret" and env["AGL_STORE_URL"] == store.url
        task = json.loads((tmp_path / f"{rid}.stdin").read_text())
        assert task["input"] == {"question": "q", "answer": "42"} and task["mode"] == "val"
        assert task["resources"]["main_llm"]["model"] == "fake-model"
        llm = next(s for s in spans_of(store, rid) if s["name"] == "litellm_request")
        assert llm["attributes"]["llm.is_streaming"] is True
        assert llm["attributes"]["response_token_ids"]
        assert reward_of(spans_of(store, rid)) == 1.0
    finally:
        r.kill()


@pytest.mark.parametrize("how", ["shell", "missing"])
def test_exec_command_forms(store, upstream, tmp_path, how):
    """A command of plain words is started directly (no /bin/sh); shell syntax still goes
    through /bin/sh; a program that does not exist fails the attempt and says so."""
    llm_resources(store, upstream)
    if how == "shell":
        cmd = f"R=0.25; cat > /dev/null && echo \"{{\\\"reward\\\": $R}}\""
    else:
        cmd = str(tmp_path / "no-such-agent") + " --flag"
    rid = store.enqueue_one(input={"q": 1})["rollout_id"]
    r = Runnerd(store.url, "--agent", f"exec:{cmd}", "--poll-interval", "0.2")
    try:
        done = wait_rollouts(store, [rid], timeout=20)
        if how == "shell":
            assert done[rid]["status"] == "succeeded", r.log()
            assert reward_of(spans_of(store, rid)) == 0.25
        else:
            assert done[rid]["status"] == "failed"
            exc = next(s for s in spans_of(store, rid) if s["name"] == "agentlightning.exception")
            assert exc["attributes"]["exception.message"] == (
                f"exec agent: cannot start {tmp_path}/no-such-agent: No such file or directory")
    finally:
        r.kill()


def test_crashing_and_timing_out_exec_agents(store, upstream, tmp_path):
    llm_resources(store, upstream)
    script = tmp_path / "agent.sh"
    script.write_text('t=$(cat)\n'
                      'case "$t" in\n'
                      '  *crash*) echo "boom: bad things" >&2; exit 3 ;;\n'
                      '  *hang*) sleep 30 ;;\n'
                      'esac\n'
                      'echo \'{"reward": 0.5}\'\n')
    crash = store.enqueue_one(input={"kind": "crash"})["rollout_id"]
    hang = store.enqueue_one(input={"kind": "hang"}, config={"timeout_seconds": 1.0})["rollout_id"]
    ok = store.enqueue_one(input={"kind": "fine"})["rollout_id"]
    r = Runnerd(store.url, "--agent", f"exec:sh {script}", "--poll-interval", "0.2")
    try:
        done = wait_rollouts(store, [crash, hang, ok], timeout=20)
        assert done[crash]["status"] == "failed" and done[hang]["status"] == "failed"
        assert done[ok]["status"] == "succeeded"
        exc = next(s for s in spans_of(store, crash) if s["name"] == "agentlightning.exception")
        assert exc["attributes"]["exception.message"] == "exec agent exited with status 3"
        op = next(s for s in spans_of(store, crash) if s["name"] == "agentlightning.operation")
        assert "boom: bad things" in op["attributes"]["runnerd.exec.stderr"]
        # timeout: the store may mark it first (lazy scan); either way the reason is recorded
        wait_until(lambda: any(s["name"] == "agentlightning.exception"
                               for s in store.spans(hang)["items"]), 10, 0.1, "timeout span")
        exc = next(s for s in store.spans(hang)["items"]
                   if s["name"] == "agentlightning.exception")
        assert "timed out" in exc["attributes"]["exception.message"]
        assert reward_of(spans_of(store, ok)) == 0.5
        assert r.proc.poll() is None
    finally:
        r.kill()


class _AgentService:
    """An agent as an HTTP service: calls the LLM it is given with plain requests."""

    def __init__(self):
        svc = self
        self.tasks = []

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                task = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                svc.tasks.append(task)
                if task["input"].get("fail"):
                    data = json.dumps({"detail": "agent cannot do this"}).encode()
                    status = 500
                else:
                    out = requests.post(task["llm"]["base_url"] + "/chat/completions",
                                        json={"model": task["llm"]["model"], "messages": [
                                            {"role": "user", "content": "hello"}]},
                                        timeout=10).json()
                    ok = "42" in out["choices"][0]["message"]["content"]
                    data = json.dumps({"reward": 0.75 if ok else 0.0}).encode()
                    status = 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/run"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_http_agent(store, upstream):
    llm_resources(store, upstream)
    svc = _AgentService()
    ok = store.enqueue_one(input={"x": 1})["rollout_id"]
    bad = store.enqueue_one(input={"fail": True})["rollout_id"]
    r = Runnerd(store.url, "--agent", f"http:{svc.url}", "--poll-interval", "0.2")
    try:
        done = wait_rollouts(store, [ok, bad])
        assert done[ok]["status"] == "succeeded" and done[bad]["status"] == "failed"
        assert reward_of(spans_of(store, ok)) == 0.75
        assert any(s["name"] == "litellm_request" for s in spans_of(store, ok))
        exc = next(s for s in spans_of(store, bad) if s["name"] == "agentlightning.exception")
        assert "500" in exc["attributes"]["exception.message"]
        assert "agent cannot do this" in exc["attributes"]["exception.message"]
    finally:
        r.kill()
        svc.close()


def _sleepy_agent(tmp_path, seconds):
    script = tmp_path / "sleepy.sh"
    script.write_text(f'cat > /dev/null\necho started > "{tmp_path}/$AGL_ROLLOUT_ID"\n'
                      f'sleep {seconds}\necho \'{{"reward": 1}}\'\n')
    return f"exec:sh {script}"


def test_sigterm_drains_then_second_sigterm_aborts(store, tmp_path):
    first = store.enqueue_one(input={"n": 1})["rollout_id"]
    second = store.enqueue_one(input={"n": 2})["rollout_id"]
    r = Runnerd(store.url, "--agent", _sleepy_agent(tmp_path, 1.5), "--poll-interval", "0.2",
                "--worker-prefix", "drain-")
    try:
        wait_until(lambda: (tmp_path / first).exists(), 10, 0.05, "agent start")
        r.signal(signal.SIGTERM)
        assert r.wait(15) == 0, r.log()
        assert store.rollout(first)["status"] == "succeeded"
        assert store.rollout(second)["status"] == "queuing"  # no new rollout taken
        w = store.worker("drain-0")
        assert w["heartbeat_stats"]["cpu_cores"] >= 1
    finally:
        r.kill()

    r = Runnerd(store.url, "--agent", _sleepy_agent(tmp_path, 20), "--poll-interval", "0.2")
    try:
        wait_until(lambda: (tmp_path / second).exists(), 10, 0.05, "agent start")
        r.signal(signal.SIGTERM)
        # pending signals of one kind merge: send the second once the first was taken
        wait_until(lambda: "draining" in r.log(), 5, 0.02, "drain to start")
        r.signal(signal.SIGTERM)
        assert r.wait(10) == 0, r.log()
        assert store.rollout(second)["status"] == "failed"
        exc = next(s for s in spans_of(store, second) if s["name"] == "agentlightning.exception")
        assert "aborted" in exc["attributes"]["exception.message"]
    finally:
        r.kill()


def test_runner_killed_mid_rollout_is_requeued(store, tmp_path):
    rid = store.enqueue_one(input={"n": 1}, config={
        "unresponsive_seconds": 1.0, "max_attempts": 2,
        "retry_condition": ["unresponsive"]})["rollout_id"]
    r = Runnerd(store.url, "--agent", _sleepy_agent(tmp_path, 30), "--poll-interval", "0.2",
                "--heartbeat-interval", "0.25")
    try:
        wait_until(lambda: (tmp_path / rid).exists(), 10, 0.05, "agent start")
        # heartbeats keep a live but silent attempt from turning unresponsive
        time.sleep(1.6)
        first = store.latest_attempt(rid)
        assert first["status"] == "running", first
        r.kill()  # SIGKILL of the whole process group: runner and agent die
    finally:
        r.kill()
    wait_until(lambda: store.rollout(rid)["status"] == "requeuing", 10, 0.1, "requeue")
    atts = store.attempts(rid)["items"]
    assert atts[0]["status"] == "unresponsive"
    os.remove(tmp_path / rid)
    r2 = Runnerd(store.url, "--agent", _sleepy_agent(tmp_path, 0), "--poll-interval", "0.2")
    try:
        done = wait_rollouts(store, [rid])
        assert done[rid]["status"] == "succeeded"
        atts = store.attempts(rid)["items"]
        assert [a["status"] for a in atts] == ["unresponsive", "succeeded"]
    finally:
        r2.kill()


def test_max_rollouts_then_exit(store, tmp_path):
    ids = [store.enqueue_one(input={"n": i})["rollout_id"] for i in range(3)]
    r = Runnerd(store.url, "--agent", _sleepy_agent(tmp_path, 0), "--poll-interval", "0.2",
                "--max-rollouts", "2")
    try:
        assert r.wait(15) == 0, r.log()
        statuses = [store.rollout(i)["status"] for i in ids]
        assert statuses == ["succeeded", "succeeded", "queuing"]
    finally:
        r.kill()
