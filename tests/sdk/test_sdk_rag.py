"""``rag`` and ``rag_stream`` through the proxy (contract §3.3, F8, F10), with the tiny "text-generation"
model.

The prompt the SDK sends is read from its DEBUG log of each statement's parameters, and greedy generations
(temperature 0) are compared with direct ``pgml.transform`` calls on the prompt we expect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pgml
import psycopg
import pytest
from pgml.layout import Names
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.sdk.conftest import EMBEDDER

GENERATOR = "text-generation"
PIPELINE = "p"
SCHEMA = {
    "body": {
        "splitter": {"model": "recursive_character", "parameters": {"chunk_size": 80, "chunk_overlap": 0}},
        "semantic_search": {"model": EMBEDDER},
    }
}
DOCUMENTS = [
    {"id": 1, "body": "Nightly base backups with WAL archiving allow point in time recovery."},
    {"id": 2, "body": "Logical dumps are portable between major versions but slow to restore."},
    {"id": 3, "body": "Template text: {SQLVAR} and {CONTEXT} must reach the model as written."},
    {"id": 4, "body": "Tomatoes need sun, water and a stake to climb."},
]


@dataclass
class Corpus:
    collection: pgml.Collection
    pipeline: pgml.Pipeline
    names: Names
    url: str

    def one(self, query: str | sql.Composable, params: Any = None) -> Any:
        with psycopg.connect(self.url, autocommit=True) as connection:
            return connection.execute(query, params).fetchone()[0]


@pytest.fixture
async def corpus(sdk_url: str, collection_name: str) -> Corpus:
    collection = pgml.Collection(collection_name, sdk_url)
    pipeline = pgml.Pipeline(PIPELINE, SCHEMA)
    await collection.add_pipeline(pipeline)
    await collection.upsert_documents(DOCUMENTS)
    return Corpus(collection, pipeline, Names(collection_name, PIPELINE), sdk_url)


@pytest.fixture
def sent(caplog: pytest.LogCaptureFixture) -> Any:
    """The generation input of the last pgml.transform / transform_stream statement the SDK logged."""
    caplog.set_level(logging.DEBUG, logger="pgml")

    def last(function: str) -> Any:
        inputs = [
            record.args[1][2]
            for record in caplog.records
            if record.name == "pgml" and isinstance(record.args, tuple) and function in str(record.args[0])
        ]
        assert inputs, f"no {function} statement was logged"
        value = inputs[-1]
        return [getattr(item, "obj", item) for item in value] if isinstance(value, list) else value

    return last


def backup_search(limit: int = 2) -> dict[str, Any]:
    return {"query": {"fields": {"body": {"query": "how do I back up my database"}}}, "limit": limit}


def sql_variable(corpus: Corpus) -> str:
    """Raw SQL whose value the test can compute itself: the user ids, in row order."""
    return (
        sql.SQL("SELECT string_agg(document->>'id', ',' ORDER BY id) FROM {}")
        .format(corpus.names.documents)
        .as_string(None)
    )


async def test_rag_completion(corpus: Corpus, sent: Any) -> None:
    """Variables are substituted everywhere they occur; sources are the vector_search rows and the SQL value;
    the generation is the one pgml.transform gives for the substituted prompt."""
    query = {
        "CONTEXT": {
            "vector_search": {**backup_search(), "document": {"keys": ["id"]}},
            "aggregate": {"join": "\n---\n"},
        },
        "SQLVAR": {"sql": sql_variable(corpus)},
        "completion": {
            "model": GENERATOR,
            "prompt": "Context: {CONTEXT}\nIds: {SQLVAR} {SQLVAR}\nAnswer:",
            "max_tokens": 5.0,
            "temperature": 0,
        },
    }
    result = await corpus.collection.rag(query, corpus.pipeline)
    context = await corpus.collection.vector_search(
        {**backup_search(), "document": {"keys": ["id"]}}, corpus.pipeline
    )
    assert result["sources"] == {"CONTEXT": context, "SQLVAR": "1,2,3,4"}
    assert corpus.one(sql_variable(corpus)) == "1,2,3,4"
    assert [row["document"] for row in context] == [{"id": 1}, {"id": 2}]
    prompt = "Context: " + "\n---\n".join(row["chunk"] for row in context) + "\nIds: 1,2,3,4 1,2,3,4\nAnswer:"
    assert sent("pgml.transform(") == [prompt]
    assert result["rag"] and result["rag"][0]
    args = {"temperature": 0.0, "max_tokens": 5, "top_p": 1.0, "presence_penalty": 0.0}
    direct = corpus.one(
        "SELECT pgml.transform(task => %s::jsonb, args => %s::jsonb, inputs => %s::text[])",
        (Jsonb({"task": "text-generation", "model": GENERATOR}), Jsonb(args), [prompt]),
    )
    assert result["rag"] == direct


async def test_substitution_is_single_pass(corpus: Corpus, sent: Any) -> None:
    """F10: a retrieved chunk that contains "{SQLVAR}" and "{CONTEXT}" reaches the model as written."""
    query = {
        "CONTEXT": {
            "vector_search": {
                "query": {"fields": {"body": {"query": "template text for the model"}}},
                "limit": 1,
            },
            "aggregate": {"join": ""},
        },
        "SQLVAR": {"sql": "SELECT 'value'"},
        "completion": {"model": GENERATOR, "prompt": "{CONTEXT}|{SQLVAR}|{OTHER}", "max_tokens": 2},
    }
    result = await corpus.collection.rag(query, corpus.pipeline)
    chunk = DOCUMENTS[2]["body"]
    assert [row["chunk"] for row in result["sources"]["CONTEXT"]] == [chunk]
    assert sent("pgml.transform(") == [f"{chunk}|value|{{OTHER}}"]


async def test_rag_chat(corpus: Corpus, sent: Any) -> None:
    """Chat: each message's content is substituted, extra message keys are dropped, and the messages go as
    one conversation (jsonb[]) to the conversational task."""
    query = {
        "CONTEXT": {"vector_search": backup_search(), "aggregate": {"join": "\n"}},
        "COUNT": {"sql": "SELECT 4"},
        "chat": {
            "model": GENERATOR,
            "messages": [
                {"role": "system", "content": "Answer from {COUNT} documents."},
                {"role": "user", "content": "{CONTEXT}\nHow should I back up?", "name": "dropped"},
            ],
            "max_tokens": 4,
            "temperature": 0,
        },
    }
    result = await corpus.collection.rag(query, corpus.pipeline)
    context = result["sources"]["CONTEXT"]
    assert context == await corpus.collection.vector_search(backup_search(), corpus.pipeline)
    assert result["sources"]["COUNT"] == 4
    messages = [
        {"role": "system", "content": "Answer from 4 documents."},
        {"role": "user", "content": "\n".join(row["chunk"] for row in context) + "\nHow should I back up?"},
    ]
    assert sent("pgml.transform(") == messages
    args = {"temperature": 0.0, "max_tokens": 4, "top_p": 1.0, "presence_penalty": 0.0}
    direct = corpus.one(
        "SELECT pgml.transform(task => %s::jsonb, args => %s::jsonb, inputs => %s::jsonb[])",
        (Jsonb({"task": "conversational", "model": GENERATOR}), Jsonb(args), [Jsonb(m) for m in messages]),
    )
    assert result["rag"] and result["rag"] == direct


async def test_rag_with_rerank(corpus: Corpus, sent: Any) -> None:
    """Chunks are joined in result order, after the rerank."""
    search = {
        **backup_search(limit=2),
        "rerank": {"model": "cross-encoder", "query": "backups", "num_documents_to_rerank": 4},
    }
    query = {
        "CONTEXT": {"vector_search": search, "aggregate": {"join": " || "}},
        "completion": {"model": GENERATOR, "prompt": "{CONTEXT}", "max_tokens": 2},
    }
    result = await corpus.collection.rag(query, corpus.pipeline)
    context = result["sources"]["CONTEXT"]
    assert len(context) == 2 and all(row["rerank_score"] is not None for row in context)
    assert context == await corpus.collection.vector_search(search, corpus.pipeline)
    assert sent("pgml.transform(") == [" || ".join(row["chunk"] for row in context)]


@pytest.mark.parametrize("kind", ["completion", "chat"])
async def test_rag_stream(corpus: Corpus, sent: Any, kind: str) -> None:
    """Each item is one transform_stream row (non-empty JSON); sources() works before and after (F8); a
    stream is consumed once."""
    generation: dict[str, Any] = {"model": GENERATOR, "max_tokens": 4}
    if kind == "completion":
        generation["prompt"] = "{CONTEXT}\nBackups:"
    else:
        generation["messages"] = [{"role": "user", "content": "{CONTEXT}\nBackups?"}]
    query = {"CONTEXT": {"vector_search": backup_search(), "aggregate": {"join": "\n"}}, kind: generation}
    stream = await corpus.collection.rag_stream(query, corpus.pipeline)
    sources = stream.sources()
    assert sources == {"CONTEXT": await corpus.collection.vector_search(backup_search(), corpus.pipeline)}
    items = [item async for item in stream.stream()]
    assert items and all(item for item in items)
    assert all(isinstance(item, list) and all(isinstance(piece, str) for piece in item) for item in items)
    assert stream.sources() == sources
    text = "\n".join(row["chunk"] for row in sources["CONTEXT"])
    expected = (
        f"{text}\nBackups:" if kind == "completion" else [{"role": "user", "content": f"{text}\nBackups?"}]
    )
    assert sent("pgml.transform_stream(") == expected
    with pytest.raises(pgml.PgmlError, match="once"):
        stream.stream()


async def test_rag_validation_through_the_collection(corpus: Corpus) -> None:
    completion = {"model": GENERATOR, "prompt": "p"}
    context = {"vector_search": backup_search(), "aggregate": {"join": "\n"}}
    cases = [
        ({"context": context, "completion": completion}, "upper-case"),
        ({"completion": completion, "chat": {"model": GENERATOR, "messages": []}}, "cannot provide both"),
        ({"CONTEXT": context}, "provide either completion or chat"),
        ({"completion": {**completion, "stop": ["\n"]}}, r"rag\.completion\.stop"),
        (
            {"CONTEXT": {"vector_search": backup_search()}, "completion": completion},
            r"rag\.CONTEXT\.aggregate",
        ),
        (
            {
                "CONTEXT": {**context, "vector_search": {**backup_search(), "limt": 1}},
                "completion": completion,
            },
            r"rag\.CONTEXT\.vector_search\.limt",
        ),
    ]
    for query, match in cases:
        with pytest.raises(pgml.ValidationError, match=match):
            await corpus.collection.rag(query, corpus.pipeline)
    with pytest.raises(pgml.ValidationError, match="upper-case"):
        await corpus.collection.rag_stream({"context": context, "completion": completion}, corpus.pipeline)
