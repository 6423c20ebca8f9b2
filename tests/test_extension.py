"""CREATE EXTENSION pgml / DROP EXTENSION pgml through the proxy: the catalog on the client's session."""

from __future__ import annotations

import psycopg
import psycopg.errors
import pytest

from tests.conftest import Upstream
from tests.support.servers import ProxyProcess, run_psql


def _notices(conn: psycopg.Connection) -> list[str]:
    seen: list[str] = []
    conn.add_notice_handler(lambda diag: seen.append(diag.message_primary or ""))
    return seen


def test_create_then_use_then_drop(proxy: ProxyProcess, scratch_database: str) -> None:
    with psycopg.connect(proxy.url(database=scratch_database), autocommit=True) as conn:
        notices = _notices(conn)
        assert conn.execute("CREATE EXTENSION pgml").statusmessage == "CREATE EXTENSION"
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'pgml'"
            )
        }
        assert {"projects", "snapshots", "models", "deployments", "files", "logs"} <= tables
        assert {"overview", "trained_models", "deployed_models"} <= tables
        stubs = {
            r[0]
            for r in conn.execute("SELECT proname FROM pg_proc WHERE pronamespace = 'pgml'::regnamespace")
        }
        assert {"embed", "transform", "transform_stream", "rank", "chunk", "load_dataset", "version"} <= stubs
        assert conn.execute("SELECT pgml.version()").fetchone()[0].startswith("2.10.0 (pgml-proxy ")
        assert conn.execute("SELECT pgml.add(ARRAY[1, 2]::real[], ARRAY[3, 4]::real[])").fetchone() == (
            [4.0, 6.0],
        )
        with pytest.raises(psycopg.errors.DuplicateObject, match='extension "pgml" already exists'):
            conn.execute("CREATE EXTENSION pgml")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgml")
        assert 'extension "pgml" already exists, skipping' in notices
        assert conn.execute("DROP EXTENSION pgml").statusmessage == "DROP EXTENSION"
        assert conn.execute("SELECT to_regclass('pgml.projects')").fetchone() == (None,)
        with pytest.raises(psycopg.errors.UndefinedObject, match='extension "pgml" does not exist'):
            conn.execute("DROP EXTENSION pgml")
        conn.execute("DROP EXTENSION IF EXISTS pgml")
        assert 'extension "pgml" does not exist, skipping' in notices


def test_a_rolled_back_block_leaves_nothing(proxy: ProxyProcess, scratch_database: str) -> None:
    with psycopg.connect(proxy.url(database=scratch_database)) as conn:
        conn.execute("CREATE EXTENSION pgml")
        conn.rollback()
        assert conn.execute("SELECT to_regclass('pgml.projects')").fetchone() == (None,)


def test_a_dependent_view_needs_cascade(proxy: ProxyProcess, scratch_database: str) -> None:
    with psycopg.connect(proxy.url(database=scratch_database), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pgml")
        conn.execute("CREATE VIEW project_names AS SELECT name FROM pgml.projects")
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            conn.execute("DROP EXTENSION pgml")
        assert conn.execute("SELECT to_regclass('pgml.projects')").fetchone() != (None,)
        conn.execute("DROP EXTENSION pgml CASCADE")
        assert conn.execute("SELECT to_regclass('project_names')").fetchone() == (None,)


def test_psql_and_a_function_calling_a_stub(
    proxy: ProxyProcess, upstream: Upstream, scratch_database: str
) -> None:
    done = run_psql(
        proxy.url(database=scratch_database),
        "-X",
        "-c",
        "CREATE EXTENSION IF NOT EXISTS pgml",
        "-c",
        r"\df pgml.embed",
    )
    assert done.returncode == 0, done.stderr
    assert "embed" in done.stdout and "real[]" in done.stdout
    with psycopg.connect(upstream.url(database=scratch_database), autocommit=True) as direct:
        # made behind the proxy's back (through the proxy it is refused with 0A000 at once)
        direct.execute(
            "CREATE FUNCTION hidden() RETURNS real[] LANGUAGE sql AS $$ SELECT pgml.embed('m', 'x') $$"
        )
    # the call runs inside PostgreSQL, out of the proxy's sight: the stub says so
    with (
        psycopg.connect(proxy.url(database=scratch_database), autocommit=True) as conn,
        pytest.raises(psycopg.errors.FeatureNotSupported, match=r"pgml\.embed"),
    ):
        conn.execute("SELECT hidden()")
