"""pgml.load_dataset (contract §2.4): a toy dataset written into ``pgml.<name>`` on the client's session.

The table is dropped (CASCADE) and created again, as PostgresML does, in one statement, so a failure
leaves the previous table in place; it is the client's session that writes it, so its permissions and
its transaction hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from pgml_engines.datasets import Dataset

from pgml_proxy.functions.registry import CallContext, Overload
from pgml_proxy.functions.signatures import Column, Parameter, Signature
from pgml_proxy.sql.literals import identifier
from pgml_proxy.wire.types import INT8, TEXT

_BODY_TAG: Final = "$pgml_proxy_load$"


def _value(value: Any) -> str:
    """A value as SQL: numbers as written (float4 keeps 9 digits), booleans, nested arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, ".9g") if math.isfinite(value) else "'NaN'"
    if isinstance(value, list):
        return "ARRAY[" + ",".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} into a dataset table")


def load_sql(dataset: Dataset) -> str:
    """One DO statement that replaces ``pgml.<table>`` with the dataset's rows."""
    table = f"pgml.{identifier(dataset.table)}"
    columns = ", ".join(f"{identifier(name)} {sql_type}" for name, sql_type in dataset.columns)
    values = ",\n".join("(" + ", ".join(_value(v) for v in row) + ")" for row in dataset.rows)
    statements = [
        "CREATE SCHEMA IF NOT EXISTS pgml",
        f"DROP TABLE IF EXISTS {table} CASCADE",
        f"CREATE TABLE {table} ({columns})",
    ]
    if dataset.rows:
        statements.append(f"INSERT INTO {table} VALUES {values}")
    return f"DO {_BODY_TAG} BEGIN {'; '.join(statements)}; END {_BODY_TAG}"


async def _load_dataset(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    results = []
    for source, _subset, limit, _kwargs in calls:
        dataset = await context.engine.load_dataset(source, limit)
        assert context.session is not None  # the registry runs it only where the session is there
        await context.session.rows(load_sql(dataset))
        results.append([(f"pgml.{dataset.table}", len(dataset.rows))])
    return results


DATA: Final[Sequence[Overload]] = (
    Overload(
        Signature(
            "load_dataset",
            (
                Parameter("source", "text"),
                Parameter("subset", "text", None),
                Parameter("limit", "bigint", None),
                Parameter("kwargs", "jsonb", {}),
            ),
            (Column("table_name", TEXT), Column("rows", INT8)),
            set_returning=True,
            strict=False,
        ),
        _load_dataset,
        uses_session=True,
    ),
)
"""The data helpers' overloads, for the registry."""
