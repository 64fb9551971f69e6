"""E14–E17: workers (spec §8 items 45, 51–55, §4.7)."""

import time

from conftest import expect, expect_422, expect_detail

WORKER_KEYS = {"worker_id", "status", "heartbeat_stats", "last_heartbeat_time",
               "last_dequeue_time", "last_busy_time", "last_idle_time", "current_rollout_id",
               "current_attempt_id"}
WORKER_FIELDS = ("worker_id, status, heartbeat_stats, last_heartbeat_time, last_dequeue_time, "
                 "last_busy_time, last_idle_time, current_rollout_id, current_attempt_id")


def test_heartbeat_creates_and_updates(store):  # §8.52
    stats = {"cpu_usage_pct": 37.5, "host": "node-3", "gpus": [], "n": 3}
    w = store.heartbeat("worker-1", stats)
    assert set(w) == WORKER_KEYS
    assert w["worker_id"] == "worker-1" and w["status"] == "unknown"
    assert w["heartbeat_stats"] == stats
    assert isinstance(w["last_heartbeat_time"], float)
    for k in ["last_dequeue_time", "last_busy_time", "last_idle_time", "current_rollout_id",
              "current_attempt_id"]:
        assert w[k] is None, k
    p = expect(store.get("/workers"), 200)
    assert p["total"] == 1 and p["items"] == [w]
    time.sleep(0.01)
    w2 = store.heartbeat("worker-1")  # no body: stats kept
    assert w2["heartbeat_stats"] == stats
    assert w2["last_heartbeat_time"] >= w["last_heartbeat_time"]
    assert w2["status"] == "unknown"
    w3 = store.heartbeat("worker-1", {"other": 1})  # replaced wholesale
    assert w3["heartbeat_stats"] == {"other": 1}


def test_heartbeat_null_stats_400(store):  # §8.53
    r = store.post("/workers/worker-err", {"heartbeat_stats": None})
    expect_detail(r, 400, "heartbeat_stats is invalid; it cannot be a null value.")
    assert store.worker("worker-err") is None


def test_heartbeat_empty_object_body(store):
    w = expect(store.post("/workers/w-empty", {}), 200)
    assert w["status"] == "unknown" and w["heartbeat_stats"] is None


def test_heartbeat_does_not_change_status(store):
    store.start_rollout(worker_id="w-busy")
    w = store.heartbeat("w-busy", {"x": 1})
    assert w["status"] == "busy"
    assert w["current_rollout_id"] is not None


def test_heartbeat_stats_must_be_object(store):
    expect_422(store.post("/workers/w", {"heartbeat_stats": "nope"}), "heartbeat_stats")


def test_get_worker(store):  # §8.54
    store.heartbeat("worker-fetch", {"a": 1})
    w = store.worker("worker-fetch")
    assert w["worker_id"] == "worker-fetch" and w["heartbeat_stats"] == {"a": 1}
    assert store.worker("missing") is None


def test_workers_pagination(store):  # §8.45, §8.51
    for n in ["w-c", "w-a", "w-b"]:
        store.heartbeat(n, {})
    p = expect(store.get("/workers"), 200)
    assert [i["worker_id"] for i in p["items"]] == ["w-c", "w-a", "w-b"]  # creation order
    p = expect(store.get("/workers", params={"sort_by": "worker_id", "limit": 1, "offset": 1}),
               200)
    assert p["total"] == 3 and p["limit"] == 1 and p["offset"] == 1
    assert [i["worker_id"] for i in p["items"]] == ["w-b"]
    s = expect(store.post("/workers/search", {"sort_by": "worker_id", "limit": 1, "offset": 1}),
               200)
    assert s == p
    s = expect(store.post("/workers/search", {"sort_by": "worker_id"}), 200)
    assert s["limit"] == -1 and s["offset"] == 0
    assert [i["worker_id"] for i in s["items"]] == ["w-a", "w-b", "w-c"]


def _three_workers(store):
    for n in ["worker-a", "worker-b", "worker-c"]:
        store.heartbeat(n, {})
    a = store.start_rollout(worker_id="worker-a")
    store.update_attempt(a["rollout_id"], "latest", status="succeeded")
    store.start_rollout(worker_id="worker-b")
    store.start_rollout(worker_id="worker-c")
    store.heartbeat("other", {})


def test_workers_filters(store):  # §8.55
    _three_workers(store)
    assert store.worker("worker-a")["status"] == "idle"
    p = expect(store.get("/workers", params={"status_in": "busy",
                                             "worker_id_contains": "worker",
                                             "sort_by": "worker_id", "sort_order": "desc"}), 200)
    assert [i["worker_id"] for i in p["items"]] == ["worker-c", "worker-b"]
    p = expect(store.get("/workers", params={"limit": 1, "offset": 1, "sort_by": "worker_id"}),
               200)
    assert p["limit"] == 1 and p["offset"] == 1 and len(p["items"]) == 1 and p["total"] == 4
    s = expect(store.post("/workers/search", {"status_in": ["busy"]}), 200)
    assert {i["worker_id"] for i in s["items"]} == {"worker-b", "worker-c"}
    s = expect(store.post("/workers/search", {"status_in": ["idle"], "worker_id_contains": "oth",
                                              "filter_logic": "or", "sort_by": "worker_id"}),
               200)
    assert [i["worker_id"] for i in s["items"]] == ["other", "worker-a"]
    s = expect(store.post("/workers/search", {"status_in": ["unknown"]}), 200)
    assert [i["worker_id"] for i in s["items"]] == ["other"]


def test_workers_sort_nulls(store):
    _three_workers(store)
    # current_rollout_id: nulls as "" → first asc
    p = expect(store.get("/workers", params={"sort_by": "current_rollout_id"}), 200)
    ids = [i["current_rollout_id"] for i in p["items"]]
    assert ids[:2] == [None, None] and None not in ids[2:]
    # last_busy_time: *_time nulls as +inf → last asc, first desc
    p = expect(store.get("/workers", params={"sort_by": "last_busy_time"}), 200)
    assert p["items"][-1]["worker_id"] == "other"
    p = expect(store.get("/workers", params={"sort_by": "last_busy_time",
                                             "sort_order": "desc"}), 200)
    assert p["items"][0]["worker_id"] == "other"
    bt = [i["last_busy_time"] for i in p["items"][1:]]
    assert bt == sorted(bt, reverse=True)


def test_workers_invalid_sort(store):
    r = store.get("/workers", params={"sort_by": "cpu"})
    expect_detail(r, 400, f"Invalid sort_by: cpu, allowed fields are: {WORKER_FIELDS}")
    expect_422(store.get("/workers", params={"status_in": "sleeping"}), "status_in")


def test_worker_ids_with_odd_characters(store):
    wid = "host-1:worker.7_x"
    store.heartbeat(wid, {})
    assert store.worker(wid)["worker_id"] == wid
    w = store.heartbeat("w%20space", {})  # percent-decoded path segment
    assert w["worker_id"] == "w space"
