"""pgml calls whose arguments come from table rows, in every position (simple protocol).

The proxy computes each distinct argument tuple once and the statement looks results up per row, so
Postgres keeps its own semantics for WHERE, ORDER BY, GROUP BY, joins, UPDATE, INSERT … SELECT and CTEs.
Results are checked against the model run in this process.
"""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest
from psycopg import ClientCursor

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DOCS = {
    1: "hello world. second sentence here.",
    2: "goodbye",
    3: None,
    4: "hello world. second sentence here.",
}
CHUNKING = """'{"chunk_size": 12, "chunk_overlap": 0, "separator": ". "}'"""


@pytest.fixture
def cursor(proxy):
    with psycopg.connect(proxy.url(), autocommit=True, cursor_factory=ClientCursor) as conn:
        cur = conn.cursor()
        table = f"docs_{uuid.uuid4().hex[:8]}"
        cur.execute(f"create table {table} (id int primary key, body text)")
        cur.executemany(f"insert into {table} values (%s, %s)", list(DOCS.items()))
        cur.execute("create extension if not exists vector")
        cur.table = table  # type: ignore[attr-defined]
        yield cur
        cur.execute(f"drop table {table}")


def test_select_list_embeds_every_row(cursor, reference):
    cursor.execute(f"select id, pgml.embed('{MODEL}', body) from {cursor.table} order by id")
    rows = cursor.fetchall()
    assert [c.name for c in cursor.description] == ["id", "embed"]
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert rows[2][1] is None  # STRICT: a NULL body embeds as NULL
    for doc_id, vector in rows:
        if DOCS[doc_id] is not None:
            assert np.allclose(vector, reference.encode([DOCS[doc_id]])[0], atol=1e-5)


def test_where_and_order_by_with_row_dependent_calls(cursor, reference):
    query = reference.encode(["a friendly greeting"])[0]
    distance = {
        doc_id: 1 - float(np.dot(v, query) / (np.linalg.norm(v) * np.linalg.norm(query)))
        for doc_id, body in DOCS.items()
        if body is not None
        for v in [reference.encode([body])[0]]
    }
    nearest = sorted(distance, key=lambda d: (distance[d], d))
    threshold = (distance[nearest[-1]] + distance[nearest[-2]]) / 2  # leaves the farthest out
    near = "pgml.embed('{m}', body)::vector(384) <=> pgml.embed('{m}', 'a friendly greeting')::vector(384)"
    near = near.format(m=MODEL)
    cursor.execute(f"select id from {cursor.table} where {near} < {threshold} order by {near}, id")
    assert [r[0] for r in cursor.fetchall()] == nearest[:-1]


def test_chunk_in_from_joined_to_its_rows(cursor):
    cursor.execute(
        f"select d.id, c.chunk_index, c.chunk from {cursor.table} d, pgml.chunk('character', d.body, {CHUNKING}) c "
        "order by 1, 2"
    )
    assert cursor.fetchall() == [
        (1, 1, "hello world"),
        (1, 2, "second sentence here."),
        (2, 1, "goodbye"),
        (4, 1, "hello world"),
        (4, 2, "second sentence here."),
    ]


def test_chunk_field_in_select_list(cursor):
    cursor.execute(
        f"select id, (pgml.chunk('character', body, {CHUNKING})).chunk from {cursor.table} order by id"
    )
    assert cursor.fetchall() == [
        (1, "hello world"),
        (1, "second sentence here."),
        (2, "goodbye"),
        (4, "hello world"),
        (4, "second sentence here."),
    ]
    assert cursor.description[1].name == "chunk"


def test_insert_select_and_update_set(cursor, reference):
    vectors = f"{cursor.table}_v"
    cursor.execute(f"create table {vectors} (id int, v vector(384))")
    try:
        cursor.execute(
            f"insert into {vectors} select id, pgml.embed('{MODEL}', body)::vector(384) "
            f"from {cursor.table} where body is not null"
        )
        assert cursor.rowcount == 3
        cursor.execute(
            f"update {vectors} set v = pgml.embed('{MODEL}', 'doc ' || id::text)::vector(384) where id = 2"
        )
        assert cursor.rowcount == 1
        cursor.execute(f"select v::real[] from {vectors} where id = 2")
        assert np.allclose(cursor.fetchone()[0], reference.encode(["doc 2"])[0], atol=1e-5)
    finally:
        cursor.execute(f"drop table {vectors}")


def test_group_by_and_cte(cursor):
    cursor.execute(
        f"select count(*) from {cursor.table} where body is not null group by pgml.embed('{MODEL}', body) order by 1"
    )
    assert [r[0] for r in cursor.fetchall()] == [1, 2]
    cursor.execute(
        f"with s as (select id, pgml.embed('{MODEL}', body) as e from {cursor.table}) "
        "select id from s where e is not null order by id"
    )
    assert [r[0] for r in cursor.fetchall()] == [1, 2, 4]


def test_duplicate_arguments_are_computed_once_and_shared(cursor):
    cursor.execute(f"select count(distinct pgml.embed('{MODEL}', body)::text) from {cursor.table}")
    assert cursor.fetchone() == (2,)  # rows 1 and 4 share a body; NULL is not counted


def test_row_dependent_call_inside_a_transaction_sees_its_own_writes(proxy, cursor):
    with psycopg.connect(proxy.url(), cursor_factory=ClientCursor) as conn:
        cur = conn.cursor()
        cur.execute(f"insert into {cursor.table} values (5, 'written in this transaction')")
        cur.execute(
            f"select id from {cursor.table} where pgml.embed('{MODEL}', body) is not null order by id"
        )
        assert [r[0] for r in cur.fetchall()] == [1, 2, 4, 5]
        conn.rollback()


def test_volatile_arguments_in_the_select_list_are_computed_per_row(cursor):
    # Spliced: each row's own value is embedded, as Postgres would evaluate it once per row.
    cursor.execute(
        f"select pgml.embed('{MODEL}', body || random()::text) from {cursor.table} where body <> ''"
    )
    vectors = [tuple(r[0]) for r in cursor.fetchall()]
    assert len(vectors) == 3 and len(set(vectors)) == 3


def test_volatile_arguments_elsewhere_are_refused(cursor):
    # Materialized: the values fetched would not be the values the statement later computes.
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        cursor.execute(
            f"select id from {cursor.table} where pgml.embed('{MODEL}', body || random()::text) is not null"
        )


def test_cancel_stops_engine_work_promptly(proxy):
    import threading
    import time

    with psycopg.connect(proxy.url(), autocommit=True, cursor_factory=ClientCursor) as conn:
        timer = threading.Timer(1.0, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            conn.execute(f"select pgml.embed('{MODEL}', 'sentence ' || g) from generate_series(1, 20000) g")
        assert caught.value.sqlstate == "57014"
        assert time.monotonic() - started < 10  # far less than embedding 20,000 sentences takes
        assert conn.execute("select 'usable'").fetchone() == ("usable",)


def test_statement_timeout_bounds_engine_work(proxy):
    with psycopg.connect(proxy.url(), autocommit=True, cursor_factory=ClientCursor) as conn:
        conn.execute("set statement_timeout = '700ms'")
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            conn.execute(f"select pgml.embed('{MODEL}', 'timeout ' || g) from generate_series(1, 20000) g")
        conn.execute("reset statement_timeout")
        assert conn.execute(
            f"select count(pgml.embed('{MODEL}', 'short ' || g)) from generate_series(1, 3) g"
        ).fetchone() == (3,)


async def test_statement_timeout_bounds_engine_work_under_the_extended_protocol(proxy):
    import asyncpg

    conn = await asyncpg.connect(proxy.url())
    try:
        await conn.execute("set statement_timeout = '700ms'")
        with pytest.raises(asyncpg.QueryCanceledError, match="statement timeout"):
            await conn.fetch(
                f"select pgml.embed('{MODEL}', 'timeout ' || g) from generate_series(1, $1::int) g", 20000
            )
        await conn.execute("set statement_timeout = 0")
        assert (
            await conn.fetchval(
                f"select count(pgml.embed('{MODEL}', 'short ' || g)) from generate_series(1, $1::int) g", 3
            )
            == 3
        )
    finally:
        await conn.close()


def test_rows_that_change_under_a_materialized_call_fail_with_40001(proxy, cursor):
    """A function that claims to be stable but is not makes the argument read and the statement disagree."""
    suffix = f"s_{uuid.uuid4().hex[:8]}"
    cursor.execute(f"create sequence {suffix}")
    cursor.execute(
        f"create function {suffix}() returns text language plpgsql stable "
        f"as $$ begin return nextval('{suffix}')::text; end $$"
    )
    try:
        with pytest.raises(
            psycopg.errors.SerializationFailure, match=r"changed while pgml\.embed ran"
        ) as caught:
            cursor.execute(
                f"select id from {cursor.table} where pgml.embed('{MODEL}', body || {suffix}()) is not null"
            )
        assert "Retry" in caught.value.diag.message_hint
        cursor.execute("select 1")
    finally:
        cursor.execute(f"drop function {suffix}(); drop sequence {suffix}")


def test_outside_a_transaction_the_argument_read_and_the_statement_share_one_snapshot(
    proxy, cursor, upstream
):
    pid = cursor.execute("select pg_backend_pid()").fetchone()[0]
    # Only rows of a statement that runs in the proxy's REPEATABLE READ transaction pass this filter.
    cursor.execute(
        f"select id from {cursor.table} where pgml.embed('{MODEL}', body) is not null "
        "and current_setting('transaction_isolation') = 'repeatable read' order by id"
    )
    assert [r[0] for r in cursor.fetchall()] == [1, 2, 4]
    assert cursor.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert cursor.execute("show transaction_isolation").fetchone() == ("read committed",)
    with pytest.raises(psycopg.errors.UndefinedObject):
        cursor.execute(f"select id from {cursor.table} where pgml.embed('no-such-model', body) is not null")
    with psycopg.connect(upstream.url()) as direct:
        state = direct.execute("select state from pg_stat_activity where pid = %s", [pid]).fetchone()
    assert state == ("idle",)  # the proxy's own transaction was rolled back, not left open


@pytest.mark.parametrize(
    "statement",
    [
        "update {table} set body = body || '' where pgml.embed('{model}', body) is not null",  # materialized
        "select id, pgml.embed('{model}', body) from {table}",  # spliced
    ],
    ids=["materialized", "spliced"],
)
def test_the_proxys_own_transaction_outlives_the_upstreams_idle_timeout(proxy, statement):
    """Outside a transaction block the proxy computes inside a transaction of its own, where the upstream
    session sits idle meanwhile: the upstream's idle_in_transaction_session_timeout must not end it."""
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        table = f"idle_{uuid.uuid4().hex[:8]}"
        conn.execute(f"create table {table} (id int primary key, body text)")
        try:
            conn.execute(
                f"insert into {table} select n, 'sentence number ' || n || ' about ' || md5(n::text) "
                "from generate_series(1, 400) n"
            )
            conn.execute("set idle_in_transaction_session_timeout = '20ms'")
            conn.execute(statement.format(table=table, model=MODEL))
            assert conn.execute("show idle_in_transaction_session_timeout").fetchone() == ("20ms",)
            assert conn.execute("select 1").fetchone() == (1,)
        finally:
            with psycopg.connect(proxy.url(), autocommit=True) as other:
                other.execute(f"drop table {table}")
