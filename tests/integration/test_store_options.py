"""stored options at run time (test_cli.py covers --help/--version/bad options): an
AGL_STORE_* environment variable, --log-format json, small --threads/--db-pool, a non-zero
--scan-interval."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import StoreApi, expect, expect_detail


def test_env_variable_sets_option(db_url, stored_factory):
    s = stored_factory(db_url, env={"AGL_STORE_MAX_BODY": "2048"})
    api = StoreApi(s)
    r = api.post("/queues/rollouts/enqueue", {"rollouts": [{"input": "x" * 5000}]})
    expect_detail(r, 413)
    expect(api.post("/queues/rollouts/enqueue", {"rollouts": [{"input": "x"}]}), 201)
    api.close()


def test_json_logs(db_url, stored_factory):
    s = stored_factory(db_url, "--log-format", "json", "--log-level", "debug")
    api = StoreApi(s)
    api.enqueue(1)
    api.get("/nope")
    api.close()
    assert s.stop() == 0
    lines = [ln for ln in s.log().splitlines() if ln.strip()]
    assert lines, "no log output at debug level"
    for ln in lines:
        obj = json.loads(ln)
        assert isinstance(obj, dict), ln


def test_small_thread_and_pool_counts(db_url, stored_factory):
    s = stored_factory(db_url, "--threads", "2", "--db-pool", "2")
    api = StoreApi(s)
    ids = {r["rollout_id"] for r in api.enqueue(40)}

    def worker(i):
        a = StoreApi(s)
        got = []
        while True:
            out = a.dequeue(1, worker_id=f"w{i}")
            if not out:
                a.close()
                return got
            got.append(out[0]["rollout_id"])

    with ThreadPoolExecutor(8) as ex:
        claimed = [x for r in ex.map(worker, range(8)) for x in r]
    assert sorted(claimed) == sorted(ids)
    # Waiters hold no database connection while they sleep: with a pool of 2 and three
    # open-ended waits in flight, other requests still get a connection. (With --threads 2 a
    # waiter does occupy an HTTP thread, so the waits run on a thread-per-connection stored.)
    s2 = stored_factory(db_url, "--db-pool", "2")
    api2 = StoreApi(s2)
    ro = api2.start_rollout()
    with ThreadPoolExecutor(3) as ex:
        waits = [ex.submit(StoreApi(s2).wait, [ro["rollout_id"]], None) for _ in range(3)]
        time.sleep(0.3)
        assert api2.get("/health", timeout=10).status_code == 200
        assert api2.rollout(ro["rollout_id"])["status"] == "preparing"
        assert not any(w.done() for w in waits)
        api2.update_rollout(ro["rollout_id"], status="succeeded")
        assert all([x["rollout_id"] for x in w.result(20)] == [ro["rollout_id"]] for w in waits)
    api2.close()
    api.close()


def test_nonzero_scan_interval_still_detects_timeouts(db_url, stored_factory):
    s = stored_factory(db_url, "--scan-interval", "0.3")
    api = StoreApi(s)
    ro = api.start_rollout(config={"timeout_seconds": 0.3})
    rid = ro["rollout_id"]
    deadline = time.monotonic() + 3.0
    status = None
    while time.monotonic() < deadline:
        status = api.rollout(rid)["status"]
        if status == "failed":
            break
        time.sleep(0.1)
    assert status == "failed"
    assert api.latest_attempt(rid)["status"] == "timeout"
    api.close()
