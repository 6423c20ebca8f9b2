"""The ``pgml`` schema: forward-only migrations, the stubs, the installed version, and removal.

Migrations are the files ``migrations/NNNN_<name>.sql``, numbered 1, 2, 3, … without gaps; a released one
never changes. Each is idempotent on its own (it also adopts a catalog PostgresML made), and the proxy runs
it at most once per database: ``pgml.proxy_catalog`` holds one row per applied version, and its table
comment names the newest, so that the version can be read without privileges on the table and without
risking an error when there is no catalog (a failed probe would abort the client's transaction).

Every statement takes the same transaction-scoped advisory lock first, so proxies installing into one
database at once take turns, and the second one finds the work done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Final

from pgml_proxy.catalog.stubs import stub_statements
from pgml_proxy.functions.registry import Registry

LOCK: Final = 0x70676D6C  # "pgml": the advisory lock every catalog statement holds until its transaction ends

TABLES: Final = ("logs", "files", "deployments", "models", "snapshots", "projects", "proxy_catalog")
VIEWS: Final = ("overview", "trained_models", "deployed_models")
TYPES: Final = ("task", "algorithm", "runtime", "strategy", "sampling", "search", "status")
"""What the catalog owns besides functions (DROP EXTENSION removes these and every function in pgml)."""

_VERSION_COMMENT: Final = "pgml-proxy catalog version {version}"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def _load_migrations() -> tuple[Migration, ...]:
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"catalog migrations must be numbered 1, 2, 3, … without gaps: {versions}")
    return tuple(found)


MIGRATIONS: Final = _load_migrations()
LATEST_VERSION: Final = MIGRATIONS[-1].version


def install_sql(registry: Registry, *, with_vector: bool) -> list[str]:
    """The statements that bring a database's catalog to ``LATEST_VERSION`` and its stubs in line with
    ``registry``, to run in order in the client's session (``CREATE EXTENSION pgml``).

    Run them in one transaction (the client's, or one implicit transaction for a multi-statement Query),
    so the install is all-or-nothing as ``CREATE EXTENSION`` is. On a catalog already at the latest version
    with the same registry they change nothing. ``with_vector`` first creates pgvector unless present.
    """
    statements = [_vector_sql()] if with_vector else []
    statements.append(_bootstrap_sql())
    statements.extend(_migration_sql(m) for m in MIGRATIONS)
    statements.extend(stub_statements(registry, LOCK))
    return statements


def installed_version_sql() -> str:
    """A query giving one row, one ``integer`` column ``version``: the installed catalog version, or NULL
    when the database has none (including a catalog PostgresML made that the proxy has not adopted yet)."""
    return f"""SELECT (
    SELECT substring(d.description FROM {_quote("^" + _VERSION_COMMENT.format(version="([0-9]+)") + "$")})::integer
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_description d
      ON d.objoid = c.oid AND d.classoid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0
    WHERE n.nspname = 'pgml' AND c.relname = 'proxy_catalog'
) AS version"""


def drop_sql(cascade: bool) -> list[str]:
    """``DROP EXTENSION pgml [CASCADE]``: remove the catalog's tables (with their data), views, enum types
    and every function in ``pgml``.

    Without ``cascade`` it fails as Postgres would (2BP01, nothing dropped) when objects of the user depend
    on them: a view on ``pgml.projects``, a column of type ``pgml.task``, a function calling a stub. With it,
    those dependents go too. Other relations in ``pgml`` (``load_dataset`` tables, materialized snapshots)
    stay, as they would after PostgresML's DROP EXTENSION; the schema goes when nothing is left in it.
    No catalog at all is 42704, like dropping an extension that does not exist.
    """
    behaviour = "CASCADE" if cascade else "RESTRICT"
    views = ", ".join(f"pgml.{name}" for name in VIEWS)
    tables = ", ".join(f"pgml.{name}" for name in TABLES)
    types = ", ".join(f"pgml.{name}" for name in TYPES)
    return [
        f"""DO $drop$
DECLARE
    routines text;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock({LOCK});
    IF to_regclass('pgml.proxy_catalog') IS NULL AND to_regclass('pgml.projects') IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = 'extension "pgml" does not exist';
    END IF;
    DROP VIEW IF EXISTS {views} {behaviour};
    DROP TABLE IF EXISTS {tables} {behaviour};
    SELECT string_agg(p.oid::regprocedure::text, ', ') INTO routines
    FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'pgml'::regnamespace;
    IF routines IS NOT NULL THEN
        EXECUTE format('DROP ROUTINE %s {behaviour}', routines);
    END IF;
    DROP TYPE IF EXISTS {types} {behaviour};
    BEGIN
        DROP SCHEMA pgml;
    EXCEPTION WHEN dependent_objects_still_exist THEN
        NULL;  -- the user's own relations live on in it
    END;
END
$drop$"""
    ]


# -- the pieces of install_sql ---------------------------------------------------------------------------


def _vector_sql() -> str:
    # Guarded rather than CREATE EXTENSION IF NOT EXISTS: that one sends a NOTICE on every reinstall.
    # pgvector is not a trusted extension, so a role that may create the pgml catalog may still not create
    # it: the catalog does not need it, so that is a WARNING rather than a failed CREATE EXTENSION pgml.
    return f"""DO $vector$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock({LOCK});
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'vector') THEN
        BEGIN
            CREATE EXTENSION vector;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING USING
                MESSAGE = 'pgvector was not created: ' || SQLERRM,
                HINT = 'A superuser can run CREATE EXTENSION vector in this database.';
        END;
    END IF;
END
$vector$"""


def _bootstrap_sql() -> str:
    return f"""DO $bootstrap$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock({LOCK});
    IF to_regnamespace('pgml') IS NULL THEN
        CREATE SCHEMA pgml;
    END IF;
    IF to_regclass('pgml.proxy_catalog') IS NULL THEN
        CREATE TABLE pgml.proxy_catalog (
            version integer PRIMARY KEY,
            applied_at timestamp without time zone NOT NULL DEFAULT clock_timestamp()
        );
    END IF;
END
$bootstrap$"""


def _migration_sql(migration: Migration) -> str:
    tag = f"$migration_{migration.version:04d}$"
    if tag in migration.sql or "$migration$" in migration.sql:
        raise RuntimeError(f"migration {migration.version} must not contain {tag} or $migration$")
    comment = _quote(_VERSION_COMMENT.format(version=migration.version))
    # client_min_messages is raised for the migration alone: set_config(..., true) ends with the
    # transaction at the latest, and is put back at once so the client's later notices still come.
    return f"""DO $migration$
DECLARE
    messages text := current_setting('client_min_messages');
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock({LOCK});
    IF EXISTS (SELECT FROM pgml.proxy_catalog WHERE version = {migration.version}) THEN
        RETURN;
    END IF;
    PERFORM set_config('client_min_messages', 'warning', true);
    EXECUTE {tag}{migration.sql}{tag};
    INSERT INTO pgml.proxy_catalog (version) VALUES ({migration.version});
    IF {migration.version} >= (SELECT max(version) FROM pgml.proxy_catalog) THEN
        COMMENT ON TABLE pgml.proxy_catalog IS {comment};
    END IF;
    PERFORM set_config('client_min_messages', messages, true);
END
$migration$"""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
