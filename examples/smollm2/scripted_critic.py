#!/usr/bin/env python3
"""A SCRIPTED stand-in for the critic and editor LLMs of `trainerd apo` (a test double, not a
model). SmolLM2-135M cannot critique or rewrite prompts (measured: docs/results.md), and this
example must run offline on a CPU, so apo.sh uses this by default; CRITIC=smollm2 or
CRITIC_URL=... uses a real model instead.

What it does, honestly:
* /models lists one model, "scripted".
* A critique request (no "Critique:" section in the user message) gets a critique built from
  the runs it was shown: how many earned reward 0, and two fixed suggestions (ask a direct
  question, ask for the city only).
* An edit request gets the next template of a fixed, hand-written menu below that differs from
  the template being edited (a counter walks the menu). It does not read the critique.

So the candidates APO explores come from this menu; which of them wins is decided by APO's
search from the rewards of the real agent model (SmolLM2 through runnerd's prompt agent).

Usage: scripted_critic.py PORT   (prints "listening on http://127.0.0.1:PORT/v1")"""
import itertools
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MENU = [
    "What is the capital of {country}?",
    "{country} has a capital city. Which city is it?",
    "Reply with one word only. What is the capital of {country}?",
    "Name the capital city of {country}.",
    "Question: What is the capital city of {country}?\nAnswer:",
    "Tell me about {country}.",
]
_counter = itertools.count()
_lock = threading.Lock()


def critique(user: str) -> str:
    rewards = [float(x) for x in re.findall(r"final reward: ([0-9.]+)", user)]
    low = sum(1 for r in rewards if r < 1)
    return (f"- {low} of {len(rewards)} runs did not name the right city.\n"
            "- Ask a direct question about the capital city of the country.\n"
            "- Ask for the name of the city only, with no other text.")


def edit(user: str) -> str:
    m = re.search(r"<template>\n?(.*?)\n?</template>", user, re.S)
    current = m.group(1).strip() if m else ""
    with _lock:
        while True:
            t = MENU[next(_counter) % len(MENU)]
            if t != current:
                return t


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            return self.reply(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self.reply(404, {"error": {"message": "not found"}})
        user = "\n".join(m.get("content") or "" for m in req.get("messages", []) if m.get("role") == "user")
        text = edit(user) if "\nCritique:\n" in user else critique(user)
        self.reply(200, {"id": "scripted", "object": "chat.completion", "model": req.get("model", "scripted"),
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})


if __name__ == "__main__":
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}/v1", flush=True)
    srv.serve_forever()
