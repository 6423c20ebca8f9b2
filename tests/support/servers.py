"""Real servers for tests: the embedded PostgreSQL and ``pgml-proxy`` processes, on random ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pgml_proxy.embedded import BIN_DIR

PSQL = BIN_DIR / "psql"
PGBENCH = BIN_DIR / "pgbench"
READY = re.compile(r"^pgml-proxy ready: (postgresql://(\S+)@(\S+):(\d+)/(\S+))$")
PASSWORD = "s3cret-pw"

HBA = """\
local all md5user md5
local all scramuser scram-sha-256
host all md5user 127.0.0.1/32 md5
host all scramuser 127.0.0.1/32 scram-sha-256
local all all trust
host all all 127.0.0.1/32 trust
"""

ROLES_SQL = f"""
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD '{PASSWORD}';
SET password_encryption = 'scram-sha-256';
CREATE ROLE scramuser LOGIN PASSWORD '{PASSWORD}';
GRANT ALL ON SCHEMA public TO md5user, scramuser;
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ProxyProcess:
    """A running ``pgml-proxy``; ``dsn`` is what its ready line printed."""

    process: subprocess.Popen[str]
    dsn: str
    host: str
    port: int
    output: list[str]

    def url(
        self, user: str = "postgres", database: str = "postgres", password: str | None = None, **params: str
    ) -> str:
        auth = f"{user}:{password}" if password else user
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}" + (f"?{query}" if query else "")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    @property
    def log(self) -> str:
        return "".join(self.output)


def start_proxy(
    upstream_dsn: str | None, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> ProxyProcess:
    """Start ``python -m pgml_proxy`` on a random port and wait for its ready line."""
    command = [sys.executable, "-m", "pgml_proxy", "--listen", "127.0.0.1:0", *args]
    if upstream_dsn is not None:
        command += ["--upstream", upstream_dsn]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},  # no test reaches the network
    )
    output: list[str] = []
    ready: list[re.Match[str]] = []
    got_ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = READY.match(line.rstrip("\n"))
            if match and not ready:
                ready.append(match)
                got_ready.set()
        got_ready.set()

    threading.Thread(target=pump, daemon=True).start()
    got_ready.wait(timeout)
    if not ready:
        process.kill()
        process.wait()
        raise RuntimeError("pgml-proxy did not become ready:\n" + "".join(output))
    match = ready[0]
    return ProxyProcess(process, match.group(1), match.group(3), int(match.group(4)), output)


def run_psql(
    url: str, *args: str, input: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """psql with no .psqlrc, stopping on the first error."""
    return subprocess.run(
        [str(PSQL), "-X", "-v", "ON_ERROR_STOP=1", "-d", url, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def backends_named(direct: Any, application_name: str) -> int:
    """How many upstream backends a direct psycopg connection sees for ``application_name``."""
    query = "select count(*) from pg_stat_activity where application_name = %s"
    return direct.execute(query, (application_name,)).fetchone()[0]


def pgbench(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PGBENCH), *args, url], capture_output=True, text=True, timeout=timeout)


__all__: Sequence[str] = (
    "HBA",
    "PASSWORD",
    "PGBENCH",
    "PSQL",
    "ROLES_SQL",
    "ProxyProcess",
    "free_port",
    "pgbench",
    "run_psql",
    "start_proxy",
    "wait_until",
)
