"""Reading snapshots: restore into a sandbox or host directory, list, show and diff them."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

from sandbank._streams import stream_from_thread
from sandbank.errors import ConfigurationError
from sandbank.providers.base import FileEntry, Sandbox
from sandbank.snapshots._format import Node
from sandbank.snapshots._ingest import Excluder
from sandbank.snapshots._records import (
    _TAR_WORKERS,
    _WORKERS,
    ProgressCallback,
    RestoreStats,
    SnapshotDetails,
    SnapshotDiff,
    SnapshotFile,
    _abspath,
    _Reporter,
    _StoreBase,
)
from sandbank.snapshots._repo import Repo
from sandbank.snapshots._restore import (
    Counts,
    check_available,
    needed_blobs,
    plan_sandbox,
    restore_host,
    tar_members,
    write_tar,
)
from sandbank.snapshots.errors import TargetNotEmpty

log = logging.getLogger("sandbank.snapshots")


class _Reading(_StoreBase):
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
