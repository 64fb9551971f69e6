#!/usr/bin/env bash
# SmolLM2-135M-Instruct end to end on CPU: serve the GGUF, ask it a question with the openai SDK,
# fine-tune it for a few SFT steps, and serve the saved HF folder (no GGUF needed any more).
# Fetches the GGUF into .cache/models/ when missing (fetch_gguf.py); needs a Python with `openai`.
# AGL_BUILD (or BUILD)=build by default; OUT=/tmp/smollm2-example.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${AGL_BUILD:-${BUILD:-build}}/bin/trainerd
OUT=${OUT:-/tmp/smollm2-example}
PY=${PYTHON:-python3}
GGUF=$($PY examples/smollm2/fetch_gguf.py)
export OMP_WAIT_POLICY=passive
mkdir -p "$OUT"

serve() { # serve MODEL: starts the server, sets URL and SPID
    "$BIN" serve --model "$1" >"$OUT/serve.log" 2>&1 &
    SPID=$!
    for _ in $(seq 100); do
        URL=$(sed -n 's/.* on \(http:[^ ]*\)$/\1/p' "$OUT/serve.log")
        [ -n "$URL" ] && return 0
        sleep 0.1
    done
    echo "server did not start"; cat "$OUT/serve.log"; exit 1
}

echo "== base model ($GGUF)"
serve "$GGUF"
$PY examples/smollm2/chat.py "$URL" "What is the capital of Spain?"
kill "$SPID"; wait "$SPID" || true

echo "== sft: 4 steps, batch 2, lr 5e-5"
"$BIN" sft --model "$GGUF" --train examples/smollm2/sft.jsonl --steps 4 --batch 2 --lr 5e-5 \
    --out "$OUT/sft" --log "$OUT/sft.jsonl"

echo "== fine-tuned folder ($OUT/sft)"
serve "$OUT/sft"
$PY examples/smollm2/chat.py "$URL" "What is the capital of Spain?"
kill "$SPID"; wait "$SPID" || true
