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
from sandbank.snapshots._format import BlobLoc
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
from sandbank.snapshots._repo import Index, Repo
from sandbank.snapshots.errors import CorruptObject, MissingObject

log = logging.getLogger("sandbank.snapshots")


class _Problems:
    """The problems verify found, by object; threads add to it."""

    def __init__(self) -> None:
        self._found: dict[str, tuple[list[str], set[str]]] = {}
        self._repairable: set[str] = set()
        self._lock = threading.Lock()

    def add(
        self, obj: str, detail: str, snaps: Iterable[str] = (), repairable: bool = False
    ) -> None:
        with self._lock:
            details, affected = self._found.setdefault(obj, ([], set()))
            if detail not in details:
                details.append(detail)
            affected.update(snaps)
            if repairable:
                self._repairable.add(obj)

    def report(self) -> list[VerifyProblem]:
        return [
            VerifyProblem(obj, "; ".join(details), sorted(snaps), obj in self._repairable)
            for obj, (details, snaps) in sorted(self._found.items())
        ]


class _PackCheck:
    """Checks one pack: there, whole, its copy of its index, and every blob against its id."""

    def __init__(
        self,
        repo: Repo,
        index: Index,
        sizes: dict[str, int],
        users: dict[bytes, set[str]],
        found: _Problems,
        reporter: _Reporter,
    ) -> None:
        self.repo, self.index, self.sizes, self.users = repo, index, sizes, users
        self.found, self.reporter = found, reporter
        self.intact: set[str] = set()
        """Packs with no problem at all."""
        self.blobs = self.bytes = 0
        self._lock = threading.Lock()

    def __call__(self, pack: str) -> None:
        entries, users, name = self.index.packs[pack], self.users, f"packs/{pack}"
        try:
            if pack not in self.sizes:
                raise MissingObject(name)
            data = self.repo.backend.get(name)
        except MissingObject:
            affected = {s for b, _ in entries for s in users.get(b, ())}
            self.found.add(name, "the pack is missing from the store", affected)
            return
        end = max((loc.offset + loc.length for _, loc in entries), default=0)
        cut = [b for b, loc in entries if loc.offset + loc.length > len(data)]
        trouble = self._trailer_problem(pack, data, entries, end) if not cut else None
        if cut:
            self.found.add(
                name,
                f"truncated: {len(data)} bytes are left but its index places blobs up to byte "
                f"{end}; {len(cut)} of {len(entries)} blobs are cut off",
                {s for b in cut for s in users.get(b, ())},
            )
        elif trouble:
            self.found.add(name, trouble)
        failed: list[CorruptObject] = []
        hit: set[str] = set()
        for blob_id, loc in entries:
            if loc.offset + loc.length > len(data):
                continue
            try:
                self.repo.codec.decode_blob(
                    blob_id,
                    memoryview(data)[loc.offset : loc.offset + loc.length],
                    loc.flags,
                    loc.raw_length,
                    name,
                )
            except CorruptObject as exc:
                failed.append(exc)
                hit.update(users.get(blob_id, ()))
        if failed:
            first = failed[0].detail
            self.found.add(
                name,
                first
                if len(failed) == 1
                else f"{len(failed)} of {len(entries)} blobs fail their check (the first: {first})",
                hit,
            )
        with self._lock:
            self.blobs += len(entries)
            self.bytes += len(data)
            if not (cut or trouble or failed):
                self.intact.add(pack)
        self.reporter(len(data))

    def _trailer_problem(
        self, pack: str, data: bytes, entries: list[tuple[bytes, BlobLoc]], end: int
    ) -> str | None:
        """What is wrong with the copy of its index a pack ends with, if anything."""
        split = fmt.split_pack(data)
        if split is None:
            if len(data) == end:
                return None  # written before packs carried a copy of their index
            return (
                f"its {len(data) - end} bytes after the last blob are not a copy of its index "
                f"(cut short or altered): its blobs are intact, but a lost index could not be "
                f"rebuilt from it"
            )
        blobs_end, copy = split
        if blobs_end != end:
            return "its copy of the index does not start where its blobs end (altered)"
        try:
            listed = self.repo.open_index(pack, copy)
        except CorruptObject as exc:
            return f"its copy of the index is damaged ({exc.detail})"
        if dict(listed) != dict(entries):
            return f"its copy of the index does not match index/{pack}"
        return None


class _Maintenance(_StoreBase):
    # -- verify -----------------------------------------------------------------------------

    async def verify(
        self,
        snapshot_ids: Iterable[str] | None = None,
        *,
        progress: ProgressCallback | None = None,
        repair: bool = False,
    ) -> VerifyReport:
        """Re-read and re-hash every object (or those of ``snapshot_ids``); report problems.

        With ``repair``, a pack index that is missing or damaged is rebuilt from the copy its
        pack carries when the pack is intact, and a damaged index whose pack is gone is
        deleted (``VerifyReport.repaired``); what cannot be repaired stays in ``problems``.
        Nothing else is ever written or deleted.
        """
        wanted = None
        if snapshot_ids is not None:
            wanted = {(await self.get(s)).id for s in snapshot_ids}
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._verify_sync, wanted, progress, loop, repair)

    def _verify_sync(
        self,
        wanted: set[str] | None,
        progress: ProgressCallback | None,
        loop: asyncio.AbstractEventLoop,
        repair: bool = False,
    ) -> VerifyReport:
        started = time.monotonic()
        repo, backend = self._repo, self._repo.backend
        found = _Problems()
        records, bad = self._records_sync()
        for n, exc in bad.items():
            found.add(f"snapshots/{n}.json", str(exc), [n])
        if wanted is not None:
            records = [r for r in records if r.id in wanted]
        # A fresh index, straight from the store (the host cache is not trusted here); then
        # the packs whose index object is missing or damaged, by the copy each pack carries.
        index = Index()
        damaged: dict[str, str] = {}
        names = backend.list("index")
        got = backend.get_many([f"index/{p}" for p in names])
        sizes = backend.list_sizes("packs")  # after the indexes: a writer adds a pack first
        for pack in names:
            value = got[f"index/{pack}"]
            if isinstance(value, MissingObject):
                continue  # deleted meanwhile (gc)
            if isinstance(value, Exception):
                raise value
            try:
                index.add_pack(pack, repo.open_index(pack, value))
            except CorruptObject as exc:
                damaged[pack] = exc.detail
        embedded: dict[str, bytes] = {}
        blind: dict[str, str] = {}
        for pack in sorted(set(sizes) - set(index.packs)):
            try:
                embedded[pack], entries = repo.embedded_index(pack, sizes[pack])
            except MissingObject:
                continue  # deleted meanwhile (gc)
            except CorruptObject as exc:
                blind[pack] = exc.detail
                continue
            index.add_pack(pack, entries)  # after every index object: their places win
        saved, repo.index = repo.index, index
        users: dict[bytes, set[str]] = {}
        try:
            for rec in records:
                self._mark(rec, users, found.add)
        finally:
            repo.index = saved

        def only_here(pack: str) -> set[str]:
            """Snapshots that need a blob this pack holds and no other pack does."""
            return {
                s
                for b, _ in index.packs.get(pack, ())
                if index.blobs[b].pack == pack
                for s in users.get(b, ())
            }

        lost = {b: snaps for b, snaps in users.items() if b not in index.blobs}
        maybe = ", ".join(f"packs/{p}" for p in sorted(blind)[:3]) + (", ..." * (len(blind) > 3))
        for blob_id, snaps in lost.items():
            found.add(
                f"blob {blob_id.hex()}",
                "no pack index lists it (its pack was deleted or lost)"
                + (f"; it may be in {maybe}, which no index describes" if blind else ""),
                snaps,
            )

        def reported(pack: str) -> bool:
            """Whether a missing or damaged index is a problem of this verify."""
            if pack in damaged and wanted is None:
                return True  # a damaged object is always the store's problem
            if pack in embedded:  # else an interrupted write, or one in flight
                return bool(only_here(pack))
            return bool(lost)  # a pack no index describes may hold the lost blobs

        def needed(pack: str) -> bool:
            if pack in embedded:
                return reported(pack)
            return wanted is None or any(b in users for b, _ in index.packs[pack])

        check = [p for p in index.packs if needed(p)]
        total = sum(sizes.get(p, 0) for p in check)
        reporter = _Reporter(progress, loop, "verify", total)
        checked = _PackCheck(repo, index, sizes, users, found, reporter)
        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="sandbank-verify") as pool:
            for f in [pool.submit(checked, p) for p in check]:
                f.result()
        reporter.finish()
        repaired: list[VerifyProblem] = []
        for pack in sorted(set(damaged) | set(embedded) | set(blind)):
            if not reported(pack):
                continue
            obj, affected = f"index/{pack}", sorted(only_here(pack))
            what = f"is damaged ({damaged[pack]})" if pack in damaged else "is missing"
            if pack in embedded:
                count = len(index.packs[pack])
                if pack not in checked.intact:
                    found.add(
                        obj, f"{what}; it cannot be rebuilt: packs/{pack} is damaged", affected
                    )
                elif repair:
                    repo.put_index(pack, embedded[pack])
                    done = f"{what}: rebuilt from packs/{pack} ({count} blobs)"
                    log.info("verify: %s %s", obj, done)
                    repaired.append(VerifyProblem(obj, done, affected))
                else:
                    found.add(
                        obj,
                        f"{what}; packs/{pack} is intact and holds a copy of it ({count} blobs): "
                        f"`sandbank snapshot verify --repair` (verify(repair=True)) rebuilds it",
                        affected,
                        repairable=True,
                    )
            elif pack not in sizes:  # damaged, describing a pack that is gone: nothing to keep
                if repair:
                    backend.delete(obj)
                    repaired.append(
                        VerifyProblem(obj, f"{what} and packs/{pack} is gone: deleted", [])
                    )
                else:
                    found.add(
                        obj,
                        f"{what}, and packs/{pack} is gone too: `sandbank snapshot verify "
                        f"--repair` deletes it",
                        repairable=True,
                    )
            elif pack in damaged:
                found.add(obj, f"{what}; it cannot be rebuilt: packs/{pack}: {blind[pack]}")
            else:
                found.add(
                    obj,
                    f"{what}; packs/{pack} may hold the lost blobs, but it cannot be rebuilt: "
                    f"{blind[pack]}",
                )
        out = found.report()
        return VerifyReport(
            ok=not out,
            snapshots=len(records),
            packs=len(check),
            blobs=checked.blobs,
            bytes=checked.bytes,
            problems=out,
            seconds=round(time.monotonic() - started, 4),
            repaired=repaired,
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
                if not exc.object.startswith("blob"):
                    problem(exc.object, exc.detail, [rec.id])
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
        unindexed: list[str] = []
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
            if entries is None and self._may_hold_live(pack, sizes[pack], live):
                unindexed.append(pack)
                continue
            doomed.append(pack)
        if unindexed:
            log.warning(
                "gc kept %d packs whose index is missing or damaged because snapshots may need "
                "them (%s); run `sandbank snapshot verify --repair`",
                len(unindexed),
                ", ".join(unindexed[:3]),
            )
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
            unindexed_kept=len(unindexed),
        )

    def _may_hold_live(self, pack: str, size: int, live: dict[bytes, set[str]]) -> bool:
        """Whether a pack no index describes may hold a blob a snapshot references.

        Its own copy of its index says; without one, any referenced blob that no index lists
        may be in it.
        """
        repo = self._repo
        try:
            _, entries = repo.embedded_index(pack, size)
        except MissingObject:
            return False
        except CorruptObject:
            return any(b not in repo.index.blobs for b in live)
        return any(b in live for b, _ in entries)
