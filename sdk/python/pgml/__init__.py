"""A pure-Python PostgresML SDK for pgml-proxy: ``import pgml`` and the PostgresML SDK's code runs unchanged.

Contract: shared/reference/pgml-sdk.md. Every method that the upstream makes awaitable is ``async def`` here;
:mod:`pgml.sync` wraps them for code without an event loop.
"""

from .builtins import Builtins
from .collection import Collection
from .errors import NotFoundError, PgmlError, ValidationError
from .logger import init_logger
from .migration import cli, migrate
from .open_source_ai import OpenSourceAI
from .pipeline import Model, Pipeline, SingleFieldPipeline, Splitter
from .query_builder import QueryBuilder
from .rag import RAGStream
from .transformer_pipeline import TransformerPipeline

__version__ = "1.0.0"

__all__ = [
    "Builtins",
    "Collection",
    "Model",
    "NotFoundError",
    "OpenSourceAI",
    "PgmlError",
    "Pipeline",
    "QueryBuilder",
    "RAGStream",
    "SingleFieldPipeline",
    "Splitter",
    "TransformerPipeline",
    "ValidationError",
    "__version__",
    "cli",
    "init_logger",
    "migrate",
]
