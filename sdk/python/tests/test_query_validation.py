"""Query validation for search, vector_search, rag and the legacy QueryBuilder (contract §2.9, §3.1–3.3, F10,
F15): pure checks, no database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pgml.errors import ValidationError
from pgml.layout import Names
from pgml.query_builder import QueryBuilder
from pgml.rag import GENERATION_DEFAULTS, SqlVariable, VectorVariable, parse_rag, substitute
from pgml.schema import parse_schema
from pgml.search import (
    _search_statement,
    _vector_statement,
    candidate_count,
    parse_search,
    parse_vector_search,
)

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
FIELDS = parse_schema(
    {
        "title": {"semantic_search": {"model": MODEL}, "full_text_search": {"configuration": "english"}},
        "body": {"splitter": {"model": "recursive_character"}, "semantic_search": {"model": MODEL}},
        "tags": {"full_text_search": {"configuration": "simple"}},
        "notes": {},
    }
)


def rejects(match: str, parse: Any, *args: Any) -> None:
    with pytest.raises(ValidationError, match=match):
        parse(*args)


# --- search -------------------------------------------------------------------------------------------------


def test_search_defaults() -> None:
    plan = parse_search(FIELDS, {"query": {"semantic_search": {"title": {"query": "q"}}}})
    (part,) = plan.semantic
    assert (part.field, part.text, part.parameters, part.boost, part.model.model) == (
        "title",
        "q",
        {},
        1.0,
        MODEL,
    )
    assert plan.full_text == () and plan.filter is None and plan.limit == 10


def test_search_reads_every_part() -> None:
    plan = parse_search(
        FIELDS,
        {
            "query": {
                "semantic_search": {"body": {"query": "a", "parameters": {"prompt": "query: "}, "boost": 2}},
                "full_text_search": {"tags": {"query": "b", "boost": 0.5}},
                "filter": {"year": {"$gte": 2020}},
            },
            "limit": 3.0,  # F15: an integral float is an integer
        },
    )
    assert plan.semantic[0].parameters == {"prompt": "query: "} and plan.semantic[0].boost == 2.0
    (text,) = plan.full_text
    assert (text.field, text.match.configuration, text.match.text, text.boost) == ("tags", "simple", "b", 0.5)
    assert plan.filter is not None and plan.limit == 3


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ({"query": {"semantic_search": {"title": {"query": "q"}}}, "lmit": 3}, r"search\.lmit"),
        ({"query": {"semantic_search": {"title": {"query": "q"}}, "rerank": {}}}, r"search\.query\.rerank"),
        (
            {"query": {"semantic_search": {"title": {"query": "q", "weight": 2}}}},
            r"semantic_search\.title\.weight",
        ),
        ({"query": {"full_text_search": {"title": {"query": "q", "parameters": {}}}}}, r"title\.parameters"),
        ({"query": {"filter": {"id": {"$eq": 1}}}}, "get_documents"),
        ({"query": {}}, "get_documents"),
        ({"query": {"semantic_search": {"missing": {"query": "q"}}}}, "no field 'missing'"),
        ({"query": {"semantic_search": {"tags": {"query": "q"}}}}, "'tags' has no semantic_search"),
        ({"query": {"full_text_search": {"body": {"query": "q"}}}}, "'body' has no full_text_search"),
        ({"query": {"semantic_search": {"title": {}}}}, r"title\.query is required"),
        ({"query": {"semantic_search": {"title": {"query": 5}}}}, r"title\.query must be a string"),
        ({"query": {"semantic_search": {"title": {"query": "q", "boost": True}}}}, r"boost must be a number"),
        ({"query": {"semantic_search": {"title": {"query": "q", "parameters": []}}}}, r"parameters must be"),
        ({"query": {"semantic_search": {"title": {"query": "q"}}}, "limit": 2.5}, r"search\.limit"),
        ({"query": {"semantic_search": {"title": {"query": "q"}}}, "limit": "3"}, r"search\.limit"),
        ({"query": {"semantic_search": {"title": {"query": "q"}}}, "limit": 0}, r"search\.limit"),
        (
            {"query": {"semantic_search": {"title": {"query": "q"}}, "filter": {"id": {"$regex": "x"}}}},
            r"\$regex",
        ),
        ("not a query", "search must be an object"),
    ],
)
def test_search_rejects(query: object, match: str) -> None:
    rejects(match, parse_search, FIELDS, query)


def test_candidate_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """F2: C_cand = max(100, 10 × limit), or the environment's value (never below the limit)."""
    monkeypatch.delenv("PGML_SEARCH_CANDIDATES", raising=False)
    assert [candidate_count(n) for n in (1, 10, 11, 50)] == [100, 100, 110, 500]
    monkeypatch.setenv("PGML_SEARCH_CANDIDATES", "7")
    assert [candidate_count(n) for n in (1, 10)] == [7, 10]
    monkeypatch.setenv("PGML_SEARCH_CANDIDATES", "many")
    rejects("PGML_SEARCH_CANDIDATES", candidate_count, 1)


def test_search_statement_binds_every_value() -> None:
    """F10: no query text, filter path or field name reaches the SQL text except as a quoted identifier."""
    plan = parse_search(
        FIELDS,
        {
            "query": {
                "semantic_search": {"title": {"query": "x'); DROP TABLE t; --", "boost": 1.5}},
                "full_text_search": {"title": {"query": "50% off"}},
                "filter": {"it's": {"$eq": "50%"}},
            }
        },
    )
    statement, params = _search_statement(Names("my docs", "p 1"), plan, ["[1,0]"], None)
    text = statement.as_string(None)
    assert "DROP" not in text and "50%" not in text and "off" not in text
    assert '"my docs_p 1"."title_embeddings"' in text and '"my docs"."documents"' in text
    assert "50% off" in params.values()  # the semantic text became the vector "[1,0]" before this statement
    assert {"title_embedding_score", "title_tsvectors_score", "[1,0]", 1.5} <= set(params.values())


# --- vector_search ------------------------------------------------------------------------------------------


def test_vector_search_defaults_and_rerank() -> None:
    plan = parse_vector_search(FIELDS, {"query": {"fields": {"body": {"query": "q"}}}})
    assert plan.limit == 10 and plan.rerank is None and plan.pool == 10 and plan.filter is None
    plan = parse_vector_search(
        FIELDS,
        {
            "query": {"fields": {"title": {"query": "q", "full_text_filter": "word", "boost": 1.2}}},
            "document": {"keys": ["id", "meta,rank"]},
            "rerank": {"model": "cross-encoder", "query": "r", "num_documents_to_rerank": 50.0},
            "limit": 5,
        },
    )
    (part,) = plan.fields
    assert part.full_text_filter is not None and part.full_text_filter.configuration == "english"
    assert part.full_text_filter.text == "word" and part.boost == 1.2
    assert plan.rerank is not None and (plan.rerank.model, plan.rerank.pool, plan.rerank.parameters) == (
        "cross-encoder",
        50,
        {},
    )
    assert plan.pool == 50 and plan.limit == 5
    assert "jsonb_build_object" in plan.document.as_string(None)


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ({"query": {"fields": {"body": {"query": "q"}}}, "limt": 1}, r"vector_search\.limt"),
        ({"query": {"fields": {"body": {"query": "q"}}, "limit": 3}}, r"vector_search\.query\.limit"),
        ({"query": {"fields": {"body": {"query": "q", "filter": {}}}}}, r"fields\.body\.filter"),
        ({"query": {"fields": {"body": {"query": "q"}}}, "document": {"key": ["id"]}}, r"document\.key"),
        ({"query": {"fields": {"body": {"query": "q"}}}, "document": {"keys": "id"}}, r"document\.keys"),
        (
            {
                "query": {"fields": {"body": {"query": "q"}}},
                "rerank": {"model": "m", "query": "q", "top_k": 3},
            },
            r"rerank\.top_k",
        ),
        (
            {"query": {"fields": {"body": {"query": "q"}}}, "rerank": {"query": "q"}},
            r"rerank\.model is required",
        ),
        (
            {"query": {"fields": {"body": {"query": "q"}}}, "rerank": {"model": "m"}},
            r"rerank\.query is required",
        ),
        (
            {
                "query": {"fields": {"body": {"query": "q"}}},
                "rerank": {"model": "m", "query": "q", "num_documents_to_rerank": 1.5},
            },
            "num_documents_to_rerank",
        ),
        ({"query": {"fields": {}}}, "at least one field"),
        ({"query": {}}, "at least one field"),
        ({"query": {"fields": {"tags": {"query": "q"}}}}, "'tags' has no semantic_search"),
        ({"query": {"fields": {"notes": {"query": "q"}}}}, "'notes' has no semantic_search"),
        # F15: a validation error rather than an SQL error about a missing tsvectors table
        (
            {"query": {"fields": {"body": {"query": "q", "full_text_filter": "x"}}}},
            "'body' has no full_text_search",
        ),
        ({"query": {"fields": {"title": {"query": "q", "full_text_filter": 1}}}}, "full_text_filter must be"),
        ({"query": {"fields": {"body": {"query": "q"}}, "filter": {"$eq": 1}}}, r"query\.filter"),
    ],
)
def test_vector_search_rejects(query: object, match: str) -> None:
    rejects(match, parse_vector_search, FIELDS, query)


def test_vector_statement_binds_every_value() -> None:
    plan = parse_vector_search(
        FIELDS,
        {
            "query": {
                "fields": {"title": {"query": "q", "full_text_filter": "100% sure"}, "body": {"query": "q"}},
                "filter": {"tag": {"$in": ["a%b"]}},
            },
            "document": {"keys": ["id"]},
        },
    )
    statement, params = _vector_statement(Names("c", "p"), plan, ["[1]", "[2]"])
    text = statement.as_string(None)
    assert "100%" not in text and "a%b" not in text
    assert text.count("UNION ALL") == 1 and '"c_p"."title_tsvectors"' in text
    assert "ORDER BY score DESC, row_id, chunk_index" in text
    assert {"[1]", "[2]", "english", "100% sure", 10} <= set(params.values())


# --- rag ----------------------------------------------------------------------------------------------------

VECTOR_VARIABLE = {
    "vector_search": {"query": {"fields": {"body": {"query": "q"}}}, "limit": 2},
    "aggregate": {"join": "\n"},
}


def test_rag_completion() -> None:
    plan = parse_rag(
        FIELDS,
        {
            "CONTEXT": VECTOR_VARIABLE,
            "TODAY": {"sql": "SELECT 1"},
            "completion": {"model": "m", "prompt": "{CONTEXT} {TODAY}", "max_tokens": 10.0, "temperature": 0},
        },
    )
    assert plan.task == {"task": "text-generation", "model": "m"}
    assert plan.args == {"temperature": 0.0, "max_tokens": 10, "top_p": 1.0, "presence_penalty": 0.0}
    assert plan.source == "{CONTEXT} {TODAY}"
    context, today = plan.variables["CONTEXT"], plan.variables["TODAY"]
    assert isinstance(context, VectorVariable) and context.join == "\n" and context.plan.limit == 2
    assert isinstance(today, SqlVariable) and today.sql == "SELECT 1"


def test_rag_chat_defaults_and_message_keys() -> None:
    plan = parse_rag(
        FIELDS,
        {"chat": {"model": "m", "messages": [{"role": "user", "content": "hi", "name": "dropped"}]}},
    )
    assert plan.task == {"task": "conversational", "model": "m"}
    assert (
        plan.args
        == GENERATION_DEFAULTS
        == {
            "temperature": 1.0,
            "max_tokens": 1_000_000,
            "top_p": 1.0,
            "presence_penalty": 0.0,
        }
    )
    assert plan.source == [{"role": "user", "content": "hi"}] and plan.variables == {}


COMPLETION = {"model": "m", "prompt": "p"}


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ({}, "provide either completion or chat"),
        ({"CONTEXT": VECTOR_VARIABLE}, "provide either completion or chat"),
        ({"completion": COMPLETION, "chat": {"model": "m", "messages": []}}, "cannot provide both"),
        ({"context": VECTOR_VARIABLE, "completion": COMPLETION}, "upper-case"),
        ({"Context": VECTOR_VARIABLE, "completion": COMPLETION}, "upper-case"),
        ({"completion": {**COMPLETION, "stop": ["\n"]}}, r"rag\.completion\.stop"),
        ({"completion": {"prompt": "p"}}, r"completion\.model is required"),
        ({"completion": {"model": "m"}}, r"completion\.prompt is required"),
        ({"completion": {**COMPLETION, "max_tokens": 2.5}}, r"max_tokens"),
        ({"completion": {**COMPLETION, "temperature": "hot"}}, r"temperature must be a number"),
        ({"chat": {"model": "m", "prompt": "p", "messages": []}}, r"rag\.chat\.prompt"),
        ({"chat": {"model": "m", "messages": []}}, r"messages must be a non-empty list"),
        ({"chat": {"model": "m", "messages": [{"role": "user"}]}}, r"messages\[0\]\.content is required"),
        ({"chat": {"model": "m", "messages": [{"role": 1, "content": "c"}]}}, r"messages\[0\]\.role must be"),
        (
            {"CONTEXT": {"vector_search": VECTOR_VARIABLE["vector_search"]}, "completion": COMPLETION},
            "aggregate",
        ),
        ({"CONTEXT": {**VECTOR_VARIABLE, "aggregate": {}}, "completion": COMPLETION}, r"aggregate\.join"),
        (
            {
                "CONTEXT": {**VECTOR_VARIABLE, "aggregate": {"join": ",", "sep": ";"}},
                "completion": COMPLETION,
            },
            r"aggregate\.sep",
        ),
        ({"CONTEXT": {**VECTOR_VARIABLE, "limit": 3}, "completion": COMPLETION}, r"rag\.CONTEXT\.limit"),
        ({"CONTEXT": {"sql": "SELECT 1", "join": ","}, "completion": COMPLETION}, r"rag\.CONTEXT\.join"),
        ({"CONTEXT": {"aggregate": {"join": ","}}, "completion": COMPLETION}, "vector_search .* or sql"),
        (
            {
                "CONTEXT": {
                    **VECTOR_VARIABLE,
                    "vector_search": {"query": {"fields": {"body": {"query": "q"}}}, "x": 1},
                },
                "completion": COMPLETION,
            },
            r"rag\.CONTEXT\.vector_search\.x",
        ),
    ],
)
def test_rag_rejects(query: object, match: str) -> None:
    rejects(match, parse_rag, FIELDS, query)


def test_substitution_is_one_pass() -> None:
    """F10: every occurrence is replaced, and text brought in by a value is never expanded again."""
    values = {"A": "{B} and {A}", "B": "b", "A_2": "two"}
    assert (
        substitute("{A}|{B}|{A}|{A_2}|{C}|{a}|{ A}", values) == "{B} and {A}|b|{B} and {A}|two|{C}|{a}|{ A}"
    )
    assert substitute("{A}", {}) == "{A}"
    assert substitute("{A.B}", {"A.B": "x"}) == "x"


# --- QueryBuilder -------------------------------------------------------------------------------------------


class FakeCollection:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], Any]] = []

    async def vector_search(self, query: dict[str, Any], pipeline: Any) -> list[dict[str, Any]]:
        self.calls.append((query, pipeline))
        return [{"document": {"id": 1}, "chunk": "c", "score": 0.5, "rerank_score": None}]


async def test_query_builder_builds_a_vector_search() -> None:
    collection = FakeCollection()
    builder = QueryBuilder(collection)
    with pytest.raises(ValidationError, match="vector_recall"):
        await builder.fetch_all()
    rows = (
        await builder.vector_recall("what", "p", {"prompt": "query: "})
        .filter({"metadata": {"id": {"$gt": 3}}, "full_text": {"configuration": "english", "text": "test"}})
        .limit(3)
        .fetch_all()
    )
    assert rows == [(0.5, "c", {"id": 1})]
    expected = {
        "query": {
            "fields": {
                "text": {"query": "what", "parameters": {"prompt": "query: "}, "full_text_filter": "test"}
            },
            "filter": {"id": {"$gt": 3}},
        },
        "limit": 3,
    }
    assert collection.calls == [(expected, "p")]
    assert json.loads(builder.to_full_string()) == expected


def test_query_builder_defaults_and_rejects() -> None:
    builder = QueryBuilder(FakeCollection())
    with pytest.raises(ValidationError, match="vector_recall"):
        builder.to_full_string()
    assert json.loads(builder.vector_recall("q", "p").to_full_string()) == {
        "query": {"fields": {"text": {"query": "q", "parameters": {}}}},
        "limit": 10,
    }
    rejects(r"filter\.meta", builder.filter, {"meta": {}})
    rejects(r"filter\.full_text\.lang", builder.filter, {"full_text": {"text": "t", "lang": "en"}})
    rejects(
        r"filter\.full_text\.text is required", builder.filter, {"full_text": {"configuration": "english"}}
    )
    rejects("limit", builder.limit, "ten")
