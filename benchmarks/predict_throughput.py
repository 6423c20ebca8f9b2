"""Prediction throughput of pgml-proxy: ``SELECT pgml.predict('bench', ARRAY[f1, …, f16]) FROM t`` vs XGBoost.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (see ``harness.py``), loads a table
``t(f1 … f16 real, y real)`` of N rows of seeded random regression data directly into the server (COPY), then,
through the proxy, ``CREATE EXTENSION pgml`` and ``pgml.train('bench', 'regression', 'public.t', 'y',
'xgboost', hyperparams => '{"n_estimators": 50}')`` once. It then compares

- proxy: ``SELECT pgml.predict('bench', ARRAY[f1, …, f16]) FROM t`` through the proxy with asyncpg (the
  in-process side's client: extended protocol, binary rows), fetching every row;
- proxy text: the same with psycopg's ``ClientCursor`` (simple query protocol, text rows);
- in-process: reading ``SELECT f1, …, f16 FROM t`` with asyncpg directly from the server, then
  ``pgml_engines.classical.predict`` on the very model the proxy serves (its artifact read from ``pgml.files``
  once, untimed, and loaded with ``pgml_engines.classical.load_model``).

All sides are warmed up first (the proxy's model cache by one single-row prediction). Rounds rotate the
sides; each figure is the median over the rounds. The proxy's predictions are compared with the in-process
ones, row by row (both read the same unmodified heap in the same order). Also measures the latency of one
single-row prediction (``SELECT pgml.predict('bench', ARRAY[…16 constants…])``) against ``SELECT 1``, both
through the proxy on one connection, p50 and p99 over ``--iterations``.

Writes ``benchmarks/results/predict_throughput.json`` and prints, as its last line, in-process time / proxy
time with asyncpg on both sides (target: at least 0.7), and the same ratio for the text protocol. The proxy
splices the predictions into the rows as they stream (the deployment looked up and the model loaded once,
before the statement runs), so its time is the Python work per row: reading each row's feature array and
writing the row back out.

    .venv/bin/python benchmarks/predict_throughput.py [--rows 100000] [--rounds 1] [--iterations 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import numpy as np
import psycopg
from harness import (
    RESULTS_DIR,
    BenchmarkError,
    ProxiedPostgres,
    at_least,
    benchmark_parser,
    cpu_pressure,
    cpu_seconds,
    environment,
    p99,
    pressure_lines,
    proxied_postgres,
    rotated,
    scratch_folder,
    server_cpu_seconds,
    simple_query,
    summarize,
    timed_proxy_query,
    write_results,
)

RESULTS = RESULTS_DIR / "predict_throughput.json"
SEED = 20261127
FEATURES = 16
N_ESTIMATORS = 50
TARGET = 0.7
TOLERANCE = 1e-5
COLUMNS = [f"f{i}" for i in range(1, FEATURES + 1)]
ARRAY = f"ARRAY[{', '.join(COLUMNS)}]"
PROXY_SQL = f"SELECT pgml.predict('bench', {ARRAY}) FROM t"
READ_SQL = f"SELECT {', '.join(COLUMNS)} FROM t"
TRAIN_SQL = (
    "SELECT * FROM pgml.train('bench', 'regression', 'public.t', 'y', 'xgboost', "
    f"hyperparams => '{{\"n_estimators\": {N_ESTIMATORS}}}')"
)
ARTIFACT_SQL = (
    "SELECT f.data FROM pgml.files f JOIN pgml.deployments d ON d.model_id = f.model_id "
    "JOIN pgml.projects p ON p.id = d.project_id WHERE p.name = 'bench' AND f.path = 'estimator.rmp' "
    "AND d.id = (SELECT max(d2.id) FROM pgml.deployments d2 WHERE d2.project_id = p.id) ORDER BY f.part"
)


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    parser.add_argument("--rows", type=at_least(1), default=100_000, help="rows of t (default 100000)")
    parser.add_argument("--rounds", type=at_least(1), default=1, help="rounds of both sides (default 1)")
    parser.add_argument(
        "--iterations", type=at_least(1), default=200, help="single-row latency iterations (default 200)"
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the data (default {SEED})")
    return parser.parse_args()


# -- data ------------------------------------------------------------------------------------------


def make_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features uniform in [-1, 1) and a noisy nonlinear target of them, all float32."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(rows, FEATURES)).astype(np.float32)
    weights = rng.normal(size=FEATURES)
    y = x @ weights + np.sin(3 * x[:, 0]) * x[:, 1] + 0.1 * rng.normal(size=rows)
    return x, y.astype(np.float32)


def load_table(url: str, x: np.ndarray, y: np.ndarray) -> None:
    """``t(f1 … f16 real, y real)`` written directly (COPY), not through the proxy."""
    columns = ", ".join(f"{name} real" for name in COLUMNS)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE t ({columns}, y real)")
        with conn.cursor().copy(f"COPY t ({', '.join(COLUMNS)}, y) FROM STDIN") as copy:
            for features, label in zip(x.tolist(), y.tolist(), strict=True):
                copy.write_row((*features, label))
        conn.execute("ANALYZE t")


def fetch_artifact(url: str) -> bytes:
    with psycopg.connect(url, autocommit=True) as conn:
        parts = conn.execute(ARTIFACT_SQL).fetchall()
    if not parts:
        raise BenchmarkError("no artifact for the deployed model of project 'bench' in pgml.files")
    return b"".join(bytes(part) for (part,) in parts)


# -- the two sides ---------------------------------------------------------------------------------


def proxy_text_side(servers: ProxiedPostgres, rows: int) -> tuple[dict, np.ndarray]:
    timing, result = timed_proxy_query(servers, PROXY_SQL, rows)
    return timing, np.asarray([row[0] for row in result], dtype=np.float32)


def proxy_side(servers: ProxiedPostgres, rows: int) -> tuple[dict, np.ndarray]:
    """The statement through the proxy with asyncpg, the in-process side's client (extended protocol,
    binary rows)."""
    cpu_before, server_before = cpu_seconds(servers.proxy_pid), server_cpu_seconds(servers.data_dir)
    start, records = asyncio.run(_read(servers.proxy_url, PROXY_SQL))
    end = time.perf_counter()
    if len(records) != rows:
        raise BenchmarkError(f"proxy returned {len(records)} rows, expected {rows}")
    timing = {
        "seconds": end - start,
        "proxy_cpu_s": cpu_seconds(servers.proxy_pid) - cpu_before,
        "server_cpu_s": server_cpu_seconds(servers.data_dir) - server_before,
    }
    return timing, np.asarray([record[0] for record in records], dtype=np.float32)


async def _read(url: str, sql: str) -> tuple[float, list]:
    """``sql``'s records, and when the timer started: after connecting."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        start = time.perf_counter()
        records = await conn.fetch(sql)
        return start, records
    finally:
        await conn.close()


def in_process_side(url: str, model, rows: int) -> tuple[dict, np.ndarray]:
    from pgml_engines import classical

    start, records = asyncio.run(_read(url, READ_SQL))
    x = np.asarray(records, dtype=np.float32)
    read = time.perf_counter()
    predictions = classical.predict(model, x)
    end = time.perf_counter()
    if len(predictions) != rows:
        raise BenchmarkError(f"in-process predicted {len(predictions)} rows, expected {rows}")
    timing = {"seconds": end - start, "read_s": read - start, "predict_s": end - read}
    return timing, np.asarray(predictions, dtype=np.float32)


def latencies(url: str, sql: str, iterations: int) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        for _ in range(5):  # warm-up
            cur.execute(sql).fetchall()
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            cur.execute(sql).fetchall()
            times.append((time.perf_counter() - start) * 1000)
    ordered = sorted(times)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": p99(ordered),
        "mean_ms": statistics.fmean(ordered),
    }


# -- report ----------------------------------------------------------------------------------------


def report(results: dict) -> str:
    config, proxy, local = results["config"], results["proxy"], results["in_process"]
    text = results["proxy_text"]
    rows = config["rows"]
    med = statistics.median
    single, one = results["single_row"]["predict"], results["single_row"]["select_1"]
    check = results["check"]
    return "\n".join(
        [
            "",
            f"{rows} rows x {FEATURES} real features, xgboost regression ({N_ESTIMATORS} trees), "
            f"{config['rounds']} round(s) (median); training through the proxy took {results['train_s']:.2f} s",
            "",
            f"{'side':<12} {'seconds':>10} {'rows/s':>10} detail",
            f"{'proxy':<12} {proxy['seconds']['median']:10.2f} {rows / proxy['seconds']['median']:10.1f} "
            f"asyncpg; CPU: proxy {med(proxy['proxy_cpu_s']):.2f} s, PostgreSQL {med(proxy['server_cpu_s']):.2f} s",
            f"{'proxy text':<12} {text['seconds']['median']:10.2f} {rows / text['seconds']['median']:10.1f} "
            f"psycopg simple protocol; until first row {med(text['execute_s']):.2f} s, fetch "
            f"{med(text['fetch_s']):.2f} s, CPU: proxy {med(text['proxy_cpu_s']):.2f} s, PostgreSQL "
            f"{med(text['server_cpu_s']):.2f} s",
            f"{'in-process':<12} {local['seconds']['median']:10.2f} {rows / local['seconds']['median']:10.1f} "
            f"read (asyncpg) {med(local['read_s']):.2f} s, predict {med(local['predict_s']):.3f} s",
            "",
            f"single-row predict through the proxy: p50 {single['p50_ms']:.2f} ms, p99 {single['p99_ms']:.2f} ms; "
            f"SELECT 1: p50 {one['p50_ms']:.2f} ms, p99 {one['p99_ms']:.2f} ms ({config['iterations']} iterations)",
            f"predictions: {check['rows']} rows, max |proxy - in-process| = {check['max_abs_diff']:.2e} "
            f"({'within' if check['ok'] else 'OVER'} {TOLERANCE:g})",
            *pressure_lines(results["cpu_pressure"]),
        ]
    )


def main() -> int:
    args = parse_args()
    from pgml_engines import classical

    x, y = make_data(args.rows, args.seed)
    constants = ", ".join(f"{value:.6f}" for value in x[0].tolist())
    single_sql = f"SELECT pgml.predict('bench', ARRAY[{constants}]::real[])"
    runs: dict[str, list[dict]] = {"proxy": [], "proxy text": [], "in-process": []}
    predictions: dict[str, np.ndarray] = {}
    pressure: dict = {}
    with scratch_folder() as folder, proxied_postgres(folder) as servers:
        print(f"loading {args.rows} rows into t", flush=True)
        load_table(servers.direct_url, x, y)
        with psycopg.connect(servers.proxy_url, autocommit=True) as conn:
            psycopg.ClientCursor(conn).execute("CREATE EXTENSION IF NOT EXISTS pgml")
        print("training through the proxy", flush=True)
        start = time.perf_counter()
        trained = simple_query(servers.proxy_url, TRAIN_SQL)
        train_s = time.perf_counter() - start
        print(f"trained in {train_s:.2f} s: {trained}", flush=True)
        model = classical.load_model(fetch_artifact(servers.direct_url))
        classical.predict(model, x[:1000])  # warm-up
        simple_query(servers.proxy_url, single_sql)  # warm-up: the proxy's model cache

        pressure["before"] = cpu_pressure()
        for round_no in range(1, args.rounds + 1):
            sides = [
                ("proxy", lambda: proxy_side(servers, args.rows)),
                ("proxy text", lambda: proxy_text_side(servers, args.rows)),
                ("in-process", lambda: in_process_side(servers.direct_url, model, args.rows)),
            ]
            for name, run in rotated(sides, round_no - 1):
                timing, predictions[name] = run()
                runs[name].append(timing)
                print(f"round {round_no} {name:<10} {timing['seconds']:8.2f} s", flush=True)
        print(f"single-row latency, {args.iterations} iterations", flush=True)
        single = {
            "predict": latencies(servers.proxy_url, single_sql, args.iterations),
            "select_1": latencies(servers.proxy_url, "SELECT 1", args.iterations),
        }
        pressure["after"] = cpu_pressure()

    local_predictions = predictions["in-process"]
    diff = max(
        float(np.max(np.abs(predictions[side] - local_predictions))) for side in ("proxy", "proxy text")
    )
    proxy, text, local = (summarize(runs[side]) for side in ("proxy", "proxy text", "in-process"))
    ratio = local["seconds"]["median"] / proxy["seconds"]["median"]
    results: dict = {
        "benchmark": "predict_throughput",
        "config": {
            "rows": args.rows,
            "features": FEATURES,
            "rounds": args.rounds,
            "iterations": args.iterations,
            "seed": args.seed,
            "train_sql": TRAIN_SQL,
            "proxy_sql": PROXY_SQL,
            "single_row_sql": single_sql,
            "in_process": f"asyncpg read ({READ_SQL}) + pgml_engines.classical.predict on the deployed artifact",
        },
        "environment": environment("xgboost", "asyncpg"),
        "train_s": train_s,
        "proxy": proxy,
        "proxy_text": text,
        "in_process": local,
        "ratio": ratio,
        "ratio_text": local["seconds"]["median"] / text["seconds"]["median"],
        "single_row": single,
        "check": {"rows": args.rows, "max_abs_diff": diff, "tolerance": TOLERANCE, "ok": diff <= TOLERANCE},
        "cpu_pressure": pressure,
        "target": TARGET,
    }
    write_results(args.output, results, report(results))
    print(
        f"predict_throughput: in-process/proxy time = {ratio:.2f} (target >= {TARGET}; "
        f"{results['ratio_text']:.2f} with psycopg's simple protocol); "
        f"proxy {args.rows / proxy['seconds']['median']:.0f} rows/s, "
        f"in-process {args.rows / local['seconds']['median']:.0f} rows/s; single-row predict p50 "
        f"{single['predict']['p50_ms']:.2f} ms vs SELECT 1 {single['select_1']['p50_ms']:.2f} ms; "
        f"predictions {'match' if results['check']['ok'] else 'DIFFER'} (max diff {diff:.1e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
