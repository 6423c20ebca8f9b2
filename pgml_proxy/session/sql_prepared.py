"""SQL-level PREPARE of a statement whose pgml calls take ``$n`` parameters or read table rows.

Such a statement cannot be planned once: its calls depend on the values EXECUTE supplies and on the rows
at that moment. The session holds it instead of the upstream, answers PREPARE and DEALLOCATE itself,
and turns each ``EXECUTE name(args)`` into the statement with every ``$n`` replaced by its argument
(cast to the declared type), which then runs as if the client had sent it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgml_proxy.errors import SqlSyntaxError
from pgml_proxy.sql.model import SessionCommand
from pgml_proxy.sql.text import parameter_numbers, replace_parameters


@dataclass(frozen=True, slots=True)
class HeldStatement:
    name: str
    arg_types: tuple[str, ...]  # as PREPARE declared them (possibly fewer than the statement uses)
    query: str

    @property
    def parameters(self) -> int:
        return max([len(self.arg_types), *parameter_numbers(self.query)])

    def executed(self, sql: str, command: SessionCommand) -> str:
        """The statement ``EXECUTE`` (``command``, a part of ``sql``) runs, its arguments in place."""
        if len(command.args) != self.parameters:
            raise SqlSyntaxError(
                f'wrong number of parameters for prepared statement "{self.name}"',
                detail=f"Expected {self.parameters} parameters but got {len(command.args)}.",
            )
        texts = {}
        for number, span in enumerate(command.args, 1):
            cast = f"::{self.arg_types[number - 1]}" if number <= len(self.arg_types) else ""
            texts[number] = f"(({span.text(sql)}){cast})"
        return replace_parameters(self.query, texts)
