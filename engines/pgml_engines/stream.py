"""``pgml.transform_stream``: generation on its own thread, handed to the event loop piece by piece.

The parts, from the model outwards:
- :class:`PieceStreamer` receives each step's token ids from ``generate()`` (the transformers streamer protocol:
  ``put(ids)``, ``end()``), decodes every sequence's new tokens so far (the whole prefix each time, so byte-level
  BPE characters split over tokens come out whole) and hands out each step's new text at once, cut where
  whitespace starts;
- :class:`PieceChannel` carries rows of pieces to the event loop in a bounded queue: while the client does not
  read, the generating thread blocks (back-pressure) — but always wakes up when the stream is closed, so a close
  never deadlocks and the thread is freed;
- :class:`StopOnEvent` makes ``generate()`` return at its next step once the stream is closed;
- :class:`GenerationSlots` bounds the streams running at once on one model copy; waiting for a slot is
  asynchronous and cancellable.

Rows (contract §5.3): each is a list with one string per sequence being generated; a sequence with nothing new
contributes ``""``. Concatenating element 0 of every row gives exactly the decoded completion.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Rows a stream buffers before its generating thread waits for the client.
QUEUE_ROWS = 16


@dataclass(frozen=True)
class GenerationCounts:
    """Generation's counters at one moment.

    generations: generate() calls (batches and streams); streams_started / streams_active / streams_stopped:
    streams begun, running now, and stopped early by a close or cancel; stream_pieces: rows handed to streams'
    queues; stream_tokens: generation steps of streams.
    """

    generations: int = 0
    streams_started: int = 0
    streams_active: int = 0
    streams_stopped: int = 0
    stream_pieces: int = 0
    stream_tokens: int = 0


class GenerationStats:
    """Generation's live counters, updated from worker and streaming threads (hence the lock); each update makes
    a new :class:`GenerationCounts`, so a snapshot is never half updated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = GenerationCounts()

    def add(self, **counts: int) -> None:
        with self._lock:
            now = self._counts
            self._counts = replace(
                now, **{name: getattr(now, name) + count for name, count in counts.items()}
            )

    def snapshot(self) -> GenerationCounts:
        return self._counts


class StopOnEvent:
    """A generate() stopping criterion (duck-typed: transformers calls it with the ids so far) that ends every
    sequence once ``event`` is set; ``triggered`` tells whether it did."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.triggered = False

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        stop = self.event.is_set()
        self.triggered = self.triggered or stop
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class PieceChannel:
    """A bounded, thread-safe queue from one generating thread to one consumer on an event loop.

    Items are ``("row", list[str])``, then one ``("end", None)`` or ``("error", exception)``. The end marker is
    never refused for lack of room (it is not a row), so the consumer always learns how the stream ended.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, stop: threading.Event, maxsize: int = QUEUE_ROWS
    ) -> None:
        self._loop = loop
        self._stop = stop
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._items: deque[tuple[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # producer side (the generating thread)

    def put(self, row: list[str]) -> bool:
        """Queue a row, waiting while the queue is full; False (row dropped) once the stream is closed."""
        with self._cond:
            while len(self._items) >= self._maxsize and not self._stop.is_set():
                self._cond.wait()
            if self._stop.is_set():
                return False
            self._items.append(("row", row))
            waiter, self._waiter = self._waiter, None
        self._wake(waiter)
        return True

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._items.append(("end", None) if error is None else ("error", error))
            waiter, self._waiter = self._waiter, None
        self._wake(waiter)

    def _wake(self, waiter: asyncio.Future[None] | None) -> None:
        if waiter is None:
            return
        try:
            self._loop.call_soon_threadsafe(_resolve, waiter)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self.stop()

    # consumer side (the event loop)

    async def get(self) -> tuple[str, Any]:
        while True:
            with self._cond:
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify_all()
                    return item
                waiter = self._waiter = self._loop.create_future()
            await waiter

    def stop(self) -> None:
        """The consumer is gone: wake the producer (it drops what it has) and let generation end."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class PieceStreamer:
    """Turns generate()'s token ids into rows of text pieces (the transformers streamer protocol, duck-typed).

    generate() calls ``put`` first with the prompt (skipped), then once per step with one token per sequence,
    and ``end`` when it is done. Each sequence's new ids are decoded as a whole every step and compared with
    what was emitted: text still ending in an incomplete character (U+FFFD) waits for the next token. New text
    goes out at once, as one piece per step, cut further where a run of whitespace begins inside it: a word
    of two tokens is two pieces (``"I"``, ``"'m"``, ``" so"``, ``" glad"``, as in the contract's example).
    """

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        sequences: int,
        channel: PieceChannel,
        stats: GenerationStats,
        *,
        prompt_first: bool = True,
    ) -> None:
        self._decode = decode
        self._channel = channel
        self._stats = stats
        self._ids: list[list[int]] = [[] for _ in range(sequences)]
        self._emitted = [0] * sequences  # characters of each sequence's text already handed out
        self._text = [""] * sequences
        self._skip_prompt = prompt_first
        self.steps = 0
        self.rows = 0
        self.dropped = False

    def put(self, value: torch.Tensor) -> None:
        if self._skip_prompt:
            self._skip_prompt = False
            return
        tokens = value.reshape(-1).tolist()
        if len(tokens) != len(self._ids):
            raise RuntimeError(f"streamer expected {len(self._ids)} sequences, got {len(tokens)} tokens")
        self.steps += 1
        self._stats.add(stream_tokens=1)
        pieces = []
        for index, token in enumerate(tokens):
            self._ids[index].append(token)
            text = self._decode(self._ids[index])
            if text.endswith("\ufffd"):
                pieces.append([])  # half a character: wait for the rest of its bytes
                continue
            self._text[index] = text
            pieces.append(self._complete_pieces(index))
        self._send(pieces, final=False)

    def end(self) -> None:
        """Flush what each sequence still holds as one last row."""
        pieces = []
        for index, ids in enumerate(self._ids):
            text = self._decode(ids) if ids else ""
            self._text[index] = text
            rest = text[self._emitted[index] :]
            self._emitted[index] = len(text)
            pieces.append([rest] if rest else [])
        self._send(pieces, final=True)

    def _complete_pieces(self, index: int) -> list[str]:
        """The text new since the last step, at once (the first token reaches the client with no delay),
        cut where a whitespace run starts inside it."""
        text, start = self._text[index], self._emitted[index]
        if len(text) <= start:
            return []
        boundaries = [i for i in range(start + 1, len(text)) if _starts_piece(text, i)]
        self._emitted[index] = len(text)
        return [text[a:b] for a, b in itertools.pairwise([start, *boundaries, len(text)])]

    def _send(self, pieces: list[list[str]], *, final: bool) -> None:
        for k in range(max((len(p) for p in pieces), default=0)):
            row = [p[k] if k < len(p) else "" for p in pieces]
            if self.dropped:
                return
            if not self._channel.put(row):
                self.dropped = True
                return
            self.rows += 1
            self._stats.add(stream_pieces=1)


def _starts_piece(text: str, i: int) -> bool:
    """A piece starts where a whitespace run starts, and at each CJK character (which has no spaces around)."""
    char = text[i]
    if char.isspace():
        return not text[i - 1].isspace()
    return _is_cjk(char) and not text[i - 1].isspace()


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0xF900 <= code <= 0xFAFF
        or 0x3040 <= code <= 0x30FF  # kana
    )


class GenerationSlots:
    """A counting semaphore for one model copy's streams, usable from any event loop and released from any
    thread (a streaming thread gives its slot back when its generate() returns, not when the client leaves).

    Waiters are served first come, first served; a waiter cancelled while a slot was being handed to it passes
    the slot on.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._lock = threading.Lock()
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        return self._used

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._used < self._limit and not self._waiters:
                self._used += 1
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued and waiter.done() and not waiter.cancelled():
                self.release()  # handed over just before the cancel arrived: pass it on
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if waiter.done():
                    continue
                try:
                    waiter.get_loop().call_soon_threadsafe(self._hand_over, waiter)
                except RuntimeError:  # its loop is closed
                    continue
                return  # the slot stays in use, now by that waiter
            self._used -= 1

    def _hand_over(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():  # cancelled meanwhile
            self.release()
        else:
            waiter.set_result(None)


def generate_streaming(model: Any, plan: Any, streamer: PieceStreamer, stop: StopOnEvent) -> None:
    """Run ``plan``'s generate() with the streamer and the stop criterion (on the stream's own thread)."""
    import torch
    from transformers import StoppingCriteriaList

    kwargs = dict(plan.generate_kwargs)
    criteria = StoppingCriteriaList(kwargs.pop("stopping_criteria", None) or [])
    criteria.append(stop)
    with torch.inference_mode():
        model.generate(**plan.inputs, **kwargs, stopping_criteria=criteria, streamer=streamer)
