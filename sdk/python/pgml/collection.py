"""``Collection`` (contract §2.2): documents, the pipelines over them, and the queries that read them.

A Collection object caches what it has verified in the database (that its tables exist, its project id); the
constructor touches nothing. Pipelines are always read back from ``C.pipelines`` before use, so a schema-less
``Pipeline(name)`` works everywhere (F5).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from . import rag as rag_queries
from . import search as search_queries
from .catalog import ensure_catalog, ensure_model, ensure_project, ensure_splitter
from .connection import connect, execute, fetch_all, fetch_one, resolve_dsn
from .documents import ActivePipeline, changed_rows, prepare_batch, sync_fields, write_documents
from .embedding import embed_text
from .errors import NotFoundError, ValidationError
from .filters import compile_filter, compile_order_by, project_keys
from .layout import SDK_VERSION, Names, collection_tables, field_tables, pipeline_tables
from .pipeline import Pipeline
from .query_builder import QueryBuilder
from .schema import FieldSpec, SemanticSpec, check_name, parse_schema

log = logging.getLogger("pgml")

_UPSERT_ARGS = {"batch_size": 100, "parallel_batches": 1, "merge": False}
_GET_ARGS = {"limit", "offset", "last_row_id", "filter", "order_by", "keys"}
_DIRECTORY_ARGS = {"file_types", "file_batch_size", "follow_links", "ignore_paths"}
_PROBE_TEXT = "Hello, World!"


def _arguments(kind: str, args: object, allowed: set[str]) -> dict[str, Any]:
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise ValidationError(f"{kind} args must be a dict, got {type(args).__name__}")
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ValidationError(
            f"unknown {kind} argument {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    return args


def _given(args: dict[str, Any], key: str, default: Any) -> Any:
    """An argument's value, ``default`` only when it is absent or None (an empty list is a mistake to report)."""
    value = args.get(key)
    return default if value is None else value


def _count(name: str, value: object, default: int, minimum: int) -> int:
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or int(value) != value
        or value < minimum
    ):
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Collection:
    """A named set of JSON documents in schema ``C``, with the pipelines that index them."""

    def __init__(self, name: str, database_url: str | None = None) -> None:
        self._name = check_name("collection", name)
        self._dsn = resolve_dsn(database_url)
        self._ready = False

    @property
    def name(self) -> str:
        return self._name

    def _names(self, pipeline: str | None = None) -> Names:
        return Names(self._name, pipeline)

    # --- the collection's own tables ------------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection on which the collection's tables are known to exist (created on first need, §4.2)."""
        async with connect(self._dsn) as connection:
            if not self._ready:
                await self._create(connection)
                self._ready = True
            yield connection

    async def _create(self, connection: psycopg.AsyncConnection[Any]) -> None:
        await ensure_catalog(connection)
        if await fetch_one(
            connection,
            "SELECT to_regclass(format('%%I.documents', %s::text)) IS NOT NULL AND EXISTS"
            " (SELECT FROM pgml.collections WHERE name = %s AND active IS TRUE)",
            (self._name, self._name),
        ):
            return
        async with connection.transaction():
            project_id = await ensure_project(connection, self._name)
            await execute(
                connection,
                "INSERT INTO pgml.collections (name, project_id, sdk_version) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (self._name, project_id, SDK_VERSION),
            )
            for statement in collection_tables(self._names()):
                await execute(connection, statement)

    async def _project_id(self, connection: psycopg.AsyncConnection[Any]) -> int:
        return int(
            await fetch_one(
                connection, "SELECT project_id FROM pgml.collections WHERE name = %s", (self._name,)
            )
        )

    # --- pipelines ------------------------------------------------------------------------------------------

    async def _stored_pipeline(
        self, connection: psycopg.AsyncConnection[Any], name: str, *, active_only: bool = False
    ) -> tuple[dict[str, Any], bool] | None:
        rows = await fetch_all(
            connection,
            sql.SQL("SELECT schema, active FROM {} WHERE name = %s").format(self._names().pipelines),
            (name,),
        )
        if not rows or (active_only and not rows[0][1]):
            return None
        return rows[0][0], bool(rows[0][1])

    async def _load(self, connection: psycopg.AsyncConnection[Any], pipeline: Pipeline) -> ActivePipeline:
        """The stored pipeline (active or not, K12), its schema adopted by a schema-less object (F5)."""
        if not isinstance(pipeline, Pipeline):
            raise ValidationError(f"expected a Pipeline, got {type(pipeline).__name__}")
        stored = await self._stored_pipeline(connection, pipeline.name)
        if stored is None:
            raise NotFoundError(f"pipeline {pipeline.name!r} does not exist in collection {self._name!r}")
        pipeline._load(stored[0])
        return ActivePipeline(self._names(pipeline.name), parse_schema(stored[0]))

    async def _active_pipelines(self, connection: psycopg.AsyncConnection[Any]) -> list[ActivePipeline]:
        rows = await fetch_all(
            connection,
            sql.SQL("SELECT name, schema FROM {} WHERE active ORDER BY id").format(self._names().pipelines),
        )
        return [ActivePipeline(self._names(name), parse_schema(schema)) for name, schema in rows]

    async def add_pipeline(self, pipeline: Pipeline) -> None:
        if not isinstance(pipeline, Pipeline):
            raise ValidationError(f"expected a Pipeline, got {type(pipeline).__name__}")
        if pipeline.schema is None or pipeline.fields is None:
            raise ValidationError(f"pipeline {pipeline.name!r} needs a schema to be added")
        fields = pipeline.fields
        async with self._connection() as connection:
            stored = await self._stored_pipeline(connection, pipeline.name)
            if stored is not None:
                if not stored[1]:
                    raise ValidationError(
                        f"pipeline {pipeline.name!r} exists but is disabled; use enable_pipeline to turn it back on"
                    )
                if stored[0] != pipeline.schema:  # K15: warn, naming what differs
                    keys = sorted(
                        set(stored[0]) ^ set(pipeline.schema)
                        | {k for k in stored[0] if stored[0].get(k) != pipeline.schema.get(k)}
                    )
                    log.warning(
                        "pipeline %r is already active with another schema (keys differ: %s); kept as it is",
                        pipeline.name,
                        keys,
                    )
                else:
                    log.warning("pipeline %r is already active", pipeline.name)
                return
            await ensure_catalog(connection, vectors=any(f.semantic for f in fields.values()))
            dimensions = {
                k: await self._dimensions(connection, f.semantic) for k, f in fields.items() if f.semantic
            }
            names = self._names(pipeline.name)
            async with connection.transaction():
                project_id = await self._project_id(connection)
                for field in fields.values():
                    if field.semantic is not None:
                        await ensure_model(connection, project_id, field.semantic)
                    if field.splitter is not None:
                        await ensure_splitter(connection, project_id, field.splitter)
                await execute(
                    connection,
                    sql.SQL("INSERT INTO {} (name, schema) VALUES (%s, %s)").format(self._names().pipelines),
                    (pipeline.name, Jsonb(pipeline.schema)),
                )
                for statement in pipeline_tables(names):
                    await execute(connection, statement)
                for field in fields.values():
                    for statement in field_tables(names, field, dimensions.get(field.name)):
                        await execute(connection, statement)
        await self._resync(ActivePipeline(names, fields))

    async def _dimensions(self, connection: psycopg.AsyncConnection[Any], semantic: SemanticSpec) -> int:
        """Probe the model's vector length once, when the pipeline is created (§4.5)."""
        return len(await embed_text(connection, semantic, _PROBE_TEXT, semantic.embed_parameters))

    async def _resync(self, pipeline: ActivePipeline, batch_size: int = _UPSERT_ARGS["batch_size"]) -> None:
        """Every document through the pipeline, in row-id order, one transaction per batch (F12)."""
        last = 0
        while True:
            async with self._connection() as connection, connection.transaction():
                ids = [
                    int(row[0])
                    for row in await fetch_all(
                        connection,
                        sql.SQL("SELECT id FROM {} WHERE id > %s ORDER BY id LIMIT %s").format(
                            self._names().documents
                        ),
                        (last, batch_size),
                    )
                ]
                if not ids:
                    return
                await sync_fields(connection, pipeline, ids)
            last = ids[-1]

    async def remove_pipeline(self, pipeline: Pipeline) -> None:
        async with self._connection() as connection, connection.transaction():
            await self._load(connection, pipeline)
            await execute(
                connection,
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    self._names(pipeline.name).pipeline_schema
                ),
            )
            await execute(
                connection,
                sql.SQL("DELETE FROM {} WHERE name = %s").format(self._names().pipelines),
                (pipeline.name,),
            )

    async def enable_pipeline(self, pipeline: Pipeline) -> None:
        async with self._connection() as connection:
            loaded = await self._load(connection, pipeline)
            await self._set_active(connection, pipeline.name, True)
        await self._resync(loaded)

    async def disable_pipeline(self, pipeline: Pipeline) -> None:
        async with self._connection() as connection:
            await self._load(connection, pipeline)
            await self._set_active(connection, pipeline.name, False)

    async def _set_active(self, connection: psycopg.AsyncConnection[Any], name: str, active: bool) -> None:
        await execute(
            connection,
            sql.SQL("UPDATE {} SET active = %s WHERE name = %s").format(self._names().pipelines),
            (active, name),
        )

    async def get_pipelines(self) -> list[Pipeline]:
        async with self._connection() as connection:
            rows = await fetch_all(
                connection,
                sql.SQL("SELECT name, schema FROM {} WHERE active ORDER BY id").format(
                    self._names().pipelines
                ),
            )
        return [Pipeline(name, schema) for name, schema in rows]

    async def get_pipeline(self, name: str) -> Pipeline:
        async with self._connection() as connection:
            stored = await self._stored_pipeline(connection, name, active_only=True)
        if stored is None:
            raise NotFoundError(f"collection {self._name!r} has no active pipeline {name!r}")
        return Pipeline(name, stored[0])

    async def get_pipeline_status(self, pipeline: Pipeline) -> dict[str, Any]:
        async with self._connection() as connection:
            loaded = await self._load(connection, pipeline)
            documents = int(
                await fetch_one(
                    connection, sql.SQL("SELECT count(*) FROM {}").format(self._names().documents)
                )
            )
            return {
                k: await self._field_status(connection, loaded.names, field, documents)
                for k, field in loaded.fields.items()
            }

    @staticmethod
    async def _field_status(
        connection: psycopg.AsyncConnection[Any], names: Names, field: FieldSpec, documents: int
    ) -> dict[str, Any]:
        def part(synced: int, total: int) -> dict[str, int]:
            return {"synced": synced, "not_synced": total - synced, "total": total}

        [(chunks, chunk_documents)] = await fetch_all(
            connection,
            sql.SQL("SELECT count(*), count(DISTINCT document_id) FROM {}").format(names.chunks(field.name)),
        )
        status: dict[str, Any] = {}
        if field.splitter is not None:
            status["chunks"] = part(int(chunk_documents), documents)
        if field.semantic is not None:
            count = await fetch_one(
                connection, sql.SQL("SELECT count(*) FROM {}").format(names.embeddings(field.name))
            )
            status["embeddings"] = part(int(count), int(chunks))
        if field.full_text is not None:
            count = await fetch_one(
                connection, sql.SQL("SELECT count(*) FROM {}").format(names.tsvectors(field.name))
            )
            status["tsvectors"] = part(int(count), int(chunks))
        return status

    # --- documents ------------------------------------------------------------------------------------------

    async def upsert_documents(
        self, documents: list[dict[str, Any]], args: dict[str, Any] | None = None
    ) -> None:
        args = _arguments("upsert_documents", args, set(_UPSERT_ARGS))
        batch_size = _count("batch_size", args.get("batch_size"), _UPSERT_ARGS["batch_size"], 1)
        parallel = _count(
            "parallel_batches", args.get("parallel_batches"), _UPSERT_ARGS["parallel_batches"], 1
        )
        merge = args.get("merge") or False
        if not isinstance(merge, bool):
            raise ValidationError(f"merge must be a boolean, got {merge!r}")
        if not isinstance(documents, list | tuple):
            raise ValidationError(f"documents must be a list of dicts, got {type(documents).__name__}")
        batches = [
            prepare_batch(documents[start : start + batch_size], merge, start)
            for start in range(0, len(documents), batch_size)
        ]
        if not batches:
            return
        async with self._connection() as connection:
            pipelines = await self._active_pipelines(connection)
        gate = asyncio.Semaphore(parallel)

        async def write(batch: list[Any]) -> None:
            async with gate, self._connection() as connection, connection.transaction():
                written = await write_documents(connection, self._names(), batch, merge)
                for pipeline in pipelines:
                    await sync_fields(connection, pipeline, changed_rows(pipeline, written))

        if parallel == 1:
            for batch in batches:
                await write(batch)
            return
        tasks = [asyncio.ensure_future(write(batch)) for batch in batches]
        try:
            await asyncio.gather(*tasks)
        finally:  # the first failure stops the batches not yet committed; committed ones stay (§4.7)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def get_documents(self, args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        args = _arguments("get_documents", args, _GET_ARGS)
        limit = _count("limit", args.get("limit"), 1000, 0)
        offset = _count("offset", args.get("offset"), 0, 0)
        conditions = [compile_filter(_given(args, "filter", {}))]
        params: list[Any] = []
        if args.get("last_row_id") is not None:
            conditions.append(sql.SQL("documents.id > %s"))
            params.append(_count("last_row_id", args["last_row_id"], 0, 0))
        document = (
            project_keys(args["keys"]) if args.get("keys") is not None else sql.SQL("documents.document")
        )
        query = sql.SQL(
            "SELECT documents.id, floor(extract(epoch FROM documents.created_at))::int8, documents.source_uuid::text,"
            " {document} FROM {table} AS documents WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s"
        ).format(
            document=document,
            table=self._names().documents,
            where=sql.SQL(" AND ").join(conditions),
            order=compile_order_by(_given(args, "order_by", {})),
        )
        async with self._connection() as connection:
            rows = await fetch_all(connection, query, [*params, limit, offset])
        return [
            {"row_id": int(row_id), "created_at": int(created), "source_uuid": uuid, "document": document}
            for row_id, created, uuid, document in rows
        ]

    async def delete_documents(self, filter: dict[str, Any]) -> None:
        condition = compile_filter(filter)
        if not filter:
            log.warning("delete_documents({}) deletes every document of collection %r", self._name)  # K10
        async with self._connection() as connection:
            await execute(
                connection,
                sql.SQL("DELETE FROM {} AS documents WHERE {}").format(self._names().documents, condition),
            )

    async def upsert_file(self, path: str) -> None:
        await self.upsert_documents([{"id": str(path), "text": _read_text(Path(path))}])

    async def upsert_directory(self, path: str, args: dict[str, Any]) -> None:
        args = _arguments("upsert_directory", args, _DIRECTORY_ARGS)
        types = args.get("file_types")
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise ValidationError(
                "upsert_directory needs file_types: a list of extensions such as ['md', 'txt']"
            )
        batch_size = _count("file_batch_size", args.get("file_batch_size"), 10, 1)
        ignore = [re.compile(pattern) for pattern in args.get("ignore_paths") or []]
        wanted = {t.lower().lstrip(".") for t in types}
        batch: list[dict[str, Any]] = []
        for root, folders, files in os.walk(path, followlinks=bool(args.get("follow_links"))):
            folders.sort()
            for file in sorted(files):
                full = os.path.join(root, file)
                extension = Path(file).suffix.lower().lstrip(".")
                if extension not in wanted or any(pattern.search(full) for pattern in ignore):
                    continue
                batch.append({"id": full, "file_type": extension, "text": _read_text(Path(full))})
                if len(batch) == batch_size:
                    await self.upsert_documents(batch)
                    batch = []
        if batch:
            await self.upsert_documents(batch)

    # --- queries --------------------------------------------------------------------------------------------

    async def search(self, query: dict[str, Any], pipeline: Pipeline) -> dict[str, Any]:
        async with self._connection() as connection:
            loaded = await self._load(connection, pipeline)
        return await search_queries.search(self._dsn, loaded.names, loaded.fields, query)

    async def add_search_event(
        self, search_id: int, search_result: int, event: dict[str, Any], pipeline: Pipeline
    ) -> None:
        async with self._connection() as connection:
            loaded = await self._load(connection, pipeline)
        await search_queries.add_search_event(self._dsn, loaded.names, search_id, search_result, event)

    async def vector_search(self, query: dict[str, Any], pipeline: Pipeline) -> list[dict[str, Any]]:
        async with self._connection() as connection:
            loaded = await self._load(connection, pipeline)
        return await search_queries.vector_search(self._dsn, loaded.names, loaded.fields, query)

    async def rag(self, query: dict[str, Any], pipeline: Pipeline) -> dict[str, Any]:
        async with self._connection() as connection:
            loaded = await self._load(connection, pipeline)
        return await rag_queries.rag(self._dsn, loaded.names, loaded.fields, query)

    async def rag_stream(self, query: dict[str, Any], pipeline: Pipeline) -> rag_queries.RAGStream:
        async with self._connection() as connection:
            loaded = await self._load(connection, pipeline)
        return await rag_queries.rag_stream(self._dsn, loaded.names, loaded.fields, query)

    def query(self) -> QueryBuilder:
        return QueryBuilder(self)

    # --- the collection as a whole --------------------------------------------------------------------------

    async def exists(self) -> bool:
        async with connect(self._dsn) as connection:
            if await fetch_one(connection, "SELECT to_regclass('pgml.collections') IS NULL"):
                return False
            return bool(
                await fetch_one(
                    connection,
                    "SELECT EXISTS (SELECT FROM pgml.collections WHERE name = %s AND active)",
                    (self._name,),
                )
            )

    async def archive(self) -> None:
        """Rename the collection and all its pipelines' schemas out of the way (F4); nothing is deleted."""
        archived = f"{self._name}_archive_{int(time.time())}"
        async with self._connection() as connection, connection.transaction():
            pipelines = [
                row[0]
                for row in await fetch_all(
                    connection, sql.SQL("SELECT name FROM {}").format(self._names().pipelines)
                )
            ]
            await execute(
                connection,
                "UPDATE pgml.collections SET name = %s, active = FALSE WHERE name = %s",
                (archived, self._name),
            )
            for name in pipelines:
                await execute(
                    connection,
                    sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                        self._names(name).pipeline_schema, Names(archived, name).pipeline_schema
                    ),
                )
            await execute(
                connection,
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(self._names().schema, Names(archived).schema),
            )
        self._ready = False

    async def generate_er_diagram(self, pipeline: Pipeline) -> str:
        async with self._connection() as connection:
            loaded = await self._load(connection, pipeline)
        return _er_diagram(self._name, loaded)


def _read_text(path: Path) -> str:
    """A file's text; PDFs through the optional ``pypdf`` (``pip install pgml-proxy-sdk[pdf]``)."""
    if path.suffix.lower() == ".pdf":
        try:
            from pypdf import PdfReader
        except ImportError as error:
            raise ValidationError(f"{path} is a PDF: install pgml-proxy-sdk[pdf] to read it") from error
        return "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)
    return path.read_text(encoding="utf-8", errors="replace")


def _er_diagram(collection: str, pipeline: ActivePipeline) -> str:
    """A PlantUML entity diagram of the collection's tables and one pipeline's field tables."""
    schema = pipeline.names.pipeline_schema_name
    lines = ["@startuml", "hide circle", "skinparam linetype ortho", ""]

    def entity(name: str, columns: Sequence[str]) -> None:
        lines.append(f'entity "{name}" {{')
        lines.extend(f"  {column}" for column in columns)
        lines.extend(["}", ""])

    entity(
        "pgml.collections",
        [
            "* id : bigint",
            "--",
            "created_at : timestamp",
            "name : text",
            "active : boolean",
            "project_id : bigint",
            "sdk_version : text",
        ],
    )
    entity(
        f"{collection}.documents",
        [
            "* id : bigint",
            "--",
            "created_at : timestamp",
            "source_uuid : uuid",
            "version : jsonb",
            "document : jsonb",
        ],
    )
    entity(
        f"{collection}.pipelines",
        [
            "* id : bigint",
            "--",
            "created_at : timestamp",
            "name : text",
            "active : boolean",
            "schema : jsonb",
        ],
    )
    relations = [
        f'"pgml.collections" ||..|| "{collection}.documents"',
        f'"pgml.collections" ||..o{{ "{collection}.pipelines"',
    ]
    for k, field in pipeline.fields.items():
        chunks = f"{schema}.{k}_chunks"
        entity(
            chunks,
            [
                "* id : bigint",
                "--",
                "created_at : timestamp",
                "document_id : bigint",
                "chunk_index : bigint",
                "chunk : text",
            ],
        )
        relations.append(f'"{collection}.documents" ||..o{{ "{chunks}"')
        if field.semantic is not None:
            entity(
                f"{schema}.{k}_embeddings",
                ["* id : bigint", "--", "created_at : timestamp", "chunk_id : bigint", "embedding : vector"],
            )
            relations.append(f'"{chunks}" ||..|| "{schema}.{k}_embeddings"')
        if field.full_text is not None:
            entity(
                f"{schema}.{k}_tsvectors",
                ["* id : bigint", "--", "created_at : timestamp", "chunk_id : bigint", "ts : tsvector"],
            )
            relations.append(f'"{chunks}" ||..|| "{schema}.{k}_tsvectors"')
    return "\n".join([*lines, *relations, "@enduml"])
