"""One text's embedding with a field's model, wherever the model lives (the proxy's ``pgml.embed`` or the OpenAI
API), and pgvector's text form of a vector: shared by the dimension probe, query vectors and ``Builtins``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .connection import fetch_one
from .remote import embed_openai
from .schema import SemanticSpec

EMBED_ONE = "SELECT pgml.embed(transformer => %s::text, text => %s::text, kwargs => %s::jsonb)"


async def embed_text(
    connection: psycopg.AsyncConnection[Any], model: SemanticSpec, text: str, parameters: Mapping[str, Any]
) -> list[float]:
    """``text`` embedded by ``model`` with ``parameters`` as the embed kwargs."""
    if model.source == "openai":
        return (await embed_openai(model.model, [text]))[0]
    return await fetch_one(connection, EMBED_ONE, (model.model, text, Jsonb(dict(parameters))))


def vector_text(vector: Sequence[float]) -> str:
    """pgvector's text form; float4 values survive the round trip through repr exactly."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"
