"""Text-level helpers: the fast-path check, splicing replacements into a statement, deparsing, re-parsing.

DESIGN §4 prefers splicing replacement text into the statement as written over deparsing the whole
tree: everything the proxy did not touch (comments, ``E''`` strings, dollar quoting, casts as written)
then reaches the upstream byte-identical. The deparser is only for single nodes and for tests that
compare meaning (it drops comments and normalises casts and quoting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import pglast
import pglast.visitors
from pglast import ast, parser
from pglast.stream import RawStream

PGML_MARK: Final = b"pgml"

KEEP_OWN_TRANSACTION: Final = "SET LOCAL idle_in_transaction_session_timeout = 0"
"""Sent as soon as the proxy opens a transaction of its own: the upstream session sits idle in it while the
proxy computes, and the upstream's ``idle_in_transaction_session_timeout`` must not end the session for
that. LOCAL: it ends with the transaction; inside the client's own transaction blocks the setting stays
the client's."""
"""What the fast path looks for, in a lowered copy of the statement text."""


def mentions_pgml(body: bytes | bytearray | memoryview) -> bool:
    """The fast-path test (DESIGN §3): does the statement text contain ``pgml`` in any case?

    No parsing and no decoding: a statement without those four bytes is relayed untouched. Every
    encoding PostgreSQL accepts from a client is ASCII-compatible, so the bytes are those letters.
    One lowered copy is the cheapest case-insensitive test measured for statement-sized text.
    """
    return PGML_MARK in bytes(body).lower()


def splice(sql: str, replacements: Sequence[tuple[int, int, str]]) -> str:
    """Replace the character spans ``[start, end)`` of ``sql`` by new text, leaving every other character.

    Spans must not overlap (touching is fine: ``(5, 5, "x")`` inserts); their order does not matter.
    """
    ordered = sorted(replacements, key=lambda r: (r[0], r[1]))
    out: list[str] = []
    pos = 0
    for start, end, text in ordered:
        if not 0 <= start <= end <= len(sql):
            raise ValueError(f"span [{start}, {end}) outside the statement (length {len(sql)})")
        if start < pos:
            raise ValueError(f"span [{start}, {end}) overlaps an earlier replacement ending at {pos}")
        out.append(sql[pos:start])
        out.append(text)
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def deparse(node: ast.Node) -> str:
    """SQL text for one pglast node (a statement, an expression or a type name)."""
    return RawStream()(node)


def parses(sql: str) -> bool:
    """Whether PostgreSQL's grammar (through pglast) accepts ``sql``."""
    try:
        pglast.parse_sql(sql)
    except parser.ParseError:
        return False
    return True


def canonical(sql: str) -> str:
    """The statements of ``sql`` deparsed, one per line: equal for texts that parse to the same trees.

    Raises ``pglast.parser.ParseError`` when ``sql`` does not parse.
    """
    return "\n".join(RawStream()(raw.stmt) for raw in pglast.parse_sql(sql))


def parameter_numbers(sql: str) -> set[int]:
    """The ``$n`` parameters a statement refers to (none when it does not parse)."""
    try:
        tree = pglast.parse_sql(sql)
    except parser.ParseError:
        return set()

    numbers: set[int] = set()

    class Collector(pglast.visitors.Visitor):
        def visit_ParamRef(self, ancestors: object, node: ast.ParamRef) -> None:
            numbers.add(node.number)

    Collector()(tree)
    return numbers


def replace_parameters(sql: str, texts: Mapping[int, str]) -> str:
    """``sql`` with every ``$n`` token that ``texts`` has replaced by that text (strings, comments and
    dollar quotes keep their ``$`` signs: only the scanner's parameter tokens are replaced)."""
    edits = []
    for token in parser.scan(sql):
        if token.name == "PARAM":
            number = int(sql[token.start + 1 : token.end + 1])
            if number in texts:
                edits.append((token.start, token.end + 1, texts[number]))
    return splice(sql, edits)
