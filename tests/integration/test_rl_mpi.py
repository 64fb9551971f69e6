"""Data-parallel GRPO and SFT (issue 8): `mpirun -np 2 trainerd rl` equals `-np 1` on the same
batches within float tolerance (whole groups per rank, global token counts, summed gradients).
Needs an MPI build: `make MPI=1 BUILD=build-mpi` (or AGL_MPI_BUILD=DIR); skipped otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from test_rl_numpy import REPO, read_safetensors


def mpi_trainerd():
    build = os.environ.get("AGL_MPI_BUILD", "build-mpi")
    path = os.path.join(REPO, build, "bin", "trainerd")
    if not os.path.exists(path) or not shutil.which("mpirun"):
        pytest.skip("no MPI build of trainerd (make MPI=1 BUILD=build-mpi) or no mpirun")
    return path


def run(np_, args, env):
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(np_)] + args
    subprocess.run(cmd, check=True, timeout=120, env=env)


@pytest.mark.parametrize("mode", ["rl", "sft"])
def test_np2_equals_np1(tmp_path, mode):
    exe = mpi_trainerd()
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i:03d}=", "answer": f"{i:03d}"[::-1],
                                        "response": f"{i:03d}"[::-1]}) + "\n"
                            for i in range(0, 1000, 7)))
    cfg = os.path.join(REPO, "examples", "rl", "model_tiny.json")
    # OpenMPI's own (dlopen'ed) components leak at exit; under AddressSanitizer that is not
    # ours to report.
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive",
               ASAN_OPTIONS="detect_leaks=0:" + os.environ.get("ASAN_OPTIONS", ""))
    common = [exe, mode, "--model", cfg, "--train", str(data), "--steps", "2", "--seed", "11",
              "--quiet", "--lr", "3e-3"]
    if mode == "rl":
        common += ["--prompts", "4", "--group", "4", "--max-new", "5", "--kl", "k3",
                   "--kl-coef", "0.04"]
    else:
        common += ["--batch", "16"]
    run(1, common + ["--out", str(tmp_path / "one"), "--log", str(tmp_path / "one.jsonl")], env)
    run(2, common + ["--out", str(tmp_path / "two"), "--log", str(tmp_path / "two.jsonl")], env)
    a, _ = read_safetensors(tmp_path / "one" / "model.safetensors")
    b, _ = read_safetensors(tmp_path / "two" / "model.safetensors")
    init_moved = False
    # Two ranks sum each gradient as two partial sums, one rank in one pass: the last bits differ.
    # AdamW divides by sqrt(v) + eps, so an element whose gradient is near eps turns those bits
    # into a visible part of its lr-sized step (measured: one o_proj element of 4096 off by 1.6e-4).
    # Hence: all but 0.1% of the elements within 2e-5 and every element within a third of the
    # 3e-3 learning rate; the gradient itself is compared through the logged grad_norm below (and
    # a wrong all-reduce moves most elements by about lr).
    for k in a:
        d = np.abs(a[k] - b[k])
        assert d.max() <= 1e-3, (k, float(d.max()))
        assert (d > 2e-5).sum() <= max(2, d.size // 1000), (k, int((d > 2e-5).sum()))
    la = [json.loads(l) for l in open(tmp_path / "one.jsonl")]
    lb = [json.loads(l) for l in open(tmp_path / "two.jsonl")]
    assert len(la) == len(lb) == 2
    for x, y in zip(la, lb):
        for key in ("loss", "reward_mean", "entropy", "grad_norm"):
            if key in x:
                assert abs(x[key] - y[key]) <= 1e-4 * max(1.0, abs(x[key])), key
                init_moved = True
    assert init_moved
