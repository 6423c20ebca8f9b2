"""From the columns of a relation to a training matrix: types, labels, statistics and preprocessing.

The proxy reads the relation through the user's own session and hands over plain columns (:class:`ColumnData`:
name, type name, one Python value per row). Everything here is pure: no SQL, no I/O.

The fitted preprocessing *is* the list of column objects of contract §3.1 (``pgml.snapshots.columns``): each
holds the column's ``preprocessor`` choice and its ``statistics`` (training rows, after encoding), and the
statistics carry everything a transform needs (category codes or target means, mean, std_dev, min, max, ...).
So what is stored in the snapshot is exactly what :class:`Preprocessing` applies, plain JSON, and the training
split goes through the same code path as a row-form prediction later (no train/serve skew).

Pipeline per element (§4.5, §4.6): encode (number; category → code, ordinal position or target mean; NULL text →
``__NULL__`` = 0; unseen category → NaN) → impute (NaN → a statistic) → one-hot expansion or scaling. Features
are float32, the type predictions arrive in (``real[]``), so a model is trained on the values it will be fed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidArgument

NULL_CATEGORY = "__NULL__"
NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "float4", "float8", "numeric", "oid"})
BOOL_TYPES = frozenset({"bool"})
TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "char", "name", "citext"})
_TYPE_ALIASES = {
    "smallint": "int2",
    "integer": "int4",
    "int": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "decimal": "numeric",
    "boolean": "bool",
    "character varying": "varchar",
    "character": "bpchar",
}

ENCODINGS = ("native", "target", "one_hot", "ordinal")
IMPUTATIONS = ("error", "mean", "median", "mode", "min", "max", "zero")
SCALINGS = ("preserve", "standard", "min_max", "max_abs", "robust")
#: Imputations whose value need not be one of a categorical column's codes (refused there, §4.6).
_MEAN_LIKE = frozenset({"mean", "median"})

HISTOGRAM_BINS = 20
VENTILES = tuple(round(0.05 * k, 2) for k in range(1, 20))  # the 19 cut points, 5 % … 95 %


@dataclass(frozen=True)
class ColumnData:
    """One column of the relation as read: ``values`` has one entry per row, ``None`` for NULL; an array
    column's entries are (possibly nested) lists; a numeric column may be one float64 array (NULL: NaN). ``pg_type`` is the type name (``int4``, ``float4[]``,
    ``text``; ``_int4`` and SQL spellings like ``integer`` are accepted)."""

    name: str
    pg_type: str
    values: Sequence[Any]
    nullable: bool = True


@dataclass(frozen=True)
class Preprocessor:
    """One column's ``preprocess`` entry with the defaults filled in (§4.6)."""

    encode: str = "native"
    ordinal: tuple[str, ...] = ()
    impute: str = "error"
    scale: str = "preserve"

    def to_json(self) -> dict[str, Any]:
        encode: Any = {"ordinal": list(self.ordinal)} if self.encode == "ordinal" else self.encode
        return {"encode": encode, "impute": self.impute, "scale": self.scale}

    @classmethod
    def from_json(cls, column: str, spec: Any) -> Preprocessor:
        if spec is None:
            return cls()
        if not isinstance(spec, Mapping):
            raise InvalidArgument(
                f'preprocess for column "{column}" must be an object like {{"impute": "mean"}}'
            )
        unknown = sorted(set(spec) - {"encode", "impute", "scale"})
        if unknown:
            raise InvalidArgument(
                f'unknown preprocess keys for column "{column}": {", ".join(unknown)}; '
                "expected encode, impute, scale"
            )
        encode = spec.get("encode") or "native"
        ordinal: tuple[str, ...] = ()
        if isinstance(encode, Mapping):
            if set(encode) != {"ordinal"} or not isinstance(encode["ordinal"], list):
                raise InvalidArgument(
                    f'encode for column "{column}" must be a string or {{"ordinal": ["v1", "v2", ...]}}'
                )
            ordinal = tuple(str(v) for v in encode["ordinal"])
            encode = "ordinal"
        if encode not in ENCODINGS or (encode == "ordinal" and not ordinal):
            raise InvalidArgument(
                f'invalid encode {encode!r} for column "{column}"; expected "native", "target", "one_hot" or '
                '{"ordinal": [...]}'
            )
        impute = spec.get("impute") or "error"
        if impute not in IMPUTATIONS:
            raise InvalidArgument(
                f'invalid impute {impute!r} for column "{column}"; expected one of: {", ".join(IMPUTATIONS)}'
            )
        scale = spec.get("scale") or "preserve"
        if scale not in SCALINGS:
            raise InvalidArgument(
                f'invalid scale {scale!r} for column "{column}"; expected one of: {", ".join(SCALINGS)}'
            )
        return cls(encode, ordinal, impute, scale)


def normalize_type(pg_type: str) -> tuple[str, bool]:
    """(element type, is array) for a type name: ``float4[]`` and ``_float4`` are both (``float4``, True)."""
    name = pg_type.strip().lower()
    array = False
    if name.endswith("[]"):
        name, array = name.rstrip("[]").strip(), True
    elif name.startswith("_"):
        name, array = name[1:], True
    return _TYPE_ALIASES.get(name, name), array


def _kind(element: str) -> str | None:
    if element in NUMERIC_TYPES:
        return "numeric"
    if element in BOOL_TYPES:
        return "bool"
    if element in TEXT_TYPES:
        return "text"
    return None


class Table:
    """The columns of one read of a relation, checked for shape; rows are addressed by position."""

    def __init__(self, columns: Sequence[ColumnData]) -> None:
        if not columns:
            raise InvalidArgument("the relation has no columns")
        names = [c.name for c in columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InvalidArgument(f"duplicate column names: {', '.join(duplicated)}")
        lengths = {len(c.values) for c in columns}
        if len(lengths) > 1:
            raise InvalidArgument("every column must have one value per row")
        self.columns = list(columns)
        self.n_rows = lengths.pop()
        self._by_name = {c.name: c for c in columns}

    def column(self, name: str) -> ColumnData:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


# --- labels -----------------------------------------------------------------------------------------------------


def check_labels(table: Table, y_column_names: Sequence[str]) -> None:
    """§3.5 / §3.6: every label column exists, is a scalar, and holds no NULL."""
    for name in y_column_names:
        if name not in table:
            raise InvalidArgument(f"Column `{name}` not found. Did you pass the correct `y_column_name`?")
    nulls = 0
    for name in y_column_names:
        column = table.column(name)
        element, array = normalize_type(column.pg_type)
        if array or _kind(element) is None:
            raise InvalidArgument(f'label column "{name}" has type {column.pg_type}; labels must be scalar')
        nulls += sum(v is None or (isinstance(v, float) and math.isnan(v)) for v in column.values)
    if nulls:
        first = y_column_names[0]
        raise InvalidArgument(
            f'The training data labels in "y" contain {nulls} NULL values.\n'
            "Consider filtering these values from the training data by creating a VIEW that includes a SQL "
            f"filter like `WHERE {first} IS NOT NULL`."
        )


@dataclass(frozen=True)
class Labels:
    """Label values as float64 (``(n,)`` for one column, ``(n, k)`` for several) and, for TEXT labels, the
    category codes (``{"<label>": code}``, 1-based by first appearance in the training rows, §4.5)."""

    values: np.ndarray
    codes: Mapping[str, int] | None = None


def encode_labels(
    table: Table, y_column_names: Sequence[str], task: str, train_rows: np.ndarray
) -> tuple[Labels, list[dict[str, Any]]]:
    """The label matrix for all rows and the label columns' column objects (statistics on training rows).

    TEXT labels (classification only) become their codes; a test row whose label never appears in the training
    rows gets NaN (it can only count as a miss in the metrics).
    """
    outputs = []
    objects = []
    codes_of_first: Mapping[str, int] | None = None
    for index, name in enumerate(y_column_names):
        column = table.column(name)
        element, _ = normalize_type(column.pg_type)
        kind = _kind(element)
        categories = None
        if kind == "text":
            if task == "regression":
                raise InvalidArgument(f'label column "{name}" is {element}: regression needs numeric labels')
            strings = [str(v) for v in column.values]
            codes: dict[str, int] = {}
            members: dict[str, int] = {}
            for row in train_rows:
                value = strings[row]
                if value not in codes:
                    codes[value] = len(codes) + 1
                members[value] = members.get(value, 0) + 1
            values = np.array([codes.get(v, np.nan) for v in strings], dtype=np.float64)
            categories = {NULL_CATEGORY: {"value": 0, "members": 0}} | {
                k: {"value": c, "members": members[k]} for k, c in codes.items()
            }
            if index == 0:
                codes_of_first = codes
        else:
            values = _floats(column, column.values)
        outputs.append(values)
        stats = statistics(values[train_rows])
        stats["categories"] = categories
        objects.append(
            {
                "name": name,
                "pg_type": _display_type(column.pg_type),
                "nullable": column.nullable,
                "label": True,
                "array": False,
                "position": 0,  # set by the caller, which knows the table order
                "size": 1,
                "preprocessor": Preprocessor().to_json(),
                "statistics": stats,
            }
        )
    matrix = outputs[0] if len(outputs) == 1 else np.column_stack(outputs)
    return Labels(matrix, codes_of_first), objects


# --- statistics ---------------------------------------------------------------------------------------------------


def statistics(values: np.ndarray) -> dict[str, Any]:
    """§3.1 statistics of (encoded) values; NaN counts as missing and is left out of everything else.

    ``ventiles`` are the 19 cut points at 5 %, 10 %, … 95 % (so ``ventiles[4]`` is the first quartile and
    ``ventiles[14]`` the third, which robust scaling divides by). Undefined numbers (no values) are null.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    present = flat[~np.isnan(flat)]
    stats: dict[str, Any] = {"missing": int(flat.size - present.size), "categories": None}
    if present.size == 0:
        stats |= dict.fromkeys(("min", "max", "max_abs", "mean", "median", "mode", "variance", "std_dev"))
        stats |= {"distinct": 0, "histogram": [0] * HISTOGRAM_BINS, "ventiles": [None] * len(VENTILES)}
        return stats
    distinct, counts = np.unique(present, return_counts=True)
    lo, hi = float(present.min()), float(present.max())
    variance = float(present.var())  # population variance, as standard scaling uses
    histogram, _ = np.histogram(present, bins=HISTOGRAM_BINS, range=(lo, hi) if hi > lo else None)
    stats |= {
        "min": _json_float(lo),
        "max": _json_float(hi),
        "max_abs": _json_float(max(abs(lo), abs(hi))),
        "mean": _json_float(float(present.mean())),
        "median": _json_float(float(np.median(present))),
        "mode": _json_float(float(distinct[int(np.argmax(counts))])),  # ties: the smallest value
        "variance": _json_float(variance),
        "std_dev": _json_float(math.sqrt(variance)),
        "distinct": int(distinct.size),
        "histogram": [int(c) for c in histogram],
        "ventiles": [_json_float(float(v)) for v in np.quantile(present, VENTILES)],
    }
    return stats


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- preprocessing -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Feature:
    """How one feature column becomes ``width`` matrix columns; derived from its column object only."""

    name: str
    pg_type: str
    kind: str  # numeric | bool | text
    array: bool
    size: int
    categories: Mapping[str, float] | None  # text: category → encoded value
    one_hot: int  # indicator columns per element (categories less __NULL__); 0 unless one_hot
    impute: float | None  # NaN → this; None: NaN stays
    shift: float
    divisor: float

    @property
    def width(self) -> int:
        return self.size * (self.one_hot if self.one_hot else 1)


class Preprocessing:
    """The fitted preprocessing of a snapshot, built from (and serialised as) its column objects."""

    def __init__(self, columns: Sequence[Mapping[str, Any]]) -> None:
        self._columns = [dict(c) for c in columns]
        self._features = [_feature(c) for c in self._columns if not c.get("label")]
        self.num_features = sum(f.width for f in self._features)

    @classmethod
    def from_json(cls, columns: Sequence[Mapping[str, Any]]) -> Preprocessing:
        return cls(columns)

    def to_json(self) -> list[dict[str, Any]]:
        """The column objects (``pgml.snapshots.columns``), features and labels in table order."""
        return [dict(c) for c in self._columns]

    @property
    def feature_columns(self) -> list[str]:
        return [f.name for f in self._features]

    def transform_columns(self, columns: Sequence[Sequence[Any]]) -> np.ndarray:
        """The float32 feature matrix of raw values, one sequence per feature column (in feature order)."""
        if len(columns) != len(self._features):
            names = ", ".join(f.name for f in self._features)
            raise InvalidArgument(
                f"expected {len(self._features)} feature columns ({names}), got {len(columns)}"
            )
        n = len(columns[0]) if columns else 0
        out = np.empty((n, self.num_features), dtype=np.float32)
        at = 0
        for feature, values in zip(self._features, columns, strict=True):
            if len(values) != n:
                raise InvalidArgument("every feature column must have one value per row")
            out[:, at : at + feature.width] = _apply(feature, _encode(feature, values))
            at += feature.width
        return out

    def transform_rows(self, rows: Iterable[Sequence[Any]]) -> np.ndarray:
        """Row-form prediction (§2.2): each record's fields map by position onto the feature columns."""
        rows = [tuple(r) for r in rows]
        count = len(self._features)
        for row in rows:
            if len(row) != count:
                names = ", ".join(f.name for f in self._features)
                raise InvalidArgument(
                    f"the row has {len(row)} fields; the model's features are {count}: {names}"
                )
        return self.transform_columns([[row[i] for row in rows] for i in range(count)])


def _feature(column: Mapping[str, Any]) -> _Feature:
    element, array = normalize_type(column["pg_type"])
    kind = _kind(element)
    if kind is None:
        raise InvalidArgument(f'column "{column["name"]}" has unsupported type {column["pg_type"]}')
    preprocessor = Preprocessor.from_json(column["name"], column.get("preprocessor"))
    stats = column.get("statistics") or {}
    categories = None
    one_hot = 0
    if kind == "text":
        categories = {k: float(v["value"]) for k, v in (stats.get("categories") or {}).items()}
        if preprocessor.encode == "one_hot":
            one_hot = max(len(categories) - 1, 0)
    impute = None
    if preprocessor.impute == "zero":
        impute = 0.0
    elif preprocessor.impute != "error":
        impute = stats.get(preprocessor.impute)
    shift, divisor = 0.0, 1.0
    if not one_hot:
        shift, divisor = _scaling(preprocessor.scale, stats)
    size = int(column.get("size") or 0) if array else 1
    return _Feature(
        column["name"], column["pg_type"], kind, array, size, categories, one_hot, impute, shift, divisor
    )


def _scaling(scale: str, stats: Mapping[str, Any]) -> tuple[float, float]:
    """(shift, divisor) with x' = (x − shift) / divisor; a zero or unknown spread leaves the values unscaled
    (a constant column has nothing to scale)."""

    def number(key: str) -> float | None:
        value = stats.get(key)
        return None if value is None else float(value)

    if scale == "standard":
        shift, spread = number("mean"), number("std_dev")
    elif scale == "min_max":
        lo, hi = number("min"), number("max")
        shift, spread = lo, None if lo is None or hi is None else hi - lo
    elif scale == "max_abs":
        shift, spread = 0.0, number("max_abs")
    elif scale == "robust":
        ventiles = stats.get("ventiles") or []
        q1, q3 = (ventiles[4], ventiles[14]) if len(ventiles) == len(VENTILES) else (None, None)
        shift = number("median")
        spread = None if q1 is None or q3 is None else float(q3) - float(q1)
    else:
        return 0.0, 1.0
    if shift is None or spread is None or spread == 0 or not math.isfinite(spread):
        return (0.0 if shift is None else shift), 1.0
    return shift, spread


def _encode(feature: _Feature, values: Sequence[Any]) -> np.ndarray:
    """(n, size) float64: numbers as such, categories as their encoded value, NaN where missing or unseen."""
    if feature.kind == "text":
        categories = feature.categories or {}
        elements = _elements(feature, values)
        flat = np.fromiter((categories.get(v, np.nan) for row in elements for v in row), np.float64)
        return flat.reshape(len(values), feature.size)
    column = ColumnData(feature.name, feature.pg_type, values)
    if not feature.array:
        return _floats(column, values).reshape(-1, 1)
    return _float_rows(column, values, feature.size)


def _apply(feature: _Feature, encoded: np.ndarray) -> np.ndarray:
    if feature.impute is not None:
        encoded = np.where(np.isnan(encoded), feature.impute, encoded)
    if feature.one_hot:
        # Codes 1..K−1 each get an indicator; __NULL__ (code 0) is the dropped one. Unseen → NaN throughout.
        codes = np.arange(1, feature.one_hot + 1, dtype=np.float64)
        hot = (encoded[:, :, None] == codes).astype(np.float64)
        hot[np.isnan(encoded)] = np.nan
        return hot.reshape(len(encoded), -1)
    if feature.shift != 0.0 or feature.divisor != 1.0:
        encoded = (encoded - feature.shift) / feature.divisor
    return encoded


# --- reading raw values -------------------------------------------------------------------------------------------


def _to_float(column: ColumnData, value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f'column "{column.name}" ({column.pg_type}) has a value that is not a number: {value!r}'
        ) from None


def _floats(column: ColumnData, values: Sequence[Any]) -> np.ndarray:
    try:  # numpy converts numbers, bools, Decimals and None (→ NaN) in one pass over a large column
        converted = np.array(values, dtype=np.float64)
        if converted.shape == (len(values),):
            return converted
    except (TypeError, ValueError):
        pass
    # something odd in the column: go value by value, to name the one that is not a number
    return np.fromiter((_to_float(column, v) for v in values), np.float64, count=len(values))


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return [item for part in value for item in _flatten(part)]
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _float_rows(column: ColumnData, values: Sequence[Any], size: int) -> np.ndarray:
    """(n, size) from an array column: rows flattened row-major; a NULL array is all NaN."""
    out = np.full((len(values), size), np.nan)
    for i, value in enumerate(values):
        if value is None:
            continue
        flat = _flatten(value)
        if len(flat) != size:
            raise InvalidArgument(
                f'array column "{column.name}" has {len(flat)} elements in a row, expected {size} (every row '
                "must have the same size)"
            )
        out[i] = [_to_float(column, v) for v in flat]
    return out


def _elements(feature: _Feature, values: Sequence[Any]) -> list[list[str]]:
    """Each row's elements as strings (``__NULL__`` for NULL)."""

    def label(v: Any) -> str:
        return NULL_CATEGORY if v is None else str(v)

    if not feature.array:
        return [[label(v)] for v in values]
    rows = []
    for value in values:
        if value is None:
            rows.append([NULL_CATEGORY] * feature.size)
            continue
        flat = _flatten(value)
        if len(flat) != feature.size:
            raise InvalidArgument(
                f'array column "{feature.name}" has {len(flat)} elements in a row, expected {feature.size} '
                "(every row must have the same size)"
            )
        rows.append([label(v) for v in flat])
    return rows


def _take(values: Sequence[Any], rows: np.ndarray) -> Sequence[Any]:
    """The values at ``rows``: one indexing of an array column of numbers, else value by value."""
    if isinstance(values, np.ndarray):
        return values[rows]
    return [values[i] for i in rows]


def _array_size(column: ColumnData) -> int:
    """Elements per row of an array column: those of its first non-NULL row (0 when every row is NULL)."""
    for value in column.values:
        if value is not None:
            return len(_flatten(value))
    return 0


def _display_type(pg_type: str) -> str:
    element, array = normalize_type(pg_type)
    return f"{element}[]" if array else element


# --- fitting on the training rows ---------------------------------------------------------------------------------


def parse_preprocess(preprocess: Mapping[str, Any] | None, table: Table) -> dict[str, Preprocessor]:
    """``preprocess`` jsonb → one Preprocessor per named column; a name not in the relation is refused. An
    entry for a label column is accepted and unused (labels are never preprocessed, §4.6)."""
    if preprocess is None:
        return {}
    if not isinstance(preprocess, Mapping):
        raise InvalidArgument('preprocess must be an object like {"<column>": {"impute": "mean"}}')
    unknown = sorted(name for name in preprocess if name not in table)
    if unknown:
        raise InvalidArgument(f"preprocess names columns that are not in the relation: {', '.join(unknown)}")
    return {name: Preprocessor.from_json(name, spec) for name, spec in preprocess.items()}


def fit_feature_column(
    column: ColumnData,
    preprocessor: Preprocessor,
    train_rows: np.ndarray,
    target: np.ndarray | None,
    position: int,
) -> dict[str, Any]:
    """The column object of one feature column, fitted on ``train_rows`` (§4.5, §4.6)."""
    element, array = normalize_type(column.pg_type)
    kind = _kind(element)
    if kind is None:
        raise InvalidArgument(
            f'column "{column.name}" has type {column.pg_type}, which cannot be a feature; use numbers, bool, '
            "text or arrays of those"
        )
    size = _array_size(column) if array else 1
    if kind != "text" and preprocessor.encode != "native":
        raise InvalidArgument(
            f'encode "{preprocessor.encode}" is not supported for column "{column.name}" ({column.pg_type}): '
            "encoding a continuous variable makes no sense; only text columns can be encoded"
        )
    categories = None
    train_values = _take(column.values, train_rows)
    probe = _Feature(column.name, column.pg_type, kind, array, size, None, 0, None, 0.0, 1.0)
    if kind == "text":
        if preprocessor.impute in _MEAN_LIKE and preprocessor.encode != "target":
            raise InvalidArgument(
                f'impute "{preprocessor.impute}" is not supported for the categorical column "{column.name}" '
                'unless it is target encoded; use "mode", "min", "max" or "zero", or {"encode": "target"}'
            )
        categories = _fit_categories(column.name, preprocessor, _elements(probe, train_values), target)
        probe = _Feature(
            column.name,
            column.pg_type,
            kind,
            array,
            size,
            {k: v["value"] for k, v in categories.items()},
            0,
            None,
            0.0,
            1.0,
        )
    else:
        missing = int(np.isnan(_encode(probe, column.values)).sum())
        if missing and preprocessor.impute == "error":
            raise InvalidArgument(
                f"{missing} missing values for {column.name}. You may provide a preprocessor to impute a value. "
                f'e.g.:\n\n  pgml.train(..., preprocess => \'{{"{column.name}": {{"impute": "mean"}}}}\')'
            )
    stats = statistics(_encode(probe, train_values))
    stats["categories"] = categories
    if preprocessor.impute not in ("error", "zero") and stats.get(preprocessor.impute) is None:
        raise InvalidArgument(
            f'impute "{preprocessor.impute}" for column "{column.name}" has no training values to compute it from'
        )
    return {
        "name": column.name,
        "pg_type": _display_type(column.pg_type),
        "nullable": column.nullable,
        "label": False,
        "array": array,
        "position": position,
        "size": size,
        "preprocessor": preprocessor.to_json(),
        "statistics": stats,
    }


def _fit_categories(
    name: str, preprocessor: Preprocessor, rows: list[list[str]], target: np.ndarray | None
) -> dict[str, dict[str, Any]]:
    """``{"<category>": {"value": …, "members": …}}``: ``__NULL__`` first with 0, then first appearance
    (native, one_hot), list position (ordinal) or the mean of the first label (target)."""
    members: dict[str, int] = {NULL_CATEGORY: 0}
    for row in rows:
        for value in row:
            members[value] = members.get(value, 0) + 1
    if preprocessor.encode == "ordinal":
        listed = {v: i + 1 for i, v in enumerate(preprocessor.ordinal)}
        for value in members:
            if value != NULL_CATEGORY and value not in listed:
                raise InvalidArgument(
                    f'value is not present in ordinal: "{value}" (column "{name}", ordinal '
                    f"{list(preprocessor.ordinal)})"
                )
        return {NULL_CATEGORY: {"value": 0, "members": members[NULL_CATEGORY]}} | {
            v: {"value": code, "members": members.get(v, 0)}
            for v, code in listed.items()
            if v != NULL_CATEGORY
        }
    if preprocessor.encode == "target":
        if target is None:
            raise InvalidArgument(f'target encoding of column "{name}" needs a label column (y_column_name)')
        sums: dict[str, float] = {}
        for row, y in zip(rows, target, strict=True):
            for value in row:
                sums[value] = sums.get(value, 0.0) + float(y)
        overall = float(np.mean(target)) if len(target) else 0.0
        return {
            v: {"value": sums[v] / count if count else overall, "members": count}
            for v, count in members.items()
        }
    return {v: {"value": code, "members": count} for code, (v, count) in enumerate(members.items())}


@dataclass(frozen=True)
class TrainingData:
    """What fitting needs: float32 features and float64 labels of both splits, and what the catalog stores.

    ``y_*`` are None for unsupervised tasks. ``columns`` are the §3.1 column objects in table order (features
    and labels), which are also the serialised :class:`Preprocessing`.
    """

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None
    y_test: np.ndarray | None
    columns: list[dict[str, Any]]
    num_features: int
    feature_names: list[str]
    label_names: list[str]
    samples: int
    label_codes: Mapping[str, int] | None = field(default=None)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.columns)


def prepare(
    table: Table,
    y_column_names: Sequence[str],
    task: str,
    preprocess: Mapping[str, Any] | None,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
) -> TrainingData:
    """Encode labels, fit every feature column's preprocessing on ``train_rows``, and transform both splits."""
    supervised = task in ("regression", "classification")
    check_labels(table, y_column_names)
    specs = parse_preprocess(preprocess, table)
    labels: Labels | None = None
    label_objects: list[dict[str, Any]] = []
    if y_column_names:
        labels, label_objects = encode_labels(table, y_column_names, task, train_rows)
    target = None
    if labels is not None:
        first = labels.values if labels.values.ndim == 1 else labels.values[:, 0]
        target = first[train_rows]
    objects: list[dict[str, Any]] = []
    label_by_name = {o["name"]: o for o in label_objects}
    for position, column in enumerate(table.columns, start=1):
        if column.name in label_by_name:
            label_by_name[column.name]["position"] = position
            objects.append(label_by_name[column.name])
            continue
        objects.append(
            fit_feature_column(column, specs.get(column.name, Preprocessor()), train_rows, target, position)
        )
    preprocessing = Preprocessing(objects)
    if preprocessing.num_features == 0:
        raise InvalidArgument("the relation has no feature columns besides the labels")
    feature_columns = [table.column(name) for name in preprocessing.feature_columns]

    def matrix(rows: np.ndarray) -> np.ndarray:
        return preprocessing.transform_columns([_take(c.values, rows) for c in feature_columns])

    return TrainingData(
        x_train=matrix(train_rows),
        x_test=matrix(test_rows),
        y_train=labels.values[train_rows] if labels is not None and supervised else None,
        y_test=labels.values[test_rows] if labels is not None and supervised else None,
        columns=objects,
        num_features=preprocessing.num_features,
        feature_names=preprocessing.feature_columns,
        label_names=list(y_column_names),
        samples=table.n_rows,
        label_codes=labels.codes if labels is not None else None,
    )
