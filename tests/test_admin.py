"""The proxy's administration in SQL: pgml.proxy_models(), pgml.load_model(), pgml.unload_model(), and the
models preloaded by configuration, through real clients."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.conftest import EMBED_MODEL, Upstream
from tests.support.servers import ProxyProcess, start_proxy

CLASSIFIER = "text-classification"


@pytest.fixture(scope="module")
def admin_proxy(upstream: Upstream, tiny_models: Path) -> Iterator[ProxyProcess]:
    """A proxy of its own (these tests load and unload models) that preloads an embedding model and a
    cross-encoder."""
    process = start_proxy(
        upstream.socket_dsn,
        "--models-dir",
        str(tiny_models),
        "--models-preload",
        f"{EMBED_MODEL},rank:cross-encoder",
        "--models-devices",
        f"{CLASSIFIER}=cpu",
        timeout=120,
    )
    yield process
    process.stop()


@pytest.fixture
def conn(admin_proxy: ProxyProcess) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(admin_proxy.url(), autocommit=True) as connection:
        yield connection


def models(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], tuple[Any, ...]]:
    rows = conn.execute("SELECT * FROM pgml.proxy_models()").fetchall()
    return {(row[0], row[1]): row for row in rows}


def test_preloaded_models_are_held_before_any_call(conn: psycopg.Connection[Any]) -> None:
    held = models(conn)
    assert set(held) >= {(EMBED_MODEL, "embedding"), ("cross-encoder", "rank")}
    _, _, device, memory, loaded_at, last_used, _ = held[(EMBED_MODEL, "embedding")]
    assert device == "cpu"
    assert memory > 50_000_000  # MiniLM's weights in float32
    now = datetime.datetime.now(datetime.UTC)
    assert now - datetime.timedelta(minutes=10) < loaded_at <= last_used <= now
    columns = [(c.name, c.type_code) for c in conn.execute("SELECT * FROM pgml.proxy_models()").description]
    assert columns == [
        ("name", 25),
        ("kind", 25),
        ("device", 25),
        ("memory_bytes", 20),
        ("loaded_at", 1184),
        ("last_used", 1184),
        ("uses", 20),
    ]


def test_the_first_embed_call_uses_the_preloaded_copy(conn: psycopg.Connection[Any]) -> None:
    before = models(conn)[(EMBED_MODEL, "embedding")][6]
    conn.execute("SELECT pgml.embed(%s, 'hello')", (EMBED_MODEL,)).fetchone()
    after = models(conn)
    assert after[(EMBED_MODEL, "embedding")][6] > before
    assert sum(1 for name, _ in after if name == EMBED_MODEL) == 1  # no second copy


def test_load_once_for_every_session_then_unload(
    admin_proxy: ProxyProcess, conn: psycopg.Connection[Any]
) -> None:
    assert conn.execute("SELECT pgml.load_model(%s, 'text-classification')", (CLASSIFIER,)).fetchone() == (
        True,
    )
    with psycopg.connect(admin_proxy.url(), autocommit=True) as other:
        # Another session sees the copy, and loading it again finds it held.
        assert other.execute(
            "SELECT pgml.load_model(%s, 'text-classification')", (CLASSIFIER,)
        ).fetchone() == (False,)
        [row] = [row for (name, _), row in models(other).items() if name == CLASSIFIER]
        assert row[1] == "transform:sequence-classification" and row[2] == "cpu"
        uses = row[6]
        other.execute(
            "SELECT pgml.transform(task => %s::jsonb, inputs => ARRAY['good'])",
            ('{"task": "text-classification", "model": "text-classification"}',),
        ).fetchone()
    [row] = [row for (name, _), row in models(conn).items() if name == CLASSIFIER]
    assert row[6] > uses  # the call used the loaded copy
    assert conn.execute("SELECT pgml.unload_model(%s)", (CLASSIFIER,)).fetchone() == (1,)
    assert all(name != CLASSIFIER for name, _ in models(conn))
    assert conn.execute("SELECT pgml.unload_model('never-loaded')").fetchone() == (0,)


def test_load_model_results_fold_into_queries(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT count(*), bool_and(memory_bytes > 0) FROM pgml.proxy_models() WHERE kind = 'embedding'"
    ).fetchone()
    assert row == (1, True)


def test_bad_calls_get_errors_and_nulls(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.UndefinedObject, match="not found"):
        conn.execute("SELECT pgml.load_model('no-such-model')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="give embedding, rank, transform"):
        conn.execute("SELECT pgml.load_model('text-classification', 'no-such-task')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="must be a JSON object"):
        conn.execute("SELECT pgml.load_model(%s, 'embedding', '[1]'::jsonb)", (EMBED_MODEL,))
    assert conn.execute("SELECT pgml.load_model(NULL)").fetchone() == (None,)
    assert conn.execute("SELECT pgml.unload_model(NULL)").fetchone() == (None,)
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on


async def test_binary_results_through_asyncpg(admin_proxy: ProxyProcess) -> None:
    connection = await asyncpg.connect(admin_proxy.url())
    try:
        rows = await connection.fetch("SELECT * FROM pgml.proxy_models() WHERE name = $1", EMBED_MODEL)
        [row] = rows
        assert row["kind"] == "embedding" and row["memory_bytes"] > 50_000_000
        assert row["loaded_at"].tzinfo is not None
        assert abs(row["last_used"] - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=10)
    finally:
        await connection.close()


def test_a_model_that_cannot_preload_stops_the_start(upstream: Upstream, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgml_proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream.socket_dsn,
            "--models-dir",
            str(tmp_path),
            "--models-preload",
            "no-such-model",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert "cannot preload model no-such-model (embedding)" in done.stderr
    assert "pgml-proxy ready" not in done.stdout


def test_proxy_stats_reports_the_metrics_in_sql(conn: psycopg.Connection[Any]) -> None:
    def stat(name: str, **labels: str) -> float:
        rows = conn.execute(
            "SELECT value FROM pgml.proxy_stats() WHERE name = %s AND labels = %s::jsonb",
            (name, json.dumps(labels)),
        ).fetchall()
        return rows[0][0] if rows else 0.0

    calls = stat("pgml_proxy_pgml_calls_total", function="embed", model=EMBED_MODEL)
    conn.execute("SELECT pgml.embed(%s, 'counted')", (EMBED_MODEL,)).fetchone()
    assert stat("pgml_proxy_pgml_calls_total", function="embed", model=EMBED_MODEL) == calls + 1
    assert stat("pgml_proxy_client_connections") >= 1
    [(labels, value)] = conn.execute(
        "SELECT labels, value FROM pgml.proxy_stats() WHERE name = 'pgml_proxy_info'"
    ).fetchall()
    assert value == 1.0 and set(labels) == {"version"}
    types = [c.type_code for c in conn.execute("SELECT * FROM pgml.proxy_stats() LIMIT 1").description]
    assert types == [25, 3802, 701]


def test_admin_users_reserve_loading_and_unloading(proxy_factory: Any, tiny_models: Path) -> None:
    """With admin_users set, other login roles read the proxy's state but cannot change it (42501)."""
    from tests.support.servers import PASSWORD

    fronted = proxy_factory("--models-dir", str(tiny_models), "--admin-users", "postgres")
    with psycopg.connect(fronted.url(user="md5user", password=PASSWORD), autocommit=True) as user:
        for statement in ("SELECT pgml.load_model('cross-encoder', 'rank')", "SELECT pgml.unload_model('x')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for pgml"):
                user.execute(statement)
        assert user.execute("SELECT count(*) FROM pgml.proxy_models()").fetchone() == (0,)
        assert user.execute("SELECT count(*) > 0 FROM pgml.proxy_stats()").fetchone() == (True,)
    with psycopg.connect(fronted.url(), autocommit=True) as admin:
        assert admin.execute("SELECT pgml.load_model('cross-encoder', 'rank')").fetchone() == (True,)
        assert admin.execute("SELECT pgml.unload_model('cross-encoder')").fetchone() == (1,)
