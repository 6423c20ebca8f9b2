"""The train/test split of contract §3.6.

Rows are put in sampling order, then the first ``N − n_test`` train and the last ``n_test`` test. ``stratified``
is a real label-stratified split for single-label classification (PostgresML's is a shuffle, §7.2 #2) and a
shuffle otherwise. An empty training or test split is an error with a message, never a crash (§7.2 #13).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument

SAMPLINGS = ("random", "last", "stratified")


@dataclass(frozen=True)
class Split:
    """Row positions (into the relation as read) of each side, each in sampling order."""

    train: np.ndarray
    test: np.ndarray


def count_test_rows(n_rows: int, test_size: float) -> int:
    """``round(N × test_size)`` for a fraction (≤ 1), else ``test_size`` rows; halves round up, as PostgresML's
    Rust ``f32::round`` does."""
    if test_size is None or not math.isfinite(test_size) or test_size < 0:
        raise InvalidArgument(f"test_size must be a number >= 0, got {test_size!r}")
    if test_size <= 1.0:
        return math.floor(n_rows * test_size + 0.5)
    return math.floor(test_size + 0.5)


def format_real(value: float) -> str:
    """A float4 argument as PostgresML prints it (Rust's ``Display`` for f32): ``0.25``, ``0.1``, ``50``."""
    return np.format_float_positional(np.float32(value), trim="-")


def split(
    n_rows: int,
    test_size: float,
    sampling: str,
    *,
    labels: Sequence[Any] | np.ndarray | None = None,
    stratify: bool = False,
    seed: int | np.random.Generator | None = None,
) -> Split:
    """Split ``n_rows`` rows. ``labels`` (one per row) and ``stratify`` (single-label classification) make
    ``stratified`` stratify; ``seed`` makes shuffles reproducible."""
    if sampling not in SAMPLINGS:
        raise InvalidArgument(f'invalid input value for enum pgml.sampling: "{sampling}"')
    n_test = count_test_rows(n_rows, test_size)
    if n_test >= n_rows:
        raise InvalidArgument(
            f"test_size = {format_real(test_size)} is too large. There are only {n_rows} samples."
        )
    if n_test == 0:
        raise InvalidArgument(
            f"test_size = {format_real(test_size)} leaves no rows to test on: {n_rows} samples make an empty "
            "test split. Use a larger test_size (a fraction, or a row count above 1) or more rows."
        )
    rng = np.random.default_rng(seed)
    if sampling == "last":
        order = np.arange(n_rows)
        return Split(order[: n_rows - n_test], order[n_rows - n_test :])
    if sampling == "stratified" and stratify and labels is not None:
        return _stratified(np.asarray(labels), n_test, rng)
    order = rng.permutation(n_rows)
    return Split(order[: n_rows - n_test], order[n_rows - n_test :])


def _stratified(labels: np.ndarray, n_test: int, rng: np.random.Generator) -> Split:
    """Each class gives the test split its share of ``n_test`` (largest remainders first), keeping at least one
    row of every class in training whenever the counts allow, so every class can be learned."""
    n_rows = len(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = counts * (n_test / n_rows)
    keep_one = np.maximum(counts - 1, 0)
    take = np.minimum(np.floor(quota).astype(int), keep_one)
    remaining = n_test - int(take.sum())
    # largest fractional remainder first, ties at random; first up to "one row stays in training", then beyond
    order = np.lexsort((rng.random(len(counts)), -(quota - take)))
    for cap in (keep_one, counts):
        while remaining > 0:
            grown = False
            for index in order:
                if remaining and take[index] < cap[index]:
                    take[index] += 1
                    remaining -= 1
                    grown = True
            if not grown:
                break
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for cls, count in enumerate(take):
        members = rng.permutation(np.flatnonzero(inverse == cls))
        test.append(members[:count])
        train.append(members[count:])
    return Split(rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test)))
