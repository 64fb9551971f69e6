"""E05–E08: rollout listing/search (spec §5.3, §8 items 14–24, 42, 49–50) and partial updates
(§5.6, §8 item 47)."""

import pytest

from conftest import expect, expect_detail

ROLLOUT_FIELDS = ("rollout_id, input, start_time, end_time, mode, resources_id, status, config, "
                  "metadata")


def page_keys_ok(page, limit, offset, total, n_items):
    assert set(page) >= {"items", "limit", "offset", "total"}, page
    assert page["limit"] == limit and page["offset"] == offset, page
    assert page["total"] == total, page
    assert len(page["items"]) == n_items, page


def search(store, **body):
    return expect(store.post("/rollouts/search", body), 200)


def listing(store, **params):
    return expect(store.get("/rollouts", params=params), 200)


def test_pagination(store):  # §8.14
    ros = store.enqueue(10)
    p = listing(store, limit=3, offset=0)
    page_keys_ok(p, 3, 0, 10, 3)
    assert [i["rollout_id"] for i in p["items"]] == [r["rollout_id"] for r in ros[:3]]
    p = listing(store, limit=3, offset=3)
    page_keys_ok(p, 3, 3, 10, 3)
    assert [i["rollout_id"] for i in p["items"]] == [r["rollout_id"] for r in ros[3:6]]
    p = listing(store, limit=3, offset=9)
    page_keys_ok(p, 3, 9, 10, 1)
    p = listing(store, limit=3, offset=50)
    page_keys_ok(p, 3, 50, 10, 0)


def test_unlimited_and_defaults(store):  # §8.15
    ros = store.enqueue(15)
    p = listing(store, limit=-1)
    page_keys_ok(p, -1, 0, 15, 15)
    p = listing(store)  # defaults -1 / 0, creation order
    page_keys_ok(p, -1, 0, 15, 15)
    assert [i["rollout_id"] for i in p["items"]] == [r["rollout_id"] for r in ros]


def test_get_and_search_agree(store):  # §8.16
    store.enqueue(3)
    g = listing(store, limit=2)
    s = search(store, limit=2, offset=0)
    page_keys_ok(g, 2, 0, 3, 2)
    page_keys_ok(s, 2, 0, 3, 2)
    assert g == s


def test_items_have_attempt_only_when_present(store):
    a, b = store.enqueue(2)
    d = store.dequeue(1)[0]
    store.start_attempt(a["rollout_id"])  # latest attempt is now #2
    items = {i["rollout_id"]: i for i in listing(store)["items"]}
    assert "attempt" not in items[b["rollout_id"]]
    att = items[a["rollout_id"]]["attempt"]
    assert att["sequence_id"] == 2 and att["rollout_id"] == a["rollout_id"]
    assert att["attempt_id"] != d["attempt"]["attempt_id"]
    got = store.rollout(a["rollout_id"])
    assert got["attempt"] == att
    got = search(store)["items"]
    assert "attempt" not in [g for g in got if g["rollout_id"] == b["rollout_id"]][0]


def test_sort_by_start_time(store):  # §8.17
    store.enqueue(4)
    asc = [i["start_time"] for i in listing(store, sort_by="start_time")["items"]]
    assert asc == sorted(asc)
    desc = [i["start_time"] for i in listing(store, sort_by="start_time",
                                               sort_order="desc")["items"]]
    assert desc == sorted(desc, reverse=True)


def _mk_statuses(store):
    ok, bad, q = store.enqueue(3)
    store.update_rollout(ok["rollout_id"], status="succeeded")
    store.update_rollout(bad["rollout_id"], status="failed")
    return ok, bad, q


def test_status_in(store):  # §8.18
    ok, bad, q = _mk_statuses(store)
    p = listing(store, status_in="succeeded")
    assert [i["rollout_id"] for i in p["items"]] == [ok["rollout_id"]]
    p = store.get("/rollouts", params=[("status_in", "succeeded"), ("status_in", "failed")])
    p = expect(p, 200)
    assert {i["rollout_id"] for i in p["items"]} == {ok["rollout_id"], bad["rollout_id"]}
    assert p["total"] == 2
    p = search(store, status_in=["succeeded", "failed"])
    assert p["total"] == 2
    # empty array filter matches nothing; null means no filter
    assert search(store, status_in=[])["total"] == 0
    assert search(store, status_in=None)["total"] == 3


def test_rollout_id_in_and_contains(store):  # §8.19–20
    ros = store.enqueue(4)
    ids = [r["rollout_id"] for r in ros]
    p = store.get("/rollouts", params=[("rollout_id_in", ids[1]), ("rollout_id_in", ids[3])])
    assert {i["rollout_id"] for i in expect(p, 200)["items"]} == {ids[1], ids[3]}
    sub = ids[2][3:10]
    p = listing(store, rollout_id_contains=sub)
    assert p["total"] >= 1 and all(sub in i["rollout_id"] for i in p["items"])
    assert ids[2] in [i["rollout_id"] for i in p["items"]]
    assert listing(store, rollout_id_contains="zzz")["total"] == 0
    assert listing(store, rollout_id_contains="")["total"] == 4
    assert listing(store, rollout_id_contains="ro-")["total"] == 4


def test_filter_logic_and_or(store):  # §8.21–22
    ok, bad, q = _mk_statuses(store)
    params = [("status_in", "succeeded"), ("rollout_id_in", ok["rollout_id"]),
              ("rollout_id_in", q["rollout_id"])]
    p = expect(store.get("/rollouts", params=params + [("filter_logic", "and")]), 200)
    assert [i["rollout_id"] for i in p["items"]] == [ok["rollout_id"]]
    p = expect(store.get("/rollouts", params=params + [("filter_logic", "or")]), 200)
    assert {i["rollout_id"] for i in p["items"]} == {ok["rollout_id"], q["rollout_id"]}
    p = search(store, status_in=["failed"], rollout_id_contains=q["rollout_id"],
               filter_logic="or")
    assert {i["rollout_id"] for i in p["items"]} == {bad["rollout_id"], q["rollout_id"]}
    # or with no conditions = everything
    assert search(store, filter_logic="or")["total"] == 3


def test_sort_by_mode_nulls_as_empty_string(store):  # §8.23
    store.enqueue_one(mode="train")
    store.enqueue_one(mode=None)
    store.enqueue_one(mode="val")
    asc = [i["mode"] for i in listing(store, sort_by="mode")["items"]]
    assert asc == [None, "train", "val"]
    desc = [i["mode"] for i in listing(store, sort_by="mode", sort_order="desc")["items"]]
    assert desc == ["val", "train", None]


def test_sort_stable_in_both_directions(store):
    t1, t2 = store.enqueue(2, mode="train")
    v = store.enqueue_one(mode="val")
    t3 = store.enqueue_one(mode="train")
    asc = [i["rollout_id"] for i in listing(store, sort_by="mode")["items"]]
    assert asc == [t1["rollout_id"], t2["rollout_id"], t3["rollout_id"], v["rollout_id"]]
    desc = [i["rollout_id"] for i in listing(store, sort_by="mode", sort_order="desc")["items"]]
    assert desc == [v["rollout_id"], t1["rollout_id"], t2["rollout_id"], t3["rollout_id"]]


def test_sort_end_time_nulls_last_asc_first_desc(store):
    a, b, c = store.enqueue(3)
    store.update_rollout(b["rollout_id"], status="succeeded")
    store.update_rollout(a["rollout_id"], status="failed")
    asc = [i["rollout_id"] for i in listing(store, sort_by="end_time")["items"]]
    assert asc == [b["rollout_id"], a["rollout_id"], c["rollout_id"]]
    desc = [i["rollout_id"] for i in listing(store, sort_by="end_time",
                                             sort_order="desc")["items"]]
    assert desc == [c["rollout_id"], a["rollout_id"], b["rollout_id"]]


def test_sort_by_rollout_id_and_status(store):  # §8.42, §9
    ros = store.enqueue(3)
    ids = sorted(r["rollout_id"] for r in ros)
    p = expect(store.get("/rollouts", params=[("sort_by", "rollout_id"), ("sort_order", "asc"),
                                              ("limit", "1"), ("offset", "1")]), 200)
    page_keys_ok(p, 1, 1, 3, 1)
    assert p["items"][0]["rollout_id"] == ids[1]
    p = search(store, sort_by="rollout_id", sort_order="desc", limit=1, offset=1)
    assert p["items"][0]["rollout_id"] == ids[1]
    p = search(store, sort_by="rollout_id", sort_order="desc")
    assert [i["rollout_id"] for i in p["items"]] == ids[::-1]
    store.update_rollout(ros[0]["rollout_id"], status="succeeded")
    p = search(store, sort_by="status")
    assert [i["status"] for i in p["items"]] == ["queuing", "queuing", "succeeded"]


def test_invalid_sort_by(store):  # §8.24
    r = store.get("/rollouts", params={"sort_by": "nonexistent_field"})
    expect_detail(r, 400, f"Invalid sort_by: nonexistent_field, allowed fields are: "
                          f"{ROLLOUT_FIELDS}")
    r = store.post("/rollouts/search", {"sort_by": "attempt"})
    expect_detail(r, 400, f"Invalid sort_by: attempt, allowed fields are: {ROLLOUT_FIELDS}")


def test_get_unknown_rollout_is_null(store):
    assert store.rollout("ro-000000000000") is None


# ---- E08 partial update ----

def test_update_returns_plain_rollout(store):
    ro = store.start_rollout()
    out = store.update_rollout(ro["rollout_id"], metadata={"a": 1})
    assert "attempt" not in out
    assert out["metadata"] == {"a": 1}
    assert out["status"] == "preparing"
    assert expect(store.post(f"/rollouts/{ro['rollout_id']}", {}), 200)["rollout_id"] == \
        ro["rollout_id"]


def test_update_null_vs_absent_round_trip(store):  # §5.6 tested round-trip
    ro = store.enqueue_one()
    rid = ro["rollout_id"]
    out = store.update_rollout(rid, mode="train", metadata={"extra": 1})
    assert out["mode"] == "train" and out["metadata"] == {"extra": 1}
    out = store.update_rollout(rid, mode=None, metadata={"extra1": 2})
    assert out["mode"] is None and out["metadata"] == {"extra1": 2}
    out = store.update_rollout(rid, status="running")
    assert out["mode"] is None and out["metadata"] == {"extra1": 2}
    assert out["status"] == "running"
    got = store.rollout(rid)
    assert got["mode"] is None and got["metadata"] == {"extra1": 2}


def test_update_nullable_fields(store):
    ro = store.enqueue_one(input={"x": 1}, resources_id="rs-a", metadata={"m": 1})
    rid = ro["rollout_id"]
    out = store.update_rollout(rid, input=None, resources_id=None, metadata=None)
    assert out["input"] is None and out["resources_id"] is None and out["metadata"] is None
    out = store.update_rollout(rid, input=[1, 2], resources_id="rs-b")
    assert out["input"] == [1, 2] and out["resources_id"] == "rs-b" and out["metadata"] is None


@pytest.mark.parametrize("field", ["status", "config"])
def test_update_null_rejected(store, field):  # §8.47
    ro = store.enqueue_one(metadata={"keep": 1})
    r = store.post(f"/rollouts/{ro['rollout_id']}", {field: None, "metadata": {"changed": 1}})
    expect_detail(r, 400, f"{field} is invalid; it cannot be a null value.")
    got = store.rollout(ro["rollout_id"])
    assert got["metadata"] == {"keep": 1} and got["status"] == "queuing"


def test_update_config_replaced_wholesale(store):
    ro = store.enqueue_one(config={"timeout_seconds": 5.0, "unresponsive_seconds": 3.0,
                                   "max_attempts": 4, "retry_condition": ["timeout"]})
    out = store.update_rollout(ro["rollout_id"],
                               config={"max_attempts": 3, "retry_condition": ["failed"]})
    assert out["config"] == {"timeout_seconds": None, "unresponsive_seconds": None,
                             "max_attempts": 3, "retry_condition": ["failed"]}


def test_update_metadata_not_merged(store):
    ro = store.enqueue_one(metadata={"a": 1, "b": 2})
    out = store.update_rollout(ro["rollout_id"], metadata={"c": 3})
    assert out["metadata"] == {"c": 3}


def test_update_terminal_sets_end_time_every_time(store):
    ro = store.enqueue_one()
    rid = ro["rollout_id"]
    out1 = store.update_rollout(rid, status="succeeded")
    assert out1["end_time"] is not None and out1["end_time"] >= out1["start_time"]
    out2 = store.update_rollout(rid, status="cancelled")
    assert out2["end_time"] >= out1["end_time"]
    out3 = store.update_rollout(rid, status="running")
    assert out3["end_time"] == out2["end_time"]  # never cleared


def test_update_any_status_transition_allowed(store):
    ro = store.enqueue_one()
    rid = ro["rollout_id"]
    for st in ["succeeded", "preparing", "failed", "running", "cancelled", "queuing"]:
        assert store.update_rollout(rid, status=st)["status"] == st
