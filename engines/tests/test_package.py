"""The distribution's own promises: it stands alone, and importing it is cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pgml_engines import Engine, EngineConfig, EngineFailure


def test_importing_the_engines_loads_neither_the_proxy_nor_the_model_libraries() -> None:
    probe = (
        "import sys, pgml_engines, pgml_engines.engine;"
        "heavy = ('pgml_proxy', 'torch', 'sentence_transformers', 'transformers', 'langchain_text_splitters');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert loaded.stdout.strip() == ""


async def test_a_closed_engine_refuses_work() -> None:
    engine = Engine(EngineConfig())
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineFailure, match="closed"):
        await engine.embed("sentence-transformers/all-MiniLM-L6-v2", ["x"])
    with pytest.raises(EngineFailure, match="closed"):
        await engine.chunk("character", "x")
