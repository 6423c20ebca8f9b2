"""pgml.rank end to end through real clients, on the tiny random cross-encoder of ``pgml_engines.testing``.

Rows must be what sentence-transformers' ``CrossEncoder.rank`` gives for the same model (contract §5.4): sorted
by score, ``corpus_id`` the 0-based index into ``documents``, ``text`` NULL unless asked for, at most ``top_k``
rows; columns ``corpus_id`` int8, ``score`` float8, ``text`` text (§6.2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg.errors
import pytest

from tests.support.failures import assert_fails_cleanly
from tests.support.servers import ProxyProcess, run_psql
from tests.support.tables import scratch_table

QUERY = "What is the capital of France?"
DOCUMENTS = [
    "Paris is the capital of France.",
    "The cat sat on the mat.",
    "Berlin is the capital of Germany.",
    "The weather today is good.",
    "Madrid is the capital of Spain.",
]
COLUMNS = [("corpus_id", 20), ("score", 701), ("text", 25)]  # int8, float8, text
RANK = "SELECT * FROM pgml.rank('cross-encoder', %s, %s::text[], %s::jsonb)"


@pytest.fixture(scope="module")
def conn(nlp_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    return nlp_conn


@pytest.fixture(scope="module")
def ranked(tiny_models: Path) -> Callable[..., list[dict[str, Any]]]:
    """``CrossEncoder.rank`` on the model folder the proxy serves."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(tiny_models / "cross-encoder"), device="cpu")

    def rank(query: str, documents: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        return model.rank(query, documents, **kwargs)

    return rank


def rank(
    conn: psycopg.Connection[Any],
    query: str,
    documents: list[str],
    kwargs: dict[str, Any] | None = None,
    *,
    binary: bool = False,
) -> list[tuple[Any, ...]]:
    cursor = conn.cursor(binary=binary)
    cursor.execute(RANK, (query, documents, json.dumps(kwargs or {})))
    assert cursor.description is not None
    assert [(c.name, c.type_code) for c in cursor.description] == COLUMNS
    return cursor.fetchall()


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_rows_are_the_cross_encoders_ranking_sorted_by_score(
    conn: psycopg.Connection[Any], ranked: Callable[..., list[dict[str, Any]]], binary: bool
) -> None:
    rows = rank(conn, QUERY, DOCUMENTS, binary=binary)
    expected = ranked(QUERY, DOCUMENTS)
    assert [corpus_id for corpus_id, _, _ in rows] == [r["corpus_id"] for r in expected]
    assert [score for _, score, _ in rows] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert sorted(corpus_id for corpus_id, _, _ in rows) == list(range(len(DOCUMENTS)))  # 0-based indexes
    scores = [score for _, score, _ in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(type(corpus_id) is int and type(score) is float for corpus_id, score, _ in rows)
    assert [text for _, _, text in rows] == [None] * len(DOCUMENTS)


def test_the_contracts_literal_call(conn: psycopg.Connection[Any], ranked: Callable[..., Any]) -> None:
    cursor = conn.execute("SELECT * FROM pgml.rank('cross-encoder', 'query', ARRAY['a', 'b', 'c'])")
    assert cursor.description is not None
    assert [(c.name, c.type_code) for c in cursor.description] == COLUMNS
    rows = cursor.fetchall()
    assert [(corpus_id, text) for corpus_id, _, text in rows] == [
        (r["corpus_id"], None) for r in ranked("query", ["a", "b", "c"])
    ]


def test_return_documents_fills_the_text_column(conn: psycopg.Connection[Any]) -> None:
    plain = rank(conn, QUERY, DOCUMENTS)
    rows = rank(conn, QUERY, DOCUMENTS, {"return_documents": True})
    assert [text for _, _, text in rows] == [DOCUMENTS[corpus_id] for corpus_id, _, _ in rows]
    assert [(i, s) for i, s, _ in rows] == [(i, s) for i, s, _ in plain]
    assert [text for _, _, text in rank(conn, QUERY, DOCUMENTS, {"return_documents": False})] == [None] * 5


def test_top_k_keeps_the_best_rows(conn: psycopg.Connection[Any], ranked: Callable[..., Any]) -> None:
    everything = rank(conn, QUERY, DOCUMENTS)
    top = rank(conn, QUERY, DOCUMENTS, {"top_k": 2, "return_documents": True})
    assert [(i, s) for i, s, _ in top] == [(i, s) for i, s, _ in everything[:2]]
    assert [i for i, _, _ in top] == [r["corpus_id"] for r in ranked(QUERY, DOCUMENTS, top_k=2)]
    assert len(rank(conn, QUERY, DOCUMENTS, {"top_k": 50})) == len(DOCUMENTS)


def test_named_arguments(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "SELECT corpus_id, text FROM pgml.rank(transformer => 'cross-encoder', query => %s, "
        'documents => %s::text[], kwargs => \'{"top_k": 1, "return_documents": true}\')',
        (QUERY, DOCUMENTS),
    ).fetchall()
    [(best, _, _)] = rank(conn, QUERY, DOCUMENTS, {"top_k": 1})
    assert rows == [(best, DOCUMENTS[best])]


def test_in_the_select_list_a_record_and_its_fields(conn: psycopg.Connection[Any]) -> None:
    expected = rank(conn, "q", ["a", "b"])
    cursor = conn.execute("SELECT pgml.rank('cross-encoder', 'q', ARRAY['a', 'b'])")
    assert cursor.description is not None
    assert [(c.name, c.type_code) for c in cursor.description] == [("rank", 2249)]  # record
    records = cursor.fetchall()
    assert [(int(i), float(s), t) for ((i, s, t),) in records] == expected
    cursor = conn.execute("SELECT (pgml.rank('cross-encoder', 'q', ARRAY['a', 'b'])).score")
    assert cursor.description is not None
    assert [(c.name, c.type_code) for c in cursor.description] == [("score", 701)]
    assert cursor.fetchall() == [(s,) for _, s, _ in expected]


def test_filters_and_order_by_over_the_rows(conn: psycopg.Connection[Any]) -> None:
    everything = rank(conn, QUERY, DOCUMENTS)
    rows = conn.execute(
        "SELECT r.corpus_id, r.score FROM pgml.rank('cross-encoder', %s, %s::text[]) r "
        "WHERE r.corpus_id > 0 ORDER BY r.corpus_id",
        (QUERY, DOCUMENTS),
    ).fetchall()
    assert rows == sorted((i, s) for i, s, _ in everything if i > 0)


def test_lateral_over_table_rows(
    nlp_proxy: ProxyProcess, conn: psycopg.Connection[Any], ranked: Callable[..., Any]
) -> None:
    """§8: ``SELECT q.id, r.corpus_id, r.score FROM questions q CROSS JOIN LATERAL pgml.rank(…, q.body,
    q.candidates) r``."""
    questions = [
        (1, QUERY, DOCUMENTS[:3]),
        (2, "Where do cats sit?", ["On the mat.", "In the park.", "On the roof.", "Under the table."]),
        (3, "Nothing to rank", []),
    ]
    with scratch_table(
        nlp_proxy.url(), "id int, body text, candidates text[]", questions, "questions"
    ) as name:
        for binary in (False, True):
            cursor = conn.cursor(binary=binary)
            cursor.execute(
                f"SELECT q.id, r.corpus_id, r.score FROM {name} q "
                "CROSS JOIN LATERAL pgml.rank('cross-encoder', q.body, q.candidates) r "
                "ORDER BY q.id, r.score DESC"
            )
            assert cursor.description is not None
            assert [(c.name, c.type_code) for c in cursor.description] == [
                ("id", 23),
                ("corpus_id", 20),
                ("score", 701),
            ]
            rows = cursor.fetchall()
            for question_id, body, candidates in questions:
                got = [(i, s) for q, i, s in rows if q == question_id]
                expected = ranked(body, candidates) if candidates else []
                assert [i for i, _ in got] == [r["corpus_id"] for r in expected]
                assert [s for _, s in got] == pytest.approx([r["score"] for r in expected], abs=1e-5)
        best = conn.execute(
            f"SELECT q.id, r.text FROM {name} q, "
            "pgml.rank('cross-encoder', q.body, q.candidates, '{\"top_k\": 1, \"return_documents\": true}') r "
            "ORDER BY q.id"
        ).fetchall()
    assert best == [
        (question_id, candidates[ranked(body, candidates)[0]["corpus_id"]])
        for question_id, body, candidates in questions
        if candidates
    ]


async def test_asyncpg_parameters(nlp_proxy: ProxyProcess, conn: psycopg.Connection[Any]) -> None:
    expected = rank(conn, QUERY, DOCUMENTS, {"return_documents": True})
    client = await asyncpg.connect(nlp_proxy.url())
    try:
        statement = await client.prepare("SELECT * FROM pgml.rank($1, $2, $3, $4::jsonb)")
        assert [(a.name, a.type.name) for a in statement.get_attributes()] == [
            ("corpus_id", "int8"),
            ("score", "float8"),
            ("text", "text"),
        ]
        assert [p.name for p in statement.get_parameters()] == ["text", "text", "text[]", "jsonb"]
        rows = await statement.fetch("cross-encoder", QUERY, DOCUMENTS, '{"return_documents": true}')
        assert [tuple(row) for row in rows] == expected
        assert await client.fetch("SELECT * FROM pgml.rank($1, $2, $3)", "cross-encoder", QUERY, []) == []
        with pytest.raises(asyncpg.exceptions.UndefinedObjectError, match="nobody/no-such-model"):
            await client.fetch(
                "SELECT * FROM pgml.rank($1, $2, $3)", "nobody/no-such-model", QUERY, DOCUMENTS
            )
        assert await client.fetchval("SELECT 1") == 1
    finally:
        await client.close()


def test_psql(nlp_proxy: ProxyProcess, conn: psycopg.Connection[Any]) -> None:
    expected = rank(conn, "q", ["a", "b", "c"], {"return_documents": True})
    done = run_psql(
        nlp_proxy.url(),
        "-A",
        "-t",
        "-c",
        "SELECT corpus_id, text FROM pgml.rank('cross-encoder', 'q', ARRAY['a', 'b', 'c'], "
        "'{\"return_documents\": true}')",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{i}|{t}" for i, _, t in expected]


# --- bad input ---------------------------------------------------------------------------------------------------


def test_empty_documents_give_no_rows(conn: psycopg.Connection[Any]) -> None:
    assert rank(conn, QUERY, []) == []
    assert conn.execute("SELECT * FROM pgml.rank('cross-encoder', 'q', ARRAY[]::text[])").fetchall() == []


def test_a_null_argument_gives_no_rows(conn: psycopg.Connection[Any]) -> None:
    for sql in (
        "SELECT * FROM pgml.rank('cross-encoder', NULL, ARRAY['a'])",
        "SELECT * FROM pgml.rank(NULL, 'q', ARRAY['a'])",
        "SELECT * FROM pgml.rank('cross-encoder', 'q', NULL)",
        "SELECT * FROM pgml.rank('cross-encoder', 'q', ARRAY['a'], NULL)",
    ):
        assert conn.execute(sql).fetchall() == [], sql


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        (
            "SELECT * FROM pgml.rank('cross-encoder', 'q', ARRAY['a', NULL])",
            psycopg.errors.InvalidParameterValue,
            "NULL",
        ),
        (
            "SELECT * FROM pgml.rank('nobody/no-such-model', 'q', ARRAY['a'])",
            psycopg.errors.UndefinedObject,
            "nobody/no-such-model",
        ),
        (
            "SELECT * FROM pgml.rank('cross-encoder', 'q', ARRAY['a'], '{\"no_such_option\": 1}')",
            psycopg.errors.InvalidParameterValue,
            "no_such_option",
        ),
        (
            "SELECT * FROM pgml.rank('cross-encoder', 'q', ARRAY['a'], '{\"top_k\": 0}')",
            psycopg.errors.InvalidParameterValue,
            "top_k",
        ),
        (
            "SELECT * FROM pgml.rank('cross-encoder', 'q', ARRAY['a'], '[1]')",
            psycopg.errors.InvalidParameterValue,
            "kwargs must be a JSON object",
        ),
        (
            "SELECT * FROM pgml.rank('cross-encoder', 'q', ARRAY['a'], '{\"trust_remote_code\": true}')",
            psycopg.errors.InsufficientPrivilege,
            "not trusted to run remote code",
        ),
        (
            "SELECT * FROM pgml.rank('text-classification', 'q', ARRAY['a'])",
            psycopg.errors.InvalidParameterValue,
            "num_labels",
        ),
    ],
    ids=[
        "null-document",
        "unknown-model",
        "unknown-kwarg",
        "bad-top-k",
        "kwargs-not-an-object",
        "trust-remote-code",
        "not-a-cross-encoder",
    ],
)
def test_bad_calls_are_clear_errors_and_the_session_goes_on(
    nlp_proxy: ProxyProcess, conn: psycopg.Connection[Any], sql: str, error: type[Exception], message: str
) -> None:
    with assert_fails_cleanly(nlp_proxy.url(), conn, sql, error, message) as block:
        assert len(rank(block, "q", ["a", "b"])) == 2


def test_a_null_document_error_names_the_documents_argument(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="documents"):
        conn.execute("SELECT * FROM pgml.rank('cross-encoder', 'q', ARRAY['a', NULL])")


def test_a_huge_document_is_cut_to_the_models_length(
    conn: psycopg.Connection[Any], ranked: Callable[..., Any]
) -> None:
    documents = ["a", " ".join(["good"] * 20_000)]
    rows = rank(conn, "q", documents)
    assert [i for i, _, _ in rows] == [r["corpus_id"] for r in ranked("q", documents)]
