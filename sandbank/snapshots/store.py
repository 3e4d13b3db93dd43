"""SnapshotStore: the async API over a content-addressed snapshot store at an fsspec URL."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import platformdirs

from sandbank._streams import SyncReader, stream_from_thread
from sandbank.errors import ConfigurationError, SnapshotError
from sandbank.manifest import Manifest
from sandbank.providers.base import FileEntry, Sandbox
from sandbank.snapshots import _format as fmt
from sandbank.snapshots._backend import Backend
from sandbank.snapshots._format import BlobLoc, Codec, Node
from sandbank.snapshots._ingest import (
    Excluder,
    IngestResult,
    build_trees,
    plan,
    read_host_files,
    read_tar,
    scan_entries,
    scan_host,
)
from sandbank.snapshots._repo import Index, PackWriter, Repo
from sandbank.snapshots._restore import (
    Counts,
    check_available,
    needed_blobs,
    plan_sandbox,
    restore_host,
    tar_members,
    write_tar,
)
from sandbank.snapshots.errors import (
    CorruptObject,
    MissingObject,
    SnapshotNotFound,
    StoreFormatError,
    StoreNotFound,
    TargetNotEmpty,
    WrongKey,
)

__all__ = [
    "GcReport",
    "ProgressCallback",
    "RestoreStats",
    "SnapshotDetails",
    "SnapshotDiff",
    "SnapshotFile",
    "SnapshotRecord",
    "SnapshotStats",
    "SnapshotStore",
    "VerifyProblem",
    "VerifyReport",
]

log = logging.getLogger("sandbank.snapshots")

ProgressCallback = Callable[[str, int, "int | None"], None]
"""``progress(phase, done, total)``: bytes done of total (None when unknown)."""

_WORKERS = max(4, min(8, 2 * (os.cpu_count() or 2)))
"""Threads reading, hashing and compressing (I/O waits and GIL-free zstd/blake3 overlap)."""
_TAR_WORKERS = max(2, min(4, os.cpu_count() or 2))
"""Threads decompressing and checking chunks for a tar written to a sandbox."""


@dataclass(frozen=True)
class SnapshotStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    logical_bytes: int = 0
    """Sum of file sizes."""
    stored_bytes: int = 0
    """Stored (compressed, deduplicated) bytes of every blob the snapshot references."""
    new_bytes: int = 0
    """Bytes this snapshot wrote to the store (packs, indexes, record)."""
    objects_written: int = 0
    read_bytes: int = 0
    """File bytes read from the source (the rest was reused from the parent)."""
    seconds: float = 0.0


@dataclass(frozen=True)
class SnapshotRecord:
    """A committed snapshot: ``snapshots/<id>.json`` in the store."""

    id: str
    parent: str | None
    created_at: float
    source: dict[str, Any]
    manifest: dict[str, Any] | None
    stats: SnapshotStats
    tags: tuple[str, ...] = ()
    tree: str = ""
    """Hex id of the root directory object."""
    excludes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = list(self.tags)
        data["excludes"] = list(self.excludes)
        data["format_version"] = fmt.FORMAT_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotRecord:
        known = {f for f in SnapshotStats.__dataclass_fields__}
        return cls(
            id=str(data["id"]),
            parent=data.get("parent"),
            created_at=float(data["created_at"]),
            source=dict(data.get("source") or {}),
            manifest=data.get("manifest"),
            stats=SnapshotStats(
                **{k: v for k, v in (data.get("stats") or {}).items() if k in known}
            ),
            tags=tuple(data.get("tags") or ()),
            tree=str(data["tree"]),
            excludes=tuple(data.get("excludes") or ()),
        )


SnapshotFile = FileEntry
"""A file of a snapshot: the same stat data ``Sandbox.list_tree`` gives."""


@dataclass(frozen=True)
class SnapshotDetails:
    record: SnapshotRecord
    files: list[SnapshotFile]
    logical_bytes: int
    stored_bytes: int
    new_bytes: int


@dataclass(frozen=True)
class SnapshotDiff:
    a: str
    b: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    removed: int = 0
    """Entries of a non-empty target removed by ``if_not_empty="replace"``."""
    seconds: float = 0.0
    files_written: int = 0
    """Files actually written (or sent in the tar); ``files`` counts the whole snapshot."""
    bytes_written: int = 0
    """File bytes actually transferred into the target; ``bytes`` is the snapshot's total."""
    unchanged: int = 0
    """Files and symlinks already equal in the target (type, size, mode, mtime, link), left as
    they were by ``if_not_empty="replace"``."""


@dataclass(frozen=True)
class VerifyProblem:
    object: str
    """Store object: ``packs/<id>``, ``index/<id>``, ``snapshots/<id>.json`` or ``blob <id>``."""
    detail: str
    snapshots: list[str]
    """Ids of the snapshots this problem damages."""


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    snapshots: int
    packs: int
    blobs: int
    bytes: int
    problems: list[VerifyProblem]
    seconds: float


@dataclass(frozen=True)
class GcReport:
    snapshots: int
    live_blobs: int
    packs_deleted: int
    bytes_freed: int
    packs_kept: int
    dead_bytes_kept: int
    """Unreferenced blob bytes still inside live packs (a repack would free them)."""
    too_young: int
    """Unreferenced packs kept because they are younger than the grace period."""
    seconds: float


class _Reporter:
    """Counts bytes from worker threads and calls ``progress`` on the event loop, throttled."""

    def __init__(
        self,
        progress: ProgressCallback | None,
        loop: asyncio.AbstractEventLoop,
        phase: str,
        total: int | None,
    ) -> None:
        self.progress, self.loop, self.phase, self.total = progress, loop, phase, total
        self.done = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        if self.progress is None:
            return
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last < 0.05:
                return
            self._last = now
            # scheduled under the lock, so that reports from threads arrive in order
            self.loop.call_soon_threadsafe(self._emit, self.done)

    def _emit(self, done: int) -> None:
        if self.progress is not None:
            self.progress(self.phase, done, self.total)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(
                self.phase, self.total if self.total is not None else self.done, self.total
            )


def _abspath(path: str) -> str:
    return os.path.abspath(path)


def _default_cache(url: str, store_id: str) -> Path:
    key = fmt.blake3.blake3(f"{url}\n{store_id}".encode()).hexdigest()[:24]
    return Path(platformdirs.user_cache_dir("sandbank")) / "snapshot-stores" / key


class SnapshotStore:
    """Content-addressed, incremental workspace snapshots at an fsspec URL. See FORMAT.md."""

    def __init__(self, repo: Repo, url: str) -> None:
        self._repo = repo
        self.url = url

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str | os.PathLike[str],
        *,
        storage_options: dict[str, Any] | None = None,
        encryption_key: bytes | str | None = None,
        create: bool = True,
        cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
    ) -> SnapshotStore:
        """Open (or create) the store at ``url``: file://, memory://, s3://, gs://, az://, a path.

        ``encryption_key`` (or env SANDBANK_STORE_KEY / SANDBANK_STORE_KEY_FILE) encrypts a new
        store and opens an encrypted one. ``cache_dir`` holds host-side index and tree caches
        (default: the user cache dir; False disables them).
        """
        text = os.fspath(url)
        if "://" not in text and "::" not in text:
            text = _abspath(text)
        return await asyncio.to_thread(
            cls._open_sync, text, storage_options, encryption_key, create, cache_dir
        )

    @classmethod
    def _open_sync(
        cls,
        url: str,
        storage_options: dict[str, Any] | None,
        encryption_key: bytes | str | None,
        create: bool,
        cache_dir: str | os.PathLike[str] | Literal[False] | None,
    ) -> SnapshotStore:
        backend = Backend(url, storage_options)
        explicit = encryption_key.encode() if isinstance(encryption_key, str) else encryption_key
        secret = explicit if explicit is not None else fmt.key_from_environment()
        try:
            raw = backend.get("config.json")
        except MissingObject:
            raw = None
        if raw is None:
            backend.check_bucket()
            exists = backend.root_exists()
            if not create:
                raise StoreNotFound(
                    url, "missing config.json" if exists else "the location does not exist"
                )
            if exists and backend.root_entries():
                raise StoreFormatError(
                    f"{url!r} is not empty and holds no snapshot store (no config.json); "
                    f"create the store in an empty location"
                )
            config: dict[str, Any] = {
                "format": fmt.FORMAT_NAME,
                "version": fmt.FORMAT_VERSION,
                "id": uuid.uuid4().hex,
                "created_at": time.time(),
                "hash": "blake3",
                "chunking": {
                    "algorithm": "fastcdc-2020",
                    "small_file": fmt.SMALL_FILE,
                    "min": fmt.CDC_MIN,
                    "avg": fmt.CDC_AVG,
                    "max": fmt.CDC_MAX,
                },
                "compression": {"algorithm": "zstd", "level": fmt.ZSTD_LEVEL},
                "pack_target": fmt.PACK_TARGET,
                "encryption": None,
            }
            if secret is not None:
                new_enc = fmt.new_encryption_config()
                new_enc["key_check"] = fmt.keys_for(new_enc, secret).check
                config["encryption"] = new_enc
            backend.makedirs()
            backend.put("config.json", json.dumps(config, indent=1, sort_keys=True).encode())
            raw = backend.get("config.json")  # a concurrent creator may have won: use theirs
            log.info("created snapshot store %s", url)
        try:
            loaded = json.loads(raw)
            if not isinstance(loaded, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise StoreFormatError(
                f"{url}/config.json is not valid JSON ({exc}); this is not a snapshot store"
            ) from None
        config = loaded
        if config.get("format") != fmt.FORMAT_NAME:
            raise StoreFormatError(f"{url!r} is not a sandbank snapshot store (config.json format)")
        if config.get("version") != fmt.FORMAT_VERSION:
            raise StoreFormatError(
                f"store {url!r} uses format version {config.get('version')!r}; this sandbank reads "
                f"version {fmt.FORMAT_VERSION}: upgrade sandbank to open it"
            )
        keys = None
        enc: dict[str, Any] | None = config.get("encryption")
        if enc:
            if secret is None:
                raise WrongKey(
                    f"store {url!r} is encrypted; pass encryption_key=..., or set "
                    f"{fmt.ENV_KEY} or {fmt.ENV_KEY_FILE}"
                )
            keys = fmt.keys_for(enc, secret)
            if keys.check != enc.get("key_check"):
                raise WrongKey(
                    f"the encryption key does not open store {url!r}; "
                    f"use the key it was created with"
                )
        elif explicit is not None:
            raise WrongKey(
                f"store {url!r} is not encrypted but an encryption_key was given; drop the key "
                f"(encryption is chosen when a store is created)"
            )
        if cache_dir is False:
            cache = None
        elif cache_dir is None:
            cache = _default_cache(url, str(config.get("id", "")))
        else:
            cache = Path(cache_dir) / _default_cache(url, str(config.get("id", ""))).name
        return cls(Repo(backend, Codec(keys), config, cache), url)

    @property
    def encrypted(self) -> bool:
        return self._repo.codec.encrypted

    async def aclose(self) -> None:
        self._repo.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- records ----------------------------------------------------------------------------

    def _encode_record(self, rec: SnapshotRecord) -> bytes:
        data = json.dumps(rec.to_dict(), indent=1, sort_keys=True).encode()
        if self._repo.codec.encrypted:
            return self._repo.codec.seal_meta(data, f"snapshots/{rec.id}.json")
        return data

    def _decode_record(self, snapshot_id: str, data: bytes) -> SnapshotRecord:
        name = f"snapshots/{snapshot_id}.json"
        if self._repo.codec.encrypted:
            data = self._repo.codec.open_meta(data, name)
        try:
            rec = SnapshotRecord.from_dict(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObject(name, f"is not a valid snapshot record ({exc})") from None
        if rec.id != snapshot_id:
            raise CorruptObject(name, f"holds the record of another snapshot ({rec.id})")
        return rec

    def _records_sync(self) -> tuple[list[SnapshotRecord], dict[str, SnapshotError]]:
        names = [n[:-5] for n in self._repo.backend.list("snapshots") if n.endswith(".json")]
        got = self._repo.backend.get_many([f"snapshots/{n}.json" for n in names])
        records: list[SnapshotRecord] = []
        bad: dict[str, SnapshotError] = {}
        for n in names:
            value = got[f"snapshots/{n}.json"]
            if isinstance(value, MissingObject):
                continue  # deleted meanwhile
            if isinstance(value, Exception):
                raise value
            try:
                records.append(self._decode_record(n, value))
            except CorruptObject as exc:
                bad[n] = exc
        records.sort(key=lambda r: r.created_at, reverse=True)
        return records, bad

    async def list(self) -> list[SnapshotRecord]:
        """Every snapshot, newest first (unreadable records are logged and left out)."""
        records, bad = await asyncio.to_thread(self._records_sync)
        for n, exc in bad.items():
            log.warning("skipping snapshot %s: %s", n, exc)
        return records

    def _get_sync(self, snapshot_id: str) -> SnapshotRecord:
        if not snapshot_id or "/" in snapshot_id or snapshot_id.startswith("."):
            raise SnapshotNotFound(snapshot_id, "not a snapshot id")
        try:
            return self._decode_record(
                snapshot_id, self._repo.backend.get(f"snapshots/{snapshot_id}.json")
            )
        except MissingObject:
            pass
        names = [n[:-5] for n in self._repo.backend.list("snapshots") if n.endswith(".json")]
        matches = [n for n in names if n.startswith(snapshot_id)] if len(snapshot_id) >= 4 else []
        if len(matches) > 1:
            raise SnapshotNotFound(snapshot_id, f"the prefix is ambiguous ({len(matches)} matches)")
        if not matches:
            raise SnapshotNotFound(snapshot_id)
        return self._decode_record(
            matches[0], self._repo.backend.get(f"snapshots/{matches[0]}.json")
        )

    async def get(self, snapshot_id: str) -> SnapshotRecord:
        """One snapshot record, by id or unique id prefix (4+ characters)."""
        return await asyncio.to_thread(self._get_sync, snapshot_id)

    async def delete(self, snapshot_id: str) -> None:
        """Remove a snapshot record; its data is reclaimed by a later ``gc``."""
        rec = await self.get(snapshot_id)
        await asyncio.to_thread(self._repo.backend.delete, f"snapshots/{rec.id}.json")

    async def tag(self, snapshot_id: str, *tags: str) -> SnapshotRecord:
        """Add tags to a snapshot (rewrites its record)."""
        rec = await self.get(snapshot_id)
        merged = tuple(dict.fromkeys([*rec.tags, *tags]))
        new = SnapshotRecord(**{**rec.__dict__, "tags": merged})
        await asyncio.to_thread(
            self._repo.backend.put, f"snapshots/{rec.id}.json", self._encode_record(new)
        )
        return new

    # -- snapshot ---------------------------------------------------------------------------

    async def snapshot(
        self,
        source: Sandbox | str | os.PathLike[str],
        *,
        parent: str | None = None,
        exclude: Sequence[str] = (),
        tags: Sequence[str] = (),
        manifest: Manifest | dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> SnapshotRecord:
        """Snapshot a sandbox or host directory; with ``parent``, read only what changed."""
        started = time.monotonic()
        if isinstance(exclude, str):
            exclude = [exclude]
        excluder = Excluder(exclude)
        parent_rec = await self.get(parent) if parent else None
        host, src = self._source(source)
        manifest_data = (
            json.loads(manifest.to_json()) if isinstance(manifest, Manifest) else manifest
        )
        loop = asyncio.get_running_loop()
        repo = self._repo
        for _attempt in range(3):
            await asyncio.to_thread(repo.refresh_index)
            writer = PackWriter(repo)
            try:
                result = await self._ingest(
                    source, host, parent_rec, excluder, writer, progress, loop
                )
                await asyncio.to_thread(writer.finish)
            except BaseException:
                await asyncio.to_thread(writer.abort)
                raise
            vanished = await asyncio.to_thread(self._vanished, result.referenced, writer)
            if not vanished:
                break
            log.warning(
                "packs %s were removed (gc?) while this snapshot reused them; uploading again",
                sorted(vanished),
            )
            writer.publish()
            with repo._index_lock:
                for pack in vanished:
                    repo.index.drop_pack(pack)
        else:
            raise SnapshotError(
                "packs this snapshot needs keep disappearing (is gc running with "
                "grace_seconds=0?); retry when gc is done"
            )
        stored = 0
        for blob_id in result.referenced:
            loc: BlobLoc | None = writer.new.get(blob_id) or repo.index.blobs.get(blob_id)
            stored += loc.length if loc else 0
        stats = SnapshotStats(
            files=result.files,
            dirs=result.dirs,
            symlinks=result.symlinks,
            logical_bytes=result.logical_bytes,
            stored_bytes=stored,
            new_bytes=writer.bytes,
            objects_written=writer.objects + 1,
            read_bytes=result.read_bytes,
            seconds=0.0,
        )
        rec = SnapshotRecord(
            id=fmt.new_snapshot_id(),
            parent=parent_rec.id if parent_rec else None,
            created_at=time.time(),
            source=src,
            manifest=manifest_data,
            stats=stats,
            tags=tuple(tags),
            tree=result.tree.hex(),
            excludes=tuple(exclude),
        )
        size = len(self._encode_record(rec))
        rec = SnapshotRecord(
            **{
                **rec.__dict__,
                "stats": SnapshotStats(
                    **{
                        **stats.__dict__,
                        "new_bytes": writer.bytes + size,
                        "seconds": round(time.monotonic() - started, 4),
                    }
                ),
            }
        )
        await asyncio.to_thread(
            repo.backend.put, f"snapshots/{rec.id}.json", self._encode_record(rec)
        )
        writer.publish()
        if result.bundle_complete and (parent_rec is None or parent_rec.tree != rec.tree):
            await asyncio.to_thread(repo.write_bundle, result.tree, result.trees)
        log.info(
            "snapshot %s: %d files, %d bytes read, %d bytes written in %d objects, %.2fs",
            rec.id,
            stats.files,
            stats.read_bytes,
            rec.stats.new_bytes,
            stats.objects_written,
            rec.stats.seconds,
        )
        return rec

    def _source(
        self, source: Sandbox | str | os.PathLike[str]
    ) -> tuple[str | None, dict[str, Any]]:
        if isinstance(source, Sandbox):
            host = source.host_path if source.provider.capabilities.host_path else None
            return host, {
                "kind": "sandbox",
                "provider": source.provider.name,
                "sandbox_id": source.id,
            }
        if isinstance(source, str | os.PathLike):
            path = os.path.abspath(os.fspath(source))
            if not os.path.isdir(path):
                raise ConfigurationError(
                    f"snapshot source {path!r} is not a directory; "
                    f"pass a workspace directory or a Sandbox"
                )
            return path, {"kind": "host", "path": path, "host": socket.gethostname()}
        raise ConfigurationError(
            f"cannot snapshot {source!r}: pass a Sandbox or a host directory path"
        )

    async def _ingest(
        self,
        source: Sandbox | str | os.PathLike[str],
        host: str | None,
        parent: SnapshotRecord | None,
        excluder: Excluder,
        writer: PackWriter,
        progress: ProgressCallback | None,
        loop: asyncio.AbstractEventLoop,
    ) -> IngestResult:
        repo = self._repo
        parent_tree = bytes.fromhex(parent.tree) if parent else None
        if parent_tree is not None:
            try:
                await asyncio.to_thread(repo.load_trees, [parent_tree])
            except (MissingObject, CorruptObject) as exc:
                log.warning(
                    "cannot read parent snapshot %s (%s); taking a full snapshot",
                    parent and parent.id,
                    exc,
                )
                parent_tree = None
        if host is not None:
            top = await asyncio.to_thread(scan_host, host, excluder)
        else:
            assert isinstance(source, Sandbox)
            top = scan_entries(await source.list_tree(), excluder)
        todo = await asyncio.to_thread(plan, repo, top, parent_tree)
        total = sum(n.size for n in todo)
        reporter = _Reporter(progress, loop, "snapshot", total)
        if todo:
            if host is not None:
                await asyncio.to_thread(read_host_files, host, todo, writer, reporter, _WORKERS)
            else:
                assert isinstance(source, Sandbox)
                everything = parent_tree is None
                paths = None if everything else [os.fsdecode(n.path) for n in todo]
                stream = source.export_tar(paths)
                reader = SyncReader(stream.__aiter__(), loop)
                try:
                    await asyncio.to_thread(read_tar, reader, todo, writer, reporter, _WORKERS)
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]
        reporter.finish()
        result = IngestResult(tree=b"", read_bytes=total)
        result.tree = await asyncio.to_thread(build_trees, top, writer, result)
        return result

    def _vanished(self, referenced: set[bytes], writer: PackWriter) -> set[str]:
        """Packs this snapshot reuses that are gone (or going: their index was deleted)."""
        blobs = self._repo.index.blobs
        reused = {blobs[b].pack for b in referenced if b not in writer.new and b in blobs}
        if not reused:
            return set()
        present = set(self._repo.backend.list("index"))
        return reused - present

    # -- restore ----------------------------------------------------------------------------

    async def restore(
        self,
        snapshot_id: str,
        target: Sandbox | str | os.PathLike[str],
        *,
        if_not_empty: Literal["fail", "replace"] = "fail",
        progress: ProgressCallback | None = None,
        base: str | None = None,
    ) -> RestoreStats:
        """Restore a snapshot into a sandbox or host directory.

        A non-empty target raises ``TargetNotEmpty`` unless ``if_not_empty="replace"``, which
        makes the target exactly the snapshot (removing everything else except what the
        snapshot's ``exclude`` patterns match: those paths were left out, not deleted, so a
        rebuilt ``node_modules/`` stays) and transfers only what differs: files and symlinks
        whose type, size, mode, mtime and link target already match are left alone, so
        restoring B onto a target holding A moves about the delta.
        ``RestoreStats.files_written``/``bytes_written`` tell what was transferred.

        ``base`` (with ``if_not_empty="replace"``) is a snapshot the caller asserts the target
        holds exactly right now (say, because it restored it there and nothing wrote to the
        target since). The delta is then computed from the two snapshots' trees instead of
        from the target: a sandbox is not listed at all, and in a host directory only the
        directories whose trees differ are read. Only changed and added entries are
        transferred and deleted ones removed. The assertion is trusted: if the target
        actually differs from ``base`` the result can differ from the snapshot, and that is
        caught only by the caller's own verification (compare digests afterwards).
        """
        if if_not_empty not in ("fail", "replace"):
            raise ConfigurationError(
                f'if_not_empty must be "fail" or "replace", not {if_not_empty!r}'
            )
        started = time.monotonic()
        rec = await self.get(snapshot_id)
        repo = self._repo
        await asyncio.to_thread(repo.refresh_index)
        tree = bytes.fromhex(rec.tree)
        base_tree: bytes | None = None
        if base is not None:
            if if_not_empty != "replace":
                raise ConfigurationError('restore(base=...) needs if_not_empty="replace"')
            base_tree = bytes.fromhex((await self.get(base)).tree)
        loop = asyncio.get_running_loop()
        reporter = _Reporter(progress, loop, "restore", rec.stats.logical_bytes)
        replace = if_not_empty == "replace"
        keep = Excluder(rec.excludes)
        if isinstance(target, Sandbox):
            host = target.host_path if target.provider.capabilities.host_path else None
        elif isinstance(target, str | os.PathLike):
            host = _abspath(os.fspath(target))
        else:
            raise ConfigurationError(
                f"cannot restore into {target!r}: pass a Sandbox or a host directory path"
            )
        if host is not None:
            counts = await asyncio.to_thread(
                restore_host, repo, tree, host, replace, reporter, _WORKERS, base_tree, keep
            )
        else:
            assert isinstance(target, Sandbox)
            counts = await self._restore_sandbox(target, tree, replace, reporter, base_tree, keep)
        reporter.finish()
        return RestoreStats(
            files=counts.files,
            dirs=counts.dirs,
            symlinks=counts.symlinks,
            bytes=counts.bytes,
            removed=counts.removed,
            files_written=counts.files_written,
            bytes_written=counts.bytes_written,
            unchanged=counts.unchanged,
            seconds=round(time.monotonic() - started, 4),
        )

    async def _restore_sandbox(
        self,
        target: Sandbox,
        tree: bytes,
        replace: bool,
        reporter: _Reporter,
        base_tree: bytes | None = None,
        keep: Excluder | None = None,
    ) -> Counts:
        """The generic path: import a tar of what differs (all of it into an empty sandbox).

        With ``base_tree`` the target is not listed: its listing is taken to be that tree's.
        Target entries ``keep`` matches are left alone.
        """
        repo = self._repo
        if base_tree is not None:
            existing = await asyncio.to_thread(_tree_listing, repo, base_tree)
        else:
            existing = await target.list_tree()
        if existing and not replace:
            raise TargetNotEmpty(f"sandbox {target.provider.name}:{target.id}")
        entries = await asyncio.to_thread(repo.walk, tree)
        check_available(repo, needed_blobs(entries))
        plan = plan_sandbox(entries, keep.kept(existing) if keep else existing)
        log.debug("restore plan: remove %s, import %s", plan.remove, [p for p, _ in plan.items])
        reporter.total = plan.write_bytes
        if plan.remove:
            limit = asyncio.Semaphore(8)

            async def remove(path: str) -> None:
                async with limit:
                    await target.remove(path)

            await asyncio.gather(*(remove(p) for p in plan.remove))
        if plan.items:
            await self._import_items(target, tree, plan.items, reporter, empty=not existing)
        log.info(
            "restored into %s:%s: %d files written (%d bytes), %d unchanged, %d removed",
            target.provider.name,
            target.id,
            plan.counts.files_written,
            plan.counts.bytes_written,
            plan.counts.unchanged,
            plan.counts.removed,
        )
        return plan.counts

    async def _import_items(
        self,
        target: Sandbox,
        tree: bytes,
        items: Sequence[tuple[bytes, Node]],
        reporter: _Reporter,
        empty: bool,
    ) -> None:
        """Send ``items`` as one tar: streamed straight in where the provider allows it."""
        repo = self._repo

        def produce(fh: Any) -> None:
            write_tar(fh, repo, tree, reporter, items, workers=_TAR_WORKERS)

        planned = getattr(target, "_import_planned_tar", None)
        if planned is None:
            await target.import_tar(stream_from_thread(produce))
            return
        # The provider checks every member header (tar_members) before the first byte and
        # then extracts as the bytes arrive, so a failure part way (a corrupt chunk, a lost
        # store) leaves what was sent so far: a target that was empty is emptied again.
        try:
            await planned(tar_members(items), produce)
        except BaseException:
            if empty:
                tops = {path.partition(b"/")[0] for path, _ in items}
                for name in sorted(tops):
                    with contextlib.suppress(Exception):
                        await target.remove(os.fsdecode(name))
            raise

    # -- inspection -------------------------------------------------------------------------

    async def listing(self, snapshot_id: str) -> builtins.list[FileEntry]:
        """A snapshot's entries as ``Sandbox.list_tree`` would list them once restored
        (paths, types, sizes, permission bits, mtimes, link targets); no file data is read."""
        rec = await self.get(snapshot_id)

        def run() -> builtins.list[FileEntry]:
            self._repo.refresh_index()
            return _tree_listing(self._repo, bytes.fromhex(rec.tree))

        return await asyncio.to_thread(run)

    async def show(self, snapshot_id: str) -> SnapshotDetails:
        """A snapshot's record, its files, and its logical, stored and new bytes."""
        rec = await self.get(snapshot_id)

        def run() -> SnapshotDetails:
            repo = self._repo
            repo.refresh_index()
            tree = bytes.fromhex(rec.tree)
            files = []
            logical = 0
            for path, n in repo.walk(tree):
                target = os.fsdecode(n.target) if n.target is not None else None
                files.append(
                    SnapshotFile(
                        os.fsdecode(path),
                        n.type,  # type: ignore[arg-type]
                        n.size,
                        n.mode,
                        n.mtime_ns / 1e9,
                        target,
                    )
                )
                logical += n.size
            stored = sum(
                repo.index.blobs[b].length for b in repo.reachable(tree) if b in repo.index.blobs
            )
            files.sort(key=lambda f: f.path)
            return SnapshotDetails(rec, files, logical, stored, rec.stats.new_bytes)

        return await asyncio.to_thread(run)

    async def diff(self, a: str, b: str) -> SnapshotDiff:
        """Paths added, removed and changed (content, type, mode or link) from ``a`` to ``b``."""
        ra, rb = await self.get(a), await self.get(b)

        def run() -> SnapshotDiff:
            repo = self._repo
            repo.refresh_index()
            out = SnapshotDiff(ra.id, rb.id)

            def all_paths(prefix: bytes, node: Node) -> list[str]:
                paths = [os.fsdecode(prefix + node.name)]
                if node.type == "dir" and node.tree:
                    paths += [
                        os.fsdecode(prefix + node.name + b"/" + p) for p, _ in repo.walk(node.tree)
                    ]
                return paths

            stack = [(b"", bytes.fromhex(ra.tree), bytes.fromhex(rb.tree))]
            while stack:
                prefix, ta, tb = stack.pop()
                if ta == tb:
                    continue
                na = {n.name: n for n in repo.tree(ta)}
                nb = {n.name: n for n in repo.tree(tb)}
                for name in sorted(na.keys() | nb.keys()):
                    x, y = na.get(name), nb.get(name)
                    path = os.fsdecode(prefix + name)
                    if y is None:
                        assert x is not None
                        out.removed.extend(all_paths(prefix, x))
                    elif x is None:
                        out.added.extend(all_paths(prefix, y))
                    elif x.type != y.type:
                        out.removed.extend(all_paths(prefix, x)[1:])
                        out.added.extend(all_paths(prefix, y)[1:])
                        out.changed.append(path)
                    elif x.type == "dir":
                        if x.mode != y.mode:
                            out.changed.append(path)
                        stack.append((prefix + name + b"/", x.tree or b"", y.tree or b""))
                    elif (x.chunks, x.mode, x.target, x.size) != (
                        y.chunks,
                        y.mode,
                        y.target,
                        y.size,
                    ):
                        out.changed.append(path)
            out.added.sort()
            out.removed.sort()
            out.changed.sort()
            return out

        return await asyncio.to_thread(run)

    # -- verify -----------------------------------------------------------------------------

    async def verify(
        self, snapshot_ids: Iterable[str] | None = None, *, progress: ProgressCallback | None = None
    ) -> VerifyReport:
        """Re-read and re-hash every object (or those of ``snapshot_ids``); report problems."""
        wanted = None
        if snapshot_ids is not None:
            wanted = {(await self.get(s)).id for s in snapshot_ids}
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._verify_sync, wanted, progress, loop)

    def _verify_sync(
        self,
        wanted: set[str] | None,
        progress: ProgressCallback | None,
        loop: asyncio.AbstractEventLoop,
    ) -> VerifyReport:
        started = time.monotonic()
        repo, backend, codec = self._repo, self._repo.backend, self._repo.codec
        problems: dict[str, tuple[list[str], set[str]]] = {}

        def problem(obj: str, detail: str, snaps: Iterable[str] = ()) -> None:
            details, affected = problems.setdefault(obj, ([], set()))
            if detail not in details:
                details.append(detail)
            affected.update(snaps)

        records, bad = self._records_sync()
        for n, exc in bad.items():
            problem(f"snapshots/{n}.json", str(exc), [n])
        if wanted is not None:
            records = [r for r in records if r.id in wanted]
        # A fresh index, straight from the store (the host cache is not trusted here).
        index = Index()
        names = backend.list("index")
        got = backend.get_many([f"index/{p}" for p in names])
        for pack in names:
            value = got[f"index/{pack}"]
            if isinstance(value, Exception):
                problem(f"index/{pack}", str(value))
                continue
            try:
                index.add_pack(
                    pack,
                    fmt.decode_index(
                        codec.open_meta(value, f"index/{pack}"), pack, f"index/{pack}"
                    ),
                )
            except CorruptObject as exc:
                problem(f"index/{pack}", str(exc).split(": ", 1)[-1])
        saved, repo.index = repo.index, index
        users: dict[bytes, set[str]] = {}
        try:
            for rec in records:
                self._mark(rec, users, problem)
        finally:
            repo.index = saved
        for blob_id, snaps in users.items():
            if blob_id not in index.blobs:
                problem(
                    f"blob {blob_id.hex()}",
                    "no pack index lists it (its pack was deleted or lost)",
                    snaps,
                )
        sizes = backend.list_sizes("packs")
        check = [
            p for p in index.packs if wanted is None or any(b in users for b, _ in index.packs[p])
        ]
        total = sum(sizes.get(p, 0) for p in check)
        reporter = _Reporter(progress, loop, "verify", total)
        counted = [0, 0]
        lock = threading.Lock()

        def check_pack(pack: str) -> None:
            entries = index.packs[pack]
            name = f"packs/{pack}"
            affected = {s for b, _ in entries for s in users.get(b, ())}
            if pack not in sizes:
                problem(name, "the pack is missing from the store", affected)
                return
            try:
                data = backend.get(name)
            except MissingObject:
                problem(name, "the pack is missing from the store", affected)
                return
            bad_blobs = 0
            for blob_id, loc in entries:
                if loc.offset + loc.length > len(data):
                    problem(
                        name,
                        f"truncated: {len(data)} bytes, index expects more",
                        users.get(blob_id, ()),
                    )
                    bad_blobs += 1
                    continue
                try:
                    codec.decode_blob(
                        blob_id,
                        memoryview(data)[loc.offset : loc.offset + loc.length],
                        loc.flags,
                        loc.raw_length,
                        name,
                    )
                except CorruptObject as exc:
                    problem(
                        name, str(exc).split(": ", 1)[1].split("; run")[0], users.get(blob_id, ())
                    )
                    bad_blobs += 1
            with lock:
                counted[0] += len(entries)
                counted[1] += len(data)
            reporter(len(data))

        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="sandbank-verify") as pool:
            for f in [pool.submit(check_pack, p) for p in check]:
                f.result()
        reporter.finish()
        out = [
            VerifyProblem(obj, "; ".join(details), sorted(snaps))
            for obj, (details, snaps) in sorted(problems.items())
        ]
        return VerifyReport(
            ok=not out,
            snapshots=len(records),
            packs=len(check),
            blobs=counted[0],
            bytes=counted[1],
            problems=out,
            seconds=round(time.monotonic() - started, 4),
        )

    def _mark(
        self,
        rec: SnapshotRecord,
        users: dict[bytes, set[str]],
        problem: Callable[[str, str, Iterable[str]], None] | None = None,
    ) -> None:
        """Add every blob the snapshot references to ``users`` (tolerating broken trees)."""
        repo = self._repo
        stack = [bytes.fromhex(rec.tree)]
        seen: set[bytes] = set()
        while stack:
            tid = stack.pop()
            if tid in seen:
                continue
            seen.add(tid)
            users.setdefault(tid, set()).add(rec.id)
            try:
                nodes = repo.tree(tid)
            except (MissingObject, CorruptObject) as exc:
                if problem is None:
                    raise
                obj = getattr(exc, "object", f"tree {tid.hex()}")
                if not obj.startswith("blob"):
                    problem(obj, str(exc).split(": ", 1)[-1].split("; run")[0], [rec.id])
                continue
            for n in nodes:
                if n.type == "dir" and n.tree:
                    stack.append(n.tree)
                elif n.chunks:
                    for c in n.chunks:
                        users.setdefault(c, set()).add(rec.id)

    # -- gc ---------------------------------------------------------------------------------

    async def gc(self, grace_seconds: float = 3600.0) -> GcReport:
        """Delete packs no snapshot references that are older than ``grace_seconds``.

        Safe beside writers: a writer's new packs are younger than the grace period, gc deletes
        a pack's index before the pack, and a writer checks that the packs it reused are still
        indexed before it commits (uploading the data again otherwise).
        """
        if grace_seconds < 0:
            raise ConfigurationError("grace_seconds must be >= 0")
        return await asyncio.to_thread(self._gc_sync, grace_seconds)

    def _gc_sync(self, grace: float) -> GcReport:
        started = time.monotonic()
        repo, backend = self._repo, self._repo.backend
        records, bad = self._records_sync()
        if bad:
            raise CorruptObject(
                f"snapshots/{next(iter(bad))}.json",
                "gc cannot tell what that snapshot references, so it deletes nothing",
            )
        repo.refresh_index()
        live: dict[bytes, set[str]] = {}
        for rec in records:
            self._mark(rec, live)
        now = time.time()
        sizes = backend.list_sizes("packs")
        indexed = set(repo.index.packs)
        doomed: list[str] = []
        kept = dead_kept = young = 0
        for pack in sizes:
            born = fmt.pack_time(pack)
            entries = repo.index.packs.get(pack)
            is_live = entries is not None and any(b in live for b, _ in entries)
            if is_live:
                kept += 1
                dead_kept += sum(loc.length for b, loc in entries or () if b not in live)
                continue
            if born is None or now - born < grace:
                young += 1
                continue
            doomed.append(pack)
        # Snapshots committed while we marked keep their packs.
        seen = {r.id for r in records}
        again, _ = self._records_sync()
        for rec in again:
            if rec.id not in seen:
                self._mark(rec, live)
        doomed = [p for p in doomed if not any(b in live for b, _ in repo.index.packs.get(p, ()))]
        freed = 0
        for pack in doomed:
            if pack in indexed:
                backend.delete(f"index/{pack}")
            backend.delete(f"packs/{pack}")
            freed += sizes[pack]
            with repo._index_lock:
                repo.index.drop_pack(pack)
            log.info("gc deleted pack %s (%d bytes)", pack, sizes[pack])
        for pack in indexed - set(sizes):
            born = fmt.pack_time(pack)
            if born is not None and now - born >= grace:
                backend.delete(f"index/{pack}")  # an index whose pack is gone
        repo.forget_pack_fds()
        return GcReport(
            snapshots=len(again),
            live_blobs=len(live),
            packs_deleted=len(doomed),
            bytes_freed=freed,
            packs_kept=kept,
            dead_bytes_kept=dead_kept,
            too_young=young,
            seconds=round(time.monotonic() - started, 4),
        )


def _tree_listing(repo: Repo, tree: bytes) -> list[FileEntry]:
    out = []
    for path, n in repo.walk(tree):
        out.append(
            FileEntry(
                os.fsdecode(path),
                n.type,  # type: ignore[arg-type]
                n.size if n.type == "file" else 0,
                n.mode,
                n.mtime_ns / 1e9,
                os.fsdecode(n.target) if n.type == "symlink" and n.target is not None else None,
            )
        )
    return out
