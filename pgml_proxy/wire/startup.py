"""Startup-phase packets: the untyped ones a client sends before it has a session.

SSLRequest, GSSENCRequest, CancelRequest and StartupMessage share one framing (Int32 length counting
itself, Int32 code, body) and no type byte, which is why they get their own parser.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from pgml_proxy.errors import ProtocolViolation, UnsupportedProtocol
from pgml_proxy.wire.cancel import CANCEL_REQUEST_CODE, MAX_SECRET_LENGTH, CancelKey

SSL_REQUEST_CODE: Final = 80877103
GSSENC_REQUEST_CODE: Final = 80877104
PROTOCOL_MAJOR: Final = 3
NEWEST_MINOR: Final = 2
MAX_STARTUP_LENGTH: Final = 10000
"""Postgres's own bound (MAX_STARTUP_PACKET_LENGTH); a cancel key of 256 bytes fits well within it."""

SSL_REQUEST: Final = struct.pack("!II", 8, SSL_REQUEST_CODE)
GSSENC_REQUEST: Final = struct.pack("!II", 8, GSSENC_REQUEST_CODE)
_HEAD: Final = struct.Struct("!II")


@dataclass(frozen=True, slots=True)
class SSLRequest:
    pass


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequest:
    key: CancelKey


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """The client's StartupMessage, kept as received so it can be forwarded byte for byte."""

    minor: int
    parameters: dict[str, str]
    raw: bytes

    @property
    def user(self) -> str:
        return self.parameters.get("user", "")

    @property
    def database(self) -> str:
        return self.parameters.get("database") or self.user


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


def parse_startup_packet(buf: bytes | bytearray) -> tuple[StartupPacket | None, int]:
    """Decode the packet at the start of ``buf``; return it and its size, or (None, 0) if incomplete."""
    if len(buf) < 4:
        return None, 0
    (length,) = struct.unpack_from("!I", buf, 0)
    if length < 8 or length > MAX_STARTUP_LENGTH:
        raise ProtocolViolation(f"invalid length of startup packet: {length}")
    if len(buf) < length:
        return None, 0
    code = _HEAD.unpack_from(buf, 0)[1]
    body = bytes(buf[8:length])
    if code == SSL_REQUEST_CODE:
        return SSLRequest(), length
    if code == GSSENC_REQUEST_CODE:
        return GSSENCRequest(), length
    if code == CANCEL_REQUEST_CODE:
        if not 8 <= len(body) <= 4 + MAX_SECRET_LENGTH:
            raise ProtocolViolation("invalid length of cancel request packet")
        return CancelRequest(CancelKey(struct.unpack_from("!I", body)[0], body[4:])), length
    major, minor = code >> 16, code & 0xFFFF
    if major != PROTOCOL_MAJOR:
        raise UnsupportedProtocol(
            f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.{NEWEST_MINOR}"
        )
    return StartupMessage(minor, _parameters(body), bytes(buf[:length])), length


def _parameters(body: bytes) -> dict[str, str]:
    """Name/value pairs terminated by an empty name."""
    parts = body.split(b"\x00")
    if len(parts) < 2 or parts[-1] != b"" or parts[-2] != b"" or len(parts) % 2:
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    pairs = parts[:-2]
    names, values = pairs[0::2], pairs[1::2]
    return {
        n.decode("utf-8", "replace"): v.decode("utf-8", "replace") for n, v in zip(names, values, strict=True)
    }


def startup_message(parameters: dict[str, str], minor: int = 0) -> bytes:
    """Encode a StartupMessage (the proxy never needs to, but tests and tools talking raw bytes do)."""
    body = b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in parameters.items()) + b"\x00"
    return _HEAD.pack(len(body) + 8, PROTOCOL_MAJOR << 16 | minor) + body
