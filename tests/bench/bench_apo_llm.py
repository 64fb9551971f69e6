"""The fake OpenAI-compatible LLM of the APO benchmark (tests/bench/bench_apo.py).

Every `POST …/chat/completions` sleeps a fixed latency, then answers by model; calls are served
concurrently (one thread per connection), so the latency is what a remote model would add, not a
queue. It plays three models, like the scripted server of tests/integration/test_apo.py:

* agent-model (the `prompt` agent's model): classifies a review's sentiment; it is right more
  often when the prompt carries certain instructions (deterministic per review);
* critic-model: a fixed critique;
* editor-model: returns the seed plus the instructions the shown template already has, plus one
  more. It never drops the `{text}` placeholder, so no child is rejected and both APO
  implementations make exactly the same number of calls and rollouts.

The editor reads the template from whatever the request contains, so it serves our prompts and
the reference's POML-rendered ones alike."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEED = "Classify the sentiment of this review: {text}"
INSTRUCTIONS = [
    "Answer with exactly one word.",
    "Use lowercase letters only.",
    "Do not explain your answer.",
    "Reply with positive, negative or neutral.",
]
WEIGHTS = [0.25, 0.3, 0.1, 0.15]
WORDS_POS = ["great", "lovely", "superb", "fine", "charming", "excellent", "fun", "moving"]
WORDS_NEG = ["dull", "awful", "boring", "weak", "messy", "tedious", "flat", "clumsy"]


def make_tasks(n: int, salt: str) -> list:
    out = []
    for i in range(n):
        pos = i % 2 == 0
        w = (WORDS_POS if pos else WORDS_NEG)[(i * 3 + len(salt)) % 8]
        out.append({"text": f"{salt} review {i}: the film was {w}.",
                    "expected": "positive" if pos else "negative", "grader": "exact"})
    return out


def accuracy(prompt: str) -> float:
    return 0.15 + sum(w for ins, w in zip(INSTRUCTIONS, WEIGHTS) if ins in prompt)


def bucket(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


class FakeLLM:
    def __init__(self, labels: dict, latency: float):
        self.labels = labels  # review text -> expected label
        self.latency = latency
        self.lock = threading.Lock()
        self.reset()
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
                msgs = body.get("messages") or []
                text = llm.call(body.get("model"), msgs)
                n = sum(len(str(m.get("content") or "").split()) for m in msgs)
                self._json(200, {
                    "id": "chatcmpl-" + os.urandom(6).hex(), "object": "chat.completion",
                    "created": int(time.time()), "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": n, "completion_tokens": len(text.split()),
                              "total_tokens": n + len(text.split())}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.server.request_queue_size = 512
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.counts = {}
            self.in_flight = 0
            self.peak = 0
            self.edits = 0

    def call(self, model, messages) -> str:
        with self.lock:
            self.counts[model] = self.counts.get(model, 0) + 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.latency)
            return self.answer(model, messages)
        finally:
            with self.lock:
                self.in_flight -= 1

    def answer(self, model, messages) -> str:
        everything = "\n".join(str(m.get("content") or "") for m in messages)
        if model == "agent-model":
            review = next((t for t in self.labels if t in everything), None)
            if review is None:
                return "I cannot tell."
            label = self.labels[review]
            if bucket(review) < accuracy(everything):
                return label
            return f"The sentiment of this review is {label.capitalize()}."
        if model == "critic-model":
            return ("- The answers add whole sentences; demand a single word.\n"
                    "- Capitalised labels fail the check; require lowercase output.\n"
                    "- Name the allowed labels and forbid explanations.")
        if model == "editor-model":
            have = [ins for ins in INSTRUCTIONS if ins in everything]
            missing = [ins for ins in INSTRUCTIONS if ins not in have]
            with self.lock:
                self.edits += 1
                k = self.edits
            if missing:
                have.append(missing[k % len(missing)])
            return "\n".join([SEED] + have)
        return "?"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
