"""The engine's exceptions: the only ones a caller of :class:`pgml_engines.Engine` has to handle.

Every failure inside the engine (a library's ValueError, a missing file, CUDA running out of memory) is turned
into one of these, so the proxy maps a handful of classes to SQLSTATEs in one place and no library exception type
leaks across the boundary. ``sqlstate`` is the code the contract asks for; the engine itself never speaks SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    sqlstate: ClassVar[str] = "XX000"


class ModelNotFound(EngineError, LookupError):
    """No configured or local source has the model, and downloads are not allowed (or failed).

    ``searched`` lists every place that was tried, in order, so the message tells an operator where to put it.
    """

    sqlstate: ClassVar[str] = "42704"

    def __init__(self, model: str, searched: Sequence[str]) -> None:
        self.model = model
        self.searched = tuple(searched)
        places = "; ".join(self.searched) if self.searched else "nowhere"
        super().__init__(f"model {model!r} not found; looked in: {places}")


class InvalidArgument(EngineError, ValueError):
    """The caller asked for something the engine cannot do: bad kwargs, unknown splitter, a device this host
    lacks."""

    sqlstate: ClassVar[str] = "22023"


class NotAllowed(EngineError, PermissionError):
    """The proxy's configuration forbids this: a model outside the allowed list, or remote code from a model that
    is not trusted to run it. Only the operator can change that (a session can never widen it)."""

    sqlstate: ClassVar[str] = "42501"


class EngineFailure(EngineError, RuntimeError):
    """Anything else that went wrong while running a model: the request may have been fine, the engine was not."""

    sqlstate: ClassVar[str] = "XX000"


class ArtifactRejected(EngineError):
    """A stored model artifact failed its checks (format, checksum, allowed types) and was not loaded.

    Bytes in ``pgml.files`` are data, not trusted code: a corrupted or tampered artifact is refused before any
    library sees it, rather than deserialized and hoped for the best.
    """

    sqlstate: ClassVar[str] = "XX001"  # data_corrupted


def translate(exc: BaseException) -> EngineError:
    """Map an exception raised by a library into the engine's own classes (the original stays as __cause__).

    TypeError and ValueError from sentence-transformers, transformers and langchain almost always mean the
    caller's arguments were wrong, so they become InvalidArgument; everything else is an EngineFailure.
    """
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, TypeError | ValueError):
        error: EngineError = InvalidArgument(str(exc))
    else:
        error = EngineFailure(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
