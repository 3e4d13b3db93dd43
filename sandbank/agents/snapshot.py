"""SDK snapshots kept in a sandbank ``SnapshotStore``: content-addressed and incremental.

``SandbankSnapshot`` is the SDK-side handle: the session's stable id plus the store's id of
the workspace's latest snapshot. A sandbank session writes and restores it through the
store directly (``StoreSnapshots``), never as a whole tar.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from agents.sandbox.session.dependencies import Dependencies
from agents.sandbox.snapshot import SnapshotBase

from sandbank.errors import ConfigurationError
from sandbank.providers.base import Sandbox
from sandbank.snapshots import SnapshotStore

__all__ = ["FINGERPRINT_VERSION", "SandbankSnapshot", "StoreSnapshots", "listing_fingerprint"]

FINGERPRINT_VERSION = "sandbank_listing_v1"
_ONLY_OURS = (
    "a sandbank snapshot is written to and restored from a snapshot store by a "
    "SandbankSandboxClient session, not as a tar stream; resume it with that client"
)


class SandbankSnapshot(SnapshotBase):
    """The workspace of one SDK session in a sandbank store; ``snapshot_id`` is its latest."""

    type: Literal["sandbank"] = "sandbank"
    snapshot_id: str | None = None

    async def persist(self, data: io.IOBase, *, dependencies: Dependencies | None = None) -> None:
        raise ConfigurationError(_ONLY_OURS)

    async def restore(self, *, dependencies: Dependencies | None = None) -> io.IOBase:
        raise ConfigurationError(_ONLY_OURS)

    async def restorable(self, *, dependencies: Dependencies | None = None) -> bool:
        return self.snapshot_id is not None


class StoreSnapshots:
    """Snapshots a sandbox into a store and restores one into a sandbox (delta only)."""

    def __init__(self, store: SnapshotStore) -> None:
        self.store = store

    async def snapshot(self, box: Sandbox, *, parent: str | None, exclude: Iterable[Path]) -> str:
        patterns = ["/" + glob.escape(p.as_posix()) for p in exclude]
        record = await self.store.snapshot(box, parent=parent, exclude=patterns)
        return record.id

    async def restore(self, box: Sandbox, snapshot_id: str) -> None:
        await self.store.restore(snapshot_id, box, if_not_empty="replace")


async def listing_fingerprint(box: Sandbox, exclude: Iterable[Path] = ()) -> dict[str, str]:
    """A digest of the workspace's listing (path, type, size, mode, mtime, link target):
    what an incremental snapshot compares, so an unchanged workspace keeps its digest."""
    skip = {p.as_posix() for p in exclude}
    digest = hashlib.sha256()
    for entry in await box.list_tree():
        top = entry.path
        if top in skip or any(top.startswith(s + "/") for s in skip):
            continue
        row = [entry.path, entry.type, entry.size, entry.mode, entry.mtime, entry.link_target]
        digest.update(json.dumps(row).encode() + b"\n")
    return {"fingerprint": digest.hexdigest(), "version": FINGERPRINT_VERSION}
