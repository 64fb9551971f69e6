"""Spec §4: rollout/attempt state machines, derived rollout status, retries, the health scan
(timeout / unresponsive), span heartbeats, worker status. stored runs with --scan-interval 0,
so the scan runs before every "Scan" request."""

import time

from conftest import make_span


def fail_latest(store, rid, status="failed"):
    return store.update_attempt(rid, "latest", status=status)


def test_succeeded_attempt_finishes_rollout(store):
    ro = store.enqueue_one()
    d = store.dequeue(1)[0]
    rid, aid = ro["rollout_id"], d["attempt"]["attempt_id"]
    store.update_attempt(rid, aid, status="running")
    assert store.rollout(rid)["status"] == "running"
    att = store.update_attempt(rid, aid, status="succeeded")
    assert att["end_time"] is not None
    got = store.rollout(rid)
    assert got["status"] == "succeeded"
    assert got["end_time"] is not None and got["end_time"] >= got["start_time"]
    assert got["attempt"]["status"] == "succeeded"


def test_default_config_failure_is_final(store):
    ro = store.enqueue_one()
    store.dequeue(1)
    fail_latest(store, ro["rollout_id"])
    got = store.rollout(ro["rollout_id"])
    assert got["status"] == "failed" and got["end_time"] is not None
    assert store.dequeue(1) == []


def test_retry_until_max_attempts(store):  # §4.3 example: max 3, retry on failed
    ro = store.enqueue_one(config={"max_attempts": 3, "retry_condition": ["failed"]})
    rid = ro["rollout_id"]
    for n in (1, 2):
        d = store.dequeue(1)
        assert len(d) == 1 and d[0]["attempt"]["sequence_id"] == n
        fail_latest(store, rid)
        got = store.rollout(rid)
        assert got["status"] == "requeuing", n
        assert got["end_time"] is None
    d = store.dequeue(1)
    assert d[0]["attempt"]["sequence_id"] == 3 and d[0]["status"] == "preparing"
    fail_latest(store, rid)
    got = store.rollout(rid)
    assert got["status"] == "failed" and got["end_time"] is not None
    assert store.dequeue(1) == []
    assert store.attempts(rid)["total"] == 3


def test_status_not_in_retry_condition_fails(store):
    ro = store.enqueue_one(config={"max_attempts": 5, "retry_condition": ["timeout"]})
    store.dequeue(1)
    fail_latest(store, ro["rollout_id"], "unresponsive")
    assert store.rollout(ro["rollout_id"])["status"] == "failed"


def test_manual_attempts_count_towards_max_attempts(store):
    ro = store.start_rollout(config={"max_attempts": 2, "retry_condition": ["failed"]})
    rid = ro["rollout_id"]
    store.start_attempt(rid)  # attempt 2
    fail_latest(store, rid)
    assert store.rollout(rid)["status"] == "failed"  # 2 < 2 is false


def test_non_latest_attempt_update_does_not_touch_rollout(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    store.start_attempt(rid)
    store.update_attempt(rid, ro["attempt"]["attempt_id"], status="succeeded")
    assert store.rollout(rid)["status"] == "preparing"


def test_cancel_then_attempt_update_rederives(store):  # §4.1 note, quirk 10
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    out = store.update_rollout(rid, status="cancelled")
    assert out["status"] == "cancelled" and out["end_time"] is not None
    # cancellation does not touch the attempt
    assert store.latest_attempt(rid)["status"] == "preparing"
    # metadata-only update of the latest attempt re-derives preparing
    store.update_attempt(rid, "latest", metadata={"x": 1})
    assert store.rollout(rid)["status"] == "preparing"
    store.update_rollout(rid, status="cancelled")
    store.update_attempt(rid, "latest", status="succeeded")
    assert store.rollout(rid)["status"] == "succeeded"


def test_running_latest_reopens_succeeded_rollout(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    store.update_attempt(rid, "latest", status="succeeded")
    end = store.rollout(rid)["end_time"]
    store.update_attempt(rid, "latest", status="running")
    got = store.rollout(rid)
    assert got["status"] == "running" and got["end_time"] == end


def test_requeuing_is_enqueued_by_derivation(store):
    ro = store.start_rollout(config={"max_attempts": 2, "retry_condition": ["failed"]})
    rid = ro["rollout_id"]
    fail_latest(store, rid)
    assert store.rollout(rid)["status"] == "requeuing"
    d = store.dequeue(1)
    assert [x["rollout_id"] for x in d] == [rid]
    assert d[0]["attempt"]["sequence_id"] == 2


# ---- span heartbeats (§4.6) ----

def test_span_promotes_attempt_and_rollout(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    t0 = time.time()
    store.add_span(make_span(rid, aid, 1))
    att = store.latest_attempt(rid)
    assert att["status"] == "running"
    assert att["last_heartbeat_time"] is not None and att["last_heartbeat_time"] >= t0 - 1
    assert store.rollout(rid)["status"] == "running"


def test_span_does_not_change_timeout_or_terminal_attempt(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    store.update_attempt(rid, aid, status="succeeded")
    store.add_span(make_span(rid, aid, 1))
    att = store.latest_attempt(rid)
    assert att["status"] == "succeeded" and att["last_heartbeat_time"] is not None
    assert store.rollout(rid)["status"] == "succeeded"


def test_span_heartbeat_keeps_metadata(store):  # §5.7
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    store.update_attempt(rid, aid, metadata={"keep": True})
    store.add_span(make_span(rid, aid, 1))
    assert store.latest_attempt(rid)["metadata"] == {"keep": True}


def test_duplicate_span_is_not_a_heartbeat(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    store.add_span(make_span(rid, aid, 1, span_id="aaaaaaaaaaaaaaaa"))
    hb1 = store.latest_attempt(rid)["last_heartbeat_time"]
    store.update_attempt(rid, aid, status="unresponsive")
    time.sleep(0.02)
    assert store.add_span(make_span(rid, aid, 2, span_id="aaaaaaaaaaaaaaaa")) is None
    att = store.latest_attempt(rid)
    assert att["status"] == "unresponsive" and att["last_heartbeat_time"] == hb1


def test_queuing_rollout_not_promoted_by_span(store):  # quirk 6
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    store.update_rollout(rid, status="queuing")
    store.add_span(make_span(rid, aid, 1))
    assert store.latest_attempt(rid)["status"] == "running"
    assert store.rollout(rid)["status"] == "queuing"


# ---- health scan (§4.5) ----

def test_timeout_requeues_and_then_fails(store):
    cfg = {"timeout_seconds": 0.6, "max_attempts": 2, "retry_condition": ["timeout"]}
    ro = store.enqueue_one(config=cfg)
    rid = ro["rollout_id"]
    d = store.dequeue(1, worker_id="w-to")
    assert store.worker("w-to")["status"] == "busy"
    time.sleep(0.9)
    got = store.rollout(rid)  # E07 scans first
    assert got["status"] == "requeuing"
    assert got["attempt"]["attempt_id"] == d[0]["attempt"]["attempt_id"]
    assert got["attempt"]["status"] == "timeout"
    assert got["attempt"]["end_time"] is None
    assert got["end_time"] is None
    w = store.worker("w-to")
    assert w["status"] == "unknown"
    assert w["current_rollout_id"] is None and w["current_attempt_id"] is None
    assert w["last_idle_time"] is not None
    d2 = store.dequeue(1)
    assert d2[0]["attempt"]["sequence_id"] == 2
    time.sleep(0.9)
    got = store.rollout(rid)
    assert got["status"] == "failed" and got["end_time"] is not None
    assert got["attempt"]["status"] == "timeout"


def test_unresponsive_without_heartbeat(store):
    ro = store.start_rollout(config={"unresponsive_seconds": 0.6})
    rid = ro["rollout_id"]
    p = store.attempts(rid)  # scan runs, too early
    assert p["items"][0]["status"] == "preparing"
    time.sleep(0.9)
    lat = store.latest_attempt(rid)  # E12 scans
    assert lat["status"] == "unresponsive"
    assert store.rollout(rid)["status"] == "failed"


def test_unresponsive_measured_from_last_span(store):
    ro = store.start_rollout(config={"unresponsive_seconds": 1.2}, worker_id="w-u")
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    time.sleep(0.6)
    store.add_span(make_span(rid, aid, 1))
    store.heartbeat("w-u", {"cpu": 1})  # worker heartbeats do not count
    time.sleep(0.7)  # ≥ 1.3 s since start, ~0.7 s since the span
    assert store.rollout(rid)["status"] == "running"
    store.heartbeat("w-u", {"cpu": 2})
    time.sleep(0.7)  # ≥ 1.4 s since the span
    got = store.rollout(rid)
    assert got["attempt"]["status"] == "unresponsive"
    assert got["status"] == "failed"
    assert store.worker("w-u")["status"] == "unknown"


def test_explicit_heartbeat_time_counts(store):
    ro = store.start_rollout(config={"unresponsive_seconds": 0.8})
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    time.sleep(0.5)
    store.update_attempt(rid, aid, last_heartbeat_time=time.time())
    time.sleep(0.45)  # ≥ 0.95 s since start, ~0.45 s since the heartbeat
    assert store.latest_attempt(rid)["status"] == "preparing"


def test_unresponsive_attempt_revived_by_span(store):
    cfg = {"unresponsive_seconds": 0.5, "max_attempts": 2, "retry_condition": ["unresponsive"]}
    ro = store.enqueue_one(config=cfg)
    rid = ro["rollout_id"]
    d = store.dequeue(1)[0]
    aid = d["attempt"]["attempt_id"]
    time.sleep(0.8)
    got = store.rollout(rid)
    assert got["status"] == "requeuing" and got["attempt"]["status"] == "unresponsive"
    store.add_span(make_span(rid, aid, 1))
    att = store.latest_attempt(rid)
    assert att["attempt_id"] == aid and att["status"] == "running"
    assert store.rollout(rid)["status"] == "running"
    # the stale queue entry is dropped lazily
    assert store.dequeue(1) == []


def test_span_for_old_attempt_revives_only_that_attempt(store):
    cfg = {"unresponsive_seconds": 0.5, "max_attempts": 2, "retry_condition": ["unresponsive"]}
    ro = store.enqueue_one(config=cfg)
    rid = ro["rollout_id"]
    a1 = store.dequeue(1)[0]["attempt"]["attempt_id"]
    time.sleep(0.8)
    assert store.rollout(rid)["status"] == "requeuing"
    a2 = store.dequeue(1)[0]["attempt"]
    assert a2["sequence_id"] == 2
    store.add_span(make_span(rid, a1, 1))
    items = {a["attempt_id"]: a for a in store.attempts(rid)["items"]}
    assert items[a1]["status"] == "running"
    assert items[a2["attempt_id"]]["status"] == "preparing"
    assert store.rollout(rid)["status"] == "preparing"


def test_scan_ignores_queued_and_terminal(store):
    cfg = {"timeout_seconds": 0.3, "unresponsive_seconds": 0.3}
    q = store.enqueue_one(config=cfg)
    done = store.start_rollout(config=cfg)
    store.update_attempt(done["rollout_id"], "latest", status="succeeded")
    time.sleep(0.5)
    store.attempts(q["rollout_id"])
    assert store.rollout(q["rollout_id"])["status"] == "queuing"
    got = store.rollout(done["rollout_id"])
    assert got["status"] == "succeeded" and got["attempt"]["status"] == "succeeded"


def test_timeout_wins_over_unresponsive(store):
    ro = store.start_rollout(config={"timeout_seconds": 0.4, "unresponsive_seconds": 0.4})
    time.sleep(0.7)
    assert store.latest_attempt(ro["rollout_id"])["status"] == "timeout"


def test_scan_runs_before_list_endpoints(store):
    ro = store.start_rollout(config={"timeout_seconds": 0.4})
    time.sleep(0.6)
    p = store.get("/rollouts", params={"status_in": "failed"}).json()
    assert [i["rollout_id"] for i in p["items"]] == [ro["rollout_id"]]


# ---- workers (§4.7) ----

def test_worker_lifecycle(store):  # §9 end-to-end sequence
    store.enqueue(2)
    d = store.dequeue(1, worker_id="w1")[0]
    w = store.worker("w1")
    assert w["status"] == "busy" and w["last_dequeue_time"] is not None
    assert w["current_rollout_id"] == d["rollout_id"]
    assert w["current_attempt_id"] == d["attempt"]["attempt_id"]
    rid, aid = d["rollout_id"], d["attempt"]["attempt_id"]
    store.update_attempt(rid, aid, worker_id="w2")
    w2 = store.worker("w2")
    assert w2["status"] == "busy" and w2["current_attempt_id"] == aid
    assert store.worker("w1")["status"] == "busy"  # previous worker untouched
    store.update_attempt(rid, "latest", status="succeeded")
    w2b = store.worker("w2")
    assert w2b["status"] == "idle"
    assert w2b["current_rollout_id"] is None and w2b["current_attempt_id"] is None
    assert w2b["last_idle_time"] >= w2b["last_busy_time"]


def test_dequeue_many_busy_on_last_claimed(store):
    store.enqueue(3)
    out = store.dequeue(2, worker_id="wm")
    w = store.worker("wm")
    assert w["current_rollout_id"] == out[-1]["rollout_id"]
    assert w["current_attempt_id"] == out[-1]["attempt"]["attempt_id"]


def test_dequeue_empty_marks_idle_keeps_current_ids(store):  # quirk 8
    store.enqueue(1)
    d = store.dequeue(1, worker_id="wq")[0]
    before = store.worker("wq")
    assert store.dequeue(1, worker_id="wq") == []
    w = store.worker("wq")
    assert w["status"] == "idle"
    assert w["last_idle_time"] is not None
    assert w["last_dequeue_time"] >= before["last_dequeue_time"]
    assert w["current_rollout_id"] == d["rollout_id"]
    # a fresh worker polling an empty queue is created idle
    assert store.dequeue(1, worker_id="fresh") == []
    f = store.worker("fresh")
    assert f["status"] == "idle" and f["last_dequeue_time"] is not None
    assert f["current_rollout_id"] is None


def test_failed_attempt_marks_worker_idle(store):
    ro = store.start_rollout(worker_id="wf")
    store.update_attempt(ro["rollout_id"], "latest", status="failed")
    assert store.worker("wf")["status"] == "idle"


def test_metadata_only_update_never_syncs_worker(store):
    ro = store.start_rollout(worker_id="wmeta")
    rid = ro["rollout_id"]
    store.update_attempt(rid, "latest", status="succeeded")
    assert store.worker("wmeta")["status"] == "idle"
    store.update_attempt(rid, "latest", metadata={"a": 1},
                         last_heartbeat_time=time.time())
    assert store.worker("wmeta")["status"] == "idle"


def test_old_attempt_update_flips_worker(store):  # quirk 9
    ro = store.start_rollout(worker_id="wold")
    rid = ro["rollout_id"]
    a2 = store.start_attempt(rid, worker_id="wold")["attempt"]
    assert store.worker("wold")["current_attempt_id"] == a2["attempt_id"]
    store.update_attempt(rid, ro["attempt"]["attempt_id"], status="failed")
    w = store.worker("wold")
    assert w["status"] == "idle" and w["current_attempt_id"] is None
