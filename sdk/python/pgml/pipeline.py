"""``Pipeline`` and the older ``Model``/``Splitter``/``SingleFieldPipeline`` builders (contract §2.3, §2.4).

A Pipeline is a name plus, optionally, a schema validated here. Without a schema it refers to a pipeline already
stored in a collection; the collection loads the stored schema before any use (F5).
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ValidationError
from .schema import DEFAULT_SPLITTER, SOURCES, FieldSpec, check_name, parse_schema

DEFAULT_MODEL = "Alibaba-NLP/gte-base-en-v1.5"


class Pipeline:
    """A named set of field actions: how each document key is chunked, embedded and full-text indexed."""

    def __init__(self, name: str, schema: dict[str, Any] | None = None) -> None:
        self._name = check_name("pipeline", name)
        self._schema = copy.deepcopy(schema) if schema is not None else None
        self._fields = parse_schema(schema) if schema is not None else None

    @property
    def name(self) -> str:
        return self._name

    @property
    def schema(self) -> dict[str, Any] | None:
        """The schema as the user gave it (``None`` until loaded for a schema-less Pipeline)."""
        return copy.deepcopy(self._schema)

    @property
    def fields(self) -> dict[str, FieldSpec] | None:
        return self._fields

    def _load(self, schema: dict[str, Any]) -> None:
        """Adopt the schema stored in the collection (for ``Pipeline(name)`` and for pipelines read back)."""
        self._schema = copy.deepcopy(schema)
        self._fields = parse_schema(schema)

    def __repr__(self) -> str:
        return f"Pipeline({self._name!r}, {self._schema!r})"


class Model:
    """An embedding model by name, source and parameters (the pre-1.0 way to describe ``semantic_search``)."""

    def __init__(
        self, name: str | None = None, source: str | None = None, parameters: dict[str, Any] | None = None
    ):
        self.name = name or DEFAULT_MODEL
        self.source = source or "pgml"
        if self.source not in SOURCES:
            raise ValidationError(f"Model source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        self.parameters = dict(parameters or {})


class Splitter:
    """A splitter by name and ``pgml.chunk`` parameters."""

    def __init__(self, name: str | None = None, parameters: dict[str, Any] | None = None) -> None:
        self.name = name or DEFAULT_SPLITTER
        self.parameters = dict(parameters or {})


def SingleFieldPipeline(
    name: str,
    model: Model | None = None,
    splitter: Splitter | None = None,
    parameters: dict[str, Any] | None = None,
) -> Pipeline:
    """A Pipeline over the document key ``"text"``, as the pre-1.0 ``Pipeline(name, model, splitter)`` was."""
    if model is None:
        return Pipeline(name)
    parameters = dict(parameters or {})
    semantic: dict[str, Any] = {"model": model.name, "parameters": model.parameters}
    if parameters.get("hnsw") is not None:
        semantic["hnsw"] = parameters["hnsw"]
    if model.source != "pgml":
        semantic["source"] = model.source  # F17: the upstream drops it and embeds locally
    field: dict[str, Any] = {"semantic_search": semantic}
    if splitter is not None:
        field["splitter"] = {"model": splitter.name, "parameters": splitter.parameters}
    full_text = parameters.get("full_text_search") or {}
    if full_text.get("active"):
        field["full_text_search"] = {"configuration": full_text.get("configuration") or "english"}
    return Pipeline(name, {"text": field})
