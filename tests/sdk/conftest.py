"""Fixtures for the SDK's tests: a database of its own per module, reached through the proxy that serves the
packaged MiniLM embedder and the tiny task models (cross-encoder, text-generation)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from tests.conftest import Upstream
from tests.support.servers import ProxyProcess

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def sdk_url(upstream: Upstream, nlp_proxy: ProxyProcess) -> Iterator[str]:
    """A fresh database for the module, as a proxy URL; the SDK installs the pgml catalog on first use."""
    name = f"sdk_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(upstream.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield nlp_proxy.url(database=name)
    with psycopg.connect(upstream.url(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def collection_name() -> str:
    """A unique collection name per test, as the upstream suites use."""
    return f"test_{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
async def close_pools() -> AsyncIterator[None]:
    """Close the SDK's pools of this test's loop when the test ends, so no pool outlives its loop."""
    yield
    from pgml.connection import close_pools

    await close_pools()
