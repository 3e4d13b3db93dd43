"""Bridges between async byte streams and blocking file objects run in worker threads.

Tar handling (``tarfile``) and blocking SDKs (docker) are synchronous; sandbank's API is
async. These two helpers connect them with bounded buffering, so nothing is held whole in
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, BinaryIO, TypeVar

__all__ = ["CHUNK", "PipeClosed", "SyncReader", "ThreadPipe", "stream_from_thread"]

CHUNK = 1024 * 1024
T = TypeVar("T")


class SyncReader(io.RawIOBase):
    """A blocking, readable file over an async byte iterator; use it from a worker thread."""

    def __init__(self, source: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._source = source
        self._loop = loop
        # The current chunk and how much of it was read: slicing the rest off on every read
        # would copy up to a chunk per call (tarfile reads 512-byte headers).
        self._chunk = b""
        self._buffer = memoryview(self._chunk)
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while self._pos >= len(self._buffer) and not self._eof:
            future = asyncio.run_coroutine_threadsafe(_next_or_none(self._source), self._loop)
            chunk = future.result()
            if chunk is None:
                self._eof = True
            else:
                self._chunk, self._buffer, self._pos = chunk, memoryview(chunk).cast("B"), 0

    def readinto(self, target: Any) -> int:
        self._fill()
        view = memoryview(target).cast("B")
        count = min(len(view), len(self._buffer) - self._pos)
        view[:count] = self._buffer[self._pos : self._pos + count]
        self._pos += count
        return count

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        self._fill()
        if self._pos == 0 and size >= len(self._chunk) and type(self._chunk) is bytes:
            self._pos = len(self._chunk)
            return self._chunk  # a whole chunk: no copy
        data = bytes(self._buffer[self._pos : self._pos + size])
        self._pos += len(data)
        return data


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
        self.aborted = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.aborted.is_set():
            raise PipeClosed("the reader of this stream stopped")
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
            # The consumer stopped early: the producer's next write raises PipeClosed; drain
            # what it queued meanwhile so that it can finish.
            writer.aborted.set()
            while not task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), timeout=0.1)
            task.exception()


class PipeClosed(BrokenPipeError):
    """The reading side of a ``ThreadPipe`` gave up; the writer should stop."""


_EOF = object()


class ThreadPipe:
    """A bounded pipe of byte chunks from one thread to another, with no event loop between.

    The writer calls ``write`` (file-like: each call becomes one chunk, so write big pieces)
    and then ``finish()``, or ``finish(exc)`` to make the reader raise ``exc``. The reader
    iterates (for example as a chunked HTTP request body) and calls ``abort()`` when it stops,
    which makes a blocked or later ``write`` raise ``PipeClosed``. At most ``depth`` chunks
    wait in between.
    """

    def __init__(self, depth: int = 8) -> None:
        self._queue: queue.Queue[object] = queue.Queue(depth)
        self._aborted = threading.Event()
        self.bytes = 0

    # writer side

    def write(self, data: bytes) -> int:
        if data:
            self._put(data)
            self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self, exc: BaseException | None = None) -> None:
        with contextlib.suppress(PipeClosed):
            self._put(_EOF if exc is None else exc)

    def _put(self, item: object) -> None:
        while True:
            if self._aborted.is_set():
                raise PipeClosed("the reader of this pipe stopped")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # reader side

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._aborted.is_set():
                    raise PipeClosed("this pipe was aborted") from None
                continue
            if item is _EOF:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item

    def abort(self) -> None:
        """Stop both sides: a waiting writer raises ``PipeClosed``, and so does the reader."""
        self._aborted.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
