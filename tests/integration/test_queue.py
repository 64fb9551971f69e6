"""E02 enqueue, E03 dequeue, E04 start_rollout and the queue semantics of spec §4.4."""

import time

from conftest import AT_RE, RO_RE, expect, expect_422

ROLLOUT_KEYS = ["rollout_id", "input", "start_time", "end_time", "mode", "resources_id",
                "status", "config", "metadata"]
ATTEMPT_KEYS = ["rollout_id", "attempt_id", "sequence_id", "start_time", "end_time", "status",
                "worker_id", "last_heartbeat_time", "metadata"]
DEFAULT_CONFIG = {"timeout_seconds": None, "unresponsive_seconds": None, "max_attempts": 1,
                  "retry_condition": []}


def test_enqueue_one(store):  # §8.5
    before = time.time()
    r = store.post("/queues/rollouts/enqueue",
                   {"rollouts": [{"input": {"question": "2+2?"}, "mode": "train",
                                  "resources_id": None, "config": None, "metadata": None}]})
    out = expect(r, 201)
    assert isinstance(out, list) and len(out) == 1
    ro = out[0]
    assert set(ro) == set(ROLLOUT_KEYS), ro  # plain Rollout: no "attempt" key
    assert RO_RE.match(ro["rollout_id"])
    assert ro["input"] == {"question": "2+2?"}
    assert ro["status"] == "queuing"
    assert ro["mode"] == "train"
    assert ro["end_time"] is None
    assert ro["resources_id"] is None
    assert ro["config"] == DEFAULT_CONFIG
    assert ro["metadata"] == {}
    assert before - 2 <= ro["start_time"] <= time.time() + 2


def test_enqueue_two_in_order_metadata_preserved(store):  # §8.6
    body = {"rollouts": [
        {"input": {"question": "2+2?", "answer": "4"}, "mode": "train", "resources_id": None,
         "config": {"timeout_seconds": 300.0, "unresponsive_seconds": 60.0, "max_attempts": 2,
                    "retry_condition": ["unresponsive"]},
         "metadata": {"epoch": 0}},
        {"input": "free text task", "mode": None, "resources_id": "rs-8a1b2c3d4e5f",
         "config": None, "metadata": None}]}
    out = expect(store.post("/queues/rollouts/enqueue", body), 201)
    assert [o["input"] for o in out] == [{"question": "2+2?", "answer": "4"}, "free text task"]
    assert out[0]["metadata"] == {"epoch": 0}
    assert out[1]["metadata"] == {}
    assert out[0]["config"] == {"timeout_seconds": 300.0, "unresponsive_seconds": 60.0,
                                "max_attempts": 2, "retry_condition": ["unresponsive"]}
    assert out[1]["config"] == DEFAULT_CONFIG
    assert out[1]["resources_id"] == "rs-8a1b2c3d4e5f"  # not validated
    assert out[0]["rollout_id"] != out[1]["rollout_id"]
    # queue order = request order
    got = store.dequeue(2)
    assert [g["rollout_id"] for g in got] == [o["rollout_id"] for o in out]


def test_enqueue_minimal_element_and_partial_config(store):
    out = expect(store.post("/queues/rollouts/enqueue",
                            {"rollouts": [{"input": 1}, {"input": 2, "config": {"max_attempts": 3}}]}),
                 201)
    assert out[0]["mode"] is None and out[0]["config"] == DEFAULT_CONFIG
    assert out[0]["metadata"] == {}
    assert out[1]["config"] == dict(DEFAULT_CONFIG, max_attempts=3)


def test_enqueue_empty_list(store):
    assert expect(store.post("/queues/rollouts/enqueue", {"rollouts": []}), 201) == []
    assert store.stats()["total_rollouts"] == 0


def test_enqueue_missing_rollouts_422(store):  # §8.7
    expect_422(store.post("/queues/rollouts/enqueue", {}), "rollouts")
    expect_422(store.post("/queues/rollouts/enqueue", {"rollouts": [{"mode": "train"}]}), "input")


def test_dequeue_limit_and_worker(store):  # §8.8
    ros = store.enqueue(3)
    out = store.dequeue(2, "rest-worker")
    assert len(out) == 2
    for item, ro in zip(out, ros[:2]):
        assert set(item) == set(ROLLOUT_KEYS + ["attempt"])
        assert item["rollout_id"] == ro["rollout_id"]
        assert item["status"] == "preparing"
        att = item["attempt"]
        assert set(att) == set(ATTEMPT_KEYS)
        assert AT_RE.match(att["attempt_id"])
        assert att["rollout_id"] == item["rollout_id"]
        assert att["worker_id"] == "rest-worker"
        assert att["sequence_id"] == 1
        assert att["status"] == "preparing"
        assert att["end_time"] is None and att["last_heartbeat_time"] is None
        assert att["metadata"] is None


def test_dequeue_no_body(store):  # §8.9
    ros = store.enqueue(2)
    store.dequeue(1)
    r = store.post("/queues/rollouts/dequeue")  # no body at all
    out = expect(r, 200)
    assert len(out) == 1 and out[0]["rollout_id"] == ros[1]["rollout_id"]
    assert out[0]["attempt"]["worker_id"] is None
    assert expect(store.post("/queues/rollouts/dequeue"), 200) == []
    # explicit JSON null body = defaults
    store.enqueue(1)
    r = store.post("/queues/rollouts/dequeue", data="null",
                   headers={"Content-Type": "application/json"})
    assert len(expect(r, 200)) == 1


def test_dequeue_limit_zero_consumes_nothing(store):  # §8.10
    ro = store.enqueue_one()
    assert expect(store.post("/queues/rollouts/dequeue", {"limit": 0}), 200) == []
    assert expect(store.post("/queues/rollouts/dequeue", {"limit": -3}), 200) == []
    assert store.rollout(ro["rollout_id"])["status"] == "queuing"
    out = store.dequeue(1)
    assert [o["rollout_id"] for o in out] == [ro["rollout_id"]]


def test_dequeue_empty_queue(store):
    assert store.dequeue(5) == []


def test_dequeue_is_fifo_and_limit_larger_than_queue(store):
    ros = store.enqueue(5)
    out = store.dequeue(10)
    assert [o["rollout_id"] for o in out] == [r["rollout_id"] for r in ros]
    assert store.dequeue(1) == []


def test_dequeued_rollout_visible_with_attempt(store):
    ro = store.enqueue_one()
    got = store.rollout(ro["rollout_id"])
    assert "attempt" not in got  # no attempts yet → key omitted entirely
    d = store.dequeue(1)[0]
    got = store.rollout(ro["rollout_id"])
    assert got["status"] == "preparing"
    assert got["attempt"] == d["attempt"]


def test_start_rollout(store):  # E04, §8.12
    body = {"input": {"q": "hi"}, "mode": "val", "resources_id": None, "config": None,
            "metadata": None, "worker_id": "Worker-2"}
    ro = expect(store.post("/rollouts", body), 201)
    assert ro["status"] == "preparing"
    assert ro["mode"] == "val" and ro["metadata"] == {} and ro["config"] == DEFAULT_CONFIG
    att = ro["attempt"]
    assert att["sequence_id"] == 1 and att["status"] == "preparing"
    assert att["worker_id"] == "Worker-2"
    assert att["rollout_id"] == ro["rollout_id"]
    assert att["start_time"] == ro["start_time"]
    w = store.worker("Worker-2")
    assert w["status"] == "busy"
    assert w["current_rollout_id"] == ro["rollout_id"]
    assert w["current_attempt_id"] == att["attempt_id"]
    assert w["last_busy_time"] is not None
    # not queued
    assert store.dequeue(1) == []


def test_start_rollout_minimal_body(store):
    ro = expect(store.post("/rollouts", {"input": None}), 201)
    assert ro["input"] is None and ro["attempt"]["worker_id"] is None
    expect_422(store.post("/rollouts", {"mode": "train"}), "input")


def test_start_attempt_with_worker(store):  # E09, §8.13
    ro = store.start_rollout()
    r = store.post(f"/rollouts/{ro['rollout_id']}/attempts", {"worker_id": "w-13"})
    out = expect(r, 201)
    assert out["rollout_id"] == ro["rollout_id"]
    assert out["status"] == "preparing"
    assert out["attempt"]["sequence_id"] == 2
    assert out["attempt"]["worker_id"] == "w-13"
    assert out["attempt"]["attempt_id"] != ro["attempt"]["attempt_id"]
    w = store.worker("w-13")
    assert w["status"] == "busy"
    assert w["current_rollout_id"] == ro["rollout_id"]
    assert w["current_attempt_id"] == out["attempt"]["attempt_id"]


def test_queue_lazy_deletion_of_cancelled(store):  # §4.4
    a, b, c = store.enqueue(3)
    store.update_rollout(a["rollout_id"], status="cancelled")
    store.start_attempt(b["rollout_id"])  # b becomes preparing while still queued
    out = store.dequeue(5)
    assert [o["rollout_id"] for o in out] == [c["rollout_id"]]
    assert store.rollout(a["rollout_id"])["status"] == "cancelled"
    assert "attempt" not in store.rollout(a["rollout_id"])
    # b keeps exactly its manual attempt
    assert store.attempts(b["rollout_id"])["total"] == 1


def test_update_status_to_queuing_enqueues_once(store):  # §4.4 append-if-absent
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    store.update_rollout(rid, status="queuing")
    store.update_rollout(rid, status="requeuing")  # already in the queue: no second entry
    store.update_rollout(rid, status="queuing")
    out = store.dequeue(10)
    assert [o["rollout_id"] for o in out] == [rid]
    assert out[0]["attempt"]["sequence_id"] == 2
    assert store.dequeue(10) == []


def test_queued_rollout_already_in_queue_not_duplicated(store):
    ro = store.enqueue_one()
    store.update_rollout(ro["rollout_id"], status="queuing")
    out = store.dequeue(10)
    assert len(out) == 1


def test_requeue_goes_to_tail(store):
    cfg = {"max_attempts": 2, "retry_condition": ["failed"]}
    a = store.enqueue_one(config=cfg)
    d = store.dequeue(1)[0]
    b, c = store.enqueue(2)
    store.update_attempt(a["rollout_id"], d["attempt"]["attempt_id"], status="failed")
    assert store.rollout(a["rollout_id"])["status"] == "requeuing"
    out = store.dequeue(3)
    assert [o["rollout_id"] for o in out] == [b["rollout_id"], c["rollout_id"], a["rollout_id"]]
    assert out[2]["attempt"]["sequence_id"] == 2


def test_enqueue_resolves_latest_resources(store):
    assert store.enqueue_one()["resources_id"] is None
    res = store.add_resources({})
    ros = store.enqueue(2)
    assert [r["resources_id"] for r in ros] == [res["resources_id"]] * 2
    ro = store.start_rollout()
    assert ro["resources_id"] == res["resources_id"]
    # explicit id wins, unchecked
    assert store.enqueue_one(resources_id="rs-unknown")["resources_id"] == "rs-unknown"
    # later resources do not alter existing rollouts
    store.add_resources({})
    assert store.rollout(ros[0]["rollout_id"])["resources_id"] == res["resources_id"]


def test_dequeue_worker_empty_string(store):
    store.enqueue(1)
    out = store.dequeue(1, worker_id="")
    assert out[0]["attempt"]["worker_id"] == ""
