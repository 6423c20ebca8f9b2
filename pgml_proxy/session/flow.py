"""Back-pressure across the two transports of a session.

When one side's write buffer passes its high-water mark, the proxy stops reading the other side until it
drains, so a slow client never makes the proxy hold a whole result set (and a slow upstream never makes
it hold a whole COPY). Reading can be paused for several reasons at once; it resumes when none is left.
"""

from __future__ import annotations

import asyncio
from typing import Final

WRITE_HIGH_WATER: Final = 256 * 1024
WRITE_LOW_WATER: Final = 64 * 1024


class ReadGate:
    """Pauses reading from a transport while at least one reason to pause stands."""

    __slots__ = ("_reasons", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._reasons: set[str] = set()
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)

    def pause(self, reason: str) -> None:
        if not self._reasons and not self._transport.is_closing():
            self._transport.pause_reading()
        self._reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons and not self._transport.is_closing():
            self._transport.resume_reading()

    @property
    def paused(self) -> bool:
        return bool(self._reasons)
