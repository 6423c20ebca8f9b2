"""SQL text for values the proxy writes into statements: always typed, always safely quoted.

User strings are never pasted into SQL: every value goes through :func:`quote`, whose ``E''`` form reads
the same whether ``standard_conforming_strings`` is on or off.
"""

from __future__ import annotations

from collections.abc import Sequence


def quote(text: str) -> str:
    """A string literal for ``text`` under either setting of standard_conforming_strings."""
    if "\x00" in text:
        raise ValueError("a PostgreSQL string cannot contain NUL")
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def typed(text: str | None, type_name: str) -> str:
    """A value of ``type_name`` given its text form (None is NULL), e.g. ``E'{0.1,0.2}'::real[]``."""
    return f"NULL::{type_name}" if text is None else f"{quote(text)}::{type_name}"


def array(texts: Sequence[str | None], element_type: str) -> str:
    """A one-dimensional array of ``element_type`` from its elements' text forms, NULLs kept."""
    elements = ", ".join("NULL" if t is None else quote(t) for t in texts)
    return f"ARRAY[{elements}]::{element_type}[]"


def identifier(name: str) -> str:
    """A quoted identifier: the name exactly as given, whatever its case or characters."""
    return '"' + name.replace('"', '""') + '"'
