"""Scenario workload of the store benchmark (algorithms.md §7.2, `benchmark_store.py --mode batch`),
scaled down for a small machine: the real agentlightning Trainer with N forked runner processes and
the batch algorithm in this process, everything talking HTTP to an external store at --store-url.

Agent: R = randint(1, max_rounds) rounds; per round a span `agent{i}` holding two nested spans
`round{i}_1`, `round{i}_2`, each after sleep(U(0, sleep)) and carrying random flattened attributes
(depth 1-3, breadth 2-6, keys 3-20, values 5-300 chars); `round{selected}_1` carries `task`; with
p = 0.5 a reward U(0, 1); then a `final` span and the final reward U(1, 2). Spans reach the store
through the runner's tracer as OTLP/HTTP protobuf, one POST per finished span.

Algorithm (batch): add a resources snapshot, enqueue batch_size rollouts one call each, then every
--poll seconds wait_for_rollouts(timeout=0); each finished rollout must have succeeded and its
spans (query_spans(attempt_id="latest")) must hold the task and a final reward in [1, 2].

Prints one JSON line: rollouts, seconds (whole window: runner start-up to the last validation, as
the reference's rollouts/s), rollouts_s, p50/p95/p99 of rollout latency (enqueue -> end_time) in
ms, failures, spans.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import string
import sys
import time
from typing import Any, Dict, List

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from opentelemetry import trace  # noqa: E402

from agentlightning import (  # noqa: E402
    LLM,
    ClientServerExecutionStrategy,
    LitAgent,
    LitAgentRunner,
    OtelTracer,
    Trainer,
)
from agentlightning.algorithm.base import Algorithm  # noqa: E402
from agentlightning.emitter import emit_reward, find_final_reward  # noqa: E402
from agentlightning.store.client_server import LightningStoreClient  # noqa: E402

ALNUM = string.ascii_letters + string.digits


def generate_attributes() -> Dict[str, str]:
    """Random nested dict (depth 1-3, breadth 2-6), flattened with dots."""
    out: Dict[str, str] = {}

    def rnd(a: int, b: int) -> str:
        return "".join(random.choices(ALNUM, k=random.randint(a, b)))

    def fill(prefix: str, depth: int) -> None:
        for _ in range(random.randint(2, 6)):
            key = prefix + rnd(3, 20)
            if depth > 1 and random.random() < 0.5:
                fill(key + ".", depth - 1)
            else:
                out[key] = rnd(5, 300)

    fill("", random.randint(1, 3))
    return out


class BenchAgent(LitAgent[str]):
    def __init__(self, max_rounds: int, sleep_s: float) -> None:
        super().__init__()
        self.max_rounds = max_rounds
        self.sleep_s = sleep_s

    async def rollout_async(self, task: str, resources: Any, rollout: Any) -> None:
        tracer = trace.get_tracer("agl-bench")
        rounds = random.randint(1, self.max_rounds)
        selected = random.randint(1, rounds)
        for i in range(1, rounds + 1):
            with tracer.start_as_current_span(f"agent{i}"):
                for j in (1, 2):
                    await asyncio.sleep(random.uniform(0, self.sleep_s))
                    attrs = generate_attributes()
                    if i == selected and j == 1:
                        attrs["task"] = task
                    with tracer.start_as_current_span(f"round{i}_{j}", attributes=attrs):
                        pass
            if random.random() < 0.5:
                emit_reward(random.uniform(0, 1))
        await asyncio.sleep(random.uniform(0, self.sleep_s))
        with tracer.start_as_current_span("final", attributes=generate_attributes()):
            pass
        emit_reward(random.uniform(1, 2))
        return None


class AlgorithmBatch(Algorithm):
    def __init__(self, total: int, batch: int, poll_s: float) -> None:
        super().__init__()
        self.total, self.batch, self.poll_s = total, batch, poll_s
        self.latencies: List[float] = []
        self.failures = 0
        self.spans = 0
        self.t_end = 0.0

    async def run(self, train_dataset: Any = None, val_dataset: Any = None) -> None:
        store = self.get_store()
        submitted = 0
        while submitted < self.total:
            await store.add_resources(
                {"llm": LLM(endpoint=f"http://localhost:{submitted}/v1", model=f"test-model-{submitted}")}
            )
            pending: Dict[str, str] = {}
            for k in range(min(self.batch, self.total - submitted)):
                task = f"task-{submitted + k}-generated"
                r = await store.enqueue_rollout(input=task, mode="train")
                pending[r.rollout_id] = task
            submitted += len(pending)
            while pending:
                done = await store.wait_for_rollouts(rollout_ids=list(pending), timeout=0.0)
                for r in done:
                    task = pending.pop(r.rollout_id)
                    spans = list((await store.query_spans(r.rollout_id, attempt_id="latest")).items)
                    self.spans += len(spans)
                    has_task = any(s.attributes.get("task") == task for s in spans)
                    reward = find_final_reward(spans)
                    ok = r.status == "succeeded" and has_task and reward is not None and 1 <= reward <= 2
                    self.failures += not ok
                    if r.end_time is not None:
                        self.latencies.append((r.end_time - r.start_time) * 1e3)
                if pending:
                    await asyncio.sleep(self.poll_s)
        self.t_end = time.monotonic()


def pct(v: List[float], p: float) -> float:
    if not v:
        return 0.0
    v = sorted(v)
    r = p * (len(v) - 1)
    lo = int(r)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (r - lo)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store-url", required=True)
    ap.add_argument("--total-tasks", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n-runners", type=int, default=8)
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--sleep-seconds", type=float, default=0.1)
    ap.add_argument("--poll", type=float, default=5.0, help="algorithm poll period (reference: 5 s)")
    a = ap.parse_args()

    # agentlightning 0.3.0 cannot point the OTLP exporter at the store by itself with
    # opentelemetry-exporter-otlp-proto-http 1.4x (tests/compat/test_training_run.py): use the
    # exporter's standard variable, i.e. the URL the client advertises.
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = a.store_url.rstrip("/") + "/v1/traces"
    tracer = OtelTracer()
    runner = LitAgentRunner(tracer)  # reference defaults: poll 5 s, heartbeat 10 s, jitter 0.5
    algo = AlgorithmBatch(a.total_tasks, a.batch_size, a.poll)
    strategy = ClientServerExecutionStrategy(
        role="both", n_runners=a.n_runners, managed_store=False, graceful_timeout=10.0, terminate_timeout=5.0
    )
    trainer = Trainer(
        algorithm=algo,
        n_runners=a.n_runners,
        store=LightningStoreClient(a.store_url),
        strategy=strategy,
        runner=runner,
        tracer=tracer,
    )
    t0 = time.monotonic()
    trainer.fit(BenchAgent(a.max_rounds, a.sleep_seconds), train_dataset=["unused"])
    t_end = algo.t_end or time.monotonic()
    secs = t_end - t0
    n = len(algo.latencies)
    print(json.dumps({
        "mode": "scenario", "concurrency": a.n_runners, "ops": n, "errors": algo.failures,
        "seconds": round(secs, 3), "ops_s": round(n / secs, 2) if secs > 0 else 0.0,
        "p50_ms": round(pct(algo.latencies, 0.5), 1), "p95_ms": round(pct(algo.latencies, 0.95), 1),
        "p99_ms": round(pct(algo.latencies, 0.99), 1), "spans": algo.spans,
        "tasks": a.total_tasks, "batch": a.batch_size, "max_rounds": a.max_rounds,
        "sleep_s": a.sleep_seconds,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
