"""Bridges between async byte streams and blocking file objects run in worker threads.

Tar handling (``tarfile``) and blocking SDKs (docker) are synchronous; sandbank's API is
async. These two helpers connect them with bounded buffering, so nothing is held whole in
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO, TypeVar

__all__ = ["CHUNK", "SyncReader", "stream_from_thread"]

CHUNK = 1024 * 1024
T = TypeVar("T")


class SyncReader(io.RawIOBase):
    """A blocking, readable file over an async byte iterator; use it from a worker thread."""

    def __init__(self, source: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._source = source
        self._loop = loop
        self._buffer = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self._buffer and not self._eof:
            future = asyncio.run_coroutine_threadsafe(_next_or_none(self._source), self._loop)
            chunk = future.result()
            if chunk is None:
                self._eof = True
            else:
                self._buffer = chunk

    def readinto(self, target: Any) -> int:
        self._fill()
        view = memoryview(target).cast("B")
        count = min(len(view), len(self._buffer))
        view[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count


async def _next_or_none(source: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await anext(source)
    except StopAsyncIteration:
        return None


class _QueueWriter(io.RawIOBase):
    def __init__(self, queue: asyncio.Queue[bytes | None], loop: asyncio.AbstractEventLoop):
        self._queue = queue
        self._loop = loop
        self._pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._pending += data
        if len(self._pending) >= CHUNK:
            self.flush()
        return len(data)

    def close(self) -> None:
        # Called again by the garbage collector: never flush from there (the loop may be gone).
        self._pending.clear()
        super().close()

    def flush(self) -> None:
        if self._pending and not self.closed:
            chunk, self._pending = bytes(self._pending), bytearray()
            asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop).result()


async def stream_from_thread(produce: Callable[[BinaryIO], object]) -> AsyncIterator[bytes]:
    """Run ``produce(file)`` in a thread and yield what it writes, about 1 MiB at a time.

    An exception in ``produce`` is raised here after the bytes written before it.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
    writer = _QueueWriter(queue, loop)

    def run() -> None:
        try:
            produce(writer)  # type: ignore[arg-type]
            writer.flush()
        finally:
            writer.close()
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    task = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            yield chunk
        await task
    finally:
        if not task.done():
            # The consumer stopped early: drain so the producer thread can finish.
            while not task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), timeout=0.1)
            task.exception()
