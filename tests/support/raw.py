"""A raw protocol client for tests that need exact bytes: bad input, cancel keys, protocol 3.2."""

from __future__ import annotations

import socket
import struct

from pgml_proxy.wire.cancel import CancelKey, parse_backend_key_data
from pgml_proxy.wire.error_response import decode_fields
from pgml_proxy.wire.startup import startup_message

Message = tuple[str, bytes]


class RawClient:
    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buf = b""
        self.key: CancelKey | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self._buf += chunk
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def read_byte(self) -> bytes:
        return self._read_exact(1)

    def read_message(self) -> Message:
        kind, length = struct.unpack("!cI", self._read_exact(5))
        return kind.decode(), self._read_exact(length - 4)

    def read_until_ready(self) -> list[Message]:
        messages = []
        while True:
            message = self.read_message()
            messages.append(message)
            if message[0] == "Z":
                return messages

    def read_until_closed(self) -> list[Message]:
        messages = []
        try:
            while True:
                messages.append(self.read_message())
        except (EOFError, ConnectionResetError):
            return messages

    def startup(
        self, user: str = "postgres", database: str = "postgres", minor: int = 0, **extra: str
    ) -> list[Message]:
        """Trust authentication only; records the BackendKeyData the proxy issued."""
        self.send(startup_message({"user": user, "database": database, **extra}, minor))
        messages = self.read_until_ready()
        for kind, body in messages:
            if kind == "K":
                self.key = parse_backend_key_data(body)
        return messages

    def send_query(self, sql: str) -> None:
        self.send(b"Q" + struct.pack("!I", len(sql.encode()) + 5) + sql.encode() + b"\x00")

    def query(self, sql: str) -> list[Message]:
        self.send_query(sql)
        return self.read_until_ready()

    def close(self) -> None:
        self.sock.close()


def errors(messages: list[Message]) -> list[dict[str, str]]:
    """Fields of every ErrorResponse among ``messages``."""
    return [decode_fields(body) for kind, body in messages if kind == "E"]


def data_rows(messages: list[Message]) -> list[list[str | None]]:
    """Text-format DataRow values."""
    rows = []
    for kind, body in messages:
        if kind != "D":
            continue
        (count,), pos, row = struct.unpack_from("!H", body), 2, []
        for _ in range(count):
            (size,) = struct.unpack_from("!i", body, pos)
            pos += 4
            row.append(None if size < 0 else body[pos : pos + size].decode())
            pos += max(size, 0)
        rows.append(row)
    return rows


def send_cancel(host: str, port: int, key: CancelKey) -> None:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(key.cancel_request())
        sock.recv(1)  # the server closes without answering
