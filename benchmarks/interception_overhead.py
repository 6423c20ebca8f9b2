"""Interception overhead of pgml-proxy: round-trip latency of ``SELECT pgml.version()`` vs ``SELECT version()``.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (see ``harness.py``) and times, on one
psycopg connection through the proxy, ``SELECT pgml.version()`` (parsed and answered by the proxy: the
interception path) against ``SELECT version()`` (the pass-through fast path), under

- simple: ``ClientCursor`` (Query message),
- extended: the default cursor, as applications use it (psycopg prepares a statement after 5 runs, so this
  is mostly Bind/Execute of a named statement),
- extended-unprepared: the default cursor with ``prepare=False`` (Parse/Bind/Execute of the unnamed statement).

``SELECT version()`` on a direct connection to the server is timed too, for reference. Calls run in blocks
that rotate through every series, so drift hits them alike; every call is timed on its own. Writes
``benchmarks/results/interception_overhead.json`` and prints, as its last line, the ratio of mean latencies
pgml.version() / version() through the proxy per protocol.

    .venv/bin/python benchmarks/interception_overhead.py [--iterations 2000] [--block 100]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import psycopg
from harness import (
    RESULTS_DIR,
    BenchmarkError,
    at_least,
    benchmark_parser,
    environment,
    p99,
    proxied_postgres,
    rotated,
    scratch_folder,
    write_results,
)

RESULTS = RESULTS_DIR / "interception_overhead.json"
QUERIES = {"pgml.version()": "SELECT pgml.version()", "version()": "SELECT version()"}
PROTOCOLS = ("simple", "extended", "extended-unprepared")


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    parser.add_argument(
        "--iterations", type=at_least(1), default=2000, help="calls per series (default 2000)"
    )
    parser.add_argument("--block", type=at_least(1), default=100, help="calls per block (default 100)")
    parser.add_argument(
        "--warmup", type=at_least(0), default=200, help="untimed calls per series first (default 200)"
    )
    return parser.parse_args()


class Series:
    """One (connection, query, protocol) combination and its per-call latencies in microseconds."""

    def __init__(self, target: str, query: str, protocol: str, conn: psycopg.Connection) -> None:
        self.target, self.query, self.protocol = target, query, protocol
        self.sql = QUERIES[query]
        self.cursor = psycopg.ClientCursor(conn) if protocol == "simple" else conn.cursor()
        self.prepare = False if protocol == "extended-unprepared" else None  # None: psycopg's default
        self.latencies_us: list[float] = []
        self.expected: str | None = None

    @property
    def name(self) -> str:
        return f"{self.target} {self.query} {self.protocol}"

    def call(self) -> float:
        start = time.perf_counter_ns()
        self.cursor.execute(self.sql, prepare=self.prepare)
        row = self.cursor.fetchone()
        elapsed = (time.perf_counter_ns() - start) / 1e3
        value = row[0] if row else None
        if self.expected is None:
            self.expected = value
        elif value != self.expected:
            raise BenchmarkError(f"{self.name}: answer changed from {self.expected!r} to {value!r}")
        return elapsed

    def run(self, count: int, keep: bool = True) -> None:
        for _ in range(count):
            elapsed = self.call()
            if keep:
                self.latencies_us.append(elapsed)

    def stats(self) -> dict:
        data = sorted(self.latencies_us)
        return {
            "target": self.target,
            "query": self.sql,
            "protocol": self.protocol,
            "calls": len(data),
            "mean_us": statistics.fmean(data),
            "median_us": statistics.median(data),
            "p99_us": p99(data),
            "answer": self.expected,
        }


def report(results: dict) -> str:
    config = results["config"]
    lines = [
        "",
        f"round-trip latency, one connection each, {config['iterations']} calls per series in blocks of "
        f"{config['block']} (interleaved), after {config['warmup']} warm-up calls",
        "",
        f"{'target':<7} {'query':<16} {'protocol':<20} {'mean us':>9} {'median us':>10} {'p99 us':>9}",
    ]
    for s in results["series"]:
        query = "pgml.version()" if "pgml" in s["query"] else "version()"
        lines.append(
            f"{s['target']:<7} {query:<16} {s['protocol']:<20} {s['mean_us']:9.1f} {s['median_us']:10.1f} "
            f"{s['p99_us']:9.1f}"
        )
    lines += ["", "through the proxy, pgml.version() / version() (mean; extra microseconds per call):"]
    for protocol, ratio in results["ratios"].items():
        lines.append(f"  {protocol:<20} {ratio:5.2f}  (+{results['overhead_us'][protocol]:.1f} us)")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    with contextlib.ExitStack() as stack:
        servers = stack.enter_context(proxied_postgres(stack.enter_context(scratch_folder())))
        proxy = stack.enter_context(psycopg.connect(servers.proxy_url, autocommit=True))
        direct = stack.enter_context(psycopg.connect(servers.direct_url, autocommit=True))
        series = [Series("proxy", query, protocol, proxy) for protocol in PROTOCOLS for query in QUERIES]
        series += [Series("direct", "version()", protocol, direct) for protocol in PROTOCOLS]
        for s in series:
            s.run(args.warmup, keep=False)
        blocks = -(-args.iterations // args.block)
        for block_no in range(blocks):
            count = min(args.block, args.iterations - block_no * args.block)
            for s in rotated(series, block_no):
                s.run(count)
    stats = [s.stats() for s in series]

    def mean(target: str, query: str, protocol: str) -> float:
        return next(
            s["mean_us"]
            for s in stats
            if s["target"] == target and s["query"] == QUERIES[query] and s["protocol"] == protocol
        )

    results: dict = {
        "benchmark": "interception_overhead",
        "config": {
            "iterations": args.iterations,
            "block": args.block,
            "warmup": args.warmup,
            "client": f"psycopg {psycopg.__version__}",
        },
        "environment": environment(),
        "series": stats,
        "ratios": {p: mean("proxy", "pgml.version()", p) / mean("proxy", "version()", p) for p in PROTOCOLS},
        "overhead_us": {
            p: mean("proxy", "pgml.version()", p) - mean("proxy", "version()", p) for p in PROTOCOLS
        },
        "proxy_vs_direct_version": {
            p: mean("proxy", "version()", p) / mean("direct", "version()", p) for p in PROTOCOLS
        },
    }
    write_results(args.output, results, report(results))
    print(
        "interception_overhead: pgml.version()/version() mean latency through the proxy "
        + " ".join(f"{p}={results['ratios'][p]:.2f}" for p in PROTOCOLS)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
