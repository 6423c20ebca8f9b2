"""Collections and their pipelines through the SDK (contract §2.2, §4): the database layout as the upstream SDK
makes it, the catalog rows, chunks/embeddings/tsvectors against ``pgml.chunk``/``pgml.embed``/``to_tsvector`` run
directly, incremental upserts, the pipeline lifecycle and status, archive/exists/migrate, files and the sync
wrapper. The upstream Rust suite's structural facts (§6.3) are re-expressed with the packaged MiniLM embedder."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgml
import pgml.sync
import psycopg
import pytest
from pgml import NotFoundError, PgmlError, ValidationError
from psycopg import sql

from tests.support.servers import ProxyProcess

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384


def query(url: str, statement: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one statement on a connection of its own (what a user sees from outside the SDK)."""
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description is not None else []


def count(url: str, *table: str) -> int:
    return int(query(url, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table)))[0][0])


def schemas_named(url: str, *names: str) -> set[str]:
    rows = query(url, "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(names),))
    return {row[0] for row in rows}


def rust_suite_documents(count: int) -> list[dict[str, Any]]:
    """The upstream Rust suite's dummy documents (§6.1): the body is one sentence on 100 lines."""
    return [
        {
            "id": i,
            "title": f"Test document: {i}",
            "body": "\n".join([f"Here is some text that we will end up splitting on! {i}"] * 100),
            "text": "here is some test text",
            "notes": f"Here are some notes or something for test document {i}",
            "metadata": {"uuid": i * 10, "name": f"Test Document {i}"},
        }
        for i in range(count)
    ]


def stored_chunks(url: str, schema: str, field: str) -> dict[int, list[tuple[int, str]]]:
    """document row id → its (chunk_index, chunk) in order."""
    chunks: dict[int, list[tuple[int, str]]] = {}
    for document_id, index, chunk in query(
        url,
        sql.SQL("SELECT document_id, chunk_index, chunk FROM {} ORDER BY document_id, chunk_index").format(
            sql.Identifier(schema, f"{field}_chunks")
        ),
    ):
        chunks.setdefault(document_id, []).append((index, chunk))
    return chunks


def expected_chunks(
    url: str, collection: str, field: str, splitter: str, parameters: str
) -> dict[int, list[Any]]:
    """What ``pgml.chunk`` run directly gives for every stored document's field."""
    expected: dict[int, list[Any]] = {}
    for row_id, text in query(
        url,
        sql.SQL("SELECT id, document ->> %s FROM {} ORDER BY id").format(
            sql.Identifier(collection, "documents")
        ),
        (field,),
    ):
        rows = query(
            url,
            "SELECT chunk_index, chunk FROM pgml.chunk(%s::text, %s::text, %s::jsonb) ORDER BY chunk_index",
            (splitter, text, parameters),
        )
        expected[row_id] = [(int(index), chunk) for index, chunk in rows]
    return expected


def close(vector: str, other: str) -> bool:
    """Two pgvector texts equal within 1e-5 per component."""
    a, b = (json.loads(v) for v in (vector, other))
    return len(a) == len(b) and all(math.isclose(x, y, abs_tol=1e-5) for x, y in zip(a, b, strict=True))


def status(synced: int, total: int) -> dict[str, int]:
    return {"synced": synced, "not_synced": total - synced, "total": total}


# --- layout (§4.2–4.5) ----------------------------------------------------------------------------------------

LAYOUT_SCHEMA = {
    "title": {
        "semantic_search": {"model": EMBEDDER, "hnsw": {"m": 100, "ef_construction": 200}},
        "full_text_search": {"configuration": "english"},
    },
    "body": {
        "splitter": {"model": "recursive_character", "parameters": {"chunk_size": 100, "chunk_overlap": 10}},
        "semantic_search": {"model": EMBEDDER, "parameters": {"prompt": "passage: "}},
    },
}

SERIAL = "nextval"  # a serial8 column's default starts so
NOW = "now()"
CREATED = ("timestamp without time zone", True, NOW)


def columns(url: str, schema: str) -> dict[str, dict[str, tuple[str, bool, str | None]]]:
    """table → column → (type, NOT NULL, default), serial defaults shortened to ``nextval``."""
    tables: dict[str, dict[str, tuple[str, bool, str | None]]] = {}
    for table, column, kind, not_null, default in query(
        url,
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
        (schema,),
    ):
        if default is not None and default.startswith("nextval("):
            default = SERIAL
        tables.setdefault(table, {})[column] = (kind, not_null, default)
    return tables


def constraints(url: str, schema: str, table: str | None = None) -> set[tuple[Any, ...]]:
    """(table, kind, columns, referenced schema.table, on delete, on update, deferrable, deferred) per p/u/f
    constraint."""
    rows = query(
        url,
        "SELECT cl.relname, co.contype::text, ARRAY(SELECT a.attname::text FROM unnest(co.conkey) WITH ORDINALITY"
        " AS k(n, o) JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.n ORDER BY k.o),"
        " fn.nspname || '.' || fc.relname, co.confdeltype::text, co.confupdtype::text, co.condeferrable,"
        " co.condeferred FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid"
        " JOIN pg_namespace n ON n.oid = cl.relnamespace LEFT JOIN pg_class fc ON fc.oid = co.confrelid"
        " LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace"
        " WHERE n.nspname = %s AND co.contype IN ('p', 'u', 'f') AND (%s::text IS NULL OR cl.relname = %s)",
        (schema, table, table),
    )
    return {
        (name, kind, tuple(cols), target, *((delete, update, deferrable, deferred) if kind == "f" else ()))
        for name, kind, cols, target, delete, update, deferrable, deferred in rows
    }


def plain_indexes(url: str, schema: str) -> dict[str, str]:
    """The schema's indexes that back no constraint: name → definition."""
    return dict(
        query(
            url,
            "SELECT ic.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
            " JOIN pg_namespace n ON n.oid = ic.relnamespace WHERE n.nspname = %s AND NOT i.indisunique",
            (schema,),
        )
    )


async def test_layout_catalog_rows_and_er_diagram(sdk_url: str, collection_name: str) -> None:
    c, p = collection_name, f"{collection_name}_p"
    collection = pgml.Collection(c, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p", LAYOUT_SCHEMA))

    assert schemas_named(sdk_url, c, p) == {c, p}
    cascade_deferred = ("c", "c", True, True)

    # schema C (§4.3)
    assert columns(sdk_url, c) == {
        "documents": {
            "id": ("bigint", True, SERIAL),
            "created_at": CREATED,
            "source_uuid": ("uuid", True, None),
            "version": ("jsonb", True, "'{}'::jsonb"),
            "document": ("jsonb", True, None),
        },
        "pipelines": {
            "id": ("bigint", True, SERIAL),
            "name": ("text", True, None),
            "created_at": CREATED,
            "active": ("boolean", True, "true"),
            "schema": ("jsonb", True, None),
        },
    }
    assert constraints(sdk_url, c) == {
        ("documents", "p", ("id",), None),
        ("documents", "u", ("source_uuid",), None),
        ("pipelines", "p", ("id",), None),
        ("pipelines", "u", ("name",), None),
    }
    assert plain_indexes(sdk_url, c) == {
        "documents_document_index": f"CREATE INDEX documents_document_index ON {c}.documents USING gin (document jsonb_path_ops)",
        "pipeline_name_index": f"CREATE INDEX pipeline_name_index ON {c}.pipelines USING btree (name)",
    }

    # schema C_P (§4.4, §4.5): title has embeddings and tsvectors, body embeddings only
    vector = (f"vector({DIMENSIONS})", True, None)
    assert columns(sdk_url, p) == {
        "searches": {"id": ("bigint", True, SERIAL), "created_at": CREATED, "query": ("jsonb", False, None)},
        "search_results": {
            "id": ("bigint", True, SERIAL),
            "search_id": ("bigint", True, None),
            "document_id": ("bigint", True, None),
            "scores": ("jsonb", True, None),
            "rank": ("integer", True, None),
        },
        "search_events": {
            "id": ("bigint", True, SERIAL),
            "created_at": CREATED,
            "search_result": ("bigint", True, None),
            "event": ("jsonb", True, None),
        },
        **{
            f"{k}_chunks": {
                "id": ("bigint", True, SERIAL),
                "created_at": CREATED,
                "document_id": ("bigint", True, None),
                "chunk_index": ("bigint", True, None),
                "chunk": ("text", True, None),
            }
            for k in ("title", "body")
        },
        **{
            f"{k}_embeddings": {
                "id": ("bigint", True, SERIAL),
                "created_at": CREATED,
                "chunk_id": ("bigint", True, None),
                "embedding": vector,
            }
            for k in ("title", "body")
        },
        "title_tsvectors": {
            "id": ("bigint", True, SERIAL),
            "created_at": CREATED,
            "chunk_id": ("bigint", True, None),
            "ts": ("tsvector", False, None),
        },
    }
    assert constraints(sdk_url, p) == {
        ("searches", "p", ("id",), None),
        ("search_results", "p", ("id",), None),
        ("search_results", "f", ("search_id",), f"{p}.searches", "c", "a", False, False),
        ("search_results", "f", ("document_id",), f"{c}.documents", "c", "a", False, False),
        ("search_events", "p", ("id",), None),
        ("search_events", "f", ("search_result",), f"{p}.search_results", "c", "a", False, False),
        *(
            item
            for k in ("title", "body")
            for item in (
                (f"{k}_chunks", "p", ("id",), None),
                (f"{k}_chunks", "u", ("document_id", "chunk_index"), None),
                (f"{k}_chunks", "f", ("document_id",), f"{c}.documents", *cascade_deferred),
                (f"{k}_embeddings", "p", ("id",), None),
                (f"{k}_embeddings", "u", ("chunk_id",), None),
                (f"{k}_embeddings", "f", ("chunk_id",), f"{p}.{k}_chunks", *cascade_deferred),
            )
        ),
        ("title_tsvectors", "p", ("id",), None),
        ("title_tsvectors", "u", ("chunk_id",), None),
        ("title_tsvectors", "f", ("chunk_id",), f"{p}.title_chunks", *cascade_deferred),
    }
    assert plain_indexes(sdk_url, p) == {
        "search_results_search_id_rank_index": f"CREATE INDEX search_results_search_id_rank_index ON {p}.search_results USING btree (search_id, rank)",
        "title_pipeline_chunk_document_id_index": f"CREATE INDEX title_pipeline_chunk_document_id_index ON {p}.title_chunks USING btree (document_id)",
        "title_pipeline_embedding_chunk_id_index": f"CREATE INDEX title_pipeline_embedding_chunk_id_index ON {p}.title_embeddings USING btree (chunk_id)",
        "title_pipeline_embedding_hnsw_vector_index": f"CREATE INDEX title_pipeline_embedding_hnsw_vector_index ON {p}.title_embeddings USING hnsw (embedding vector_cosine_ops) WITH (m='100', ef_construction='200')",
        "title_pipeline_tsvector_chunk_id_index": f"CREATE INDEX title_pipeline_tsvector_chunk_id_index ON {p}.title_tsvectors USING btree (chunk_id)",
        "title_pipeline_tsvector_index": f"CREATE INDEX title_pipeline_tsvector_index ON {p}.title_tsvectors USING gin (ts)",
        "body_pipeline_chunk_document_id_index": f"CREATE INDEX body_pipeline_chunk_document_id_index ON {p}.body_chunks USING btree (document_id)",
        "body_pipeline_embedding_chunk_id_index": f"CREATE INDEX body_pipeline_embedding_chunk_id_index ON {p}.body_embeddings USING btree (chunk_id)",
        "body_pipeline_embedding_hnsw_vector_index": f"CREATE INDEX body_pipeline_embedding_hnsw_vector_index ON {p}.body_embeddings USING hnsw (embedding vector_cosine_ops) WITH (m='16', ef_construction='64')",
    }

    # the global tables (§4.2)
    global_columns = columns(sdk_url, "pgml")
    assert global_columns["collections"] == {
        "id": ("bigint", True, SERIAL),
        "created_at": CREATED,
        "name": ("text", True, None),
        "active": ("boolean", False, "true"),
        "project_id": ("bigint", True, None),
        "sdk_version": ("text", False, None),
    }
    assert global_columns["splitters"] == {
        "id": ("bigint", True, SERIAL),
        "created_at": CREATED,
        "name": ("text", True, None),
        "parameters": ("jsonb", True, "'{}'::jsonb"),
        "project_id": ("bigint", True, None),
    }
    assert constraints(sdk_url, "pgml", "collections") == {
        ("collections", "p", ("id",), None),
        ("collections", "u", ("name",), None),
        ("collections", "f", ("project_id",), "pgml.projects", *cascade_deferred),
    }
    assert constraints(sdk_url, "pgml", "splitters") == {
        ("splitters", "p", ("id",), None),
        ("splitters", "f", ("project_id",), "pgml.projects", *cascade_deferred),
    }

    # the rows
    [(active, version, project_id)] = query(
        sdk_url, "SELECT active, sdk_version, project_id FROM pgml.collections WHERE name = %s", (c,)
    )
    assert (active, version) == (True, "1.0.0")
    assert query(sdk_url, "SELECT id, task::text FROM pgml.projects WHERE name = %s", (c,)) == [
        (project_id, "embedding")
    ]
    models = query(
        sdk_url,
        "SELECT runtime::text, hyperparams, num_features, algorithm::text, status::text, search_params, search_args"
        " FROM pgml.models WHERE project_id = %s ORDER BY id",
        (project_id,),
    )
    assert sorted(models, key=lambda row: len(row[1])) == [
        ("python", {"name": EMBEDDER}, 1, "transformers", "successful", {}, {}),
        ("python", {"prompt": "passage: ", "name": EMBEDDER}, 1, "transformers", "successful", {}, {}),
    ]
    assert query(
        sdk_url, "SELECT name, parameters FROM pgml.splitters WHERE project_id = %s", (project_id,)
    ) == [("recursive_character", {"chunk_size": 100, "chunk_overlap": 10})]
    assert query(
        sdk_url, sql.SQL("SELECT name, active, schema FROM {}").format(sql.Identifier(c, "pipelines"))
    ) == [("p", True, LAYOUT_SCHEMA)]

    # a second pipeline naming the same model and splitter reuses their rows
    await collection.add_pipeline(
        pgml.Pipeline(
            "q",
            {
                "body": {
                    "splitter": {"parameters": {"chunk_size": 100, "chunk_overlap": 10}},
                    "semantic_search": {"model": EMBEDDER},
                }
            },
        )
    )
    assert len(query(sdk_url, "SELECT FROM pgml.models WHERE project_id = %s", (project_id,))) == 2
    assert len(query(sdk_url, "SELECT FROM pgml.splitters WHERE project_id = %s", (project_id,))) == 1
    assert len(query(sdk_url, "SELECT FROM pgml.collections WHERE name = %s", (c,))) == 1

    diagram = await collection.generate_er_diagram(pgml.Pipeline("p"))
    assert diagram.startswith("@startuml")
    assert diagram.rstrip().endswith("@enduml")
    for table in (
        "pgml.collections",
        f"{c}.documents",
        f"{c}.pipelines",
        f"{p}.title_chunks",
        f"{p}.title_embeddings",
        f"{p}.title_tsvectors",
        f"{p}.body_chunks",
        f"{p}.body_embeddings",
    ):
        assert table in diagram
    assert f"{p}.body_tsvectors" not in diagram

    # the upstream's own check reads pg_indexes
    assert query(
        sdk_url,
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'title_embeddings'"
        " AND indexname = 'title_pipeline_embedding_hnsw_vector_index'",
        (p,),
    ) == [
        (
            f"CREATE INDEX title_pipeline_embedding_hnsw_vector_index ON {p}.title_embeddings"
            " USING hnsw (embedding vector_cosine_ops) WITH (m='100', ef_construction='200')",
        )
    ]

    # removing a pipeline drops its schema and row; the model and splitter rows stay
    await collection.remove_pipeline(pgml.Pipeline("q"))
    assert schemas_named(sdk_url, f"{c}_q") == set()
    assert query(sdk_url, sql.SQL("SELECT name FROM {}").format(sql.Identifier(c, "pipelines"))) == [("p",)]
    assert len(query(sdk_url, "SELECT FROM pgml.models WHERE project_id = %s", (project_id,))) == 2
    assert len(query(sdk_url, "SELECT FROM pgml.splitters WHERE project_id = %s", (project_id,))) == 1


async def test_an_existing_project_is_reused_and_its_task_left_alone(
    sdk_url: str, collection_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # F18: the upstream overwrites the task of a user's ML project with the collection's name.
    query(sdk_url, "CREATE EXTENSION IF NOT EXISTS pgml")
    [(project_id,)] = query(
        sdk_url,
        "INSERT INTO pgml.projects (name, task) VALUES (%s, 'regression') RETURNING id",
        (collection_name,),
    )
    caplog.set_level(logging.WARNING, logger="pgml")
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": 1}])
    assert query(sdk_url, "SELECT id, task::text FROM pgml.projects WHERE name = %s", (collection_name,)) == [
        (project_id, "regression")
    ]
    assert query(sdk_url, "SELECT project_id FROM pgml.collections WHERE name = %s", (collection_name,)) == [
        (project_id,)
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == "pgml" and r.levelno == logging.WARNING]
    assert any(collection_name in message for message in warnings)


# --- chunks against pgml.chunk run directly (§4.7, §6.3) -------------------------------------------------------

CHUNK_SCHEMA = {
    "title": {"semantic_search": {"model": EMBEDDER}},
    "body": {
        "splitter": {"model": "recursive_character", "parameters": {"chunk_size": 1000, "chunk_overlap": 40}},
        "full_text_search": {"configuration": "english"},
    },
}
"""The Rust suite's schema, less the body's embeddings: ~1000-character chunks cost MiniLM too much CPU here, and
the embeddings of split fields are checked in the incremental test."""


def assert_counts(url: str, schema: str, title: int, body: int) -> None:
    assert count(url, schema, "title_chunks") == title
    assert count(url, schema, "title_embeddings") == title
    assert count(url, schema, "body_chunks") == body
    assert count(url, schema, "body_tsvectors") == body


async def test_chunks_match_pgml_chunk(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p", CHUNK_SCHEMA))
    documents = rust_suite_documents(2)
    await collection.upsert_documents(documents)
    schema = f"{collection_name}_p"
    assert [d["document"] for d in await collection.get_documents()] == documents  # stored verbatim
    assert_counts(sdk_url, schema, 2, 12)
    assert stored_chunks(sdk_url, schema, "body") == expected_chunks(
        sdk_url, collection_name, "body", "recursive_character", '{"chunk_size": 1000, "chunk_overlap": 40}'
    )
    # Without a splitter the whole value is one chunk, chunk_index 1.
    assert stored_chunks(sdk_url, schema, "title") == {
        row_id: [(1, f"Test document: {i}")] for i, row_id in enumerate((1, 2))
    }


async def test_parallel_batches_give_the_same_chunks(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p", CHUNK_SCHEMA))
    await collection.upsert_documents(rust_suite_documents(20), {"batch_size": 2, "parallel_batches": 5})
    schema = f"{collection_name}_p"
    assert sorted(ids["document"]["id"] for ids in await collection.get_documents()) == list(range(20))
    assert_counts(sdk_url, schema, 20, 120)
    assert stored_chunks(sdk_url, schema, "body") == expected_chunks(
        sdk_url, collection_name, "body", "recursive_character", '{"chunk_size": 1000, "chunk_overlap": 40}'
    )


async def test_upsert_then_add_pipeline_resyncs(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents(rust_suite_documents(2))
    schema = {
        "title": {"semantic_search": {"model": EMBEDDER}},
        "body": {
            "splitter": {"model": "recursive_character"},
            "full_text_search": {"configuration": "english"},
        },
    }
    await collection.add_pipeline(pgml.Pipeline("p", schema))
    assert_counts(sdk_url, f"{collection_name}_p", 2, 4)  # the default splitter: 4000 / 200
    assert stored_chunks(sdk_url, f"{collection_name}_p", "body") == expected_chunks(
        sdk_url, collection_name, "body", "recursive_character", "{}"
    )
    status = await collection.get_pipeline_status(pgml.Pipeline("p"))
    assert status == {
        "title": {"embeddings": status_of(2)},
        "body": {"chunks": status_of(2), "tsvectors": status_of(4)},
    }


def status_of(synced: int) -> dict[str, int]:
    return status(synced, synced)


async def test_field_text_is_the_value_as_postgres_gives_it(
    sdk_url: str, collection_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Strings verbatim, other JSON as ``->>`` writes it (§4.7 step 6); documents without the field are skipped
    with one warning per batch that counts them (F20)."""
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p", {"title": {}}))
    caplog.set_level(logging.WARNING, logger="pgml")
    await collection.upsert_documents(
        [
            {"id": 0, "other": 1},
            {"id": 1, "title": None},
            {"id": 2, "title": " spaced\ttext "},
            {"id": 3, "title": 42},
            {"id": 4, "title": {"b": [1, 2.5], "a": True}},
            {"id": 5, "title": ["x", None]},
        ],
        {"batch_size": 2},
    )
    assert stored_chunks(sdk_url, f"{collection_name}_p", "title") == {
        3: [(1, " spaced\ttext ")],
        4: [(1, "42")],
        5: [(1, '{"a": true, "b": [1, 2.5]}')],
        6: [(1, '["x", null]')],
    }
    warnings = [r.getMessage() for r in caplog.records if r.name == "pgml" and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # only the first batch had documents without the field
    assert "2" in warnings[0]


async def test_names_with_spaces_capitals_and_unicode(sdk_url: str, collection_name: str) -> None:
    """Names follow §2.1 (spaces legal), and every identifier is quoted and case-sensitive (§4.1)."""
    name = f"My Docs {collection_name} Ü"
    collection = pgml.Collection(name, sdk_url)
    schema = {
        "Title Field": {
            "semantic_search": {"model": EMBEDDER},
            "full_text_search": {"configuration": "english"},
        }
    }
    await collection.add_pipeline(pgml.Pipeline("Main Pipe", schema))
    await collection.upsert_documents(
        [{"id": 1, "Title Field": "postgres wire protocol"}, {"id": 2, "Title Field": "baking bread at home"}]
    )
    assert schemas_named(sdk_url, name, f"{name}_Main Pipe") == {name, f"{name}_Main Pipe"}
    assert count(sdk_url, f"{name}_Main Pipe", "Title Field_embeddings") == 2
    assert await collection.get_pipeline_status(pgml.Pipeline("Main Pipe")) == {
        "Title Field": {"embeddings": status(2, 2), "tsvectors": status(2, 2)}
    }
    found = await collection.vector_search(
        {"query": {"fields": {"Title Field": {"query": "postgres protocol"}}}, "limit": 1},
        pgml.Pipeline("Main Pipe"),
    )
    assert [r["document"]["id"] for r in found] == [1]
    hybrid = await collection.search(
        {
            "query": {
                "semantic_search": {"Title Field": {"query": "bread"}},
                "full_text_search": {"Title Field": {"query": "bread"}},
            },
            "limit": 1,
        },
        pgml.Pipeline("Main Pipe"),
    )
    assert [r["document"]["id"] for r in hybrid["results"]] == [2]
    await collection.archive()
    assert not await collection.exists()
    [(archived,)] = query(
        sdk_url, "SELECT name FROM pgml.collections WHERE name LIKE %s", (f"{name}_archive_%",)
    )
    assert schemas_named(sdk_url, name, archived, f"{archived}_Main Pipe") == {
        archived,
        f"{archived}_Main Pipe",
    }


# --- incremental upserts (§4.7) ------------------------------------------------------------------------------

INCREMENTAL_SCHEMA = {
    "title": {"semantic_search": {"model": EMBEDDER}},
    "body": {
        "splitter": {"model": "recursive_character", "parameters": {"chunk_size": 50, "chunk_overlap": 0}},
        "semantic_search": {"model": EMBEDDER, "parameters": {"prompt": "passage: "}},
        "full_text_search": {"configuration": "english"},
    },
}


def paragraphs(document: int, *numbers: int, changed: int | None = None) -> str:
    """Paragraphs of about 40 characters: with chunk_size 50 each is a chunk of its own."""
    return "\n\n".join(
        f"Paragraph {n} of document {document}{' changed' if n == changed else ''} here." for n in numbers
    )


Snapshot = dict[tuple[int, int], tuple[Any, ...]]


def snapshot(url: str, schema: str, field: str, full_text: bool) -> Snapshot:
    """(document row id, chunk_index) → the chunk row and its embedding (and tsvector) rows, xmin included, so
    that a row that was rewritten with the same values still shows."""
    tsvector = (
        sql.SQL(", t.id, t.xmin::text, t.ts::text"),
        sql.SQL(" LEFT JOIN {} t ON t.chunk_id = c.id").format(sql.Identifier(schema, f"{field}_tsvectors")),
    )
    rows = query(
        url,
        sql.SQL(
            "SELECT c.document_id, c.chunk_index, c.id, c.xmin::text, c.chunk, e.id, e.xmin::text, e.embedding::text{}"
            " FROM {} c LEFT JOIN {} e ON e.chunk_id = c.id{}"
        ).format(
            tsvector[0] if full_text else sql.SQL(""),
            sql.Identifier(schema, f"{field}_chunks"),
            sql.Identifier(schema, f"{field}_embeddings"),
            tsvector[1] if full_text else sql.SQL(""),
        ),
    )
    return {(row[0], row[1]): row[2:] for row in rows}


async def test_incremental_upserts_touch_only_what_changed(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p", INCREMENTAL_SCHEMA))
    schema = f"{collection_name}_p"

    def doc(n: int, **changes: Any) -> dict[str, Any]:
        return {"id": n, "title": f"Title {n}", "body": paragraphs(n, 1, 2, 3, 4), "meta": 0, **changes}

    def titles() -> Snapshot:
        return snapshot(sdk_url, schema, "title", False)

    def bodies() -> Snapshot:
        return snapshot(sdk_url, schema, "body", True)

    await collection.upsert_documents([doc(1), doc(2)])
    title0, body0 = titles(), bodies()
    assert sorted(body0) == [(d, i) for d in (1, 2) for i in (1, 2, 3, 4)]
    assert all(None not in row for row in body0.values())  # every chunk has its embedding and tsvector
    assert sorted(title0) == [(1, 1), (2, 1)]

    # metadata only: no chunk, embedding or tsvector row is rewritten
    await collection.upsert_documents([doc(1, meta=1)])
    assert (titles(), bodies()) == (title0, body0)

    # the last paragraph of document 1 changes: only that chunk, its embedding and tsvector change
    await collection.upsert_documents([doc(1, meta=1, body=paragraphs(1, 1, 2, 3, 4, changed=4))])
    body1 = bodies()
    assert titles() == title0
    assert sorted(body1) == sorted(body0)
    for key in body0:
        if key != (1, 4):
            assert body1[key] == body0[key], key
    assert body1[(1, 4)][0] == body0[(1, 4)][0]  # the chunk keeps its row id
    assert body1[(1, 4)][2] == "Paragraph 4 of document 1 changed here."
    assert body1[(1, 4)][5] != body0[(1, 4)][5]  # new embedding
    assert body1[(1, 4)][8] != body0[(1, 4)][8]  # new tsvector

    # the title of document 1 changes: its one title chunk is re-embedded, the body is not touched
    await collection.upsert_documents(
        [doc(1, meta=1, title="Another title", body=paragraphs(1, 1, 2, 3, 4, changed=4))]
    )
    title2 = titles()
    assert bodies() == body1
    assert title2[(2, 1)] == title0[(2, 1)]
    assert title2[(1, 1)][0] == title0[(1, 1)][0]
    assert title2[(1, 1)][2] == "Another title"
    assert title2[(1, 1)][5] != title0[(1, 1)][5]

    # a shorter text removes the trailing chunks, with their embeddings and tsvectors
    await collection.upsert_documents([doc(1, meta=1, title="Another title", body=paragraphs(1, 1, 2))])
    body3 = bodies()
    assert sorted(body3) == [(1, 1), (1, 2), *[(2, i) for i in (1, 2, 3, 4)]]
    assert all(body3[key] == body1[key] for key in body3)
    assert count(sdk_url, schema, "body_embeddings") == count(sdk_url, schema, "body_tsvectors") == 6

    # F3: null, missing and empty fields remove that document's chunks; the other document keeps its own
    for emptied in ({"body": None}, {"body": ""}, {}):
        document = doc(2)
        del document["body"]
        await collection.upsert_documents([{**document, **emptied}])
        body4 = bodies()
        assert sorted(body4) == [(1, 1), (1, 2)], emptied
        assert all(body4[key] == body3[key] for key in body4)
        assert titles()[(2, 1)] == title0[(2, 1)]
        assert count(sdk_url, schema, "body_embeddings") == count(sdk_url, schema, "body_tsvectors") == 2
        await collection.upsert_documents([doc(2)])
        assert sorted(bodies()) == sorted(body3)

    # every embedding is pgml.embed of its chunk with the pipeline's parameters, every tsvector to_tsvector
    for field, parameters in (("title", "{}"), ("body", '{"prompt": "passage: "}')):
        rows = query(
            sdk_url,
            sql.SQL(
                "SELECT c.chunk, e.embedding::real[] FROM {} c JOIN {} e ON e.chunk_id = c.id ORDER BY c.id"
            ).format(
                sql.Identifier(schema, f"{field}_chunks"), sql.Identifier(schema, f"{field}_embeddings")
            ),
        )
        assert len(rows) == count(sdk_url, schema, f"{field}_chunks")
        direct = query(
            sdk_url,
            "SELECT e FROM pgml.embed(inputs => %s::text[], transformer => %s::text, kwargs => %s::jsonb) AS e",
            ([row[0] for row in rows], EMBEDDER, parameters),
        )
        for (chunk, stored), (expected,) in zip(rows, direct, strict=True):
            assert len(stored) == DIMENSIONS
            assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(stored, expected, strict=True)), chunk
    [(plain,)] = query(
        sdk_url, "SELECT pgml.embed(%s::text, %s::text)", (EMBEDDER, "Paragraph 1 of document 1 here.")
    )
    [(stored_body,)] = query(
        sdk_url,
        sql.SQL(
            "SELECT e.embedding::real[] FROM {} c JOIN {} e ON e.chunk_id = c.id WHERE c.chunk = %s"
        ).format(sql.Identifier(schema, "body_chunks"), sql.Identifier(schema, "body_embeddings")),
        ("Paragraph 1 of document 1 here.",),
    )
    assert not all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(stored_body, plain, strict=True))
    assert query(
        sdk_url,
        sql.SQL(
            "SELECT count(*) FILTER (WHERE t.ts IS DISTINCT FROM to_tsvector('english', c.chunk)), count(*) FROM {} c"
            " JOIN {} t ON t.chunk_id = c.id"
        ).format(sql.Identifier(schema, "body_chunks"), sql.Identifier(schema, "body_tsvectors")),
    ) == [(0, count(sdk_url, schema, "body_chunks"))]

    # deleting a document cascades to its chunks, embeddings and tsvectors
    await collection.delete_documents({"id": {"$eq": 1}})
    assert sorted(bodies()) == [(2, i) for i in (1, 2, 3, 4)]
    assert sorted(titles()) == [(2, 1)]
    assert count(sdk_url, schema, "body_embeddings") == count(sdk_url, schema, "body_tsvectors") == 4
    assert count(sdk_url, schema, "title_embeddings") == 1


# --- the pipeline lifecycle (§4.8) ---------------------------------------------------------------------------


async def test_add_and_remove_pipelines(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p1", {}))
    await collection.remove_pipeline(pgml.Pipeline("p1", {}))
    assert await collection.get_pipelines() == []
    assert schemas_named(sdk_url, f"{collection_name}_p1") == set()

    await collection.add_pipeline(pgml.Pipeline("p1", {}))
    await collection.add_pipeline(
        pgml.Pipeline("p2", {"title": {"full_text_search": {"configuration": "english"}}})
    )
    pipelines = await collection.get_pipelines()
    assert [(p.name, p.schema) for p in pipelines] == [
        ("p1", {}),
        ("p2", {"title": {"full_text_search": {"configuration": "english"}}}),
    ]
    await collection.remove_pipeline(pgml.Pipeline("p1"))
    assert [p.name for p in await collection.get_pipelines()] == ["p2"]
    with pytest.raises(NotFoundError):
        await collection.get_pipeline("p1")
    kept = await collection.get_pipeline("p2")
    assert isinstance(kept, pgml.Pipeline)
    assert (kept.name, kept.schema) == ("p2", {"title": {"full_text_search": {"configuration": "english"}}})
    assert schemas_named(sdk_url, f"{collection_name}_p1", f"{collection_name}_p2") == {
        f"{collection_name}_p2"
    }
    assert query(
        sdk_url, sql.SQL("SELECT name FROM {}").format(sql.Identifier(collection_name, "pipelines"))
    ) == [("p2",)]
    for method in ("remove_pipeline", "enable_pipeline", "disable_pipeline", "get_pipeline_status"):
        with pytest.raises(NotFoundError):
            await getattr(collection, method)(pgml.Pipeline("missing"))
    with pytest.raises(NotFoundError):
        await collection.get_pipeline("missing")
    with pytest.raises(ValidationError):
        await collection.add_pipeline(pgml.Pipeline("no_schema"))


STATUS_SCHEMA = {
    "title": {
        "semantic_search": {"model": EMBEDDER},
        "full_text_search": {"configuration": "english"},
        "splitter": {"model": "recursive_character"},
    }
}


async def test_status_disable_enable(
    sdk_url: str, collection_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p", STATUS_SCHEMA))
    documents = [{"id": i, "title": f"Test document: {i}", "kind": "a"} for i in range(4)]
    await collection.upsert_documents(documents[:2])
    pipeline = pgml.Pipeline("p")  # schema-less from here on (F5)
    assert await collection.get_pipeline_status(pipeline) == {
        "title": {"chunks": status(2, 2), "embeddings": status(2, 2), "tsvectors": status(2, 2)}
    }
    assert pipeline.schema == STATUS_SCHEMA  # loaded from the collection

    await collection.disable_pipeline(pgml.Pipeline("p"))
    assert await collection.get_pipelines() == []  # K12: active ones only
    with pytest.raises(NotFoundError):
        await collection.get_pipeline("p")
    await collection.upsert_documents(documents[2:])
    assert count(sdk_url, f"{collection_name}_p", "title_chunks") == 2  # upserts skip a disabled pipeline
    assert await collection.get_pipeline_status(pgml.Pipeline("p")) == {
        "title": {"chunks": status(2, 4), "embeddings": status(2, 2), "tsvectors": status(2, 2)}
    }
    with pytest.raises(PgmlError, match="enable_pipeline"):
        await collection.add_pipeline(pgml.Pipeline("p", STATUS_SCHEMA))

    await collection.upsert_documents([{**documents[0], "title": "Renamed while disabled"}])

    await collection.enable_pipeline(pgml.Pipeline("p"))
    assert await collection.get_pipeline_status(pgml.Pipeline("p")) == {
        "title": {"chunks": status(4, 4), "embeddings": status(4, 4), "tsvectors": status(4, 4)}
    }
    assert [p.name for p in await collection.get_pipelines()] == ["p"]
    assert (await collection.get_pipeline("p")).schema == STATUS_SCHEMA
    schema = f"{collection_name}_p"
    titles = stored_chunks(sdk_url, schema, "title")
    assert titles == {
        1: [(1, "Renamed while disabled")],
        **{i + 1: [(1, f"Test document: {i}")] for i in (1, 2, 3)},
    }

    # F12: a resync fills in missing embeddings and tsvectors and leaves the others alone
    before = snapshot(sdk_url, schema, "title", True)
    query(
        sdk_url,
        sql.SQL("DELETE FROM {} WHERE chunk_id = (SELECT id FROM {} WHERE document_id = 2)").format(
            sql.Identifier(schema, "title_embeddings"), sql.Identifier(schema, "title_chunks")
        ),
    )
    query(
        sdk_url,
        sql.SQL("DELETE FROM {} WHERE chunk_id = (SELECT id FROM {} WHERE document_id = 3)").format(
            sql.Identifier(schema, "title_tsvectors"), sql.Identifier(schema, "title_chunks")
        ),
    )
    assert await collection.get_pipeline_status(pgml.Pipeline("p")) == {
        "title": {"chunks": status(4, 4), "embeddings": status(3, 4), "tsvectors": status(3, 4)}
    }
    await collection.disable_pipeline(pgml.Pipeline("p"))
    await collection.enable_pipeline(pgml.Pipeline("p"))
    assert await collection.get_pipeline_status(pgml.Pipeline("p")) == {
        "title": {"chunks": status(4, 4), "embeddings": status(4, 4), "tsvectors": status(4, 4)}
    }
    after = snapshot(sdk_url, schema, "title", True)
    assert after[(1, 1)] == before[(1, 1)] and after[(4, 1)] == before[(4, 1)]
    assert after[(2, 1)][:3] == before[(2, 1)][:3]  # the chunk row stays; its embedding is made again
    assert close(after[(2, 1)][5], before[(2, 1)][5])
    assert after[(3, 1)][:6] == before[(3, 1)][:6] and after[(3, 1)][8] == before[(3, 1)][8]

    # K15: adding an active name again warns, naming what differs, and changes nothing
    caplog.set_level(logging.WARNING, logger="pgml")
    await collection.add_pipeline(
        pgml.Pipeline("p", {"other": {"full_text_search": {"configuration": "simple"}}})
    )
    warnings = [r.getMessage() for r in caplog.records if r.name == "pgml" and r.levelno == logging.WARNING]
    assert any("other" in message for message in warnings)
    assert query(
        sdk_url,
        sql.SQL("SELECT name, active, schema FROM {}").format(sql.Identifier(collection_name, "pipelines")),
    ) == [("p", True, STATUS_SCHEMA)]
    assert not query(
        sdk_url,
        "SELECT FROM pg_tables WHERE schemaname = %s AND tablename = 'other_chunks'",
        (f"{collection_name}_p",),
    )

    # search with a schema-less pipeline (F5); K12: it also runs on a disabled pipeline's frozen data
    query_json = {"query": {"fields": {"title": {"query": "Test document: 3"}}}, "limit": 1}
    results = await collection.vector_search(query_json, pgml.Pipeline("p"))
    assert [r["document"]["id"] for r in results] == [3]
    await collection.disable_pipeline(pgml.Pipeline("p"))
    results = await collection.vector_search(query_json, pgml.Pipeline("p"))
    assert [r["document"]["id"] for r in results] == [3]


# --- archive, exists, migrate (§4.9) --------------------------------------------------------------------------


async def test_archive_renames_everything_and_frees_the_name(sdk_url: str, collection_name: str) -> None:
    c = collection_name
    collection = pgml.Collection(c, sdk_url)
    assert not await collection.exists()
    await collection.upsert_documents([{"id": 1, "title": "one"}, {"id": 2, "title": "two"}])
    await collection.add_pipeline(
        pgml.Pipeline("a", {"title": {"full_text_search": {"configuration": "english"}}})
    )
    await collection.add_pipeline(pgml.Pipeline("d", {"title": {}}))
    await collection.disable_pipeline(pgml.Pipeline("d"))
    assert await collection.exists()
    [(project_id,)] = query(sdk_url, "SELECT project_id FROM pgml.collections WHERE name = %s", (c,))

    await collection.archive()

    [(archived, active, archived_project)] = query(
        sdk_url, "SELECT name, active, project_id FROM pgml.collections WHERE name LIKE %s", (f"{c}%",)
    )
    assert re.fullmatch(re.escape(c) + r"_archive_\d+", archived)
    assert (active, archived_project) == (False, project_id)
    # F4: the disabled pipeline's schema is renamed too
    assert schemas_named(sdk_url, c, f"{c}_a", f"{c}_d") == set()
    assert schemas_named(sdk_url, archived, f"{archived}_a", f"{archived}_d") == {
        archived,
        f"{archived}_a",
        f"{archived}_d",
    }
    assert count(sdk_url, archived, "documents") == 2  # nothing is deleted
    assert count(sdk_url, f"{archived}_d", "title_chunks") == 2
    assert count(sdk_url, f"{archived}_a", "title_tsvectors") == 2
    assert not await collection.exists()
    assert not await pgml.Collection(c, sdk_url).exists()

    # The name is free: a new collection of that name starts empty and reuses the project.
    again = pgml.Collection(c, sdk_url)
    await again.upsert_documents([{"id": 3, "title": "three"}])
    assert await again.exists()
    assert [d["document"]["id"] for d in await again.get_documents()] == [3]
    assert query(sdk_url, "SELECT project_id FROM pgml.collections WHERE name = %s", (c,)) == [(project_id,)]
    assert len(query(sdk_url, "SELECT FROM pgml.projects WHERE name = %s", (c,))) == 1
    await again.add_pipeline(pgml.Pipeline("d", {"title": {}}))  # no collision with the archived schema
    assert count(sdk_url, f"{c}_d", "title_chunks") == 1
    # The archived object forgot its state: it now works on the new collection.
    assert [d["document"]["id"] for d in await collection.get_documents()] == [3]


@pytest.fixture
def bare_url(scratch_database: str, nlp_proxy: ProxyProcess) -> str:
    """A database of its own without the pgml catalog, through the proxy."""
    return nlp_proxy.url(database=scratch_database)


async def test_exists_without_the_catalog(bare_url: str) -> None:
    assert not await pgml.Collection("anything", bare_url).exists()
    assert query(bare_url, "SELECT to_regclass('pgml.collections') IS NULL") == [(True,)]
    await pgml.migrate(bare_url)  # nothing to migrate
    assert query(bare_url, "SELECT to_regclass('pgml.collections') IS NULL") == [(True,)]


async def test_migrate(bare_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGML_DATABASE_URL", bare_url)
    for name in ("first", "second"):
        await pgml.Collection(name).upsert_documents([{"id": 1}])
    await pgml.migrate()  # every collection is 1.0.0
    query(bare_url, "UPDATE pgml.collections SET sdk_version = '0.9.2' WHERE name = 'second'")
    with pytest.raises(PgmlError, match="second"):
        await pgml.migrate()
    query(bare_url, "UPDATE pgml.collections SET sdk_version = NULL WHERE name = 'second'")
    with pytest.raises(PgmlError, match="second"):
        await pgml.migrate()


# --- files (§2.2) -------------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "ignored").mkdir()
    (tmp_path / "outside").mkdir()
    files = {
        "docs/a.md": "# A\nalpha",
        "docs/b.txt": "bravo",
        "docs/c.py": "print('charlie')",
        "docs/sub/d.MD": "delta",
        "docs/ignored/e.md": "echo",
        "outside/f.md": "foxtrot",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    os.symlink(tmp_path / "outside", tmp_path / "docs" / "linked")
    yield tmp_path


async def test_upsert_file_and_directory(sdk_url: str, collection_name: str, tree: Path) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    single = tree / "docs" / "b.txt"
    await collection.upsert_file(str(single))
    assert [d["document"] for d in await collection.get_documents()] == [{"id": str(single), "text": "bravo"}]

    await collection.upsert_directory(
        str(tree / "docs"), {"file_types": ["md", "txt"], "ignore_paths": ["ignored"], "file_batch_size": 2}
    )
    documents = {d["document"]["id"]: d["document"] for d in await collection.get_documents()}
    docs = tree / "docs"
    assert documents == {
        str(docs / "a.md"): {"id": str(docs / "a.md"), "file_type": "md", "text": "# A\nalpha"},
        str(docs / "b.txt"): {"id": str(docs / "b.txt"), "file_type": "txt", "text": "bravo"},
        str(docs / "sub" / "d.MD"): {"id": str(docs / "sub" / "d.MD"), "file_type": "md", "text": "delta"},
    }
    # file_batch_size 2: the three files went in two upserts, one transaction each.
    transactions = query(
        sdk_url,
        sql.SQL("SELECT count(DISTINCT xmin::text) FROM {} WHERE document ? 'file_type'").format(
            sql.Identifier(collection_name, "documents")
        ),
    )
    assert transactions == [(2,)]

    await collection.upsert_directory(str(docs), {"file_types": ["md"], "follow_links": True})
    assert str(docs / "linked" / "f.md") in {d["document"]["id"] for d in await collection.get_documents()}
    with pytest.raises(ValidationError):
        await collection.upsert_directory(str(docs), {})
    with pytest.raises(ValidationError):
        await collection.upsert_directory(str(docs), {"file_types": ["md"], "recursive": True})


# --- the sync wrapper and the korvus alias --------------------------------------------------------------------


def test_sync_collection_flow(sdk_url: str, collection_name: str) -> None:
    collection = pgml.sync.Collection(collection_name, sdk_url)
    assert collection.exists() is False
    assert collection.upsert_documents([{"id": i, "title": f"title {i}"} for i in range(3)]) is None
    page = collection.get_documents({"limit": 2})
    assert [d["document"]["id"] for d in page] == [0, 1]
    collection.add_pipeline(
        pgml.sync.Pipeline("p", {"title": {"full_text_search": {"configuration": "english"}}})
    )
    assert collection.get_pipeline_status(pgml.sync.Pipeline("p")) == {"title": {"tsvectors": status(3, 3)}}
    [pipeline] = collection.get_pipelines()
    assert isinstance(pipeline, pgml.Pipeline) and pipeline.name == "p"
    collection.delete_documents({"id": {"$eq": 0}})
    assert [d["document"]["id"] for d in collection.get_documents()] == [1, 2]
    assert collection.exists() is True
    collection.archive()
    assert collection.exists() is False


async def test_korvus_collection_reads_its_variable(
    sdk_url: str, collection_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import korvus

    assert korvus.Collection is pgml.Collection
    for name in ("PGML_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KORVUS_DATABASE_URL", sdk_url)
    collection = korvus.Collection(collection_name)
    await collection.upsert_documents([{"id": "k"}])
    assert [d["document"] for d in await collection.get_documents()] == [{"id": "k"}]
