"""pgml.train, pgml.train_joint, pgml.tune, pgml.snapshot and pgml.deploy (contract §2.1, §3.4–§3.8): the model lifecycle, with its
catalog rows written on the client's own session.

The proxy reads the relation and writes ``pgml.projects``/``snapshots``/``models``/``files``/``deployments``
through the client's session, so the client's permissions hold (a table it may not read fails with the
upstream's 42501) and its transaction holds: inside a transaction block every row is part of it; outside
one, the proxy wraps the whole call in BEGIN … COMMIT (ROLLBACK on any error), so a failure leaves no rows.
The fit itself runs in the engine's training process (:meth:`Engine.train`); its progress messages arrive on
the event loop in this task, where they become the client's INFO/WARNING lines and, for ``prepared``, the
snapshot update and the models row (§2.1 steps 5–6 come before the fit).

The contract types ``algorithm``, ``search``, ``test_sampling``, ``runtime`` and ``strategy`` as pgml enums;
here they are ``text`` (the stubs then need no catalog type), which accepts the same literals through the
proxy. Unknown labels fail with Postgres's enum-input message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pgml_proxy.functions.lifecycle.deploy import deploy, deploy_model
from pgml_proxy.functions.lifecycle.snapshots import snapshot
from pgml_proxy.functions.lifecycle.training import ARTIFACT_PATH, train, train_joint
from pgml_proxy.functions.lifecycle.tuning import tune
from pgml_proxy.functions.registry import Overload
from pgml_proxy.functions.signatures import Column, Parameter, Signature
from pgml_proxy.wire.types import BOOL, TEXT

__all__ = ["ARTIFACT_PATH", "LIFECYCLE"]


def _train_parameters(labels: str) -> tuple[Parameter, ...]:
    return (
        Parameter("project_name", "text"),
        Parameter("task", "text", None),
        Parameter("relation_name", "text", None),
        Parameter("y_column_name", labels, None),
        Parameter("algorithm", "text", "linear"),
        Parameter("hyperparams", "jsonb", {}),
        Parameter("search", "text", None),
        Parameter("search_params", "jsonb", {}),
        Parameter("search_args", "jsonb", {}),
        Parameter("test_size", "real", 0.25),
        Parameter("test_sampling", "text", "stratified"),
        Parameter("runtime", "text", None),
        Parameter("automatic_deploy", "boolean", True),
        Parameter("materialize_snapshot", "boolean", False),
        Parameter("preprocess", "jsonb", {}),
    )


_TRAIN_RESULT: Final = (
    Column("project", TEXT),
    Column("task", TEXT),
    Column("algorithm", TEXT),
    Column("deployed", BOOL),
)
_DEPLOY_RESULT: Final = (Column("project", TEXT), Column("strategy", TEXT), Column("algorithm", TEXT))

LIFECYCLE: Final[Sequence[Overload]] = (
    Overload(
        Signature("train", _train_parameters("text"), _TRAIN_RESULT, set_returning=True, strict=False),
        train,
        uses_session=True,
    ),
    Overload(
        Signature(
            "train_joint", _train_parameters("text[]"), _TRAIN_RESULT, set_returning=True, strict=False
        ),
        train_joint,
        uses_session=True,
    ),
    Overload(
        Signature(
            "deploy",
            (
                Parameter("project_name", "text"),
                Parameter("strategy", "text", "best_score"),
                Parameter("algorithm", "text", None),
            ),
            _DEPLOY_RESULT,
            set_returning=True,
            strict=False,
        ),
        deploy,
        uses_session=True,
    ),
    Overload(
        Signature("deploy", (Parameter("model_id", "bigint"),), _DEPLOY_RESULT, set_returning=True),
        deploy_model,
        uses_session=True,
    ),
    Overload(
        Signature(
            "snapshot",
            (
                Parameter("relation_name", "text"),
                Parameter("y_column_name", "text"),
                Parameter("test_size", "real", 0.25),
                Parameter("test_sampling", "text", "stratified"),
                Parameter("preprocess", "jsonb", {}),
            ),
            (Column("relation", TEXT), Column("y_column_name", TEXT)),
            set_returning=True,
        ),
        snapshot,
        uses_session=True,
    ),
    Overload(
        Signature(
            "tune",
            (
                Parameter("project_name", "text"),
                Parameter("task", "text", None),
                Parameter("relation_name", "text", None),
                Parameter("y_column_name", "text", None),
                Parameter("model_name", "text", None),
                Parameter("hyperparams", "jsonb", {}),
                Parameter("test_size", "real", 0.25),
                Parameter("test_sampling", "text", "stratified"),
                Parameter("automatic_deploy", "boolean", True),
                Parameter("materialize_snapshot", "boolean", False),
            ),
            _TRAIN_RESULT,  # PostgresML names the first column status; the contract fixes it to project
            set_returning=True,
            strict=False,
        ),
        tune,
        uses_session=True,
    ),
)
"""The model lifecycle's overloads, for the registry."""
