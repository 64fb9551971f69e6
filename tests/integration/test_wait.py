"""E28 wait_for_rollouts (spec §5.4)."""

import threading
import time

from conftest import StoreApi, expect, expect_422


def test_timeout_zero_returns_finished_subset_immediately(store):
    a, b, c = store.enqueue(3)
    store.update_rollout(c["rollout_id"], status="cancelled")
    store.update_rollout(a["rollout_id"], status="succeeded")
    store.update_rollout(b["rollout_id"], status="requeuing")  # not finished
    ids = [c["rollout_id"], b["rollout_id"], "ro-unknown00000", a["rollout_id"],
           c["rollout_id"]]
    t0 = time.monotonic()
    out = store.wait(ids, 0)
    assert time.monotonic() - t0 < 0.5
    assert [o["rollout_id"] for o in out] == [c["rollout_id"], a["rollout_id"],
                                              c["rollout_id"]]
    for o in out:
        assert "attempt" not in o
        assert o["end_time"] is not None
    assert out[1]["status"] == "succeeded" and out[0]["status"] == "cancelled"


def test_plain_rollout_even_with_attempts(store):
    ro = store.start_rollout()
    store.update_attempt(ro["rollout_id"], "latest", status="failed")
    out = store.wait([ro["rollout_id"]], 0)
    assert len(out) == 1 and "attempt" not in out[0] and out[0]["status"] == "failed"


def test_negative_timeout_and_empty_list(store):
    ro = store.enqueue_one()
    t0 = time.monotonic()
    assert store.wait([ro["rollout_id"]], -1) == []
    assert store.wait([], 0) == []
    assert time.monotonic() - t0 < 0.5


def test_short_timeout_waits(store):
    ro = store.enqueue_one()
    t0 = time.monotonic()
    assert store.wait([ro["rollout_id"]], 0.3) == []
    dt = time.monotonic() - t0
    assert 0.25 <= dt < 2.0, dt


def _finish_later(url, rid, delay):
    def run():
        time.sleep(delay)
        api = StoreApi(url)
        api.update_attempt(rid, "latest", status="succeeded")
        api.close()
    t = threading.Thread(target=run)
    t.start()
    return t


def test_wait_released_by_concurrent_finish(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    t = _finish_later(store.url, rid, 0.4)
    t0 = time.monotonic()
    out = store.wait([rid], 10)
    dt = time.monotonic() - t0
    t.join()
    assert [o["rollout_id"] for o in out] == [rid]
    assert out[0]["status"] == "succeeded" and out[0]["end_time"] is not None
    assert 0.3 <= dt < 3.0, dt


def test_wait_null_timeout(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    t = _finish_later(store.url, rid, 0.3)
    out = expect(store.post("/waits/rollouts", {"rollout_ids": [rid]}, timeout=15), 200)
    t.join()
    assert [o["status"] for o in out] == ["succeeded"]


def test_partial_completion(store):
    a = store.start_rollout()
    b = store.start_rollout()
    t = _finish_later(store.url, a["rollout_id"], 0.2)
    out = store.wait([a["rollout_id"], b["rollout_id"]], 1.0)
    t.join()
    assert [o["rollout_id"] for o in out] == [a["rollout_id"]]


def test_many_waiters_released_and_other_requests_served(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    results = [None] * 6
    durations = [None] * 6

    def waiter(i):
        api = StoreApi(store.url)
        t0 = time.monotonic()
        results[i] = api.wait([rid], 8)
        durations[i] = time.monotonic() - t0
        api.close()

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    # waiting requests must not stall other requests
    t0 = time.monotonic()
    for _ in range(5):
        assert store.get("/health").status_code == 200
        assert store.rollout(rid)["status"] == "preparing"
    assert time.monotonic() - t0 < 2.0
    store.update_rollout(rid, status="cancelled")
    for t in threads:
        t.join(15)
    for i in range(6):
        assert results[i] is not None and [o["status"] for o in results[i]] == ["cancelled"], i
        assert durations[i] < 5.0, durations


def test_wait_validation(store):
    expect_422(store.post("/waits/rollouts", {"timeout": 0}), "rollout_ids")
    expect_422(store.post("/waits/rollouts", {"rollout_ids": "ro-x", "timeout": 0}),
               "rollout_ids")
    expect_422(store.post("/waits/rollouts", {"rollout_ids": [], "timeout": "soon"}), "timeout")
