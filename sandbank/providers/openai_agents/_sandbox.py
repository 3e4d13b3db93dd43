"""A sandbank ``Sandbox`` over one OpenAI Agents SDK session.

Files go through the SDK's read, write, persist and hydrate calls, after the path is
resolved inside the sandbox and refused when it leaves the workspace; commands run through
one quoted ``/bin/sh -c`` script that adds what the SDK's exec lacks (cwd, env, stdin, a
timeout that keeps partial output). Output reaches ``on_output`` when the command ends:
the SDK does not stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from sandbank._streams import CHUNK, SyncReader, stream_from_thread
from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    PathNotFound,
    ProviderError,
    SandboxLost,
    WorkspacePathError,
)
from sandbank.providers._tar import TarGuard, member_path
from sandbank.providers.base import (
    ExecRequest,
    ExecResult,
    FileEntry,
    OutputCollector,
    Sandbox,
    SandboxStatus,
)

from . import _scripts as sh
from ._errors import sdk_errors

if TYPE_CHECKING:
    from ._provider import AgentsSdkProvider, Record

__all__ = ["MARKER_ENV", "AgentsSdkSandbox"]

log = logging.getLogger(__name__)

MARKER_ENV = "SANDBANK_OA_SANDBOX"
"""Set to the sandbox id in every command, so its processes can be found at destroy."""

_TIMEOUT_GRACE = 5.0
"""Seconds the SDK's own exec timeout waits beyond ours (the in-sandbox ``timeout``)."""
_PER_SCRIPT = 200
"""Paths checked per script; each script is one exec argument, at most 120 KiB."""
_LINKS_PER_SCRIPT = 50


@dataclass(frozen=True)
class _Stat:
    kind: str
    """'f' (file), 'd' (directory), 'o' (other) or 'm' (missing)."""
    mode: int | None
    size: int | None
    real: str
    """The resolved path inside the sandbox (inside the workspace)."""


class AgentsSdkSandbox(Sandbox):
    """One SDK session seen through the sandbank ``Sandbox`` interface."""

    provider: AgentsSdkProvider

    def __init__(self, provider: AgentsSdkProvider, record: Record, session: Any) -> None:
        root = str(session.state.manifest.root)
        super().__init__(provider, record.id, record.manifest, workspace=root)
        self.session = session
        """The SDK's ``SandboxSession`` (the instrumented wrapper the client returned)."""
        self.root: str = root
        """The workspace root as commands inside the sandbox see it."""

    @property
    def host_path(self) -> str | None:
        return self.root if self.provider.capabilities.host_path else None

    @property
    def _stage(self) -> str:
        return self.provider._stage_dir(self.id)

    def _errors(self, path: str | None = None) -> contextlib.AbstractContextManager[None]:
        return sdk_errors(self.provider.backend_id, self.id, path)

    # -- scripts ----------------------------------------------------------------------------

    async def _sh(self, script: str, *, timeout: float | None = None) -> Any:
        """Run a script from ``_scripts`` through the SDK's exec; the SDK's ExecResult."""
        if len(script.encode("utf-8", "surrogateescape")) > sh.MAX_SCRIPT:
            raise ConfigurationError(
                f"the command with its cwd and environment is over {sh.MAX_SCRIPT // 1024} KiB, "
                f"more than the SDK's exec can pass in one argument; pass data through stdin "
                f"or a file instead"
            )
        with self._errors():
            return await self.session.exec("/bin/sh", "-c", script, shell=False, timeout=timeout)

    def _refused(self, result: Any, path: str) -> None:
        """Raise the error a script reported with its marker and exit code, if any."""
        stderr: bytes = result.stderr or b""
        if result.exit_code not in sh.ERROR_CODES or not stderr.startswith(sh.MARKER):
            return
        message = stderr[len(sh.MARKER) :].decode("utf-8", "replace").strip()
        code = result.exit_code
        if code == sh.ESCAPES:
            raise WorkspacePathError(path, f"resolves outside the workspace ({message})")
        if code == sh.MISSING:
            raise PathNotFound(path, self.id)
        if code == sh.WRONG_TYPE:
            raise ConfigurationError(f"{message}; use another path")
        if code == sh.ROOT_GONE:
            raise SandboxLost(self.id, message)
        raise ProviderError(
            f"{message}; use an image with GNU coreutils (realpath, find) or python3",
            retryable=False,
        )

    async def _checked(self, script: str, path: str) -> bytes:
        """Run a file-operation script; raise on any failure, return its stdout."""
        result = await self._sh(script)
        self._refused(result, path)
        if result.exit_code != 0:
            raise ProviderError(
                f"an operation on {path!r} in sandbox {self.id!r} failed "
                f"(exit {result.exit_code}): {result.stderr.decode('utf-8', 'replace').strip()}"
            )
        out: bytes = result.stdout
        return out

    async def _stat(self, path: str, *, make_parent: bool = False) -> _Stat:
        out = await self._checked(sh.stat_script(self.root, path, make_parent=make_parent), path)
        head, _, real = out.decode("utf-8", "surrogateescape").partition("\n")
        kind, *rest = head.split()
        mode, size = (int(rest[0], 8), int(rest[1])) if len(rest) == 2 else (None, None)
        return _Stat(kind, mode, size, real)

    # -- exec -------------------------------------------------------------------------------

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        staged = None
        if request.stdin is not None:
            staged = f"{self._stage}/stdin-{secrets.token_hex(8)}"
            with self._errors():
                await self.session.write(Path(staged), io.BytesIO(request.stdin))
        script = sh.command_script(
            self.root,
            request.argv,
            cwd=request.cwd,
            env={**request.env, MARKER_ENV: self.id},
            stdin=staged,
            timeout=request.timeout,
        )
        timeout = request.timeout
        started = time.monotonic()
        try:
            result = await self._sh(script, timeout=timeout and timeout + _TIMEOUT_GRACE)
        except ExecTimeout as exc:  # the sandbox has no `timeout`: the SDK's own fired
            raise ExecTimeout(request.argv, timeout or 0.0, output.result(137)) from exc
        self._refused(result, request.cwd)
        await output.feed("stdout", result.stdout or b"")
        await output.feed("stderr", result.stderr or b"")
        code = int(result.exit_code)
        if timeout is not None and code in (124, 137) and time.monotonic() - started >= timeout:
            raise ExecTimeout(request.argv, timeout, output.result(137))
        return output.result(code)

    # -- files ------------------------------------------------------------------------------

    async def _read_file(self, path: str) -> bytes:
        for _ in range(2):
            st = await self._stat(path)
            _require_file(st.kind, path, self.id)
            with self._errors(path):
                stream = await self.session.read(Path(st.real))
                try:
                    data: bytes = await asyncio.to_thread(stream.read)
                finally:
                    stream.close()
            if st.size is None or len(data) == st.size:
                return data
            # Seen with the SDK's docker client under load: its exec output came back short.
            log.warning("%s: got %d of %d bytes of %r; again", self.id, len(data), st.size, path)
        raise ProviderError(
            f"the Agents SDK's {self.provider.backend_id} client returned {len(data)} of the "
            f"{st.size} bytes of {path!r} twice (or the file keeps changing); retry",
            retryable=True,
        )

    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        st = await self._stat(path, make_parent=True)
        if st.kind != "m":
            _require_file(st.kind, path, self.id)
        with self._errors(path):
            await self.session.write(Path(st.real), io.BytesIO(data))
        final = mode if mode is not None else st.mode if st.mode is not None else 0o644
        written = int(await self._checked(sh.chmod_script(st.real, final), path))
        if written != len(data):
            raise ProviderError(
                f"the Agents SDK's {self.provider.backend_id} client wrote {written} of the "
                f"{len(data)} bytes of {path!r}; retry",
                retryable=True,
            )

    async def _list_tree(self, path: str) -> list[FileEntry]:
        out = await self._checked(sh.list_script(self.root, path), path)
        return sh.parse_listing(out, "" if path == "." else path + "/")

    async def _remove(self, path: str) -> None:
        await self._checked(sh.remove_script(self.root, path), path)

    async def _mkdir(self, path: str) -> None:
        await self._checked(sh.mkdir_script(self.root, path), path)

    # -- tar streams ------------------------------------------------------------------------

    async def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        for rel in paths or []:
            if rel != "." and (await self._stat(rel)).kind == "m":
                raise PathNotFound(rel, self.id)
        wanted = None if paths is None or "." in paths else paths
        with self._errors():
            archive = await self.session.persist_workspace()

        def produce(out: BinaryIO) -> None:
            try:
                _copy_members(archive, out, wanted)
            finally:
                archive.close()

        with self._errors():
            async for chunk in stream_from_thread(produce):
                yield chunk

    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        reader = SyncReader(stream, asyncio.get_running_loop())
        with tempfile.TemporaryFile() as spool:
            unchecked, links = await asyncio.to_thread(
                _spool_checked, io.BufferedReader(reader, CHUNK), spool
            )
            parents = sorted(unchecked)
            for batch in _batches(parents):
                await self._checked(sh.parents_script(self.root, batch), ", ".join(batch))
            spool.seek(0)
            with self._errors():
                await self.session.hydrate_workspace(spool)
        # The SDK refuses archives with links that point out of the root (a venv's
        # bin/python -> /usr/bin/python3): links are made here instead, as tar would.
        for made in _batches(links, _LINKS_PER_SCRIPT):
            await self._checked(sh.links_script(self.root, made), made[0][0])

    # -- lifecycle --------------------------------------------------------------------------

    async def _status(self) -> SandboxStatus:
        with self._errors():
            running = await self.session.running()
        return SandboxStatus.RUNNING if running else SandboxStatus.LOST


def _require_file(kind: str, path: str, sandbox_id: str) -> None:
    if kind == "m":
        raise PathNotFound(path, sandbox_id)
    if kind == "d":
        raise ConfigurationError(f"{path!r} is a directory, not a file; use list_tree()")
    if kind != "f":
        raise ConfigurationError(f"{path!r} is not a regular file")


def _rename(member: tarfile.TarInfo, name: str, linkname: str | None = None) -> None:
    """Rename a member; its pax ``path`` would otherwise win over the new name on write."""
    member.name = name
    headers = dict(member.pax_headers)
    headers.pop("path", None)
    if linkname is not None:
        member.linkname = linkname
        headers.pop("linkpath", None)
    member.pax_headers = headers


def _selected(name: str, wanted: list[str] | None) -> bool:
    return wanted is None or any(name == p or name.startswith(p + "/") for p in wanted)


def _copy_members(archive: Any, out: BinaryIO, wanted: list[str] | None) -> None:
    """The SDK's workspace tar, with clean relative names, limited to ``wanted`` paths."""
    with (
        tarfile.open(fileobj=archive, mode="r|*", bufsize=CHUNK) as source,
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as sink,
    ):
        for member in source:
            name = member_path(member.name)
            if name == "." or not _selected(name, wanted):
                continue
            _rename(member, name, member_path(member.linkname) if member.islnk() else None)
            sink.addfile(member, source.extractfile(member) if member.isreg() else None)


T = TypeVar("T")


def _batches(items: list[T], size: int = _PER_SCRIPT) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _spool_checked(source: BinaryIO, spool: BinaryIO) -> tuple[set[str], list[tuple[str, str]]]:
    """Validate every member into ``spool``, except symlinks, returned as (path, target),
    with the parents the archive does not create itself."""
    guard = TarGuard()
    created: set[str] = set()
    unchecked: set[str] = set()
    links: list[tuple[str, str]] = []
    try:
        with (
            tarfile.open(fileobj=source, mode="r|*", bufsize=CHUNK) as archive,
            tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as out,
        ):
            for member in archive:
                path = guard.check(member)
                if path == ".":
                    continue
                parent = path.rpartition("/")[0]
                if parent and parent not in created:
                    unchecked.add(parent)
                if member.isdir():
                    created.add(path)
                if member.issym():
                    links.append((path, member.linkname))
                    continue
                _rename(member, path, member_path(member.linkname) if member.islnk() else None)
                out.addfile(member, archive.extractfile(member) if member.isreg() else None)
    except tarfile.TarError as exc:
        raise ConfigurationError(f"the stream is not a readable tar archive ({exc})") from exc
    return unchecked, links
