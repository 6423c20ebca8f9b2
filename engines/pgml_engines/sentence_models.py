"""Loading sentence-transformers models: ``SentenceTransformer`` for embed, ``CrossEncoder`` for rank.

Both classes take the same load options (contract §2.3), so they are checked and applied here once. Load options
pick *which model copy* (they are part of the cache key, the contract's fix of PostgresML's name-only cache), so
they are made canonical and hashable, and checked before any model work. Each function adds one option of its own:
embed's ``truncate_dim``, rank's ``max_length``.

Heavy imports (torch, sentence-transformers) happen inside the functions that run on worker threads.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Self, TypeVar

from . import arguments, devices
from .config import EngineConfig
from .resolve import ResolvedModel

#: Load options both classes take; embed and rank each add their own.
LOAD_KEYS = (
    "device",
    "trust_remote_code",
    "revision",
    "model_kwargs",
    "tokenizer_kwargs",
    "config_kwargs",
    "token",
)
_DTYPE_KEYS = ("torch_dtype", "dtype")

M = TypeVar("M")


@dataclass(frozen=True)
class SentenceModelOptions:
    """The load options of one sentence-transformers model copy. Dicts are kept as canonical JSON so the options
    hash.

    ``device`` is canonical (``cuda:0``, ``cpu``), or None when ``model_kwargs`` has a ``device_map`` that places
    the model itself.
    """

    device: str | None
    trust_remote_code: bool = False
    revision: str | None = None
    model_kwargs: str = "{}"
    tokenizer_kwargs: str = "{}"
    config_kwargs: str = "{}"
    # A secret (or True: the locally stored login): part of the key, never of a log line.
    token: str | bool | None = field(default=None, repr=False)

    @classmethod
    def check(cls, raw: Mapping[str, Any], what: str, **own: Any) -> Self:
        """Check the shared load options and make them canonical (the device is resolved here: it is part of the
        key); ``own`` are the subclass's options, already checked, and ``what`` names the kwargs in errors."""
        model_kwargs = arguments.json_object(raw, "model_kwargs")
        for key in _DTYPE_KEYS:
            if key in model_kwargs:
                arguments.check_dtype(model_kwargs[key])
        if "device_map" in model_kwargs and raw.get("device") is None:
            device = None
        else:
            device = devices.resolve_device(raw.get("device"))
        return cls(
            device=device,
            trust_remote_code=arguments.flag(raw, "trust_remote_code"),
            revision=arguments.optional_str(raw, "revision"),
            model_kwargs=arguments.canonical_json(model_kwargs, what),
            tokenizer_kwargs=arguments.canonical_json(arguments.json_object(raw, "tokenizer_kwargs"), what),
            config_kwargs=arguments.canonical_json(arguments.json_object(raw, "config_kwargs"), what),
            token=arguments.token(raw.get("token")),
            **own,
        )


def load(
    model_class: Callable[..., M],
    resolved: ResolvedModel,
    options: SentenceModelOptions,
    config: EngineConfig,
    **own: Any,
) -> M:
    """Make ``model_class`` from a resolved location; runs on a worker thread. ``own`` are the class's own
    arguments (``truncate_dim``, ``max_length``).

    Nothing is downloaded unless resolution chose the hub (which it does only when the configuration allows). On
    CUDA the model runs in half precision (:func:`devices.half_dtype`) unless the caller gave a dtype.
    """
    model_kwargs = json.loads(options.model_kwargs)
    for key in _DTYPE_KEYS:
        if key in model_kwargs:
            model_kwargs[key] = arguments.torch_dtype(model_kwargs[key])
    kwargs: dict[str, Any] = {
        "device": options.device,
        "trust_remote_code": options.trust_remote_code,
        "revision": options.revision,
        "local_files_only": resolved.source != "hub",
        "model_kwargs": model_kwargs or None,
        "config_kwargs": json.loads(options.config_kwargs) or None,
        **own,
    }
    tokenizer_kwargs = json.loads(options.tokenizer_kwargs)
    if tokenizer_kwargs:
        kwargs[_tokenizer_parameter()] = tokenizer_kwargs
    if options.token is not None:
        kwargs["token"] = options.token
    if resolved.source == "hub" and config.hf_cache_dir is not None:
        kwargs["cache_folder"] = str(config.hf_cache_dir)
    model: Any = model_class(resolved.path, **kwargs)
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


@cache
def _tokenizer_parameter() -> str:
    """sentence-transformers ≥ 5 renamed ``tokenizer_kwargs`` to ``processor_kwargs`` (the old name warns)."""
    from sentence_transformers import SentenceTransformer

    parameters = inspect.signature(SentenceTransformer.__init__).parameters
    return "processor_kwargs" if "processor_kwargs" in parameters else "tokenizer_kwargs"
