"""pgml calls with constant arguments, through a real proxy and real clients (simple protocol).

Each call is evaluated once by the proxy and its value enters the statement, so every position works:
select list, FROM, WHERE, ORDER BY, casts, named arguments, nesting.
"""

from __future__ import annotations

import math

import numpy as np
import psycopg
import pytest
from psycopg import ClientCursor

from tests.support.servers import run_psql

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def cursor(proxy):
    """A psycopg cursor that sends plain Query messages (client-side binding)."""
    with psycopg.connect(proxy.url(), autocommit=True, cursor_factory=ClientCursor) as conn:
        yield conn.cursor()


def psql(proxy, sql: str) -> str:
    done = run_psql(proxy.url(), "-At", "-c", sql)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def psql_error(proxy, sql: str) -> str:
    done = run_psql(proxy.url(), "-At", "-v", "VERBOSITY=verbose", "-c", sql)
    assert done.returncode != 0
    return done.stderr


def test_version_reports_the_postgresml_api_version(proxy):
    assert psql(proxy, "select pgml.version()").startswith("2.10.0 (")


def test_embed_matches_the_model_run_in_process(cursor, reference):
    cursor.execute(f"select pgml.embed('{MODEL}', 'The quick brown fox')")
    (vector,) = cursor.fetchone()
    expected = reference.encode(["The quick brown fox"])[0]
    assert len(vector) == 384
    assert np.allclose(vector, expected, atol=1e-5)
    assert cursor.description[0].name == "embed"


def test_embed_kwargs_reach_the_encoder(cursor):
    cursor.execute(f"""select pgml.embed('{MODEL}', 'unit', '{{"normalize_embeddings": true}}')""")
    (vector,) = cursor.fetchone()
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-4)


def test_cast_to_vector_and_distance_operator(cursor):
    cursor.execute("create extension if not exists vector")
    cursor.execute(
        f"select pgml.embed('{MODEL}', 'cat')::vector(384) <=> pgml.embed('{MODEL}', 'kitten')::vector(384) as near, "
        f"pgml.embed('{MODEL}', 'cat')::vector(384) <=> pgml.embed('{MODEL}', 'tax law')::vector(384) as far"
    )
    near, far = cursor.fetchone()
    assert near < far
    assert [c.name for c in cursor.description] == ["near", "far"]


def test_order_by_with_a_constant_query_embedding(cursor):
    cursor.execute("create temp table docs (id int, emb vector(384))")
    for doc_id, text in enumerate(["a recipe for bread", "stock market news", "how to bake a cake"]):
        cursor.execute(f"insert into docs values ({doc_id}, pgml.embed('{MODEL}', %s)::vector(384))", (text,))
    cursor.execute(
        f"select id from docs order by emb <=> pgml.embed('{MODEL}', 'baking')::vector(384) limit 2"
    )
    assert sorted(r[0] for r in cursor.fetchall()) == [0, 2]


def test_named_arguments_and_defaults(cursor):
    cursor.execute(f"""select pgml.embed(transformer => '{MODEL}', "text" => 'named') is not null as ok""")
    assert cursor.fetchone() == (True,)


def test_strict_null_argument_gives_null_without_loading_anything(cursor):
    cursor.execute(
        "select pgml.embed('no/such-model', NULL) is null, count(*) from pgml.chunk('character', NULL)"
    )
    assert cursor.fetchone() == (True, 0)


def test_embed_array_returns_a_row_per_input_in_order(cursor, reference):
    inputs = ["first", "second", "third"]
    cursor.execute(f"select e from pgml.embed('{MODEL}', ARRAY['first', 'second', 'third']) as e")
    rows = [r[0] for r in cursor.fetchall()]
    assert [c.name for c in cursor.description] == ["e"]
    assert np.allclose(np.array(rows), reference.encode(inputs), atol=1e-5)
    cursor.execute(f"select pgml.embed('{MODEL}', inputs => ARRAY['x', 'y'])")
    assert len(cursor.fetchall()) == 2
    assert cursor.description[0].name == "embed"


def test_chunk_in_from_with_its_columns(cursor):
    cursor.execute(
        "select chunk_index, chunk from pgml.chunk('character', 'alpha beta gamma', "
        """'{"chunk_size": 6, "chunk_overlap": 0, "separator": " "}')"""
    )
    assert cursor.fetchall() == [(1, "alpha"), (2, "beta"), (3, "gamma")]
    assert [c.name for c in cursor.description] == ["chunk_index", "chunk"]


def test_chunk_in_select_list_and_field_access(cursor):
    options = """'{"chunk_size": 3, "chunk_overlap": 0, "separator": " "}'"""
    cursor.execute(f"select pgml.chunk('character', 'a b c d', {options})")
    assert [r[0] for r in cursor.fetchall()] == [("1", "a b"), ("2", "c d")]  # records, as psycopg reads them
    assert cursor.description[0].type_code == 2249
    assert cursor.description[0].name == "chunk"
    cursor.execute(f"select (pgml.chunk('character', 'a b c d', {options})).chunk")
    assert [r[0] for r in cursor.fetchall()] == ["a b", "c d"]
    assert cursor.description[0].name == "chunk"


def test_nested_calls_evaluate_innermost_first(cursor):
    cursor.execute("select chunk from pgml.chunk('character', pgml.version())")
    [(chunk,)] = cursor.fetchall()
    assert chunk.startswith("2.10.0")


def test_arguments_that_are_expressions_are_evaluated_by_the_upstream(cursor):
    cursor.execute("select chunk from pgml.chunk('character', upper('abc') || repeat('!', 2))")
    assert cursor.fetchall() == [("ABC!!",)]


def test_unicode_text_round_trips(cursor):
    cursor.execute("select chunk from pgml.chunk('character', 'héllo wörld 😀 日本語')")
    assert cursor.fetchall() == [("héllo wörld 😀 日本語",)]


@pytest.mark.parametrize(
    ("sql", "sqlstate", "text"),
    [
        ("select pgml.embed('no/such-model', 'x')", "42704", "no/such-model"),
        ("select * from pgml.chunk('nope', 'x')", "22023", "Unknown splitter: nope"),
        ("select pgml.embed('m', 5)", "42883", "Available: pgml.embed(transformer text"),
        ("select * from pgml.chunk('character', 'x', '[1]')", "22023", "must be a JSON object"),
        ("create view pgml_view as select pgml.version()", "0A000", "in a view definition"),
        ("do $$ begin perform pgml.version(); end $$", "0A000", "DO block"),
    ],
    ids=["unknown model", "unknown splitter", "no overload", "kwargs not an object", "view", "do block"],
)
def test_errors_carry_their_sqlstate(proxy, sql, sqlstate, text):
    stderr = psql_error(proxy, sql)
    assert f"ERROR:  {sqlstate}" in stderr
    assert text in stderr


def test_argument_error_reported_by_upstream(proxy):
    stderr = psql_error(proxy, "select pgml.chunk('character', (1/0)::text)")
    assert "ERROR:  22012" in stderr


@pytest.mark.parametrize(
    "failing", ["select * from pgml.chunk('nope', 'x')", "select pgml.chunk('character', (1/0)::text)"]
)
def test_failure_inside_a_transaction_aborts_it_upstream_too(proxy, failing):
    with psycopg.connect(proxy.url(), cursor_factory=ClientCursor) as conn:
        cursor = conn.cursor()
        cursor.execute("select 1")
        with pytest.raises(psycopg.Error):
            cursor.execute(failing)
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            cursor.execute("select 1")
        conn.rollback()
        cursor.execute("select pgml.version() is not null")
        assert cursor.fetchone() == (True,)


def test_failure_outside_a_transaction_leaves_the_session_usable(cursor):
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        cursor.execute("select * from pgml.chunk('nope', 'x')")
    cursor.execute("select 'still here'")
    assert cursor.fetchone() == ("still here",)


def test_statements_before_and_after_in_one_query_keep_their_order(proxy):
    out = psql(proxy, "select 1; select chunk from pgml.chunk('character', 'mid'); select 3")
    assert out.splitlines() == ["1", "mid", "3"]


def test_comments_and_dollar_quotes_around_the_call_survive(cursor):
    cursor.execute(
        "/* pgml.version() in a comment */ select $q$pgml.version()$q$ as quoted, "
        "pgml.version() is not null as called -- trailing pgml.version()"
    )
    assert cursor.fetchone() == ("pgml.version()", True)


def test_explain_and_copy_of_a_pgml_statement(cursor, proxy):
    cursor.execute("explain select pgml.version()")
    assert "Result" in cursor.fetchone()[0]
    out = run_psql(proxy.url(), "-c", "copy (select chunk from pgml.chunk('character', 'copied')) to stdout")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "copied\n"


def test_sql_prepare_with_parameters_and_rows_is_held_and_executed(cursor, reference):
    """Its calls depend on EXECUTE's arguments and on the rows then: the session holds the statement."""
    cursor.execute("create temp table notes (id int, body text)")
    cursor.execute("insert into notes values (1, 'first'), (2, 'second')")
    cursor.execute(f"prepare embed_one(text) as select pgml.embed('{MODEL}', $1) as e")
    cursor.execute(
        f"prepare embed_rows(int) as select id, pgml.embed('{MODEL}', body) from notes where id <= $1"
    )
    cursor.execute("execute embed_one('hello ' || 'there')")
    assert np.allclose(cursor.fetchone()[0], reference.encode(["hello there"])[0], atol=1e-5)
    cursor.execute("update notes set body = 'changed' where id = 1")
    cursor.execute("execute embed_rows(5)")
    rows = dict(cursor.fetchall())
    assert np.allclose(rows[1], reference.encode(["changed"])[0], atol=1e-5)  # the rows as they are now
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        cursor.execute(f"prepare embed_one(text) as select pgml.embed('{MODEL}', $1)")
    with pytest.raises(psycopg.errors.SyntaxError, match="wrong number of parameters"):
        cursor.execute("execute embed_one('a', 'b')")
    cursor.execute("deallocate embed_one")
    assert cursor.statusmessage == "DEALLOCATE"
    with pytest.raises(psycopg.errors.InvalidSqlStatementName):
        cursor.execute("execute embed_one('gone')")
    cursor.execute("discard all")
    with pytest.raises(psycopg.errors.InvalidSqlStatementName):
        cursor.execute("execute embed_rows(1)")


def test_sql_prepare_with_parameters_beside_other_statements_is_refused_clearly(proxy):
    stderr = psql_error(proxy, f"select 1; prepare p as select pgml.embed('{MODEL}', $1)")
    assert "ERROR:  0A000" in stderr
    assert "PREPARE" in stderr


def test_sql_prepare_with_constant_calls_executes(cursor):
    cursor.execute("prepare v as select pgml.version() as v, $1::int + 1 as n")
    cursor.execute("execute v(41)")
    version, n = cursor.fetchone()
    assert version.startswith("2.10.0") and n == 42
    cursor.execute("deallocate v")


def test_models_directory_and_paths_follow_the_configuration(proxy, proxy_factory, tmp_path):
    from pgml_engines.config import EngineConfig
    from pgml_engines.resolve import ModelResolver

    packaged = ModelResolver(EngineConfig()).resolve(MODEL).path
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mini").symlink_to(packaged)
    # A filesystem path is not a model name unless the configuration allows it.
    assert "ERROR:  42704" in psql_error(proxy, f"select pgml.embed('{packaged}', 'x')")
    configured = proxy_factory("--models-dir", str(tmp_path / "models"))
    assert psql(configured, "select array_length(pgml.embed('mini', 'x'), 1)") == "384"


def test_statements_of_pgml_calls_only_are_answered_without_the_upstream(proxy, upstream, reference):
    """The upstream's backend never sees them: its last statement stays the one before."""
    with psycopg.connect(proxy.url(), cursor_factory=ClientCursor) as conn:
        cursor = conn.cursor()
        pid = cursor.execute("select pg_backend_pid()").fetchone()[0]
        answered = [
            (f"select pgml.version() as v, pgml.embed('{MODEL}', 'hi')::real[]", ["v", "embed"], [25, 1021]),
            (
                'select * from pgml.chunk(\'character\', \'a b c\', \'{"chunk_size": 1, "chunk_overlap": 0, "separator": " "}\') '
                "as c(i, piece)",
                ["i", "piece"],
                [20, 25],
            ),
            (f"select e from pgml.embed('{MODEL}', array['x', 'y']) as e", ["e"], [1021]),
            (
                'select pgml.chunk(\'character\', \'a b c\', \'{"chunk_size": 1, "chunk_overlap": 0, "separator": " "}\'), '
                f"pgml.embed('{MODEL}', array['x', 'y']), pgml.version()",
                ["chunk", "embed", "version"],
                [2249, 1021, 25],
            ),
        ]
        results = []
        for sql, names, oids in answered:
            cursor.execute(sql)
            assert [(c.name, c.type_code) for c in cursor.description] == list(zip(names, oids, strict=True))
            results.append(cursor.fetchall())
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS  # the block goes on
        conn.rollback()
    with psycopg.connect(upstream.url()) as direct:
        last = direct.execute("select query from pg_stat_activity where pid = %s", [pid]).fetchone()
    assert last in (None, ("select pg_backend_pid()",), ("ROLLBACK",))
    assert np.allclose(results[0][0][1], reference.encode(["hi"])[0], atol=1e-5)
    assert results[1] == [(1, "a"), (2, "b"), (3, "c")]
    # Set-returning calls in a select list run in lockstep; the shorter one is padded with NULL.
    chunks, vectors, versions = zip(*results[3], strict=True)
    assert chunks == (("1", "a"), ("2", "b"), ("3", "c")) and vectors[2] is None and len(set(versions)) == 1


def test_queries_sent_back_to_back_with_a_held_prepare_keep_their_order(proxy):
    """PREPARE, EXECUTE twice and DEALLOCATE in one write: each waits for the one before, none is lost."""
    from tests.support.raw import RawClient

    client = RawClient(proxy.host, proxy.port)
    client.startup()
    statements = [
        f"prepare pipelined(text) as select pgml.embed('{MODEL}', $1) is not null as ok",
        "execute pipelined('one')",
        "execute pipelined('two')",
        "deallocate pipelined",
        "select 'after'",
    ]
    client.send(
        b"".join(b"Q" + (len(s.encode()) + 5).to_bytes(4, "big") + s.encode() + b"\x00" for s in statements)
    )
    answers = [client.read_until_ready() for _ in statements]
    tags = [[body[:-1].decode() for kind, body in answer if kind == "C"] for answer in answers]
    assert tags == [["PREPARE"], ["SELECT 1"], ["SELECT 1"], ["DEALLOCATE"], ["SELECT 1"]]
    assert [(kind, body) for kind, body in answers[1] if kind == "D"] == [("D", b"\x00\x01\x00\x00\x00\x01t")]
    client.close()
