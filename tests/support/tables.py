"""Tables a test creates for itself in the shared upstream, under a name no other test uses."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg


@contextmanager
def scratch_table(url: str, columns: str, rows: Iterable[Sequence[Any]], prefix: str = "t") -> Iterator[str]:
    """``CREATE TABLE <prefix>_<random> (<columns>)`` filled with ``rows`` by COPY; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create extension if not exists vector")
        conn.execute(f"create table {name} ({columns})")
        with conn.cursor().copy(f"copy {name} from stdin") as copy:
            for row in rows:
                copy.write_row(row)
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"drop table {name}")
