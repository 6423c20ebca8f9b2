"""``pgml.embed`` with sentence-transformers semantics (contract §2.3).

The caller's kwargs are split in two: load options pick *which model copy* (checked by :mod:`.sentence_models`,
which rank shares), encode options say *how to run it* (they pick the batch queue: only requests with identical
encode options can share a model call). Both are made canonical and hashable, and checked before any model work,
so a bad argument fails its own statement and never a shared batch.

Heavy imports (torch, sentence-transformers) happen inside the functions that run on worker threads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import arguments, sentence_models
from .cache import ModelKey as ModelKey  # embed's keys: ModelKey(name, LoadOptions, "embed")
from .config import EngineConfig
from .errors import InvalidArgument
from .resolve import ResolvedModel

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: kwargs that configure loading (contract §2.3); every other key goes to ``encode``.
LOAD_KEYS = (*sentence_models.LOAD_KEYS, "truncate_dim")

#: encode arguments the engine owns because they change the shape or location of the result it must return.
_RESERVED_ENCODE = frozenset(
    {"inputs", "sentences", "output_value", "convert_to_numpy", "convert_to_tensor", "pool", "chunk_size"}
)
#: accepted for compatibility and ignored: a progress bar has nowhere to go in a proxy.
_IGNORED_ENCODE = frozenset({"show_progress_bar"})
_PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
#: encode arguments every SentenceTransformer takes; others are checked against the loaded model.
_COMMON_ENCODE = frozenset({"prompt", "prompt_name", "batch_size", "normalize_embeddings", "precision"})
#: How error messages name this function's arguments.
_WHAT = "embed kwargs"


@dataclass(frozen=True)
class LoadOptions(sentence_models.SentenceModelOptions):
    """The load options of one embedding model copy: the shared ones, and the dimension to truncate vectors to."""

    truncate_dim: int | None = None


@dataclass(frozen=True)
class EncodeOptions:
    """Encode options as canonical JSON: equal options, equal batch queue."""

    canonical: str = "{}"

    def kwargs(self) -> dict[str, Any]:
        return dict(json.loads(self.canonical))


def is_instructor(names: Sequence[str]) -> bool:
    """Whether the model (or an alias target on its way) is one of the hkunlp/instructor family."""
    return any(name.lower().startswith("hkunlp/instructor") for name in names)


def split_kwargs(
    model: str | Sequence[str], kwargs: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``pgml.embed`` kwargs into (load, encode) dicts.

    ``model`` is the requested name, or the names of its alias chain. For instructor models ``instruction`` is
    renamed ``prompt``, as PostgresML does (the instruction then wins over a ``prompt`` given too).
    """
    if not isinstance(kwargs, Mapping):
        raise InvalidArgument(f"embed kwargs must be a JSON object, got {type(kwargs).__name__}")
    names = (model,) if isinstance(model, str) else tuple(model)
    load = {key: value for key, value in kwargs.items() if key in LOAD_KEYS}
    encode = {key: value for key, value in kwargs.items() if key not in LOAD_KEYS}
    if is_instructor(names) and "instruction" in encode:
        encode["prompt"] = encode.pop("instruction")
    return load, encode


def load_options(raw: Mapping[str, Any]) -> LoadOptions:
    """Check load options and make them canonical (the device is resolved here: it is part of the key)."""
    return LoadOptions.check(raw, _WHAT, truncate_dim=arguments.optional_positive_int(raw, "truncate_dim"))


def encode_options(raw: Mapping[str, Any]) -> EncodeOptions:
    """Check the encode options whose meaning is fixed for every model; model-specific ones are checked against
    the model once it is loaded (:func:`check_model_kwargs`)."""
    options = {key: value for key, value in raw.items() if key not in _IGNORED_ENCODE}
    reserved = sorted(_RESERVED_ENCODE.intersection(options))
    if reserved:
        raise InvalidArgument(
            f"embed does not accept {', '.join(reserved)}: the engine decides the shape of its results"
        )
    for key in ("prompt", "prompt_name", "task"):
        arguments.optional_str(options, key)
    if "batch_size" in options:
        arguments.positive_int(options, "batch_size")
    if "normalize_embeddings" in options and not isinstance(options["normalize_embeddings"], bool):
        raise InvalidArgument(
            f"normalize_embeddings must be a boolean, got {options['normalize_embeddings']!r}"
        )
    if "precision" in options and options["precision"] not in _PRECISIONS:
        raise InvalidArgument(
            f"precision must be one of {', '.join(_PRECISIONS)}, got {options['precision']!r}"
        )
    return EncodeOptions(arguments.canonical_json(options, _WHAT))


def check_model_kwargs(model: SentenceTransformer, options: EncodeOptions) -> None:
    """Refuse encode options this model does not take, naming the ones it does (instead of a library error)."""
    extra = getattr(model, "get_model_kwargs", lambda: [])()
    accepted = _COMMON_ENCODE | {"task", "processing_kwargs"} | set(extra)
    unknown = sorted(set(options.kwargs()) - accepted)
    if unknown:
        raise InvalidArgument(
            f"unknown embed argument(s) {', '.join(unknown)}; this model accepts: {', '.join(sorted(accepted))}, "
            f"and the load options {', '.join(LOAD_KEYS)}"
        )


def load_model(resolved: ResolvedModel, options: LoadOptions, config: EngineConfig) -> SentenceTransformer:
    """Load a SentenceTransformer from a resolved location; runs on a worker thread."""
    from sentence_transformers import SentenceTransformer

    return sentence_models.load(
        SentenceTransformer, resolved, options, config, truncate_dim=options.truncate_dim
    )


def encode(model: SentenceTransformer, texts: list[str], options: EncodeOptions) -> list[list[float]]:
    """Embed ``texts`` in one call; float32 values whatever precision the model ran in."""
    import numpy as np

    check_model_kwargs(model, options)
    vectors = model.encode(texts, convert_to_numpy=True, show_progress_bar=False, **options.kwargs())
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != len(texts):
        raise InvalidArgument(f"the model returned embeddings of shape {array.shape} for {len(texts)} texts")
    return array.tolist()
