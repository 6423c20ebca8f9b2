"""One ``pgml.train``/``pgml.train_joint`` run, from columns to metrics and an artifact, with no SQL and no I/O.

The order is the contract's (§2.1 steps 3, 5, 7): check the algorithm, task, runtime and search arguments;
split (§3.6); fit the preprocessing on the training rows and compute the column statistics (§3.1, §4.6); fit,
with search and cross-validation when asked (§4.7); score the test split (§4.4); serialise (artifacts).

This runs in a training process (:mod:`.worker`); what the client should hear while it runs goes out through
``progress`` as :class:`TrainingProgress` messages, in order. The proxy turns them into INFO/WARNING messages
and catalog writes (``prepared`` carries what the snapshot row needs before the model row is inserted).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from . import algorithms, artifacts, data, metrics, search, split

SUPERVISED = ("regression", "classification")
#: Library warnings (a solver that did not converge, ...) passed on to the client, at most this many.
MAX_WARNINGS = 5


@dataclass(frozen=True, kw_only=True)
class TrainRequest:
    """The arguments of ``pgml.train`` (§2.1) after the proxy resolved the project and read the relation.

    task: underscore spelling (``classification``); columns: the relation's columns in table order (labels
    included); y_column_names: the label columns (several: joint regression; ignored by unsupervised tasks
    except that they are not features). seed: fixes shuffles, fold assignment and random search (None: fresh
    randomness, as PostgresML).
    """

    task: str
    columns: Sequence[data.ColumnData]
    y_column_names: Sequence[str] = ()
    algorithm: str = "linear"
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    search: str | None = None
    search_params: Mapping[str, Any] = field(default_factory=dict)
    search_args: Mapping[str, Any] = field(default_factory=dict)
    test_size: float = 0.25
    test_sampling: str = "stratified"
    runtime: str | None = None
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True)
class TrainingProgress:
    """One message from a running training, in order.

    event: ``prepared`` (data: samples, train_rows, test_rows, num_features, columns), ``search`` (message is
    the contract's INFO text; data: candidates, folds), ``fold`` (data: candidate, fold, params, metric,
    score, fit_time), ``warning`` (a library warning, message only), ``metrics`` (data: metrics).
    message: a line for the client, or "" when the event has none.
    """

    event: str
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[TrainingProgress], None]


@dataclass(frozen=True, kw_only=True)
class TrainingPlan:
    """A request checked before any data is read (§2.1 step 3): the effective algorithm, the runtime recorded in
    ``pgml.models``, and the search to run."""

    task: str
    algorithm: str
    runtime: str
    search: search.SearchPlan


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What the proxy writes to the catalog after a successful training.

    hyperparams: fixed ∪ winning values, as the user spelled them (``pgml.models.hyperparams``); metrics: §4.4
    keys (+ ``search_results``); columns and analysis: ``pgml.snapshots.columns`` / ``analysis``; artifact: the
    bytes of ``pgml.files`` (``estimator.rmp``), in ``artifact_format`` inside the envelope of
    :mod:`.artifacts`; classes: classification label values in class order (TEXT labels: their codes).
    """

    task: str
    algorithm: str
    runtime: str
    hyperparams: dict[str, Any]
    metrics: dict[str, Any]
    num_features: int
    columns: list[dict[str, Any]]
    analysis: dict[str, Any]
    artifact: bytes
    artifact_format: str
    classes: tuple[float, ...] | None
    train_rows: int
    test_rows: int


def plan_training(
    task: str,
    algorithm: str | None = "linear",
    *,
    y_column_names: Sequence[str] = (),
    hyperparams: Mapping[str, Any] | None = None,
    search_method: str | None = None,
    search_params: Mapping[str, Any] | None = None,
    search_args: Mapping[str, Any] | None = None,
    runtime: str | None = None,
    seed: int | np.random.Generator | None = None,
) -> TrainingPlan:
    """Check a training request without reading data or importing an ML library (the proxy calls this before
    it snapshots, so the errors come in the contract's order)."""
    if hyperparams is not None and not isinstance(hyperparams, Mapping):
        raise InvalidArgument("hyperparams must be a JSON object")
    resolved = algorithms.resolve(algorithm, task, runtime=runtime, n_targets=len(y_column_names))
    plan = search.plan(hyperparams, search_method, search_params, search_args, seed=seed)
    return TrainingPlan(task=task, algorithm=resolved.algorithm, runtime=resolved.runtime, search=plan)


@dataclass
class _Fitted:
    estimator: Any
    known: np.ndarray | None  # classification: the class indices the estimator saw, in its output order
    fit_time: float


def train(request: TrainRequest, progress: ProgressFn | None = None) -> TrainResult:
    """Run one training to the end; errors are :mod:`pgml_engines.errors` classes (library errors translated
    by the caller, :mod:`.worker`)."""
    report = progress or (lambda _message: None)
    task = request.task
    y_names = list(request.y_column_names)
    rng = np.random.default_rng(request.seed)
    plan = plan_training(
        task,
        request.algorithm,
        y_column_names=y_names,
        hyperparams=request.hyperparams,
        search_method=request.search,
        search_params=request.search_params,
        search_args=request.search_args,
        runtime=request.runtime,
        seed=rng,
    )
    resolved = algorithms.resolve(plan.algorithm, task, runtime=plan.runtime, n_targets=len(y_names))
    for candidate in plan.search.candidates:
        algorithms.make_estimator(resolved, candidate)  # unknown hyperparams fail before any work

    table = data.Table(request.columns)
    data.check_labels(table, y_names)
    stratify = task == "classification" and len(y_names) == 1
    parts = split.split(
        table.n_rows,
        request.test_size,
        request.test_sampling,
        labels=np.asarray(table.column(y_names[0]).values) if stratify else None,
        stratify=stratify,
        seed=rng,
    )
    prepared = data.prepare(table, y_names, task, request.preprocess, parts.train, parts.test)
    report(
        TrainingProgress(
            "prepared",
            data={
                "samples": prepared.samples,
                "train_rows": len(parts.train),
                "test_rows": len(parts.test),
                "num_features": prepared.num_features,
                "columns": prepared.columns,
            },
        )
    )

    classes: np.ndarray | None = None
    y_fit, y_eval = prepared.y_train, prepared.y_test
    positive = 1
    if task == "classification":
        classes = np.unique(prepared.y_train)
        y_fit = np.searchsorted(classes, prepared.y_train)
        y_eval = _class_indices(classes, prepared.y_test)
        positive = int(np.flatnonzero(classes == 1.0)[0]) if 1.0 in classes else len(classes) - 1
    n_classes = 0 if classes is None else len(classes)
    metric, higher_is_better = metrics.target_metric(task)
    caught: list[str] = []

    def fit(params: Mapping[str, Any], x: np.ndarray, y: np.ndarray | None) -> _Fitted:
        estimator = algorithms.make_estimator(resolved, params)
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            known = None
            if task == "classification":
                known = np.unique(y)
                estimator.fit(x, np.searchsorted(known, y))
            elif task == "regression":
                estimator.fit(x, y)
            else:
                estimator.fit(x)
        for warning in seen:
            if issubclass(warning.category, DeprecationWarning | PendingDeprecationWarning | FutureWarning):
                continue  # about how this package calls the libraries, nothing the user can act on
            text = f"{warning.category.__name__}: {warning.message}"
            if text not in caught:
                caught.append(text)
                if len(caught) <= MAX_WARNINGS:
                    report(TrainingProgress("warning", text))
        return _Fitted(estimator, known, time.perf_counter() - started)

    def score(fitted: _Fitted, x: np.ndarray, y: np.ndarray | None) -> float | None:
        found = metrics.evaluate(
            task, fitted.estimator, x, y, n_classes=n_classes, positive=positive, known=fitted.known
        )
        return found[metric]

    folds = None
    if plan.search.folds > 1:
        folds = search.fold_indices(
            len(prepared.x_train), plan.search.folds, y_fit, stratify=task == "classification", seed=rng
        )
    if plan.search.fits > 1:
        report(
            TrainingProgress(
                "search",
                plan.search.message,
                {"candidates": len(plan.search.candidates), "folds": plan.search.folds},
            )
        )

    def on_fold(fold: search.FoldScore) -> None:
        shown = "null" if fold.score is None else f"{fold.score:.6g}"
        report(
            TrainingProgress(
                "fold",
                f"candidate {fold.candidate + 1}/{len(plan.search.candidates)}, fold {fold.fold + 1}/"
                f"{plan.search.folds}: {fold.metric} = {shown}",
                {
                    "candidate": fold.candidate,
                    "fold": fold.fold,
                    "params": dict(fold.params),
                    "metric": fold.metric,
                    "score": fold.score,
                    "fit_time": fold.fit_time,
                },
            )
        )

    if plan.search.fits > 1:
        outcome = search.run(
            plan.search,
            fit=fit,
            score=score,
            x_train=prepared.x_train,
            y_train=y_fit,
            x_test=prepared.x_test,
            y_test=y_eval,
            folds=folds,
            metric=metric,
            higher_is_better=higher_is_better,
            on_fold=on_fold,
        )
        best_params, final, results = outcome.best_params, outcome.estimator, outcome.results
    else:
        best_params, final, results = plan.search.candidates[0], None, None
    if final is None:
        final = fit(best_params, prepared.x_train, y_fit)

    found = metrics.evaluate(
        task,
        final.estimator,
        prepared.x_test,
        y_eval,
        n_classes=n_classes,
        positive=positive,
        known=final.known,
    )
    found["fit_time"] = final.fit_time
    if results is not None:
        found["search_results"] = results
    report(TrainingProgress("metrics", data={"metrics": found}))

    model = artifacts.ModelArtifact(
        task=task,
        algorithm=plan.algorithm,
        num_features=prepared.num_features,
        n_targets=len(y_names) if task in SUPERVISED else 0,
        classes=None if classes is None else tuple(float(c) for c in classes),
        estimator=final.estimator,
    )
    packed = artifacts.pack(model)
    header, _ = artifacts.read_header(packed)
    return TrainResult(
        task=task,
        algorithm=plan.algorithm,
        runtime=plan.runtime,
        hyperparams=dict(best_params),
        metrics=found,
        num_features=prepared.num_features,
        columns=prepared.columns,
        analysis={"samples": prepared.samples},
        artifact=packed,
        artifact_format=header["format"],
        classes=model.classes,
        train_rows=len(parts.train),
        test_rows=len(parts.test),
    )


def _class_indices(classes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in ``classes``, −1 for a value not among them (a label seen only in testing)."""
    position = np.clip(np.searchsorted(classes, values), 0, len(classes) - 1)
    return np.where(classes[position] == values, position, -1)
