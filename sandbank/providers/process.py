"""Host processes for commands: streamed output, stdin, timeouts and process-group kills."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

from sandbank.errors import ExecTimeout
from sandbank.providers.base import ExecRequest, ExecResult, OutputCollector

log = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024
_DRAIN_GRACE = 1.0
"""Seconds to wait for output after the command ended before giving up on stray writers."""


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Stream protocol that also says when the process exits, even with pipes still open."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 9)


async def _settle(tasks: Sequence[asyncio.Future[None]], grace: float) -> None:
    """Wait for the output readers; cancel them if a stray process keeps a pipe open."""
    done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        log.warning("a background process kept the command's output open; stopped reading it")
        task.cancel()
    for task in done:
        task.result()


async def communicate(
    proc: asyncio.subprocess.Process,
    exited: asyncio.Future[None],
    request: ExecRequest,
    output: OutputCollector,
) -> ExecResult:
    assert proc.stdout is not None and proc.stderr is not None

    async def pump(reader: asyncio.StreamReader, name: Literal["stdout", "stderr"]) -> None:
        while chunk := await reader.read(_READ_CHUNK):
            await output.feed(name, chunk)

    async def feed(data: bytes) -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(data)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            proc.stdin.close()

    pumps = [
        asyncio.ensure_future(pump(proc.stdout, "stdout")),
        asyncio.ensure_future(pump(proc.stderr, "stderr")),
    ]
    helpers = list(pumps)
    if request.stdin is not None:
        helpers.append(asyncio.ensure_future(feed(request.stdin)))
    try:
        try:
            async with asyncio.timeout(request.timeout):
                pending: set[asyncio.Future[Any]] = {exited, *pumps}
                while exited in pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                # The command ended: anything it left behind goes with it.
                _kill_group(proc)
                await _settle(pumps, _DRAIN_GRACE)
        except TimeoutError:
            assert request.timeout is not None
            _kill_group(proc)
            await exited
            await _settle(pumps, _DRAIN_GRACE)
            result = output.result(_exit_code(proc.returncode or -9))
            raise ExecTimeout(request.argv, request.timeout, result) from None
        assert proc.returncode is not None
        return output.result(_exit_code(proc.returncode))
    finally:
        for task in helpers:
            if not task.done():
                task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
