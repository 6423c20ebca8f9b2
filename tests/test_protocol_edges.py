"""The wire protocol at its edges, with exact bytes: bad input, startup negotiation, cancel keys."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgml_proxy.wire.cancel import CancelKey
from pgml_proxy.wire.startup import GSSENC_REQUEST, SSL_REQUEST
from tests.support.raw import RawClient, data_rows, errors, send_cancel
from tests.support.servers import ProxyProcess, backends_named, wait_until


class HealthySession:
    """A session that keeps querying in the background, to show one bad client never hurts another."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self._stop.is_set():
                    value = conn.execute("select %s::int + 1", (self.count,)).fetchone()
                    assert value == (self.count + 1,)
                    self.count += 1
        except BaseException as exc:
            self.failures.append(exc)

    def __enter__(self) -> HealthySession:
        self._thread.start()
        assert wait_until(lambda: self.count > 0 or bool(self.failures))
        return self

    def __exit__(self, *exc: object) -> None:
        # It must still answer after whatever the test did to its neighbour.
        seen = self.count
        wait_until(lambda: self.count > seen + 1 or bool(self.failures))
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def healthy(proxy: ProxyProcess) -> Iterator[HealthySession]:
    with HealthySession(proxy.url()) as session:
        yield session
    assert not session.failures, session.failures
    assert session.count > 0


def connect(proxy: ProxyProcess) -> RawClient:
    return RawClient(proxy.host, proxy.port)


def assert_protocol_violation(client: RawClient) -> dict[str, str]:
    messages = client.read_until_closed()
    [error] = errors(messages)
    assert error["C"] == "08P01"
    assert error["S"] == "FATAL"
    return error


BAD_MESSAGES = {
    "garbage bytes": b"this is not the postgres protocol",
    "length below four": b"Q" + struct.pack("!I", 3),
    "length above one gibibyte": b"Q" + struct.pack("!I", (1 << 30) + 1),
    "unknown message type": b"\x01" + struct.pack("!I", 4),
    "password message after authentication": b"p" + struct.pack("!I", 9) + b"secret",
}


@pytest.mark.parametrize("payload", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_bad_message_after_startup_gets_08P01_and_disconnect(proxy, healthy, payload):
    client = connect(proxy)
    client.startup()
    client.send(payload)
    assert_protocol_violation(client)


@pytest.mark.parametrize(
    "packet",
    [b"\xff\xff\xff\xff" + b"garbage", struct.pack("!I", 3) + b"x", struct.pack("!II", 8, 0x00020000)],
    ids=["huge length", "short length", "protocol 2"],
)
def test_bad_startup_packet_is_refused(proxy, healthy, packet):
    client = connect(proxy)
    client.send(packet)
    [error] = errors(client.read_until_closed())
    assert error["C"] in ("08P01", "0A000")


def test_client_closing_mid_message_leaves_other_sessions_running(proxy, healthy, upstream):
    client = connect(proxy)
    client.startup(application_name="mid-message")
    client.send(b"Q" + struct.pack("!I", 200) + b"select pg_sl")
    client.close()
    time.sleep(0.3)
    with psycopg.connect(upstream.url(), autocommit=True) as direct:
        assert wait_until(lambda: backends_named(direct, "mid-message") == 0)


def test_ssl_request_without_tls_configured_is_answered_n(proxy):
    client = connect(proxy)
    client.send(SSL_REQUEST)
    assert client.read_byte() == b"N"
    client.startup()
    assert data_rows(client.query("select 'plain'")) == [["plain"]]


def test_gssenc_request_is_answered_n(proxy):
    client = connect(proxy)
    client.send(GSSENC_REQUEST)
    assert client.read_byte() == b"N"
    client.startup()
    assert data_rows(client.query("select 1")) == [["1"]]


@pytest.mark.parametrize(("minor", "secret_length"), [(0, 4), (2, 32), (7, 32)])
def test_proxy_issues_cancel_key_of_the_negotiated_protocol(proxy, minor, secret_length):
    client = connect(proxy)
    messages = client.startup(minor=minor)
    assert client.key is not None
    assert len(client.key.secret) == secret_length
    negotiated = [body for kind, body in messages if kind == "v"]
    if minor > 2:
        assert struct.unpack_from("!I", negotiated[0])[0] == 3 << 16 | 2
    else:
        assert negotiated == []


def test_unknown_protocol_option_is_negotiated_by_upstream(proxy):
    client = connect(proxy)
    messages = client.startup(**{"_pq_.no_such_option": "1"})
    [body] = [body for kind, body in messages if kind == "v"]
    assert b"_pq_.no_such_option" in body
    assert data_rows(client.query("select 2")) == [["2"]]


@pytest.mark.parametrize("minor", [0, 2])
def test_cancel_request_with_proxy_key_cancels_running_statement(proxy, minor):
    client = connect(proxy)
    client.startup(minor=minor)
    client.send_query("select pg_sleep(30)")
    time.sleep(0.3)
    started = time.monotonic()
    send_cancel(proxy.host, proxy.port, client.key)
    messages = client.read_until_ready()
    assert time.monotonic() - started < 5
    [error] = errors(messages)
    assert error["C"] == "57014"
    assert data_rows(client.query("select 'still usable'")) == [["still usable"]]


def test_cancel_request_with_wrong_secret_is_ignored(proxy):
    client = connect(proxy)
    client.startup()
    client.send_query("select pg_sleep(1)")
    wrong = CancelKey(client.key.pid, bytes(b ^ 0xFF for b in client.key.secret))
    send_cancel(proxy.host, proxy.port, wrong)
    messages = client.read_until_ready()
    assert errors(messages) == []
