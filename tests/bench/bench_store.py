"""Store benchmark (`make bench-store`): our stored against the reference server, and against
pgbench running stored's own SQL on the same PostgreSQL — one run, one table.

Servers:
  ours       build/bin/stored in its default configuration: embedded PostgreSQL (durable
             commits: fsync and synchronous_commit on), thread per connection, 32 DB connections
  reference  `agl store --backend memory` from the agentlightning in this venv
Workloads (tests/bench/loadgen, C, one kept-alive connection per client thread):
  worker          update_worker(id, system snapshot), 1024 worker ids
  dequeue-empty   dequeue_rollout(worker_id) on an empty queue + update_worker
  rollout         start_rollout + 4 add_span (1 attribute) + update_attempt(succeeded)
  dequeue-only    dequeue_rollout() of 8192 pre-enqueued rollouts (stops at 8192 or the duration)
  dequeue-update  dequeue_rollout(worker_id) + 4 spans/next + 4 add_span (32 attributes) +
                  update_attempt(succeeded), from 8192 pre-enqueued
  otlp            POST /v1/traces: protobuf batch of 512 spans of ~4.5 KB attributes each
  scenario        tests/bench/scenario.py: real agentlightning Trainer + runner processes
pgbench: for every micro workload a script issuing exactly the statements stored ran for one
operation (traced from PostgreSQL's statement log, see trace_ops) against stored's embedded
cluster, -M prepared, clients = stored's DB pool size.

Rounds: both servers stay up; each micro workload runs --rounds times on ours, the reference and
pgbench back to back (order rotating per round, PostgreSQL checkpointed and the disk flushed
before every run); the table shows each one's median round and a line lists every round.
A second table gives CPU microseconds per op of stored, its PostgreSQL cluster, loadgen, the
reference, and PostgreSQL and the client under pgbench. For OTLP the disk's sequential write
bandwidth (measured first, on the cluster's file system) and stored's WAL and table bytes per
batch give the physical limit of durable ingestion, printed after the tables.

Peak RSS is VmHWM of the server process, reset (clear_refs) before each workload.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import resource
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

from harness import free_port, pg_bin_dir  # noqa: E402
import otlp_payload  # noqa: E402

MICRO = ["worker", "dequeue-empty", "rollout", "dequeue-only", "dequeue-update", "otlp"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- servers


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/agl/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Server:
    def __init__(self, name: str, argv: list, port: int, env: dict, logdir: str, timeout: float):
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(logdir, f"{name}.log")
        logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                                     cwd=REPO, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + timeout
        while not healthy(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start; log:\n" + open(self.log_path).read()[-3000:])
            time.sleep(0.1)

    def reset_peak(self) -> None:
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass

    def peak_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_ours(build: str, tmp: str) -> Server:
    data = os.path.join(tmp, "stored")
    os.makedirs(data, exist_ok=True)
    os.chmod(tmp, 0o755)
    os.chmod(data, 0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
    # Default configuration: only the address, the data directory and quieter logs are given.
    argv = [os.path.join(build, "bin", "stored"), "--listen", f"127.0.0.1:{port}", "--data-dir", data,
            "--log-level", "warn"]
    s = Server("stored", argv, port, env, tmp, timeout=120)
    s.data_dir = data
    return s


def start_reference(tmp: str) -> Server:
    agl = os.path.join(os.path.dirname(sys.executable), "agl")
    port = free_port()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    argv = [agl, "store", "--host", "127.0.0.1", "--port", str(port), "--backend", "memory",
            "--log-level", "WARNING"]
    return Server("reference", argv, port, env, tmp, timeout=180)


def drain_queue(url: str) -> None:
    """Claims whatever a dequeue workload left queued, so the next workload starts clean."""
    for _ in range(64):
        req = urllib.request.Request(url + "/v1/agl/queues/rollouts/dequeue", data=b'{"limit":2048}',
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            if json.loads(r.read()) == []:
                return


def children_by_parent() -> dict:
    """Parent pid -> pids of its live children, from /proc."""
    kids = {}
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(st) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(st.split("/")[2]))
    return kids


def postmaster_pid(data_dir: str) -> int:
    """The embedded cluster's postmaster, 0 when it is not running."""
    try:
        with open(os.path.join(data_dir, "pg", "postmaster.pid")) as f:
            return int(f.readline())
    except (OSError, ValueError):
        return 0


def postgres_pss_mb(data_dir: str) -> float:
    """Proportional set size of the embedded cluster (postmaster and its children)."""
    pm = postmaster_pid(data_dir)
    if not pm:
        return 0.0
    pids = [pm] + children_by_parent().get(pm, [])
    kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        kb += int(line.split()[1])
        except OSError:
            pass
    return kb / 1024.0


def proc_cpu_s(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of pid (plus those of its exited, reaped children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of pid and all its descendants, live or reaped (0 for pid 0)."""
    if not pid:
        return 0.0
    kids = children_by_parent()
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        total += proc_cpu_s(p, children=True)
        stack.extend(kids.get(p, []))
    return total


def postgres_cpu_s(data_dir: str) -> float:
    """CPU seconds of the whole embedded cluster: postmaster, live and reaped backends."""
    return tree_cpu_s(postmaster_pid(data_dir))


# ---------------------------------------------------------------- workloads


def run_loadgen(loadgen: str, server: Server, mode: str, a: argparse.Namespace, payload: str) -> dict:
    conc = a.otlp_concurrency if mode == "otlp" else a.concurrency
    argv = [loadgen, server.url, mode, str(conc), str(a.duration), "--count", str(a.count)]
    if mode == "otlp":
        argv += ["--payload", payload]
    server.reset_peak()
    data_dir = getattr(server, "data_dir", None)
    cpu0 = (tree_cpu_s(server.proc.pid), postgres_cpu_s(data_dir) if data_dir else 0.0,
            resource.getrusage(resource.RUSAGE_CHILDREN))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=a.duration * 10 + 300)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {mode} failed: {out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["peak_mb"] = server.peak_mb()
    ops = max(res.get("ops", 0), 1)
    res["cpu_us"] = {
        "server": (tree_cpu_s(server.proc.pid) - cpu0[0]) * 1e6 / ops,
        "postgres": ((postgres_cpu_s(data_dir) - cpu0[1]) * 1e6 / ops) if data_dir else None,
        "client": (ru.ru_utime + ru.ru_stime - cpu0[2].ru_utime - cpu0[2].ru_stime) * 1e6 / ops,
    }
    if mode.startswith("dequeue-") and mode != "dequeue-empty":
        drain_queue(server.url)
    return res


def run_scenario(server: Server, a: argparse.Namespace) -> dict:
    argv = [sys.executable, os.path.join(HERE, "scenario.py"), "--store-url", server.url,
            "--total-tasks", str(a.scenario_tasks), "--batch-size", str(a.scenario_batch),
            "--n-runners", str(a.runners), "--max-rounds", str(a.max_rounds),
            "--sleep-seconds", str(a.sleep_seconds)]
    server.reset_peak()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"scenario failed ({out.returncode}): {out.stderr[-3000:]}")
    res = json.loads(lines[-1])
    res["peak_mb"] = server.peak_mb()
    return res


# ---------------------------------------------------------------- pgbench


# pgbench replays the SQL stored itself runs for one operation: a second stored on the same
# cluster (one DB connection, no scans) serves one op of the workload while PostgreSQL logs every
# statement with its parameters; the log becomes the pgbench script. Ids become pgbench variables
# (fresh per transaction; the rollout a SKIP LOCKED pick returns is taken with \gset), other values
# become -D constants (long ones, e.g. span documents, one per statement position). So the script
# follows stored's SQL as it changes, with nothing to keep in sync by hand.

ID_RE = re.compile(r"^(ro-[0-9a-f]+|at-[0-9a-f]+|bench-worker-\d+|[0-9a-f]{16})$")


def pg_conn_args(server: Server) -> list:
    return ["-h", os.path.join(server.data_dir, "run"), "-p", "5432", "-U", "agl"]


def psql(server: Server, *sqls: str) -> None:
    argv = [os.path.join(pg_bin_dir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"] + pg_conn_args(server)
    for q in sqls:
        argv += ["-c", q]
    subprocess.run(argv + ["agl"], check=True, capture_output=True, text=True)


def psql_value(server: Server, sql: str) -> str:
    argv = [os.path.join(pg_bin_dir(), "psql"), "-X", "-qAt", "-v", "ON_ERROR_STOP=1"] + pg_conn_args(server)
    out = subprocess.run(argv + ["-c", sql, "agl"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def disk_write_mb_s(directory: str, total_mb: int = 2048) -> float:
    """Sequential write bandwidth of the file system under directory, the way a durable store
    needs it: 4 MiB writes of incompressible bytes, then fdatasync, timed together."""
    path = os.path.join(directory, "disk-probe.bin")
    chunk = os.urandom(4 << 20)
    t0 = time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(total_mb // 4):
            os.write(fd, chunk)
        os.fdatasync(fd)
    finally:
        os.close(fd)
        os.remove(path)
    return total_mb * 1.048576 / (time.monotonic() - t0)


def otlp_io(server: Server, run) -> dict:
    """Runs the OTLP workload (run()) and measures what it wrote: WAL bytes and span table
    bytes per batch. With the disk's bandwidth these give the physical limit of durable
    ingestion: every span is written at least twice, to the WAL and to the table."""
    q = ("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, pg_total_relation_size('spans'),"
         " (SELECT count(*) FROM spans)")
    w0, t0, n0 = (float(x) for x in psql_value(server, q).split("|"))
    r = run()
    w1, t1, n1 = (float(x) for x in psql_value(server, q).split("|"))
    batches = max((n1 - n0) / 512.0, 1.0)
    return {"result": r, "wal_mb_per_batch": (w1 - w0) / batches / 1e6,
            "table_mb_per_batch": (t1 - t0) / batches / 1e6}


def parse_params(text: str) -> list:
    out, i = [], 0
    while True:
        m = re.compile(r"\$(\d+) = ").match(text, i)
        if not m:
            return out
        i = m.end()
        if text.startswith("NULL", i):
            out.append(None)
            i += 4
        else:
            assert text[i] == "'", text[i:i + 40]
            i += 1
            val = []
            while True:
                j = text.index("'", i)
                val.append(text[i:j])
                if text.startswith("''", j):
                    val.append("'")
                    i = j + 2
                else:
                    i = j + 1
                    break
            out.append("".join(val))
        if text.startswith(", ", i):
            i += 2


def parse_statement_log(text: str) -> list:
    entries = []
    for line in text.splitlines():
        m = re.match(r"^(\d+)\|(LOG|DETAIL):  (.*)$", line)
        if not m:
            continue
        pid, kind, rest = m.groups()
        if kind == "LOG" and rest.startswith("statement: "):
            entries.append([pid, rest[len("statement: "):], []])
        elif kind == "LOG" and rest.startswith("execute "):
            entries.append([pid, rest.split(": ", 1)[1], []])
        elif kind == "DETAIL" and rest.startswith("parameters: ") and entries and entries[-1][0] == pid:
            entries[-1][2] = parse_params(rest[len("parameters: "):])
    # what remains besides the tracing stored's one pool connection is our own psql session
    return [(sql, params) for pid, sql, params in entries
            if not re.match(r"(ALTER SYSTEM|SELECT pg_reload_conf)", sql.strip(), re.I)]


def build_script(entries: list) -> tuple:
    header, lines, ids, consts = [], [], {}, {}
    pending_pick = None
    for sql, params in entries:
        bare = sql.strip().rstrip(";").strip()
        if not params and bare.upper() in ("BEGIN", "COMMIT", "ROLLBACK"):
            lines.append(bare.upper() + ";")
            continue
        subst = []
        for idx, v in enumerate(params):
            if v is None:
                subst.append("NULL")
            elif ID_RE.match(v):
                if v not in ids:
                    if v.startswith("ro-") and pending_pick is not None:
                        lines[pending_pick] = lines[pending_pick][:-1] + " \\gset q_"
                        ids[v] = ":q_rollout_id"
                        pending_pick = None
                    else:
                        var = f"i{len(ids)}"
                        ids[v] = ":" + var
                        rng = "random(0, 1023)" if v.startswith("bench-worker-") else "random(1, 999999999999999)"
                        header.append(f"\\set {var} {rng}")
                subst.append(ids[v])
            elif len(v) > 8192:
                # too long for a pgbench -D argument (OTLP batches send MB-sized arrays):
                # inline it as a SQL literal
                subst.append("'" + v.replace("'", "''") + "'")
            else:
                key = v if len(v) <= 200 else ("long", bare, idx)
                if key not in consts:
                    consts[key] = (f"c{len(consts)}", v)
                subst.append(":" + consts[key][0])
        lines.append(re.sub(r"\$(\d+)", lambda m: subst[int(m.group(1)) - 1], bare) + ";")
        if "SKIP LOCKED" in bare.upper():
            pending_pick = len(lines) - 1
    return "\n".join(header + pipelined(lines)) + "\n", {var: val for var, val in consts.values()}


def pipelined(lines: list) -> list:
    """Gives pgbench the round trips stored makes: a BEGIN goes in one pipeline with the next
    statement (stored/db.c, run_pipeline), and a run of span INSERTs is one pipeline
    (db_exec_many). pgbench cannot \\gset inside a pipeline, so a BEGIN before the dequeue
    pick keeps its own round trip there (pgbench slower than stored by that one)."""
    def span_run_end(j: int) -> int:
        while j < len(lines) and lines[j].startswith("INSERT INTO spans"):
            j += 1
        return j

    out, i = [], 0
    while i < len(lines):
        ln = lines[i]
        if ln == "BEGIN;" and i + 1 < len(lines) and "\\gset" not in lines[i + 1]:
            j = span_run_end(i + 1) if lines[i + 1].startswith("INSERT INTO spans") else i + 2
        elif span_run_end(i) - i >= 2:
            j = span_run_end(i)
        else:
            out.append(ln)
            i += 1
            continue
        out += ["\\startpipeline"] + lines[i:j] + ["\\endpipeline"]
        i = j
    return out


def trace_ops(build: str, ours: Server, loadgen: str, payload: str, modes: list, tmp: str) -> dict:
    """Runs one op of each mode through a tracing stored; returns mode -> (script, constants, n)."""
    port = free_port()
    conninfo = f"host={os.path.join(ours.data_dir, 'run')} port=5432 dbname=agl user=agl"
    argv = [os.path.join(build, "bin", "stored"), "--listen", f"127.0.0.1:{port}", "--db", conninfo,
            "--db-pool", "1", "--scan-interval", "1000000", "--log-level", "warn"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
    tracer = Server("stored-tracer", argv, port, env, tmp, timeout=60)
    tracer.data_dir = ours.data_dir
    pglog = os.path.join(ours.data_dir, "postgres.log")
    out = {}
    try:
        for mode in modes:
            base = [loadgen, tracer.url, mode, "1", "60", "--payload", payload]
            # warm-up: first scan, prepared statements, and (dequeue modes) a few queued rollouts
            subprocess.run(base + ["--ops", "1", "--count", "4"], check=True, capture_output=True)
            psql(ours, "ALTER SYSTEM SET log_statement = 'all'", "ALTER SYSTEM SET log_line_prefix = '%p|'",
                 "SELECT pg_reload_conf()")
            time.sleep(0.5)
            offset = os.path.getsize(pglog)
            subprocess.run(base + ["--ops", "1", "--no-prefill"], check=True, capture_output=True)
            psql(ours, "ALTER SYSTEM RESET log_statement", "ALTER SYSTEM RESET log_line_prefix",
                 "SELECT pg_reload_conf()")
            time.sleep(0.3)
            with open(pglog, errors="replace") as f:
                f.seek(offset)
                entries = parse_statement_log(f.read())
            script, consts = build_script(entries)
            out[mode] = (script, consts, len(entries))
            if mode.startswith("dequeue-") and mode != "dequeue-empty":
                drain_queue(tracer.url)
    finally:
        tracer.stop()
    return out


def pgbench_run(server: Server, mode: str, traced: dict, a: argparse.Namespace, tmp: str) -> dict:
    """One pgbench run of the SQL stored ran for one op of mode (traced by trace_ops)."""
    script, consts, n_stmts = traced[mode]
    path = os.path.join(tmp, f"pgbench-{mode}.sql")
    with open(path, "w") as f:
        f.write(script)
    clients = min(a.concurrency, a.db_pool)
    c = min(a.otlp_concurrency, clients) if mode == "otlp" else clients
    if mode in ("dequeue-only", "dequeue-update"):
        # enough queued rollouts that pgbench never finds the queue empty
        n = 200000 if mode == "dequeue-only" else 40000
        psql(server, "INSERT INTO rollouts (rollout_id, input, start_time, mode, status, metadata, queue_pos)"
             f" SELECT 'pgq-{mode}-' || g || '-' || nextval('queue_pos_seq'), '{{\"task\":1}}', 1764100000,"
             f" 'train', 'queuing', '{{}}', nextval('queue_pos_seq') FROM generate_series(1, {n}) g",
             "ANALYZE rollouts")
    prefix = os.path.join(tmp, f"pgblog-{mode}")
    argv = [os.path.join(pg_bin_dir(), "pgbench"), "-n", "-M", "prepared", "-c", str(c), "-j", "2", "-T",
            str(int(a.duration)), "-f", path, "-l", "--log-prefix", prefix] + pg_conn_args(server)
    for k, v in consts.items():
        argv += ["-D", f"{k}={v}"]
    argv.append("agl")
    cpu0 = (postgres_cpu_s(server.data_dir), resource.getrusage(resource.RUSAGE_CHILDREN))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=a.duration * 5 + 120)
    pg_cpu = postgres_cpu_s(server.data_dir) - cpu0[0]
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = ru.ru_utime + ru.ru_stime - cpu0[1].ru_utime - cpu0[1].ru_stime
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    lat = []
    for lf in glob.glob(prefix + "*"):
        with open(lf) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    lat.append(int(parts[2]) / 1000.0)
        os.remove(lf)
    lat.sort()
    failed = out.returncode != 0 or not m
    if mode in ("dequeue-only", "dequeue-update"):
        # leave the queue as stored's own runs find it: empty, and no dead index entries to skip
        psql(server, "UPDATE rollouts SET queue_pos = NULL WHERE queue_pos IS NOT NULL")
        psql(server, "VACUUM ANALYZE rollouts")
    return {
        "mode": mode, "concurrency": c, "ops_s": float(m.group(1)) if m else 0.0, "statements": n_stmts,
        "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95), "p99_ms": pct(lat, 0.99), "ops": len(lat),
        "cpu_us": {"postgres": pg_cpu * 1e6 / max(len(lat), 1), "client": client_cpu * 1e6 / max(len(lat), 1)},
        "error": (out.stderr[-500:] if failed else None), "errors": 1 if failed else 0,
    }


def median_run(rs: list) -> dict:
    """The run with the median throughput (the lower middle one for an even count), with every
    run's throughput, the highest peak RSS and the sum of errors over all of them."""
    m = dict(sorted(rs, key=lambda r: r["ops_s"])[(len(rs) - 1) // 2])
    m["runs_ops_s"] = [r["ops_s"] for r in rs]
    if all("peak_mb" in r for r in rs):
        m["peak_mb"] = max(r["peak_mb"] for r in rs)
    m["errors"] = sum(r.get("errors", 0) for r in rs)
    firsts = [r["first_error"] for r in rs if r.get("first_error")]
    if firsts:
        m["first_error"] = firsts[0]
    errs = [r["error"] for r in rs if r.get("error")]
    m["error"] = errs[0] if errs else None
    return m


def pct(v: list, p: float) -> float:
    if not v:
        return 0.0
    r = p * (len(v) - 1)
    lo = int(r)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (r - lo)


# ---------------------------------------------------------------- report


def fmt_lat(r: dict | None) -> str:
    if not r or not r.get("ops"):
        return "-"
    f = (lambda x: f"{x:.0f}") if r["p99_ms"] >= 100 else (lambda x: f"{x:.1f}")
    return f"{f(r['p50_ms'])}/{f(r['p95_ms'])}/{f(r['p99_ms'])}"


def fmt_rate(r: dict | None) -> str:
    if not r or not r.get("ops_s"):
        return "-"
    x = r["ops_s"]
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b or not a.get("ops_s") or not b.get("ops_s"):
        return "-"
    return f"{a['ops_s'] / b['ops_s']:.2f}x"


def table(res: dict, a: argparse.Namespace) -> list:
    hdr = ["workload", "conc", "ours ops/s", "ours p50/p95/p99 ms", "ref ops/s", "ref p50/p95/p99 ms",
           "ours/ref", "pgbench ops/s", "pgbench p50/p95/p99 ms", "ours/pgbench", "RSS ours MB", "RSS ref MB"]
    rows = []
    for w in MICRO + ["scenario"]:
        o, r, p = res["ours"].get(w), res["reference"].get(w), res["pgbench"].get(w)
        if not (o or r):
            continue
        conc = (o or r)["concurrency"]
        if w == "scenario":
            conc = f"{conc} runners"
        rows.append([w, str(conc), fmt_rate(o), fmt_lat(o), fmt_rate(r), fmt_lat(r), ratio(o, r), fmt_rate(p),
                     fmt_lat(p), ratio(o, p), f"{o['peak_mb']:.0f}" if o else "-", f"{r['peak_mb']:.0f}" if r else "-"])
    return [hdr] + rows


def cpu_table(res: dict) -> list:
    """CPU time per op of each process, from /proc (servers, the embedded cluster) and the
    children's rusage (loadgen, pgbench). Shows where an op's cost goes, and whether stored's
    HTTP/JSON layer costs less than the database work it drives."""
    hdr = ["workload", "stored us/op", "its PostgreSQL us/op", "stored/PostgreSQL", "loadgen us/op",
           "ref server us/op", "pgbench: PostgreSQL us/op", "pgbench client us/op"]
    rows = []

    def us(v):
        return f"{v:.0f}" if v is not None else "-"
    for w in MICRO:
        o, r, p = (res[k].get(w) for k in ("ours", "reference", "pgbench"))
        oc, rc, pc = ((x or {}).get("cpu_us") or {} for x in (o, r, p))
        if not (oc or rc):
            continue
        share = (f"{oc['server'] / oc['postgres']:.2f}x" if oc.get("postgres") else "-")
        rows.append([w, us(oc.get("server")), us(oc.get("postgres")), share, us(oc.get("client")),
                     us(rc.get("server")), us(pc.get("postgres")), us(pc.get("client"))])
    return [hdr] + rows


def render_text(rows: list) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)))
        if k == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def otlp_limit(res: dict, payload_bytes: int, disk_mb_s: float) -> str:
    """The physical limit of durable OTLP ingestion on this disk, next to what ours did."""
    o, ref = res["ours"].get("otlp"), res["reference"].get("otlp")
    if not o or not disk_mb_s or "wal_mb_per_batch" not in o:
        return ""
    floor_mb = 2 * payload_bytes / 1e6  # the spans' bytes, once to the WAL and once to the table
    wrote_mb = o["wal_mb_per_batch"] + o["table_mb_per_batch"]
    ceil_min, ceil_ours = disk_mb_s / floor_mb, disk_mb_s / wrote_mb
    vs_ref = (f" = {ceil_min / ref['ops_s']:.1f}x the reference's {ref['ops_s']:.1f}"
              if ref and ref.get("ops_s") else "")
    return (f"otlp physical limit: disk {disk_mb_s:.0f} MB/s (sequential write + fdatasync); "
            f"a durable store writes each batch's {payload_bytes / 1e6:.2f} MB at least twice (WAL + table), "
            f"so at most {ceil_min:.0f} batches/s sustained{vs_ref}. "
            f"stored wrote {o['wal_mb_per_batch']:.2f} MB WAL + {o['table_mb_per_batch']:.2f} MB table per batch "
            f"(disk ceiling {ceil_ours:.0f} batches/s); it did {o['ops_s']:.1f}.")


def runs_line(res: dict) -> str:
    """Every round's ops/s, per workload and server: how far single runs move."""
    parts = []
    for w in MICRO:
        cells = [f"{k} " + "/".join(f"{v:.0f}" if v >= 100 else f"{v:.1f}" for v in res[k][w]["runs_ops_s"])
                 for k in ("ours", "reference", "pgbench") if w in res[k] and "runs_ops_s" in res[k][w]]
        if cells:
            parts.append(f"{w}: " + ", ".join(cells))
    return "ops/s of each round: " + "; ".join(parts)


def render_md(rows: list) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("AGL_BUILD", "build"))
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per micro workload")
    ap.add_argument("--concurrency", type=int, default=32, help="client connections, micro workloads")
    ap.add_argument("--otlp-concurrency", type=int, default=4)
    ap.add_argument("--count", type=int, default=8192, help="pre-enqueued rollouts, dequeue workloads")
    ap.add_argument("--db-pool", type=int, default=32, help="stored's --db-pool default = pgbench clients")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each micro workload per server (median shown)")
    ap.add_argument("--scenario-tasks", type=int, default=512)
    ap.add_argument("--scenario-batch", type=int, default=128)
    ap.add_argument("--runners", type=int, default=8)
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--sleep-seconds", type=float, default=0.1)
    ap.add_argument("--only", nargs="*", help="subset of workloads")
    ap.add_argument("--skip", nargs="*", default=[], help="reference, pgbench, scenario")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--md", help="also write the table as markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, scripts)")
    a = ap.parse_args()

    build = a.build if os.path.isabs(a.build) else os.path.join(REPO, a.build)
    loadgen = os.path.join(build, "bench", "loadgen")
    for p in (loadgen, os.path.join(build, "bin", "stored")):
        if not os.path.exists(p):
            raise SystemExit(f"bench_store: {p} missing (run `make bench-store`)")
    tmp = tempfile.mkdtemp(prefix="aglbench-", dir="/tmp")
    os.chmod(tmp, 0o755)
    payload = os.path.join(tmp, "otlp.bin")
    with open(payload, "wb") as f:
        f.write(otlp_payload.build(512))
    payload_bytes = os.path.getsize(payload)
    micro = [m for m in MICRO if not a.only or m in a.only]
    do_scenario = "scenario" not in a.skip and (not a.only or "scenario" in a.only)
    runs = {"ours": {}, "reference": {}, "pgbench": {}}
    res = {"ours": {}, "reference": {}, "pgbench": {}}
    t_start = time.monotonic()
    disk_mb_s = 0.0
    if "otlp" in micro:
        # tmp holds the embedded cluster: same file system, measured before anything runs
        disk_mb_s = disk_write_mb_s(tmp)
        log(f"disk: {disk_mb_s:.0f} MB/s sequential write + fdatasync")
    servers = {}
    try:
        log("starting ours")
        servers["ours"] = start_ours(build, tmp)
        if "reference" not in a.skip:
            log("starting reference")
            servers["reference"] = start_reference(tmp)
        ours = servers["ours"]
        traced = None
        if "pgbench" not in a.skip:
            traced = trace_ops(build, ours, loadgen, payload, micro, tmp)
        # Rounds, and within a round each workload on every server back to back (in an order that
        # rotates), so slow phases of this shared machine hit all of them alike; each row of the
        # table is the median round.
        for rnd in range(a.rounds):
            for mode in micro:
                order = ["ours"] + (["reference"] if "reference" in servers else []) + \
                    (["pgbench"] if traced else [])
                order = order[rnd % len(order):] + order[:rnd % len(order)]
                for which in order:
                    # start every run with the disk idle: no writeback left from the run before
                    psql(ours, "CHECKPOINT")
                    os.sync()
                    if which == "pgbench":
                        r = pgbench_run(ours, mode, traced, a, tmp)
                        log(f"round {rnd + 1} pgbench {mode}: {r['statements']} statements/op, "
                            f"{r['ops_s']:.1f} tps" + (f" ERROR {r['error'][-300:]}" if r["error"] else ""))
                    else:
                        srv = servers[which]
                        if which == "ours" and mode == "otlp":
                            io = otlp_io(srv, lambda: run_loadgen(loadgen, srv, mode, a, payload))
                            r = io.pop("result")
                            r.update(io)
                        else:
                            r = run_loadgen(loadgen, srv, mode, a, payload)
                        if which == "ours":
                            r["postgres_pss_mb"] = postgres_pss_mb(srv.data_dir)
                        log(f"round {rnd + 1} {which} {mode}: {r['ops_s']:.1f} ops/s p99 {r['p99_ms']:.1f} ms, "
                            f"errors {r['errors']}" + (f" ({r['first_error']})" if r.get("first_error") else ""))
                    runs[which].setdefault(mode, []).append(r)
        if do_scenario:
            for which in servers:
                r = run_scenario(servers[which], a)
                runs[which]["scenario"] = [r]
                log(f"{which} scenario: {r['ops_s']:.2f} rollouts/s over {r['seconds']:.1f} s, "
                    f"failures {r['errors']}")
    finally:
        for srv in servers.values():
            srv.stop()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    for which, by_mode in runs.items():
        for mode, rs in by_mode.items():
            res[which][mode] = median_run(rs)

    rows = table(res, a)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    head = (f"store benchmark {when} on {platform.node()}: {os.cpu_count()} CPUs ({cpu}), "
            f"{a.duration:g} s per micro workload x {a.rounds} interleaved rounds (median shown), "
            f"{a.concurrency} connections "
            f"(otlp {a.otlp_concurrency}), pgbench clients {min(a.concurrency, a.db_pool)}, "
            f"scenario {a.scenario_tasks} tasks / {a.runners} runners / max_rounds {a.max_rounds} / "
            f"sleep {a.sleep_seconds:g} s; total {time.monotonic() - t_start:.0f} s")
    cpu_rows = cpu_table(res)
    print(head)
    print(render_text(rows))
    print()
    print(render_text(cpu_rows))
    spread = runs_line(res)
    print(spread)
    errs = [f"{w} {which}: {r['errors']} errors ({r.get('first_error', '')})"
            for which in ("ours", "reference") for w, r in res[which].items() if r.get("errors")]
    errs += [f"pgbench {w}: {r['error']}" for w, r in res["pgbench"].items() if r.get("error")]
    for e in errs:
        print("!! " + e)
    pss = {w: r.get("postgres_pss_mb") for w, r in res["ours"].items() if r.get("postgres_pss_mb")}
    if pss:
        print("embedded PostgreSQL PSS after each workload (MB): "
              + ", ".join(f"{w} {v:.0f}" for w, v in pss.items()))
    limit = otlp_limit(res, payload_bytes, disk_mb_s)
    if limit:
        print(limit)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"when": when, "head": head, "results": res}, f, indent=1)
    if a.md:
        with open(a.md, "w") as f:
            f.write(head + "\n\n" + render_md(rows) + "\n\n" + render_md(cpu_rows) + "\n\n" + spread + "\n"
                    + (f"\n{limit}\n" if limit else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
