#!/usr/bin/env bash
# The in-process GRPO demo (issue 8's honesty protocol, run by tests/integration/test_rl_demo.py):
# a tiny Qwen2-style model learns to reverse 3-digit strings with GRPO on 2 CPU cores in well
# under a minute, next to a negative control with shuffled rewards. `make demo`
# (examples/demo.sh) runs the same learning problem through stored + runnerd instead.
#   1. supervised warm start (20 steps: held-out exact match still < 10%)
#   2. GRPO from the warm start (continuing its AdamW moments), 300 steps, reward = matched
#      positions of answer+EOS
#   3. the same GRPO run with rewards shuffled across each batch (must not improve)
# Writes $DEMO_DIR/{rl.jsonl,control.jsonl,curve.svg} and fails if the real run does not reach
# 80% held-out exact match or the control improves.
# The same loop through stored + runnerd + the policy server is examples/rl/store_demo.sh; here the
# trainer generates with its own KV-cache decoder in-process, which is what fits in a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${AGL_BUILD:-build}
TRAINERD=$BUILD/bin/trainerd
DEMO_DIR=${DEMO_DIR:-$(mktemp -d /tmp/agl-demo.XXXXXX)}
STEPS=${DEMO_STEPS:-300}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$DEMO_DIR"
rm -f "$DEMO_DIR"/{sft,rl,control}.jsonl
echo "== demo dir: $DEMO_DIR"
python3 examples/rl/make_tasks.py "$DEMO_DIR"

echo "== 1. supervised warm start (20 steps)"
"$TRAINERD" sft --model examples/rl/model_tiny.json --train "$DEMO_DIR/train_sft.jsonl" \
    --val "$DEMO_DIR/val.jsonl" --steps 20 --batch 32 --lr 3e-3 --val-every 20 --seed 1 \
    --out "$DEMO_DIR/warm" --log "$DEMO_DIR/sft.jsonl"

GRPO=(rl --model "$DEMO_DIR/warm" --train "$DEMO_DIR/train.jsonl" --val "$DEMO_DIR/val.jsonl"
      --steps "$STEPS" --prompts 32 --group 8 --max-new 5 --lr "${DEMO_LR:-2e-3}" --val-every 25 --seed "${DEMO_SEED:-1}"
      --keep-optimizer)
echo "== 2. GRPO, 32 prompts x 8 samples per step"
"$TRAINERD" "${GRPO[@]}" --log "$DEMO_DIR/rl.jsonl" --out "$DEMO_DIR/policy"
echo "== 3. negative control: same run, rewards shuffled across the batch"
"$TRAINERD" "${GRPO[@]}" --shuffle-rewards --log "$DEMO_DIR/control.jsonl" | grep val_ || true

echo "== reward curves ($DEMO_DIR/curve.svg)"
python3 examples/rl/plot_curve.py "$DEMO_DIR/curve.svg" "GRPO=$DEMO_DIR/rl.jsonl" \
    "shuffled=$DEMO_DIR/control.jsonl"
python3 - "$DEMO_DIR" <<'PY'
import json, sys
d = sys.argv[1]
def val(p):
    v = [json.loads(l) for l in open(f"{d}/{p}") if "val_exact" in l]
    return v[0]["val_exact"], v[-1]["val_exact"], v[0]["val_reward"], v[-1]["val_reward"]
rs, re_, rr0, rr1 = val("rl.jsonl")
cs, ce, cr0, cr1 = val("control.jsonl")
print(f"GRPO:     held-out exact {rs:.1%} -> {re_:.1%}, reward {rr0:.3f} -> {rr1:.3f}")
print(f"shuffled: held-out exact {cs:.1%} -> {ce:.1%}, reward {cr0:.3f} -> {cr1:.3f}")
ok = rs < 0.10 and re_ >= 0.80 and ce <= cs + 0.10
print("demo:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
