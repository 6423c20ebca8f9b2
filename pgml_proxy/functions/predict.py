"""pgml.predict, predict_proba, predict_joint, predict_batch and decompose (contract §2.2, §6.2).

Every call batch reads the client's session, never writes it: per distinct project one one-column SELECT
finds the newest deployment's model id (so a new deployment is seen from the next statement, by every
session and every proxy), and, on a cache miss only, one more reads the artifact from ``pgml.files``. The
loaded model is cached in the engine by (database identity, model id): a model id never changes its artifact.

The database identity (:data:`~pgml_proxy.functions.lifecycle.catalog.DATABASE_IDENTITY`) avoids
``pg_control_system()``'s system identifier, which needs pg_monitor or superuser; the postmaster's start time
in it costs a reload after a restart.

A call whose first argument is a constant is looked up once, before the statement's rows stream (its
model preloaded), so the session is free for the rows and predictions are spliced into them in batches.

The ``"row" anyelement`` forms take a record whose fields map by position onto the snapshot's feature
columns and go through its preprocessing (encode, impute, scale) as in training.
"""

from __future__ import annotations

import base64
import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
from pgml_engines import classical

from pgml_proxy.errors import InvalidParameterValue, UndefinedObject
from pgml_proxy.functions.lifecycle import ARTIFACT_PATH
from pgml_proxy.functions.lifecycle.catalog import DATABASE_IDENTITY, deployed_model
from pgml_proxy.functions.lifecycle.snapshots import field_value
from pgml_proxy.functions.registry import CallContext, Implementation, Overload, SessionQueries
from pgml_proxy.functions.signatures import ANY_ELEMENT, Parameter, Signature
from pgml_proxy.sql.literals import quote
from pgml_proxy.wire.types import FLOAT4, FLOAT4_ARRAY, PgType

_FEATURE_TYPES: Final = ("real[]", "double precision[]", "smallint[]", "integer[]", "bigint[]", "boolean[]")


async def _model(context: CallContext, identity: str, model_id: int) -> classical.ClassicalModel:
    """The model with its snapshot's columns (the row form's preprocessing), when the snapshot is kept."""
    session = _session(context)

    async def fetch() -> bytes:
        parts = await session.rows(
            f"SELECT encode(data, 'base64') FROM pgml.files WHERE model_id = {model_id} "
            f"AND path = {quote(ARTIFACT_PATH)} ORDER BY part"
        )
        if not parts:
            raise UndefinedObject(f"No model with id {model_id} exists (or it has no stored artifact)")
        return b"".join(base64.b64decode(part or "") for (part,) in parts)

    async def columns() -> list[dict[str, Any]]:
        found = await session.rows(
            "SELECT s.columns::text FROM pgml.models m JOIN pgml.snapshots s ON s.id = m.snapshot_id "
            f"WHERE m.id = {model_id}"
        )
        return json.loads(found[0][0] or "null") or [] if found else []

    return await context.engine.classical_model((identity, model_id), fetch, columns)


def _session(context: CallContext) -> SessionQueries:
    assert context.session is not None  # the registry runs reads_session overloads only with one
    return context.session


async def _load(context: CallContext, target: Any, by_project: bool) -> classical.ClassicalModel:
    """The model a project name (its deployment) or a model id stands for."""
    session = _session(context)
    if by_project:
        identity, model_id = await deployed_model(session, str(target))
    else:
        [[found]] = await session.rows(f"SELECT {DATABASE_IDENTITY}")
        assert found is not None
        identity, model_id = found, int(target)
    return await _model(context, identity, model_id)


async def _preload_by_project(context: CallContext, project: Any) -> classical.ClassicalModel:
    return await _load(context, project, True)


async def _preload_by_id(context: CallContext, model_id: Any) -> classical.ClassicalModel:
    return await _load(context, model_id, False)


async def _models(
    context: CallContext, calls: list[tuple[Any, ...]], by_project: bool
) -> dict[Any, classical.ClassicalModel]:
    """The model of every distinct first argument (a project name or a model id), each resolved once;
    while rows stream, the one model looked up before they began (the first argument is a constant)."""
    if context.preloaded is not None:
        return {call[0]: context.preloaded.loaded for call in calls}
    return {target: await _load(context, target, by_project) for target in dict.fromkeys(c[0] for c in calls)}


def _floats(values: Any) -> list[float]:
    """An array argument as floats, flattened: NULL → NaN, booleans → 1/0, 'NaN'/'Infinity' texts read."""
    out: list[float] = []
    for value in values:
        if isinstance(value, list):
            out += _floats(value)
        elif value is None:
            out.append(math.nan)
        else:
            out.append(float(value))
    return out


def _checked(model: classical.ClassicalModel, features: list[float]) -> list[float]:
    if len(features) != model.num_features:
        raise InvalidParameterValue(
            f"wrong number of features: the model expects {model.num_features}, got {len(features)}"
        )
    return features


def _matrix(model: classical.ClassicalModel, arrays: list[Any]) -> np.ndarray:
    """The calls' feature arrays as one float32 matrix, in one conversion when they are flat and of one
    length (as a table's rows are), else row by row (nested arrays flattened, the count checked)."""
    try:
        matrix = np.asarray(arrays, dtype=np.float32)
    except (TypeError, ValueError):  # ragged
        matrix = None
    if matrix is None or matrix.ndim != 2 or matrix.shape[1] != model.num_features:
        matrix = np.asarray([_checked(model, _floats(array)) for array in arrays], dtype=np.float32)
    return matrix


def _records(model: classical.ClassicalModel, values: list[Any]) -> list[list[Any]]:
    """The row form's records, their fields in feature-column order and typed by those columns."""
    if model.preprocessing is None or not model.preprocessing.feature_columns:
        raise InvalidParameterValue(
            f"model {model.algorithm} has no snapshot columns, which the row form needs; pass an array"
        )
    features = [c for c in model.preprocessing.to_json() if not c.get("label")]
    return [_record(value, features) for value in values]


def _record(value: Any, features: list[dict[str, Any]]) -> list[Any]:
    """One row argument: a record's fields by position (texts from a text row, typed from a binary one), or
    a composite read as jsonb (a folded constant: ``f1``, ``f2``, … for ``ROW(…)``, else by column name)."""
    if isinstance(value, dict):
        positional = [f"f{n}" for n in range(1, len(value) + 1)]
        if set(value) == set(positional):
            value = [value[key] for key in positional]
        else:
            missing = [c["name"] for c in features if c["name"] not in value]
            if missing:
                raise InvalidParameterValue(f'the row has no field named "{missing[0]}", a feature column')
            value = [value[c["name"]] for c in features]
    if not isinstance(value, list):
        raise InvalidParameterValue(
            "This preprocessing requires Postgres `record` types created with `row()`."
        )
    if len(value) != len(features):
        names = ", ".join(c["name"] for c in features)
        raise InvalidParameterValue(
            f"the row has {len(value)} fields; the model's features are {len(features)}: {names}"
        )
    try:
        return [
            field_value(c["pg_type"], v) if isinstance(v, str) else v
            for v, c in zip(value, features, strict=True)
        ]
    except ValueError as exc:
        raise InvalidParameterValue(f"a row field does not fit its feature column's type: {exc}") from None


Inputs = Callable[[classical.ClassicalModel, list[Any]], Any]
"""A model's calls' second arguments as what the engine function takes: a matrix, or records."""


def _per_row(function: str, by_project: bool, inputs: Inputs = _matrix) -> Implementation:
    """One feature vector (or record) per call: the calls of each model go to it as one matrix."""

    async def run(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
        models = await _models(context, calls, by_project)
        groups: dict[Any, list[int]] = defaultdict(list)
        for index, call in enumerate(calls):
            groups[call[0]].append(index)
        results: list[Any] = [None] * len(calls)
        for target, indexes in groups.items():
            model = models[target]
            features = inputs(model, [calls[i][1] for i in indexes])
            out = await context.engine.classical_predict(model, function, features)
            for index, value in zip(indexes, np.asarray(out).tolist(), strict=True):
                results[index] = value
        return results

    return run


def _batch(by_project: bool) -> Implementation:
    """predict_batch: each call's array is many rows concatenated; one prediction per row."""

    async def run(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
        models = await _models(context, calls, by_project)
        results = []
        for target, features in calls:
            out = await context.engine.classical_predict(models[target], "predict", _floats(features))
            results.append(np.asarray(out).tolist())
        return results

    return run


def _overload(
    function: str, first: Parameter, feature_type: str, returns: PgType, run: Implementation, **kw: Any
) -> Overload:
    """``run`` is told by ``first`` whether its first argument names a project or a model id."""
    name = "row" if feature_type == ANY_ELEMENT else "vector" if function == "decompose" else "features"
    second = Parameter(name, feature_type)
    preload = _preload_by_project if first is _PROJECT else _preload_by_id
    return Overload(
        Signature(function, (first, second), returns, **kw), run, reads_session=True, preload=preload
    )


_PROJECT: Final = Parameter("project_name", "text")
_MODEL_ID: Final = Parameter("model_id", "bigint")

PREDICT: Final[Sequence[Overload]] = (
    *(_overload("predict", _PROJECT, t, FLOAT4, _per_row("predict", True)) for t in _FEATURE_TYPES),
    _overload("predict", _PROJECT, ANY_ELEMENT, FLOAT4, _per_row("predict_rows", True, _records)),
    _overload("predict", _MODEL_ID, "real[]", FLOAT4, _per_row("predict", False)),
    _overload("predict", _MODEL_ID, ANY_ELEMENT, FLOAT4, _per_row("predict_rows", False, _records)),
    *(
        _overload(function, first, "real[]", FLOAT4_ARRAY, _per_row(function, first is _PROJECT))
        for function in ("predict_proba", "predict_joint")
        for first in (_PROJECT, _MODEL_ID)
    ),
    _overload("predict_batch", _PROJECT, "real[]", FLOAT4, _batch(True), set_returning=True),
    _overload("predict_batch", _MODEL_ID, "real[]", FLOAT4_ARRAY, _batch(False)),
    _overload("decompose", _PROJECT, "real[]", FLOAT4_ARRAY, _per_row("decompose", True)),
)
