"""The listener: accepts clients, enforces the connection limit, routes cancel requests, shuts down.

The cancel registry maps the keys the proxy issued to live sessions; a CancelRequest arrives on a
connection of its own and only ever carries such a key, never the upstream's.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

from pgml_proxy import metrics
from pgml_proxy.session.connection import ClientProtocol, Session
from pgml_proxy.session.interceptor import Interceptor
from pgml_proxy.upstream import UpstreamTarget
from pgml_proxy.wire.cancel import CancelKey, new_proxy_key

log = logging.getLogger("pgml_proxy.server")
T = TypeVar("T")

SHUTDOWN_POLL: Final = 0.05
BACKGROUND_GRACE: Final = 5.0


class ProxyServer:
    def __init__(
        self,
        upstream: UpstreamTarget,
        *,
        max_connections: int,
        interceptor: Interceptor,
        tls_context: ssl.SSLContext | None = None,
        admin_users: frozenset[str] = frozenset(),
    ) -> None:
        """``admin_users``: the login roles that may load and unload models (empty: every role)."""
        self.upstream = upstream
        self.interceptor = interceptor
        self.max_connections = max_connections
        self.tls_context = tls_context
        self.admin_users = admin_users
        self._connections: set[Session] = set()  # every open client connection, startup included
        self._admitted: set[Session] = set()  # those counted against max_connections
        self._by_pid: dict[int, Session] = {}
        self._server: asyncio.Server | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.shutting_down = False

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        """Start accepting; return the address actually bound (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ClientProtocol(self), host, port, reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    @property
    def accepting(self) -> bool:
        """The listener is open: new clients are accepted (readiness)."""
        return self._server is not None and self._server.is_serving() and not self.shutting_down

    # -- sessions ----------------------------------------------------------------------------------

    def track(self, session: Session) -> None:
        self._connections.add(session)
        metrics.CLIENT_CONNECTIONS_ACCEPTED.inc()
        metrics.CLIENT_CONNECTIONS.inc()

    def admit(self, session: Session) -> bool:
        """Count a session that sent its StartupMessage; refuse it past the limit (53300)."""
        if len(self._admitted) >= self.max_connections:
            log.warning("refused %s: %d connections already", session.peer, len(self._admitted))
            metrics.CLIENT_CONNECTIONS_REFUSED.inc()
            return False
        self._admitted.add(session)
        return True

    def issue_key(self, session: Session, protocol_minor: int) -> CancelKey:
        key = new_proxy_key(protocol_minor, self._by_pid)
        self._by_pid[key.pid] = session
        return key

    def forget(self, session: Session) -> None:
        if session in self._connections:
            self._connections.remove(session)
            metrics.CLIENT_CONNECTIONS.dec()
        self._admitted.discard(session)
        key = session.proxy_key
        if key is not None and self._by_pid.get(key.pid) is session:
            del self._by_pid[key.pid]

    def cancel(self, key: CancelKey) -> asyncio.Task[None] | None:
        """Cancel the session ``key`` names; the cancel forwarded upstream, if one was."""
        session = self._by_pid.get(key.pid)
        proxy_key = session.proxy_key if session is not None else None
        if session is None or proxy_key is None or not proxy_key.matches(key):
            log.info("cancel request with unknown key ignored")  # Postgres says nothing either
            return None
        return session.cancel()

    def spawn(self, work: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T]:
        """Run work that outlives the session asking for it (a cancel), and finish it before exiting."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(lambda done: self._finished(done, what))
        return task

    def _finished(self, task: asyncio.Task[Any], what: str) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s failed: %s", what, task.exception())

    # -- shutdown ----------------------------------------------------------------------------------

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let running statements finish for up to ``grace`` seconds, then close all."""
        self.shutting_down = True
        if self._server is not None:
            self._server.close()
        for session in list(self._connections):
            session.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._connections and loop.time() < deadline:
            await asyncio.sleep(SHUTDOWN_POLL)
        for session in list(self._connections):
            session.close_for_shutdown()  # a busy one cancels its statement upstream
        if self._background:
            await asyncio.wait(self._background, timeout=BACKGROUND_GRACE)
        if self._server is not None:
            await self._server.wait_closed()
        self.interceptor.close()
