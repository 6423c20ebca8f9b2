"""Model artifacts: each library's safe format round-trips, and corrupted or tampered bytes are refused."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile

import numpy as np
import pytest
from pgml_engines.classical import artifacts
from pgml_engines.classical.artifacts import ModelArtifact, dump, load, pack, unpack
from pgml_engines.errors import ArtifactRejected, EngineError
from sklearn.datasets import load_iris

X, Y = load_iris(return_X_y=True)
X = X.astype(np.float32)
Y_REGRESSION = X[:, 0] * 2.0 + Y


def fitted(kind: str):
    import catboost
    import lightgbm
    import xgboost
    from sklearn import cluster, ensemble, gaussian_process, linear_model, multioutput

    both = np.column_stack([Y_REGRESSION, -Y_REGRESSION])
    return {
        "logistic": lambda: linear_model.LogisticRegression(max_iter=500).fit(X, Y),
        "random_forest": lambda: ensemble.RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y),
        "hist_gradient_boosting": lambda: ensemble.HistGradientBoostingRegressor(max_iter=5).fit(
            X, Y_REGRESSION
        ),
        "gaussian_process": lambda: gaussian_process.GaussianProcessClassifier().fit(X[::3], Y[::3]),
        "multioutput_svr": lambda: multioutput.MultiOutputRegressor(__import__("sklearn.svm").svm.SVR()).fit(
            X, both
        ),
        "kmeans": lambda: cluster.KMeans(3, n_init=2, random_state=0).fit(X),
        "birch": lambda: cluster.Birch(n_clusters=3).fit(X),
        "xgboost_classifier": lambda: xgboost.XGBClassifier(n_estimators=5).fit(X, Y),
        "xgboost_rf_regressor": lambda: xgboost.XGBRFRegressor(n_estimators=5).fit(X, Y_REGRESSION),
        "lightgbm_classifier": lambda: lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, Y),
        "lightgbm_regressor": lambda: lightgbm.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, Y_REGRESSION),
        "lightgbm_joint": lambda: multioutput.MultiOutputRegressor(
            lightgbm.LGBMRegressor(n_estimators=5, verbose=-1)
        ).fit(X, both),
        "catboost_classifier": lambda: catboost.CatBoostClassifier(
            iterations=10, verbose=False, allow_writing_files=False
        ).fit(X, Y),
        "catboost_regressor": lambda: catboost.CatBoostRegressor(
            iterations=10, verbose=False, allow_writing_files=False
        ).fit(X, Y_REGRESSION),
    }[kind]()


@pytest.mark.parametrize(
    ("kind", "form"),
    [
        ("logistic", "skops"),
        ("random_forest", "skops"),
        ("hist_gradient_boosting", "skops"),
        ("gaussian_process", "skops"),
        ("multioutput_svr", "skops"),
        ("kmeans", "skops"),
        ("birch", "birch-npz"),
        ("xgboost_classifier", "xgboost:XGBClassifier"),
        ("xgboost_rf_regressor", "xgboost:XGBRFRegressor"),
        ("lightgbm_classifier", "lightgbm:LGBMClassifier"),
        ("lightgbm_regressor", "lightgbm:LGBMRegressor"),
        ("lightgbm_joint", "stacked"),
        ("catboost_classifier", "catboost:CatBoostClassifier"),
        ("catboost_regressor", "catboost:CatBoostRegressor"),
    ],
)
def test_every_library_round_trips_through_its_own_format(kind, form) -> None:
    estimator = fitted(kind)
    stored_form, data = dump(estimator)
    assert stored_form == form
    assert b"pickle" not in stored_form.encode()
    loaded = load(stored_form, data)
    assert np.allclose(np.ravel(loaded.predict(X)), np.ravel(estimator.predict(X)), atol=1e-5)
    if hasattr(estimator, "predict_proba"):
        assert np.allclose(loaded.predict_proba(X), estimator.predict_proba(X), atol=1e-5)
    # a loaded model can be stored again unchanged in behaviour (the proxy may re-save an adopted model)
    again = load(*dump(loaded))
    assert np.allclose(np.ravel(again.predict(X)), np.ravel(estimator.predict(X)), atol=1e-5)


def packed(kind: str = "logistic", **kwargs) -> bytes:
    model = ModelArtifact("classification", "linear", 4, 1, (0.0, 1.0, 2.0), fitted(kind))
    return pack(model, **kwargs)


def rewrite(data: bytes, payload: bytes, **header_changes) -> bytes:
    """An artifact with a new payload and a *valid* checksum: what someone who can write pgml.files can make."""
    header, _ = artifacts.read_header(data)
    header |= header_changes
    header["sha256"] = hashlib.sha256(payload).hexdigest()
    encoded = json.dumps(header).encode()
    return artifacts.MAGIC + struct.pack(">I", len(encoded)) + encoded + payload


def test_the_envelope_keeps_what_prediction_needs() -> None:
    model = unpack(packed())
    assert (model.task, model.algorithm, model.num_features, model.classes) == (
        "classification",
        "linear",
        4,
        (0.0, 1.0, 2.0),
    )
    assert artifacts.probe(packed()) == "skops"


def test_corrupted_bytes_fail_the_checksum_before_any_library_sees_them() -> None:
    data = bytearray(packed("lightgbm_classifier"))
    data[-50] ^= 0xFF
    with pytest.raises(ArtifactRejected, match=r"checksum mismatch"):
        unpack(bytes(data))
    truncated = packed("lightgbm_classifier")[:-200]  # LightGBM itself would abort the process on this
    with pytest.raises(ArtifactRejected, match=r"checksum mismatch"):
        unpack(truncated)
    with pytest.raises(ArtifactRejected, match=r"unknown magic"):
        unpack(b"\x80\x04\x95" + b"\x00" * 40)  # a pickle is not an artifact
    assert issubclass(ArtifactRejected, EngineError) and ArtifactRejected.sqlstate == "XX001"


def test_a_skops_file_naming_a_type_outside_the_allow_list_is_refused() -> None:
    import skops.io
    from sklearn.neighbors import KNeighborsClassifier

    # skops trusts KNeighborsClassifier by default, but pgml never trains one
    knn = skops.io.dumps(KNeighborsClassifier().fit(X, Y))
    with pytest.raises(ArtifactRejected, match=r"outside the allow-list: .*KNeighborsClassifier"):
        unpack(rewrite(packed(), knn))


def test_a_skops_file_edited_to_call_a_function_is_refused() -> None:
    _, payload = artifacts.read_header(packed())
    source = zipfile.ZipFile(io.BytesIO(payload))
    schema = json.loads(source.read("schema.json"))
    schema["content"]["content"]["C"] = {
        "__class__": "system",
        "__module__": "posix",
        "__loader__": "FunctionNode",
        "__id__": 999,
        "content": {"module_path": "posix", "function": "system"},
    }
    edited = io.BytesIO()
    with zipfile.ZipFile(edited, "w") as target:
        for name in source.namelist():
            target.writestr(name, json.dumps(schema) if name == "schema.json" else source.read(name))
    with pytest.raises(ArtifactRejected, match=r"posix\.system.*FunctionNode"):
        unpack(rewrite(packed(), edited.getvalue()))


@pytest.mark.parametrize("kind", ["xgboost_classifier", "catboost_classifier", "lightgbm_classifier"])
def test_native_models_altered_behind_a_valid_checksum_are_refused(kind) -> None:
    data = packed(kind)
    _, payload = artifacts.read_header(data)
    with pytest.raises(ArtifactRejected, match=r"could not be loaded|malformed"):
        unpack(rewrite(data, payload[: len(payload) // 2]))


def test_an_unknown_format_is_never_guessed() -> None:
    data = packed()
    _, payload = artifacts.read_header(data)
    with pytest.raises(ArtifactRejected, match=r"unknown model artifact format 'pickle'"):
        unpack(rewrite(data, payload, format="pickle"))


def test_a_signing_key_refuses_artifacts_made_without_it() -> None:
    key = b"operator secret"
    signed = packed(key=key)
    assert unpack(signed, key=key).algorithm == "linear"
    with pytest.raises(ArtifactRejected, match=r"signature"):
        unpack(packed(), key=key)
    _, payload = artifacts.read_header(signed)
    with pytest.raises(ArtifactRejected, match=r"signature"):
        unpack(rewrite(signed, payload, algorithm="svm"), key=key)  # header edited, checksum recomputed
