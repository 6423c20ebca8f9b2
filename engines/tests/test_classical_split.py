"""The train/test split of contract §3.6: order, sizes, stratification, and the error texts."""

from __future__ import annotations

import numpy as np
import pytest
from pgml_engines.classical.split import count_test_rows, format_real, split
from pgml_engines.errors import InvalidArgument


def test_last_keeps_the_relations_order_and_tests_on_the_last_rows() -> None:
    parts = split(10, 0.3, "last")
    assert parts.train.tolist() == list(range(7))
    assert parts.test.tolist() == [7, 8, 9]


def test_random_shuffles_every_row_into_exactly_one_side() -> None:
    parts = split(100, 0.25, "random", seed=7)
    assert len(parts.train) == 75 and len(parts.test) == 25
    assert sorted(np.concatenate([parts.train, parts.test]).tolist()) == list(range(100))
    assert parts.train.tolist() != list(range(75))
    again = split(100, 0.25, "random", seed=7)
    assert again.test.tolist() == parts.test.tolist()


def test_test_size_is_a_fraction_up_to_one_and_a_row_count_above() -> None:
    assert count_test_rows(10, 0.25) == 3  # round(2.5) rounds half up, as PostgresML's f32::round
    assert count_test_rows(10, 1.0) == 10
    assert count_test_rows(10, 3.0) == 3
    assert len(split(10, 4.0, "last").test) == 4


def test_a_test_size_leaving_no_training_rows_fails_with_the_contracts_message() -> None:
    with pytest.raises(InvalidArgument, match=r"^test_size = 1 is too large\. There are only 4 samples\.$"):
        split(4, 1.0, "random")
    with pytest.raises(InvalidArgument, match=r"^test_size = 50 is too large\. There are only 10 samples\.$"):
        split(10, 50.0, "last")
    assert format_real(0.1) == "0.1"  # float4 printed as PostgreSQL users wrote it


def test_an_empty_test_split_is_a_clear_error_not_a_crash() -> None:
    with pytest.raises(InvalidArgument, match=r"^test_size = 0.1 leaves no rows to test on: 3 samples"):
        split(3, 0.1, "random")


def test_stratified_keeps_each_label_share_in_both_sides() -> None:
    labels = np.array(["a"] * 80 + ["b"] * 20)
    parts = split(100, 0.25, "stratified", labels=labels, stratify=True, seed=1)
    assert len(parts.test) == 25
    test_labels = labels[parts.test].tolist()
    assert test_labels.count("a") == 20 and test_labels.count("b") == 5
    assert sorted(np.concatenate([parts.train, parts.test]).tolist()) == list(range(100))


def test_stratified_leaves_every_class_a_training_row_when_it_can() -> None:
    labels = np.array([0] * 10 + [1, 2])
    parts = split(12, 0.5, "stratified", labels=labels, stratify=True, seed=3)
    assert set(labels[parts.train].tolist()) == {0, 1, 2}
    assert len(parts.test) == 6


def test_stratified_without_a_single_classification_label_is_a_shuffle() -> None:
    parts = split(50, 0.2, "stratified", labels=None, stratify=False, seed=2)
    assert len(parts.test) == 10
    assert parts.train.tolist() != list(range(40))


def test_unknown_sampling_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"pgml.sampling"):
        split(10, 0.2, "first")
