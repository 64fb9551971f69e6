"""Spec §5.7 atomicity under concurrency: dequeue claims, sequence ids, attempt creation,
duplicate spans, concurrent enqueues."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from conftest import StoreApi, expect, make_span


def run_threads(store, n, fn):
    """Runs fn(i, api) in n threads, each with its own connection; returns the results."""
    barrier = threading.Barrier(n)

    def wrap(i):
        api = StoreApi(store.url)
        try:
            barrier.wait(10)
            return fn(i, api)
        finally:
            api.close()

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(wrap, range(n)))


def test_concurrent_dequeue_claims_each_once(store):
    ros = store.enqueue(200)
    expected = {r["rollout_id"] for r in ros}

    def worker(i, api):
        got = []
        while True:
            out = api.dequeue(3, worker_id=f"w{i}")
            if not out:
                return got
            got.extend((o["rollout_id"], o["attempt"]["sequence_id"]) for o in out)

    results = run_threads(store, 16, worker)
    claimed = [rid for res in results for rid, _ in res]
    dup = [k for k, v in Counter(claimed).items() if v > 1]
    assert not dup, f"double-claimed: {dup[:5]}"
    assert set(claimed) == expected
    assert all(seq == 1 for res in results for _, seq in res)
    st = store.stats()
    assert st["total_attempts"] == 200
    p = expect(store.get("/rollouts", params={"status_in": "preparing"}), 200)
    assert p["total"] == 200


def test_concurrent_next_sequence_ids(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    ids = run_threads(store, 20, lambda i, api: api.next_seq(rid, "latest"))
    assert sorted(ids) == list(range(1, 21))


def test_concurrent_otel_style_spans(store):  # §9: 20 concurrent add_otel_span → 1..20
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]

    def add(i, api):
        seq = api.next_seq(rid, aid)
        api.add_span(make_span(rid, aid, seq, span_id=f"{i + 1:016x}"))
        return seq

    seqs = run_threads(store, 20, add)
    assert sorted(seqs) == list(range(1, 21))
    p = expect(store.post("/spans/search", {"rollout_id": rid, "attempt_id": "latest",
                                            "limit": -1, "offset": 0}), 200)
    assert [s["sequence_id"] for s in p["items"]] == list(range(1, 21))


def test_concurrent_start_attempts_dense_sequence(store):
    ro = store.start_rollout()
    rid = ro["rollout_id"]
    outs = run_threads(store, 12, lambda i, api: api.start_attempt(rid)["attempt"])
    seqs = sorted(a["sequence_id"] for a in outs)
    assert seqs == list(range(2, 14))
    assert len({a["attempt_id"] for a in outs}) == 12
    p = store.attempts(rid)
    assert [a["sequence_id"] for a in p["items"]] == list(range(1, 14))
    assert store.latest_attempt(rid)["sequence_id"] == 13


def test_concurrent_duplicate_spans_one_wins(store):
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    span = make_span(rid, aid, 1)
    outs = run_threads(store, 10, lambda i, api: api.add_span(span))
    assert sum(1 for o in outs if o is not None) == 1
    assert store.spans(rid)["total"] == 1


def test_concurrent_enqueue_batches(store):  # §9: 5 × 3 → 15 distinct
    outs = run_threads(store, 5, lambda i, api: api.enqueue(3))
    ids = [r["rollout_id"] for batch in outs for r in batch]
    assert len(set(ids)) == 15
    # two concurrent dequeue_many(limit=3) over 6 → 6 distinct claims
    assert len(store.dequeue(100)) == 15  # drain
    store.enqueue(6)
    outs = run_threads(store, 2, lambda i, api: api.dequeue(3))
    claimed = [o["rollout_id"] for batch in outs for o in batch]
    assert len(claimed) == 6 and len(set(claimed)) == 6
    assert store.dequeue(1) == []


def test_concurrent_heartbeat_and_metadata(store):  # §5.7
    ro = store.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]

    def work(i, api):
        if i % 2 == 0:
            api.add_span(make_span(rid, aid, i, span_id=f"{i + 1:016x}"))
        else:
            api.update_attempt(rid, aid, metadata={"writer": i})

    run_threads(store, 10, work)
    att = store.latest_attempt(rid)
    assert att["status"] == "running"
    assert att["metadata"] is not None and att["metadata"]["writer"] % 2 == 1
    assert store.spans(rid)["total"] == 5


def test_concurrent_resource_upserts_version(store):
    run_threads(store, 10, lambda i, api: api.upsert_resources("shared", {}))
    got = expect(store.get("/resources/shared"), 200)
    assert got["version"] == 10
