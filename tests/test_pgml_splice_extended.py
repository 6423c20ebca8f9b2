"""Spliced calls under the extended protocol: asyncpg, psycopg (text, binary, server-side cursors, pipelines).

A prepared statement whose select list has a row-dependent call is parsed with a placeholder column and
hidden argument columns; the proxy describes it once, answers the client's Describes itself (without the
hidden columns), and computes the call as each Execute's rows stream by, in the portal's formats.
"""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np
import psycopg
import pytest
from pgvector.asyncpg import register_vector

from tests.support.tables import scratch_table

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
ROWS = 500


@pytest.fixture(scope="module")
def table(upstream):
    rows = ((i, None if i % 50 == 0 else f"row {i} — unicode ✓") for i in range(1, ROWS + 1))
    with scratch_table(upstream.url(), "id int primary key, body text", rows, "xsplice") as name:
        yield name


@pytest.fixture
async def conn(proxy):
    connection = await asyncpg.connect(proxy.url())
    yield connection
    await connection.close()


def expected(reference, ids):
    return reference.encode([f"row {i} — unicode ✓" for i in ids])


async def test_asyncpg_prepared_statement_describes_and_reruns(conn, table, reference):
    statement = await conn.prepare(
        f"select id, pgml.embed($1, body) as v from {table} where id <= $2 order by id"
    )
    assert [(a.name, a.type.oid) for a in statement.get_attributes()] == [("id", 23), ("v", 1021)]
    assert [p.name for p in statement.get_parameters()] == ["text", "int4"]
    for limit in (3, 60):
        rows = await statement.fetch(MODEL, limit)
        assert [r["id"] for r in rows] == list(range(1, limit + 1))
        assert rows[-1]["v"] is None if limit % 50 == 0 else len(rows[-1]["v"]) == 384
    assert np.allclose([rows[0]["v"], rows[1]["v"]], expected(reference, [1, 2]), atol=1e-5)
    assert rows[49]["v"] is None  # STRICT


async def test_asyncpg_binary_vector_and_a_volatile_argument(conn, table):
    await register_vector(conn)
    rows = await conn.fetch(
        f"select id, pgml.embed('{MODEL}', body || random()::text)::vector(384) as v from {table} "
        "where id in (1, 2) order by id"
    )
    # Computed per row from each row's own (random) text: splicing, not a lookup of values fetched before.
    first, second = (r["v"].to_numpy() for r in rows)
    assert first.shape == (384,) and not np.allclose(first, second)


async def test_asyncpg_cursor_suspends_and_resumes_a_spliced_portal(conn, table):
    async with conn.transaction():
        cursor = await conn.cursor(f"select id, pgml.embed('{MODEL}', body) as v from {table} order by id")
        first = await cursor.fetch(7)
        second = await cursor.fetch(500)
    assert [r["id"] for r in first + second] == list(range(1, ROWS + 1))
    assert all(r["v"] is None or len(r["v"]) == 384 for r in first + second)


async def test_asyncpg_errors_leave_the_transaction_aborted_on_both_sides(conn, table):
    # The transaction block is rolled back on exit: the error was raised inside it.
    with pytest.raises(asyncpg.UndefinedObjectError, match="no-such-model"):
        await conn.fetch(f"select pgml.embed('no-such-model', body) from {table}")
    assert await conn.fetchval("select 1") == 1
    async with conn.transaction():
        with pytest.raises(asyncpg.DataError, match="expected 2 dimensions, not 384"):
            await conn.fetch(f"select pgml.embed('{MODEL}', body)::vector(2) from {table}")
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            await conn.fetchval("select 1")
    assert await conn.fetchval("select 2") == 2


async def test_asyncpg_wrong_argument_type_is_42883(conn, table):
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await conn.fetch(f"select pgml.embed('{MODEL}', id) from {table}")
    assert await conn.fetchval("select 3") == 3


def test_psycopg_text_binary_and_server_side_cursors(proxy, table, reference):
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        query = f"select id, pgml.embed(%s, body) as e from {table} where id between %s and %s order by id"
        text_rows = conn.execute(query, [MODEL, 1, 5]).fetchall()
        binary_rows = conn.cursor(binary=True).execute(query, [MODEL, 1, 5]).fetchall()
        assert [r[0] for r in text_rows] == [r[0] for r in binary_rows] == [1, 2, 3, 4, 5]
        assert np.allclose([r[1] for r in text_rows], [r[1] for r in binary_rows], atol=1e-6)
        assert np.allclose([r[1] for r in text_rows], expected(reference, range(1, 6)), atol=1e-5)
        with conn.transaction(), conn.cursor(name="spliced") as named:
            named.itersize = 33
            named.execute(f"select id, pgml.embed(%s, body) from {table} order by id", [MODEL])
            ids = [row[0] for row in named]
        assert ids == list(range(1, ROWS + 1))


def test_psycopg_pipeline_with_spliced_statements_and_a_failure(proxy, table):
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        with conn.pipeline():
            before = conn.execute("select 'before'")
            spliced = conn.execute(
                f"select id, pgml.embed(%s, body) from {table} where id < 4 order by id", [MODEL]
            )
            after = conn.execute("select 'after'")
        assert before.fetchone() == ("before",)
        assert [r[0] for r in spliced.fetchall()] == [1, 2, 3]
        assert after.fetchone() == ("after",)
        with pytest.raises(psycopg.errors.UndefinedObject), conn.pipeline():
            conn.execute(f"select pgml.embed('no-such-model', body) from {table}")
            conn.execute("create temp table must_not_exist ()")  # skipped: it follows the error
        assert conn.execute("select to_regclass('pg_temp.must_not_exist')").fetchone() == (None,)


async def test_asyncpg_returning_is_spliced_and_a_failure_rolls_the_change_back(conn, reference):
    await conn.execute("create temp table notes (id int, body text)")
    rows = await conn.fetch(
        f"insert into notes values (1, $1), (2, $2) returning id, pgml.embed('{MODEL}', body) as e",
        "un",
        "deux",
    )
    assert [r["id"] for r in rows] == [1, 2]
    assert np.allclose([r["e"] for r in rows], reference.encode(["un", "deux"]), atol=1e-5)
    with pytest.raises(asyncpg.UndefinedObjectError):
        await conn.fetch("update notes set body = 'gone' returning pgml.embed('no-such-model', body)")
    assert await conn.fetchval("select count(*) from notes where body = 'gone'") == 0


async def test_asyncpg_cancel_stops_a_spliced_execute_and_the_connection_goes_on(conn):
    with pytest.raises(asyncio.TimeoutError):
        await conn.fetch(
            f"select pgml.embed('{MODEL}', 'sentence ' || g) from generate_series(1, 50000) g", timeout=1.0
        )
    assert await conn.fetchval("select 4") == 4
    rows = await conn.fetch(f"select g, pgml.embed('{MODEL}', 'x' || g) as v from generate_series(1, 3) g")
    assert [r["g"] for r in rows] == [1, 2, 3] and all(len(r["v"]) == 384 for r in rows)
