"""APO benchmark (`make bench-apo`): wall-clock of a full APO run, `trainerd apo` against the
reference algorithm (agentlightning's own `APO.run`), with the same store, runners and model —
one run, one table.

Setup, identical for both sides and fresh for each (a new stored, runnerd and counters):
  store    build/bin/stored, default configuration (embedded PostgreSQL), its own data dir
  runners  build/bin/runnerd --agent prompt --workers N --poll-interval P
  model    tests/bench/bench_apo_llm.py: one fake OpenAI-compatible server with a fixed latency
           per call, served concurrently; it is the agent's model (agent-model), the critic
           (critic-model) and the editor (editor-model). The editor never drops the placeholder,
           so both sides make the same number of calls and rollouts.
  data     `--train-size` / `--val-size` review-sentiment tasks (graded `exact`)
  APO      the reference's defaults: beam width 4, branch factor 4, 3 rounds, gradient batch 4,
           val batch 16, initial validation on

ours       build/bin/trainerd apo (concurrent evaluations, long-poll waits)
reference  tests/bench/bench_apo_ref.py: agentlightning's APO.run, unmodified, on our stored through
           LightningStoreClient (one evaluation at a time, polling the store every 2 s); needs the
           `poml` package in the Python that runs it (--ref-python)

Wall seconds: ours is the trainerd process from start to exit; the reference is APO.run() from
call to return (Python start-up and imports not counted). The reference also spends time
rendering its POML prompts (a Node.js process per critique/edit call); that time is shown on its
own, and a second speed-up excludes it (schedule only)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from harness import free_port  # noqa: E402
from bench_apo_llm import SEED, FakeLLM, make_tasks  # noqa: E402
from bench_store import log, start_ours  # noqa: E402


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


class Runnerd:
    def __init__(self, build: str, store_url: str, workers: int, poll: float, logdir: str, tag: str):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(logdir, f"runnerd-{tag}.log")
        argv = [os.path.join(build, "bin", "runnerd"), "--store", store_url, "--agent", "prompt",
                "--workers", str(workers), "--poll-interval", str(poll),
                "--proxy-listen", f"127.0.0.1:{port}", "--log-level", "warn"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
        with open(self.log_path, "w") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         env=env, cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("runnerd did not start:\n" + open(self.log_path).read()[-3000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def store_counts(url: str) -> dict:
    """Rollouts in the store by status (the store holds nothing but this run's)."""
    counts: dict = {}
    offset = 0
    while True:
        page = get_json(f"{url}/v1/agl/rollouts?limit=1000&offset={offset}")
        for r in page["items"]:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        offset += len(page["items"])
        if not page["items"] or offset >= page.get("total", offset):
            return counts


def run_ours(a, build: str, store_url: str, llm: FakeLLM, tmp: str) -> dict:
    out = os.path.join(tmp, "ours-best.txt")
    argv = [os.path.join(build, "bin", "trainerd"), "apo", "--store", store_url,
            "--train", os.path.join(tmp, "train.jsonl"), "--val", os.path.join(tmp, "val.jsonl"),
            "--seed-prompt", os.path.join(tmp, "seed.json"), "--llm-base-url", llm.url,
            "--gradient-model", "critic-model", "--edit-model", "editor-model",
            "--beam-width", str(a.beam_width), "--branch-factor", str(a.branch_factor),
            "--rounds", str(a.rounds), "--gradient-batch-size", str(a.gradient_batch_size),
            "--val-batch-size", str(a.val_batch_size), "--seed", str(a.seed), "--fresh",
            "--output", out, "--log-level", "warn"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
    env["OPENAI_API_KEY"] = "bench"
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=a.timeout)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"trainerd apo exited {p.returncode}:\n{p.stderr[-4000:]}")
    with open(out + ".report.json") as f:
        rep = json.load(f)
    return {"wall_seconds": wall, "best_score": rep["best"]["score"],
            "best_version": rep["best"]["version"], "report_rollouts": rep.get("rollouts"),
            "candidates": len(rep["candidates"]),
            "evaluations": sum(len(c["evaluations"]) for c in rep["candidates"])}


def run_reference(a, store_url: str, llm: FakeLLM, tmp: str, train: list, val: list) -> dict:
    cfg = {"store": store_url, "llm_url": llm.url, "train": train, "val": val, "seed": SEED,
           "main_llm": {"resource_type": "llm", "endpoint": llm.url, "model": "agent-model",
                        "sampling_parameters": {"temperature": 0.0}},
           "beam_width": a.beam_width, "branch_factor": a.branch_factor, "rounds": a.rounds,
           "gradient_batch_size": a.gradient_batch_size, "val_batch_size": a.val_batch_size}
    path = os.path.join(tmp, "ref.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    t0 = time.monotonic()
    p = subprocess.run([a.ref_python, os.path.join(HERE, "bench_apo_ref.py"), path],
                       capture_output=True, text=True, env=env, timeout=a.timeout)
    if p.returncode != 0:
        raise RuntimeError(f"reference APO exited {p.returncode}:\n{p.stderr[-4000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["process_seconds"] = time.monotonic() - t0
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("AGL_BUILD", "build"))
    ap.add_argument("--workers", type=int, default=16, help="runnerd --workers, both sides")
    ap.add_argument("--poll-interval", type=float, default=0.1, help="runnerd --poll-interval")
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per fake LLM call")
    ap.add_argument("--beam-width", type=int, default=4)
    ap.add_argument("--branch-factor", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gradient-batch-size", type=int, default=4)
    ap.add_argument("--val-batch-size", type=int, default=16)
    ap.add_argument("--train-size", type=int, default=32)
    ap.add_argument("--val-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=7, help="trainerd apo --seed")
    ap.add_argument("--ref-python", default=sys.executable,
                    help="Python with agentlightning and poml for the reference")
    ap.add_argument("--skip", nargs="*", default=[], help="ours, reference")
    ap.add_argument("--timeout", type=float, default=1800, help="limit per APO run")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--md", help="also write the table as markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    a = ap.parse_args()

    build = a.build if os.path.isabs(a.build) else os.path.join(REPO, a.build)
    for b in ("stored", "runnerd", "trainerd"):
        if not os.path.exists(os.path.join(build, "bin", b)):
            raise SystemExit(f"bench_apo: {build}/bin/{b} missing (run `make bench-apo`)")
    if "reference" not in a.skip:
        chk = subprocess.run([a.ref_python, "-c", "import poml, agentlightning.algorithm.apo"],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            raise SystemExit(f"bench_apo: {a.ref_python} cannot import the reference APO "
                             f"(pip install poml?):\n{chk.stderr[-1500:]}")

    tmp = tempfile.mkdtemp(prefix="aglbench-apo-", dir="/tmp")
    os.chmod(tmp, 0o755)
    train, val = make_tasks(a.train_size, "train"), make_tasks(a.val_size, "val")
    labels = {t["text"]: t["expected"] for t in train + val}
    llm = FakeLLM(labels, a.latency)
    for name, items in (("train", train), ("val", val)):
        with open(os.path.join(tmp, f"{name}.jsonl"), "w") as f:
            f.writelines(json.dumps(t) + "\n" for t in items)
    with open(os.path.join(tmp, "seed.json"), "w") as f:
        json.dump({"main_llm": {"resource_type": "llm", "endpoint": llm.url, "model": "agent-model",
                                "sampling_parameters": {"temperature": 0.0}},
                   "prompt_template": {"resource_type": "prompt_template", "template": SEED,
                                       "engine": "f-string"}}, f)

    res: dict = {}
    t_start = time.monotonic()
    try:
        for which in ("ours", "reference"):
            if which in a.skip:
                continue
            sub = os.path.join(tmp, which)
            os.makedirs(sub)
            os.chmod(sub, 0o755)
            log(f"{which}: starting stored and runnerd --workers {a.workers}")
            srv = start_ours(build, sub)
            runner = None
            try:
                runner = Runnerd(build, srv.url, a.workers, a.poll_interval, sub, which)
                llm.reset()
                log(f"{which}: running APO")
                if which == "ours":
                    r = run_ours(a, build, srv.url, llm, tmp)
                else:
                    r = run_reference(a, srv.url, llm, tmp, train, val)
                with llm.lock:
                    r["llm"] = dict(llm.counts)
                    r["llm_peak"] = llm.peak
                r["rollouts"] = store_counts(srv.url)
                res[which] = r
                log(f"{which}: {r['wall_seconds']:.1f} s, rollouts {r['rollouts']}, llm {r['llm']}, "
                    f"best {r['best_version']} {r['best_score']:.3f}")
            finally:
                if runner:
                    runner.stop()
                srv.stop()
    finally:
        llm.close()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")

    rows = table(res)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    try:
        load = "load average %.1f" % os.getloadavg()[0]
    except OSError:
        load = ""
    head = (f"APO benchmark {when} on {platform.node()}: {os.cpu_count()} CPUs ({cpu}), {load}; "
            f"beam {a.beam_width} x branch {a.branch_factor}, {a.rounds} rounds, gradient batch "
            f"{a.gradient_batch_size}, val batch {a.val_batch_size}, train/val {a.train_size}/"
            f"{a.val_size} tasks; runnerd --workers {a.workers} --poll-interval {a.poll_interval:g}; "
            f"fake LLM {a.latency * 1000:.0f} ms per call; total {time.monotonic() - t_start:.0f} s")
    print(head)
    print(render_text(rows))
    for line in notes(res, a):
        print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"when": when, "head": head, "results": res}, f, indent=1)
    if a.md:
        with open(a.md, "w") as f:
            f.write(head + "\n\n" + render_md(rows) + "\n\n" + "\n".join(notes(res, a)) + "\n")
    return 0


COLS = ["side", "wall s", "POML s", "rollouts", "critique+edit calls", "agent LLM calls",
        "peak concurrent LLM calls", "best (version: full-val score)", "speed-up",
        "speed-up w/o POML"]


def table(res: dict) -> list:
    rows = []
    ours = res.get("ours")
    for which in ("ours", "reference"):
        r = res.get(which)
        if not r:
            continue
        llm = r["llm"]
        ro = r["rollouts"]
        n = sum(ro.values())
        done = ro.get("succeeded", 0)
        poml = r.get("poml_seconds")
        up = up2 = "-"
        ref = res.get("reference")
        if which == "ours" and ref:
            up = f"{ref['wall_seconds'] / r['wall_seconds']:.2f}x"
            up2 = f"{(ref['wall_seconds'] - (ref.get('poml_seconds') or 0)) / r['wall_seconds']:.2f}x"
        elif which == "reference" and ours:
            up = up2 = "1.00x"
        rows.append([which, f"{r['wall_seconds']:.1f}", f"{poml:.1f}" if poml is not None else "-",
                     f"{n}" + ("" if done == n else f" ({done} ok)"),
                     f"{llm.get('critic-model', 0)}+{llm.get('editor-model', 0)}",
                     f"{llm.get('agent-model', 0)}", f"{r['llm_peak']}",
                     f"{r['best_version']}: {r['best_score']:.3f}", up, up2])
    return rows


def notes(res: dict, a) -> list:
    out = []
    for which, r in res.items():
        agent = r["llm"].get("agent-model", 0)
        line = (f"{which}: {r.get('evaluations', '?')} evaluations; runner floor "
                f"{agent} agent calls x {a.latency:g} s / {a.workers} workers = "
                f"{agent * a.latency / a.workers:.1f} s")
        if which == "reference":
            line += (f"; {r['wait_polls']} store polls (2 s sleep after each unfinished one); "
                     f"POML {r['poml_calls']} renders, {r['poml_seconds']:.1f} s; Python start-up "
                     f"and imports {r['process_seconds'] - r['wall_seconds']:.1f} s (not counted)")
        out.append(line)
    return out


def render_text(rows: list) -> str:
    w = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLS)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(COLS))]
    lines += ["  ".join(v.ljust(w[i]) for i, v in enumerate(r)) for r in rows]
    return "\n".join(lines)


def render_md(rows: list) -> str:
    lines = ["| " + " | ".join(COLS) + " |", "|" + "---|" * len(COLS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
