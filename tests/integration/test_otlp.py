"""E29 POST /v1/traces (OTLP/HTTP, spec §6) and E30 (501 for other signals). Our extension:
OTLP/JSON (application/json) is accepted and equivalent to protobuf."""

import gzip
import json

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from conftest import expect, make_span

PB = "application/x-protobuf"
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN = bytes.fromhex("b7ad6b7169203331")
PARENT = bytes.fromhex("53995c3f42cd8ad8")
T0 = 1733212352_300000000


def kv(key, value):
    v = common_pb2.AnyValue()
    if isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        v.int_value = value
    elif isinstance(value, float):
        v.double_value = value
    elif isinstance(value, bytes):
        v.bytes_value = value
    elif isinstance(value, str):
        v.string_value = value
    elif isinstance(value, list):
        for x in value:
            v.array_value.values.append(kv("_", x).value)
    else:
        raise TypeError(value)
    return common_pb2.KeyValue(key=key, value=v)


def pb_span(span_id=SPAN, name="op", attrs=None, parent=b"", start=T0, end=T0 + 10_000_000,
            events=(), links=(), status=None, trace_id=TRACE):
    s = trace_pb2.Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                       start_time_unix_nano=start, end_time_unix_nano=end,
                       kind=trace_pb2.Span.SPAN_KIND_INTERNAL)
    for k, v in (attrs or {}).items():
        s.attributes.append(kv(k, v))
    for e in events:
        s.events.append(e)
    for lk in links:
        s.links.append(lk)
    if status is not None:
        s.status.CopyFrom(status)
    return s


def request(groups):
    """groups: list of (resource_attrs: dict, spans: list[Span], schema_url)."""
    req = trace_service_pb2.ExportTraceServiceRequest()
    for g in groups:
        rattrs, spans = g[0], g[1]
        schema = g[2] if len(g) > 2 else ""
        rs = req.resource_spans.add()
        rs.resource.CopyFrom(resource_pb2.Resource(attributes=[kv(k, v)
                                                               for k, v in rattrs.items()]))
        rs.schema_url = schema
        ss = rs.scope_spans.add()
        ss.scope.name = "test"
        ss.spans.extend(spans)
    return req


def ids_attrs(rid, aid, seq=None):
    d = {"agentlightning.rollout_id": rid, "agentlightning.attempt_id": aid}
    if seq is not None:
        d["agentlightning.span_sequence_id"] = seq
    return d


def post_pb(store, req, headers=None, raw=None):
    h = {"Content-Type": PB}
    h.update(headers or {})
    data = raw if raw is not None else req.SerializeToString()
    return store.post("/v1/traces", data=data, headers=h)


def ok(r):
    assert r.status_code == 200, (r.status_code, r.content[:300])
    assert r.headers.get("Content-Type", "").split(";")[0] == PB
    assert r.content == b""


def rpc_status(r):
    assert r.headers.get("Content-Type", "").split(";")[0] == PB, r.headers
    st = status_pb2.Status()
    st.ParseFromString(r.content)
    return st


def started(store):
    ro = store.start_rollout()
    return ro["rollout_id"], ro["attempt"]["attempt_id"]


def test_basic_conversion(store):
    rid, aid = started(store)
    ev = trace_pb2.Span.Event(time_unix_nano=T0 + 5_000_000, name="first_token",
                              attributes=[kv("latency_ms", 180.5)])
    lk = trace_pb2.Span.Link(trace_id=TRACE, span_id=PARENT, attributes=[kv("kind", "ff")])
    lk2 = trace_pb2.Span.Link(trace_id=TRACE, span_id=SPAN)
    span = pb_span(name="agentlightning.operation", parent=PARENT,
                   attrs={"s": "x", "i": 42, "f": 0.5, "b": True, "arr": ["a", "b"],
                          "ints": [1, 2], "raw": b"\x01\xab"},
                   events=[ev], links=[lk, lk2],
                   status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR,
                                           message="boom"))
    res = dict(ids_attrs(rid, aid), **{"service.name": "svc"})
    ok(post_pb(store, request([(res, [span], "https://schema/1")])))
    items = store.spans(rid)["items"]
    assert len(items) == 1
    s = items[0]
    assert s["rollout_id"] == rid and s["attempt_id"] == aid
    assert s["sequence_id"] == 1
    assert s["trace_id"] == TRACE.hex() and s["span_id"] == SPAN.hex()
    assert s["parent_id"] == PARENT.hex()
    assert s["name"] == "agentlightning.operation"
    assert s["status"] == {"status_code": "ERROR", "description": "boom"}
    assert s["attributes"] == {"s": "x", "i": 42, "f": 0.5, "b": True, "arr": ["a", "b"],
                               "ints": [1, 2], "raw": "01ab"}
    assert isinstance(s["attributes"]["i"], int)
    assert s["events"] == [{"name": "first_token", "attributes": {"latency_ms": 180.5},
                            "timestamp": pytest.approx((T0 + 5_000_000) / 1e9)}]
    assert s["links"][0]["context"] == {"trace_id": TRACE.hex(), "span_id": PARENT.hex(),
                                        "is_remote": False, "trace_state": {}}
    assert s["links"][0]["attributes"] == {"kind": "ff"}
    assert s["links"][1]["attributes"] is None
    assert s["start_time"] == pytest.approx(T0 / 1e9)
    assert s["end_time"] == pytest.approx((T0 + 10_000_000) / 1e9)
    assert s["context"] == {"trace_id": TRACE.hex(), "span_id": SPAN.hex(), "is_remote": False,
                            "trace_state": {}}
    assert s["parent"] is None
    assert s["resource"] == {"attributes": res, "schema_url": "https://schema/1"}
    # exactly the declared keys, no extras
    assert set(s) == {"rollout_id", "attempt_id", "sequence_id", "trace_id", "span_id",
                      "parent_id", "name", "status", "attributes", "events", "links",
                      "start_time", "end_time", "context", "parent", "resource"}


def test_defaults_for_empty_fields(store):
    rid, aid = started(store)
    span = trace_pb2.Span(name="bare")  # empty ids, no times, no status
    ok(post_pb(store, request([(ids_attrs(rid, aid), [span])])))
    s = store.spans(rid)["items"][0]
    assert s["trace_id"] == "0" * 32 and s["span_id"] == "0" * 16
    assert s["parent_id"] is None
    assert s["start_time"] is None and s["end_time"] is None
    assert s["status"] == {"status_code": "UNSET", "description": None}
    assert s["events"] == [] and s["links"] == []
    assert s["resource"]["schema_url"] == ""


def test_short_ids_left_padded_and_small_timestamps_are_seconds(store):
    rid, aid = started(store)
    span = pb_span(span_id=b"\x01\x02", trace_id=b"\xff", start=5, end=7)
    ok(post_pb(store, request([(ids_attrs(rid, aid), [span])])))
    s = store.spans(rid)["items"][0]
    assert s["span_id"] == "0000000000000102"
    assert s["trace_id"] == "0" * 30 + "ff"
    assert s["start_time"] == 5 and s["end_time"] == 7


def test_heartbeat_and_promotion(store):
    rid, aid = started(store)
    ok(post_pb(store, request([(ids_attrs(rid, aid), [pb_span()])])))
    att = store.latest_attempt(rid)
    assert att["status"] == "running" and att["last_heartbeat_time"] is not None
    assert store.rollout(rid)["status"] == "running"


def test_span_attrs_override_resource_per_key(store):
    r1, a1 = started(store)
    r2, a2 = started(store)
    # rollout id from the resource, attempt id from the span (tested combination)
    sp = pb_span(attrs={"agentlightning.attempt_id": a1})
    ok(post_pb(store, request([({"agentlightning.rollout_id": r1,
                                 "agentlightning.attempt_id": "at-bogus000"}, [sp])])))
    assert store.spans(r1, attempt_id=a1)["total"] == 1
    # span-level rollout id beats the resource-level one
    sp = pb_span(span_id=PARENT, attrs={"agentlightning.rollout_id": r2,
                                        "agentlightning.attempt_id": a2})
    ok(post_pb(store, request([(ids_attrs(r1, a1), [sp])])))
    assert store.spans(r2)["total"] == 1
    assert store.spans(r1)["total"] == 1
    assert "agentlightning.rollout_id" in store.spans(r2)["items"][0]["attributes"]


def test_spans_without_ids_are_skipped(store):
    rid, aid = started(store)
    no_attempt = pb_span(span_id=b"\x01" * 8)
    ok(post_pb(store, request([({"agentlightning.rollout_id": rid}, [no_attempt]),
                               ({"service.name": "x"}, [pb_span(span_id=b"\x02" * 8)])])))
    assert store.spans(rid)["total"] == 0
    assert store.next_seq(rid) == 1  # no sequence id consumed


@pytest.mark.parametrize("seq,expected", [(7, 7), ("12", 12), (0, 0)])
def test_sequence_id_from_attribute(store, seq, expected):
    rid, aid = started(store)
    ok(post_pb(store, request([(ids_attrs(rid, aid, seq), [pb_span()])])))
    assert store.spans(rid)["items"][0]["sequence_id"] == expected
    assert store.next_seq(rid) == max(expected, 0) + 1


@pytest.mark.parametrize("bad", ["abc", 5.0, True, -3])
def test_unusable_sequence_id_is_allocated(store, bad):
    rid, aid = started(store)
    store.next_seq(rid)  # counter → 1
    ok(post_pb(store, request([(ids_attrs(rid, aid, bad), [pb_span()])])))
    assert store.spans(rid)["items"][0]["sequence_id"] == 2


def test_sequence_id_span_level_wins(store):
    rid, aid = started(store)
    sp = pb_span(attrs={"agentlightning.span_sequence_id": 40})
    ok(post_pb(store, request([(ids_attrs(rid, aid, 9), [sp])])))
    assert store.spans(rid)["items"][0]["sequence_id"] == 40


def test_bulk_allocation_in_document_order(store):  # §5.1: [1,1,2,3], next → 4
    r1, a1 = started(store)
    r2, b1 = started(store)
    a2 = store.start_attempt(r1)["attempt"]["attempt_id"]
    groups = [(ids_attrs(r1, a1), [pb_span(span_id=b"\x01" * 8)]),
              (ids_attrs(r2, b1), [pb_span(span_id=b"\x02" * 8)]),
              (ids_attrs(r1, a2), [pb_span(span_id=b"\x03" * 8)]),
              (ids_attrs(r1, a1), [pb_span(span_id=b"\x04" * 8)])]
    ok(post_pb(store, request(groups)))
    by_span = {s["span_id"]: s["sequence_id"] for s in store.spans(r1)["items"]}
    by_span.update({s["span_id"]: s["sequence_id"] for s in store.spans(r2)["items"]})
    assert [by_span[("0" + str(i)) * 8] for i in range(1, 5)] == [1, 1, 2, 3]
    assert store.next_seq(r1) == 4
    assert store.next_seq(r2) == 2


def test_group_max_raises_counter(store):
    rid, aid = started(store)
    ok(post_pb(store, request([(ids_attrs(rid, aid, 30), [pb_span()])])))
    assert store.next_seq(rid) == 31


def test_duplicates_skipped_silently(store):
    rid, aid = started(store)
    req = request([(ids_attrs(rid, aid), [pb_span(), pb_span()])])
    ok(post_pb(store, req))
    ok(post_pb(store, req))
    assert store.spans(rid)["total"] == 1


def test_gzip_request(store):
    rid, aid = started(store)
    body = gzip.compress(request([(ids_attrs(rid, aid), [pb_span()])]).SerializeToString())
    ok(post_pb(store, None, {"Content-Encoding": "gzip"}, raw=body))
    assert store.spans(rid)["total"] == 1
    ok(post_pb(store, None, {"Content-Encoding": "GZIP"}, raw=gzip.compress(
        request([(ids_attrs(rid, aid), [pb_span(span_id=PARENT)])]).SerializeToString())))
    assert store.spans(rid)["total"] == 2


def test_content_type_with_parameters(store):
    rid, aid = started(store)
    ok(post_pb(store, request([(ids_attrs(rid, aid), [pb_span()])]),
               {"Content-Type": "application/x-protobuf; charset=binary"}))
    assert store.spans(rid)["total"] == 1


def test_empty_body(store):
    ok(post_pb(store, None, raw=b""))


def test_garbage_400_status(store):
    r = post_pb(store, None, raw=b"\xff\xff\xff\xff\x0f garbage \x00\x01")
    assert r.status_code == 400
    st = rpc_status(r)
    assert st.message.startswith("Unable to parse OTLP traces payload"), st.message


def test_corrupt_gzip_rejected(store):
    r = post_pb(store, None, {"Content-Encoding": "gzip"}, raw=b"\x1f\x8b\x08\x00garbage")
    assert r.status_code in (400, 500), r.status_code
    assert r.status_code != 200


def test_unknown_content_type_400(store):
    r = store.post("/v1/traces", data=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400
    st = rpc_status(r)
    assert st.message.startswith("Unsupported Content-Type 'text/plain'"), st.message
    r = store.post("/v1/traces", data=b"hello")  # no content type
    assert r.status_code == 400


def test_unknown_rollout_rejected_earlier_groups_kept(store):
    rid, aid = started(store)
    req = request([(ids_attrs(rid, aid), [pb_span()]),
                   (ids_attrs("ro-000000000000", "at-00000000"), [pb_span(span_id=PARENT)])])
    r = post_pb(store, req)
    assert r.status_code in (400, 404, 500), r.status_code
    assert store.spans("ro-000000000000")["total"] == 0
    r2 = post_pb(store, request([(ids_attrs(rid, "at-00000000"), [pb_span(span_id=PARENT)])]))
    assert r2.status_code in (400, 404, 500), r2.status_code
    assert store.spans(rid, attempt_id="at-00000000")["total"] == 0


def test_failing_multi_span_group_leaves_nothing_and_connection_usable(store):
    """A group with an unknown attempt is refused before its pipelined INSERTs (the attempt is
    checked under the rollout lock, migrations/0004): the request writes nothing, and the pooled
    connections keep working."""
    rid, aid = started(store)
    spans = [pb_span(span_id=bytes([i]) * 8) for i in range(1, 4)]
    for _ in range(6):  # more than one pooled connection sees the failure
        r = post_pb(store, request([(ids_attrs(rid, "at-00000000"), spans)]))
        assert r.status_code == 404, r.status_code
    assert store.spans(rid)["total"] == 0
    for _ in range(6):
        ok(post_pb(store, request([(ids_attrs(rid, aid), spans)])))
    assert store.spans(rid)["total"] == 3


@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/logs", "/v1/development/profiles"])
def test_other_signals_501(store, path):
    r = store.post(path, data=b"\x00\x01", headers={"Content-Type": PB})
    assert r.status_code == 501
    assert r.content == b""


def test_real_otel_exporter(store):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    rid, aid = started(store)
    provider = TracerProvider(resource=Resource.create(ids_attrs(rid, aid)))
    exporter = OTLPSpanExporter(endpoint=store.url + "/v1/traces", timeout=5)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("itest")
    with tracer.start_as_current_span("outer") as outer:
        outer.set_attribute("n", 3)
        with tracer.start_as_current_span("inner"):
            pass
    provider.shutdown()
    items = store.spans(rid)["items"]
    assert [s["name"] for s in items] == ["inner", "outer"]
    assert [s["sequence_id"] for s in items] == [1, 2]
    assert items[0]["parent_id"] == items[1]["span_id"]
    assert items[1]["attributes"] == {"n": 3}
    assert items[1]["resource"]["attributes"]["service.name"].startswith("unknown_service")
    assert items[1]["resource"]["attributes"]["agentlightning.rollout_id"] == rid


# ---- OTLP/JSON (our extension) ----

def otlp_json(rid, aid):
    return {"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "agentlightning.rollout_id", "value": {"stringValue": rid}},
            {"key": "agentlightning.attempt_id", "value": {"stringValue": aid}},
            {"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": [{
            "traceId": TRACE.hex(), "spanId": SPAN.hex(), "parentSpanId": PARENT.hex(),
            "name": "json-span", "kind": 1,
            "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 10_000_000),
            "attributes": [
                {"key": "s", "value": {"stringValue": "x"}},
                {"key": "i", "value": {"intValue": "42"}},
                {"key": "f", "value": {"doubleValue": 0.5}},
                {"key": "b", "value": {"boolValue": True}},
                {"key": "arr", "value": {"arrayValue": {"values": [{"stringValue": "a"},
                                                                   {"stringValue": "b"}]}}}],
            "events": [{"timeUnixNano": str(T0 + 5_000_000), "name": "ev",
                        "attributes": [{"key": "k", "value": {"intValue": "1"}}]}],
            "status": {"code": 2, "message": "boom"}}]}],
        "schemaUrl": ""}]}


def equivalent_pb(rid, aid):
    ev = trace_pb2.Span.Event(time_unix_nano=T0 + 5_000_000, name="ev", attributes=[kv("k", 1)])
    sp = pb_span(name="json-span", parent=PARENT,
                 attrs={"s": "x", "i": 42, "f": 0.5, "b": True, "arr": ["a", "b"]}, events=[ev],
                 status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR,
                                         message="boom"))
    return request([(dict(ids_attrs(rid, aid), **{"service.name": "svc"}), [sp])])


def _strip(span):
    s = dict(span)
    for k in ("rollout_id", "attempt_id"):
        s.pop(k)
    s["resource"] = {"attributes": {k: v for k, v in s["resource"]["attributes"].items()
                                    if not k.startswith("agentlightning.")},
                     "schema_url": s["resource"]["schema_url"]}
    return s


def test_otlp_json_accepted_and_equivalent(store):
    r1, a1 = started(store)
    r2, a2 = started(store)
    r = store.post("/v1/traces", data=json.dumps(otlp_json(r1, a1)),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 200, (r.status_code, r.content[:300])
    ok(post_pb(store, equivalent_pb(r2, a2)))
    js = store.spans(r1)["items"]
    pb = store.spans(r2)["items"]
    assert len(js) == 1 and len(pb) == 1
    assert _strip(js[0]) == _strip(pb[0])
    assert js[0]["attributes"]["i"] == 42 and isinstance(js[0]["attributes"]["i"], int)
    assert store.latest_attempt(r1)["status"] == "running"


def test_otlp_json_garbage_400(store):
    r = store.post("/v1/traces", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_json_span_and_otlp_span_coexist(store):
    rid, aid = started(store)
    store.add_span(make_span(rid, aid, store.next_seq(rid), span_id="1" * 16))
    ok(post_pb(store, request([(ids_attrs(rid, aid), [pb_span()])])))
    p = store.spans(rid)
    assert [s["sequence_id"] for s in p["items"]] == [1, 2]
    expect(store.get("/statistics"), 200)
