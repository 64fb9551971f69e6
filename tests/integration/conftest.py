"""Fixtures for the black-box integration suite: one scratch PostgreSQL cluster per session, a
fresh database and a fresh `stored` per test, and a small HTTP helper (StoreApi)."""

from __future__ import annotations

import itertools
import os
import re
import sys
import time

import pytest
import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402

NOBODY = object()  # sentinel: send no body at all

RO_RE = re.compile(r"^ro-[0-9a-f]{12}$")
AT_RE = re.compile(r"^at-[0-9a-f]{8}$")
RS_RE = re.compile(r"^rs-[0-9a-f]{12}$")

_db_counter = itertools.count(1)


def is_json_ct(resp: requests.Response) -> bool:
    ct = resp.headers.get("Content-Type", "")
    return ct.split(";")[0].strip().lower() == "application/json"


def expect(resp: requests.Response, status: int):
    """Asserts the status and the JSON content type, returns the decoded body."""
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.request.url}: expected {status}, got {resp.status_code}: "
        f"{resp.text[:800]}")
    assert is_json_ct(resp), (
        f"{resp.request.method} {resp.request.url}: Content-Type "
        f"{resp.headers.get('Content-Type')!r} is not application/json")
    return resp.json()


def expect_detail(resp: requests.Response, status: int, detail: str | None = None):
    """Asserts an error with a string `detail` (optionally exactly `detail`)."""
    body = expect(resp, status)
    assert isinstance(body, dict) and isinstance(body.get("detail"), str), body
    if detail is not None:
        assert body["detail"] == detail, body
    return body


def expect_422(resp: requests.Response, field: str | None = None):
    """Asserts a pydantic-style 422: detail is a non-empty list of objects with a `loc` list;
    when `field` is given some entry's loc names it."""
    body = expect(resp, 422)
    assert isinstance(body, dict), body
    det = body.get("detail")
    assert isinstance(det, list) and det, body
    for d in det:
        assert isinstance(d, dict) and isinstance(d.get("loc"), list), body
    if field is not None:
        assert any(field in [str(x) for x in d["loc"]] for d in det), (
            f"no 422 entry whose loc names {field!r}: {body}")
    return body


def make_span(rollout_id, attempt_id, sequence_id=1, span_id="00f067aa0ba902b7", *,
              trace_id="4bf92f3577b34da6a3ce929d0e0e4736", parent_id=None, name="op",
              attributes=None, start_time=None, end_time=None, **extra):
    now = time.time()
    span = {
        "rollout_id": rollout_id,
        "attempt_id": attempt_id,
        "sequence_id": sequence_id,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent_id,
        "name": name,
        "status": {"status_code": "OK", "description": None},
        "attributes": attributes if attributes is not None else {"k": "v"},
        "events": [],
        "links": [],
        "start_time": start_time if start_time is not None else now,
        "end_time": end_time if end_time is not None else now + 0.01,
        "context": {"trace_id": trace_id, "span_id": span_id, "is_remote": False,
                    "trace_state": {}},
        "parent": None,
        "resource": {"attributes": {"service.name": "test"}, "schema_url": ""},
    }
    span.update(extra)
    return span


class StoreApi:
    """HTTP helper around one stored. Paths starting with /v1/ are taken from the root, all
    others are relative to /v1/agl."""

    def __init__(self, stored: harness.Stored | str):
        if isinstance(stored, str):
            self.stored = None
            self.url = stored
        else:
            self.stored = stored
            self.url = stored.url
        self.api = self.url + "/v1/agl"
        self.session = requests.Session()

    def _u(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        if path.startswith("/v1/") or path == "/":
            return self.url + path
        return self.api + (path if path.startswith("/") else "/" + path)

    def get(self, path, params=None, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.get(self._u(path), params=params, **kw)

    def post(self, path, json=NOBODY, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        if json is NOBODY:
            return self.session.post(self._u(path), **kw)
        return self.session.post(self._u(path), json=json, **kw)

    def request(self, method, path, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.request(method, self._u(path), **kw)

    # ---- typed helpers (each asserts success) ----
    def enqueue(self, n=1, **fields):
        items = []
        for i in range(n):
            item = {"input": fields.get("input", {"i": i}), "mode": fields.get("mode"),
                    "resources_id": fields.get("resources_id"), "config": fields.get("config"),
                    "metadata": fields.get("metadata")}
            items.append(item)
        out = expect(self.post("/queues/rollouts/enqueue", {"rollouts": items}), 201)
        assert len(out) == n
        return out

    def enqueue_one(self, **fields):
        return self.enqueue(1, **fields)[0]

    def dequeue(self, limit=1, worker_id=None):
        body = {"limit": limit}
        if worker_id is not None:
            body["worker_id"] = worker_id
        return expect(self.post("/queues/rollouts/dequeue", body), 200)

    def start_rollout(self, input=None, mode=None, resources_id=None, config=None,
                      metadata=None, worker_id=None):
        body = {"input": input if input is not None else {"q": "hi"}, "mode": mode,
                "resources_id": resources_id, "config": config, "metadata": metadata,
                "worker_id": worker_id}
        return expect(self.post("/rollouts", body), 201)

    def start_attempt(self, rollout_id, worker_id=None):
        if worker_id is None:
            return expect(self.post(f"/rollouts/{rollout_id}/attempts"), 201)
        return expect(self.post(f"/rollouts/{rollout_id}/attempts", {"worker_id": worker_id}),
                      201)

    def rollout(self, rollout_id):
        return expect(self.get(f"/rollouts/{rollout_id}"), 200)

    def update_rollout(self, rollout_id, **fields):
        return expect(self.post(f"/rollouts/{rollout_id}", fields), 200)

    def update_attempt(self, rollout_id, attempt_id, **fields):
        return expect(self.post(f"/rollouts/{rollout_id}/attempts/{attempt_id}", fields), 200)

    def attempts(self, rollout_id, **params):
        return expect(self.get(f"/rollouts/{rollout_id}/attempts", params=params), 200)

    def latest_attempt(self, rollout_id):
        return expect(self.get(f"/rollouts/{rollout_id}/attempts/latest"), 200)

    def worker(self, worker_id):
        return expect(self.get(f"/workers/{worker_id}"), 200)

    def heartbeat(self, worker_id, stats=NOBODY):
        if stats is NOBODY:
            return expect(self.post(f"/workers/{worker_id}"), 200)
        return expect(self.post(f"/workers/{worker_id}", {"heartbeat_stats": stats}), 200)

    def add_span(self, span):
        return expect(self.post("/spans", span), 201)

    def next_seq(self, rollout_id, attempt_id="latest"):
        out = expect(self.post("/spans/next", {"rollout_id": rollout_id,
                                                "attempt_id": attempt_id}), 200)
        return out["sequence_id"]

    def spans(self, rollout_id, **params):
        params = dict(params, rollout_id=rollout_id)
        return expect(self.get("/spans", params=params), 200)

    def add_resources(self, resources):
        return expect(self.post("/resources", resources), 201)

    def upsert_resources(self, rid, resources):
        return expect(self.post(f"/resources/{rid}", resources), 200)

    def wait(self, ids, timeout=0.0, **kw):
        return expect(self.post("/waits/rollouts", {"rollout_ids": ids, "timeout": timeout},
                                **kw), 200)

    def stats(self):
        return expect(self.get("/statistics"), 200)

    def close(self):
        self.session.close()


def _fresh_db(pg: harness.PgCluster, request) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return pg.create_database(f"t{next(_db_counter)}_{name}")


@pytest.fixture(scope="session")
def pg():
    if not os.path.exists(harness.stored_binary()):
        pytest.exit(f"stored binary missing: {harness.stored_binary()} (build it first, "
                    f"or set AGL_BUILD)", returncode=2)
    with harness.PgCluster() as c:
        yield c
    harness.cleanup_all()


@pytest.fixture
def db_url(pg, request):
    """A fresh empty database, for tests that start their own stored processes."""
    return _fresh_db(pg, request)


@pytest.fixture
def stored_factory(request):
    """start(db_url, *args, **kw) -> harness.Stored; everything started is killed afterwards."""
    started: list[harness.Stored] = []

    def start(db, *args, **kw):
        s = harness.start_stored(db, *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def _store_args(request):
    m = request.node.get_closest_marker("stored_args")
    return tuple(m.args) if m else ()


@pytest.fixture
def store(pg, request):
    """A stored on a fresh database. Extra CLI args: @pytest.mark.stored_args("--max-body", "1")."""
    url = _fresh_db(pg, request)
    s = harness.start_stored(url, *_store_args(request))
    api = StoreApi(s)
    try:
        yield api
    finally:
        api.close()
        crashed = s.proc.poll()
        s.kill()
        if crashed is not None:
            pytest.fail(f"stored exited during the test with {crashed}:\n{s.log()[-4000:]}",
                        pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "stored_args(*args): extra stored command-line args")
