"""Commands as host processes: stdin, streamed output, timeouts and process-group kills.

``run_process`` is the ``_exec`` of a provider whose commands run as processes on this
host (directly, or under a wrapper such as bubblewrap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sandbank.errors import ExecTimeout
from sandbank.providers.base import WORKSPACE, ExecRequest, ExecResult, OutputCollector

__all__ = ["DEFAULT_PATH", "ProcessGroups", "run_process", "sandbox_env"]

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_READ_CHUNK = 256 * 1024
_DRAIN_GRACE = 1.0
"""Seconds to wait for output after the command ended before giving up on stray writers."""


def sandbox_env(env: Mapping[str, str], *, home: str = WORKSPACE) -> dict[str, str]:
    """The complete environment of a command: sane defaults under the manifest's variables.

    Nothing of the host process's environment is in it.
    """
    merged = {"PATH": DEFAULT_PATH, "HOME": home, "LANG": "C.UTF-8"}
    merged.update(env)
    return merged


class ProcessGroups:
    """The running commands of each sandbox, so that ``destroy`` can kill them all."""

    def __init__(self) -> None:
        self._running: dict[str, set[asyncio.subprocess.Process]] = {}

    def of(self, sandbox_id: str) -> set[asyncio.subprocess.Process]:
        """The set to pass to ``run_process(running=...)`` for a sandbox's commands."""
        return self._running.setdefault(sandbox_id, set())

    def kill(self, sandbox_id: str) -> None:
        """Kill the process group of every command still running in the sandbox."""
        for proc in self._running.pop(sandbox_id, set()):
            _kill_group(proc)


async def run_process(
    argv: Sequence[str],
    request: ExecRequest,
    output: OutputCollector,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    running: set[asyncio.subprocess.Process] | None = None,
) -> ExecResult:
    """Run ``argv`` on this host as ``request`` asks and return ``output.result(exit_code)``.

    ``request.stdin`` is written to the process (none: end of file at once), stdout and
    stderr stream into ``output`` as they arrive, and the process runs in a new session:
    when it exits, on ``request.timeout`` (``ExecTimeout`` with the output so far and exit
    code 137) or on cancellation, its whole process group is killed. ``env`` is the whole
    environment (see ``sandbox_env``); ``running`` holds the process while it runs, so a
    provider's ``destroy`` can kill it (``ProcessGroups``). A program that does not exist
    exits 127 and one that cannot be executed 126, with the reason on stderr. A signal N
    gives 128 + N.
    """
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: _ExitProtocol(loop),
            *argv,
            stdin=PIPE if request.stdin is not None else DEVNULL,
            stdout=PIPE,
            stderr=PIPE,
            start_new_session=True,
            cwd=cwd,
            env=dict(env) if env is not None else None,
        )
    except (FileNotFoundError, PermissionError) as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        await output.feed("stderr", f"{argv[0]}: {exc.strerror or exc}\n".encode())
        return output.result(code)
    proc = asyncio.subprocess.Process(transport, protocol, loop)
    if running is not None:
        running.add(proc)
    try:
        return await _communicate(proc, protocol.exited, request, output)
    finally:
        _kill_group(proc)
        transport.close()
        if running is not None:
            running.discard(proc)


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


async def _communicate(
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
