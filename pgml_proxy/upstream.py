"""Where the upstream is and how to reach it: DSN parsing, TCP or unix socket, and TLS per ``sslmode``.

Only the connection target is read from the DSN. Users, passwords and databases come from each client's
own StartupMessage, which is relayed untouched, so the proxy never needs credentials of its own.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from pgml_proxy.errors import ConnectionFailure
from pgml_proxy.wire.startup import SSL_REQUEST

SSL_MODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
CONNECT_TIMEOUT: Final = 10.0

P = TypeVar("P", bound=asyncio.BaseProtocol)


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """An upstream server: a TCP host and port, or a unix-socket directory and port."""

    host: str = "localhost"
    port: int = 5432
    user: str = ""
    dbname: str = ""
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None

    @property
    def is_unix_socket(self) -> bool:
        return self.host.startswith("/")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.host, f".s.PGSQL.{self.port}")

    @classmethod
    def from_dsn(cls, dsn: str) -> UpstreamTarget:
        """Read a ``postgresql://`` URI or a libpq ``key=value`` string."""
        params = _uri_params(dsn) if "://" in dsn else _keyword_params(dsn)
        sslmode = params.get("sslmode", "prefer")
        if sslmode not in SSL_MODES:
            raise ValueError(f"invalid sslmode {sslmode!r}: expected one of {', '.join(SSL_MODES)}")
        host = params.get("host") or "localhost"
        if host.startswith("/"):
            sslmode = "disable"  # libpq never negotiates TLS over a unix socket
        return cls(
            host=host,
            port=int(params.get("port") or 5432),
            user=params.get("user", ""),
            dbname=params.get("dbname", ""),
            sslmode=sslmode,
            sslrootcert=params.get("sslrootcert"),
            sslcert=params.get("sslcert"),
            sslkey=params.get("sslkey"),
        )

    def describe(self) -> str:
        return self.socket_path if self.is_unix_socket else f"{self.host}:{self.port}"


def _uri_params(dsn: str) -> dict[str, str]:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"unsupported DSN scheme {parts.scheme!r}")
    params: dict[str, str] = {}
    if parts.hostname:
        params["host"] = unquote(parts.hostname)
    if parts.port:
        params["port"] = str(parts.port)
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.path.strip("/"):
        params["dbname"] = unquote(parts.path.lstrip("/"))
    params.update(parse_qsl(parts.query))
    return params


def _keyword_params(dsn: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in dsn.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"invalid connection option {item!r}: expected key=value")
        params[key.strip()] = value.strip().strip("'")
    return params


def _tls_context(target: UpstreamTarget) -> ssl.SSLContext:
    """A client context as libpq builds it for the target's sslmode."""
    verify = target.sslmode in ("verify-ca", "verify-full") or (
        target.sslmode == "require" and target.sslrootcert is not None
    )
    context = ssl.create_default_context(cafile=target.sslrootcert)
    context.check_hostname = target.sslmode == "verify-full"
    if not verify:
        context.verify_mode = ssl.CERT_NONE
    if target.sslcert:
        context.load_cert_chain(target.sslcert, target.sslkey)
    return context


async def _connected_socket(target: UpstreamTarget, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    loop = asyncio.get_running_loop()
    if target.is_unix_socket:
        candidates = [(socket.AF_UNIX, target.socket_path)]
    else:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        candidates = [(family, address) for family, _, _, _, address in infos]
    last_error: OSError | None = None
    for family, address in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            last_error = exc if isinstance(exc, OSError) else OSError(str(exc) or "timed out")
            continue
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise ConnectionFailure(
        f"could not connect to upstream server at {target.describe()}: {last_error}",
        hint="Check --upstream and that the server is running.",
    )


async def _negotiate_tls(sock: socket.socket, target: UpstreamTarget) -> bool:
    """Send SSLRequest unless sslmode forbids it; return whether the server agreed."""
    if target.sslmode in ("disable", "allow"):
        return False
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, SSL_REQUEST)
    answer = await asyncio.wait_for(loop.sock_recv(sock, 1), CONNECT_TIMEOUT)
    if answer == b"S":
        return True
    if target.sslmode != "prefer":
        sock.close()
        raise ConnectionFailure(
            f"upstream server at {target.describe()} does not support SSL, but sslmode is {target.sslmode}"
        )
    return False


async def open_upstream(
    target: UpstreamTarget, protocol_factory: Callable[[], P]
) -> tuple[asyncio.Transport, P]:
    """Connect to the upstream, negotiating TLS as its sslmode says; raise ConnectionFailure if it can't."""
    loop = asyncio.get_running_loop()
    sock = await _connected_socket(target)
    try:
        use_tls = await _negotiate_tls(sock, target)
        context = _tls_context(target) if use_tls else None
        transport, protocol = await loop.create_connection(
            protocol_factory, sock=sock, ssl=context, server_hostname=target.host if use_tls else None
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        sock.close()
        raise ConnectionFailure(
            f"could not connect to upstream server at {target.describe()}: {exc}"
        ) from exc
    return transport, protocol  # type: ignore[return-value]


async def reachable(target: UpstreamTarget, timeout: float) -> str | None:
    """None when a connection to the upstream opens within ``timeout`` seconds, else why not (readiness).

    The connection is closed before anything is sent: Postgres logs nothing for such a connection.
    """
    try:
        sock = await asyncio.wait_for(_connected_socket(target, timeout), 2 * timeout)  # DNS included
    except ConnectionFailure as failure:
        return failure.message
    except TimeoutError:
        return f"connecting to {target.describe()} timed out"
    except OSError as exc:  # the name did not resolve
        return f"could not connect to upstream server at {target.describe()}: {exc}"
    sock.close()
    return None


class _CancelSent(asyncio.Protocol):
    def __init__(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def send_cancel(target: UpstreamTarget, request: bytes) -> None:
    """Deliver a CancelRequest and wait for the server to close, as libpq does."""
    transport, protocol = await open_upstream(target, _CancelSent)
    transport.write(request)
    try:
        await asyncio.wait_for(protocol.closed, CONNECT_TIMEOUT)
    finally:
        transport.close()
