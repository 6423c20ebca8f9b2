"""What every failing pgml statement must leave behind: a working session, and an aborted block."""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.errors
import pytest


def assert_usable(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute("SELECT 1").fetchone() == (1,)


def assert_fails_cleanly(
    url: str, conn: psycopg.Connection[Any], sql: str, error: type[Exception], message: str
) -> psycopg.Connection[Any]:
    """``sql`` fails with ``error`` (matching ``message``) and the autocommit ``conn`` goes on; inside a
    transaction block on a new connection it aborts the block (25P02 until ROLLBACK), as Postgres does.

    Returns that second connection, rolled back and open, for the caller's own check after the error.
    """
    with pytest.raises(error, match=message):
        conn.execute(sql)
    assert_usable(conn)
    block = psycopg.connect(url)
    block.execute("SELECT 1")  # opens the transaction block
    with pytest.raises(error):
        block.execute(sql)
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        block.execute("SELECT 1")
    block.rollback()
    assert_usable(block)
    return block
