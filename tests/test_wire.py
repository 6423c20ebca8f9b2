"""Codecs and framing, sans I/O: bytes in, values out, and back."""

from __future__ import annotations

import struct

import pytest

from pgml_proxy.errors import AdminShutdown, ProtocolViolation, TooManyConnections, UnsupportedProtocol
from pgml_proxy.wire import auth, codes
from pgml_proxy.wire.cancel import CancelKey, new_proxy_key, parse_backend_key_data
from pgml_proxy.wire.error_response import decode_fields, error_response, is_fatal
from pgml_proxy.wire.framing import MAX_MESSAGE_LENGTH, MessageScanner, message
from pgml_proxy.wire.rows import Field, data_row, decode_row_description, row_description, row_values
from pgml_proxy.wire.startup import (
    GSSENC_REQUEST,
    SSL_REQUEST,
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    parse_startup_packet,
    startup_message,
)
from pgml_proxy.wire.status import negotiated_minor, parameter_status

QUERY = message(codes.QUERY, b"select 1\x00")
SYNC = message(codes.SYNC, b"")
PARSE = message(codes.PARSE, b"\x00select $1\x00\x00\x00")


def test_scanner_returns_complete_messages_and_watched_offsets():
    stream = PARSE + SYNC + QUERY
    scanner = MessageScanner(frozenset({codes.QUERY}), codes.FRONTEND_READY_TYPES)
    chunk, frames = scanner.feed(stream)
    assert chunk == stream
    [(kind, start, end)] = frames
    assert kind == codes.QUERY
    assert chunk[start:end] == b"select 1\x00"


def test_scanner_reassembles_messages_fed_byte_by_byte():
    stream = PARSE + SYNC + QUERY
    scanner = MessageScanner(frozenset({codes.SYNC, codes.QUERY}), codes.FRONTEND_READY_TYPES)
    forwarded, kinds = b"", []
    for i in range(len(stream)):
        chunk, frames = scanner.feed(stream[i : i + 1])
        kinds += [chunk[s - 5] for _, s, _ in frames]
        forwarded += chunk
        assert scanner.has_partial == (len(forwarded) < i + 1)
    assert forwarded == stream
    assert kinds == [codes.SYNC, codes.QUERY]
    assert not scanner.has_partial


def test_scanner_keeps_large_message_pending_until_complete():
    body = bytes(range(256)) * 4096  # 1 MiB
    stream = message(codes.COPY_DATA, body) + SYNC
    scanner = MessageScanner(frozenset({codes.SYNC}), codes.FRONTEND_READY_TYPES)
    out = b""
    for i in range(0, len(stream), 1000):
        chunk, _ = scanner.feed(stream[i : i + 1000])
        out += chunk
        if len(out) < len(stream) - len(SYNC):
            assert out == b""
    assert out == stream


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x01" + struct.pack("!I", 4), "invalid frontend message type 1"),
        (b"Q" + struct.pack("!I", 3), "invalid message length 3"),
        (b"Q" + struct.pack("!I", MAX_MESSAGE_LENGTH + 1), "invalid message length"),
        (b"g", "invalid frontend message type 103"),
    ],
)
def test_scanner_rejects_bad_headers_without_waiting_for_a_body(data, reason):
    scanner = MessageScanner(frozenset(), codes.FRONTEND_READY_TYPES)
    with pytest.raises(ProtocolViolation, match=reason):
        scanner.feed(data)


def test_backend_scanner_accepts_any_type():
    scanner = MessageScanner(frozenset())
    notification = message(ord("A"), b"\x00\x00\x00\x01chan\x00payload\x00")
    assert scanner.feed(notification) == (notification, [])


@pytest.mark.parametrize(
    ("packet", "expected"),
    [(SSL_REQUEST, SSLRequest()), (GSSENC_REQUEST, GSSENCRequest())],
)
def test_negotiation_requests_parse(packet, expected):
    assert parse_startup_packet(packet) == (expected, 8)


@pytest.mark.parametrize("minor", [0, 2])
def test_startup_message_round_trip(minor):
    raw = startup_message({"user": "alice", "database": "shop", "options": "-c x=1"}, minor)
    packet, size = parse_startup_packet(raw + b"extra")
    assert size == len(raw)
    assert packet == StartupMessage(minor, {"user": "alice", "database": "shop", "options": "-c x=1"}, raw)
    assert packet.database == "shop"
    assert parse_startup_packet(raw[:-1]) == (None, 0)


def test_startup_database_defaults_to_user():
    packet, _ = parse_startup_packet(startup_message({"user": "bob"}))
    assert isinstance(packet, StartupMessage)
    assert packet.database == "bob"


@pytest.mark.parametrize("secret", [b"\x01\x02\x03\x04", bytes(range(32)), bytes(256)])
def test_cancel_request_round_trip(secret):
    key = CancelKey(12345, secret)
    packet, size = parse_startup_packet(key.cancel_request())
    assert packet == CancelRequest(key)
    assert size == 12 + len(secret)
    assert parse_backend_key_data(key.backend_key_data()[5:]) == key


def test_cancel_key_comparison_needs_pid_and_secret():
    key = CancelKey(7, b"abcd")
    assert key.matches(CancelKey(7, b"abcd"))
    assert not key.matches(CancelKey(7, b"abce"))
    assert not key.matches(CancelKey(8, b"abcd"))


def test_new_proxy_keys_follow_protocol_and_avoid_taken_pids():
    taken = {new_proxy_key(0, {}).pid}
    assert len(new_proxy_key(0, taken).secret) == 4
    assert len(new_proxy_key(2, taken).secret) == 32
    assert new_proxy_key(0, taken).pid not in taken


@pytest.mark.parametrize(
    "packet",
    [
        struct.pack("!II", 4, 196608),
        struct.pack("!I", 20000) + bytes(8),
        struct.pack("!II", 8, 2 << 16),
        struct.pack("!II", 12, 196608) + b"user",
    ],
    ids=["too short", "too long", "protocol 2", "unterminated parameters"],
)
def test_malformed_startup_packets_are_refused(packet):
    with pytest.raises((ProtocolViolation, UnsupportedProtocol)):
        parse_startup_packet(packet)


@pytest.mark.parametrize("error", [TooManyConnections("sorry"), AdminShutdown("bye", detail="d", hint="h")])
def test_error_response_round_trip(error):
    encoded = error_response(error)
    assert encoded[0] == codes.ERROR_RESPONSE
    assert struct.unpack_from("!I", encoded, 1)[0] == len(encoded) - 1
    fields = decode_fields(encoded[5:])
    assert fields["S"] == fields["V"] == "FATAL"
    assert fields["C"] == error.sqlstate
    assert fields["M"] == error.message
    assert fields.get("D") == error.detail
    assert fields.get("H") == error.hint
    assert is_fatal(encoded[5:])


def test_sasl_offer_loses_channel_binding_only():
    body = struct.pack("!I", auth.AUTH_SASL) + b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"
    rewritten = auth.without_channel_binding(body)
    assert rewritten[0] == codes.AUTHENTICATION
    assert auth.sasl_mechanisms(rewritten[5:]) == [b"SCRAM-SHA-256"]
    assert rewritten == message(codes.AUTHENTICATION, struct.pack("!I", 10) + b"SCRAM-SHA-256\x00\x00")


def test_status_messages_decode():
    assert parameter_status(b"client_encoding\x00UTF8\x00") == ("client_encoding", "UTF8")
    assert negotiated_minor(struct.pack("!II", 3 << 16 | 2, 0)) == 2


def test_row_description_and_data_row_round_trip():
    fields = [
        Field("id", 16384, 1, 23, 4, -1, 0),
        Field("é", 0, 0, 1021, -1, -1, 1),
        Field("", 0, 0, 25, -1, -1, 0),
    ]
    encoded = row_description(fields)
    assert encoded[0] == ord("T") and struct.unpack("!I", encoded[1:5])[0] == len(encoded) - 1
    assert decode_row_description(encoded[5:]) == fields
    row = data_row([b"1", None, b""])
    assert [None if v is None else bytes(v) for v in row_values(row[5:])] == [b"1", None, b""]
    assert row_values(data_row([])[5:]) == []
