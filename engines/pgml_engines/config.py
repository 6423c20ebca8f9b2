"""Engine configuration: the security and sizing knobs that only the proxy's operator may set.

Frozen, because one Engine serves every session of a process: a session may narrow these settings at its own
layer but can never widen them by mutating the shared object (DESIGN §5).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

#: In ``trust_remote_code_models``, this entry trusts every model (PostgresML's
#: ``pgml.huggingface_trust_remote_code = on`` with an empty whitelist).
TRUST_ALL = "*"
#: In ``devices``, the entry for every model not named.
ALL_MODELS = "*"


@dataclass(frozen=True)
class EngineConfig:
    """How the engine finds, trusts, keeps and batches models.

    aliases: model name → local path or another model name, tried before anything else.
    search_dirs: directories holding model folders (``<dir>/<name>``), tried after the name as a path itself.
    hf_cache_dir: the Hugging Face hub cache to read (``None``: huggingface_hub's default location).
    allow_downloads: whether a model missing everywhere else may be fetched from the hub (off: offline).
    trust_remote_code_models: names allowed to run a model repository's own code; ``"*"`` allows all.
    memory_budget_bytes: parameters and buffers of the loaded models kept at most (least recently used go
        first; a single model bigger than the budget is still loaded, alone); ``None``: no limit.
    max_batch_size: texts that one model call takes at most (a single larger request still runs whole).
    max_batch_wait_s: how long the first request of a batch waits for others to join it.
    half_precision: on CUDA, run models in fp16/bf16 unless the caller chose a dtype.
    allowed_models: the model names sessions may use for embed, rank and transform (PostgresML's
        ``pgml.huggingface_whitelist``); ``None`` allows every model.
    max_concurrent_generations: streamed generations that may run at once on one model copy (each has its own
        thread; further streams wait for a slot, cancellably).
    devices: model name → the device it runs on when a call names none (``"*"``: every other model); a call's
        own ``device`` still wins, and the device must exist on this host when the model is used.
    max_concurrent_trainings: training and tuning jobs running at once (more wait, cancellably); ``None``: one
        per CPU core.
    """

    aliases: Mapping[str, str] = field(default_factory=dict)
    search_dirs: tuple[Path, ...] = ()
    hf_cache_dir: Path | None = None
    allow_downloads: bool = False
    # A model name may be a filesystem path. Off by default: any SQL user could otherwise load any
    # directory on the proxy host; aliases and search_dirs are the configured ways to name local models.
    allow_model_paths: bool = False
    trust_remote_code_models: frozenset[str] = frozenset()
    memory_budget_bytes: int | None = 8 * 1024**3
    max_batch_size: int = 64
    max_batch_wait_s: float = 0.002
    half_precision: bool = True
    allowed_models: frozenset[str] | None = None
    max_concurrent_generations: int = 4
    devices: Mapping[str, str] = field(default_factory=dict)
    max_concurrent_trainings: int | None = None

    def __post_init__(self) -> None:
        # Normalise what callers naturally pass (dict, list of str) into immutable forms, so the frozen promise
        # also covers the contents.
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))
        object.__setattr__(self, "devices", MappingProxyType(dict(self.devices)))
        object.__setattr__(self, "search_dirs", tuple(_path(d) for d in self.search_dirs))
        if self.hf_cache_dir is not None:
            object.__setattr__(self, "hf_cache_dir", _path(self.hf_cache_dir))
        object.__setattr__(self, "trust_remote_code_models", frozenset(self.trust_remote_code_models))
        if self.allowed_models is not None:
            object.__setattr__(self, "allowed_models", frozenset(self.allowed_models))
        if self.memory_budget_bytes is not None and self.memory_budget_bytes < 0:
            raise ValueError("memory_budget_bytes must be >= 0 or None")
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if self.max_batch_wait_s < 0:
            raise ValueError("max_batch_wait_s must be >= 0")
        if self.max_concurrent_generations < 1:
            raise ValueError("max_concurrent_generations must be >= 1")
        if self.max_concurrent_trainings is not None and self.max_concurrent_trainings < 1:
            raise ValueError("max_concurrent_trainings must be >= 1 or None")

    def trusts_remote_code(self, names: Iterable[str]) -> bool:
        """Whether any of ``names`` (a requested name and the alias targets it goes through) is trusted."""
        return TRUST_ALL in self.trust_remote_code_models or any(
            n in self.trust_remote_code_models for n in names
        )

    def device_for(self, names: Iterable[str]) -> str | None:
        """The configured device of a model: the requested name's, else an alias target's on its way, else the
        ``"*"`` entry's; None when none is configured (the engine's default then applies)."""
        return next((self.devices[n] for n in names if n in self.devices), self.devices.get(ALL_MODELS))

    def allows_model(self, names: Iterable[str]) -> bool:
        """Whether the allowed-models list admits a model: the requested name or an alias target on its way."""
        return self.allowed_models is None or any(n in self.allowed_models for n in names)


def _path(value: str | os.PathLike[str]) -> Path:
    return Path(value).expanduser()
