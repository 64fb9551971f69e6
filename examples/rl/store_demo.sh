#!/usr/bin/env bash
# GRPO through the whole system (issue 8): stored (embedded PostgreSQL) + runnerd running the exec
# agent examples/rl/reverse_agent.c (or .py) through its LLM proxy + `trainerd rl --store`, which serves
# the policy, publishes it as main_llm, enqueues prompts x group rollouts per step and trains on
# the token ids of their triplets. Same task and warm start as examples/rl/inprocess_demo.sh; examples/demo.sh (make demo) runs this.
#   STORE_DEMO_STEPS (40), STORE_DEMO_PROMPTS (32), STORE_DEMO_GROUP (8), STORE_DEMO_LR (2e-3),
#   STORE_DEMO_VAL_EVERY (25), STORE_DEMO_VAL_N (200), STORE_DEMO_WORKERS (128),
#   STORE_DEMO_AGENT (c|python)
# Writes $DEMO_DIR/{store_rl.jsonl,serve.jsonl,curve_store.svg} and the daemons' logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${AGL_BUILD:-build}
DEMO_DIR=${DEMO_DIR:-$(mktemp -d /tmp/agl-store-demo.XXXXXX)}
PY=${PYTHON:-python3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$DEMO_DIR"
# stored, started as root, runs its embedded PostgreSQL as the "postgres" user, which must
# reach the data directory inside (mktemp makes 0700 directories).
chmod 755 "$DEMO_DIR"
rm -f "$DEMO_DIR"/{store_rl,serve}.jsonl
echo "== demo dir: $DEMO_DIR"
$PY examples/rl/make_tasks.py "$DEMO_DIR"

port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SPORT=$(port)
STORE=http://127.0.0.1:$SPORT
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "== stored on $STORE (embedded PostgreSQL in $DEMO_DIR/pg)"
"$BUILD/bin/stored" --listen "127.0.0.1:$SPORT" --data-dir "$DEMO_DIR/pg" --log-level warn \
    > "$DEMO_DIR/stored.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    curl -sf "$STORE/v1/agl/health" > /dev/null && break
    sleep 0.1
done
curl -sf "$STORE/v1/agl/health" > /dev/null || { tail -20 "$DEMO_DIR/stored.log"; exit 1; }

# The C agent by default: runnerd starts one process per rollout, and a Python interpreter's start
# (~50 ms of CPU) would make the agent the bottleneck of the loop on 2 cores.
if [ "${STORE_DEMO_AGENT:-c}" = python ]; then
    AGENT="exec:$PY examples/rl/reverse_agent.py"
else
    AGENT="exec:$BUILD/examples/reverse_agent"
fi
echo "== runnerd: ${STORE_DEMO_WORKERS:-128} workers, agent $AGENT"
"$BUILD/bin/runnerd" --store "$STORE" --workers "${STORE_DEMO_WORKERS:-128}" --poll-interval 0.1 \
    --agent "$AGENT" --log-level warn > "$DEMO_DIR/runnerd.log" 2>&1 &
pids+=($!)

echo "== supervised warm start (20 steps)"
"$BUILD/bin/trainerd" sft --model examples/rl/model_tiny.json --train "$DEMO_DIR/train_sft.jsonl" \
    --steps 20 --batch 32 --lr 3e-3 --seed 1 --out "$DEMO_DIR/warm" --quiet

echo "== GRPO through stored + runnerd"
"$BUILD/bin/trainerd" rl --store "$STORE" --model "$DEMO_DIR/warm" --keep-optimizer \
    --train "$DEMO_DIR/train.jsonl" --val "$DEMO_DIR/val.jsonl" --val-n "${STORE_DEMO_VAL_N:-200}" \
    --val-every "${STORE_DEMO_VAL_EVERY:-25}" --steps "${STORE_DEMO_STEPS:-40}" \
    --prompts "${STORE_DEMO_PROMPTS:-32}" --group "${STORE_DEMO_GROUP:-8}" --max-new 5 \
    --lr "${STORE_DEMO_LR:-2e-3}" --seed "${DEMO_SEED:-1}" \
    --log "$DEMO_DIR/store_rl.jsonl" --serve-log "$DEMO_DIR/serve.jsonl" --out "$DEMO_DIR/policy"

$PY examples/rl/plot_curve.py "$DEMO_DIR/curve_store.svg" "GRPO via store=$DEMO_DIR/store_rl.jsonl"
$PY - "$DEMO_DIR/store_rl.jsonl" <<'PY'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1]) if "val_exact" in l]
print(f"held-out (greedy, through runnerd): exact {v[0]['val_exact']:.1%} -> {v[-1]['val_exact']:.1%}, "
      f"reward {v[0]['val_reward']:.3f} -> {v[-1]['val_reward']:.3f}")
PY
