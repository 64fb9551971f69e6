#!/usr/bin/env python3
"""Memory soak of stored (issue 5: peak RSS under 200 MB and flat across a 10-minute soak).

Starts stored in its default configuration (embedded PostgreSQL, durable commits), then runs
the micro workloads of bench_store.py in rotation with tests/bench/loadgen — worker heartbeats,
dequeue-empty, rollout, dequeue-update and OTLP batches of 512 spans (2.5 MB) — for --duration
seconds, sampling stored's VmRSS and VmHWM from /proc every --every seconds. Prints one table
and the verdict: the peak stays under --limit-mb, and the RSS of the last quarter is not above
the RSS of the second quarter by more than --growth-mb (what a leak would show).

Memory, not speed, is measured here, so it can run beside other jobs.

Usage: AGL_BUILD=build python tests/bench/soak_store.py [--duration 600] [--every 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROTATION = [("worker", 8), ("dequeue-empty", 8), ("rollout", 8), ("dequeue-update", 8), ("otlp", 2)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_mb(pid: int) -> tuple:
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("AGL_BUILD", "build"))
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--slice", type=float, default=20, help="seconds per workload in the rotation")
    ap.add_argument("--limit-mb", type=float, default=200)
    ap.add_argument("--growth-mb", type=float, default=20)
    a = ap.parse_args()
    stored = os.path.join(a.build, "bin", "stored")
    loadgen = os.path.join(a.build, "bench", "loadgen")
    for p in (stored, loadgen):
        if not os.access(p, os.X_OK):
            sys.exit(f"{p} missing: run make all {loadgen}")
    tmp = tempfile.mkdtemp(prefix="agl-soak-")
    os.chmod(tmp, 0o755)
    payload = os.path.join(tmp, "otlp.pb")
    subprocess.run([sys.executable, os.path.join(HERE, "otlp_payload.py"), payload, "512"],
                   check=True, capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
    log = open(os.path.join(tmp, "stored.log"), "w")
    srv = subprocess.Popen([stored, "--listen", f"127.0.0.1:{port}", "--data-dir",
                            os.path.join(tmp, "data"), "--log-level", "warn"],
                           stdout=log, stderr=subprocess.STDOUT, env=env)
    samples, errors, stop = [], [], threading.Event()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/v1/agl/health", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or srv.poll() is not None:
                    sys.exit(f"stored did not come up, see {tmp}/stored.log")
                time.sleep(0.3)

        def drive():
            i = 0
            while not stop.is_set():
                mode, conc = ROTATION[i % len(ROTATION)]
                i += 1
                argv = [loadgen, url, mode, str(conc), str(a.slice), "--count", "2048",
                        "--payload", payload]
                out = subprocess.run(argv, capture_output=True, text=True)
                if out.returncode != 0:
                    errors.append(f"{mode}: {out.stderr.strip()[-200:]}")

        t = threading.Thread(target=drive, daemon=True)
        t0 = time.monotonic()
        t.start()
        while time.monotonic() - t0 < a.duration:
            samples.append((time.monotonic() - t0, *proc_mb(srv.pid)))
            time.sleep(a.every)
        samples.append((time.monotonic() - t0, *proc_mb(srv.pid)))
        stop.set()
        t.join(timeout=a.slice * 3)
    finally:
        srv.terminate()
        rc = srv.wait(timeout=60)
        log.close()
    print(f"stored memory soak: {a.duration:.0f} s, rotation "
          + ", ".join(f"{m} x{c}" for m, c in ROTATION) + f", {a.slice:.0f} s each")
    print(f"{'t s':>6} {'RSS MB':>8} {'peak MB':>8}")
    for ts, rss, hwm in samples:
        print(f"{ts:6.0f} {rss:8.1f} {hwm:8.1f}")
    n = len(samples)
    q2 = [r for _, r, _ in samples[n // 4:n // 2]] or [0]
    q4 = [r for _, r, _ in samples[3 * n // 4:]] or [0]
    peak = max(h for _, _, h in samples)
    growth = sum(q4) / len(q4) - sum(q2) / len(q2)
    ok = peak < a.limit_mb and growth <= a.growth_mb and not errors and rc == 0
    print(f"peak {peak:.1f} MB (limit {a.limit_mb:.0f}); mean RSS last quarter - second quarter: "
          f"{growth:+.1f} MB (allowed {a.growth_mb:.0f}); loadgen errors: {len(errors)}; "
          f"stored exit status on SIGTERM: {rc}")
    for e in errors[:5]:
        print("  " + e)
    print("verdict:", "flat and under the limit" if ok else "NOT met")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
