"""Model resolution: turn the name a user wrote in SQL into a directory that can be loaded without a network.

Order (DESIGN §5): configured alias → local directory → model shipped in an installed Python package → Hugging
Face cache → the hub, only when downloads are allowed. Offline is the default, so a missing model fails fast with
every place it was looked for, instead of hanging on a download in the middle of a statement.

This module only looks at the file system and package metadata; it never imports torch or a model library.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .config import EngineConfig
from .errors import InvalidArgument, ModelNotFound

Source = Literal["local", "package", "hf-cache", "hub"]

#: Files that mark a directory as a loadable model (transformers' config, sentence-transformers' module list).
MODEL_MARKERS = ("modules.json", "config.json")
_PACKAGE_SCAN_DEPTH = 4
_MAX_ALIAS_HOPS = 16


@dataclass(frozen=True)
class ResolvedModel:
    """Where a requested model lives: ``path`` is a local directory, or the hub repo id when ``source == 'hub'``.

    ``via`` is the chain of names followed through aliases, starting with the requested one; it is what the
    remote-code policy checks, so trusting an alias's target also trusts the alias.
    """

    name: str
    path: str
    source: Source
    via: tuple[str, ...]


@dataclass(frozen=True)
class AvailableModel:
    """A model the resolver can find without a network: ``name`` is what SQL may call it, ``path`` its folder
    (for an alias: the name it stands for), ``source`` where it was found (``alias`` for aliases)."""

    name: str
    source: Source | Literal["alias"]
    path: str


class ModelResolver:
    """Resolves model names for one engine configuration; safe to share between threads."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._top_level: dict[str, list[str]] | None = None

    def alias_chain(self, name: str) -> tuple[str, ...]:
        """The names ``name`` passes through in the alias table, itself first; a cycle is a configuration error."""
        chain = [name]
        aliases = self._config.aliases
        while chain[-1] in aliases:
            target = aliases[chain[-1]]
            if target in chain or len(chain) > _MAX_ALIAS_HOPS:
                raise InvalidArgument(f"model alias loop in configuration: {' -> '.join([*chain, target])}")
            chain.append(target)
        return tuple(chain)

    def resolve(self, name: str, *, revision: str | None = None) -> ResolvedModel:
        """Find ``name`` or raise :class:`ModelNotFound` naming every place searched.

        ``revision`` selects a snapshot in the Hugging Face cache; local and packaged models have only one.
        """
        if not name or not name.strip():
            raise InvalidArgument("model name must not be empty")
        chain = self.alias_chain(name)
        target = chain[-1]
        searched: list[str] = []
        if len(chain) > 1:
            searched.append(f"alias {' -> '.join(chain)}")
        else:
            searched.append("configured aliases (none for this name)")

        # A path is taken as given only when the configuration chose it (an alias) or allows paths.
        local = self._find_local(target, searched, as_path=len(chain) > 1 or self._config.allow_model_paths)
        if local is not None:
            return ResolvedModel(name, str(local), "local", chain)
        package = self._find_in_packages(target, searched)
        if package is not None:
            return ResolvedModel(name, str(package), "package", chain)
        cached = self._find_in_hf_cache(target, revision, searched)
        if cached is not None:
            return ResolvedModel(name, cached, "hf-cache", chain)
        if self._config.allow_downloads and _looks_like_repo_id(target):
            # sentence-transformers downloads only the files it needs into the same cache, which is cheaper
            # than snapshotting the whole repository (ONNX and OpenVINO copies included) here.
            return ResolvedModel(name, target, "hub", chain)
        searched.append(
            "the Hugging Face hub (downloads are allowed, but this is not a repo id)"
            if self._config.allow_downloads
            else "the Hugging Face hub: not tried, downloads are disabled in the configuration"
        )
        raise ModelNotFound(name, searched)

    def available(self) -> list[AvailableModel]:
        """Every model found without a network, in resolution order: aliases, local folders, models shipped in
        installed packages, the Hugging Face cache (a name found in several places resolves to the first)."""
        found = [
            AvailableModel(name, "alias", target) for name, target in sorted(self._config.aliases.items())
        ]
        for directory in self._config.search_dirs:
            if directory.is_dir():
                found += [
                    AvailableModel(child.name, "local", str(child.resolve()))
                    for child in sorted(directory.iterdir())
                    if _is_model_dir(child)
                ]
        found += [AvailableModel(package, "package", str(path)) for package, path in _packaged_models()]
        found += [AvailableModel(repo, "hf-cache", path) for repo, path in self._cached_repos()]
        return found

    def _cached_repos(self) -> list[tuple[str, str]]:
        from huggingface_hub import constants, scan_cache_dir

        cache_dir = self._config.hf_cache_dir or Path(constants.HF_HUB_CACHE)
        try:
            info = scan_cache_dir(cache_dir)
        except Exception:  # no cache yet, or one that is not a hub cache
            return []
        models = []
        for repo in sorted(info.repos, key=lambda r: r.repo_id):
            newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
            if repo.repo_type == "model" and newest is not None and _is_model_dir(newest.snapshot_path):
                models.append((repo.repo_id, str(newest.snapshot_path)))
        return models

    # --- the steps -----------------------------------------------------------------------------------------

    def _find_local(self, target: str, searched: list[str], *, as_path: bool) -> Path | None:
        candidates = [Path(target).expanduser()] if as_path else []
        relative = Path(target)
        if not relative.is_absolute() and ".." not in relative.parts:
            candidates += [directory / relative for directory in self._config.search_dirs]
        for candidate in candidates:
            searched.append(f"directory {candidate.absolute()}")
            if _is_model_dir(candidate):
                return candidate.resolve()
        return None

    def _find_in_packages(self, target: str, searched: list[str]) -> Path | None:
        wanted = normalise(target.rstrip("/").rsplit("/", 1)[-1])
        if not wanted:
            return None
        names = self._package_candidates(target, wanted)
        searched.append(
            f"installed Python packages named {wanted!r} or '*_{wanted}'"
            + (f" (found {', '.join(names)}, none holding a model)" if names else "")
        )
        for package in names:
            for location in _package_locations(package):
                found = _first_model_dir(location)
                if found is not None:
                    return found
        return None

    def _package_candidates(self, target: str, wanted: str) -> list[str]:
        """Top-level import names that may ship ``target``; the ones naming its organisation too come first, so
        two packages of the same model basename from different organisations resolve predictably."""
        with self._lock:
            if self._top_level is None:
                # Read once per resolver: scanning every installed distribution's metadata is not free.
                self._top_level = importlib.metadata.packages_distributions()
            top_level = self._top_level
        suffix = "_" + wanted
        matches = sorted(
            name
            for name in top_level
            if name.isidentifier() and (name.lower() == wanted or name.lower().endswith(suffix))
        )
        full = normalise(target)
        return sorted(matches, key=lambda n: (not n.lower().endswith(full), n))

    def _find_in_hf_cache(self, target: str, revision: str | None, searched: list[str]) -> str | None:
        from huggingface_hub import constants, snapshot_download

        cache_dir = self._config.hf_cache_dir or Path(constants.HF_HUB_CACHE)
        searched.append(f"the Hugging Face cache {cache_dir}")
        if not _looks_like_repo_id(target):
            return None
        try:
            path = snapshot_download(target, revision=revision, cache_dir=cache_dir, local_files_only=True)
        except Exception:  # LocalEntryNotFoundError, an invalid repo id, a half-written cache entry
            return None
        return str(path) if isinstance(path, str) and _is_model_dir(Path(path)) else None


def normalise(name: str) -> str:
    """``all-MiniLM-L6-v2`` → ``all_minilm_l6_v2``: how a Python package spells a model's name."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _is_model_dir(path: Path) -> bool:
    try:
        return path.is_dir() and any((path / marker).is_file() for marker in MODEL_MARKERS)
    except OSError:  # a name too long for the file system, permissions
        return False


def _looks_like_repo_id(name: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name)) and ".." not in name


def _package_locations(package: str) -> Iterator[Path]:
    """Directories of a top-level package, found without importing (and so without running) it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    for location in spec.submodule_search_locations:
        yield Path(location)


def _packaged_models() -> list[tuple[str, Path]]:
    """(top-level package, model folder) of installed distributions that ship a model with its weights, read
    from their file lists (nothing is imported)."""
    found: dict[str, Path] = {}
    for distribution in importlib.metadata.distributions():
        for file in distribution.files or ():
            parts = file.parts
            if len(parts) > _PACKAGE_SCAN_DEPTH + 2 or file.name not in MODEL_MARKERS or parts[0] in found:
                continue
            if parts[0].isidentifier():
                for location in _package_locations(parts[0]):
                    model = _first_model_dir(location)
                    if model is not None and any(model.glob(pattern) for pattern in _WEIGHT_FILES):
                        found[parts[0]] = model
    return sorted(found.items())


_WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.onnx")


def _first_model_dir(root: Path) -> Path | None:
    """The shallowest directory under ``root`` that looks like a model, preferring a sentence-transformers one."""
    best: tuple[int, int, str] | None = None
    for directory, subdirs, files in os.walk(root):
        depth = len(Path(directory).relative_to(root).parts)
        subdirs[:] = [] if depth >= _PACKAGE_SCAN_DEPTH else sorted(d for d in subdirs if d != "__pycache__")
        rank = next((i for i, marker in enumerate(MODEL_MARKERS) if marker in files), None)
        if rank is not None:
            key = (depth, rank, directory)
            best = key if best is None or key < best else best
    return Path(best[2]) if best is not None else None
