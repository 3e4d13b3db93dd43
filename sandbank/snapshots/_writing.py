"""Writing snapshots: scan a sandbox or host directory, store what changed, commit a record."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from sandbank._streams import SyncReader
from sandbank.errors import ConfigurationError, SnapshotError
from sandbank.manifest import Manifest
from sandbank.providers.base import Sandbox
from sandbank.snapshots import _format as fmt
from sandbank.snapshots._format import BlobLoc
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
from sandbank.snapshots._records import (
    _WORKERS,
    ProgressCallback,
    SnapshotRecord,
    SnapshotStats,
    _Reporter,
    _StoreBase,
)
from sandbank.snapshots._repo import PackWriter
from sandbank.snapshots.errors import CorruptObject, MissingObject

log = logging.getLogger("sandbank.snapshots")


class _Writing(_StoreBase):
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
