"""Devices: where a model runs and in which precision.

CUDA when this host has it, CPU otherwise; a caller's ``device`` kwarg may choose, but only among devices that
exist here, so a typo fails the statement with a clear message instead of failing deep inside torch. Device
names are canonicalised (``cuda`` → ``cuda:0``) because they are part of the model cache key: two spellings of
the same GPU must share one model copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InvalidArgument

if TYPE_CHECKING:
    import torch


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def default_device() -> str:
    """The contract's rule when the caller names no device: a GPU when present, else the CPU."""
    return resolve_device(None)


def resolve_device(requested: str | None) -> str:
    """Canonical name of the device to run on; raises InvalidArgument for devices this host does not have."""
    import torch

    if requested is None:
        return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    if not isinstance(requested, str):
        raise InvalidArgument(f"device must be a string such as 'cpu' or 'cuda:0', got {requested!r}")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError) as exc:
        raise InvalidArgument(f"unknown device {requested!r}: {exc}") from None
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgument(f"device {requested!r} requested, but CUDA is not available on this host")
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise InvalidArgument(
                f"device {requested!r} requested, but this host has {torch.cuda.device_count()} CUDA device(s)"
            )
        return f"cuda:{index}"
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidArgument(f"device {requested!r} requested, but MPS is not available on this host")
        return "mps"
    raise InvalidArgument(f"device {requested!r} is not supported; use 'cpu' or 'cuda[:N]'")


def half_dtype(device: str, declared: torch.dtype | None) -> torch.dtype | None:
    """The reduced precision to run an embedding model in on ``device``, or None to keep its weights as loaded.

    Encoder-only embedding models tolerate fp16 well (sentence-transformers recommends it on GPU); a model whose
    weights were published in bf16 keeps bf16, whose range fp16 cannot hold. Only CUDA gains from it: on the CPU
    half precision is slower and less exact.
    """
    import torch

    if not device.startswith("cuda"):
        return None
    if declared == torch.bfloat16 and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
