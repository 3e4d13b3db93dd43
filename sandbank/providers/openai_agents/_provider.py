"""Any OpenAI Agents SDK sandbox client as a sandbank provider.

A sandbank sandbox is one SDK session, created with an empty SDK manifest and no SDK
snapshot (sandbank's own snapshots move workspaces). Its serialized session state is kept
in a record under ``state_dir``, so any process can attach to it again. Files go through
the SDK's read, write, persist and hydrate calls; paths are resolved inside the sandbox
first and refused when they leave the workspace; commands run through one quoted
``/bin/sh -c`` script that adds what the SDK's exec lacks (cwd, env, stdin, a timeout
that keeps partial output). Output reaches ``on_output`` when the command ends: the SDK
does not stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import logging
import os
import re
import secrets
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, ClassVar, TypeVar

import platformdirs

from sandbank._streams import CHUNK, SyncReader, stream_from_thread
from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    NotSupported,
    PathNotFound,
    ProviderError,
    ProviderUnavailable,
    SandboxLost,
    SandboxNotFound,
    WorkspacePathError,
)
from sandbank.manifest import Manifest
from sandbank.providers._tar import TarGuard, member_path
from sandbank.providers.base import (
    Capabilities,
    ExecRequest,
    ExecResult,
    FileEntry,
    OutputCollector,
    Provider,
    Sandbox,
    SandboxInfo,
    SandboxStatus,
)

from . import _scripts as sh
from ._errors import sdk_errors

__all__ = ["AGENTS_HINT", "AgentsSdkProvider", "AgentsSdkSandbox", "load_sdk_module"]

log = logging.getLogger(__name__)

AGENTS_HINT = "pip install 'sandbank[agents]'"
_ID = re.compile(r"^oa-[0-9a-f]{12}$")
_TIMEOUT_GRACE = 5.0
"""Seconds the SDK's own exec timeout waits beyond ours (the in-sandbox ``timeout``)."""
_PER_SCRIPT = 200
"""Paths checked per script; each script is one exec argument, at most 120 KiB."""
_LINKS_PER_SCRIPT = 50


def load_sdk_module(module: str, *, provider: str, extra: str | None) -> ModuleType:
    """Import an SDK module, or raise ``ProviderUnavailable`` naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in ("agents", "openai", "") or extra is None:
            hint = AGENTS_HINT
        else:
            hint = f"pip install 'openai-agents[{extra}]'"
        raise ProviderUnavailable(
            f"provider {provider!r} needs the Python package {missing or module!r} ({exc}); "
            f"install it with: {hint}",
            retryable=False,
        ) from exc


@dataclass(frozen=True)
class _Record:
    id: str
    created_at: float
    manifest: Manifest
    state: dict[str, Any]
    """The SDK's serialized session state (``client.serialize_session_state``)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "created_at": self.created_at,
                "manifest": json.loads(self.manifest.to_json()),
                "state": self.state,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _Record:
        data = json.loads(text)
        return cls(
            id=data["id"],
            created_at=float(data["created_at"]),
            manifest=Manifest.parse(data.get("manifest") or {}),
            state=dict(data["state"]),
        )


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

    def __init__(self, provider: AgentsSdkProvider, record: _Record, session: Any) -> None:
        super().__init__(provider, record.id, record.manifest)
        self.session = session
        """The SDK's ``SandboxSession`` (the instrumented wrapper the client returned)."""
        self.root: str = str(session.state.manifest.root)
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
            env=request.env,
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
            raise ExecTimeout(request.argv, timeout, output.result(code))
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


class AgentsSdkProvider(Provider):
    """Sandboxes from an OpenAI Agents SDK sandbox client (``BaseSandboxClient``).

    Use a registered subclass (``oa-docker``, ``oa-modal``, ...) or pass any client:
    ``AgentsSdkProvider(client=MyClient(), options=MyClientOptions(...))``. Options:
    ``options`` (the client's options model, or a dict of its fields), ``client_kwargs``
    (for the client's constructor), ``root`` (the SDK workspace root) and ``state_dir``
    (where sandbox records live).
    """

    name = "oa"
    backend_id: str = "custom"
    """The SDK's name for the client (``backend_id``)."""
    client_module: ClassVar[str | None] = None
    client_class: ClassVar[str] = ""
    options_class: ClassVar[str] = ""
    sdk_extra: ClassVar[str | None] = None
    """The openai-agents extra that installs the client's own SDK."""

    def __init__(
        self,
        *,
        client: Any = None,
        options: Any = None,
        client_kwargs: dict[str, Any] | None = None,
        root: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ConfigurationError(
                f"provider {self.name!r} has no options {sorted(unknown)}; it accepts client, "
                f"options, client_kwargs, root and state_dir"
            )
        if client is None and self.client_module is None:
            raise ConfigurationError(
                "AgentsSdkProvider needs client=, an Agents SDK sandbox client; or use a "
                "registered provider such as 'oa-docker'"
            )
        self._sdk = load_sdk_module("agents.sandbox", provider=self.name, extra=None)
        if self.client_module is not None:
            self._module = load_sdk_module(
                self.client_module, provider=self.name, extra=self.sdk_extra
            )
        self._client_obj = client
        if client is not None:
            self.backend_id = str(getattr(client, "backend_id", "custom"))
        self._options = options
        self._client_kwargs = dict(client_kwargs or {})
        self.root = root
        default_state = Path(platformdirs.user_data_dir("sandbank")) / self.name
        self.state_dir = Path(state_dir or default_state).expanduser().absolute()
        self._sessions: dict[str, Any] = {}

    # -- what a subclass adapts -------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    @property
    def isolation(self) -> str:
        return f"the Agents SDK's {self.backend_id} sandbox"

    def _make_client(self) -> Any:
        """The SDK client, built on first use."""
        assert self.client_module is not None
        return getattr(self._module, self.client_class)(**self._client_kwargs)

    def _client_options(self, manifest: Manifest, sandbox_id: str) -> Any:
        """The client's options for the new sandbox ``sandbox_id`` described by ``manifest``."""
        options = self._options
        if isinstance(options, dict) or (options is None and self.options_class):
            cls = getattr(self._module, self.options_class)
            return cls(**(options or {}))
        return options

    async def _exists(self, state: Any) -> bool | None:
        """Whether the backend behind ``state`` still exists; ``None`` if unknown."""
        return None

    async def _before_delete(self, session: Any) -> None:
        """A hook run just before ``client.delete``."""

    # -- client and records -----------------------------------------------------------------

    async def _client(self) -> Any:
        if self._client_obj is None:
            with sdk_errors(self.backend_id):
                self._client_obj = await asyncio.to_thread(self._make_client)
        return self._client_obj

    async def check(self) -> None:
        await self._client()

    def _stage_dir(self, sandbox_id: str) -> str:
        """A private directory outside the workspace for staged stdin."""
        return f"/tmp/.sandbank-{sandbox_id}"

    def _record_path(self, sandbox_id: str) -> Path:
        if not _ID.match(sandbox_id):
            raise SandboxNotFound(self.name, sandbox_id)
        return self.state_dir / f"{sandbox_id}.json"

    def _load(self, sandbox_id: str) -> _Record:
        path = self._record_path(sandbox_id)
        try:
            return _Record.from_json(path.read_text())
        except FileNotFoundError:
            raise SandboxNotFound(self.name, sandbox_id) from None
        except (ValueError, KeyError) as exc:
            raise ProviderError(
                f"the record {path} of sandbox {sandbox_id!r} is damaged ({exc}); "
                f"delete the file to forget the sandbox"
            ) from None

    def _save(self, record: _Record) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._record_path(record.id)
        temp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(record.to_json())
        os.replace(temp, path)

    # -- lifecycle --------------------------------------------------------------------------

    def _validate(self, manifest: Manifest) -> None:
        limits = [k for k, v in manifest.resources.model_dump().items() if v is not None]
        if limits and not self.capabilities.resource_limits:
            raise NotSupported(
                self.name,
                "resource_limits",
                f"the manifest sets resources.{', resources.'.join(limits)}; remove them",
            )
        if manifest.user is not None:
            raise ConfigurationError(
                f"provider {self.name!r} cannot run commands as manifest.user "
                f"{manifest.user!r} (the SDK would need sudo in the sandbox); remove it"
            )

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> AgentsSdkSandbox:
        manifest = Manifest.parse(manifest)
        self._validate(manifest)
        client = await self._client()
        sandbox_id = f"oa-{secrets.token_hex(6)}"
        stage = self._stage_dir(sandbox_id)
        root = {"root": self.root} if self.root else {}
        sdk_manifest = self._sdk.Manifest(
            **root, extra_path_grants=(self._sdk.SandboxPathGrant(path=stage),)
        )
        noop = importlib.import_module("agents.sandbox.snapshot").NoopSnapshotSpec()
        with sdk_errors(self.backend_id, sandbox_id):
            options = self._client_options(manifest, sandbox_id)
            session = await client.create(snapshot=noop, manifest=sdk_manifest, options=options)
        try:
            with sdk_errors(self.backend_id, sandbox_id):
                await session.start()
            record = _Record(
                id=sandbox_id,
                created_at=time.time(),
                manifest=manifest,
                state=client.serialize_session_state(session.state),
            )
            box = AgentsSdkSandbox(self, record, session)
            await box._checked(sh.stage_script(stage), stage)
            if manifest.workdir != ".":
                await box._mkdir(manifest.workdir)
            await asyncio.to_thread(self._save, record)
        except BaseException:
            await asyncio.shield(self._delete_quietly(session, sandbox_id))
            raise
        self._sessions[sandbox_id] = session
        log.info("created %s sandbox %s with workspace %s", self.name, sandbox_id, box.root)
        return box

    async def _delete_quietly(self, session: Any, sandbox_id: str) -> None:
        try:
            await self._delete(session, sandbox_id)
        except Exception as exc:
            log.warning("could not delete a half-created %s sandbox: %s", self.name, exc)

    async def _delete(self, session: Any, sandbox_id: str) -> None:
        client = await self._client()
        try:  # the staging directory is outside the workspace: the SDK would leave it
            stage = self._stage_dir(sandbox_id)
            await session.exec("rm", "-rf", "--", stage, shell=False, timeout=30)
        except Exception as exc:
            log.debug("could not remove %s of sandbox %s: %s", stage, sandbox_id, exc)
        await self._before_delete(session)
        with sdk_errors(self.backend_id):
            await session.shutdown()
            await client.delete(session)

    async def _state(self, record: _Record) -> Any:
        client = await self._client()
        with sdk_errors(self.backend_id, record.id):
            return client.deserialize_session_state(record.state)

    async def _session(self, record: _Record) -> Any:
        """The live session of a sandbox: cached, or resumed from its record and started."""
        session = self._sessions.get(record.id)
        if session is not None:
            return session
        state = await self._state(record)
        if await self._exists(state) is False:
            raise SandboxLost(record.id, f"its {self.backend_id} backend no longer exists")
        client = await self._client()
        with sdk_errors(self.backend_id, record.id):
            session = await client.resume(state)
            await session.start()
        return self._sessions.setdefault(record.id, session)

    async def attach(self, sandbox_id: str) -> AgentsSdkSandbox:
        record = await asyncio.to_thread(self._load, sandbox_id)
        return AgentsSdkSandbox(self, record, await self._session(record))

    async def list(self) -> list[SandboxInfo]:
        if not self.state_dir.is_dir():
            return []
        infos = []
        for path in sorted(self.state_dir.glob("oa-*.json")):
            try:
                infos.append(await self._info(path.stem))
            except SandboxNotFound:
                continue
            except ProviderError as exc:
                log.warning("skipping %s sandbox %s: %s", self.name, path.stem, exc)
        return infos

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        record = await asyncio.to_thread(self._load, sandbox_id)
        try:
            session = await self._session(record)
        except SandboxLost:
            status, workspace = SandboxStatus.LOST, None
        else:
            status = await AgentsSdkSandbox(self, record, session)._status()
            workspace = str(session.state.manifest.root)
        return SandboxInfo(
            id=record.id,
            provider=self.name,
            status=status,
            created_at=record.created_at,
            image=record.state.get("image"),
            isolation=self.isolation,
            workspace=workspace,
        )

    async def destroy(self, sandbox_id: str) -> None:
        record = await asyncio.to_thread(self._load, sandbox_id)
        session = self._sessions.pop(sandbox_id, None)
        if session is None:
            state = await self._state(record)
            if await self._exists(state) is not False:
                client = await self._client()
                with sdk_errors(self.backend_id, sandbox_id):
                    session = await client.resume(state)
        # Drop the record first: a half-deleted sandbox then no longer shows up.
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._record_path(sandbox_id).unlink)
        if session is not None:
            await self._delete(session, sandbox_id)
        log.info("destroyed %s sandbox %s", self.name, sandbox_id)

    async def aclose(self) -> None:
        self._sessions.clear()
