"""``pgml-proxy``: serve (the default) in front of an upstream, or of an embedded PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import signal
import ssl
import sys
from collections.abc import Sequence

import uvloop
from pgml_engines import EngineConfig

from pgml_proxy import __version__
from pgml_proxy.config import Settings, add_arguments, load_settings
from pgml_proxy.embedded import SUPERUSER, EmbeddedPostgres, EmbeddedPostgresError
from pgml_proxy.functions.builtin import BUILTIN
from pgml_proxy.logs import configure
from pgml_proxy.server import ProxyServer
from pgml_proxy.session.interceptor import Interceptor
from pgml_proxy.upstream import UpstreamTarget

log = logging.getLogger("pgml_proxy")

SUBCOMMANDS = ("serve",)
EMBEDDED_EXTRA_CONNECTIONS = 20
"""The embedded server's max_connections exceeds the proxy's limit: cancels and admin sessions need room."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgml-proxy",
        description="A Postgres wire-protocol proxy that gives any PostgreSQL the PostgresML SQL API.",
    )
    parser.add_argument("--version", action="version", version=f"pgml-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="accept clients and relay them to the upstream (the default)")
    add_arguments(serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in SUBCOMMANDS and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    parser = build_parser()
    namespace = parser.parse_args(args)
    try:
        settings = load_settings(vars(namespace))
        configure(settings.log_level)
        settings.listen_address  # noqa: B018 - validate before starting anything
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return uvloop.run(serve(settings))
    except (EmbeddedPostgresError, OSError, ValueError, ssl.SSLError) as exc:
        print(f"pgml-proxy: {exc}", file=sys.stderr)
        return 1


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def _engine_config(settings: Settings) -> EngineConfig:
    """Raises ValueError for settings the engine cannot work with (a batch of 0, a negative budget)."""
    try:
        return _build_engine_config(settings)
    except ValueError as exc:
        raise ValueError(
            f"invalid engine setting: {exc} (see --batch-max-size, --batch-max-wait-ms, --models-memory-budget-mb)"
        ) from exc


def _build_engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        search_dirs=(settings.models_dir,) if settings.models_dir else (),
        allow_downloads=settings.models_allow_downloads,
        allow_model_paths=settings.models_allow_paths,
        memory_budget_bytes=settings.models_memory_budget_mb * 1024**2,
        max_batch_size=settings.batch_max_size,
        max_batch_wait_s=settings.batch_max_wait_ms / 1000,
    )


async def serve(settings: Settings) -> int:
    tls_context = _tls_context(settings)
    engine_config = _engine_config(settings)  # checked before anything starts
    embedded: EmbeddedPostgres | None = None
    if settings.upstream is None:
        embedded = EmbeddedPostgres(
            settings.data_dir / "postgres",
            settings={"max_connections": str(settings.max_connections + EMBEDDED_EXTRA_CONNECTIONS)},
        )
        log.info("starting embedded PostgreSQL in %s", embedded.data_dir)
        await asyncio.to_thread(embedded.start)
        upstream = UpstreamTarget.from_dsn(embedded.dsn())
        user, database = SUPERUSER, "postgres"
    else:
        upstream = UpstreamTarget.from_dsn(settings.upstream)
        user = upstream.user or getpass.getuser()
        database = upstream.dbname or user
    try:
        server = ProxyServer(
            upstream,
            max_connections=settings.max_connections,
            interceptor=Interceptor(BUILTIN, engine_config),
            tls_context=tls_context,
        )
        host, port = await server.listen(*settings.listen_address)
        # Everything imported and built so far lives as long as the process: keep the collector from
        # walking it again and again while it collects the relay's short-lived objects.
        gc.freeze()
        shown_host = f"[{host}]" if ":" in host else host
        print(f"pgml-proxy ready: postgresql://{user}@{shown_host}:{port}/{database}", flush=True)
        log.info("relaying to %s", upstream.describe())
        await _wait_for_stop_signal()
        log.info("shutting down: waiting up to %.0fs for running statements", settings.shutdown_grace)
        await server.shutdown(settings.shutdown_grace)
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
    return 0


async def _wait_for_stop_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
