"""Test harness shared by tests/integration and tests/compat.

Owns two things: a scratch PostgreSQL cluster (PgCluster: initdb in a temp dir, unix socket
only, always torn down) and running `stored` processes (start_stored / Stored). When the
tests run as root the cluster is run as `nobody`, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every stored we start, so that a crashed test run never leaves one behind.
_LIVE_STORED: "list[Stored]" = []
_LIVE_CLUSTERS: "list[PgCluster]" = []
# Log files of every stored we started; removed at interpreter exit unless AGL_KEEP_LOGS is set.
_LOG_FILES: "list[str]" = []


def stored_binary() -> str:
    build = os.environ.get("AGL_BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(REPO_ROOT, build)
    return os.path.join(build, "bin", "stored")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin_dir() -> str:
    """Directory holding initdb/pg_ctl: $AGL_PG_BIN, else the newest /usr/lib/postgresql/*/bin,
    else pg_config --bindir, else wherever initdb is on PATH."""
    env = os.environ.get("AGL_PG_BIN")
    if env:
        return env
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if cands:
        return os.path.dirname(cands[-1])
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        d = out.stdout.strip()
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    except (OSError, subprocess.CalledProcessError):
        pass
    w = shutil.which("initdb")
    if w:
        return os.path.dirname(w)
    raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found; set AGL_PG_BIN")


def _as_pg_user(cmd: "list[str]") -> "list[str]":
    """Prefix cmd so that it runs as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"] + cmd
    pw = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"] + cmd


class PgCluster:
    """A scratch PostgreSQL cluster living in a temp dir, reachable only via a unix socket."""

    def __init__(self):
        self.bindir = pg_bin_dir()
        self.dir: str | None = None
        self.datadir: str | None = None
        self.port = free_port()
        self.user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.started = False
        self._dbs: "set[str]" = set()

    def _run(self, *cmd: str, check=True, timeout=120) -> subprocess.CompletedProcess:
        full = _as_pg_user([os.path.join(self.bindir, cmd[0])] + list(cmd[1:]))
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        r = subprocess.run(full, capture_output=True, text=True, cwd=self.dir, env=env,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def __enter__(self) -> "PgCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        # Short path: the socket path must stay under ~100 bytes.
        self.dir = tempfile.mkdtemp(prefix="aglpg-", dir="/tmp")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)
        self.datadir = os.path.join(self.dir, "data")
        _LIVE_CLUSTERS.append(self)
        self._run("initdb", "-D", self.datadir, "-A", "trust", "-U", self.user, "-E", "UTF8",
                  "--no-locale", "--no-sync")
        opts = (f"-c listen_addresses='' -c unix_socket_directories='{self.dir}' "
                f"-c port={self.port} -c fsync=off -c synchronous_commit=off "
                f"-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", self.datadir, "-o", opts, "-l",
                  os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start")
        self.started = True

    def stop(self):
        if self in _LIVE_CLUSTERS:
            _LIVE_CLUSTERS.remove(self)
        if self.started and self.datadir:
            try:
                self._run("pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "-t", "30",
                          "stop", check=False)
            except Exception:
                pass
            self.started = False
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql:///{dbname}?host={self.dir}&port={self.port}&user={self.user}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        r = self._run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.dir,
                      "-p", str(self.port), "-U", self.user, "-d", dbname, "-c", sql)
        return r.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        self._dbs.add(name)
        return self.url(name)

    def drop_database(self, name: str):
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._dbs.discard(name)

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "server.log"), errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""


class Stored:
    """A running stored process; stderr is captured to a file (see log())."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: str, argv: "list[str]"):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.argv = argv
        _LIVE_STORED.append(self)
        _LOG_FILES.append(log_path)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10) -> int:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
                    raise RuntimeError(
                        f"stored did not exit within {timeout}s after signal {sig}; killed.\n"
                        + self.log()[-4000:])
            return self.proc.returncode
        finally:
            if self in _LIVE_STORED:
                _LIVE_STORED.remove(self)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self in _LIVE_STORED:
            _LIVE_STORED.remove(self)


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/agl/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_stored(db_url: str | None, *args: str, data_dir: str | None = None,
                 env: dict | None = None, wait=True, timeout: float = 30.0) -> Stored:
    binary = stored_binary()
    if not os.path.exists(binary):
        raise RuntimeError(f"stored binary not found at {binary} (set AGL_BUILD)")
    port = free_port()
    argv = [binary, "--listen", f"127.0.0.1:{port}"]
    if db_url is not None:
        argv += ["--db", db_url]
    if data_dir is not None:
        argv += ["--data-dir", data_dir]
    argv += ["--scan-interval", "0", "--log-level", "warn"]
    argv += list(args)
    full_env = dict(os.environ)
    # AGL_* variables from the caller's shell must not change the daemon under test.
    for k in list(full_env):
        if k.startswith("AGL_") and k not in ("AGL_BUILD",):
            del full_env[k]
    if env:
        full_env.update(env)
    fd, log_path = tempfile.mkstemp(prefix="stored-", suffix=".log")
    logf = os.fdopen(fd, "w")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                            env=full_env, cwd=REPO_ROOT, start_new_session=True)
    logf.close()
    s = Stored(proc, port, log_path, argv)
    if not wait:
        return s
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            s.kill()
            raise RuntimeError(f"stored exited with {proc.returncode} during start-up:\n"
                               f"argv: {argv}\n{s.log()[-6000:]}")
        if _health_ok(s.url):
            return s
        if time.monotonic() > deadline:
            s.kill()
            raise RuntimeError(f"stored not healthy after {timeout}s:\nargv: {argv}\n"
                               f"{s.log()[-6000:]}")
        time.sleep(0.05)


def cleanup_all():
    """Kills every stored still running and stops every cluster (atexit and fixture safety)."""
    for s in list(_LIVE_STORED):
        try:
            s.kill()
        except Exception:
            pass
    for c in list(_LIVE_CLUSTERS):
        try:
            c.stop()
        except Exception:
            pass


def _remove_logs():
    if os.environ.get("AGL_KEEP_LOGS"):
        return
    for p in _LOG_FILES:
        try:
            os.unlink(p)
        except OSError:
            pass


atexit.register(_remove_logs)
atexit.register(cleanup_all)  # runs first (LIFO): kill processes, then drop their logs
