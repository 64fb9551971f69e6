"""A dependency-free chat-completions call for the APO example agents. runnerd sets
OPENAI_BASE_URL to its recording proxy for the current attempt, so every call made here is
recorded as spans of the rollout (and shown to APO's critic)."""
import json
import os
import urllib.request


def chat(model: str, messages: list, **params) -> str:
    base = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1").rstrip("/")
    body = json.dumps({"model": model, "messages": messages, **params}).encode()
    req = urllib.request.Request(base + "/chat/completions", data=body, headers={
        "Content-Type": "application/json",
        "Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "none")})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)["choices"][0]["message"]["content"] or ""


def task_from_stdin(stdin) -> tuple[dict, str, str]:
    """(input, template, model) of the rollout runnerd hands us on stdin."""
    task = json.load(stdin)
    resources = task.get("resources") or {}
    template = next(r["template"] for r in resources.values()
                    if r.get("resource_type") == "prompt_template")
    model = (task.get("llm") or {}).get("model") or os.environ.get("AGL_MODEL", "default")
    return task["input"], template, model
