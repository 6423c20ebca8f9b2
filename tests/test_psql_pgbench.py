"""Real PostgreSQL clients through the proxy: psql (commands, scripts, \\copy, large objects, errors) and pgbench.

These are the tools people point at a proxy first; everything here goes through ``proxy.url(...)`` and is
checked against what the upstream PostgreSQL itself would answer.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import ProxyProcess, pgbench, run_psql


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# -- psql ------------------------------------------------------------------------------------------


def test_psql_runs_several_commands_in_one_session(proxy: ProxyProcess) -> None:
    table = unique("psql_cmds")
    done = run_psql(
        proxy.url(),
        "-At",
        "-c",
        f"create temp table {table} (id int primary key, name text)",
        "-c",
        f"insert into {table} values (1, 'one'), (2, 'two'), (3, 'three')",
        "-c",
        f"select id, name from {table} order by id",
        "-c",
        f"select count(*), sum(id) from {table}",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == "CREATE TABLE\nINSERT 0 3\n1|one\n2|two\n3|three\n3|6\n"


def test_psql_shows_every_result_of_a_multi_statement_command(proxy: ProxyProcess) -> None:
    done = run_psql(proxy.url(), "-At", "-c", "select 1; select 'two'; select 3, 4")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\ntwo\n3|4\n"


CSV_ROWS = (
    # Canonical CSV as PostgreSQL writes it: quoted only where needed, NULL unquoted-empty, '' as "".
    '1,"Smith, John","He said ""hi"""\n'
    "2,Zoë Ünïcødé ✓ 日本語,\n"
    '3,"two\nlines",""\n'
    "4,,plain text\n"
    '5,"""quoted""",emoji 🐘\n'
)


def test_psql_copy_imports_and_exports_csv_files_unchanged(proxy: ProxyProcess, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    exported = tmp_path / "out.csv"
    source.write_bytes(CSV_ROWS.encode())
    script = tmp_path / "copy.sql"
    script.write_text(
        "create temp table people (id int primary key, name text, note text);\n"
        f"\\copy people from '{source}' csv\n"
        f"\\copy (select id, name, note from people order by id) to '{exported}' csv\n"
        "select id, name is null, note is null, note = '' from people order by id;\n",
        encoding="utf-8",
    )
    done = run_psql(proxy.url(), "-At", "-f", str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "CREATE TABLE\nCOPY 5\nCOPY 5\n1|f|f|f\n2|f|t|\n3|f|f|t\n4|t|f|f\n5|f|f|f\n"
    assert exported.read_bytes() == source.read_bytes()


def test_psql_large_object_import_and_export_round_trip_binary_data(
    proxy: ProxyProcess, tmp_path: Path
) -> None:
    # Every byte value, then enough random data for libpq to split the writes and reads into many
    # FunctionCall messages (lo_write/loread), which is how \lo_import and \lo_export work.
    payload = bytes(range(256)) * 4 + os.urandom(300_000) + b"\x00\xff" * 100
    source = tmp_path / "blob.bin"
    exported = tmp_path / "blob.out"
    source.write_bytes(payload)
    script = tmp_path / "lo.sql"
    script.write_text(
        f"\\lo_import '{source}'\n"
        "select length(lo_get(:LASTOID)), md5(lo_get(:LASTOID));\n"
        f"\\lo_export :LASTOID '{exported}'\n"
        "\\lo_unlink :LASTOID\n"
    )
    done = run_psql(proxy.url(), "-At", "-f", str(script))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"lo_import \d+", lines[0]), done.stdout
    assert lines[1] == f"{len(payload)}|{hashlib.md5(payload).hexdigest()}"
    assert lines[2:] == ["lo_export", f"lo_unlink {lines[0].split()[1]}"]
    assert exported.read_bytes() == payload


def test_psql_reports_the_server_error_with_its_sqlstate_and_fails(proxy: ProxyProcess) -> None:
    done = run_psql(
        proxy.url(),
        "-At",
        input="\\set VERBOSITY verbose\nselect 1;\nselect 1 / 0;\nselect 'not reached';\n",
    )
    assert done.returncode != 0
    assert done.stdout == "1\n"
    assert "ERROR:  22012: division by zero" in done.stderr
    assert "LOCATION:" in done.stderr

    missing = run_psql(proxy.url(), "-c", "\\set VERBOSITY verbose", "-c", "select * from no_such_table_xyz")
    assert missing.returncode != 0
    assert 'ERROR:  42P01: relation "no_such_table_xyz" does not exist' in missing.stderr

    after = run_psql(proxy.url(), "-Atc", "select 'still usable'")
    assert after.returncode == 0, after.stderr
    assert after.stdout == "still usable\n"


def test_psql_session_continues_after_an_error(proxy: ProxyProcess) -> None:
    done = run_psql(
        proxy.url(),
        "-At",
        "-v",
        "ON_ERROR_STOP=0",
        input=(
            "create temp table t (id int primary key);\n"
            "insert into t values (1);\n"
            "insert into t values (1);\n"  # unique violation
            "begin;\n"
            "insert into t values (2);\n"
            "select nosuchcolumn from t;\n"  # aborts the transaction
            "select 1;\n"  # refused: transaction is aborted
            "rollback;\n"
            "select array_agg(id order by id) from t;\n"
        ),
    )
    assert done.returncode == 0, done.stderr  # psql only fails on errors when ON_ERROR_STOP is set
    assert done.stdout.splitlines()[-2:] == ["ROLLBACK", "{1}"]
    assert "duplicate key value violates unique constraint" in done.stderr
    assert 'column "nosuchcolumn" does not exist' in done.stderr
    assert "current transaction is aborted" in done.stderr


# -- pgbench ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgbench_database(proxy: ProxyProcess) -> Iterator[str]:
    """A database of its own, created and initialized (scale 1) through the proxy, dropped afterwards."""
    name = unique("pgbench")
    created = run_psql(proxy.url(), "-c", f"create database {name}")
    assert created.returncode == 0, created.stderr
    try:
        init = pgbench(proxy.url(database=name), "-i", "-s", "1", "-q")
        assert init.returncode == 0, init.stderr
        yield name
    finally:
        dropped = run_psql(proxy.url(), "-c", f"drop database {name} with (force)")
        assert dropped.returncode == 0, dropped.stderr


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
@pytest.mark.parametrize("script", ["select-only", "tpcb-like"])
def test_pgbench_runs_without_failed_transactions(
    proxy: ProxyProcess, pgbench_database: str, script: str, mode: str
) -> None:
    done = pgbench(
        proxy.url(database=pgbench_database),
        "-b",
        script,
        "-M",
        mode,
        "-c",
        "4",
        "-j",
        "2",
        "-T",
        "5",
        "-n",  # the tables were vacuumed by -i; no vacuum (and its noise) before each run
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"query mode: {mode}" in done.stdout
    assert "number of failed transactions: 0 " in done.stdout, done.stdout
    processed = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    assert processed is not None, done.stdout
    assert int(processed.group(1)) > 0
