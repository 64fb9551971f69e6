"""Support for the runnerd integration tests: a fake OpenAI-compatible upstream (the only test
double; it speaks HTTP/1.1 with keep-alive and streams SSE in chunked transfer encoding like
vLLM/OpenAI), and a helper that runs runnerd as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402

REPO = harness.REPO_ROOT


def runnerd_binary() -> str:
    return os.path.join(os.path.dirname(harness.stored_binary()), "runnerd")


def tokenize(text: str) -> list[int]:
    """The fake model's tokenizer: one token per word, id = 1000 + a stable hash."""
    return [1000 + (sum(map(ord, w)) * 31 + len(w)) % 30000 for w in text.split()]


class FakeUpstream:
    """An OpenAI-compatible server. reply(messages_or_prompt) -> text decides the answer.
    Supports vLLM's return_token_ids (prompt_token_ids + choices[].token_ids) and logprobs,
    unless reject_token_ids is set (then it answers 400 like the OpenAI API)."""

    def __init__(self, reply=None):
        self.reply = reply or (lambda msgs: "echo " + _last_user(msgs))
        self.requests: list[dict] = []  # {"path", "headers", "body"}
        self.reject_token_ids = False
        self.fail_status: int | None = None
        self.delay = 0.0
        self.chunk_delay = 0.0
        self.lock = threading.Lock()
        up = self

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
                if self.path.rstrip("/") == "/v1/models":
                    return self._json(200, {"object": "list", "data": [
                        {"id": "fake-model", "object": "model", "owned_by": "test"}]})
                self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(400, {"error": {"message": "bad json"}})
                with up.lock:
                    up.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": body})
                if up.delay:
                    time.sleep(up.delay)
                if up.fail_status:
                    return self._json(up.fail_status, {"error": {
                        "message": "model overloaded", "type": "server_error"}})
                if up.reject_token_ids and ("return_token_ids" in body):
                    return self._json(400, {"error": {
                        "message": "Unrecognized request argument supplied: return_token_ids",
                        "type": "invalid_request_error", "param": None, "code": None}})
                chat = self.path.endswith("/chat/completions")
                if not chat and not self.path.endswith("/completions"):
                    return self._json(404, {"error": {"message": "no such route"}})
                src = body.get("messages") if chat else body.get("prompt", "")
                text = up.reply(src)
                ptoks = tokenize(_last_user(src) if chat else str(src))
                rtoks = tokenize(text)
                rid = ("chatcmpl-" if chat else "cmpl-") + os.urandom(6).hex()
                want_ids = bool(body.get("return_token_ids"))
                want_lp = bool(body.get("logprobs"))
                usage = {"prompt_tokens": len(ptoks), "completion_tokens": len(rtoks),
                         "total_tokens": len(ptoks) + len(rtoks)}
                if body.get("stream"):
                    return self._stream(rid, body, chat, text, ptoks, rtoks, want_ids, want_lp,
                                        usage)
                choice = {"index": 0, "finish_reason": "stop"}
                if chat:
                    choice["message"] = {"role": "assistant", "content": text}
                else:
                    choice["text"] = text
                if want_ids:
                    choice["token_ids"] = rtoks
                if want_lp and chat:
                    choice["logprobs"] = {"content": [
                        {"token": w, "logprob": -0.5, "bytes": list(w.encode()),
                         "top_logprobs": []} for w in text.split()]}
                resp = {"id": rid, "object": "chat.completion" if chat else "text_completion",
                        "created": int(time.time()), "model": body.get("model", "fake-model"),
                        "choices": [choice], "usage": usage}
                if want_ids:
                    resp["prompt_token_ids"] = ptoks
                self._json(200, resp)

            def _chunk(self, data: bytes):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _stream(self, rid, body, chat, text, ptoks, rtoks, want_ids, want_lp, usage):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                words = text.split(" ")
                base = {"id": rid, "object": "chat.completion.chunk" if chat else
                        "text_completion", "created": int(time.time()),
                        "model": body.get("model", "fake-model")}

                def ev(obj):
                    self._chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")
                    if up.chunk_delay:
                        time.sleep(up.chunk_delay)

                if chat:
                    first = dict(base, choices=[{"index": 0, "delta": {"role": "assistant",
                                                                         "content": ""},
                                                 "finish_reason": None}])
                    if want_ids:
                        first["prompt_token_ids"] = ptoks
                    ev(first)
                for i, w in enumerate(words):
                    piece = w if i == 0 else " " + w
                    ch = {"index": 0, "finish_reason": None}
                    if chat:
                        ch["delta"] = {"content": piece}
                    else:
                        ch["text"] = piece
                    if want_ids and i < len(rtoks):
                        ch["token_ids"] = [rtoks[i]]
                    if want_lp and chat:
                        ch["logprobs"] = {"content": [{"token": w, "logprob": -0.25,
                                                       "bytes": list(w.encode()),
                                                       "top_logprobs": []}]}
                    ev(dict(base, choices=[ch]))
                last = {"index": 0, "finish_reason": "stop"}
                if chat:
                    last["delta"] = {}
                else:
                    last["text"] = ""
                ev(dict(base, choices=[last]))
                if (body.get("stream_options") or {}).get("include_usage"):
                    ev(dict(base, choices=[], usage=usage))
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _last_user(src) -> str:
    if isinstance(src, str):
        return src
    for m in reversed(src or []):
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c)
    return ""


class Runnerd:
    """A runnerd subprocess with its log captured to a file."""

    def __init__(self, store_url: str, *args: str, env: dict | None = None, wait=True):
        self.proxy_port = harness.free_port()
        self.proxy_url = f"http://127.0.0.1:{self.proxy_port}"
        self.argv = [runnerd_binary(), "--store", store_url, "--proxy-listen",
                     f"127.0.0.1:{self.proxy_port}", "--log-level", "debug", *args]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
        full_env.setdefault("PYTHON", sys.executable)
        if env:
            full_env.update(env)
        fd, self.log_path = tempfile.mkstemp(prefix="runnerd-", suffix=".log")
        logf = os.fdopen(fd, "w")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=logf, env=full_env, cwd=REPO,
                                     start_new_session=True)
        logf.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runnerd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.proxy_url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"runnerd proxy not up after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=20.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(timeout=10)


def wait_until(pred, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def wait_rollouts(store, ids, timeout=20.0):
    """Waits until every rollout is terminal; returns {id: rollout}."""
    def done():
        out = {}
        for rid in ids:
            r = store.rollout(rid)
            if r["status"] not in ("succeeded", "failed", "cancelled"):
                return None
            out[rid] = r
        return out
    return wait_until(done, timeout, 0.1, f"rollouts {ids} to finish")


def reward_of(spans):
    """find_final_reward of the reference: last span carrying agentlightning.reward.0.value."""
    for s in reversed(spans):
        v = s["attributes"].get("agentlightning.reward.0.value")
        if v is not None:
            return v
    return None
