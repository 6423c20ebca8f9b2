"""``pgml.load_dataset``'s built-in toy datasets (contract §2.4): scikit-learn's, shaped as PostgresML
stores them (table and column names, types, column order), ready for the proxy to write into a table.

Nothing is downloaded: these datasets ship inside scikit-learn. Hugging Face datasets would need the
network, which a proxy never has by default, so any other source is refused, naming the ones there are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgument

_MEASURES = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave points",
    "symmetry",
    "fractal dimension",
)


@dataclass(frozen=True)
class Dataset:
    """A toy dataset as a table: ``columns`` are (name, SQL type) in order, ``rows`` Python values."""

    table: str
    columns: tuple[tuple[str, str], ...]
    rows: list[tuple[Any, ...]]


def _floats(names: list[str]) -> list[tuple[str, str]]:
    return [(name, "real") for name in names]


def _breast_cancer() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = [
        *(f"mean {m}" for m in _MEASURES),
        *(f"{m} error" for m in _MEASURES),
        *(f"worst {m}" for m in _MEASURES),
    ]
    rows = [(*map(float, x), bool(y == 0)) for x, y in zip(bunch.data, bunch.target, strict=True)]
    return Dataset("breast_cancer", (*_floats(names), ("malignant", "boolean")), rows)


def _diabetes() -> Dataset:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    rows = [(*map(float, x), float(y)) for x, y in zip(bunch.data, bunch.target, strict=True)]
    return Dataset("diabetes", (*_floats([*names, "target"]),), rows)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rows = [
        ([[int(v) for v in row] for row in image], int(y))
        for image, y in zip(bunch.images, bunch.target, strict=True)
    ]
    return Dataset("digits", (("image", "smallint[][]"), ("target", "smallint")), rows)


def _iris() -> Dataset:
    from sklearn.datasets import load_iris

    bunch = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = [(*map(float, x), int(y)) for x, y in zip(bunch.data, bunch.target, strict=True)]
    return Dataset("iris", (*_floats(names), ("target", "integer")), rows)


def _linnerud() -> Dataset:
    from sklearn.datasets import load_linnerud

    bunch = load_linnerud()
    names = ["chins", "situps", "jumps", "weight", "waist", "pulse"]
    rows = [(*map(float, x), *map(float, y)) for x, y in zip(bunch.data, bunch.target, strict=True)]
    return Dataset("linnerud", (*_floats(names),), rows)


def _wine() -> Dataset:
    from sklearn.datasets import load_wine

    bunch = load_wine()
    names = [
        "alcohol",
        "malic_acid",
        "ash",
        "alcalinity_of_ash",
        "magnesium",
        "total_phenols",
        "flavanoids",
        "nonflavanoid_phenols",
        "proanthocyanins",
        "hue",
        "color_intensity",
        "od280/od315_of_diluted_wines",
        "proline",
    ]
    # scikit-learn orders color_intensity before hue; PostgresML's table has hue first (kept).
    order = [list(bunch.feature_names).index(n) for n in names]
    rows = [(*(float(x[i]) for i in order), int(y)) for x, y in zip(bunch.data, bunch.target, strict=True)]
    return Dataset("wine", (*_floats(names), ("target", "integer")), rows)


TOY: dict[str, Callable[[], Dataset]] = {
    "breast_cancer": _breast_cancer,
    "diabetes": _diabetes,
    "digits": _digits,
    "iris": _iris,
    "linnerud": _linnerud,
    "wine": _wine,
}
"""Source name → loader, for every dataset that needs no network."""


def toy_dataset(source: str, limit: int | None = None) -> Dataset:
    """The dataset named ``source``, its first ``limit`` rows when given; InvalidArgument for any other."""
    loader = TOY.get(source)
    if loader is None:
        raise InvalidArgument(
            f"unknown dataset {source!r}: pgml-proxy loads the built-in datasets {', '.join(sorted(TOY))} "
            "(Hugging Face datasets would need the network)"
        )
    if limit is not None and limit < 0:
        raise InvalidArgument(f"limit must not be negative, got {limit}")
    dataset = loader()
    return dataset if limit is None else Dataset(dataset.table, dataset.columns, dataset.rows[:limit])
