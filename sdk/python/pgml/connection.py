"""Where the SDK gets its connections: the DSN (contract §1.2), one pool per (DSN, event loop), and the one place
every statement goes through, so DEBUG logging and error translation happen once.

Pools are keyed by loop because an asyncio pool belongs to the loop that opened it, and pytest-asyncio (like any
program that calls ``asyncio.run`` twice) gives each run a new loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from .errors import PgmlError

log = logging.getLogger("pgml")

DSN_VARIABLES: list[str] = ["PGML_DATABASE_URL", "DATABASE_URL"]
"""Environment variables read, in order, when no ``database_url`` is given; the korvus alias adds its own."""

Query = str | sql.Composable
Params = Sequence[Any] | None


def resolve_dsn(database_url: str | None) -> str:
    """The argument, else the first environment variable of :data:`DSN_VARIABLES` that is set."""
    if database_url:
        return database_url
    for name in DSN_VARIABLES:
        value = os.environ.get(name)
        if value:
            return value
    raise PgmlError(
        "no database URL: pass database_url or set "
        + " or ".join(DSN_VARIABLES)
        + " (e.g. postgresql://host:6432/db)"
    )


def _milliseconds(name: str, default: float | None) -> float | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value) / 1000
    except ValueError as error:
        raise PgmlError(f"{name} must be a number of milliseconds, got {value!r}") from error


def _count(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as error:
        raise PgmlError(f"{name} must be an integer, got {value!r}") from error


def _pool_settings() -> dict[str, Any]:
    """psycopg_pool keyword arguments from the contract's environment settings."""
    timeout = _milliseconds("PGML_CHECKOUT_TIMEOUT", None)
    if timeout is None:
        timeout = _milliseconds("PGML_POOL_ACQUIRE_TIMEOUT", 30.0)
    settings: dict[str, Any] = {
        "min_size": _count("PGML_POOL_MIN_CONNECTIONS", 0),
        "max_size": max(1, _count("PGML_POOL_MAX_CONNECTIONS", 10)),
        "timeout": timeout,
    }
    lifetime = _milliseconds("PGML_POOL_MAX_LIFETIME", None)
    if lifetime is not None:
        settings["max_lifetime"] = lifetime
    idle = _milliseconds("PGML_POOL_IDLE_TIMEOUT", None)
    if idle is not None:
        settings["max_idle"] = idle
    return settings


_async_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncConnectionPool]] = (
    weakref.WeakKeyDictionary()
)
_sync_pools: dict[str, ConnectionPool] = {}
_sync_lock = threading.Lock()


async def _pool(dsn: str) -> AsyncConnectionPool:
    loop = asyncio.get_running_loop()
    pools = _async_pools.setdefault(loop, {})
    pool = pools.get(dsn)
    if pool is None:
        pool = AsyncConnectionPool(dsn, kwargs={"autocommit": True}, open=False, **_pool_settings())
        pools[dsn] = pool
        await pool.open()
    return pool


def _sync_pool(dsn: str) -> ConnectionPool:
    with _sync_lock:
        pool = _sync_pools.get(dsn)
        if pool is None:
            pool = ConnectionPool(dsn, kwargs={"autocommit": True}, open=True, **_pool_settings())
            _sync_pools[dsn] = pool
        return pool


@asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled autocommit connection; wrap work in ``conn.transaction()`` for one transaction."""
    pool = await _pool(dsn)
    try:
        async with pool.connection() as connection:
            yield connection
    except psycopg.Error as error:
        raise database_error(error) from error


@contextmanager
def connect_sync(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """The synchronous twin of :func:`connect`, for the few methods the contract makes sync."""
    try:
        with _sync_pool(dsn).connection() as connection:
            yield connection
    except psycopg.Error as error:
        raise database_error(error) from error


async def close_pools() -> None:
    """Close this loop's pools (tests and short scripts call it before their loop ends)."""
    pools = _async_pools.pop(asyncio.get_running_loop(), {})
    for pool in pools.values():
        await pool.close()


def database_error(error: psycopg.Error) -> PgmlError:
    """A driver error as the SDK's: the server's message and SQLSTATE."""
    diagnostic = getattr(error, "diag", None)
    message = (diagnostic.message_primary if diagnostic else None) or str(error)
    return PgmlError(message, getattr(error, "sqlstate", None))


def _logged(connection: Any, query: Query, params: Params) -> None:
    if log.isEnabledFor(logging.DEBUG):
        text = query if isinstance(query, str) else query.as_string(connection)
        log.debug("SQL: %s; params: %r", text, params)


async def execute(connection: psycopg.AsyncConnection[Any], query: Query, params: Params = None) -> None:
    """Run a statement for its effect."""
    _logged(connection, query, params)
    await connection.execute(query, params)


async def fetch_all(
    connection: psycopg.AsyncConnection[Any], query: Query, params: Params = None
) -> list[tuple[Any, ...]]:
    """Every row of a query, as tuples."""
    _logged(connection, query, params)
    async with connection.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchall() if cursor.description else []


async def fetch_one(connection: psycopg.AsyncConnection[Any], query: Query, params: Params = None) -> Any:
    """The first column of the first row (``None`` without rows)."""
    rows = await fetch_all(connection, query, params)
    return rows[0][0] if rows else None


def fetch_all_sync(
    connection: psycopg.Connection[Any], query: Query, params: Params = None
) -> list[tuple[Any, ...]]:
    """:func:`fetch_all` on a sync connection."""
    _logged(connection, query, params)
    with connection.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []
