"""Settings: defaults, then a TOML file, then ``PGML_PROXY_*`` environment variables, then flags.

Every option has one name from which the others follow: the flag ``--tls-cert`` is the key ``cert`` of
the TOML table ``[tls]`` and the variable ``PGML_PROXY_TLS__CERT``; an option without a group, such as
``--max-connections``, is the top-level key ``max_connections`` and ``PGML_PROXY_MAX_CONNECTIONS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import platformdirs

ENV_PREFIX: Final = "PGML_PROXY_"


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    type: type
    help: str
    group: str | None = None
    metavar: str | None = None

    @property
    def key(self) -> str:
        return self.name.removeprefix(f"{self.group}_") if self.group else self.name

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        path = f"{self.group}__{self.key}" if self.group else self.name
        return ENV_PREFIX + path.upper()


@dataclass(frozen=True, slots=True)
class Settings:
    upstream: str | None = None
    listen: str = "127.0.0.1:6432"
    max_connections: int = 100
    data_dir: Path = Path(platformdirs.user_data_dir("pgml-proxy"))
    log_level: str = "info"
    shutdown_grace: float = 30.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    models_dir: Path | None = None
    models_allow_downloads: bool = False
    models_allow_paths: bool = False
    models_memory_budget_mb: int = 8192
    models_trust_remote_code: str = ""
    models_allowed: str = ""
    models_aliases: str = ""
    batch_max_size: int = 64
    batch_max_wait_ms: float = 2.0
    generation_max_concurrent: int = 4

    @property
    def models_folder(self) -> Path:
        """Where local models live: --models-dir, else ``models`` in the data directory (where
        ``pgml-proxy models import`` saves when no folder is given)."""
        return self.models_dir or self.data_dir / "models"

    @property
    def listen_address(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"invalid listen address {self.listen!r}: expected HOST:PORT")
        return host.strip("[]") or "127.0.0.1", int(port)


OPTIONS: Final = (
    Option(
        "upstream",
        str,
        "upstream PostgreSQL DSN (URI or key=value; ?host=/dir for a unix socket); "
        "without it an embedded PostgreSQL is started",
        metavar="DSN",
    ),
    Option(
        "listen",
        str,
        "address to accept clients on (default 127.0.0.1:6432; port 0 picks one)",
        metavar="HOST:PORT",
    ),
    Option(
        "max_connections",
        int,
        "client connections allowed at once; one more gets SQLSTATE 53300 (default 100)",
        metavar="N",
    ),
    Option(
        "data_dir",
        Path,
        "where the embedded PostgreSQL keeps its data (default: the user data directory)",
        metavar="DIR",
    ),
    Option("log_level", str, "debug, info, warning or error (default info)", metavar="LEVEL"),
    Option(
        "shutdown_grace",
        float,
        "seconds running statements get to finish on SIGINT/SIGTERM (default 30)",
        metavar="SECONDS",
    ),
    Option(
        "tls_cert",
        Path,
        "certificate (PEM) for TLS from clients; with --tls-key",
        group="tls",
        metavar="FILE",
    ),
    Option("tls_key", Path, "private key (PEM) for --tls-cert", group="tls", metavar="FILE"),
    Option(
        "models_dir",
        Path,
        "a directory of local models, found by their folder name (default: <data-dir>/models)",
        group="models",
        metavar="DIR",
    ),
    Option(
        "models_allow_downloads",
        bool,
        "let models be downloaded from the Hugging Face hub (off: offline)",
        group="models",
    ),
    Option("models_allow_paths", bool, "let SQL name a model by its filesystem path (off)", group="models"),
    Option(
        "models_memory_budget_mb",
        int,
        "megabytes of model weights kept loaded; the least recently used model goes first (default 8192)",
        group="models",
        metavar="MB",
    ),
    Option(
        "models_trust_remote_code",
        str,
        "models allowed to run their repository's own code (trust_remote_code), comma-separated; * for all",
        group="models",
        metavar="NAMES",
    ),
    Option(
        "models_allowed",
        str,
        "the only models SQL may use, comma-separated (PostgresML's pgml.huggingface_whitelist); empty: all",
        group="models",
        metavar="NAMES",
    ),
    Option(
        "models_aliases",
        str,
        "other names for models, NAME=MODEL comma-separated (e.g. meta-llama/Meta-Llama-3-8B-Instruct=smollm2); "
        "in TOML also a table",
        group="models",
        metavar="ALIASES",
    ),
    Option(
        "batch_max_size",
        int,
        "texts one model call takes at most, from all sessions together (default 64)",
        group="batch",
        metavar="N",
    ),
    Option(
        "batch_max_wait_ms",
        float,
        "how long the first request of a batch waits for others to join it (default 2)",
        group="batch",
        metavar="MS",
    ),
    Option(
        "generation_max_concurrent",
        int,
        "text generations one model runs at once, streams included; more wait their turn (default 4)",
        group="generation",
        metavar="N",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare every option as a flag; unset flags stay None so lower layers show through."""
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help=f"TOML settings file (env {ENV_PREFIX}CONFIG)"
    )
    for option in OPTIONS:
        text = f"{option.help} [env {option.env}]"
        if option.type is bool:  # a switch: given means true; absent leaves lower layers in charge
            parser.add_argument(option.flag, action="store_const", const=True, default=None, help=text)
        else:
            parser.add_argument(option.flag, type=option.type, metavar=option.metavar, help=text)


def load_settings(flags: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Settings:
    config_file = flags.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    table = _read_toml(Path(config_file)) if config_file else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        scope = table.get(option.group, {}) if option.group else table
        value = flags.get(option.name)
        if value is None and option.env in environ:
            value = environ[option.env]
        if value is None:
            value = scope.get(option.key, table.get(option.name))  # [tls] cert, or tls_cert at top level
        if value is not None:
            values[option.name] = _convert(option, value)
    return dataclasses.replace(Settings(), **values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read configuration file {path}: {exc}") from exc


def _convert(option: Option, value: Any) -> Any:
    if option.type is bool and isinstance(value, str):
        if value.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(f"invalid value {value!r} for {option.name}: expected true or false")
        return value.lower() in ("1", "true", "yes", "on")
    if option.type is str and isinstance(value, list):  # a TOML list of names
        return ",".join(str(item) for item in value)
    if option.type is str and isinstance(value, dict):  # a TOML table of NAME = "MODEL"
        return ",".join(f"{name}={target}" for name, target in value.items())
    try:
        return option.type(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"invalid value {value!r} for {option.name}: expected {option.type.__name__}"
        ) from exc
