"""Process-level behaviour: two stored processes on one database behave as one store, restart
keeps data, SIGTERM exits 0, the embedded PostgreSQL mode (no --db) works (also as root)."""

import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness
from conftest import StoreApi, expect, make_span


@pytest.fixture
def two(db_url, stored_factory):
    a = StoreApi(stored_factory(db_url))
    b = StoreApi(stored_factory(db_url))
    yield a, b
    a.close()
    b.close()


def test_enqueue_on_a_dequeue_on_b(two):
    a, b = two
    ros = a.enqueue(3)
    out = b.dequeue(2, worker_id="wb")
    assert [o["rollout_id"] for o in out] == [r["rollout_id"] for r in ros[:2]]
    assert a.rollout(ros[0]["rollout_id"])["status"] == "preparing"
    assert a.worker("wb")["status"] == "busy"
    assert [o["rollout_id"] for o in a.dequeue(5)] == [ros[2]["rollout_id"]]
    assert b.dequeue(5) == []
    assert a.stats()["total_rollouts"] == b.stats()["total_rollouts"] == 3


def test_concurrent_dequeue_across_processes(two):
    a, b = two
    ids = {r["rollout_id"] for r in a.enqueue(120)}
    urls = [a.url, b.url]

    def worker(i):
        api = StoreApi(urls[i % 2])
        got = []
        try:
            while True:
                out = api.dequeue(2, worker_id=f"w{i}")
                if not out:
                    return got
                got.extend(o["rollout_id"] for o in out)
        finally:
            api.close()

    with ThreadPoolExecutor(12) as ex:
        results = list(ex.map(worker, range(12)))
    claimed = [x for r in results for x in r]
    assert not [k for k, v in Counter(claimed).items() if v > 1]
    assert set(claimed) == ids
    assert a.stats()["total_attempts"] == 120


def test_sequence_ids_unique_across_processes(two):
    a, b = two
    ro = a.start_rollout()
    rid = ro["rollout_id"]
    urls = [a.url, b.url]

    def alloc(i):
        api = StoreApi(urls[i % 2])
        try:
            return [api.next_seq(rid) for _ in range(5)]
        finally:
            api.close()

    with ThreadPoolExecutor(8) as ex:
        seqs = [s for r in ex.map(alloc, range(8)) for s in r]
    assert sorted(seqs) == list(range(1, 41))


def test_state_shared_across_processes(two):
    a, b = two
    res = a.add_resources({})
    assert expect(b.get("/resources/latest"), 200)["resources_id"] == res["resources_id"]
    b.upsert_resources("from-b", {})
    assert expect(a.get("/resources/latest"), 200)["resources_id"] == "from-b"
    ro = b.start_rollout()
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    a.add_span(make_span(rid, aid, b.next_seq(rid)))
    assert b.spans(rid)["total"] == 1
    assert a.next_seq(rid) == 2
    a.heartbeat("wx", {"k": 1})
    assert b.worker("wx")["heartbeat_stats"] == {"k": 1}


def test_wait_on_a_released_by_b(two):
    a, b = two
    ro = a.start_rollout()
    rid = ro["rollout_id"]

    def finish():
        time.sleep(0.4)
        b.update_attempt(rid, "latest", status="succeeded")

    t = threading.Thread(target=finish)
    t.start()
    t0 = time.monotonic()
    out = a.wait([rid], 8)
    dt = time.monotonic() - t0
    t.join()
    assert [o["status"] for o in out] == ["succeeded"]
    assert dt < 5.0, dt


def test_restart_keeps_data(db_url, stored_factory):
    s = stored_factory(db_url)
    api = StoreApi(s)
    res = api.add_resources({"p": {"resource_type": "prompt_template", "template": "t",
                                   "engine": "jinja"}})
    queued = api.enqueue(2)
    ro = api.start_rollout(worker_id="w-r", metadata={"keep": [1, 2.5]})
    rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
    span = make_span(rid, aid, api.next_seq(rid), kind="SpanKind.INTERNAL")
    api.add_span(span)
    api.heartbeat("w-r", {"gpu": 1})
    before_ro = api.rollout(rid)
    before_worker = api.worker("w-r")
    api.close()
    assert s.stop() == 0, s.log()[-3000:]

    s2 = stored_factory(db_url)
    api = StoreApi(s2)
    assert api.rollout(rid) == before_ro
    assert api.worker("w-r") == before_worker
    assert api.spans(rid)["items"] == [span]
    assert expect(api.get("/resources/latest"), 200) == res
    assert api.next_seq(rid) == 2
    out = api.dequeue(5)
    assert [o["rollout_id"] for o in out] == [q["rollout_id"] for q in queued]
    st = api.stats()
    assert st["total_rollouts"] == 3 and st["total_spans"] == 1
    api.close()
    assert s2.stop() == 0


def test_sigterm_during_idle_keepalive_exits_zero(db_url, stored_factory):
    s = stored_factory(db_url)
    api = StoreApi(s)
    api.enqueue(1)  # leaves a pooled keep-alive connection open
    t0 = time.monotonic()
    assert s.stop(signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - t0 < 10
    api.close()


def test_sigint_exits_zero(db_url, stored_factory):
    s = stored_factory(db_url)
    assert s.stop(signal.SIGINT) == 0


def _postmaster_pids(root):
    found = []
    for dirpath, _dirs, files in os.walk(root):
        if "postmaster.pid" in files:
            found.append(os.path.join(dirpath, "postmaster.pid"))
    return found


def test_embedded_postgres(stored_factory):
    tmp = tempfile.mkdtemp(prefix="aglemb-", dir="/tmp")
    os.chmod(tmp, 0o755)  # an ordinary directory, as /var/lib would be
    data = os.path.join(tmp, "data")
    try:
        s = stored_factory(None, "--pg-bin", harness.pg_bin_dir(), data_dir=data, timeout=90)
        api = StoreApi(s)
        ros = api.enqueue(2, metadata={"e": 1})
        d = api.dequeue(1, worker_id="emb")[0]
        api.add_span(make_span(d["rollout_id"], d["attempt"]["attempt_id"], 1))
        api.close()
        assert s.stop(timeout=30) == 0, s.log()[-3000:]
        assert not _postmaster_pids(data), "embedded PostgreSQL still running after exit"

        s2 = stored_factory(None, "--pg-bin", harness.pg_bin_dir(), data_dir=data, timeout=90)
        api = StoreApi(s2)
        got = api.rollout(ros[0]["rollout_id"])
        assert got["status"] == "running" and got["metadata"] == {"e": 1}
        assert got["attempt"]["attempt_id"] == d["attempt"]["attempt_id"]
        assert api.spans(d["rollout_id"])["total"] == 1
        assert [o["rollout_id"] for o in api.dequeue(5)] == [ros[1]["rollout_id"]]
        api.close()
        assert s2.stop(timeout=30) == 0, s2.log()[-3000:]
        assert not _postmaster_pids(data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

