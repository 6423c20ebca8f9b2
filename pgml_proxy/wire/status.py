"""Session status messages from the server: ReadyForQuery, ParameterStatus, NegotiateProtocolVersion."""

from __future__ import annotations

import struct
from typing import Final

from pgml_proxy.wire.framing import read_cstring

IDLE: Final = ord("I")
IN_TRANSACTION: Final = ord("T")
FAILED_TRANSACTION: Final = ord("E")


def parameter_status(body: bytes) -> tuple[str, str]:
    name, pos = read_cstring(body, 0)
    value, _ = read_cstring(body, pos)
    return name, value


def negotiated_minor(body: bytes) -> int:
    """The newest minor version the server supports, from a NegotiateProtocolVersion body."""
    return struct.unpack_from("!I", body)[0] & 0xFFFF
