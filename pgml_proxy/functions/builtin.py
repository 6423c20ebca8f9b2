"""The functions the proxy implements: version, chunk, embed (contract §2.3, §2.7), the NLP ones, and the
proxy's own administration."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Final

from pgml_proxy import __version__
from pgml_proxy.functions.admin import ADMIN
from pgml_proxy.functions.data import DATA
from pgml_proxy.functions.lifecycle import LIFECYCLE
from pgml_proxy.functions.nlp import GENERATE, NLP
from pgml_proxy.functions.predict import PREDICT
from pgml_proxy.functions.registry import CallContext, Overload, Registry, json_object
from pgml_proxy.functions.signatures import Column, Parameter, Signature
from pgml_proxy.wire.types import FLOAT4_ARRAY, INT8, TEXT

API_VERSION: Final = "2.10.0"


def _kwargs(value: Any, function: str) -> dict[str, Any]:
    return json_object(value, f"pgml.{function} kwargs")


async def _version(context: CallContext, calls: list[tuple[Any, ...]]) -> list[str]:
    return [f"{API_VERSION} (pgml-proxy {__version__})" for _ in calls]


async def _embed_each(context: CallContext, calls: list[tuple[Any, ...]]) -> list[list[float]]:
    """One text per call: calls sharing a model and options go to the engine as one batch."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, (model, _, kwargs) in enumerate(calls):
        groups[(model, json.dumps(_kwargs(kwargs, "embed"), sort_keys=True))].append(index)
    results: list[Any] = [None] * len(calls)
    for (model, options), indexes in groups.items():
        vectors = await context.engine.embed(model, [calls[i][1] for i in indexes], json.loads(options))
        for index, vector in zip(indexes, vectors, strict=True):
            results[index] = vector
    return results


async def _embed_many(context: CallContext, calls: list[tuple[Any, ...]]) -> list[list[list[float]]]:
    """An array per call, a row per element (SETOF real[]); NULL elements embed as NULL rows."""
    results = []
    for model, inputs, kwargs in calls:
        present = [text for text in inputs if text is not None]
        vectors = iter(
            await context.engine.embed(model, present, _kwargs(kwargs, "embed")) if present else []
        )
        results.append([None if text is None else next(vectors) for text in inputs])
    return results


async def _chunk(context: CallContext, calls: list[tuple[Any, ...]]) -> list[list[tuple[int, str]]]:
    results = []
    for splitter, text, kwargs in calls:
        pieces = await context.engine.chunk(splitter, text, _kwargs(kwargs, "chunk"))
        results.append([(index, piece) for index, piece in enumerate(pieces, start=1)])
    return results


BUILTIN: Final = Registry(
    [
        Overload(Signature("version", (), TEXT), _version),
        Overload(
            Signature(
                "chunk",
                (Parameter("splitter", "text"), Parameter("text", "text"), Parameter("kwargs", "jsonb", {})),
                (Column("chunk_index", INT8), Column("chunk", TEXT)),
                set_returning=True,
            ),
            _chunk,
        ),
        Overload(
            Signature(
                "embed",
                (
                    Parameter("transformer", "text"),
                    Parameter("text", "text"),
                    Parameter("kwargs", "jsonb", {}),
                ),
                FLOAT4_ARRAY,
            ),
            _embed_each,
        ),
        Overload(
            Signature(
                "embed",
                (
                    Parameter("transformer", "text"),
                    Parameter("inputs", "text[]"),
                    Parameter("kwargs", "jsonb", {}),
                ),
                FLOAT4_ARRAY,
                set_returning=True,
            ),
            _embed_many,
        ),
        *NLP,
        *GENERATE,
        *DATA,
        *LIFECYCLE,
        *PREDICT,
        *ADMIN,
    ]
)
