"""Compatibility suite: the real, unmodified agentlightning Python client against `stored`.

Fixtures
--------
* ``pg``     (session)  — one scratch PostgreSQL cluster (tests/harness.py ``PgCluster``).
* ``store``  (function) — a fresh database plus a freshly started ``stored`` bound to it.

pytest-asyncio is not part of the test venv, so async test bodies are driven with
``compat_helpers.run_async`` (one ``asyncio.run`` per test).  The LightningStoreClient caches
one aiohttp session per event loop, so a test creates its client *inside* that single loop
(``async with make_client(store) as client``) and never shares it across loops.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# Importing agentlightning pulls in LiteLLM, which otherwise tries to download a model price
# table (with retries) on import; there is no network in CI.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Keep agentops (imported transitively) from phoning home.
os.environ.setdefault("AGENTOPS_API_KEY", "dummy")
os.environ.setdefault("AGENTOPS_LOG_LEVEL", "ERROR")

import harness  # noqa: E402  (tests/harness.py, provided by the integration suite)

_db_counter = itertools.count(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def pg():
    with harness.PgCluster() as cluster:
        yield cluster


@pytest.fixture
def store(pg, request):
    """A freshly started stored on an empty database. Yields the harness ``Stored``."""
    name = f"compat_{next(_db_counter)}_{os.getpid()}"
    db_url = pg.create_database(name)
    srv = harness.start_stored(db_url)
    try:
        yield srv
    finally:
        rc = srv.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            # Surface the server log next to the failure.
            sys.stderr.write(f"\n----- stored log ({name}, exit {rc}) -----\n{srv.log()}\n")
        pg.drop_database(name)
    # A crash (or an unclean SIGTERM shutdown) caused by the client traffic is a failure too.
    assert rc == 0, f"stored exited with {rc} on SIGTERM:\n{srv.log()[-4000:]}"
