"""Loading and unloading models ahead of calls, what is held, and devices configured per model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgml_engines import Engine, EngineConfig, testing
from pgml_engines.errors import InvalidArgument, ModelNotFound, NotAllowed

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    testing.build_cross_encoder(folder / "cross-encoder")
    testing.build_text_classifier(folder / "two-labels")
    testing.build_causal_lm(folder / "tiny-lm")
    return folder


@pytest.fixture
def fresh(zoo: Path) -> Iterator[Engine]:
    engine = Engine(EngineConfig(search_dirs=(zoo,)))
    yield engine
    engine.close()


async def test_a_loaded_embedding_model_serves_the_first_call_without_a_load(fresh: Engine) -> None:
    assert await fresh.load_model(MINILM) is True
    assert await fresh.load_model(MINILM, "embedding") is False  # held already
    loads = fresh.stats().loads
    await fresh.embed(MINILM, ["hello"])
    assert fresh.stats().loads == loads  # the call found the preloaded copy
    [held] = fresh.models()
    assert (held.key.name, held.key.kind, held.key.options.device) == (MINILM, "embed", "cpu")
    assert held.nbytes > 10_000_000
    assert held.loaded_at <= held.last_used <= time.time()
    assert held.uses >= 1


async def test_load_as_rank_or_transform_task_makes_the_copy_those_calls_use(fresh: Engine) -> None:
    assert await fresh.load_model("cross-encoder", "rank") is True
    assert await fresh.load_model("two-labels", "text-classification") is True
    assert await fresh.load_model("tiny-lm", "transform") is True  # task taken from its config
    kinds = {(m.key.name, m.key.kind) for m in fresh.models()}
    assert kinds == {
        ("cross-encoder", "cross-encoder"),
        ("two-labels", "transform:sequence-classification"),
        ("tiny-lm", "transform:causal-lm"),
    }
    loads = fresh.stats().loads
    await fresh.rank("cross-encoder", "query", ["a document"], {})
    await fresh.transform({"task": "text-classification", "model": "two-labels"}, {}, ["good"])
    await fresh.transform({"model": "tiny-lm"}, {"max_new_tokens": 2}, ["Hello"])
    assert fresh.stats().loads == loads


async def test_unload_drops_every_copy_of_a_name_and_the_next_call_loads_again(fresh: Engine) -> None:
    await fresh.load_model(MINILM)
    await fresh.load_model(MINILM, kwargs={"truncate_dim": 8})  # another copy: other load options
    await fresh.load_model("cross-encoder", "rank")
    assert fresh.unload_model(MINILM) == 2
    assert [m.key.name for m in fresh.models()] == ["cross-encoder"]
    assert fresh.unload_model(MINILM) == 0
    loads = fresh.stats().loads
    await fresh.embed(MINILM, ["again"])
    assert fresh.stats().loads == loads + 1


async def test_load_checks_like_a_call(fresh: Engine) -> None:
    with pytest.raises(ModelNotFound):
        await fresh.load_model("no-such-model")
    with pytest.raises(
        InvalidArgument, match=r"cannot load a model for .no-such-task.: give embedding, rank, transform"
    ):
        await fresh.load_model("two-labels", "no-such-task")
    with pytest.raises(InvalidArgument, match="must be a JSON object"):
        await fresh.load_model(MINILM, kwargs=["device"])  # type: ignore[arg-type]
    with pytest.raises(NotAllowed):
        await fresh.load_model(MINILM, kwargs={"trust_remote_code": True})
    assert fresh.models() == []


async def test_a_configured_device_places_models_whose_calls_name_none(zoo: Path) -> None:
    config = EngineConfig(search_dirs=(zoo,), devices={"two-labels": "cpu", "*": "cuda:7"})
    assert config.device_for(["two-labels"]) == "cpu"
    assert config.device_for(["alias", "two-labels"]) == "cpu"  # an alias target's setting applies
    assert config.device_for([MINILM]) == "cuda:7"
    engine = Engine(config)
    try:
        await engine.transform({"task": "text-classification", "model": "two-labels"}, {}, ["good"])
        # No such GPU here: the configured default device is what the embed call asks for.
        with pytest.raises(InvalidArgument, match="cuda:7"):
            await engine.embed(MINILM, ["hello"])
        # A call's own device wins over the configuration.
        await engine.embed(MINILM, ["hello"], {"device": "cpu"})
        with pytest.raises(InvalidArgument, match="cuda:7"):
            await engine.rank("cross-encoder", "query", ["doc"], {})
        assert {m.key.options.device for m in engine.models()} == {"cpu"}
    finally:
        engine.close()


def test_configured_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="max_concurrent_trainings"):
        EngineConfig(max_concurrent_trainings=0)
    assert EngineConfig(devices={"a": "cpu"}).device_for(["b"]) is None
