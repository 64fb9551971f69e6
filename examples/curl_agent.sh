#!/bin/sh
# An agent for `runnerd --agent exec:examples/curl_agent.sh`, in shell with curl and jq.
# The task is JSON on stdin; OPENAI_BASE_URL is runnerd's proxy URL for this attempt; the last
# stdout line is {"reward": x}. Reward 1 when the model's answer contains the task's "answer".
set -eu
task=$(cat)
question=$(printf '%s' "$task" | jq -r '.input.question // (.input | tostring)')
expected=$(printf '%s' "$task" | jq -r '.input.answer // ""')
model=$(printf '%s' "$task" | jq -r '.llm.model // "default"')
body=$(jq -n --arg m "$model" --arg q "$question" \
    '{model: $m, messages: [{role: "user", content: $q}]}')
answer=$(curl -sS --fail-with-body -H 'Content-Type: application/json' \
    -H "Authorization: Bearer ${OPENAI_API_KEY:-none}" \
    -d "$body" "$OPENAI_BASE_URL/chat/completions" | jq -r '.choices[0].message.content')
echo "answer: $answer" >&2
case "$(printf '%s' "$answer" | tr 'A-Z' 'a-z')" in
*"$(printf '%s' "$expected" | tr 'A-Z' 'a-z')"*) [ -n "$expected" ] && echo '{"reward": 1.0}' && exit 0 ;;
esac
echo '{"reward": 0.0}'
