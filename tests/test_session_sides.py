"""The two halves of a session as state machines, fed with byte fixtures (no sockets)."""

from __future__ import annotations

import struct

import pytest

from pgml_proxy.errors import ProtocolViolation
from pgml_proxy.session.client_side import ClientSide
from pgml_proxy.session.flow import ReadGate
from pgml_proxy.session.upstream_side import UpstreamSide
from pgml_proxy.wire import codes
from pgml_proxy.wire.cancel import CancelKey, parse_backend_key_data
from pgml_proxy.wire.error_response import encode_fields
from pgml_proxy.wire.framing import message

PROXY_KEY = CancelKey(4242, b"proxysecret-0123456789abcdef0123")
UPSTREAM_KEY = CancelKey(99, b"\x00\x01\x02\x03")


def auth_message(code: int, extra: bytes = b"") -> bytes:
    return message(codes.AUTHENTICATION, struct.pack("!I", code) + extra)


def ready(status: bytes = b"I") -> bytes:
    return message(codes.READY_FOR_QUERY, status)


def parameter(name: str, value: str) -> bytes:
    return message(codes.PARAMETER_STATUS, name.encode() + b"\x00" + value.encode() + b"\x00")


def upstream_side(minor: int = 0) -> tuple[UpstreamSide, list[int]]:
    asked: list[int] = []

    def issue(negotiated: int) -> CancelKey:
        asked.append(negotiated)
        return PROXY_KEY

    return UpstreamSide(minor, issue), asked


def test_startup_swaps_backend_key_and_drops_channel_binding():
    side, asked = upstream_side()
    sasl = auth_message(10, b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00")
    out = side.feed(sasl)
    assert out == auth_message(10, b"SCRAM-SHA-256\x00\x00")
    assert not side.authenticated
    tail = auth_message(0) + parameter("server_version", "18.6") + UPSTREAM_KEY.backend_key_data() + ready()
    out = side.feed(tail)
    assert side.authenticated
    assert side.upstream_key == UPSTREAM_KEY
    assert side.proxy_key == PROXY_KEY
    assert asked == [0]
    assert PROXY_KEY.backend_key_data() in out
    assert UPSTREAM_KEY.backend_key_data() not in out
    assert (
        out == auth_message(0) + parameter("server_version", "18.6") + PROXY_KEY.backend_key_data() + ready()
    )
    assert side.parameters == {"server_version": "18.6"}
    assert side.ready_count == 1


def test_negotiated_protocol_version_decides_key_format():
    side, asked = upstream_side(minor=5)
    negotiate = message(codes.NEGOTIATE_PROTOCOL_VERSION, struct.pack("!II", 3 << 16 | 2, 0))
    side.feed(negotiate + auth_message(0) + UPSTREAM_KEY.backend_key_data() + ready())
    assert side.protocol_minor == 2
    assert asked == [2]


def test_ready_phase_passes_bytes_through_and_tracks_status():
    side, _ = upstream_side()
    side.feed(auth_message(0) + UPSTREAM_KEY.backend_key_data() + ready())
    rows = (
        message(ord("T"), b"\x00\x00") + message(ord("D"), b"\x00\x00") + message(ord("C"), b"SELECT 1\x00")
    )
    stream = rows + parameter("TimeZone", "UTC") + ready(b"T")
    assert side.feed(stream[:6]) == b""  # half a message is held, not forwarded
    assert side.feed(stream[6:]) == stream
    assert side.transaction_status == ord("T")
    assert side.parameters["TimeZone"] == "UTC"
    assert side.ready_count == 2
    assert not side.closed_by_fatal


def test_fatal_error_from_upstream_is_noticed():
    side, _ = upstream_side()
    side.feed(auth_message(0) + ready())
    side.feed(encode_fields(codes.ERROR_RESPONSE, {"S": "FATAL", "V": "FATAL", "C": "57P01", "M": "bye"}))
    assert side.closed_by_fatal


def test_client_side_counts_requests_awaiting_ready():
    side = ClientSide()
    assert side.requests == 1  # the StartupMessage
    side.authenticated()
    parse = message(codes.PARSE, b"\x00select 1\x00\x00\x00")
    stream = parse + message(codes.SYNC, b"") + message(codes.QUERY, b"select 1\x00")
    assert side.feed(stream) == (stream, None)
    assert side.requests == 3


def test_client_side_stops_at_terminate():
    side = ClientSide()
    side.authenticated()
    query = message(codes.QUERY, b"select 1\x00")
    assert side.feed(query + message(codes.TERMINATE, b"") + query) == (query, None)
    assert side.terminated


def test_client_side_hands_back_a_query_that_mentions_pgml_and_keeps_the_rest():
    side = ClientSide()
    side.authenticated()
    before = message(codes.QUERY, b"select 1\x00")
    pgml = message(codes.QUERY, b"select PGML.version()\x00")
    after = message(codes.QUERY, b"select 2\x00")
    assert side.feed(before + pgml + after) == (before, (codes.QUERY, b"select PGML.version()\x00"))
    assert side.requests == 3  # the startup, and the two queries up to the intercepted one
    assert side.feed(b"") == (after, None)
    assert side.requests == 4


def test_client_side_hands_back_statement_messages_while_tracking():
    side = ClientSide()
    side.authenticated()
    parse = message(codes.PARSE, b"s1\x00select pgml.version()\x00\x00\x00")
    plain_parse = message(codes.PARSE, b"s2\x00select 1\x00\x00\x00")
    bind = message(codes.BIND, b"\x00s1\x00\x00\x00\x00\x00\x00\x00")
    sync = message(codes.SYNC, b"")
    assert side.feed(plain_parse + parse + bind + sync) == (plain_parse, (codes.PARSE, parse[5:]))
    assert side.feed(b"") == (bind + sync, None)  # not tracking: a Bind is relayed untouched
    side.track_statements(True)
    assert side.feed(plain_parse + bind) == (b"", (codes.PARSE, plain_parse[5:]))
    assert side.feed(b"") == (b"", (codes.BIND, bind[5:]))
    side.track_statements(False)
    assert side.feed(bind) == (bind, None)


def test_client_may_only_send_password_messages_while_authenticating():
    side = ClientSide()
    password = message(codes.PASSWORD, b"secret\x00")
    assert side.feed(password) == (password, None)
    with pytest.raises(ProtocolViolation):
        side.feed(message(codes.QUERY, b"select 1\x00"))
    after = ClientSide()
    after.authenticated()
    with pytest.raises(ProtocolViolation):
        after.feed(password)


class RecordingTransport:
    """Just enough of an asyncio transport to watch what the gate does to it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.calls.append("limits")

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def test_read_gate_resumes_only_when_every_reason_is_gone():
    transport = RecordingTransport()
    gate = ReadGate(transport)  # type: ignore[arg-type]
    gate.pause("client is slow")
    gate.pause("tls handshake")
    gate.resume("client is slow")
    assert gate.paused
    gate.resume("tls handshake")
    gate.resume("never paused")
    assert transport.calls == ["limits", "pause", "resume"]
    assert not gate.paused


def test_backend_key_data_parse_keeps_long_secret():
    key = CancelKey(1, bytes(range(32)))
    assert parse_backend_key_data(key.backend_key_data()[5:]) == key
