"""The upstream suites' model names (contract §6.4, tier T3) served through proxy aliases: code written for
PostgresML's hosted models runs unchanged against a proxy that maps those names onto local models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pgml
import psycopg
import pytest

from tests.conftest import Upstream
from tests.sdk.conftest import EMBEDDER
from tests.support.servers import ProxyProcess

CHAT_MODELS = ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B-Instruct")
E5 = "intfloat/e5-small-v2"
MESSAGES = [
    {"role": "system", "content": "You are a friendly chatbot."},
    {"role": "user", "content": "How many helicopters can a human eat in one sitting?"},
]


@pytest.fixture(scope="module")
def aliased_url(upstream: Upstream, tiny_models: Path) -> Iterator[str]:
    """A proxy whose aliases map the upstream's LLM and e5 names onto the tiny generator and MiniLM."""
    from tests.support.servers import start_proxy

    aliases = ",".join([*(f"{name}=text-generation" for name in CHAT_MODELS), f"{E5}={EMBEDDER}"])
    process: ProxyProcess = start_proxy(
        upstream.socket_dsn, "--models-dir", str(tiny_models), "--models-aliases", aliases
    )
    name = "sdk_aliases"
    with psycopg.connect(upstream.url(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield process.url(database=name)
    finally:
        process.stop()
        with psycopg.connect(upstream.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_open_source_ai_with_the_upstream_llm_names(aliased_url: str, model: str) -> None:
    completion = pgml.OpenSourceAI(aliased_url).chat_completions_create(
        model, MESSAGES, max_tokens=10, temperature=0.85
    )
    assert completion["model"] == model
    assert completion["choices"] and isinstance(completion["choices"][0]["message"]["content"], str)
    chunks = list(
        pgml.OpenSourceAI(aliased_url).chat_completions_create_stream(model, MESSAGES, temperature=0.85, n=3)
    )
    assert chunks and {choice["index"] for chunk in chunks for choice in chunk["choices"]} == {0, 1, 2}


async def test_rag_with_the_upstream_embedder_and_llm_names(aliased_url: str, collection_name: str) -> None:
    """The upstream Python suite's rag test, re-expressed: e5 with ``passage: `` over a body field, a completion
    with {CONTEXT} from a vector_search (keys ["id"], limit 5), max_tokens 10; then the stream."""
    collection = pgml.Collection(collection_name, aliased_url)
    pipeline = pgml.Pipeline(
        "p",
        {
            "body": {
                "splitter": {"model": "recursive_character"},
                "semantic_search": {"model": E5, "parameters": {"prompt": "passage: "}},
            }
        },
    )
    await collection.add_pipeline(pipeline)
    await collection.upsert_documents(
        [{"id": i, "body": f"Here is some test body for {i}"} for i in range(5)]
    )
    query = {
        "CONTEXT": {
            "vector_search": {
                "query": {
                    "fields": {"body": {"query": "Test document: 2", "parameters": {"prompt": "query: "}}}
                },
                "document": {"keys": ["id"]},
                "limit": 5,
            },
            "aggregate": {"join": "\n"},
        },
        "completion": {"model": CHAT_MODELS[0], "prompt": "Some text with {CONTEXT}", "max_tokens": 10},
    }
    answer = await collection.rag(query, pipeline)
    assert answer["rag"][0]
    assert [row["document"] for row in answer["sources"]["CONTEXT"]] and all(
        set(row["document"]) == {"id"} for row in answer["sources"]["CONTEXT"]
    )
    stream = await collection.rag_stream(query, pipeline)
    pieces = [piece async for piece in stream.stream()]
    assert pieces and all(pieces)
    assert stream.sources()["CONTEXT"] == answer["sources"]["CONTEXT"]
    await collection.archive()
