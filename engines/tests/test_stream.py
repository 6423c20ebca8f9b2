"""pgml.transform_stream on a tiny random causal LM: rows, early stops, back-pressure and concurrency.

The tiny model repeats words greedily (" France France …"), which gives the streams whitespace to cut at.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pgml_engines import Engine, EngineConfig, InvalidArgument, ModelNotFound, testing
from pgml_engines.stream import GenerationSlots, GenerationStats, PieceChannel, PieceStreamer

GPT = {"task": "text-generation", "model": "text-generation"}
PROMPT = "The capital of France"
GREEDY = {"do_sample": False}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    testing.build_causal_lm(folder / "text-generation")
    testing.build_seq2seq(folder / "text2text-generation")
    return folder


async def rows_of(stream: AsyncIterator[list[str]]) -> list[list[str]]:
    return [row async for row in stream]


async def settled(engine: Engine, timeout: float = 10.0) -> None:
    """Wait until no stream runs (a closed stream's thread ends at its next token)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while engine.stats().streams_active:
        assert asyncio.get_running_loop().time() < deadline, "a stream did not stop"
        await asyncio.sleep(0.01)


async def test_element_0_of_the_rows_concatenates_to_the_greedy_completion(engine: Engine) -> None:
    args = {"max_new_tokens": 20, **GREEDY}
    rows = await rows_of(engine.transform_stream(GPT, args, PROMPT))
    [[completion]] = await engine.transform(GPT, {**args, "return_full_text": False}, [PROMPT])
    assert all(isinstance(row, list) and len(row) == 1 and isinstance(row[0], str) for row in rows)
    assert "".join(row[0] for row in rows) == completion["generated_text"]
    assert len(rows) > 3  # streamed in pieces, not at the end
    pieces = [row[0] for row in rows]
    assert all(piece[:1].isspace() for piece in pieces[1:] if piece)  # a piece starts at whitespace
    assert PROMPT not in "".join(pieces)


async def test_n_gives_one_element_per_sequence_in_every_row(engine: Engine) -> None:
    rows = await rows_of(engine.transform_stream(GPT, {"max_tokens": 10, "n": 2, "temperature": 1.0}, PROMPT))
    assert rows and all(len(row) == 2 and all(isinstance(piece, str) for piece in row) for row in rows)


async def test_chat_messages_stream_the_assistants_reply(engine: Engine) -> None:
    messages = [{"role": "user", "content": "Where is Paris?"}]
    args = {"max_tokens": 8, **GREEDY}
    rows = await rows_of(
        engine.transform_stream({"task": "conversational", "model": "text-generation"}, args, messages)
    )
    [reply] = await engine.transform({"task": "conversational", "model": "text-generation"}, args, messages)
    assert "".join(row[0] for row in rows) == reply


async def test_seq2seq_models_stream_too(engine: Engine) -> None:
    spec = {"task": "summarization", "model": "text2text-generation"}
    args = {"max_new_tokens": 6, "min_new_tokens": 6}
    rows = await rows_of(engine.transform_stream(spec, args, "the house is blue"))
    [summary] = await engine.transform(spec, args, ["the house is blue"])
    assert "".join(row[0] for row in rows) == summary["summary_text"]


async def test_closing_after_the_first_row_stops_generation(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    await settled(engine)
    before = engine.stats()
    with caplog.at_level(logging.INFO, logger="pgml_engines"):
        stream = engine.transform_stream(
            GPT, {"max_new_tokens": 300, "min_new_tokens": 300, **GREEDY}, PROMPT
        )
        first = await stream.__anext__()
        assert first
        await stream.aclose()
        await settled(engine)
    after = engine.stats()
    assert after.streams_started - before.streams_started == 1
    assert after.streams_stopped - before.streams_stopped == 1
    assert after.stream_tokens - before.stream_tokens < 300
    assert any(
        re.fullmatch(r"stream \d+ stopped after \d+ tokens .*", r.getMessage()) for r in caplog.records
    )


async def test_cancelling_the_consumer_stops_generation(engine: Engine) -> None:
    await settled(engine)
    before = engine.stats()
    started = asyncio.Event()

    async def consume() -> None:
        async for _row in engine.transform_stream(
            GPT, {"max_new_tokens": 300, "min_new_tokens": 300}, PROMPT
        ):
            started.set()
            await asyncio.sleep(10)  # a client that stopped reading

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settled(engine)
    after = engine.stats()
    assert after.streams_stopped - before.streams_stopped == 1
    assert after.stream_tokens - before.stream_tokens < 300


async def test_a_client_that_does_not_read_holds_generation_back(engine: Engine) -> None:
    await settled(engine)
    before = engine.stats()
    stream = engine.transform_stream(GPT, {"max_new_tokens": 100, "min_new_tokens": 100, **GREEDY}, PROMPT)
    await stream.__anext__()
    await asyncio.sleep(0.5)  # ample time to generate 100 tiny tokens, were it not waiting for the client
    during = engine.stats()
    assert during.streams_active == 1
    assert during.stream_tokens - before.stream_tokens < 100
    rest = await rows_of(stream)  # reading on lets it finish
    assert len(rest) >= 16
    after = engine.stats()  # by the time the last row is read, the stream is over everywhere
    assert (after.streams_active, after.stream_tokens - before.stream_tokens) == (0, 100)


async def test_the_concurrency_limit_makes_further_streams_wait(zoo: Path) -> None:
    limited = Engine(EngineConfig(search_dirs=(zoo,), max_concurrent_generations=1))
    args = {"max_new_tokens": 200, "min_new_tokens": 200, **GREEDY}
    try:
        first = limited.transform_stream(GPT, args, PROMPT)
        await first.__anext__()
        second = limited.transform_stream(GPT, {"max_new_tokens": 5, **GREEDY}, PROMPT)
        waiting = asyncio.ensure_future(second.__anext__())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        assert limited.stats().streams_started == 1
        await first.aclose()  # frees the slot once its generation has stopped
        assert (await asyncio.wait_for(waiting, 10))[0]
        await rows_of(second)
        assert limited.stats().streams_started == 2
    finally:
        limited.close()


async def test_waiting_for_a_slot_can_be_cancelled(zoo: Path) -> None:
    limited = Engine(EngineConfig(search_dirs=(zoo,), max_concurrent_generations=1))
    args = {"max_new_tokens": 200, "min_new_tokens": 200, **GREEDY}
    try:
        first = limited.transform_stream(GPT, args, PROMPT)
        await first.__anext__()
        waiting = asyncio.ensure_future(limited.transform_stream(GPT, args, PROMPT).__anext__())
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await first.aclose()
        third = limited.transform_stream(GPT, {"max_new_tokens": 3, **GREEDY}, PROMPT)
        assert await asyncio.wait_for(rows_of(third), 10)  # the cancelled waiter did not keep the slot
    finally:
        limited.close()


async def test_a_stream_does_not_block_transforms_on_the_same_model(engine: Engine) -> None:
    await settled(engine)
    stream = engine.transform_stream(GPT, {"max_new_tokens": 300, "min_new_tokens": 300, **GREEDY}, PROMPT)
    await stream.__anext__()
    try:
        result = await asyncio.wait_for(engine.transform(GPT, {"max_new_tokens": 3, **GREEDY}, [PROMPT]), 10)
        assert result[0][0]["generated_text"].startswith(PROMPT)
        assert engine.stats().streams_active == 1  # the stream is still there, held back by its reader
    finally:
        await stream.aclose()
    await settled(engine)


async def test_arguments_are_checked_before_iterating(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="no_such_knob"):
        engine.transform_stream(GPT, {"no_such_knob": 1}, PROMPT)
    with pytest.raises(InvalidArgument, match="cannot stream"):
        engine.transform_stream({"task": "text-classification", "model": "x"}, {}, PROMPT)
    with pytest.raises(InvalidArgument, match="conversational task"):
        engine.transform_stream(
            {"task": "summarization", "model": "x"}, {}, [{"role": "user", "content": "hi"}]
        )
    with pytest.raises(InvalidArgument, match="messages"):
        engine.transform_stream({"task": "conversational", "model": "x"}, {}, "plain text")
    stream = engine.transform_stream({"task": "text-generation", "model": "nobody/none"}, {}, PROMPT)
    with pytest.raises(ModelNotFound):
        await stream.__anext__()


async def test_beam_search_is_refused_at_the_first_row(engine: Engine) -> None:
    stream = engine.transform_stream(GPT, {"num_beams": 2, "max_new_tokens": 3}, PROMPT)
    with pytest.raises(InvalidArgument, match="beam"):
        await stream.__anext__()
    await settled(engine)


async def test_streams_are_logged_when_they_start_and_finish(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    await settled(engine)
    with caplog.at_level(logging.INFO, logger="pgml_engines"):
        rows = await rows_of(engine.transform_stream(GPT, {"max_new_tokens": 4, **GREEDY}, PROMPT))
        # no waiting: the line is written before the client hears of the end
        messages = [r.getMessage() for r in caplog.records if r.name == "pgml_engines.engine"]
    started = r"stream \d+ started: model text-generation, task text-generation, 1 sequence\(s\)"
    assert any(re.fullmatch(started, m) for m in messages)
    finished = [
        m for m in messages if re.fullmatch(r"stream \d+ finished after 4 tokens \(\d+ pieces, .*\)", m)
    ]
    assert finished and f"({len(rows)} pieces" in finished[0]


# --- the parts, without a model --------------------------------------------------------------------------------


class _Tokens:
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def reshape(self, *_: Any) -> _Tokens:
        return self

    def tolist(self) -> list[int]:
        return self.ids


async def test_the_streamer_hands_out_each_token_at_once_but_waits_for_whole_characters() -> None:
    vocabulary = {1: "I", 2: "'m", 3: " so", 4: " gl", 5: "ad", 6: "\n\n", 7: "é"}

    def decode(ids: list[int]) -> str:
        text = "".join(vocabulary[i] for i in ids)
        # a two-byte character split over two tokens decodes to U+FFFD until its second half arrives
        return text.replace("éé", "é").replace("é", "\ufffd") if ids.count(7) == 1 and ids[-1] == 7 else text

    channel = PieceChannel(asyncio.get_running_loop(), __import__("threading").Event(), maxsize=100)
    streamer = PieceStreamer(decode, 1, channel, GenerationStats())
    streamer.put(_Tokens([0]))  # the prompt
    for token in (1, 2, 3, 4, 5, 6, 7, 3):
        streamer.put(_Tokens([token]))
    streamer.end()
    channel.finish()
    rows = []
    while (item := await channel.get())[0] == "row":
        rows.append(item[1][0])
    assert rows == ["I", "'m", " so", " gl", "ad", "\n\n", "é", " so"]
    assert streamer.steps == 8


async def test_slots_are_handed_over_in_order_and_survive_cancelled_waiters() -> None:
    slots = GenerationSlots(1)
    await slots.acquire()
    cancelled = asyncio.ensure_future(slots.acquire())
    served = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    slots.release()
    await asyncio.wait_for(served, 1)
    assert slots.in_use == 1
    slots.release()
    assert slots.in_use == 0
