#!/usr/bin/env bash
# APO with a real agent model on CPU (issue 9): stored (embedded PostgreSQL) + `trainerd serve`
# serving SmolLM2-135M-Instruct (GGUF) as the agent's main_llm + runnerd's built-in `prompt`
# agent (graded `contains`) + `trainerd apo` optimising the PromptTemplate of a capital-city
# task: capitals_train.jsonl (critique batches) / capitals_val.jsonl (selection, scores).
#
# The critic and editor: CRITIC=scripted (default) is examples/smollm2/scripted_critic.py, a
# SCRIPTED DOUBLE that proposes templates from a fixed menu (SmolLM2-135M cannot critique, see
# docs/results.md); CRITIC=smollm2 uses SmolLM2 itself (same server; --llm-max-tokens bounds the
# calls); CRITIC_URL=URL CRITIC_MODEL=M (+ OPENAI_API_KEY) any OpenAI-compatible server.
#   AGL_BUILD (build), PYTHON (python3), OUT (mktemp), SEED_TEMPLATE ("Capital of {country}:"),
#   APO_ROUNDS (2), APO_BEAM (2), APO_BRANCH (2), WORKERS (4)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${AGL_BUILD:-build}
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d /tmp/agl-smollm2-apo.XXXXXX)}
CRITIC=${CRITIC:-scripted}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$OUT"
GGUF=$($PY examples/smollm2/fetch_gguf.py)
echo "== out: $OUT; model: $GGUF; critic: ${CRITIC_URL:-$CRITIC}"

port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
url_of() { # url_of LOG: waits for the "... on http://..." / "listening on http://..." line
    for _ in $(seq 300); do
        u=$(sed -n 's/.* on \(http:[^ ]*\)$/\1/p' "$1" | head -1)
        [ -n "$u" ] && { echo "$u"; return 0; }
        sleep 0.1
    done
    echo "no URL in $1:" >&2; tail -20 "$1" >&2; return 1
}

SPORT=$(port)
STORE=http://127.0.0.1:$SPORT
"$BUILD/bin/stored" --listen "127.0.0.1:$SPORT" --data-dir "$OUT/pg" --log-level warn \
    > "$OUT/stored.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do curl -sf "$STORE/v1/agl/health" > /dev/null && break; sleep 0.1; done
curl -sf "$STORE/v1/agl/health" > /dev/null || { tail -20 "$OUT/stored.log"; exit 1; }
echo "== stored on $STORE"

"$BUILD/bin/trainerd" serve --model "$GGUF" --max-batch 8 --model-name smollm2 \
    --serve-log "$OUT/serve.jsonl" > "$OUT/serve.log" 2>&1 &
pids+=($!)
LLM=$(url_of "$OUT/serve.log")
echo "== trainerd serve (agent model) on $LLM"

case "$CRITIC" in
scripted)
    $PY examples/smollm2/scripted_critic.py 0 > "$OUT/critic.log" 2>&1 &
    pids+=($!)
    CRITIC_URL=${CRITIC_URL:-$(url_of "$OUT/critic.log")}
    CRITIC_MODEL=${CRITIC_MODEL:-scripted}
    ;;
smollm2)
    CRITIC_URL=${CRITIC_URL:-$LLM}
    CRITIC_MODEL=${CRITIC_MODEL:-smollm2}
    ;;
*) [ -n "${CRITIC_URL:-}" ] || { echo "CRITIC=$CRITIC needs CRITIC_URL"; exit 2; } ;;
esac
export OPENAI_API_KEY=${OPENAI_API_KEY:-none}

SEED_TEMPLATE=${SEED_TEMPLATE:-Capital of {country\}:}
$PY - "$OUT/seed.json" "$LLM" "$SEED_TEMPLATE" <<'PY'
import json, sys
out, llm, template = sys.argv[1:]
json.dump({"main_llm": {"resource_type": "llm", "endpoint": llm, "model": "smollm2",
                        "sampling_parameters": {"temperature": 0.0, "max_tokens": 16}},
           "prompt_template": {"resource_type": "prompt_template", "template": template,
                               "engine": "f-string"}}, open(out, "w"), indent=2)
PY

"$BUILD/bin/runnerd" --store "$STORE" --workers "${WORKERS:-4}" --agent prompt --grader contains \
    --poll-interval 0.2 --log-level warn > "$OUT/runnerd.log" 2>&1 &
pids+=($!)
echo "== runnerd: ${WORKERS:-4} workers, prompt agent, contains grader"

echo "== trainerd apo (critic/editor: $CRITIC_MODEL at $CRITIC_URL)"
T0=$(date +%s)
"$BUILD/bin/trainerd" apo --store "$STORE" --train examples/smollm2/capitals_train.jsonl \
    --val examples/smollm2/capitals_val.jsonl --seed-prompt "$OUT/seed.json" \
    --llm-base-url "$CRITIC_URL" --gradient-model "$CRITIC_MODEL" --edit-model "$CRITIC_MODEL" \
    --llm-max-tokens 128 --temperature 0.7 --llm-retries 1 \
    --beam-width "${APO_BEAM:-2}" --branch-factor "${APO_BRANCH:-2}" --rounds "${APO_ROUNDS:-2}" \
    --gradient-batch-size 3 --val-batch-size 10 --seed 1 --fresh --rollout-timeout 900 \
    --output "$OUT/best.txt" 2> "$OUT/apo.log" || { tail -30 "$OUT/apo.log"; exit 1; }
echo "== apo took $(($(date +%s) - T0)) s"

$PY - "$OUT/best.txt.report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"seed ({r['seed_score']:.2f} on val): "
      f"{next(c['text'] for c in r['candidates'] if c['status'] == 'seed')!r}")
for c in r["candidates"]:
    if c["status"] == "seed":
        continue
    ev = ", ".join(f"{e['kind']} {e['score']:.2f}" for e in c["evaluations"] if e.get("score") is not None)
    print(f"  {c['version']} ({c['status']}, parent {c['parent']}): {c['text']!r}  [{ev}]")
    if c["status"] != "ok" and c.get("reason"):
        print(f"      reason: {c['reason'][:200]}")
b = r["best"]
print(f"best {b['version']} ({b['score']:.2f} on val): {b['text']!r}")
print(f"rollouts {r['rollouts']}, LLM calls {r['llm_usage']['calls']}, {r['wall_seconds']:.0f} s")
PY
