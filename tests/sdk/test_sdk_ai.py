"""Builtins, TransformerPipeline and OpenSourceAI (contract §2.5-§2.7, F9, F11) through a real proxy.

The generators are tiny random models, so the facts are shapes, types and equalities with the same call made in
plain SQL, never particular words. Equalities use greedy decoding (no temperature), which is deterministic.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pgml.builtins import Builtins
from pgml.errors import PgmlError, ValidationError
from pgml.open_source_ai import OpenSourceAI
from pgml.transformer_pipeline import TransformerPipeline
from psycopg.types.json import Jsonb

from tests.sdk.conftest import EMBEDDER

GENERATOR = "text-generation"  # the tiny Llama with a chat template, in the proxy's models folder
CLASSIFIER = "text-classification"
MESSAGES = [
    {"role": "system", "content": "You are a friendly assistant."},
    {"role": "user", "content": "How are you doing today?"},
]
GREEDY = 0  # temperature 0 turns sampling off


@pytest.fixture(scope="module")
def direct(sdk_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Plain psycopg on the same database: the oracle for what the SDK returns."""
    with psycopg.connect(sdk_url, autocommit=True) as connection:
        yield connection


def sql_stream(
    connection: psycopg.Connection[Any], task: dict[str, Any], args: dict[str, Any], source: Any
) -> list[Any]:
    """Every row of ``pgml.transform_stream``, fetched one by one through a cursor."""
    if isinstance(source, str):
        given, value = "input => %s::text", source
    else:
        given, value = "inputs => %s::jsonb[]", [Jsonb(m) for m in source]
    rows = []
    with connection.transaction():
        connection.execute(
            f"DECLARE oracle CURSOR FOR SELECT pgml.transform_stream(task => %s::jsonb, args => %s::jsonb, {given})",
            [Jsonb(task), Jsonb(args), value],
        )
        while batch := connection.execute("FETCH 1 FROM oracle").fetchall():
            rows.extend(row[0] for row in batch)
    return rows


def sent(caplog: pytest.LogCaptureFixture, function: str) -> list[list[Any]]:
    """The parameters of each logged statement calling ``function``, jsonb values unwrapped."""

    def plain(value: Any) -> Any:
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value.obj if isinstance(value, Jsonb) else value

    return [
        plain(record.args[1])  # type: ignore[index]
        for record in caplog.records
        if record.name == "pgml" and f"{function}(" in str(record.args[0])  # type: ignore[index]
    ]


# --- constructors ------------------------------------------------------------------------------------------------


async def test_constructors_touch_nothing_and_a_missing_dsn_fails_at_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("PGML_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    Builtins()
    TransformerPipeline(GENERATOR, GENERATOR, {"gpu_layers": 0})
    OpenSourceAI()
    Builtins("postgresql://nobody@127.0.0.1:1/none")  # never connected
    with pytest.raises(PgmlError, match="no database URL"):
        await Builtins().embed(EMBEDDER, "hello")
    with pytest.raises(PgmlError, match="no database URL"):
        OpenSourceAI().chat_completions_create(GENERATOR, MESSAGES)


def test_constructor_arguments_are_checked() -> None:
    with pytest.raises(TypeError):
        TransformerPipeline(GENERATOR)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TransformerPipeline(GENERATOR, None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="gpu_layers"):
        TransformerPipeline(GENERATOR, GENERATOR, {"gpu_layers": "many"})


# --- Builtins ------------------------------------------------------------------------------------------------------


async def test_embed_is_pgml_embed(sdk_url: str, direct: psycopg.Connection[Any]) -> None:
    vector = await Builtins(sdk_url).embed(EMBEDDER, "The quick brown fox")
    expected = direct.execute(
        "SELECT pgml.embed(%s::text, %s::text)", [EMBEDDER, "The quick brown fox"]
    ).fetchone()
    assert expected is not None
    assert vector == expected[0]
    assert len(vector) == 384 and all(isinstance(x, float) for x in vector)


async def test_embed_batch_keeps_input_order(sdk_url: str) -> None:
    builtins = Builtins(sdk_url)
    texts = ["alpha particles", "a bowl of soup", "the stock market", "alpha particles"]
    batch = await builtins.embed_batch(EMBEDDER, texts)
    singles = [await builtins.embed(EMBEDDER, text) for text in texts]
    assert len(batch) == len(texts)
    for got, single in zip(batch, singles, strict=True):
        assert got == pytest.approx(single, abs=1e-6)
    assert batch[0] == pytest.approx(batch[3], abs=1e-6)
    for got, single in zip(await builtins.embed_batch(EMBEDDER, texts[::-1]), batch[::-1], strict=True):
        assert got == pytest.approx(single, abs=1e-6)
    assert await builtins.embed_batch(EMBEDDER, []) == []


async def test_embed_arguments_are_checked(sdk_url: str) -> None:
    with pytest.raises(ValidationError):
        await Builtins(sdk_url).embed_batch(EMBEDDER, "one string")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await Builtins(sdk_url).embed(EMBEDDER, ["a list"])  # type: ignore[arg-type]


async def test_query_binds_every_type_and_returns_row_dicts(sdk_url: str) -> None:
    rows = await (
        Builtins(sdk_url)
        .query("SELECT $1 + 1 AS i, $2::text AS s, $3::jsonb AS j, $4::bool AS b, $5 * 2 AS f")
        .bind_int(41)
        .bind_string("it's $1")
        .bind_json({"k": [1, "two", None]})
        .bind_bool(True)
        .bind_float(1.25)
        .fetch_all()
    )
    assert rows == [{"i": 42, "s": "it's $1", "j": {"k": [1, "two", None]}, "b": True, "f": 2.5}]


async def test_query_rows_in_order_empty_and_execute(sdk_url: str) -> None:
    builtins = Builtins(sdk_url)
    table = f"qr_{uuid.uuid4().hex[:8]}"
    assert await builtins.query(f"CREATE TABLE {table} (id bigint, body jsonb)").execute() is None
    for i in range(3):
        await builtins.query(f"INSERT INTO {table} VALUES ($1, $2)").bind_int(i).bind_json({"n": i}).execute()
    rows = (
        await builtins.query(f"SELECT * FROM {table} WHERE id >= $1 ORDER BY id DESC;")
        .bind_int(1)
        .fetch_all()
    )
    assert rows == [{"id": 2, "body": {"n": 2}}, {"id": 1, "body": {"n": 1}}]
    assert await builtins.query(f"SELECT * FROM {table} WHERE id > $1 -- none").bind_int(9).fetch_all() == []


async def test_query_errors(sdk_url: str) -> None:
    query = Builtins(sdk_url).query("SELECT $1 AS x")
    for bind, value in (
        ("bind_int", "1"),
        ("bind_int", True),
        ("bind_string", 1),
        ("bind_bool", 1),
        ("bind_float", "x"),
    ):
        with pytest.raises(ValidationError):
            getattr(query, bind)(value)
    with pytest.raises(PgmlError) as raised:
        await Builtins(sdk_url).query("SELECT * FROM no_such_table_here").fetch_all()
    assert raised.value.sqlstate == "42P01"


async def test_transform_with_a_dict_task_is_pgml_transform(
    sdk_url: str, direct: psycopg.Connection[Any]
) -> None:
    task = {"task": CLASSIFIER, "model": CLASSIFIER}
    inputs = ["I love this", "I hate that"]
    result = await Builtins(sdk_url).transform(task, inputs)
    expected = direct.execute(
        "SELECT pgml.transform(task => %s::jsonb, inputs => %s::text[])", [Jsonb(task), inputs]
    ).fetchone()
    assert expected is not None
    assert result == expected[0]
    assert [sorted(item) for item in result] == [["label", "score"], ["label", "score"]]


async def test_transform_with_a_str_task_goes_by_the_task_name(
    sdk_url: str, direct: psycopg.Connection[Any]
) -> None:
    """A text task means the task's default model, which this offline proxy does not have: both paths answer
    the proxy's not-found error naming it."""
    with pytest.raises(PgmlError) as raised:
        await Builtins(sdk_url).transform(CLASSIFIER, ["I love this"], {"top_k": 1})
    with pytest.raises(psycopg.Error) as oracle:
        direct.execute("SELECT pgml.transform(%s::text, inputs => %s::text[])", [CLASSIFIER, ["I love this"]])
    assert raised.value.sqlstate == oracle.value.sqlstate == "42704"
    assert "distilbert" in str(raised.value)
    assert isinstance(raised.value.__cause__, psycopg.Error)


# --- TransformerPipeline -------------------------------------------------------------------------------------------


async def test_pipeline_transform_renames_max_new_tokens(
    sdk_url: str, direct: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pgml")
    pipeline = TransformerPipeline(GENERATOR, GENERATOR, database_url=sdk_url)
    result = await pipeline.transform(["AI is going to"], {"max_new_tokens": 5.0})
    [[task, args, _inputs]] = sent(caplog, "pgml.transform")
    assert task == {"task": GENERATOR, "model": GENERATOR} and args == {"max_tokens": 5}
    expected = direct.execute(
        "SELECT pgml.transform(task => %s::jsonb, args => %s::jsonb, inputs => %s::text[])",
        [Jsonb({"task": GENERATOR, "model": GENERATOR}), Jsonb({"max_tokens": 5}), ["AI is going to"]],
    ).fetchone()
    assert expected is not None
    assert result == expected[0]
    [[generated]] = result
    assert generated["generated_text"].startswith("AI is going to")
    assert len(generated["generated_text"]) > len("AI is going to")


async def test_pipeline_transform_arguments_are_checked(sdk_url: str) -> None:
    pipeline = TransformerPipeline(GENERATOR, GENERATOR, database_url=sdk_url)
    with pytest.raises(ValidationError):
        await pipeline.transform("not a list")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await pipeline.transform(MESSAGES)
    with pytest.raises(ValidationError, match="max_tokens"):
        await pipeline.transform(["x"], {"max_tokens": 2.5})
    with pytest.raises(ValidationError, match="batch_size"):
        await pipeline.transform_stream("x", batch_size=0)
    with pytest.raises(ValidationError):
        await pipeline.transform_stream(["x"])  # type: ignore[arg-type]


async def test_pipeline_stream_batch_sizes(sdk_url: str, direct: psycopg.Connection[Any]) -> None:
    pipeline = TransformerPipeline(GENERATOR, GENERATOR, database_url=sdk_url)
    args = {"max_new_tokens": 12}
    ones = [item async for item in await pipeline.transform_stream("AI is going to", args)]
    assert ones == sql_stream(
        direct, {"task": GENERATOR, "model": GENERATOR}, {"max_tokens": 12}, "AI is going to"
    )
    assert len(ones) > 3
    assert all(isinstance(row, list) and len(row) == 1 and isinstance(row[0], str) for row in ones)

    threes = [item async for item in await pipeline.transform_stream("AI is going to", args, 3)]
    assert all(isinstance(item, list) and all(isinstance(s, str) for s in item) for item in threes)
    assert [len(item) for item in threes[:-1]] == [3] * (len(threes) - 1) and 1 <= len(threes[-1]) <= 3
    assert [piece for item in threes for piece in item] == [row[0] for row in ones]


async def test_conversational_pipeline(sdk_url: str, direct: psycopg.Connection[Any]) -> None:
    pipeline = TransformerPipeline("conversational", GENERATOR, database_url=sdk_url)
    task = {"task": "conversational", "model": GENERATOR}
    result = await pipeline.transform(MESSAGES, {"max_new_tokens": 6})
    expected = direct.execute(
        "SELECT pgml.transform(task => %s::jsonb, args => %s::jsonb, inputs => %s::jsonb[])",
        [Jsonb(task), Jsonb({"max_tokens": 6}), [Jsonb(m) for m in MESSAGES]],
    ).fetchone()
    assert expected is not None
    assert result == expected[0]
    assert isinstance(result, list) and len(result) == 1 and isinstance(result[0], str)

    rows = [row async for row in await pipeline.transform_stream(MESSAGES, {"max_tokens": 6})]
    assert rows == sql_stream(direct, task, {"max_tokens": 6}, MESSAGES)
    with pytest.raises(ValidationError):
        await pipeline.transform(["not a message"])
    with pytest.raises(ValidationError):
        await pipeline.transform_stream("not messages")


async def test_stream_closed_early_gives_its_connection_back(sdk_url: str) -> None:
    pipeline = TransformerPipeline(GENERATOR, GENERATOR, database_url=sdk_url)
    for _ in range(3):
        stream = await pipeline.transform_stream("Once upon", {"max_tokens": 20})
        first = await anext(stream)
        assert isinstance(first, list)
        await stream.aclose()  # type: ignore[attr-defined]
    assert await Builtins(sdk_url).query("SELECT 1 AS one").fetch_all() == [{"one": 1}]


# --- OpenSourceAI --------------------------------------------------------------------------------------------------


def assert_completion(completion: dict[str, Any], model: str, choices: int) -> None:
    assert set(completion) == {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert uuid.UUID(completion["id"]).version == 4
    assert completion["object"] == "chat.completion"
    assert isinstance(completion["created"], int) and abs(completion["created"] - time.time()) < 600
    assert completion["model"] == model
    uuid.UUID(completion["system_fingerprint"])
    assert [choice["index"] for choice in completion["choices"]] == list(range(choices))
    for choice in completion["choices"]:
        assert set(choice) == {"index", "message"}
        assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert completion["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def assert_chunks(chunks: list[dict[str, Any]], model: str, choices: int) -> None:
    assert chunks
    for chunk in chunks:
        assert set(chunk) == {"id", "system_fingerprint", "object", "created", "model", "choices"}
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == model
        assert isinstance(chunk["created"], int)
        assert [choice["index"] for choice in chunk["choices"]] == list(range(choices))
        for choice in chunk["choices"]:
            assert set(choice) == {"index", "delta"}
            assert choice["delta"]["role"] == "assistant" and isinstance(choice["delta"]["content"], str)
    assert len({chunk["id"] for chunk in chunks}) == 1 and uuid.UUID(chunks[0]["id"]).version == 4
    assert len({chunk["system_fingerprint"] for chunk in chunks}) == 1


def test_create_is_sync_and_is_pgml_transform(sdk_url: str, direct: psycopg.Connection[Any]) -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # a plain function: no event loop around it
    ai = OpenSourceAI(sdk_url)
    completion = ai.chat_completions_create(GENERATOR, MESSAGES, max_tokens=10, temperature=GREEDY)
    assert_completion(completion, GENERATOR, 1)
    expected = direct.execute(
        "SELECT pgml.transform(task => %s::jsonb, args => %s::jsonb, inputs => %s::jsonb[])",
        [
            Jsonb({"task": "conversational", "model": GENERATOR}),
            Jsonb({"max_tokens": 10, "temperature": GREEDY}),
            [Jsonb(m) for m in MESSAGES],
        ],
    ).fetchone()
    assert expected is not None
    assert [completion["choices"][0]["message"]["content"]] == expected[0]

    again = ai.chat_completions_create(GENERATOR, MESSAGES, 10, GREEDY)
    assert again["system_fingerprint"] == completion["system_fingerprint"] and again["id"] != completion["id"]
    others = {
        ai.chat_completions_create(GENERATOR, MESSAGES, 11, GREEDY)["system_fingerprint"],
        ai.chat_completions_create(GENERATOR, MESSAGES, 10, 0.5)["system_fingerprint"],
        ai.chat_completions_create({"model": GENERATOR, "device": "cpu"}, MESSAGES, 10, GREEDY)[
            "system_fingerprint"
        ],
    }
    assert completion["system_fingerprint"] not in others and len(others) == 3


def test_create_stream_is_sync(sdk_url: str) -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    ai = OpenSourceAI(sdk_url)
    chunks = list(ai.chat_completions_create_stream(GENERATOR, MESSAGES, max_tokens=10, temperature=GREEDY))
    assert_chunks(chunks, GENERATOR, 1)
    whole = ai.chat_completions_create(GENERATOR, MESSAGES, max_tokens=10, temperature=GREEDY)
    assert (
        "".join(c["choices"][0]["delta"]["content"] for c in chunks)
        == whole["choices"][0]["message"]["content"]
    )
    assert chunks[0]["system_fingerprint"] == whole["system_fingerprint"]


async def test_create_async_with_a_dict_model(sdk_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pgml")
    ai = OpenSourceAI(sdk_url)
    completion = await ai.chat_completions_create_async(
        {"model": GENERATOR, "device": "cpu"}, MESSAGES, max_tokens=8, temperature=0.85
    )
    assert_completion(completion, GENERATOR, 1)
    defaults = await ai.chat_completions_create_async(GENERATOR, MESSAGES, chat_template=None)
    assert_completion(defaults, GENERATOR, 1)
    [[task, args, inputs], [_, default_args, _]] = sent(caplog, "pgml.transform")
    assert task == {"task": "conversational", "model": GENERATOR, "device": "cpu"}
    assert args == {"max_tokens": 8, "temperature": 0.85} and inputs == MESSAGES
    assert default_args == {"max_tokens": 1000, "temperature": 0.8}


async def test_create_stream_async_matches_create_async(sdk_url: str) -> None:
    ai = OpenSourceAI(sdk_url)
    stream = await ai.chat_completions_create_stream_async(
        GENERATOR, MESSAGES, max_tokens=10, temperature=GREEDY
    )
    chunks = [chunk async for chunk in stream]
    assert_chunks(chunks, GENERATOR, 1)
    whole = await ai.chat_completions_create_async(GENERATOR, MESSAGES, max_tokens=10, temperature=GREEDY)
    assert (
        "".join(c["choices"][0]["delta"]["content"] for c in chunks)
        == whole["choices"][0]["message"]["content"]
    )


async def test_n_gives_n_choices(sdk_url: str) -> None:
    """F9: the upstream ignores n; here a completion has n choices and every chunk n deltas."""
    ai = OpenSourceAI(sdk_url)
    completion = await ai.chat_completions_create_async(
        GENERATOR, MESSAGES, max_tokens=6, temperature=0.85, n=3
    )
    assert_completion(completion, GENERATOR, 3)
    stream = await ai.chat_completions_create_stream_async(
        GENERATOR, MESSAGES, temperature=0.85, n=3, max_tokens=6
    )
    assert_chunks([chunk async for chunk in stream], GENERATOR, 3)
    one = await ai.chat_completions_create_async(GENERATOR, MESSAGES, max_tokens=6, temperature=0.85, n=1)
    assert one["system_fingerprint"] != completion["system_fingerprint"]


def test_n_in_the_sync_stream(sdk_url: str) -> None:
    chunks = list(OpenSourceAI(sdk_url).chat_completions_create_stream(GENERATOR, MESSAGES, 6, 0.85, 3))
    assert_chunks(chunks, GENERATOR, 3)


async def test_any_model_name_passes_through_to_the_proxy(sdk_url: str) -> None:
    """F11: no hard-coded list; an unknown name is the proxy's error (its SQLSTATE), in all four methods."""
    ai = OpenSourceAI(sdk_url)
    missing = "no-such-org/no-such-chat-model"
    with pytest.raises(PgmlError) as raised:
        await ai.chat_completions_create_async(missing, MESSAGES, max_tokens=4)
    assert raised.value.sqlstate == "42704" and missing in str(raised.value)
    with pytest.raises(PgmlError) as raised:
        await asyncio.to_thread(ai.chat_completions_create, missing, MESSAGES, 4)
    assert raised.value.sqlstate == "42704"
    stream = await ai.chat_completions_create_stream_async(missing, MESSAGES, max_tokens=4)
    with pytest.raises(PgmlError) as raised:
        await anext(stream)
    assert raised.value.sqlstate == "42704"
    with pytest.raises(PgmlError) as raised:
        await asyncio.to_thread(list, ai.chat_completions_create_stream(missing, MESSAGES, 4))
    assert raised.value.sqlstate == "42704"


@pytest.mark.parametrize(
    "messages",
    ["Hello", [], ["Hello"], {"role": "user", "content": "Hello"}, [{"role": "user"}, "Hello"]],
)
async def test_messages_must_be_a_list_of_dicts(sdk_url: str, messages: Any) -> None:
    ai = OpenSourceAI(sdk_url)
    with pytest.raises(ValidationError, match="messages"):
        ai.chat_completions_create(GENERATOR, messages)
    with pytest.raises(ValidationError, match="messages"):
        await ai.chat_completions_create_async(GENERATOR, messages)
    with pytest.raises(ValidationError, match="messages"):
        ai.chat_completions_create_stream(GENERATOR, messages)
    with pytest.raises(ValidationError, match="messages"):
        await ai.chat_completions_create_stream_async(GENERATOR, messages)


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        (42, {}),
        ({"name": GENERATOR}, {}),
        (GENERATOR, {"n": 0}),
        (GENERATOR, {"max_tokens": "ten"}),
        (GENERATOR, {"temperature": "hot"}),
        (GENERATOR, {"chat_template": 1}),
    ],
)
def test_bad_arguments_are_validation_errors(sdk_url: str, model: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OpenSourceAI(sdk_url).chat_completions_create(model, MESSAGES, **kwargs)
