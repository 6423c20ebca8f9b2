"""The proxy's own administration in SQL: its metrics, the models it holds, loading and unloading them.

They act on the one engine every session shares (a model loaded by one session serves all), like PgBouncer's
admin console, but through ordinary statements. Reading is open to every client; loading and unloading change
what every session meets, so the configuration may reserve them to some login roles (``admin_users``), as
PgBouncer reserves its console. Loading goes through the same policies as a call (allowed models, remote code,
the configured device), so it can do nothing a call could not.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Final

from pgml_engines.engine import LOAD_EMBEDDING

from pgml_proxy import metrics
from pgml_proxy.errors import InsufficientPrivilege
from pgml_proxy.functions.registry import CallContext, Overload, json_object
from pgml_proxy.functions.signatures import Column, Parameter, Signature
from pgml_proxy.wire.types import BOOL, FLOAT8, INT8, JSONB, TEXT, TIMESTAMPTZ

MAY_ADMINISTER: ContextVar[bool] = ContextVar("pgml_proxy_may_administer", default=True)
"""Whether the session running the statement may load and unload models; its session sets it from the
configuration's ``admin_users`` and the role it logged in as."""

KINDS: Final = {"embed": "embedding", "cross-encoder": "rank"}
"""What ``proxy_models`` shows as a model's kind: the task ``load_model`` takes to load it that way."""


async def _proxy_stats(context: CallContext, calls: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """The samples /metrics serves (histograms as their _count and _sum), one row each."""
    rows = metrics.samples()
    return [rows for _ in calls]


async def _proxy_models(context: CallContext, calls: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    rows = [
        (
            model.key.name,
            KINDS.get(model.key.kind, model.key.kind),
            getattr(model.key.options, "device", None),
            model.nbytes,
            model.loaded_at,
            model.last_used,
            model.uses,
        )
        for model in reversed(context.engine.models())  # most recently used first
    ]
    return [rows for _ in calls]


def _check_administrator(function: str) -> None:
    if not MAY_ADMINISTER.get():
        raise InsufficientPrivilege(
            f"permission denied for pgml.{function}",
            hint="The proxy's configuration (admin_users) reserves loading and unloading models to some roles.",
        )


async def _load_model(context: CallContext, calls: list[tuple[Any, ...]]) -> list[bool]:
    _check_administrator("load_model")
    return [
        await context.engine.load_model(name, task, json_object(kwargs, "pgml.load_model kwargs"))
        for name, task, kwargs in calls
    ]


async def _unload_model(context: CallContext, calls: list[tuple[Any, ...]]) -> list[int]:
    _check_administrator("unload_model")
    return [context.engine.unload_model(name) for (name,) in calls]


ADMIN: Final = (
    Overload(
        Signature(
            "proxy_stats",
            (),
            (Column("name", TEXT), Column("labels", JSONB), Column("value", FLOAT8)),
            set_returning=True,
        ),
        _proxy_stats,
    ),
    Overload(
        Signature(
            "proxy_models",
            (),
            (
                Column("name", TEXT),
                Column("kind", TEXT),
                Column("device", TEXT),
                Column("memory_bytes", INT8),
                Column("loaded_at", TIMESTAMPTZ),
                Column("last_used", TIMESTAMPTZ),
                Column("uses", INT8),
            ),
            set_returning=True,
        ),
        _proxy_models,
    ),
    Overload(
        Signature(
            "load_model",
            (
                Parameter("name", "text"),
                Parameter("task", "text", LOAD_EMBEDDING),
                Parameter("kwargs", "jsonb", {}),
            ),
            BOOL,
        ),
        _load_model,
    ),
    Overload(Signature("unload_model", (Parameter("name", "text"),), INT8), _unload_model),
)
