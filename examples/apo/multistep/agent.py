#!/usr/bin/env python3
"""Two-step agent for APO (runnerd exec agent): the optimised template drives a reasoning call,
then a second call extracts the final number from that reasoning. APO's critic sees both calls
of each run. Reward 1.0 when the number equals the task's answer.

    runnerd --agent "exec:python3 examples/apo/multistep/agent.py" ...
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llm import chat, task_from_stdin  # noqa: E402


def last_number(text: str):
    nums = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text or "")
    if not nums:
        return None
    return float(nums[-1].replace(",", ""))


def main() -> int:
    inp, template, model = task_from_stdin(sys.stdin)
    messages = [{"role": "user", "content": template.format(problem=inp["problem"])}]
    reasoning = chat(model, messages, temperature=0)
    messages += [{"role": "assistant", "content": reasoning},
                 {"role": "user", "content": "Reply with the final number only."}]
    final = chat(model, messages, temperature=0)
    got = last_number(final)
    reward = 1.0 if got is not None and abs(got - float(inp["answer"])) < 1e-6 else 0.0
    print(f"reasoning: {reasoning}\nfinal: {final}", file=sys.stderr)
    print(json.dumps({"reward": reward}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
