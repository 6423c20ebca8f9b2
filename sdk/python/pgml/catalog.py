"""The SDK's rows in the ``pgml`` schema (contract §4.2): the catalog itself, the collection's project, the
models and splitters a pipeline names.

``pgml.projects``/``pgml.models`` belong to the proxy's catalog: if the database has none yet, the SDK asks for it
with ``CREATE EXTENSION IF NOT EXISTS pgml``, which the proxy answers (and a PostgresML database already has).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .connection import execute, fetch_all, fetch_one
from .layout import GLOBAL_TABLES
from .schema import SemanticSpec, SplitterSpec

log = logging.getLogger("pgml")


async def ensure_catalog(connection: psycopg.AsyncConnection[Any], *, vectors: bool = False) -> None:
    """The pgml catalog, the SDK's two global tables and, when ``vectors``, pgvector's type.

    Run outside a transaction: CREATE EXTENSION is answered by the proxy in the session itself.
    """
    if await fetch_one(connection, "SELECT to_regclass('pgml.projects') IS NULL"):
        await execute(connection, "CREATE EXTENSION IF NOT EXISTS pgml")
    if vectors and await fetch_one(connection, "SELECT to_regtype('vector') IS NULL"):
        await execute(connection, "CREATE EXTENSION IF NOT EXISTS vector")
    if await fetch_one(
        connection, "SELECT to_regclass('pgml.collections') IS NULL OR to_regclass('pgml.splitters') IS NULL"
    ):
        for statement in GLOBAL_TABLES:
            await execute(connection, statement)


async def ensure_project(connection: psycopg.AsyncConnection[Any], name: str) -> int:
    """The project named after the collection: reused as it is if it exists (F18), else an embedding project."""
    rows = await fetch_all(connection, "SELECT id, task::text FROM pgml.projects WHERE name = %s", (name,))
    if rows:
        project_id, task = rows[0]
        if task != "embedding":
            log.warning(
                "collection %r shares its name with the %s project %r; its task is left alone",
                name,
                task,
                name,
            )
        return int(project_id)
    return int(
        await fetch_one(
            connection,
            "INSERT INTO pgml.projects (name, task) VALUES (%s, 'embedding')"
            " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            (name,),
        )
    )


async def ensure_model(
    connection: psycopg.AsyncConnection[Any], project_id: int, semantic: SemanticSpec
) -> int:
    """The ``pgml.models`` row of an embedding model, found by (project, runtime, hyperparams)."""
    hyperparams = Jsonb({**semantic.parameters, "name": semantic.model})
    found = await fetch_one(
        connection,
        "SELECT id FROM pgml.models WHERE project_id = %s AND runtime = %s::pgml.runtime AND hyperparams = %s"
        " ORDER BY id LIMIT 1",
        (project_id, semantic.runtime, hyperparams),
    )
    if found is not None:
        return int(found)
    return int(
        await fetch_one(
            connection,
            "INSERT INTO pgml.models (project_id, num_features, algorithm, runtime, hyperparams, status,"
            " search_params, search_args) VALUES (%s, 1, 'transformers', %s::pgml.runtime, %s, 'successful',"
            " '{}', '{}') RETURNING id",
            (project_id, semantic.runtime, hyperparams),
        )
    )


async def ensure_splitter(
    connection: psycopg.AsyncConnection[Any], project_id: int, splitter: SplitterSpec
) -> int:
    """The ``pgml.splitters`` row, found by (project, name, parameters)."""
    parameters = Jsonb(splitter.parameters)
    found = await fetch_one(
        connection,
        "SELECT id FROM pgml.splitters WHERE project_id = %s AND name = %s AND parameters = %s ORDER BY id LIMIT 1",
        (project_id, splitter.model, parameters),
    )
    if found is not None:
        return int(found)
    return int(
        await fetch_one(
            connection,
            "INSERT INTO pgml.splitters (project_id, name, parameters) VALUES (%s, %s, %s) RETURNING id",
            (project_id, splitter.model, parameters),
        )
    )
