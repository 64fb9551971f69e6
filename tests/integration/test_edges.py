"""Edge cases around the wire contract: encodings, big values, odd ids, cross-rollout ids,
object-field sorting, OTLP attribute values the Span model cannot hold."""

import json
import time

from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from conftest import expect, expect_422, expect_detail, make_span
from test_otlp import ids_attrs, pb_span, post_pb, request

JSON = {"Content-Type": "application/json"}


def test_chunked_request_body(store):
    body = json.dumps({"rollouts": [{"input": {"chunked": True}}]}).encode()

    def gen():
        yield body[:10]
        yield body[10:]

    r = store.post("/queues/rollouts/enqueue", data=gen(), headers=JSON)
    assert r.status_code in (201, 411), r.status_code
    if r.status_code == 201:
        assert r.json()[0]["input"] == {"chunked": True}


def test_nan_and_infinity_tokens(store):
    r = store.post("/queues/rollouts/enqueue", data='{"rollouts":[{"input":{"x":NaN,"y":Infinity}}]}',
                   headers=JSON)
    # recommended to accept; if rejected it must be a clean 422
    assert r.status_code in (201, 422), r.status_code
    if r.status_code == 422:
        expect_422(r)


def test_large_input_round_trip(store):
    big = {"text": "é" * 200_000, "list": list(range(20_000))}
    ro = store.enqueue_one(input=big)
    assert store.rollout(ro["rollout_id"])["input"] == big


def test_huge_sequence_ids(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    store.add_span(make_span(rid, aid, 2 ** 62))
    assert store.spans(rid)["items"][0]["sequence_id"] == 2 ** 62
    assert store.next_seq(rid) == 2 ** 62 + 1


def test_negative_explicit_sequence_id_does_not_lower_counter(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    store.next_seq(rid)
    store.add_span(make_span(rid, aid, -5))
    assert store.spans(rid)["items"][0]["sequence_id"] == -5
    assert store.next_seq(rid) == 2


def test_utf8_path_segments(store):
    w = store.heartbeat("w%C3%A9", {})
    assert w["worker_id"] == "wé"
    assert store.worker("w%C3%A9")["worker_id"] == "wé"
    p = expect(store.get("/workers", params={"worker_id_contains": "é"}), 200)
    assert [i["worker_id"] for i in p["items"]] == ["wé"]


def test_heartbeat_with_null_json_body(store):
    w = expect(store.post("/workers/wn", data="null", headers=JSON), 200)
    assert w["worker_id"] == "wn" and w["heartbeat_stats"] is None


def test_start_attempt_with_empty_object_and_null_worker(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    out = expect(store.post(f"/rollouts/{rid}/attempts", {}), 201)
    assert out["attempt"]["worker_id"] is None and out["attempt"]["sequence_id"] == 2
    out = expect(store.post(f"/rollouts/{rid}/attempts", {"worker_id": None}), 201)
    assert out["attempt"]["sequence_id"] == 3


def test_cross_rollout_ids_are_unknown(store):
    a = store.start_rollout()
    b = store.start_rollout()
    a_att = a["attempt"]["attempt_id"]
    r = store.post(f"/rollouts/{b['rollout_id']}/attempts/{a_att}", {"status": "failed"})
    expect_detail(r, 404)
    r = store.post("/spans", make_span(b["rollout_id"], a_att, 1))
    expect_detail(r, 404)
    assert store.latest_attempt(a["rollout_id"])["status"] == "preparing"
    assert store.spans(b["rollout_id"], attempt_id=a_att)["total"] == 0


def test_sort_by_object_field_is_not_a_server_error(store):
    store.enqueue_one(metadata={"a": 1})
    store.enqueue_one(metadata={"b": [1, 2]})
    store.enqueue_one(metadata=None)
    for field in ["metadata", "input", "config"]:
        r = store.get("/rollouts", params={"sort_by": field})
        assert r.status_code in (200, 400), (field, r.status_code, r.text[:300])
        body = expect(r, r.status_code)
        if r.status_code == 200:
            assert body["total"] == 3


def test_wait_null_timeout_unknown_ids_returns_at_once(store):
    out = expect(store.post("/waits/rollouts", {"rollout_ids": ["ro-000000000000"],
                                                "timeout": None}, timeout=5), 200)
    assert out == []


def test_offset_far_past_end(store):
    store.enqueue(2)
    p = expect(store.get("/rollouts", params={"offset": 10 ** 9, "limit": 5}), 200)
    assert p["items"] == [] and p["total"] == 2 and p["offset"] == 10 ** 9


def test_update_resources_is_a_scan_endpoint(store):  # E23 runs the scan (quirk 18)
    ro = store.start_rollout(config={"timeout_seconds": 0.3}, worker_id="ws")
    time.sleep(0.5)
    store.upsert_resources("r", {})
    # E16 (worker GET) does not scan itself, so the flip must come from E23's scan
    assert store.worker("ws")["status"] == "unknown"
    assert store.rollout(ro["rollout_id"])["status"] == "failed"


def _otlp_with_attr(rid, aid, value: common_pb2.AnyValue, span_id=b"\x01" * 8):
    sp = pb_span(span_id=span_id)
    sp.attributes.append(common_pb2.KeyValue(key="bad", value=value))
    return request([(ids_attrs(rid, aid), [sp])])


def test_otlp_attribute_values_the_span_model_cannot_hold(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    kvlist = common_pb2.AnyValue()
    kvlist.kvlist_value.values.append(common_pb2.KeyValue(
        key="k", value=common_pb2.AnyValue(string_value="v")))
    mixed = common_pb2.AnyValue()
    mixed.array_value.values.append(common_pb2.AnyValue(int_value=1))
    mixed.array_value.values.append(common_pb2.AnyValue(string_value="a"))
    unset = common_pb2.AnyValue()
    for i, v in enumerate([kvlist, mixed, unset]):
        r = post_pb(store, _otlp_with_attr(rid, aid, v, span_id=bytes([i + 1]) * 8))
        assert r.status_code != 404, r.status_code
    for s in store.spans(rid)["items"]:
        v = s["attributes"].get("bad")
        assert v is not None and not isinstance(v, dict), v
        if isinstance(v, list):
            assert len({type(x) for x in v}) <= 1, v


def test_otlp_span_with_events_without_time(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    sp = pb_span()
    sp.events.append(trace_pb2.Span.Event(name="e"))
    r = post_pb(store, request([(ids_attrs(rid, aid), [sp])]))
    assert r.status_code == 200
    ev = store.spans(rid)["items"][0]["events"]
    assert ev == [{"name": "e", "attributes": {}, "timestamp": None}]
