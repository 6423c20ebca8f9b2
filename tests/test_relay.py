"""What the relay carries besides rows: notices, parameter status, and back-pressure from slow clients."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg

from tests.support.raw import RawClient, errors


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_notice_reaches_the_client(proxy):
    notices: list[str] = []
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: notices.append(f"{diag.severity}: {diag.message_primary}"))
        conn.execute("do $$ begin raise notice 'training step %', 3; end $$")
    assert notices == ["NOTICE: training step 3"]


def test_parameter_status_changes_reach_the_client(proxy):
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        conn.execute("set application_name = 'reporting'")
        assert conn.info.parameter_status("application_name") == "reporting"
        conn.execute("set TimeZone = 'Asia/Tokyo'")
        assert conn.info.parameter_status("TimeZone") == "Asia/Tokyo"


def test_slow_client_does_not_make_proxy_buffer_the_result(proxy):
    """200 MB of rows to a client that stops reading: the proxy must stop reading the upstream too."""
    client = RawClient(proxy.host, proxy.port, timeout=30)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.startup()
    before = rss_bytes(proxy.process.pid)
    client.send_query("select repeat('x', 1000) from generate_series(1, 200000)")
    time.sleep(2)  # not reading: the proxy's write buffer fills, then the upstream's socket
    held = rss_bytes(proxy.process.pid) - before
    assert held < 32 * 1024 * 1024, f"proxy grew by {held / 2**20:.0f} MiB while the client was not reading"
    rows = 0
    for kind, _ in client.read_until_ready():
        rows += kind == "D"
    assert rows == 200000
    assert errors(client.query("select 1")) == []
