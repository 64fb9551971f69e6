"""SIGTERM drains: requests in flight are answered, then stored exits 0."""
import os
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402


def test_sigterm_answers_inflight_wait_and_exits_0(pg):
    url = pg.create_database("shutdown_wait")
    s = harness.start_stored(url)
    api = s.url + "/v1/agl"
    ro = requests.post(api + "/queues/rollouts/enqueue",
                       json={"rollouts": [{"input": 1}]}).json()[0]
    result = {}

    def waiter():
        t0 = time.monotonic()
        r = requests.post(api + "/waits/rollouts",
                          json={"rollout_ids": [ro["rollout_id"]], "timeout": None}, timeout=30)
        result["status"], result["body"] = r.status_code, r.json()
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)  # the waiter is now blocked inside stored (no deadline)
    assert s.stop(timeout=20) == 0, s.log()[-2000:]
    t.join(timeout=20)
    assert result["status"] == 200
    assert result["body"] == []  # released by the shutdown, nothing finished
    assert result["elapsed"] < 15


def test_restart_keeps_data(pg):
    url = pg.create_database("shutdown_restart")
    s = harness.start_stored(url)
    api = s.url + "/v1/agl"
    ids = [r["rollout_id"] for r in requests.post(
        api + "/queues/rollouts/enqueue", json={"rollouts": [{"input": i} for i in range(3)]}).json()]
    assert s.stop() == 0
    s = harness.start_stored(url)
    try:
        got = requests.get(s.url + "/v1/agl/rollouts").json()
        assert [r["rollout_id"] for r in got["items"]] == ids
    finally:
        assert s.stop() == 0


def test_systemd_readiness_notification(pg, tmp_path):
    """Under systemd (Type=notify) stored reports READY=1 once it serves, STOPPING=1 on SIGTERM."""
    import socket

    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    try:
        s = harness.start_stored(pg.create_database("shutdown_notify"),
                                 env=dict(os.environ, NOTIFY_SOCKET=path))
        assert sock.recv(256) == b"READY=1"
        assert requests.get(s.url + "/v1/agl/health").status_code == 200
        assert s.stop() == 0
        assert sock.recv(256) == b"STOPPING=1"
    finally:
        sock.close()
