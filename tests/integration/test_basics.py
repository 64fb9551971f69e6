"""Transport-level behaviour: health, routing, content types, statistics, JSON encoding."""

import json
import time

from conftest import RO_RE, expect, expect_detail, is_json_ct


def test_health(store):
    r = store.get("/health")
    assert expect(r, 200) == {"status": "ok"}


def test_keepalive_connection_reused(store):
    # Several requests over one pooled connection must all succeed (persistent HTTP/1.1).
    for _ in range(20):
        assert store.get("/health").status_code == 200
    r = store.get("/health")
    assert r.headers.get("Connection", "").lower() != "close" or r.status_code == 200


def test_unknown_route_404(store):
    for path in ["/v1/agl/nope", "/v1/agl/rollouts/x/y/z/w", "/v1/nothing", "/v1/agl"]:
        r = store.get(path)
        body = expect_detail(r, 404)
        assert body["detail"] == "Not Found", (path, body)
    r = store.post("/v1/agl/does-not-exist", {"a": 1})
    assert expect_detail(r, 404)["detail"] == "Not Found"


def test_wrong_method_405(store):
    cases = [
        ("DELETE", "/rollouts"),
        ("GET", "/queues/rollouts/enqueue"),
        ("GET", "/queues/rollouts/dequeue"),
        ("PUT", "/health"),
        ("POST", "/health"),
        ("DELETE", "/rollouts/ro-000000000000"),
        ("PATCH", "/workers/w1"),
        ("GET", "/spans/next"),
        ("GET", "/waits/rollouts"),
        ("POST", "/statistics"),
    ]
    for method, path in cases:
        r = store.request(method, path)
        body = expect_detail(r, 405)
        assert body["detail"] == "Method Not Allowed", (method, path, body)
    r = store.request("GET", "/v1/traces")
    assert r.status_code == 405


def test_null_body_has_json_content_type(store):
    for path in ["/rollouts/ro-000000000000", "/rollouts/ro-000000000000/attempts/latest",
                 "/workers/nobody-here", "/resources/rs-000000000000", "/resources/latest"]:
        r = store.get(path)
        assert r.status_code == 200, (path, r.text)
        assert is_json_ct(r), (path, r.headers.get("Content-Type"))
        assert r.text.strip() == "null", (path, r.text)


def test_route_precedence_literal_segments(store):
    store.enqueue(2)
    # GET on the literal "search" path falls through to the {id} route: 200 null.
    r = store.get("/rollouts/search")
    assert expect(r, 200) is None
    r = store.get("/workers/search")
    assert expect(r, 200) is None
    # POST search is always the search endpoint.
    page = expect(store.post("/rollouts/search", {}), 200)
    assert page["total"] == 2
    # POST /resources/latest upserts a snapshot whose id is "latest".
    res = store.upsert_resources("latest", {"p": {"resource_type": "prompt_template",
                                                  "template": "t", "engine": "f-string"}})
    assert res["resources_id"] == "latest" and res["version"] == 1
    latest = expect(store.get("/resources/latest"), 200)
    assert latest["resources_id"] == "latest"


def test_trailing_slash_not_served_as_collection(store):
    store.enqueue(1)
    r = store.get("/rollouts/", allow_redirects=False)
    assert r.status_code in (307, 404), r.status_code


def test_statistics(store):
    s0 = store.stats()
    for k in ["name", "total_rollouts", "total_attempts", "total_spans", "total_resources",
              "total_workers", "uptime"]:
        assert k in s0, (k, s0)
    assert isinstance(s0["name"], str) and s0["name"]
    assert s0["total_rollouts"] == 0 and s0["total_attempts"] == 0
    assert isinstance(s0["uptime"], (int, float)) and s0["uptime"] >= 0

    ro = store.start_rollout(worker_id="w-stats")
    store.enqueue(2)
    store.dequeue(1)
    store.add_resources({})
    store.heartbeat("w-other", {"x": 1})
    store.add_span(_span(ro))
    s = store.stats()
    assert s["total_rollouts"] == 3
    assert s["total_attempts"] == 2
    assert s["total_spans"] == 1
    assert s["total_resources"] == 1
    assert s["total_workers"] == 2
    for k in ["total_rollouts", "total_attempts", "total_spans", "total_resources",
              "total_workers"]:
        assert isinstance(s[k], int) and not isinstance(s[k], bool), (k, s[k])
    time.sleep(0.05)
    assert store.stats()["uptime"] >= s["uptime"]


def _span(ro):
    from conftest import make_span
    return make_span(ro["rollout_id"], ro["attempt"]["attempt_id"])


def test_free_json_preserved_verbatim(store):
    raw = ('{"rollouts":[{"input":{"f":1.0,"i":1,"big":123456789012345678901234567890,'
           '"s":"\\u00e9\\ud83d\\ude00 caf\\u00e9","n":null,"nested":[1,[2,{"x":false}]]},'
           '"metadata":{"m":2.50}}]}')
    r = store.post("/queues/rollouts/enqueue", data=raw,
                   headers={"Content-Type": "application/json"})
    out = expect(r, 201)
    ro = out[0]
    got = store.rollout(ro["rollout_id"])
    for obj in (ro, got):
        inp = obj["input"]
        assert isinstance(inp["f"], float) and inp["f"] == 1.0
        assert isinstance(inp["i"], int) and inp["i"] == 1
        assert inp["big"] == 123456789012345678901234567890
        assert inp["s"] == "\u00e9\U0001F600 caf\u00e9"
        assert inp["n"] is None
        assert inp["nested"] == [1, [2, {"x": False}]]
        assert obj["metadata"] == {"m": 2.5}


def test_input_may_be_any_json(store):
    for value in [None, "text", 42, 1.5, True, [1, "a"], {"a": {"b": []}}]:
        ro = store.enqueue_one(input=value) if value is not None else None
        if value is None:
            r = store.post("/queues/rollouts/enqueue", {"rollouts": [{"input": None}]})
            ro = expect(r, 201)[0]
        assert ro["input"] == value
        assert store.rollout(ro["rollout_id"])["input"] == value


def test_timestamps_are_epoch_seconds(store):
    before = time.time()
    ro = store.start_rollout()
    after = time.time()
    for t in (ro["start_time"], ro["attempt"]["start_time"]):
        assert isinstance(t, float)
        assert before - 2 <= t <= after + 2
    assert RO_RE.match(ro["rollout_id"])


def test_response_is_valid_json_text(store):
    ro = store.enqueue_one(input={"q": "ü"})
    r = store.get(f"/rollouts/{ro['rollout_id']}")
    # body must decode as UTF-8 JSON
    assert json.loads(r.content.decode("utf-8"))["input"] == {"q": "ü"}
