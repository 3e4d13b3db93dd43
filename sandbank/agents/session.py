"""The SDK's ``BaseSandboxSession`` on a sandbank ``Sandbox``, with native file operations.

Every call goes through the public ``Sandbox`` interface (exec, files, tree, tar), so any
provider works, and so does a sandbox whose every call is a durable activity.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any, cast

from agents.sandbox.errors import (
    ExecTimeoutError,
    ExecTransportError,
    InvalidManifestPathError,
    WorkspaceReadNotFoundError,
)
from agents.sandbox.files import EntryKind
from agents.sandbox.files import FileEntry as SdkFileEntry
from agents.sandbox.session import BaseSandboxSession
from agents.sandbox.session.workspace_payloads import coerce_write_payload
from agents.sandbox.types import ExecResult as SdkExecResult
from agents.sandbox.types import Permissions, User

from sandbank.agents._files import (
    member_tar,
    read_member,
    read_target,
    resolve_link,
    stream_file_tar,
)
from sandbank.agents.snapshot import SandbankSnapshot, StoreSnapshots, listing_fingerprint
from sandbank.agents.state import SandbankSessionState
from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    PathNotFound,
    SandbankError,
    SandboxLost,
    WorkspacePathError,
)
from sandbank.manifest import Manifest
from sandbank.providers.base import FileEntry, Provider, Sandbox, SandboxStatus, normalize_path
from sandbank.snapshots import SnapshotNotFound

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "DEFAULT_MAX_READ_BYTES", "SandbankSandboxSession"]

DEFAULT_MAX_READ_BYTES = 64 * 1024 * 1024
"""The largest file a session reads whole (``read``); bigger ones raise ``FileTooLarge``."""
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
"""Bytes of each output stream of a command a session returns (the rest is cut, marked)."""
_INLINE_WRITE = 8 * 1024 * 1024
"""Writes up to this size go through ``write_file``; bigger ones stream as a tar."""
_SPOOL_MEMORY = 8 * 1024 * 1024
_KINDS = {"file": EntryKind.FILE, "dir": EntryKind.DIRECTORY, "symlink": EntryKind.SYMLINK}


class SandbankSandboxSession(BaseSandboxSession):
    """One SDK session on one sandbank sandbox (created at ``start`` when not given)."""

    state: SandbankSessionState

    def __init__(
        self,
        state: SandbankSessionState,
        *,
        provider: Provider | None,
        box: Sandbox | None = None,
        snapshots: StoreSnapshots | None = None,
        max_read_bytes: int = DEFAULT_MAX_READ_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        self.state = state
        self.max_output_bytes = max_output_bytes
        self._provider = provider
        self._box = box
        self._snapshots = snapshots
        self.max_read_bytes = max_read_bytes

    @property
    def sandbox(self) -> Sandbox:
        """The sandbank sandbox under this session."""
        if self._box is None:
            raise ConfigurationError("this session has no sandbox yet; start it first")
        return self._box

    # -- lifecycle --------------------------------------------------------------------------

    async def _ensure_backend_started(self) -> None:
        box = self._box
        if box is not None and not box.closed:
            status = await box.status()
            if status in (SandboxStatus.PAUSED, SandboxStatus.STOPPED):
                await box.resume()
            if status != SandboxStatus.LOST:
                return
            if not self.state.owns_sandbox:
                raise SandboxLost(box.id, "the sandbox handed to this session is gone")
            await box.aclose()  # lost: a new sandbox replaces it, restored from the snapshot
        if self._provider is None:
            raise ConfigurationError("this session has no provider to create a sandbox with")
        self._box = await self._provider.create(Manifest.parse(self.state.sandbox_manifest))
        self.state.provider = self._provider.name
        self.state.sandbox_id = self._box.id
        self.state.owns_sandbox = True
        self._set_start_state_preserved(False)

    async def _shutdown_backend(self) -> None:
        """Release the handle; ``SandbankSandboxClient.delete`` destroys an owned sandbox."""
        if self._box is not None and self.state.owns_sandbox:
            await self._box.aclose()

    async def running(self) -> bool:
        box = self._box
        if box is None or box.closed:
            return False
        try:
            return await box.status() == SandboxStatus.RUNNING
        except SandbankError:
            return False

    # -- commands ---------------------------------------------------------------------------

    async def _exec_internal(
        self, *command: str | Path, timeout: float | None = None
    ) -> SdkExecResult:
        argv = [str(part) for part in command]
        env = await self.state.manifest.environment.resolve()
        try:
            result = await self.sandbox.exec(argv, cwd=".", env=env or None, timeout=timeout)
        except ExecTimeout as exc:
            raise ExecTimeoutError(command=argv, timeout_s=timeout, cause=exc) from exc
        except (SandboxLost, ConnectionError) as exc:
            raise ExecTransportError(command=argv, cause=exc, retryable=True) from exc
        return SdkExecResult(
            stdout=self._capped(result.stdout, result.truncated),
            stderr=self._capped(result.stderr, result.truncated),
            exit_code=result.exit_code,
        )

    def _capped(self, data: bytes, truncated: bool) -> bytes:
        """At most ``max_output_bytes`` of a command's output, with a note where it was cut."""
        if len(data) <= self.max_output_bytes and not truncated:
            return data
        kept = data[: self.max_output_bytes]
        return (
            kept
            + (
                f"\n[sandbank: output cut after {len(kept)} bytes; write it to a file and read "
                f"parts of it (head, tail, grep)]\n"
            ).encode()
        )

    # -- files ------------------------------------------------------------------------------

    def _rel(self, path: Path | str, *, for_write: bool = False) -> str:
        """The workspace-relative path of an SDK path (confined by the SDK, then by us)."""
        sdk_path = self.normalize_path(path, for_write=for_write)
        try:
            return normalize_path(sdk_path.as_posix())
        except WorkspacePathError as exc:
            raise InvalidManifestPathError(rel=str(path), reason="escape_root", cause=exc) from exc

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        if user is not None:
            await self._check_read_with_exec(path, user=user)
        rel = self._rel(path)
        try:
            member = await read_target(self.sandbox, rel, limit=self.max_read_bytes)
        except PathNotFound as exc:
            raise WorkspaceReadNotFoundError(path=Path(path), cause=exc) from exc
        return io.BytesIO(member.data)

    async def _read_bounded(self, path: Path, *, max_bytes: int) -> bytes:
        member = await read_target(self.sandbox, self._rel(path), limit=max_bytes, strict=False)
        return member.data

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        if user is not None:
            await self._check_write_with_exec(path, user=user)
        rel = self._rel(path, for_write=True)
        payload = coerce_write_payload(path=Path(path), data=data)
        size = payload.content_length
        stream = cast(IO[bytes], payload.stream)
        if size is not None and size > _INLINE_WRITE:
            await self.sandbox.import_tar(stream_file_tar(rel, stream, size))
        else:
            await self.sandbox.write_file(rel, stream.read())

    async def _write_new_file(
        self, path: Path, data: io.IOBase, *, user: str | User | None = None
    ) -> None:
        if await self._entry(self._rel(path, for_write=True)) is not None:
            raise FileExistsError(f"{path} already exists")
        await self.write(path, data, user=user)

    async def ls(self, path: Path | str, *, user: str | User | None = None) -> list[SdkFileEntry]:
        base = self.normalize_path(path)
        rel = self._rel(path)
        entries = await self.sandbox.list_tree(rel)
        depth = 0 if rel == "." else rel.count("/") + 1
        return [_sdk_entry(base, e) for e in entries if e.path.count("/") == depth]

    async def mkdir(
        self, path: Path | str, *, parents: bool = False, user: str | User | None = None
    ) -> None:
        if user is not None:
            await self._check_mkdir_with_exec(path, parents=parents, user=user)
        await self.sandbox.mkdir(self._rel(path, for_write=True))

    async def rm(
        self, path: Path | str, *, recursive: bool = False, user: str | User | None = None
    ) -> None:
        if user is not None:
            await self._check_rm_with_exec(path, recursive=recursive, user=user)
        rel = self._rel(path, for_write=True)
        if recursive:
            with contextlib.suppress(PathNotFound):
                await self.sandbox.remove(rel)
            return
        entry = await self._entry(rel)
        if entry is None:
            raise PathNotFound(rel, self.sandbox.id)
        if entry.isdir() and await self.sandbox.list_tree(rel):
            raise ConfigurationError(f"directory {rel!r} is not empty; remove it recursively")
        await self.sandbox.remove(rel)

    async def mv(
        self, source: Path | str, destination: Path | str, *, user: str | User | None = None
    ) -> None:
        """Move a file or symlink, replacing a file at the destination (not a directory)."""
        if user is not None:
            await self._check_write_with_exec(source, user=user)
            await self._check_write_with_exec(destination, user=user)
        src, dst = self._rel(source, for_write=True), self._rel(destination, for_write=True)
        member = await read_member(self.sandbox, src, limit=self.max_read_bytes, strict=True)
        if not (member.info.isreg() or member.info.issym()):
            raise ConfigurationError(f"cannot move {src!r}: only files and symlinks move")
        if src == dst:
            return
        target = await self._entry(dst)
        if target is not None and target.isdir():
            raise IsADirectoryError(f"cannot move {src!r} onto the directory {dst!r}")
        if target is not None:
            await self.sandbox.remove(dst)
        await self.sandbox.import_tar(member_tar(member, dst))
        await self.sandbox.remove(src)

    async def same_file(
        self,
        left: Path | str,
        right: Path | str,
        *,
        follow_symlinks: bool = True,
        user: str | User | None = None,
    ) -> bool:
        """Whether both paths name one entry, symlinks resolved (hard links are not seen)."""
        a, b = self._rel(left), self._rel(right)
        listing = {e.path: e for e in await self.sandbox.list_tree()}
        found = [_canonical(p, listing, follow_symlinks) for p in (a, b)]
        if found[0] is None or found[0] != found[1]:
            return False
        entry = listing.get(found[0])
        return follow_symlinks or entry is None or entry.type != "symlink"

    async def _entry(self, rel: str) -> tarfile.TarInfo | None:
        """The header of the entry at ``rel`` (a final symlink not followed), None if absent."""
        try:
            return (await read_member(self.sandbox, rel, limit=None, strict=False)).info
        except PathNotFound:
            return None

    # -- the workspace as a tar -------------------------------------------------------------

    async def persist_workspace(self) -> io.IOBase:
        """A tar of the workspace spooled to a temporary file (never whole in memory)."""
        skip = {p.as_posix() for p in self._persist_workspace_skip_relpaths()}
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115 (returned)
        async for chunk in self.sandbox.export_tar():
            spool.write(chunk)
        spool.seek(0)
        if not skip:
            return cast(io.IOBase, spool)
        kept = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115 (returned)
        with (
            tarfile.open(fileobj=spool, mode="r|") as src,
            tarfile.open(fileobj=kept, mode="w|", format=tarfile.PAX_FORMAT) as dst,
        ):
            for m in src:
                if not any(m.name == s or m.name.startswith(s + "/") for s in skip):
                    dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        spool.close()
        kept.seek(0)
        return cast(io.IOBase, kept)

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        await self.sandbox.import_tar(_pieces(data))

    # -- snapshots in a sandbank store ------------------------------------------------------

    async def _compute_and_cache_snapshot_fingerprint(self, *, version: str | None = None) -> Any:
        return await listing_fingerprint(self.sandbox, self._workspace_fingerprint_skip_relpaths())

    async def _read_cached_snapshot_fingerprint(self) -> dict[str, str]:
        fingerprint: dict[str, str] = await self._compute_and_cache_snapshot_fingerprint()
        return fingerprint

    async def _delete_cached_snapshot_fingerprint_best_effort(self) -> None:
        return None

    def _store(self) -> StoreSnapshots:
        if self._snapshots is None:
            raise ConfigurationError(
                "this session's workspace lives in a sandbank snapshot store, but its client "
                "has none; create SandbankSandboxClient(provider, store=SnapshotStore...)"
            )
        return self._snapshots

    async def _persist_snapshot(self) -> None:
        snap = self.state.snapshot
        if not isinstance(snap, SandbankSnapshot):
            await super()._persist_snapshot()
            return
        store = self._store()
        fingerprint = await self._compute_and_cache_snapshot_fingerprint()
        skip = self._persist_workspace_skip_relpaths()
        try:
            new_id = await store.snapshot(self.sandbox, parent=snap.snapshot_id, exclude=skip)
        except SnapshotNotFound:  # the parent was deleted: take a full snapshot
            new_id = await store.snapshot(self.sandbox, parent=None, exclude=skip)
        self.state.snapshot = snap.model_copy(update={"snapshot_id": new_id})
        self.state.snapshot_fingerprint = fingerprint["fingerprint"]
        self.state.snapshot_fingerprint_version = fingerprint["version"]

    async def _restore_snapshot_into_workspace_on_resume(self) -> None:
        snap = self.state.snapshot
        if isinstance(snap, SandbankSnapshot) and snap.snapshot_id is not None:
            await self._store().restore(self.sandbox, snap.snapshot_id)
        else:
            await super()._restore_snapshot_into_workspace_on_resume()


def _sdk_entry(base: Path, entry: FileEntry) -> SdkFileEntry:
    kind = _KINDS.get(entry.type, EntryKind.OTHER)
    permissions = Permissions.from_mode(entry.mode)
    permissions.directory = kind == EntryKind.DIRECTORY
    name = entry.path.rsplit("/", 1)[-1]
    return SdkFileEntry(
        path=str(base / name), permissions=permissions, owner="", group="",
        size=entry.size, kind=kind,
    )  # fmt: skip


def _canonical(rel: str, listing: dict[str, FileEntry], follow_leaf: bool) -> str | None:
    """``rel`` with its symlinks resolved (the last one only with ``follow_leaf``)."""
    for _ in range(40):
        parts = [] if rel == "." else rel.split("/")
        current = "."
        for i, part in enumerate(parts):
            current = part if current == "." else f"{current}/{part}"
            entry = listing.get(current)
            if entry is None:
                return None
            if entry.type == "symlink" and (follow_leaf or i < len(parts) - 1):
                target = resolve_link(current, entry.link_target or "")
                rel = normalize_path("/".join([target, *parts[i + 1 :]]))
                break
        else:
            return current
    raise WorkspacePathError(rel, "goes through more than 40 symlinks")


async def _pieces(data: io.IOBase, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    while piece := data.read(size):
        yield bytes(piece)
