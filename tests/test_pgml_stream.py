"""pgml.transform_stream through real clients: rows reach the client as they are generated.

The tiny causal LM is random, so the tests compare the stream with the same model's own non-streamed
completion (greedy, so both are the same text) and count rows; ``min_new_tokens`` keeps generation from
stopping early. That the first row arrives before generation ends is proven by order, not by timing: the
engine generates only a few pieces ahead of the reader, so after one FETCH of a 100-token stream the
proxy's log cannot yet say the stream finished.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import psycopg
import psycopg.errors
import pytest

from tests.support.servers import ProxyProcess, run_psql, wait_until

TASK = json.dumps({"task": "text-generation", "model": "text-generation"})
LONG = json.dumps({"max_new_tokens": 100, "min_new_tokens": 100})
SHORT = json.dumps({"max_new_tokens": 12, "min_new_tokens": 12})
PROMPT = "the capital of France is"
STREAM = f"SELECT pgml.transform_stream('{TASK}'::jsonb, '{SHORT}'::jsonb, '{PROMPT}')"


def _pieces(rows: list[Any]) -> list[list[str]]:
    return [row[0] if isinstance(row[0], list) else json.loads(row[0]) for row in rows]


def _completion(conn: psycopg.Connection[Any]) -> str:
    """The same model's whole completion, through pgml.transform (its prompt cut off)."""
    [[result]] = conn.execute(
        "SELECT pgml.transform(%s::jsonb, %s::jsonb, ARRAY[%s::text])", (TASK, SHORT, PROMPT)
    ).fetchall()
    return result[0][0]["generated_text"][len(PROMPT) :]


def _stream_lines(proxy: ProxyProcess, word: str) -> int:
    return sum(1 for line in proxy.log.splitlines() if "stream" in line and word in line)


def test_select_streams_rows_whose_concatenation_is_the_completion(nlp_proxy: ProxyProcess) -> None:
    with psycopg.connect(nlp_proxy.url(), autocommit=True) as conn:
        rows = conn.execute(STREAM).fetchall()
        description = conn.execute(STREAM).description
        expected = _completion(conn)
    pieces = _pieces(rows)
    assert len(pieces) > 1
    assert all(isinstance(p, list) and len(p) == 1 and isinstance(p[0], str) for p in pieces)
    assert "".join(p[0] for p in pieces) == expected
    assert description is not None and [c.name for c in description] == ["transform_stream"]
    assert description[0].type_code == 3802  # jsonb


def test_select_star_from_the_stream_names_the_column_after_the_alias(nlp_proxy: ProxyProcess) -> None:
    sql = f"SELECT * FROM pgml.transform_stream('{TASK}'::jsonb, '{SHORT}'::jsonb, input => '{PROMPT}') AS piece"
    with psycopg.connect(nlp_proxy.url(), autocommit=True) as conn:
        cursor = conn.execute(sql)
        rows = cursor.fetchall()
        assert cursor.description is not None and [c.name for c in cursor.description] == ["piece"]
        assert "".join(p[0] for p in _pieces(rows)) == _completion(conn)


def test_cursor_first_row_arrives_while_generation_runs(nlp_proxy: ProxyProcess) -> None:
    finished_before = _stream_lines(nlp_proxy, "finished")
    with psycopg.connect(nlp_proxy.url()) as conn:
        conn.execute(
            f"DECLARE g CURSOR FOR SELECT pgml.transform_stream('{TASK}'::jsonb, '{LONG}'::jsonb, '{PROMPT}')"
        )
        first = conn.execute("FETCH 1 FROM g").fetchall()
        assert len(first) == 1
        # Generation has not ended: the engine waits for the reader.
        assert _stream_lines(nlp_proxy, "finished") == finished_before
        more = conn.execute("FETCH 5 FROM g").fetchall()
        assert len(more) == 5
        rest = conn.execute("FETCH ALL FROM g").fetchall()
        assert conn.execute("FETCH 1 FROM g").fetchall() == []
        conn.execute("CLOSE g")
        conn.commit()
    assert len(first) + len(more) + len(rest) > 6
    assert wait_until(lambda: _stream_lines(nlp_proxy, "finished") > finished_before)


def test_psql_cursor_pattern_from_the_guides(nlp_proxy: ProxyProcess) -> None:
    script = (
        "BEGIN;\n"
        f"DECLARE g CURSOR FOR SELECT pgml.transform_stream('{TASK}'::jsonb, '{LONG}', input => 'Once upon');\n"
        "FETCH 5 FROM g;\nMOVE 3 g;\nFETCH 2 FROM g;\nCOMMIT;\n"
    )
    done = run_psql(nlp_proxy.url(), "-X", "-v", "ON_ERROR_STOP=1", input=script)
    assert done.returncode == 0, done.stderr
    assert "(5 rows)" in done.stdout and "MOVE 3" in done.stdout and "(2 rows)" in done.stdout
    assert "COMMIT" in done.stdout


def test_closing_a_cursor_stops_generation(nlp_proxy: ProxyProcess) -> None:
    stopped = _stream_lines(nlp_proxy, "stopped")
    with psycopg.connect(nlp_proxy.url()) as conn:
        conn.execute(f"DECLARE g CURSOR FOR {STREAM.replace(SHORT, LONG)}")
        conn.execute("FETCH 2 FROM g")
        conn.execute("CLOSE g")
        assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)
    assert wait_until(lambda: _stream_lines(nlp_proxy, "stopped") > stopped)


def test_commit_ends_a_cursor_and_hold_keeps_one(nlp_proxy: ProxyProcess) -> None:
    with psycopg.connect(nlp_proxy.url()) as conn:
        conn.execute(f"DECLARE g CURSOR FOR {STREAM}")
        conn.commit()
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH 1 FROM g")
        conn.rollback()
        conn.execute(f"DECLARE h CURSOR WITH HOLD FOR {STREAM}")
        conn.commit()
        assert len(conn.execute("FETCH 2 FROM h").fetchall()) == 2
        conn.execute("CLOSE h")
        conn.commit()


def test_cursor_errors_are_postgres_errors(nlp_proxy: ProxyProcess) -> None:
    with psycopg.connect(nlp_proxy.url(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
            conn.execute(f"DECLARE g CURSOR FOR {STREAM}")
        with conn.transaction():
            conn.execute(f"DECLARE g CURSOR FOR {STREAM}")
            with pytest.raises(psycopg.errors.DuplicateCursor):
                conn.execute(f"DECLARE g CURSOR FOR {STREAM}")
            conn.execute("ROLLBACK")  # the failed block, ended as psql would
            conn.execute("BEGIN")
            conn.execute(f"DECLARE g SCROLL CURSOR FOR {STREAM}")
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                conn.execute("FETCH PRIOR FROM g")
            conn.execute("ROLLBACK")
            conn.execute("BEGIN")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_unknown_model_fails_the_stream_and_the_session_goes_on(nlp_proxy: ProxyProcess) -> None:
    task = json.dumps({"task": "text-generation", "model": "no-such-model"})
    with psycopg.connect(nlp_proxy.url(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedObject, match="no-such-model"):
            conn.execute("SELECT pgml.transform_stream(%s::jsonb, '{}'::jsonb, 'hi')", (task,))
        assert conn.execute("SELECT 1").fetchone() == (1,)
        rows = conn.execute(
            "SELECT pgml.transform_stream(%s::jsonb, '{}'::jsonb, NULL::text)", (TASK,)
        ).fetchall()
        assert rows == []  # STRICT: a NULL input streams nothing


def test_cancel_stops_a_stream(nlp_proxy: ProxyProcess) -> None:
    stopped = _stream_lines(nlp_proxy, "stopped")
    with psycopg.connect(nlp_proxy.url(), autocommit=True) as conn:
        received = 0
        with pytest.raises(psycopg.errors.QueryCanceled), conn.cursor() as cursor:
            for _ in cursor.stream(STREAM.replace(SHORT, LONG)):
                received += 1
                if received == 1:  # the engine is at most a few pieces ahead: the stream is far from done
                    conn.cancel()
        assert received < 100
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert wait_until(lambda: _stream_lines(nlp_proxy, "stopped") > stopped)


def test_client_disconnect_stops_generation(nlp_proxy: ProxyProcess) -> None:
    stopped = _stream_lines(nlp_proxy, "stopped")
    conn = psycopg.connect(nlp_proxy.url())
    conn.execute(f"DECLARE g CURSOR FOR {STREAM.replace(SHORT, LONG)}")
    conn.execute("FETCH 1 FROM g")
    conn.close()
    assert wait_until(lambda: _stream_lines(nlp_proxy, "stopped") > stopped)


@pytest.mark.parametrize("binary", [False, True])
def test_psycopg_server_side_cursor(nlp_proxy: ProxyProcess, binary: bool) -> None:
    with psycopg.connect(nlp_proxy.url()) as conn:
        expected = _completion(conn)
        with conn.cursor(name="pieces", binary=binary) as cursor:
            cursor.execute(
                "SELECT pgml.transform_stream(%s::jsonb, %s::jsonb, %s)", (TASK, SHORT, PROMPT), binary=binary
            )
            first = cursor.fetchmany(2)
            rest = cursor.fetchall()
        conn.commit()
    assert len(first) == 2
    assert "".join(p[0] for p in _pieces(first + rest)) == expected


async def test_asyncpg_cursor_reads_with_row_limits(nlp_proxy: ProxyProcess) -> None:
    conn = await asyncpg.connect(nlp_proxy.url())
    try:
        sql = "SELECT pgml.transform_stream($1::jsonb, $2::jsonb, $3)"
        whole = await conn.fetch(sql, TASK, SHORT, PROMPT)
        async with conn.transaction():
            cursor = await conn.cursor(sql, TASK, SHORT, PROMPT)
            first = await cursor.fetch(3)
            rest = await cursor.fetch(1000)
        statement = await conn.prepare(sql)
        assert [a.name for a in statement.get_attributes()] == ["transform_stream"]
        assert [str(p.name) for p in statement.get_parameters()] == ["jsonb", "jsonb", "text"]
    finally:
        await conn.close()
    assert len(first) == 3
    assert [r[0] for r in first + rest] == [r[0] for r in whole]
    # asyncpg also streams through its own prefetching iterator
    conn = await asyncpg.connect(nlp_proxy.url())
    try:
        async with conn.transaction():
            seen = [r async for r in conn.cursor(sql, TASK, SHORT, PROMPT, prefetch=2)]
    finally:
        await conn.close()
    assert [r[0] for r in seen] == [r[0] for r in whole]


async def test_asyncpg_fetch_from_a_cursor_declared_in_sql(nlp_proxy: ProxyProcess) -> None:
    conn = await asyncpg.connect(nlp_proxy.url())
    try:
        whole = await conn.fetch(STREAM)
        async with conn.transaction():
            await conn.execute(f"DECLARE c CURSOR FOR {STREAM}")
            first = await conn.fetch("FETCH 3 FROM c")
            await conn.execute("MOVE 1 IN c")
            rest = await conn.fetch("FETCH ALL FROM c")
            await conn.execute("CLOSE c")
    finally:
        await conn.close()
    assert [r[0] for r in first] == [r[0] for r in whole[:3]]
    assert [r[0] for r in rest] == [r[0] for r in whole[4:]]


def test_discard_all_closes_cursors_and_forgets_prepared_streams(nlp_proxy: ProxyProcess) -> None:
    sql = "SELECT pgml.transform_stream(%s::jsonb, %s::jsonb, %s)"
    with psycopg.connect(nlp_proxy.url(), autocommit=True) as conn:
        before = conn.execute(sql, (TASK, SHORT, PROMPT), prepare=True).fetchall()
        conn.execute(f"DECLARE h CURSOR WITH HOLD FOR {STREAM}")
        conn.execute("DISCARD ALL")
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH 1 FROM h")
        assert conn.execute(sql, (TASK, SHORT, PROMPT), prepare=True).fetchall() == before
