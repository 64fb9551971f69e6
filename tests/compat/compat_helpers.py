"""Helpers shared by the compat tests (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any, AsyncIterator, Callable, Coroutine


def run_async(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """Run an ``async def`` test body in a fresh event loop (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


@contextlib.asynccontextmanager
async def make_client(store: Any, **kwargs: Any) -> AsyncIterator[Any]:
    """A real LightningStoreClient pointing at ``store`` (closed on exit)."""
    from agentlightning.store.client_server import LightningStoreClient

    client = LightningStoreClient(store.url, **kwargs)
    try:
        yield client
    finally:
        await client.close()
