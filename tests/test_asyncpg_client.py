"""asyncpg through the proxy: prepared statements, binary codecs, COPY, LISTEN/NOTIFY, transactions,
errors, large results and concurrent connections.

asyncpg speaks the extended protocol with binary formats throughout, so every value here travels as
binary parameters and binary result columns; the tests compare what comes back with the Python values.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import asyncpg.exceptions
import pytest
from pgvector import Vector
from pgvector.asyncpg import register_vector

from tests.support.servers import ProxyProcess


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def connect(proxy: ProxyProcess) -> asyncpg.Connection:
    return await asyncpg.connect(proxy.url(), timeout=10)


@pytest.fixture
async def conn(proxy: ProxyProcess) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(proxy)
    try:
        yield connection
    finally:
        await connection.close(timeout=10)


@pytest.fixture
async def table(proxy: ProxyProcess) -> AsyncIterator[str]:
    """A unique table name, dropped after the test (the database is shared by the whole run)."""
    name = unique("apg")
    yield name
    cleanup = await connect(proxy)
    try:
        await cleanup.execute(f"drop table if exists {name}")
    finally:
        await cleanup.close(timeout=10)


# -- prepared statements, executemany, cursors -----------------------------------------------------


async def test_prepared_statement_runs_again_with_new_arguments(conn: asyncpg.Connection) -> None:
    statement = await conn.prepare("select $1::int4 * 2 as doubled, $2::text || '!' as shout")
    assert [a.name for a in statement.get_attributes()] == ["doubled", "shout"]
    assert [p.name for p in statement.get_parameters()] == ["int4", "text"]
    for n in range(5):
        rows = await statement.fetch(n, f"x{n}")
        assert [tuple(r) for r in rows] == [(n * 2, f"x{n}!")]
    assert await statement.fetchval(21, "a") == 42
    assert tuple(await statement.fetchrow(-3, "")) == (-6, "!")


async def test_prepared_statement_returns_many_rows(conn: asyncpg.Connection) -> None:
    statement = await conn.prepare("select g, g * g from generate_series(1, $1::int) g")
    assert [tuple(r) for r in await statement.fetch(4)] == [(1, 1), (2, 4), (3, 9), (4, 16)]
    assert [tuple(r) for r in await statement.fetch(2)] == [(1, 1), (2, 4)]
    assert await statement.fetch(0) == []


async def test_statement_cache_reuses_statements_across_queries(conn: asyncpg.Connection) -> None:
    """Plain conn.fetch with arguments goes through asyncpg's implicit prepared-statement cache."""
    for n in range(30):
        assert await conn.fetchval("select $1::int8 + 1", n) == n + 1
    assert await conn.fetchval("select count(*) from pg_prepared_statements") >= 1


async def test_executemany_inserts_every_row(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f"create table {table} (id int primary key, name text, score float8)")
    rows = [(i, f"name-{i}", i / 4) for i in range(500)]
    await conn.executemany(f"insert into {table} values ($1, $2, $3)", rows)
    got = await conn.fetch(f"select id, name, score from {table} order by id")
    assert [tuple(r) for r in got] == rows


async def test_cursor_with_prefetch_yields_all_rows_in_order(conn: asyncpg.Connection) -> None:
    seen: list[tuple[int, str]] = []
    async with conn.transaction():
        cursor = conn.cursor("select g, 'row ' || g from generate_series(1, $1::int) g", 1000, prefetch=50)
        async for record in cursor:
            seen.append((record[0], record[1]))
    assert seen == [(g, f"row {g}") for g in range(1, 1001)]


async def test_cursor_fetch_and_forward_move_through_results(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        cursor = await conn.cursor("select g from generate_series(1, 100) g")
        assert [r[0] for r in await cursor.fetch(10)] == list(range(1, 11))
        assert await cursor.forward(40) == 40
        assert (await cursor.fetchrow())[0] == 51
        assert [r[0] for r in await cursor.fetch(100)] == list(range(52, 101))
        assert await cursor.fetchrow() is None


# -- binary codecs ---------------------------------------------------------------------------------

ROUND_TRIPS: list[tuple[str, Any]] = [
    ("int2", -32768),
    ("int2", 32767),
    ("int4", -2_147_483_648),
    ("int4", 2_147_483_647),
    ("int8", -9_223_372_036_854_775_808),
    ("int8", 9_223_372_036_854_775_807),
    ("float8", 3.5e-300),
    ("float8", -1.7976931348623157e308),
    ("numeric", Decimal("12345678901234567890123456789.000000000000000000123456789")),
    ("numeric", Decimal("-0.00000000000000000000000000000000000001")),
    ("numeric", Decimal("0")),
    ("text", "héllo wörld — ✓ 日本語 🐘"),
    ("text", ""),
    ("text", "tab\tnewline\nquote' backslash\\"),
    ("bytea", b""),
    ("bytea", b"\x00\x01\x00\xfe\xff\x00"),
    ("bool", True),
    ("bool", False),
    ("timestamptz", dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.UTC)),
    ("date", dt.date(1999, 12, 31)),
    ("interval", dt.timedelta(days=3, seconds=7, microseconds=5)),
    ("uuid", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    ("int4[]", [1, None, -3]),
    ("int8[]", [[1, 2, 3], [4, None, 6]]),
    ("text[]", ["a", 'ü,"quoted"', "", None, "{braces}"]),
    ("text[]", [[["x"], [None]], [["y"], ["z"]]]),
    ("text[]", []),
]


ROUND_TRIP_IDS = [f"{pgtype.replace('[]', '_array')}-{i}" for i, (pgtype, _) in enumerate(ROUND_TRIPS)]


@pytest.mark.parametrize(("pgtype", "value"), ROUND_TRIPS, ids=ROUND_TRIP_IDS)
async def test_binary_parameter_round_trips_unchanged(
    conn: asyncpg.Connection, pgtype: str, value: Any
) -> None:
    assert await conn.fetchval(f"select $1::{pgtype}", value) == value


async def test_float4_round_trips_at_single_precision(conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("select $1::float4", 1.5) == 1.5
    assert await conn.fetchval("select $1::float4", 0.1) == pytest.approx(0.1, rel=1e-7)
    assert await conn.fetchval("select $1::float4", 0.1) != 0.1  # really single precision, not text


async def test_timestamptz_keeps_the_instant_across_time_zones(conn: asyncpg.Connection) -> None:
    plus_five = dt.timezone(dt.timedelta(hours=5, minutes=30))
    value = dt.datetime(2021, 6, 1, 12, 0, 0, 1, tzinfo=plus_five)
    got = await conn.fetchval("select $1::timestamptz", value)
    assert got == value
    assert got.utcoffset() is not None


async def test_null_and_special_values_come_back(conn: asyncpg.Connection) -> None:
    row = await conn.fetchrow(
        "select $1::int4, $2::text, 'NaN'::float8, 'Infinity'::float8, 'NaN'::numeric", None, None
    )
    assert row[0] is None and row[1] is None
    assert row[2] != row[2]  # NaN
    assert row[3] == float("inf")
    assert row[4].is_nan()


async def test_large_bytea_round_trips(conn: asyncpg.Connection) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value, zero bytes included
    got = await conn.fetchval("select $1::bytea", payload)
    assert len(got) == len(payload)
    assert got == payload
    assert await conn.fetchval("select length($1::bytea)", payload) == 1 << 20


async def test_many_columns_in_one_row_decode(conn: asyncpg.Connection) -> None:
    values = [(pgtype, value) for pgtype, value in ROUND_TRIPS]
    query = "select " + ", ".join(f"${i}::{pgtype}" for i, (pgtype, _) in enumerate(values, 1))
    row = await conn.fetchrow(query, *[v for _, v in values])
    assert list(row) == [v for _, v in values]


async def test_json_and_jsonb_round_trip_with_codec(conn: asyncpg.Connection) -> None:
    document = {"key": ["v", 1, 2.5, None, True], "ü": {"nested": "é"}, "empty": {}}
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    assert await conn.fetchval("select $1::json", document) == document
    assert await conn.fetchval("select $1::jsonb", document) == document
    assert await conn.fetchval("select ($1::jsonb)->'ü'->>'nested'", document) == "é"


async def test_json_as_text_without_codec(conn: asyncpg.Connection) -> None:
    text = '{"a": [1, 2, {"b": null}], "c": "ü"}'
    assert json.loads(await conn.fetchval("select $1::jsonb::text", text)) == json.loads(text)
    assert await conn.fetchval("select $1::json::text", text) == text  # json keeps the text as sent


async def test_pgvector_vectors_round_trip(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute("create extension if not exists vector")
    await register_vector(conn)
    value = [0.5, -1.25, 3.0, 0.0, 1e-3]
    got = await conn.fetchval("select $1::vector", value)
    assert isinstance(got, Vector)
    assert got.to_list() == pytest.approx(value)

    await conn.execute(f"create table {table} (id int primary key, embedding vector(3))")
    await conn.executemany(
        f"insert into {table} values ($1, $2)",
        [(1, [1.0, 0.0, 0.0]), (2, [0.0, 1.0, 0.0]), (3, [0.9, 0.1, 0.0])],
    )
    nearest = await conn.fetch(f"select id from {table} order by embedding <-> $1 limit 2", [1.0, 0.05, 0.0])
    assert [r["id"] for r in nearest] == [1, 3]
    assert (await conn.fetchval(f"select embedding from {table} where id = 2")).to_list() == [0.0, 1.0, 0.0]


async def test_pgvector_numpy_arrays_round_trip(conn: asyncpg.Connection) -> None:
    np = pytest.importorskip("numpy")
    await conn.execute("create extension if not exists vector")
    await register_vector(conn)
    value = np.array([0.25, -2.0, 7.5], dtype=np.float32)
    got = await conn.fetchval("select $1::vector", value)
    assert np.array_equal(got.to_numpy(), value)


# -- COPY --------------------------------------------------------------------------------------------


async def test_copy_records_in_and_copy_out_match(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f"create table {table} (id int, name text, data bytea, at timestamptz)")
    base = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    records = [
        (i, f"näme {i}\t\\ {'x' * (i % 50)}", bytes([i % 256, 0, 255]), base + dt.timedelta(seconds=i))
        for i in range(5000)
    ]
    result = await conn.copy_records_to_table(table, records=records)
    assert result == "COPY 5000"
    got = await conn.fetch(f"select id, name, data, at from {table} order by id")
    assert [tuple(r) for r in got] == records

    out = io.BytesIO()
    await conn.copy_from_table(table, output=out, columns=["id", "name"], format="csv")
    lines = out.getvalue().decode().splitlines()
    assert len(lines) == 5000
    by_id = {int(line.split(",", 1)[0]): line.split(",", 1)[1] for line in lines}
    assert by_id[7] == f"näme 7\t\\ {'x' * 7}"


async def test_copy_from_query_writes_every_row(conn: asyncpg.Connection) -> None:
    out = io.BytesIO()
    status = await conn.copy_from_query(
        "select g, 'ü' || g from generate_series(1, $1::int) g order by g", 3000, output=out
    )
    assert status == "COPY 3000"
    assert out.getvalue().decode().splitlines() == [f"{g}\tü{g}" for g in range(1, 3001)]


async def test_copy_to_table_from_file_like(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f"create table {table} (id int, name text)")
    source = io.BytesIO("".join(f"{i}\tzeile {i}\n" for i in range(2500)).encode())
    status = await conn.copy_to_table(table, source=source)
    assert status == "COPY 2500"
    assert await conn.fetchval(f"select count(*) from {table}") == 2500
    assert await conn.fetchval(f"select name from {table} where id = 2499") == "zeile 2499"

    out = io.BytesIO()
    await conn.copy_from_table(table, output=out)
    assert sorted(out.getvalue().decode().splitlines()) == sorted(f"{i}\tzeile {i}" for i in range(2500))


async def test_binary_copy_out_equals_direct_upstream(conn: asyncpg.Connection, upstream: Any) -> None:
    """COPY bytes through the proxy must be identical to the same COPY straight from the server."""
    query = "select g, md5(g::text), g * 1.5 from generate_series(1, 4000) g order by g"
    via_proxy = io.BytesIO()
    await conn.copy_from_query(query, output=via_proxy, format="binary")
    direct_conn = await asyncpg.connect(upstream.url(), timeout=10)
    try:
        direct = io.BytesIO()
        await direct_conn.copy_from_query(query, output=direct, format="binary")
    finally:
        await direct_conn.close()
    assert via_proxy.getvalue() == direct.getvalue()
    assert len(via_proxy.getvalue()) > 100_000


# -- LISTEN / NOTIFY ---------------------------------------------------------------------------------


async def test_notify_reaches_listener_on_another_connection(proxy: ProxyProcess) -> None:
    channel = unique("chan")
    listener = await connect(proxy)
    sender = await connect(proxy)
    try:
        received: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
        await listener.add_listener(
            channel, lambda _c, pid, ch, payload: received.put_nowait((pid, ch, payload))
        )
        await sender.execute(f"notify {channel}, 'hello ü'")
        await sender.execute("select pg_notify($1, $2)", channel, "second")
        first = await asyncio.wait_for(received.get(), timeout=5)
        second = await asyncio.wait_for(received.get(), timeout=5)
        assert first[1:] == (channel, "hello ü")
        assert second[1:] == (channel, "second")
        # NotificationResponse carries the sending upstream backend's pid, relayed untouched.
        sender_backend = await sender.fetchval("select pg_backend_pid()")
        assert first[0] == second[0] == sender_backend
    finally:
        await listener.close()
        await sender.close()


async def test_notify_inside_transaction_arrives_only_after_commit(proxy: ProxyProcess) -> None:
    channel = unique("chan")
    listener = await connect(proxy)
    sender = await connect(proxy)
    try:
        received: asyncio.Queue[str] = asyncio.Queue()
        await listener.add_listener(channel, lambda _c, _pid, _ch, payload: received.put_nowait(payload))
        async with sender.transaction():
            await sender.execute("select pg_notify($1, 'committed')", channel)
            await asyncio.sleep(0.2)
            assert received.empty()
        assert await asyncio.wait_for(received.get(), timeout=5) == "committed"

        rolled_back = sender.transaction()
        await rolled_back.start()
        await sender.execute("select pg_notify($1, 'never')", channel)
        await rolled_back.rollback()
        await sender.execute("select pg_notify($1, 'after')", channel)
        assert await asyncio.wait_for(received.get(), timeout=5) == "after"
    finally:
        await listener.close()
        await sender.close()


async def test_listener_removed_stops_deliveries(proxy: ProxyProcess) -> None:
    channel = unique("chan")
    listener = await connect(proxy)
    try:
        received: list[str] = []

        def callback(_c: Any, _pid: int, _ch: str, payload: str) -> None:
            received.append(payload)

        await listener.add_listener(channel, callback)
        await listener.execute(f"notify {channel}, 'self'")  # a session hears its own notifications
        assert await listener.fetchval("select 1") == 1
        await asyncio.sleep(0.1)
        assert received == ["self"]
        await listener.remove_listener(channel, callback)
        await listener.execute(f"notify {channel}, 'gone'")
        await asyncio.sleep(0.2)
        assert received == ["self"]
    finally:
        await listener.close()


# -- transactions ------------------------------------------------------------------------------------


async def test_committed_transaction_is_visible_to_other_connections(
    proxy: ProxyProcess, conn: asyncpg.Connection, table: str
) -> None:
    await conn.execute(f"create table {table} (v int)")
    other = await connect(proxy)
    try:
        async with conn.transaction():
            await conn.execute(f"insert into {table} values (1), (2)")
            assert await other.fetchval(f"select count(*) from {table}") == 0
        assert await other.fetchval(f"select count(*) from {table}") == 2
    finally:
        await other.close()


async def test_rolled_back_transaction_leaves_no_rows(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f"create table {table} (v int)")
    with pytest.raises(RuntimeError, match="boom"):
        async with conn.transaction():
            await conn.execute(f"insert into {table} values (1)")
            assert await conn.fetchval(f"select count(*) from {table}") == 1
            raise RuntimeError("boom")
    assert await conn.fetchval(f"select count(*) from {table}") == 0
    assert not conn.is_in_transaction()


async def test_savepoint_rollback_keeps_outer_transaction(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f"create table {table} (v int unique)")
    async with conn.transaction():
        await conn.execute(f"insert into {table} values (1)")
        with pytest.raises(asyncpg.exceptions.UniqueViolationError):
            async with conn.transaction():
                await conn.execute(f"insert into {table} values (2)")
                await conn.execute(f"insert into {table} values (1)")
        async with conn.transaction():
            await conn.execute(f"insert into {table} values (3)")
        assert [r[0] for r in await conn.fetch(f"select v from {table} order by v")] == [1, 3]
    assert [r[0] for r in await conn.fetch(f"select v from {table} order by v")] == [1, 3]


async def test_error_aborts_transaction_until_rollback(conn: asyncpg.Connection) -> None:
    tr = conn.transaction()
    await tr.start()
    assert await conn.fetchval("select 1") == 1
    with pytest.raises(asyncpg.exceptions.DivisionByZeroError) as division:
        await conn.fetchval("select 1 / $1::int", 0)
    assert division.value.sqlstate == "22012"
    with pytest.raises(asyncpg.exceptions.InFailedSQLTransactionError) as failed:
        await conn.fetchval("select 2")
    assert failed.value.sqlstate == "25P02"
    await tr.rollback()
    assert not conn.is_in_transaction()
    assert await conn.fetchval("select $1::int + 1", 41) == 42


async def test_error_outside_transaction_leaves_connection_usable(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.exceptions.UndefinedTableError) as missing:
        await conn.fetch("select * from no_such_table_at_all")
    assert missing.value.sqlstate == "42P01"
    with pytest.raises(asyncpg.exceptions.PostgresSyntaxError):
        await conn.execute("selec 1")
    with pytest.raises(asyncpg.exceptions.DataError):
        await conn.fetchval("select $1::int", "not an int")
    assert await conn.fetchval("select 'still fine'") == "still fine"


async def test_server_error_fields_reach_the_client(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f"create table {table} (id int primary key)")
    await conn.execute(f"insert into {table} values (1)")
    with pytest.raises(asyncpg.exceptions.UniqueViolationError) as dup:
        await conn.execute(f"insert into {table} values (1)")
    assert dup.value.sqlstate == "23505"
    assert dup.value.table_name == table
    assert dup.value.constraint_name == f"{table}_pkey"
    assert "already exists" in (dup.value.detail or "")


# -- large results and concurrency ------------------------------------------------------------------


async def test_statement_timeout_cancels_and_connection_recovers(conn: asyncpg.Connection) -> None:
    """asyncpg's timeout sends a CancelRequest with the key the proxy handed out."""
    with pytest.raises(asyncio.TimeoutError):
        await conn.fetchval("select pg_sleep(30)", timeout=0.5)
    assert await conn.fetchval("select $1::text", "after cancel") == "after cancel"
    assert not conn.is_in_transaction()


async def test_large_result_arrives_complete(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "select g, 'row number ' || g || repeat('x', g % 20) from generate_series(1, 200000) g"
    )
    assert len(rows) == 200_000
    for g in (1, 2, 99_999, 150_001, 200_000):
        assert tuple(rows[g - 1]) == (g, f"row number {g}" + "x" * (g % 20))
    assert [r[0] for r in rows] == list(range(1, 200_001))


async def test_concurrent_connections_get_their_own_answers(proxy: ProxyProcess) -> None:
    async def worker(n: int) -> list[int]:
        connection = await connect(proxy)
        try:
            results = []
            for i in range(20):
                results.append(await connection.fetchval("select $1::int * 1000 + $2::int", n, i))
            rows = await connection.fetch("select g from generate_series(1, $1::int) g", 1000 + n)
            assert [r[0] for r in rows] == list(range(1, 1001 + n))
            await connection.execute("select pg_sleep(0.05)")
            return results
        finally:
            await connection.close()

    results = await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(10))), timeout=30)
    assert results == [[n * 1000 + i for i in range(20)] for n in range(10)]


async def test_concurrent_queries_through_a_pool(proxy: ProxyProcess) -> None:
    pool = await asyncpg.create_pool(proxy.url(), min_size=2, max_size=8, timeout=10)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(pool.fetchval("select $1::text || pg_backend_pid()::text", f"q{i}:") for i in range(60))
            ),
            timeout=30,
        )
        assert all(r.startswith(f"q{i}:") for i, r in enumerate(results))
        # The pool spread the work over more than one server backend.
        assert len({r.split(":", 1)[1] for r in results}) > 1
    finally:
        await pool.close()
