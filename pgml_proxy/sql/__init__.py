"""SQL analysis for pgml calls: find them, classify them (DESIGN §4), and splice rewrites into the text.

Pure functions over the statement text, no I/O. The session checks every Query and Parse body for
``PGML_MARK`` (the fast path, the rule of ``mentions_pgml``), and calls ``analyze`` only for those that
mention ``pgml``; the result depends only on the text and the registry's names, so it is cached by text.
"""

from pgml_proxy.sql.analyze import SetReturning, analyze
from pgml_proxy.sql.model import (
    AnswerColumn,
    Argument,
    CallSite,
    Clause,
    Literal,
    LiteralValue,
    QueryLevel,
    SessionCommand,
    Source,
    Span,
    StatementAnalysis,
    Strategy,
)
from pgml_proxy.sql.text import canonical, deparse, mentions_pgml, parses, splice

__all__ = [
    "AnswerColumn",
    "Argument",
    "CallSite",
    "Clause",
    "Literal",
    "LiteralValue",
    "QueryLevel",
    "SessionCommand",
    "SetReturning",
    "Source",
    "Span",
    "StatementAnalysis",
    "Strategy",
    "analyze",
    "canonical",
    "deparse",
    "mentions_pgml",
    "parses",
    "splice",
]
