#!/usr/bin/env python3
"""Writes the reverse-3-digits task: train/val JSONL of {"prompt": "123=", "answer": "321"}
(and the same pairs as {"prompt", "response"} for SFT). The validation set uses a disjoint
set of digit strings so held-out reward measures generalisation."""
import json, random, sys

out = sys.argv[1] if len(sys.argv) > 1 else "."
rng = random.Random(1234)
allx = [f"{i:03d}" for i in range(1000)]
rng.shuffle(allx)
val, train = allx[:200], allx[200:]
for name, xs in (("train", train), ("val", val)):
    with open(f"{out}/{name}.jsonl", "w") as f:
        for x in xs:
            f.write(json.dumps({"prompt": x + "=", "answer": x[::-1]}) + "\n")
    with open(f"{out}/{name}_sft.jsonl", "w") as f:
        for x in xs:
            f.write(json.dumps({"prompt": x + "=", "response": x[::-1]}) + "\n")
