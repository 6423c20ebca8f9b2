"""Tuning overhead of pgml-proxy: ``pgml.tune`` (LoRA) through the proxy vs the same PEFT training in-process.

Builds the base model on the spot as ``transform_classification.py`` does: a sequence classifier from the real
all-MiniLM-L6-v2 weights (the installed copy the engine finds) with a 2-label head from a fixed seed, saved as
the folder ``minilm-sentiment`` of a temporary models directory, which the proxy serves with ``--models-dir``.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (see ``harness.py``), loads a table
``reviews(body text, label text)`` of N seeded short reviews directly into the server (COPY): filler words
from the benchmarks' word list with one to three sentiment words mixed in, and a label (``negative`` or
``positive``) that the sentiment words decide, so that there is something to learn. Each pair of consecutive
rows holds one review of each label, so that a split by position is balanced. Runs ``CREATE EXTENSION pgml``
and one tiny untimed tune on each side (16 rows), so that imports and the proxy's training worker do not
count, then compares

- proxy: ``SELECT * FROM pgml.tune('bench', 'text-classification', 'public.reviews', 'label',
  'minilm-sentiment', hyperparams => '{"dataset_args": …, "epochs": 1, "learning_rate": 0.005, …}',
  test_sampling => 'last')`` through the proxy (simple query protocol); this reads the rows through the
  client's session, snapshots and splits them, writes the catalog rows, trains in the proxy's training
  worker (a child process), scores the test rows, stores the adapter in ``pgml.files`` and deploys it;
- in-process: reading ``SELECT body, label FROM reviews`` with psycopg directly from the server, the same
  split (``pgml_engines.classical.split.split`` with sampling ``last``: the first N − n_test rows train, the
  last n_test test), then ``pgml_engines.tuning.tune`` (the function the proxy's worker runs) called here.

Both sides train with the same seed on the same rows and split, so their metrics should agree up to float
noise; the difference is reported, never a failure. Besides the wall times, each side's time outside the
engine's own fit and score (which ``tune`` measures and reports in its metrics) is recorded per round: it is
where the proxy's overhead lies, and it is less disturbed than the total when other work shares the CPUs.

Rounds rotate the order of the sides; each figure is the median over the rounds. The kernel's CPU pressure is
recorded before and after the rounds (other work on a shared machine). Writes
``benchmarks/results/tune_overhead.json`` and prints, as its last line, proxy time / in-process time (target:
at most 1.2).

    .venv/bin/python benchmarks/tune_overhead.py [--rows 400] [--rounds 3] [--epochs 1] [--learning-rate 5e-3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

import psycopg
from harness import (
    RESULTS_DIR,
    BenchmarkError,
    ProxiedPostgres,
    at_least,
    benchmark_parser,
    cpu_pressure,
    environment,
    pressure_lines,
    proxied_postgres,
    rotated,
    scratch_folder,
    summarize,
    timed_proxy_query,
    write_results,
)
from transform_classification import CLASSIFIER, build_classifier
from workload import MODEL, SEED, WORDS, model_environment

RESULTS = RESULTS_DIR / "tune_overhead.json"
TARGET = 1.2
TEST_SIZE = 0.25
SAMPLING = "last"  # the split by position: the same rows on both sides without sharing a generator
WARM_ROWS = 16
# The engine's default (5e-4) leaves the head at chance after one short epoch; this learns the reviews.
LEARNING_RATE = 5e-3
READ_SQL = "SELECT body, label FROM reviews"
# The words that decide a review's label; none of them is in the filler words (workload.WORDS).
POSITIVE = ["good", "great", "fine", "lovely", "wonderful", "pleasant", "superb", "charming", "brilliant"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "boring", "dreadful", "horrible", "dull", "disappointing"]
COMPARED = ("accuracy", "f1", "loss", "train_loss")
# The sides run the same seeded computation; only the order of float reductions may differ between processes.
TOLERANCE = 1e-3


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    parser.add_argument("--rows", type=at_least(WARM_ROWS), default=400, help="rows of reviews (default 400)")
    parser.add_argument("--rounds", type=at_least(1), default=3, help="rounds of both sides (default 3)")
    parser.add_argument("--epochs", type=at_least(1), default=1, help="training epochs (default 1)")
    parser.add_argument("--batch-size", type=at_least(1), default=16, help="training batch (default 16)")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=LEARNING_RATE,
        help=f"AdamW's learning rate (default {LEARNING_RATE}: the reviews are learned in one epoch)",
    )
    parser.add_argument("--max-length", type=at_least(8), default=64, help="tokens per row (default 64)")
    parser.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help=f"seed of the reviews, the head and the tuning (default {SEED})",
    )
    return parser.parse_args()


def hyperparams(args: argparse.Namespace) -> dict[str, Any]:
    """The same on both sides: the proxy maps ``dataset_args`` onto columns; the engine ignores it."""
    return {
        "dataset_args": {"text_column": "body", "class_column": "label"},
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "seed": args.seed,
    }


def tune_sql(project: str, relation: str, settings: dict[str, Any]) -> str:
    return (
        f"SELECT * FROM pgml.tune('{project}', 'text-classification', '{relation}', 'label', "
        f"'{CLASSIFIER}', hyperparams => '{json.dumps(settings)}'::jsonb, test_size => {TEST_SIZE}, "
        f"test_sampling => '{SAMPLING}')"
    )


# -- data ------------------------------------------------------------------------------------------


def make_reviews(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` (body, label) rows: 4 to 12 filler words and one to three sentiment words, shuffled; the
    label is the majority polarity of the sentiment words. Each pair of rows holds one label of each kind."""
    rng = random.Random(seed)
    rows = []
    for pair in range(0, count, 2):
        labels = ["negative", "positive"]
        rng.shuffle(labels)
        for label in labels[: count - pair]:
            own, other = (POSITIVE, NEGATIVE) if label == "positive" else (NEGATIVE, POSITIVE)
            strong = rng.randint(1, 3)
            words = rng.choices(WORDS, k=rng.randint(4, 12)) + rng.choices(own, k=strong)
            if strong >= 2 and rng.random() < 0.5:
                words.append(rng.choice(other))  # outvoted, so the label still follows the majority
            rng.shuffle(words)
            rows.append((" ".join(words).capitalize() + ".", label))
    return rows


def load_reviews(conn: psycopg.Connection, name: str, rows: list[tuple[str, str]]) -> None:
    """``name(body text, label text)`` in the order of ``rows``, written directly (COPY), not through the
    proxy; a fresh heap is read back in that order, which the ``last`` split relies on."""
    conn.execute(f"CREATE TABLE {name} (body text NOT NULL, label text NOT NULL)")
    with conn.cursor().copy(f"COPY {name} (body, label) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.execute(f"ANALYZE {name}")


# -- the two sides ---------------------------------------------------------------------------------


def proxy_side(servers: ProxiedPostgres, sql: str) -> dict:
    """The statement through the proxy; the proxy's own CPU, not its training worker's (a child process)."""
    timing, _ = timed_proxy_query(servers, sql, 1)
    metrics = newest_metrics(servers.direct_url)
    return (
        timing
        | {
            "fit_s": metrics["fit_time"],
            "score_s": metrics["score_time"],
            "outside_s": timing["seconds"] - metrics["fit_time"] - metrics["score_time"],
        }
        | {name: metrics[name] for name in COMPARED}
    )


def newest_metrics(url: str) -> dict:
    """The metrics of the model the last tune stored (read directly)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT metrics FROM pgml.models ORDER BY id DESC LIMIT 1").fetchone()
    if row is None or not row[0]:
        raise BenchmarkError("pgml.tune stored no metrics")
    return row[0]


def in_process_side(url: str, base_model: str, settings: dict[str, Any], read_sql: str = READ_SQL) -> dict:
    from pgml_engines.classical.split import split
    from pgml_engines.tuning import TuneRequest, tune

    with psycopg.connect(url, autocommit=True) as conn:  # connected untimed, as on the proxy side
        cur = conn.cursor()
        start = time.perf_counter()
        rows = cur.execute(read_sql).fetchall()
        bodies, labels = [row[0] for row in rows], [row[1] for row in rows]
        parts = split(len(rows), TEST_SIZE, SAMPLING, labels=labels, stratify=True)
        train, test = parts.train.tolist(), parts.test.tolist()
        request = TuneRequest(
            task="text-classification",
            base_model=base_model,
            train={"text": [bodies[i] for i in train], "label": [labels[i] for i in train]},
            test={"text": [bodies[i] for i in test], "label": [labels[i] for i in test]},
            hyperparams=settings,
        )
        read = time.perf_counter()
        metrics = tune(request, send=lambda message: None).metrics
        end = time.perf_counter()
    return {
        "seconds": end - start,
        "read_s": read - start,
        "tune_s": end - read,
        "fit_s": metrics["fit_time"],
        "score_s": metrics["score_time"],
        "outside_s": end - start - metrics["fit_time"] - metrics["score_time"],
        "train_rows": len(train),
        "test_rows": len(test),
    } | {name: metrics[name] for name in COMPARED}


def compare(proxy: dict, local: dict) -> dict:
    """The last round's metrics of each side and their differences (reported, never a failure)."""
    diffs = {name: abs(proxy[name][-1] - local[name][-1]) for name in COMPARED}
    return {
        "proxy": {name: proxy[name][-1] for name in COMPARED},
        "in_process": {name: local[name][-1] for name in COMPARED},
        "abs_diff": diffs,
        "max_abs_diff": max(diffs.values()),
        "tolerance": TOLERANCE,
        "close": max(diffs.values()) <= TOLERANCE,
        # the same seed, rows and split each round: one side whose metrics move between rounds is not seeded
        "rounds_repeat": all(len(set(side[name])) == 1 for side in (proxy, local) for name in COMPARED),
    }


# -- report ----------------------------------------------------------------------------------------


def report(results: dict) -> str:
    config, proxy, local, check = results["config"], results["proxy"], results["in_process"], results["check"]
    med = statistics.median
    metrics = ", ".join(
        f"{name} {check['proxy'][name]:.4f} / {check['in_process'][name]:.4f}" for name in COMPARED
    )
    return "\n".join(
        [
            "",
            f"{config['rows']} reviews ({local['train_rows'][0]} train / {local['test_rows'][0]} test, "
            f"sampling {SAMPLING}), LoRA on {CLASSIFIER} ({MODEL} + 2-label head), "
            f"epochs {config['epochs']}, lr {config['learning_rate']:g}, batch {config['batch_size']}, "
            f"max_length {config['max_length']}, {config['rounds']} round(s) (median)",
            "",
            f"{'side':<12} {'seconds':>10} {'outside':>10} detail",
            f"{'proxy':<12} {proxy['seconds']['median']:10.2f} {proxy['outside_s']['median']:10.2f} "
            f"pgml.tune: fit {med(proxy['fit_s']):.2f} s, score {med(proxy['score_s']):.2f} s in the worker; "
            f"CPU: proxy {med(proxy['proxy_cpu_s']):.2f} s (without its worker), "
            f"PostgreSQL {med(proxy['server_cpu_s']):.2f} s",
            f"{'in-process':<12} {local['seconds']['median']:10.2f} {local['outside_s']['median']:10.2f} "
            f"read (psycopg) {med(local['read_s']):.3f} s + tuning.tune {med(local['tune_s']):.2f} s "
            f"(fit {med(local['fit_s']):.2f} s, score {med(local['score_s']):.2f} s)",
            "(outside: the time outside the engine's fit and score: reading, catalog, model load, "
            "tokenizing, adapter saved and stored)",
            "",
            f"last round's metrics, proxy / in-process: {metrics}; max |diff| {check['max_abs_diff']:.1e} "
            f"({'within' if check['close'] else 'OVER'} {TOLERANCE:g}); "
            f"{'the same' if check['rounds_repeat'] else 'NOT the same'} in every round",
            *pressure_lines(results["cpu_pressure"]),
        ]
    )


def main() -> int:
    args = parse_args()
    settings = hyperparams(args)
    reviews = make_reviews(args.rows, args.seed)
    proxy_runs: list[dict] = []
    local_runs: list[dict] = []
    pressure: dict = {}
    bench_sql = tune_sql("bench", "public.reviews", settings)
    with scratch_folder() as folder:
        models_dir = folder / "models"
        print(f"building {CLASSIFIER} from {MODEL} in {models_dir}", flush=True)
        base_model = str(build_classifier(models_dir, args.seed))

        with proxied_postgres(folder, models_dir) as servers:
            print(f"loading {args.rows} rows into reviews", flush=True)
            with psycopg.connect(servers.direct_url, autocommit=True) as conn:
                load_reviews(conn, "reviews", reviews)
                load_reviews(conn, "reviews_warm", reviews[:WARM_ROWS])
            with psycopg.connect(servers.proxy_url, autocommit=True) as conn:
                psycopg.ClientCursor(conn).execute("CREATE EXTENSION IF NOT EXISTS pgml")
            print(f"warm-up: one tune of {WARM_ROWS} rows on each side", flush=True)
            proxy_side(servers, tune_sql("warmup", "public.reviews_warm", settings))
            in_process_side(servers.direct_url, base_model, settings, "SELECT body, label FROM reviews_warm")

            pressure["before"] = cpu_pressure()
            sides = [
                ("proxy", proxy_runs, lambda: proxy_side(servers, bench_sql)),
                ("in-process", local_runs, lambda: in_process_side(servers.direct_url, base_model, settings)),
            ]
            for round_no in range(1, args.rounds + 1):
                for name, runs, run in rotated(sides, round_no):
                    runs.append(run())
                    print(
                        f"round {round_no} {name:<10} {runs[-1]['seconds']:8.2f} s "
                        f"(accuracy {runs[-1]['accuracy']:.4f}, loss {runs[-1]['loss']:.4f})",
                        flush=True,
                    )
            pressure["after"] = cpu_pressure()

    timed = ("seconds", "outside_s")
    proxy = summarize(proxy_runs, timed)
    local = summarize(local_runs, timed)
    ratio = proxy["seconds"]["median"] / local["seconds"]["median"]
    check = compare(proxy, local)
    results: dict = {
        "benchmark": "tune_overhead",
        "config": {
            "rows": args.rows,
            "rounds": args.rounds,
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "seed": args.seed,
            "test_size": TEST_SIZE,
            "test_sampling": SAMPLING,
            "base_model": f"{CLASSIFIER}: AutoModelForSequenceClassification from {MODEL}, 2-label head",
            "proxy_sql": bench_sql,
            "in_process": f"psycopg read ({READ_SQL}) + split(test_size {TEST_SIZE}, '{SAMPLING}') + "
            "pgml_engines.tuning.tune(TuneRequest(...))",
        },
        "environment": environment("transformers", "torch", "peft") | model_environment(),
        "proxy": proxy,
        "in_process": local,
        "ratio": ratio,
        "check": check,
        "cpu_pressure": pressure,
        "target": TARGET,
    }
    write_results(args.output, results, report(results))
    print(
        f"tune_overhead: proxy/in-process time = {ratio:.2f} (target <= {TARGET}); "
        f"proxy {proxy['seconds']['median']:.2f} s, in-process {local['seconds']['median']:.2f} s; "
        f"outside fit and score: proxy {proxy['outside_s']['median']:.2f} s, "
        f"in-process {local['outside_s']['median']:.2f} s; "
        f"metrics {'agree' if check['close'] else 'DIFFER'} (max diff {check['max_abs_diff']:.1e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
