"""SDK ingest and search: ``Collection.upsert_documents`` with a chunk + embed pipeline vs the same work in-process
loaded with COPY, then ``Collection.vector_search`` latency vs the same query done directly.

Starts its own embedded PostgreSQL and a pgml-proxy in front of it (see ``harness.py``) and makes N seeded
documents ``{"id": i, "title": 3-6 words, "body": 300-440 characters of sentences from a seeded word list}``.
The pipeline ``bench`` chunks ``body`` (``recursive_character``, chunk_size 250, chunk_overlap 25: about two
chunks a document) and embeds the chunks with ``sentence-transformers/all-MiniLM-L6-v2``.

The documents go in ``--slices`` (default 10) consecutive slices, and the sides take turns slice by slice (which
side goes first rotates), so that other work on a shared machine weighs on every side alike; each side's figure is
the sum over its slices:

- SDK: ``await collection.upsert_documents(slice)`` (batch_size 100, the default; one transaction per batch)
  with our ``pgml`` SDK (this checkout's ``sdk/python``) through the proxy, after an untimed ``add_pipeline`` on
  the empty collection. Per batch the SDK upserts the documents, calls ``pgml.chunk`` once per document
  (pipeline mode), inserts the chunks and embeds them with one ``pgml.embed(inputs => text[])`` inside
  ``INSERT … SELECT``. ``--also-parallel 2`` adds a third side, ``parallel_batches`` 2 into another collection;
- in-process: the same chunking (langchain ``RecursiveCharacterTextSplitter``, which ``pgml.chunk`` runs) and
  embedding (sentence-transformers, the model folder the proxy serves, ``encode(batch_size=32)``: the forward
  batch of the engine's model calls) in this process, then COPY of documents, chunks and embeddings directly into
  the server (not through the proxy), into tables with the SDK's layout (columns, keys, foreign keys).

Indexes, HNSW included, count on both sides: the SDK's exist from ``add_pipeline`` on and are maintained as rows
arrive; the in-process side creates the same ones (document GIN, chunk and embedding btrees, HNSW m 16,
ef_construction 64) after its last slice, the usual bulk-load order, and that time is part of its figure.

Where the SDK's time goes: its statements are timed by wrapping the SDK's statement helpers (seconds summed over
the batches), and the statement that dominates, the embedding INSERT, is timed again in its two parts alone over
the same batches (``--no-breakdown`` skips this): ``pgml.embed`` through the proxy (in turn with the in-process
encode of the same texts) and PostgreSQL's INSERT of the vectors with and without the HNSW index.

Then, on the first round's data (both sides ANALYZEd, untimed), ``--queries`` (default 100) seeded queries of
3-8 words alternate between ``collection.vector_search({"query": {"fields": {"body": {"query": q}}}, "limit":
5}, pipeline)`` and the in-process twin: ``model.encode(q)`` and ``ORDER BY embedding <=> $1 LIMIT 5`` (joined
to its chunk and document) on a direct connection; latency p50/p95 of each after a warm-up, the SDK's
statements per query, and both statements EXPLAIN ANALYZEd directly.

Checks: both sides stored the same chunks, and their vectors agree (max absolute difference); the top-5 chunks of
the two searches are compared (their HNSW graphs differ: one built row by row, one in bulk). Writes
``benchmarks/results/sdk_ingest.json`` and prints, as its last line, in-process time / SDK time (target: at
least 0.7) and the search latencies. About 10 minutes on 2 CPUs; a smoke run: ``--documents 500 --queries 20``.

    .venv/bin/python benchmarks/sdk_ingest.py [--documents 10000] [--slices 10] [--queries 100] [--also-parallel 2]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import psycopg
from harness import (
    RESULTS_DIR,
    ROOT,
    BenchmarkError,
    ProxiedPostgres,
    at_least,
    benchmark_parser,
    cpu_pressure,
    cpu_seconds,
    environment,
    pressure_lines,
    proxied_postgres,
    rotated,
    scratch_folder,
    server_cpu_seconds,
    simple_query,
    summarize,
    write_results,
)
from psycopg import sql
from psycopg.types.json import Jsonb
from workload import MODEL, SEED, WORDS, load_model, model_environment

# The SDK of this checkout (sdk/python), ahead of any installed copy of the name.
sys.path.insert(0, str(ROOT / "sdk" / "python"))

RESULTS = RESULTS_DIR / "sdk_ingest.json"
TARGET = 0.7
PIPELINE = "bench"
FIELD = "body"
CHUNK_SIZE = 250
CHUNK_OVERLAP = 25
MIN_BODY, MAX_BODY = 300, 440  # characters: two chunks of at most 250 with 25 overlap for almost every body
HNSW_M, HNSW_EF = 16, 64  # the SDK's defaults (contract §2.3)
SPLITTER = {
    "model": "recursive_character",
    "parameters": {"chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP},
}
SCHEMA = {FIELD: {"splitter": SPLITTER, "semantic_search": {"model": MODEL}}}
TOLERANCE = 1e-4
WARMUP_QUERIES = 5
DIMENSIONS = 384  # all-MiniLM-L6-v2


def parse_args() -> argparse.Namespace:
    parser = benchmark_parser(__doc__, RESULTS)
    parser.add_argument(
        "--documents", type=at_least(10), default=10_000, help="documents upserted (default 10000)"
    )
    parser.add_argument(
        "--rounds", type=at_least(1), default=1, help="rounds of every side, alternating; medians (default 1)"
    )
    parser.add_argument(
        "--slices",
        type=at_least(1),
        default=10,
        help="the documents go in this many slices, each upserted by every side in turn (default 10)",
    )
    parser.add_argument(
        "--batch-size", type=at_least(1), default=100, help="upsert_documents batch_size (default 100)"
    )
    parser.add_argument(
        "--also-parallel",
        type=at_least(0),
        default=0,
        help="also upsert with this parallel_batches, for information, e.g. 2 (default 0: skip; it adds an SDK-sized "
        "share to the run time)",
    )
    parser.add_argument(
        "--encode-batch",
        type=at_least(1),
        default=32,
        help="in-process encode batch (default 32: the forward batch of the engine's model calls)",
    )
    parser.add_argument(
        "--queries", type=at_least(1), default=100, help="vector_search queries timed (default 100)"
    )
    parser.add_argument("--limit", type=at_least(1), default=5, help="vector_search limit (default 5)")
    parser.add_argument(
        "--no-breakdown",
        action="store_true",
        help="skip timing the parts of the SDK's embedding INSERT alone (proxy embed; INSERT with/without HNSW)",
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, help=f"seed of the documents and queries (default {SEED})"
    )
    return parser.parse_args()


# -- data ------------------------------------------------------------------------------------------


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(6, 14))).capitalize() + "."


def make_body(rng: random.Random) -> str:
    """Whole sentences up to a seeded length of MIN_BODY..MAX_BODY characters (at least one sentence)."""
    target = rng.randint(MIN_BODY, MAX_BODY)
    sentences: list[str] = []
    length = -1
    while True:
        sentence = _sentence(rng)
        if sentences and length + 1 + len(sentence) > target:
            return " ".join(sentences)
        sentences.append(sentence)
        length += 1 + len(sentence)


def make_documents(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "title": " ".join(rng.choices(WORDS, k=rng.randint(3, 6))).capitalize(),
            "body": make_body(rng),
        }
        for i in range(count)
    ]


def make_queries(count: int, seed: int) -> list[str]:
    rng = random.Random(f"queries {seed}")
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 8))) for _ in range(count)]


def splitter() -> Any:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)


# -- the SDK side ----------------------------------------------------------------------------------


def _label(text: str) -> str:
    """A statement as a profile row: whitespace collapsed, schema qualifiers dropped, cut short."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r'"[^"]*"\.("[^"]*")', r"\1", text)
    return text if len(text) <= 90 else text[:87] + "..."


CHUNK_STEP = "pgml.chunk(…): one SELECT per document, pipeline mode (documents._split)"


@dataclass
class StatementProfile:
    """Seconds per kind of statement the SDK sends while installed, summed over calls (with parallel batches the
    sum exceeds the wall time). It wraps the statement helpers (``fetch_all``, ``fetch_one``, ``execute``) that
    the given SDK modules imported, and whole functions as ``steps`` (``(module, function, label)``); whatever
    of them a later SDK lacks is left out. The first statement of each kind is kept, with its parameters, so that
    it can be EXPLAINed."""

    modules: tuple[str, ...]
    steps: tuple[tuple[str, str, str], ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    samples: dict[str, tuple[str, Any]] = field(default_factory=dict)
    _restore: list[tuple[Any, str, Any]] = field(default_factory=list)

    def _add(self, label: str, seconds: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds
        self.calls[label] = self.calls.get(label, 0) + 1

    def _statement(self, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(connection: Any, query: Any, params: Any = None) -> Any:
            text = query if isinstance(query, str) else query.as_string(connection)
            label = _label(text)
            self.samples.setdefault(label, (text, params))
            start = time.perf_counter()
            try:
                return await original(connection, query, params)
            finally:
                self._add(label, time.perf_counter() - start)

        return timed

    def _step(self, label: str, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self._add(label, time.perf_counter() - start)

        return timed

    def install(self) -> StatementProfile:
        import importlib

        for name in self.modules:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            for helper in ("fetch_all", "fetch_one", "execute"):
                if hasattr(module, helper):
                    self._patch(module, helper, self._statement(getattr(module, helper)))
        for name, function, label in self.steps:
            module = importlib.import_module(name)
            if hasattr(module, function):
                self._patch(module, function, self._step(label, getattr(module, function)))
        return self

    def _patch(self, module: Any, name: str, wrapper: Any) -> None:
        self._restore.append((module, name, getattr(module, name)))
        setattr(module, name, wrapper)

    def uninstall(self) -> None:
        for module, name, original in reversed(self._restore):
            setattr(module, name, original)
        self._restore.clear()

    def rows(self) -> list[dict]:
        ordered = sorted(self.seconds, key=self.seconds.__getitem__, reverse=True)
        return [{"statement": k, "calls": self.calls[k], "seconds": self.seconds[k]} for k in ordered]


async def _close_pools() -> None:
    from pgml.connection import close_pools

    await close_pools()


def _add_up(total: dict[str, float], part: dict[str, float]) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0.0) + value


class SdkSide:
    """``upsert_documents`` of slice after slice into one collection (``pgml`` SDK through the proxy), on one
    event loop, so that its connection pool stays open between slices as it would in one call."""

    def __init__(
        self, runner: asyncio.Runner, servers: ProxiedPostgres, name: str, batch_size: int, parallel: int
    ) -> None:
        self.runner, self.servers, self.name = runner, servers, name
        self.args = {"batch_size": batch_size, "parallel_batches": parallel}
        self.totals: dict[str, float] = {}
        self.profile = StatementProfile(("pgml.documents",), (("pgml.documents", "_split", CHUNK_STEP),))

    def setup(self) -> None:
        import pgml

        self.collection = pgml.Collection(self.name, self.servers.proxy_url)
        # untimed: the collection's and the pipeline's tables, the model's dimension probe
        self.runner.run(self.collection.add_pipeline(pgml.Pipeline(PIPELINE, SCHEMA)))

    def ingest(self, documents: list[dict]) -> float:
        servers = self.servers
        self.profile.install()
        client = cpu_seconds(os.getpid())
        proxy, server = cpu_seconds(servers.proxy_pid), server_cpu_seconds(servers.data_dir)
        start = time.perf_counter()
        try:
            self.runner.run(self.collection.upsert_documents(documents, dict(self.args)))
        finally:
            seconds = time.perf_counter() - start
            self.profile.uninstall()
        cpu = {
            "proxy_cpu_s": cpu_seconds(servers.proxy_pid) - proxy,
            "server_cpu_s": server_cpu_seconds(servers.data_dir) - server,
            "client_cpu_s": cpu_seconds(os.getpid()) - client,
        }
        _add_up(self.totals, {"seconds": seconds, "cpu_s": sum(cpu.values())} | cpu)
        return seconds

    def finish(self) -> dict:
        return dict(self.totals)


# -- the in-process side ---------------------------------------------------------------------------


def _compact(value: Any) -> str:
    """The SDK's compact JSON (serde_json's) for the ints and strings these documents hold."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _identity(document: dict[str, Any], now_ms: int) -> tuple[Any, dict[str, Any]]:
    """``source_uuid`` and ``version`` as the SDK computes them (contract §4.6)."""
    import uuid

    key = uuid.UUID(bytes=hashlib.md5(_compact(document["id"]).encode()).digest())
    version = {
        k: {"last_updated": now_ms, "md5": hashlib.md5(_compact(v).encode()).hexdigest()}
        for k, v in document.items()
    }
    return key, version


def baseline_tables(schema: str, dimensions: int) -> list[sql.Composed]:
    """The SDK's documents, chunks and embeddings tables (contract §4.3, §4.5), keys and foreign keys included."""
    s = sql.Identifier(schema)
    fk = sql.SQL("ON DELETE CASCADE ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED")
    return [
        sql.SQL("CREATE SCHEMA {}").format(s),
        sql.SQL(
            "CREATE TABLE {}.documents (id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(),"
            " source_uuid uuid NOT NULL, version jsonb NOT NULL DEFAULT '{{}}'::jsonb, document jsonb NOT NULL,"
            " UNIQUE (source_uuid))"
        ).format(s),
        sql.SQL(
            "CREATE TABLE {s}.body_chunks (id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(),"
            " document_id int8 NOT NULL REFERENCES {s}.documents {fk}, chunk_index int8 NOT NULL,"
            " chunk text NOT NULL, UNIQUE (document_id, chunk_index))"
        ).format(s=s, fk=fk),
        sql.SQL(
            "CREATE TABLE {s}.body_embeddings (id serial8 PRIMARY KEY,"
            " created_at timestamp NOT NULL DEFAULT now(), chunk_id int8 NOT NULL REFERENCES {s}.body_chunks {fk},"
            " embedding vector({dim}) NOT NULL, UNIQUE (chunk_id))"
        ).format(s=s, fk=fk, dim=sql.Literal(dimensions)),
    ]


def baseline_indexes(schema: str) -> list[tuple[str, sql.Composed]]:
    """The SDK's secondary indexes (contract §4.3, §4.5), built after COPY."""
    s = sql.Identifier(schema)
    return [
        (
            "documents GIN",
            sql.SQL(
                "CREATE INDEX documents_document_index ON {}.documents USING gin (document jsonb_path_ops)"
            ).format(s),
        ),
        (
            "chunks document_id",
            sql.SQL(
                "CREATE INDEX body_pipeline_chunk_document_id_index ON {}.body_chunks (document_id)"
            ).format(s),
        ),
        (
            "embeddings chunk_id",
            sql.SQL(
                "CREATE INDEX body_pipeline_embedding_chunk_id_index ON {}.body_embeddings (chunk_id)"
            ).format(s),
        ),
        (
            "HNSW",
            sql.SQL(
                "CREATE INDEX body_pipeline_embedding_hnsw_vector_index ON {}.body_embeddings"
                " USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})"
            ).format(s, m=sql.Literal(HNSW_M), ef=sql.Literal(HNSW_EF)),
        ),
    ]


class InProcessSide:
    """Slice after slice: chunk, embed and COPY on one direct connection; the secondary indexes (HNSW included)
    are built after the last slice, and that time is part of this side's total. With ``live_index`` they exist
    from the start instead (untimed, as the SDK's add_pipeline), so COPY maintains them as the SDK's inserts
    do: the cost of loading into a collection that is already being searched."""

    def __init__(
        self, servers: ProxiedPostgres, schema: str, model: Any, encode_batch: int, live_index: bool = False
    ) -> None:
        self.servers, self.schema, self.model, self.encode_batch = servers, schema, model, encode_batch
        self.live_index = live_index
        self.split = splitter().split_text
        self.documents = self.chunks = 0  # rows copied so far: the next slice's ids go on from there
        self.totals: dict[str, float] = {}

    def setup(self) -> None:
        from pgvector.psycopg import register_vector

        dimensions = len(self.model.encode("dimensions", show_progress_bar=False))
        self.conn = psycopg.connect(self.servers.direct_url, autocommit=True)
        for statement in baseline_tables(self.schema, dimensions):
            self.conn.execute(statement)
        if self.live_index:
            for _, statement in baseline_indexes(self.schema):
                self.conn.execute(statement)
        register_vector(self.conn)

    def _timed(self, work: Callable[[], dict[str, float]]) -> float:
        client, server = cpu_seconds(os.getpid()), server_cpu_seconds(self.servers.data_dir)
        start = time.perf_counter()
        steps = work()
        seconds = time.perf_counter() - start
        server_cpu = server_cpu_seconds(self.servers.data_dir) - server
        client_cpu = cpu_seconds(os.getpid()) - client
        cpu = {"cpu_s": client_cpu + server_cpu, "client_cpu_s": client_cpu, "server_cpu_s": server_cpu}
        _add_up(self.totals, {"seconds": seconds} | steps | cpu)
        return seconds

    def ingest(self, documents: list[dict]) -> float:
        return self._timed(lambda: self._ingest(documents))

    def _ingest(self, documents: list[dict]) -> dict[str, float]:
        start = time.perf_counter()
        first_row = self.documents + 1
        chunks = [
            (row_id, index, text)
            for row_id, doc in enumerate(documents, start=first_row)
            for index, text in enumerate(self.split(doc[FIELD]), start=1)
        ]
        chunked = time.perf_counter()
        vectors = self.model.encode(
            [text for _, _, text in chunks],
            batch_size=self.encode_batch,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        embedded = time.perf_counter()
        s = sql.Identifier(self.schema)
        first_chunk = self.chunks + 1
        now_ms = int(time.time() * 1000)
        cur = self.conn.cursor()
        with self.conn.transaction():
            with cur.copy(
                sql.SQL("COPY {}.documents (id, source_uuid, version, document) FROM STDIN").format(s)
            ) as copy:
                for row_id, doc in enumerate(documents, start=first_row):
                    key, version = _identity(doc, now_ms)
                    copy.write_row((row_id, key, Jsonb(version), Jsonb(doc)))
            with cur.copy(
                sql.SQL("COPY {}.body_chunks (id, document_id, chunk_index, chunk) FROM STDIN").format(s)
            ) as copy:
                for chunk_id, (row_id, index, text) in enumerate(chunks, start=first_chunk):
                    copy.write_row((chunk_id, row_id, index, text))
            with cur.copy(
                sql.SQL("COPY {}.body_embeddings (chunk_id, embedding) FROM STDIN (FORMAT BINARY)").format(s)
            ) as copy:
                copy.set_types(["int8", "vector"])
                for chunk_id, vector in enumerate(vectors, start=first_chunk):
                    copy.write_row((chunk_id, vector))
            self.documents += len(documents)
            self.chunks += len(chunks)
            # the serial ids go on after the copied ones, as on the SDK side
            counts = {"documents": self.documents, "body_chunks": self.chunks, "body_embeddings": self.chunks}
            for table, count in counts.items():
                cur.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", (f'"{self.schema}".{table}', count)
                )
        copied = time.perf_counter()
        return {"chunk_s": chunked - start, "embed_s": embedded - chunked, "copy_s": copied - embedded}

    def finish(self) -> dict:
        def indexes() -> dict[str, float]:
            took: dict[str, float] = {}
            for name, statement in baseline_indexes(self.schema):
                begin = time.perf_counter()
                self.conn.execute(statement)
                took[name] = time.perf_counter() - begin
            return {"index_s": sum(took.values()), "hnsw_s": took["HNSW"]}

        try:
            if not self.live_index:
                self._timed(indexes)
        finally:
            self.conn.close()
        return dict(self.totals) | {"chunks": self.chunks}


# -- vector_search ---------------------------------------------------------------------------------


def baseline_search_sql(schema: str, limit: int) -> sql.Composed:
    s = sql.Identifier(schema)
    return sql.SQL(
        "WITH nearest AS (SELECT chunk_id, embedding <=> %(v)s AS distance FROM {s}.body_embeddings"
        " ORDER BY embedding <=> %(v)s LIMIT {n})"
        " SELECT d.document, c.chunk, 1 - n.distance AS score FROM nearest n"
        " JOIN {s}.body_chunks c ON c.id = n.chunk_id JOIN {s}.documents d ON d.id = c.document_id"
        " ORDER BY n.distance, c.id"
    ).format(s=s, n=sql.Literal(limit))


async def _search(
    servers: ProxiedPostgres, collection_name: str, schema: str, queries: list[str], limit: int, model: Any
) -> dict:
    import pgml
    from pgvector.psycopg import register_vector

    collection = pgml.Collection(collection_name, servers.proxy_url)
    pipeline = pgml.Pipeline(PIPELINE, SCHEMA)
    statement = baseline_search_sql(schema, limit)

    async def sdk(query: str) -> list[str]:
        rows = await collection.vector_search(
            {"query": {"fields": {FIELD: {"query": query}}}, "limit": limit}, pipeline
        )
        return [row["chunk"] for row in rows]

    def local(conn: psycopg.Connection, query: str) -> tuple[list[str], float]:
        begin = time.perf_counter()
        vector = model.encode(query, show_progress_bar=False, convert_to_numpy=True)
        encoded = time.perf_counter() - begin
        return [row[1] for row in conn.execute(statement, {"v": vector}).fetchall()], encoded

    profile = StatementProfile(("pgml.search", "pgml.embedding", "pgml.collection"))
    try:
        with psycopg.connect(servers.direct_url, autocommit=True) as conn:
            register_vector(conn)
            for query in make_queries(WARMUP_QUERIES, seed=-1):
                await sdk(query)
                local(conn, query)
            sdk_ms: list[float] = []
            local_ms: list[float] = []
            encode_ms: list[float] = []
            agreement: list[float] = []
            profile.install()
            for number, query in enumerate(queries):
                for side in rotated(["sdk", "local"], number):
                    begin = time.perf_counter()
                    if side == "sdk":
                        sdk_chunks = await sdk(query)
                        sdk_ms.append((time.perf_counter() - begin) * 1000)
                    else:
                        local_chunks, encoded = local(conn, query)
                        local_ms.append((time.perf_counter() - begin) * 1000)
                        encode_ms.append(encoded * 1000)
                if len(sdk_chunks) != limit or len(local_chunks) != limit:
                    raise BenchmarkError(
                        f"query {query!r}: SDK returned {len(sdk_chunks)} rows, in-process {len(local_chunks)}, "
                        f"expected {limit}"
                    )
                agreement.append(len(set(sdk_chunks) & set(local_chunks)) / limit)
            profile.uninstall()
            plans = {
                "in_process": explain(
                    conn, statement, {"v": model.encode(queries[0], show_progress_bar=False)}
                ),
                "sdk": explain_sample(conn, profile),
            }
    finally:
        profile.uninstall()
        await _close_pools()
    local_query_ms = [total - encoded for total, encoded in zip(local_ms, encode_ms, strict=True)]
    return {
        "sdk": latency(sdk_ms),
        "in_process": latency(local_ms)
        | {"encode_p50_ms": statistics.median(encode_ms), "query_p50_ms": statistics.median(local_query_ms)},
        "p50_difference_ms": statistics.median(sdk_ms) - statistics.median(local_ms),
        "p95_difference_ms": percentile(sdk_ms, 0.95) - percentile(local_ms, 0.95),
        "top_k_agreement": statistics.mean(agreement),
        "sdk_statements_ms_per_query": [
            {"statement": row["statement"], "calls": row["calls"], "ms": row["seconds"] * 1000 / len(queries)}
            for row in profile.rows()
        ],
        "plans": plans,
    }


def explain(conn: psycopg.Connection, statement: Any, params: Any) -> dict:
    """EXPLAIN ANALYZE of one query (directly on the server): whether it walks the HNSW index, its run time."""
    try:
        lines = [row[0] for row in conn.execute(sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) ") + statement, params)]
    except psycopg.Error as error:
        return {"error": str(error).strip()}
    found = re.search(r"Execution Time: ([0-9.]+) ms", "\n".join(lines))
    return {
        "uses_hnsw": any("hnsw_vector_index" in line for line in lines),
        "execution_ms": float(found.group(1)) if found else None,
        "plan": [re.sub(r"'\[[^']*\]'::vector", "'[…]'::vector", line) for line in lines],  # no 384 floats
    }


def explain_sample(conn: psycopg.Connection, profile: StatementProfile) -> dict:
    """:func:`explain` of the SDK's vector_search statement as it was sent (the first one of the timed queries)."""
    for text, params in profile.samples.values():
        if "<=>" in text and text.lstrip().upper().startswith("SELECT"):
            return explain(conn, sql.SQL(text), params)
    return {"error": "no vector_search statement seen (the SDK sends it through other helpers)"}


def percentile(values: list[float], share: float) -> float:
    """The nearest rank at or below ``share`` of the sorted values (as harness.p99)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def latency(ms: list[float]) -> dict:
    return {
        "p50_ms": statistics.median(ms),
        "p95_ms": percentile(ms, 0.95),
        "mean_ms": statistics.mean(ms),
        "max_ms": max(ms),
        "queries": len(ms),
    }


# -- the SDK's embedding INSERT, part by part ----------------------------------------------------------

EMBED_COUNT_SQL = (
    "SELECT count(*) FROM pgml.embed(inputs => %s::text[], transformer => %s::text, kwargs => %s::jsonb)"
)


def breakdown(
    servers: ProxiedPostgres,
    documents: list[dict],
    batch_size: int,
    collection: str,
    model: Any,
    encode_batch: int,
) -> dict:
    """The two parts of the SDK's ``INSERT … FROM pgml.embed(inputs => chunks)``, each alone over the same
    batches: the proxy computing the batch's embeddings (counted upstream, not inserted; batch by batch in turn
    with the in-process encode of the same texts), and PostgreSQL inserting those vectors (copied from the SDK's
    table) into an embeddings table with and without its HNSW index. One transaction per batch, as the SDK's."""
    split = splitter().split_text
    batches = [
        [chunk for doc in documents[n : n + batch_size] for chunk in split(doc[FIELD])]
        for n in range(0, len(documents), batch_size)
    ]
    result: dict[str, float] = {}
    result: dict[str, float] = {"proxy_embed_s": 0.0, "in_process_encode_s": 0.0}
    with psycopg.connect(servers.proxy_url, autocommit=True) as proxy:

        def through_proxy(texts: list[str]) -> None:
            proxy.execute(EMBED_COUNT_SQL, (texts, MODEL, Jsonb({})))

        def in_process(texts: list[str]) -> None:
            model.encode(texts, batch_size=encode_batch, convert_to_numpy=True, show_progress_bar=False)

        sides = [("proxy_embed_s", through_proxy), ("in_process_encode_s", in_process)]
        for number, texts in enumerate(batches):
            for key, embed in rotated(sides, number):
                start = time.perf_counter()
                embed(texts)
                result[key] += time.perf_counter() - start
    source = sql.Identifier(f"{collection}_{PIPELINE}", "body_embeddings")
    target = sql.Identifier("public", "sdk_ingest_breakdown")
    with psycopg.connect(servers.direct_url, autocommit=True) as conn:
        ids = [
            row[0]
            for row in conn.execute(sql.SQL("SELECT chunk_id FROM {} ORDER BY chunk_id").format(source))
        ]
        for key, index in (("pg_insert_hnsw_s", True), ("pg_insert_no_hnsw_s", False)):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id serial8 PRIMARY KEY, chunk_id int8 NOT NULL UNIQUE,"
                    " embedding vector({}) NOT NULL)"
                ).format(target, sql.Literal(DIMENSIONS))
            )
            if index:
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops) WITH (m = {}, ef_construction = {})"
                    ).format(target, sql.Literal(HNSW_M), sql.Literal(HNSW_EF))
                )
            insert = sql.SQL(
                "INSERT INTO {} (chunk_id, embedding) SELECT chunk_id, embedding FROM {} WHERE chunk_id = ANY(%s)"
            ).format(target, source)
            offset = 0
            start = time.perf_counter()
            for texts in batches:
                conn.execute(insert, (ids[offset : offset + len(texts)],))
                offset += len(texts)
            result[key] = time.perf_counter() - start
        conn.execute(sql.SQL("DROP TABLE {}").format(target))
    return result


# -- checks ----------------------------------------------------------------------------------------


def compare_stores(url: str, collection: str, schema: str) -> dict:
    """Both sides' (document id, chunk index) → chunk and vector: the same chunks, vectors within TOLERANCE."""
    import numpy as np
    from pgvector.psycopg import register_vector

    pipeline_schema = sql.Identifier(f"{collection}_{PIPELINE}")
    sdk_sql = sql.SQL(
        "SELECT (d.document ->> 'id')::int, c.chunk_index, c.chunk, e.embedding FROM {}.documents d"
        " JOIN {p}.body_chunks c ON c.document_id = d.id LEFT JOIN {p}.body_embeddings e ON e.chunk_id = c.id"
    ).format(sql.Identifier(collection), p=pipeline_schema)
    local_sql = sql.SQL(
        "SELECT (d.document ->> 'id')::int, c.chunk_index, c.chunk, e.embedding FROM {s}.documents d"
        " JOIN {s}.body_chunks c ON c.document_id = d.id JOIN {s}.body_embeddings e ON e.chunk_id = c.id"
    ).format(s=sql.Identifier(schema))
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        sdk = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(sdk_sql)}
        local = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(local_sql)}
        documents = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.documents").format(sql.Identifier(collection))
        )
        sdk_documents = documents.fetchone()[0]
    same_chunks = sum(1 for key, (text, _) in sdk.items() if key in local and local[key][0] == text)
    missing_vectors = sum(1 for _, vector in sdk.values() if vector is None)
    worst = max(
        (
            float(np.max(np.abs(vector.to_numpy() - local[key][1].to_numpy())))
            for key, (_, vector) in sdk.items()
            if vector is not None and key in local
        ),
        default=float("nan"),
    )
    ok = same_chunks == len(sdk) == len(local) and missing_vectors == 0 and worst <= TOLERANCE
    return {
        "sdk_documents": sdk_documents,
        "sdk_chunks": len(sdk),
        "in_process_chunks": len(local),
        "same_chunks": same_chunks,
        "sdk_chunks_without_vector": missing_vectors,
        "max_abs_diff": worst,
        "tolerance": TOLERANCE,
        "ok": ok,
    }


# -- report ----------------------------------------------------------------------------------------


def _med(values: list[float]) -> float:
    return statistics.median(values)


def profile_lines(profile: list[dict], total: float) -> list[str]:
    lines = [f"  {'seconds':>8} {'share':>6} {'calls':>6}  statement"]
    for row in profile:
        lines.append(
            f"  {row['seconds']:8.2f} {row['seconds'] / total:6.1%} {row['calls']:6d}  {row['statement']}"
        )
    accounted = sum(
        row["seconds"] for row in profile
    )  # the chunk step sends its statements itself: no overlap
    lines.append(
        f"  {total - accounted:8.2f} {(total - accounted) / total:6.1%} {'':6}  outside these statements"
    )
    return lines


def breakdown_lines(parts: dict | None, local: dict) -> list[str]:
    """The report's lines on :func:`breakdown`."""
    if parts is None:
        return []
    return [
        "the SDK's embedding INSERT, its parts timed alone over the same batches (round 1's data):",
        f"  {parts['proxy_embed_s']:8.2f} s  pgml.embed(inputs => chunks) through the proxy, rows only counted "
        f"upstream (in-process encode of the same batches, in turn: {parts['in_process_encode_s']:.2f} s)",
        f"  {parts['pg_insert_hnsw_s']:8.2f} s  INSERT of those vectors directly, HNSW index present (without it: "
        f"{parts['pg_insert_no_hnsw_s']:.2f} s; the in-process side's HNSW build: {_med(local['hnsw_s']):.2f} s)",
    ]


def plan_line(plan: dict) -> str:
    if "error" in plan:
        return f"EXPLAIN failed: {plan['error']}"
    return (
        f"{'HNSW index scan' if plan['uses_hnsw'] else 'NO HNSW index scan'}, "
        f"EXPLAIN ANALYZE execution {plan['execution_ms'] or float('nan'):.1f} ms"
    )


def report(results: dict) -> str:
    config = results["config"]
    n = config["documents"]
    sdk, local, parallel = results["sdk"], results["in_process"], results["sdk_parallel"]
    search = results["search"]
    check = results["check"]

    def line(name: str, seconds: float, detail: str) -> str:
        return f"{name:<26} {seconds:9.2f} {n / seconds:9.1f}  {detail}"

    def sdk_detail(side: dict) -> str:
        return (
            f"CPU {side['cpu_s']['median']:.1f} s: proxy {_med(side['proxy_cpu_s']):.1f} s, PostgreSQL "
            f"{_med(side['server_cpu_s']):.1f} s, "
            f"client (SDK) {_med(side['client_cpu_s']):.1f} s"
        )

    lines = [
        "",
        f"{n} documents ({local['chunks'][0]} chunks: recursive_character {CHUNK_SIZE}/{CHUNK_OVERLAP}), model "
        f"{MODEL}, upsert batch_size {config['batch_size']}, in-process encode batch {config['encode_batch']}, "
        f"{config['rounds']} round(s) (median), sides taking turns over {config['slices']} slices; indexes (HNSW m "
        f"{HNSW_M}, ef_construction {HNSW_EF}) count on both sides",
        "",
        f"{'side':<26} {'seconds':>9} {'docs/s':>9}  detail",
        line("SDK upsert_documents", sdk["seconds"]["median"], sdk_detail(sdk)),
    ]
    if parallel:
        lines.append(
            line(
                f"SDK, parallel_batches {config['also_parallel']}",
                parallel["seconds"]["median"],
                sdk_detail(parallel),
            )
        )
    lines += [
        line(
            "in-process + COPY",
            local["seconds"]["median"],
            f"chunk {_med(local['chunk_s']):.2f} s, embed {_med(local['embed_s']):.1f} s, COPY "
            f"{_med(local['copy_s']):.1f} s, indexes {_med(local['index_s']):.1f} s (HNSW "
            f"{_med(local['hnsw_s']):.1f} s); CPU {local['cpu_s']['median']:.1f} s: PostgreSQL "
            f"{_med(local['server_cpu_s']):.1f} s",
        ),
        "",
        f"in-process / SDK time = {results['ratio']:.2f} (target >= {TARGET})"
        + (
            f"; with parallel_batches {config['also_parallel']}: {results['ratio_parallel']:.2f}"
            if parallel
            else ""
        ),
        f"CPU seconds of all the processes of each side: in-process {local['cpu_s']['median']:.1f} / SDK "
        f"{sdk['cpu_s']['median']:.1f} = {results['cpu_ratio']:.2f} (less sensitive to other load than wall time)",
        "",
        f"where the SDK's upsert spends its time (last round, batch_size {config['batch_size']}; "
        f"{sdk['seconds']['runs'][-1]:.1f} s):",
        *profile_lines(results["sdk_profile"], sdk["seconds"]["runs"][-1]),
        *breakdown_lines(results["sdk_embed_insert_parts"], local),
        "",
        f"vector_search over {n} documents, {search['sdk']['queries']} queries, limit {config['limit']} (ms):",
        f"  {'side':<12} {'p50':>8} {'p95':>8} {'mean':>8} {'max':>8}",
        *(
            f"  {name:<12} {s['p50_ms']:8.1f} {s['p95_ms']:8.1f} {s['mean_ms']:8.1f} {s['max_ms']:8.1f}"
            for name, s in (("SDK", search["sdk"]), ("in-process", search["in_process"]))
        ),
        f"  SDK - in-process: p50 {search['p50_difference_ms']:+.1f} ms, p95 {search['p95_difference_ms']:+.1f} ms "
        f"(in-process p50: encode {search['in_process']['encode_p50_ms']:.1f} ms, query "
        f"{search['in_process']['query_p50_ms']:.1f} ms)",
        f"  top-{config['limit']} agreement SDK vs in-process: {search['top_k_agreement']:.1%} "
        "(different HNSW graphs: built row by row vs in bulk)",
        *(
            f"  {side} query on the server: {plan_line(search['plans'][key])}"
            for side, key in (("SDK", "sdk"), ("in-process", "in_process"))
        ),
        "  SDK statements per vector_search (ms, mean over the queries):",
        *(
            f"  {row['ms']:8.2f} {row['calls'] / search['sdk']['queries']:4.1f}x  {row['statement']}"
            for row in search["sdk_statements_ms_per_query"]
        ),
        f"  {search['sdk']['mean_ms'] - sum(row['ms'] for row in search['sdk_statements_ms_per_query']):8.2f}"
        "       outside these statements (pool, transaction, Python)",
        "",
        f"stores: {check['same_chunks']}/{check['sdk_chunks']} SDK chunks equal the in-process ones "
        f"({check['in_process_chunks']} there), {check['sdk_chunks_without_vector']} without a vector, max "
        f"|SDK - in-process| vector difference {check['max_abs_diff']:.2e} "
        f"({'within' if check['ok'] else 'NOT within / MISMATCH, see'} {TOLERANCE:g})",
        *pressure_lines(results["cpu_pressure"]),
    ]
    return "\n".join(lines)


# -- the run ---------------------------------------------------------------------------------------


def _versions() -> dict:
    import pgml

    return {
        "pgml_sdk": pgml.__version__,
        "langchain_text_splitters": metadata.version("langchain-text-splitters"),
        "pgvector": metadata.version("pgvector"),
    }


def slices(documents: list[dict], count: int) -> list[list[dict]]:
    """``count`` consecutive slices of about equal size (fewer if there are fewer documents)."""
    count = min(count, len(documents))
    return [documents[i * len(documents) // count : (i + 1) * len(documents) // count] for i in range(count)]


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def main() -> int:
    args = parse_args()
    documents = make_documents(args.documents, args.seed)
    queries = make_queries(args.queries, args.seed)
    print(f"loading the in-process model {MODEL}", flush=True)
    model = load_model()
    model.encode(
        [doc[FIELD] for doc in documents[:32]], batch_size=args.encode_batch, show_progress_bar=False
    )
    splitter().split_text(documents[0][FIELD])  # warm-up: the import
    parallel = args.also_parallel if args.also_parallel > 1 else 0

    sdk_runs: list[dict] = []
    parallel_runs: list[dict] = []
    local_runs: list[dict] = []
    live_runs: list[dict] = []
    pressure: dict = {}
    parts = slices(documents, args.slices)
    with scratch_folder() as folder, proxied_postgres(folder) as servers, asyncio.Runner() as runner:
        execute(servers.direct_url, "CREATE EXTENSION IF NOT EXISTS vector")
        print("warming up the proxy's model and splitter", flush=True)
        simple_query(servers.proxy_url, f"SELECT pgml.embed('{MODEL}', 'warm-up')")
        simple_query(
            servers.proxy_url,
            f"SELECT * FROM pgml.chunk('recursive_character', 'warm up', '{json.dumps(SPLITTER['parameters'])}')",
        )
        pressure["before"] = cpu_pressure()
        for round_no in range(1, args.rounds + 1):
            sdk_side = SdkSide(runner, servers, f"bench_r{round_no}", args.batch_size, 1)
            sides: list[tuple[str, list[dict], SdkSide | InProcessSide]] = [
                ("SDK", sdk_runs, sdk_side),
                (
                    "in-process",
                    local_runs,
                    InProcessSide(servers, f"baseline_r{round_no}", model, args.encode_batch),
                ),
                (
                    "in-process, live index",
                    live_runs,
                    InProcessSide(servers, f"live_r{round_no}", model, args.encode_batch, live_index=True),
                ),
            ]
            if parallel:
                sides.append(
                    (
                        f"SDK p{parallel}",
                        parallel_runs,
                        SdkSide(runner, servers, f"bench_r{round_no}_p{parallel}", args.batch_size, parallel),
                    )
                )
            for _, _, side in sides:
                side.setup()
            for number, part in enumerate(parts):
                took = [(name, side.ingest(part)) for name, _, side in rotated(sides, round_no - 1 + number)]
                print(
                    f"round {round_no} slice {number + 1}/{len(parts)} ({len(part)} documents): "
                    + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in took),
                    flush=True,
                )
            for name, runs, side in sides:
                runs.append(side.finish())
                seconds = runs[-1]["seconds"]
                print(
                    f"round {round_no} {name:<10} {seconds:8.2f} s ({args.documents / seconds:.1f} docs/s)",
                    flush=True,
                )
            profile = sdk_side.profile.rows()
        pressure["after"] = cpu_pressure()
        check = compare_stores(servers.direct_url, "bench_r1", "baseline_r1")
        parts_alone = None
        if not args.no_breakdown:
            print("timing the parts of the SDK's embedding INSERT alone", flush=True)
            parts_alone = breakdown(servers, documents, args.batch_size, "bench_r1", model, args.encode_batch)
        print("ANALYZE both sides, then vector_search", flush=True)
        execute(servers.direct_url, "ANALYZE")
        search = runner.run(_search(servers, "bench_r1", "baseline_r1", queries, args.limit, model))

    timed = ("seconds", "cpu_s")
    sdk = summarize(sdk_runs, timed)
    local = summarize(local_runs, timed)
    sdk_parallel = summarize(parallel_runs, timed) if parallel_runs else None
    live = summarize(live_runs, timed)
    ratio = local["seconds"]["median"] / sdk["seconds"]["median"]
    live_ratio = live["seconds"]["median"] / sdk["seconds"]["median"]
    results: dict = {
        "benchmark": "sdk_ingest",
        "config": {
            "documents": args.documents,
            "body_characters": [MIN_BODY, MAX_BODY],
            "rounds": args.rounds,
            "slices": len(parts),
            "seed": args.seed,
            "pipeline_schema": SCHEMA,
            "batch_size": args.batch_size,
            "also_parallel": parallel or None,
            "encode_batch": args.encode_batch,
            "queries": args.queries,
            "limit": args.limit,
            "sdk": f"Collection.upsert_documents(slice, {{'batch_size': {args.batch_size}}}) through the "
            "proxy for every slice, after an untimed add_pipeline on the empty collection",
            "in_process": "per slice RecursiveCharacterTextSplitter.split_text + SentenceTransformer.encode("
            f"batch_size={args.encode_batch}) + COPY documents, chunks, embeddings (binary) into the SDK's table "
            "layout directly; after the last slice CREATE INDEX (GIN, 2 btree, HNSW)",
            "alternation": "the sides take turns slice by slice (the first side rotating), so that other load on "
            "the machine falls on all of them alike",
            "indexes": "included on both sides: the SDK maintains them during the upsert, the in-process side "
            "builds them after COPY; the live-index side creates them (untimed) before its first COPY",
            "search_sdk": "collection.vector_search({'query': {'fields': {'body': {'query': q}}}, 'limit': "
            f"{args.limit}}}, pipeline)",
            "search_in_process": "model.encode(q) + ORDER BY embedding <=> $1 LIMIT "
            f"{args.limit} joined to chunk and document, direct connection",
        },
        "environment": environment("sentence_transformers", "torch") | _versions() | model_environment(),
        "sdk": sdk,
        "sdk_parallel": sdk_parallel,
        "in_process": local,
        "in_process_live_index": live,
        "ratio": ratio,
        "ratio_live_index": live_ratio,
        "cpu_ratio": local["cpu_s"]["median"] / sdk["cpu_s"]["median"],
        "ratio_parallel": local["seconds"]["median"] / sdk_parallel["seconds"]["median"]
        if sdk_parallel
        else None,
        "sdk_profile": profile,
        "sdk_embed_insert_parts": parts_alone,
        "search": search,
        "check": check,
        "cpu_pressure": pressure,
        "target": TARGET,
    }
    write_results(args.output, results, report(results))
    print(
        f"sdk_ingest: in-process/SDK time = {ratio:.2f} (target >= {TARGET}); SDK {sdk['seconds']['median']:.1f} s, "
        f"in-process {local['seconds']['median']:.1f} s for {args.documents} documents; against COPY into "
        f"already indexed tables {live_ratio:.2f} ({live['seconds']['median']:.1f} s); vector_search p50 "
        f"SDK {search['sdk']['p50_ms']:.1f} ms vs in-process {search['in_process']['p50_ms']:.1f} ms "
        f"({search['p50_difference_ms']:+.1f} ms), p95 {search['sdk']['p95_ms']:.1f} vs "
        f"{search['in_process']['p95_ms']:.1f} ms; stores {'match' if check['ok'] else 'DIFFER'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
