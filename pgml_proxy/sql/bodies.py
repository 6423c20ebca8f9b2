"""Finding pgml calls inside code PostgreSQL stores as a string: function bodies and DO blocks.

Such a call would run inside PostgreSQL, out of the proxy's sight, so the session answers 0A000. A
SQL-language body is parsed; a PL/pgSQL body (and a DO block) is scanned with the SQL scanner, which
skips comments, and its string constants are scanned again, so dynamic SQL
(``EXECUTE 'SELECT pgml.embed(…)'``) is found too. Other languages, and text the scanner cannot read,
get a case-insensitive regular expression. A false alarm only costs an error on DDL that would fail at run time anyway
(the catalog's stubs raise 0A000 when called inside PostgreSQL).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pglast
from pglast import ast, parser

_CALL_RE = re.compile(r'\bpgml\s*\.\s*"?([A-Za-z_][A-Za-z0-9_$]*)"?\s*\(', re.IGNORECASE)
_MAX_NESTING = 3


def calls_in_body(body: str, language: str | None, implemented: frozenset[str]) -> tuple[str, ...]:
    """Names (lower-case, in order of appearance, unique) of implemented pgml functions ``body`` calls."""
    language = (language or "plpgsql").lower()
    if language == "sql":
        try:
            stmts = pglast.parse_sql(body)
        except parser.ParseError:
            found = _scan(body, implemented, 0)
        else:
            found = [name for name in _func_names(stmts) if name in implemented]
    elif language == "plpgsql":
        found = _scan(body, implemented, 0)
    else:
        # PL/Python, PL/Perl …: their own syntax; a plain text search is the honest check.
        found = _regex(body, implemented)
    return tuple(dict.fromkeys(found))


def _func_names(node: object) -> Iterator[str]:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple | list):
            stack.extend(reversed(n))
            continue
        if not isinstance(n, ast.Node):
            continue
        if isinstance(n, ast.FuncCall):
            parts = [getattr(p, "sval", None) for p in n.funcname or ()]
            if len(parts) == 2 and parts[0] == "pgml" and isinstance(parts[1], str):
                yield parts[1]
        for slot in reversed(type(n).__slots__):
            child = getattr(n, slot, None)
            if isinstance(child, ast.Node | tuple | list):
                stack.append(child)


def _ident(text: str) -> str:
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def _string_body(text: str) -> str:
    """The content of a string constant token, near enough to scan again."""
    if text.startswith("$"):
        tag_end = text.index("$", 1) + 1
        return text[tag_end : len(text) - tag_end]
    if text[:1] in "eEbBxXnNuU" and text[1:2] in ("'", "&"):
        text = text[text.index("'") :]
    return text[1:-1].replace("''", "'")


def _regex(text: str, implemented: frozenset[str]) -> list[str]:
    return [m.group(1).lower() for m in _CALL_RE.finditer(text) if m.group(1).lower() in implemented]


def _scan(text: str, implemented: frozenset[str], nesting: int) -> list[str]:
    try:
        raw = [t for t in parser.scan(text) if t.name not in ("C_COMMENT", "SQL_COMMENT")]
    except parser.ParseError:
        return _regex(text, implemented)
    words = [text[t.start : t.end + 1] for t in raw]
    found: list[str] = []
    for i, t in enumerate(raw):
        if t.name == "SCONST" and nesting < _MAX_NESTING:
            found.extend(_scan(_string_body(words[i]), implemented, nesting + 1))
        elif (
            i + 3 < len(raw)
            and _ident(words[i]) == "pgml"
            and words[i + 1] == "."
            and words[i + 3] == "("
            and _ident(words[i + 2]) in implemented
        ):
            found.append(_ident(words[i + 2]))
    return found
