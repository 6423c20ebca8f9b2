"""Hyperparameter search (contract §4.7): candidates, folds, ranking by mean cross-validation score, refit.

PostgresML keeps the single best (fold, candidate) fit and reports that fold's metrics; the contract fixes
that (§7.2 #3): candidates are ranked by the *mean* fold score of the task's target metric (respecting its
direction), the winner is refitted on the whole training split, and its test-split metrics are stored.

``search`` NULL with ``search_params`` given runs every candidate, as PostgresML does, with the default
``cv = 1`` (each candidate scored on the test split).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from . import metrics

SEARCHES = ("grid", "random")
DEFAULT_N_ITER = 10
DEFAULT_CV = 5


@dataclass(frozen=True)
class SearchPlan:
    """The candidates to fit (each the full hyperparams: fixed ∪ one combination of searched values) and the
    folds; ``searched`` are the ``search_params`` keys in the order given."""

    method: str | None
    candidates: tuple[Mapping[str, Any], ...]
    searched: tuple[str, ...]
    folds: int

    @property
    def fits(self) -> int:
        return len(self.candidates) * self.folds

    @property
    def message(self) -> str:
        """The INFO line PostgresML sends before searching (§4.7)."""
        return f"Hyperparameter searches: {len(self.candidates)}, cross validation folds: {self.folds}"


def plan(
    hyperparams: Mapping[str, Any] | None,
    search: str | None,
    search_params: Mapping[str, Any] | None,
    search_args: Mapping[str, Any] | None,
    *,
    seed: int | np.random.Generator | None = None,
) -> SearchPlan:
    """Check the search arguments (the contract's error texts) and list the candidates."""
    hyperparams = dict(hyperparams or {})
    search_params = dict(search_params or {})
    search_args = dict(search_args or {})
    if search is not None and search not in SEARCHES:
        raise InvalidArgument(f'invalid input value for enum pgml.search: "{search}"')
    unknown = {k: v for k, v in search_args.items() if k not in ("n_iter", "cv")}
    if unknown:
        raise InvalidArgument(
            f"Unknown search_args => {json.dumps(unknown)}; the only search_args are n_iter and cv"
        )
    for key in search_params:
        if key in hyperparams:
            raise InvalidArgument(
                f"`{key}` cannot be present in both hyperparams and search_params. Please choose one or the other."
            )
    for key, values in search_params.items():
        if not isinstance(values, list) or not values:
            raise InvalidArgument(
                f"search_params `{key}` must be a non-empty array of values, got {values!r}"
            )
    n_iter = _positive_int(search_args.get("n_iter", DEFAULT_N_ITER), "n_iter")
    cv = _positive_int(search_args.get("cv", DEFAULT_CV if search is not None else 1), "cv")
    keys = tuple(search_params)
    combinations = [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*search_params.values())
    ]
    if search == "random" and len(combinations) > n_iter:
        rng = np.random.default_rng(seed)
        picked = sorted(rng.choice(len(combinations), size=n_iter, replace=False))
        combinations = [combinations[i] for i in picked]
    candidates = tuple({**hyperparams, **combination} for combination in combinations)
    return SearchPlan(search, candidates, keys, cv)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        raise InvalidArgument(f"search_args {name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FoldScore:
    """One fit of a search, as reported while it runs."""

    candidate: int
    fold: int
    params: Mapping[str, Any]
    metric: str
    score: float | None
    fit_time: float
    score_time: float


@dataclass(frozen=True)
class SearchOutcome:
    """The winner and, when more than one fit ran, ``search_results`` (§4.7 keys) for ``pgml.models.metrics``.

    ``estimator`` is the winner already fitted on the whole training split when that fit happened during the
    search (``cv = 1``), else None (the caller refits).
    """

    best_index: int
    best_params: Mapping[str, Any]
    estimator: Any | None
    results: dict[str, Any] | None


def fold_indices(
    n_rows: int, folds: int, y: np.ndarray | None, *, stratify: bool, seed: int | np.random.Generator | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, validation) folds over the training rows: stratified by label for classification when every
    class has at least K rows, shuffled otherwise."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds > n_rows:
        raise InvalidArgument(f"cv = {folds} folds need at least {folds} training rows, there are {n_rows}")
    random_state = int(np.random.default_rng(seed).integers(2**31 - 1))
    rows = np.zeros((n_rows, 1))
    if stratify and y is not None:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= folds:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
            return list(splitter.split(rows, y))
    return list(KFold(n_splits=folds, shuffle=True, random_state=random_state).split(rows))


def run(
    plan: SearchPlan,
    *,
    fit: Callable[[Mapping[str, Any], np.ndarray, np.ndarray | None], Any],
    score: Callable[[Any, np.ndarray, np.ndarray | None], float | None],
    x_train: np.ndarray,
    y_train: np.ndarray | None,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None,
    metric: str,
    higher_is_better: bool,
    on_fold: Callable[[FoldScore], None] | None = None,
) -> SearchOutcome:
    """Fit and score every candidate on every fold (``folds`` None: on the test split, ``cv = 1``).

    ``fit(params, x, y)`` returns a fitted estimator; ``score(estimator, x, y)`` its target metric.
    """
    n_folds = len(folds) if folds is not None else 1
    scores = np.full((len(plan.candidates), n_folds), np.nan)
    fit_times = np.zeros_like(scores)
    score_times = np.zeros_like(scores)
    kept: dict[int, Any] = {}
    for c, params in enumerate(plan.candidates):
        for f in range(n_folds):
            if folds is None:
                x_fit, y_fit, x_val, y_val = x_train, y_train, x_test, y_test
            else:
                fit_rows, val_rows = folds[f]
                x_fit, x_val = x_train[fit_rows], x_train[val_rows]
                y_fit = None if y_train is None else y_train[fit_rows]
                y_val = None if y_train is None else y_train[val_rows]
            started = time.perf_counter()
            estimator = fit(params, x_fit, y_fit)
            fitted = time.perf_counter()
            value = score(estimator, x_val, y_val)
            fit_times[c, f], score_times[c, f] = fitted - started, time.perf_counter() - fitted
            scores[c, f] = math.nan if value is None else value
            if folds is None:
                kept[c] = estimator
            if on_fold is not None:
                on_fold(FoldScore(c, f, params, metric, value, fit_times[c, f], score_times[c, f]))
    means = np.array([np.nanmean(row) if not np.isnan(row).all() else np.nan for row in scores])
    best = 0
    for c in range(1, len(means)):
        if metrics.is_better(means[c], means[best], higher_is_better):
            best = c
    results = None
    if scores.size > 1:
        results = _results(plan, scores, fit_times, score_times, means, best)
    return SearchOutcome(best, plan.candidates[best], kept.get(best), results)


def _results(
    plan: SearchPlan,
    scores: np.ndarray,
    fit_times: np.ndarray,
    score_times: np.ndarray,
    means: np.ndarray,
    best: int,
) -> dict[str, Any]:
    """``search_results`` with the keys of scikit-learn's ``cv_results_`` that PostgresML stores."""

    def numbers(values: np.ndarray) -> list[float | None]:
        return [None if math.isnan(v) else float(v) for v in values]

    def spread(values: np.ndarray) -> list[float | None]:
        return numbers(np.array([np.nanstd(r) if not np.isnan(r).all() else np.nan for r in values]))

    results: dict[str, Any] = {
        "params": [{k: p[k] for k in plan.searched} for p in plan.candidates],
        "n_splits": int(scores.shape[1]),
        "best_index": int(best),
        "mean_fit_time": numbers(fit_times.mean(axis=1)),
        "std_fit_time": numbers(fit_times.std(axis=1)),
        "mean_score_time": numbers(score_times.mean(axis=1)),
        "std_score_time": numbers(score_times.std(axis=1)),
        "mean_test_score": numbers(means),
        "std_test_score": spread(scores),
    }
    for f in range(scores.shape[1]):
        results[f"split{f}_test_score"] = numbers(scores[:, f])
    for key in plan.searched:
        results[f"param_{key}"] = [p[key] for p in plan.candidates]
    return results
