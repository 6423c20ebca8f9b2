"""pgml.rank with CrossEncoder.rank semantics, on a tiny random cross-encoder (pgml_engines.testing)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pgml_engines import Engine, InvalidArgument, ModelNotFound, NotAllowed, testing

QUERY = "What is the capital of France?"
DOCUMENTS = [
    "Paris is the capital of France.",
    "The cat sat on the mat.",
    "Berlin is the capital of Germany.",
    "The weather today is good.",
    "Madrid is the capital of Spain.",
]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    testing.build_cross_encoder(folder / "cross-encoder")
    testing.build_text_classifier(folder / "two-labels")
    return folder


async def test_rows_are_sorted_by_score_like_cross_encoder_rank(zoo: Path, engine: Engine) -> None:
    from sentence_transformers import CrossEncoder

    rows = await engine.rank("cross-encoder", QUERY, DOCUMENTS, {})
    expected = CrossEncoder(str(zoo / "cross-encoder"), device="cpu").rank(QUERY, DOCUMENTS)
    assert [row[0] for row in rows] == [r["corpus_id"] for r in expected]
    assert [row[1] for row in rows] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert [row[2] for row in rows] == [None] * len(DOCUMENTS)  # text only with return_documents
    assert sorted(row[0] for row in rows) == list(range(len(DOCUMENTS)))  # 0-based corpus ids
    assert all(type(row[0]) is int and type(row[1]) is float for row in rows)


async def test_top_k_and_return_documents(engine: Engine) -> None:
    everything = await engine.rank("cross-encoder", QUERY, DOCUMENTS, {})
    top = await engine.rank("cross-encoder", QUERY, DOCUMENTS, {"top_k": 2, "return_documents": True})
    assert [(i, s) for i, s, _ in top] == [(i, s) for i, s, _ in everything[:2]]
    assert [text for _, _, text in top] == [DOCUMENTS[i] for i, _, _ in top]
    assert len(await engine.rank("cross-encoder", QUERY, DOCUMENTS, {"top_k": 50})) == len(DOCUMENTS)


async def test_no_documents_give_no_rows(engine: Engine) -> None:
    assert await engine.rank("cross-encoder", QUERY, [], {}) == []


async def test_concurrent_rank_calls_share_model_calls(engine: Engine) -> None:
    await engine.rank("cross-encoder", QUERY, DOCUMENTS, None)
    before = engine.stats()
    results = await asyncio.gather(
        *(engine.rank("cross-encoder", f"query {i}", DOCUMENTS, {}) for i in range(10))
    )
    after = engine.stats()
    assert all(len(rows) == len(DOCUMENTS) for rows in results)
    assert after.requests - before.requests == 10
    assert after.batches - before.batches < 10


async def test_a_large_document_list_is_ranked_whole(engine: Engine) -> None:
    documents = [f"document number {i}" for i in range(engine.config.max_batch_size * 2 + 3)]
    rows = await engine.rank("cross-encoder", QUERY, documents, {"return_documents": True})
    assert sorted(row[0] for row in rows) == list(range(len(documents)))
    assert all(documents[i] == text for i, _, text in rows)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"no_such_option": 1}, "unknown rank argument"),
        ({"top_k": 0}, "top_k"),
        ({"return_documents": "yes"}, "return_documents"),
        ({"batch_size": -1}, "batch_size"),
        ({"device": "quantum"}, "device"),
    ],
)
async def test_bad_kwargs_are_refused(engine: Engine, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await engine.rank("cross-encoder", QUERY, DOCUMENTS, kwargs)


async def test_documents_must_be_text(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="document 2"):
        await engine.rank("cross-encoder", QUERY, ["ok", None], {})  # type: ignore[list-item]


async def test_a_model_with_several_outputs_cannot_rank(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="num_labels"):
        await engine.rank("two-labels", QUERY, DOCUMENTS, {})


async def test_unknown_model_and_untrusted_remote_code(engine: Engine) -> None:
    with pytest.raises(ModelNotFound):
        await engine.rank("nobody/no-such-model", QUERY, DOCUMENTS, {})
    with pytest.raises(NotAllowed, match="not trusted to run remote code"):
        await engine.rank("cross-encoder", QUERY, DOCUMENTS, {"trust_remote_code": True})


async def test_load_options_key_a_separate_copy(engine: Engine) -> None:
    await engine.rank("cross-encoder", QUERY, DOCUMENTS, {})
    await engine.rank("cross-encoder", QUERY, DOCUMENTS, {"max_length": 16})
    keys = [key for key in engine.loaded_models() if key.name == "cross-encoder"]
    assert {key.kind for key in keys} == {"cross-encoder"}
    assert {key.options.max_length for key in keys} == {None, 16}


async def test_a_slow_cross_encoder_load_tells_the_client(
    slow_loading_engine: Engine, client_notices: list[tuple[str, str]]
) -> None:
    await slow_loading_engine.rank("cross-encoder", QUERY, DOCUMENTS, {})
    assert [severity for severity, _ in client_notices] == ["NOTICE", "NOTICE"]
    assert client_notices[0][1] == "loading model cross-encoder …"
    assert client_notices[1][1].startswith("model cross-encoder loaded in ")
