"""The monitoring endpoint (``--metrics-listen``): Prometheus ``/metrics``, ``/healthz`` and ``/readyz``.

A deliberately tiny HTTP/1.1 server on the proxy's own event loop: no thread, nothing to install beyond
prometheus_client. Each connection carries one GET (or HEAD) and is closed after the answer
(``Connection: close``), which is all a Prometheus scraper or a Kubernetes probe needs. A client that sends
garbage gets 400, one that is slow is dropped after :data:`REQUEST_TIMEOUT`, and past
:data:`MAX_CONNECTIONS` at once new connections are closed unanswered; none of it can disturb the proxy.

- ``/healthz``: 200 while the process and its event loop serve (this very answer proves it).
- ``/readyz``: 200 while the proxy accepts clients and a connection to the upstream opens; otherwise 503 with
  the reason (starting, shutting down, upstream unreachable). The upstream probe opens a TCP or unix-socket
  connection and closes it before sending anything (Postgres logs nothing for that); its result is kept for
  :data:`READY_CACHE` seconds, so frequent probes cost one connection a second at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from pgml_proxy.metrics import REGISTRY
from pgml_proxy.upstream import reachable

if TYPE_CHECKING:
    from pgml_proxy.server import ProxyServer

log = logging.getLogger("pgml_proxy.metrics")

REQUEST_TIMEOUT: Final = 10.0
"""Seconds a client has to send its request, and again to take the answer."""
MAX_LINE: Final = 8192
MAX_HEADERS: Final = 100
MAX_CONNECTIONS: Final = 64
READY_CACHE: Final = 1.0
PROBE_TIMEOUT: Final = 2.0
"""Seconds the upstream has to accept the readiness probe's connection."""

Readiness = Callable[[], Awaitable[str | None]]
"""None when ready, else why not."""

_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_TEXT: Final = "text/plain; charset=utf-8"


class BadRequest(Exception):
    pass


class _NothingSent(Exception):
    """The client closed without sending a byte (a TCP health check): nothing to answer."""


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` until :meth:`close`."""

    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] | None = None

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        """Start serving; return the address actually bound (port 0 picks a free one)."""
        self._server = await asyncio.start_server(
            self._accept, host, port, limit=MAX_LINE, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        self.address = (bound[0], bound[1])
        return self.address

    @property
    def url(self) -> str:
        """Where it listens, as ``http://HOST:PORT``."""
        assert self.address is not None
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop listening and drop the connections still open."""
        if self._server is not None:
            self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=1.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._handlers) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # closing: the connection goes below
        except Exception:  # a bug of ours loses one answer, never the proxy
            log.exception("metrics endpoint failed")
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = False
        try:
            method, path = await asyncio.wait_for(read_request(reader), REQUEST_TIMEOUT)
            head = method == "HEAD"
        except TimeoutError:
            status, content_type, body, headers = 408, _TEXT, b"request timeout\n", {}
        except (BadRequest, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, content_type, body, headers = 400, _TEXT, b"bad request\n", {}
        except (ConnectionError, _NothingSent):
            return
        else:
            try:
                status, content_type, body, headers = await self._answer(method, path)
            except Exception:  # a failing collector, say: the scrape fails, the proxy goes on
                log.exception("metrics endpoint failed to answer %s %s", method, path)
                status, content_type, body, headers = 500, _TEXT, b"internal error\n", {}
        writer.write(response(status, content_type, b"" if head else body, len(body), headers))
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)

    async def _answer(self, method: str, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        if path not in ("/metrics", "/healthz", "/readyz"):
            return 404, _TEXT, b"not found\n", {}
        if method not in ("GET", "HEAD"):
            return 405, _TEXT, b"method not allowed\n", {"Allow": "GET, HEAD"}
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY), {}
        if path == "/healthz":
            return 200, _TEXT, b"ok\n", {}
        reason = await self._readiness()
        if reason is None:
            return 200, _TEXT, b"ready\n", {}
        return 503, _TEXT, f"not ready: {reason}\n".encode(), {}


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path (query string dropped) of one request; its headers are read and ignored, and a
    body, which no endpoint takes, is never read. Raises BadRequest."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _NothingSent from None
        raise
    try:
        method, target, version = line.decode("ascii").split()
    except (UnicodeDecodeError, ValueError):
        raise BadRequest from None
    if not version.startswith("HTTP/1.") or not method.isalpha() or not target.startswith("/"):
        raise BadRequest
    for _ in range(MAX_HEADERS):
        if (await reader.readuntil(b"\n")).strip() == b"":
            return method.upper(), target.partition("?")[0]
    raise BadRequest


def response(status: int, content_type: str, body: bytes, length: int, headers: dict[str, str]) -> bytes:
    """One complete answer, ``length`` being the body's (a HEAD answer says it, without the body)."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def proxy_readiness(server: ProxyServer) -> Readiness:
    """Ready: ``server`` accepts clients and its upstream accepts a connection (probed at most once per
    :data:`READY_CACHE` seconds; concurrent requests share one probe)."""
    probed: tuple[float, str | None] | None = None
    probing: asyncio.Future[str | None] | None = None

    async def readiness() -> str | None:
        nonlocal probed, probing
        if server.shutting_down:
            return "shutting down"
        if not server.accepting:
            return "not accepting clients yet"
        loop = asyncio.get_running_loop()
        if probed is not None and loop.time() - probed[0] < READY_CACHE:
            return probed[1]
        if probing is None or probing.done():
            probing = asyncio.ensure_future(reachable(server.upstream, PROBE_TIMEOUT))
        reason = await asyncio.shield(probing)
        probed = (loop.time(), None if reason is None else f"upstream unreachable: {reason}")
        return probed[1]

    return readiness


async def start_metrics(server: ProxyServer, host: str, port: int) -> MetricsServer:
    """The monitoring endpoint of ``server``, listening."""
    metrics = MetricsServer(proxy_readiness(server))
    await metrics.listen(host, port)
    return metrics
