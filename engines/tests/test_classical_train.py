"""Training and prediction with the classical libraries (contract §2.2, §4.1–§4.4, §4.7), in process."""

from __future__ import annotations

import numpy as np
import pytest
from pgml_engines.classical import (
    ColumnData,
    TrainRequest,
    algorithms,
    decompose,
    load_model,
    plan_training,
    predict,
    predict_joint,
    predict_proba,
    rows_to_features,
    train,
)
from pgml_engines.classical import search as searching
from pgml_engines.errors import InvalidArgument
from sklearn import datasets
from sklearn.metrics import accuracy_score

CLASSIFICATION_KEYS = {"f1", "precision", "recall", "accuracy", "mcc", "fit_time", "score_time"}
REGRESSION_KEYS = {"r2", "mean_absolute_error", "mean_squared_error", "fit_time", "score_time"}


def shuffled(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], y[order]


def feature_columns(x: np.ndarray) -> list[ColumnData]:
    return [ColumnData(f"f{i}", "float4", x[:, i].tolist()) for i in range(x.shape[1])]


def last_split(n: int, test_size: float) -> int:
    return n - int(np.floor(n * test_size + 0.5))


def direct_accuracy(estimator, x: np.ndarray, y: np.ndarray, test_size: float) -> float:
    cut = last_split(len(x), test_size)
    estimator.fit(x[:cut], y[:cut])
    return accuracy_score(y[cut:], np.asarray(estimator.predict(x[cut:])).ravel())


def library_estimator(algorithm: str, hyperparams: dict):
    if algorithm == "linear":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(**hyperparams)
    if algorithm == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(**hyperparams)
    if algorithm == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(**hyperparams)
    if algorithm == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(verbose=-1, **hyperparams)
    if algorithm == "catboost":
        from catboost import CatBoostClassifier

        return CatBoostClassifier(verbose=False, allow_writing_files=False, **hyperparams)
    raise AssertionError(algorithm)


@pytest.mark.parametrize(
    ("dataset", "algorithm", "hyperparams"),
    [
        ("iris", "linear", {"max_iter": 1000}),
        ("iris", "catboost", {"iterations": 60, "random_seed": 0}),
        ("digits", "random_forest", {"n_estimators": 40, "random_state": 0}),
        ("digits", "xgboost", {"n_estimators": 25, "max_depth": 4}),
        ("breast_cancer", "lightgbm", {"n_estimators": 40}),
        ("breast_cancer", "xgboost", {"n_estimators": 30}),
    ],
)
def test_accuracy_matches_the_library_fitted_directly_on_the_same_split(
    dataset, algorithm, hyperparams
) -> None:
    loaded = getattr(datasets, f"load_{dataset}")()
    x, y = shuffled(loaded.data, loaded.target)
    if dataset == "digits":  # one smallint[][] 8×8 image column, flattened row-major into 64 features
        columns = [ColumnData("image", "int2[]", x.reshape(-1, 8, 8).astype(int).tolist())]
    else:
        columns = feature_columns(x)
    columns.append(ColumnData("target", "int4", y.astype(int).tolist()))
    result = train(
        TrainRequest(
            task="classification",
            columns=columns,
            y_column_names=["target"],
            algorithm=algorithm,
            hyperparams=hyperparams,
            test_sampling="last",
        )
    )
    assert result.num_features == x.shape[1]
    expected_keys = CLASSIFICATION_KEYS | ({"roc_auc", "log_loss"} if dataset == "breast_cancer" else set())
    assert set(result.metrics) == expected_keys
    direct = direct_accuracy(library_estimator(algorithm, hyperparams), x.astype(np.float32), y, 0.25)
    assert result.metrics["accuracy"] == pytest.approx(direct, abs=0.02)
    assert result.metrics["accuracy"] > 0.85
    # the stored artifact predicts the same labels the metrics were computed from
    model = load_model(result.artifact, result.columns)
    cut = last_split(len(x), 0.25)
    predicted = predict(model, x[cut:])
    assert accuracy_score(y[cut:], predicted) == pytest.approx(result.metrics["accuracy"])
    probabilities = predict_proba(model, x[cut:])
    assert probabilities.shape == (len(x) - cut, len(np.unique(y)))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_binary_metrics_come_from_probabilities() -> None:
    loaded = datasets.load_breast_cancer()
    x, y = shuffled(loaded.data[:, :10], loaded.target, seed=3)
    columns = [*feature_columns(x), ColumnData("malignant", "bool", (y == 0).tolist())]
    result = train(
        TrainRequest(
            task="classification",
            columns=columns,
            y_column_names=["malignant"],
            algorithm="random_forest",
            hyperparams={"n_estimators": 30, "random_state": 0},
            test_sampling="last",
        )
    )
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import log_loss, roc_auc_score

    cut = last_split(len(x), 0.25)
    truth = (y == 0).astype(int)
    direct = RandomForestClassifier(n_estimators=30, random_state=0).fit(
        x[:cut].astype(np.float32), truth[:cut]
    )
    scores = direct.predict_proba(x[cut:].astype(np.float32))
    assert result.metrics["roc_auc"] == pytest.approx(roc_auc_score(truth[cut:], scores[:, 1]), abs=1e-6)
    assert result.metrics["log_loss"] == pytest.approx(
        log_loss(truth[cut:], np.clip(scores, 1e-15, 1)), abs=1e-6
    )
    assert result.classes == (0.0, 1.0)


def test_text_labels_predict_their_codes_and_probabilities_in_code_order() -> None:
    loaded = datasets.load_iris()
    x, y = shuffled(loaded.data, loaded.target)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    columns = [*feature_columns(x), ColumnData("species", "text", names.tolist())]
    result = train(
        TrainRequest(
            task="classification",
            columns=columns,
            y_column_names=["species"],
            algorithm="svm",
            hyperparams={"probability": True, "random_state": 0},
            seed=5,
        )
    )
    codes = {
        k: v["value"] for k, v in result.columns[-1]["statistics"]["categories"].items() if k != "__NULL__"
    }
    assert sorted(codes.values()) == [1, 2, 3]  # no class for __NULL__ (§7.2 #7)
    assert result.classes == (1.0, 2.0, 3.0)
    model = load_model(result.artifact)
    setosa = x[names == "setosa"][:3]
    assert predict(model, setosa).tolist() == [codes["setosa"]] * 3
    assert predict_proba(model, setosa).argmax(axis=1).tolist() == [codes["setosa"] - 1] * 3


def test_regression_and_joint_regression_shapes_and_metric_keys() -> None:
    loaded = datasets.load_diabetes()
    x, y = loaded.data, loaded.target
    columns = [
        *feature_columns(x),
        ColumnData("y", "float8", y.tolist()),
        ColumnData("y2", "float8", (-y).tolist()),
    ]
    single = train(TrainRequest(task="regression", columns=columns[:-1], y_column_names=["y"], seed=0))
    assert single.algorithm == "linear" and single.runtime == "rust"
    assert set(single.metrics) == REGRESSION_KEYS
    assert single.metrics["r2"] > 0.3
    model = load_model(single.artifact)
    assert predict(model, x[:7]).shape == (7,)
    with pytest.raises(InvalidArgument, match=r"^You can't predict probabilities for a regression model$"):
        predict_proba(model, x[:1])
    joint = train(
        TrainRequest(
            task="regression",
            columns=columns,
            y_column_names=["y", "y2"],
            algorithm="lightgbm",
            hyperparams={"n_estimators": 20},
            seed=0,
        )
    )
    assert joint.runtime == "python" and joint.artifact_format == "stacked"
    values = predict_joint(load_model(joint.artifact), x[:4])
    assert values.shape == (4, 2)
    assert values[:, 0] == pytest.approx(-values[:, 1], rel=1e-5)


def test_clustering_and_decomposition() -> None:
    x = datasets.load_iris().data
    clustering = train(
        TrainRequest(
            task="clustering", columns=feature_columns(x), hyperparams={"n_clusters": 3, "n_init": 3}, seed=0
        )
    )
    assert clustering.algorithm == "kmeans"  # linear becomes kmeans
    assert set(clustering.metrics) == {"silhouette", "fit_time", "score_time"}
    assert set(predict(load_model(clustering.artifact), x).tolist()) == {0.0, 1.0, 2.0}
    pca = train(
        TrainRequest(
            task="decomposition", columns=feature_columns(x), hyperparams={"n_components": 2}, seed=0
        )
    )
    assert pca.algorithm == "pca"
    assert set(pca.metrics) == {"cumulative_explained_variance", "fit_time", "score_time"}
    assert 0.9 < pca.metrics["cumulative_explained_variance"] <= 1.0
    model = load_model(pca.artifact)
    components = decompose(model, x[:5])
    assert components.shape == (5, 2)
    assert predict(model, x[:5]) == pytest.approx(components[:, 0])  # predict: the first component only


@pytest.mark.parametrize(
    ("task", "algorithm", "message"),
    [
        ("classification", "knn", "^knn does not support classification$"),
        ("regression", "perceptron", "^perceptron does not support regression$"),
        ("clustering", "dbscan", "^dbscan does not support clustering$"),
        ("classification", "transformers", "^use pgml.tune for transformers tasks$"),
        ("text_classification", "xgboost", "^xgboost does not support text_classification$"),
    ],
)
def test_unsupported_algorithms_fail_before_any_data_is_read(task, algorithm, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        plan_training(task, algorithm, y_column_names=["y"])


def test_runtime_defaults_and_checks() -> None:
    assert plan_training("regression", "xgboost", y_column_names=["y"]).runtime == "rust"
    assert plan_training("classification", "linear", y_column_names=["y"]).runtime == "python"
    assert plan_training("regression", "linear", y_column_names=["y", "z"]).runtime == "python"
    with pytest.raises(InvalidArgument, match=r"rust runtime does not support random_forest"):
        plan_training("regression", "random_forest", y_column_names=["y"], runtime="rust")
    with pytest.raises(InvalidArgument, match=r"openai"):
        plan_training("regression", "linear", y_column_names=["y"], runtime="openai")


def test_hyperparams_reach_the_estimator_with_xgboost_aliases_and_unknown_ones_are_named() -> None:
    x, y = datasets.load_iris(return_X_y=True)
    columns = [*feature_columns(x), ColumnData("y", "int4", y.tolist())]
    result = train(
        TrainRequest(
            task="classification",
            columns=columns,
            y_column_names=["y"],
            algorithm="xgboost",
            hyperparams={"boost_rounds": 3, "eta": 0.5, "lambda": 2.0, "alpha": 0.1},
            seed=0,
        )
    )
    assert load_model(result.artifact).estimator.get_booster().num_boosted_rounds() == 3
    built = algorithms.make_estimator(algorithms.resolve("xgboost", "classification"), result.hyperparams)
    params = built.get_params()
    assert (params["n_estimators"], params["learning_rate"], params["reg_lambda"], params["reg_alpha"]) == (
        3,
        0.5,
        2.0,
        0.1,
    )
    assert result.hyperparams == {
        "boost_rounds": 3,
        "eta": 0.5,
        "lambda": 2.0,
        "alpha": 0.1,
    }  # as the user wrote
    with pytest.raises(InvalidArgument, match=r"unknown hyperparams for svm .SVC.: wings"):
        train(
            TrainRequest(
                task="classification",
                columns=columns,
                y_column_names=["y"],
                algorithm="svm",
                hyperparams={"wings": 2},
            )
        )


def test_search_args_and_params_are_checked_with_the_contracts_messages() -> None:
    with pytest.raises(
        InvalidArgument, match=r"^`alpha` cannot be present in both hyperparams and search_params\."
    ):
        searching.plan({"alpha": 1}, "grid", {"alpha": [1, 2]}, {})
    with pytest.raises(InvalidArgument, match=r"^Unknown search_args =>"):
        searching.plan({}, "grid", {"alpha": [1, 2]}, {"folds": 3})
    grid = searching.plan({"fit_intercept": True}, "grid", {"alpha": [1, 2], "tol": [0.1, 0.01]}, {})
    assert grid.folds == 5 and len(grid.candidates) == 4
    assert grid.candidates[0] == {"fit_intercept": True, "alpha": 1, "tol": 0.1}
    assert grid.message == "Hyperparameter searches: 4, cross validation folds: 5"
    drawn = searching.plan({}, "random", {"alpha": list(range(20))}, {"n_iter": 6, "cv": 3}, seed=1)
    assert (
        len(drawn.candidates) == 6 and len({c["alpha"] for c in drawn.candidates}) == 6 and drawn.folds == 3
    )
    assert searching.plan({}, None, {"alpha": [1, 2]}, {}).folds == 1  # no search: scored on the test split


def test_search_ranks_by_mean_fold_score_not_the_best_single_fold() -> None:
    plan = searching.plan({}, "grid", {"c": ["spiky", "steady"]}, {"cv": 3})
    per_fold = {"spiky": [0.99, 0.1, 0.1], "steady": [0.6, 0.6, 0.6]}
    folds = [(np.arange(3), np.array([i])) for i in range(3)]
    outcome = searching.run(
        plan,
        fit=lambda params, x, y: params["c"],
        score=lambda fitted, x, y: per_fold[fitted][int(x[0, 0])],
        x_train=np.arange(3.0).reshape(-1, 1),
        y_train=None,
        x_test=np.zeros((1, 1)),
        y_test=None,
        folds=folds,
        metric="r2",
        higher_is_better=True,
    )
    assert outcome.best_params == {"c": "steady"}
    assert outcome.estimator is None  # the caller refits the winner on the whole training split
    results = outcome.results
    assert results["best_index"] == 1 and results["n_splits"] == 3
    assert results["mean_test_score"] == pytest.approx([1.19 / 3, 0.6])
    assert results["split0_test_score"] == [0.99, 0.6]
    assert results["param_c"] == ["spiky", "steady"]
    assert set(results) == {
        "params",
        "n_splits",
        "best_index",
        "mean_fit_time",
        "std_fit_time",
        "mean_score_time",
        "std_score_time",
        "mean_test_score",
        "std_test_score",
        "split0_test_score",
        "split1_test_score",
        "split2_test_score",
        "param_c",
    }


def test_search_refits_the_winner_on_the_whole_training_split_and_reports_progress() -> None:
    loaded = datasets.load_diabetes()
    x, y = loaded.data, loaded.target
    columns = [*feature_columns(x), ColumnData("y", "float8", y.tolist())]
    messages = []
    result = train(
        TrainRequest(
            task="regression",
            columns=columns,
            y_column_names=["y"],
            algorithm="ridge",
            search="grid",
            search_params={"alpha": [0.001, 1.0, 1000.0]},
            search_args={"cv": 3},
            test_sampling="last",
            seed=4,
        ),
        messages.append,
    )
    events = [m.event for m in messages]
    assert events[0] == "prepared" and events[-1] == "metrics"
    assert events.count("fold") == 9
    assert next(m for m in messages if m.event == "search").message == (
        "Hyperparameter searches: 3, cross validation folds: 3"
    )
    results = result.metrics["search_results"]
    best = int(np.argmax(results["mean_test_score"]))
    assert results["best_index"] == best
    assert result.hyperparams == {"alpha": [0.001, 1.0, 1000.0][best]}
    fold_scores = [results[f"split{i}_test_score"][best] for i in range(3)]
    assert results["mean_test_score"][best] == pytest.approx(np.mean(fold_scores))
    from sklearn.linear_model import Ridge

    cut = last_split(len(x), 0.25)
    direct = Ridge(alpha=result.hyperparams["alpha"]).fit(x[:cut].astype(np.float32), y[:cut])
    model = load_model(result.artifact)
    assert predict(model, x[cut:]) == pytest.approx(direct.predict(x[cut:].astype(np.float32)), rel=1e-4)


def test_prediction_checks_the_feature_count_and_applies_preprocessing_for_rows() -> None:
    rng = np.random.default_rng(0)
    n = 200
    size = rng.choice(["small", "large"], n)
    weight = rng.normal(10, 3, n)
    weight[::17] = np.nan
    y = (size == "large") * 5.0 + np.nan_to_num(weight, nan=10.0)
    columns = [
        ColumnData("size", "text", size.tolist()),
        ColumnData("weight", "float8", [None if np.isnan(w) else float(w) for w in weight]),
        ColumnData("y", "float8", y.tolist()),
    ]
    preprocess = {"size": {"encode": "one_hot"}, "weight": {"impute": "mean", "scale": "standard"}}
    result = train(
        TrainRequest(task="regression", columns=columns, y_column_names=["y"], preprocess=preprocess, seed=1)
    )
    assert result.metrics["r2"] > 0.9
    model = load_model(result.artifact, result.columns)
    rows = [("large", 12.0), ("small", None)]
    features = rows_to_features(model, rows)
    assert features.shape == (2, 3)  # one_hot: an indicator for "small" and "large" (__NULL__ is dropped)
    assert predict(model, features) == pytest.approx([17.0, 10.0], abs=0.6)
    with pytest.raises(InvalidArgument, match=r"the model expects 3, got 2"):
        predict(model, [1.0, 2.0])
    with pytest.raises(InvalidArgument, match=r"4 features is not a multiple of the model's 3 features"):
        predict(model, [1.0, 2.0, 3.0, 4.0])
    assert predict(model, [0.0, 1.0, 0.5, 1.0, 0.0, 0.0]).shape == (2,)  # predict_batch: rows concatenated


FAST = {"catboost": {"iterations": 20}, "xgboost": {"n_estimators": 5}, "lightgbm": {"n_estimators": 5}}
EVERY = sorted(
    (algorithm, task, targets)
    for algorithm, tasks in algorithms.ESTIMATORS.items()
    for task in tasks
    for targets in ((1, 2) if task == "regression" else (1,))
)


@pytest.mark.parametrize(("algorithm", "task", "targets"), EVERY)
def test_every_algorithm_trains_and_its_stored_model_predicts(algorithm, task, targets) -> None:
    x, y = shuffled(*datasets.load_iris(return_X_y=True), seed=1)
    x, y = x[:90], y[:90]
    columns = feature_columns(x)
    labels = []
    if task == "classification":
        columns.append(ColumnData("y", "int4", y.tolist()))
        labels = ["y"]
    elif task == "regression":
        columns += [ColumnData(f"y{i}", "float8", (x[:, 0] * (i + 1) + y).tolist()) for i in range(targets)]
        labels = [f"y{i}" for i in range(targets)]
    result = train(
        TrainRequest(
            task=task,
            columns=columns,
            y_column_names=labels,
            algorithm=algorithm,
            hyperparams=FAST.get(algorithm, {}),
            seed=0,
        )
    )
    model = load_model(result.artifact, result.columns)
    predicted = predict(model, x[:5])
    assert predicted.shape == (5,) and predicted.dtype == np.float32
    if task == "regression":
        assert predict_joint(model, x[:5]).shape == (5, targets)
    if task == "classification":
        assert set(predicted.tolist()) <= {0.0, 1.0, 2.0}
        with pytest.raises(
            InvalidArgument, match=r"^You can't predict joint probabilities for a classification model$"
        ):
            predict_joint(model, x[:1])
