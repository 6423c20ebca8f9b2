"""Model artifacts: every library's own safe format, never pickle (DESIGN §5: bytes in a table are not code).

- XGBoost: its native UBJSON model (``save_model``), loaded into the wrapper class named by the format;
- LightGBM: its native text model, loaded as a Booster behind :class:`LightGBMModel`;
- CatBoost: its native ``cbm``;
- scikit-learn: skops, which rebuilds objects from a JSON schema and numpy arrays without running pickle, and
  only instantiates the types it is told to trust. On top of skops' own check, every type named anywhere in
  the file must be on this module's explicit allow-list (the estimators of :mod:`.algorithms` and the
  internals they hold, such as ``sklearn.tree._tree.Tree``), and the root must be one of our estimators;
- Birch, which skops cannot write, as its subcluster centres and labels in an ``.npz`` read with
  ``allow_pickle=False`` (:class:`NearestSubcluster` predicts exactly as Birch does);
- several LightGBM models of a joint regression as a container of native parts (:class:`StackedRegressor`).

``pack``/``unpack`` wrap one estimator with what prediction needs (task, classes, feature count) in an
envelope: magic bytes, a JSON header, the payload, and the payload's SHA-256. The checksum catches corruption
(a truncated ``bytea``, a wrong encoding) before any native parser sees the bytes; it is not a signature, since
whoever can write ``pgml.files`` can recompute it.

Against a *malicious* artifact: nothing here runs code from the bytes (no pickle; skops only builds allow-listed
types). What remains is the native parsers, which trust their input: LightGBM's aborts the process on a
truncated or inconsistent model and CatBoost's reads past the end of a truncated one, so their layouts are
verified first (:func:`check_lightgbm_text`, :func:`check_catboost_blob`); XGBoost's UBJSON reader checks its
input itself. Two stronger
options are provided for the proxy to use: a ``key`` (HMAC-SHA256 in the header, so only artifacts made by a
proxy holding the operator's secret load), and :func:`probe`, which loads an artifact in a training worker
before the proxy process loads it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import io
import itertools
import json
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactRejected, InvalidArgument
from . import algorithms

MAGIC = b"PGMLCLS\x01"
_HEADER_LENGTH = struct.Struct(">I")

SKOPS = "skops"
BIRCH = "birch-npz"
STACKED = "stacked"
_XGBOOST_CLASSES = ("XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor")
_CATBOOST_CLASSES = ("CatBoostClassifier", "CatBoostRegressor")
_LIGHTGBM_KINDS = ("LGBMClassifier", "LGBMRegressor")

#: skops node loaders that only rebuild data; anything else (functions, methods, partials, operators) is refused.
_SAFE_LOADERS = frozenset(
    {
        "DictNode",
        "ListNode",
        "TupleNode",
        "SetNode",
        "JsonNode",
        "NdArrayNode",
        "ObjectNode",
        "TreeNode",
        "LossNode",
        "SGDNode",
        "RandomStateNode",
        "RandomGeneratorNode",
        "TypeNode",
        "SliceNode",
        "BytesNode",
        "BytearrayNode",
        "SparseMatrixNode",
    }
)

#: Types that our scikit-learn estimators hold once fitted (besides the estimators themselves and numpy's
#: data types); found by dumping every algorithm of every task. A type outside this list, even one that skops
#: would trust by default, is refused: our artifacts never contain one.
SUPPORT_TYPES = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.set",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.NoneType",
        "builtins.slice",
        "builtins.bytes",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        "sklearn.tree._tree.Tree",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.tree._classes.ExtraTreeRegressor",
        "sklearn.dummy.DummyClassifier",
        "sklearn.dummy.DummyRegressor",
        "sklearn.preprocessing._label.LabelBinarizer",
        "sklearn.preprocessing._label.LabelEncoder",
        "sklearn.multioutput.MultiOutputRegressor",
        "sklearn.multiclass.OneVsRestClassifier",
        "sklearn.multiclass.OneVsOneClassifier",
        "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
        "sklearn.gaussian_process.kernels.ConstantKernel",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.gaussian_process.kernels.Product",
        "sklearn.gaussian_process.kernels.Sum",
        "sklearn.gaussian_process.kernels.WhiteKernel",
        "sklearn.gaussian_process.kernels.Matern",
        "sklearn.gaussian_process.kernels.RationalQuadratic",
        "sklearn.gaussian_process.kernels.ExpSineSquared",
        "sklearn.gaussian_process.kernels.DotProduct",
        "sklearn.gaussian_process.kernels.Exponentiation",
        "sklearn.gaussian_process.kernels.Hyperparameter",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.LogLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.link.HalfLogitLink",
        "sklearn._loss.link.Interval",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.AbsoluteError",
        "sklearn._loss.loss.PinballLoss",
        "sklearn._loss.loss.HuberLoss",
        "sklearn._loss.loss.HalfPoissonLoss",
        "sklearn._loss.loss.HalfGammaLoss",
        "sklearn._loss.loss.HalfTweedieLoss",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.ExponentialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyAbsoluteError",
        "sklearn._loss._loss.CyPinballLoss",
        "sklearn._loss._loss.CyHuberLoss",
        "sklearn._loss._loss.CyHalfPoissonLoss",
        "sklearn._loss._loss.CyHalfGammaLoss",
        "sklearn._loss._loss.CyHalfTweedieLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyExponentialLoss",
        "sklearn.linear_model._sgd_fast.Hinge",
        "sklearn.linear_model._sgd_fast.SquaredHinge",
        "sklearn.linear_model._sgd_fast.Log",
        "sklearn.linear_model._sgd_fast.ModifiedHuber",
        "sklearn.linear_model._sgd_fast.SquaredLoss",
        "sklearn.linear_model._sgd_fast.Huber",
        "sklearn.linear_model._sgd_fast.EpsilonInsensitive",
        "sklearn.linear_model._sgd_fast.SquaredEpsilonInsensitive",
    }
)


@dataclass(frozen=True)
class ModelArtifact:
    """A fitted estimator with what prediction needs besides the snapshot's columns.

    classes: classification only, the label values in the estimator's index order (sorted; TEXT labels are
    their codes). n_targets: label columns (several for joint regression, 0 when unsupervised).
    """

    task: str
    algorithm: str
    num_features: int
    n_targets: int
    classes: tuple[float, ...] | None
    estimator: Any


# --- whole-model envelope -----------------------------------------------------------------------------------------


def pack(model: ModelArtifact, *, key: bytes | None = None) -> bytes:
    """The bytes stored in ``pgml.files`` (``estimator.rmp``). With ``key`` (the operator's secret), the header
    also carries an HMAC-SHA256 of the payload, so :func:`unpack` with the same key accepts only artifacts made
    by a proxy that holds it."""
    form, payload = dump(model.estimator)
    digest = hashlib.sha256(payload).hexdigest()
    header = {
        "format": form,
        "sha256": digest,
        "task": model.task,
        "algorithm": model.algorithm,
        "num_features": model.num_features,
        "n_targets": model.n_targets,
        "classes": None if model.classes is None else [float(c) for c in model.classes],
        "libraries": _library_versions(form),
    }
    if key is not None:
        header["hmac"] = _signature(key, header, payload)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + _HEADER_LENGTH.pack(len(encoded)) + encoded + payload


def unpack(data: bytes, *, key: bytes | None = None) -> ModelArtifact:
    """Check and load what :func:`pack` wrote; anything else raises ArtifactRejected. With ``key``, an artifact
    without a valid signature is refused before any library parses it."""
    header, payload = read_header(data)
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise ArtifactRejected(
            "model artifact checksum mismatch: the stored bytes are corrupted or were altered"
        )
    if key is not None:
        signature = header.get("hmac")
        if not isinstance(signature, str) or not hmac.compare_digest(
            signature, _signature(key, header, payload)
        ):
            raise ArtifactRejected(
                "model artifact signature is missing or wrong: it was not made with this key"
            )
    estimator = load(header["format"], payload)
    classes = header.get("classes")
    try:
        return ModelArtifact(
            task=str(header["task"]),
            algorithm=str(header["algorithm"]),
            num_features=int(header["num_features"]),
            n_targets=int(header.get("n_targets", 1)),
            classes=None if classes is None else tuple(float(c) for c in classes),
            estimator=estimator,
        )
    except (TypeError, ValueError) as exc:
        raise ArtifactRejected(f"model artifact header has a bad field: {exc}") from exc


def probe(data: bytes, send: Any = None) -> str:
    """Load an artifact and predict one row, returning its format: a :class:`~.worker.TrainingPool` target
    (``await pool.run(probe, data)``), so that an artifact of unknown origin meets the native parsers in a
    throwaway process first, where a parser crash costs a worker instead of the proxy."""
    model = unpack(data)
    row = np.zeros((1, model.num_features), dtype=np.float32)
    run = model.estimator.transform if model.task == "decomposition" else model.estimator.predict
    run(row)
    return read_header(data)[0]["format"]


def _signature(key: bytes, header: dict[str, Any], payload: bytes) -> str:
    signed = {k: v for k, v in header.items() if k != "hmac"}
    message = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode() + payload
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def read_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(header, payload) of an artifact, checked for shape only."""
    data = bytes(data)
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEADER_LENGTH.size:
        raise ArtifactRejected("not a pgml-proxy model artifact (unknown magic bytes)")
    (length,) = _HEADER_LENGTH.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _HEADER_LENGTH.size
    try:
        header = json.loads(data[start : start + length])
    except ValueError as exc:
        raise ArtifactRejected("model artifact header is not valid JSON") from exc
    required = ("format", "sha256", "task", "algorithm", "num_features")
    if not isinstance(header, dict) or any(k not in header for k in required):
        raise ArtifactRejected(f"model artifact header lacks one of: {', '.join(required)}")
    return header, data[start + length :]


def _library_versions(form: str) -> dict[str, str]:
    import importlib.metadata

    names = {"skops": ("scikit-learn", "skops"), "xgboost": ("xgboost",), "lightgbm": ("lightgbm",)}
    names |= {"catboost": ("catboost",), BIRCH: ("scikit-learn",), STACKED: ("lightgbm",)}
    found = {}
    for name in names.get(form.split(":", 1)[0], ()):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


# --- one estimator ------------------------------------------------------------------------------------------------


def dump(estimator: Any) -> tuple[str, bytes]:
    """(format, bytes) for an estimator trained by this package, in its library's safe format."""
    module = type(estimator).__module__.split(".", 1)[0]
    name = type(estimator).__name__
    if module == "xgboost" and name in _XGBOOST_CLASSES:
        with _scratch("model.ubj") as path:
            estimator.save_model(str(path))
            return f"xgboost:{name}", path.read_bytes()
    if module == "lightgbm" and name in _LIGHTGBM_KINDS:
        return f"lightgbm:{name}", estimator.booster_.model_to_string().encode()
    if isinstance(estimator, LightGBMModel):
        return f"lightgbm:{estimator.kind}", estimator.booster.model_to_string().encode()
    if module == "catboost" and name in _CATBOOST_CLASSES:
        with _scratch("model.cbm") as path:
            estimator.save_model(str(path), format="cbm")
            return f"catboost:{name}", path.read_bytes()
    if (name == "Birch" and module == "sklearn") or isinstance(estimator, NearestSubcluster):
        buffer = io.BytesIO()
        np.savez(buffer, centers=estimator.subcluster_centers_, labels=estimator.subcluster_labels_)
        return BIRCH, buffer.getvalue()
    if name == "MultiOutputRegressor" and module == "sklearn" and not _all_sklearn(estimator.estimators_):
        return STACKED, _stack([dump(e) for e in estimator.estimators_])
    if isinstance(estimator, StackedRegressor):
        return STACKED, _stack([dump(e) for e in estimator.estimators_])
    if module == "sklearn":
        import skops.io

        return SKOPS, skops.io.dumps(estimator)
    raise InvalidArgument(f"no safe artifact format for {type(estimator).__module__}.{name}")


def load(form: str, data: bytes) -> Any:
    """The estimator :func:`dump` wrote as (``form``, ``data``); ArtifactRejected when it fails any check."""
    library, _, name = form.partition(":")
    try:
        if library == "xgboost" and name in _XGBOOST_CLASSES:
            import xgboost

            model = getattr(xgboost, name)()
            model.load_model(bytearray(data))
            return model
        if library == "lightgbm" and name in _LIGHTGBM_KINDS:
            import lightgbm

            text = bytes(data).decode()
            check_lightgbm_text(text)
            booster = lightgbm.Booster(model_str=text)
            return LightGBMClassifierModel(booster) if name == "LGBMClassifier" else LightGBMModel(booster)
        if library == "catboost" and name in _CATBOOST_CLASSES:
            import catboost

            check_catboost_blob(bytes(data))
            model = getattr(catboost, name)()
            model.load_model(blob=bytes(data))
            return model
        if form == BIRCH:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                return NearestSubcluster(arrays["centers"], arrays["labels"])
        if form == STACKED:
            return StackedRegressor([load(f, d) for f, d in _unstack(data)])
        if form == SKOPS:
            return _load_skops(bytes(data))
    except ArtifactRejected:
        raise
    except Exception as exc:
        raise ArtifactRejected(
            f"the stored model ({form}) could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    raise ArtifactRejected(f"unknown model artifact format {form!r}")


def check_catboost_blob(data: bytes) -> None:
    """Check a CatBoost ``cbm`` before CatBoost parses it: the magic and the core's declared size.

    CatBoost reads past the end of a truncated blob (it sometimes even "loads" one). Our models are trained on
    numbers only (categories are encoded before fitting), so a ``cbm`` of ours is exactly the magic, the core's
    size and the core, with no categorical-feature (CTR) sections after it.
    """
    if len(data) < 8 or data[:4] != b"CBM1":
        raise ArtifactRejected("the stored CatBoost model is malformed: no CBM1 header")
    (core,) = struct.unpack_from("<I", data, 4)
    if 8 + core != len(data):
        raise ArtifactRejected(
            f"the stored CatBoost model is malformed: its core declares {core} bytes, {len(data) - 8} are stored"
        )


def check_lightgbm_text(text: str) -> None:
    """Check a LightGBM text model before LightGBM parses it.

    LightGBM's loader trusts its input: a truncated model, or a tree whose arrays are shorter than
    ``num_leaves`` says, aborts the whole process (``terminate called``), and out-of-range child or feature
    indices are read unchecked at prediction. So the layout is verified first: the header, every tree block at
    the offsets ``tree_sizes`` gives, and in each tree the array lengths and the indices that address memory.
    """

    def reject(why: str) -> ArtifactRejected:
        return ArtifactRejected(f"the stored LightGBM model is malformed: {why}")

    header_end = text.find("\n\n")
    if not text.startswith("tree\n") or header_end < 0:
        raise reject("no model header")
    header = dict(line.split("=", 1) for line in text[:header_end].splitlines()[1:] if "=" in line)
    try:
        sizes = [int(v) for v in header["tree_sizes"].split()]
        max_feature = int(header["max_feature_idx"])
        per_iteration = int(header["num_tree_per_iteration"])
    except (KeyError, ValueError) as exc:
        raise reject(f"bad header field {exc}") from None
    if per_iteration < 1 or len(sizes) % per_iteration or any(size <= 0 for size in sizes):
        raise reject("tree_sizes does not fit num_tree_per_iteration")
    at = header_end + 2
    for index, size in enumerate(sizes):
        block = text[at : at + size]
        if len(block) != size or not block.startswith(f"Tree={index}\n"):
            raise reject(f"tree {index} is not where tree_sizes puts it")
        _check_lightgbm_tree(index, block, max_feature, reject)
        at += size
    if not text[at:].lstrip("\n").startswith("end of trees"):
        raise reject("no end of trees after the last tree")


def _check_lightgbm_tree(index: int, block: str, max_feature: int, reject: Any) -> None:
    fields = dict(line.split("=", 1) for line in block.splitlines()[1:] if "=" in line)

    def numbers(name: str, count: int, kind: type = float) -> list[Any]:
        try:
            values = [kind(v) for v in fields[name].split()] if count else []
        except (KeyError, ValueError):
            raise reject(f"tree {index} lacks a valid {name}") from None
        if len(values) != count:
            raise reject(f"tree {index} has {len(values)} {name} values, expected {count}")
        return values

    (leaves,) = numbers("num_leaves", 1, int)
    (categorical,) = numbers("num_cat", 1, int) if "num_cat" in fields else (0,)
    if leaves < 1 or categorical < 0:
        raise reject(f"tree {index} has num_leaves {leaves}, num_cat {categorical}")
    numbers("leaf_value", leaves)
    if leaves > 1:
        nodes = leaves - 1
        numbers("threshold", nodes)
        for child in numbers("left_child", nodes, int) + numbers("right_child", nodes, int):
            if not -leaves <= child < nodes:
                raise reject(f"tree {index} has a child index {child} outside the tree")
        if any(not 0 <= f <= max_feature for f in numbers("split_feature", nodes, int)):
            raise reject(f"tree {index} splits on a feature outside 0..{max_feature}")
        decisions = numbers("decision_type", nodes, int)
        if categorical:
            bounds = numbers("cat_boundaries", categorical + 1, int)
            if bounds[0] != 0 or any(b > c for b, c in itertools.pairwise(bounds)):
                raise reject(f"tree {index} has bad cat_boundaries")
            numbers("cat_threshold", bounds[-1], int)
            thresholds = [int(float(t)) for t in fields["threshold"].split()]
            if any(d & 1 and not 0 <= t < categorical for d, t in zip(decisions, thresholds, strict=True)):
                raise reject(f"tree {index} has a categorical split outside its categories")
        elif any(d & 1 for d in decisions):
            raise reject(f"tree {index} has a categorical split but no categories")
    if fields.get("is_linear", "0").strip() not in ("0", ""):
        counts = numbers("num_features", leaves, int)
        numbers("leaf_const", leaves)
        features = [int(v) for v in fields.get("leaf_features", "").split()]
        if len(features) != sum(counts) or any(not 0 <= f <= max_feature for f in features):
            raise reject(f"tree {index} has bad linear leaf features")


def _all_sklearn(estimators: Any) -> bool:
    return all(type(e).__module__.startswith("sklearn.") for e in estimators)


@functools.cache
def allowed_estimators() -> frozenset[str]:
    """Fully qualified names of the scikit-learn estimators :mod:`.algorithms` builds."""
    names = set()
    for per_task in algorithms.ESTIMATORS.values():
        for target in per_task.values():
            if not target.startswith("sklearn."):
                continue
            try:
                cls = algorithms.load_class(algorithms._substitute(target))
            except (ImportError, AttributeError):
                continue
            names.add(f"{cls.__module__}.{cls.__qualname__}")
    names.add("sklearn.multioutput.MultiOutputRegressor")
    return frozenset(names)


def _schema_types(node: Any) -> Iterator[tuple[str, str | None]]:
    """(``module.class``, loader) of every node in a skops schema."""
    if isinstance(node, dict):
        if "__class__" in node and "__module__" in node:
            yield f"{node['__module__']}.{node['__class__']}", node.get("__loader__")
        for value in node.values():
            yield from _schema_types(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_types(value)


def _allowed_type(name: str) -> bool:
    if name in SUPPORT_TYPES or name in allowed_estimators():
        return True
    # numpy's scalar and dtype classes (numpy.float64, numpy.dtypes.Float64DType, ...) are plain data
    module, _, cls = name.rpartition(".")
    return module in ("numpy", "numpy.dtypes") and not cls.startswith("_")


def _load_skops(data: bytes) -> Any:
    import skops.io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ArtifactRejected(f"the stored scikit-learn model is not a valid skops file: {exc}") from exc
    found = list(_schema_types(schema))
    refused = sorted({name for name, _ in found if not _allowed_type(name)})
    loaders = sorted({loader for _, loader in found if loader is not None and loader not in _SAFE_LOADERS})
    if refused or loaders:
        what = ", ".join(refused + [f"{loader} nodes" for loader in loaders])
        raise ArtifactRejected(f"the stored scikit-learn model names types outside the allow-list: {what}")
    root = f"{schema.get('__module__')}.{schema.get('__class__')}"
    if root not in allowed_estimators():
        raise ArtifactRejected(
            f"the stored scikit-learn model is a {root}, not one of the estimators pgml trains"
        )
    untrusted = skops.io.get_untrusted_types(data=data)
    # everything skops does not trust by default has just been checked against our list
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PassiveAggressive* warn on construction since 1.8
        return skops.io.loads(data, trusted=untrusted)


def _stack(parts: list[tuple[str, bytes]]) -> bytes:
    header = json.dumps([[form, len(data)] for form, data in parts]).encode()
    return _HEADER_LENGTH.pack(len(header)) + header + b"".join(data for _, data in parts)


def _unstack(data: bytes) -> list[tuple[str, bytes]]:
    (length,) = _HEADER_LENGTH.unpack_from(data, 0)
    at = _HEADER_LENGTH.size + length
    parts = []
    for form, size in json.loads(data[_HEADER_LENGTH.size : at]):
        if not isinstance(form, str) or form == STACKED:
            raise ArtifactRejected("a stacked model artifact must hold single models")
        parts.append((form, data[at : at + size]))
        at += size
    if at != len(data):
        raise ArtifactRejected("a stacked model artifact has trailing or missing bytes")
    return parts


@contextlib.contextmanager
def _scratch(filename: str) -> Iterator[Path]:
    """A path in a fresh temporary folder (XGBoost and CatBoost save models to files only)."""
    with tempfile.TemporaryDirectory(prefix="pgml-artifact-") as folder:
        yield Path(folder) / filename


# --- loaded forms -------------------------------------------------------------------------------------------------


class LightGBMModel:
    """A LightGBM regressor loaded from its text format: the Booster, answering as LGBMRegressor did."""

    kind = "LGBMRegressor"

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        self.n_features_in_ = booster.num_feature()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x))


class LightGBMClassifierModel(LightGBMModel):
    """A LightGBM classifier loaded from its text format. Classifiers here are always fitted on class indices,
    so ``predict`` is the argmax of the probabilities, exactly what ``LGBMClassifier.predict`` computes."""

    kind = "LGBMClassifier"

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.predict_proba(x), axis=1)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.booster.predict(x))
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw


class StackedRegressor:
    """Several single-target models answering together, one output column each (joint regression)."""

    def __init__(self, estimators: list[Any]) -> None:
        self.estimators_ = estimators

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.asarray(e.predict(x)).ravel() for e in self.estimators_])


class NearestSubcluster:
    """Birch's prediction: the label of the nearest subcluster centre (Euclidean), from its fitted arrays."""

    def __init__(self, centers: np.ndarray, labels: np.ndarray) -> None:
        self.subcluster_centers_ = np.asarray(centers)
        self.subcluster_labels_ = np.asarray(labels)
        self.n_features_in_ = self.subcluster_centers_.shape[1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        from sklearn.metrics import pairwise_distances_argmin

        return self.subcluster_labels_[pairwise_distances_argmin(np.asarray(x), self.subcluster_centers_)]
