"""``CREATE EXTENSION pgml`` and ``DROP EXTENSION pgml``: recognised so the proxy can install its catalog.

pgml-proxy installs nothing inside the database that runs code: "the extension" is the ``pgml`` schema of
plain tables, views and SQL functions that the proxy creates on the client's session (DESIGN §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pglast
from pglast import ast
from pglast.enums import DropBehavior, ObjectType

EXTENSION = "pgml"


@dataclass(frozen=True, slots=True)
class ExtensionCommand:
    """``create`` (``tolerant``: IF NOT EXISTS) or ``drop`` (``tolerant``: IF EXISTS; ``cascade``)."""

    kind: Literal["create", "drop"]
    tolerant: bool = False
    cascade: bool = False


def extension_command(sql: str) -> ExtensionCommand | None:
    """The CREATE or DROP of the pgml extension that ``sql`` is, when it is exactly that one statement
    (a DROP naming other extensions too is left to the server, which then reports pgml as unknown)."""
    if "extension" not in sql.lower():
        return None
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return None
    if len(statements) != 1:
        return None
    statement = statements[0].stmt
    if isinstance(statement, ast.CreateExtensionStmt) and statement.extname == EXTENSION:
        return ExtensionCommand("create", tolerant=bool(statement.if_not_exists))
    if (
        isinstance(statement, ast.DropStmt)
        and statement.removeType == ObjectType.OBJECT_EXTENSION
        and [getattr(o, "sval", None) for o in statement.objects or ()] == [EXTENSION]
    ):
        return ExtensionCommand(
            "drop",
            tolerant=bool(statement.missing_ok),
            cascade=statement.behavior == DropBehavior.DROP_CASCADE,
        )
    return None
