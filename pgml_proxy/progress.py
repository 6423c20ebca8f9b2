"""Progress of long command-line work (imports, fine-tuning, preloads) on stderr.

On a terminal the running step is one line redrawn in place with a spinner, a bar when the work counts its
items (the tensors of a GGUF import), and the seconds it has taken, so a dequantization that takes minutes
visibly moves; elsewhere (a log file, a CI job) each step is one plain line when it starts and one when it
ends, with its time, and a counted step adds a line at each quarter.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from types import TracebackType
from typing import Final, TextIO

SPINNER: Final = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
REDRAW_S: Final = 0.1
BAR_WIDTH: Final = 24
PREFIX: Final = "pgml-proxy: "


class Step:
    """One step: ``with Step("loading x") as step: …; step.done("12 MB")`` (or ``step.fail(reason)``)."""

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self.what = what
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ended = False
        self._counted: tuple[int, int] | None = None
        self._quarters_shown = 0

    def __enter__(self) -> Step:
        self._started = time.monotonic()
        if self._live:
            self._thread = threading.Thread(target=self._spin, name="pgml-proxy-progress", daemon=True)
            self._thread.start()
        else:
            self._write(f"{PREFIX}{self.what} …\n")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if not self._ended:
            self._end("failed" if error is not None else "done", None)

    def count(self, done: int, total: int) -> None:
        """``done`` of ``total`` items are through (any thread)."""
        self._counted = (done, total)
        quarters = 4 * done // total if total > 0 else 0
        if not self._live and quarters > self._quarters_shown:
            self._quarters_shown = quarters
            self._write(f"{PREFIX}{self.what}: {done}/{total} ({25 * quarters}%)\n")

    def done(self, detail: str | None = None) -> None:
        self._end("done", detail)

    def fail(self, reason: str) -> None:
        self._end("failed", reason)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _end(self, outcome: str, detail: str | None) -> None:
        self._ended = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        suffix = f": {detail}" if detail else ""
        self._write(f"\r\033[K{PREFIX}{self.what}: {outcome} in {self.elapsed:.1f} s{suffix}\n")

    def _spin(self) -> None:
        for frame in itertools.cycle(SPINNER):
            self._write(f"\r\033[K{frame} {self.what}{self._bar()} … {self.elapsed:.1f} s")
            if self._stop.wait(REDRAW_S):
                return

    def _bar(self) -> str:
        if self._counted is None:
            return ""
        done, total = self._counted
        filled = BAR_WIDTH * done // total if total > 0 else 0
        return f" [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total}"

    def _write(self, text: str) -> None:
        if not self._live:
            text = text.removeprefix("\r\033[K")
        with self._lock:
            self._stream.write(text)
            self._stream.flush()


class Steps:
    """A ``progress(step)`` callback for work that reports its steps one after another (an import): each
    report ends the running step and starts the next; leaving the block ends the last."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._current: Step | None = None

    def __call__(self, what: str) -> None:
        self._finish("done")
        self._current = Step(what, self._stream).__enter__()

    def __enter__(self) -> Steps:
        return self

    def count(self, done: int, total: int) -> None:
        """The running step's count (see :meth:`Step.count`)."""
        if self._current is not None:
            self._current.count(done, total)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._finish("failed" if error is not None else "done")

    def _finish(self, outcome: str) -> None:
        if self._current is not None:
            self._current._end(outcome, None)
            self._current = None
