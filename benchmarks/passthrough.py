"""Pass-through cost of pgml-proxy: pgbench select-only direct, through the proxy, and through PgBouncer.

Starts its own embedded PostgreSQL (TCP on 127.0.0.1), a pgml-proxy in front of it and, when the
``pgbouncer`` binary is on PATH, a PgBouncer in session pooling mode in front of the same server. Clients
always reach their target over TCP on 127.0.0.1; the proxy and PgBouncer reach the server the same way as
each other (its unix socket by default, ``--via tcp`` for TCP).

Runs are interleaved (each round, each mode: direct, proxy, pgbouncer) so that drift in the machine hits all
targets alike; each figure is the median over the rounds. Writes ``benchmarks/results/passthrough.json``
and prints, as its last line, the throughput ratios against the direct connection.

    .venv/bin/python benchmarks/passthrough.py [--seconds 10] [--rounds 2] [--clients 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import (
    RESULTS_DIR,
    BenchmarkError,
    at_least,
    benchmark_parser,
    cpu_seconds,
    embedded_postgres,
    environment,
    median_of,
    pgml_proxy,
    scratch_folder,
    write_results,
)

# harness (imported first) puts this checkout on sys.path, where ``tests`` is found
from pgml_proxy.embedded import SUPERUSER, SYSTEM_USER
from tests.support.servers import PGBENCH, PSQL, free_port

RESULTS = RESULTS_DIR / "passthrough.json"
MODES = ("simple", "extended")
TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)
FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)
PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    pid: int | None = None  # the middleman's process, whose CPU time per transaction is reported


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    parser.add_argument(
        "--seconds", type=at_least(1), default=10, help="duration of each pgbench run (default 10)"
    )
    parser.add_argument(
        "--rounds", type=at_least(1), default=2, help="interleaved rounds; medians over them (default 2)"
    )
    parser.add_argument(
        "--clients", type=at_least(1), default=8, help="pgbench clients for the throughput runs (default 8)"
    )
    parser.add_argument(
        "--jobs", type=at_least(1), default=2, help="pgbench threads for the throughput runs (default 2)"
    )
    parser.add_argument(
        "--via",
        choices=("socket", "tcp"),
        default="socket",
        help="how the proxy and PgBouncer reach the server (default: its unix socket)",
    )
    return parser.parse_args()


# -- PgBouncer -------------------------------------------------------------------------------------


PGBOUNCER_INI = """\
[databases]
* = {upstream}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/userlist.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 150
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
"""


@contextlib.contextmanager
def pgbouncer(binary: str, folder: Path, upstream: str) -> Iterator[tuple[str, int]]:
    """PgBouncer in session mode on a free port; as root it runs as the embedded server's user."""
    folder.mkdir()
    port = free_port()
    (folder / "pgbouncer.ini").write_text(PGBOUNCER_INI.format(upstream=upstream, port=port, folder=folder))
    (folder / "userlist.txt").write_text(f'"{SUPERUSER}" ""\n')
    run_as = SYSTEM_USER if os.geteuid() == 0 else None  # pgbouncer refuses to run as root
    if run_as:
        for path in (folder, *folder.iterdir()):
            shutil.chown(path, run_as, run_as)
        for parent in folder.parents:  # let it reach its folder
            if parent.stat().st_mode & 0o011 != 0o011:
                parent.chmod(parent.stat().st_mode | 0o011)
    log_path = folder / "pgbouncer.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, str(folder / "pgbouncer.ini")],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=run_as,
            start_new_session=True,
        )
    url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise BenchmarkError(f"pgbouncer exited at startup:\n{log_path.read_text(errors='replace')}")
            probe = psql(url, "select 1", check=False)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise BenchmarkError(f"pgbouncer did not accept connections:\n{probe.stderr}")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def psql(url: str, sql: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(PSQL), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and done.returncode != 0:
        raise BenchmarkError(f"psql failed on {url}: {done.stderr}")
    return done


# -- pgbench ---------------------------------------------------------------------------------------


def run_pgbench(url: str, *args: str, seconds: int) -> str:
    command = [str(PGBENCH), "-n", *args, "-T", str(seconds), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    failed = FAILED.search(done.stdout)
    if done.returncode != 0 or failed is None or int(failed.group(1)) != 0:
        raise BenchmarkError(
            f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def throughput(
    target: Target, mode: str, clients: int, jobs: int, seconds: int
) -> tuple[float, float | None]:
    """Transactions per second, and the middleman's CPU microseconds per transaction (None for direct)."""
    before = cpu_seconds(target.pid) if target.pid else 0.0
    out = run_pgbench(
        target.url, "-S", "-M", mode, "-c", str(clients), "-j", str(min(jobs, clients)), seconds=seconds
    )
    used = cpu_seconds(target.pid) - before if target.pid else None
    match, processed = TPS.search(out), PROCESSED.search(out)
    if match is None or processed is None:
        raise BenchmarkError(f"no tps in pgbench output:\n{out}")
    per_transaction = used * 1e6 / int(processed.group(1)) if used is not None else None
    return float(match.group(1)), per_transaction


def latency(url: str, seconds: int) -> float:
    out = run_pgbench(url, "-S", "-c", "1", "-j", "1", seconds=seconds)
    match = LATENCY.search(out)
    if match is None:
        raise BenchmarkError(f"no latency average in pgbench output:\n{out}")
    return float(match.group(1))


def pgbench_version() -> str:
    return subprocess.run([str(PGBENCH), "--version"], capture_output=True, text=True).stdout.strip()


def pgbouncer_version(binary: str | None) -> str | None:
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out else None


# -- report ----------------------------------------------------------------------------------------


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(results: dict, targets: list[str]) -> str:
    medians = results["tps"]
    lat = results["latency_ms"]
    direct = medians["direct"]
    lines = [
        "",
        f"pgbench select-only, {results['config']['clients']} clients / {results['config']['jobs']} threads, "
        f"{results['config']['seconds']} s x {results['config']['rounds']} rounds (median); "
        f"latency: 1 client, simple, {results['config']['seconds']} s x {results['config']['rounds']} (median)",
        "",
        f"{'target':<10} {'simple tps':>12} {'vs direct':>10} {'extended tps':>13} {'vs direct':>10} "
        f"{'latency ms':>11} {'vs direct':>10}",
    ]
    for name in targets:
        row = medians[name]
        lines.append(
            f"{name:<10} {fmt(row['simple']['median'], '12.0f')} "
            f"{fmt(ratio(row['simple']['median'], direct['simple']['median']), '10.2f')} "
            f"{fmt(row['extended']['median'], '13.0f')} "
            f"{fmt(ratio(row['extended']['median'], direct['extended']['median']), '10.2f')} "
            f"{fmt(lat[name]['median'], '11.3f')} "
            f"{fmt(ratio(lat[name]['median'], lat['direct']['median']), '10.2f')}"
        )
    cpu = results["cpu_us_per_transaction"]
    if cpu:
        lines += ["", "CPU time of the middleman per transaction (median, microseconds; lower is better):"]
        for name, by_mode in cpu.items():
            shown = ", ".join(f"{mode} {by_mode[mode]['median']:.1f}" for mode in MODES)
            lines.append(f"  {name:<10} {shown}")
    return "\n".join(lines)


def summary_line(results: dict) -> str:
    parts = []
    for name in ("proxy", "pgbouncer"):
        ratios = results["ratios"].get(name)
        if ratios is None:
            parts.append(f"{name}/direct n/a (pgbouncer not on PATH)")
        else:
            parts.append(f"{name}/direct simple={ratios['simple']:.2f} extended={ratios['extended']:.2f}")
    return "passthrough: " + "; ".join(parts)


# -- main ------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    bouncer_binary = shutil.which("pgbouncer")
    if bouncer_binary is None:
        print("pgbouncer not found on PATH: measuring direct and proxy only", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(scratch_folder())
        server = stack.enter_context(embedded_postgres(folder))
        direct_url = server.tcp_dsn()
        if args.via == "socket":
            upstream_dsn = server.dsn()
            bouncer_upstream = f"host={server.socket_dir} port={server.port} user={SUPERUSER}"
        else:
            upstream_dsn = direct_url
            bouncer_upstream = f"host=127.0.0.1 port={server.port} user={SUPERUSER}"
        targets = [
            Target("direct", direct_url),
            Target("proxy", *stack.enter_context(pgml_proxy(upstream_dsn))),
        ]
        if bouncer_binary is not None:
            bouncer = stack.enter_context(pgbouncer(bouncer_binary, folder / "pgbouncer", bouncer_upstream))
            targets.append(Target("pgbouncer", *bouncer))

        print("initializing pgbench (scale 1) directly", flush=True)
        init = subprocess.run(
            [str(PGBENCH), "-i", "-s", "1", "-q", direct_url], capture_output=True, text=True
        )
        if init.returncode != 0:
            raise BenchmarkError(f"pgbench -i failed:\n{init.stderr}")
        for target in targets:
            psql(target.url, "select count(*) from pgbench_branches")  # every target answers before timing

        tps: dict[str, dict[str, list[float]]] = {t.name: {mode: [] for mode in MODES} for t in targets}
        cpu: dict[str, dict[str, list[float]]] = {
            t.name: {mode: [] for mode in MODES} for t in targets if t.pid
        }
        lat: dict[str, list[float]] = {t.name: [] for t in targets}
        for round_no in range(1, args.rounds + 1):
            for mode in MODES:
                for target in targets:
                    value, cpu_us = throughput(target, mode, args.clients, args.jobs, args.seconds)
                    tps[target.name][mode].append(value)
                    shown = ""
                    if cpu_us is not None:
                        cpu[target.name][mode].append(cpu_us)
                        shown = f"  ({cpu_us:.1f} us CPU per transaction in {target.name})"
                    print(
                        f"round {round_no} {mode:<8} {target.name:<10} {value:10.0f} tps{shown}", flush=True
                    )
            for target in targets:
                value = latency(target.url, args.seconds)
                lat[target.name].append(value)
                print(f"round {round_no} latency  {target.name:<10} {value:10.3f} ms", flush=True)

    names = [t.name for t in targets]
    results: dict = {
        "benchmark": "passthrough",
        "config": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "clients": args.clients,
            "jobs": min(args.jobs, args.clients),
            "via": args.via,
            "script": "select-only (-S), -n",
        },
        "environment": environment()
        | {"pgbench": pgbench_version(), "pgbouncer": pgbouncer_version(bouncer_binary)},
        "tps": {
            name: {mode: median_of(runs) for mode, runs in by_mode.items()} for name, by_mode in tps.items()
        },
        "latency_ms": {name: median_of(runs) for name, runs in lat.items()},
        "cpu_us_per_transaction": {
            name: {mode: median_of(runs) for mode, runs in by_mode.items()} for name, by_mode in cpu.items()
        },
    }
    direct = results["tps"]["direct"]
    results["ratios"] = {
        name: {mode: results["tps"][name][mode]["median"] / direct[mode]["median"] for mode in MODES}
        | {"latency": results["latency_ms"][name]["median"] / results["latency_ms"]["direct"]["median"]}
        for name in names
        if name != "direct"
    }
    write_results(args.output, results, report(results, names))
    print(summary_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
