"""Authentication request messages, which the proxy relays and in one case edits.

The proxy relays authentication rather than terminating it, so it never holds passwords. The one edit:
SCRAM-SHA-256-PLUS is removed from the mechanisms the upstream offers, because channel binding binds to
the TLS connection the client sees, which ends at the proxy and is not the upstream's.
"""

from __future__ import annotations

import struct
from typing import Final

from pgml_proxy.wire.codes import AUTHENTICATION
from pgml_proxy.wire.framing import message

AUTH_OK: Final = 0
AUTH_SASL: Final = 10
CHANNEL_BINDING_MECHANISM: Final = b"SCRAM-SHA-256-PLUS"


def auth_code(body: bytes) -> int:
    return struct.unpack_from("!I", body)[0]


def sasl_mechanisms(body: bytes) -> list[bytes]:
    """Mechanism names of an AuthenticationSASL body (code, then NUL-terminated names, then NUL)."""
    return [name for name in bytes(body[4:]).split(b"\x00") if name]


def without_channel_binding(body: bytes) -> bytes:
    """An AuthenticationSASL message offering the same mechanisms less SCRAM-SHA-256-PLUS."""
    names = [name for name in sasl_mechanisms(body) if name != CHANNEL_BINDING_MECHANISM]
    return message(
        AUTHENTICATION, struct.pack("!I", AUTH_SASL) + b"".join(n + b"\x00" for n in names) + b"\x00"
    )
