"""E19–E23: resources snapshots, versioning and "latest" (spec §5.5, §8 items 29–32, 44, §9)."""

import time

from conftest import RS_RE, expect, expect_422, expect_detail

RES_FIELDS = "resources_id, create_time, update_time, version, resources"

LLM = {"resource_type": "llm", "endpoint": "http://10.0.0.5:8000/v1",
       "model": "Qwen2.5-7B-Instruct", "api_key": None,
       "sampling_parameters": {"temperature": 0.7, "max_tokens": 512}}
PROMPT = {"resource_type": "prompt_template",
          "template": "You are a helpful assistant. {question}", "engine": "f-string"}
PROXY = {"resource_type": "proxy_llm", "endpoint": "http://10.0.0.7:12358/v1",
         "model": "m", "api_key": "sk-x", "sampling_parameters": {"temperature": 1.0}}


def test_add_resources(store):  # E20
    before = time.time()
    res = store.add_resources({"main_llm": LLM, "system_prompt": PROMPT, "proxy": PROXY})
    assert set(res) == {"resources_id", "create_time", "update_time", "version", "resources"}
    assert RS_RE.match(res["resources_id"]) and len(res["resources_id"]) == 15
    assert res["version"] == 1
    assert res["create_time"] == res["update_time"]
    assert before - 2 <= res["create_time"] <= time.time() + 2
    assert res["resources"] == {"main_llm": LLM, "system_prompt": PROMPT, "proxy": PROXY}
    got = expect(store.get(f"/resources/{res['resources_id']}"), 200)
    assert got == res
    assert expect(store.get("/resources/latest"), 200) == res


def test_add_resources_fills_defaults(store):
    res = store.add_resources({"llm": {"resource_type": "llm", "endpoint": "http://e",
                                       "model": "m"}})
    llm = res["resources"]["llm"]
    assert llm["resource_type"] == "llm" and llm["endpoint"] == "http://e" and llm["model"] == "m"
    assert llm.get("api_key") is None
    assert llm.get("sampling_parameters", {}) == {}


def test_add_empty_resources(store):
    res = store.add_resources({})
    assert res["resources"] == {} and res["version"] == 1


def test_add_ids_unique(store):
    ids = {store.add_resources({})["resources_id"] for _ in range(5)}
    assert len(ids) == 5


def test_upsert_versions(store):  # E23
    r1 = store.upsert_resources("manual-alpha", {"p": PROMPT})
    assert r1["resources_id"] == "manual-alpha" and r1["version"] == 1
    time.sleep(0.01)
    r2 = store.upsert_resources("manual-alpha", {"llm": LLM})
    assert r2["version"] == 2
    assert r2["create_time"] == r1["create_time"]
    assert r2["update_time"] > r1["update_time"]
    assert r2["resources"] == {"llm": LLM}
    assert expect(store.get("/resources/manual-alpha"), 200) == r2


def test_latest_follows_last_write(store):  # §5.5
    assert expect(store.get("/resources/latest"), 200) is None
    a = store.add_resources({"p": PROMPT})
    b = store.add_resources({})
    assert expect(store.get("/resources/latest"), 200)["resources_id"] == b["resources_id"]
    store.upsert_resources(a["resources_id"], {"x": PROMPT})  # re-updating an old id
    lat = expect(store.get("/resources/latest"), 200)
    assert lat["resources_id"] == a["resources_id"] and lat["version"] == 2
    store.upsert_resources("custom", {})
    assert expect(store.get("/resources/latest"), 200)["resources_id"] == "custom"
    ro = store.enqueue_one()
    assert ro["resources_id"] == "custom"


def test_unknown_resources_null(store):
    assert expect(store.get("/resources/rs-000000000000"), 200) is None


def test_resources_pagination(store):  # §8.29
    for _ in range(7):
        store.add_resources({})
    p = expect(store.get("/resources", params={"limit": 3}), 200)
    assert p["total"] == 7 and len(p["items"]) == 3 and p["limit"] == 3 and p["offset"] == 0
    p = expect(store.get("/resources", params={"limit": -1}), 200)
    assert p["total"] == 7 and len(p["items"]) == 7


def test_resources_sort(store):  # §8.30
    ids = [store.add_resources({})["resources_id"] for _ in range(4)]
    p = expect(store.get("/resources", params={"sort_by": "resources_id"}), 200)
    assert [i["resources_id"] for i in p["items"]] == sorted(ids)
    p = expect(store.get("/resources", params={"sort_by": "resources_id",
                                               "sort_order": "desc"}), 200)
    assert [i["resources_id"] for i in p["items"]] == sorted(ids, reverse=True)


def test_resources_default_order_keeps_first_insert(store):
    store.upsert_resources("b", {})
    store.upsert_resources("a", {})
    store.upsert_resources("b", {})  # update keeps its position
    p = expect(store.get("/resources"), 200)
    assert [i["resources_id"] for i in p["items"]] == ["b", "a"]
    p = expect(store.get("/resources", params={"sort_by": "version", "sort_order": "desc"}), 200)
    assert [i["version"] for i in p["items"]] == [2, 1]


def test_resources_contains_filter(store):  # §8.31
    for rid in ["test-001", "test-002", "prod-003"]:
        store.upsert_resources(rid, {})
    p = expect(store.get("/resources", params={"resources_id_contains": "test-"}), 200)
    assert {i["resources_id"] for i in p["items"]} == {"test-001", "test-002"}
    p = expect(store.get("/resources", params={"resources_id_contains": "-003"}), 200)
    assert [i["resources_id"] for i in p["items"]] == ["prod-003"]
    p = expect(store.get("/resources", params={"resources_id": "test-002"}), 200)
    assert [i["resources_id"] for i in p["items"]] == ["test-002"]
    # both filters: AND
    p = expect(store.get("/resources", params={"resources_id": "test-002",
                                               "resources_id_contains": "prod"}), 200)
    assert p["total"] == 0


def test_resources_filter_sort_paginate(store):  # §8.32
    for rid in ["prod-b", "dev-a", "prod-c", "prod-a"]:
        store.upsert_resources(rid, {})
    q = {"resources_id_contains": "prod-", "sort_by": "resources_id", "limit": 2}
    p = expect(store.get("/resources", params=q), 200)
    assert p["total"] == 3 and [i["resources_id"] for i in p["items"]] == ["prod-a", "prod-b"]
    p = expect(store.get("/resources", params=dict(q, offset=2)), 200)
    assert p["total"] == 3 and [i["resources_id"] for i in p["items"]] == ["prod-c"]
    # §9: sort desc, limit 1, offset 1 → second-largest
    p = expect(store.get("/resources", params={"sort_by": "resources_id", "sort_order": "desc",
                                               "limit": 1, "offset": 1}), 200)
    assert [i["resources_id"] for i in p["items"]] == ["prod-b"]


def test_resources_invalid_sort(store):
    r = store.get("/resources", params={"sort_by": "name"})
    expect_detail(r, 400, f"Invalid sort_by: name, allowed fields are: {RES_FIELDS}")


def test_resources_validation(store):
    expect_422(store.post("/resources", {"x": {"endpoint": "e", "model": "m"}}),
               "resource_type")
    expect_422(store.post("/resources", {"x": {"resource_type": "database"}}))
    expect_422(store.post("/resources", {"x": {"resource_type": "llm", "model": "m"}}),
               "endpoint")
    expect_422(store.post("/resources", {"x": dict(PROMPT, engine="mustache")}), "engine")
    expect_422(store.post("/resources/custom", {"x": {"resource_type": "prompt_template"}}))
    expect_422(store.post("/resources", [1, 2]))
    assert expect(store.get("/resources"), 200)["total"] == 0
    assert expect(store.get("/resources/custom"), 200) is None
