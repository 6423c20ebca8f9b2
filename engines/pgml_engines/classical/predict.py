"""Prediction with a trained classical model (contract §2.2): load once, then answer whole batches.

A :class:`ClassicalModel` is immutable after :func:`load_model` and holds one copy of the estimator; the proxy
keeps one per model id per process and calls these functions from its worker threads with batches gathered
across sessions. Every function takes a 2-D ``(rows, num_features)`` array (a 1-D one is one row) and runs the
estimator in slices of :data:`BATCH_ROWS` rows, so a huge ``predict_batch`` never needs the library's
intermediate buffers for all rows at once.

Array forms feed raw values (no preprocessing, §2.2 **keep**); the row form goes through the snapshot's
preprocessing first (:func:`rows_to_features`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from . import artifacts
from .data import Preprocessing

BATCH_ROWS = 65_536


@dataclass(frozen=True, eq=False)
class ClassicalModel:
    """A loaded model: the estimator, its task and classes, and (for the row form) the snapshot's
    preprocessing."""

    task: str
    algorithm: str
    num_features: int
    n_targets: int
    classes: np.ndarray | None
    estimator: Any
    preprocessing: Preprocessing | None = None


def load_model(
    artifact: bytes, columns: Sequence[Mapping[str, Any]] | None = None, *, key: bytes | None = None
) -> ClassicalModel:
    """Load ``pgml.files`` bytes (checked, :func:`artifacts.unpack`; ``key``: require its signature);
    ``columns`` are the snapshot's column objects, needed only for row-form predictions."""
    unpacked = artifacts.unpack(artifact, key=key)
    preprocessing = None
    if columns is not None:
        preprocessing = Preprocessing(columns)
        if preprocessing.num_features != unpacked.num_features:
            raise InvalidArgument(
                f"the snapshot's columns make {preprocessing.num_features} features, the model was trained on "
                f"{unpacked.num_features}"
            )
    return ClassicalModel(
        task=unpacked.task,
        algorithm=unpacked.algorithm,
        num_features=unpacked.num_features,
        n_targets=unpacked.n_targets,
        classes=None if unpacked.classes is None else np.asarray(unpacked.classes, dtype=np.float64),
        estimator=unpacked.estimator,
        preprocessing=preprocessing,
    )


def as_rows(model: ClassicalModel, features: Any) -> np.ndarray:
    """A float32 ``(rows, num_features)`` array from one row, several rows, or rows concatenated flat
    (``predict_batch``); NULL (None) elements become NaN. A wrong size names the expected count."""
    values = np.asarray(_nan_for_none(features), dtype=np.float32)
    if values.ndim == 2:
        if values.shape[1] != model.num_features:
            raise InvalidArgument(
                f"wrong number of features: the model expects {model.num_features}, got {values.shape[1]}"
            )
        return values
    flat = values.ravel()
    if flat.size == 0 or flat.size % model.num_features:
        if flat.size > model.num_features:
            raise InvalidArgument(
                f"{flat.size} features is not a multiple of the model's {model.num_features} features per row"
            )
        raise InvalidArgument(
            f"wrong number of features: the model expects {model.num_features}, got {flat.size}"
        )
    return flat.reshape(-1, model.num_features)


def rows_to_features(model: ClassicalModel, rows: Iterable[Sequence[Any]]) -> np.ndarray:
    """Row form: each record's fields (in feature-column order) encoded, imputed and scaled as in training."""
    if model.preprocessing is None:
        raise InvalidArgument("this model was loaded without its snapshot's columns; the row form needs them")
    return model.preprocessing.transform_rows(rows)


def predict(model: ClassicalModel, features: Any) -> np.ndarray:
    """One float32 per row: the value (regression), the label value (classification; TEXT labels: the code),
    the cluster (clustering), or the first component (decomposition)."""
    x = as_rows(model, features)
    if model.task == "classification":
        assert model.classes is not None
        classes = model.classes

        def labels(chunk: np.ndarray) -> np.ndarray:
            indices = np.asarray(model.estimator.predict(chunk)).astype(np.int64).ravel()
            return classes[indices]

        return _batched(labels, x).astype(np.float32)
    if model.task == "decomposition":
        return _batched(lambda chunk: model.estimator.transform(chunk)[:, 0], x).astype(np.float32)
    if model.task == "regression" and model.n_targets > 1:
        return predict_joint(model, x)[:, 0]
    return _batched(lambda chunk: np.asarray(model.estimator.predict(chunk)).ravel(), x).astype(np.float32)


def predict_rows(model: ClassicalModel, rows: Iterable[Sequence[Any]]) -> np.ndarray:
    """:func:`predict` of records, through the snapshot's preprocessing (:func:`rows_to_features`)."""
    return predict(model, rows_to_features(model, rows))


def predict_proba(model: ClassicalModel, features: Any) -> np.ndarray:
    """``(rows, classes)`` probabilities, classes in sorted label order."""
    if model.task != "classification":
        raise InvalidArgument("You can't predict probabilities for a regression model")
    if not hasattr(model.estimator, "predict_proba"):
        raise InvalidArgument(
            f"{model.algorithm} does not predict probabilities with these hyperparams (for svm, set "
            '"probability": true)'
        )
    x = as_rows(model, features)
    return _batched(lambda chunk: np.asarray(model.estimator.predict_proba(chunk)), x).astype(np.float32)


def predict_joint(model: ClassicalModel, features: Any) -> np.ndarray:
    """``(rows, label columns)``: one value per label column, in ``y_column_name`` order (regression only)."""
    if model.task == "classification":
        raise InvalidArgument("You can't predict joint probabilities for a classification model")
    if model.task != "regression":
        raise InvalidArgument(f"predict_joint needs a regression model, this one is {model.task}")
    x = as_rows(model, features)
    out = _batched(lambda chunk: np.asarray(model.estimator.predict(chunk)).reshape(len(chunk), -1), x)
    return out.astype(np.float32)


def decompose(model: ClassicalModel, features: Any) -> np.ndarray:
    """``(rows, components)``: every component of a decomposition model."""
    if model.task != "decomposition":
        raise InvalidArgument(f"decompose needs a decomposition model, this one is {model.task}")
    x = as_rows(model, features)
    return _batched(lambda chunk: np.asarray(model.estimator.transform(chunk)), x).astype(np.float32)


def _batched(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    if len(x) <= BATCH_ROWS:
        return np.asarray(run(x))
    return np.concatenate([np.asarray(run(x[i : i + BATCH_ROWS])) for i in range(0, len(x), BATCH_ROWS)])


def _nan_for_none(features: Any) -> Any:
    if isinstance(features, np.ndarray):
        return features
    if isinstance(features, list | tuple):
        if any(isinstance(v, list | tuple) for v in features):
            return [_nan_for_none(v) for v in features]
        return [np.nan if v is None else v for v in features]
    return features
