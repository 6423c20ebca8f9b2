"""The legacy ``QueryBuilder`` (contract §2.9), deprecated upstream since 1.0 and kept for old code.

It only builds a ``vector_search`` query over the field ``"text"`` (the field ``SingleFieldPipeline``
makes), so its validation and SQL are vector_search's own.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ValidationError
from .schema import check_keys, object_at, positive_integer
from .search import DEFAULT_LIMIT, required, string

if TYPE_CHECKING:
    from .pipeline import Pipeline

FIELD = "text"
_FILTER_KEYS = {"metadata", "full_text"}
_FULL_TEXT_KEYS = {"configuration", "text"}


class _Searchable(Protocol):
    async def vector_search(self, query: dict[str, Any], pipeline: Pipeline) -> list[dict[str, Any]]: ...


class QueryBuilder:
    """``collection.query().vector_recall(text, pipeline).filter(...).limit(n)``, then
    ``await fetch_all()``."""

    def __init__(self, collection: _Searchable) -> None:
        self._collection = collection
        self._pipeline: Pipeline | None = None
        self._field: dict[str, Any] = {}
        self._metadata: Any = None
        self._limit = DEFAULT_LIMIT

    def vector_recall(
        self, query: str, pipeline: Pipeline, query_parameters: dict[str, Any] | None = None
    ) -> QueryBuilder:
        self._pipeline = pipeline
        self._field = {
            **self._field,
            "query": string("query", query),
            "parameters": dict(object_at("query_parameters", query_parameters or {})),
        }
        return self

    def limit(self, limit: int) -> QueryBuilder:
        self._limit = positive_integer("limit", limit)
        return self

    def filter(self, filter: dict[str, Any]) -> QueryBuilder:
        """``metadata`` becomes the document filter, ``full_text.text`` the field's full_text_filter; the
        field's own configuration parses it, so ``full_text.configuration`` is only checked."""
        entry = object_at("filter", filter)
        check_keys("filter", entry, _FILTER_KEYS)
        if "metadata" in entry:
            self._metadata = entry["metadata"]
        if "full_text" in entry:
            full_text = object_at("filter.full_text", entry["full_text"])
            check_keys("filter.full_text", full_text, _FULL_TEXT_KEYS)
            if "configuration" in full_text:
                string("filter.full_text.configuration", full_text["configuration"])
            text = string("filter.full_text.text", required("filter.full_text", full_text, "text"))
            self._field = {**self._field, "full_text_filter": text}
        return self

    def _built(self) -> tuple[dict[str, Any], Pipeline]:
        """The vector_search query and its pipeline."""
        if self._pipeline is None:
            raise ValidationError("call vector_recall(query, pipeline) first")
        query: dict[str, Any] = {"fields": {FIELD: self._field}}
        if self._metadata is not None:
            query["filter"] = self._metadata
        return {"query": query, "limit": self._limit}, self._pipeline

    def to_full_string(self) -> str:
        """The vector_search query this builder sends, as JSON."""
        return json.dumps(self._built()[0])

    async def fetch_all(self) -> list[tuple[float, str, dict[str, Any]]]:
        """``[(score, chunk, document)]`` in vector_search order."""
        query, pipeline = self._built()
        rows = await self._collection.vector_search(query, pipeline)
        return [(row["score"], row["chunk"], row["document"]) for row in rows]
