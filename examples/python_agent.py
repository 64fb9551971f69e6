#!/usr/bin/env python3
"""An agent for `runnerd --agent exec:...` written with the plain `openai` SDK (no agentlightning).

runnerd starts it once per rollout: the task arrives as JSON on stdin, OPENAI_BASE_URL points at
runnerd's LLM proxy for this attempt (every call is recorded as spans of the attempt), and the
last line printed on stdout is the reward.

    runnerd --store http://127.0.0.1:4747 --agent "exec:python3 examples/python_agent.py"

Task input: {"question": "...", "answer": "..."}; resources: a `main_llm` (model name) and
optionally a prompt_template with a {question} placeholder. Set AGENT_STREAM=1 to stream.
"""
import json
import os
import sys

from openai import OpenAI


def main() -> int:
    task = json.load(sys.stdin)
    inp = task["input"] if isinstance(task["input"], dict) else {"question": str(task["input"])}
    resources = task.get("resources") or {}
    template = next((r["template"] for r in resources.values()
                     if r.get("resource_type") == "prompt_template"), "{question}")
    model = (task.get("llm") or {}).get("model") or os.environ.get("AGL_MODEL", "default")

    client = OpenAI()  # OPENAI_BASE_URL and a placeholder OPENAI_API_KEY come from runnerd
    messages = [{"role": "user", "content": template.format(**inp)}]
    if os.environ.get("AGENT_STREAM") == "1":
        answer = ""
        for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                answer += chunk.choices[0].delta.content
    else:
        answer = client.chat.completions.create(model=model,
                                                messages=messages).choices[0].message.content

    expected = str(inp.get("answer", "")).strip().lower()
    reward = 1.0 if expected and expected in (answer or "").lower() else 0.0
    print(f"answer: {answer}", file=sys.stderr)
    print(json.dumps({"reward": reward}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
