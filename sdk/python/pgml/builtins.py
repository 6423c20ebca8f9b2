"""``Builtins`` (contract §2.5): raw SQL with positional binds, and direct ``pgml.transform``/``pgml.embed`` calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Int8

from . import transforms
from .connection import connect, fetch_all, log, resolve_dsn
from .embedding import embed_text
from .errors import ValidationError
from .schema import SemanticSpec


class QueryRunner:
    """One SQL statement with ``$1..`` placeholders and the values bound to them, in order.

    The statement runs through psycopg's raw cursor, which sends ``$n`` to the server as written: rewriting
    placeholders would have to parse strings, comments and dollar quotes in the user's SQL.
    """

    def __init__(self, query: str, database_url: str | None = None) -> None:
        self._query = query
        self._database_url = database_url
        self._params: list[Any] = []

    def _bind(self, value: Any) -> QueryRunner:
        self._params.append(value)
        return self

    def bind_string(self, value: str) -> QueryRunner:
        if not isinstance(value, str):
            raise ValidationError(f"bind_string takes a str, got {type(value).__name__}")
        return self._bind(value)

    def bind_int(self, value: int) -> QueryRunner:
        """Bound as bigint, the upstream's i64."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"bind_int takes an int, got {type(value).__name__}")
        return self._bind(Int8(value))

    def bind_float(self, value: float) -> QueryRunner:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"bind_float takes a float, got {type(value).__name__}")
        return self._bind(float(value))

    def bind_bool(self, value: bool) -> QueryRunner:
        if not isinstance(value, bool):
            raise ValidationError(f"bind_bool takes a bool, got {type(value).__name__}")
        return self._bind(value)

    def bind_json(self, value: Any) -> QueryRunner:
        """Bound as jsonb."""
        return self._bind(Jsonb(value))

    async def _run(self, query: str) -> list[tuple[Any, ...]]:
        log.debug("SQL: %s; params: %r", query, self._params)
        async with (
            connect(resolve_dsn(self._database_url)) as connection,
            psycopg.AsyncRawCursor(connection, row_factory=tuple_row) as cursor,
        ):
            await cursor.execute(query, self._params)
            return await cursor.fetchall() if cursor.description else []

    async def fetch_all(self) -> list[dict[str, Any]]:
        """Every row as a dict of its columns (JSON-converted by Postgres); ``[]`` without rows."""
        statement = self._query.strip().rstrip(";")
        # The newline ends a trailing "--" comment, which would otherwise swallow the closing parenthesis.
        # ``alias.*`` is the whole row even when a column has the alias's name (the upstream's ``json_agg(j)``
        # returns that column instead).
        rows = await self._run(f"SELECT json_agg(pgml_row.*) FROM ({statement}\n) pgml_row")
        return rows[0][0] or []

    async def execute(self) -> None:
        await self._run(self._query)


class Builtins:
    """Stateless helpers bound to a database; the DSN is resolved at each call, never in the constructor."""

    def __init__(self, database_url: str | None = None) -> None:
        self._database_url = database_url

    def query(self, query: str) -> QueryRunner:
        return QueryRunner(query, self._database_url)

    async def transform(
        self, task: str | Mapping[str, Any], inputs: Sequence[str], args: Mapping[str, Any] | None = None
    ) -> Any:
        """``pgml.transform`` over texts: a str task is a task name, a dict task a pipeline dictionary."""
        return await transforms.transform(
            resolve_dsn(self._database_url), task, args, transforms.texts(inputs)
        )

    async def embed(self, model: str, text: str) -> list[float]:
        if not isinstance(model, str) or not isinstance(text, str):
            raise ValidationError("embed takes a model name and a text (both str)")
        async with connect(resolve_dsn(self._database_url)) as connection:
            return await embed_text(connection, SemanticSpec(model), text, {})

    async def embed_batch(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in input order (one model call for the whole batch)."""
        if not isinstance(model, str):
            raise ValidationError("embed_batch takes a model name (str)")
        batch = transforms.texts(texts, "texts")
        if not batch:
            return []
        async with connect(resolve_dsn(self._database_url)) as connection:
            rows = await fetch_all(
                connection,
                "SELECT e FROM pgml.embed(transformer => %s::text, inputs => %s::text[])"
                " WITH ORDINALITY AS t(e, i) ORDER BY i",
                [model, batch],
            )
        return [row[0] for row in rows]
