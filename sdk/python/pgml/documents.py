"""The write path (contract §4.7, §4.8): documents in, chunks, embeddings and tsvectors kept in step.

Every function here runs inside the caller's transaction; one batch is one transaction, so a failure rolls back
the documents with their chunks. The same field synchronisation serves upserts and pipeline resyncs: it compares
new chunks with the stored ones, writes only what changed, and embeds every chunk of the given documents that
changed or has no embedding yet (which is what makes a resync resumable, F12).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .connection import execute, fetch_all
from .embedding import vector_text
from .errors import ValidationError
from .identity import compact_json, source_uuid, version
from .layout import Names
from .remote import embed_openai
from .schema import FieldSpec

log = logging.getLogger("pgml")


@dataclass(frozen=True)
class ActivePipeline:
    """A pipeline the write path keeps in step: its objects' names and its parsed schema."""

    names: Names
    fields: Mapping[str, FieldSpec]


@dataclass(frozen=True)
class Incoming:
    """One document of a batch, ready to write."""

    source_uuid: Any
    document: dict[str, Any]
    version: dict[str, Any]


def prepare_batch(documents: Sequence[object], merge: bool, offset: int = 0) -> list[Incoming]:
    """Validate the documents and collapse repeated ids: the last wins, or with ``merge`` they merge in order
    (F13; the upstream fails with 21000)."""
    now_ms = int(time.time() * 1000)
    by_uuid: dict[Any, dict[str, Any]] = {}
    for position, document in enumerate(documents, start=offset):
        if not isinstance(document, dict):
            raise ValidationError(f"document {position} must be a dict, got {type(document).__name__}")
        if "id" not in document:
            raise ValidationError(f"document {position} has no 'id' key")
        compact_json(document)  # every value must be JSON
        key = source_uuid(document["id"])
        by_uuid[key] = {**by_uuid[key], **document} if merge and key in by_uuid else dict(document)
    return [Incoming(key, document, version(document, now_ms)) for key, document in by_uuid.items()]


async def write_documents(
    connection: psycopg.AsyncConnection[Any], names: Names, batch: Sequence[Incoming], merge: bool
) -> list[tuple[int, Any, Any]]:
    """One multi-row upsert; per document its row id, the document stored before (None if new) and now."""
    stored = sql.SQL("{}.document || EXCLUDED.document" if merge else "EXCLUDED.document").format(
        sql.Identifier("documents")
    )
    query = sql.SQL(
        "WITH incoming AS (SELECT * FROM unnest(%s::uuid[], %s::jsonb[], %s::jsonb[]) AS i(source_uuid, document,"
        " version)), previous AS (SELECT d.source_uuid, d.document FROM {documents} d"
        " WHERE d.source_uuid IN (SELECT source_uuid FROM incoming)),"
        " written AS (INSERT INTO {documents} AS documents (source_uuid, document, version)"
        " SELECT source_uuid, document, version FROM incoming"
        " ON CONFLICT (source_uuid) DO UPDATE SET document = {stored}, version = EXCLUDED.version"
        " RETURNING id, source_uuid, document)"
        " SELECT w.id, p.document, w.document FROM written w LEFT JOIN previous p USING (source_uuid) ORDER BY w.id"
    ).format(documents=names.documents, stored=stored)
    uuids = [item.source_uuid for item in batch]
    # Batches in flight at once may share documents: each takes its rows' locks in one global order first, so
    # two batches wait for each other instead of deadlocking; row ids still follow the input order.
    await execute(
        connection,
        "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT hashtextextended(u::text, 0) AS k"
        " FROM unnest(%s::uuid[]) AS u ORDER BY k) AS s",
        (uuids,),
    )
    params = (
        uuids,
        [Jsonb(item.document) for item in batch],
        [Jsonb(item.version) for item in batch],
    )
    return [
        (int(row_id), before, after) for row_id, before, after in await fetch_all(connection, query, params)
    ]


def changed_rows(pipeline: ActivePipeline, written: Sequence[tuple[int, Any, Any]]) -> list[int]:
    """Rows that are new, or where a key of the pipeline's schema changed: metadata-only updates cost nothing."""
    keys = list(pipeline.fields)
    return [
        row_id
        for row_id, before, after in written
        if before is None or any(compact_json(before.get(k)) != compact_json(after.get(k)) for k in keys)
    ]


async def sync_fields(
    connection: psycopg.AsyncConnection[Any], pipeline: ActivePipeline, row_ids: list[int]
) -> None:
    """Bring every field's chunks, embeddings and tsvectors of these documents in step with their text."""
    if not row_ids or not pipeline.fields:
        return
    keys = list(pipeline.fields)
    texts = await fetch_all(
        connection,
        sql.SQL(
            "SELECT id, ARRAY(SELECT document ->> k FROM unnest(%s::text[]) WITH ORDINALITY AS f(k, o) ORDER BY o)"
            " FROM {} WHERE id = ANY(%s) ORDER BY id"
        ).format(pipeline.names.documents),
        (keys, row_ids),
    )
    for position, key in enumerate(keys):
        values = [(int(row_id), values[position]) for row_id, values in texts]
        await _sync_field(connection, pipeline.names, pipeline.fields[key], values)
    missing = sum(1 for _, values in texts if None in values)
    if missing:  # F20: the upstream skips them without a word
        log.warning(
            "%d of %d documents lack a field of pipeline %r", missing, len(texts), pipeline.names.pipeline
        )


async def _split(
    connection: psycopg.AsyncConnection[Any], field: FieldSpec, values: list[tuple[int, str | None]]
) -> dict[int, list[str]]:
    """Each document's chunks (1-based by position); no chunks for a null or empty text."""
    texts = {row_id: text for row_id, text in values if text}
    if field.splitter is None:
        return {row_id: [text] for row_id, text in texts.items()}
    query = "SELECT chunk FROM pgml.chunk(splitter => %s::text, text => %s::text, kwargs => %s::jsonb) ORDER BY chunk_index"
    parameters = Jsonb(field.splitter.parameters)
    cursors = []
    async with connection.pipeline():
        for text in texts.values():
            cursor = connection.cursor()
            await cursor.execute(query, (field.splitter.model, text, parameters))
            cursors.append(cursor)
    return {
        row_id: [row[0] for row in await cursor.fetchall()]
        for row_id, cursor in zip(texts, cursors, strict=True)
    }


async def _sync_field(
    connection: psycopg.AsyncConnection[Any],
    names: Names,
    field: FieldSpec,
    values: list[tuple[int, str | None]],
) -> None:
    chunks_table = names.chunks(field.name)
    row_ids = [row_id for row_id, _ in values]
    split = await _split(connection, field, values)
    stored = {
        (int(document_id), int(index)): chunk
        for document_id, index, chunk in await fetch_all(
            connection,
            sql.SQL("SELECT document_id, chunk_index, chunk FROM {} WHERE document_id = ANY(%s)").format(
                chunks_table
            ),
            (row_ids,),
        )
    }
    changed = [
        (row_id, index, chunk)
        for row_id, chunks in split.items()
        for index, chunk in enumerate(chunks, start=1)
        if stored.get((row_id, index)) != chunk
    ]
    changed_ids: list[int] = []
    if changed:
        document_ids, indexes, texts = (list(column) for column in zip(*changed, strict=True))
        changed_ids = [
            int(row[0])
            for row in await fetch_all(
                connection,
                sql.SQL(
                    "INSERT INTO {} (document_id, chunk_index, chunk) SELECT * FROM unnest(%s::int8[], %s::int8[],"
                    " %s::text[]) ON CONFLICT (document_id, chunk_index) DO UPDATE SET chunk = EXCLUDED.chunk"
                    " RETURNING id"
                ).format(chunks_table),
                (document_ids, indexes, texts),
            )
        ]
    # F3: a field that now chunks to nothing (or fewer) loses its old chunks; embeddings and tsvectors cascade.
    await execute(
        connection,
        sql.SQL(
            "DELETE FROM {} c USING unnest(%s::int8[], %s::int8[]) AS n(document_id, count)"
            " WHERE c.document_id = n.document_id AND c.chunk_index > n.count"
        ).format(chunks_table),
        (row_ids, [len(split.get(row_id, ())) for row_id in row_ids]),
    )
    if field.semantic is not None:
        await _embed_chunks(connection, names, field, row_ids, changed_ids)
    if field.full_text is not None:
        await execute(
            connection,
            sql.SQL(
                "INSERT INTO {tsvectors} (chunk_id, ts) SELECT c.id, to_tsvector(%s::regconfig, c.chunk) FROM {chunks} c"
                " LEFT JOIN {tsvectors} t ON t.chunk_id = c.id WHERE c.document_id = ANY(%s)"
                " AND (t.id IS NULL OR c.id = ANY(%s)) ON CONFLICT (chunk_id) DO UPDATE SET ts = EXCLUDED.ts"
            ).format(tsvectors=names.tsvectors(field.name), chunks=chunks_table),
            (field.full_text.configuration, row_ids, changed_ids),
        )


async def _embed_chunks(
    connection: psycopg.AsyncConnection[Any],
    names: Names,
    field: FieldSpec,
    row_ids: list[int],
    changed_ids: list[int],
) -> None:
    """Embed the chunks that changed or have no embedding, in one batched call (K14: inside the transaction)."""
    assert field.semantic is not None
    embeddings = names.embeddings(field.name)
    pending = await fetch_all(
        connection,
        sql.SQL(
            "SELECT c.id, c.chunk FROM {chunks} c LEFT JOIN {embeddings} e ON e.chunk_id = c.id"
            " WHERE c.document_id = ANY(%s) AND (e.id IS NULL OR c.id = ANY(%s)) ORDER BY c.id"
        ).format(chunks=names.chunks(field.name), embeddings=embeddings),
        (row_ids, changed_ids),
    )
    if not pending:
        return
    chunk_ids = [int(row[0]) for row in pending]
    texts = [row[1] for row in pending]
    upsert = sql.SQL("ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding")
    if field.semantic.source == "openai":
        vectors = await embed_openai(field.semantic.model, texts)
        await execute(
            connection,
            sql.SQL(
                "INSERT INTO {} (chunk_id, embedding) SELECT i, v::vector FROM unnest(%s::int8[], %s::text[]) AS t(i, v) {}"
            ).format(embeddings, upsert),
            (chunk_ids, [vector_text(vector) for vector in vectors]),
        )
        return
    await execute(
        connection,
        sql.SQL(
            "INSERT INTO {} (chunk_id, embedding) SELECT (%s::int8[])[t.ord], t.e::vector"
            " FROM pgml.embed(inputs => %s::text[], transformer => %s::text, kwargs => %s::jsonb)"
            " WITH ORDINALITY AS t(e, ord) {}"
        ).format(embeddings, upsert),
        (chunk_ids, texts, field.semantic.model, Jsonb(field.semantic.embed_parameters)),
    )
