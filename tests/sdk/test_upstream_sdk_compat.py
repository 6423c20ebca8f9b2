"""The PostgresML Python SDK (PyPI ``pgml==1.1.1``, a Rust wheel) as a client of the proxy, and our SDK
reading what it wrote (contract: shared/reference/pgml-sdk.md, §1.1 interchange, §4 layout, §5 scores).

The wheel shares the import name ``pgml`` with our SDK, so it lives in ``.venv-upstream-sdk`` (``make test``
creates it) and runs as a subprocess: ``upstream_driver.py`` builds a collection with a two-field pipeline
through the proxy, upserts and updates documents, queries them and writes what it got to a JSON file. The
tests check that against the database itself (through a direct connection, and through the proxy where a
check needs ``pgml.chunk`` or ``pgml.embed``), then read the same collection with our SDK.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_SDK_PYTHON = ROOT / ".venv-upstream-sdk" / "bin" / "python"
DRIVER = Path(__file__).with_name("upstream_driver.py")
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SPLITTER = ("recursive_character", {"chunk_size": 100, "chunk_overlap": 10})
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Written:
    """A collection the upstream SDK wrote through the proxy, and what its calls returned."""

    proxy_url: str
    direct_url: str
    collection: str
    result: dict[str, Any]

    @property
    def pipeline_schema(self) -> str:
        return f"{self.collection}_{self.result['pipeline']}"

    def table(self, name: str) -> sql.Identifier:
        """A table of the pipeline schema ("C_p"."name"); ``documents`` is the collection's own."""
        if name in ("documents", "pipelines"):
            return sql.Identifier(self.collection, name)
        return sql.Identifier(self.pipeline_schema, name)

    def final_documents(self) -> list[dict[str, Any]]:
        """The documents as stored after the update: each in its first position, the last version wins."""
        latest = {json.dumps(d["id"]): d for d in [*self.result["documents"], *self.result["updates"]]}
        return [latest[json.dumps(d["id"])] for d in self.result["documents"]]


@pytest.fixture(scope="module")
def written(upstream: Any, proxy: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Written]:
    if not UPSTREAM_SDK_PYTHON.exists():
        pytest.skip(
            f"{UPSTREAM_SDK_PYTHON.parent.parent} is missing: `make test` creates it with pgml==1.1.1"
        )
    database = f"sdk_compat_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(upstream.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        proxy_url = proxy.url(database=database)
        with psycopg.connect(proxy_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgml")  # answered by the proxy: the pgml catalog
        collection = f"compat_{uuid.uuid4().hex[:8]}"
        folder = tmp_path_factory.mktemp("upstream-sdk")
        output = folder / "result.json"
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")  # our own pgml must not be importable
        }
        env.update(PGML_DATABASE_URL=proxy_url, DATABASE_URL=proxy_url, LOG_LEVEL="DEBUG")
        done = subprocess.run(
            [str(UPSTREAM_SDK_PYTHON), str(DRIVER), collection, str(output)],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            cwd=folder,
        )
        if done.returncode != 0 or not output.exists():
            sdk_log = ANSI.sub("", done.stdout + done.stderr)
            pytest.fail(
                f"the PostgresML SDK failed through the proxy (exit {done.returncode}):\n"
                f"{sdk_log[-6000:]}\n--- proxy log ---\n{proxy.log[-4000:]}"
            )
        result = json.loads(output.read_text(encoding="utf-8"))
        yield Written(proxy_url, upstream.url(database=database), collection, result)
    finally:
        with psycopg.connect(upstream.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


def test_the_collection_has_the_contracts_layout(written: Written) -> None:
    with psycopg.connect(written.direct_url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = ANY(%s)",
            ([written.collection, written.pipeline_schema],),
        ).fetchall()
        assert sorted(tables) == sorted(
            [(written.collection, "documents"), (written.collection, "pipelines")]
            + [
                (written.pipeline_schema, name)
                for name in (
                    "title_chunks",
                    "title_embeddings",
                    "title_tsvectors",
                    "body_chunks",
                    "body_embeddings",
                    "searches",
                    "search_results",
                    "search_events",
                )
            ]
        )
        for table in ("title_embeddings", "body_embeddings"):
            [(column_type,)] = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (f'"{written.pipeline_schema}"."{table}"',),
            ).fetchall()
            assert column_type == "vector(384)"
        indexes = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (written.pipeline_schema,)
            ).fetchall()
        )
        for field in ("title", "body"):
            assert f"{field}_pipeline_chunk_document_id_index" in indexes
            assert f"{field}_pipeline_embedding_chunk_id_index" in indexes
            assert indexes[f"{field}_pipeline_embedding_hnsw_vector_index"].endswith(
                "USING hnsw (embedding vector_cosine_ops) WITH (m='16', ef_construction='64')"
            )
        assert "title_pipeline_tsvector_index" in indexes
        assert "body_pipeline_tsvector_index" not in indexes
        collection = conn.execute(
            "SELECT active, sdk_version FROM pgml.collections WHERE name = %s", (written.collection,)
        ).fetchall()
        assert collection == [(True, "1.0.0")]
        pipelines = conn.execute(
            sql.SQL("SELECT name, active, schema FROM {}").format(written.table("pipelines"))
        ).fetchall()
        assert pipelines == [(written.result["pipeline"], True, written.result["schema"])]


def test_chunks_are_what_pgml_chunk_gives_and_embeddings_what_pgml_embed_gives(written: Written) -> None:
    splitter, parameters = SPLITTER
    with psycopg.connect(written.proxy_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT id, document FROM {} ORDER BY id").format(written.table("documents"))
        ).fetchall()
        assert [document for _, document in rows] == written.final_documents()
        for row_id, document in rows:
            expected = conn.execute(
                "SELECT chunk_index, chunk FROM pgml.chunk(%s, %s, %s::jsonb)",
                (splitter, document["body"], json.dumps(parameters)),
            ).fetchall()
            stored = conn.execute(
                sql.SQL(
                    "SELECT chunk_index, chunk FROM {} WHERE document_id = %s ORDER BY chunk_index"
                ).format(written.table("body_chunks")),
                (row_id,),
            ).fetchall()
            assert stored == expected, document["id"]
            titles = conn.execute(
                sql.SQL("SELECT chunk_index, chunk FROM {} WHERE document_id = %s").format(
                    written.table("title_chunks")
                ),
                (row_id,),
            ).fetchall()
            assert titles == [(1, document["title"])]
        for field in ("title", "body"):
            chunks, embedded, far = conn.execute(
                sql.SQL(
                    "SELECT count(*), count(e.id), "
                    "count(*) FILTER (WHERE (e.embedding <=> pgml.embed(%s, c.chunk)::vector) > 1e-5) "
                    "FROM {} c LEFT JOIN {} e ON e.chunk_id = c.id"
                ).format(written.table(f"{field}_chunks"), written.table(f"{field}_embeddings")),
                (MODEL,),
            ).fetchone()
            assert chunks == embedded and far == 0, field
        [(tsvectors,)] = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} t JOIN {} c ON c.id = t.chunk_id WHERE t.ts = to_tsvector('english', c.chunk)"
            ).format(written.table("title_tsvectors"), written.table("title_chunks"))
        ).fetchall()
        assert tsvectors == len(rows)
    status = written.result["pipeline_status"]
    body_chunks = status["body"]["embeddings"]["total"]
    assert status["body"]["chunks"] == {"synced": len(rows), "not_synced": 0, "total": len(rows)}
    assert status["body"]["embeddings"] == {"synced": body_chunks, "not_synced": 0, "total": body_chunks}


def _exact_vector_search(written: Written, query: dict[str, Any]) -> list[tuple[str, float]]:
    """§5.3 without an index: every chunk of every field asked for, filtered, scored, the best ``limit``."""
    fields = query["query"]["fields"]
    year = query["query"].get("filter", {}).get("year", {}).get("$gte")
    parts, params = [], []
    for field, asked in fields.items():
        condition = sql.SQL("true")
        join = sql.SQL("")
        if year is not None:
            condition = sql.SQL("(d.document #> '{year}') >= %s::jsonb")
            params_filter: list[Any] = [json.dumps(year)]
        else:
            params_filter = []
        if "full_text_filter" in asked:
            join = sql.SQL("JOIN {} t ON t.chunk_id = e.chunk_id").format(written.table(f"{field}_tsvectors"))
            condition = sql.SQL("{} AND t.ts @@ plainto_tsquery('english', %s)").format(condition)
            params_filter.append(asked["full_text_filter"])
        parts.append(
            sql.SQL(
                "SELECT c.chunk, 1 - (e.embedding <=> pgml.embed(%s, %s)::vector) AS score "
                "FROM {} e JOIN {} c ON c.id = e.chunk_id JOIN {} d ON d.id = c.document_id {} WHERE {}"
            ).format(
                written.table(f"{field}_embeddings"),
                written.table(f"{field}_chunks"),
                written.table("documents"),
                join,
                condition,
            )
        )
        params += [MODEL, asked["query"], *params_filter]
    statement = sql.SQL("SELECT chunk, score FROM ({}) s ORDER BY score DESC LIMIT %s").format(
        sql.SQL(" UNION ALL ").join(parts)
    )
    with psycopg.connect(written.proxy_url) as conn:
        return [(chunk, score) for chunk, score in conn.execute(statement, [*params, query["limit"]])]


@pytest.mark.parametrize("which", ["vector_search", "plain_vector_search"])
def test_vector_search_returns_the_best_chunks_that_pass_the_filters(written: Written, which: str) -> None:
    query = written.result["vector_query" if which == "vector_search" else "plain_vector_query"]
    results = written.result[which]
    expected = _exact_vector_search(written, query)
    assert [r["chunk"] for r in results] == [chunk for chunk, _ in expected]
    assert [r["score"] for r in results] == pytest.approx([score for _, score in expected], abs=1e-5)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert all(r["rerank_score"] is None for r in results)
    final = {json.dumps(d["id"]): d for d in written.final_documents()}
    year = query["query"].get("filter", {}).get("year", {}).get("$gte")
    for r in results:
        assert r["document"] == final[json.dumps(r["document"]["id"])]
        assert year is None or r["document"]["year"] >= year


def test_hybrid_search_scores_documents_as_the_contract_says(written: Written) -> None:
    """§5.1: a boosted sum of each field's best-chunk cosine similarity and best ts_rank (flag 32)."""
    query = written.result["search_query"]["query"]
    topics = query["filter"]["topic"]["$in"]
    terms: list[sql.Composable] = []
    params: list[Any] = []
    for field, asked in query["semantic_search"].items():
        terms.append(
            sql.SQL(
                "COALESCE((SELECT %s * max(1 - (e.embedding <=> pgml.embed(%s, %s)::vector)) "
                "FROM {} e JOIN {} c ON c.id = e.chunk_id WHERE c.document_id = d.id), 0)"
            ).format(written.table(f"{field}_embeddings"), written.table(f"{field}_chunks"))
        )
        params += [asked.get("boost", 1.0), MODEL, asked["query"]]
    for field, asked in query["full_text_search"].items():
        terms.append(
            sql.SQL(
                "COALESCE((SELECT %s * max(ts_rank(t.ts, plainto_tsquery('english', %s), 32)) "
                "FROM {} t JOIN {} c ON c.id = t.chunk_id "
                "WHERE c.document_id = d.id AND t.ts @@ plainto_tsquery('english', %s)), 0)"
            ).format(written.table(f"{field}_tsvectors"), written.table(f"{field}_chunks"))
        )
        params += [asked.get("boost", 1.0), asked["query"], asked["query"]]
    statement = sql.SQL(
        "SELECT id, total FROM (SELECT d.id, {} AS total FROM {} d WHERE d.document ->> 'topic' = ANY(%s)) s "
        "ORDER BY total DESC, id LIMIT %s"
    ).format(sql.SQL(" + ").join(terms), written.table("documents"))
    with psycopg.connect(written.proxy_url) as conn:
        expected = conn.execute(
            statement, [*params, topics, written.result["search_query"]["limit"]]
        ).fetchall()
        recorded = conn.execute(
            sql.SQL("SELECT r.rank, r.document_id FROM {} r ORDER BY r.rank").format(
                written.table("search_results")
            )
        ).fetchall()
    results = written.result["search"]["results"]
    assert [r["id"] for r in results] == [row_id for row_id, _ in expected]  # K1: row ids
    assert [r["score"] for r in results] == pytest.approx([total for _, total in expected], abs=1e-5)
    assert all(r["document"]["topic"] in topics for r in results)
    assert recorded == [(rank, r["id"]) for rank, r in enumerate(results, start=1)]  # K2


def test_get_documents_returns_the_stored_documents_in_row_order(written: Written) -> None:
    documents = written.result["get_documents"]
    final = written.final_documents()
    assert [d["document"] for d in documents] == final
    assert [d["row_id"] for d in documents] == list(range(1, len(final) + 1))
    for d in documents:  # §4.6: the md5 of the id's compact JSON, used as the UUID as it is
        id_text = json.dumps(d["document"]["id"], separators=(",", ":"), ensure_ascii=False, sort_keys=True)
        assert d["source_uuid"] == str(uuid.UUID(bytes=hashlib.md5(id_text.encode()).digest()))
        assert isinstance(d["created_at"], int)
    filtered = written.result["get_documents_filtered"]
    assert [d["document"] for d in filtered] == [d for d in final if d["topic"] == "databases"]


def _our_sdk() -> ModuleType:
    """Our SDK (``sdk/python``, import name ``pgml``, installed in the main venv); skipped until it has the
    contract's API."""
    ours = pytest.importorskip("pgml", reason="our SDK (sdk/python, import pgml) is not importable yet")
    if not all(hasattr(ours, name) for name in ("Collection", "Pipeline")):
        pytest.skip("our SDK (sdk/python) has no Collection and Pipeline yet")
    return ours


async def test_our_sdk_reads_what_the_upstream_sdk_wrote(written: Written) -> None:
    ours = _our_sdk()
    collection = ours.Collection(written.collection, written.proxy_url)
    documents = await collection.get_documents({"limit": 100})
    assert documents == written.result["get_documents"]
    pipeline = ours.Pipeline(written.result["pipeline"])
    for which, query in (("vector_search", "vector_query"), ("plain_vector_search", "plain_vector_query")):
        theirs = written.result[which]
        got = await collection.vector_search(written.result[query], pipeline)
        assert [(r["chunk"], r["document"]) for r in got] == [(r["chunk"], r["document"]) for r in theirs]
        assert [r["score"] for r in got] == pytest.approx([r["score"] for r in theirs], abs=1e-5)
        assert all(r.get("rerank_score") is None for r in got)
