"""pgml calls under the extended query protocol: asyncpg, psycopg's default cursor, pipelines, ORMs.

A prepared statement that calls pgml is planned once at Parse: the upstream holds it with each call
replaced by extra parameters, and every Bind computes them, so re-executing with new arguments works
and Describe shows only the client's parameters.
"""

from __future__ import annotations

import json

import asyncpg
import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
OPTIONS = json.dumps({"chunk_size": 3, "chunk_overlap": 0, "separator": " "})


@pytest.fixture
async def conn(proxy):
    connection = await asyncpg.connect(proxy.url())
    yield connection
    await connection.close()


async def test_asyncpg_binds_arguments_as_parameters(conn, reference):
    vector = await conn.fetchval("select pgml.embed($1, $2)", MODEL, "parameters")
    assert np.allclose(vector, reference.encode(["parameters"])[0], atol=1e-5)
    rows = await conn.fetch("select * from pgml.chunk($1, $2, $3::jsonb)", "character", "a b c d", OPTIONS)
    assert [tuple(r) for r in rows] == [(1, "a b"), (2, "c d")]
    assert list(rows[0].keys()) == ["chunk_index", "chunk"]


async def test_prepared_statement_shows_only_the_clients_parameters_and_reruns(conn):
    await conn.execute("create extension if not exists vector")
    statement = await conn.prepare(
        "select pgml.embed($1, $2)::vector(384) <=> pgml.embed($1, $3)::vector(384) as distance"
    )
    assert [p.name for p in statement.get_parameters()] == ["text", "text", "text"]
    assert [a.name for a in statement.get_attributes()] == ["distance"]
    near = await statement.fetchval(MODEL, "cat", "kitten")
    far = await statement.fetchval(MODEL, "cat", "tax law")
    assert near < far


async def test_constant_embedding_in_order_by_with_a_limit_parameter(conn):
    await conn.execute("create extension if not exists vector")
    await conn.execute("create temp table docs (id int, emb vector(384))")
    for doc_id, text in enumerate(["bread recipe", "stock market", "baking a cake"]):
        await conn.execute(
            f"insert into docs values ($1, pgml.embed('{MODEL}', $2)::vector(384))", doc_id, text
        )
    rows = await conn.fetch(
        f"select id from docs order by emb <=> pgml.embed('{MODEL}', $1)::vector(384) limit $2", "baking", 2
    )
    assert sorted(r["id"] for r in rows) == [0, 2]


async def test_null_parameter_follows_strict(conn):
    assert await conn.fetchval("select pgml.embed($1, $2) is null", MODEL, None) is True


async def test_error_in_a_prepared_statement_keeps_its_sqlstate_and_the_session(conn):
    with pytest.raises(asyncpg.InvalidParameterValueError, match="Unknown splitter: nope"):
        await conn.fetch("select * from pgml.chunk($1, $2)", "nope", "x")
    with pytest.raises(asyncpg.UndefinedObjectError):
        await conn.fetch("select pgml.embed($1, $2)", "no/such-model", "x")
    assert await conn.fetchval("select 1") == 1


async def test_error_inside_a_transaction_aborts_it_upstream(conn):
    transaction = conn.transaction()
    await transaction.start()
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await conn.fetch("select * from pgml.chunk($1, $2)", "nope", "x")
    with pytest.raises(asyncpg.InFailedSQLTransactionError):
        await conn.fetchval("select 1")
    await transaction.rollback()
    assert await conn.fetchval("select pgml.version() is not null") is True


async def test_overload_without_a_match_is_42883_at_prepare(conn):
    with pytest.raises(asyncpg.UndefinedFunctionError) as caught:
        await conn.fetch("select pgml.embed($1::text, 5)", MODEL)
    assert "Available:" in caught.value.hint


async def test_row_dependent_calls_read_their_rows_with_the_clients_parameters(conn, reference):
    await conn.execute("create temp table notes (id int, body text)")
    await conn.executemany("insert into notes values ($1, $2)", [(1, "alpha"), (2, "beta"), (3, None)])
    rows = await conn.fetch(
        f"select id, pgml.embed('{MODEL}', body) as e from notes where id <= $1 order by id", 3
    )
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[2]["e"] is None
    assert np.allclose(rows[1]["e"], reference.encode(["beta"])[0], atol=1e-5)
    statement = await conn.prepare(
        "select n.id, c.chunk from notes n, pgml.chunk($1, n.body) c where n.id = $2 order by 1"
    )
    assert [p.name for p in statement.get_parameters()] == ["text", "int4"]
    assert [tuple(r) for r in await statement.fetch("character", 1)] == [(1, "alpha")]
    assert [tuple(r) for r in await statement.fetch("character", 2)] == [(2, "beta")]


def test_row_dependent_calls_in_a_psycopg_pipeline(proxy):
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        conn.execute("create temp table items (id int, body text)")
        conn.execute("insert into items values (1, 'one two'), (2, 'three')")
        rows = conn.execute(
            "select id, (pgml.chunk('character', body, %s::jsonb)).chunk from items order by id",
            (json.dumps({"chunk_size": 3, "chunk_overlap": 0, "separator": " "}),),
        ).fetchall()
        assert rows == [(1, "one"), (1, "two"), (2, "three")]
        with conn.pipeline():
            first = conn.execute("select count(*) from items")
            conn.execute(f"select pgml.embed('{MODEL}', body) from items")
        assert first.fetchone() == (2,)


def test_psycopg_default_cursor_and_pipeline(proxy, reference):
    with psycopg.connect(proxy.url()) as conn:
        [(vector,)] = conn.execute("select pgml.embed(%s, %s)", (MODEL, "psycopg")).fetchall()
        assert np.allclose(vector, reference.encode(["psycopg"])[0], atol=1e-5)
        after = None
        with pytest.raises(psycopg.errors.InvalidParameterValue), conn.pipeline():
            first = conn.execute("select chunk from pgml.chunk(%s, %s)", ("character", "one"))
            conn.execute("select * from pgml.chunk(%s, %s)", ("nope", "x"))
            # psycopg raises the error at the first call that reads it: at Sync, or already here when the
            # answer came back quickly (then this statement is never sent).
            after = conn.execute("select 'skipped until Sync'")
        assert first.fetchall() == [("one",)]
        if after is not None:
            with pytest.raises(psycopg.ProgrammingError, match="no result"):
                after.fetchall()  # skipped by the server until Sync, as after any error in a pipeline
        conn.rollback()
        rows = conn.execute(
            "select e from pgml.embed(%s, %s::text[]) as e", (MODEL, ["a", "b", "c"])
        ).fetchall()
        assert len(rows) == 3


def test_psycopg_binary_parameters(proxy):
    with psycopg.connect(proxy.url()) as conn:
        row = conn.execute(
            "select chunk from pgml.chunk(%b, %b, %b::jsonb)", ("character", "a b c d", OPTIONS)
        )
        assert row.fetchall() == [("a b",), ("c d",)]


def test_sqlalchemy_text_query(proxy):
    engine = sa.create_engine(f"postgresql+psycopg://postgres@{proxy.host}:{proxy.port}/postgres")
    with engine.connect() as connection:
        result = connection.execute(
            sa.text("select chunk_index, chunk from pgml.chunk(:splitter, :body, CAST(:kwargs AS jsonb))"),
            {"splitter": "character", "body": "a b c d", "kwargs": OPTIONS},
        )
        assert [tuple(r) for r in result] == [(1, "a b"), (2, "c d")]
        dims = connection.execute(
            sa.text("select array_length(pgml.embed(:m, :t), 1)"), {"m": MODEL, "t": "hi"}
        )
        assert dims.scalar() == 384
    engine.dispose()


def test_pipeline_error_before_a_row_dependent_call_is_the_only_error(proxy):
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        conn.execute("create temp table things (id int, body text)")
        conn.execute("insert into things values (1, 'x')")
        skipped = conn.cursor()
        # psycopg raises the first error at the next execute or at the pipeline's end, whichever sees it
        with pytest.raises(psycopg.errors.DivisionByZero), conn.pipeline():
            conn.execute("select 1 / 0")
            skipped.execute(f"select pgml.embed('{MODEL}', body) from things")
        with pytest.raises(psycopg.ProgrammingError, match="no result"):
            skipped.fetchall()
        assert conn.execute("select count(*) from things").fetchone() == (1,)


def test_row_dependent_call_after_pending_answers_in_one_pipeline(proxy):
    """The side query's answer is picked out of a stream that still owes the client earlier results."""
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        conn.execute("create temp table pending (id int, body text)")
        conn.execute("insert into pending values (1, 'a b'), (2, 'c')")
        options = json.dumps({"chunk_size": 1, "chunk_overlap": 0, "separator": " "})
        with conn.pipeline():
            earlier = [conn.execute("select %s::int", (n,)) for n in range(5)]
            chunks = conn.execute(
                "select p.id, c.chunk from pending p, pgml.chunk('character', p.body, %s::jsonb) c order by 1, 2",
                (options,),
            )
            later = conn.execute("select 'after'")
        assert [c.fetchone() for c in earlier] == [(n,) for n in range(5)]
        assert chunks.fetchall() == [(1, "a"), (1, "b"), (2, "c")]
        assert later.fetchone() == ("after",)


async def test_cursor_with_prefetch_suspends_and_resumes_a_pgml_portal(conn):
    """Execute with a row limit: the upstream suspends the portal; results stay in order across fetches."""
    await conn.execute("create temp table many (id int, body text)")
    await conn.executemany("insert into many values ($1, $2)", [(i, f"text {i % 7}") for i in range(40)])
    async with conn.transaction():
        ids = [
            (r["id"], len(r["v"]))
            async for r in conn.cursor(
                f"select id, pgml.embed('{MODEL}', body) as v from many order by id", prefetch=6
            )
        ]
    assert ids == [(i, 384) for i in range(40)]
