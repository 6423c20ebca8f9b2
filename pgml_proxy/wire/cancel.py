"""Cancel keys: BackendKeyData and CancelRequest.

Protocol 3.0 keys carry a 4-byte secret; protocol 3.2 allows up to 256 bytes. The proxy hands out keys
of its own and keeps the upstream's, so the two kinds are distinct types that cannot be mixed up.
"""

from __future__ import annotations

import hmac
import secrets
import struct
from dataclasses import dataclass
from typing import Final

from pgml_proxy.wire.codes import BACKEND_KEY_DATA
from pgml_proxy.wire.framing import message

CANCEL_REQUEST_CODE: Final = 80877102
MAX_SECRET_LENGTH: Final = 256
PROXY_SECRET_LENGTH_3_2: Final = 32


@dataclass(frozen=True, slots=True)
class CancelKey:
    """A process id and secret, as carried by BackendKeyData and CancelRequest."""

    pid: int
    secret: bytes

    def matches(self, other: CancelKey) -> bool:
        """Constant-time comparison, so a wrong guess teaches nothing about the secret."""
        return self.pid == other.pid and hmac.compare_digest(self.secret, other.secret)

    def backend_key_data(self) -> bytes:
        return message(BACKEND_KEY_DATA, struct.pack("!I", self.pid) + self.secret)

    def cancel_request(self) -> bytes:
        return struct.pack("!III", 12 + len(self.secret), CANCEL_REQUEST_CODE, self.pid) + self.secret


def parse_backend_key_data(body: bytes) -> CancelKey:
    return CancelKey(struct.unpack_from("!I", body)[0], bytes(body[4:]))


def new_proxy_key(protocol_minor: int, taken: set[int] | dict[int, object]) -> CancelKey:
    """A fresh key for a client: 4-byte secret under 3.0, a longer one where 3.2 allows it."""
    while True:
        pid = secrets.randbelow(0x7FFFFFFF - 1) + 1
        if pid not in taken:
            break
    length = PROXY_SECRET_LENGTH_3_2 if protocol_minor >= 2 else 4
    return CancelKey(pid, secrets.token_bytes(length))
