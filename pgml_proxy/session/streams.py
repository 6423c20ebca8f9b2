"""Rows the proxy produces as they come: a streaming pgml call (``pgml.transform_stream``) behind a
statement, a protocol-level portal or a SQL cursor.

Tokens must reach the client while the rest are still being generated (contract §2.3), so these rows
never pass through the upstream: each is written the moment the engine yields it, and a portal or cursor
takes only as many as an Execute's row limit or a FETCH asks for. The engine holds back when nobody
reads, so an idle cursor costs a paused generation, not a buffered one; closing one stops it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pgml_proxy.session.splice import portal_fields
from pgml_proxy.wire.rows import Field, data_row, row_description
from pgml_proxy.wire.types import PgType

Shape = Callable[[Any], tuple[list[PgType], list[Any]]]
"""One item of the call's set as the statement's row: its column types and values."""


@dataclass
class RowSource:
    """A streaming call's items, and how the statement makes rows of them."""

    fields: list[Field]  # as the statement describes its columns, in text format
    items: AsyncIterator[Any]
    shape: Shape


class StreamPortal:
    """The rows of one RowSource, fetched on demand in the formats the portal (or cursor) was given."""

    def __init__(self, source: RowSource, result_formats: Sequence[int], extra_float_digits: int) -> None:
        self._source = source
        self.fields = portal_fields(source.fields, result_formats)
        self._digits = extra_float_digits
        self.exhausted = False

    def fields_in(self, result_formats: Sequence[int] | None = None) -> list[Field]:
        """The columns in the portal's formats, or in ``result_formats`` (a FETCH's own Bind)."""
        return self.fields if result_formats is None else portal_fields(self._source.fields, result_formats)

    def description(self, result_formats: Sequence[int] | None = None) -> bytes:
        return row_description(self.fields_in(result_formats))

    async def fetch(
        self,
        limit: int | None,
        write: Callable[[bytes], None] | None,
        result_formats: Sequence[int] | None = None,
    ) -> int:
        """Take up to ``limit`` rows (None: all that are left), writing each DataRow as soon as it exists
        (``write`` None: MOVE, rows skipped); returns how many were taken.

        A failure or cancel while waiting closes the stream: the statement fails, and nothing may
        generate on for a portal that is gone.
        """
        formats = [f.format for f in self.fields_in(result_formats)]
        taken = 0
        try:
            while not self.exhausted and (limit is None or taken < limit):
                try:
                    item = await anext(self._source.items)
                except StopAsyncIteration:
                    self.exhausted = True
                    break
                taken += 1
                if write is not None:
                    types, values = self._source.shape(item)
                    write(
                        data_row(
                            [
                                t.encode(v, f, self._digits)
                                for t, v, f in zip(types, values, formats, strict=True)
                            ]
                        )
                    )
        except BaseException:
            await self.close()
            raise
        return taken

    async def close(self) -> None:
        """Stop the stream (the engine stops generating); closing twice is harmless."""
        self.exhausted = True
        with contextlib.suppress(Exception):
            await self._source.items.aclose()  # type: ignore[attr-defined]
