"""E24–E27: spans — insert, duplicates, extras, attribute types, sequence ids (§5.1), listing
and filters (§5.3, §8 items 33–41, 46)."""

import copy

import pytest

from conftest import expect, expect_422, expect_detail, make_span

SPAN_FIELDS = ("rollout_id, attempt_id, sequence_id, trace_id, span_id, parent_id, name, status, "
               "attributes, events, links, start_time, end_time, context, parent, resource")


def started(store, **kw):
    ro = store.start_rollout(**kw)
    return ro["rollout_id"], ro["attempt"]["attempt_id"]


def search(store, **body):
    return expect(store.post("/spans/search", body), 200)


def test_add_span_echo_and_list(store):
    rid, aid = started(store)
    span = make_span(rid, aid, 3, parent_id="53995c3f42cd8ad8", name="openai.chat",
                     attributes={"gen_ai.request.model": "Qwen", "tokens": 42,
                                 "llm.is_streaming": False, "temperature": 0.7,
                                 "finish_reasons": ["stop"], "ints": [1, 2], "flags": [True],
                                 "floats": [0.5, 1.5], "empty": []})
    span["events"] = [{"name": "first_token", "attributes": {"latency_ms": 180.5},
                       "timestamp": 1733212351.2}]
    span["links"] = [{"context": {"trace_id": "0af7651916cd43dd8448eb211c80319c",
                                  "span_id": "b7ad6b7169203331", "is_remote": False,
                                  "trace_state": {}},
                      "attributes": {"link.kind": "follows_from"}}]
    out = store.add_span(span)
    assert out == span
    p = store.spans(rid)
    assert p["total"] == 1 and p["items"] == [span]
    got = p["items"][0]["attributes"]
    assert got["tokens"] == 42 and isinstance(got["tokens"], int)
    assert got["temperature"] == 0.7 and isinstance(got["temperature"], float)
    assert got["llm.is_streaming"] is False
    assert store.stats()["total_spans"] == 1


def test_span_extra_keys_preserved(store):  # §2.9
    rid, aid = started(store)
    span = make_span(rid, aid, 1, kind="SpanKind.INTERNAL", custom={"nested": [1, None]})
    span["status"]["extra_status"] = 1
    span["context"]["ctx_extra"] = "x"
    span["events"] = [{"name": "e", "attributes": {}, "timestamp": None, "ev_extra": True}]
    span["links"] = [{"context": dict(span["context"]), "attributes": None, "lk": [1]}]
    span["parent"] = {"trace_id": "t", "span_id": "p", "is_remote": True,
                      "trace_state": {"a": "b"}, "more": 2}
    out = store.add_span(span)
    assert out == span
    assert store.spans(rid)["items"][0] == span
    assert search(store, rollout_id=rid)["items"][0] == span


def test_duplicate_span_returns_null(store):
    rid, aid = started(store)
    span = make_span(rid, aid, 1)
    assert store.add_span(span)["span_id"] == span["span_id"]
    r = store.post("/spans", span)
    assert expect(r, 201) is None
    assert r.text.strip() == "null"
    assert store.spans(rid)["total"] == 1
    # same span_id under another attempt is a different span
    a2 = store.start_attempt(rid)["attempt"]["attempt_id"]
    other = make_span(rid, a2, 2)
    assert store.add_span(other) is not None
    assert store.spans(rid)["total"] == 2


def test_span_missing_keys_422(store):
    rid, aid = started(store)
    for key in ["rollout_id", "attempt_id", "sequence_id", "span_id", "name", "status",
                "attributes", "resource", "context"]:
        span = make_span(rid, aid, 1)
        del span[key]
        expect_422(store.post("/spans", span), key)
    span = make_span(rid, aid, 1)
    span["status"] = {"status_code": "MAYBE"}
    expect_422(store.post("/spans", span), "status_code")
    span = make_span(rid, aid, 1)
    span["sequence_id"] = "one"
    expect_422(store.post("/spans", span), "sequence_id")
    assert store.spans(rid)["total"] == 0


@pytest.mark.parametrize("value", [{"nested": 1}, None, [1, "a"], [[1]], [None]])
def test_span_bad_attribute_values_never_returned(store, value):  # §2.9 MUST NOT
    rid, aid = started(store)
    span = make_span(rid, aid, 1, attributes={"bad": value, "ok": 1})
    r = store.post("/spans", span)
    if r.status_code == 422:
        expect_422(r)
        assert store.spans(rid)["total"] == 0
    else:
        expect(r, 201)
        stored = store.spans(rid)["items"][0]["attributes"]
        v = stored.get("bad")
        assert v is not None and not isinstance(v, dict), v
        if isinstance(v, list):
            assert len({type(x) for x in v}) <= 1 and all(
                isinstance(x, (str, int, float, bool)) for x in v), v


def test_add_span_unknown_rollout_or_attempt_404(store):  # our deviation: 404
    rid, aid = started(store)
    r = store.post("/spans", make_span("ro-000000000000", aid, 1))
    expect_detail(r, 404)
    r = store.post("/spans", make_span(rid, "at-00000000", 1))
    expect_detail(r, 404)
    assert store.spans(rid)["total"] == 0
    assert store.latest_attempt(rid)["status"] == "preparing"


# ---- sequence ids §5.1 ----

def test_next_sequence_id(store):
    rid, aid = started(store)
    r = store.post("/spans/next", {"rollout_id": rid, "attempt_id": aid})
    body = expect(r, 200)
    assert body == {"sequence_id": 1} and isinstance(body["sequence_id"], int)
    assert store.next_seq(rid, aid) == 2
    assert store.next_seq(rid, "latest") == 3  # attempt ignored
    assert store.next_seq(rid, "whatever") == 4
    # unknown rollout: no check, counter per rollout id
    assert store.next_seq("ro-unknown", "x") == 1
    assert store.next_seq("ro-unknown", "y") == 2


def test_add_span_raises_counter(store):  # tested: 101 → 102; 0 → 1
    rid, aid = started(store)
    store.add_span(make_span(rid, aid, 101))
    assert store.next_seq(rid) == 102
    store.add_span(make_span(rid, aid, 5, span_id="1111111111111111"))  # lower: no change
    assert store.next_seq(rid) == 103
    rid2, aid2 = started(store)
    store.add_span(make_span(rid2, aid2, 0))
    assert store.next_seq(rid2) == 1


def test_duplicate_span_still_raises_counter(store):
    rid, aid = started(store)
    span = make_span(rid, aid, 1)
    store.add_span(span)
    dup = dict(span, sequence_id=50)
    assert store.add_span(dup) is None
    assert store.next_seq(rid) == 51


def test_sequence_ids_per_rollout(store):  # §9: [3, 2, 4]
    r1, a1 = started(store)
    r2, a2 = started(store)
    store.add_span(make_span(r1, a1, 1, span_id="0000000000000001"))
    store.add_span(make_span(r1, a1, 2, span_id="0000000000000002"))
    store.add_span(make_span(r2, a2, 1, span_id="0000000000000003"))
    got = [store.next_seq(r1, a1), store.next_seq(r2, a2), store.next_seq(r1, "latest")]
    assert got == [3, 2, 4]


def test_next_validation(store):
    expect_422(store.post("/spans/next", {"rollout_id": "ro-x"}), "attempt_id")
    expect_422(store.post("/spans/next", {"attempt_id": "x"}), "rollout_id")


def test_next_sequence_id_batch(store):  # agl extension: an array body
    r1, a1 = started(store)
    r2, a2 = started(store)
    store.add_span(make_span(r1, a1, 7))
    odd = 'ro-"quoted\\back,slash{}'
    body = [{"rollout_id": r1, "attempt_id": a1}, {"rollout_id": r2, "attempt_id": a2},
            {"rollout_id": r1, "attempt_id": "latest"}, {"rollout_id": odd, "attempt_id": "x"},
            {"rollout_id": r1, "attempt_id": a1}]
    got = expect(store.post("/spans/next", body), 200)
    assert got == [{"sequence_id": n} for n in (8, 1, 9, 1, 10)]
    assert store.next_seq(r1, a1) == 11 and store.next_seq(odd, "x") == 2
    assert expect(store.post("/spans/next", []), 200) == []
    expect_422(store.post("/spans/next", [{"rollout_id": r1}]), "attempt_id")
    expect_422(store.post("/spans/next", [body[0], {"attempt_id": "x"}]), "rollout_id")
    expect_422(store.post("/spans/next", [body[0], 3]), "body")
    r = store.post("/spans/next", [body[0]] * 4097)
    assert r.status_code == 422 and "at most 4096" in r.text
    assert store.next_seq(r1, a1) == 12  # refused batches allocated nothing


# ---- listing §8.33–41, §8.46 ----

def _many(store, rid, aid, n):
    out = []
    for i in range(n):
        out.append(store.add_span(make_span(rid, aid, i + 1, span_id=f"{i + 1:016x}",
                                            name=f"s{i}")))
    return out


def test_span_pagination(store):  # §8.33
    rid, aid = started(store)
    _many(store, rid, aid, 10)
    p = store.spans(rid, limit=3)
    assert p["total"] == 10 and len(p["items"]) == 3 and p["limit"] == 3
    assert [s["sequence_id"] for s in p["items"]] == [1, 2, 3]
    p = store.spans(rid, limit=-1)
    assert len(p["items"]) == 10 and p["limit"] == -1
    p = store.spans(rid, limit=3, offset=8)
    assert [s["sequence_id"] for s in p["items"]] == [9, 10]


def test_get_and_search_agree_with_attempt(store):  # §8.34, §8.46
    rid, aid = started(store)
    _many(store, rid, aid, 3)
    a2 = store.start_attempt(rid)["attempt"]["attempt_id"]
    store.add_span(make_span(rid, a2, 9, span_id="ffffffffffffffff"))
    g = store.spans(rid, attempt_id=aid, limit=2)
    s = search(store, rollout_id=rid, attempt_id=aid, limit=2, offset=0)
    assert g == s and g["total"] == 3 and len(g["items"]) == 2
    p = store.spans(rid, attempt_id=aid, sort_by="sequence_id", limit=1, offset=1)
    assert p["total"] == 3 and [x["sequence_id"] for x in p["items"]] == [2]
    lat = search(store, rollout_id=rid, attempt_id="latest")
    assert [x["span_id"] for x in lat["items"]] == ["ffffffffffffffff"]
    assert store.spans(rid)["total"] == 4


def test_default_sort_sequence_and_desc(store):
    rid, aid = started(store)
    for seq, sid in [(3, "a"), (1, "b"), (2, "c")]:
        store.add_span(make_span(rid, aid, seq, span_id=sid * 16))
    assert [s["sequence_id"] for s in store.spans(rid)["items"]] == [1, 2, 3]
    p = search(store, rollout_id=rid, sort_by="sequence_id", sort_order="desc", limit=1,
               offset=1)
    assert [s["sequence_id"] for s in p["items"]] == [2]
    # explicit null sort_by = storage order
    p = search(store, rollout_id=rid, sort_by=None)
    assert [s["sequence_id"] for s in p["items"]] == [3, 1, 2]


def test_sort_start_time_equal(store):  # §8.35
    rid, aid = started(store)
    for i in range(5):
        store.add_span(make_span(rid, aid, i, span_id=f"{i:016x}", start_time=100.0,
                                 end_time=101.0))
    p = store.spans(rid, sort_by="start_time", sort_order="desc")
    assert p["total"] == 5 and len(p["items"]) == 5


def _four(store):
    rid, aid = started(store)
    store.add_span(make_span(rid, aid, 1, span_id="1" * 16, trace_id="t" * 32,
                             name="api_call_one"))
    store.add_span(make_span(rid, aid, 2, span_id="2" * 16, trace_id="t" * 32,
                             parent_id="1" * 16, name="other"))
    store.add_span(make_span(rid, aid, 3, span_id="3" * 16, trace_id="u" * 32,
                             parent_id="1" * 16, name="api_call_two"))
    store.add_span(make_span(rid, aid, 4, span_id="4" * 16, trace_id="v" * 32,
                             parent_id="3" * 16, name="tail"))
    # a span of another rollout that matches every filter under OR
    r2, a2 = started(store)
    store.add_span(make_span(r2, a2, 1, span_id="1" * 16, trace_id="t" * 32,
                             name="api_call_one"))
    return rid, aid


def test_span_filters(store):  # §8.36–39
    rid, aid = _four(store)
    p = store.spans(rid, trace_id="t" * 32)
    assert [s["sequence_id"] for s in p["items"]] == [1, 2]
    p = store.spans(rid, name_contains="api_call")
    assert [s["sequence_id"] for s in p["items"]] == [1, 3]
    p = store.spans(rid, trace_id="t" * 32, name_contains="api_call", filter_logic="and")
    assert [s["sequence_id"] for s in p["items"]] == [1]
    p = store.spans(rid, trace_id="t" * 32, name_contains="api_call", filter_logic="or")
    assert [s["sequence_id"] for s in p["items"]] == [1, 2, 3]
    assert p["total"] == 3  # other rollout never matches
    p = search(store, rollout_id=rid, span_id="4" * 16, trace_id_contains="uu",
               filter_logic="or")
    assert [s["sequence_id"] for s in p["items"]] == [3, 4]
    p = store.spans(rid, parent_id="1" * 16)
    assert [s["sequence_id"] for s in p["items"]] == [2, 3]
    p = store.spans(rid, parent_id_contains="3")
    assert [s["sequence_id"] for s in p["items"]] == [4]
    p = store.spans(rid, name="tail")
    assert [s["sequence_id"] for s in p["items"]] == [4]
    p = store.spans(rid, span_id_contains="2")
    assert [s["sequence_id"] for s in p["items"]] == [2]
    p = store.spans(rid, trace_id_contains="v")
    assert [s["sequence_id"] for s in p["items"]] == [4]
    p = store.spans(rid, name_contains="API")  # case-sensitive
    assert p["total"] == 0


def test_sort_parent_id_null_first(store):  # §8.40
    rid, aid = _four(store)
    asc = store.spans(rid, sort_by="parent_id")["items"]
    assert asc[0]["parent_id"] is None
    assert [s["parent_id"] for s in asc[1:]] == ["1" * 16, "1" * 16, "3" * 16]
    desc = store.spans(rid, sort_by="parent_id", sort_order="desc")["items"]
    assert desc[-1]["parent_id"] is None
    assert [s["sequence_id"] for s in desc] == [4, 2, 3, 1]  # stable ties


def test_invalid_sort_by(store):  # §8.41
    rid, aid = started(store)
    r = store.get("/spans", params={"rollout_id": rid, "sort_by": "invalid_field"})
    expect_detail(r, 400, f"Invalid sort_by: invalid_field, allowed fields are: {SPAN_FIELDS}")


def test_spans_scope_errors(store):
    expect_422(store.get("/spans"), "rollout_id")
    expect_422(store.post("/spans/search", {"limit": 1}), "rollout_id")
    p = store.spans("ro-000000000000")
    assert p == {"items": [], "limit": -1, "offset": 0, "total": 0} or (
        p["items"] == [] and p["total"] == 0)
    ro = store.enqueue_one()  # no attempts
    p = store.spans(ro["rollout_id"], attempt_id="latest", limit=5, offset=2)
    assert p["items"] == [] and p["total"] == 0 and p["limit"] == 5 and p["offset"] == 2
    rid, aid = started(store)
    store.add_span(make_span(rid, aid, 1))
    assert store.spans(rid, attempt_id="at-00000000")["total"] == 0


def test_span_json_types_round_trip(store):
    rid, aid = started(store)
    attrs = {"i": 1, "f": 1.5, "b": True, "s": "1", "big": 2 ** 62, "neg": -7, "fz": 2.0}
    span = make_span(rid, aid, 1, attributes=copy.deepcopy(attrs))
    store.add_span(span)
    got = store.spans(rid)["items"][0]["attributes"]
    assert got == attrs
    for k in attrs:
        assert type(got[k]) is type(attrs[k]), (k, got[k])
