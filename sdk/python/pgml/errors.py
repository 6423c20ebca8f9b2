"""The SDK's exceptions (contract §2.1): everything subclasses ``Exception``, as the upstream's bare ones do."""

from __future__ import annotations


class PgmlError(Exception):
    """Base of every SDK error. Database errors carry the server's ``sqlstate``; the driver error is chained."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ValidationError(PgmlError, ValueError):
    """A bad query, schema, document or argument; the message names the offending key."""


class NotFoundError(PgmlError, LookupError):
    """A named pipeline (or collection) that does not exist."""
