"""``pgml.rank``: cross-encoder re-ranking with sentence-transformers ``CrossEncoder.rank`` semantics (§2.3, §5.4).

kwargs are split as for embed: load options pick the model copy (part of its cache key), the rest are rank
arguments. Scoring is what batches across sessions (every request's (query, document) pairs go through one
``predict`` call); ordering, ``top_k`` and ``return_documents`` are applied per request afterwards, exactly as
``CrossEncoder.rank`` does (stable sort by score, descending, then the first ``top_k``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import devices
from .config import EngineConfig
from .embed import _tokenizer_parameter
from .errors import InvalidArgument
from .resolve import ResolvedModel
from .tasks import canonical_json, check_dtype

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

LOAD_KEYS = (
    "device",
    "trust_remote_code",
    "revision",
    "model_kwargs",
    "tokenizer_kwargs",
    "config_kwargs",
    "max_length",
    "token",
)
#: Arguments applied per request after scoring.
_RESULT_KEYS = ("top_k", "return_documents")
#: Arguments of the shared predict call (they pick the batch queue).
_PREDICT_KEYS = ("batch_size", "prompt", "prompt_name")
_IGNORED_KEYS = frozenset({"show_progress_bar"})


@dataclass(frozen=True)
class CrossEncoderOptions:
    """Load options of one cross-encoder copy; dicts as canonical JSON so the options hash."""

    device: str | None
    trust_remote_code: bool = False
    revision: str | None = None
    model_kwargs: str = "{}"
    tokenizer_kwargs: str = "{}"
    config_kwargs: str = "{}"
    max_length: int | None = None
    token: str | bool | None = field(default=None, repr=False)


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
    return _load_options(kwargs), _rank_options(kwargs)


def _load_options(raw: Mapping[str, Any]) -> CrossEncoderOptions:
    trust = raw.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        raise InvalidArgument(f"trust_remote_code must be a boolean, got {trust!r}")
    revision = raw.get("revision")
    if revision is not None and not isinstance(revision, str):
        raise InvalidArgument(f"revision must be a string, got {revision!r}")
    token = raw.get("token")
    if token is not None and not isinstance(token, str | bool):
        raise InvalidArgument("token must be a string or a boolean")
    max_length = raw.get("max_length")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise InvalidArgument(f"max_length must be a positive integer, got {max_length!r}")
    objects = {}
    for key in ("model_kwargs", "tokenizer_kwargs", "config_kwargs"):
        value = raw.get(key) or {}
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"{key} must be a JSON object, got {value!r}")
        objects[key] = dict(value)
    for key in ("torch_dtype", "dtype"):
        if key in objects["model_kwargs"]:
            check_dtype(objects["model_kwargs"][key])
    if "device_map" in objects["model_kwargs"] and raw.get("device") is None:
        device = None
    else:
        device = devices.resolve_device(raw.get("device"))
    return CrossEncoderOptions(
        device=device,
        trust_remote_code=trust,
        revision=revision,
        model_kwargs=canonical_json(objects["model_kwargs"]),
        tokenizer_kwargs=canonical_json(objects["tokenizer_kwargs"]),
        config_kwargs=canonical_json(objects["config_kwargs"]),
        max_length=max_length,
        token=token,
    )


def _rank_options(raw: Mapping[str, Any]) -> RankOptions:
    top_k = raw.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InvalidArgument(f"top_k must be a positive integer, got {top_k!r}")
    return_documents = raw.get("return_documents", False)
    if not isinstance(return_documents, bool):
        raise InvalidArgument(f"return_documents must be a boolean, got {return_documents!r}")
    predict = {key: raw[key] for key in _PREDICT_KEYS if key in raw}
    size = predict.get("batch_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InvalidArgument(f"batch_size must be a positive integer, got {size!r}")
    for key in ("prompt", "prompt_name"):
        if predict.get(key) is not None and not isinstance(predict[key], str):
            raise InvalidArgument(f"{key} must be a string, got {predict[key]!r}")
    return RankOptions(canonical_json(predict), top_k, return_documents)


def check_documents(query: Any, documents: Any) -> list[str]:
    if not isinstance(query, str):
        raise InvalidArgument(f"rank query must be text, got {type(query).__name__}")
    if isinstance(documents, str) or not isinstance(documents, Sequence):
        raise InvalidArgument("rank documents must be an array of text")
    checked = list(documents)
    for position, document in enumerate(checked, 1):
        if not isinstance(document, str):
            raise InvalidArgument(f"rank document {position} must be text, got {type(document).__name__}")
    return checked


def load_model(resolved: ResolvedModel, options: CrossEncoderOptions, config: EngineConfig) -> CrossEncoder:
    """Load a CrossEncoder from a resolved location; runs on a worker thread."""
    import torch
    from sentence_transformers import CrossEncoder

    model_kwargs = json.loads(options.model_kwargs)
    for key in ("torch_dtype", "dtype"):
        if isinstance(model_kwargs.get(key), str) and model_kwargs[key] != "auto":
            model_kwargs[key] = getattr(torch, model_kwargs[key].removeprefix("torch."))
    kwargs: dict[str, Any] = {
        "device": options.device,
        "trust_remote_code": options.trust_remote_code,
        "revision": options.revision,
        "local_files_only": resolved.source != "hub",
        "model_kwargs": model_kwargs or None,
        "config_kwargs": json.loads(options.config_kwargs) or None,
        "max_length": options.max_length,
    }
    tokenizer_kwargs = json.loads(options.tokenizer_kwargs)
    if tokenizer_kwargs:
        kwargs[_tokenizer_parameter()] = tokenizer_kwargs
    if options.token is not None:
        kwargs["token"] = options.token
    if resolved.source == "hub" and config.hf_cache_dir is not None:
        kwargs["cache_folder"] = str(config.hf_cache_dir)
    model = CrossEncoder(resolved.path, **kwargs)
    model.eval()
    if (
        config.half_precision
        and options.device is not None
        and not any(k in model_kwargs for k in ("torch_dtype", "dtype"))
    ):
        declared = next((p.dtype for p in model.parameters()), None)
        dtype = devices.half_dtype(options.device, declared)
        if dtype is not None and dtype != declared:
            model.to(dtype)
    return model


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
