"""SQL-level cursors: DECLARE's options and the FETCH, MOVE and CLOSE commands that name a cursor.

A cursor over a streaming pgml call lives in the proxy (its rows are produced there, as they are
generated), so the session must recognise the commands that use it, whose text never mentions pgml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import pglast
from pglast import ast
from pglast.enums import FetchDirection

# DeclareCursorStmt.options bits (PostgreSQL's parsenodes.h).
_BINARY: Final = 0x01
_SCROLL: Final = 0x02
_HOLD: Final = 0x20
_FETCH_ALL: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class CursorOptions:
    """How a DECLARE asks for its cursor: rows in binary, kept past the transaction, scrollable."""

    binary: bool = False
    hold: bool = False
    scroll: bool = False


@dataclass(frozen=True, slots=True)
class CursorCommand:
    """``FETCH``/``MOVE`` (``count`` rows forward, None for ALL) or ``CLOSE`` (``name`` None: ALL)."""

    kind: Literal["fetch", "move", "close"]
    name: str | None
    count: int | None = None
    #: Why the proxy cannot serve it (a backward or absolute fetch of a forward-only stream).
    refused: str | None = None


def _statement(sql: str) -> ast.Node | None:
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return None
    return statements[0].stmt if len(statements) == 1 else None


def cursor_options(sql: str) -> CursorOptions:
    """The options of a ``DECLARE … CURSOR`` statement (defaults when it is not one)."""
    statement = _statement(sql)
    options = statement.options if isinstance(statement, ast.DeclareCursorStmt) else 0
    return CursorOptions(bool(options & _BINARY), bool(options & _HOLD), bool(options & _SCROLL))


def cursor_command(sql: str) -> CursorCommand | None:
    """The FETCH, MOVE or CLOSE that ``sql`` is, when it is exactly one such statement."""
    if not sql.lstrip()[:5].lower().startswith(("fetch", "move", "close")):
        return None  # most statements: no parse needed
    statement = _statement(sql)
    if isinstance(statement, ast.ClosePortalStmt):
        return CursorCommand("close", statement.portalname)
    if not isinstance(statement, ast.FetchStmt):
        return None
    kind: Literal["fetch", "move"] = "move" if statement.ismove else "fetch"
    count = statement.howMany
    if statement.direction != FetchDirection.FETCH_FORWARD or count < 0:
        return CursorCommand(kind, statement.portalname, refused="cursor can only scan forward")
    if count == 0:
        return CursorCommand(kind, statement.portalname, refused="a cursor over a stream has no current row")
    return CursorCommand(kind, statement.portalname, None if count == _FETCH_ALL else count)
