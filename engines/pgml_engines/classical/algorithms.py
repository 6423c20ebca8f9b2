"""Which estimator each ``pgml.algorithm`` builds for each task (contract §4.1–§4.3), and how hyperparams reach it.

The table is data (``"module:Class"`` strings), so checking a request (``resolve``) imports no ML library: the
proxy checks algorithm, task and runtime before it snapshots anything, in the order §2.1 fixes for messages.
Estimators are only built in the training process.

``hyperparams`` go verbatim to the constructor, with three exceptions, all for running inside a server:
- XGBoost's aliases (§4.2) are renamed to the scikit-learn wrapper's names;
- LightGBM and CatBoost are made quiet (``verbose=-1``; ``verbose=False``) unless the caller set their
  verbosity, and CatBoost writes no ``catboost_info`` folder into the working directory
  (``allow_writing_files=False``) unless asked to;
- CatBoost regression on several label columns gets ``loss_function="MultiRMSE"`` unless one is given (its
  default loss takes one target).
These defaults are not written into the model's stored hyperparams.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument

#: Tasks this package trains; the text tasks belong to ``pgml.tune``.
CLASSICAL_TASKS = ("regression", "classification", "clustering", "decomposition")
TEXT_TASKS = (
    "question_answering",
    "summarization",
    "translation",
    "text_classification",
    "text_generation",
    "text2text",
    "embedding",
    "text_pair_classification",
    "conversation",
)

#: ``pgml.algorithm`` in declaration order (§3.3), plus ``agglomerative`` that upgraded catalogs may carry.
ALGORITHMS = (
    "linear",
    "xgboost",
    "xgboost_random_forest",
    "svm",
    "lasso",
    "elastic_net",
    "ridge",
    "kmeans",
    "dbscan",
    "knn",
    "random_forest",
    "least_angle",
    "lasso_least_angle",
    "orthogonal_matching_pursuit",
    "bayesian_ridge",
    "automatic_relevance_determination",
    "stochastic_gradient_descent",
    "perceptron",
    "passive_aggressive",
    "ransac",
    "theil_sen",
    "huber",
    "quantile",
    "kernel_ridge",
    "gaussian_process",
    "nu_svm",
    "ada_boost",
    "bagging",
    "extra_trees",
    "gradient_boosting_trees",
    "hist_gradient_boosting",
    "linear_svm",
    "lightgbm",
    "transformers",
    "affinity_propagation",
    "birch",
    "feature_agglomeration",
    "mini_batch_kmeans",
    "mean_shift",
    "optics",
    "spectral",
    "spectral_bi",
    "spectral_co",
    "catboost",
    "pca",
    "agglomerative",
)

_LM = "sklearn.linear_model"
_ENS = "sklearn.ensemble"

#: algorithm → task → "module:Class". Anything missing is ``<algorithm> does not support <task>``.
ESTIMATORS: Mapping[str, Mapping[str, str]] = {
    "linear": {"regression": f"{_LM}:LinearRegression", "classification": f"{_LM}:LogisticRegression"},
    "lasso": {"regression": f"{_LM}:Lasso"},
    "elastic_net": {"regression": f"{_LM}:ElasticNet"},
    "ridge": {"regression": f"{_LM}:Ridge", "classification": f"{_LM}:RidgeClassifier"},
    "least_angle": {"regression": f"{_LM}:Lars"},
    "lasso_least_angle": {"regression": f"{_LM}:LassoLars"},
    "orthogonal_matching_pursuit": {"regression": f"{_LM}:OrthogonalMatchingPursuit"},
    "bayesian_ridge": {"regression": f"{_LM}:BayesianRidge"},
    "automatic_relevance_determination": {"regression": f"{_LM}:ARDRegression"},
    "stochastic_gradient_descent": {
        "regression": f"{_LM}:SGDRegressor",
        "classification": f"{_LM}:SGDClassifier",
    },
    "perceptron": {"classification": f"{_LM}:Perceptron"},
    "passive_aggressive": {
        "regression": f"{_LM}:PassiveAggressiveRegressor",
        "classification": f"{_LM}:PassiveAggressiveClassifier",
    },
    "ransac": {"regression": f"{_LM}:RANSACRegressor"},
    "theil_sen": {"regression": f"{_LM}:TheilSenRegressor"},
    "huber": {"regression": f"{_LM}:HuberRegressor"},
    "quantile": {"regression": f"{_LM}:QuantileRegressor"},
    "kernel_ridge": {"regression": "sklearn.kernel_ridge:KernelRidge"},
    "gaussian_process": {
        "regression": "sklearn.gaussian_process:GaussianProcessRegressor",
        "classification": "sklearn.gaussian_process:GaussianProcessClassifier",
    },
    "svm": {"regression": "sklearn.svm:SVR", "classification": "sklearn.svm:SVC"},
    "nu_svm": {"regression": "sklearn.svm:NuSVR", "classification": "sklearn.svm:NuSVC"},
    "linear_svm": {"regression": "sklearn.svm:LinearSVR", "classification": "sklearn.svm:LinearSVC"},
    "ada_boost": {"regression": f"{_ENS}:AdaBoostRegressor", "classification": f"{_ENS}:AdaBoostClassifier"},
    "bagging": {"regression": f"{_ENS}:BaggingRegressor", "classification": f"{_ENS}:BaggingClassifier"},
    "extra_trees": {
        "regression": f"{_ENS}:ExtraTreesRegressor",
        "classification": f"{_ENS}:ExtraTreesClassifier",
    },
    "gradient_boosting_trees": {
        "regression": f"{_ENS}:GradientBoostingRegressor",
        "classification": f"{_ENS}:GradientBoostingClassifier",
    },
    "hist_gradient_boosting": {
        "regression": f"{_ENS}:HistGradientBoostingRegressor",
        "classification": f"{_ENS}:HistGradientBoostingClassifier",
    },
    "random_forest": {
        "regression": f"{_ENS}:RandomForestRegressor",
        "classification": f"{_ENS}:RandomForestClassifier",
    },
    "xgboost": {"regression": "xgboost:XGBRegressor", "classification": "xgboost:XGBClassifier"},
    "xgboost_random_forest": {
        "regression": "xgboost:XGBRFRegressor",
        "classification": "xgboost:XGBRFClassifier",
    },
    "lightgbm": {"regression": "lightgbm:LGBMRegressor", "classification": "lightgbm:LGBMClassifier"},
    "catboost": {"regression": "catboost:CatBoostRegressor", "classification": "catboost:CatBoostClassifier"},
    "affinity_propagation": {"clustering": "sklearn.cluster:AffinityPropagation"},
    "birch": {"clustering": "sklearn.cluster:Birch"},
    "kmeans": {"clustering": "sklearn.cluster:KMeans"},
    "mini_batch_kmeans": {"clustering": "sklearn.cluster:MiniBatchKMeans"},
    "mean_shift": {"clustering": "sklearn.cluster:MeanShift"},
    "pca": {"decomposition": "sklearn.decomposition:PCA"},
}

#: Wrapped in MultiOutputRegressor for several label columns (§4.1). The contract says every other algorithm
#: takes several targets natively; HistGradientBoostingRegressor does not, so it is wrapped too.
MULTI_OUTPUT_WRAPPED = frozenset(
    {
        "bayesian_ridge",
        "automatic_relevance_determination",
        "stochastic_gradient_descent",
        "passive_aggressive",
        "theil_sen",
        "huber",
        "quantile",
        "svm",
        "nu_svm",
        "linear_svm",
        "ada_boost",
        "gradient_boosting_trees",
        "lightgbm",
        "hist_gradient_boosting",
    }
)

#: §4.2: alias → the XGBoost scikit-learn wrapper's name.
XGBOOST_ALIASES: Mapping[str, str] = {
    "boost_rounds": "n_estimators",
    "eta": "learning_rate",
    "lambda": "reg_lambda",
    "alpha": "reg_alpha",
}

#: §4.3: the only algorithms an explicit ``runtime => 'rust'`` accepts.
RUST_ALGORITHMS = frozenset({"linear", "svm", "xgboost", "lightgbm"})
RUNTIMES = ("python", "rust", "openai")


@dataclass(frozen=True)
class Resolved:
    """An algorithm request after §2.1 step 3 and §4.3: the effective algorithm (``linear`` substituted) and
    the runtime recorded in ``pgml.models``."""

    task: str
    algorithm: str
    runtime: str
    estimator: str  # "module:Class" of the estimator (before any MultiOutputRegressor wrapping)
    n_targets: int


def effective_algorithm(algorithm: str | None, task: str) -> str:
    """``linear`` (and a missing algorithm) becomes ``kmeans`` for clustering and ``pca`` for decomposition."""
    name = algorithm or "linear"
    if name == "linear" and task == "clustering":
        return "kmeans"
    if name == "linear" and task == "decomposition":
        return "pca"
    return name


def resolve(algorithm: str | None, task: str, *, runtime: str | None = None, n_targets: int = 1) -> Resolved:
    """Check that ``algorithm`` can train ``task`` (underscore spelling) and settle the runtime; the errors are
    the contract's texts. ``n_targets`` is the number of label columns (several: joint regression)."""
    if task in TEXT_TASKS:
        if (algorithm or "linear") == "transformers":
            raise InvalidArgument("use pgml.tune for transformers tasks")
        raise InvalidArgument(f"{algorithm or 'linear'} does not support {task}")
    if task not in CLASSICAL_TASKS:
        raise InvalidArgument(f"unknown task {task!r}; expected one of: {', '.join(CLASSICAL_TASKS)}")
    name = effective_algorithm(algorithm, task)
    if name == "transformers":
        raise InvalidArgument("use pgml.tune for transformers tasks")
    if name not in ALGORITHMS:
        raise InvalidArgument(f'invalid input value for enum pgml.algorithm: "{name}"')
    target = ESTIMATORS.get(name, {}).get(task)
    if target is None:
        raise InvalidArgument(f"{name} does not support {task}")
    if task in ("regression", "classification"):
        if n_targets < 1:
            raise InvalidArgument(f"{task} needs a label column: pass y_column_name")
        if n_targets > 1 and task == "classification":
            raise InvalidArgument("several label columns (joint training) need the regression task")
    else:
        n_targets = 0  # unsupervised: label columns are left out of the features and otherwise unused
    return Resolved(task, name, _runtime(name, task, runtime, n_targets), target, n_targets)


def _runtime(algorithm: str, task: str, requested: str | None, n_targets: int) -> str:
    if requested is None:
        if n_targets > 1:
            return "python"
        if algorithm in ("xgboost", "lightgbm") or (algorithm == "linear" and task == "regression"):
            return "rust"
        return "python"
    if requested not in RUNTIMES:
        raise InvalidArgument(f'invalid input value for enum pgml.runtime: "{requested}"')
    if requested == "openai":
        raise InvalidArgument("the openai runtime cannot train models")
    if requested == "rust":
        if algorithm not in RUST_ALGORITHMS:
            raise InvalidArgument(
                f"the rust runtime does not support {algorithm}; it supports: {', '.join(sorted(RUST_ALGORITHMS))}"
            )
        if n_targets > 1:
            raise InvalidArgument(
                "the rust runtime does not support joint regression (several label columns)"
            )
    return requested


def normalize_hyperparams(algorithm: str, hyperparams: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor keywords for ``hyperparams``: XGBoost aliases renamed (an alias and its name together
    are refused, since one would silently win)."""
    params = dict(hyperparams)
    if algorithm not in ("xgboost", "xgboost_random_forest"):
        return params
    for alias, name in XGBOOST_ALIASES.items():
        if alias in params:
            if name in params:
                raise InvalidArgument(
                    f"`{alias}` and `{name}` are the same XGBoost hyperparameter; pass one of them"
                )
            params[name] = params.pop(alias)
    return params


def make_estimator(resolved: Resolved, hyperparams: Mapping[str, Any]) -> Any:
    """A fresh, unfitted estimator for ``resolved`` with ``hyperparams`` (as the user wrote them)."""
    params = normalize_hyperparams(resolved.algorithm, hyperparams)
    cls = load_class(_substitute(resolved.estimator))
    library = resolved.estimator.split(".", 1)[0].split(":", 1)[0]
    if library == "lightgbm" and "verbose" not in params and "verbosity" not in params:
        params["verbose"] = -1
    if library == "catboost":
        params.setdefault("allow_writing_files", False)
        if not any(k in params for k in ("verbose", "silent", "logging_level", "verbose_eval")):
            params["verbose"] = False
        if resolved.n_targets > 1 and "loss_function" not in params and "objective" not in params:
            params["loss_function"] = "MultiRMSE"
    if library == "sklearn":
        _check_sklearn_params(cls, resolved.algorithm, params)
    if resolved.estimator.endswith("PassiveAggressiveClassifier") and cls.__name__ == "SGDClassifier":
        params = _passive_aggressive_as_sgd(params)
    try:
        with warnings.catch_warnings():
            # PassiveAggressive* are deprecated since scikit-learn 1.8; the contract still names them.
            warnings.simplefilter("ignore", FutureWarning)
            estimator = cls(**params)
    except TypeError as exc:
        raise InvalidArgument(
            f"invalid hyperparams for {resolved.algorithm} ({cls.__name__}): {exc}"
        ) from exc
    if resolved.n_targets > 1 and resolved.algorithm in MULTI_OUTPUT_WRAPPED:
        from sklearn.multioutput import MultiOutputRegressor

        estimator = MultiOutputRegressor(estimator)
    return estimator


def load_class(target: str) -> type:
    """The class named ``module:Class`` (only ever called with names from this module's tables)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _substitute(target: str) -> str:
    """scikit-learn 1.10 removes PassiveAggressive*; their documented replacement is SGD with the PA schedule."""
    if ":PassiveAggressive" not in target:
        return target
    module, _, name = target.partition(":")
    if hasattr(importlib.import_module(module), name):
        return target
    return f"{module}:{name.replace('PassiveAggressive', 'SGD')}"


def _passive_aggressive_as_sgd(params: dict[str, Any]) -> dict[str, Any]:
    converted = {"loss": "hinge", "penalty": None, "learning_rate": "pa1", "eta0": params.pop("C", 1.0)}
    converted.update(params)
    return converted


def _check_sklearn_params(cls: type, algorithm: str, params: Mapping[str, Any]) -> None:
    """scikit-learn's own error for an unknown keyword is a bare TypeError from ``__init__``; name the accepted
    ones instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        accepted = set(cls().get_params(deep=False))
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InvalidArgument(
            f"unknown hyperparams for {algorithm} ({cls.__name__}): {', '.join(unknown)}; "
            f"it accepts: {', '.join(sorted(accepted))}"
        )
