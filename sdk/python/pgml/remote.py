"""Embeddings from the OpenAI HTTP API, for fields whose ``source`` is ``openai`` (contract §1.2).

The standard library's urllib in a worker thread: one dependency fewer, and these calls are rare (indexing and
one query vector per search). ``OPENAI_BASE_URL`` (our addition) points it at any compatible server.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from typing import Any

from .errors import PgmlError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_TIMEOUT_SECONDS = 120


def _post_embeddings(model: str, texts: list[str]) -> list[list[float]]:
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise PgmlError("OPENAI_API_KEY is not set; it is needed for fields with source 'openai'")
    base = os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL).rstrip("/")
    request = urllib.request.Request(
        f"{base}/embeddings",
        data=json.dumps({"model": model, "input": texts}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as response:
            body: Any = json.load(response)
    except urllib.error.HTTPError as error:
        raise PgmlError(f"OpenAI embeddings failed with HTTP {error.code}: {error.read()[:500]!r}") from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise PgmlError(f"OpenAI embeddings failed: {error}") from error
    try:
        rows = sorted(body["data"], key=lambda row: row["index"])
        vectors = [list(map(float, row["embedding"])) for row in rows]
    except (KeyError, TypeError, ValueError) as error:
        raise PgmlError(f"OpenAI embeddings answered an unexpected body: {str(body)[:500]}") from error
    if len(vectors) != len(texts):
        raise PgmlError(f"OpenAI embeddings answered {len(vectors)} vectors for {len(texts)} inputs")
    return vectors


async def embed_openai(model: str, texts: list[str]) -> list[list[float]]:
    """One vector per text, in order (one request; the caller batches)."""
    if not texts:
        return []
    return await asyncio.to_thread(_post_embeddings, model, texts)
