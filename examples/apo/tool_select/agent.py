#!/usr/bin/env python3
"""Tool-selection agent for APO (runnerd exec agent): given a request and a tool list, the model
must name the tool and its arguments as JSON. The verifier gives 0.5 for the right tool and 0.5
more for exactly the right arguments, so APO sees partial progress.

    runnerd --agent "exec:python3 examples/apo/tool_select/agent.py" ...
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llm import chat, task_from_stdin  # noqa: E402


def parse(answer: str):
    """The first JSON object in the answer (bare, or inside a ``` fence)."""
    m = re.search(r"\{.*\}", answer or "", re.S)
    if not m:
        return None
    try:
        return json.loads(m.group(0))
    except ValueError:
        return None


def norm(v):
    if isinstance(v, str):
        return v.strip().lower()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {k.lower(): norm(x) for k, x in v.items()}
    return v


def verify(got, expected) -> float:
    if not isinstance(got, dict):
        return 0.0
    tool = got.get("tool") or got.get("name")
    if norm(tool) != norm(expected["tool"]):
        return 0.0
    args = got.get("arguments", got.get("args"))
    return 1.0 if norm(args) == norm(expected["arguments"]) else 0.5


def main() -> int:
    inp, template, model = task_from_stdin(sys.stdin)
    prompt = template.format(**{k: v for k, v in inp.items() if k != "expected"})
    answer = chat(model, [{"role": "user", "content": prompt}], temperature=0)
    reward = verify(parse(answer), inp["expected"])
    print(f"answer: {answer}", file=sys.stderr)
    print(json.dumps({"reward": reward}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
