"""ErrorResponse and NoticeResponse: a list of (field code, string) pairs."""

from __future__ import annotations

from typing import Final

from pgml_proxy.errors import ProxyError
from pgml_proxy.wire.codes import ERROR_RESPONSE
from pgml_proxy.wire.framing import cstring, message, read_cstring

SEVERITY: Final = "S"
SEVERITY_NONLOCALIZED: Final = "V"
SQLSTATE: Final = "C"
MESSAGE: Final = "M"
DETAIL: Final = "D"
HINT: Final = "H"


def encode_fields(kind: int, fields: dict[str, str]) -> bytes:
    body = b"".join(code.encode() + cstring(value) for code, value in fields.items()) + b"\x00"
    return message(kind, body)


def error_response(error: ProxyError) -> bytes:
    """The ErrorResponse a client sees for ``error``."""
    fields = {
        SEVERITY: error.severity,
        SEVERITY_NONLOCALIZED: error.severity,
        SQLSTATE: error.sqlstate,
        MESSAGE: error.message,
    }
    if error.detail:
        fields[DETAIL] = error.detail
    if error.hint:
        fields[HINT] = error.hint
    return encode_fields(ERROR_RESPONSE, fields)


def decode_fields(body: bytes) -> dict[str, str]:
    """Fields of an ErrorResponse or NoticeResponse body, keyed by their one-letter codes."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        fields[code], pos = read_cstring(body, pos + 1)
    return fields


def is_fatal(body: bytes) -> bool:
    """Whether an ErrorResponse ends the connection (the server closes right after sending it)."""
    fields = decode_fields(body)
    severity = fields.get(SEVERITY_NONLOCALIZED) or fields.get(SEVERITY, "")
    return severity in ("FATAL", "PANIC")
