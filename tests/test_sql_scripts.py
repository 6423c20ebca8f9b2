"""Acceptance scripts: each ``tests/sql/<name>.sql`` with a ``<name>.out`` runs through psql against the
proxy in a database of its own, and what psql prints (its result tables, then its ERROR lines) must be
exactly the expected output. Regenerate an expected file by running with ``PGML_SQL_ACCEPT=1`` and
reading the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.servers import ProxyProcess, run_psql

SCRIPTS = sorted(p for p in (Path(__file__).parent / "sql").glob("*.sql") if p.with_suffix(".out").exists())


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script_prints_its_expected_output(proxy: ProxyProcess, scratch_database: str, script: Path) -> None:
    done = run_psql(
        proxy.url(database=scratch_database), "-X", "-v", "ON_ERROR_STOP=0", "-f", str(script), timeout=600
    )
    # psql names the script by the path it was given: the expected output names it by its file name
    errors = [
        line.replace(str(script), script.name) for line in done.stderr.splitlines() if ": ERROR:" in line
    ]
    printed = done.stdout + "-- errors --\n" + "".join(f"{line}\n" for line in errors)
    expected = script.with_suffix(".out")
    if os.environ.get("PGML_SQL_ACCEPT"):
        expected.write_text(printed)
    assert printed == expected.read_text()
