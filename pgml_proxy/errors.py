"""One exception hierarchy for every layer, each class carrying the SQLSTATE a client will see.

Any layer raises; the session turns the exception into an ErrorResponse in one place, so the SQLSTATE
of a failure is decided where the failure is understood, not where it is reported.
"""

from __future__ import annotations

from typing import ClassVar


class ProxyError(Exception):
    """A failure a client should see as an ErrorResponse."""

    sqlstate: ClassVar[str] = "XX000"
    severity: ClassVar[str] = "ERROR"

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint


class FatalError(ProxyError):
    """A failure after which the connection is closed (severity FATAL)."""

    severity = "FATAL"


class ProtocolViolation(FatalError):
    sqlstate = "08P01"


class ConnectionFailure(FatalError):
    sqlstate = "08006"


class TooManyConnections(FatalError):
    sqlstate = "53300"


class AdminShutdown(FatalError):
    sqlstate = "57P01"


class UnsupportedProtocol(FatalError):
    sqlstate = "0A000"


class FeatureNotSupported(ProxyError):
    sqlstate = "0A000"


class QueryCanceled(ProxyError):
    sqlstate = "57014"


class DataException(ProxyError):
    sqlstate = "22000"


class InvalidParameterValue(ProxyError):
    sqlstate = "22023"


class UndefinedFunction(ProxyError):
    sqlstate = "42883"


class AmbiguousFunction(ProxyError):
    sqlstate = "42725"


class UndefinedObject(ProxyError):
    sqlstate = "42704"


class InternalError(ProxyError):
    sqlstate = "XX000"


class SqlSyntaxError(ProxyError):
    sqlstate = "42601"


class DuplicatePreparedStatement(ProxyError):
    sqlstate = "42P05"


class InvalidTextRepresentation(ProxyError):
    sqlstate = "22P02"


class DataCorrupted(ProxyError):
    sqlstate = "XX001"


class InsufficientPrivilege(ProxyError):
    sqlstate = "42501"


class DuplicateObject(ProxyError):
    sqlstate = "42710"


class DuplicateCursor(ProxyError):
    sqlstate = "42P03"


class NoActiveSqlTransaction(ProxyError):
    sqlstate = "25P01"


class ObjectNotInPrerequisiteState(ProxyError):
    sqlstate = "55000"


class RelayedError(ProxyError):
    """The upstream's own error, raised again by the proxy at another point of the client's stream."""

    def __init__(
        self, sqlstate: str, message: str, *, detail: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.sqlstate = sqlstate  # type: ignore[misc]


_ENGINE_ERRORS: dict[str, type[ProxyError]] = {
    cls.sqlstate: cls
    for cls in (InvalidParameterValue, UndefinedObject, InsufficientPrivilege, QueryCanceled, DataCorrupted)
}


def engine_error(sqlstate: str, message: str) -> ProxyError:
    """The error an engine failure with ``sqlstate`` is for the client (XX000 for codes not mapped)."""
    return _ENGINE_ERRORS.get(sqlstate, InternalError)(message)
