"""Checks that every pgml function's kwargs share: each takes one caller value to its checked, canonical form or
raises InvalidArgument naming it.

They run on the event loop before anything is queued, so a bad argument fails its own statement and never a batch
shared with other sessions. Canonical forms hash (dicts become canonical JSON) because options pick a model copy
(part of its cache key) or a batch queue.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidArgument


def canonical_json(value: Any, what: str) -> str:
    """``value`` as canonical JSON (sorted keys, no spaces): equal options, equal text, equal hash.

    ``what`` names the arguments in the error (``embed kwargs``, ``transform arguments``).
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{what} must be plain JSON values: {exc}") from None


def json_object(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``raw[key]`` as a dict; absent or null is an empty one."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{key} must be a JSON object, got {value!r}")
    return dict(value)


def flag(raw: Mapping[str, Any], key: str) -> bool:
    """``raw[key]`` as a boolean, False when absent (a null given is refused, not taken as False)."""
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"{key} must be a boolean, got {value!r}")
    return value


def optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{key} must be a string, got {value!r}")
    return value


def positive_int(raw: Mapping[str, Any], key: str) -> int:
    """``raw[key]``, which must be there and be an integer >= 1 (a boolean is not one, though Python says so)."""
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{key} must be a positive integer, got {value!r}")
    return value


def optional_positive_int(raw: Mapping[str, Any], key: str) -> int | None:
    """:func:`positive_int`, or None when ``key`` is absent or null."""
    return None if raw.get(key) is None else positive_int(raw, key)


def token(value: Any) -> str | bool | None:
    """A Hugging Face token: the secret itself, or True for the locally stored login. Never echoed in errors."""
    if value is not None and not isinstance(value, str | bool):
        raise InvalidArgument("token must be a string or a boolean")
    return value


def check_dtype(value: Any) -> None:
    """Refuse a dtype name torch does not have (converted by :func:`torch_dtype` when loading, on the worker
    thread)."""
    if value == "auto":
        return
    if not isinstance(value, str) or not re.fullmatch(r"(torch\.)?[a-z0-9_]+", value):
        raise InvalidArgument(
            f"unknown torch dtype {value!r}; use e.g. 'float32', 'float16', 'bfloat16' or 'auto'"
        )
    import torch  # already imported by the Engine at startup

    if not isinstance(getattr(torch, value.removeprefix("torch."), None), torch.dtype):
        raise InvalidArgument(
            f"unknown torch dtype {value!r}; use e.g. 'float32', 'float16', 'bfloat16' or 'auto'"
        )


def torch_dtype(value: Any) -> Any:
    """The torch dtype a checked name (or a model config's ``dtype``) stands for; ``auto`` stays as it is."""
    import torch

    if value == "auto" or isinstance(value, torch.dtype):
        return value
    return getattr(torch, str(value).removeprefix("torch."))


def text_array(values: Any, item: str) -> list[str]:
    """``values`` as a list of strings; ``item`` names one of them in errors (``embed input``, numbered from 1)."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidArgument(f"{item}s must be an array of text")
    checked = list(values)
    for position, value in enumerate(checked, 1):
        if not isinstance(value, str):
            raise InvalidArgument(f"{item} {position} must be text, got {type(value).__name__}")
    return checked
