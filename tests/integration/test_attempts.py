"""E09–E13: attempts — listing (§8 items 25–28, 43), latest, partial update (§5.6, §8 item 48)."""

import time

import pytest

from conftest import expect, expect_detail

ATTEMPT_FIELDS = ("rollout_id, attempt_id, sequence_id, start_time, end_time, status, worker_id, "
                  "last_heartbeat_time, metadata")


def attempts_search(store, rid, **body):
    return expect(store.post(f"/rollouts/{rid}/attempts/search", body), 200)


def test_attempt_pagination(store):  # §8.25
    ro = store.enqueue_one()
    rid = ro["rollout_id"]
    made = [store.start_attempt(rid)["attempt"] for _ in range(5)]
    assert [a["sequence_id"] for a in made] == [1, 2, 3, 4, 5]
    p = store.attempts(rid, limit=2)
    assert p["total"] == 5 and len(p["items"]) == 2 and p["limit"] == 2 and p["offset"] == 0
    assert [a["sequence_id"] for a in p["items"]] == [1, 2]
    p = store.attempts(rid, limit=-1)
    assert [a["sequence_id"] for a in p["items"]] == [1, 2, 3, 4, 5]
    assert [a["attempt_id"] for a in p["items"]] == [a["attempt_id"] for a in made]
    p = store.attempts(rid, limit=2, offset=4)
    assert [a["sequence_id"] for a in p["items"]] == [5] and p["total"] == 5


def test_get_and_search_agree(store):  # §8.26
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    g = store.attempts(rid, limit=1)
    s = attempts_search(store, rid, limit=1, offset=0)
    assert g == s
    assert g["total"] == 1 and g["limit"] == 1 and len(g["items"]) == 1
    assert g["items"][0] == ro["attempt"]


def test_default_sort_is_sequence_id(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    store.start_attempt(rid)
    store.start_attempt(rid)
    p = attempts_search(store, rid)
    assert [a["sequence_id"] for a in p["items"]] == [1, 2, 3]
    p = attempts_search(store, rid, sort_order="desc")
    assert [a["sequence_id"] for a in p["items"]] == [3, 2, 1]
    p = store.attempts(rid, sort_by="sequence_id", sort_order="asc", limit=1, offset=1)  # §8.43
    assert p["total"] == 3 and len(p["items"]) == 1 and p["items"][0]["sequence_id"] == 2


def test_sort_by_start_time(store):  # §8.27
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    for _ in range(3):
        store.start_attempt(rid)
    asc = [a["start_time"] for a in store.attempts(rid, sort_by="start_time")["items"]]
    assert asc == sorted(asc)
    desc = [a["start_time"] for a in store.attempts(rid, sort_by="start_time",
                                                    sort_order="desc")["items"]]
    assert desc == sorted(desc, reverse=True)


def test_sort_by_worker_id_null_first(store):  # §8.28
    ro = store.start_rollout(worker_id="w-b")
    rid = ro["rollout_id"]
    store.start_attempt(rid)  # null worker
    store.start_attempt(rid, worker_id="w-a")
    asc = [a["worker_id"] for a in store.attempts(rid, sort_by="worker_id")["items"]]
    assert asc == [None, "w-a", "w-b"]
    desc = [a["worker_id"] for a in store.attempts(rid, sort_by="worker_id",
                                                   sort_order="desc")["items"]]
    assert desc == ["w-b", "w-a", None]


def test_sort_by_end_time_nulls_last(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    a1 = ro["attempt"]["attempt_id"]
    a2 = store.start_attempt(rid)["attempt"]["attempt_id"]
    store.start_attempt(rid)
    store.update_attempt(rid, a2, status="failed")
    store.update_attempt(rid, a1, status="succeeded")
    asc = [a["sequence_id"] for a in store.attempts(rid, sort_by="end_time")["items"]]
    assert asc == [2, 1, 3]
    desc = [a["sequence_id"] for a in store.attempts(rid, sort_by="end_time",
                                                     sort_order="desc")["items"]]
    assert desc == [3, 1, 2]


def test_invalid_sort_by(store):
    ro = store.start_rollout()
    r = store.get(f"/rollouts/{ro['rollout_id']}/attempts", params={"sort_by": "nope"})
    expect_detail(r, 400, f"Invalid sort_by: nope, allowed fields are: {ATTEMPT_FIELDS}")


def test_unknown_rollout_attempts_empty(store):
    p = store.attempts("ro-000000000000")
    assert p["items"] == [] and p["total"] == 0 and p["limit"] == -1 and p["offset"] == 0
    p = attempts_search(store, "ro-000000000000", limit=5)
    assert p["items"] == [] and p["total"] == 0 and p["limit"] == 5


def test_latest_attempt(store):  # E12
    ro = store.enqueue_one()
    rid = ro["rollout_id"]
    assert store.latest_attempt(rid) is None
    assert store.latest_attempt("ro-000000000000") is None
    store.dequeue(1)
    store.start_attempt(rid, worker_id="w")
    lat = store.latest_attempt(rid)
    assert lat["sequence_id"] == 2 and lat["worker_id"] == "w" and lat["rollout_id"] == rid


def test_start_attempt_from_terminal_status_ignores_max_attempts(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    store.update_attempt(rid, ro["attempt"]["attempt_id"], status="succeeded")
    done = store.rollout(rid)
    assert done["status"] == "succeeded" and done["end_time"] is not None
    out = store.start_attempt(rid)
    assert out["status"] == "preparing"
    assert out["end_time"] == done["end_time"]  # end_time kept
    assert out["attempt"]["sequence_id"] == 2  # max_attempts (1) not enforced


# ---- E13 update ----

def test_update_attempt_fields(store):  # §8.48
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    out = store.update_attempt(rid, aid, status="running")
    assert out["status"] == "running" and out["attempt_id"] == aid and out["end_time"] is None
    hb = time.time() - 5
    out = store.update_attempt(rid, aid, last_heartbeat_time=hb, metadata={"note": "x"})
    assert out["last_heartbeat_time"] == pytest.approx(hb, abs=1e-3)
    assert out["metadata"] == {"note": "x"}
    assert out["status"] == "running"  # heartbeat does not change status
    out = store.update_attempt(rid, aid, worker_id="Worker-3", metadata={"note": "moved"})
    assert out["worker_id"] == "Worker-3" and out["metadata"] == {"note": "moved"}
    assert store.latest_attempt(rid) == out


@pytest.mark.parametrize("field", ["status", "worker_id", "last_heartbeat_time", "metadata"])
def test_update_attempt_null_rejected(store, field):  # §5.6
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    store.update_attempt(rid, aid, worker_id="keep", metadata={"keep": 1})
    r = store.post(f"/rollouts/{rid}/attempts/{aid}", {field: None, "status": "failed"}
                   if field != "status" else {field: None, "metadata": {"x": 2}})
    expect_detail(r, 400, f"{field} is invalid; it cannot be a null value.")
    lat = store.latest_attempt(rid)
    assert lat["status"] == "preparing" and lat["metadata"] == {"keep": 1}
    assert lat["worker_id"] == "keep"


def test_update_attempt_empty_values_preserved(store):  # §5.6: "" and {} clear
    ro = store.start_rollout(worker_id="w1")
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    out = store.update_attempt(rid, aid, worker_id="", metadata={})
    assert out["worker_id"] == "" and out["metadata"] == {}
    out = store.update_attempt(rid, aid, status="running")
    assert out["worker_id"] == "" and out["metadata"] == {}
    # worker_id "" never syncs: w1 still busy on this attempt
    assert store.worker("w1")["status"] == "busy"


def test_update_latest_alias(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    a2 = store.start_attempt(rid)["attempt"]
    out = store.update_attempt(rid, "latest", metadata={"m": 1})
    assert out["attempt_id"] == a2["attempt_id"] and out["sequence_id"] == 2
    first = store.attempts(rid)["items"][0]
    assert first["metadata"] is None


def test_end_time_only_for_failed_and_succeeded(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    aid = ro["attempt"]["attempt_id"]
    for st in ["running", "timeout", "unresponsive", "preparing"]:
        assert store.update_attempt(rid, aid, status=st)["end_time"] is None, st
    out = store.update_attempt(rid, aid, status="failed")
    assert out["end_time"] is not None
    t1 = out["end_time"]
    out = store.update_attempt(rid, aid, status="succeeded")
    assert out["end_time"] >= t1
