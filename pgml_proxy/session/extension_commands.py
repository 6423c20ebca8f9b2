"""``CREATE EXTENSION pgml`` / ``DROP EXTENSION pgml`` through the proxy: the catalog installed (or
removed) on the client's own session, answered as Postgres answers the real commands (DESIGN §6).

Outside a transaction block the statements run in one transaction of the proxy's, so a failure leaves
nothing half-installed; inside the client's block they are part of it.
"""

from __future__ import annotations

from pgml_proxy import metrics
from pgml_proxy.catalog import drop_sql, install_sql, installed_version_sql
from pgml_proxy.errors import DuplicateObject, UndefinedObject
from pgml_proxy.session.interception import failing_with
from pgml_proxy.session.side_query import SideQueryFailed
from pgml_proxy.session.stream_portals import StreamPortals
from pgml_proxy.sql.extension import ExtensionCommand, extension_command
from pgml_proxy.sql.text import mentions_pgml
from pgml_proxy.wire.codes import QUERY
from pgml_proxy.wire.framing import message
from pgml_proxy.wire.status import IDLE, IN_TRANSACTION


class ExtensionCommands(StreamPortals):
    """The pgml extension's commands, for :class:`~pgml_proxy.session.connection.Session`."""

    async def _run_query(self, query: bytes) -> None:
        command = extension_command(query[:-1].decode()) if mentions_pgml(query) else None
        if command is None:
            await super()._run_query(query)
            return
        metrics.statement("answer")
        self._owned = False
        try:
            await failing_with(self._extension(command, query), self._fail_statement)
        except SideQueryFailed as failure:
            if self._owned:
                await self._end_owned("ROLLBACK")
                failure.result.status = IDLE  # the client never was in a transaction block
            self._answer_from_side(failure.result)

    async def _extension(self, command: ExtensionCommand, query: bytes) -> None:
        await self._await_idle()
        status = self.upstream_side.transaction_status  # type: ignore[attr-defined]
        if status not in (IDLE, IN_TRANSACTION):
            self._forward(message(QUERY, query))  # the server reports the failed block
            return
        installed = (await self.side_query(installed_version_sql())).rows
        present = bool(installed) and installed[0][0] is not None
        if command.kind == "create":
            if present and not command.tolerant:
                raise DuplicateObject('extension "pgml" already exists')
            if present:
                self.notice("NOTICE", 'extension "pgml" already exists, skipping')
            vector = await self.side_query(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
            )
            statements = install_sql(self.server.interceptor.registry, with_vector=vector.rows[0][0] != "0")  # type: ignore[attr-defined]
            tag = "CREATE EXTENSION"
        else:
            if not present and not command.tolerant:
                raise UndefinedObject('extension "pgml" does not exist')
            if not present:
                self.notice("NOTICE", 'extension "pgml" does not exist, skipping')
            statements = drop_sql(command.cascade) if present else []
            tag = "DROP EXTENSION"
        if status == IDLE and statements:
            await self.side_query("BEGIN")
            self._owned = True
        for sql in statements:
            await self.side_query(sql)
        if self._owned:
            self._owned = False
            await self.side_query("COMMIT")  # a failure here is the statement's, and ends the transaction
        self._answer_command(tag, status)
