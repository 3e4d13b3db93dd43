"""The async/thread stream bridges keep order, propagate errors and stay bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import BinaryIO

import pytest

from sandbank._streams import SyncReader, stream_from_thread


async def test_sync_reader_reads_an_async_stream_from_a_thread() -> None:
    async def source() -> AsyncIterator[bytes]:
        for i in range(100):
            yield bytes([i % 256]) * 1000

    reader = SyncReader(source(), asyncio.get_running_loop())
    data = await asyncio.to_thread(reader.read)
    assert data == b"".join(bytes([i % 256]) * 1000 for i in range(100))


async def test_stream_from_thread_yields_everything_in_order() -> None:
    def produce(out: BinaryIO) -> None:
        for i in range(50):
            out.write(str(i).encode() * 100_000)

    chunks = [c async for c in stream_from_thread(produce)]
    assert b"".join(chunks) == b"".join(str(i).encode() * 100_000 for i in range(50))
    assert max(len(c) for c in chunks) < 2 * 1024 * 1024


async def test_stream_from_thread_raises_the_producers_error() -> None:
    def produce(out: BinaryIO) -> None:
        out.write(b"x")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        async for _ in stream_from_thread(produce):
            pass


async def test_stream_from_thread_consumer_may_stop_early() -> None:
    def produce(out: BinaryIO) -> None:
        for _ in range(64):
            out.write(b"y" * 1024 * 1024)

    stream = stream_from_thread(produce)
    first = await anext(stream)
    assert first
    await stream.aclose()


async def test_stream_from_thread_stops_the_producer_when_the_reader_stops() -> None:
    """A consumer that stops early does not make the producer write everything anyway."""
    written = 0

    def produce(out: BinaryIO) -> None:
        nonlocal written
        for _ in range(1000):
            out.write(b"x" * (1 << 20))
            written += 1

    stream = stream_from_thread(produce)
    async for _chunk in stream:
        break
    await stream.aclose()
    assert written < 50
