"""Column metadata, encoding, imputation and scaling of classical training data (contract §3.1, §3.6, §4.5, §4.6)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pgml_engines.classical import data
from pgml_engines.classical.data import ColumnData, Preprocessing, Table
from pgml_engines.errors import InvalidArgument


def prepare(columns, y=("y",), task="regression", preprocess=None, train=None, test=None):
    table = Table(columns)
    n = table.n_rows
    train = np.arange(n - 1) if train is None else np.asarray(train)
    test = np.arange(n - 1, n) if test is None else np.asarray(test)
    return data.prepare(table, list(y), task, preprocess, train, test)


def column_object(prepared, name):
    return next(c for c in prepared.columns if c["name"] == name)


def test_column_objects_carry_the_contracts_keys_and_statistics_of_the_training_rows() -> None:
    values = [1.0, 2.0, 2.0, 3.0, 4.0, 100.0]
    prepared = prepare(
        [ColumnData("x", "float8", values), ColumnData("y", "int4", [0, 1, 0, 1, 0, 1])],
        train=range(5),
        test=[5],
    )
    x = column_object(prepared, "x")
    assert set(x) == {
        "name",
        "pg_type",
        "nullable",
        "label",
        "array",
        "position",
        "size",
        "preprocessor",
        "statistics",
    }
    assert (x["label"], x["array"], x["position"], x["size"]) == (False, False, 1, 1)
    assert x["preprocessor"] == {"encode": "native", "impute": "error", "scale": "preserve"}
    stats = x["statistics"]
    assert set(stats) == {
        "min",
        "max",
        "max_abs",
        "mean",
        "median",
        "mode",
        "variance",
        "std_dev",
        "missing",
        "distinct",
        "histogram",
        "ventiles",
        "categories",
    }
    # the test row (100.0) is not in the statistics
    assert (stats["min"], stats["max"], stats["mean"], stats["median"], stats["mode"]) == (
        1.0,
        4.0,
        2.4,
        2.0,
        2.0,
    )
    assert stats["variance"] == pytest.approx(np.var([1, 2, 2, 3, 4]))
    assert stats["std_dev"] == pytest.approx(np.std([1, 2, 2, 3, 4]))
    assert (stats["distinct"], stats["missing"], stats["categories"]) == (4, 0, None)
    assert len(stats["histogram"]) == 20 and sum(stats["histogram"]) == 5
    assert len(stats["ventiles"]) == 19
    y = column_object(prepared, "y")
    assert y["label"] is True and y["position"] == 2
    json.dumps(prepared.columns, allow_nan=False)  # plain JSON, storable in pgml.snapshots.columns


def test_text_columns_get_codes_by_first_appearance_with_null_as_zero() -> None:
    prepared = prepare(
        [
            ColumnData("color", "text", ["red", None, "blue", "red", "green"]),
            ColumnData("y", "float4", [1, 2, 3, 4, 5]),
        ],
        train=range(4),
        test=[4],
    )
    categories = column_object(prepared, "color")["statistics"]["categories"]
    assert categories == {
        "__NULL__": {"value": 0, "members": 1},
        "red": {"value": 1, "members": 2},
        "blue": {"value": 2, "members": 1},
    }
    assert prepared.x_train[:, 0].tolist() == [1, 0, 2, 1]
    assert math.isnan(prepared.x_test[0, 0])  # "green" never appeared in training


def test_one_hot_target_ordinal_encodings() -> None:
    columns = [
        ColumnData("size", "varchar", ["s", "m", "l", "m"]),
        ColumnData("city", "text", ["a", "b", "a", "b"]),
        ColumnData("shape", "bpchar", ["x", "y", "x", "z"]),
        ColumnData("y", "float8", [1.0, 3.0, 5.0, 0.0]),
    ]
    prepared = prepare(
        columns,
        preprocess={
            "size": {"encode": {"ordinal": ["s", "m", "l"]}},
            "city": {"encode": "target"},
            "shape": {"encode": "one_hot"},
        },
        train=[0, 1, 2],
        test=[3],
    )
    # ordinal: 1-based list position; target: mean label of the category's training rows; one_hot: K−1 columns
    assert prepared.num_features == 1 + 1 + 2
    assert prepared.x_train.tolist() == [[1, 3, 1, 0], [2, 3, 0, 1], [3, 3, 1, 0]]
    assert prepared.x_test[0, :2].tolist() == [2, 3]
    assert np.isnan(prepared.x_test[0, 2:]).all()  # "z" is unseen: NaN in every indicator
    city = column_object(prepared, "city")["statistics"]["categories"]
    assert city["a"]["value"] == 3.0 and city["b"]["value"] == 3.0
    assert city["__NULL__"] == {"value": pytest.approx(3.0), "members": 0}  # empty category: overall mean


def test_impute_and_scale_use_the_training_statistics() -> None:
    columns = [
        ColumnData("a", "float8", [1.0, None, 3.0, 5.0]),
        ColumnData("b", "int4", [0, 10, 20, None]),
        ColumnData("c", "int8", [2, 4, 6, 8]),
        ColumnData("d", "float4", [-4, 2, 0, 1]),
        ColumnData("y", "float8", [0, 1, 2, 3]),
    ]
    prepared = prepare(
        columns,
        preprocess={
            "a": {"impute": "mean", "scale": "standard"},
            "b": {"impute": "zero", "scale": "min_max"},
            "c": {"scale": "max_abs"},
            "d": {"scale": "robust"},
        },
        train=[0, 1, 2],
        test=[3],
    )
    a = (np.array([1.0, 2.0, 3.0]) - 2.0) / np.std([1.0, 3.0])
    assert prepared.x_train[:, 0] == pytest.approx(a)
    assert prepared.x_train[:, 1] == pytest.approx([0.0, 0.5, 1.0])
    assert prepared.x_test[0, 1] == pytest.approx(0.0)  # NULL → 0, then (0 − 0) / 20
    assert prepared.x_train[:, 2] == pytest.approx([1 / 3, 2 / 3, 1.0])
    q1, q3 = np.quantile([-4, 2, 0], [0.25, 0.75])
    assert prepared.x_train[:, 3] == pytest.approx((np.array([-4, 2, 0]) - 0.0) / (q3 - q1))


def test_bool_and_array_columns_are_flattened_in_table_order() -> None:
    columns = [
        ColumnData("flag", "bool", [True, False, None]),
        ColumnData("image", "int2[]", [[[1, 2], [3, 4]], [[5, 6], [7, 8]], None]),
        ColumnData("y", "float8", [1, 2, 3]),
    ]
    prepared = prepare(
        columns, preprocess={"flag": {"impute": "min"}, "image": {"impute": "zero"}}, train=[0, 1], test=[2]
    )
    assert prepared.num_features == 5
    assert column_object(prepared, "image")["size"] == 4
    assert column_object(prepared, "image")["pg_type"] == "int2[]"
    assert prepared.x_train.tolist() == [[1, 1, 2, 3, 4], [0, 5, 6, 7, 8]]
    assert prepared.x_test.tolist() == [[0, 0, 0, 0, 0]]


def test_missing_values_without_impute_fail_with_the_contracts_message() -> None:
    columns = [ColumnData("age", "int4", [1, None, None, 4]), ColumnData("y", "float8", [1, 2, 3, 4])]
    with pytest.raises(InvalidArgument) as failure:
        prepare(columns)
    message = str(failure.value)
    assert message.startswith("2 missing values for age. You may provide a preprocessor to impute a value.")
    assert """preprocess => '{"age": {"impute": "mean"}}'""" in message


def test_null_labels_fail_with_the_contracts_message() -> None:
    columns = [ColumnData("x", "int4", [1, 2, 3]), ColumnData("y", "float8", [1.0, None, 3.0])]
    with pytest.raises(InvalidArgument, match=r'^The training data labels in "y" contain 1 NULL values.'):
        prepare(columns)


def test_a_label_column_that_does_not_exist_is_named() -> None:
    with pytest.raises(
        InvalidArgument, match=r"^Column `target` not found. Did you pass the correct `y_column_name`"
    ):
        prepare([ColumnData("x", "int4", [1, 2])], y=("target",))


@pytest.mark.parametrize(
    ("preprocess", "message"),
    [
        ({"x": {"encode": "one_hot"}}, "encoding a continuous variable makes no sense"),
        ({"t": {"encode": {"ordinal": ["a"]}}}, "^value is not present in ordinal"),
        ({"t": {"impute": "mean"}}, 'impute "mean" is not supported for the categorical column "t"'),
        ({"t": {"scale": "huge"}}, "invalid scale 'huge'"),
        ({"t": {"normalize": True}}, "unknown preprocess keys"),
        ({"nope": {"impute": "mean"}}, "not in the relation: nope"),
    ],
)
def test_invalid_preprocessing_is_refused(preprocess, message) -> None:
    columns = [
        ColumnData("x", "int4", [1, 2, 3]),
        ColumnData("t", "text", ["a", "b", "a"]),
        ColumnData("y", "int4", [0, 1, 0]),
    ]
    with pytest.raises(InvalidArgument, match=message):
        prepare(columns, preprocess=preprocess)


def test_text_labels_become_codes_and_unsupported_types_are_refused() -> None:
    columns = [
        ColumnData("x", "float8", [1, 2, 3, 4]),
        ColumnData("y", "text", ["cat", "dog", "cat", "bird"]),
    ]
    prepared = prepare(columns, task="classification", train=[0, 1, 2], test=[3])
    assert prepared.y_train.tolist() == [1, 2, 1]
    assert np.isnan(prepared.y_test[0])  # a label seen only in testing has no code
    assert column_object(prepared, "y")["statistics"]["categories"]["dog"] == {"value": 2, "members": 1}
    with pytest.raises(InvalidArgument, match=r"regression needs numeric labels"):
        prepare(columns, task="regression")
    with pytest.raises(InvalidArgument, match=r"cannot be a feature"):
        prepare([ColumnData("when", "timestamp", [1, 2]), ColumnData("y", "int4", [1, 2])])


def test_the_serialised_preprocessing_reproduces_the_training_matrix_from_rows() -> None:
    columns = [
        ColumnData("a", "float8", [1.0, None, 3.0, 7.0]),
        ColumnData("kind", "text", ["u", "v", None, "u"]),
        ColumnData("vec", "float4[]", [[1, 2], [3, 4], [5, 6], [7, 8]]),
        ColumnData("y", "float8", [0, 1, 2, 3]),
    ]
    preprocess = {
        "a": {"impute": "median", "scale": "standard"},
        "kind": {"encode": "one_hot"},
        "vec": {"scale": "min_max"},
    }
    prepared = prepare(columns, preprocess=preprocess, train=[0, 1, 2], test=[3])
    stored = json.loads(json.dumps(prepared.columns))  # through the catalog and back
    preprocessing = Preprocessing.from_json(stored)
    rows = [(1.0, "u", [1, 2]), (None, "v", [3, 4]), (3.0, None, [5, 6])]
    assert preprocessing.transform_rows(rows) == pytest.approx(prepared.x_train, nan_ok=True)
    assert preprocessing.feature_columns == ["a", "kind", "vec"]
    with pytest.raises(InvalidArgument, match=r"the row has 2 fields"):
        preprocessing.transform_rows([(1.0, "u")])
