"""Typed stubs in the upstream for every function the proxy implements, generated from the registry.

The proxy computes ``pgml.embed(...)`` and its kin when a statement sent through it calls them. The stubs
make the same names exist inside PostgreSQL with the contract's signatures, so ``\\df pgml.*`` lists them,
views and functions that mention them can be created, and a call that does reach PostgreSQL (from a view,
a trigger, a generated column, a direct connection) fails with SQLSTATE 0A000 and says why, instead of
"function does not exist". They are VOLATILE, so the planner never folds one while planning, and STRICT
exactly where the function is: a STRICT call with a NULL argument gives NULL (or no rows) as the real
function would.

The stubs follow the registry rather than a migration: the registry grows release by release, and each
install brings them in line with it. Each stub carries a fingerprint of its definition in its body, which
identifies it as a stub and tells whether it is current:

- a stub whose fingerprint matches is left alone (a repeated install is a no-op);
- a stub of an overload the registry no longer has is dropped;
- a same-identity function that is not a stub and not a C function (a plain-SQL helper of the catalog, or
  the user's own) is kept: it works inside PostgreSQL, so it must not be shadowed;
- anything else (an older stub, a C function left by PostgresML) is replaced; when CREATE OR REPLACE
  cannot change it (another result type or parameter names) it is dropped first, which fails, as Postgres
  would, if the user built objects on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pgml_proxy.functions.registry import Registry
from pgml_proxy.functions.signatures import REQUIRED, Column, Parameter, Signature

MARKER: Final = "pgml-proxy stub"
"""Appears in the body of every stub, followed by its fingerprint."""

RAISER: Final = "proxy_stub_error"
"""The plpgsql function that SQL-language stubs call to raise (see ``_needs_sql_body``)."""

_LOCK_SQL: Final = "PERFORM pg_catalog.pg_advisory_xact_lock({lock});"


def quote_ident(name: str) -> str:
    """Always quoted: a registry name may be a keyword (``"text"``, ``"limit"``), and quoting never hurts."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Stub:
    """One overload's stub: its identity (for lookups) and the statement that creates it."""

    function: str
    identity: str  # pgml."embed"(text, text, jsonb): what to_regprocedure and DROP FUNCTION take
    definition: str
    fingerprint: str
    comment: str


def signatures(registry: Registry) -> list[Signature]:
    """Every overload the registry serves, in registration order."""
    return registry.signatures


def stubs(registry: Registry) -> list[Stub]:
    made = [_stub(signature) for signature in signatures(registry)]
    if any(_needs_sql_body(s) for s in signatures(registry)):
        made.insert(0, _raiser())
    return made


def stub_statements(registry: Registry, lock: int) -> list[str]:
    """The statements that bring the stubs in line with ``registry``: drop the stale ones, then make each."""
    made = stubs(registry)
    return [_drop_stale(made, lock), *(_install(stub, lock) for stub in made)]


# -- one stub ---------------------------------------------------------------------------------------------


def _stub(signature: Signature) -> Stub:
    name = signature.function
    identity = f"pgml.{quote_ident(name)}({', '.join(p.type for p in signature.parameters)})"
    parameters = ", ".join(_parameter(p) for p in signature.parameters)
    header = (
        f"CREATE OR REPLACE FUNCTION pgml.{quote_ident(name)}({parameters})\n"
        f"    RETURNS {_returns(signature)}\n"
        f"    LANGUAGE {'sql' if _needs_sql_body(signature) else 'plpgsql'} VOLATILE"
        f"{' STRICT' if signature.strict else ''}\n"
    )
    if _needs_sql_body(signature):
        assert isinstance(signature.returns, tuple)
        nulls = ", ".join(f"NULL::{c.type.name}" for c in signature.returns)
        body = f"SELECT {nulls} FROM pgml.{quote_ident(RAISER)}({quote_literal(name)})"
    else:
        body = (
            "BEGIN\n"
            "    RAISE EXCEPTION USING\n"
            "        ERRCODE = '0A000',\n"
            f"        MESSAGE = {quote_literal(_message(name))},\n"
            f"        HINT = {quote_literal(_hint(name))};\n"
            "END"
        )
    return _fingerprinted(
        name,
        identity,
        header,
        body,
        f"Computed by pgml-proxy. Inside PostgreSQL this stub raises 0A000: call pgml.{name} through the proxy.",
    )


def _raiser() -> Stub:
    """Raises the stub error for a SQL-language stub, which cannot RAISE itself."""
    header = (
        f"CREATE OR REPLACE FUNCTION pgml.{quote_ident(RAISER)}({quote_ident('function_name')} text)\n"
        "    RETURNS void\n"
        "    LANGUAGE plpgsql VOLATILE\n"
    )
    body = (
        "BEGIN\n"
        "    RAISE EXCEPTION USING\n"
        "        ERRCODE = '0A000',\n"
        f"        MESSAGE = format({quote_literal(_message('%s'))}, function_name),\n"
        f"        HINT = format({quote_literal(_hint('%s'))}, function_name);\n"
        "END"
    )
    return _fingerprinted(
        RAISER,
        f"pgml.{quote_ident(RAISER)}(text)",
        header,
        body,
        "pgml-proxy: raises the error of the stubs written in SQL.",
    )


def _fingerprinted(name: str, identity: str, header: str, body: str, comment: str) -> Stub:
    fingerprint = hashlib.sha256((header + body).encode()).hexdigest()[:16]
    marked = f"-- {MARKER} {fingerprint}\n{body}"
    definition = f"{header}AS $body$\n{marked}\n$body$"
    return Stub(name, identity, definition, fingerprint, comment)


def _message(name: str) -> str:
    return f"pgml.{name} ran inside PostgreSQL, where pgml-proxy cannot compute it"


def _hint(name: str) -> str:
    return (
        f"pgml-proxy computes pgml.{name} when a statement sent through the proxy calls it. Calls inside "
        "views, functions, triggers, defaults or generated columns, and calls over a direct connection to "
        "PostgreSQL, reach this stub instead."
    )


def _needs_sql_body(signature: Signature) -> bool:
    """A result column named like a parameter (snapshot's ``y_column_name``) is valid SQL, but plpgsql
    declares both as variables and refuses the function; a SQL-language body does not."""
    if not isinstance(signature.returns, tuple):
        return False
    return bool({c.name for c in signature.returns} & {p.name for p in signature.parameters})


def _parameter(parameter: Parameter) -> str:
    text = f"{quote_ident(parameter.name)} {parameter.type}"
    if parameter.default is REQUIRED:
        return text
    return f"{text} DEFAULT {default_sql(parameter.default, parameter.type)}"


def _returns(signature: Signature) -> str:
    returns = signature.returns
    if isinstance(returns, tuple):
        columns = ", ".join(_column(c) for c in returns)
        # A single composite row (not set-returning) would need OUT parameters; no function has one yet.
        assert signature.set_returning, f"pgml.{signature.function}: columns without set_returning"
        return f"TABLE({columns})"
    return f"SETOF {returns.name}" if signature.set_returning else returns.name


def _column(column: Column) -> str:
    return f"{quote_ident(column.name)} {column.type.name}"


def default_sql(value: Any, type_name: str) -> str:
    """A parameter default as SQL of the parameter's type (``'{}'::jsonb``, ``ARRAY[]::text[]``)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value!r}::{type_name}"
    if isinstance(value, str):
        return f"{quote_literal(value)}::{type_name}"
    if type_name.endswith("[]") and isinstance(value, (list, tuple)):
        element = type_name[:-2]
        return f"ARRAY[{', '.join(default_sql(v, element) for v in value)}]::{type_name}"
    if type_name in ("json", "jsonb"):
        return f"{quote_literal(json.dumps(value, separators=(', ', ': ')))}::{type_name}"
    raise ValueError(f"no SQL default for {value!r} of type {type_name}")


# -- statements ---------------------------------------------------------------------------------------------


def _drop_stale(made: Sequence[Stub], lock: int) -> str:
    wanted = _oid_array(s.identity for s in made)
    return f"""DO $stale$
DECLARE
    stale regprocedure;
BEGIN
    {_LOCK_SQL.format(lock=lock)}
    FOR stale IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'pgml'::regnamespace
          AND p.prosrc LIKE {quote_literal(f"%{MARKER} %")}
          AND p.oid <> ALL ({wanted})
        ORDER BY p.proname = {quote_literal(RAISER)}  -- the raiser last: the SQL stubs name it
    LOOP
        EXECUTE format('DROP FUNCTION %s', stale);
    END LOOP;
END
$stale$"""


def _oid_array(identities: Iterable[str]) -> str:
    lookups = ", ".join(f"to_regprocedure({quote_literal(i)})::oid" for i in identities)
    return f"array_remove(ARRAY[{lookups}]::oid[], NULL)"


def _install(stub: Stub, lock: int) -> str:
    assert "$definition$" not in stub.definition
    return f"""DO $stub$
DECLARE
    existing regprocedure;
    source text;
    lang name;
    definition text := $definition${stub.definition}$definition$;
BEGIN
    {_LOCK_SQL.format(lock=lock)}
    existing := to_regprocedure({quote_literal(stub.identity)});
    IF existing IS NOT NULL THEN
        SELECT p.prosrc, l.lanname INTO source, lang
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
        WHERE p.oid = existing;
        IF source LIKE {quote_literal(f"%{MARKER} {stub.fingerprint}%")} THEN
            RETURN;  -- this very stub
        END IF;
        IF source NOT LIKE {quote_literal(f"%{MARKER} %")} AND lang <> 'c' THEN
            RETURN;  -- a function that works inside PostgreSQL (a plain-SQL helper): keep it
        END IF;
    END IF;
    BEGIN
        EXECUTE definition;
    EXCEPTION WHEN invalid_function_definition THEN
        -- another result type or other parameter names: an older stub, or PostgresML's function
        EXECUTE format('DROP FUNCTION %s', existing);
        EXECUTE definition;
    END;
    EXECUTE format('COMMENT ON FUNCTION %s IS %L', {quote_literal(stub.identity)}, {quote_literal(stub.comment)});
END
$stub$"""
