"""A training-style run of the reference ``agentlightning.Trainer`` against ``stored``.

Layout (what a user gets when pointing agent-lightning at an external store):

* ``Trainer(store=LightningStoreClient(stored.url), strategy=ClientServerExecutionStrategy(
  role="both", n_runners=2, managed_store=False))`` — with ``managed_store=False`` the strategy
  neither starts its own LightningStoreServer nor builds clients itself: the algorithm (main
  process) and both runner processes (forked; the client pickles/forks down to its address) use
  the given client, i.e. our server.
* Runners: the stock ``LitAgentRunner`` with an ``OtelTracer``.  Because the client advertises
  ``otlp_traces``, the tracer exports every finished span as OTLP/HTTP protobuf to
  ``<stored>/v1/traces``; a float returned by the agent becomes a reward span that the runner
  adds via ``/spans/next`` + ``/spans``.
* The agent emits an operation span, a message span nested inside it and a reward (odd tasks via
  ``emit_reward`` through the tracer/OTLP, even tasks by returning the float).  One task fails on
  its first attempt and is retried by the store (``max_attempts=2, retry_condition=["failed"]``).

No LLM is involved.  Afterwards everything is verified over plain HTTP (``requests``).

Environment note: agentlightning 0.3.0 points its ``LightningStoreOTLPExporter`` at the store by
assigning ``OTLPSpanExporter._endpoint``.  From opentelemetry-exporter-otlp-proto-http 1.4x on,
the URL lives inside the exporter's private HTTP client, so that assignment has no effect and the
spans would go to the OTLP default ``localhost:4318`` (each export stalling ~7 s in retries).  The
tests therefore set ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` to ``<stored>/v1/traces`` — the very
URL ``client.otlp_traces_endpoint()`` advertises — so the exporter's default target is the store.
The wire traffic is identical to a working 0.3.1 setup: OTLP/HTTP protobuf with
``agentlightning.rollout_id``/``attempt_id`` resource attributes, one POST per finished span.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Dict, List, Optional

import requests

from agentlightning import (
    Baseline,
    ClientServerExecutionStrategy,
    LitAgent,
    LitAgentRunner,
    OtelTracer,
    Trainer,
)
from agentlightning.adapter.triplet import TracerTraceToTriplet
from agentlightning.algorithm.base import Algorithm
from agentlightning.emitter import emit_message, emit_reward, find_final_reward, operation
from agentlightning.store.client_server import LightningStoreClient
from agentlightning.types import EnqueueRolloutRequest, PromptTemplate, RolloutConfig, Span

N_TASKS = 12
FLAKY_ID = 5  # fails on attempt 1, succeeds on attempt 2
WORKERS = {"Worker-0", "Worker-1"}


def expected_reward(task: Dict[str, Any]) -> float:
    return (task["a"] + task["b"]) / 100.0


class ArithmeticAgent(LitAgent[Dict[str, Any]]):
    """Deterministic 'agent': emits spans through the active tracer and returns/emits a reward."""

    def rollout(self, task: Dict[str, Any], resources: Any, rollout: Any) -> Optional[float]:
        prompt = resources["prompt"]
        assert isinstance(prompt, PromptTemplate), f"resources not delivered: {resources!r}"
        if task.get("flaky") and rollout.attempt.sequence_id == 1:
            raise RuntimeError("flaky task fails on its first attempt")
        with operation(name="compute", task_id=task["id"]) as op:
            op.set_input(a=task["a"], b=task["b"])
            emit_message(f"task {task['id']}: " + prompt.template.format(**task))
            result = task["a"] + task["b"]
            op.set_output(result)
        time.sleep(0.05)  # let both runners get work
        reward = expected_reward(task)
        if task["id"] % 2 == 1:
            emit_reward(reward)  # exported by the tracer via OTLP
            return None
        return reward  # the runner stores the reward span itself


class EnqueueAndWait(Algorithm):
    """Minimal algorithm: publish resources, enqueue all tasks, poll until all rollouts finish."""

    def __init__(self, tasks: List[Dict[str, Any]], deadline_s: float = 90.0) -> None:
        super().__init__()
        self.tasks = tasks
        self.deadline_s = deadline_s
        self.rollout_ids: List[str] = []
        self.finished: List[Any] = []
        self.rewards: Dict[str, Optional[float]] = {}
        self.resources_id: Optional[str] = None

    async def run(self, train_dataset: Any = None, val_dataset: Any = None) -> None:
        store = self.get_store()
        ru = await store.add_resources({"prompt": PromptTemplate(template="Compute {a}+{b}", engine="f-string")})
        self.resources_id = ru.resources_id
        cfg = RolloutConfig(max_attempts=2, retry_condition=["failed"])
        created = await store.enqueue_many_rollouts(
            [
                EnqueueRolloutRequest(input=t, mode="train" if t["id"] % 4 else "val", config=cfg)
                for t in self.tasks
            ]
        )
        self.rollout_ids = [r.rollout_id for r in created]
        deadline = time.monotonic() + self.deadline_s
        while time.monotonic() < deadline:
            self.finished = await store.wait_for_rollouts(rollout_ids=self.rollout_ids, timeout=0)
            if len(self.finished) == len(self.rollout_ids):
                break
            await asyncio.sleep(0.2)
        for rid in self.rollout_ids:
            spans = await store.query_spans(rid, "latest")
            self.rewards[rid] = find_final_reward(list(spans.items))


def _post(url: str, body: Any) -> Any:
    r = requests.post(url, json=body, timeout=10)
    assert r.status_code == 200, (url, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def _get(url: str, **params: Any) -> Any:
    r = requests.get(url, params=params, timeout=10)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()


def _make_trainer(store_url: str, algorithm: Algorithm, n_runners: int = 2, **kwargs: Any) -> Trainer:
    tracer = OtelTracer()
    runner = LitAgentRunner(tracer, poll_interval=0.2, heartbeat_interval=1.0, interval_jitter=0.05)
    strategy = ClientServerExecutionStrategy(
        role="both", n_runners=n_runners, managed_store=False, graceful_timeout=15.0, terminate_timeout=5.0
    )
    return Trainer(
        algorithm=algorithm,
        n_runners=n_runners,
        store=LightningStoreClient(store_url),
        strategy=strategy,
        runner=runner,
        tracer=tracer,
        **kwargs,
    )


def _route_otlp_to(store_url: str, monkeypatch: Any) -> None:
    endpoint = LightningStoreClient(store_url).otlp_traces_endpoint()
    assert endpoint == store_url + "/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "5")


def test_trainer_fit_with_two_runners(store, monkeypatch):
    _route_otlp_to(store.url, monkeypatch)
    tasks = [{"id": i, "a": i, "b": 2 * i + 1} for i in range(N_TASKS)]
    tasks[FLAKY_ID]["flaky"] = True
    algo = EnqueueAndWait(tasks)
    trainer = _make_trainer(store.url, algo)

    trainer.fit(ArithmeticAgent(), train_dataset=tasks)

    # ---- what the algorithm saw through the client ----
    assert len(algo.rollout_ids) == N_TASKS
    assert len(algo.finished) == N_TASKS, "not all rollouts finished before the algorithm's deadline"
    assert {r.status for r in algo.finished} == {"succeeded"}
    for rid, task in zip(algo.rollout_ids, tasks):
        assert algo.rewards[rid] == expected_reward(task), (rid, task)

    # ---- verified independently over HTTP ----
    base = store.url + "/v1/agl"
    page = _post(base + "/rollouts/search", {"rollout_id_in": algo.rollout_ids, "limit": -1, "offset": 0})
    assert page["total"] == N_TASKS
    items = {it["rollout_id"]: it for it in page["items"]}
    assert set(items) == set(algo.rollout_ids)

    workers_used = set()
    for rid, task in zip(algo.rollout_ids, tasks):
        ro = items[rid]
        assert ro["status"] == "succeeded", ro
        assert ro["end_time"] is not None
        assert ro["input"] == task
        assert ro["resources_id"] == algo.resources_id
        assert ro["mode"] == ("train" if task["id"] % 4 else "val")
        att = ro["attempt"]
        assert att["status"] == "succeeded" and att["end_time"] is not None
        assert att["worker_id"] in WORKERS
        assert att["last_heartbeat_time"] is not None  # spans arrived for it
        workers_used.add(att["worker_id"])

        attempts = _get(f"{base}/rollouts/{rid}/attempts")["items"]
        if task["id"] == FLAKY_ID:
            assert [a["status"] for a in attempts] == ["failed", "succeeded"]
            assert [a["sequence_id"] for a in attempts] == [1, 2]
        else:
            assert [a["status"] for a in attempts] == ["succeeded"]

        spans = _post(
            base + "/spans/search",
            {"rollout_id": rid, "attempt_id": "latest", "limit": -1, "offset": 0, "sort_by": "sequence_id"},
        )["items"]
        by_name: Dict[str, List[Dict[str, Any]]] = {}
        for s in spans:
            by_name.setdefault(s["name"], []).append(s)
            assert s["rollout_id"] == rid and s["attempt_id"] == att["attempt_id"]
        seqs = [s["sequence_id"] for s in spans]
        assert len(seqs) == len(set(seqs)), f"duplicate sequence ids: {seqs}"
        assert seqs == sorted(seqs)

        # Tracer spans: exported by the OTLP exporter to POST /v1/traces.
        (op,) = by_name["agentlightning.operation"]
        (msg,) = by_name["agentlightning.message"]
        assert op["attributes"]["agentlightning.operation.name"] == "compute"
        assert op["attributes"]["task_id"] == task["id"]
        assert op["attributes"]["agentlightning.operation.output"] == task["a"] + task["b"]
        assert msg["attributes"]["agentlightning.message.body"] == f"task {task['id']}: Compute {task['a']}+{task['b']}"
        assert msg["parent_id"] == op["span_id"] and msg["trace_id"] == op["trace_id"]
        for s in (op, msg):
            res = s["resource"]["attributes"]
            assert res["agentlightning.rollout_id"] == rid
            assert res["agentlightning.attempt_id"] == att["attempt_id"]
            # OTLP conversion (spec §6.3) never fills `parent` and has no extra keys; the
            # client-side add_otel_span path would carry a parent SpanContext for `msg`.
            assert s["parent"] is None
            assert s["context"]["span_id"] == s["span_id"]
            assert s["start_time"] is not None and s["end_time"] is not None
            assert s["end_time"] >= s["start_time"]
        assert msg["sequence_id"] < op["sequence_id"]  # the nested span ends (is exported) first

        # Reward span: last span of the attempt, value matches.
        (rw,) = by_name["agentlightning.annotation"]
        assert rw["attributes"]["agentlightning.reward.0.name"] == "primary"
        assert rw["attributes"]["agentlightning.reward.0.value"] == expected_reward(task)
        assert rw["sequence_id"] == max(seqs)
        if task["id"] % 2 == 1:
            assert rw["resource"]["attributes"].get("agentlightning.rollout_id") == rid  # came via OTLP
        ref_spans = [Span.model_validate(s) for s in spans]
        assert find_final_reward(ref_spans) == expected_reward(task)
        # stored's server-side adapters agree with the reference adapters on these real spans
        ours = _get(f"{base}/rollouts/{rid}/triplets")
        assert ours["final_reward"] == expected_reward(task)
        want = json.loads(json.dumps([t.model_dump() for t in TracerTraceToTriplet().adapt(ref_spans)]))
        assert ours["triplets"] == want
        # No LLM runs here, so also treat the agent's message span as the "call": the trace
        # tree, reward matching and attribute unflattening then all act on real tracer spans.
        ours = _get(f"{base}/rollouts/{rid}/triplets", llm_call_match=r"agentlightning\.message")
        ref = TracerTraceToTriplet(llm_call_match=r"agentlightning\.message").adapt(ref_spans)
        want = json.loads(json.dumps([t.model_dump() for t in ref]))
        assert len(want) == 1 and ours["triplets"] == want, (ours["triplets"], want)
        assert set(by_name) == {"agentlightning.operation", "agentlightning.message", "agentlightning.annotation"}

    # Both runner processes talked to the store as distinct workers.
    workers = {w["worker_id"]: w for w in _get(base + "/workers")["items"]}
    assert WORKERS <= set(workers), workers.keys()
    assert workers_used <= WORKERS
    for wid in WORKERS:
        assert workers[wid]["last_dequeue_time"] is not None
        assert workers[wid]["status"] in ("idle", "unknown")
        assert workers[wid]["current_rollout_id"] is None

    stats = _get(base + "/statistics")
    assert stats["total_rollouts"] == N_TASKS
    assert stats["total_attempts"] == N_TASKS + 1  # the flaky task was retried once
    assert stats["total_resources"] == 1
    # operation + message + reward per rollout; the flaky first attempt raised before any span.
    assert stats["total_spans"] == 3 * N_TASKS
    # Nothing left in the queue.
    assert _post(base + "/queues/rollouts/dequeue", {"limit": 5}) == []


def test_trainer_dev_baseline_algorithm(store, monkeypatch):
    """`Trainer.dev` with the stock `Baseline` fast algorithm (update_resources, query_rollouts,
    get_rollout_by_id polling, query_attempts, query_spans + triplet adapter) on two runners."""
    _route_otlp_to(store.url, monkeypatch)
    tasks = [{"id": i, "a": i, "b": 1} for i in range(4)]
    val = [{"id": 100 + i, "a": i, "b": 2} for i in range(2)]
    algo = Baseline(polling_interval=0.1, max_queue_length=4, span_verbosity="none")
    trainer = _make_trainer(
        store.url, algo, initial_resources={"prompt": PromptTemplate(template="Compute {a}+{b}", engine="f-string")}
    )

    t0 = time.monotonic()
    trainer.dev(ArithmeticAgent(), train_dataset=tasks, val_dataset=val)
    assert time.monotonic() - t0 < 100

    base = store.url + "/v1/agl"
    page = _post(base + "/rollouts/search", {"limit": -1, "offset": 0})
    assert page["total"] == len(tasks) + len(val)
    assert {it["status"] for it in page["items"]} == {"succeeded"}
    assert sorted(it["input"]["id"] for it in page["items"]) == sorted(t["id"] for t in tasks + val)
    modes = {it["input"]["id"]: it["mode"] for it in page["items"]}
    assert all(modes[t["id"]] == "train" for t in tasks) and all(modes[t["id"]] == "val" for t in val)
    # Baseline publishes the initial resources under the fixed id "default".
    res = _get(base + "/resources/default")
    assert res is not None and res["version"] == 1 and res["resources"]["prompt"]["engine"] == "f-string"
    assert {it["resources_id"] for it in page["items"]} == {"default"}
    for it in page["items"]:
        spans = _post(base + "/spans/search", {"rollout_id": it["rollout_id"], "attempt_id": "latest"})["items"]
        assert find_final_reward([Span.model_validate(s) for s in spans]) == expected_reward(it["input"])
