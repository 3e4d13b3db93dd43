"""The one provider interface: Provider, Sandbox, ExecResult, Capabilities.

Public methods on ``Sandbox`` validate their input (paths, commands, the closed state) and
then call a small set of ``_primitives`` that each provider implements. A provider writes
little code, and every provider behaves the same at the edges.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePosixPath
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from sandbank.errors import (
    ConfigurationError,
    NotSupported,
    SandboxClosed,
    WorkspacePathError,
)
from sandbank.manifest import Manifest

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "WORKSPACE",
    "Capabilities",
    "ExecRequest",
    "ExecResult",
    "FileEntry",
    "OutputCallback",
    "OutputCollector",
    "Provider",
    "Sandbox",
    "SandboxInfo",
    "SandboxStatus",
    "normalize_path",
]

WORKSPACE = "/workspace"
"""Where the workspace root appears inside every sandbox."""

DEFAULT_OUTPUT_LIMIT = 16 * 1024 * 1024
"""Bytes of stdout (and, separately, stderr) kept in an ExecResult; the rest only streams."""

OutputCallback = Callable[[Literal["stdout", "stderr"], bytes], Awaitable[None] | None]
"""Receives every output chunk as it arrives, even beyond the capture limit."""


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do beyond the required interface."""

    pause: bool = False
    """``pause()`` freezes every process (memory kept, no CPU); ``resume()`` thaws them."""
    stop: bool = False
    """``stop()`` ends every process and frees the sandbox's CPU and memory, keeping its
    files; ``resume()`` starts it again (waking without a restore)."""
    native_snapshot: bool = False
    ports: bool = False
    pty: bool = False
    network_policy: bool = False
    resource_limits: bool = False
    host_path: bool = False
    """The workspace is a directory on this host (``Sandbox.host_path``), readable directly."""
    durable_exec: bool = False
    """A command outlives the process that started it, so a durable worker's retry can wait
    for that run instead of starting it again (``sandbank.durable``)."""

    def names(self) -> list[str]:
        """Names of the capabilities this provider declares."""
        return [f.name for f in fields(self) if getattr(self, f.name)]

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a finished command. Output beyond the capture limit sets ``truncated``."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    duration: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")


class SandboxStatus(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    LOST = "lost"


@dataclass(frozen=True)
class FileEntry:
    """One node of a workspace tree, with the stat data incremental snapshots compare."""

    path: str
    """Relative to the workspace root, '/'-separated."""
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    """Permission bits only (e.g. 0o755)."""
    mtime: float
    link_target: str | None = None


@dataclass(frozen=True)
class SandboxInfo:
    """What a provider knows about a sandbox without attaching to it."""

    id: str
    provider: str
    status: SandboxStatus
    created_at: float | None = None
    image: str | None = None
    isolation: str | None = None
    workspace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecRequest:
    """A validated command, as a provider's ``_exec`` receives it."""

    argv: list[str]
    cwd: str
    """Relative to the workspace root ('.' for the root)."""
    env: dict[str, str]
    """The manifest's environment with the call's variables on top."""
    stdin: bytes | None
    timeout: float | None


class OutputCollector:
    """Keeps up to ``limit`` bytes per stream and forwards every chunk to the callback."""

    def __init__(self, limit: int = DEFAULT_OUTPUT_LIMIT, on_output: OutputCallback | None = None):
        self.limit = limit
        self.on_output = on_output
        self.truncated = False
        self._buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.started = time.monotonic()

    async def feed(self, stream: Literal["stdout", "stderr"], data: bytes) -> None:
        if not data:
            return
        buffer = self._buffers[stream]
        room = self.limit - len(buffer)
        if room >= len(data):
            buffer += data
        else:
            if room > 0:
                buffer += data[:room]
            self.truncated = True
        if self.on_output is not None:
            outcome = self.on_output(stream, data)
            if inspect.isawaitable(outcome):
                await outcome

    def result(self, exit_code: int) -> ExecResult:
        return ExecResult(
            exit_code=exit_code,
            stdout=bytes(self._buffers["stdout"]),
            stderr=bytes(self._buffers["stderr"]),
            duration=time.monotonic() - self.started,
            truncated=self.truncated,
        )


def normalize_path(path: str | PurePosixPath) -> str:
    """A workspace-relative path ('.' for the root), checked lexically.

    Accepts relative paths and absolute paths under ``/workspace``; anything that leaves the
    workspace raises ``WorkspacePathError``. Symlinks are the provider's to check.
    """
    text = str(path)
    if not text or "\x00" in text:
        raise WorkspacePathError(text, "is empty or contains a NUL byte")
    pure = PurePosixPath(text)
    if pure.is_absolute():
        try:
            pure = pure.relative_to(WORKSPACE)
        except ValueError:
            raise WorkspacePathError(text, f"is absolute and outside {WORKSPACE}") from None
    parts: list[str] = []
    for part in pure.parts:
        if part == "..":
            if not parts:
                raise WorkspacePathError(text)
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts) or "."


class Sandbox(ABC):
    """An isolated workspace with a command runner. Use it as ``async with``.

    ``aclose()`` releases this handle (the sandbox keeps running and can be attached again);
    ``destroy()`` deletes the sandbox. Both are idempotent.
    """

    output_limit: int = DEFAULT_OUTPUT_LIMIT

    def __init__(self, provider: Provider, sandbox_id: str, manifest: Manifest) -> None:
        self.provider = provider
        self.id = sandbox_id
        self.manifest = manifest
        self._closed = False
        self._close_lock = asyncio.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.provider.name}:{self.id} {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def host_path(self) -> str | None:
        """The workspace directory on this host, for providers with the host_path capability."""
        return None

    # -- commands ---------------------------------------------------------------------------

    async def exec(
        self,
        cmd: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | str | None = None,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Run ``cmd`` (an argv list, or a string for ``/bin/sh -c``) in the workspace.

        Returns even for a non-zero exit; a missing program exits 127. On timeout the
        process is killed and ``ExecTimeout`` carries what it printed.
        """
        self._ensure_open()
        if isinstance(cmd, str):
            if not cmd.strip():
                raise ConfigurationError("command is empty; pass a shell string or an argv list")
            argv = ["/bin/sh", "-c", cmd]
        else:
            argv = list(cmd)
            if not argv or not all(isinstance(a, str) for a in argv):
                raise ConfigurationError("argv must be a non-empty list of strings")
        if any("\x00" in a for a in argv):
            raise ConfigurationError("command contains a NUL byte")
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"timeout must be positive, got {timeout!r}")
        merged = dict(self.manifest.env)
        if env:
            merged.update(Manifest.parse({"env": env}).env)
        request = ExecRequest(
            argv=argv,
            cwd=normalize_path(cwd if cwd is not None else self.manifest.workdir),
            env=merged,
            stdin=stdin.encode() if isinstance(stdin, str) else stdin,
            timeout=timeout,
        )
        return await self._exec(request, OutputCollector(self.output_limit, on_output))

    # -- files ------------------------------------------------------------------------------

    async def read_file(self, path: str) -> bytes:
        self._ensure_open()
        return await self._read_file(self._file_path(path))

    async def write_file(self, path: str, data: bytes | str, mode: int | None = None) -> None:
        """Write a file, creating parent directories; ``mode`` sets permission bits."""
        self._ensure_open()
        if isinstance(data, str):
            data = data.encode()
        if mode is not None and not 0 <= mode <= 0o7777:
            raise ConfigurationError(f"mode {mode:o} is not a permission mode")
        await self._write_file(self._file_path(path), bytes(data), mode)

    async def list_tree(self, path: str = ".") -> list[FileEntry]:
        """Every entry under ``path`` (not ``path`` itself), sorted; symlinks are not followed."""
        self._ensure_open()
        return sorted(await self._list_tree(normalize_path(path)), key=lambda e: e.path)

    async def remove(self, path: str) -> None:
        """Remove a file, link or directory tree."""
        self._ensure_open()
        await self._remove(self._file_path(path))

    async def mkdir(self, path: str) -> None:
        """Create a directory and its parents; an existing directory is fine."""
        self._ensure_open()
        rel = normalize_path(path)
        if rel != ".":
            await self._mkdir(rel)

    async def export_tar(self, paths: Sequence[str] | None = None) -> AsyncIterator[bytes]:
        """Stream a tar of the workspace (or of ``paths``), members relative to the root."""
        self._ensure_open()
        rels = None if paths is None else [normalize_path(p) for p in paths]
        async for chunk in self._export_tar(rels):
            yield chunk

    async def import_tar(self, stream: AsyncIterable[bytes] | bytes) -> None:
        """Extract a tar into the workspace. Members that would leave it are refused."""
        self._ensure_open()
        await self._import_tar(_aiter_bytes(stream))

    # -- lifecycle --------------------------------------------------------------------------

    async def status(self) -> SandboxStatus:
        self._ensure_open()
        return await self._status()

    async def info(self) -> SandboxInfo:
        self._ensure_open()
        return await self.provider._info(self.id)

    async def pause(self) -> None:
        self._ensure_open()
        self.provider.require("pause")
        await self._pause()

    async def stop(self) -> None:
        """End every process in the sandbox; its files stay until ``destroy()``."""
        self._ensure_open()
        self.provider.require("stop")
        await self._stop()

    async def resume(self) -> None:
        """Bring a paused or stopped sandbox back to running (a running one stays)."""
        self._ensure_open()
        caps = self.provider.capabilities
        if not (caps.pause or caps.stop):
            raise NotSupported(self.provider.name, "pause")
        await self._resume()

    async def aclose(self) -> None:
        """Release this handle. Always marks it closed; a second call does nothing."""
        async with self._close_lock:
            if self._closed:
                return
            self._closed = True
            await self._close()

    async def destroy(self) -> None:
        """Delete the sandbox and close this handle."""
        if not self._closed:
            try:
                await self.provider.destroy(self.id)
            finally:
                await self.aclose()

    async def __aenter__(self) -> Self:
        self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- helpers ----------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed:
            raise SandboxClosed(self.id)

    @staticmethod
    def _file_path(path: str) -> str:
        rel = normalize_path(path)
        if rel == ".":
            raise WorkspacePathError(path, "is the workspace root, not a file")
        return rel

    # -- primitives each provider implements -------------------------------------------------

    @abstractmethod
    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult: ...

    @abstractmethod
    async def _read_file(self, path: str) -> bytes: ...

    @abstractmethod
    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None: ...

    @abstractmethod
    async def _list_tree(self, path: str) -> list[FileEntry]: ...

    @abstractmethod
    async def _remove(self, path: str) -> None: ...

    @abstractmethod
    async def _mkdir(self, path: str) -> None: ...

    @abstractmethod
    def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None: ...

    @abstractmethod
    async def _status(self) -> SandboxStatus: ...

    async def _close(self) -> None:
        """Release client resources held by this handle (not the sandbox)."""

    async def _pause(self) -> None:
        raise NotSupported(self.provider.name, "pause")

    async def _stop(self) -> None:
        raise NotSupported(self.provider.name, "stop")

    async def _resume(self) -> None:
        raise NotSupported(self.provider.name, "pause")


class Provider(ABC):
    """Creates, attaches to, lists and destroys sandboxes of one kind."""

    name: ClassVar[str]
    extra: ClassVar[str | None] = None
    """The optional-dependency extra that installs this provider's SDK, if any."""

    def __init__(self, **options: Any) -> None:
        if options:
            raise ConfigurationError(f"provider {self.name!r} takes no options {sorted(options)}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    @property
    def isolation(self) -> str:
        """How sandboxes are isolated from the host, in a few words."""
        return "unknown"

    def require(self, capability: str) -> None:
        """Raise ``NotSupported`` unless this provider declares ``capability``."""
        if not getattr(self.capabilities, capability):
            raise NotSupported(self.name, capability)

    async def check(self) -> None:
        """Raise ``ProviderUnavailable`` if sandboxes cannot be created right now."""

    @abstractmethod
    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> Sandbox:
        """Create a sandbox described by ``manifest`` and return an open handle."""

    @abstractmethod
    async def attach(self, sandbox_id: str) -> Sandbox:
        """A handle on an existing sandbox, e.g. from a process that did not create it."""

    @abstractmethod
    async def list(self) -> list[SandboxInfo]:
        """The sandboxes of this provider that sandbank created and that still exist."""

    @abstractmethod
    async def destroy(self, sandbox_id: str) -> None:
        """Delete a sandbox and everything in it. Raises ``SandboxNotFound`` if it is gone."""

    @abstractmethod
    async def _info(self, sandbox_id: str) -> SandboxInfo: ...

    @asynccontextmanager
    async def sandbox(
        self, manifest: Manifest | dict[str, Any] | None = None
    ) -> AsyncIterator[Sandbox]:
        """A sandbox that lives for the ``async with`` block and is destroyed after it."""
        box = await self.create(manifest)
        try:
            yield box
        finally:
            await asyncio.shield(box.destroy())

    async def aclose(self) -> None:
        """Release client resources (connections). Sandboxes keep running."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _aiter_bytes(stream: AsyncIterable[bytes] | bytes) -> AsyncIterator[bytes]:
    if isinstance(stream, bytes | bytearray | memoryview):
        yield bytes(stream)
        return
    async for chunk in stream:
        if chunk:
            yield bytes(chunk)
