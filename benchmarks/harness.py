"""What every benchmark shares (not a benchmark itself): the command line, the servers, process readings,
rounds and medians, and the results file.

Each benchmark starts its own embedded PostgreSQL (TCP on 127.0.0.1) and, except for ``passthrough.py``'s
PgBouncer, a pgml-proxy in front of it, so that a run depends on nothing but this checkout and its figures are
ratios measured side by side in one run. Nothing here reaches the network: models are found offline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ``tests.support`` starts the servers as the test suite does
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pgml_proxy import __version__ as proxy_version  # noqa: E402
from pgml_proxy.embedded import EmbeddedPostgres  # noqa: E402
from tests.support.servers import free_port, start_proxy  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
T = TypeVar("T")


class BenchmarkError(RuntimeError):
    pass


# -- the run ---------------------------------------------------------------------------------------


def benchmark_parser(doc: str, results: Path) -> argparse.ArgumentParser:
    """The command line every benchmark has: its docstring's first paragraph as help and ``--output``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=results, help=f"JSON results (default {results})")
    return parser


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number no smaller than ``minimum`` (sizes, counts, rounds)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return parse


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A temporary folder for the server's data directory and any models built for the run."""
    with tempfile.TemporaryDirectory(prefix="pgml-bench-") as name:
        yield Path(name)


def write_results(path: Path, results: dict, report: str) -> None:
    """Write the JSON results and print the report; the caller prints its one-line summary last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(report)
    print(f"\nresults written to {path}")


# -- servers ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def embedded_postgres(folder: Path, max_connections: int = 200) -> Iterator[EmbeddedPostgres]:
    """The embedded server in ``folder/pg``; ``max_connections`` above 200 for benchmarks with more sessions
    (each client session through the proxy holds one upstream connection)."""
    server = EmbeddedPostgres(
        folder / "pg",
        port=free_port(),
        tcp_host="127.0.0.1",
        settings={"max_connections": str(max_connections)},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def pgml_proxy(upstream_dsn: str, models_dir: Path | None = None) -> Iterator[tuple[str, int]]:
    """A pgml-proxy in front of ``upstream_dsn``; yields its URL and pid. With ``models_dir``, each folder in
    it is a model named after it (how the transform benchmarks serve models built or imported on the spot)."""
    args = ("--models-dir", str(models_dir)) if models_dir is not None else ()
    process = start_proxy(upstream_dsn, *args)
    try:
        yield process.url(), process.process.pid
    finally:
        process.stop()


@dataclass(frozen=True)
class ProxiedPostgres:
    """The embedded server and the pgml-proxy in front of it (which reaches it over its unix socket)."""

    server: EmbeddedPostgres
    proxy_url: str
    proxy_pid: int

    @property
    def direct_url(self) -> str:
        return self.server.tcp_dsn()

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir


@contextlib.contextmanager
def proxied_postgres(folder: Path, models_dir: Path | None = None) -> Iterator[ProxiedPostgres]:
    with embedded_postgres(folder) as server, pgml_proxy(server.dsn(), models_dir) as (url, pid):
        yield ProxiedPostgres(server, url, pid)


def simple_query(url: str, sql: str) -> list[tuple]:
    """Run ``sql`` on a fresh connection with the simple query protocol, as psql would, and fetch its rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        return psycopg.ClientCursor(conn).execute(sql).fetchall()


# -- readings --------------------------------------------------------------------------------------


def timed_proxy_query(servers: ProxiedPostgres, sql: str, rows: int) -> tuple[dict, list[tuple]]:
    """``sql`` through the proxy (simple protocol), every row fetched: the timings (to the first row, to
    the last, CPU of the proxy and of the server) and the rows; BenchmarkError unless there are ``rows``."""
    with psycopg.connect(servers.proxy_url, autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        cpu_before, server_before = cpu_seconds(servers.proxy_pid), server_cpu_seconds(servers.data_dir)
        start = time.perf_counter()
        cur.execute(sql)
        first = time.perf_counter()  # the first row arrived
        result = cur.fetchall()
        end = time.perf_counter()
        cpu = cpu_seconds(servers.proxy_pid) - cpu_before
        server_cpu = server_cpu_seconds(servers.data_dir) - server_before
    if len(result) != rows:
        raise BenchmarkError(f"proxy returned {len(result)} rows, expected {rows}")
    timing = {
        "seconds": end - start,
        "execute_s": first - start,
        "fetch_s": end - first,
        "proxy_cpu_s": cpu,
        "server_cpu_s": server_cpu,
    }
    return timing, result


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(data_dir: Path) -> float:
    """CPU time (user + system) of a PostgreSQL server so far: the postmaster, its live children (backends,
    background workers) and the children that have exited."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def proc_status_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM, ...) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(f"{field} not in /proc/{pid}/status")


def cpu_pressure() -> dict[str, float] | None:
    """The kernel's CPU pressure: the share of time (%, averaged over 10, 60 and 300 s) in which some runnable
    task waited for a CPU. Read before and after a run, it shows whether other work shared the machine (this
    benchmark's own processes count too); ``None`` where the kernel has no PSI."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]  # "some avg10=... avg60=... ..."
    except (OSError, IndexError):
        return None
    fields = dict(field.split("=", 1) for field in line.split()[1:])
    return {key: float(fields[key]) for key in ("avg10", "avg60", "avg300") if key in fields}


def pressure_lines(pressure: dict) -> list[str]:
    """The report's line on ``{"before": cpu_pressure(), "after": cpu_pressure()}``; none without PSI."""
    before, after = pressure["before"], pressure["after"]
    if before is None or after is None:
        return []
    return [
        f"CPU pressure (some, avg60) {before['avg60']:.0f}% before the rounds, {after['avg60']:.0f}% after: "
        "high values mean other work shared the CPUs and the timings are noisy"
    ]


def environment(*libraries: str) -> dict:
    """Versions and machine. ``libraries``: modules whose versions count too (imported here, so only those
    the benchmark loads anyway); with torch, also its thread count, which bounds every in-process figure."""
    found: dict = {"pgml_proxy": proxy_version, "psycopg": psycopg.__version__}
    for name in libraries:
        module = __import__(name)
        found[name] = module.__version__
        if name == "torch":
            found["torch_threads"] = module.get_num_threads()
    return found | {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# -- rounds ----------------------------------------------------------------------------------------


def median_of(values: list[float]) -> dict:
    """How the results files give a measured figure: every round's value and their median."""
    return {"runs": values, "median": statistics.median(values)}


def summarize(runs: list[dict], timed: Collection[str] = ("seconds",)) -> dict:
    """The rounds' dicts of one side as one list per field; the fields in ``timed`` as :func:`median_of`."""
    summary: dict = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        summary[key] = median_of(values) if key in timed else values
    return summary


def p99(ordered: Sequence[float]) -> float:
    """The 99th percentile of values sorted in ascending order (the nearest rank below it)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def rotated(items: list[T], by: int) -> list[T]:
    """``items`` started ``by`` places later, wrapping round: each round runs the sides in another order, so
    that none always follows the same other side's CPU burst or always runs first."""
    shift = by % len(items)
    return items[shift:] + items[:shift]
