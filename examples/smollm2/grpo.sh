#!/usr/bin/env bash
# GRPO on SmolLM2-135M-Instruct through the whole system (issue 9): stored (embedded PostgreSQL)
# + runnerd's built-in `prompt` agent (chat completions through runnerd's recording LLM proxy,
# `contains` grader = the reward) + `trainerd rl --store --model FILE.gguf`, which serves the
# policy, publishes it as main_llm together with the prompt template of grpo_resources.json
# (--resources), enqueues prompts x group rollouts of capitals_train.jsonl per step, trains on
# the token ids the proxy recorded, and saves an HF folder that `trainerd serve` then serves.
# On 2 CPU cores this shows the loop working, not learning (a few steps; docs/results.md).
#   AGL_BUILD (build), PYTHON (python3), OUT (mktemp), GRPO_STEPS (4), GRPO_PROMPTS (2),
#   GRPO_GROUP (4), GRPO_MAX_NEW (12), GRPO_LR (1e-5), GRPO_VAL_N (10), WORKERS (4)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${AGL_BUILD:-build}
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d /tmp/agl-smollm2-grpo.XXXXXX)}
STEPS=${GRPO_STEPS:-4}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$OUT"
rm -f "$OUT"/{rl,serve}.jsonl
GGUF=$($PY examples/smollm2/fetch_gguf.py)
echo "== out: $OUT; model: $GGUF"

port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

SPORT=$(port)
STORE=http://127.0.0.1:$SPORT
"$BUILD/bin/stored" --listen "127.0.0.1:$SPORT" --data-dir "$OUT/pg" --log-level warn \
    > "$OUT/stored.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do curl -sf "$STORE/v1/agl/health" > /dev/null && break; sleep 0.1; done
curl -sf "$STORE/v1/agl/health" > /dev/null || { tail -20 "$OUT/stored.log"; exit 1; }
echo "== stored on $STORE"

"$BUILD/bin/runnerd" --store "$STORE" --workers "${WORKERS:-4}" --agent prompt --grader contains \
    --poll-interval 0.2 --log-level warn > "$OUT/runnerd.log" 2>&1 &
pids+=($!)
echo "== runnerd: ${WORKERS:-4} workers, prompt agent, contains grader"

echo "== trainerd rl --store: $STEPS steps of ${GRPO_PROMPTS:-2} prompts x ${GRPO_GROUP:-4}"
T0=$(date +%s)
"$BUILD/bin/trainerd" rl --store "$STORE" --model "$GGUF" --model-name smollm2 \
    --resources examples/smollm2/grpo_resources.json \
    --train examples/smollm2/capitals_train.jsonl --val examples/smollm2/capitals_val.jsonl \
    --val-n "${GRPO_VAL_N:-10}" --val-every "$STEPS" --steps "$STEPS" \
    --prompts "${GRPO_PROMPTS:-2}" --group "${GRPO_GROUP:-4}" --max-new "${GRPO_MAX_NEW:-12}" \
    --temperature 1.0 --lr "${GRPO_LR:-1e-5}" --seed 1 --max-batch 16 --rollout-timeout 600 \
    --log "$OUT/rl.jsonl" --serve-log "$OUT/serve.jsonl" --out "$OUT/policy"
echo "== GRPO took $(($(date +%s) - T0)) s"

echo "== the saved folder $OUT/policy, served by trainerd serve"
"$BUILD/bin/trainerd" serve --model "$OUT/policy" > "$OUT/serve_saved.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
    URL=$(sed -n 's/.* on \(http:[^ ]*\)$/\1/p' "$OUT/serve_saved.log")
    [ -n "$URL" ] && break
    sleep 0.1
done
[ -n "$URL" ] || { cat "$OUT/serve_saved.log"; exit 1; }
$PY examples/smollm2/chat.py "$URL" "What is the capital of Germany? Answer with one word."

$PY - "$OUT/rl.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in rows if "reward_mean" in r]
print("train reward per step:", " ".join(f"{r['reward_mean']:.2f}" for r in steps))
print("rollouts succeeded:", sum(r["succeeded"] for r in steps), "/", sum(r["rollouts"] for r in steps),
      "| rows verified against the server:", sum(r["ids_verified"] for r in steps), "/",
      sum(r["rows"] for r in steps))
v = [r for r in rows if "val_reward" in r]
if v:
    print(f"held-out greedy reward (through runnerd): {v[0]['val_reward']:.2f} -> {v[-1]['val_reward']:.2f}")
PY
