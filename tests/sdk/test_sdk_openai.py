"""Fields with ``"source": "openai"`` against a local OpenAI-compatible server (contract §1.2, tier T4):
the SDK posts the texts with the bearer key, stores the vectors it gets back, and embeds queries the same way."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pgml
import psycopg
import pytest
from pgml.errors import PgmlError
from psycopg import sql

DIMENSIONS = 8
MODEL = "text-embedding-test"
KEY = "sk-test-key"


def fake_vector(text: str) -> list[float]:
    """A deterministic vector per text, so stored and expected values can be compared exactly (float4-safe)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i] - 128) / 128 for i in range(DIMENSIONS)]


class FakeOpenAI(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": "bad key"}')
            return
        data = [{"index": i, "embedding": fake_vector(text)} for i, text in enumerate(body["input"])]
        payload = json.dumps({"data": list(reversed(data)), "model": body["model"]}).encode()  # any order
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeOpenAI.requests = []
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    yield FakeOpenAI.requests
    server.shutdown()
    server.server_close()


SCHEMA = {"body": {"semantic_search": {"model": MODEL, "source": "openai"}}}
DOCUMENTS = [{"id": i, "body": f"document number {i} about topic {i % 3}"} for i in range(6)]


async def test_openai_fields_are_embedded_stored_and_searched(
    sdk_url: str, collection_name: str, openai_server: list[dict[str, Any]]
) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    pipeline = pgml.Pipeline("p", SCHEMA)
    await collection.add_pipeline(pipeline)
    await collection.upsert_documents(DOCUMENTS)

    assert all(r["path"] == "/v1/embeddings" and r["auth"] == f"Bearer {KEY}" for r in openai_server)
    assert all(r["body"]["model"] == MODEL for r in openai_server)
    assert openai_server[0]["body"]["input"] == ["Hello, World!"]  # the dimension probe
    assert sorted(t for r in openai_server[1:] for t in r["body"]["input"]) == sorted(
        d["body"] for d in DOCUMENTS
    )

    with psycopg.connect(sdk_url) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT c.chunk, e.embedding::text, format_type(a.atttypid, a.atttypmod) FROM {} c JOIN {} e"
                " ON e.chunk_id = c.id, pg_attribute a WHERE a.attrelid = %s::regclass AND a.attname = 'embedding'"
            ).format(
                sql.Identifier(f"{collection_name}_p", "body_chunks"),
                sql.Identifier(f"{collection_name}_p", "body_embeddings"),
            ),
            (f'"{collection_name}_p".body_embeddings',),
        ).fetchall()
        model_row = conn.execute(
            "SELECT m.runtime::text, m.hyperparams FROM pgml.models m JOIN pgml.collections c"
            " ON c.project_id = m.project_id WHERE c.name = %s",
            (collection_name,),
        ).fetchall()
    assert len(rows) == len(DOCUMENTS)
    for chunk, embedding, column_type in rows:
        assert column_type == f"vector({DIMENSIONS})"
        assert json.loads(embedding) == pytest.approx(fake_vector(chunk), abs=1e-6)
    assert model_row == [("openai", {"name": MODEL})]

    # The query vector comes from the same API; the best chunk is the one whose text is the query.
    target = DOCUMENTS[4]["body"]
    results = await collection.vector_search(
        {"query": {"fields": {"body": {"query": target}}}, "limit": 3}, pipeline
    )
    assert openai_server[-1]["body"]["input"] == [target]
    assert results[0]["chunk"] == target
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-6)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


async def test_openai_errors_are_sdk_errors_and_write_nothing(
    sdk_url: str, collection_name: str, openai_server: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p", SCHEMA))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with pytest.raises(PgmlError, match="HTTP 401"):
        await collection.upsert_documents(DOCUMENTS[:2])
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(PgmlError, match="OPENAI_API_KEY"):
        await collection.upsert_documents(DOCUMENTS[:2])
    assert await collection.get_documents() == []  # K14: the batch rolled back with its embedding
