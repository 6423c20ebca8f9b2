"""``pgml.rank``: cross-encoder re-ranking with sentence-transformers ``CrossEncoder.rank`` semantics (§2.3, §5.4).

kwargs are split as for embed: load options pick the model copy (part of its cache key), the rest are rank
arguments. Scoring is what batches across sessions (every request's (query, document) pairs go through one
``predict`` call); ordering, ``top_k`` and ``return_documents`` are applied per request afterwards, exactly as
``CrossEncoder.rank`` does (stable sort by score, descending, then the first ``top_k``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import arguments, sentence_models
from .config import EngineConfig
from .errors import InvalidArgument
from .resolve import ResolvedModel

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

LOAD_KEYS = (*sentence_models.LOAD_KEYS, "max_length")
#: Arguments applied per request after scoring.
_RESULT_KEYS = ("top_k", "return_documents")
#: Arguments of the shared predict call (they pick the batch queue).
_PREDICT_KEYS = ("batch_size", "prompt", "prompt_name")
_IGNORED_KEYS = frozenset({"show_progress_bar"})
#: How error messages name this function's arguments.
_WHAT = "rank kwargs"


@dataclass(frozen=True)
class CrossEncoderOptions(sentence_models.SentenceModelOptions):
    """The load options of one cross-encoder copy: the shared ones, and the tokens it reads of a pair at most."""

    max_length: int | None = None


@dataclass(frozen=True)
class RankOptions:
    """A rank request's arguments: ``predict`` (canonical JSON, the batch queue) and the per-request part."""

    predict: str = "{}"
    top_k: int | None = None
    return_documents: bool = False


def split_kwargs(kwargs: Mapping[str, Any] | None) -> tuple[CrossEncoderOptions, RankOptions]:
    """Check rank kwargs and split them into load options and rank options."""
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise InvalidArgument(f"rank kwargs must be a JSON object, got {type(kwargs).__name__}")
    known = {*LOAD_KEYS, *_RESULT_KEYS, *_PREDICT_KEYS, *_IGNORED_KEYS}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise InvalidArgument(
            f"unknown rank argument(s) {', '.join(unknown)}; rank accepts {', '.join(_RESULT_KEYS + _PREDICT_KEYS)} "
            f"and the load options {', '.join(LOAD_KEYS)}"
        )
    max_length = arguments.optional_positive_int(kwargs, "max_length")
    return CrossEncoderOptions.check(kwargs, _WHAT, max_length=max_length), _rank_options(kwargs)


def _rank_options(raw: Mapping[str, Any]) -> RankOptions:
    top_k = arguments.optional_positive_int(raw, "top_k")
    return_documents = arguments.flag(raw, "return_documents")
    predict = {key: raw[key] for key in _PREDICT_KEYS if key in raw}
    arguments.optional_positive_int(predict, "batch_size")
    for key in ("prompt", "prompt_name"):
        arguments.optional_str(predict, key)
    return RankOptions(arguments.canonical_json(predict, _WHAT), top_k, return_documents)


def check_documents(query: Any, documents: Any) -> list[str]:
    if not isinstance(query, str):
        raise InvalidArgument(f"rank query must be text, got {type(query).__name__}")
    return arguments.text_array(documents, "rank document")


def load_model(resolved: ResolvedModel, options: CrossEncoderOptions, config: EngineConfig) -> CrossEncoder:
    """Load a CrossEncoder from a resolved location; runs on a worker thread."""
    from sentence_transformers import CrossEncoder

    return sentence_models.load(CrossEncoder, resolved, options, config, max_length=options.max_length)


def score(model: CrossEncoder, pairs: list[tuple[str, str]], predict: str) -> list[float]:
    """One predict call for the (query, document) pairs of a whole batch."""
    import numpy as np

    if getattr(model, "num_labels", 1) != 1:
        raise InvalidArgument(
            f"rank needs a cross-encoder with one output (num_labels = 1); this model has {model.num_labels}"
        )
    scores = model.predict(
        [list(pair) for pair in pairs], convert_to_numpy=True, show_progress_bar=False, **json.loads(predict)
    )
    return np.asarray(scores, dtype=np.float64).reshape(-1).tolist()


def order(
    scores: Sequence[float], documents: Sequence[str], options: RankOptions
) -> list[tuple[int, float, str | None]]:
    """CrossEncoder.rank's result for one request: stable sort by score, descending; the first top_k."""
    rows = [(i, float(s), documents[i] if options.return_documents else None) for i, s in enumerate(scores)]
    rows = sorted(rows, key=lambda row: row[1], reverse=True)
    return rows[: options.top_k]
