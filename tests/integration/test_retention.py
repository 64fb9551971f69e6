"""Span retention (issue 4): --retain-spans and per-mode overrides delete the spans of finished
rollouts older than the limit, in bounded batches, while requests keep flowing; rollouts and
statistics stay."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import expect, make_span

ARGS = ("--retain-spans", "1s", "--retain-spans-val", "off", "--retain-spans-test", "1h",
        "--retention-interval", "0.2", "--retention-batch", "7")


def add_spans(store, rid, aid, n, start=0):
    for i in range(n):
        store.add_span(make_span(rid, aid, start + i + 1, span_id=f"{start + i:016x}"))


def span_count(store, rid):
    return expect(store.get("/spans", params={"rollout_id": rid}), 200)["total"]


def wait_until(cond, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.mark.stored_args(*ARGS)
def test_retention_deletes_exactly_the_finished_old_spans(store):
    made = {}
    for name, mode, finish in [("train_done", "train", "succeeded"), ("none_done", None, "failed"),
                               ("val_done", "val", "succeeded"), ("test_done", "test", "cancelled"),
                               ("train_running", "train", None)]:
        ro = store.start_rollout(mode=mode)
        rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
        add_spans(store, rid, aid, 30)
        made[name] = (rid, aid)
    for name, mode, finish in [("train_done", 0, "succeeded"), ("none_done", 0, "failed"),
                               ("val_done", 0, "succeeded"), ("test_done", 0, "cancelled")]:
        store.update_rollout(made[name][0], status=finish)
    total_before = store.stats()["total_spans"]
    assert total_before == 150

    # concurrent load: spans keep arriving for the running rollout while the sweeper works
    stop = threading.Event()
    added = [0]
    errors = []

    def writer():
        rid, aid = made["train_running"]
        i = 30
        while not stop.is_set():
            try:
                add_spans(store.__class__(store.url), rid, aid, 1, start=i)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return
            i += 1
            added[0] += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        assert wait_until(lambda: span_count(store, made["train_done"][0]) == 0 and
                          span_count(store, made["none_done"][0]) == 0)
        time.sleep(0.6)  # a few more sweeps under load
    finally:
        stop.set()
        th.join()
    assert not errors, errors
    assert added[0] > 0
    assert span_count(store, made["val_done"][0]) == 30  # off
    assert span_count(store, made["test_done"][0]) == 30  # 1h not reached
    assert span_count(store, made["train_running"][0]) == 30 + added[0]  # not finished
    # rollouts stay; statistics keep counting retired spans
    for rid, _ in made.values():
        assert store.rollout(rid)["rollout_id"] == rid
    assert store.stats()["total_spans"] == 150 + added[0]
    # metrics saw the deletions
    text = store.get(store.url + "/metrics").text
    line = [l for l in text.splitlines() if l.startswith("agl_spans_retired_total ")]
    assert line and int(line[0].split()[1]) == 60


@pytest.mark.parametrize("bad", ["soon", "-5s", "3w"])
def test_bad_duration_refused(db_url, stored_factory, bad):
    import subprocess

    import harness

    r = subprocess.run([harness.stored_binary(), "--db", db_url, "--retain-spans", bad],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "duration" in r.stderr
