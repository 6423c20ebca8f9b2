"""Laziness, DSN resolution, ``init_logger``, the ``korvus`` alias and the ``pgml.sync`` wrapper (contract §1.2,
§2.8), without a database: every DSN here points at a closed port, and connecting at all fails the test."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterator
from typing import Any

import pgml
import pgml.connection
import pgml.sync
import psycopg
import pytest
from pgml import PgmlError, ValidationError
from pgml.connection import resolve_dsn

CLOSED = "postgresql://nobody@127.0.0.1:1/nowhere"
DSN_VARIABLES = ("PGML_DATABASE_URL", "DATABASE_URL", "KORVUS_DATABASE_URL")


@pytest.fixture
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or pool the SDK would open fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the database was touched: {args!r} {kwargs!r}")

    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(refuse))
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", classmethod(refuse))
    monkeypatch.setattr(pgml.connection, "ConnectionPool", refuse)
    monkeypatch.setattr(pgml.connection, "AsyncConnectionPool", refuse)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in DSN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- constructors never touch the database (§1.2 laziness, §6.2 "Nothing (no DB)") -------------------------


@pytest.mark.usefixtures("no_database")
def test_constructors_do_not_touch_the_database() -> None:
    collection = pgml.Collection("test_p_c_tscc_0", CLOSED)
    assert collection is not None
    assert pgml.Collection(name="my docs 2", database_url=CLOSED).name == "my docs 2"
    assert pgml.Model() is not None
    assert pgml.Splitter() is not None
    assert pgml.Pipeline("test_p_p_tscp_0", {}) is not None
    assert pgml.Pipeline("stored") is not None
    assert pgml.SingleFieldPipeline("test_p_p_tscsfp_0", pgml.Model(), pgml.Splitter(), {}) is not None
    assert pgml.Builtins(CLOSED) is not None
    assert pgml.Builtins(CLOSED).query("SELECT 1").bind_int(1) is not None
    assert pgml.TransformerPipeline("text-generation", "some/model", None, CLOSED) is not None
    assert pgml.OpenSourceAI(CLOSED) is not None
    assert collection.query() is not None
    assert pgml.sync.Collection("sync", CLOSED).name == "sync"
    assert pgml.sync.Builtins(CLOSED) is not None


@pytest.mark.usefixtures("no_database")
async def test_invalid_arguments_fail_before_any_connection() -> None:
    collection = pgml.Collection("c", CLOSED)
    with pytest.raises(ValidationError):
        await collection.upsert_documents([{"no id": 1}])
    with pytest.raises(ValidationError):
        await collection.get_documents({"limits": 1})
    with pytest.raises(ValidationError):
        await collection.add_pipeline(pgml.Pipeline("p"))  # no schema to add


def test_methods_are_coroutines_exactly_where_the_upstream_awaits() -> None:
    asynchronous = {
        "upsert_documents",
        "get_documents",
        "delete_documents",
        "add_pipeline",
        "remove_pipeline",
        "enable_pipeline",
        "disable_pipeline",
        "get_pipelines",
        "get_pipeline",
        "get_pipeline_status",
        "search",
        "add_search_event",
        "vector_search",
        "rag",
        "rag_stream",
        "exists",
        "archive",
        "upsert_directory",
        "upsert_file",
        "generate_er_diagram",
    }
    for name in asynchronous:
        assert inspect.iscoroutinefunction(getattr(pgml.Collection, name)), name
    assert not inspect.iscoroutinefunction(pgml.Collection.query)
    assert inspect.iscoroutinefunction(pgml.migrate)
    assert not inspect.iscoroutinefunction(pgml.init_logger)


# --- DSN resolution ------------------------------------------------------------------------------------------


def test_the_argument_comes_first(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PGML_DATABASE_URL", "postgresql://env-pgml/db")
    clean_env.setenv("DATABASE_URL", "postgresql://env-plain/db")
    assert resolve_dsn("postgresql://argument/db") == "postgresql://argument/db"


def test_pgml_database_url_comes_before_database_url(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PGML_DATABASE_URL", "postgresql://env-pgml/db")
    clean_env.setenv("DATABASE_URL", "postgresql://env-plain/db")
    assert resolve_dsn(None) == "postgresql://env-pgml/db"
    clean_env.delenv("PGML_DATABASE_URL")
    assert resolve_dsn(None) == "postgresql://env-plain/db"


@pytest.mark.usefixtures("no_database")
async def test_without_any_dsn_a_clear_error(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(PgmlError) as raised:
        resolve_dsn(None)
    assert "PGML_DATABASE_URL" in str(raised.value)
    assert "DATABASE_URL" in str(raised.value)
    with pytest.raises(PgmlError):
        collection = pgml.Collection("c")  # raising here or at the first use are both fine
        await collection.get_documents()
    with pytest.raises(PgmlError):
        await pgml.Builtins().embed("some/model", "text")
    with pytest.raises(PgmlError):
        await pgml.migrate()


def test_korvus_is_the_same_sdk_and_reads_its_own_variable(clean_env: pytest.MonkeyPatch) -> None:
    import korvus

    assert korvus.Collection is pgml.Collection
    assert korvus.Pipeline is pgml.Pipeline
    assert korvus.Builtins is pgml.Builtins
    assert korvus.OpenSourceAI is pgml.OpenSourceAI
    assert korvus.migrate is pgml.migrate
    assert set(pgml.__all__) <= set(dir(korvus))
    clean_env.setenv("KORVUS_DATABASE_URL", "postgresql://env-korvus/db")
    assert resolve_dsn(None) == "postgresql://env-korvus/db"
    assert resolve_dsn("postgresql://argument/db") == "postgresql://argument/db"
    clean_env.delenv("KORVUS_DATABASE_URL")
    clean_env.setenv("DATABASE_URL", "postgresql://env-plain/db")
    assert resolve_dsn(None) == "postgresql://env-plain/db"


# --- init_logger -----------------------------------------------------------------------------------------------


@pytest.fixture
def pgml_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """The ``pgml`` logger, its level and handlers restored after the test."""
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    logger = logging.getLogger("pgml")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("TRACE", logging.DEBUG),
        ("DEBUG", logging.DEBUG),
        ("INFO", logging.INFO),
        ("WARN", logging.WARNING),
        ("ERROR", logging.ERROR),
    ],
)
def test_init_logger_levels(pgml_logger: logging.Logger, name: str, level: int) -> None:
    pgml.init_logger(name)
    assert pgml_logger.level == level
    assert pgml_logger.getEffectiveLevel() == level


def test_init_logger_defaults_to_error(pgml_logger: logging.Logger) -> None:
    pgml.init_logger()
    assert pgml_logger.level == logging.ERROR


def test_init_logger_reads_log_level(pgml_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    pgml.init_logger()
    assert pgml_logger.level == logging.INFO
    pgml.init_logger("WARN")  # the argument wins over the environment
    assert pgml_logger.level == logging.WARNING


def test_init_logger_twice_keeps_one_handler(pgml_logger: logging.Logger) -> None:
    before = len(pgml_logger.handlers)
    pgml.init_logger("INFO")
    pgml.init_logger("INFO")
    assert len(pgml_logger.handlers) == before + 1


def test_json_format_writes_json_lines(
    pgml_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    pgml.init_logger("INFO", "Json")
    pgml_logger.info("hello %s", "world")
    pgml_logger.debug("not shown")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "hello world"
    assert record["level"] == "INFO"


def test_log_format_from_the_environment(
    pgml_logger: logging.Logger, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "Json")
    pgml.init_logger("WARN")
    pgml_logger.warning("careful")
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["message"] == "careful"


def test_other_formats_write_plain_text(
    pgml_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    pgml.init_logger("ERROR", "Pretty")
    pgml_logger.error("broken")
    err = capsys.readouterr().err
    assert "broken" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.strip().splitlines()[-1])


# --- pgml.sync ---------------------------------------------------------------------------------------------------


def test_sync_exports_the_same_builders() -> None:
    assert pgml.sync.Pipeline is pgml.Pipeline
    assert pgml.sync.Model is pgml.Model
    assert pgml.sync.Splitter is pgml.Splitter
    assert pgml.sync.SingleFieldPipeline is pgml.SingleFieldPipeline
    assert pgml.sync.init_logger is pgml.init_logger


@pytest.mark.usefixtures("no_database")
def test_sync_collection_runs_coroutines_to_completion() -> None:
    collection = pgml.sync.Collection("sync_c", CLOSED)
    assert collection.name == "sync_c"
    with pytest.raises(ValidationError):
        pgml.sync.Collection("bad.name", CLOSED)
    # Validation errors raised inside the coroutine come back as they are, synchronously.
    with pytest.raises(ValidationError, match="batch_size"):
        collection.upsert_documents([{"id": 1}], {"batch_size": 0})
    with pytest.raises(ValidationError):
        collection.get_documents({"bogus": 1})
    # A sync method that returns an SDK object returns the blocking twin.
    assert isinstance(collection.query(), pgml.sync.QueryBuilder)
