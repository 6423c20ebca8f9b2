"""StreamPortal on its own: rows taken on demand, in the portal's formats, and the stream closed on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pgml_proxy.session.streams import RowSource, StreamPortal
from pgml_proxy.wire.rows import Field, row_values
from pgml_proxy.wire.types import BINARY_FORMAT, JSONB, TEXT_FORMAT

FIELD = Field("transform_stream", 0, 0, JSONB.oid, -1, -1, TEXT_FORMAT)


class Pieces:
    """An async generator of pieces that records whether it was closed."""

    def __init__(self, pieces: list[Any], fail_after: int | None = None) -> None:
        self.closed = False
        self._pieces = pieces
        self._fail_after = fail_after

    async def run(self) -> AsyncIterator[Any]:
        try:
            for n, piece in enumerate(self._pieces):
                if n == self._fail_after:
                    raise RuntimeError("engine failed")
                yield piece
        finally:
            self.closed = True


def _portal(pieces: Pieces, formats: tuple[int, ...] = ()) -> StreamPortal:
    source = RowSource([FIELD], pieces.run(), lambda item: ([JSONB], [item]))
    return StreamPortal(source, formats, 1)


def _values(rows: list[bytes]) -> list[bytes]:
    return [bytes(row_values(row[5:])[0]) for row in rows]  # type: ignore[arg-type]


async def test_fetch_takes_rows_up_to_the_limit_then_the_rest() -> None:
    pieces = Pieces([["I"], ["'m"], [" so"]])
    portal = _portal(pieces)
    written: list[bytes] = []
    assert await portal.fetch(2, written.append) == 2
    assert not portal.exhausted
    assert _values(written) == [b'["I"]', b'["\'m"]']
    assert await portal.fetch(None, written.append) == 1
    assert portal.exhausted and pieces.closed
    assert await portal.fetch(5, written.append) == 0


async def test_move_skips_rows_without_writing() -> None:
    portal = _portal(Pieces([["a"], ["b"], ["c"]]))
    assert await portal.fetch(2, None) == 2
    written: list[bytes] = []
    await portal.fetch(None, written.append)
    assert _values(written) == [b'["c"]']


async def test_binary_portal_writes_jsonb_binary_and_describes_it() -> None:
    portal = _portal(Pieces([["x"]]), (BINARY_FORMAT,))
    written: list[bytes] = []
    await portal.fetch(None, written.append)
    assert _values(written) == [b'\x01["x"]']
    assert portal.fields[0].format == BINARY_FORMAT
    assert portal.fields_in((TEXT_FORMAT,))[0].format == TEXT_FORMAT


async def test_a_failure_closes_the_stream() -> None:
    pieces = Pieces([["a"], ["b"]], fail_after=1)
    portal = _portal(pieces)
    with pytest.raises(RuntimeError):
        await portal.fetch(None, lambda row: None)
    assert pieces.closed and portal.exhausted


async def test_close_stops_the_generator() -> None:
    pieces = Pieces([["a"], ["b"], ["c"]])
    portal = _portal(pieces)
    await portal.fetch(1, lambda row: None)
    await portal.close()
    assert pieces.closed
    await portal.close()  # twice is harmless
