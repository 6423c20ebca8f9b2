"""PostgreSQL's own scanner (through pglast) as a token list with bracket depths.

pglast gives most nodes only a start location; where a construct ends (a call's closing parenthesis, a
FROM clause, one select-list entry) is found here, on the scanner's tokens, so string constants,
dollar quoting, ``E''`` escapes and comments can never be mistaken for SQL. Comments are dropped from
the list. The scanner assumes ``standard_conforming_strings = on`` (the default since PostgreSQL 9.1).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from pglast import parser

_OPEN = {"(": ")", "[": "]"}
_CLOSE = {")", "]"}
_COMMENTS = {"C_COMMENT", "SQL_COMMENT"}


@dataclass(frozen=True, slots=True)
class Token:
    start: int
    end: int  # exclusive
    #: The scanner's token name: ``SELECT``, ``IDENT``, ``SCONST``, ``ASCII_40`` …
    name: str
    kind: str
    #: Open brackets around the token; an opening bracket and its closing one share the outer depth.
    depth: int
    #: The token's text for one-character tokens ("(", ",", "."), else "".
    char: str


class Tokens:
    """The tokens of one text, indexed by start offset, with matching brackets paired."""

    def __init__(self, text: str) -> None:
        self.text = text
        toks: list[Token] = []
        self.match: dict[int, int] = {}
        stack: list[int] = []
        for raw in parser.scan(text):
            if raw.name in _COMMENTS:
                continue
            start, end = raw.start, raw.end + 1
            char = text[start] if raw.name.startswith("ASCII_") else ""
            if char in _CLOSE:
                if stack:
                    self.match[stack[-1]] = len(toks)
                    self.match[len(toks)] = stack.pop()
                toks.append(Token(start, end, raw.name, raw.kind, len(stack), char))
                continue
            toks.append(Token(start, end, raw.name, raw.kind, len(stack), char))
            if char in _OPEN:
                stack.append(len(toks) - 1)
        self.toks = toks
        self._starts = [t.start for t in toks]

    def __len__(self) -> int:
        return len(self.toks)

    def __getitem__(self, i: int) -> Token:
        return self.toks[i]

    def at(self, pos: int) -> int:
        """Index of the first token starting at or after ``pos``."""
        return bisect_left(self._starts, pos)

    def exact(self, pos: int) -> int | None:
        i = self.at(pos)
        return i if i < len(self.toks) and self.toks[i].start == pos else None

    def is_(self, i: int, *names: str) -> bool:
        """Token ``i`` exists and is one of ``names`` (scanner names, or the character for punctuation)."""
        if not 0 <= i < len(self.toks):
            return False
        t = self.toks[i]
        return t.name in names or (t.char != "" and t.char in names)

    def split(self, lo: int, hi: int, sep: str = ",") -> list[tuple[int, int]]:
        """Split tokens ``[lo, hi)`` at ``sep`` on the depth of token ``lo``; returns half-open ranges."""
        if lo >= hi:
            return []
        depth = self.toks[lo].depth
        parts: list[tuple[int, int]] = []
        start = lo
        for i in range(lo, hi):
            t = self.toks[i]
            if t.depth == depth and t.char == sep:
                parts.append((start, i))
                start = i + 1
        parts.append((start, hi))
        return parts

    def span_start(self, i: int) -> int:
        return self.toks[i].start

    def span_end(self, i: int) -> int:
        """End offset of token ``i`` (inclusive index)."""
        return self.toks[i].end
