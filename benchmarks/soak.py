"""Soak: many client sessions through pgml-proxy for minutes, an upstream restart mid-run, and checks that
nothing leaks (memory, file descriptors, upstream connections) and that every client carries on.

Starts its own embedded PostgreSQL (``max_connections`` = clients + 50) and a pgml-proxy in front of it (a
separate process, ``--max-connections`` = clients + 50, reaching the server over its unix socket). C client
tasks in this process (one connection each; every fourth uses psycopg, the others asyncpg) loop over a mix of
operations with think times between them (uniform 0.2-1.8 s by default, so about C operations per second in
all, not a flat-out race on a small machine):

    simple       SELECT ... FROM pg_class (simple query protocol)
    prepared     a lookup in soak_items through a named prepared statement
    transaction  BEGIN; INSERT INTO soak_log; UPDATE soak_items; SELECT soak_items; COMMIT
    embed        SELECT pgml.embed('sentence-transformers/all-MiniLM-L6-v2', $1) (the packaged model)
    chunk        SELECT * FROM pgml.chunk('character', $1, '{...}')
    version      SELECT pgml.version() (simple query protocol)

At ``--restart-at`` (default 40 % of the run) the upstream is stopped (fast shutdown) and started again on the
same port and data folder after ``--outage`` seconds. Clients whose statement or connection fails close their
connection, wait a moment and reconnect. Errors of the outage's kinds (SQLSTATE 57P01/57P02/57P03, class 08, a
lost connection, and asyncpg's InternalClientError for a FATAL that reaches an idle connection, which it shows
against PostgreSQL directly too) are expected between the stop and ``--grace`` seconds after the server is
back; any other error, and any error at all outside that window, is unexpected. Every ``--sample-interval``
seconds the proxy's resident memory and threads (/proc/<pid>/status), open file descriptors (/proc/<pid>/fd)
and CPU time, and the upstream's client backends (pg_stat_activity over a direct connection, itself excluded)
are recorded.

Checks, each printed PASS or FAIL (any FAIL: exit status 1): no unexpected errors; every client completed an
operation started after the restart; all clients stop when asked; upstream backends back to 0 within 10 s of
the clients disconnecting and never above clients + 5; the proxy's open fds back to the idle level measured
before the clients started (+ 8); transactions atomic (sum of soak_items counters = rows in soak_log, and
committed <= rows <= committed + failed); no traceback in the proxy's log; the proxy exits 0 on SIGTERM; and
resident memory stable: at the end of the run (median of the samples in the last 5 %) at most
max(64 MiB, 15 %) above the end of the warm phase (median of the 5 % before ``--warm-at``, default 20 %: the
model loaded, every session open). Why that bound: the restart tears down and rebuilds every session at once,
and glibc keeps much of what they freed (30-60 MiB with 200 sessions here; ``malloc_trim`` in the proxy gives
it back, and the proxy's Python object count stays flat across restarts), so the bound must leave room for one
mass reconnect; it still catches a leak of ~3 KB per operation or ~500 KB per session over the default run.
Smaller leaks show in the RSS slopes before and after the restart (reported, not checked) and need a longer
``--duration``.

Writes ``benchmarks/results/soak.json`` (config, checks, per-kind rates and latencies, errors by class, the
time series) and prints, as its last line, the verdict with the run's size and the memory growth.

    .venv/bin/python benchmarks/soak.py [--duration 300] [--clients 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
from harness import (
    RESULTS_DIR,
    BenchmarkError,
    at_least,
    benchmark_parser,
    cpu_pressure,
    cpu_seconds,
    embedded_postgres,
    environment,
    p99,
    pressure_lines,
    proc_status_mb,
    scratch_folder,
    write_results,
)
from workload import MODEL, SEED, make_texts

# harness (imported first) puts this checkout on sys.path, where ``tests`` is found
from pgml_proxy.embedded import EmbeddedPostgres
from tests.support.servers import ProxyProcess, start_proxy

RESULTS = RESULTS_DIR / "soak.json"
DIMENSIONS = 384
ITEMS = 1000  # rows of soak_items: enough that concurrent transactions rarely wait on one row's lock
CONNECTION_HEADROOM = 50  # upstream and proxy connection limits: clients + this
STATEMENT_TIMEOUT = 60.0  # an operation still running after this long is a hang (an unexpected error)
CONNECT_TIMEOUT = 15.0
STOP_TIMEOUT = 60.0  # for the clients to finish their last operation and disconnect
SETTLE_TIMEOUT = 10.0  # for upstream backends and fds to come back down after the clients disconnect
FD_SLACK = 8
BACKEND_SLACK = 5
RSS_GROWTH_MIB = 64.0
RSS_GROWTH_SHARE = 0.15
PSYCOPG_EVERY = 4  # every fourth client uses psycopg (unnamed statements, client-side binding)

LOOKUP = "SELECT id, counter, note FROM soak_items WHERE id = {0}"
SIMPLE_SQL = "SELECT count(*), max(oid::int8) FROM pg_class WHERE relkind = 'r'"
VERSION_SQL = "SELECT pgml.version()"
EMBED = f"SELECT pgml.embed('{MODEL}', {{0}})"
CHUNK = "SELECT chunk_index, chunk FROM pgml.chunk('character', {0}, '{{\"chunk_size\": 120, \"chunk_overlap\": 0}}')"
INSERT_LOG = "INSERT INTO soak_log (client, item) VALUES ({0}, {1})"
UPDATE_ITEM = "UPDATE soak_items SET counter = counter + 1, note = {0} WHERE id = {1}"
SELECT_ITEM = "SELECT counter FROM soak_items WHERE id = {0}"

KINDS = {  # name: (weight, statements it sends)
    "simple": (25, 1),
    "prepared": (25, 1),
    "transaction": (15, 5),
    "embed": (15, 1),
    "chunk": (12, 1),
    "version": (8, 1),
}
EXPECTED_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})  # admin/crash shutdown, cannot connect now
LOST = "connection_lost"  # no SQLSTATE: the socket closed under the driver
# asyncpg reads an ErrorResponse that arrives while the connection is idle (the FATAL 57P01 of a shutdown) as a
# protocol error and refuses new statements ("another operation (2) is in progress": state 2 is its
# ERROR_CONSUME) until the socket's EOF arrives a moment later. Seen against PostgreSQL directly as well.
FATAL_WHILE_IDLE = "asyncpg_fatal_while_idle"
ASYNCIO_REPORTS = (
    "Task exception was never retrieved",
    "Future exception was never retrieved",
    "Exception in ",
)


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    parser.add_argument(
        "--duration", type=at_least(10), default=300, help="seconds the clients run (default 300)"
    )
    parser.add_argument("--clients", type=at_least(1), default=200, help="client connections (default 200)")
    parser.add_argument(
        "--think-ms",
        type=at_least(0),
        nargs=2,
        default=(200, 1800),
        metavar=("MIN", "MAX"),
        help="think time between a client's operations, uniform (default 200 1800)",
    )
    parser.add_argument(
        "--restart-at", type=float, default=0.4, help="share of the run when the upstream restarts (0.4)"
    )
    parser.add_argument(
        "--warm-at", type=float, default=0.2, help="share of the run that ends the warm phase (0.2)"
    )
    parser.add_argument("--outage", type=float, default=3.0, help="seconds the upstream stays down (3)")
    parser.add_argument(
        "--grace",
        type=float,
        default=15.0,
        help="seconds after the upstream is back in which outage errors still count as expected (15)",
    )
    parser.add_argument(
        "--sample-interval", type=float, default=2.0, help="seconds between samples (default 2)"
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the texts and choices ({SEED})")
    args = parser.parse_args()
    if not 0 < args.warm_at < args.restart_at < 0.9:
        parser.error("need 0 < --warm-at < --restart-at < 0.9")
    if args.think_ms[1] < args.think_ms[0]:
        parser.error("--think-ms MAX must be at least MIN")
    return args


# -- drivers ---------------------------------------------------------------------------------------


class AsyncpgClient:
    """asyncpg: the extended protocol with named statements (its statement cache), binary results;
    ``execute`` without arguments uses the simple query protocol."""

    driver = "asyncpg"

    def __init__(self, conn: asyncpg.Connection, lookup: asyncpg.prepared_stmt.PreparedStatement) -> None:
        self.conn = conn
        self.lookup = lookup

    @classmethod
    async def connect(cls, url: str) -> AsyncpgClient:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
        try:
            lookup = await conn.prepare(LOOKUP.format("$1"))
        except BaseException:
            conn.terminate()
            raise
        return cls(conn, lookup)

    async def simple(self, sql: str) -> str:
        return await self.conn.execute(sql)

    async def prepared(self, item: int) -> tuple:
        return tuple(await self.lookup.fetchrow(item))

    async def embed(self, text: str) -> list[float]:
        return await self.conn.fetchval(EMBED.format("$1"), text)

    async def chunk(self, text: str) -> list[tuple]:
        return [tuple(row) for row in await self.conn.fetch(CHUNK.format("$1"), text)]

    async def transaction(self, client: int, item: int, note: str, pause: float) -> int:
        async with self.conn.transaction():
            await self.conn.execute(INSERT_LOG.format("$1", "$2"), client, item)
            await asyncio.sleep(pause)
            await self.conn.execute(UPDATE_ITEM.format("$1", "$2"), note, item)
            return await self.conn.fetchval(SELECT_ITEM.format("$1"), item)

    async def close(self) -> None:
        await self.conn.close(timeout=10)

    async def abort(self) -> None:
        self.conn.terminate()


class PsycopgClient:
    """psycopg 3: unnamed extended-protocol statements, server-side prepared after 5 runs (or at once with
    ``prepare=True``); a ClientCursor for the simple query protocol."""

    driver = "psycopg"

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, url: str) -> PsycopgClient:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        return cls(conn)

    async def simple(self, sql: str) -> str:
        cur = psycopg.AsyncClientCursor(self.conn)
        await cur.execute(sql)
        await cur.fetchall()
        return cur.statusmessage or ""

    async def prepared(self, item: int) -> tuple:
        cur = await self.conn.execute(LOOKUP.format("%s"), (item,), prepare=True)
        return await cur.fetchone()

    async def embed(self, text: str) -> list[float]:
        cur = await self.conn.execute(EMBED.format("%s"), (text,))
        return (await cur.fetchone())[0]

    async def chunk(self, text: str) -> list[tuple]:
        cur = await self.conn.execute(CHUNK.format("%s"), (text,))
        return await cur.fetchall()

    async def transaction(self, client: int, item: int, note: str, pause: float) -> int:
        async with self.conn.transaction():
            await self.conn.execute(INSERT_LOG.format("%s", "%s"), (client, item))
            await asyncio.sleep(pause)
            await self.conn.execute(UPDATE_ITEM.format("%s", "%s"), (note, item))
            cur = await self.conn.execute(SELECT_ITEM.format("%s"), (item,))
            return (await cur.fetchone())[0]

    async def close(self) -> None:
        await self.conn.close()

    async def abort(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.close()


Client = AsyncpgClient | PsycopgClient


class WrongResult(Exception):
    """An operation answered, but not with what it should have: an unexpected error of its own class."""


def error_class(exc: BaseException) -> str:
    """The SQLSTATE when the error has one, :data:`LOST` for a connection that closed under the driver,
    ``timeout`` for a hang, otherwise the exception's type."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, (ConnectionError, OSError)):
        return LOST
    text = str(exc).lower()
    if isinstance(exc, asyncpg.InternalClientError) and (
        "another operation (2) is in progress" in text or "cannot process message 'e'" in text
    ):
        return FATAL_WHILE_IDLE
    if isinstance(exc, (asyncpg.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)) and any(
        word in text for word in ("closed", "lost", "terminat", "connection failed", "connection refused")
    ):
        return LOST
    return type(exc).__name__


def proc_threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise KeyError(f"Threads not in /proc/{pid}/status")


def outage_kind(kind: str) -> bool:
    return kind in EXPECTED_SQLSTATES or kind.startswith("08") or kind in (LOST, FATAL_WHILE_IDLE)


# -- the run's state -------------------------------------------------------------------------------


@dataclass
class ErrorEvent:
    at: float  # seconds since the clients started
    client: int
    operation: str  # a kind, or "connect" / "close"
    kind: str
    message: str
    expected: bool = False


@dataclass
class Soak:
    args: argparse.Namespace
    proxy: ProxyProcess
    server: EmbeddedPostgres
    embed_texts: list[str]
    chunk_texts: list[str]
    t0: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    completions: list[float] = field(default_factory=list)  # finish time of each operation (for the rate)
    errors: list[ErrorEvent] = field(default_factory=list)
    connects: int = 0
    connected: set[int] = field(default_factory=set)
    back_at: dict[int, float] = field(default_factory=dict)  # end of each client's first operation after it
    committed: int = 0
    warm_up_transactions: int = 0
    failed_transactions: int = 0
    samples: list[dict] = field(default_factory=list)
    restart: dict[str, float] = field(default_factory=dict)
    loop_lag_max: float = 0.0
    direct: asyncpg.Connection | None = None  # the monitoring connection

    @property
    def pid(self) -> int:
        return self.proxy.process.pid

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    # -- a client ----------------------------------------------------------------------------------

    async def client(self, index: int) -> None:
        rng = random.Random(self.args.seed * 1000 + index)
        open_client = (
            PsycopgClient.connect if index % PSYCOPG_EVERY == PSYCOPG_EVERY - 1 else AsyncpgClient.connect
        )
        ramp = min(10.0, self.args.duration * 0.05)
        await self.pause(ramp * index / self.args.clients)
        think_min, think_max = (ms / 1000 for ms in self.args.think_ms)
        names, weights = list(KINDS), [weight for weight, _ in KINDS.values()]
        conn: Client | None = None
        while not self.stop.is_set():
            if conn is None:
                try:
                    conn = await asyncio.wait_for(open_client(self.proxy.url()), CONNECT_TIMEOUT + 5)
                except Exception as exc:
                    self.failed(index, "connect", exc)
                    await self.pause(rng.uniform(0.5, 1.5))
                    continue
                self.connects += 1
                self.connected.add(index)
            kind = rng.choices(names, weights)[0]
            start = time.monotonic()
            try:
                await asyncio.wait_for(self.operation(conn, index, kind, rng), STATEMENT_TIMEOUT)
            except Exception as exc:
                self.failed(index, kind, exc)
                await conn.abort()
                conn = None
                self.connected.discard(index)
                await self.pause(rng.uniform(0.5, 1.5))
                continue
            end = time.monotonic()
            self.latencies[kind].append(end - start)
            self.completions.append(end - self.t0)
            if start - self.t0 >= self.restart.get("up", float("inf")) and index not in self.back_at:
                self.back_at[index] = end - self.t0
            await self.pause(rng.uniform(think_min, think_max))
        if conn is not None:
            try:
                await conn.close()
            except Exception as exc:
                self.failed(index, "close", exc)
                await conn.abort()
            self.connected.discard(index)

    async def operation(self, conn: Client, index: int, kind: str, rng: random.Random) -> None:
        if kind == "simple":
            status = await conn.simple(SIMPLE_SQL)
            if status != "SELECT 1":
                raise WrongResult(f"simple: status {status!r}")
        elif kind == "version":
            status = await conn.simple(VERSION_SQL)
            if status != "SELECT 1":
                raise WrongResult(f"version: status {status!r}")
        elif kind == "prepared":
            item = rng.randint(1, ITEMS)
            row = await conn.prepared(item)
            if row is None or row[0] != item:
                raise WrongResult(f"prepared: row {row!r} for id {item}")
        elif kind == "embed":
            vector = await conn.embed(rng.choice(self.embed_texts))
            if vector is None or len(vector) != DIMENSIONS:
                raise WrongResult(f"embed: {vector!r:.80}")
        elif kind == "chunk":
            text = rng.choice(self.chunk_texts)
            rows = await conn.chunk(text)
            if not rows or rows[0][0] != 1 or not all(piece in text for _, piece in rows):
                raise WrongResult(f"chunk: {rows!r:.120}")
        elif kind == "transaction":
            item = rng.randint(1, ITEMS)
            try:
                counter = await conn.transaction(index, item, f"client {index}", rng.uniform(0, 0.01))
            except BaseException:
                self.failed_transactions += 1  # in doubt: a lost COMMIT may have committed
                raise
            self.committed += 1
            if not counter or counter < 1:
                raise WrongResult(f"transaction: counter {counter!r}")
        else:
            raise AssertionError(kind)

    def failed(self, client: int, operation: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300] if str(exc) else type(exc).__name__
        self.errors.append(ErrorEvent(self.now(), client, operation, error_class(exc), message))

    # -- readings ----------------------------------------------------------------------------------

    async def backends(self) -> int | None:
        """Client backends on the upstream other than the monitoring connection (direct, over TCP, opened
        again after the restart); None while the upstream is unreachable."""
        try:
            if self.direct is None or self.direct.is_closed():
                self.direct = await asyncpg.connect(self.server.tcp_dsn(), timeout=2)
            return await self.direct.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                timeout=2,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if self.direct is not None:
                self.direct.terminate()
                self.direct = None
            return None

    async def sample(self, label: str | None = None) -> dict:
        pid = self.pid
        reading = {
            "t": round(self.now(), 2),
            "rss_mib": round(proc_status_mb(pid), 1),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": proc_threads(pid),
            "proxy_cpu_s": round(cpu_seconds(pid), 2),
            "upstream_backends": await self.backends(),
            "clients_connected": len(self.connected),
            "operations": len(self.completions),
            "errors": len(self.errors),
        }
        if label:
            reading["label"] = label
        return reading

    async def monitor(self) -> None:
        interval = self.args.sample_interval
        next_at = time.monotonic()
        while not self.stop.is_set():
            self.samples.append(await self.sample())
            next_at += interval
            await self.pause(max(0.0, next_at - time.monotonic()))
            self.loop_lag_max = max(self.loop_lag_max, time.monotonic() - next_at)

    async def restart_upstream(self) -> None:
        await self.pause(self.args.duration * self.args.restart_at)
        if self.stop.is_set():
            return
        self.restart["stop_begin"] = self.now()
        print(f"{self.now():6.1f} s: stopping the upstream (fast shutdown)", flush=True)
        await asyncio.to_thread(self.server.stop)
        self.restart["stopped"] = self.now()
        await asyncio.sleep(self.args.outage)
        print(f"{self.now():6.1f} s: starting the upstream again", flush=True)
        self.restart["start_begin"] = self.now()
        await asyncio.to_thread(self.server.start)
        self.restart["up"] = self.now()
        print(
            f"{self.now():6.1f} s: upstream ready ({self.restart['up'] - self.restart['stop_begin']:.1f} s "
            "after the stop began)",
            flush=True,
        )

    async def progress(self) -> None:
        every = max(10.0, self.args.duration / 10)
        while not self.stop.is_set():
            await self.pause(every)
            if self.samples:
                last = self.samples[-1]
                print(
                    f"{self.now():6.1f} s: {last['operations']} operations, {len(self.errors)} errors, "
                    f"{last['clients_connected']} clients connected, proxy RSS {last['rss_mib']:.0f} MiB, "
                    f"{last['fds']} fds, {last['upstream_backends']} upstream backends",
                    flush=True,
                )


# -- the run ---------------------------------------------------------------------------------------


async def warm_up(url: str, soak: Soak) -> None:
    """Load the model and every statement path once, on one connection of each driver, then disconnect."""
    for connect in (AsyncpgClient.connect, PsycopgClient.connect):
        conn = await connect(url)
        try:
            rng = random.Random(0)
            for kind in KINDS:
                await soak.operation(conn, -1, kind, rng)
        finally:
            await conn.close()
    soak.warm_up_transactions, soak.committed = soak.committed, 0  # in the table, not the run's count


async def run(soak: Soak) -> dict:
    args = soak.args
    url = soak.proxy.url()
    soak.t0 = time.monotonic()
    idle_start = await soak.sample("before warm-up")
    start = time.monotonic()
    await warm_up(url, soak)
    warm_up_s = time.monotonic() - start
    await asyncio.sleep(1.0)
    soak.t0 = time.monotonic()
    idle = await soak.sample("idle after warm-up")
    print(
        f"warm-up {warm_up_s:.1f} s (model load); proxy idle: RSS {idle['rss_mib']:.0f} MiB, {idle['fds']} fds, "
        f"{idle['threads']} threads; starting {args.clients} clients for {args.duration} s",
        flush=True,
    )
    soak.samples.append(idle)
    clients = [asyncio.create_task(soak.client(i)) for i in range(args.clients)]
    helpers = [
        asyncio.create_task(soak.monitor()),
        asyncio.create_task(soak.restart_upstream()),
        asyncio.create_task(soak.progress()),
    ]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(helpers[1]), args.duration)  # the restart (if it fails: raise)
    await soak.pause(max(0.0, args.duration - soak.now()))
    end_of_run = await soak.sample("end of run")
    soak.samples.append(end_of_run)
    soak.stop.set()
    stop_begin = time.monotonic()
    done, hanging = await asyncio.wait(clients, timeout=STOP_TIMEOUT)
    clients_stop_s = time.monotonic() - stop_begin
    for task in hanging:
        task.cancel()
    for task in done:
        if task.exception() is not None:  # a bug in this benchmark, not the proxy
            raise task.exception()  # type: ignore[misc]
    await asyncio.gather(*helpers)
    disconnected_at = soak.now()
    # The upstream backends and the proxy's fds after the clients left: sampled until they are back down.
    settle: list[dict] = []
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        reading = await soak.sample()
        reading["since_disconnect_s"] = round(reading["t"] - disconnected_at, 2)
        settle.append(reading)
        settled = reading["upstream_backends"] == 0 and reading["fds"] <= idle["fds"] + FD_SLACK
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)
    after = await soak.sample("after disconnect")
    soak.samples.append(after)
    if soak.direct is not None:
        await soak.direct.close()
    direct = await asyncpg.connect(soak.server.tcp_dsn())
    try:
        counters, logged = await direct.fetchrow(
            "SELECT (SELECT sum(counter) FROM soak_items), (SELECT count(*) FROM soak_log)"
        )
    finally:
        await direct.close()
    return {
        "idle_before_warm_up": idle_start,
        "warm_up_s": warm_up_s,
        "idle": idle,
        "end_of_run": end_of_run,
        "clients_stop_s": clients_stop_s,
        "clients_hanging": len(hanging),
        "settle": settle,
        "after_disconnect": after,
        "table": {"sum_counter": int(counters or 0), "log_rows": int(logged)},
    }


def setup_tables(server: EmbeddedPostgres) -> None:
    with psycopg.connect(server.tcp_dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS soak_items, soak_log")
        conn.execute(
            "CREATE TABLE soak_items (id integer PRIMARY KEY, counter bigint NOT NULL DEFAULT 0, note text)"
        )
        conn.execute(
            "INSERT INTO soak_items (id, note) SELECT i, 'item ' || i FROM generate_series(1, %s) i", (ITEMS,)
        )
        conn.execute(
            "CREATE TABLE soak_log (id bigserial PRIMARY KEY, client integer NOT NULL, item integer NOT NULL, "
            "at timestamptz NOT NULL DEFAULT now())"
        )


# -- results ---------------------------------------------------------------------------------------


def slope_mib_per_min(samples: list[dict], start: float, end: float) -> float | None:
    """Least-squares slope of the proxy's RSS over the samples taken in [start, end]."""
    points = [(s["t"], s["rss_mib"]) for s in samples if start <= s["t"] <= end]
    if len(points) < 3:
        return None
    mean_t = statistics.fmean(t for t, _ in points)
    mean_r = statistics.fmean(r for _, r in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (r - mean_r) for t, r in points) / var * 60 if var else None


def window_median(samples: list[dict], start: float, end: float, key: str) -> float:
    values = [s[key] for s in samples if start <= s["t"] <= end and s.get(key) is not None]
    if not values:
        values = [min(samples, key=lambda s: abs(s["t"] - end))[key]]
    return statistics.median(values)


def series_summary(samples: list[dict], key: str) -> dict:
    values = [s[key] for s in samples if s.get(key) is not None]
    return {"start": values[0], "peak": max(values), "end": values[-1]} if values else {}


def proxy_log_summary(proxy: ProxyProcess) -> dict:
    """The proxy's log (JSON lines) by level, its most frequent warnings, and its tracebacks: those it logged
    itself and those asyncio printed for it (``Task exception was never retrieved``: plain text blocks)."""
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    blocks: list[str] = []  # each traceback as one text
    plain: list[str] = []  # the plain text block being read
    for line in [*proxy.output, "{}"]:
        try:
            event = json.loads(line)
        except ValueError:
            if line.startswith(ASYNCIO_REPORTS) and any("Traceback" in text for text in plain):
                blocks.append("".join(plain))
                plain = []
            if not line.startswith("pgml-proxy ready:"):
                plain.append(line)
            continue
        if any("Traceback" in text for text in plain):
            blocks.append("".join(plain))
        plain = []
        if not event:
            continue
        levels[event.get("level", "?")] += 1
        if "exception" in event:
            blocks.append(f"{event.get('message', '')}\n{event['exception']}")
        if event.get("level") in ("warning", "error", "critical"):
            messages[f"{event['level']}: {event.get('message', '')[:160]}"] += 1
    # A block's last line names the exception that escaped; the count of each says how often.
    kinds = Counter(block.strip().splitlines()[-1][:200] for block in blocks)
    return {
        "lines": len(proxy.output),
        "by_level": dict(levels),
        "tracebacks": len(blocks),
        "warnings_and_errors": dict(messages.most_common(15)),
        "traceback_kinds": dict(kinds.most_common(10)),
        "traceback_examples": [block[-4000:] for block in blocks[:2]],
    }


def evaluate(soak: Soak, measured: dict, proxy_exit: int | None) -> dict:
    args = soak.args
    duration = args.duration
    restart = soak.restart
    window = (restart.get("stop_begin", float("inf")), restart.get("up", float("inf")) + args.grace)
    for event in soak.errors:
        event.expected = outage_kind(event.kind) and window[0] <= event.at <= window[1]
    unexpected = [e for e in soak.errors if not e.expected]
    checks: dict[str, dict] = {}

    def check(name: str, passed: bool, detail: str) -> None:
        checks[name] = {"passed": bool(passed), "detail": detail}

    shown = "; ".join(f"{e.at:.1f} s client {e.client} {e.operation}: {e.message}" for e in unexpected[:5])
    check(
        "no_unexpected_errors",
        not unexpected,
        f"{len(unexpected)} unexpected, {len(soak.errors) - len(unexpected)} expected in the outage window "
        f"{window[0]:.1f}-{window[1]:.1f} s" + (f" (first: {shown})" if shown else ""),
    )
    check(
        "upstream_restarted",
        "up" in restart,
        f"timeline {json.dumps({k: round(v, 2) for k, v in restart.items()})}",
    )
    up = restart.get("up", float("inf"))
    stale = [i for i in range(args.clients) if i not in soak.back_at]
    check(
        "every_client_ran_after_restart",
        not stale,
        f"{args.clients - len(stale)} of {args.clients} clients completed an operation started after the "
        f"upstream was back" + (f"; not: {stale[:10]}" if stale else ""),
    )
    check(
        "clients_stopped",
        measured["clients_hanging"] == 0,
        f"all clients finished and disconnected in {measured['clients_stop_s']:.1f} s "
        f"({measured['clients_hanging']} hanging)",
    )
    settle, idle = measured["settle"], measured["idle"]
    zero = next((s["since_disconnect_s"] for s in settle if s["upstream_backends"] == 0), None)
    check(
        "upstream_backends_released",
        zero is not None,
        f"0 upstream backends {max(0.0, zero):.1f} s after the clients disconnected"
        if zero is not None
        else f"still {settle[-1]['upstream_backends']} after {SETTLE_TIMEOUT:.0f} s",
    )
    peak_backends = max((s["upstream_backends"] or 0) for s in soak.samples)
    check(
        "upstream_backends_bounded",
        peak_backends <= args.clients + BACKEND_SLACK,
        f"peak {peak_backends} upstream backends for {args.clients} clients (limit clients + {BACKEND_SLACK})",
    )
    final_fds = measured["after_disconnect"]["fds"]
    check(
        "fds_released",
        final_fds <= idle["fds"] + FD_SLACK,
        f"{final_fds} open fds after disconnect vs {idle['fds']} idle before the clients (slack {FD_SLACK}); "
        f"peak {max(s['fds'] for s in soak.samples)}",
    )
    span = max(duration * 0.05, 2 * args.sample_interval)
    warm_at = duration * args.warm_at
    rss_warm = window_median(soak.samples, warm_at - span, warm_at, "rss_mib")
    rss_end = window_median(soak.samples, duration - span, duration + 1, "rss_mib")
    growth = rss_end - rss_warm
    allowed = max(RSS_GROWTH_MIB, RSS_GROWTH_SHARE * rss_warm)
    slope_after = slope_mib_per_min(soak.samples, up + args.grace, duration)
    slope_before = slope_mib_per_min(soak.samples, warm_at, restart.get("stop_begin", duration))
    check(
        "rss_stable",
        growth <= allowed,
        f"RSS {rss_warm:.0f} MiB at the end of the warm phase ({warm_at:.0f} s), {rss_end:.0f} MiB at the end: "
        f"{growth:+.1f} MiB (allowed {allowed:.0f} MiB = max({RSS_GROWTH_MIB:.0f} MiB, "
        f"{RSS_GROWTH_SHARE:.0%})); slope {fmt(slope_before, '+.2f')} MiB/min before the restart, "
        f"{fmt(slope_after, '+.2f')} MiB/min after it",
    )
    table = measured["table"]
    logged = table["log_rows"] - soak.warm_up_transactions
    check(
        "transactions_atomic",
        table["sum_counter"] == table["log_rows"]
        and soak.committed <= logged <= soak.committed + soak.failed_transactions,
        f"sum(counter) {table['sum_counter']} = soak_log rows {table['log_rows']}; committed {soak.committed} "
        f"<= run's rows {logged} <= committed + failed {soak.committed + soak.failed_transactions}",
    )
    log = proxy_log_summary(soak.proxy)
    check("no_proxy_tracebacks", log["tracebacks"] == 0, f"{log['tracebacks']} tracebacks in the proxy's log")
    check("proxy_clean_exit", proxy_exit == 0, f"proxy exit status {proxy_exit} on SIGTERM")

    run_seconds = duration
    operations = {}
    for kind, (_, statements) in KINDS.items():
        values = sorted(soak.latencies.get(kind, []))
        operations[kind] = {
            "count": len(values),
            "statements": len(values) * statements,
            "per_second": len(values) / run_seconds,
            "latency_ms_p50": statistics.median(values) * 1e3 if values else None,
            "latency_ms_p99": p99(values) * 1e3 if values else None,
            "latency_ms_max": values[-1] * 1e3 if values else None,
        }
    by_class: dict[str, dict] = {}
    for event in soak.errors:
        entry = by_class.setdefault(
            event.kind, {"expected": 0, "unexpected": 0, "operations": Counter(), "examples": []}
        )
        entry["expected" if event.expected else "unexpected"] += 1
        entry["operations"][event.operation] += 1
        if len(entry["examples"]) < 3 and event.message not in entry["examples"]:
            entry["examples"].append(event.message)
    for entry in by_class.values():
        entry["operations"] = dict(entry["operations"])
    ramp_end = min(10.0, duration * 0.05)
    recovery = {
        "operations_per_second_before_restart": rate(soak.completions, ramp_end, window[0]),
        "operations_per_second_after_grace": rate(soak.completions, window[1], duration),
        "all_clients_back_s": max(soak.back_at.values()) - up if len(soak.back_at) == args.clients else None,
        "median_client_back_s": statistics.median(soak.back_at.values()) - up if soak.back_at else None,
    }
    return {
        "recovery": recovery,
        "checks": checks,
        "passed": all(c["passed"] for c in checks.values()),
        "operations": operations,
        "statements": sum(o["statements"] for o in operations.values()),
        "errors": {
            "total": len(soak.errors),
            "expected": len(soak.errors) - len(unexpected),
            "unexpected": len(unexpected),
            "window_s": list(window),
            "by_class": by_class,
            "unexpected_events": [vars(e) for e in unexpected[:50]],
        },
        "rss_mib": {
            "idle": idle["rss_mib"],
            "warm": rss_warm,
            "end": rss_end,
            "after_disconnect": measured["after_disconnect"]["rss_mib"],
            "growth": growth,
            "allowed_growth": allowed,
            "slope_mib_per_min_before_restart": slope_before,
            "slope_mib_per_min_after_restart": slope_after,
            "peak_VmHWM": None,
        },
        "proxy_log": log,
    }


def rate(times: list[float], start: float, end: float) -> float | None:
    """Operations completed per second in [start, end)."""
    if end <= start:
        return None
    return sum(start <= t < end for t in times) / (end - start)


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(results: dict) -> str:
    config = results["config"]
    lines = [
        "",
        f"{config['clients']} clients ({config['drivers']}), {config['duration_s']} s, think "
        f"{config['think_ms'][0]}-{config['think_ms'][1]} ms; upstream restarted at "
        f"{results['restart'].get('stop_begin', float('nan')):.1f} s, back at {results['restart'].get('up', float('nan')):.1f} s",
        "",
        f"{'operation':<12} {'count':>8} {'per s':>8} {'p50 ms':>8} {'p99 ms':>9} {'max ms':>9}",
    ]
    for kind, row in results["operations"].items():
        lines.append(
            f"{kind:<12} {row['count']:8d} {row['per_second']:8.1f} {fmt(row['latency_ms_p50'], '8.1f')} "
            f"{fmt(row['latency_ms_p99'], '9.1f')} {fmt(row['latency_ms_max'], '9.1f')}"
        )
    total = sum(row["count"] for row in results["operations"].values())
    lines.append(
        f"{'all':<12} {total:8d} {total / config['duration_s']:8.1f}   ({results['statements']} statements, "
        f"{results['connects']} connections opened)"
    )
    back = results["recovery"]
    lines.append(
        f"operations/s before the restart {fmt(back['operations_per_second_before_restart'], '.1f')}, after the "
        f"grace {fmt(back['operations_per_second_after_grace'], '.1f')}; clients back after the upstream: median "
        f"{fmt(back['median_client_back_s'], '.1f')} s, all {fmt(back['all_clients_back_s'], '.1f')} s"
    )
    errors = results["errors"]
    lines += ["", f"errors: {errors['expected']} expected (outage), {errors['unexpected']} unexpected"]
    for kind, entry in sorted(errors["by_class"].items()):
        ops = ", ".join(f"{op} {n}" for op, n in sorted(entry["operations"].items()))
        lines.append(
            f"  {kind:<16} expected {entry['expected']:5d} unexpected {entry['unexpected']:5d}  ({ops}) "
            f"e.g. {entry['examples'][0][:100]}"
        )
    lines += ["", f"{'series':<20} {'start':>8} {'peak':>8} {'end':>8}"]
    for key, row in results["series_summary"].items():
        lines.append(f"{key:<20} {row.get('start', 0):8g} {row.get('peak', 0):8g} {row.get('end', 0):8g}")
    rss = results["rss_mib"]
    lines += [
        f"proxy RSS: idle {rss['idle']:.0f} MiB, warm {rss['warm']:.0f}, end {rss['end']:.0f}, after disconnect "
        f"{rss['after_disconnect']:.0f}, peak (VmHWM) {rss['peak_VmHWM']:.0f}; proxy CPU "
        f"{results['proxy_cpu_s']:.0f} s in the run; client loop lag max {results['client_loop_lag_max_s']:.2f} s",
        *pressure_lines(results["cpu_pressure"]),
        "",
        "checks:",
    ]
    for name, entry in results["checks"].items():
        lines.append(f"  {'PASS' if entry['passed'] else 'FAIL'} {name}: {entry['detail']}")
    log = results["proxy_log"]
    if log["warnings_and_errors"]:
        lines += ["", f"proxy log: {log['by_level']}; most frequent warnings/errors:"]
        lines += [f"  {n:6d} {message}" for message, n in list(log["warnings_and_errors"].items())[:8]]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    embed_texts = make_texts(2000, 4, 30, args.seed)
    chunk_texts = make_texts(300, 40, 120, args.seed + 1)
    limit = args.clients + CONNECTION_HEADROOM
    pressure_before = cpu_pressure()
    with scratch_folder() as folder, embedded_postgres(folder, max_connections=limit) as server:
        if server.socket_dir != server.data_dir:
            raise BenchmarkError("the server's socket folder would move on restart; use a shorter temp path")
        setup_tables(server)
        proxy = start_proxy(server.dsn(), "--max-connections", str(limit), "--log-format", "json")
        proxy_exit: int | None = None
        try:
            soak = Soak(args, proxy, server, embed_texts, chunk_texts)
            measured = asyncio.run(run(soak))
            hwm = proc_status_mb(proxy.process.pid, "VmHWM")
            cpu_end = cpu_seconds(proxy.process.pid)
        finally:
            proxy_exit = proxy.stop()
    evaluated = evaluate(soak, measured, proxy_exit)
    evaluated["rss_mib"]["peak_VmHWM"] = hwm
    run_samples = [s for s in soak.samples if s.get("label") != "before warm-up"]
    results: dict[str, Any] = {
        "benchmark": "soak",
        "config": {
            "duration_s": args.duration,
            "clients": args.clients,
            "drivers": f"asyncpg {asyncpg.__version__} x {args.clients - args.clients // PSYCOPG_EVERY}, "
            f"psycopg {psycopg.__version__} x {args.clients // PSYCOPG_EVERY}",
            "think_ms": list(args.think_ms),
            "mix": {kind: weight for kind, (weight, _) in KINDS.items()},
            "restart_at": args.restart_at,
            "outage_s": args.outage,
            "grace_s": args.grace,
            "warm_at": args.warm_at,
            "sample_interval_s": args.sample_interval,
            "seed": args.seed,
            "proxy_max_connections": limit,
            "upstream_max_connections": limit,
            "statements": {
                "simple": SIMPLE_SQL,
                "prepared": LOOKUP.format("$1"),
                "transaction": [
                    INSERT_LOG.format("$1", "$2"),
                    UPDATE_ITEM.format("$1", "$2"),
                    SELECT_ITEM.format("$1"),
                ],
                "embed": EMBED.format("$1"),
                "chunk": CHUNK.format("$1"),
                "version": VERSION_SQL,
            },
            "rss_rule": f"end - warm <= max({RSS_GROWTH_MIB:.0f} MiB, {RSS_GROWTH_SHARE:.0%} of warm)",
        },
        "environment": environment() | {"asyncpg": asyncpg.__version__, "model": MODEL},
        "cpu_pressure": {"before": pressure_before, "after": cpu_pressure()},
        "passed": evaluated.pop("passed"),
        **evaluated,
        "connects": soak.connects,
        "transactions": {
            "committed": soak.committed,
            "failed": soak.failed_transactions,
            **measured["table"],
        },
        "restart": soak.restart,
        "warm_up_s": measured["warm_up_s"],
        "clients_stop_s": measured["clients_stop_s"],
        "proxy_cpu_s": cpu_end - measured["idle"]["proxy_cpu_s"],
        "client_loop_lag_max_s": soak.loop_lag_max,
        "series_summary": {
            key: series_summary(run_samples, key)
            for key in ("rss_mib", "fds", "threads", "upstream_backends", "clients_connected")
        },
        "idle_before_warm_up": measured["idle_before_warm_up"],
        "settle": measured["settle"],
        "series": soak.samples,
    }
    write_results(args.output, results, report(results))
    verdict = "PASS" if results["passed"] else "FAIL"
    failed = [name for name, c in results["checks"].items() if not c["passed"]]
    print(
        f"soak: {verdict} {args.duration} s, {args.clients} clients, {results['statements']} statements, "
        f"{results['errors']['unexpected']} unexpected errors ({results['errors']['expected']} expected in the "
        f"restart), RSS {results['rss_mib']['growth']:+.1f} MiB"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
