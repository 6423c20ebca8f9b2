"""Fixtures: one embedded PostgreSQL and one proxy in front of it for the whole run.

Set ``PGML_TEST_UPSTREAM`` to a DSN to run the suite against an existing server instead (as asyncpg's
test base does); it must have the roles of ``ROLES_SQL`` and the hba rules of ``HBA`` for the auth tests.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pgml_proxy.embedded import EmbeddedPostgres
from tests.support.servers import HBA, ROLES_SQL, ProxyProcess, free_port, run_psql, start_proxy

EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class Upstream:
    """The server under the proxy: a unix-socket DSN (as the embedded server hands out) and a TCP one."""

    def __init__(self, socket_dsn: str, tcp_host: str, tcp_port: int) -> None:
        self.socket_dsn = socket_dsn
        self.tcp_host = tcp_host
        self.tcp_port = tcp_port

    def url(self, user: str = "postgres", database: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@{self.tcp_host}:{self.tcp_port}/{database}"


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    existing = os.environ.get("PGML_TEST_UPSTREAM")
    if existing:
        from pgml_proxy.upstream import UpstreamTarget

        target = UpstreamTarget.from_dsn(existing)
        yield Upstream(existing, target.host, target.port)
        return
    with tempfile.TemporaryDirectory(prefix="pgml-test-") as folder:
        server = EmbeddedPostgres(
            Path(folder) / "pg",
            port=free_port(),
            tcp_host="127.0.0.1",
            hba=HBA,
            settings={"max_connections": "200", "fsync": "off", "synchronous_commit": "off"},
        )
        server.start()
        try:
            done = run_psql(server.dsn(), "-c", ROLES_SQL)
            assert done.returncode == 0, done.stderr
            yield Upstream(server.dsn(), "127.0.0.1", server.port)
        finally:
            server.stop()


@pytest.fixture(scope="session")
def reference() -> Any:
    """The embedding model the proxy serves, loaded in this process to check what the proxy returns."""
    from pgml_engines.config import EngineConfig
    from pgml_engines.resolve import ModelResolver
    from sentence_transformers import SentenceTransformer

    path = ModelResolver(EngineConfig()).resolve(EMBED_MODEL).path
    return SentenceTransformer(str(path), device="cpu")


@pytest.fixture(scope="session")
def proxy(upstream: Upstream) -> Iterator[ProxyProcess]:
    """The shared proxy, fronting the upstream through its unix socket."""
    process = start_proxy(upstream.socket_dsn)
    yield process
    process.stop()


@pytest.fixture
def proxy_factory(upstream: Upstream) -> Iterator[Callable[..., ProxyProcess]]:
    """Start extra proxies with their own flags; each is stopped after the test."""
    started: list[ProxyProcess] = []

    def factory(*args: str, upstream_dsn: str | None = None, **kwargs: object) -> ProxyProcess:
        process = start_proxy(upstream_dsn or upstream.socket_dsn, *args, **kwargs)  # type: ignore[arg-type]
        started.append(process)
        return process

    yield factory
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tiny task models built on the spot (one per task, named after it), for shapes and code
    paths rather than quality; the proxy finds them through its --models-dir."""
    from pgml_engines.testing import build_all

    folder = tmp_path_factory.mktemp("tiny-models")
    build_all(folder)
    return folder


@pytest.fixture(scope="session")
def nlp_proxy(upstream: Upstream, tiny_models: Path) -> Iterator[ProxyProcess]:
    """A proxy serving the tiny task models (and the packaged embedding model)."""
    process = start_proxy(upstream.socket_dsn, "--models-dir", str(tiny_models))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def nlp_conn(nlp_proxy: ProxyProcess) -> Iterator[Any]:
    """One autocommit psycopg connection to ``nlp_proxy`` per module; each test leaves it usable."""
    import psycopg

    with psycopg.connect(nlp_proxy.url(), autocommit=True) as connection:
        yield connection


@pytest.fixture
def scratch_database(upstream: Upstream) -> Iterator[str]:
    """A database of its own for the test, dropped after it: the pgml catalog changes what every session
    of a database sees."""
    import uuid

    import psycopg

    name = f"scratch_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(upstream.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield name
    with psycopg.connect(upstream.url(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
