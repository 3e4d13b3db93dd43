"""The one provider interface: Provider, Sandbox, ExecResult, Capabilities.

Public methods on ``Sandbox`` validate their input (paths, commands, the closed state) and
then call a small set of primitives that each provider implements: the methods whose names
start with one underscore (``_exec``, ``_read_file``, ...; ``Provider._info``). They are the
provider author's contract, documented here and in ``docs/providers.md``; callers use the
public methods. A provider writes little code, and every provider behaves the same at the edges.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from sandbank._result import ExecResult
from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    NotSupported,
    SandboxClosed,
    WorkspacePathError,
)
from sandbank.manifest import Manifest
from sandbank.manifest.contents import applying_contents
from sandbank.secrets import Redactor, exec_environment

if TYPE_CHECKING:
    from sandbank.snapshots import SnapshotStore

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
    "option_names",
]

log = logging.getLogger(__name__)

WORKSPACE = "/workspace"
"""Where the workspace root appears to commands unless a sandbox says otherwise
(``Sandbox.workspace``, ``SandboxInfo.workspace``)."""

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
    """``port_url(port)`` reaches a server listening on a port of ``manifest.ports``; without
    it a manifest with ports is refused."""
    pty: bool = False
    network_policy: bool = False
    """``manifest.network`` is enforced: ``False`` leaves a sandbox without outbound network.
    Without it, a manifest with ``network=False`` (the default) is refused."""
    resource_limits: bool = False
    """``manifest.resources`` (cpu, memory, pids) are enforced; without it they are refused."""
    image: bool = False
    """``manifest.image`` selects the sandbox's base system; without it a manifest naming an
    image for this provider is refused."""
    user: bool = False
    """``manifest.user`` runs commands as that user; without it a manifest naming one is refused."""
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


class SandboxStatus(enum.StrEnum):
    """What ``Sandbox.status()`` and ``SandboxInfo.status`` report."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    LOST = "lost"
    """It still has a record but can no longer run (its workspace or container is gone)."""


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
    """The provider's registered name (``Provider.name``)."""
    status: SandboxStatus
    created_at: float | None = None
    """Seconds since the epoch."""
    image: str | None = None
    """The image the sandbox was made from, or ``None`` for a provider without images."""
    isolation: str | None = None
    """How this sandbox is isolated from the host, in a few words (``Provider.isolation``)."""
    workspace: str = WORKSPACE
    """The absolute path of the workspace root as commands in the sandbox see it."""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecRequest:
    """A validated command, as a provider's ``_exec`` receives it."""

    argv: list[str]
    """Non-empty; a shell string arrives as ``["/bin/sh", "-c", string]``."""
    cwd: str
    """Relative to the workspace root ('.' for the root), checked lexically only: the
    provider must refuse one that leaves the workspace through a symlink."""
    env: dict[str, str] = field(repr=False)
    """The manifest's environment, its secrets' values (read just now) and the call's
    variables on top. Give it to this command only (never to labels, state or a command
    line: it holds secrets); the host's own environment must not reach the command."""
    stdin: bytes | None
    """``None``: the command reads end of file at once."""
    timeout: float | None
    """Seconds; on expiry kill the command and everything it started, then raise
    ``ExecTimeout`` with ``output.result(137)``."""


class OutputCollector:
    """Keeps up to ``limit`` bytes per stream and forwards every chunk to the callback."""

    def __init__(self, limit: int = DEFAULT_OUTPUT_LIMIT, on_output: OutputCallback | None = None):
        self.limit = limit
        self.on_output = on_output
        self.truncated = False
        self._buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.started = time.monotonic()

    async def feed(self, stream: Literal["stdout", "stderr"], data: bytes) -> None:
        """Keep ``data`` (up to the limit) and pass it to the callback."""
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
        """The ``ExecResult`` of what was fed so far, timed from this collector's creation."""
        return ExecResult(
            exit_code=exit_code,
            stdout=bytes(self._buffers["stdout"]),
            stderr=bytes(self._buffers["stderr"]),
            duration=time.monotonic() - self.started,
            truncated=self.truncated,
        )


def normalize_path(path: str | PurePosixPath, workspace: str = WORKSPACE) -> str:
    """A workspace-relative path ('.' for the root), checked lexically.

    Accepts relative paths and absolute paths under ``workspace`` (where the root appears
    to commands); anything that leaves the workspace raises ``WorkspacePathError``.
    Symlinks are the provider's to check.
    """
    text = str(path)
    if not text or "\x00" in text:
        raise WorkspacePathError(text, "is empty or contains a NUL byte")
    pure = PurePosixPath(text)
    if pure.is_absolute():
        try:
            pure = pure.relative_to(workspace)
        except ValueError:
            raise WorkspacePathError(text, f"is absolute and outside {workspace}") from None
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

    def __init__(
        self,
        provider: Provider,
        sandbox_id: str,
        manifest: Manifest,
        *,
        workspace: str = WORKSPACE,
    ) -> None:
        if not workspace.startswith("/"):
            raise ConfigurationError(f"workspace {workspace!r} must be an absolute path")
        self.provider = provider
        self.id = sandbox_id
        self.manifest = manifest
        self.workspace = workspace.rstrip("/") or "/"
        """The absolute path of the workspace root as commands see it (``/workspace``)."""
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
        redact: bool = True,
    ) -> ExecResult:
        """Run ``cmd`` (an argv list, or a string for ``/bin/sh -c``) in the workspace.

        Returns even for a non-zero exit; a missing program exits 127. On timeout the
        process is killed and ``ExecTimeout`` carries what it printed. The environment is
        the manifest's ``env``, its ``secrets`` (read now) and ``env`` on top; each secret's
        value in the output (result and ``on_output``) reads ``[secret NAME]`` unless
        ``redact`` is False (for a caller that parses the raw output and redacts itself).
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
        call_env = Manifest.parse({"env": env}).env if env else None
        cwd = self._normalize(cwd if cwd is not None else self.manifest.workdir)
        merged, redactor = exec_environment(self.manifest.env, self.manifest.secrets, call_env)
        request = ExecRequest(
            argv=argv,
            cwd=cwd,
            env=merged,
            stdin=stdin.encode() if isinstance(stdin, str) else stdin,
            timeout=timeout,
        )
        if not (redact and redactor):
            return await self._exec(request, OutputCollector(self.output_limit, on_output))
        return await _redacted_exec(self, request, on_output, redactor)

    async def port_url(self, port: int) -> str:
        """The URL (``http://host:port``) where a server on ``port`` in the sandbox answers.

        Needs the ``ports`` capability and ``port`` in ``manifest.ports``. Ask again after
        ``resume()``: the host side of the port may change.
        """
        self._ensure_open()
        self.provider.require("ports")
        if port not in self.manifest.ports:
            raise ConfigurationError(
                f"port {port!r} is not published: manifest.ports is {self.manifest.ports}; "
                f"add it to manifest.ports when creating the sandbox"
            )
        return await self._port_url(port)

    # -- files ------------------------------------------------------------------------------

    async def read_file(self, path: str) -> bytes:
        """The whole content of a file; ``PathNotFound`` if there is none."""
        self._ensure_open()
        return await self._read_file(self._file_path(path))

    async def write_file(self, path: str, data: bytes | str, mode: int | None = None) -> None:
        """Write a file, creating parent directories; ``mode`` sets permission bits.

        Without ``mode`` a new file gets 0o644 and an existing one keeps its mode.
        """
        self._ensure_open()
        if isinstance(data, str):
            data = data.encode()
        if mode is not None and not 0 <= mode <= 0o7777:
            raise ConfigurationError(f"mode {mode:o} is not a permission mode")
        await self._write_file(self._file_path(path), bytes(data), mode)

    async def list_tree(self, path: str = ".") -> list[FileEntry]:
        """Every entry under the directory ``path`` (not ``path`` itself), sorted.

        Symlinks below ``path`` are listed as symlinks, never followed; ``path`` itself may
        be a symlink to a directory inside the workspace (entries keep ``path`` as prefix).
        """
        self._ensure_open()
        return sorted(await self._list_tree(self._normalize(path)), key=lambda e: e.path)

    async def remove(self, path: str) -> None:
        """Remove a file, link or directory tree."""
        self._ensure_open()
        await self._remove(self._file_path(path))

    async def mkdir(self, path: str) -> None:
        """Create a directory and its parents; an existing directory is fine."""
        self._ensure_open()
        rel = self._normalize(path)
        if rel != ".":
            await self._mkdir(rel)

    async def export_tar(self, paths: Sequence[str] | None = None) -> AsyncIterator[bytes]:
        """Stream a tar of the workspace (or of ``paths``), members relative to the root."""
        self._ensure_open()
        rels = None if paths is None else [self._normalize(p) for p in paths]
        stream = self._export_tar(rels)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            # A consumer that stops early closes this generator: close the provider's too,
            # so its reader (a thread, a socket) stops now rather than at garbage collection.
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def import_tar(self, stream: AsyncIterable[bytes] | bytes) -> None:
        """Extract a tar into the workspace. Members that would leave it are refused."""
        self._ensure_open()
        await self._import_tar(_aiter_bytes(stream))

    # -- lifecycle --------------------------------------------------------------------------

    async def status(self) -> SandboxStatus:
        """RUNNING, PAUSED, STOPPED, or LOST when the sandbox was destroyed under this handle."""
        self._ensure_open()
        return await self._status()

    async def info(self) -> SandboxInfo:
        """What the provider knows about this sandbox (``SandboxNotFound`` once destroyed)."""
        self._ensure_open()
        return await self.provider._info(self.id)

    async def pause(self) -> None:
        """Freeze every process, memory kept (the ``pause`` capability)."""
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

    def _normalize(self, path: str) -> str:
        return normalize_path(path, self.workspace)

    def _file_path(self, path: str) -> str:
        rel = self._normalize(path)
        if rel == ".":
            raise WorkspacePathError(path, "is the workspace root, not a file")
        return rel

    # -- primitives each provider implements -------------------------------------------------
    # The public methods above have already checked the handle is open and normalized every
    # path to a workspace-relative one ('.' for the root) without '..'. Symlinks are not
    # checked: each primitive must refuse, with WorkspacePathError, a path that leaves the
    # workspace through a symlink (the cwd, tar members and hard link targets included).

    @abstractmethod
    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        """Run ``request`` and return ``output.result(exit_code)``.

        Feed every chunk of stdout and stderr to ``output.feed`` as it arrives. A missing
        program exits 127 with its name on stderr. On ``request.timeout`` kill the command
        and its children and raise ``ExecTimeout(request.argv, request.timeout,
        output.result(137))``. A ``request.cwd`` that is missing raises ``PathNotFound``;
        one that leaves the workspace raises ``WorkspacePathError``.
        """

    @abstractmethod
    async def _read_file(self, path: str) -> bytes:
        """The content of the file at ``path`` (following symlinks inside the workspace).

        Missing: ``PathNotFound``. A directory: ``ConfigurationError``.
        """

    @abstractmethod
    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        """Replace (atomically, where possible) or create the file at ``path``, making parents.

        ``mode`` ``None``: 0o644 for a new file, the old mode for an existing one. A
        directory at ``path``, or a file where a parent should be: ``ConfigurationError``.
        """

    @abstractmethod
    async def _list_tree(self, path: str) -> list[FileEntry]:
        """Every entry below the directory ``path``, not following symlinks (any order).

        Paths in the entries are workspace-relative and start with ``path`` as given, even
        when ``path`` is a symlink to a directory inside the workspace. Missing:
        ``PathNotFound``. A file: ``ConfigurationError``.
        """

    @abstractmethod
    async def _remove(self, path: str) -> None:
        """Delete the file, symlink (never its target) or directory tree at ``path``.

        Missing: ``PathNotFound``.
        """

    @abstractmethod
    async def _mkdir(self, path: str) -> None:
        """Create the directory ``path`` and its parents (mode 0o755); existing is fine.

        A file in the way: ``ConfigurationError``. Never called with '.'.
        """

    @abstractmethod
    def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        """Yield an uncompressed tar of the workspace (``None``) or of ``paths`` and all below.

        Members are relative to the root; modes, mtimes and symlinks are kept as they are.
        A missing path: ``PathNotFound``.
        """

    @abstractmethod
    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        """Extract the tar in ``stream`` into the workspace, replacing what it contains.

        Refuse (``WorkspacePathError``) a member that is absolute, climbs out with '..',
        goes through a symlink (in the archive or already in the workspace) or is a hard
        link to something outside the archive; refuse device nodes (``ConfigurationError``).
        ``sandbank.providers.TarGuard`` does the checks that need only the archive.
        """

    @abstractmethod
    async def _status(self) -> SandboxStatus:
        """The current status; LOST (not an error) when the sandbox is gone under this handle."""

    async def _close(self) -> None:
        """Release client resources held by this handle (not the sandbox). Called once."""

    async def _port_url(self, port: int) -> str:
        """The URL that reaches ``port`` (one of ``manifest.ports``) in the sandbox (declare
        the ``ports`` capability)."""
        raise NotSupported(self.provider.name, "ports")

    async def _pause(self) -> None:
        """Freeze every process (declare the ``pause`` capability)."""
        raise NotSupported(self.provider.name, "pause")

    async def _stop(self) -> None:
        """End every process, keep the files (declare the ``stop`` capability)."""
        raise NotSupported(self.provider.name, "stop")

    async def _resume(self) -> None:
        """Bring a paused or stopped sandbox back to RUNNING; a running one stays so."""
        raise NotSupported(self.provider.name, "pause")


class Provider(ABC):
    """Creates, attaches to, lists and destroys sandboxes of one kind."""

    name: ClassVar[str]
    """The provider's name: the same as its entry-point name in ``sandbank.providers``
    (the registry refuses a class whose name differs)."""
    extra: ClassVar[str | None] = None
    """The optional-dependency extra that installs this provider's SDK, if any."""

    def __init__(self, **options: Any) -> None:
        """Options are the keyword arguments of the subclass's ``__init__``; none here."""
        if options:
            accepted = ", ".join(option_names(type(self))) or "none"
            raise ConfigurationError(
                f"provider {self.name!r} has no options {sorted(options)} "
                f"(it accepts: {accepted}); remove them"
            )

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

    def validate_manifest(self, manifest: Manifest | dict[str, Any] | None) -> Manifest:
        """The parsed manifest, or ``NotSupported`` for a field this provider cannot honour.

        Call it first in ``create``. It refuses, from ``capabilities``: resources without
        ``resource_limits``, ``network=False`` (the default) without ``network_policy``, an
        image hint for this provider without ``image``, ports without ``ports``, a user
        without ``user``; and files, dirs or setup outside ``create_sandbox`` (which applies
        them). A generic ``image.name`` is a default for providers with images; the others
        ignore it.
        """
        manifest = Manifest.parse(manifest)
        caps = self.capabilities
        limits = [k for k, v in manifest.resources.model_dump().items() if v is not None]
        if limits and not caps.resource_limits:
            raise NotSupported(
                self.name,
                "resource_limits",
                f"the manifest sets resources.{', resources.'.join(limits)}, which this "
                f"provider does not enforce; remove them or use a provider that does",
            )
        if not manifest.network and not caps.network_policy:
            raise NotSupported(
                self.name,
                "network_policy",
                "the manifest asks for no network (network=False, the default), which this "
                "provider cannot enforce; set network=True to accept a sandbox with network "
                "access, or use a provider that declares network_policy",
            )
        hint = manifest.image.hints.get(self.name)
        if hint is not None and not caps.image:
            raise NotSupported(
                self.name,
                "image",
                f"the manifest's image.hints.{self.name} names image {hint!r}, but this "
                f"provider has no images; remove that hint",
            )
        if manifest.ports and not caps.ports:
            raise NotSupported(
                self.name,
                "ports",
                f"the manifest asks for ports {manifest.ports}, which this provider cannot "
                f"publish; remove manifest.ports or use a provider that declares ports",
            )
        if manifest.image.name is not None and not caps.image:
            log.info("provider %r has no images; ignoring image %r", self.name, manifest.image.name)
        if manifest.user is not None and not caps.user:
            raise NotSupported(
                self.name,
                "user",
                f"the manifest asks to run as user {manifest.user!r}; remove manifest.user",
            )
        if manifest.has_contents and not applying_contents():
            raise ConfigurationError(
                "the manifest has files, dirs or setup, which Provider.create does not apply; "
                "use sandbank.create_sandbox(provider, manifest, store=...) or "
                "provider.sandbox(manifest)"
            )
        return manifest

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
    async def _info(self, sandbox_id: str) -> SandboxInfo:
        """What ``list()`` reports for one sandbox; ``SandboxNotFound`` if it does not exist.

        The primitive behind ``Sandbox.info()``. Set ``workspace`` when commands see the
        root elsewhere than ``/workspace``, ``image`` when the provider has images.
        """

    @asynccontextmanager
    async def sandbox(
        self,
        manifest: Manifest | dict[str, Any] | None = None,
        *,
        store: SnapshotStore | None = None,
        on_output: OutputCallback | None = None,
    ) -> AsyncIterator[Sandbox]:
        """A sandbox that lives for the ``async with`` block and is destroyed after it.

        It is made by ``sandbank.create_sandbox`` (contents, setup cached in ``store``).
        """
        from sandbank.manifest.materialize import create_sandbox

        box = await create_sandbox(self, manifest, store=store, on_output=on_output)
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


async def _redacted_exec(
    box: Sandbox, request: ExecRequest, on_output: OutputCallback | None, redactor: Redactor
) -> ExecResult:
    """``box._exec(request)`` with every secret value in the output redacted."""
    streams = {"stdout": redactor.stream(), "stderr": redactor.stream()}

    async def forward(name: Literal["stdout", "stderr"], data: bytes) -> None:
        if on_output is not None and data:
            outcome = on_output(name, data)
            if inspect.isawaitable(outcome):
                await outcome

    async def redacting(name: Literal["stdout", "stderr"], data: bytes) -> None:
        await forward(name, streams[name].feed(data))

    collector = OutputCollector(box.output_limit, redacting if on_output else None)
    try:
        result = await box._exec(request, collector)
    except ExecTimeout as exc:
        raise ExecTimeout(request.argv, exc.timeout, redactor.redact_result(exc.result)) from None
    finally:
        for name in ("stdout", "stderr"):
            await forward(name, streams[name].flush())
    return redactor.redact_result(result)


async def _aiter_bytes(stream: AsyncIterable[bytes] | bytes) -> AsyncIterator[bytes]:
    if isinstance(stream, bytes | bytearray | memoryview):
        yield bytes(stream)
        return
    async for chunk in stream:
        if chunk:
            yield bytes(chunk)


def option_names(cls: type[Provider]) -> list[str]:
    """The keyword options a provider class accepts, from its ``__init__`` signature."""
    params = inspect.signature(cls.__init__).parameters.values()
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds and p.name != "self"]
