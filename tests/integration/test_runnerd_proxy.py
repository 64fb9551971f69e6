"""runnerd's LLM proxy against a real stored and a fake OpenAI-compatible upstream, driven by
the real `openai` SDK: non-streaming and streaming calls are passed through and recorded as
spans of the attempt in the reference LLMProxy's attribute format, token ids included."""

from __future__ import annotations

import ast
import json
import subprocess

import openai
import pytest
import requests

from runnerd_support import FakeUpstream, Runnerd, runnerd_binary, tokenize, wait_until


@pytest.fixture
def upstream():
    up = FakeUpstream()
    yield up
    up.close()


@pytest.fixture
def proxy(store, upstream):
    r = Runnerd(store.url, "--proxy-only", "--upstream", upstream.url,
                env={"OPENAI_API_KEY": "sk-upstream-secret"})
    yield r
    r.kill()


def attempt_ids(store):
    ro = store.start_rollout(input={"q": "x"})
    return ro["rollout_id"], ro["attempt"]["attempt_id"]


def llm_spans(store, rid, n_calls, timeout=10.0):
    def got():
        items = store.spans(rid)["items"]
        return items if sum(s["name"] == "litellm_request" for s in items) >= n_calls else None
    return wait_until(got, timeout, 0.05, f"{n_calls} recorded LLM calls")


def test_non_streaming_call_is_forwarded_and_recorded(store, upstream, proxy):
    rid, aid = attempt_ids(store)
    client = openai.OpenAI(base_url=f"{proxy.proxy_url}/rollout/{rid}/attempt/{aid}/v1",
                           api_key="agent-key-not-used", max_retries=0)
    resp = client.chat.completions.create(
        model="fake-model", temperature=0.3,
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "what is two plus two"}])
    assert resp.choices[0].message.content == "echo what is two plus two"

    # the agent's key is replaced by the upstream key; token ids were asked for
    sent = upstream.requests[-1]
    assert sent["headers"]["Authorization"] == "Bearer sk-upstream-secret"
    assert sent["body"]["return_token_ids"] is True
    assert sent["path"] == "/v1/chat/completions"

    spans = llm_spans(store, rid, 1)
    by_name = {s["name"]: s for s in spans}
    root, raw = by_name["litellm_request"], by_name["raw_gen_ai_request"]
    assert root["attempt_id"] == aid and raw["attempt_id"] == aid
    assert root["sequence_id"] == raw["sequence_id"] == 1
    assert raw["parent_id"] == root["span_id"] and root["parent_id"] is None
    a = root["attributes"]
    assert a["gen_ai.prompt.0.role"] == "system" and a["gen_ai.prompt.1.content"] == \
        "what is two plus two"
    assert a["gen_ai.completion.0.content"] == "echo what is two plus two"
    assert a["gen_ai.completion.0.finish_reason"] == "stop"
    assert a["gen_ai.request.temperature"] == 0.3
    assert a["gen_ai.response.id"] == resp.id
    assert a["gen_ai.usage.total_tokens"] == resp.usage.total_tokens
    assert a["prompt_token_ids"] == tokenize("what is two plus two")
    assert a["response_token_ids"] == tokenize("echo what is two plus two")
    assert a["llm.is_streaming"] is False
    assert a["agl.proxy.latency_ms"] > 0
    hdrs = ast.literal_eval(a["metadata.requester_custom_headers"])
    assert hdrs == {"x-rollout-id": rid, "x-attempt-id": aid, "x-sequence-id": "1"}
    # the raw span carries Python-literal strings, as the reference adapter expects
    r = raw["attributes"]
    assert ast.literal_eval(r["llm.hosted_vllm.prompt_token_ids"]) == a["prompt_token_ids"]
    choices = ast.literal_eval(r["llm.hosted_vllm.choices"])
    assert choices[0]["token_ids"] == a["response_token_ids"]
    assert r["llm.hosted_vllm.id"] == resp.id
    assert root["resource"]["attributes"]["agentlightning.rollout_id"] == rid


def test_health_counts_recorded_and_exported_calls(store, upstream, proxy):
    """/health tells how far the exporter is: calls recorded, their spans acknowledged by the
    store, and calls whose spans the store refused (the benchmark waits on these)."""
    h0 = requests.get(f"{proxy.proxy_url}/health").json()
    assert h0 == {"status": "ok", "recorded_calls": 0, "exported_calls": 0, "lost_calls": 0}
    rid, aid = attempt_ids(store)
    client = openai.OpenAI(base_url=f"{proxy.proxy_url}/rollout/{rid}/attempt/{aid}/v1",
                           api_key="k", max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
    # not attributed to an attempt: forwarded, not recorded
    openai.OpenAI(base_url=f"{proxy.proxy_url}/v1", api_key="k", max_retries=0) \
        .chat.completions.create(model="m", messages=[{"role": "user", "content": "b"}])
    h = wait_until(lambda: (lambda h: h if h["exported_calls"] == 3 else None)(
        requests.get(f"{proxy.proxy_url}/health").json()), 10, 0.05, "3 exported calls")
    assert h == {"status": "ok", "recorded_calls": 3, "exported_calls": 3, "lost_calls": 0}
    assert len(llm_spans(store, rid, 3)) == 6


def test_streaming_passes_chunks_and_keeps_token_ids(store, upstream, proxy):
    rid, aid = attempt_ids(store)
    client = openai.OpenAI(base_url=f"{proxy.proxy_url}/rollout/{rid}/attempt/{aid}/v1",
                           api_key="x", max_retries=0)
    upstream.reply = lambda msgs: "one two three four five six"
    chunks = list(client.chat.completions.create(
        model="fake-model", stream=True, messages=[{"role": "user", "content": "count"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five six"
    assert len(chunks) >= 7  # passed through chunk by chunk, not re-batched
    spans = llm_spans(store, rid, 1)
    root = next(s for s in spans if s["name"] == "litellm_request")
    a = root["attributes"]
    assert a["llm.is_streaming"] is True
    assert a["gen_ai.completion.0.content"] == "one two three four five six"
    assert a["gen_ai.completion.0.finish_reason"] == "stop"
    assert a["response_token_ids"] == tokenize("one two three four five six")
    assert a["prompt_token_ids"] == tokenize("count")
    assert a["gen_ai.response.id"] == chunks[0].id
    assert a["agl.proxy.ttft_ms"] >= 0


def test_streaming_with_logprobs_and_usage(store, upstream):
    r = Runnerd(store.url, "--proxy-only", "--upstream", upstream.url, "--logprobs")
    try:
        rid, aid = attempt_ids(store)
        client = openai.OpenAI(base_url=f"{r.proxy_url}/rollout/{rid}/attempt/{aid}/v1",
                               api_key="x", max_retries=0)
        upstream.reply = lambda msgs: "alpha beta"
        chunks = list(client.chat.completions.create(
            model="m", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "hi"}]))
        assert chunks[-1].usage.total_tokens == 3
        a = next(s for s in llm_spans(store, rid, 1)
                 if s["name"] == "litellm_request")["attributes"]
        lp = json.loads(a["logprobs.content"])
        assert [x["token"] for x in lp] == ["alpha", "beta"]
        assert a["gen_ai.usage.total_tokens"] == 3
    finally:
        r.kill()


def test_header_attribution_and_sequence_ids(store, upstream, proxy):
    rid, aid = attempt_ids(store)
    client = openai.OpenAI(base_url=f"{proxy.proxy_url}/v1", api_key="x", max_retries=0,
                           default_headers={"x-rollout-id": rid, "x-attempt-id": aid})
    for i in range(3):
        client.chat.completions.create(model="m", messages=[{"role": "user",
                                                             "content": f"q{i}"}])
    spans = llm_spans(store, rid, 3)
    seqs = sorted(s["sequence_id"] for s in spans if s["name"] == "raw_gen_ai_request")
    assert seqs == [1, 2, 3]
    # completions and models work too; unattributed calls are forwarded but not recorded
    c2 = openai.OpenAI(base_url=f"{proxy.proxy_url}/v1", api_key="x", max_retries=0)
    comp = c2.completions.create(model="m", prompt="say hello")
    assert comp.choices[0].text == "echo say hello"
    assert [m.id for m in c2.models.list()] == ["fake-model"]
    assert len(store.spans(rid)["items"]) == 6


def test_concurrent_calls_get_distinct_sequence_ids(store, upstream, proxy):
    """Concurrent calls' sequence ids are allocated together (one store request for all the
    calls waiting at that moment): every call still gets its own id, ids of one rollout are
    1..n with no gap, and each call's two spans share its id."""
    import concurrent.futures
    pairs = [attempt_ids(store) for _ in range(2)]

    def call(k):
        rid, aid = pairs[k % 2]
        client = openai.OpenAI(base_url=f"{proxy.proxy_url}/rollout/{rid}/attempt/{aid}/v1",
                               api_key="x", max_retries=0)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"{k}"}])

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(call, range(48)))
    for rid, _ in pairs:
        spans = llm_spans(store, rid, 24)
        root = sorted(s["sequence_id"] for s in spans if s["name"] == "litellm_request")
        raw = sorted(s["sequence_id"] for s in spans if s["name"] == "raw_gen_ai_request")
        assert root == raw == list(range(1, 25))


def test_upstream_errors_are_passed_back_and_recorded(store, upstream, proxy):
    rid, aid = attempt_ids(store)
    base = f"{proxy.proxy_url}/rollout/{rid}/attempt/{aid}/v1"
    upstream.fail_status = 503
    r = requests.post(base + "/chat/completions", json={"model": "m", "messages": []},
                      timeout=10)
    assert r.status_code == 503
    assert r.json()["error"]["message"] == "model overloaded"
    root = next(s for s in llm_spans(store, rid, 1) if s["name"] == "litellm_request")
    assert root["status"]["status_code"] == "ERROR"
    assert "503" in root["status"]["description"]
    assert root["attributes"]["http.status_code"] == 503

    # a dead upstream: 502 with a JSON body naming it, still recorded
    dead = Runnerd(store.url, "--proxy-only", "--upstream", "http://127.0.0.1:9/v1")
    try:
        client = openai.OpenAI(base_url=f"{dead.proxy_url}/rollout/{rid}/attempt/{aid}/v1",
                               api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as ei:
            client.chat.completions.create(model="m", messages=[{"role": "user",
                                                                 "content": "x"}])
        assert ei.value.status_code == 502
        assert "127.0.0.1:9" in ei.value.body["message"]
        llm_spans(store, rid, 2)
    finally:
        dead.kill()

    bad = requests.post(base + "/chat/completions", data=b"{not json", timeout=10)
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    assert requests.get(f"{proxy.proxy_url}/v1/nothing", timeout=5).status_code == 404


def test_upstream_timeout_gives_504(store, upstream):
    upstream.delay = 2.0
    r = Runnerd(store.url, "--proxy-only", "--upstream", upstream.url,
                "--upstream-timeout", "0.5")
    try:
        rid, aid = attempt_ids(store)
        resp = requests.post(f"{r.proxy_url}/rollout/{rid}/attempt/{aid}/v1/chat/completions",
                             json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                             timeout=10)
        assert resp.status_code == 504
        assert "timed out" in resp.json()["error"]["message"]
        root = next(s for s in llm_spans(store, rid, 1) if s["name"] == "litellm_request")
        assert root["status"]["status_code"] == "ERROR"
    finally:
        r.kill()


def test_upstream_without_token_ids_support(store, upstream, proxy):
    upstream.reject_token_ids = True
    rid, aid = attempt_ids(store)
    client = openai.OpenAI(base_url=f"{proxy.proxy_url}/rollout/{rid}/attempt/{aid}/v1",
                           api_key="x", max_retries=0)
    for _ in range(2):
        out = client.chat.completions.create(model="m", messages=[{"role": "user",
                                                                   "content": "hi"}])
        assert out.choices[0].message.content == "echo hi"
    # first call retried without the field, the second never sends it
    assert ["return_token_ids" in q["body"] for q in upstream.requests] == [True, False, False]
    root = next(s for s in llm_spans(store, rid, 2) if s["name"] == "litellm_request")
    assert root["status"]["status_code"] == "OK"
    assert "prompt_token_ids" not in root["attributes"]


def test_cli_help_version_and_bad_options():
    out = subprocess.run([runnerd_binary(), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--proxy-listen" in out.stdout and "--agent" in out.stdout
    out = subprocess.run([runnerd_binary(), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip()
    out = subprocess.run([runnerd_binary(), "--agent", "bogus"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--agent 'bogus'" in out.stderr
    out = subprocess.run([runnerd_binary(), "--workers", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and "--workers" in out.stderr
    out = subprocess.run([runnerd_binary(), "--proxy-only", "--proxy-listen", "nonsense"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 1 and "HOST:PORT" in out.stderr


def test_proxy_only_finds_the_upstream_in_main_llm(store, upstream):
    """Standalone proxy with no --upstream: the model server is the rollout's main_llm."""
    res = store.add_resources({"main_llm": {"resource_type": "llm", "endpoint": upstream.url,
                                            "model": "fake-model", "api_key": "sk-from-resource"}})
    r = Runnerd(store.url, "--proxy-only")
    try:
        ro = store.start_rollout(input={"q": "x"}, resources_id=res["resources_id"])
        rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
        client = openai.OpenAI(base_url=f"{r.proxy_url}/rollout/{rid}/attempt/{aid}/v1",
                               api_key="agent-key-not-used", max_retries=0)
        for _ in range(2):  # the second call is served from the look-up cache
            resp = client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "ping"}])
            assert resp.choices[0].message.content == "echo ping"
        assert upstream.requests[-1]["headers"]["Authorization"] == "Bearer sk-from-resource"
        assert len(llm_spans(store, rid, 2)) >= 4  # both calls recorded for the attempt

        # a rollout whose resources have no llm: nothing to forward to, a clear 502
        bare = store.add_resources({"p": {"resource_type": "prompt_template", "template": "t",
                                          "engine": "f-string"}})
        ro = store.start_rollout(input={"q": "y"}, resources_id=bare["resources_id"])
        client = openai.OpenAI(
            base_url=f"{r.proxy_url}/rollout/{ro['rollout_id']}/attempt/"
                     f"{ro['attempt']['attempt_id']}/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == 502 and "no llm resource" in str(e.value)
    finally:
        r.kill()
