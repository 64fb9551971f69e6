#!/usr/bin/env python3
"""The exec agent of `trainerd rl --store` for the reverse-digits task (no agentlightning).

runnerd starts it once per rollout (`runnerd --agent "exec:python3 examples/rl/reverse_agent.py"`):
the task arrives on stdin as {"rollout_id", "attempt_id", "mode", "input", "resources", "llm"},
OPENAI_BASE_URL is runnerd's LLM proxy for this attempt (which records the token ids the policy
server returns), and the last stdout line is the reward.

Task input: {"prompt": "123=", "answer": "321"} (examples/rl/make_tasks.py). The agent asks the
policy for a completion of the prompt with the `main_llm` resource's sampling parameters
(temperature, top_p, max_tokens) and scores it like trainerd's built-in verifier: matched
positions of answer + end-of-sequence over len(answer) + 1, where the end-of-sequence position
matches when the model stopped by itself (finish_reason "stop") right after len(answer)
characters.

AGENT_API=chat uses /chat/completions instead of /completions. AGENT_CLIENT=openai uses the
`openai` SDK; the default is the standard library (urllib), because runnerd starts one process
per rollout and importing the SDK costs ~0.7 s of CPU each time.
"""
import json
import os
import sys
import urllib.request


def ask(base_url, api, model, prompt, params):
    body = {"model": model, **params}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if os.environ.get("AGENT_CLIENT") == "openai":
        from openai import OpenAI

        client = OpenAI(base_url=base_url)
        if api == "chat":
            r = client.chat.completions.create(**body)
            return r.choices[0].message.content or "", r.choices[0].finish_reason
        r = client.completions.create(**body)
        return r.choices[0].text, r.choices[0].finish_reason
    req = urllib.request.Request(
        base_url.rstrip("/") + ("/chat/completions" if api == "chat" else "/completions"),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 "Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "none")})
    with urllib.request.urlopen(req, timeout=120) as resp:
        choice = json.load(resp)["choices"][0]
    text = choice["message"]["content"] if api == "chat" else choice["text"]
    return text or "", choice.get("finish_reason")


def reward(text, finish_reason, answer):
    """Partial credit over answer + EOS, as trainerd's verifier (rl.c rl_verify)."""
    match = sum(1 for a, b in zip(text, answer) if a == b)
    if finish_reason == "stop" and len(text) == len(answer):
        match += 1  # the model ended exactly after the answer
    return match / (len(answer) + 1)


def main() -> int:
    task = json.load(sys.stdin)
    inp = task["input"]
    llm = (task.get("resources") or {}).get("main_llm") or {}
    params = {k: v for k, v in (llm.get("sampling_parameters") or {}).items()
              if k in ("temperature", "top_p", "max_tokens", "seed", "stop")}
    model = (task.get("llm") or {}).get("model") or llm.get("model") or "policy"
    base_url = os.environ.get("OPENAI_BASE_URL") or (task.get("llm") or {}).get("base_url")
    text, finish = ask(base_url, os.environ.get("AGENT_API", "completions"), model,
                       inp["prompt"], params)
    r = reward(text, finish, str(inp["answer"]))
    print(f"prompt {inp['prompt']!r} answer {text!r} ({finish}) reward {r:.3f}", file=sys.stderr)
    print(json.dumps({"reward": r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
