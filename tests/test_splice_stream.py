"""SpliceStream fed with upstream bytes, its computation held by hand: ordering, windows, failures, flow.

The splicer here only stands in for the engine step, so each test decides when a window's rows are
ready; everything else (framing, ordering, back-pressure, error handling) is the real stream.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from pgml_proxy.errors import QueryCanceled, UndefinedObject
from pgml_proxy.session.splice import SpliceOutcome, SpliceStream
from pgml_proxy.wire.framing import MessageScanner, message
from pgml_proxy.wire.rows import Field, data_row, row_description

ROW_DESC = row_description([Field("x", 0, 0, 25, -1, -1, 0)])
COMPLETE = message(ord("C"), b"SELECT 4\x00")
NOTICE = message(ord("N"), b"Mhi\x00\x00")


def row(n: int) -> bytes:
    return data_row([str(n).encode()])


def ready(status: bytes = b"I") -> bytes:
    return message(ord("Z"), status)


class HeldSplicer:
    """Describes as given; each window waits until the test releases it (or fails it)."""

    def __init__(self) -> None:
        self.windows: list[tuple[list[bytes], asyncio.Future[None]]] = []
        self.describe_error: Exception | None = None

    def describe(self, body: bytes) -> bytes:
        if self.describe_error is not None:
            raise self.describe_error
        return message(ord("T"), body)

    async def rows(self, bodies: list[bytes]) -> bytes:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.windows.append((list(bodies), gate))
        await gate
        return b"".join(message(ord("D"), b) for b in bodies)


class Client:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def kinds(self) -> str:
        scanner = MessageScanner(frozenset(range(256)))
        _, frames = scanner.feed(bytes(self.data))
        return "".join(chr(kind) for kind, _, _ in frames)


async def settle() -> None:
    """Let every ready callback run (each window takes a few loop turns)."""
    for _ in range(50):
        await asyncio.sleep(0)


def started(
    window: int = 2, flow: list[str] | None = None, timeout: float | None = None
) -> tuple[HeldSplicer, Client, SpliceStream, asyncio.Task[SpliceOutcome]]:
    """A stream with its writer running, and the splicer and client it talks to."""
    splicer, client, flow = HeldSplicer(), Client(), flow if flow is not None else []
    stream = SpliceStream(
        splicer,  # type: ignore[arg-type]
        client.write,
        lambda: flow.append("pause"),
        lambda: flow.append("resume"),
        window=window,
    )
    return splicer, client, stream, asyncio.create_task(stream.run(timeout))


async def test_rows_leave_in_order_and_a_window_goes_out_before_the_next_is_computed():
    splicer, client, stream, runner = started()
    stream.feed(ROW_DESC + row(1) + row(2))
    await settle()
    assert client.kinds() == "T"
    assert [len(bodies) for bodies, _ in splicer.windows] == [2]
    splicer.windows[0][1].set_result(None)
    await settle()
    assert client.kinds() == "TDD"  # the first rows are out while the rest has not even arrived
    stream.feed(row(3) + NOTICE + row(4) + COMPLETE + ready())
    await settle()
    assert client.kinds() == "TDD"  # row 3 waits for its computation; the notice keeps its place
    for _, gate in splicer.windows[1:]:
        gate.set_result(None)
    outcome = await runner
    assert client.kinds() == "TDDDNDC"
    assert outcome.status == ord("I") and outcome.error is None and outcome.after == b""


async def test_a_message_split_across_reads_and_bytes_after_ready_for_query():
    splicer, client, stream, runner = started(window=10)
    whole = ROW_DESC + row(1) + COMPLETE
    for i in range(0, len(whole), 3):
        stream.feed(whole[i : i + 3])
        await settle()
        for _, gate in splicer.windows:
            if not gate.done():
                gate.set_result(None)
    after = ready(b"T") + NOTICE
    stream.feed(after[:3])
    stream.feed(after[3:8])  # ReadyForQuery ends here; the notice begins
    stream.feed(after[8:])  # arrives before the session has taken the outcome
    outcome = await runner
    assert client.kinds() == "TDC"
    assert outcome.status == ord("T") and outcome.after == NOTICE


async def test_a_failed_window_ends_the_answer_with_the_error_and_drops_the_rest():
    splicer, client, stream, runner = started()
    stream.feed(ROW_DESC + row(1) + row(2) + row(3) + row(4) + row(5) + COMPLETE)
    await settle()
    splicer.windows[0][1].set_result(None)
    splicer.windows[1][1].set_exception(UndefinedObject("model not found"))
    await settle()
    stream.feed(ready(b"T"))
    outcome = await runner
    assert client.kinds() == "TDDE"
    assert b"model not found" in client.data and b"42704" in client.data
    assert isinstance(outcome.error, UndefinedObject) and outcome.status == ord("T")
    assert all(gate.done() for _, gate in splicer.windows)  # the window after the failure was dropped


@pytest.mark.parametrize(
    ("error", "sqlstate"), [(UndefinedObject("no such model"), b"42704"), (KeyError("a bug"), b"XX000")]
)
async def test_a_describe_failure_computes_nothing(error, sqlstate):
    splicer, client, stream, runner = started()
    splicer.describe_error = error
    stream.feed(ROW_DESC + row(1) + row(2) + row(3) + COMPLETE + ready())
    outcome = await runner
    assert client.kinds() == "E" and splicer.windows == [] and sqlstate in client.data
    assert outcome.error is not None


async def test_cancel_interrupts_a_window_being_computed():
    splicer, client, stream, runner = started()
    stream.feed(ROW_DESC + row(1) + row(2))
    await settle()
    stream.cancel(QueryCanceled("canceling statement due to user request"))
    await settle()
    assert client.kinds() == "TE" and b"57014" in client.data
    assert splicer.windows[0][1].cancelled()
    stream.feed(row(3) + COMPLETE + ready())  # the upstream's own answer still comes, and is dropped
    outcome = await runner
    assert client.kinds() == "TE" and isinstance(outcome.error, QueryCanceled)


async def test_statement_timeout_bounds_the_computation():
    _, _, stream, runner = started(timeout=0.05)
    stream.feed(ROW_DESC + row(1) + row(2) + COMPLETE + ready())
    outcome = await runner
    assert isinstance(outcome.error, QueryCanceled) and "statement timeout" in outcome.error.message


async def test_the_upstream_is_paused_while_too_many_rows_wait():
    flow: list[str] = []
    splicer, client, stream, runner = started(window=1, flow=flow)
    stream.feed(ROW_DESC + b"".join(row(n) for n in range(1, 6)))
    await settle()
    assert flow == ["pause"]  # four windows waiting (the default QUEUED_WINDOWS) is enough
    for _, gate in splicer.windows:
        gate.set_result(None)
    await settle()
    assert flow == ["pause", "resume"]
    stream.feed(COMPLETE + ready())
    await runner
    assert client.kinds() == "TDDDDDC"


@pytest.mark.parametrize("cut", [1, 4, 5, 6])
async def test_a_row_split_anywhere_is_kept_whole(cut):
    splicer, _, stream, runner = started(window=1)
    data = ROW_DESC + row(12345)
    stream.feed(data[: len(ROW_DESC) + cut])
    stream.feed(data[len(ROW_DESC) + cut :] + COMPLETE + ready())
    await settle()
    splicer.windows[0][1].set_result(None)
    await runner
    [(bodies, _)] = splicer.windows
    assert bodies == [row(12345)[5:]] and struct.unpack("!h", bodies[0][:2]) == (1,)


async def test_in_a_query_string_only_the_spliced_statements_rows_are_computed():
    splicer, client = HeldSplicer(), Client()
    stream = SpliceStream(splicer, client.write, lambda: None, lambda: None, window=10, results_before=1)  # type: ignore[arg-type]
    runner = asyncio.create_task(stream.run())
    before = message(ord("C"), b"UPDATE 1\x00")
    after = ROW_DESC + row(9) + message(ord("C"), b"SELECT 1\x00")
    stream.feed(before + ROW_DESC + row(1) + row(2) + NOTICE + COMPLETE + after + ready())
    await settle()
    [(bodies, gate)] = splicer.windows
    assert bodies == [row(1)[5:], row(2)[5:]]  # neither the statement before nor the one after
    gate.set_result(None)
    outcome = await runner
    assert client.kinds() == "CTDDNCTDC" and outcome.status == ord("I")
