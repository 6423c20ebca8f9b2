"""Driver for the PostgresML Python SDK (PyPI ``pgml==1.1.1``, a Rust wheel) through the proxy.

Run with the interpreter of ``.venv-upstream-sdk`` (the wheel shares the import name ``pgml`` with our SDK, so it
lives in a venv of its own), with ``PGML_DATABASE_URL`` pointing at the proxy. It builds one collection with a
two-field pipeline, upserts documents, runs the queries and prints one JSON object on stdout; the test compares
that with the database and with our SDK. Usage: ``python upstream_driver.py COLLECTION OUTPUT.json``; the
results go to the file because the SDK's logger (``LOG_LEVEL=DEBUG`` shows each statement) writes to stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pgml  # the upstream SDK: this file never runs in the main venv

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PIPELINE = "p"
SCHEMA: dict[str, Any] = {
    "title": {
        "semantic_search": {"model": MODEL},
        "full_text_search": {"configuration": "english"},
    },
    "body": {
        "splitter": {"model": "recursive_character", "parameters": {"chunk_size": 100, "chunk_overlap": 10}},
        "semantic_search": {"model": MODEL},
    },
}
DOCUMENTS: list[dict[str, Any]] = [
    {
        "id": "doc-1",
        "title": "Postgres wire protocol",
        "body": "The frontend sends a startup message. The backend answers with authentication requests, "
        "parameter status messages, backend key data and finally ReadyForQuery, after which simple "
        "and extended queries may flow.",
        "topic": "databases",
        "year": 2021,
    },
    {
        "id": "doc-2",
        "title": "Vector search with pgvector",
        "body": "An HNSW index answers nearest neighbour queries over embeddings with cosine distance. "
        "Recall depends on ef_search.",
        "topic": "databases",
        "year": 2023,
    },
    {
        "id": "doc-3",
        "title": "Baking sourdough bread",
        "body": "Feed the starter the night before, mix flour and water, rest the dough, fold it every half "
        "hour, shape it and bake it in a very hot oven with steam for a crisp crust.",
        "topic": "cooking",
        "year": 2020,
    },
    {
        "id": "doc-4",
        "title": "Sentence embeddings for search",
        "body": "Sentence transformers map text to dense vectors so that similar meanings land close "
        "together, which makes semantic search over documents possible.",
        "topic": "machine learning",
        "year": 2023,
    },
    {
        "id": 5,
        "title": "Short note on search",
        "body": "Search is short here.",
        "topic": "misc",
        "year": 2019,
    },
]
UPDATES: list[dict[str, Any]] = [
    {  # a shorter body: its trailing chunks go
        "id": "doc-3",
        "title": "Baking sourdough bread",
        "body": "Feed the starter, mix, fold and bake the dough in a hot oven.",
        "topic": "cooking",
        "year": 2022,
    },
    {**DOCUMENTS[1], "year": 2024},  # metadata only: nothing to re-embed
]
VECTOR_QUERY: dict[str, Any] = {
    "query": {
        "fields": {
            "body": {"query": "how do embeddings make semantic search work"},
            "title": {"query": "search with embeddings", "full_text_filter": "search"},
        },
        "filter": {"year": {"$gte": 2020}},
    },
    "limit": 5,
}
SEARCH_QUERY: dict[str, Any] = {
    "query": {
        "full_text_search": {"title": {"query": "search", "boost": 2.0}},
        "semantic_search": {
            "title": {"query": "nearest neighbour vectors"},
            "body": {"query": "dense vectors for semantic search", "boost": 1.5},
        },
        "filter": {"topic": {"$in": ["databases", "machine learning", "misc"]}},
    },
    "limit": 5,
}
PLAIN_VECTOR_QUERY: dict[str, Any] = {
    "query": {"fields": {"body": {"query": "bread dough in a hot oven"}}},
    "limit": 4,
}


async def main(collection_name: str) -> dict[str, Any]:
    collection = pgml.Collection(collection_name)
    pipeline = pgml.Pipeline(PIPELINE, SCHEMA)
    await collection.add_pipeline(pipeline)
    await collection.upsert_documents(DOCUMENTS)
    await collection.upsert_documents(UPDATES)  # the incremental path: changed chunks only
    return {
        "collection": collection_name,
        "pipeline": PIPELINE,
        "schema": SCHEMA,
        "documents": DOCUMENTS,
        "updates": UPDATES,
        "vector_query": VECTOR_QUERY,
        "vector_search": await collection.vector_search(VECTOR_QUERY, pipeline),
        "plain_vector_query": PLAIN_VECTOR_QUERY,
        "plain_vector_search": await collection.vector_search(PLAIN_VECTOR_QUERY, pipeline),
        "search_query": SEARCH_QUERY,
        "search": await collection.search(SEARCH_QUERY, pipeline),
        "get_documents": await collection.get_documents({"limit": 100}),
        "get_documents_filtered": await collection.get_documents({"filter": {"topic": {"$eq": "databases"}}}),
        "pipeline_status": await collection.get_pipeline_status(pipeline),
    }


if __name__ == "__main__":
    pgml.init_logger(os.environ.get("LOG_LEVEL", "ERROR"))  # DEBUG logs every statement the SDK sends
    result = asyncio.run(main(sys.argv[1]))
    with open(sys.argv[2], "w", encoding="utf-8") as output:
        json.dump(result, output)
    # The wheel's runtime threads outlive the interpreter and may abort its finalization ("PyGILState_Release:
    # thread state must be current"): leave without it, everything is written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
