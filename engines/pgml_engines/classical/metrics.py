"""The metrics stored in ``pgml.models.metrics`` (contract §4.4), computed the contract's way.

Two fixes over PostgresML (§7.2 #4, #5): ``roc_auc`` and ``log_loss`` come from predicted probabilities (the
decision function for estimators without ``predict_proba``), not from hard labels; ``mcc`` is scikit-learn's.
TEXT labels count only real classes (§7.2 #7): a test row whose label never occurred in training has index −1
and can only be a miss; f1, precision and recall average over the training classes.

Classifiers here are always fitted on class *indices* ``0..K−1`` (the sorted label values), which XGBoost
requires and which makes every library's output line up; ``known`` says which indices a fitted estimator saw
(all of them, except in a cross-validation fold that lacked a class).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

#: task → (target metric, higher is better), as automatic deployment and search rank models (§3.7, §4.7).
TARGETS: Mapping[str, tuple[str, bool]] = {
    "regression": ("r2", True),
    "classification": ("f1", True),
    "clustering": ("silhouette", True),
    "decomposition": ("cumulative_explained_variance", True),
}


def target_metric(task: str) -> tuple[str, bool]:
    return TARGETS[task]


def is_better(candidate: float | None, incumbent: float | None, higher_is_better: bool) -> bool:
    """Whether ``candidate`` beats ``incumbent`` strictly; a missing (None/NaN) score never wins."""
    if candidate is None or math.isnan(candidate):
        return False
    if incumbent is None or math.isnan(incumbent):
        return True
    return candidate > incumbent if higher_is_better else candidate < incumbent


def regression(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(np.shape(y_true))
    r2 = r2_score(y_true, y_pred) if len(y_true) >= 2 else math.nan
    return {
        "r2": _number(r2),
        "mean_absolute_error": _number(mean_absolute_error(y_true, y_pred)),
        "mean_squared_error": _number(mean_squared_error(y_true, y_pred)),
    }


def classification(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    *,
    positive: int,
    probabilities: np.ndarray | None = None,
    decision: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Metrics over class indices; ``positive`` is the index of the positive class (binary averaging).

    ``probabilities``: (n, K) in index order; ``decision``: the binary decision function (> 0 means index 1).
    """
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        log_loss,
        matthews_corrcoef,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = [positive] if n_classes == 2 else list(range(n_classes))
    averaged = {"labels": labels, "average": "macro", "zero_division": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined precision for absent classes, a single-class test split
        metrics: dict[str, float | None] = {
            "f1": _number(f1_score(y_true, y_pred, **averaged)),
            "precision": _number(precision_score(y_true, y_pred, **averaged)),
            "recall": _number(recall_score(y_true, y_pred, **averaged)),
            "accuracy": _number(accuracy_score(y_true, y_pred)),
            "mcc": _number(matthews_corrcoef(y_true, y_pred)),
        }
    if n_classes != 2:
        return metrics
    known = y_true >= 0
    truth = y_true[known]
    if probabilities is None and decision is not None:
        p1 = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(decision, dtype=np.float64), -500, 500)))
        probabilities = np.column_stack([1.0 - p1, p1])
    if probabilities is None or truth.size == 0 or np.unique(truth).size < 2:
        metrics["roc_auc"] = None
        metrics["log_loss"] = None
        return metrics
    probabilities = np.asarray(probabilities, dtype=np.float64)[known]
    score = (
        decision[known] * (1 if positive == 1 else -1) if decision is not None else probabilities[:, positive]
    )
    metrics["roc_auc"] = _number(roc_auc_score(truth == positive, score))
    clipped = np.clip(probabilities, 1e-15, 1.0)  # float32 libraries' rows sum to 1 only roughly
    metrics["log_loss"] = _number(
        log_loss(truth, clipped / clipped.sum(axis=1, keepdims=True), labels=[0, 1])
    )
    return metrics


def clustering(x: np.ndarray, clusters: np.ndarray) -> dict[str, float | None]:
    """Silhouette of the test features against their predicted clusters; null where it is undefined (fewer
    than two clusters, or as many clusters as rows)."""
    from sklearn.metrics import silhouette_score

    found = np.unique(clusters).size
    if found < 2 or found > len(x) - 1:
        return {"silhouette": None}
    return {"silhouette": _number(silhouette_score(x, clusters))}


def decomposition(estimator: Any) -> dict[str, float | None]:
    return {"cumulative_explained_variance": _number(float(np.sum(estimator.explained_variance_ratio_)))}


def classifier_outputs(
    estimator: Any, x: np.ndarray, n_classes: int, known: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(predicted indices, (n, K) probabilities or None, binary decision function or None).

    ``known``: the class indices the estimator was fitted on, in the order of its own outputs.
    """
    known = np.arange(n_classes) if known is None else known
    predicted = known[np.asarray(estimator.predict(x)).astype(np.int64).ravel()]
    probabilities = None
    decision = None
    if hasattr(estimator, "predict_proba"):
        own = np.asarray(estimator.predict_proba(x), dtype=np.float64)
        probabilities = np.zeros((len(x), n_classes))
        probabilities[:, known] = own
    elif hasattr(estimator, "decision_function") and n_classes == 2 and len(known) == 2:
        decision = np.asarray(estimator.decision_function(x), dtype=np.float64).ravel()
    return predicted, probabilities, decision


def evaluate(
    task: str,
    estimator: Any,
    x: np.ndarray,
    y: np.ndarray | None,
    *,
    n_classes: int = 0,
    positive: int = 1,
    known: np.ndarray | None = None,
) -> dict[str, float | None]:
    """The task's metrics of a fitted estimator on (x, y), plus ``score_time`` (predicting and scoring)."""
    started = time.perf_counter()
    if task == "regression":
        metrics = regression(y, estimator.predict(x))
    elif task == "classification":
        predicted, probabilities, decision = classifier_outputs(estimator, x, n_classes, known)
        metrics = classification(
            y, predicted, n_classes, positive=positive, probabilities=probabilities, decision=decision
        )
    elif task == "clustering":
        metrics = clustering(x, np.asarray(estimator.predict(x)))
    elif task == "decomposition":
        metrics = decomposition(estimator)
    else:
        raise ValueError(f"no metrics for task {task!r}")
    metrics["score_time"] = time.perf_counter() - started
    return metrics


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
