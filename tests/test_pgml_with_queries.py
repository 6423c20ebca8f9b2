"""pgml calls inside WITH queries, in the shapes the PostgresML SDK (``pgml==1.1.1``, over sqlx) sends.

- A whole-row ``pgml.chunk(…) AS chunk_t`` in a WITH query whose fields the statement reads as
  ``(chunk_t).chunk_index``: Postgres resolves that only through a FROM item's columns, so the proxy puts
  the rows in the WITH query's FROM list rather than in an anonymous record.
- Arguments that read earlier WITH queries (``(SELECT name FROM splitter)``): the proxy's own argument read
  carries the WITH queries it names, never one that changes data (it would run twice).
- A call in a WITH query without a FROM (the SDK's query embeddings) has no rows to read: the statement's
  own FROM is out of the WITH query's reach, so its arguments are evaluated once, with the WITH queries.

Each runs under the simple protocol (psycopg's ClientCursor) and the extended one (psycopg, asyncpg).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import numpy as np
import psycopg
import pytest
from psycopg import ClientCursor

from pgml_proxy.sql.analyze import analyze

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
OPTIONS = json.dumps({"chunk_size": 3, "chunk_overlap": 0, "separator": " "})
DOCS = {1: "a b c d e", 2: "f g", 3: None}
CHUNKS = [(1, 1, "a b"), (1, 2, "c d"), (1, 3, "e"), (2, 1, "f g")]


def test_the_analysis_records_each_with_query_and_where_a_call_sits() -> None:
    """Spans run to the next query's comma (a SEARCH clause's commas do not split one); a query that holds
    the call is marked, and so is a data-modifying one."""
    sql = (
        "WITH RECURSIVE t(n, m) AS (SELECT 1, 2 UNION ALL SELECT n + 1, m FROM t WHERE n < 3) "
        "SEARCH BREADTH FIRST BY n, m SET ord, d AS (DELETE FROM x RETURNING y), "
        "u AS (SELECT pgml.embed('m', body) AS e FROM docs) SELECT * FROM t, u"
    )
    [statement] = analyze(sql, {"embed"}, lambda name, arguments: False)
    [call] = statement.calls
    assert call.level is not None and call.level.in_with and call.level.parent is not None
    owner = call.level.parent
    assert owner.recursive and not owner.in_with
    assert [(c.name, c.span.text(sql), c.modifying) for c in owner.ctes] == [
        (
            "t",
            "t(n, m) AS (SELECT 1, 2 UNION ALL SELECT n + 1, m FROM t WHERE n < 3) SEARCH BREADTH FIRST BY n, m SET ord",
            False,
        ),
        ("d", "d AS (DELETE FROM x RETURNING y)", True),
        ("u", "u AS (SELECT pgml.embed('m', body) AS e FROM docs)", False),
    ]


@pytest.fixture(params=["simple", "extended"])
def conn(proxy: Any, request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
    """A connection with temp table ``docs``; ``simple`` binds client-side, ``extended`` server-side."""
    factory = ClientCursor if request.param == "simple" else psycopg.Cursor
    with psycopg.connect(proxy.url(), autocommit=True, cursor_factory=factory) as connection:
        connection.execute("create temp table docs (id int primary key, body text)")
        with connection.cursor() as cursor:
            cursor.executemany("insert into docs values (%s, %s)", list(DOCS.items()))
        yield connection


def test_whole_row_chunk_in_a_with_query_is_read_field_by_field(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "with new as (select id as document_id, pgml.chunk('character', body, %s::jsonb) as chunk_t from docs) "
        "select document_id, (chunk_t).chunk_index, (chunk_t).chunk from new order by 1, 2",
        (OPTIONS,),
    ).fetchall()
    assert rows == CHUNKS
    # Without an alias the column keeps the function's name; the record prints as Postgres prints it.
    cursor = conn.execute(
        "select id, (chunk).chunk, chunk::text from "
        "(select id, pgml.chunk('character', body, %s::jsonb) from docs where id = 2) s",
        (OPTIONS,),
    )
    assert cursor.fetchall() == [(2, "f g", '(1,"f g")')]
    # Constant arguments: the same, from the folded rows.
    rows = conn.execute(
        "with c as (select pgml.chunk('character', 'x y z', %s::jsonb) as t) select (t).chunk_index, (t).chunk from c",
        (OPTIONS,),
    ).fetchall()
    assert rows == [(1, "x y"), (2, "z")]


def test_the_sdks_chunking_statement(conn: psycopg.Connection[Any]) -> None:
    """The upstream SDK's resync: the splitter read from a table (whose name says pgml, which is not a call),
    a DELETE of trailing chunks as a sibling WITH query, INSERT … SELECT of the whole rows' fields."""
    conn.execute("create temp table pgml_splitters (id int, name text, parameters jsonb)")
    conn.execute("insert into pgml_splitters values (7, 'character', %s::jsonb)", (OPTIONS,))
    conn.execute(
        "create temp table chunks (document_id int, chunk_index int8, chunk text, unique (document_id, chunk_index))"
    )
    statement = """
WITH splitter AS (SELECT name, parameters FROM pgml_splitters WHERE id = %s),
new AS (
  SELECT documents.id AS document_id,
    pgml.chunk((SELECT name FROM splitter), body, (SELECT parameters FROM splitter)) AS chunk_t
  FROM docs AS documents
),
del AS (
  DELETE FROM chunks WHERE chunk_index > (
    SELECT MAX((chunk_t).chunk_index) FROM new WHERE new.document_id = chunks.document_id GROUP BY new.document_id
  ) AND chunks.document_id = ANY (SELECT document_id FROM new)
)
INSERT INTO chunks (document_id, chunk_index, chunk)
SELECT new.document_id, (chunk_t).chunk_index, (chunk_t).chunk FROM new
ON CONFLICT (document_id, chunk_index) DO UPDATE SET chunk = EXCLUDED.chunk"""
    conn.execute(statement, (7,))
    assert conn.execute("select * from chunks order by 1, 2").fetchall() == CHUNKS
    conn.execute("update docs set body = 'a b' where id = 1")
    conn.execute(statement, (7,))  # the trailing chunks of document 1 go
    assert conn.execute("select * from chunks order by 1, 2").fetchall() == [(1, 1, "a b"), (2, 1, "f g")]


def test_a_query_embedding_in_a_with_query_reads_its_siblings(
    conn: psycopg.Connection[Any], reference: Any
) -> None:
    """The upstream SDK's vector_search: the model name comes from an earlier WITH query, and the WITH
    query of the embedding has no FROM, so the statement's rows are not its rows."""
    conn.execute("create temp table pipelines (name text, schema jsonb)")
    conn.execute("insert into pipelines values ('p', %s::jsonb)", (json.dumps({"body": {"model": MODEL}}),))
    row = conn.execute(
        """
WITH pipeline (schema) AS (SELECT schema FROM pipelines WHERE name = %s),
body_embedding (embedding) AS (
  SELECT pgml.embed(transformer => (SELECT schema #>> '{body,model}' FROM pipeline), text => %s, kwargs => %s)
    AS embedding
)
SELECT d.id, (SELECT embedding FROM body_embedding) AS e FROM docs d WHERE d.id = 1""",
        ("p", "a query", "{}"),
    ).fetchone()
    assert row is not None and row[0] == 1
    assert np.allclose(row[1], reference.encode(["a query"])[0], atol=1e-5)


def test_a_data_modifying_with_query_runs_once(conn: psycopg.Connection[Any]) -> None:
    conn.execute("create temp table log (n int)")
    rows = conn.execute(
        "with ins as (insert into log values (1) returning n) "
        "select id from docs where pgml.embed(%s, body) is not null order by id",
        (MODEL,),
    ).fetchall()
    assert rows == [(1,), (2,)]
    assert conn.execute("select count(*) from log").fetchone() == (1,)
    # Reading its rows would need it to run twice (once for the arguments, once for the statement).
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="data-modifying WITH query"):
        conn.execute(
            "with ins as (insert into log values (2) returning n) "
            "select n from ins where pgml.embed(%s, n::text) is not null",
            (MODEL,),
        )
    assert conn.execute("select n from log").fetchall() == [(1,)]


async def test_asyncpg_prepared_whole_rows_in_a_with_query(proxy: Any) -> None:
    connection = await asyncpg.connect(proxy.url())
    try:
        await connection.execute("create temp table docs (id int primary key, body text)")
        await connection.executemany("insert into docs values ($1, $2)", list(DOCS.items()))
        statement = await connection.prepare(
            "with new as (select id, pgml.chunk($1, body, $2::jsonb) as chunk_t from docs) "
            "select id, (chunk_t).chunk_index, (chunk_t).chunk from new order by 1, 2"
        )
        assert [p.name for p in statement.get_parameters()] == ["text", "jsonb"]
        assert [a.name for a in statement.get_attributes()] == ["id", "chunk_index", "chunk"]
        rows = await statement.fetch("character", OPTIONS)
        assert [tuple(r) for r in rows] == CHUNKS
        await connection.execute("update docs set body = 'q' where id = 2")
        rows = await statement.fetch("character", OPTIONS)  # the same statement, new arguments read
        assert [tuple(r) for r in rows] == [*CHUNKS[:3], (2, 1, "q")]
    finally:
        await connection.close()
