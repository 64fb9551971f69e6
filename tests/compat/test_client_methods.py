"""Every public method of the real agentlightning ``LightningStoreClient`` against ``stored``.

The client is the unmodified one from the pinned ``agentlightning`` package; the server is a
fresh ``stored`` on an empty database per test (see conftest.py).  Expected behaviour comes from
the store spec (store-api.md §2–§5, §7, §9).  One deliberate deviation of our server: unknown ids
on mutations answer **404** instead of the reference's 500, so the client raises
``ClientResponseError`` at once instead of after ~8 s of retries.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Dict, List, Optional, Sequence

import aiohttp
import pytest
from compat_helpers import make_client, run_async

from agentlightning.types import (
    LLM,
    Attempt,
    AttemptedRollout,
    EnqueueRolloutRequest,
    Event,
    Link,
    OtelResource,
    PaginatedResult,
    PromptTemplate,
    ProxyLLM,
    ResourcesUpdate,
    Rollout,
    RolloutConfig,
    Span,
    SpanContext,
    TraceStatus,
    Worker,
)

RO_ID = re.compile(r"^ro-[0-9a-f]{12}$")
AT_ID = re.compile(r"^at-[0-9a-f]{8}$")
RS_ID = re.compile(r"^rs-[0-9a-f]{12}$")

# Our server's answer to unknown ids on mutations (the reference says 500; see module docstring).
UNKNOWN_ID_STATUS = 404

# Server and test share one host clock; allow a little slack for float rounding.
EPS = 0.05

DEFAULT_CONFIG = RolloutConfig()


def is_plain_rollout(obj: Any) -> bool:
    """A Rollout that is *not* an AttemptedRollout (the server omitted the `attempt` key)."""
    return type(obj) is Rollout


async def expect_http_error(coro: Any, status: int) -> aiohttp.ClientResponseError:
    with pytest.raises(aiohttp.ClientResponseError) as ei:
        await coro
    assert ei.value.status == status, f"expected HTTP {status}, got {ei.value.status}: {ei.value.message}"
    return ei.value


def make_span(
    rollout_id: str,
    attempt_id: str,
    sequence_id: int,
    span_id: str,
    *,
    name: str = "unit.span",
    trace_id: str = "4bf92f3577b34da6a3ce929d0e0e4736",
    parent_id: Optional[str] = None,
    attributes: Optional[Dict[str, Any]] = None,
    start_time: Optional[float] = None,
    **extra: Any,
) -> Span:
    t0 = start_time if start_time is not None else time.time()
    return Span(
        rollout_id=rollout_id,
        attempt_id=attempt_id,
        sequence_id=sequence_id,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=name,
        status=TraceStatus(status_code="OK", description=None),
        attributes=attributes if attributes is not None else {"k": "v"},
        events=[],
        links=[],
        start_time=t0,
        end_time=t0 + 0.25,
        context=SpanContext(trace_id=trace_id, span_id=span_id, is_remote=False, trace_state={}),
        parent=None,
        resource=OtelResource(attributes={"service.name": "compat"}, schema_url=""),
        **extra,
    )


# ---------------------------------------------------------------------------------------------
# Rollout creation: enqueue_rollout / enqueue_many_rollouts / start_rollout
# ---------------------------------------------------------------------------------------------


@run_async
async def test_enqueue_rollout_defaults_and_config_roundtrip(store):
    async with make_client(store) as client:
        before = time.time()
        r = await client.enqueue_rollout(input={"question": "What is 17*3?", "answer": "51"})
        after = time.time()
        assert is_plain_rollout(r)
        assert RO_ID.match(r.rollout_id)
        assert r.input == {"question": "What is 17*3?", "answer": "51"}
        assert r.status == "queuing"
        assert r.mode is None
        assert r.resources_id is None  # no resources stored yet
        assert r.end_time is None
        assert r.metadata == {}  # API-created rollouts get {} (spec §2.3)
        assert r.config == DEFAULT_CONFIG
        assert before - EPS <= r.start_time <= after + EPS

        cfg = RolloutConfig(
            timeout_seconds=300.0, unresponsive_seconds=60.5, max_attempts=3, retry_condition=["timeout", "failed"]
        )
        r2 = await client.enqueue_rollout(
            input="free text task", mode="val", resources_id="rs-unchecked00", config=cfg, metadata={"epoch": 0}
        )
        assert is_plain_rollout(r2)
        assert r2.rollout_id != r.rollout_id
        assert r2.input == "free text task"
        assert r2.mode == "val"
        assert r2.resources_id == "rs-unchecked00"  # explicit ids are stored unchecked
        assert r2.config == cfg
        assert r2.metadata == {"epoch": 0}

        # Free-form JSON inputs survive verbatim (null, numbers, nesting, unicode).
        odd_input = {"n": None, "i": 1, "f": 1.5, "big": 12345678901234, "s": "héllo ✓", "l": [1, "a", {"x": []}]}
        r3 = await client.enqueue_rollout(input=odd_input)
        fetched = await client.get_rollout_by_id(r3.rollout_id)
        assert fetched is not None and fetched.input == odd_input
        assert isinstance(fetched.input["i"], int) and isinstance(fetched.input["f"], float)
        r4 = await client.enqueue_rollout(input=None)
        assert r4.input is None

        # What the client sent round-trips through a read.
        got = await client.get_rollout_by_id(r2.rollout_id)
        assert is_plain_rollout(got)
        assert got == r2


@run_async
async def test_enqueue_many_rollouts_preserves_order(store):
    async with make_client(store) as client:
        assert await client.enqueue_many_rollouts([]) == []
        reqs = [
            EnqueueRolloutRequest(input={"i": i}, mode="train", metadata={"batch": "left", "i": i}) for i in range(3)
        ] + [EnqueueRolloutRequest(input={"i": 3}, config=RolloutConfig(max_attempts=2, retry_condition=["failed"]))]
        created = await client.enqueue_many_rollouts(reqs)
        assert len(created) == 4
        assert all(is_plain_rollout(r) for r in created)
        assert [r.input for r in created] == [{"i": i} for i in range(4)]
        assert [r.metadata for r in created[:3]] == [{"batch": "left", "i": i} for i in range(3)]
        assert created[3].metadata == {}
        assert created[3].config.max_attempts == 2 and created[3].config.retry_condition == ["failed"]
        assert len({r.rollout_id for r in created}) == 4
        assert all(r.status == "queuing" for r in created)
        # Queue order == request order.
        claimed = await client.dequeue_many_rollouts(limit=10)
        assert [c.rollout_id for c in claimed] == [r.rollout_id for r in created]


@run_async
async def test_start_rollout_creates_first_attempt_and_busy_worker(store):
    async with make_client(store) as client:
        before = time.time()
        ar = await client.start_rollout(input={"q": "hi"}, mode="val", metadata={"m": 1}, worker_id="Worker-2")
        assert isinstance(ar, AttemptedRollout)
        assert RO_ID.match(ar.rollout_id)
        assert ar.status == "preparing"
        assert ar.mode == "val" and ar.metadata == {"m": 1} and ar.input == {"q": "hi"}
        assert ar.config == DEFAULT_CONFIG
        at = ar.attempt
        assert AT_ID.match(at.attempt_id)
        assert at.rollout_id == ar.rollout_id
        assert at.sequence_id == 1
        assert at.status == "preparing"
        assert at.worker_id == "Worker-2"
        assert at.end_time is None and at.last_heartbeat_time is None
        assert at.start_time >= before - EPS

        # start_rollout does not enqueue.
        assert await client.dequeue_rollout() is None

        w = await client.get_worker_by_id("Worker-2")
        assert isinstance(w, Worker)
        assert w.status == "busy"
        assert w.current_rollout_id == ar.rollout_id
        assert w.current_attempt_id == at.attempt_id
        assert w.last_busy_time is not None and w.last_busy_time >= before - EPS

        # Without worker: attempt.worker_id stays null, metadata default {}.
        ar2 = await client.start_rollout(input=[1, 2, 3])
        assert ar2.attempt.worker_id is None
        assert ar2.metadata == {}
        assert ar2.mode is None


# ---------------------------------------------------------------------------------------------
# Dequeue
# ---------------------------------------------------------------------------------------------


@run_async
async def test_dequeue_fifo_limits_and_worker_bookkeeping(store):
    async with make_client(store) as client:
        rs = [await client.enqueue_rollout(input={"n": i}) for i in range(4)]

        assert await client.dequeue_many_rollouts(limit=0) == []  # nothing sent, nothing consumed

        t_before = time.time()
        batch = await client.dequeue_many_rollouts(limit=2, worker_id="batch-worker")
        assert [b.rollout_id for b in batch] == [rs[0].rollout_id, rs[1].rollout_id]
        for b in batch:
            assert isinstance(b, AttemptedRollout)
            assert b.status == "preparing"
            assert b.attempt.status == "preparing"
            assert b.attempt.sequence_id == 1
            assert b.attempt.worker_id == "batch-worker"
            assert b.attempt.rollout_id == b.rollout_id
            assert AT_ID.match(b.attempt.attempt_id)

        w = await client.get_worker_by_id("batch-worker")
        assert w is not None and w.status == "busy"
        # busy on the *last* claimed attempt
        assert w.current_rollout_id == batch[1].rollout_id
        assert w.current_attempt_id == batch[1].attempt.attempt_id
        assert w.last_dequeue_time is not None and w.last_dequeue_time >= t_before - EPS

        one = await client.dequeue_rollout()
        assert isinstance(one, AttemptedRollout)
        assert one.rollout_id == rs[2].rollout_id
        assert one.attempt.worker_id is None

        one = await client.dequeue_rollout(worker_id="solo")
        assert one is not None and one.rollout_id == rs[3].rollout_id
        assert await client.dequeue_rollout(worker_id="solo") is None
        assert await client.dequeue_many_rollouts(limit=5) == []

        # Dequeue with a worker on an empty queue: new worker becomes idle with last_dequeue_time.
        assert await client.dequeue_rollout(worker_id="idle-worker") is None
        iw = await client.get_worker_by_id("idle-worker")
        assert iw is not None
        assert iw.status == "idle"
        assert iw.last_dequeue_time is not None and iw.last_idle_time is not None
        assert iw.current_rollout_id is None

        # The dequeued rollouts are now preparing.
        got = await client.get_rollout_by_id(rs[0].rollout_id)
        assert isinstance(got, AttemptedRollout) and got.status == "preparing"
        assert got.attempt == batch[0].attempt


@run_async
async def test_concurrent_enqueue_and_dequeue_never_double_claim(store):
    async with make_client(store) as client:
        batches = await asyncio.gather(
            *[
                client.enqueue_many_rollouts([EnqueueRolloutRequest(input={"b": b, "i": i}) for i in range(3)])
                for b in range(5)
            ]
        )
        ids = [r.rollout_id for batch in batches for r in batch]
        assert len(ids) == 15 and len(set(ids)) == 15

        claims = await asyncio.gather(
            *[client.dequeue_many_rollouts(limit=4, worker_id=f"cw-{k}") for k in range(5)]
        )
        claimed = [c.rollout_id for batch in claims for c in batch]
        assert sorted(claimed) == sorted(ids), "every rollout claimed exactly once"
        assert await client.dequeue_rollout() is None


# ---------------------------------------------------------------------------------------------
# Attempts: start_attempt / query_attempts / get_latest_attempt / update_attempt
# ---------------------------------------------------------------------------------------------


@run_async
async def test_start_attempt_query_attempts_latest(store):
    async with make_client(store) as client:
        ar = await client.start_rollout(input="x", worker_id="w1")
        a1 = ar.attempt

        ar2 = await client.start_attempt(ar.rollout_id, worker_id="w2")
        assert isinstance(ar2, AttemptedRollout)
        assert ar2.rollout_id == ar.rollout_id
        assert ar2.status == "preparing"
        assert ar2.attempt.sequence_id == 2
        assert ar2.attempt.worker_id == "w2"
        assert ar2.attempt.status == "preparing"
        assert ar2.attempt.attempt_id != a1.attempt_id
        w2 = await client.get_worker_by_id("w2")
        assert w2 is not None and w2.status == "busy"
        assert (w2.current_rollout_id, w2.current_attempt_id) == (ar.rollout_id, ar2.attempt.attempt_id)

        ar3 = await client.start_attempt(ar.rollout_id)  # no body
        assert ar3.attempt.sequence_id == 3
        assert ar3.attempt.worker_id is None

        latest = await client.get_latest_attempt(ar.rollout_id)
        assert isinstance(latest, Attempt)
        assert latest == ar3.attempt

        page = await client.query_attempts(ar.rollout_id)
        assert isinstance(page, PaginatedResult)
        assert (page.total, page.limit, page.offset) == (3, -1, 0)
        assert [a.sequence_id for a in page.items] == [1, 2, 3]
        assert page.items[0] == a1
        assert all(isinstance(a, Attempt) for a in page.items)

        desc = await client.query_attempts(ar.rollout_id, sort_order="desc")
        assert [a.sequence_id for a in desc.items] == [3, 2, 1]

        paged = await client.query_attempts(ar.rollout_id, limit=1, offset=1)
        assert (paged.total, paged.limit, paged.offset) == (3, 1, 1)
        assert [a.sequence_id for a in paged.items] == [2]

        # sort_by=None: server default still orders by sequence_id.
        nosort = await client.query_attempts(ar.rollout_id, sort_by=None)
        assert [a.sequence_id for a in nosort.items] == [1, 2, 3]

        # null worker sorts as "" → first ascending
        by_worker = await client.query_attempts(ar.rollout_id, sort_by="worker_id")
        assert [a.worker_id for a in by_worker.items] == [None, "w1", "w2"]

        # get_rollout_by_id carries the latest attempt.
        got = await client.get_rollout_by_id(ar.rollout_id)
        assert isinstance(got, AttemptedRollout)
        assert got.attempt.sequence_id == 3

        # Unknown rollout: empty page / None, no error.
        empty = await client.query_attempts("ro-000000000000")
        assert empty.total == 0 and list(empty.items) == []
        assert await client.get_latest_attempt("ro-000000000000") is None
        queued = await client.enqueue_rollout(input=1)
        assert await client.get_latest_attempt(queued.rollout_id) is None

        await expect_http_error(client.query_attempts(ar.rollout_id, sort_by="nonexistent"), 400)


@run_async
async def test_update_attempt_drives_rollout_and_worker_status(store):
    async with make_client(store) as client:
        r = await client.enqueue_rollout(input={"task": 1})
        t0 = time.time()
        claimed = await client.dequeue_rollout(worker_id="Worker-0")
        assert claimed is not None
        rid, aid = claimed.rollout_id, claimed.attempt.attempt_id
        w = await client.get_worker_by_id("Worker-0")
        assert w is not None and w.status == "busy" and w.last_dequeue_time is not None

        # Reassigning the worker via update_attempt → busy on that attempt, last_busy_time >= dequeue.
        at = await client.update_attempt(rid, aid, worker_id="Worker-7")
        assert isinstance(at, Attempt)
        assert at.worker_id == "Worker-7"
        w7 = await client.get_worker_by_id("Worker-7")
        assert w7 is not None and w7.status == "busy"
        assert (w7.current_rollout_id, w7.current_attempt_id) == (rid, aid)

        at = await client.update_attempt(rid, aid, status="running")
        assert at.status == "running" and at.end_time is None
        ro = await client.get_rollout_by_id(rid)
        assert ro is not None and ro.status == "running"

        # metadata-only update of the latest attempt keeps running
        at = await client.update_attempt(rid, "latest", metadata={"note": "moved"})
        assert at.metadata == {"note": "moved"} and at.status == "running"

        hb = time.time() - 3.0
        at = await client.update_attempt(rid, aid, last_heartbeat_time=hb)
        assert at.last_heartbeat_time == pytest.approx(hb, abs=1e-6)
        assert at.status == "running"

        at = await client.update_attempt(rid, "latest", status="succeeded")
        assert at.attempt_id == aid
        assert at.status == "succeeded"
        assert at.end_time is not None and at.end_time >= t0 - EPS
        assert at.metadata == {"note": "moved"}  # untouched keys are kept

        ro = await client.get_rollout_by_id(rid)
        assert isinstance(ro, AttemptedRollout)
        assert ro.status == "succeeded"
        assert ro.end_time is not None and ro.end_time >= t0 - EPS
        assert ro.attempt.status == "succeeded"

        w7 = await client.get_worker_by_id("Worker-7")
        assert w7 is not None and w7.status == "idle"
        assert w7.current_rollout_id is None and w7.current_attempt_id is None
        assert w7.last_idle_time is not None and w7.last_busy_time is not None
        assert w7.last_idle_time >= w7.last_busy_time - 1e-6

        # worker_id="" and metadata={} are values, kept by later updates that omit them.
        at = await client.update_attempt(rid, aid, worker_id="", metadata={})
        assert at.worker_id == "" and at.metadata == {}
        at = await client.update_attempt(rid, aid, last_heartbeat_time=hb + 1)
        assert at.worker_id == "" and at.metadata == {}

        # Re-deriving from the latest attempt: running again → rollout running again.
        await client.update_attempt(rid, aid, status="running")
        ro = await client.get_rollout_by_id(rid)
        assert ro is not None and ro.status == "running"
        assert ro.end_time is not None  # end_time is never cleared
        assert r.rollout_id == rid


@run_async
async def test_retry_requeue_and_final_failure(store):
    async with make_client(store) as client:
        cfg = RolloutConfig(max_attempts=2, retry_condition=["failed"])
        r = await client.enqueue_rollout(input="retry me", config=cfg)
        c1 = await client.dequeue_rollout(worker_id="rw")
        assert c1 is not None and c1.rollout_id == r.rollout_id

        a1 = await client.update_attempt(r.rollout_id, c1.attempt.attempt_id, status="failed")
        assert a1.status == "failed" and a1.end_time is not None
        ro = await client.get_rollout_by_id(r.rollout_id)
        assert ro is not None and ro.status == "requeuing"
        assert ro.end_time is None
        w = await client.get_worker_by_id("rw")
        assert w is not None and w.status == "idle"

        # requeuing is not finished
        assert await client.wait_for_rollouts(rollout_ids=[r.rollout_id], timeout=0) == []
        # requeued → dequeued again with attempt #2
        c2 = await client.dequeue_rollout(worker_id="rw")
        assert c2 is not None and c2.rollout_id == r.rollout_id
        assert c2.attempt.sequence_id == 2 and c2.status == "preparing"

        await client.update_attempt(r.rollout_id, "latest", status="failed")
        ro = await client.get_rollout_by_id(r.rollout_id)
        assert ro is not None and ro.status == "failed" and ro.end_time is not None
        assert await client.dequeue_rollout() is None

        # Failure not in retry_condition → failed immediately.
        r2 = await client.enqueue_rollout(input=2, config=RolloutConfig(max_attempts=3, retry_condition=["timeout"]))
        c = await client.dequeue_rollout()
        assert c is not None and c.rollout_id == r2.rollout_id
        await client.update_attempt(r2.rollout_id, "latest", status="failed")
        ro2 = await client.get_rollout_by_id(r2.rollout_id)
        assert ro2 is not None and ro2.status == "failed"

        # Updating a non-latest attempt never changes the rollout status.
        ar = await client.start_rollout(input=3)
        first = ar.attempt.attempt_id
        await client.start_attempt(ar.rollout_id)
        upd = await client.update_attempt(ar.rollout_id, first, status="succeeded")
        assert upd.status == "succeeded"
        ro3 = await client.get_rollout_by_id(ar.rollout_id)
        assert ro3 is not None and ro3.status == "preparing"
        assert isinstance(ro3, AttemptedRollout) and ro3.attempt.sequence_id == 2


@run_async
async def test_update_attempt_null_and_unknown_ids(store):
    async with make_client(store, retry_delays=()) as client:
        ar = await client.start_rollout(input=1)
        rid, aid = ar.rollout_id, ar.attempt.attempt_id
        for kwargs in ({"status": None}, {"worker_id": None}, {"last_heartbeat_time": None}, {"metadata": None}):
            await expect_http_error(client.update_attempt(rid, aid, **kwargs), 400)
        # Nothing changed.
        at = await client.get_latest_attempt(rid)
        assert at == ar.attempt

        # Unknown ids on a mutation: our server answers 404 (deliberate deviation from 500).
        await expect_http_error(client.update_attempt("ro-000000000000", "at-00000000", status="failed"), UNKNOWN_ID_STATUS)
        await expect_http_error(client.update_attempt(rid, "at-ffffffff", status="failed"), UNKNOWN_ID_STATUS)
        await expect_http_error(client.update_attempt("ro-000000000000", "latest", status="failed"), UNKNOWN_ID_STATUS)
        queued = await client.enqueue_rollout(input=2)  # no attempts at all
        await expect_http_error(client.update_attempt(queued.rollout_id, "latest", status="failed"), UNKNOWN_ID_STATUS)
        await expect_http_error(client.start_attempt("ro-000000000000"), UNKNOWN_ID_STATUS)


# ---------------------------------------------------------------------------------------------
# Rollout reads and updates
# ---------------------------------------------------------------------------------------------


@run_async
async def test_get_rollout_by_id_types(store):
    async with make_client(store) as client:
        assert await client.get_rollout_by_id("ro-000000000000") is None
        r = await client.enqueue_rollout(input="a")
        got = await client.get_rollout_by_id(r.rollout_id)
        assert is_plain_rollout(got), "a rollout without attempts must come back without an `attempt` key"
        assert got == r
        c = await client.dequeue_rollout()
        assert c is not None
        got = await client.get_rollout_by_id(r.rollout_id)
        assert isinstance(got, AttemptedRollout)
        assert got.attempt == c.attempt
        assert got.attempt.rollout_id == got.rollout_id


@run_async
async def test_missing_objects_are_fast_json_nulls(store):
    """get_rollout_by_id & co. swallow errors into None after ~8 s of retries; a correct server
    answers `200 null` with a JSON content type at once, and an empty dequeue is `200 []`."""
    import requests

    async with make_client(store) as client:  # default retry schedule on purpose
        t = time.monotonic()
        assert await client.get_rollout_by_id("ro-000000000000") is None
        assert await client.get_latest_attempt("ro-000000000000") is None
        assert await client.get_resources_by_id("rs-000000000000") is None
        assert await client.get_latest_resources() is None
        assert await client.get_worker_by_id("nobody") is None
        assert await client.dequeue_rollout(worker_id="nobody") is None
        assert await client.dequeue_many_rollouts(limit=3) == []
        assert time.monotonic() - t < 2.0, "a null read was retried (wrong status or content type?)"

    for path in ("/rollouts/ro-000000000000", "/rollouts/ro-000000000000/attempts/latest", "/resources/latest"):
        r = requests.get(store.url + "/v1/agl" + path, timeout=5)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), path
        assert r.json() is None
    r = requests.post(store.url + "/v1/agl/queues/rollouts/dequeue", timeout=5)  # no body
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == []


@run_async
async def test_update_rollout_partial_semantics(store):
    async with make_client(store, retry_delays=()) as client:
        r = await client.enqueue_rollout(input={"v": 1}, mode="val", metadata={"a": 1})

        up = await client.update_rollout(r.rollout_id, mode="train", metadata={"extra": 1})
        assert is_plain_rollout(up)
        assert up.mode == "train" and up.metadata == {"extra": 1}
        assert up.input == {"v": 1} and up.status == "queuing"

        up = await client.update_rollout(r.rollout_id, mode=None, metadata={"extra1": 2})
        assert up.mode is None and up.metadata == {"extra1": 2}  # replaced, not merged

        up = await client.update_rollout(r.rollout_id, input=None, resources_id="rs-custom")
        assert up.input is None and up.resources_id == "rs-custom"
        up = await client.update_rollout(r.rollout_id, resources_id=None, metadata=None)
        assert up.resources_id is None and up.metadata is None

        up = await client.update_rollout(r.rollout_id, config=RolloutConfig(max_attempts=3, retry_condition=["failed"]))
        assert up.config == RolloutConfig(
            timeout_seconds=None, unresponsive_seconds=None, max_attempts=3, retry_condition=["failed"]
        )
        up = await client.update_rollout(r.rollout_id, input={"v": 2})
        assert up.input == {"v": 2}
        assert up.mode is None and up.metadata is None and up.config.max_attempts == 3

        # empty update is allowed and changes nothing
        same = await client.update_rollout(r.rollout_id)
        assert same == up

        got = await client.get_rollout_by_id(r.rollout_id)
        assert got == up

        await expect_http_error(client.update_rollout(r.rollout_id, status=None), 400)

        # Cancel: terminal → end_time set; not dequeued afterwards (lazy queue deletion).
        t0 = time.time()
        cancelled = await client.update_rollout(r.rollout_id, status="cancelled")
        assert is_plain_rollout(cancelled)
        assert cancelled.status == "cancelled"
        assert cancelled.end_time is not None and cancelled.end_time >= t0 - EPS
        assert await client.dequeue_rollout() is None

        # Back to queuing via update → appended to the queue again.
        requeued = await client.update_rollout(r.rollout_id, status="queuing")
        assert requeued.status == "queuing"
        c = await client.dequeue_rollout()
        assert c is not None and c.rollout_id == r.rollout_id and c.attempt.sequence_id == 1

        # A rollout that is already queued is not queued twice.
        r2 = await client.enqueue_rollout(input="dup")
        await client.update_rollout(r2.rollout_id, status="requeuing")
        assert (await client.dequeue_rollout()) is not None
        assert await client.dequeue_rollout() is None

        await expect_http_error(client.update_rollout("ro-000000000000", status="cancelled"), UNKNOWN_ID_STATUS)


@run_async
async def test_query_rollouts_filters_sort_pagination(store):
    async with make_client(store, retry_delays=()) as client:
        ra = await client.enqueue_rollout(input="a", mode="train")  # will be dequeued → preparing
        rb = await client.enqueue_rollout(input="b")  # stays queuing, mode null
        assert (await client.dequeue_rollout()).rollout_id == ra.rollout_id
        rc = await client.start_rollout(input="c", mode="val")  # → succeeded
        await client.update_attempt(rc.rollout_id, "latest", status="succeeded")
        rd = await client.start_rollout(input="d", mode="test")  # → failed
        await client.update_attempt(rd.rollout_id, "latest", status="failed")
        re_ = await client.enqueue_rollout(input="e", mode="train")  # → cancelled
        await client.update_rollout(re_.rollout_id, status="cancelled")
        created = [ra.rollout_id, rb.rollout_id, rc.rollout_id, rd.rollout_id, re_.rollout_id]
        with_attempt = {ra.rollout_id, rc.rollout_id, rd.rollout_id}

        page = await client.query_rollouts()
        assert isinstance(page, PaginatedResult)
        assert (page.total, page.limit, page.offset) == (5, -1, 0)
        assert [x.rollout_id for x in page.items] == created  # storage order = creation order
        for x in page.items:
            if x.rollout_id in with_attempt:
                assert isinstance(x, AttemptedRollout), x.rollout_id
                assert x.attempt.rollout_id == x.rollout_id
            else:
                assert is_plain_rollout(x), x.rollout_id
        statuses = {x.rollout_id: x.status for x in page.items}
        assert statuses == {
            ra.rollout_id: "preparing",
            rb.rollout_id: "queuing",
            rc.rollout_id: "succeeded",
            rd.rollout_id: "failed",
            re_.rollout_id: "cancelled",
        }

        def ids(p: Any) -> List[str]:
            return [x.rollout_id for x in p.items]

        assert ids(await client.query_rollouts(status_in=["succeeded"])) == [rc.rollout_id]
        assert set(ids(await client.query_rollouts(status_in=["succeeded", "failed"]))) == {rc.rollout_id, rd.rollout_id}
        assert ids(await client.query_rollouts(status_in=[])) == []
        assert ids(await client.query_rollouts(rollout_id_in=[rb.rollout_id, rd.rollout_id])) == [
            rb.rollout_id,
            rd.rollout_id,
        ]
        # deprecated argument names are mapped client-side
        assert ids(await client.query_rollouts(status=["failed"])) == [rd.rollout_id]
        assert set(ids(await client.query_rollouts(rollout_ids=[ra.rollout_id, re_.rollout_id]))) == {
            ra.rollout_id,
            re_.rollout_id,
        }
        # new names win over deprecated ones
        assert ids(await client.query_rollouts(status_in=["queuing"], status=["failed"])) == [rb.rollout_id]

        sub = rc.rollout_id[3:11]
        p = await client.query_rollouts(rollout_id_contains=sub)
        assert rc.rollout_id in ids(p) and all(sub in i for i in ids(p))

        # AND vs OR
        p_and = await client.query_rollouts(
            status_in=["succeeded"], rollout_id_in=[rc.rollout_id, rb.rollout_id], filter_logic="and"
        )
        assert ids(p_and) == [rc.rollout_id]
        p_or = await client.query_rollouts(status_in=["succeeded"], rollout_id_in=[rb.rollout_id], filter_logic="or")
        assert set(ids(p_or)) == {rc.rollout_id, rb.rollout_id}

        # sort + pagination
        p = await client.query_rollouts(sort_by="rollout_id", sort_order="desc", limit=1, offset=1)
        assert (p.total, p.limit, p.offset) == (5, 1, 1)
        assert ids(p) == [sorted(created, reverse=True)[1]]
        p = await client.query_rollouts(sort_by="start_time")
        starts = [x.start_time for x in p.items]
        assert starts == sorted(starts)
        p = await client.query_rollouts(sort_by="start_time", sort_order="desc")
        starts = [x.start_time for x in p.items]
        assert starts == sorted(starts, reverse=True)
        p = await client.query_rollouts(sort_by="mode")
        assert p.items[0].rollout_id == rb.rollout_id  # null mode sorts as ""
        p = await client.query_rollouts(sort_by="mode", sort_order="desc")
        assert p.items[-1].rollout_id == rb.rollout_id
        p = await client.query_rollouts(limit=2)
        assert (p.total, len(p.items)) == (5, 2) and ids(p) == created[:2]
        p = await client.query_rollouts(limit=2, offset=4)
        assert ids(p) == created[4:]
        p = await client.query_rollouts(offset=10)
        assert (p.total, list(p.items), p.offset) == (5, [], 10)

        await expect_http_error(client.query_rollouts(sort_by="nonexistent_field"), 400)
        await expect_http_error(client.query_rollouts(limit=0), 400)
        await expect_http_error(client.query_rollouts(offset=-1), 400)


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------


@run_async
async def test_workers_heartbeat_query_and_get(store):
    async with make_client(store, retry_delays=()) as client:
        assert await client.get_worker_by_id("missing") is None

        stats = {"cpu_usage_pct": 37.5, "host": "node-3", "gpus": [], "nested": {"x": 1}}
        t0 = time.time()
        w = await client.update_worker("worker-a", heartbeat_stats=stats)
        assert isinstance(w, Worker)
        assert w.worker_id == "worker-a"
        assert w.status == "unknown"
        assert w.heartbeat_stats == stats
        assert w.last_heartbeat_time is not None and w.last_heartbeat_time >= t0 - EPS
        assert w.last_dequeue_time is None and w.last_busy_time is None and w.last_idle_time is None
        assert w.current_rollout_id is None and w.current_attempt_id is None

        w2 = await client.update_worker("worker-a")  # no body
        assert w2.heartbeat_stats == stats
        assert w2.last_heartbeat_time >= w.last_heartbeat_time
        assert w2.status == "unknown"
        assert await client.get_worker_by_id("worker-a") == w2

        await expect_http_error(client.update_worker("worker-err", heartbeat_stats=None), 400)

        # worker-b busy; worker-c busy then idle
        rb = await client.start_rollout(input="b", worker_id="worker-b")
        rc = await client.start_rollout(input="c", worker_id="worker-c")
        await client.update_attempt(rc.rollout_id, "latest", status="succeeded")

        # heartbeats never change status
        wb = await client.update_worker("worker-b", heartbeat_stats={"k": 1})
        assert wb.status == "busy" and wb.current_rollout_id == rb.rollout_id

        page = await client.query_workers()
        assert isinstance(page, PaginatedResult)
        assert [x.worker_id for x in page.items] == ["worker-a", "worker-b", "worker-c"]
        assert page.total == 3
        # The 0.3.x client never sends limit/offset, so the server sees (and echoes) the defaults.
        p = await client.query_workers(limit=1, offset=1)
        assert (p.limit, p.offset, p.total, len(p.items)) == (-1, 0, 3, 3)

        status_by_id = {x.worker_id: x.status for x in page.items}
        assert status_by_id == {"worker-a": "unknown", "worker-b": "busy", "worker-c": "idle"}

        assert [x.worker_id for x in (await client.query_workers(status_in=["busy"])).items] == ["worker-b"]
        assert [x.worker_id for x in (await client.query_workers(worker_id_contains="-c")).items] == ["worker-c"]
        p = await client.query_workers(status_in=["idle"], worker_id_contains="-a", filter_logic="or", sort_by="worker_id")
        assert [x.worker_id for x in p.items] == ["worker-a", "worker-c"]
        p = await client.query_workers(status_in=["idle"], worker_id_contains="-a", filter_logic="and")
        assert list(p.items) == []
        p = await client.query_workers(sort_by="worker_id", sort_order="desc")
        assert [x.worker_id for x in p.items] == ["worker-c", "worker-b", "worker-a"]
        await expect_http_error(client.query_workers(sort_by="bogus"), 400)


# ---------------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------------


@run_async
async def test_resources_add_update_get_query(store):
    async with make_client(store, retry_delays=()) as client:
        assert await client.get_latest_resources() is None
        assert await client.get_resources_by_id("nope") is None
        empty = await client.query_resources()
        assert (empty.total, list(empty.items)) == (0, [])

        named = {
            "main_llm": LLM(
                endpoint="http://10.0.0.5:8000/v1",
                model="Qwen2.5-7B-Instruct",
                sampling_parameters={"temperature": 0.7, "max_tokens": 512},
            ),
            "system_prompt": PromptTemplate(template="You are helpful. {question}", engine="f-string"),
        }
        t0 = time.time()
        ru = await client.add_resources(named)
        assert isinstance(ru, ResourcesUpdate)
        assert RS_ID.match(ru.resources_id) and len(ru.resources_id) == 15
        assert ru.version == 1
        assert ru.create_time == ru.update_time and ru.create_time >= t0 - EPS
        assert isinstance(ru.resources["main_llm"], LLM)
        assert isinstance(ru.resources["system_prompt"], PromptTemplate)
        assert ru.resources == named

        got = await client.get_resources_by_id(ru.resources_id)
        assert got == ru
        assert got is not None and got.resources["main_llm"].sampling_parameters == {"temperature": 0.7, "max_tokens": 512}
        assert (await client.get_latest_resources()) == ru

        # A rollout created without resources_id picks the latest snapshot.
        r = await client.enqueue_rollout(input=1)
        assert r.resources_id == ru.resources_id

        proxy = {"proxy": ProxyLLM(endpoint="http://10.0.0.7:12358/v1", model="m", api_key="sk-x")}
        alpha = await client.update_resources("manual-alpha", proxy)
        assert alpha.resources_id == "manual-alpha" and alpha.version == 1
        assert isinstance(alpha.resources["proxy"], ProxyLLM)
        assert alpha.resources["proxy"].api_key == "sk-x"
        assert (await client.get_latest_resources()).resources_id == "manual-alpha"

        beta = await client.update_resources("manual-beta", {})
        assert beta.version == 1 and beta.resources == {}
        assert (await client.get_latest_resources()).resources_id == "manual-beta"
        ar = await client.start_rollout(input=2)
        assert ar.resources_id == "manual-beta"

        alpha2 = await client.update_resources("manual-alpha", named)
        assert alpha2.version == 2
        assert alpha2.create_time == pytest.approx(alpha.create_time, abs=1e-6)
        assert alpha2.update_time >= alpha.update_time
        assert alpha2.resources == named
        assert (await client.get_latest_resources()).resources_id == "manual-alpha"  # latest again

        page = await client.query_resources()
        assert page.total == 3 and (page.limit, page.offset) == (-1, 0)
        # insertion order of first write; updates keep position
        assert [x.resources_id for x in page.items] == [ru.resources_id, "manual-alpha", "manual-beta"]
        assert [x.resources_id for x in (await client.query_resources(resources_id_contains="beta")).items] == [
            "manual-beta"
        ]
        assert [x.resources_id for x in (await client.query_resources(resources_id="manual-alpha")).items] == [
            "manual-alpha"
        ]
        p = await client.query_resources(resources_id="manual-alpha", resources_id_contains="beta")
        assert p.total == 0
        p = await client.query_resources(sort_by="resources_id", sort_order="desc", limit=1, offset=1)
        assert (p.total, p.limit, p.offset) == (3, 1, 1)
        assert [x.resources_id for x in p.items] == [
            sorted([ru.resources_id, "manual-alpha", "manual-beta"], reverse=True)[1]
        ]
        p = await client.query_resources(sort_by="version", sort_order="desc", limit=1)
        assert [x.resources_id for x in p.items] == ["manual-alpha"]

        await expect_http_error(client.query_resources(sort_by="bogus"), 400)


# ---------------------------------------------------------------------------------------------
# Spans
# ---------------------------------------------------------------------------------------------


@run_async
async def test_add_span_roundtrip_heartbeat_and_duplicates(store):
    async with make_client(store, retry_delays=()) as client:
        ar = await client.start_rollout(input="spans", worker_id="sw")
        rid, aid = ar.rollout_id, ar.attempt.attempt_id

        attrs = {
            "gen_ai.request.model": "Qwen2.5",
            "gen_ai.usage.prompt_tokens": 42,
            "llm.is_streaming": False,
            "gen_ai.request.temperature": 0.7,
            "whole_float": 2.0,
            "finish_reasons": ["stop"],
            "ints": [1, 2, 3],
            "floats": [0.5, 1.5],
            "bools": [True, False],
            "empty": [],
            "unicode": "héllo ✓",
        }
        s1 = make_span(
            rid,
            aid,
            1,
            "00f067aa0ba902b7",
            name="openai.chat",
            attributes=attrs,
            custom_top_level={"kept": [1, "two"]},
            kind="SpanKind.INTERNAL",
        )
        s1.events.append(Event(name="first_token", attributes={"latency_ms": 180.5}, timestamp=s1.start_time))
        s1.links.append(
            Link(
                context=SpanContext(
                    trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331", is_remote=False, trace_state={}
                ),
                attributes={"link.kind": "follows_from"},
            )
        )
        # extras inside nested span parts are preserved too
        s1.status = TraceStatus(status_code="ERROR", description="boom", extra_status="x")

        t0 = time.time()
        stored_span = await client.add_span(s1)
        assert isinstance(stored_span, Span)
        assert stored_span.model_dump(mode="json") == s1.model_dump(mode="json")

        # Span arrival = heartbeat: attempt & rollout → running, worker untouched.
        at = await client.get_latest_attempt(rid)
        assert at is not None and at.status == "running"
        assert at.last_heartbeat_time is not None and at.last_heartbeat_time >= t0 - EPS
        ro = await client.get_rollout_by_id(rid)
        assert ro is not None and ro.status == "running"
        w = await client.get_worker_by_id("sw")
        assert w is not None and w.status == "busy"

        # Duplicate (same rollout, attempt, span_id) → None.
        assert await client.add_span(s1) is None

        s2 = make_span(rid, aid, 2, "1111111111111111", name="tool.call", parent_id="00f067aa0ba902b7")
        s3 = make_span(rid, aid, 3, "2222222222222222", name="api_call.done", trace_id="ffffffffffffffffffffffffffffffff")
        added = await client.add_many_spans([s2, s1, s3])
        assert [s.span_id for s in added] == [s2.span_id, s3.span_id]

        page = await client.query_spans(rid)
        assert isinstance(page, PaginatedResult)
        assert (page.total, page.limit, page.offset) == (3, -1, 0)
        assert [s.sequence_id for s in page.items] == [1, 2, 3]
        first = page.items[0]
        assert first.model_dump(mode="json") == s1.model_dump(mode="json")
        # JSON types survive: bool stays bool, int stays int, float stays float
        a = first.attributes
        assert a["llm.is_streaming"] is False
        assert type(a["gen_ai.usage.prompt_tokens"]) is int
        assert type(a["gen_ai.request.temperature"]) is float
        assert type(a["whole_float"]) is float
        assert a["ints"] == [1, 2, 3] and all(type(v) is int for v in a["ints"])
        assert a["empty"] == []
        assert first.model_extra is not None and first.model_extra.get("custom_top_level") == {"kept": [1, "two"]}
        assert first.status.model_extra == {"extra_status": "x"}

        # Spans must reference an existing rollout/attempt.
        await expect_http_error(client.add_span(make_span("ro-000000000000", aid, 1, "3333333333333333")), UNKNOWN_ID_STATUS)
        await expect_http_error(client.add_span(make_span(rid, "at-ffffffff", 1, "3333333333333333")), UNKNOWN_ID_STATUS)


@run_async
async def test_span_sequence_ids(store):
    async with make_client(store) as client:
        r1 = await client.start_rollout(input=1)
        r2 = await client.start_rollout(input=2)
        a1, a2 = r1.attempt.attempt_id, r2.attempt.attempt_id

        n1 = await client.get_next_span_sequence_id(r1.rollout_id, a1)
        n2 = await client.get_next_span_sequence_id(r1.rollout_id, a1)
        assert (n1, n2) == (1, 2) and type(n1) is int

        await client.add_span(make_span(r2.rollout_id, a2, 1, "aaaaaaaaaaaaaaaa"))
        ids = await client.get_many_span_sequence_ids([(r1.rollout_id, a1), (r2.rollout_id, a2), (r1.rollout_id, "latest")])
        assert list(ids) == [3, 2, 4]

        # An explicit id raises the per-rollout counter.
        await client.add_span(make_span(r1.rollout_id, a1, 101, "bbbbbbbbbbbbbbbb"))
        assert await client.get_next_span_sequence_id(r1.rollout_id, a1) == 102
        # ...even when the span is a duplicate
        await client.add_span(make_span(r1.rollout_id, a1, 500, "bbbbbbbbbbbbbbbb"))
        assert await client.get_next_span_sequence_id(r1.rollout_id, a1) == 501

        # The counter is per rollout, not per attempt.
        r1b = await client.start_attempt(r1.rollout_id)
        assert await client.get_next_span_sequence_id(r1.rollout_id, r1b.attempt.attempt_id) == 502

        # Concurrent allocations never collide.
        r3 = await client.start_rollout(input=3)
        many = await asyncio.gather(
            *[client.get_next_span_sequence_id(r3.rollout_id, r3.attempt.attempt_id) for _ in range(25)]
        )
        assert sorted(many) == list(range(1, 26))


@run_async
async def test_query_spans_filters(store):
    async with make_client(store, retry_delays=()) as client:
        ar = await client.start_rollout(input="q")
        rid, a1 = ar.rollout_id, ar.attempt.attempt_id
        other = await client.start_rollout(input="other")
        T1 = "4bf92f3577b34da6a3ce929d0e0e4736"
        T2 = "0af7651916cd43dd8448eb211c80319c"
        spans = [
            make_span(rid, a1, 1, "a000000000000001", name="root", trace_id=T1),
            make_span(rid, a1, 2, "a000000000000002", name="api_call.first", trace_id=T1, parent_id="a000000000000001"),
            make_span(rid, a1, 3, "a000000000000003", name="api_call.second", trace_id=T2, parent_id="a000000000000001"),
            make_span(rid, a1, 4, "b000000000000004", name="reward", trace_id=T2, parent_id="a000000000000003"),
        ]
        await client.add_many_spans(spans)
        await client.add_span(make_span(other.rollout_id, other.attempt.attempt_id, 1, "a000000000000001", name="api_call.x"))

        def names(p: Any) -> List[str]:
            return [s.name for s in p.items]

        assert names(await client.query_spans(rid, name_contains="api_call")) == ["api_call.first", "api_call.second"]
        assert names(await client.query_spans(rid, name="reward")) == ["reward"]
        assert names(await client.query_spans(rid, trace_id=T1)) == ["root", "api_call.first"]
        assert names(await client.query_spans(rid, trace_id=T2, name_contains="api_call")) == ["api_call.second"]
        p = await client.query_spans(rid, trace_id=T2, name_contains="first", filter_logic="or")
        assert names(p) == ["api_call.first", "api_call.second", "reward"]
        p = await client.query_spans(rid, span_id="a000000000000001", trace_id_contains="0af765", filter_logic="or")
        assert names(p) == ["root", "api_call.second", "reward"]
        assert names(await client.query_spans(rid, span_id_contains="b0000")) == ["reward"]
        assert names(await client.query_spans(rid, parent_id="a000000000000001")) == ["api_call.first", "api_call.second"]
        assert names(await client.query_spans(rid, parent_id_contains="0003")) == ["reward"]

        p = await client.query_spans(rid, sort_by="sequence_id", sort_order="desc", limit=1, offset=1)
        assert (p.total, p.limit, p.offset) == (4, 1, 1) and names(p) == ["api_call.second"]
        p = await client.query_spans(rid, sort_by="parent_id")
        assert p.items[0].name == "root"  # null parent sorts as ""
        p = await client.query_spans(rid, sort_by="parent_id", sort_order="desc")
        assert p.items[-1].name == "root"
        p = await client.query_spans(rid, limit=3)
        assert (p.total, len(p.items)) == (4, 3)

        # attempt filters: explicit id, "latest", unknown
        assert (await client.query_spans(rid, a1)).total == 4
        assert (await client.query_spans(rid, "latest")).total == 4
        ar2 = await client.start_attempt(rid)
        a2 = ar2.attempt.attempt_id
        assert (await client.query_spans(rid, "latest")).total == 0
        await client.add_span(make_span(rid, a2, 10, "c000000000000001", name="retry.root"))
        assert names(await client.query_spans(rid, "latest")) == ["retry.root"]
        assert (await client.query_spans(rid, a1)).total == 4
        assert (await client.query_spans(rid)).total == 5
        assert (await client.query_spans(rid, "at-ffffffff")).total == 0
        assert (await client.query_spans("ro-000000000000")).total == 0
        queued = await client.enqueue_rollout(input=0)
        p = await client.query_spans(queued.rollout_id, "latest")
        assert (p.total, list(p.items)) == (0, [])

        # start_attempt set the rollout to preparing; the span for the new (latest) attempt → running.
        ro = await client.get_rollout_by_id(rid)
        assert ro is not None and ro.status == "running"

        await expect_http_error(client.query_spans(rid, sort_by="invalid_field"), 400)


@run_async
async def test_span_for_old_attempt_does_not_touch_rollout(store):
    async with make_client(store) as client:
        ar = await client.start_rollout(input=1)
        a1 = ar.attempt.attempt_id
        await client.update_attempt(ar.rollout_id, a1, status="unresponsive")
        retry = await client.start_attempt(ar.rollout_id)
        assert retry.status == "preparing"
        await client.add_span(make_span(ar.rollout_id, a1, 1, "d000000000000001"))
        page = await client.query_attempts(ar.rollout_id)
        assert [a.status for a in page.items] == ["running", "preparing"]  # unresponsive → running
        ro = await client.get_rollout_by_id(ar.rollout_id)
        assert ro is not None and ro.status == "preparing"


def _sdk_spans(n_children: int = 1) -> Sequence[Any]:
    """Produce real opentelemetry-sdk ReadableSpans (ended) with a parent/child structure."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import Status, StatusCode

    captured: List[Any] = []

    class _Capture(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            captured.extend(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_Capture()))
    tracer = provider.get_tracer("compat-test")
    with tracer.start_as_current_span("agent.step", attributes={"step": 1, "ok": True, "score": 0.25}) as parent:
        parent.add_event("thinking", {"tokens": 12})
        for i in range(n_children):
            with tracer.start_as_current_span(f"tool.{i}", attributes={"tool.idx": i, "tags": ["a", "b"]}) as child:
                child.set_status(Status(StatusCode.ERROR, "tool failed"))
    provider.shutdown()
    return captured  # children first, parent last (end order)


@run_async
async def test_add_otel_span_with_sdk_spans(store):
    async with make_client(store) as client:
        ar = await client.start_rollout(input="otel")
        rid, aid = ar.rollout_id, ar.attempt.attempt_id
        child, parent = _sdk_spans(1)

        sp = await client.add_otel_span(rid, aid, child)
        assert isinstance(sp, Span)
        assert sp.sequence_id == 1  # allocated via /spans/next
        assert sp.name == "tool.0"
        assert sp.span_id == format(child.context.span_id, "016x")
        assert sp.trace_id == format(child.context.trace_id, "032x")
        assert sp.parent_id == format(parent.context.span_id, "016x")
        assert sp.status.status_code == "ERROR" and sp.status.description == "tool failed"
        assert sp.attributes == {"tool.idx": 0, "tags": ["a", "b"]}
        assert sp.start_time == pytest.approx(child.start_time / 1e9, abs=1e-5)

        sp2 = await client.add_otel_span(rid, aid, parent, sequence_id=50)
        assert sp2 is not None and sp2.sequence_id == 50
        assert sp2.parent_id is None
        assert sp2.attributes == {"step": 1, "ok": True, "score": 0.25}
        assert [e.name for e in sp2.events] == ["thinking"] and sp2.events[0].attributes == {"tokens": 12}

        # duplicate
        assert await client.add_otel_span(rid, aid, parent) is None

        page = await client.query_spans(rid)
        assert [(s.sequence_id, s.name) for s in page.items] == [(1, "tool.0"), (50, "agent.step")]
        assert page.items[0].model_dump(mode="json") == sp.model_dump(mode="json")
        assert await client.get_next_span_sequence_id(rid, aid) == 52  # 51 was consumed by the duplicate

        ro = await client.get_rollout_by_id(rid)
        assert ro is not None and ro.status == "running"


@run_async
async def test_add_otel_span_concurrent_sequence_ids(store):
    async with make_client(store) as client:
        ar = await client.start_rollout(input="burst")
        rid, aid = ar.rollout_id, ar.attempt.attempt_id
        readable = list(_sdk_spans(20))[:20]
        results = await asyncio.gather(*[client.add_otel_span(rid, aid, s) for s in readable])
        assert all(r is not None for r in results)
        assert sorted(r.sequence_id for r in results) == list(range(1, 21))
        page = await client.query_spans(rid, attempt_id="latest")
        assert page.total == 20
        assert [s.sequence_id for s in page.items] == list(range(1, 21))


@run_async
async def test_otlp_traces_endpoint_accepts_sdk_exporter(store):
    """`otlp_traces_endpoint()` + the stock OTLP/HTTP protobuf exporter (what runner tracers use)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    async with make_client(store) as client:
        endpoint = client.otlp_traces_endpoint()
        assert endpoint == store.url.rstrip("/") + "/v1/traces"
        ar = await client.start_rollout(input="otlp", worker_id="ow")
        rid, aid = ar.rollout_id, ar.attempt.attempt_id
        await client.get_next_span_sequence_id(rid, aid)  # consume 1

        def export_sync() -> None:
            provider = TracerProvider(
                resource=Resource.create({"agentlightning.rollout_id": rid, "agentlightning.attempt_id": aid})
            )
            provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
            tracer = provider.get_tracer("compat-otlp")
            with tracer.start_as_current_span("outer", attributes={"x": 1}):
                with tracer.start_as_current_span("inner", attributes={"agentlightning.span_sequence_id": 42}):
                    pass
            provider.shutdown()

        await asyncio.to_thread(export_sync)

        page = await client.query_spans(rid)
        by_name = {s.name: s for s in page.items}
        assert set(by_name) == {"outer", "inner"}
        assert by_name["inner"].sequence_id == 42  # explicit id from the span attribute
        assert by_name["outer"].sequence_id == 43  # allocated; counter was raised to 42 by the first export
        assert by_name["inner"].parent_id == by_name["outer"].span_id
        assert by_name["outer"].resource.attributes["agentlightning.rollout_id"] == rid
        assert by_name["outer"].resource.attributes["agentlightning.attempt_id"] == aid
        assert by_name["outer"].attributes == {"x": 1}
        assert by_name["outer"].context is not None and by_name["outer"].context.span_id == by_name["outer"].span_id
        assert by_name["outer"].parent is None
        at = await client.get_latest_attempt(rid)
        assert at is not None and at.status == "running" and at.last_heartbeat_time is not None
        ro = await client.get_rollout_by_id(rid)
        assert ro is not None and ro.status == "running"


# ---------------------------------------------------------------------------------------------
# wait_for_rollouts, statistics, health scan, close
# ---------------------------------------------------------------------------------------------


@run_async
async def test_wait_for_rollouts(store):
    async with make_client(store) as client:
        done = await client.start_rollout(input="done")
        await client.update_attempt(done.rollout_id, "latest", status="succeeded")
        cancelled = await client.enqueue_rollout(input="cancel")
        await client.update_rollout(cancelled.rollout_id, status="cancelled")
        failed = await client.start_rollout(input="fail")
        await client.update_attempt(failed.rollout_id, "latest", status="failed")
        open_ = await client.enqueue_rollout(input="open")

        t = time.monotonic()
        assert await client.wait_for_rollouts(rollout_ids=[open_.rollout_id], timeout=0) == []
        assert time.monotonic() - t < 1.0

        res = await client.wait_for_rollouts(
            rollout_ids=[done.rollout_id, open_.rollout_id, "ro-000000000000", cancelled.rollout_id, done.rollout_id],
            timeout=0.05,
        )
        assert [r.rollout_id for r in res] == [done.rollout_id, cancelled.rollout_id, done.rollout_id]
        assert all(is_plain_rollout(r) for r in res)
        assert [r.status for r in res] == ["succeeded", "cancelled", "succeeded"]
        assert all(r.end_time is not None for r in res)

        res = await client.wait_for_rollouts(rollout_ids=[failed.rollout_id, done.rollout_id])  # timeout=None
        assert [(r.rollout_id, r.status) for r in res] == [(failed.rollout_id, "failed"), (done.rollout_id, "succeeded")]

        with pytest.raises(ValueError):
            await client.wait_for_rollouts(rollout_ids=[open_.rollout_id], timeout=0.2)

        # A positive timeout waits (up to 0.1 s) ...
        t = time.monotonic()
        assert await client.wait_for_rollouts(rollout_ids=[open_.rollout_id], timeout=0.1) == []
        assert time.monotonic() - t >= 0.08

        # ... and is released when the rollout finishes meanwhile.
        c = await client.dequeue_rollout()
        assert c is not None and c.rollout_id == open_.rollout_id

        async def finish_soon() -> None:
            await asyncio.sleep(0.02)
            await client.update_attempt(open_.rollout_id, "latest", status="succeeded")

        res, _ = await asyncio.gather(
            client.wait_for_rollouts(rollout_ids=[open_.rollout_id], timeout=0.1), finish_soon()
        )
        assert [r.rollout_id for r in res] == [open_.rollout_id] and res[0].status == "succeeded"


@run_async
async def test_statistics(store):
    async with make_client(store) as client:
        s0 = await client.statistics()
        assert isinstance(s0, dict)
        assert isinstance(s0["name"], str) and s0["name"]
        for key in ("total_rollouts", "total_attempts", "total_spans", "total_resources", "total_workers"):
            assert s0[key] == 0, key
            assert type(s0[key]) is int
        assert isinstance(s0["uptime"], (int, float)) and s0["uptime"] >= 0

        await client.add_resources({"p": PromptTemplate(template="t", engine="jinja")})
        ar = await client.start_rollout(input=1, worker_id="stat-w")
        await client.start_attempt(ar.rollout_id)
        await client.enqueue_rollout(input=2)
        await client.add_span(make_span(ar.rollout_id, ar.attempt.attempt_id, 1, "e000000000000001"))
        await client.add_span(make_span(ar.rollout_id, ar.attempt.attempt_id, 2, "e000000000000002"))
        await client.update_worker("stat-w2")

        s1 = await client.statistics()
        assert s1["total_rollouts"] == 2
        assert s1["total_attempts"] == 2
        assert s1["total_spans"] == 2
        assert s1["total_resources"] == 1
        assert s1["total_workers"] == 2
        assert s1["uptime"] >= s0["uptime"]


@run_async
async def test_health_scan_timeout_and_unresponsive(store):
    """Scan (§4.5): timeout → failed; unresponsive with retry → requeuing and worker unknown."""
    async with make_client(store) as client:
        t_ar = await client.start_rollout(input="slow", config=RolloutConfig(timeout_seconds=0.5))
        u_cfg = RolloutConfig(unresponsive_seconds=0.5, max_attempts=2, retry_condition=["unresponsive"])
        u_r = await client.enqueue_rollout(input="silent", config=u_cfg)
        u_c = await client.dequeue_rollout(worker_id="silent-worker")
        assert u_c is not None and u_c.rollout_id == u_r.rollout_id
        # A healthy rollout: its unresponsive window is far away.
        ok = await client.start_rollout(input="ok", config=RolloutConfig(unresponsive_seconds=60))

        await asyncio.sleep(1.0)
        # The scan runs before scan-endpoints (or from a timer ≤ 10 s); poll a scan endpoint.
        deadline = time.monotonic() + 15
        while True:
            t_ro = await client.get_rollout_by_id(t_ar.rollout_id)
            u_ro = await client.get_rollout_by_id(u_r.rollout_id)
            assert t_ro is not None and u_ro is not None
            if (t_ro.status, u_ro.status) == ("failed", "requeuing") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)

        assert t_ro.status == "failed"
        assert t_ro.end_time is not None
        assert isinstance(t_ro, AttemptedRollout) and t_ro.attempt.status == "timeout"
        assert t_ro.attempt.end_time is None  # timeout does not set the attempt's end_time

        assert u_ro.status == "requeuing"
        assert isinstance(u_ro, AttemptedRollout) and u_ro.attempt.status == "unresponsive"
        w = await client.get_worker_by_id("silent-worker")
        assert w is not None and w.status == "unknown"
        assert w.current_rollout_id is None and w.current_attempt_id is None

        again = await client.dequeue_rollout(worker_id="silent-worker")
        assert again is not None and again.rollout_id == u_r.rollout_id and again.attempt.sequence_id == 2

        ok_ro = await client.get_rollout_by_id(ok.rollout_id)
        assert ok_ro is not None and ok_ro.status == "preparing"


@run_async
async def test_close_is_idempotent_and_client_reusable(store):
    async with make_client(store) as client:
        await client.statistics()
        await client.close()
        await client.close()
        # a new session is created transparently after close()
        r = await client.enqueue_rollout(input="after-close")
        assert (await client.get_rollout_by_id(r.rollout_id)) == r
