"""Snapshot records, the report types, and the store's base: one open repo and its records.

``SnapshotStore`` (store.py) is this base plus the writing, reading and maintenance parts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sandbank.errors import SnapshotError
from sandbank.providers.base import FileEntry
from sandbank.snapshots import _format as fmt
from sandbank.snapshots._repo import Repo
from sandbank.snapshots.errors import CorruptObject, MissingObject, SnapshotNotFound

__all__ = [
    "GcReport",
    "ProgressCallback",
    "RestoreStats",
    "SnapshotDetails",
    "SnapshotDiff",
    "SnapshotFile",
    "SnapshotRecord",
    "SnapshotStats",
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
    repairable: bool = False
    """``verify(repair=True)`` fixes it (an index rebuilt from the copy its pack holds)."""


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    snapshots: int
    packs: int
    blobs: int
    bytes: int
    problems: list[VerifyProblem]
    seconds: float
    repaired: list[VerifyProblem] = field(default_factory=list)
    """What ``verify(repair=True)`` fixed (the detail says how); ``problems`` is what is left."""


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
    unindexed_kept: int = 0
    """Packs kept although no index describes them, because a snapshot may need them (their
    index was lost or damaged: ``verify(repair=True)`` rebuilds it)."""


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


class _StoreBase:
    """An open store's repo and URL, and its snapshot records."""

    def __init__(self, repo: Repo, url: str) -> None:
        self._repo = repo
        self.url = url

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
