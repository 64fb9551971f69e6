#!/usr/bin/env python3
"""Training and generation throughput of trainerd's CPU decoder beside PyTorch (issue 8).

In one run, on the same machine and the same number of threads, for each model config:

* training: tokens/s of a full step (forward, backward, AdamW with global-norm clipping at 1.0)
  on B x T random tokens, ours through `trainerd bench train`, PyTorch through an equivalent
  Qwen2-style decoder written below (same shapes, same loss, torch.optim.AdamW);
* generation: tokens/s of greedy decoding at batch 1 and batch 32, ours through the policy
  server (`trainerd serve`, one /v1/completions request with B id prompts, `ignore_eos`), PyTorch
  through a KV-cache greedy loop written below;
* achieved GFLOP/s of the training step against the machine's fp32 peak.

PyTorch comes from PyPI into a venv cached under .cache/ by the hash of
tests/bench/requirements-train.txt; the script creates it on first use and re-runs itself
inside it. The whole measurement holds an exclusive flock on /tmp/agl-bench.lock so that
benchmarks of other people on the same machine do not overlap it.
"""
import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQ = os.path.join(ROOT, "tests", "bench", "requirements-train.txt")

CONFIGS = {
    # the demo's model: 2 layers, hidden 64, vocab 16, context 16
    "tiny": {"path": "examples/rl/model_tiny.json", "batch": 32, "seq": 16,
             "prompt": 4, "new": 12},
    # a small real-shaped Qwen2: 8 layers, hidden 512, GQA 8/4, SwiGLU 1408, vocab 8192, tied
    "qwen2-28m": {"path": "tests/bench/model_qwen2_28m.json", "batch": 4, "seq": 256,
                  "prompt": 16, "new": 64},
}


# ---------------------------------------------------------------- venv
def ensure_venv():
    """Re-executes this script inside the cached bench venv (created when missing)."""
    if os.environ.get("AGL_BENCH_TRAIN_VENV") == "1":
        return
    digest = hashlib.sha256(open(REQ, "rb").read()).hexdigest()[:12]
    venv = os.path.join(ROOT, ".cache", f"venv-bench-train-{digest}")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(os.path.join(venv, ".ok")):
        print(f"bench_train: creating {venv} (PyTorch from PyPI, ~3 GB with its CUDA "
              "libraries; cached afterwards)", file=sys.stderr, flush=True)
        subprocess.run(["rm", "-rf", venv], check=True)
        os.makedirs(os.path.dirname(venv), exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "-r", REQ], check=True)
        open(os.path.join(venv, ".ok"), "w").close()
    env = dict(os.environ, AGL_BENCH_TRAIN_VENV="1")
    os.execve(py, [py, os.path.abspath(__file__)] + sys.argv[1:], env)


# ---------------------------------------------------------------- machine
def machine_peak(args):
    """fp32 peak in GFLOP/s and the assumption it rests on."""
    flags, mhz, model = set(), None, platform.processor()
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k == "flags" and not flags:
                flags = set(v.split())
            elif k == "cpu MHz" and mhz is None:
                mhz = float(v)
            elif k == "model name":
                model = v
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("CPU max MHz:"):
                mhz = float(line.split(":")[1])
    except OSError:
        pass
    ghz = args.ghz or (mhz or 0) / 1000.0
    if args.flops_per_cycle:
        fpc, why = args.flops_per_cycle, "given"
    elif "avx512f" in flags:
        fpc, why = 64, "AVX-512: 2 FMA pipes x 16 fp32 x 2"
    elif "avx2" in flags and "fma" in flags:
        fpc, why = 32, "AVX2: 2 FMA pipes x 8 fp32 x 2"
    else:
        fpc, why = 8, "SSE: 4-wide add + mul"
    cores = args.threads
    peak = cores * ghz * fpc
    desc = (f"{model}, {os.cpu_count()} CPUs; peak = {cores} cores x {ghz:.2f} GHz x "
            f"{fpc} flop/cycle ({why}) = {peak:.0f} GFLOP/s")
    return peak, desc


def flops_per_token(cfg, T):
    """Kaplan / llm.c convention: 6 x (matmul parameters) + 6 x L x T x (H x D) for attention,
    full T (not halved for the causal mask)."""
    C, L, I, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], \
        cfg["vocab_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim", C // H)
    per_layer = C * H * D * 2 + C * KV * D * 2 + 3 * C * I
    mm = L * per_layer + V * C  # the head (tied or not); the embedding lookup costs nothing
    return 6 * mm + 6 * L * T * H * D


# ---------------------------------------------------------------- PyTorch model
def torch_model(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    C, L, I, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], \
        cfg["vocab_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim", C // H)
    eps, theta = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 10000.0)
    bias = bool(cfg.get("attention_bias", False))
    tie = cfg.get("tie_word_embeddings", True)
    maxT = cfg.get("max_position_embeddings", 64)

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(C))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight

    inv = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(maxT, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).float()
    sin = torch.cat([ang.sin(), ang.sin()], -1).float()

    def rope(x, pos):  # x (B, h, T, D), HF rotate_half
        c, s = cos[pos], sin[pos]
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return x * c + torch.cat([-x2, x1], -1) * s

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = RMSNorm(), RMSNorm()
            self.q = nn.Linear(C, H * D, bias=bias)
            self.k = nn.Linear(C, KV * D, bias=bias)
            self.v = nn.Linear(C, KV * D, bias=bias)
            self.o = nn.Linear(H * D, C, bias=False)
            self.g = nn.Linear(C, I, bias=False)
            self.u = nn.Linear(C, I, bias=False)
            self.d = nn.Linear(I, C, bias=False)

        def forward(self, x, pos, cache=None, at=0):
            B, T, _ = x.shape
            h = self.ln1(x)
            q = self.q(h).view(B, T, H, D).transpose(1, 2)
            k = self.k(h).view(B, T, KV, D).transpose(1, 2)
            v = self.v(h).view(B, T, KV, D).transpose(1, 2)
            q, k = rope(q, pos), rope(k, pos)
            if cache is not None:  # (kc, vc): (B, KV, maxT, D), filled up to `at`
                kc, vc = cache
                kc[:, :, at:at + T] = k
                vc[:, :, at:at + T] = v
                k, v = kc[:, :, :at + T], vc[:, :, :at + T]
            a = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=KV != H)
            x = x + self.o(a.transpose(1, 2).reshape(B, T, H * D))
            h = self.ln2(x)
            return x + self.d(F.silu(self.g(h)) * self.u(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, C)
            self.layers = nn.ModuleList(Block() for _ in range(L))
            self.norm = RMSNorm()
            self.head = None if tie else nn.Linear(C, V, bias=False)
            for n, p in self.named_parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=0.02)
                elif n.endswith(".bias"):
                    nn.init.zeros_(p)

        def forward(self, tok, pos, caches=None, at=0):
            x = self.embed(tok)
            for i, blk in enumerate(self.layers):
                x = blk(x, pos, caches[i] if caches else None, at)
            x = self.norm(x)
            return x @ self.embed.weight.t() if self.head is None else self.head(x)

    return Model()


def torch_adamw(model):
    import torch
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    kw = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    try:  # the fused CPU kernel where this torch has it: PyTorch's fastest AdamW
        return torch.optim.AdamW(groups, fused=True, **kw), "fused"
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, **kw), "default"


def torch_train(cfg, B, T, steps, warmup):
    import torch
    import torch.nn.functional as F
    torch.manual_seed(1)
    model = torch_model(cfg)
    opt, kind = torch_adamw(model)
    V = cfg["vocab_size"]
    tok = torch.randint(0, V, (B, T))
    pos = torch.arange(T)
    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        logits = model(tok, pos)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), tok[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    return {"step_s": times, "tokens_per_s": B * T * len(times) / sum(times),
            "adamw": kind, "loss": loss.item()}


def torch_generate(cfg, B, prompt_len, new, reps):
    import torch
    torch.manual_seed(2)
    model = torch_model(cfg).eval()
    V, L = cfg["vocab_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim", cfg["hidden_size"] // H)
    maxT = prompt_len + new
    best = None
    with torch.inference_mode():
        for _ in range(reps):
            prompt = torch.randint(3, V, (B, prompt_len))
            t0 = time.perf_counter()
            caches = [(torch.empty(B, KV, maxT, D), torch.empty(B, KV, maxT, D))
                      for _ in range(L)]
            logits = model(prompt, torch.arange(prompt_len), caches, 0)
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            at = prompt_len
            for _ in range(new - 1):
                logits = model(nxt, torch.arange(at, at + 1), caches, at)
                at += 1
                nxt = logits[:, -1].argmax(-1, keepdim=True)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
    return B * new / best


# ---------------------------------------------------------------- ours
def ours_train(trainerd, path, B, T, steps, warmup, env):
    out = subprocess.run([trainerd, "bench", "train", "--model", path, "--batch", str(B),
                          "--seq", str(T), "--steps", str(steps), "--warmup", str(warmup)],
                         capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out)


def free_port():
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=600):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def ours_generate(trainerd, path, cfg, batches, prompt_len, new, reps, env):
    """tokens/s of the policy server per batch size: one completions request with `batch` id
    prompts, greedy, ignore_eos, max_tokens = new; best of `reps` wall times."""
    port = free_port()
    srv = subprocess.Popen([trainerd, "serve", "--model", path, "--listen", f"127.0.0.1:{port}",
                            "--max-batch", str(max(batches)), "--max-seq",
                            str(prompt_len + new)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/health", timeout=1).read()
                break
            except OSError:
                if srv.poll() is not None:
                    raise RuntimeError("trainerd serve exited: " + srv.stdout.read())
                time.sleep(0.1)
        res = {}
        V = cfg["vocab_size"]
        for B in batches:
            best = None
            for r in range(reps):
                prompts = [[3 + (i * 7 + j * 3 + r) % (V - 3) for j in range(prompt_len)]
                           for i in range(B)]
                t0 = time.perf_counter()
                resp = post(base + "/v1/completions",
                            {"model": "policy", "prompt": prompts, "max_tokens": new,
                             "temperature": 0, "ignore_eos": True})
                dt = time.perf_counter() - t0
                got = sum(len(c["token_ids"]) for c in resp["choices"])
                if got != B * new:
                    raise RuntimeError(f"server generated {got} tokens, expected {B * new}")
                best = dt if best is None else min(best, dt)
            res[B] = B * new / best
        return res
    finally:
        srv.terminate()
        srv.wait(10)


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build dir holding bin/trainerd")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="OpenMP / torch threads (default: all CPUs)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of: "
                    + ", ".join(CONFIGS))
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per side")
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    ap.add_argument("--rounds", type=int, default=3,
                    help="training runs per side, alternating, best kept")
    ap.add_argument("--gen-batches", default="1,32")
    ap.add_argument("--gen-reps", type=int, default=3, help="generation runs, best kept")
    ap.add_argument("--skip", default="", help="comma-separated: train, generate")
    ap.add_argument("--ghz", type=float, help="core clock for the peak (default: lscpu/cpuinfo)")
    ap.add_argument("--flops-per-cycle", type=float,
                    help="fp32 flop/cycle/core for the peak (default: from the CPU flags)")
    ap.add_argument("--lock", default="/tmp/agl-bench.lock")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    ensure_venv()
    skip = set(filter(None, args.skip.split(",")))
    trainerd = os.path.join(ROOT, args.build, "bin", "trainerd")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="passive")
    os.environ.update(OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="passive")
    import torch
    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    peak, peak_desc = machine_peak(args)
    batches = [int(b) for b in args.gen_batches.split(",")]
    lockf = open(args.lock, "w")
    t_wait = time.time()
    fcntl.flock(lockf, fcntl.LOCK_EX)
    waited = time.time() - t_wait
    start = time.strftime("%Y-%m-%d %H:%M")
    load0 = os.getloadavg()[0]
    rows = []
    for name in args.configs.split(","):
        spec = CONFIGS[name]
        path = os.path.join(ROOT, spec["path"])
        cfg = json.load(open(path))
        B, T = spec["batch"], spec["seq"]
        row = {"config": name, "path": spec["path"], "B": B, "T": T}
        if "train" not in skip:
            # alternate the sides, `rounds` times: load from other jobs then hits both alike;
            # each side keeps its best round (median step of that round)
            o_med = t_med = 0.0
            for _ in range(args.rounds):
                o1 = ours_train(trainerd, path, B, T, args.steps, args.warmup, env)
                t1 = torch_train(cfg, B, T, args.steps, args.warmup)
                o_r = B * T / statistics.median(o1["step_s"])
                t_r = B * T / statistics.median(t1["step_s"])
                if o_r > o_med:
                    o_med, o = o_r, o1
                if t_r > t_med:
                    t_med, t = t_r, t1
            fpt = flops_per_token(cfg, T)
            row.update(params=o["params"], ours_tok_s=o_med, torch_tok_s=t_med,
                       ours_gflops=o_med * fpt / 1e9, torch_gflops=t_med * fpt / 1e9,
                       ours_split={k: o[k] for k in ("forward_s", "backward_s", "adamw_s")},
                       gemm_kernel=o["gemm_kernel"], torch_adamw=t["adamw"],
                       ours_loss=o["last_loss"], torch_loss=t["loss"])
        if "generate" not in skip:
            p, n = spec["prompt"], spec["new"]
            og = ours_generate(trainerd, path, cfg, batches, p, n, args.gen_reps, env)
            tg = {b: torch_generate(cfg, b, p, n, args.gen_reps) for b in batches}
            row.update(gen_prompt=p, gen_new=n, ours_gen=og, torch_gen=tg)
        rows.append(row)
    load1 = os.getloadavg()[0]
    fcntl.flock(lockf, fcntl.LOCK_UN)

    print(f"\nbench-train {start} on {platform.node()}: {peak_desc}; torch {torch.__version__} "
          f"(MKL {torch.backends.mkl.is_available()}, {torch.get_num_threads()} threads); "
          f"{args.threads} threads each side, OMP_WAIT_POLICY=passive; load average "
          f"{load0:.1f} -> {load1:.1f}; waited {waited:.0f} s for the bench lock\n")
    if "train" not in skip:
        print("Training step (forward + backward + AdamW, clip 1.0): median of "
              f"{args.steps} steps after {args.warmup} warm-up, best of {args.rounds} "
              "alternating rounds per side:\n")
        print("| config | params | B x T | ours tok/s | torch tok/s | ours/torch | ours GFLOP/s "
              "| torch GFLOP/s | ours % of peak |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['config']} | {r['params'] / 1e6:.2f} M | {r['B']} x {r['T']} | "
                  f"{r['ours_tok_s']:,.0f} | {r['torch_tok_s']:,.0f} | "
                  f"**{r['ours_tok_s'] / r['torch_tok_s']:.2f}x** | {r['ours_gflops']:.1f} | "
                  f"{r['torch_gflops']:.1f} | {100 * r['ours_gflops'] / peak:.0f} % |")
        print()
        for r in rows:
            s = r["ours_split"]
            print(f"{r['config']}: ours per step forward {s['forward_s'] * 1e3:.1f} ms, backward "
                  f"{s['backward_s'] * 1e3:.1f} ms, AdamW {s['adamw_s'] * 1e3:.1f} ms; GEMM "
                  f"kernel {r['gemm_kernel']}; torch AdamW {r['torch_adamw']}; loss ours "
                  f"{r['ours_loss']:.3f}, torch {r['torch_loss']:.3f}")
        print("GFLOP/s = tok/s x (6 x matmul params + 6 x L x T x H x D) (llm.c / Kaplan)")
    if "generate" not in skip:
        print("\nGreedy generation, tokens/s (generated tokens / wall time of prompt + decode; "
              f"best of {args.gen_reps}); ours = trainerd serve over HTTP, torch = KV-cache "
              "loop in-process:\n")
        head = " | ".join(f"ours b{b} | torch b{b} | ratio b{b}" for b in batches)
        print(f"| config | prompt + new | {head} |")
        print("|---|---|" + "---|" * (3 * len(batches)))
        for r in rows:
            cells = " | ".join(f"{r['ours_gen'][b]:,.0f} | {r['torch_gen'][b]:,.0f} | "
                               f"{r['ours_gen'][b] / r['torch_gen'][b]:.2f}x" for b in batches)
            print(f"| {r['config']} | {r['gen_prompt']} + {r['gen_new']} | {cells} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"start": start, "machine": peak_desc, "peak_gflops": peak,
                       "torch": torch.__version__, "rows": rows}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
