"""Settings: defaults, then a TOML file, then ``PGML_PROXY_*`` environment variables, then flags.

Every option has one name from which the others follow: the flag ``--tls-cert`` is the key ``cert`` of
the TOML table ``[tls]`` and the variable ``PGML_PROXY_TLS__CERT``; an option without a group, such as
``--max-connections``, is the top-level key ``max_connections`` and ``PGML_PROXY_MAX_CONNECTIONS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import platformdirs
from pgml_engines import EngineConfig
from pgml_engines.tasks import canonical_task

ENV_PREFIX: Final = "PGML_PROXY_"


Shape = Literal["scalar", "list", "table"]


@dataclass(frozen=True, slots=True)
class Option:
    """One setting. ``shape``: in TOML, a ``list`` option may also be an array of strings and a ``table``
    option a table of ``NAME = "VALUE"`` (as flags and variables they are comma-separated text)."""

    name: str
    type: type
    help: str
    group: str | None = None
    metavar: str | None = None
    shape: Shape = "scalar"

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
    admin_users: str = ""
    data_dir: Path = Path(platformdirs.user_data_dir("pgml-proxy"))
    log_level: str = "info"
    log_format: str = "text"
    metrics_listen: str | None = None
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
    models_preload: str = ""
    models_devices: str = ""
    batch_max_size: int = 64
    batch_max_wait_ms: float = 2.0
    generation_max_concurrent: int = 4
    training_max_concurrent: int | None = None

    @property
    def models_folder(self) -> Path:
        """Where local models live: --models-dir, else ``models`` in the data directory (where
        ``pgml-proxy models import`` saves when no folder is given)."""
        return self.models_dir or self.data_dir / "models"

    @property
    def listen_address(self) -> tuple[str, int]:
        return host_port(self.listen, "listen")

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where to serve /metrics, /healthz and /readyz; None: not at all."""
        return None if self.metrics_listen is None else host_port(self.metrics_listen, "metrics_listen")


def host_port(address: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too; an empty host is 127.0.0.1) as a pair; ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid {what} address {address!r}: expected HOST:PORT")
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
        "admin_users",
        str,
        "login roles that may load and unload models with pgml.load_model/unload_model, comma-separated "
        "(default: every role)",
        metavar="ROLES",
        shape="list",
    ),
    Option(
        "data_dir",
        Path,
        "where the embedded PostgreSQL keeps its data (default: the user data directory)",
        metavar="DIR",
    ),
    Option("log_level", str, "debug, info, warning or error (default info)", metavar="LEVEL"),
    Option(
        "log_format",
        str,
        "text (one line per event) or json (one JSON object per line) (default text)",
        metavar="FORMAT",
    ),
    Option(
        "metrics_listen",
        str,
        "address of the HTTP endpoint serving Prometheus /metrics, /healthz and /readyz (default: off)",
        metavar="HOST:PORT",
    ),
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
        shape="list",
    ),
    Option(
        "models_allowed",
        str,
        "the only models SQL may use, comma-separated (PostgresML's pgml.huggingface_whitelist); empty: all",
        group="models",
        metavar="NAMES",
        shape="list",
    ),
    Option(
        "models_aliases",
        str,
        "other names for models, NAME=MODEL comma-separated (e.g. meta-llama/Meta-Llama-3-8B-Instruct=smollm2); "
        "in TOML also a table",
        group="models",
        metavar="ALIASES",
        shape="table",
    ),
    Option(
        "models_preload",
        str,
        "models loaded before clients are accepted, comma-separated: NAME (as pgml.embed loads it) or TASK:NAME "
        "(TASK: rank, transform, or a transform task such as text-generation)",
        group="models",
        metavar="MODELS",
        shape="list",
    ),
    Option(
        "models_devices",
        str,
        "the device of each model when a call names none, NAME=DEVICE comma-separated (cpu, cuda, cuda:N, mps; "
        "NAME * for every other model); default: a GPU when present, else the CPU",
        group="models",
        metavar="DEVICES",
        shape="table",
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
    Option(
        "training_max_concurrent",
        int,
        "pgml.train and pgml.tune jobs running at once, each in a worker process; more wait their turn "
        "(default: one per CPU core)",
        group="training",
        metavar="N",
    ),
)


def add_arguments(parser: argparse.ArgumentParser, options: Iterable[Option] = OPTIONS) -> None:
    """Declare ``--config`` and the options as flags; unset flags stay None so lower layers show through."""
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help=f"TOML settings file (env {ENV_PREFIX}CONFIG)"
    )
    for option in options:
        text = f"{option.help} [env {option.env}]"
        if option.type is bool:  # a switch: given means true; absent leaves lower layers in charge
            parser.add_argument(option.flag, action="store_const", const=True, default=None, help=text)
        else:
            parser.add_argument(option.flag, type=option.type, metavar=option.metavar, help=text)


def load_settings(flags: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Settings:
    config_file = flags.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    return _settings(flags, environ, _read_toml(Path(config_file)) if config_file else {})


def _settings(flags: Mapping[str, Any], environ: Mapping[str, str], table: Mapping[str, Any]) -> Settings:
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


# --- what the settings mean to the engine -------------------------------------------------------------------

PRELOAD_TASKS: Final = ("embedding", "rank", "transform")
"""The kinds a preload entry may name besides transform tasks (``pgml_engines.Engine.load_model``'s)."""
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("text", "json")


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's configuration; ValueError naming the setting for values it cannot work with."""
    try:
        return EngineConfig(
            search_dirs=(settings.models_folder,),
            allow_downloads=settings.models_allow_downloads,
            allow_model_paths=settings.models_allow_paths,
            memory_budget_bytes=settings.models_memory_budget_mb * 1024**2,
            max_batch_size=settings.batch_max_size,
            max_batch_wait_s=settings.batch_max_wait_ms / 1000,
            trust_remote_code_models=frozenset(names(settings.models_trust_remote_code)),
            allowed_models=frozenset(names(settings.models_allowed)) or None,
            aliases=pairs(settings.models_aliases, "models_aliases", "NAME=MODEL"),
            devices=pairs(settings.models_devices, "models_devices", "NAME=DEVICE"),
            max_concurrent_generations=settings.generation_max_concurrent,
            max_concurrent_trainings=settings.training_max_concurrent,
        )
    except ValueError as exc:
        raise ValueError(
            f"invalid engine setting: {exc} (see --batch-max-size, --batch-max-wait-ms, --models-memory-budget-mb, "
            "--models-aliases, --models-devices, --generation-max-concurrent, --training-max-concurrent)"
        ) from exc


def names(listed: str) -> list[str]:
    """A comma-separated list, blanks dropped."""
    return [name.strip() for name in listed.split(",") if name.strip()]


def pairs(listed: str, what: str, form: str) -> dict[str, str]:
    """``NAME=VALUE,…`` as a mapping; a pair without both sides is a configuration error."""
    found: dict[str, str] = {}
    for pair in names(listed):
        name, _, value = (part.strip() for part in pair.partition("="))
        if not name or not value:
            raise ValueError(f"{what}: expected {form}, got {pair!r}")
        found[name] = value
    return found


def preload_list(settings: Settings) -> list[tuple[str, str]]:
    """(task, model) of each model to load at start; a bare NAME is an embedding model."""
    entries = []
    for entry in names(settings.models_preload):
        task, sep, model = entry.partition(":")
        if not sep or "/" in task:  # no task given (a hub name may hold a colon only after a slash)
            task, model = PRELOAD_TASKS[0], entry
        if not model.strip():
            raise ValueError(f"models_preload: expected NAME or TASK:NAME, got {entry!r}")
        if task not in PRELOAD_TASKS:
            try:
                canonical_task(task)
            except Exception as exc:
                raise ValueError(f"models_preload: {entry!r}: {exc}") from None
        entries.append((task, model.strip()))
    return entries


# --- checks ---------------------------------------------------------------------------------------------------

_DEVICE: Final = re.compile(r"cpu|mps|cuda(:[0-9]+)?")


def validate(settings: Settings) -> list[str]:
    """What is wrong with settings, each problem naming its option; empty when they can be served."""
    problems: list[str] = []

    def check(what: str, test: Callable[[], object]) -> None:
        try:
            test()
        except ValueError as exc:
            problems.append(f"{what}: {exc}")

    check("listen", lambda: settings.listen_address)
    check("metrics_listen", lambda: settings.metrics_address)
    if settings.upstream is not None:
        from pgml_proxy.upstream import UpstreamTarget

        check("upstream", lambda: UpstreamTarget.from_dsn(settings.upstream or ""))
    if settings.log_level not in LOG_LEVELS:
        problems.append(f"log_level: {settings.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if settings.log_format not in LOG_FORMATS:
        problems.append(f"log_format: {settings.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    for name, minimum in (("max_connections", 1), ("shutdown_grace", 0)):
        if getattr(settings, name) < minimum:
            problems.append(f"{name}: must be at least {minimum}, got {getattr(settings, name)}")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        problems.append("tls: cert and key go together")
    for name in ("tls_cert", "tls_key"):
        path = getattr(settings, name)
        if path is not None and not path.expanduser().is_file():
            problems.append(f"{name}: no such file {path}")
    if settings.models_dir is not None and not settings.models_dir.expanduser().is_dir():
        problems.append(f"models_dir: no such directory {settings.models_dir}")
    check("", lambda: engine_config(settings))
    check("", lambda: preload_list(settings))
    try:
        for model, device in pairs(settings.models_devices, "models_devices", "NAME=DEVICE").items():
            if not _DEVICE.fullmatch(device):
                problems.append(
                    f"models_devices: {model}: unknown device {device!r} (cpu, cuda, cuda:N or mps)"
                )
    except ValueError:
        pass  # reported by engine_config
    return [problem.removeprefix(": ") for problem in problems]


def check_file(path: Path, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The problems of a settings file (unknown keys, wrong types, bad values and paths), each naming its key;
    empty when ``pgml-proxy --config FILE`` would start with it. The environment is left out unless given."""
    try:
        table = _read_toml(path)
    except ValueError as exc:
        return [str(exc)]
    by_key = {(option.group, option.key): option for option in OPTIONS}
    groups = {option.group for option in OPTIONS if option.group}
    problems: list[str] = []
    usable: dict[str, Any] = {}  # the keys without problems, whose values are checked next
    for key, value in table.items():
        if key in groups and isinstance(value, dict):
            for inner, inner_value in value.items():
                option = by_key.get((key, inner))
                where = f"[{key}] {inner}"
                if option is None:
                    known = [k for g, k in by_key if g == key]
                    problems.append(f"{where}: unknown key{_did_you_mean(inner, known)}")
                elif found := _type_problems(option, inner_value, where):
                    problems += found
                else:
                    usable.setdefault(key, {})[inner] = inner_value
            continue
        option = by_key.get((None, key)) or next((o for o in OPTIONS if o.name == key), None)
        if option is None:
            problems.append(f"{key}: unknown key{_did_you_mean(key, [*groups, *(o.name for o in OPTIONS)])}")
        elif found := _type_problems(option, value, key):
            problems += found
        else:
            usable[key] = value
    try:
        return problems + validate(_settings({}, environ, usable))
    except ValueError as exc:  # an environment variable's value
        return [*problems, str(exc)]


_TOML_TYPES: Final[dict[type, tuple[type, ...]]] = {
    str: (str,),
    Path: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
}


def _type_problems(option: Option, value: Any, where: str) -> list[str]:
    allowed = _TOML_TYPES[option.type]
    if isinstance(value, allowed) and not (option.type in (int, float) and isinstance(value, bool)):
        return []
    if option.shape == "list" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return []
    if (
        option.shape == "table"
        and isinstance(value, dict)
        and all(isinstance(v, str) for v in value.values())
    ):
        return []
    expected = {
        str: "a string",
        Path: "a path (string)",
        int: "an integer",
        float: "a number",
        bool: "true or false",
    }[option.type]
    if option.shape == "list":
        expected += " or an array of strings"
    elif option.shape == "table":
        expected += ' or a table of NAME = "VALUE"'
    return [f"{where}: expected {expected}, got {_toml_type(value)} {value!r}"]


def _toml_type(value: Any) -> str:
    kinds = (
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
    )
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
