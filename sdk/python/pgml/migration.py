"""``migrate()`` (contract §4.9): 1.0.0 collections need nothing; older ones must go through the PostgresML SDK."""

from __future__ import annotations

from .connection import connect, fetch_all, fetch_one, resolve_dsn
from .errors import PgmlError
from .layout import SDK_VERSION


async def migrate(database_url: str | None = None) -> None:
    """Check every collection's ``sdk_version``; nothing to do without ``pgml.collections``."""
    async with connect(resolve_dsn(database_url)) as connection:
        if await fetch_one(connection, "SELECT to_regclass('pgml.collections') IS NULL"):
            return
        if not await fetch_one(
            connection,
            "SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'pgml'"
            " AND table_name = 'collections' AND column_name = 'sdk_version')",
        ):
            raise PgmlError("these collections predate SDK 0.9; migrate them with the PostgresML SDK first")
        old = await fetch_all(
            connection,
            "SELECT name, sdk_version FROM pgml.collections WHERE sdk_version IS DISTINCT FROM %s ORDER BY id",
            (SDK_VERSION,),
        )
    if old:
        listed = ", ".join(f"{name} ({version or 'no version'})" for name, version in old)
        raise PgmlError(
            f"collections written by an SDK before {SDK_VERSION}: {listed}; migrate them with the PostgresML SDK first"
        )


async def cli() -> None:
    """The upstream's ``connect``/``remote`` commands set up FDW or dblink, which a proxy has no use for."""
    raise NotImplementedError(
        "pgml.cli() is not part of pgml-proxy's SDK: point clients at the proxy instead"
    )
