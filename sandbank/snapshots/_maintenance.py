"""Maintenance of a store: verify (re-read and re-hash every object) and gc (mark and sweep)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from sandbank.errors import ConfigurationError
from sandbank.snapshots import _format as fmt
from sandbank.snapshots._records import (
    _WORKERS,
    GcReport,
    ProgressCallback,
    SnapshotRecord,
    VerifyProblem,
    VerifyReport,
    _Reporter,
    _StoreBase,
)
from sandbank.snapshots._repo import Index
from sandbank.snapshots.errors import CorruptObject, MissingObject

log = logging.getLogger("sandbank.snapshots")


class _Maintenance(_StoreBase):
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
