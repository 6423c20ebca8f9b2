"""psycopg 3 through the proxy: result formats, pipelines, named cursors, COPY, prepared statements,
transactions and the async connection.

Every test talks to the proxy with a real psycopg connection and checks what the application sees
against plain Python values (or against the same query sent straight to the upstream).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg import sql
from psycopg.pq import Format
from psycopg.types.json import Jsonb

from tests.support.servers import ProxyProcess


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def conn(proxy: ProxyProcess) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(proxy.url(), autocommit=True, connect_timeout=10) as connection:
        yield connection


@pytest.fixture
def table(proxy: ProxyProcess) -> Iterator[str]:
    """A unique table name, dropped after the test (the database is shared by the whole run)."""
    name = unique("pg3")
    yield name
    with psycopg.connect(proxy.url(), autocommit=True) as cleanup:
        cleanup.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))


# -- result formats --------------------------------------------------------------------------------

SAMPLE_UUID = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
SAMPLE_TS = dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.UTC)
SAMPLE_PARAMS: dict[str, Any] = {
    "i": 2_147_483_647,
    "big": -9_223_372_036_854_775_808,
    "f": 3.5e-300,
    "n": Decimal("12345678901234567890.000000000123"),
    "t": "héllo wörld — ✓ 日本語 🐘",
    "b": b"\x00\x01\xfe\xff binary \x00",
    "flag": True,
    "ts": SAMPLE_TS,
    "u": SAMPLE_UUID,
    "j": Jsonb({"key": ["v", 1, 2.5, None, True], "ü": {"nested": "é"}}),
    "ints": [1, None, -3],
    "texts": ["a", 'ü,"quoted"', "", None],
}
SAMPLE_QUERY = """
select %(i)s::int4, %(big)s::int8, %(f)s::float8, %(n)s::numeric, %(t)s::text, %(b)s::bytea,
       %(flag)s::bool, %(ts)s::timestamptz, %(u)s::uuid, %(j)s::jsonb, %(ints)s::int4[], %(texts)s::text[],
       null::text, 'NaN'::float8
"""


def check_sample_row(row: tuple[Any, ...]) -> None:
    assert row[0] == 2_147_483_647
    assert row[1] == -9_223_372_036_854_775_808
    assert row[2] == 3.5e-300
    assert row[3] == Decimal("12345678901234567890.000000000123")
    assert row[4] == "héllo wörld — ✓ 日本語 🐘"
    assert bytes(row[5]) == b"\x00\x01\xfe\xff binary \x00"
    assert row[6] is True
    assert row[7] == SAMPLE_TS
    assert row[8] == SAMPLE_UUID
    assert row[9] == {"key": ["v", 1, 2.5, None, True], "ü": {"nested": "é"}}
    assert row[10] == [1, None, -3]
    assert row[11] == ["a", 'ü,"quoted"', "", None]
    assert row[12] is None
    assert row[13] != row[13]  # NaN


@pytest.mark.parametrize("result_format", [Format.TEXT, Format.BINARY], ids=["text", "binary"])
def test_results_of_many_types_come_back_as_python_values(
    conn: psycopg.Connection[Any], result_format: Format
) -> None:
    with conn.cursor(binary=result_format == Format.BINARY) as cur:
        cur.execute(SAMPLE_QUERY, SAMPLE_PARAMS)
        assert cur.pgresult is not None
        assert all(cur.pgresult.fformat(i) == result_format for i in range(cur.pgresult.nfields))
        row = cur.fetchone()
    assert row is not None
    check_sample_row(row)


def test_binary_parameters_round_trip(conn: psycopg.Connection[Any]) -> None:
    # %(x)b forces every parameter to be sent in binary format.
    binary_query = SAMPLE_QUERY.replace(")s::", ")b::")
    for binary_results in (False, True):
        with conn.cursor(binary=binary_results) as cur:
            cur.execute(binary_query, SAMPLE_PARAMS)
            row = cur.fetchone()
        assert row is not None
        check_sample_row(row)


def test_text_and_binary_results_match_the_upstream(conn: psycopg.Connection[Any], upstream: Any) -> None:
    query = """
        select g, g * 1.5::float8, (g::numeric / 7), repeat('ä', g % 5), decode(lpad(to_hex(g), 8, '0'), 'hex'),
               g % 2 = 0, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute', array[g, g + 1]
        from generate_series(1, 500) g order by g
    """
    with psycopg.connect(upstream.url(), autocommit=True) as direct:
        expected = direct.execute(query).fetchall()
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            cur.execute(query)
            assert cur.fetchall() == expected


def test_query_parameters_are_not_interpreted_as_sql(conn: psycopg.Connection[Any]) -> None:
    nasty = "'); drop table pg_class; --\x01\\ $1 %s"
    assert conn.execute("select %s::text, %s::text", [nasty, None]).fetchone() == (nasty, None)


# -- pipeline mode ---------------------------------------------------------------------------------


def test_pipeline_runs_many_inserts_and_selects(conn: psycopg.Connection[Any], table: str) -> None:
    ident = sql.Identifier(table)
    conn.execute(sql.SQL("create table {} (id int primary key, name text not null)").format(ident))
    with conn.pipeline() as pipeline, conn.cursor() as cur:
        cursors = []
        for i in range(200):
            cur.execute(sql.SQL("insert into {} values (%s, %s)").format(ident), (i, f"name-{i}"))
            if i % 50 == 49:
                select = conn.cursor()
                select.execute(sql.SQL("select count(*), max(id) from {}").format(ident))
                cursors.append(select)
        pipeline.sync()
        counts = [c.fetchone() for c in cursors]
    assert counts == [(50, 49), (100, 99), (150, 149), (200, 199)]
    rows = conn.execute(sql.SQL("select id, name from {} order by id").format(ident)).fetchall()
    assert rows == [(i, f"name-{i}") for i in range(200)]


def test_pipeline_executemany_inserts_every_row(conn: psycopg.Connection[Any], table: str) -> None:
    ident = sql.Identifier(table)
    conn.execute(sql.SQL("create table {} (id int, payload bytea)").format(ident))
    data = [(i, bytes([i % 256]) * (i % 17)) for i in range(1000)]
    with conn.cursor() as cur:
        # executemany uses a pipeline under the hood in psycopg 3.
        cur.executemany(sql.SQL("insert into {} values (%s, %s)").format(ident), data)
    got = conn.execute(sql.SQL("select id, payload from {} order by id").format(ident)).fetchall()
    assert got == data


def test_error_inside_a_pipeline_raises_and_the_connection_stays_usable(
    proxy: ProxyProcess, table: str
) -> None:
    ident = sql.Identifier(table)
    with psycopg.connect(proxy.url()) as conn:  # not autocommit: the pipeline runs in one transaction
        conn.execute(sql.SQL("create table {} (id int primary key)").format(ident))
        conn.commit()
        with pytest.raises(psycopg.errors.UniqueViolation), conn.pipeline():
            conn.execute(sql.SQL("insert into {} values (1)").format(ident))
            conn.execute(sql.SQL("insert into {} values (2)").format(ident))
            conn.execute(sql.SQL("insert into {} values (1)").format(ident))
            conn.execute(sql.SQL("insert into {} values (3)").format(ident))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute(sql.SQL("select count(*) from {}").format(ident)).fetchone() == (0,)
        with conn.pipeline():
            conn.execute(sql.SQL("insert into {} values (10)").format(ident))
            cur = conn.execute(sql.SQL("select array_agg(id) from {}").format(ident))
        assert cur.fetchone() == ([10],)
        conn.commit()
        assert conn.execute("select 'still fine'").fetchone() == ("still fine",)


def test_error_in_an_autocommit_pipeline_keeps_earlier_statements(
    conn: psycopg.Connection[Any], table: str
) -> None:
    ident = sql.Identifier(table)
    conn.execute(sql.SQL("create table {} (id int primary key)").format(ident))
    with pytest.raises(psycopg.errors.DivisionByZero), conn.pipeline() as pipeline:
        conn.execute(sql.SQL("insert into {} values (1)").format(ident))
        pipeline.sync()
        conn.execute("select 1 / 0")
        conn.execute(sql.SQL("insert into {} values (2)").format(ident))
    assert conn.execute(sql.SQL("select array_agg(id) from {}").format(ident)).fetchone() == ([1],)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


# -- server-side cursors ---------------------------------------------------------------------------


def test_named_cursor_iterates_many_rows_in_batches(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url()) as conn, conn.cursor(name=unique("cur")) as cur:
        cur.itersize = 333
        cur.execute("select g, md5(g::text) from generate_series(1, 20000) g order by g")
        total = 0
        for expected, (number, digest) in enumerate(cur, start=1):
            assert number == expected
            assert len(digest) == 32
            total += 1
        assert total == 20000


def test_named_binary_cursor_fetches_in_chunks(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url()) as conn, conn.cursor(name=unique("cur"), binary=True) as cur:
        cur.execute("select g, g::numeric / 4, now() from generate_series(1, 1000) g order by g")
        first = cur.fetchmany(10)
        assert [r[0] for r in first] == list(range(1, 11))
        assert first[1][1] == Decimal("0.5")
        rest = cur.fetchall()
        assert [r[0] for r in rest] == list(range(11, 1001))


def test_scrollable_named_cursor_moves_both_ways(proxy: ProxyProcess) -> None:
    with (
        psycopg.connect(proxy.url()) as conn,
        conn.cursor(name=unique("scroll"), scrollable=True) as cur,
    ):
        cur.execute("select g from generate_series(1, 100) g order by g")
        assert cur.fetchmany(5) == [(1,), (2,), (3,), (4,), (5,)]
        cur.scroll(50, mode="absolute")
        assert cur.fetchone() == (51,)
        cur.scroll(-11)
        assert cur.fetchone() == (41,)
        cur.scroll(0, mode="absolute")
        assert cur.fetchone() == (1,)
        cur.scroll(98, mode="absolute")
        assert cur.fetchall() == [(99,), (100,)]


def test_withhold_cursor_survives_commit(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url()) as conn:
        with conn.cursor(name=unique("held"), withhold=True) as cur:
            cur.execute("select g from generate_series(1, 50) g")
            assert cur.fetchone() == (1,)
            conn.commit()
            assert len(cur.fetchall()) == 49
        conn.commit()


# -- COPY ------------------------------------------------------------------------------------------

COPY_ROWS = 5000


def copy_rows() -> list[tuple[Any, ...]]:
    base = dt.datetime(2023, 6, 1, tzinfo=dt.UTC)
    return [
        (
            i,
            f"row {i} ünïcode\ttab\nnewline\\back" if i % 7 == 0 else f"row {i}",
            None if i % 11 == 0 else Decimal(i) / 8,
            bytes([i % 256, 0, 255]),
            base + dt.timedelta(seconds=i),
            [i, -i],
        )
        for i in range(COPY_ROWS)
    ]


def create_copy_table(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(
        sql.SQL(
            "create table {} (id int primary key, label text, amount numeric, raw bytea, at timestamptz,"
            " pair int[])"
        ).format(sql.Identifier(table))
    )


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_copy_from_stdin_with_write_row_loads_every_row(
    conn: psycopg.Connection[Any], table: str, binary: bool
) -> None:
    create_copy_table(conn, table)
    rows = copy_rows()
    statement = sql.SQL("copy {} (id, label, amount, raw, at, pair) from stdin{}").format(
        sql.Identifier(table), sql.SQL(" (format binary)" if binary else "")
    )
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            if binary:
                copy.set_types(["int4", "text", "numeric", "bytea", "timestamptz", "int4[]"])
            for row in rows:
                copy.write_row(row)
        assert cur.rowcount == COPY_ROWS
    got = conn.execute(
        sql.SQL("select id, label, amount, raw, at, pair from {} order by id").format(sql.Identifier(table))
    ).fetchall()
    assert got == rows


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_copy_to_stdout_reads_back_every_row(conn: psycopg.Connection[Any], table: str, binary: bool) -> None:
    create_copy_table(conn, table)
    rows = copy_rows()
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("insert into {} values (%s, %s, %s, %s, %s, %s)").format(sql.Identifier(table)), rows
        )
    statement = sql.SQL(
        "copy (select id, label, amount, raw, at, pair from {} order by id) to stdout{}"
    ).format(sql.Identifier(table), sql.SQL(" (format binary)" if binary else ""))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(["int4", "text", "numeric", "bytea", "timestamptz", "int4[]"])
        got = list(copy.rows())
    assert got == rows


def test_copy_raw_blocks_round_trip_between_tables(conn: psycopg.Connection[Any], table: str) -> None:
    target = table + "_copy"
    create_copy_table(conn, table)
    create_copy_table(conn, target)
    try:
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("copy {} from stdin").format(sql.Identifier(table))) as copy,
        ):
            for row in copy_rows():
                copy.write_row(row)
        with (
            conn.cursor() as out_cur,
            conn.cursor() as in_cur,
        ):
            # Read every block first (one connection cannot run two COPYs at once), then write them all.
            with out_cur.copy(
                sql.SQL("copy {} to stdout (format binary)").format(sql.Identifier(table))
            ) as out:
                blocks = [bytes(block) for block in out]
            assert sum(len(b) for b in blocks) > 100_000
            with in_cur.copy(
                sql.SQL("copy {} from stdin (format binary)").format(sql.Identifier(target))
            ) as into:
                for block in blocks:
                    into.write(block)
        query = sql.SQL("select count(*), sum(id), md5(string_agg(label, ',' order by id)) from {}")
        assert (
            conn.execute(query.format(sql.Identifier(target))).fetchone()
            == conn.execute(query.format(sql.Identifier(table))).fetchone()
        )
    finally:
        conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(target)))


def test_failed_copy_from_reports_the_error_and_connection_recovers(
    conn: psycopg.Connection[Any], table: str
) -> None:
    conn.execute(sql.SQL("create table {} (id int primary key)").format(sql.Identifier(table)))
    with (
        pytest.raises(psycopg.errors.UniqueViolation),
        conn.cursor() as cur,
        cur.copy(sql.SQL("copy {} from stdin").format(sql.Identifier(table))) as copy,
    ):
        for i in [*range(100), 5]:
            copy.write_row((i,))
    assert conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table))).fetchone() == (0,)


def test_client_aborted_copy_from_raises_and_connection_recovers(
    conn: psycopg.Connection[Any], table: str
) -> None:
    conn.execute(sql.SQL("create table {} (id int)").format(sql.Identifier(table)))

    class Boom(Exception):
        pass

    with (
        pytest.raises(Boom),
        conn.cursor() as cur,
        cur.copy(sql.SQL("copy {} from stdin").format(sql.Identifier(table))) as copy,
    ):
        copy.write_row((1,))
        raise Boom()
    assert conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table))).fetchone() == (0,)


# -- prepared statements ---------------------------------------------------------------------------


def test_prepared_statement_is_reused_across_many_executions(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url(), autocommit=True, prepare_threshold=0) as conn:
        for i in range(200):
            row = conn.execute("select %s::int * 2, %s::text || '!'", (i, f"v{i}")).fetchone()
            assert row == (i * 2, f"v{i}!")
        names = conn.execute(
            "select count(*) from pg_prepared_statements where statement like 'select $1::int * 2%'"
        ).fetchone()
        assert names == (1,)


def test_explicit_prepare_true_works_with_binary_results(conn: psycopg.Connection[Any]) -> None:
    with conn.cursor(binary=True) as cur:
        for i in range(100):
            cur.execute(
                "select %s::uuid, %s::numeric + 1, %s::bytea",
                (SAMPLE_UUID, Decimal(i), bytes([i])),
                prepare=True,
            )
            assert cur.fetchone() == (SAMPLE_UUID, Decimal(i + 1), bytes([i]))
    prepared = conn.execute("select count(*) from pg_prepared_statements where statement like '%$1::uuid%'")
    assert prepared.fetchone() == (1,)


def test_prepared_statements_survive_an_error_between_executions(proxy: ProxyProcess, table: str) -> None:
    with psycopg.connect(proxy.url(), autocommit=True, prepare_threshold=0) as conn:
        ident = sql.Identifier(table)
        conn.execute(sql.SQL("create table {} (id int primary key)").format(ident))
        insert = sql.SQL("insert into {} values (%s)").format(ident)
        for i in range(20):
            conn.execute(insert, (i,))
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(insert, (i,))
        assert conn.execute(sql.SQL("select count(*) from {}").format(ident)).fetchone() == (20,)


def test_prepared_statements_inside_a_pipeline(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url(), autocommit=True, prepare_threshold=0) as conn:
        with conn.pipeline():
            cursors = [conn.execute("select %s::int + 1", (i,)) for i in range(100)]
        assert [c.fetchone() for c in cursors] == [(i + 1,) for i in range(100)]


# -- transactions ----------------------------------------------------------------------------------


def test_autocommit_makes_each_statement_visible_immediately(
    proxy: ProxyProcess, conn: psycopg.Connection[Any], table: str
) -> None:
    ident = sql.Identifier(table)
    conn.execute(sql.SQL("create table {} (id int)").format(ident))
    with psycopg.connect(proxy.url(), autocommit=True) as other:
        conn.execute(sql.SQL("insert into {} values (1)").format(ident))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert other.execute(sql.SQL("select count(*) from {}").format(ident)).fetchone() == (1,)


def test_uncommitted_changes_are_invisible_until_commit_and_gone_after_rollback(
    proxy: ProxyProcess, conn: psycopg.Connection[Any], table: str
) -> None:
    ident = sql.Identifier(table)
    count = sql.SQL("select count(*) from {}").format(ident)
    conn.execute(sql.SQL("create table {} (id int)").format(ident))
    with psycopg.connect(proxy.url()) as tx:
        tx.execute(sql.SQL("insert into {} values (1)").format(ident))
        assert tx.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert tx.execute(count).fetchone() == (1,)
        assert conn.execute(count).fetchone() == (0,)
        tx.rollback()
        assert tx.execute(count).fetchone() == (0,)
        tx.execute(sql.SQL("insert into {} values (2)").format(ident))
        tx.commit()
        assert conn.execute(count).fetchone() == (1,)


def test_transaction_blocks_and_savepoints(conn: psycopg.Connection[Any], table: str) -> None:
    ident = sql.Identifier(table)
    conn.execute(sql.SQL("create table {} (id int primary key)").format(ident))
    insert = sql.SQL("insert into {} values (%s)").format(ident)
    with conn.transaction():
        conn.execute(insert, (1,))
        with conn.transaction():  # a savepoint
            conn.execute(insert, (2,))
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute(insert, (3,))
            conn.execute(insert, (1,))  # fails: rolls back to the savepoint, losing 3
        with conn.transaction() as inner:
            conn.execute(insert, (4,))
            raise psycopg.Rollback(inner)  # quietly rolls back 4
        conn.execute(insert, (5,))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    rows = conn.execute(sql.SQL("select id from {} order by id").format(ident)).fetchall()
    assert rows == [(1,), (2,), (5,)]


def test_exception_in_transaction_block_rolls_everything_back(
    conn: psycopg.Connection[Any], table: str
) -> None:
    ident = sql.Identifier(table)
    conn.execute(sql.SQL("create table {} (id int)").format(ident))
    with pytest.raises(ZeroDivisionError), conn.transaction():
        conn.execute(sql.SQL("insert into {} values (1)").format(ident))
        1 / 0  # noqa: B018
    assert conn.execute(sql.SQL("select count(*) from {}").format(ident)).fetchone() == (0,)


def test_failed_statement_aborts_transaction_until_rollback(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url()) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("select * from no_such_table_anywhere")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("select 1")
        conn.rollback()
        assert conn.execute("select 1").fetchone() == (1,)


def test_session_settings_persist_across_statements(conn: psycopg.Connection[Any]) -> None:
    conn.execute("set application_name = 'psycopg-through-proxy'")
    conn.execute("set timezone = 'Asia/Kolkata'")
    row = conn.execute("select current_setting('application_name'), timestamptz '2024-01-01 00:00:00+00'")
    name, ts = row.fetchone() or (None, None)
    assert name == "psycopg-through-proxy"
    assert ts.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert conn.info.parameter_status("TimeZone") == "Asia/Kolkata"


def test_notices_reach_the_client(conn: psycopg.Connection[Any]) -> None:
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    conn.execute("do $$ begin raise notice 'hello from plpgsql ü'; end $$")
    assert notices == ["hello from plpgsql ü"]


def test_server_error_details_are_reported(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(
        sql.SQL("create table {} (id int constraint positive check (id > 0))").format(sql.Identifier(table))
    )
    with pytest.raises(psycopg.errors.CheckViolation) as info:
        conn.execute(sql.SQL("insert into {} values (-1)").format(sql.Identifier(table)))
    diag = info.value.diag
    assert diag.sqlstate == "23514"
    assert diag.constraint_name == "positive"
    assert diag.table_name == table


# -- async -----------------------------------------------------------------------------------------


@pytest.fixture
async def aconn(proxy: ProxyProcess) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    connection = await psycopg.AsyncConnection.connect(proxy.url(), autocommit=True)
    try:
        yield connection
    finally:
        await connection.close()


async def test_async_connection_runs_queries(aconn: psycopg.AsyncConnection[Any]) -> None:
    async with aconn.cursor(binary=True) as cur:
        await cur.execute(SAMPLE_QUERY, SAMPLE_PARAMS)
        row = await cur.fetchone()
    assert row is not None
    check_sample_row(row)


async def test_async_connections_run_queries_concurrently(proxy: ProxyProcess) -> None:
    """Eight statements are in flight through the proxy at once: all wait on one lock, then all finish."""
    lock_key = 424242

    async def worker(n: int) -> int:
        async with await psycopg.AsyncConnection.connect(proxy.url(), autocommit=True) as conn:
            cur = await conn.execute("select %s::int, pg_advisory_lock_shared(%s)", (n, lock_key))
            row = await cur.fetchone()
            assert row is not None
            total = await conn.execute("select sum(g) from generate_series(1, %s) g", (n * 1000,))
            assert await total.fetchone() == (n * 1000 * (n * 1000 + 1) // 2,)
            return row[0]

    async with await psycopg.AsyncConnection.connect(proxy.url(), autocommit=True) as holder:
        await holder.execute("select pg_advisory_lock(%s)", (lock_key,))
        workers = asyncio.gather(*(worker(n) for n in range(1, 9)))
        waiting = "select count(*) from pg_locks where locktype = 'advisory' and objid = %s and not granted"
        for _ in range(400):
            count = await (await holder.execute(waiting, (lock_key,))).fetchone()
            if count == (8,):
                break
            await asyncio.sleep(0.05)
        assert count == (8,)
        await holder.execute("select pg_advisory_unlock(%s)", (lock_key,))
        assert await workers == list(range(1, 9))


async def test_async_pipeline_and_named_cursor(aconn: psycopg.AsyncConnection[Any]) -> None:
    async with aconn.pipeline():
        cursors = [await aconn.execute("select %s::text", (f"q{i}",)) for i in range(50)]
    assert [await c.fetchone() for c in cursors] == [(f"q{i}",) for i in range(50)]
    async with aconn.transaction(), aconn.cursor(name=unique("acur")) as cur:
        cur.itersize = 100
        await cur.execute("select g from generate_series(1, 1000) g")
        seen = [row[0] async for row in cur]
    assert seen == list(range(1, 1001))


async def test_async_copy_round_trip(aconn: psycopg.AsyncConnection[Any]) -> None:
    table = unique("pg3_acopy")
    ident = sql.Identifier(table)
    await aconn.execute(sql.SQL("create table {} (id int, label text)").format(ident))
    try:
        async with aconn.cursor() as cur:
            async with cur.copy(sql.SQL("copy {} from stdin").format(ident)) as copy:
                for i in range(2000):
                    await copy.write_row((i, f"label ü {i}"))
            async with cur.copy(sql.SQL("copy {} to stdout").format(ident)) as copy:
                copy.set_types(["int4", "text"])
                rows = [row async for row in copy.rows()]
        assert sorted(rows) == [(i, f"label ü {i}") for i in range(2000)]
    finally:
        await aconn.execute(sql.SQL("drop table if exists {}").format(ident))


async def test_async_cancel_stops_a_running_query(aconn: psycopg.AsyncConnection[Any]) -> None:
    async def cancel_soon() -> None:
        await asyncio.sleep(0.3)
        await aconn.cancel_safe()

    task = asyncio.create_task(cancel_soon())
    with pytest.raises(psycopg.errors.QueryCanceled):
        await aconn.execute("select pg_sleep(20)")
    await task
    cur = await aconn.execute("select 'after cancel'")
    assert await cur.fetchone() == ("after cancel",)
