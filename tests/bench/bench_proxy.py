#!/usr/bin/env python3
"""Proxy overhead benchmark (issue 6 targets): runnerd's LLM proxy in front of a fast local C
upstream, against calling that upstream directly, in one run on this machine.

  added latency  p50 <= 1 ms, p99 <= 5 ms  (one connection, sequential calls)
  throughput     >= 5,000 req/s through the proxy, streaming and not

Rows: direct upstream; proxy, unattributed (/v1/chat/completions: forwarded, not recorded);
proxy, attributed (/rollout/{rid}/attempt/{aid}/v1/...: a sequence id from stored per call and
two spans per call exported to stored). A recorded cell's req/s is sustained: its calls over the
time until their spans are in the store; each cell starts after the exporter has caught up. Needs a built tree (AGL_BUILD, default build) and a C
compiler; starts a scratch PostgreSQL and a stored like the integration tests.

  AGL_BUILD=build python3 tests/bench/bench_proxy.py [--seconds 3] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402


def build(tmp):
    up, load = os.path.join(tmp, "upstream"), os.path.join(tmp, "load")
    subprocess.run(["cc", "-O2", "-o", up, os.path.join(HERE, "bench_proxy_upstream.c"),
                    "-lmicrohttpd"], check=True)
    subprocess.run(["cc", "-O2", "-D_GNU_SOURCE", "-Wall", "-Werror", "-pthread", "-o", load,
                    os.path.join(HERE, "bench_proxy_load.c")], check=True)
    return up, load


def wait_http(url, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def total_spans(store_url):
    with urllib.request.urlopen(f"{store_url}/v1/agl/statistics") as r:
        return json.load(r).get("total_spans", 0)


def drained(proxy_url, recorded, timeout=120):
    """Waits until the proxy's exporter has caught up: every recorded call's spans acknowledged
    by the store (its /health counters; polled every 5 ms, a cheap in-memory read). Returns the
    monotonic time it saw that."""
    if not recorded:
        return time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{proxy_url}/health") as r:
            h = json.load(r)
        if h["exported_calls"] + h["lost_calls"] >= h["recorded_calls"]:
            if h["lost_calls"]:
                raise RuntimeError(f"the store refused {h['lost_calls']} recorded calls' spans")
            return time.monotonic()
        time.sleep(0.005)
    raise RuntimeError("the proxy's exporter did not catch up")


def cpu_seconds(pids):
    """utime + stime of each process (all its threads), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid_list in pids.items():
        total = 0
        for pid in pid_list:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        out[name] = total / tick
    return out


def postgres_pids():
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == "postgres":
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def load(binary, url, body, conc, secs, *headers):
    out = subprocess.run([binary, url, body, str(conc), str(secs), *headers],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--modes", default="json,stream", help="comma-separated: json, stream")
    ap.add_argument("--cpu", action="store_true",
                    help="also print CPU microseconds per call of each process in each "
                         "throughput cell (load generator, upstream, proxy, stored, PostgreSQL)")
    ap.add_argument("--paths", default="unattributed,recorded",
                    help="comma-separated proxy paths: unattributed, recorded (the direct "
                         "upstream row always runs: it is the latency baseline)")
    args = ap.parse_args()
    modes, paths = args.modes.split(","), args.paths.split(",")
    runnerd = os.path.join(os.path.dirname(harness.stored_binary()), "runnerd")
    procs = []
    with tempfile.TemporaryDirectory() as tmp, harness.PgCluster() as pg:
        up_bin, load_bin = build(tmp)
        up_port, px_port = harness.free_port(), harness.free_port()
        procs.append(subprocess.Popen([up_bin, str(up_port)]))
        store = harness.start_stored(pg.create_database("bench"), "--scan-interval", "10")
        procs.append(subprocess.Popen(
            [runnerd, "--proxy-only", "--store", store.url, "--log-level", "warn",
             "--upstream", f"http://127.0.0.1:{up_port}/v1",
             "--proxy-listen", f"127.0.0.1:{px_port}"]))
        try:
            wait_http(f"http://127.0.0.1:{px_port}/health")
            wait_http(f"http://127.0.0.1:{up_port}/v1/models")
            req = urllib.request.Request(store.url + "/v1/agl/rollouts", method="POST",
                                         data=json.dumps({"input": {}}).encode(),
                                         headers={"Content-Type": "application/json"})
            ro = json.load(urllib.request.urlopen(req))
            rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
            proxy = f"http://127.0.0.1:{px_port}"
            direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
            plain = f"http://127.0.0.1:{px_port}/v1/chat/completions"
            attributed = f"http://127.0.0.1:{px_port}/rollout/{rid}/attempt/{aid}/v1/chat/completions"
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            sbody = json.dumps({"model": "m", "stream": True,
                                "messages": [{"role": "user", "content": "hi"}]})
            rows = []
            for label, url in (("direct upstream", direct), ("proxy, unattributed", plain),
                               ("proxy, recorded", attributed)):
                if url != direct and label.split(", ")[1] not in paths:
                    continue
                for mode, b in (("json", body), ("stream", sbody)):
                    if mode not in modes:
                        continue
                    lat = load(load_bin, url, b, 1, args.seconds)
                    drained(proxy, url == attributed)
                    pids = {"upstream": [procs[0].pid], "proxy": [procs[1].pid],
                            "stored": [store.proc.pid], "postgres": postgres_pids()}
                    c0 = cpu_seconds(pids)
                    t0 = time.monotonic()
                    thr = load(load_bin, url, b, args.concurrency, args.seconds)
                    if url == attributed:
                        # sustained rate: the calls over the time until their spans are stored,
                        # so an exporter backlog neither flatters this cell nor slows the next
                        thr["rps"] = thr["requests"] / (drained(proxy, True) - t0)
                    c1 = cpu_seconds(pids)
                    thr["cpu_us"] = {k: (c1[k] - c0[k]) * 1e6 / max(thr["requests"], 1) for k in c0}
                    rows.append((label, mode, lat, thr))
            base = {m: lat for (lbl, m, lat, _) in rows if lbl == "direct upstream"}
            print(f"proxy benchmark on {os.cpu_count()} CPUs, {args.seconds:.0f} s per cell, "
                  f"throughput at {args.concurrency} connections")
            print(f"{'path':22} {'mode':6} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} "
                  f"{'+p99 ms':>8} {'req/s':>9} {'errors':>6}")
            verdict = True
            for label, mode, lat, thr in rows:
                add50 = lat["p50_ms"] - base[mode]["p50_ms"]
                add99 = lat["p99_ms"] - base[mode]["p99_ms"]
                print(f"{label:22} {mode:6} {lat['p50_ms']:8.3f} {lat['p99_ms']:8.3f} "
                      f"{add50:8.3f} {add99:8.3f} {thr['rps']:9.0f} "
                      f"{lat['errors'] + thr['errors']:6d}")
                if label != "direct upstream":
                    verdict &= add50 <= 1.0 and add99 <= 5.0 and thr["rps"] >= 5000
            time.sleep(1.0)
            spans = json.load(urllib.request.urlopen(
                f"{store.url}/v1/agl/statistics"))
            print(f"spans in the store after the run: {spans.get('total_spans')}")
            if args.cpu:
                print("CPU microseconds per call in the throughput cells (the load generator "
                      "is not counted):")
                names = ["upstream", "proxy", "stored", "postgres"]
                print(f"{'path':22} {'mode':6} " + " ".join(f"{n:>9}" for n in names) + f" {'total':>9}")
                for label, mode, _, thr in rows:
                    cu = thr["cpu_us"]
                    print(f"{label:22} {mode:6} " + " ".join(f"{cu[n]:9.1f}" for n in names)
                          + f" {sum(cu.values()):9.1f}")
            print("targets (+p50 <= 1 ms, +p99 <= 5 ms, >= 5000 req/s):",
                  "met" if verdict else "NOT met")
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=20)
            store.stop()


if __name__ == "__main__":
    main()
