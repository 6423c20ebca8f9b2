"""Concurrent embedding through pgml-proxy: S sessions embedding single sentences vs one batched encode.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (see ``harness.py``). S asyncpg
connections (extended protocol, one event loop) each run ``SELECT pgml.embed('sentence-transformers/
all-MiniLM-L6-v2', $1)`` for K sentences in a loop, one after the other; the proxy's engine should batch the
concurrent calls into shared model calls. The reference is one in-process ``model.encode`` of all S×K sentences
(batch 64, the engine's default maximum batch) with the same model.

Rounds alternate proxy and in-process, each round with fresh sentences (8 to 20 words from a seeded word
list); figures are medians over the rounds. The proxy's resident memory (VmRSS) is read after a one-session
warm-up (which loads the model) and after the S-session runs: the growth should stay small (one model copy).
Two informational rows split the gap (``--no-breakdown`` skips them): in-process encode calls of S sentences
(S waiting sessions can never form a bigger batch), and the proxy's engine (``pgml_engines.Engine``) in this
process with S asyncio tasks, i.e. the batching without the wire, the SQL and PostgreSQL.

Writes ``benchmarks/results/embed_concurrency.json`` and prints, as its last line, proxy throughput / batched
in-process throughput (DESIGN §9 budget: at least 0.7) and the memory growth (budget: under 50 MB).

    .venv/bin/python benchmarks/embed_concurrency.py [--sessions 32] [--per-session 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import asyncpg
from harness import (
    RESULTS_DIR,
    BenchmarkError,
    ProxiedPostgres,
    at_least,
    benchmark_parser,
    cpu_seconds,
    environment,
    p99,
    proc_status_mb,
    proxied_postgres,
    scratch_folder,
    server_cpu_seconds,
    summarize,
    write_results,
)
from workload import MODEL, add_text_arguments, check_word_range, load_model, make_texts, model_environment

RESULTS = RESULTS_DIR / "embed_concurrency.json"
EMBED_SQL = f"SELECT pgml.embed('{MODEL}', $1)"
DIMENSIONS = 384
RSS_BUDGET_MB = 50


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    parser.add_argument("--sessions", type=at_least(1), default=32, help="concurrent sessions S (default 32)")
    parser.add_argument(
        "--per-session", type=at_least(1), default=20, help="sentences K per session (default 20)"
    )
    parser.add_argument(
        "--rounds", type=at_least(1), default=3, help="alternating rounds; medians (default 3)"
    )
    parser.add_argument(
        "--batch-size",
        type=at_least(1),
        default=64,
        help="in-process encode batch (default 64, the engine's)",
    )
    parser.add_argument(
        "--warmup", type=at_least(1), default=20, help="embed calls of the one-session warm-up (default 20)"
    )
    parser.add_argument(
        "--no-breakdown",
        action="store_true",
        help="skip the informational rows (in-process encode calls of S sentences; the engine alone with S tasks)",
    )
    add_text_arguments(parser, min_words=8, max_words=20, seed_of="the sentences")
    return check_word_range(parser, parser.parse_args())


async def session_loop(conn: asyncpg.Connection, sentences: list[str], latencies: list[float]) -> None:
    for sentence in sentences:
        start = time.perf_counter()
        vector = await conn.fetchval(EMBED_SQL, sentence)
        latencies.append(time.perf_counter() - start)
        if vector is None or len(vector) != DIMENSIONS:
            raise BenchmarkError(f"pgml.embed returned {vector!r:.80} for {sentence!r}")


async def warm_up(url: str, sentences: list[str]) -> dict:
    """One session: load the proxy's model (first call), then time the rest one after the other."""
    conn = await asyncpg.connect(url)
    try:
        start = time.perf_counter()
        await session_loop(conn, sentences[:1], [])
        first = time.perf_counter() - start
        latencies: list[float] = []
        start = time.perf_counter()
        await session_loop(conn, sentences[1:], latencies)
        seconds = time.perf_counter() - start
    finally:
        await conn.close()
    calls = len(sentences) - 1
    return {
        "first_call_s": first,
        "calls": calls,
        "seconds": seconds,
        "per_second": calls / seconds if calls else None,
        "latency_ms_median": statistics.median(latencies) * 1e3 if latencies else None,
    }


async def proxy_round(
    conns: list[asyncpg.Connection], batches: list[list[str]], pid: int, data_dir: Path
) -> dict:
    latencies: list[list[float]] = [[] for _ in conns]
    cpu_before, server_before = cpu_seconds(pid), server_cpu_seconds(data_dir)
    start = time.perf_counter()
    await asyncio.gather(
        *(session_loop(c, b, lat) for c, b, lat in zip(conns, batches, latencies, strict=True))
    )
    seconds = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu_before
    server_cpu = server_cpu_seconds(data_dir) - server_before
    flat = sorted(x for lat in latencies for x in lat)
    calls = len(flat)
    return {
        "seconds": seconds,
        "per_second": calls / seconds,
        "proxy_cpu_s": cpu,
        "server_cpu_s": server_cpu,
        "latency_ms_median": statistics.median(flat) * 1e3,
        "latency_ms_p99": p99(flat) * 1e3,
    }


async def run(args: argparse.Namespace, servers: ProxiedPostgres, model, rounds: list[list[str]]) -> dict:
    url, pid, data_dir = servers.proxy_url, servers.proxy_pid, servers.data_dir
    results: dict = {"proxy": [], "in_process": [], "in_process_calls_of_s": [], "engine": []}
    engine = None
    if not args.no_breakdown:
        from pgml_engines.engine import Engine

        engine = Engine()
        await engine.embed(MODEL, ["warm-up"])
    rss: dict[str, float] = {"after_start": proc_status_mb(pid)}
    warm_sentences = make_texts(args.warmup + 1, args.min_words, args.max_words, args.seed - 1)
    results["warm_up"] = await warm_up(url, warm_sentences)
    rss["after_warm_up_1_session"] = proc_status_mb(pid)
    print(
        f"one-session warm-up: first call {results['warm_up']['first_call_s']:.2f} s (model load), then "
        f"{results['warm_up']['per_second'] or 0:.1f} calls/s; proxy RSS {rss['after_warm_up_1_session']:.1f} MB",
        flush=True,
    )
    conns = [await asyncpg.connect(url) for _ in range(args.sessions)]
    try:
        rss["after_connect"] = proc_status_mb(pid)
        # Each connection's first call prepares asyncpg's statement; run it concurrently, untimed.
        extra = make_texts(args.sessions, args.min_words, args.max_words, args.seed - 3)
        await asyncio.gather(*(session_loop(c, [t], []) for c, t in zip(conns, extra, strict=True)))
        for round_no, sentences in enumerate(rounds, start=1):
            per_session = [
                sentences[i * args.per_session : (i + 1) * args.per_session] for i in range(args.sessions)
            ]
            proxy = await proxy_round(conns, per_session, pid, data_dir)
            results["proxy"].append(proxy)
            print(
                f"round {round_no} proxy      {proxy['seconds']:7.2f} s {proxy['per_second']:8.1f} sentences/s "
                f"(latency median {proxy['latency_ms_median']:.1f} ms, p99 {proxy['latency_ms_p99']:.1f} ms)",
                flush=True,
            )
            start = time.perf_counter()
            vectors = model.encode(sentences, batch_size=args.batch_size, show_progress_bar=False)
            seconds = time.perf_counter() - start
            if vectors.shape != (len(sentences), DIMENSIONS):
                raise BenchmarkError(f"in-process vectors have shape {vectors.shape}")
            results["in_process"].append({"seconds": seconds, "per_second": len(sentences) / seconds})
            print(
                f"round {round_no} in-process {seconds:7.2f} s {len(sentences) / seconds:8.1f} sentences/s",
                flush=True,
            )
            if engine is not None:
                start = time.perf_counter()
                for i in range(0, len(sentences), args.sessions):
                    model.encode(
                        sentences[i : i + args.sessions], batch_size=args.batch_size, show_progress_bar=False
                    )
                seconds = time.perf_counter() - start
                results["in_process_calls_of_s"].append(
                    {"seconds": seconds, "per_second": len(sentences) / seconds}
                )
                results["engine"].append(await engine_round(engine, per_session))
        rss[f"after_{args.sessions}_sessions"] = proc_status_mb(pid)
    finally:
        for conn in conns:
            await conn.close()
    if engine is not None:
        engine.close()
    await asyncio.sleep(0.2)
    rss["after_disconnect"] = proc_status_mb(pid)
    rss["peak_VmHWM"] = proc_status_mb(pid, "VmHWM")
    results["rss_mb"] = rss
    return results


async def engine_round(engine, sessions: list[list[str]]) -> dict:
    """The proxy's engine in this process, one asyncio task per session: batching without the wire."""

    async def loop(sentences: list[str]) -> None:
        for sentence in sentences:
            await engine.embed(MODEL, [sentence])

    before = engine.stats()
    start = time.perf_counter()
    await asyncio.gather(*(loop(b) for b in sessions))
    seconds = time.perf_counter() - start
    after = engine.stats()
    items, batches = after.items - before.items, after.batches - before.batches
    return {
        "seconds": seconds,
        "per_second": items / seconds,
        "batches": batches,
        "mean_batch": items / batches,
    }


def report(results: dict) -> str:
    config, rss = results["config"], results["rss_mb"]
    sessions = config["sessions"]
    proxy, local = results["proxy"], results["in_process"]
    med = statistics.median
    warm = results["warm_up"]
    breakdown = []
    if results["engine"]:
        calls, engine = results["in_process_calls_of_s"], results["engine"]
        breakdown = [
            f"{f'in-process, calls of {sessions}':<28} {calls['seconds']['median']:8.2f} "
            f"{calls['per_second']['median']:12.1f} the largest batch {sessions} waiting sessions can form "
            "(for information)",
            f"{f'engine alone, {sessions} tasks':<28} {engine['seconds']['median']:8.2f} "
            f"{engine['per_second']['median']:12.1f} pgml_engines.Engine in this process, no wire; mean batch "
            f"{med(engine['mean_batch']):.1f} (for information)",
        ]
    return "\n".join(
        [
            "",
            f"{sessions} sessions x {config['per_session']} single sentences ({config['min_words']}-"
            f"{config['max_words']} words) vs one in-process encode of {sessions * config['per_session']} "
            f"(batch {config['batch_size']}); {config['rounds']} round(s) (median)",
            "",
            f"{'side':<28} {'seconds':>8} {'sentences/s':>12} detail",
            f"{f'proxy, {sessions} sessions':<28} {proxy['seconds']['median']:8.2f} "
            f"{proxy['per_second']['median']:12.1f} latency median {med(proxy['latency_ms_median']):.1f} ms, "
            f"p99 {med(proxy['latency_ms_p99']):.1f} ms; CPU: proxy {med(proxy['proxy_cpu_s']):.2f} s, "
            f"PostgreSQL {med(proxy['server_cpu_s']):.2f} s",
            f"{'in-process, one encode':<28} {local['seconds']['median']:8.2f} {local['per_second']['median']:12.1f}",
            *breakdown,
            f"{'proxy, 1 session (warm-up)':<28} {warm['seconds']:8.2f} {warm['per_second'] or 0:12.1f} "
            f"latency median {warm['latency_ms_median'] or 0:.1f} ms ({warm['calls']} calls, for information)",
            "",
            "proxy resident memory (VmRSS, MB):",
            *(f"  {name:<26} {value:8.1f}" for name, value in rss.items()),
            f"  growth from the 1-session warm-up to after the {sessions}-session runs: "
            f"{results['rss_growth_mb']:.1f} MB (budget < {RSS_BUDGET_MB} MB)",
        ]
    )


def main() -> int:
    args = parse_args()
    total = args.sessions * args.per_session
    all_sentences = make_texts(total * args.rounds, args.min_words, args.max_words, args.seed)
    rounds = [all_sentences[i * total : (i + 1) * total] for i in range(args.rounds)]
    print(f"loading the in-process model {MODEL}", flush=True)
    model = load_model()
    model.encode(
        make_texts(args.batch_size, args.min_words, args.max_words, args.seed - 2), show_progress_bar=False
    )

    with scratch_folder() as folder, proxied_postgres(folder) as servers:
        measured = asyncio.run(run(args, servers, model, rounds))

    def summary(runs: list[dict]) -> dict:
        return summarize(runs, timed=("seconds", "per_second"))

    rss = measured["rss_mb"]
    results: dict = {
        "benchmark": "embed_concurrency",
        "config": {
            "sessions": args.sessions,
            "per_session": args.per_session,
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "warmup_calls": args.warmup,
            "min_words": args.min_words,
            "max_words": args.max_words,
            "seed": args.seed,
            "proxy_statement": EMBED_SQL,
            "client": f"asyncpg {asyncpg.__version__}, {args.sessions} connections in one event loop",
        },
        "environment": environment("sentence_transformers", "torch") | model_environment(),
        "warm_up": measured["warm_up"],
        "proxy": summary(measured["proxy"]),
        "in_process": summary(measured["in_process"]),
        "in_process_calls_of_s": summary(measured["in_process_calls_of_s"])
        if measured["in_process_calls_of_s"]
        else None,
        "engine": summary(measured["engine"]) if measured["engine"] else None,
        "rss_mb": rss,
        "rss_growth_mb": rss[f"after_{args.sessions}_sessions"] - rss["after_warm_up_1_session"],
    }
    results["ratio"] = (
        results["proxy"]["per_second"]["median"] / results["in_process"]["per_second"]["median"]
    )
    results["budget"] = {"ratio": 0.7, "rss_growth_mb": RSS_BUDGET_MB}
    write_results(args.output, results, report(results))
    print(
        f"embed_concurrency: proxy/batched in-process throughput = {results['ratio']:.2f} (budget >= 0.7); "
        f"{args.sessions} sessions {results['proxy']['per_second']['median']:.1f}/s vs "
        f"{results['in_process']['per_second']['median']:.1f}/s; proxy RSS growth "
        f"{results['rss_growth_mb']:.1f} MB (budget < {RSS_BUDGET_MB})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
