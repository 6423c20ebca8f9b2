"""Pipeline schemas (contract §2.3): validated once into typed field specs that the write and query paths read.

The stored schema is the one the user gave; defaults (splitter parameters, HNSW m/ef_construction, source) are
applied here, by readers, so that a collection written by the upstream SDK reads the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError

DEFAULT_SPLITTER = "recursive_character"
DEFAULT_HNSW_M = 16
DEFAULT_HNSW_EF_CONSTRUCTION = 64
SOURCES = {"pgml": "python", "python": "python", "openai": "openai"}
"""A semantic_search ``source`` → the ``pgml.runtime`` its model row gets."""

_FIELD_KEYS = {"splitter", "semantic_search", "full_text_search"}
_SPLITTER_KEYS = {"model", "parameters"}
_SEMANTIC_KEYS = {"model", "source", "parameters", "hnsw"}
_HNSW_KEYS = {"m", "ef_construction"}
_FULL_TEXT_KEYS = {"configuration"}


def check_name(kind: str, name: object) -> str:
    """Collection and pipeline names: alphanumeric (Unicode), whitespace, ``-`` or ``_`` only (F19)."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{kind} name must be a non-empty string, got {name!r}")
    bad = sorted({c for c in name if not (c.isalnum() or c.isspace() or c in "-_")})
    if bad:
        raise ValidationError(
            f"{kind} name {name!r} has characters other than letters, digits, whitespace, '-' and '_': {bad}"
        )
    return name


@dataclass(frozen=True)
class SplitterSpec:
    model: str = DEFAULT_SPLITTER
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SemanticSpec:
    model: str
    source: str = "pgml"
    parameters: dict[str, Any] = field(default_factory=dict)
    m: int = DEFAULT_HNSW_M
    ef_construction: int = DEFAULT_HNSW_EF_CONSTRUCTION

    @property
    def runtime(self) -> str:
        return SOURCES[self.source]

    @property
    def embed_parameters(self) -> dict[str, Any]:
        """kwargs for ``pgml.embed`` at indexing time: the parameters without ``name`` (§4.7)."""
        return {key: value for key, value in self.parameters.items() if key != "name"}


@dataclass(frozen=True)
class FullTextSpec:
    configuration: str


@dataclass(frozen=True)
class FieldSpec:
    """One schema key K: its chunks always, embeddings and tsvectors when asked for."""

    name: str
    splitter: SplitterSpec | None = None
    semantic: SemanticSpec | None = None
    full_text: FullTextSpec | None = None


def object_at(path: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{path} must be an object, got {type(value).__name__}")
    return value


def check_keys(path: str, value: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValidationError(f"unknown key {path}.{unknown[0]}; allowed: {', '.join(sorted(allowed))}")


def _string(path: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{path} must be a non-empty string, got {value!r}")
    return value


def positive_integer(path: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 1:
        raise ValidationError(f"{path} must be a positive integer, got {value!r}")
    return int(value)


def _parameters(path: str, value: object) -> dict[str, Any]:
    return dict(object_at(path, {} if value is None else value))


def parse_schema(schema: object) -> dict[str, FieldSpec]:
    """Validate a pipeline schema; every error names the key path it is about."""
    fields: dict[str, FieldSpec] = {}
    for name, action in object_at("schema", schema).items():
        if not isinstance(name, str) or not name:
            raise ValidationError(f"schema keys must be non-empty strings, got {name!r}")
        path = f"schema.{name}"
        action = object_at(path, action)
        check_keys(path, action, _FIELD_KEYS)
        fields[name] = FieldSpec(
            name,
            _splitter(f"{path}.splitter", action["splitter"]) if action.get("splitter") is not None else None,
            _semantic(f"{path}.semantic_search", action["semantic_search"])
            if action.get("semantic_search") is not None
            else None,
            _full_text(f"{path}.full_text_search", action["full_text_search"])
            if action.get("full_text_search") is not None
            else None,
        )
    return fields


def _splitter(path: str, value: object) -> SplitterSpec:
    value = object_at(path, value)
    check_keys(path, value, _SPLITTER_KEYS)
    model = _string(f"{path}.model", value.get("model", DEFAULT_SPLITTER))
    return SplitterSpec(model, _parameters(f"{path}.parameters", value.get("parameters")))


def _semantic(path: str, value: object) -> SemanticSpec:
    value = object_at(path, value)
    check_keys(path, value, _SEMANTIC_KEYS)
    if "model" not in value:
        raise ValidationError(f"{path}.model is required")
    source = value.get("source") or "pgml"
    if source not in SOURCES:
        raise ValidationError(f"{path}.source must be one of {', '.join(SOURCES)}, got {source!r}")
    hnsw = object_at(f"{path}.hnsw", value.get("hnsw") or {})
    check_keys(f"{path}.hnsw", hnsw, _HNSW_KEYS)
    return SemanticSpec(
        _string(f"{path}.model", value["model"]),
        source,
        _parameters(f"{path}.parameters", value.get("parameters")),
        positive_integer(f"{path}.hnsw.m", hnsw.get("m", DEFAULT_HNSW_M)),
        positive_integer(
            f"{path}.hnsw.ef_construction", hnsw.get("ef_construction", DEFAULT_HNSW_EF_CONSTRUCTION)
        ),
    )


def _full_text(path: str, value: object) -> FullTextSpec:
    value = object_at(path, value)
    check_keys(path, value, _FULL_TEXT_KEYS)
    if "configuration" not in value:
        raise ValidationError(f"{path}.configuration is required")
    return FullTextSpec(_string(f"{path}.configuration", value["configuration"]))
