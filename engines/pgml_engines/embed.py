"""``pgml.embed`` with sentence-transformers semantics (contract §2.3).

The caller's kwargs are split in two: load options pick *which model copy* (they are part of the cache key, the
contract's fix of PostgresML's name-only cache), encode options say *how to run it* (they pick the batch queue:
only requests with identical encode options can share a model call). Both are made canonical and hashable here,
and checked before any model work, so a bad argument fails its own statement and never a shared batch.

Heavy imports (torch, sentence-transformers) happen inside the functions that run on worker threads.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from . import devices
from .cache import ModelKey as ModelKey  # embed's keys: ModelKey(name, LoadOptions, "embed")
from .config import EngineConfig
from .errors import InvalidArgument
from .resolve import ResolvedModel

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: kwargs that configure loading (contract §2.3); every other key goes to ``encode``.
LOAD_KEYS = (
    "device",
    "trust_remote_code",
    "revision",
    "model_kwargs",
    "tokenizer_kwargs",
    "config_kwargs",
    "truncate_dim",
    "token",
)

#: encode arguments the engine owns because they change the shape or location of the result it must return.
_RESERVED_ENCODE = frozenset(
    {"inputs", "sentences", "output_value", "convert_to_numpy", "convert_to_tensor", "pool", "chunk_size"}
)
#: accepted for compatibility and ignored: a progress bar has nowhere to go in a proxy.
_IGNORED_ENCODE = frozenset({"show_progress_bar"})
_PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
#: encode arguments every SentenceTransformer takes; others are checked against the loaded model.
_COMMON_ENCODE = frozenset({"prompt", "prompt_name", "batch_size", "normalize_embeddings", "precision"})
_DTYPE_KEYS = ("torch_dtype", "dtype")


@dataclass(frozen=True)
class LoadOptions:
    """The load options of one model copy. Dicts are kept as canonical JSON so the options hash.

    ``device`` is canonical (``cuda:0``, ``cpu``), or None when ``model_kwargs`` has a ``device_map`` that places
    the model itself.
    """

    device: str | None
    trust_remote_code: bool = False
    revision: str | None = None
    model_kwargs: str = "{}"
    tokenizer_kwargs: str = "{}"
    config_kwargs: str = "{}"
    truncate_dim: int | None = None
    # A secret (or True: the locally stored login): part of the key, never of a log line.
    token: str | bool | None = field(default=None, repr=False)


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
    model_kwargs = _json_object(raw, "model_kwargs")
    trust = raw.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        raise InvalidArgument(f"trust_remote_code must be a boolean, got {trust!r}")
    revision = _optional_str(raw, "revision")
    token = raw.get("token")
    if token is not None and not isinstance(token, str | bool):
        raise InvalidArgument("token must be a string or a boolean")
    truncate_dim = raw.get("truncate_dim")
    if truncate_dim is not None and (
        isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or truncate_dim < 1
    ):
        raise InvalidArgument(f"truncate_dim must be a positive integer, got {truncate_dim!r}")
    for key in _DTYPE_KEYS:
        if key in model_kwargs:
            _dtype(model_kwargs[key])  # validate early; converted when loading
    if "device_map" in model_kwargs and raw.get("device") is None:
        device = None
    else:
        device = devices.resolve_device(raw.get("device"))
    return LoadOptions(
        device=device,
        trust_remote_code=trust,
        revision=revision,
        model_kwargs=_canonical(model_kwargs),
        tokenizer_kwargs=_canonical(_json_object(raw, "tokenizer_kwargs")),
        config_kwargs=_canonical(_json_object(raw, "config_kwargs")),
        truncate_dim=truncate_dim,
        token=token,
    )


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
        if options.get(key) is not None and not isinstance(options[key], str):
            raise InvalidArgument(f"{key} must be a string, got {options[key]!r}")
    if "batch_size" in options:
        size = options["batch_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidArgument(f"batch_size must be a positive integer, got {size!r}")
    if "normalize_embeddings" in options and not isinstance(options["normalize_embeddings"], bool):
        raise InvalidArgument(
            f"normalize_embeddings must be a boolean, got {options['normalize_embeddings']!r}"
        )
    if "precision" in options and options["precision"] not in _PRECISIONS:
        raise InvalidArgument(
            f"precision must be one of {', '.join(_PRECISIONS)}, got {options['precision']!r}"
        )
    return EncodeOptions(_canonical(options))


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
    """Load a SentenceTransformer from a resolved location; runs on a worker thread.

    Nothing is downloaded unless resolution chose the hub (which it does only when the configuration allows).
    """
    from sentence_transformers import SentenceTransformer

    model_kwargs = json.loads(options.model_kwargs)
    for key in _DTYPE_KEYS:
        if key in model_kwargs:
            model_kwargs[key] = _dtype(model_kwargs[key])
    kwargs: dict[str, Any] = {
        "device": options.device,
        "trust_remote_code": options.trust_remote_code,
        "revision": options.revision,
        "local_files_only": resolved.source != "hub",
        "model_kwargs": model_kwargs or None,
        "config_kwargs": json.loads(options.config_kwargs) or None,
        "truncate_dim": options.truncate_dim,
    }
    tokenizer_kwargs = json.loads(options.tokenizer_kwargs)
    if tokenizer_kwargs:
        kwargs[_tokenizer_parameter()] = tokenizer_kwargs
    if options.token is not None:
        kwargs["token"] = options.token
    if resolved.source == "hub" and config.hf_cache_dir is not None:
        kwargs["cache_folder"] = str(config.hf_cache_dir)
    model = SentenceTransformer(resolved.path, **kwargs)
    model.eval()
    if (
        config.half_precision
        and options.device is not None
        and not any(k in model_kwargs for k in _DTYPE_KEYS)
    ):
        declared = next((p.dtype for p in model.parameters()), None)
        dtype = devices.half_dtype(options.device, declared)
        if dtype is not None and dtype != declared:
            model.to(dtype)
    return model


def encode(model: SentenceTransformer, texts: list[str], options: EncodeOptions) -> list[list[float]]:
    """Embed ``texts`` in one call; float32 values whatever precision the model ran in."""
    import numpy as np

    check_model_kwargs(model, options)
    vectors = model.encode(texts, convert_to_numpy=True, show_progress_bar=False, **options.kwargs())
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != len(texts):
        raise InvalidArgument(f"the model returned embeddings of shape {array.shape} for {len(texts)} texts")
    return array.tolist()


@cache
def _tokenizer_parameter() -> str:
    """sentence-transformers ≥ 5 renamed ``tokenizer_kwargs`` to ``processor_kwargs`` (the old name warns)."""
    from sentence_transformers import SentenceTransformer

    parameters = inspect.signature(SentenceTransformer.__init__).parameters
    return "processor_kwargs" if "processor_kwargs" in parameters else "tokenizer_kwargs"


def _dtype(value: Any) -> Any:
    import torch

    if value == "auto" or isinstance(value, torch.dtype):
        return value
    candidate = getattr(torch, value, None) if isinstance(value, str) else None
    if not isinstance(candidate, torch.dtype):
        raise InvalidArgument(
            f"unknown torch dtype {value!r}; use e.g. 'float32', 'float16', 'bfloat16' or 'auto'"
        )
    return candidate


def _json_object(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{key} must be a JSON object, got {value!r}")
    return dict(value)


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{key} must be a string, got {value!r}")
    return value


def _canonical(value: Mapping[str, Any]) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"embed kwargs must be plain JSON values: {exc}") from None
