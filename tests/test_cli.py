"""The command line: settings precedence, help, and ``pgml-proxy`` with an embedded PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pgml_proxy.config import OPTIONS, Settings, engine_config, load_settings
from tests.support.servers import run_psql, start_proxy


def test_settings_precedence_is_flags_then_env_then_file_then_defaults(tmp_path):
    config = tmp_path / "proxy.toml"
    config.write_text(
        'listen = "0.0.0.0:7000"\nmax_connections = 7\nlog_level = "debug"\n[tls]\ncert = "/c.pem"\n'
    )
    env = {
        "PGML_PROXY_MAX_CONNECTIONS": "8",
        "PGML_PROXY_LOG_LEVEL": "warning",
        "PGML_PROXY_TLS__KEY": "/k.pem",
    }
    settings = load_settings({"config": config, "log_level": "error"}, env)
    assert settings.listen == "0.0.0.0:7000"  # file
    assert settings.max_connections == 8  # env beats file
    assert settings.log_level == "error"  # flag beats env
    assert settings.tls_cert == Path("/c.pem")  # nested table
    assert settings.tls_key == Path("/k.pem")  # group joined by __
    assert settings.shutdown_grace == Settings().shutdown_grace  # default


def test_grouped_key_may_also_be_written_flat(tmp_path):
    config = tmp_path / "proxy.toml"
    config.write_text('tls_cert = "/flat.pem"\n')
    assert load_settings({"config": config}, {}).tls_cert == Path("/flat.pem")


def test_model_settings_as_flags_env_and_toml(tmp_path):
    config = tmp_path / "proxy.toml"
    config.write_text('[models]\ndir = "/srv/models"\nallow_downloads = true\n')
    from_file = load_settings({"config": config}, {})
    assert (from_file.models_dir, from_file.models_allow_downloads, from_file.models_allow_paths) == (
        Path("/srv/models"),
        True,
        False,
    )
    from_env = load_settings({"config": config}, {"PGML_PROXY_MODELS__ALLOW_DOWNLOADS": "off"})
    assert from_env.models_allow_downloads is False
    assert load_settings({"models_allow_paths": True}, {}).models_allow_paths is True
    with pytest.raises(ValueError, match="expected true or false"):
        load_settings({}, {"PGML_PROXY_MODELS__ALLOW_PATHS": "maybe"})


def test_engine_settings_reach_the_engine_and_bad_ones_are_refused(tmp_path):
    config = tmp_path / "proxy.toml"
    config.write_text("[models]\nmemory_budget_mb = 512\n[batch]\nmax_size = 16\n")
    settings = load_settings({"config": config}, {"PGML_PROXY_BATCH__MAX_WAIT_MS": "5"})
    engine = engine_config(settings)
    assert (engine.memory_budget_bytes, engine.max_batch_size, engine.max_batch_wait_s) == (
        512 * 2**20,
        16,
        0.005,
    )
    assert engine_config(load_settings({}, {})).max_batch_size == 64  # the default
    with pytest.raises(ValueError, match="max_batch_size"):
        engine_config(load_settings({"batch_max_size": 0}, {}))
    with pytest.raises(ValueError, match="expected int"):
        load_settings({}, {"PGML_PROXY_MODELS__MEMORY_BUDGET_MB": "lots"})


def test_config_file_named_by_environment(tmp_path):
    config = tmp_path / "proxy.toml"
    config.write_text("max_connections = 3\n")
    assert load_settings({}, {"PGML_PROXY_CONFIG": str(config)}).max_connections == 3


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({}, {"PGML_PROXY_MAX_CONNECTIONS": "many"}, "invalid value 'many' for max_connections"),
        ({"config": Path("/no/such/file.toml")}, {}, "cannot read configuration file"),
    ],
)
def test_bad_settings_are_reported(flags, env, message):
    with pytest.raises(ValueError, match=message):
        load_settings(flags, env)


def test_listen_address_parsing():
    assert Settings(listen="[::1]:6432").listen_address == ("::1", 6432)
    assert Settings(listen=":6000").listen_address == ("127.0.0.1", 6000)
    with pytest.raises(ValueError, match="HOST:PORT"):
        _ = Settings(listen="localhost").listen_address


def test_help_documents_every_flag_and_its_environment_variable():
    done = subprocess.run(
        [sys.executable, "-m", "pgml_proxy", "--help"], capture_output=True, text=True, check=True
    )
    serve = subprocess.run(
        [sys.executable, "-m", "pgml_proxy", "serve", "--help"], capture_output=True, text=True, check=True
    )
    assert "serve" in done.stdout
    for option in OPTIONS:
        assert option.flag in serve.stdout
        assert option.env in serve.stdout.replace("\n", " ").replace("  ", "")


def test_invalid_flag_value_exits_with_usage_error():
    done = subprocess.run(
        [sys.executable, "-m", "pgml_proxy", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "HOST:PORT" in done.stderr


def test_without_upstream_it_runs_an_embedded_postgres(tmp_path):
    proxy = start_proxy(None, "--data-dir", str(tmp_path / "data"))
    try:
        assert proxy.dsn == f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
        done = run_psql(proxy.dsn, "-Atc", "create extension if not exists vector; select '[1,2]'::vector")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith("[1,2]")
        assert (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
    finally:
        assert proxy.stop(signal.SIGINT) == 0
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()  # stopped with the proxy


def test_model_aliases_from_flags_env_and_a_toml_table(tmp_path):
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[models.aliases]\n"meta-llama/Meta-Llama-3-8B-Instruct" = "smollm2"\nembedder = "minilm"\n'
    )
    from_file = engine_config(load_settings({"config": config}, {}))
    assert dict(from_file.aliases) == {"meta-llama/Meta-Llama-3-8B-Instruct": "smollm2", "embedder": "minilm"}
    from_env = load_settings({"config": config}, {"PGML_PROXY_MODELS__ALIASES": "a=b, c = d"})
    assert dict(engine_config(from_env).aliases) == {"a": "b", "c": "d"}
    assert dict(engine_config(load_settings({"models_aliases": "x=y"}, {})).aliases) == {"x": "y"}
    assert dict(engine_config(load_settings({}, {})).aliases) == {}
    for bad in ("lonely", "=target", "name="):
        with pytest.raises(ValueError, match="expected NAME=MODEL"):
            engine_config(load_settings({"models_aliases": bad}, {}))
