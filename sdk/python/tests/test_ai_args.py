"""Argument handling of Builtins, TransformerPipeline and OpenSourceAI that needs no database (tier T0): bad
arguments fail before any connection is made, and the statements bind everything with explicit casts."""

from __future__ import annotations

from typing import Any

import pytest
from pgml import transforms
from pgml.builtins import Builtins
from pgml.errors import ValidationError
from pgml.open_source_ai import OpenSourceAI
from pgml.transformer_pipeline import TransformerPipeline
from psycopg.types.json import Jsonb

NOWHERE = (
    "postgresql://nobody@127.0.0.1:1/none"  # a connection attempt would fail with a PgmlError, not these
)
MESSAGES = [{"role": "user", "content": "hi"}]


def test_generation_args_use_the_openai_spelling() -> None:
    assert transforms.generation_args(None) == {}
    assert transforms.generation_args({"max_new_tokens": 5.0, "n": 2, "top_p": 0.9}) == {
        "max_tokens": 5,
        "n": 2,
        "top_p": 0.9,
    }
    assert transforms.generation_args({"max_tokens": 9, "max_new_tokens": 5}) == {"max_tokens": 5}


@pytest.mark.parametrize("args", [{"max_tokens": 2.5}, {"n": "3"}, {"max_new_tokens": True}, ["max_tokens"]])
def test_generation_args_refuse_non_integers(args: Any) -> None:
    with pytest.raises(ValidationError):
        transforms.generation_args(args)


def test_fetch_size() -> None:
    assert transforms.fetch_size(None) == 1
    assert transforms.fetch_size(4.0) == 4
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValidationError):
            transforms.fetch_size(bad)


def test_transform_statement_casts_every_argument() -> None:
    query, params = transforms.transform_statement("text-classification", None, ["a"])
    assert query == "SELECT pgml.transform(task => %s::text, args => %s::jsonb, inputs => %s::text[])"
    assert params[0] == "text-classification" and params[1].obj == {} and params[2] == ["a"]

    query, params = transforms.transform_statement(
        {"task": "conversational", "model": "m"}, {"n": 1}, MESSAGES
    )
    assert query == "SELECT pgml.transform(task => %s::jsonb, args => %s::jsonb, inputs => %s::jsonb[])"
    assert isinstance(params[0], Jsonb) and [m.obj for m in params[2]] == MESSAGES


def test_task_json_makes_gpu_layers_an_integer() -> None:
    assert transforms.task_json({"model": "m", "gpu_layers": 10.0}) == {"model": "m", "gpu_layers": 10}
    with pytest.raises(ValidationError):
        transforms.task_json({"gpu_layers": "all"})


@pytest.mark.parametrize("value", ["hi", [], ["hi"], {"role": "user"}, [{"role": "user"}, 1], None])
def test_messages_must_be_message_dicts(value: Any) -> None:
    with pytest.raises(ValidationError):
        transforms.messages(value)


async def test_bad_arguments_fail_before_connecting() -> None:
    with pytest.raises(ValidationError):
        await Builtins(NOWHERE).transform("text-classification", "not a list")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await Builtins(NOWHERE).transform(["a task"], ["x"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Builtins(NOWHERE).query("SELECT $1").bind_int(1.0)  # type: ignore[arg-type]
    pipeline = TransformerPipeline("text-generation", "m", database_url=NOWHERE)
    with pytest.raises(ValidationError):
        await pipeline.transform([1, 2])
    with pytest.raises(ValidationError):
        await pipeline.transform_stream("x", {"max_tokens": "ten"})
    ai = OpenSourceAI(NOWHERE)
    with pytest.raises(ValidationError):
        ai.chat_completions_create("m", MESSAGES, n=0)
    with pytest.raises(ValidationError):
        await ai.chat_completions_create_stream_async({"model": 1}, MESSAGES)


async def test_streams_start_at_the_first_item() -> None:
    """Awaiting a stream method only checks its arguments; the connection is made when iteration begins."""
    stream = await TransformerPipeline("text-generation", "m", database_url=NOWHERE).transform_stream("x")
    chunks = OpenSourceAI(NOWHERE).chat_completions_create_stream("m", MESSAGES)
    assert hasattr(stream, "__anext__") and hasattr(chunks, "__next__")
