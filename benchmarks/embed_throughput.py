"""Embedding throughput of pgml-proxy: ``SELECT id, pgml.embed(m, body) FROM docs`` vs sentence-transformers.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (as ``passthrough.py`` does), loads a table
``docs(id, body)`` of N texts (10 to 60 words from a seeded word list) directly into the server, then compares

- proxy: ``SELECT id, pgml.embed('sentence-transformers/all-MiniLM-L6-v2', body) FROM docs`` through the proxy
  with psycopg's ``ClientCursor`` (simple query protocol), fetching every row;
- in-process: reading ``SELECT id, body FROM docs`` with psycopg directly from the server, then
  ``model.encode(texts, batch_size=64)`` with the same model (the engine's default maximum batch).

Both models are warmed up first. For information, the in-process encode alone is also timed at
``--also-batch`` (default 32: sentence-transformers' default batch, which is what the engine runs when one
statement hands it all its distinct texts as a single request, whatever its ``max_batch_size``). Rounds alternate proxy and in-process; each figure is the median over the
rounds. A sample of the proxy's vectors is compared with the in-process ones (max absolute difference). Writes
``benchmarks/results/embed_throughput.json`` and prints, as its last line, in-process time / proxy time (DESIGN
§9 budget: at least 0.9).

    .venv/bin/python benchmarks/embed_throughput.py [--rows 10000] [--rounds 1] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from embedding_common import MODEL, RESULTS_DIR, environment, load_model, make_texts, server_cpu_seconds
from passthrough import BenchmarkError, cpu_seconds, embedded_postgres, pgml_proxy

RESULTS = RESULTS_DIR / "embed_throughput.json"
TOLERANCE = 1e-4
PROXY_SQL = f"SELECT id, pgml.embed('{MODEL}', body) FROM docs"
READ_SQL = "SELECT id, body FROM docs"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows in docs (default 10000)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds; medians (default 1)")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="in-process encode batch (default 64, the engine's)"
    )
    parser.add_argument(
        "--also-batch",
        type=int,
        default=32,
        help="also time the in-process encode alone at this batch, for information (default 32, "
        "sentence-transformers' default, which the engine's single model call for a statement uses; 0: skip)",
    )
    parser.add_argument("--min-words", type=int, default=10, help="shortest text in words (default 10)")
    parser.add_argument("--max-words", type=int, default=60, help="longest text in words (default 60)")
    parser.add_argument("--seed", type=int, default=20261127, help="seed of the texts (default 20261127)")
    parser.add_argument("--sample", type=int, default=200, help="vectors compared (default 200)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args()
    if min(args.rows, args.rounds, args.batch_size, args.min_words) < 1 or args.sample < 0:
        parser.error("--rows, --rounds, --batch-size and --min-words must be at least 1")
    if args.max_words < args.min_words:
        parser.error("--max-words must be at least --min-words")
    return args


def load_docs(url: str, texts: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS docs")
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text NOT NULL)")
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for i, text in enumerate(texts, start=1):
                copy.write_row((i, text))
        conn.execute("ANALYZE docs")


def run_proxy(url: str, pid: int, data_dir: Path, rows: int) -> tuple[dict, dict[int, list[float]]]:
    """Time the pgml statement through the proxy (connection set up beforehand); returns timings and vectors."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        cpu_before, server_before = cpu_seconds(pid), server_cpu_seconds(data_dir)
        start = time.perf_counter()
        cur.execute(PROXY_SQL)
        first = time.perf_counter()  # the first row arrived (the proxy has run the model by now)
        result = cur.fetchall()
        end = time.perf_counter()
        cpu = cpu_seconds(pid) - cpu_before
        server_cpu = server_cpu_seconds(data_dir) - server_before
    if len(result) != rows:
        raise BenchmarkError(f"proxy returned {len(result)} rows, expected {rows}")
    vectors = {row[0]: row[1] for row in result}
    return {
        "seconds": end - start,
        "execute_s": first - start,
        "fetch_s": end - first,
        "proxy_cpu_s": cpu,
        "server_cpu_s": server_cpu,
    }, vectors


def run_in_process(direct_url: str, model, batch_size: int, rows: int):
    """Read the texts with psycopg directly, then encode them; returns timings, ids and vectors."""
    with psycopg.connect(direct_url, autocommit=True) as conn:
        cur = conn.cursor()
        start = time.perf_counter()
        cur.execute(READ_SQL)
        result = cur.fetchall()
        read = time.perf_counter()
        ids = [row[0] for row in result]
        vectors = model.encode([row[1] for row in result], batch_size=batch_size, show_progress_bar=False)
        end = time.perf_counter()
    if len(ids) != rows:
        raise BenchmarkError(f"direct read returned {len(ids)} rows, expected {rows}")
    return {"seconds": end - start, "read_s": read - start, "encode_s": end - read}, ids, vectors


def compare(proxy: dict[int, list[float]], ids: list[int], local, sample: int, seed: int) -> dict:
    import numpy as np

    position = {doc_id: i for i, doc_id in enumerate(ids)}
    chosen = sorted(random.Random(seed).sample(sorted(position), min(sample, len(position))))
    worst = 0.0
    for doc_id in chosen:
        got = np.asarray(proxy[doc_id], dtype=np.float32)
        want = local[position[doc_id]]
        if got.shape != want.shape:
            raise BenchmarkError(f"row {doc_id}: proxy vector shape {got.shape}, in-process {want.shape}")
        worst = max(worst, float(np.max(np.abs(got - want))))
    return {"sampled": len(chosen), "max_abs_diff": worst, "tolerance": TOLERANCE, "ok": worst <= TOLERANCE}


def report(results: dict) -> str:
    config, proxy, local = results["config"], results["proxy"], results["in_process"]
    rows = config["rows"]
    med = statistics.median

    def line(name: str, seconds: float, detail: str) -> str:
        return f"{name:<12} {seconds:10.2f} {rows / seconds:10.1f} {detail}"

    check = results["check"]
    other = results["in_process_encode_only_other_batch"]
    return "\n".join(
        [
            "",
            f"{rows} rows of {config['min_words']}-{config['max_words']} words, model {MODEL}, "
            f"batch {config['batch_size']}, {config['rounds']} round(s) (median)",
            "",
            f"{'side':<12} {'seconds':>10} {'rows/s':>10} detail",
            line(
                "proxy",
                proxy["seconds"]["median"],
                f"until first row {med(proxy['execute_s']):.2f} s, fetch {med(proxy['fetch_s']):.2f} s, "
                f"CPU: proxy {med(proxy['proxy_cpu_s']):.2f} s, PostgreSQL {med(proxy['server_cpu_s']):.2f} s",
            ),
            line(
                "in-process",
                local["seconds"]["median"],
                f"read {med(local['read_s']):.2f} s + encode {med(local['encode_s']):.2f} s",
            ),
            *(
                [
                    f"{'':<12} {'':>10} {'':>10} (encode alone at batch {other['batch_size']}: "
                    f"{other['median']:.2f} s, {rows / other['median']:.1f} rows/s; for information)"
                ]
                if other
                else []
            ),
            "",
            f"vectors: {check['sampled']} sampled rows, max |proxy - in-process| = {check['max_abs_diff']:.2e} "
            f"({'within' if check['ok'] else 'OVER'} {TOLERANCE:g})",
        ]
    )


def main() -> int:
    args = parse_args()
    texts = make_texts(args.rows, args.min_words, args.max_words, args.seed)
    print(f"loading the in-process model {MODEL}", flush=True)
    model = load_model()
    model.encode(texts[: args.batch_size], batch_size=args.batch_size, show_progress_bar=False)  # warm-up

    proxy_runs: dict[str, list[float]] = {
        "seconds": [],
        "execute_s": [],
        "fetch_s": [],
        "proxy_cpu_s": [],
        "server_cpu_s": [],
    }
    local_runs: dict[str, list[float]] = {"seconds": [], "read_s": [], "encode_s": []}
    other_batch: list[float] = []
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pgml-bench-")))
        server = stack.enter_context(embedded_postgres(folder))
        direct_url = server.tcp_dsn()
        proxy_url, proxy_pid = stack.enter_context(pgml_proxy(server.dsn()))
        print(f"loading {args.rows} rows into docs directly", flush=True)
        load_docs(direct_url, texts)
        print("warming up the proxy's model (one embed call)", flush=True)
        with psycopg.connect(proxy_url, autocommit=True) as conn:
            psycopg.ClientCursor(conn).execute(f"SELECT pgml.embed('{MODEL}', 'warm-up')").fetchall()

        proxy_vectors: dict[int, list[float]] = {}
        ids: list[int] = []
        local_vectors = None
        for round_no in range(1, args.rounds + 1):
            timing, proxy_vectors = run_proxy(proxy_url, proxy_pid, server.data_dir, args.rows)
            for key, value in timing.items():
                proxy_runs[key].append(value)
            print(
                f"round {round_no} proxy      {timing['seconds']:8.2f} s ({args.rows / timing['seconds']:.1f} rows/s)",
                flush=True,
            )
            timing, ids, local_vectors = run_in_process(direct_url, model, args.batch_size, args.rows)
            for key, value in timing.items():
                local_runs[key].append(value)
            print(
                f"round {round_no} in-process {timing['seconds']:8.2f} s ({args.rows / timing['seconds']:.1f} rows/s)",
                flush=True,
            )
            if args.also_batch:
                start = time.perf_counter()
                model.encode(texts, batch_size=args.also_batch, show_progress_bar=False)
                other_batch.append(time.perf_counter() - start)
                print(
                    f"round {round_no} encode only, batch {args.also_batch}: {other_batch[-1]:.2f} s",
                    flush=True,
                )

    check = compare(proxy_vectors, ids, local_vectors, args.sample, args.seed)
    proxy_s = statistics.median(proxy_runs["seconds"])
    local_s = statistics.median(local_runs["seconds"])
    results: dict = {
        "benchmark": "embed_throughput",
        "config": {
            "rows": args.rows,
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "min_words": args.min_words,
            "max_words": args.max_words,
            "seed": args.seed,
            "proxy_statement": PROXY_SQL,
            "proxy_protocol": "simple (psycopg ClientCursor)",
            "in_process": f"psycopg read ({READ_SQL}) + SentenceTransformer.encode(batch_size={args.batch_size})",
        },
        "environment": environment(),
        "proxy": {k: v for k, v in proxy_runs.items() if k != "seconds"}
        | {"seconds": {"runs": proxy_runs["seconds"], "median": proxy_s}},
        "in_process": {k: v for k, v in local_runs.items() if k != "seconds"}
        | {"seconds": {"runs": local_runs["seconds"], "median": local_s}},
        "in_process_encode_only_other_batch": {
            "batch_size": args.also_batch,
            "runs": other_batch,
            "median": statistics.median(other_batch),
        }
        if other_batch
        else None,
        "check": check,
        "ratio": local_s / proxy_s,
        "budget": 0.9,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    print(f"\nresults written to {args.output}")
    print(
        f"embed_throughput: in-process/proxy time = {results['ratio']:.2f} (budget >= 0.9); "
        f"proxy {args.rows / proxy_s:.1f} rows/s, in-process {args.rows / local_s:.1f} rows/s; "
        f"vectors {'match' if check['ok'] else 'DIFFER'} (max diff {check['max_abs_diff']:.1e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
