#!/usr/bin/env bash
# make demo (issue 8): GRPO through the whole system. stored (embedded PostgreSQL) + runnerd
# (128 workers running the C exec agent examples/rl/reverse_agent.c through runnerd's recording
# LLM proxy) + `trainerd rl --store`, which serves the policy, publishes it as main_llm, enqueues
# 32 prompts x 8 samples per step, waits, and trains on the token ids of the stored triplets.
# A tiny Qwen2-style model learns to reverse 3-digit strings, from a supervised warm start whose
# held-out greedy exact match is < 10%. About 5-7 minutes on 2 cores (~1.1 s per step).
# Then the negative control: the same GRPO with rewards shuffled across each batch (run
# in-process, where it takes seconds; tests/integration/test_rl_demo.py runs both arms of the
# in-process protocol, examples/rl/inprocess_demo.sh).
#   DEMO_STEPS (300), DEMO_SEED (1), DEMO_LR (2e-3), DEMO_DIR (a new /tmp directory)
# Writes $DEMO_DIR/{store_rl.jsonl,control.jsonl,curve.svg} plus the daemons' logs, prints a
# line per step and the held-out curve, and fails unless held-out exact match goes from < 10%
# to >= 80% while the control does not improve.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${AGL_BUILD:-build}
PY=${PYTHON:-python3}
export DEMO_DIR=${DEMO_DIR:-$(mktemp -d /tmp/agl-demo.XXXXXX)}
# stored, started as root, runs its embedded PostgreSQL as the "postgres" user, which must
# reach the data directory inside (mktemp makes 0700 directories).
chmod 755 "$DEMO_DIR"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
STEPS=${DEMO_STEPS:-300}
rm -f "$DEMO_DIR/control.jsonl"

STORE_DEMO_STEPS=$STEPS STORE_DEMO_LR=${DEMO_LR:-2e-3} examples/rl/store_demo.sh

echo "== negative control: the same GRPO with rewards shuffled across the batch (in-process)"
"$BUILD/bin/trainerd" rl --model "$DEMO_DIR/warm" --train "$DEMO_DIR/train.jsonl" \
    --val "$DEMO_DIR/val.jsonl" --steps "$STEPS" --prompts 32 --group 8 --max-new 5 \
    --lr "${DEMO_LR:-2e-3}" --val-every 25 --seed "${DEMO_SEED:-1}" --keep-optimizer \
    --shuffle-rewards --quiet --log "$DEMO_DIR/control.jsonl"

echo "== held-out curves ($DEMO_DIR/curve.svg)"
$PY examples/rl/plot_curve.py "$DEMO_DIR/curve.svg" "GRPO via stored+runnerd=$DEMO_DIR/store_rl.jsonl" \
    "shuffled rewards=$DEMO_DIR/control.jsonl"
$PY - "$DEMO_DIR" <<'PY'
import json, sys
d = sys.argv[1]
def val(p):
    return [(r["step"], r["val_exact"], r["val_reward"])
            for r in map(json.loads, open(f"{d}/{p}")) if "val_exact" in r]
real, ctl = val("store_rl.jsonl"), val("control.jsonl")
print("step   GRPO exact (reward)   shuffled exact")
ctl_at = {s: e for s, e, _ in ctl}
for s, e, r in real:
    c = ctl_at.get(s)
    print(f"{s:4d}   {e:6.1%} ({r:.3f}) {'#' * round(e * 40):40s} {'' if c is None else f'{c:.1%}'}")
ok = real[0][1] < 0.10 and real[-1][1] >= 0.80 and max(e for _, e, _ in ctl) <= ctl[0][1] + 0.10
print(f"GRPO via stored+runnerd: held-out exact {real[0][1]:.1%} -> {real[-1][1]:.1%}, "
      f"reward {real[0][2]:.3f} -> {real[-1][2]:.3f}")
print(f"shuffled control:        held-out exact {ctl[0][1]:.1%} -> {ctl[-1][1]:.1%}")
print("demo:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
