"""``search``, ``add_search_event``, ``vector_search`` and the legacy QueryBuilder through the proxy
(contract §2.2, §2.9, §3.1, §3.2, §5): orders and scores are checked against values computed here from
direct ``pgml.embed`` calls (cosine in numpy) and Postgres's own ``ts_rank``, not against the SDK's stored
vectors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pgml
import psycopg
import pytest
from pgml.layout import Names
from pgml.schema import parse_schema
from pgml.search import _vector_statement, parse_vector_search
from psycopg import sql

from tests.sdk.conftest import EMBEDDER

PIPELINE = "p"
SPLITTER = {"model": "recursive_character", "parameters": {"chunk_size": 60, "chunk_overlap": 0}}
SCHEMA: dict[str, Any] = {
    "title": {"semantic_search": {"model": EMBEDDER}, "full_text_search": {"configuration": "english"}},
    "body": {
        "splitter": SPLITTER,
        "semantic_search": {"model": EMBEDDER},
        "full_text_search": {"configuration": "english"},
    },
    "summary": {"semantic_search": {"model": EMBEDDER}},
}
DOCUMENTS: list[dict[str, Any]] = [
    {
        "id": "a",
        "title": "Tuning autovacuum in Postgres",
        "body": "Autovacuum removes dead tuples from tables. Set the scale factor lower on big tables. "
        "Watch the bloat of busy tables.",
        "summary": "autovacuum settings",
        "lang": "en",
        "year": 2021,
    },
    {
        "id": "b",
        "title": "Postgres replication lag",
        "body": "Streaming replication sends WAL to standbys. "
        "Lag grows when a replica cannot replay fast enough.",
        "lang": "en",
        "year": 2022,
    },
    {
        "id": "c",
        "title": "Baking sourdough bread",
        "body": "Feed the starter the night before. "
        "Mix flour and water, rest the dough and bake it very hot.",
        "lang": "en",
        "year": 2020,
    },
    {
        "id": "d",
        "title": "Vacuum und Autovacuum",
        "body": "Autovacuum entfernt tote Tupel. Autovacuum autovacuum autovacuum.",
        "lang": "de",
        "year": 2023,
    },
    {
        "id": "e",
        "title": "Index bloat and vacuum",
        "body": "Vacuum does not shrink indexes, so reindex concurrently to remove bloat. "
        "Autovacuum helps tables.",
        "lang": "en",
        "year": 2019,
    },
    {
        "id": "f",
        "title": "Choosing hiking boots",
        "body": "Boots should fit snugly. Break them in before a long hike in the mountains.",
        "lang": "en",
        "year": 2021,
    },
    {
        "id": 7,
        "title": "The Postgres query planner",
        "body": "The planner estimates costs from statistics that analyze gathers, "
        "and autovacuum runs analyze too.",
        "lang": "en",
        "year": 2024,
    },
]
TOLERANCE = 1e-5


@dataclass
class Corpus:
    """The collection under test and what the database holds for it, read back once."""

    collection: pgml.Collection
    pipeline: pgml.Pipeline
    names: Names
    url: str
    documents: dict[int, dict[str, Any]]  # row id → document

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.url, autocommit=True) as connection:
            yield connection

    def chunks(self, field: str) -> list[tuple[int, int, str]]:
        """(row id, chunk_index, chunk) of every stored chunk of ``field``."""
        with self.connection() as connection:
            return connection.execute(
                sql.SQL(
                    "SELECT document_id, chunk_index, chunk FROM {} ORDER BY document_id, chunk_index"
                ).format(self.names.chunks(field))
            ).fetchall()

    def similarities(self, field: str, text: str) -> list[tuple[int, int, str, float]]:
        """(row id, chunk_index, chunk, cosine similarity to ``text``) for every chunk of ``field``."""
        chunks = self.chunks(field)
        with self.connection() as connection:
            query = np.array(
                connection.execute("SELECT pgml.embed(%s, %s)", (EMBEDDER, text)).fetchone()[0],
                dtype=np.float64,
            )
            vectors = np.array(
                [
                    row[0]
                    for row in connection.execute(
                        "SELECT e FROM pgml.embed(%s, %s::text[]) AS e", (EMBEDDER, [c for _, _, c in chunks])
                    )
                ],
                dtype=np.float64,
            )
        cosine = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
        return [(*chunk, float(value)) for chunk, value in zip(chunks, cosine, strict=True)]

    def ranks(self, field: str, text: str) -> list[tuple[int, int, str, float]]:
        """(row id, chunk_index, chunk, ts_rank flag 32) of the chunks of ``field`` that match ``text``."""
        chunks = self.chunks(field)
        with self.connection() as connection:
            matches = connection.execute(
                "SELECT ts_rank(to_tsvector('english', c), plainto_tsquery('english', %s), 32),"
                " to_tsvector('english', c) @@ plainto_tsquery('english', %s)"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS u(c, n) ORDER BY n",
                (text, text, [c for _, _, c in chunks]),
            ).fetchall()
        return [(*chunk, rank) for chunk, (rank, matched) in zip(chunks, matches, strict=True) if matched]

    def expected_search(
        self,
        semantic: dict[str, tuple[str, float]],
        full_text: dict[str, tuple[str, float]],
        keep: Callable[[dict[str, Any]], bool] = lambda document: True,
    ) -> list[tuple[int, float, dict[str, float | None]]]:
        """§5.1 from first principles: (row id, total, per-part scores), best first, ties by row id."""
        parts: dict[str, dict[int, float]] = {}
        for field, (text, boost) in semantic.items():
            best: dict[int, float] = {}
            for row_id, _, _, value in self.similarities(field, text):
                best[row_id] = max(best.get(row_id, -2.0), value)
            parts[f"{field}_embedding_score"] = {row_id: boost * value for row_id, value in best.items()}
        for field, (text, boost) in full_text.items():
            best = {}
            for row_id, _, _, value in self.ranks(field, text):
                best[row_id] = max(best.get(row_id, -1.0), value)
            parts[f"{field}_tsvectors_score"] = {row_id: boost * value for row_id, value in best.items()}
        rows = []
        for row_id, document in self.documents.items():
            scores = {key: part.get(row_id) for key, part in parts.items()}
            if keep(document) and any(value is not None for value in scores.values()):
                rows.append((row_id, sum(value or 0.0 for value in scores.values()), scores))
        return sorted(rows, key=lambda row: (-row[1], row[0]))

    def expected_vector_search(
        self,
        fields: dict[str, tuple[str, float]],
        pool: int,
        keep: Callable[[dict[str, Any]], bool] = lambda document: True,
        matching: dict[str, str] | None = None,
    ) -> list[tuple[int, str, float]]:
        """§5.3 from first principles: (row id, chunk, score), the top ``pool`` of each field merged."""
        merged = []
        for field, (text, boost) in fields.items():
            allowed = None
            if matching and field in matching:
                allowed = {(row_id, index) for row_id, index, _, _ in self.ranks(field, matching[field])}
            rows = [
                (row_id, index, chunk, value * boost)
                for row_id, index, chunk, value in self.similarities(field, text)
                if keep(self.documents[row_id]) and (allowed is None or (row_id, index) in allowed)
            ]
            merged += sorted(rows, key=lambda row: (-row[3], row[0], row[1]))[:pool]
        merged.sort(key=lambda row: (-row[3], row[0], row[1]))
        return [(row_id, chunk, score) for row_id, _, chunk, score in merged[:pool]]


async def make_corpus(url: str, name: str, schema: dict[str, Any], documents: list[dict[str, Any]]) -> Corpus:
    collection = pgml.Collection(name, url)
    pipeline = pgml.Pipeline(PIPELINE, schema)
    await collection.add_pipeline(pipeline)
    await collection.upsert_documents(documents)
    names = Names(name, PIPELINE)
    with psycopg.connect(url, autocommit=True) as connection:
        stored = connection.execute(sql.SQL("SELECT id, document FROM {}").format(names.documents)).fetchall()
    return Corpus(collection, pipeline, names, url, dict(stored))


@pytest.fixture
async def corpus(sdk_url: str, collection_name: str) -> Corpus:
    return await make_corpus(sdk_url, collection_name, SCHEMA, DOCUMENTS)


def english(document: dict[str, Any]) -> bool:
    return document["lang"] == "en"


def assert_search(
    results: list[dict[str, Any]], expected: list[tuple[int, float, Any]], corpus: Corpus
) -> None:
    assert [row["id"] for row in results] == [row_id for row_id, _, _ in expected]
    for row, (row_id, total, _) in zip(results, expected, strict=True):
        assert row["score"] == pytest.approx(total, abs=TOLERANCE)
        assert row["document"] == corpus.documents[row_id]


# --- search -------------------------------------------------------------------------------------------------

HYBRID = {
    "query": {
        "semantic_search": {
            "title": {"query": "tuning autovacuum", "boost": 1.5},
            "body": {"query": "tuning autovacuum"},
        },
        "full_text_search": {"body": {"query": "autovacuum", "boost": 0.5}},
        "filter": {"lang": {"$eq": "en"}},
    },
    "limit": 4,
}


async def test_hybrid_search_scores_order_and_bookkeeping(corpus: Corpus) -> None:
    """§5.1: boosted best-chunk cosine plus boosted ts_rank, filtered in every part; K1 row ids; K2 records
    the search (one searches row equal to the query, ranked search_results with per-part scores)."""
    expected = corpus.expected_search(
        {"title": ("tuning autovacuum", 1.5), "body": ("tuning autovacuum", 1.0)},
        {"body": ("autovacuum", 0.5)},
        english,
    )[:4]
    # The German document would rank without the filter, so the filter is what keeps it out.
    unfiltered = corpus.expected_search(
        {"title": ("tuning autovacuum", 1.5), "body": ("tuning autovacuum", 1.0)},
        {"body": ("autovacuum", 0.5)},
    )[:4]
    assert "d" in [corpus.documents[row_id]["id"] for row_id, _, _ in unfiltered]
    result = await corpus.collection.search(HYBRID, corpus.pipeline)
    assert_search(result["results"], expected, corpus)
    assert all(corpus.documents[row["id"]]["lang"] == "en" for row in result["results"])

    with corpus.connection() as connection:
        searches = connection.execute(
            sql.SQL("SELECT id, query FROM {}").format(corpus.names.table("searches"))
        ).fetchall()
        recorded = connection.execute(
            sql.SQL("SELECT id, document_id, rank, scores FROM {} WHERE search_id = %s ORDER BY rank").format(
                corpus.names.table("search_results")
            ),
            (result["search_id"],),
        ).fetchall()
    assert searches == [(result["search_id"], HYBRID)]
    assert [(document_id, rank) for _, document_id, rank, _ in recorded] == [
        (row["id"], rank) for rank, row in enumerate(result["results"], 1)
    ]
    for (_, _, _, scores), (_, total, parts) in zip(recorded, expected, strict=True):
        assert set(scores) == {
            "total",
            "title_embedding_score",
            "body_embedding_score",
            "body_tsvectors_score",
        }
        assert scores["total"] == pytest.approx(total, abs=TOLERANCE)
        for key, value in parts.items():
            assert scores[key] == (None if value is None else pytest.approx(value, abs=TOLERANCE))

    await corpus.collection.add_search_event(result["search_id"], 2, {"clicked": True}, corpus.pipeline)
    with corpus.connection() as connection:
        events = connection.execute(
            sql.SQL("SELECT search_result, event FROM {}").format(corpus.names.table("search_events"))
        ).fetchall()
    assert events == [(recorded[1][0], {"clicked": True})]
    with pytest.raises(pgml.NotFoundError):
        await corpus.collection.add_search_event(result["search_id"], 99, {"clicked": True}, corpus.pipeline)


async def test_boosts_change_the_order(corpus: Corpus) -> None:
    """K4: a plain boosted sum, so a large full-text boost overtakes the semantic ranking."""
    orders = []
    for boost in (0.01, 20.0):
        query = {
            "query": {
                "semantic_search": {"title": {"query": "baking bread"}},
                "full_text_search": {"body": {"query": "autovacuum", "boost": boost}},
            },
            "limit": 3,
        }
        expected = corpus.expected_search({"title": ("baking bread", 1.0)}, {"body": ("autovacuum", boost)})[
            :3
        ]
        result = await corpus.collection.search(query, corpus.pipeline)
        assert_search(result["results"], expected, corpus)
        orders.append([row["id"] for row in result["results"]])
    assert orders[0][0] != orders[1][0]
    assert corpus.documents[orders[0][0]]["id"] == "c"


async def test_full_text_only_search_and_no_match(corpus: Corpus) -> None:
    """A document appears only with a term; no match gives [] and still records the search (K2)."""
    expected = corpus.expected_search({}, {"title": ("postgres", 1.0)})
    assert len(expected) == 3
    result = await corpus.collection.search(
        {"query": {"full_text_search": {"title": {"query": "postgres"}}}}, corpus.pipeline
    )
    assert_search(result["results"], expected, corpus)
    empty = await corpus.collection.search(
        {"query": {"full_text_search": {"title": {"query": "xylophone"}}}}, corpus.pipeline
    )
    assert empty["results"] == [] and isinstance(empty["search_id"], int)
    assert empty["search_id"] == result["search_id"] + 1


async def test_search_recording_opt_out(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGML_RECORD_SEARCHES", "0")
    result = await corpus.collection.search(HYBRID, corpus.pipeline)
    assert result["search_id"] is None and len(result["results"]) == 4
    with corpus.connection() as connection:
        count = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(corpus.names.table("searches")))
        assert count.fetchone() == (0,)


async def test_search_recall_is_bounded_and_scores_stay_exact(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F2: only the documents of each field's C_cand nearest chunks are candidates, but their scores are the
    exact best-chunk scores over all of their chunks."""
    monkeypatch.setenv("PGML_SEARCH_CANDIDATES", "2")
    similarities = sorted(corpus.similarities("body", "dough and flour"), key=lambda row: -row[3])
    recalled = {row_id for row_id, _, _, _ in similarities[:2]}
    exact = {
        row_id: total for row_id, total, _ in corpus.expected_search({"body": ("dough and flour", 1.0)}, {})
    }
    result = await corpus.collection.search(
        {"query": {"semantic_search": {"body": {"query": "dough and flour"}}}, "limit": 2}, corpus.pipeline
    )
    assert result["results"] and {row["id"] for row in result["results"]} <= recalled
    for row in result["results"]:
        assert row["score"] == pytest.approx(exact[row["id"]], abs=TOLERANCE)


async def test_search_validation_through_the_collection(corpus: Corpus) -> None:
    with pytest.raises(pgml.ValidationError, match=r"search\.query\.semantic_search\.title\.prompt"):
        await corpus.collection.search(
            {"query": {"semantic_search": {"title": {"query": "q", "prompt": "x"}}}}, corpus.pipeline
        )
    with pytest.raises(pgml.ValidationError, match="'summary' has no full_text_search"):
        await corpus.collection.search(
            {"query": {"full_text_search": {"summary": {"query": "q"}}}}, corpus.pipeline
        )


# --- vector_search ------------------------------------------------------------------------------------------


async def test_vector_search_scores_filter_and_keys(corpus: Corpus) -> None:
    """§5.3: per-field top N by cosine, score = (1 - distance) × boost, merged; documents projected to
    keys."""
    query = {
        "query": {
            "fields": {"title": {"query": "vacuum", "boost": 1.2}, "body": {"query": "vacuum"}},
            "filter": {"year": {"$gte": 2020}},
        },
        "document": {"keys": ["id", "year"]},
        "limit": 5,
    }
    keep: Callable[[dict[str, Any]], bool] = lambda document: document["year"] >= 2020  # noqa: E731
    expected = corpus.expected_vector_search({"title": ("vacuum", 1.2), "body": ("vacuum", 1.0)}, 5, keep)
    rows = await corpus.collection.vector_search(query, corpus.pipeline)
    assert [(row["chunk"], row["rerank_score"]) for row in rows] == [
        (chunk, None) for _, chunk, _ in expected
    ]
    for row, (row_id, _, score) in zip(rows, expected, strict=True):
        assert row["score"] == pytest.approx(score, abs=TOLERANCE)
        document = corpus.documents[row_id]
        assert row["document"] == {"id": document["id"], "year": document["year"]}


async def test_vector_search_returns_chunks(corpus: Corpus) -> None:
    """K6: rows are chunks, so a document with several matching chunks appears several times."""
    rows = await corpus.collection.vector_search(
        {"query": {"fields": {"body": {"query": "tables"}}}, "limit": 10}, corpus.pipeline
    )
    expected = corpus.expected_vector_search({"body": ("tables", 1.0)}, 10)
    assert [row["chunk"] for row in rows] == [chunk for _, chunk, _ in expected]
    ids = [row["document"]["id"] for row in rows]
    assert len(ids) == 10 and len(set(ids)) < len(ids)  # 7 documents: some appear twice
    stored = {(row_id, chunk) for row_id, _, chunk in corpus.chunks("body")}
    assert all((row_id, chunk) in stored for row_id, chunk, _ in expected)


async def test_vector_search_full_text_filter(corpus: Corpus) -> None:
    """Only chunks whose tsvector matches plainto_tsquery(configuration, text) are candidates."""
    rows = await corpus.collection.vector_search(
        {
            "query": {"fields": {"body": {"query": "cleaning up tables", "full_text_filter": "autovacuum"}}},
            "limit": 10,
        },
        corpus.pipeline,
    )
    expected = corpus.expected_vector_search(
        {"body": ("cleaning up tables", 1.0)}, 10, matching={"body": "autovacuum"}
    )
    assert 0 < len(expected) < 10
    assert [row["chunk"] for row in rows] == [chunk for _, chunk, _ in expected]
    assert all("autovacuum" in row["chunk"].lower() for row in rows)


async def test_vector_search_rerank(corpus: Corpus) -> None:
    """Rerank (F1): pgml.rank over the pool's chunks; rows ordered by rerank_score, at most ``limit``."""
    pool = await corpus.collection.vector_search(
        {"query": {"fields": {"body": {"query": "postgres maintenance"}}}, "limit": 6}, corpus.pipeline
    )
    with corpus.connection() as connection:
        ranked = connection.execute(
            "SELECT corpus_id, score FROM pgml.rank('cross-encoder', %s, %s::text[], '{\"top_k\": 3}')",
            ("why do tables bloat", [row["chunk"] for row in pool]),
        ).fetchall()
    rows = await corpus.collection.vector_search(
        {
            "query": {"fields": {"body": {"query": "postgres maintenance"}}},
            "rerank": {
                "model": "cross-encoder",
                "query": "why do tables bloat",
                "num_documents_to_rerank": 6,
            },
            "limit": 3,
        },
        corpus.pipeline,
    )
    assert len(rows) == 3
    scores = [row["rerank_score"] for row in rows]
    assert None not in scores and scores == sorted(scores, reverse=True)
    best = sorted(ranked, key=lambda row: -row[1])[:3]
    assert [row["chunk"] for row in rows] == [pool[corpus_id]["chunk"] for corpus_id, _ in best]
    assert scores == pytest.approx([score for _, score in best], abs=TOLERANCE)
    assert [row["score"] for row in rows] == [pool[corpus_id]["score"] for corpus_id, _ in best]


async def test_vector_search_validation_through_the_collection(corpus: Corpus) -> None:
    with pytest.raises(pgml.ValidationError, match=r"vector_search\.query\.fields\.body\.boots"):
        await corpus.collection.vector_search(
            {"query": {"fields": {"body": {"query": "q", "boots": 1}}}}, corpus.pipeline
        )
    with pytest.raises(
        pgml.ValidationError, match=r"full_text_filter: field 'summary' has no full_text_search"
    ):
        await corpus.collection.vector_search(
            {"query": {"fields": {"summary": {"query": "q", "full_text_filter": "x"}}}}, corpus.pipeline
        )
    with pytest.raises(pgml.ValidationError, match=r"vector_search\.rerank\.top_k"):
        await corpus.collection.vector_search(
            {
                "query": {"fields": {"body": {"query": "q"}}},
                "rerank": {"model": "m", "query": "q", "top_k": 1},
            },
            corpus.pipeline,
        )


# --- F16 and the QueryBuilder, over a larger single-field collection ----------------------------------------

NOTES = [
    {"id": i, "text": f"note {i}: {'red' if i % 2 else 'blue'} item number {i}", "group": i % 2}
    for i in range(160)
]


async def test_limit_above_ef_search_with_a_filter(sdk_url: str, collection_name: str) -> None:
    """F16: with the HNSW index in use (the planner kept off sorts and bitmap scans, which it prefers on a
    table this small), a filter and a limit above the default ef_search of 40 still give ``limit`` rows; the
    same SQL without our settings gives fewer."""
    settings = "options=-c%20enable_sort%3Doff%20-c%20enable_bitmapscan%3Doff"
    hnsw_url = sdk_url + ("&" if "?" in sdk_url else "?") + settings
    schema = {
        "text": {"semantic_search": {"model": EMBEDDER}, "full_text_search": {"configuration": "english"}}
    }
    corpus = await make_corpus(hnsw_url, collection_name, schema, NOTES)
    query = {
        "query": {"fields": {"text": {"query": "a blue item"}}, "filter": {"group": {"$eq": 0}}},
        "limit": 60,
    }
    rows = await corpus.collection.vector_search(query, corpus.pipeline)
    assert len(rows) == 60 and {row["document"]["group"] for row in rows} == {0}
    expected = corpus.expected_vector_search({"text": ("a blue item", 1.0)}, 60, lambda d: d["group"] == 0)
    assert [row["chunk"] for row in rows] == [chunk for _, chunk, _ in expected]

    with corpus.connection() as connection:
        vector = connection.execute("SELECT pgml.embed(%s, %s)::vector::text", (EMBEDDER, "a blue item"))
        plan = parse_vector_search(parse_schema(schema), query)
        statement, params = _vector_statement(corpus.names, plan, [vector.fetchone()[0]])
        plan_text = str(connection.execute(sql.SQL("EXPLAIN ") + statement, params).fetchall())
        assert "text_pipeline_embedding_hnsw_vector_index" in plan_text
        assert len(connection.execute(statement, params).fetchall()) < 60


async def test_query_builder(sdk_url: str, collection_name: str) -> None:
    """§2.9: the builder is vector_search on the field "text" (metadata → filter, full_text.text →
    full_text_filter, default limit 10), returning (score, chunk, document) tuples."""
    schema = {
        "text": {"semantic_search": {"model": EMBEDDER}, "full_text_search": {"configuration": "english"}}
    }
    corpus = await make_corpus(sdk_url, collection_name, schema, NOTES[:30])
    builder = corpus.collection.query().vector_recall("blue item", corpus.pipeline)
    default = await builder.fetch_all()
    assert len(default) == 10
    rows = await (
        corpus.collection.query()
        .vector_recall("blue item", corpus.pipeline)
        .filter({"metadata": {"id": {"$gt": 3}}, "full_text": {"configuration": "english", "text": "red"}})
        .limit(3)
        .fetch_all()
    )
    direct = await corpus.collection.vector_search(
        {
            "query": {
                "fields": {"text": {"query": "blue item", "full_text_filter": "red"}},
                "filter": {"id": {"$gt": 3}},
            },
            "limit": 3,
        },
        corpus.pipeline,
    )
    assert rows == [(row["score"], row["chunk"], row["document"]) for row in direct]
    assert len(rows) == 3 and all(document["group"] == 1 and document["id"] > 3 for _, _, document in rows)
