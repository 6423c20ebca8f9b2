"""The client's session seen as the pgml catalog: task spellings and deployment metrics (§3.3, §3.7),
literals for catalog rows, and the transaction a lifecycle call runs in (its own outside a block)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from pgml_proxy.errors import InvalidTextRepresentation, ObjectNotInPrerequisiteState, UndefinedObject
from pgml_proxy.functions.registry import CallContext, SessionQueries, SessionQueryFailed
from pgml_proxy.sql.literals import quote
from pgml_proxy.sql.text import KEEP_OWN_TRANSACTION
from pgml_proxy.wire.status import IDLE

#: Task spellings accepted as arguments (§3.3) → the catalog's underscore label.
TASKS: Final[Mapping[str, str]] = {
    **{
        t: t
        for t in (
            "regression",
            "classification",
            "decomposition",
            "clustering",
            "summarization",
            "translation",
            "text2text",
            "conversation",
            "embedding",
        )
    },
    **{
        spelling: t
        for t in (
            "question_answering",
            "text_classification",
            "text_generation",
            "text_pair_classification",
        )
        for spelling in (t, t.replace("_", "-"))
    },
}

#: §3.7: the metric that decides deployments, and whether higher is better.
TARGETS: Final[Mapping[str, tuple[str, bool]]] = {
    "regression": ("r2", True),
    "classification": ("f1", True),
    "clustering": ("silhouette", True),
    "decomposition": ("cumulative_explained_variance", True),
    "question_answering": ("f1", True),
    "text_classification": ("f1", True),
    "text_pair_classification": ("f1", True),
    "summarization": ("rouge_ngram_f1", True),
    "translation": ("bleu", True),
    "conversation": ("bleu", True),
    "text_generation": ("perplexity", False),
    "text2text": ("perplexity", False),
}

DATABASE_IDENTITY: Final = (
    "((SELECT oid FROM pg_database WHERE datname = current_database())::text || ':' || current_database()"
    " || '@' || coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port')"
    " || ':' || extract(epoch FROM pg_postmaster_start_time())::text)"
)
"""``<database oid>:<name>@<server address>:<port>:<postmaster start epoch>``, readable by any role: what
tells apart the databases a proxy serves, for its caches of their models (the oid tells a dropped and
recreated database of the same name apart; the start time two clusters that look alike from here)."""


async def deployed_model(session: SessionQueries, project: str) -> tuple[str, int]:
    """The database identity and the project's current model id, in one statement."""
    [[found]] = await session.rows(
        f"SELECT {DATABASE_IDENTITY} || '|' || coalesce((SELECT d.model_id::text FROM pgml.deployments d "
        f"JOIN pgml.projects p ON p.id = d.project_id WHERE p.name = {quote(project)} "
        "ORDER BY d.created_at DESC, d.id DESC LIMIT 1), '')"
    )
    assert found is not None
    identity, _, model_id = found.rpartition("|")
    if not model_id:
        raise UndefinedObject(f"No deployed model exists for the project named: `{project}`")
    return identity, int(model_id)


SAMPLINGS: Final = ("random", "last", "stratified")


def dashed(task: str) -> str:
    """A task as output columns spell it (``text-classification``); the catalog keeps underscores."""
    return task if task == "text2text" else task.replace("_", "-")


def enum_error(enum: str, value: str) -> InvalidTextRepresentation:
    return InvalidTextRepresentation(f'invalid input value for enum pgml.{enum}: "{value}"')


def jsonb_literal(value: Any) -> str:
    """A jsonb literal; NaN and infinities (a metric that could not be computed) become null."""

    def finite(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): finite(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [finite(x) for x in v]
        return v

    return f"{quote(json.dumps(finite(value), allow_nan=False))}::jsonb"


def nullable(text: str | None) -> str:
    return "NULL" if text is None else quote(text)


def number(text: str | None) -> float | None:
    return None if text is None else float(text)


def session_of(context: CallContext) -> SessionQueries:
    assert context.session is not None  # the registry runs these only where the session is there
    return context.session


class Catalog:
    """The client's session, seen as the pgml catalog."""

    def __init__(self, session: SessionQueries) -> None:
        self.session = session
        self.busy = False  # a statement is on its way: its answer is still to come

    async def rows(self, sql: str) -> list[list[str | None]]:
        self.busy = True
        found = await self.session.rows(sql)
        self.busy = False
        return found

    async def copy_out(self, sql: str) -> list[bytes]:
        self.busy = True
        found = await self.session.copy_out(sql)
        self.busy = False
        return found

    async def one(self, sql: str) -> list[str | None] | None:
        found = await self.rows(sql)
        return found[0] if found else None

    async def check_installed(self, function: str) -> None:
        [[present]] = await self.rows("SELECT to_regclass('pgml.projects') IS NOT NULL")
        if present != "t":
            raise ObjectNotInPrerequisiteState(
                "the pgml catalog is not installed in this database",
                hint=f"Run CREATE EXTENSION pgml before calling pgml.{function}.",
            )

    @property
    def in_transaction_block(self) -> bool:
        return self.session.in_transaction_block


async def in_one_transaction(catalog: Catalog, work: Any) -> Any:
    """Run ``work()`` in the client's transaction block, or in one of the proxy's (BEGIN … COMMIT) when
    the client has none; a failure then rolls everything back, and the client is told it is idle."""
    if catalog.in_transaction_block:
        return await work()
    await catalog.rows("BEGIN")
    try:
        await catalog.rows(KEEP_OWN_TRANSACTION)
        result = await work()
    except Exception as exc:
        await catalog.rows("ROLLBACK")
        upstream = getattr(exc, "result", None)  # the upstream's own error: its ReadyForQuery said "failed"
        if isinstance(exc, SessionQueryFailed) and upstream is not None:
            upstream.status = IDLE  # the client never was in a transaction block
        raise
    except BaseException:
        # Cancelled: roll back unless a statement's answer is still due (it would be read as ROLLBACK's);
        # then the session's cancellation handling meets an open transaction, as after any interrupted
        # side query.
        if not catalog.busy:
            await catalog.rows("ROLLBACK")
        raise
    await catalog.rows("COMMIT")  # a deferred constraint failing here is the statement's error
    return result
