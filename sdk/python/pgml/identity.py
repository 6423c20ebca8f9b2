"""A document's identity and version as the upstream SDK computes them (contract §4.6), byte for byte, so that a
collection written by either SDK is updated in place by the other.

The upstream serialises with serde_json: compact, object keys sorted, non-ASCII kept, floats written by ryu.
Python's ``json`` agrees on everything but floats, which :func:`_float_text` rewrites.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from typing import Any

from .errors import ValidationError


def _float_text(value: float) -> str:
    """A float the way ryu (serde_json) writes it: Python's shortest digits, ryu's layout."""
    text = repr(abs(value))
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0") or "0"
    # kk: the position of the decimal point relative to the first significant digit (10^(kk-1) <= v < 10^kk).
    point = len(whole) + int(exponent or 0)
    leading_zeros = len(whole + fraction) - len((whole + fraction).lstrip("0"))
    kk = point - leading_zeros
    digits = digits.rstrip("0") or "0"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if digits == "0":
        return f"{sign}0.0"
    length = len(digits)
    if length <= kk <= 16:
        body = digits + "0" * (kk - length) + ".0"
    elif 0 < kk <= 16:
        body = f"{digits[:kk]}.{digits[kk:]}"
    elif -5 < kk <= 0:
        body = "0." + "0" * -kk + digits
    elif length == 1:
        body = f"{digits}e{kk - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + body


def compact_json(value: Any) -> str:
    """serde_json's ``to_string`` of a JSON value; text that is not valid Unicode (lone surrogates) is refused."""
    text = _compact(value)
    try:
        text.encode()
    except UnicodeEncodeError as error:
        raise ValidationError(f"documents hold valid Unicode text only: {error}") from error
    return text


def _compact(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"documents hold JSON numbers only, got {value!r}")
        return _float_text(value)
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValidationError(f"document object keys must be strings, got {sorted(map(repr, value))}")
        items = sorted(value.items())
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_compact(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_compact(item) for item in value) + "]"
    raise ValidationError(f"documents hold JSON values only, got {type(value).__name__}")


def source_uuid(document_id: Any) -> uuid.UUID:
    """The md5 of the id's compact JSON, its 16 bytes used as they are (not a version-3 UUID)."""
    return uuid.UUID(bytes=hashlib.md5(compact_json(document_id).encode()).digest())


def version(document: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """Per top-level key: when it was written and the md5 of its compact JSON."""
    return {
        key: {"last_updated": now_ms, "md5": hashlib.md5(compact_json(value).encode()).hexdigest()}
        for key, value in document.items()
    }
