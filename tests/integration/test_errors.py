"""Bad input classes and our documented error behaviour:
422 pydantic-style for schema problems, 413 over --max-body, 404 for mutations of unknown ids
(a deviation from the reference's 500), 400 for nulls (§5.6) and bad pagination (§1.3), and
nothing half-written after a rejected request."""

import pytest

from conftest import expect, expect_422, expect_detail, make_span

LIMIT_MSG = "Limit must be greater than 0 or -1 for no limit"
OFFSET_MSG = "Offset must be greater than or equal to 0"
JSON = {"Content-Type": "application/json"}


# ---- 422 ----

@pytest.mark.parametrize("path", ["/queues/rollouts/enqueue", "/rollouts", "/rollouts/search",
                                  "/spans", "/spans/next", "/waits/rollouts", "/resources",
                                  "/queues/rollouts/dequeue", "/workers/search",
                                  "/spans/search"])
def test_malformed_json_422(store, path):
    r = store.post(path, data='{"rollouts": [', headers=JSON)
    expect_422(r)


def test_malformed_json_on_updates_422(store):
    ro = store.start_rollout(metadata={"m": 1})
    rid = ro["rollout_id"]
    expect_422(store.post(f"/rollouts/{rid}", data="{bad", headers=JSON))
    expect_422(store.post(f"/rollouts/{rid}/attempts/latest", data="{bad", headers=JSON))
    expect_422(store.post("/workers/w1", data="nope", headers=JSON))
    expect_422(store.post(f"/rollouts/{rid}/attempts", data="[", headers=JSON))
    assert store.rollout(rid)["metadata"] == {"m": 1}
    assert store.worker("w1") is None
    assert store.attempts(rid)["total"] == 1


def test_body_must_be_object(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    expect_422(store.post("/queues/rollouts/enqueue", [1, 2]))
    expect_422(store.post(f"/rollouts/{rid}", [1]))
    expect_422(store.post(f"/rollouts/{rid}/attempts/latest", "running"))
    expect_422(store.post("/rollouts", 5))
    expect_422(store.post("/queues/rollouts/enqueue", {"rollouts": {"input": 1}}), "rollouts")


def test_wrong_types_and_enums_422(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    cases = [
        ("/queues/rollouts/enqueue", {"rollouts": [{"input": 1, "mode": "training"}]}, "mode"),
        ("/queues/rollouts/enqueue", {"rollouts": [{"input": 1, "config": {"max_attempts": 0}}]},
         "max_attempts"),
        ("/queues/rollouts/enqueue", {"rollouts": [{"input": 1, "config": {"max_attempts": -2}}]},
         "max_attempts"),
        ("/queues/rollouts/enqueue",
         {"rollouts": [{"input": 1, "config": {"retry_condition": ["bogus"]}}]},
         "retry_condition"),
        ("/queues/rollouts/enqueue",
         {"rollouts": [{"input": 1, "config": {"timeout_seconds": "long"}}]}, "timeout_seconds"),
        ("/queues/rollouts/enqueue", {"rollouts": [{"input": 1, "config": "default"}]},
         "config"),
        ("/queues/rollouts/enqueue", {"rollouts": [{"input": 1, "metadata": [1]}]}, "metadata"),
        ("/queues/rollouts/enqueue", {"rollouts": [{"input": 1, "resources_id": 7}]},
         "resources_id"),
        ("/queues/rollouts/dequeue", {"limit": "x"}, "limit"),
        ("/queues/rollouts/dequeue", {"limit": 1, "worker_id": 5}, "worker_id"),
        ("/rollouts", {"input": 1, "worker_id": ["w"]}, "worker_id"),
        (f"/rollouts/{rid}", {"status": "done"}, "status"),
        (f"/rollouts/{rid}", {"mode": "prod"}, "mode"),
        (f"/rollouts/{rid}", {"config": {"max_attempts": 0}}, "max_attempts"),
        (f"/rollouts/{rid}", {"metadata": "x"}, "metadata"),
        (f"/rollouts/{rid}/attempts/{aid}", {"status": "queuing"}, "status"),
        (f"/rollouts/{rid}/attempts/{aid}", {"last_heartbeat_time": "now"},
         "last_heartbeat_time"),
        (f"/rollouts/{rid}/attempts/{aid}", {"worker_id": 3}, "worker_id"),
        (f"/rollouts/{rid}/attempts/{aid}", {"metadata": [1]}, "metadata"),
        (f"/rollouts/{rid}/attempts", {"worker_id": 1}, "worker_id"),
        ("/rollouts/search", {"limit": "ten"}, "limit"),
        ("/rollouts/search", {"status_in": ["nope"]}, "status_in"),
        ("/rollouts/search", {"status_in": "queuing"}, "status_in"),
        ("/rollouts/search", {"sort_order": "up"}, "sort_order"),
        ("/rollouts/search", {"filter_logic": "xor"}, "filter_logic"),
        ("/workers/search", {"status_in": ["sleeping"]}, "status_in"),
        ("/spans/search", {"rollout_id": rid, "filter_logic": "nand"}, "filter_logic"),
        ("/spans/search", {"rollout_id": rid, "offset": 1.5}, "offset"),
    ]
    for path, body, field in cases:
        r = store.post(path, body)
        assert r.status_code == 422, (path, body, r.status_code, r.text)
        expect_422(r, field)
    # nothing changed by the rejected requests
    got = store.rollout(rid)
    assert got["status"] == "preparing" and got["metadata"] == {} and got["mode"] is None
    assert got["attempt"]["status"] == "preparing" and got["attempt"]["worker_id"] is None
    assert store.attempts(rid)["total"] == 1
    assert store.stats()["total_rollouts"] == 1


def test_query_string_types_422(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    cases = [
        ("/rollouts", {"limit": "abc"}, "limit"),
        ("/rollouts", {"offset": "1.5"}, "offset"),
        ("/rollouts", {"status_in": "bogus"}, "status_in"),
        ("/rollouts", {"sort_order": "sideways"}, "sort_order"),
        ("/rollouts", {"filter_logic": "xor"}, "filter_logic"),
        (f"/rollouts/{rid}/attempts", {"limit": "x"}, "limit"),
        ("/workers", {"limit": "1e3"}, "limit"),
        ("/resources", {"offset": "-x"}, "offset"),
        ("/spans", {"rollout_id": rid, "limit": "many"}, "limit"),
    ]
    for path, params, field in cases:
        r = store.get(path, params=params)
        assert r.status_code == 422, (path, params, r.status_code, r.text)
        expect_422(r, field)


def test_enqueue_batch_with_invalid_element_writes_nothing(store):
    body = {"rollouts": [{"input": 1}, {"input": 2}, {"input": 3, "mode": "bad"}, {"input": 4}]}
    body_missing_input = {"rollouts": [{"input": 1}, {"input": 2}, {"mode": "train"}]}
    expect_422(store.post("/queues/rollouts/enqueue", body), "mode")
    r = expect_422(store.post("/queues/rollouts/enqueue", body_missing_input), "input")
    assert any(2 in d["loc"] or "2" in [str(x) for x in d["loc"]] for d in r["detail"]), r
    assert store.stats()["total_rollouts"] == 0
    assert expect(store.get("/rollouts"), 200)["total"] == 0
    assert store.dequeue(10) == []


def test_rejected_span_writes_nothing(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    bad = make_span(rid, aid, 1, attributes={"ok": 1})
    bad["events"] = [{"name": "e"}]  # event without attributes
    expect_422(store.post("/spans", bad), "attributes")
    assert store.spans(rid)["total"] == 0
    assert store.latest_attempt(rid)["status"] == "preparing"
    assert store.latest_attempt(rid)["last_heartbeat_time"] is None


# ---- 413 ----

@pytest.mark.stored_args("--max-body", "4096")
def test_body_over_max_body_413(store):
    small = {"rollouts": [{"input": "x" * 100}]}
    expect(store.post("/queues/rollouts/enqueue", small), 201)
    big = {"rollouts": [{"input": "x" * 10000}]}
    r = store.post("/queues/rollouts/enqueue", big)
    expect_detail(r, 413)
    assert store.stats()["total_rollouts"] == 1
    # the server is still healthy and the connection pool usable
    assert store.get("/health").status_code == 200
    r = store.post("/v1/traces", data=b"\x00" * 10000,
                   headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 413


# ---- 404 for mutations of unknown ids (deviation from the reference's 500) ----

def test_mutations_of_unknown_ids_404(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    empty = store.enqueue_one()["rollout_id"]
    unknown = "ro-000000000000"
    cases = [
        (f"/rollouts/{unknown}", {"status": "cancelled"}),
        (f"/rollouts/{unknown}", {}),
        (f"/rollouts/{unknown}/attempts", {"worker_id": "w"}),
        (f"/rollouts/{unknown}/attempts/latest", {"status": "failed"}),
        (f"/rollouts/{unknown}/attempts/{aid}", {"status": "failed"}),
        (f"/rollouts/{rid}/attempts/at-00000000", {"status": "failed"}),
        (f"/rollouts/{empty}/attempts/latest", {"status": "failed"}),
        (f"/rollouts/{empty}/attempts/{aid}", {"metadata": {}}),
        ("/spans", make_span(unknown, aid, 1)),
        ("/spans", make_span(rid, "at-00000000", 1)),
        ("/spans", make_span(empty, aid, 1)),
    ]
    for path, body in cases:
        r = store.post(path, body)
        assert r.status_code == 404, (path, r.status_code, r.text)
        expect_detail(r, 404)
    r = store.post(f"/rollouts/{unknown}/attempts")  # no body
    expect_detail(r, 404)
    # nothing created
    assert store.rollout(unknown) is None
    assert store.stats()["total_rollouts"] == 2
    assert store.attempts(rid)["total"] == 1
    assert store.attempts(empty)["total"] == 0
    assert store.worker("w") is None
    assert store.latest_attempt(rid)["status"] == "preparing"


# ---- 400: nulls and pagination ----

def test_null_fields_400_exact(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    cases = [(f"/rollouts/{rid}", "status"), (f"/rollouts/{rid}", "config"),
             (f"/rollouts/{rid}/attempts/{aid}", "status"),
             (f"/rollouts/{rid}/attempts/{aid}", "worker_id"),
             (f"/rollouts/{rid}/attempts/latest", "last_heartbeat_time"),
             (f"/rollouts/{rid}/attempts/latest", "metadata"),
             ("/workers/w-null", "heartbeat_stats")]
    for path, field in cases:
        r = store.post(path, {field: None})
        expect_detail(r, 400, f"{field} is invalid; it cannot be a null value.")


@pytest.mark.parametrize("path,method,extra", [
    ("/rollouts", "GET", {}), ("/rollouts/search", "POST", {}),
    ("/workers", "GET", {}), ("/workers/search", "POST", {}),
    ("/resources", "GET", {}),
    ("/rollouts/ro-000000000000/attempts", "GET", {}),
    ("/rollouts/ro-000000000000/attempts/search", "POST", {}),
    ("/spans", "GET", {"rollout_id": "ro-000000000000"}),
    ("/spans/search", "POST", {"rollout_id": "ro-000000000000"}),
])
def test_pagination_400_exact(store, path, method, extra):
    def call(**q):
        q = dict(extra, **q)
        if method == "GET":
            return store.get(path, params=q)
        return store.post(path, q)

    expect_detail(call(limit=0), 400, LIMIT_MSG)
    expect_detail(call(limit=-2), 400, LIMIT_MSG)
    expect_detail(call(offset=-1), 400, OFFSET_MSG)
    expect_detail(call(limit=0, offset=-1), 400, LIMIT_MSG)  # limit checked before offset
    r = call(sort_by="zzz", limit=0, offset=-1)  # sort_by checked first
    body = expect_detail(r, 400)
    assert body["detail"].startswith("Invalid sort_by: zzz, allowed fields are: "), body
    # 422 (schema) wins over 400
    r = call(limit="x", sort_by="zzz")
    expect_422(r, "limit")
    assert expect(call(limit=1, offset=0), 200)["limit"] == 1


def test_unknown_keys_and_params_ignored(store):
    r = store.post("/queues/rollouts/enqueue", {"rollouts": [{"input": 1, "priority": 9}],
                                                "extra": True})
    ro = expect(r, 201)[0]
    assert "priority" not in ro
    p = expect(store.get("/rollouts", params={"mode_in": "train", "foo": "bar"}), 200)
    assert p["total"] == 1
    out = store.update_rollout(ro["rollout_id"], bogus=1, metadata={"a": 1})
    assert out["metadata"] == {"a": 1} and "bogus" not in out


def test_server_survives_hostile_input(store):
    for data in [b"\x00\xff" * 50, b"{" * 10000, b'"' + b"\\" * 1001, b"[" * 5000 + b"]" * 5000,
                 '{"rollouts":[{"input":"\ud800"}]}'.encode("utf-8", "surrogatepass")]:
        r = store.post("/queues/rollouts/enqueue", data=data, headers=JSON)
        assert 400 <= r.status_code < 500, (data[:20], r.status_code)
    assert store.get("/health").status_code == 200
