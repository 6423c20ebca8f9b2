"""Training overhead of pgml-proxy: ``pgml.train(… 'xgboost' …)`` through the proxy vs fitting XGBoost in-process.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (see ``harness.py``), loads a table
``t(f1 … f20 real, y integer)`` of N rows of seeded random classification data (3 classes) directly into the
server (COPY), runs ``CREATE EXTENSION pgml`` and one small untimed training (so that the proxy's training
worker and XGBoost are loaded on both sides), then compares

- proxy: ``SELECT * FROM pgml.train('bench', 'classification', 'public.t', 'y', 'xgboost',
  hyperparams => '{"n_estimators": 20}', test_sampling => 'random')`` through the proxy (simple query protocol);
  this reads the relation, snapshots it, splits, fits, scores the test split, and stores and deploys the model;
- in-process: reading ``SELECT f1, …, f20, y FROM t`` with asyncpg directly from the server, a seeded random
  split of the same sizes (test_size 0.25, pgml.train's default), ``xgboost.XGBClassifier(n_estimators=20)``
  fitted on the training split and scored (accuracy, macro F1) on the test split.

Rounds alternate the order of the sides; each figure is the median over the rounds. Writes
``benchmarks/results/train_overhead.json`` and prints, as its last line, proxy time / in-process time (target:
at most 1.3).

    .venv/bin/python benchmarks/train_overhead.py [--rows 100000] [--rounds 3]
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
    ProxiedPostgres,
    at_least,
    benchmark_parser,
    cpu_pressure,
    environment,
    pressure_lines,
    proxied_postgres,
    scratch_folder,
    summarize,
    timed_proxy_query,
    write_results,
)

RESULTS = RESULTS_DIR / "train_overhead.json"
SEED = 20261127
FEATURES = 20
CLASSES = 3
N_ESTIMATORS = 20
TEST_SIZE = 0.25
TARGET = 1.3
COLUMNS = [f"f{i}" for i in range(1, FEATURES + 1)]
READ_SQL = f"SELECT {', '.join(COLUMNS)}, y FROM t"


def train_sql(project: str, relation: str) -> str:
    return (
        f"SELECT * FROM pgml.train('{project}', 'classification', '{relation}', 'y', 'xgboost', "
        f"hyperparams => '{{\"n_estimators\": {N_ESTIMATORS}}}', test_sampling => 'random')"
    )


TRAIN_SQL = train_sql("bench", "public.t")


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    parser.add_argument("--rows", type=at_least(10), default=100_000, help="rows of t (default 100000)")
    parser.add_argument("--rounds", type=at_least(1), default=3, help="rounds of both sides (default 3)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the data and split (default {SEED})")
    return parser.parse_args()


# -- data ------------------------------------------------------------------------------------------


def make_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features normal, float32; the label the argmax of three noisy linear scores of them (0, 1, 2)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    scores = x @ rng.normal(size=(FEATURES, CLASSES)) + rng.normal(scale=1.0, size=(rows, CLASSES))
    return x, np.argmax(scores, axis=1).astype(np.int32)


def load_table(conn: psycopg.Connection, name: str, x: np.ndarray, y: np.ndarray) -> None:
    """``name(f1 … f20 real, y integer)``, written directly (COPY), not through the proxy."""
    columns = ", ".join(f"{column} real" for column in COLUMNS)
    conn.execute(f"CREATE TABLE {name} ({columns}, y integer)")
    with conn.cursor().copy(f"COPY {name} ({', '.join(COLUMNS)}, y) FROM STDIN") as copy:
        for features, label in zip(x.tolist(), y.tolist(), strict=True):
            copy.write_row((*features, label))
    conn.execute(f"ANALYZE {name}")


# -- the two sides ---------------------------------------------------------------------------------


def proxy_side(servers: ProxiedPostgres, sql: str) -> dict:
    """The statement through the proxy; the proxy's own CPU, not its training worker's (a child process)."""
    timing, _ = timed_proxy_query(servers, sql, 1)
    return timing


async def _read(url: str) -> tuple[float, list]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        start = time.perf_counter()
        return start, await conn.fetch(READ_SQL)
    finally:
        await conn.close()


def in_process_side(url: str, seed: int) -> dict:
    import xgboost
    from sklearn.metrics import accuracy_score, f1_score

    start, records = asyncio.run(_read(url))  # timed from after the connection, as on the proxy side
    data = np.asarray(records, dtype=np.float32)
    x, y = data[:, :FEATURES], data[:, FEATURES].astype(np.int64)
    rows = len(y)
    n_test = int(np.floor(rows * TEST_SIZE + 0.5))  # pgml.train's count of test rows for a fraction
    order = np.random.default_rng(seed).permutation(rows)
    test, train = order[:n_test], order[n_test:]
    read = time.perf_counter()
    model = xgboost.XGBClassifier(n_estimators=N_ESTIMATORS)
    model.fit(x[train], y[train])
    fitted = time.perf_counter()
    predicted = model.predict(x[test])
    accuracy = float(accuracy_score(y[test], predicted))
    f1 = float(f1_score(y[test], predicted, average="macro"))
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "read_s": read - start,
        "fit_s": fitted - read,
        "score_s": end - fitted,
        "train_rows": len(train),
        "test_rows": n_test,
        "accuracy": accuracy,
        "f1": f1,
    }


def proxy_metrics(url: str) -> dict:
    """The newest 'bench' model's stored metrics (read directly)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT m.metrics FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id "
            "WHERE p.name = 'bench' ORDER BY m.id DESC LIMIT 1"
        ).fetchone()
    return row[0] if row else {}


# -- report ----------------------------------------------------------------------------------------


def report(results: dict) -> str:
    config, proxy, local = results["config"], results["proxy"], results["in_process"]
    med = statistics.median
    metrics = results["proxy_metrics"]
    return "\n".join(
        [
            "",
            f"{config['rows']} rows x {FEATURES} real features, {CLASSES} classes, xgboost ({N_ESTIMATORS} trees), "
            f"test_size {TEST_SIZE}, {config['rounds']} round(s) (median)",
            "",
            f"{'side':<12} {'seconds':>10} detail",
            f"{'proxy':<12} {proxy['seconds']['median']:10.2f} pgml.train through the proxy; CPU: proxy "
            f"{med(proxy['proxy_cpu_s']):.2f} s (without its training worker), "
            f"PostgreSQL {med(proxy['server_cpu_s']):.2f} s",
            f"{'in-process':<12} {local['seconds']['median']:10.2f} read (asyncpg) {med(local['read_s']):.2f} s, "
            f"fit {med(local['fit_s']):.2f} s, score {med(local['score_s']):.3f} s "
            f"({local['train_rows'][0]} train / {local['test_rows'][0]} test rows)",
            "",
            f"test accuracy: proxy {metrics.get('accuracy', float('nan')):.4f}, "
            f"in-process {med(local['accuracy']):.4f} (different random splits)",
            *pressure_lines(results["cpu_pressure"]),
        ]
    )


def main() -> int:
    args = parse_args()
    x, y = make_data(args.rows, args.seed)
    proxy_runs: list[dict] = []
    local_runs: list[dict] = []
    pressure: dict = {}
    with scratch_folder() as folder, proxied_postgres(folder) as servers:
        print(f"loading {args.rows} rows into t", flush=True)
        with psycopg.connect(servers.direct_url, autocommit=True) as conn:
            load_table(conn, "t", x, y)
            load_table(conn, "warm", x[:500], y[:500])
        with psycopg.connect(servers.proxy_url, autocommit=True) as conn:
            psycopg.ClientCursor(conn).execute("CREATE EXTENSION IF NOT EXISTS pgml")
        print("warm-up: one small training on each side", flush=True)
        proxy_side(servers, train_sql("warmup", "public.warm"))
        import xgboost

        xgboost.XGBClassifier(n_estimators=2).fit(x[:500], y[:500])

        pressure["before"] = cpu_pressure()
        for round_no in range(1, args.rounds + 1):
            sides = [
                ("proxy", proxy_runs, lambda: proxy_side(servers, TRAIN_SQL)),
                (
                    "in-process",
                    local_runs,
                    lambda seed=args.seed + round_no: in_process_side(servers.direct_url, seed),
                ),
            ]
            if round_no % 2 == 0:
                sides.reverse()
            for name, runs, run in sides:
                runs.append(run())
                print(f"round {round_no} {name:<10} {runs[-1]['seconds']:8.2f} s", flush=True)
        pressure["after"] = cpu_pressure()
        metrics = proxy_metrics(servers.direct_url)

    proxy = summarize(proxy_runs)
    local = summarize(local_runs)
    ratio = proxy["seconds"]["median"] / local["seconds"]["median"]
    results: dict = {
        "benchmark": "train_overhead",
        "config": {
            "rows": args.rows,
            "features": FEATURES,
            "classes": CLASSES,
            "rounds": args.rounds,
            "seed": args.seed,
            "proxy_sql": TRAIN_SQL,
            "in_process": f"asyncpg read ({READ_SQL}) + random split (test_size {TEST_SIZE}) + "
            f"xgboost.XGBClassifier(n_estimators={N_ESTIMATORS}).fit + test accuracy/F1",
        },
        "environment": environment("xgboost", "asyncpg", "sklearn"),
        "proxy": proxy,
        "in_process": local,
        "ratio": ratio,
        "proxy_metrics": metrics,
        "cpu_pressure": pressure,
        "target": TARGET,
    }
    write_results(args.output, results, report(results))
    print(
        f"train_overhead: proxy/in-process time = {ratio:.2f} (target <= {TARGET}); "
        f"proxy {proxy['seconds']['median']:.2f} s, in-process {local['seconds']['median']:.2f} s "
        f"(fit {statistics.median(local['fit_s']):.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
