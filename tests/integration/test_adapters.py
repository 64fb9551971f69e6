"""Server-side adapters (issue 4): POST /v1/agl/triplets/search, GET /v1/agl/rollouts/{id}/triplets,
POST /v1/agl/messages/search, GET /v1/agl/rollouts/{id}/messages.

Each case stores a hand-built span set in stored, fetches our triplets/messages, and runs the
reference agentlightning 0.3 adapter (TracerTraceToTriplet, LlmProxyTraceToTriplet,
TraceToMessages) on the same spans fetched through the real LightningStoreClient; both must be
equal. Golden assertions pin the behaviour the cases are about (reward matching, dedup, repair).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import expect, expect_422, expect_detail, make_span

agl = pytest.importorskip("agentlightning")
from agentlightning.adapter.messages import TraceToMessages  # noqa: E402
from agentlightning.adapter.triplet import (  # noqa: E402
    LlmProxyTraceToTriplet,
    RewardMatchPolicy,
    TracerTraceToTriplet,
)
from agentlightning.store.client_server import LightningStoreClient  # noqa: E402

T0 = 1_700_000_000.0


def norm(x):
    return json.loads(json.dumps(x))


class Builder:
    """Builds spans of one attempt with readable ids and explicit times."""

    def __init__(self, store, rid, aid):
        self.store, self.rid, self.aid, self.seq = store, rid, aid, 0

    def span(self, sid, name, start, end, parent=None, **attrs):
        self.seq += 1
        sp = make_span(self.rid, self.aid, self.seq, span_id=sid, parent_id=parent, name=name,
                       attributes=attrs, start_time=T0 + start, end_time=T0 + end)
        self.store.add_span(sp)
        return sid


def llm_attrs(resp_id=None, prompt="hi", completion="hello", ptoks=None, rtoks=None, **extra):
    a = {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": prompt,
         "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": completion,
         "gen_ai.request.model": "m", "gen_ai.request.temperature": 0.5,
         "gen_ai.response.model": "m"}
    if resp_id is not None:
        a["gen_ai.response.id"] = resp_id
    if ptoks is not None:
        a["prompt_token_ids"] = ptoks
    if rtoks is not None:
        a["response_token_ids"] = rtoks
    a.update(extra)
    return a


def reward_attrs(v):
    return {"agentlightning.reward.0.name": "primary", "agentlightning.reward.0.value": v}


async def _ref_spans(url, rid):
    client = LightningStoreClient(url)
    try:
        return await client.query_spans(rid, attempt_id="latest")
    finally:
        await client.close()


def ref_spans(store, rid):
    return asyncio.run(_ref_spans(store.url, rid))


def ours(store, rid, **params):
    return expect(store.get(f"/rollouts/{rid}/triplets", params=params), 200)


def ref_triplets(store, rid, adapter=None):
    spans = ref_spans(store, rid)
    adapter = adapter or TracerTraceToTriplet()
    return norm([t.model_dump() for t in adapter.adapt(spans)])


def compare(store, rid, params=None, adapter=None):
    got = ours(store, rid, **(params or {}))
    want = ref_triplets(store, rid, adapter)
    assert got["triplets"] == want, json.dumps({"ours": got["triplets"], "ref": want}, indent=1)
    return got


def new_rollout(store, **kw):
    ro = store.start_rollout(**kw)
    return ro["rollout_id"], ro["attempt"]["attempt_id"]


# ---- golden cases, each compared with the reference ----

def test_nested_agents_and_rewards(store):
    rid, aid = new_rollout(store)
    b = Builder(store, rid, aid)
    b.span("root", "session", 0, 100)
    b.span("ag1", "planner.run", 1, 40, "root", **{"agent.name": "planner"})
    b.span("l1", "openai.chat.completion", 2, 10, "ag1",
           **llm_attrs("r1", "plan it", "step 1", [1, 2, 3], [4, 5]))
    b.span("rw1", "agentlightning.annotation", 11, 11, "ag1", **reward_attrs(0.25))
    b.span("ag2", "coder.run", 41, 90, "root", **{"agent.name": "coder"})
    b.span("l2", "openai.chat.completion", 42, 50, "ag2",
           **llm_attrs("r2", "code it", "done", [1, 2, 3, 4, 5, 6], [7]))
    b.span("l3", "openai.chat.completion", 51, 60, "ag2",
           **llm_attrs("r3", "again", "ok", [9], [10, 11]))
    b.span("rw2", "agentlightning.annotation", 95, 95, "root", **reward_attrs(1.0))
    got = compare(store, rid)
    tr = got["triplets"]
    assert [t["metadata"]["response_id"] for t in tr] == ["r1", "r2", "r3"]
    assert [t["metadata"]["agent_name"] for t in tr] == ["planner", "coder", "coder"]
    # reward 0.25 after l1; 1.0 goes to the most recent finished call (l3); l2 gets none
    assert [t["reward"] for t in tr] == [0.25, None, 1.0]
    assert tr[0]["prompt"]["token_ids"] == [1, 2, 3] and tr[0]["response"]["token_ids"] == [4, 5]
    assert tr[0]["prompt"]["raw_content"] == [{"role": "user", "content": "plan it"}]
    assert tr[0]["metadata"]["request"] == {"model": "m", "temperature": 0.5}
    assert got["final_reward"] == 1.0
    assert got["rollout_id"] == rid and got["attempt_id"] == aid
    # agent filter: only the coder's calls
    compare(store, rid, {"agent_match": "cod"}, TracerTraceToTriplet(agent_match="cod"))
    got = ours(store, rid, agent_match="^coder$")
    assert [t["metadata"]["response_id"] for t in got["triplets"]] == ["r2", "r3"]


def test_rewards_before_and_after_calls(store):
    rid, aid = new_rollout(store)
    b = Builder(store, rid, aid)
    b.span("root", "session", 0, 100)
    b.span("rw0", "agentlightning.annotation", 1, 1, "root", **reward_attrs(9.0))  # no call yet
    b.span("l1", "openai.chat.completion", 2, 10, "root", **llm_attrs("a"))
    b.span("l2", "openai.chat.completion", 12, 20, "root", **llm_attrs("b"))
    b.span("rw1", "agentlightning.annotation", 15, 15, "root", **reward_attrs(0.5))  # l2 running
    b.span("rw2", "agentlightning.annotation", 21, 21, "root", **reward_attrs(0.7))
    b.span("rw3", "agentlightning.annotation", 22, 22, "root", **reward_attrs(0.9))
    got = compare(store, rid)
    # rw1 lands on l1 (l2 still running); rw2 on l2; rw3 finds nobody left
    assert [t["reward"] for t in got["triplets"]] == [0.5, 0.7]
    compare(store, rid, {"reward_match": "first_sibling"},
            TracerTraceToTriplet(reward_match=RewardMatchPolicy.FIRST_SIBLING))


def test_missing_parents_and_repair(store):
    rid, aid = new_rollout(store)
    b = Builder(store, rid, aid)
    # the session span "lost" was never recorded; the agent and a dangling LLM span hang on it
    b.span("ag", "agent", 0, 50, "lost", **{"agent.name": "solver"})
    b.span("l1", "openai.chat.completion", 5, 10, "lost", **llm_attrs("x1"))
    b.span("l2", "openai.chat.completion", 20, 30, "ag", **llm_attrs("x2"))
    b.span("rw", "agentlightning.annotation", 75, 75, "lost", **reward_attrs(2))
    got = compare(store, rid)
    # repair moves l1 under the agent (appended after l2): both calls are the solver's
    assert [t["metadata"]["response_id"] for t in got["triplets"]] == ["x2", "x1"]
    assert [t["metadata"]["agent_name"] for t in got["triplets"]] == ["solver", "solver"]
    assert [t["reward"] for t in got["triplets"]] == [2.0, None]
    compare(store, rid, {"agent_match": "solver"}, TracerTraceToTriplet(agent_match="solver"))
    got = ours(store, rid, repair_hierarchy="false", agent_match="solver")
    assert [t["metadata"]["response_id"] for t in got["triplets"]] == ["x2"]
    compare(store, rid, {"repair_hierarchy": "false", "agent_match": "solver"},
            TracerTraceToTriplet(repair_hierarchy=False, agent_match="solver"))

    # several roots: a virtual root above them; repair then works one level up
    rid, aid = new_rollout(store)
    b = Builder(store, rid, aid)
    b.span("ag", "agent", 0, 50, "lost", **{"agent.name": "solver"})
    b.span("l1", "openai.chat.completion", 5, 10, "lost", **llm_attrs("x1"))
    b.span("l2", "openai.chat.completion", 20, 30, "ag", **llm_attrs("x2"))
    b.span("other", "tool", 60, 70)
    b.span("rw", "agentlightning.annotation", 75, 75, **reward_attrs(2))
    got = compare(store, rid)
    assert [t["metadata"]["agent_name"] for t in got["triplets"]] == ["solver", "*"]


def test_dedup_reward_subtree_and_weave_keys(store):
    rid, aid = new_rollout(store)
    b = Builder(store, rid, aid)
    b.span("root", "session", 0, 100)
    # wrapper + client span of one call: the nested one without id is a duplicate
    b.span("w", "openai.chat.completion", 1, 10, "root", **llm_attrs("d1"))
    b.span("w2", "openai.chat.completion.create", 2, 9, "w", foo="bar")
    # same response id again → dropped
    b.span("dup", "openai.chat.completion", 11, 12, "root", **llm_attrs("d1"))
    # an LLM grader inside a reward computation is excluded
    b.span("rop", "agentlightning.operation", 20, 40, "root",
           **{"agentlightning.operation.name": "agentlightning.reward"})
    b.span("grader", "openai.chat.completion", 21, 30, "rop", **llm_attrs("g1"))
    # Weave-style keys
    b.span("wv", "openai.chat.completion", 50, 60, "root", **{
        "agentlightning.operation.output.id": "wv1",
        "agentlightning.operation.input.messages.0.role": "user",
        "agentlightning.operation.input.messages.0.content": "q",
        "agentlightning.operation.input.model": "m2",
        "agentlightning.operation.output.choices.0.message.content": "a",
        "agentlightning.operation.output.prompt_token_ids": [5, 6],
        "agentlightning.operation.output.choices.0.token_ids": [7],
        "agentlightning.operation.output.usage.total_tokens": 3,
    })
    b.span("agentops", "task", 61, 61, "root",
           **{"agentops.task.output": json.dumps({"type": "reward", "value": 0.3})})
    got = compare(store, rid)
    assert [t["metadata"]["response_id"] for t in got["triplets"]] == ["d1", "wv1"]
    assert got["triplets"][1]["prompt"]["token_ids"] == [5, 6]
    assert got["triplets"][1]["response"]["token_ids"] == [7]
    assert got["triplets"][1]["reward"] == 0.3
    compare(store, rid, {"exclude_llm_call_in_reward": "false"},
            TracerTraceToTriplet(exclude_llm_call_in_reward=False))
    compare(store, rid, {"skip_empty_token_spans": "true"},
            TracerTraceToTriplet(_skip_empty_token_spans=True))


def test_images_logprobs_and_legacy_reward(store):
    rid, aid = new_rollout(store)
    b = Builder(store, rid, aid)
    b.span("root", "session", 0, 100)
    content = json.dumps([{"type": "text", "text": "see"},
                          {"type": "image_url", "image_url": {"url": "http://x/1.png"}}])
    lp = json.dumps([{"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": []}])
    b.span("l1", "openai.chat.completion", 1, 5, "root",
           **llm_attrs("i1", content, "ok", [1], [2], **{"logprobs.content": lp}))
    b.span("rw", "agentlightning.annotation", 6, 6, "root", reward=0.75)
    got = compare(store, rid)
    t = got["triplets"][0]
    assert t["prompt"]["image_urls"] == ["http://x/1.png"]
    assert t["response"]["logprobs"][0]["logprob"] == -0.5
    assert t["reward"] == 0.75


def test_llm_proxy_spans(store):
    rid, aid = new_rollout(store)
    b = Builder(store, rid, aid)
    # proxy-recorded calls: Python-literal token ids, seq order decides
    b.span("p1", "raw_gen_ai_request", 0, 1, **{
        "llm.hosted_vllm.prompt_token_ids": "[1, 2, 3]",
        "llm.hosted_vllm.choices": "[{'token_ids': [4, 5], 'finish_reason': 'stop', "
                                   "'logprobs': None, 'text': \"it's\"}]",
        "llm.hosted_vllm.id": "chatcmpl-1"})
    b.span("p1b", "litellm_request", 0, 1, **{
        "gen_ai.response.id": "chatcmpl-1", "prompt_token_ids": [1, 2, 3],
        "response_token_ids": [4, 5]})  # same id: deduplicated
    b.span("r1", "agentlightning.annotation", 2, 2, **reward_attrs(0.1))
    b.span("p2", "litellm_request", 3, 4, **{
        "gen_ai.response.id": "chatcmpl-2", "prompt_token_ids": "[1, 2, 3, 4, 5, 6]",
        "response_token_ids": [7, 8]})
    b.span("p3", "raw_gen_ai_request", 5, 6, **{
        "llm.hosted_vllm.prompt_token_ids": "[9]",
        "llm.hosted_vllm.response_token_ids": "[[10, 11]]"})
    b.span("r2", "agentlightning.annotation", 7, 7, **reward_attrs(0.9))
    b.span("r3", "agentlightning.annotation", 8, 8, **reward_attrs(0.4))
    got = compare(store, rid, {"adapter": "llm_proxy"}, LlmProxyTraceToTriplet())
    tr = got["triplets"]
    assert [t["prompt"]["token_ids"] for t in tr] == [[1, 2, 3], [1, 2, 3, 4, 5, 6], [9]]
    assert [t["reward"] for t in tr] == [0.1, 0.4, 0.9]
    assert got == ours(store, rid, adapter="auto")
    # trajectory level: turns 0 and 1 merge (prefix), turn 2 starts a new sample
    got = ours(store, rid, adapter="llm_proxy", level="trajectory")
    tj = got["trajectories"]
    assert [g["turns"] for g in tj] == [[0, 1], [2]]
    assert tj[0]["prompt_ids"] == [1, 2, 3]
    assert tj[0]["response_ids"] == [4, 5, 6, 7, 8]
    assert tj[0]["response_mask"] == [1, 1, 0, 1, 1]
    assert tj[1]["response_mask"] == [1, 1]
    assert all(g["reward"] == got["final_reward"] == 0.9 for g in tj)


def test_messages_match_reference(store):
    rid, aid = new_rollout(store)
    b = Builder(store, rid, aid)
    b.span("root", "session", 0, 100)
    b.span("l1", "openai.chat.completion", 1, 10, "root", **{
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "be brief",
        "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "weather?",
        "gen_ai.prompt.2.role": "assistant",
        "gen_ai.prompt.2.tool_calls.0.id": "c0", "gen_ai.prompt.2.tool_calls.0.name": "f",
        "gen_ai.prompt.2.tool_calls.0.arguments": "{}",
        "gen_ai.prompt.3.role": "tool", "gen_ai.prompt.3.content": "sunny",
        "gen_ai.prompt.3.tool_call_id": "c0",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "calling",
        "gen_ai.request.functions.0.name": "get_weather",
        "gen_ai.request.functions.0.parameters": json.dumps({"type": "object"}),
        "gen_ai.response.id": "m1"})
    b.span("t1", "tool", 3, 4, "l1", **{"tool.name": "get_weather", "tool.parameters": "{}",
                                       "tool.call.id": "c1", "tool.call.type": "function"})
    b.span("l2", "openai.chat.completion", 11, 20, "root",
           **llm_attrs("m2", "thanks", "welcome"))
    b.span("rw", "agentlightning.annotation", 21, 21, "root", **reward_attrs(0.6))
    got = expect(store.get(f"/rollouts/{rid}/messages"), 200)
    want = norm(TraceToMessages().adapt(ref_spans(store, rid)))
    assert got["messages"] == want, json.dumps({"ours": got["messages"], "ref": want}, indent=1)
    assert got["final_reward"] == 0.6
    assert len(want) == 2 and want[0]["tools"][0]["function"]["name"] == "get_weather"
    page = expect(store.post("/messages/search", {"rollout_id_in": [rid]}), 200)
    assert page["total"] == 1 and page["items"][0] == got


# ---- search: filters, pagination, errors ----

def test_search_filters_and_pages(store):
    ids = []
    for i in range(5):
        rid, aid = new_rollout(store, mode="train" if i % 2 == 0 else "val")
        b = Builder(store, rid, aid)
        b.span("root", "session", 0, 10)
        b.span("l", "openai.chat.completion", 1, 2, "root", **llm_attrs(f"id{i}", ptoks=[i],
                                                                        rtoks=[i]))
        b.span("rw", "agentlightning.annotation", 3, 3, "root", **reward_attrs(float(i)))
        ids.append(rid)
    store.update_rollout(ids[0], status="succeeded")
    store.update_rollout(ids[2], status="failed")
    page = expect(store.post("/triplets/search", {}), 200)
    assert page["total"] == 5 and [it["rollout_id"] for it in page["items"]] == ids
    assert [it["final_reward"] for it in page["items"]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    page = expect(store.post("/triplets/search", {"mode_in": ["train"], "limit": 2}), 200)
    assert page["total"] == 3 and [it["rollout_id"] for it in page["items"]] == [ids[0], ids[2]]
    page = expect(store.post("/triplets/search", {"mode_in": ["train"], "limit": 2,
                                                  "offset": 2}), 200)
    assert [it["rollout_id"] for it in page["items"]] == [ids[4]]
    page = expect(store.post("/triplets/search", {"status_in": ["succeeded", "failed"],
                                                  "sort_by": "rollout_id",
                                                  "sort_order": "desc"}), 200)
    assert [it["rollout_id"] for it in page["items"]] == sorted([ids[0], ids[2]], reverse=True)
    page = expect(store.post("/triplets/search", {"rollout_id_in": [ids[1], ids[3]]}), 200)
    assert [it["triplets"][0]["metadata"]["response_id"] for it in page["items"]] == ["id1", "id3"]
    page = expect(store.post("/triplets/search", {"start_time_from": 0, "start_time_to": 1}), 200)
    assert page["total"] == 0 and page["items"] == []
    page = expect(store.post("/triplets/search", {"offset": 10}), 200)
    assert page["total"] == 5 and page["items"] == []
    # every rollout's triplets equal the reference's
    for rid in ids:
        compare(store, rid)


def test_rollout_without_spans_or_attempts(store):
    ro = store.enqueue_one()
    got = ours(store, ro["rollout_id"])
    assert got["attempt_id"] is None and got["triplets"] == [] and got["final_reward"] is None
    rid, _ = new_rollout(store)
    assert ours(store, rid)["triplets"] == []


def test_errors(store):
    rid, _ = new_rollout(store)
    expect_detail(store.get("/rollouts/ro-nope/triplets"), 404)
    expect_detail(store.get("/rollouts/ro-nope/messages"), 404)
    expect_422(store.get(f"/rollouts/{rid}/triplets", params={"adapter": "magic"}), "adapter")
    expect_422(store.get(f"/rollouts/{rid}/triplets", params={"level": "x"}), "level")
    expect_422(store.get(f"/rollouts/{rid}/triplets", params={"repair_hierarchy": "maybe"}))
    expect_detail(store.get(f"/rollouts/{rid}/triplets", params={"agent_match": "(("}), 400)
    expect_422(store.post("/triplets/search", {"status_in": ["nope"]}), "status_in")
    expect_422(store.post("/triplets/search", {"mode_in": ["prod"]}), "mode_in")
    expect_422(store.post("/triplets/search", {"rollout_id_in": "x"}), "rollout_id_in")
    expect_422(store.post("/triplets/search", {"start_time_from": "soon"}), "start_time_from")
    expect_422(store.post("/triplets/search", [1]))
    expect_detail(store.post("/triplets/search", {"limit": 0}), 400)
    expect_detail(store.post("/triplets/search", {"sort_by": "input"}), 400)
    expect_detail(store.get("/triplets/search"), 405)
