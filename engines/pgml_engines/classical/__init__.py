"""Classical machine learning for ``pgml.train``/``pgml.predict``: scikit-learn, XGBoost, LightGBM, CatBoost.

Pure and SQL-free: the proxy reads the relation through the user's session and writes the catalog; this
package gets columns and gives back metrics, column statistics and an artifact (:mod:`.train`, run in a child
process by :mod:`.worker`), and answers predictions from an artifact (:mod:`.predict`).

Importing it loads numpy only; the ML libraries are imported where a model is built or loaded.
"""

from .artifacts import ModelArtifact, dump, load, pack, unpack
from .data import ColumnData, Preprocessing, TrainingData
from .predict import (
    ClassicalModel,
    as_rows,
    decompose,
    load_model,
    predict,
    predict_joint,
    predict_proba,
    predict_rows,
    rows_to_features,
)
from .train import TrainingPlan, TrainingProgress, TrainRequest, TrainResult, plan_training, train
from .worker import TrainingPool, close_default_pool, default_pool, run_training

__all__ = [
    "ClassicalModel",
    "ColumnData",
    "ModelArtifact",
    "Preprocessing",
    "TrainRequest",
    "TrainResult",
    "TrainingData",
    "TrainingPlan",
    "TrainingPool",
    "TrainingProgress",
    "as_rows",
    "close_default_pool",
    "decompose",
    "default_pool",
    "dump",
    "load",
    "load_model",
    "pack",
    "plan_training",
    "predict",
    "predict_joint",
    "predict_proba",
    "predict_rows",
    "rows_to_features",
    "run_training",
    "train",
    "unpack",
]
