"""Embedding throughput of pgml-proxy: ``SELECT id, pgml.embed(m, body) FROM docs`` vs sentence-transformers.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (see ``harness.py``), loads a table
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
import sys
import time
from functools import partial

from harness import (
    RESULTS_DIR,
    BenchmarkError,
    at_least,
    benchmark_parser,
    environment,
    median_of,
    proxied_postgres,
    scratch_folder,
    simple_query,
    write_results,
)
from workload import (
    MODEL,
    READ_SQL,
    DocsRounds,
    add_docs_arguments,
    check_word_range,
    docs_config,
    docs_rates,
    docs_table,
    load_docs,
    load_model,
    make_texts,
    model_environment,
    sample_ids,
)

RESULTS = RESULTS_DIR / "embed_throughput.json"
TOLERANCE = 1e-4
PROXY_SQL = f"SELECT id, pgml.embed('{MODEL}', body) FROM docs"


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    add_docs_arguments(parser, rows=10_000, rounds=1, seed_of="the texts")
    parser.add_argument(
        "--also-batch",
        type=at_least(0),
        default=32,
        help="also time the in-process encode alone at this batch, for information (default 32, "
        "sentence-transformers' default, which the engine's single model call for a statement uses; 0: skip)",
    )
    return check_word_range(parser, parser.parse_args())


def compare(proxy: dict[int, list[float]], ids: list[int], local, sample: int, seed: int) -> dict:
    import numpy as np

    position = {doc_id: i for i, doc_id in enumerate(ids)}
    chosen = sample_ids(ids, sample, seed)
    worst = 0.0
    for doc_id in chosen:
        got = np.asarray(proxy[doc_id], dtype=np.float32)
        want = local[position[doc_id]]
        if got.shape != want.shape:
            raise BenchmarkError(f"row {doc_id}: proxy vector shape {got.shape}, in-process {want.shape}")
        worst = max(worst, float(np.max(np.abs(got - want))))
    return {"sampled": len(chosen), "max_abs_diff": worst, "tolerance": TOLERANCE, "ok": worst <= TOLERANCE}


def report(results: dict) -> str:
    config = results["config"]
    rows = config["rows"]
    check = results["check"]
    other = results["in_process_encode_only_other_batch"]
    return "\n".join(
        [
            "",
            f"{rows} rows of {config['min_words']}-{config['max_words']} words, model {MODEL}, "
            f"batch {config['batch_size']}, {config['rounds']} round(s) (median)",
            "",
            *docs_table(results, "encode"),
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

    other_batch: list[float] = []
    with scratch_folder() as folder, proxied_postgres(folder) as servers:
        load_docs(servers.direct_url, texts)
        print("warming up the proxy's model (one embed call)", flush=True)
        simple_query(servers.proxy_url, f"SELECT pgml.embed('{MODEL}', 'warm-up')")

        rounds = DocsRounds(servers, args.rows)
        for round_no in range(1, args.rounds + 1):
            proxy_vectors = rounds.proxy(round_no, PROXY_SQL)
            ids, local_vectors = rounds.in_process(
                round_no, "encode", partial(model.encode, batch_size=args.batch_size, show_progress_bar=False)
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
    results: dict = {
        "benchmark": "embed_throughput",
        "config": docs_config(args, PROXY_SQL)
        | {
            "in_process": f"psycopg read ({READ_SQL}) + "
            f"SentenceTransformer.encode(batch_size={args.batch_size})"
        },
        "environment": environment("sentence_transformers", "torch") | model_environment(),
        **rounds.summary(),
        "in_process_encode_only_other_batch": {"batch_size": args.also_batch} | median_of(other_batch)
        if other_batch
        else None,
        "check": check,
        "budget": 0.9,
    }
    write_results(args.output, results, report(results))
    print(
        f"embed_throughput: in-process/proxy time = {results['ratio']:.2f} (budget >= 0.9); "
        f"{docs_rates(results)}; "
        f"vectors {'match' if check['ok'] else 'DIFFER'} (max diff {check['max_abs_diff']:.1e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
