"""Classification throughput of pgml-proxy: ``pgml.transform`` text-classification per row vs a transformers pipeline.

Builds a sequence classifier on the spot from the real all-MiniLM-L6-v2 weights (the installed copy the engine
finds), with a 2-label head (NEGATIVE, POSITIVE) that is randomly initialised from a fixed seed: the labels mean
nothing, but the cost of a call is that of a real MiniLM classifier. It is saved, with its tokenizer, as the folder
``minilm-sentiment`` of a temporary models directory, which the proxy serves with ``--models-dir``.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (see ``harness.py``), loads a table
``docs(id, body)`` of N texts (10 to 60 words from a seeded word list, as ``embed_throughput.py``) directly into
the server, then compares

- proxy: ``SELECT id, pgml.transform('{"task": "text-classification", "model": "minilm-sentiment"}'::jsonb,
  inputs => ARRAY[body]) FROM docs`` through the proxy with psycopg's ``ClientCursor`` (simple query protocol),
  fetching every row;
- in-process: reading ``SELECT id, body FROM docs`` with psycopg directly from the server, then
  ``transformers.pipeline("text-classification", model=folder)`` over the list with ``batch_size=64`` (the engine's
  default maximum batch).

Both sides are warmed up first. Rounds alternate proxy and in-process; each figure is the median over the rounds.
The kernel's CPU pressure is recorded before and after the rounds (other work on a shared machine). On a sample
of rows the proxy's label and score are compared with the pipeline's. Writes
``benchmarks/results/transform_classification.json`` and prints, as its last line, in-process time / proxy time
(target: at least 0.8).

    .venv/bin/python benchmarks/transform_classification.py [--rows 1000] [--rounds 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness import (
    RESULTS_DIR,
    BenchmarkError,
    benchmark_parser,
    cpu_pressure,
    environment,
    pressure_lines,
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
    make_texts,
    model_environment,
    model_path,
    sample_ids,
)

RESULTS = RESULTS_DIR / "transform_classification.json"
CLASSIFIER = "minilm-sentiment"
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
TASK = json.dumps({"task": "text-classification", "model": CLASSIFIER})
PROXY_SQL = f"SELECT id, pgml.transform('{TASK}'::jsonb, inputs => ARRAY[body]) FROM docs"
WARM_SQL = f"SELECT pgml.transform('{TASK}'::jsonb, inputs => ARRAY['warm-up', 'a second warm-up text'])"
TARGET = 0.8
# Scores differ by float noise only (the engine may pad its batches differently); anything larger is a bug.
TOLERANCE = 1e-4


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    add_docs_arguments(parser, rows=1000, rounds=3, seed_of="the texts and the head")
    return check_word_range(parser, parser.parse_args())


def build_classifier(models_dir: Path, seed: int) -> Path:
    """MiniLM's encoder with a seeded random 2-label head, saved as ``<models_dir>/minilm-sentiment``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = model_path()
    torch.manual_seed(seed)  # the head is the only random part: the same seed gives the same labels
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label=LABELS, label2id={label: i for i, label in LABELS.items()}
    )
    folder = models_dir / CLASSIFIER
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def compare(proxy: dict[int, Any], ids: list[int], local: list, sample: int, seed: int) -> dict:
    """Labels and scores of a sample of rows: the proxy's ``[{"label", "score"}]`` vs the pipeline's dict."""
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    chosen = sample_ids(ids, sample, seed)
    mismatched: list[dict] = []
    worst = 0.0
    for doc_id in chosen:
        got, want = proxy[doc_id], local[position[doc_id]]
        if not (isinstance(got, list) and len(got) == 1 and isinstance(got[0], dict)):
            raise BenchmarkError(f"row {doc_id}: expected [{{label, score}}] from the proxy, got {got!r}")
        if got[0].get("label") != want["label"]:
            mismatched.append({"id": doc_id, "proxy": got[0], "in_process": want})
            continue
        worst = max(worst, abs(float(got[0]["score"]) - want["score"]))
    labels = {label: sum(1 for d in chosen if proxy[d][0].get("label") == label) for label in LABELS.values()}
    return {
        "sampled": len(chosen),
        "labels_agree": len(chosen) - len(mismatched),
        "mismatches": mismatched[:10],
        "proxy_label_counts": labels,
        "max_abs_score_diff": worst,
        "tolerance": TOLERANCE,
        "ok": not mismatched and worst <= TOLERANCE,
    }


def report(results: dict) -> str:
    config, check = results["config"], results["check"]
    return "\n".join(
        [
            "",
            f"{config['rows']} rows of {config['min_words']}-{config['max_words']} words, "
            f"text-classification with {CLASSIFIER} ({MODEL} + random 2-label head), "
            f"batch {config['batch_size']}, {config['rounds']} round(s) (median)",
            "",
            *docs_table(results, "classify"),
            "",
            f"labels: {check['labels_agree']}/{check['sampled']} sampled rows agree, max |score diff| = "
            f"{check['max_abs_score_diff']:.2e} ({'within' if check['ok'] else 'OVER'} {TOLERANCE:g}); "
            f"proxy labels {check['proxy_label_counts']}",
            *pressure_lines(results["environment"]["cpu_pressure"]),
        ]
    )


def main() -> int:
    args = parse_args()
    import transformers

    texts = make_texts(args.rows, args.min_words, args.max_words, args.seed)
    with scratch_folder() as folder:
        models_dir = folder / "models"
        print(f"building {CLASSIFIER} from {MODEL} in {models_dir}", flush=True)
        classifier_path = build_classifier(models_dir, args.seed)
        classifier = transformers.pipeline("text-classification", model=str(classifier_path), device="cpu")
        classifier(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up

        with proxied_postgres(folder, models_dir) as servers:
            load_docs(servers.direct_url, texts)
            print("warming up the proxy's model (one transform call)", flush=True)
            simple_query(servers.proxy_url, WARM_SQL)

            rounds = DocsRounds(servers, args.rows)
            pressure_before = cpu_pressure()
            for round_no in range(1, args.rounds + 1):
                proxy_results = rounds.proxy(round_no, PROXY_SQL)
                ids, local_results = rounds.in_process(
                    round_no, "classify", lambda texts: classifier(texts, batch_size=args.batch_size)
                )
            pressure_after = cpu_pressure()

    check = compare(proxy_results, ids, local_results, args.sample, args.seed)
    results: dict = {
        "benchmark": "transform_classification",
        "config": docs_config(args, PROXY_SQL)
        | {
            "classifier": f"{CLASSIFIER}: AutoModelForSequenceClassification from {MODEL}, random 2-label head",
            "in_process": f"psycopg read ({READ_SQL}) + transformers.pipeline('text-classification')"
            f"(texts, batch_size={args.batch_size})",
        },
        "environment": environment("transformers", "torch")
        | model_environment()
        | {"cpu_pressure": {"before": pressure_before, "after": pressure_after}},
        **rounds.summary(),
        "check": check,
        "target": TARGET,
    }
    write_results(args.output, results, report(results))
    print(
        f"transform_classification: in-process/proxy time = {results['ratio']:.2f} (target >= {TARGET}); "
        f"{docs_rates(results)}; "
        f"labels {'agree' if check['ok'] else 'DIFFER'} "
        f"({check['labels_agree']}/{check['sampled']}, max score diff {check['max_abs_score_diff']:.1e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
