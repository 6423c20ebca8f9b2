"""Spliced calls: a row-dependent pgml call in the select list of a plain SELECT (DESIGN §4, simple protocol).

The upstream runs the statement with a placeholder column and the call's arguments as hidden columns;
the proxy computes the results as the rows stream by and writes them into the rows it relays. These
tests check what a client sees: column names and types, values, order, casts, errors that leave client
and server agreeing, cancel, and results that start arriving before the whole statement is computed.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import psycopg
import pytest
from psycopg import ClientCursor

from tests.support.servers import run_psql
from tests.support.tables import scratch_table

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
ROWS = 3000


@pytest.fixture(scope="module")
def table(upstream):
    """``(id, body, tag)``: ROWS short texts, some NULL and some empty."""
    rows = (
        (i, None if i % 97 == 0 else ("" if i % 89 == 0 else f"document number {i} ü"), f"tag {i % 7}")
        for i in range(1, ROWS + 1)
    )
    with scratch_table(
        upstream.url(), "id int primary key, body text, tag varchar(20)", rows, "splice"
    ) as name:
        yield name


@pytest.fixture
def conn(proxy):
    with psycopg.connect(proxy.url(), autocommit=True, cursor_factory=ClientCursor) as connection:
        yield connection


def test_every_row_gets_its_own_vector_in_order(conn, table, reference):
    cur = conn.execute(f"select id, pgml.embed('{MODEL}', body) as e, tag from {table} order by id")
    assert [(c.name, c.type_code) for c in cur.description] == [("id", 23), ("e", 1021), ("tag", 1043)]
    rows = cur.fetchall()
    assert [r[0] for r in rows] == list(range(1, ROWS + 1))  # no hidden column leaks, order kept
    assert all(len(r) == 3 for r in rows)
    assert rows[96][1] is None  # STRICT: NULL in, NULL out
    sample = [r for r in rows if r[0] in (1, 89, 1500, ROWS)]
    expected = reference.encode([f"document number {i} ü" if i != 89 else "" for i, _, _ in sample])
    for (_, vector, tag), want in zip(sample, expected, strict=True):
        assert np.allclose(vector, want, atol=1e-5)
        assert tag.startswith("tag ")
    assert cur.rowcount == ROWS
    assert cur.statusmessage == f"SELECT {ROWS}"


def test_text_is_what_postgres_prints_for_the_same_values(proxy, table, upstream):
    """The proxy writes the floats itself: Postgres, reading them back, prints exactly the same text."""
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        result = conn.pgconn.exec_(
            f"select pgml.embed('{MODEL}', body), pgml.embed('{MODEL}', body)::vector from {table} "
            "where id <= 20 order by id".encode()
        )
        texts = [(result.get_value(i, 0).decode(), result.get_value(i, 1).decode()) for i in range(20)]
    with psycopg.connect(upstream.url()) as direct:
        for array, vector in texts:
            assert array.startswith("{") and vector.startswith("[")
            assert direct.execute("select %s::real[]::text", [array]).fetchone()[0] == array
            assert direct.execute("select %s::vector::text", [vector]).fetchone()[0] == vector
            # Batched with other rows, the two calls may differ in the last bits, not more.
            assert np.allclose(
                np.array(array[1:-1].split(","), dtype=float),
                np.array(vector[1:-1].split(","), dtype=float),
                atol=1e-5,
            )


def test_vector_casts_are_honoured(conn, table):
    cur = conn.execute(
        f"select id, pgml.embed('{MODEL}', body)::vector(384) from {table} where id < 4 order by id"
    )
    assert cur.description[1].name == "embed"
    rows = cur.fetchall()
    assert rows[0][1].startswith("[") and len(rows[0][1].split(",")) == 384
    with pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions, not 384"):
        conn.execute(f"select pgml.embed('{MODEL}', body)::vector(3) from {table} where id < 4")
    assert conn.execute("select 1").fetchone() == (1,)


def test_stars_constants_and_several_calls_in_one_select(conn, table, reference):
    cur = conn.execute(
        f"select *, pgml.embed('{MODEL}', body), pgml.embed(transformer => '{MODEL}', text => tag) t, "
        f"pgml.version() from {table} where id in (1, 2) order by id"
    )
    assert [c.name for c in cur.description] == ["id", "body", "tag", "embed", "t", "version"]
    rows = cur.fetchall()
    assert np.allclose(rows[1][4], reference.encode(["tag 2"])[0], atol=1e-5)
    assert rows[0][5].startswith("2.10.0")


def test_limit_offset_and_empty_results(conn, table):
    rows = conn.execute(
        f"select id, pgml.embed('{MODEL}', body) from {table} order by id limit 5 offset 10"
    ).fetchall()
    assert [r[0] for r in rows] == list(range(11, 16))
    cur = conn.execute(f"select pgml.embed('{MODEL}', body) from {table} where false")
    assert cur.fetchall() == [] and cur.description[0].name == "embed"


def test_unknown_model_fails_the_statement_and_the_transaction(proxy, table):
    with psycopg.connect(proxy.url(), cursor_factory=ClientCursor) as conn:
        conn.execute("select 1")  # in a transaction block from here on
        with pytest.raises(psycopg.errors.UndefinedObject, match="no-such-model"):
            conn.execute(f"select pgml.embed('no-such-model', body) from {table}")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("select 1")  # the upstream agrees: its transaction is aborted too
        conn.rollback()
        assert conn.execute("select 2").fetchone() == (2,)


def test_wrong_argument_types_get_42883(conn, table):
    with pytest.raises(psycopg.errors.UndefinedFunction, match="does not exist"):
        conn.execute(f"select pgml.embed('{MODEL}', id) from {table}")
    assert conn.execute("select 1").fetchone() == (1,)


def test_cancel_stops_splicing_and_the_session_goes_on(proxy, upstream):
    with psycopg.connect(proxy.url(), autocommit=True, cursor_factory=ClientCursor) as conn:
        timer = threading.Timer(1.0, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(f"select pgml.embed('{MODEL}', 'sentence ' || g) from generate_series(1, 50000) g")
        timer.join()
        assert time.monotonic() - started < 30
        assert conn.execute("select 3").fetchone() == (3,)


def test_psql_shows_spliced_columns(proxy, table):
    done = run_psql(
        proxy.url(),
        "-A",
        "-c",
        f"select id, array_length(e, 1) from (select id, pgml.embed('{MODEL}', body) e from {table}) s "
        "where id = 1",
        "-c",
        f"select id, pgml.embed('{MODEL}', body) is null as missing from {table} where id = 97",
    )
    assert done.returncode == 0, done.stderr
    assert "1|384" in done.stdout


def test_returning_rows_are_spliced_and_a_failure_changes_nothing(proxy, upstream, reference):
    with (
        scratch_table(upstream.url(), "id int primary key, body text", [(1, "one"), (2, "two")]) as name,
        psycopg.connect(proxy.url(), autocommit=True, cursor_factory=ClientCursor) as conn,
    ):
        rows = conn.execute(
            f"update {name} set body = body || ' more' returning id, pgml.embed('{MODEL}', body) as e"
        ).fetchall()
        assert sorted(r[0] for r in rows) == [1, 2]
        by_id = dict(rows)
        assert np.allclose(by_id[1], reference.encode(["one more"])[0], atol=1e-5)
        # The computation fails after the rows were written upstream: nothing stays written.
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute(f"update {name} set body = 'changed' returning pgml.embed('no-such-model', body)")
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute(
                f"with d as (delete from {name} returning body) select pgml.embed('no-such-model', body) from d"
            )
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="RETURNING"):
            conn.execute(f"update {name} set body = body returning length(pgml.embed('{MODEL}', body)::text)")
        bodies = conn.execute(f"select body from {name} order by id").fetchall()
        assert bodies == [("one more",), ("two more",)]


@pytest.mark.parametrize("extra", [0, -3])
def test_a_lower_extra_float_digits_is_honoured(proxy, table, upstream, extra):
    """Floats the proxy prints itself (spliced and answered) round as Postgres's do for the session."""
    queries = [
        f"select pgml.embed('{MODEL}', body) from {table} where id = 1",  # spliced
        f"select pgml.embed('{MODEL}', 'document number 1 ü')",  # answered
    ]
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        exact = conn.cursor(binary=True).execute(queries[0]).fetchone()[0]
        conn.execute(f"set extra_float_digits = {extra}")
        texts = [conn.pgconn.exec_(q.encode()).get_value(0, 0).decode() for q in queries]
    with psycopg.connect(upstream.url(), autocommit=True) as direct:
        direct.execute(f"set extra_float_digits = {extra}")
        printed = direct.execute("select %s::real[]::text", [exact]).fetchone()[0]
    assert texts[0] == printed
    assert np.allclose(np.array(texts[1][1:-1].split(","), dtype=float), exact, atol=10.0 ** -(6 + extra))


def test_a_spliced_select_after_a_write_in_one_query_string_sees_the_write(proxy, upstream, reference):
    with (
        scratch_table(upstream.url(), "id int primary key, body text", [(1, "before"), (2, "other")]) as name,
        psycopg.connect(proxy.url(), autocommit=True, cursor_factory=ClientCursor) as conn,
    ):
        cur = conn.execute(
            f"update {name} set body = 'after' where id = 1; "
            f"select id, pgml.embed('{MODEL}', body) from {name} order by id; select 'last'"
        )
        cur.nextset()
        rows = cur.fetchall()
        assert [r[0] for r in rows] == [1, 2]
        assert np.allclose(rows[0][1], reference.encode(["after"])[0], atol=1e-5)
        cur.nextset()
        assert cur.fetchall() == [("last",)]
        # Elsewhere than a select list, the arguments would be read before the write: refused.
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="may change rows"):
            conn.execute(
                f"update {name} set body = 'again' where id = 1; "
                f"select id from {name} where pgml.embed('{MODEL}', body) is not null"
            )
        assert conn.execute(f"select body from {name} where id = 1").fetchone() == ("after",)


def test_reset_all_is_noticed_like_set(proxy, table):
    query = f"select pgml.embed('{MODEL}', body) from {table} where id = 1".encode()
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        shortest = conn.pgconn.exec_(query).get_value(0, 0)
        conn.execute("set extra_float_digits = -10")
        rounded = conn.pgconn.exec_(query).get_value(0, 0)
        conn.execute("reset all")
        again = conn.pgconn.exec_(query).get_value(0, 0)
    assert len(rounded) < len(shortest)  # one significant digit a float
    assert len(again) > len(rounded) and again.count(b",") == shortest.count(b",")
