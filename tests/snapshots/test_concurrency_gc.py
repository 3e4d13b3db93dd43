"""Concurrent writers, garbage collection and its safety beside a writer."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from sandbank.snapshots import SnapshotStore, StoreUnavailable

from .conftest import make_writable, store_path, tree_state


def _workspace(root: Path, seed: int) -> Path:
    (root / "lib").mkdir(parents=True)
    rnd = __import__("random").Random(seed)
    for i in range(50):
        (root / "lib" / f"m{i}.py").write_bytes(rnd.randbytes(3000))
    (root / "data.bin").write_bytes(rnd.randbytes(3 << 20))
    return root


async def test_two_concurrent_writers_share_chunks(tmp_path: Path) -> None:
    base = _workspace(tmp_path / "base", 1)
    url = tmp_path / "store"
    first = await SnapshotStore.open(url, cache_dir=tmp_path / "c1")
    root = await first.snapshot(base)
    forks = []
    for n in (1, 2):
        fork = tmp_path / f"fork{n}"
        shutil.copytree(base, fork, symlinks=True)
        (fork / "lib" / f"fork{n}.py").write_bytes(os.urandom(10_000))
        forks.append(fork)
    second = await SnapshotStore.open(url, cache_dir=tmp_path / "c2")
    a, b = await asyncio.gather(
        first.snapshot(forks[0], parent=root.id), second.snapshot(forks[1], parent=root.id)
    )
    for rec in (a, b):  # each wrote only its own change and reused the shared chunks
        assert rec.stats.new_bytes < 100_000 and rec.stats.stored_bytes > 3 << 20
    assert {r.id for r in await second.list()} == {root.id, a.id, b.id}
    assert (await first.verify()).ok
    for rec, fork in ((a, forks[0]), (b, forks[1])):
        out = tmp_path / f"out-{rec.id}"
        await second.restore(rec.id, out)
        assert tree_state(out) == tree_state(fork)
    await first.aclose()
    await second.aclose()


async def test_many_writers_one_store(store: SnapshotStore, tmp_path: Path) -> None:
    dirs = [_workspace(tmp_path / f"w{i}", i) for i in range(4)]
    recs = await asyncio.gather(*(store.snapshot(d) for d in dirs))
    assert len({r.id for r in recs}) == 4
    assert (await store.verify()).ok


async def test_gc_grace_keeps_a_fresh_orphan(
    file_store: SnapshotStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _workspace(tmp_path / "ws", 3)
    backend = file_store._repo.backend
    real_put = backend.put

    def crash_on_record(name: str, data: bytes) -> None:
        if name.startswith("snapshots/"):
            raise StoreUnavailable(file_store.url, "simulated crash before the commit")
        real_put(name, data)

    monkeypatch.setattr(backend, "put", crash_on_record)
    with pytest.raises(StoreUnavailable):
        await file_store.snapshot(ws)
    monkeypatch.setattr(backend, "put", real_put)
    assert await file_store.list() == []  # no partial snapshot is visible
    packs = store_path(file_store) / "packs"
    assert len(os.listdir(packs)) == 1
    report = await file_store.gc(grace_seconds=3600)
    assert report.packs_deleted == 0 and report.too_young == 1
    assert len(os.listdir(packs)) == 1
    report = await file_store.gc(grace_seconds=0)
    assert report.packs_deleted == 1 and report.bytes_freed > 3 << 20
    assert os.listdir(packs) == [] and os.listdir(store_path(file_store) / "index") == []


async def test_gc_after_delete_keeps_live_data(store: SnapshotStore, tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws", 4)
    keep = await store.snapshot(ws)
    (ws / "gone.bin").write_bytes(os.urandom(1 << 20))
    drop = await store.snapshot(ws, parent=keep.id)
    await store.delete(drop.id)
    report = await store.gc(grace_seconds=0)
    assert report.packs_deleted == 1 and report.snapshots == 1
    assert (await store.verify()).ok
    (ws / "gone.bin").unlink()
    out = tmp_path / "out"
    await store.restore(keep.id, out)
    assert tree_state(out) == tree_state(ws)
    assert (await store.gc(grace_seconds=0)).packs_deleted == 0


async def test_writer_reuploads_when_gc_removed_a_reused_pack(
    file_store: SnapshotStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _workspace(tmp_path / "ws", 5)
    old = await file_store.snapshot(ws)
    await file_store.delete(old.id)  # its packs are now garbage, but still indexed
    store_dir = store_path(file_store)
    real = SnapshotStore._vanished
    calls = []

    def gc_strikes_first(self: SnapshotStore, referenced, writer):  # type: ignore[no-untyped-def]
        if not calls:  # a concurrent gc removes the old packs, index first, mid-snapshot
            for name in os.listdir(store_dir / "packs"):
                if name not in writer.packs:
                    (store_dir / "index" / name).unlink()
                    (store_dir / "packs" / name).unlink()
        calls.append(1)
        return real(self, referenced, writer)

    monkeypatch.setattr(SnapshotStore, "_vanished", gc_strikes_first)
    (ws / "new.txt").write_text("new")
    rec = await file_store.snapshot(ws)  # dedupe would reuse the garbage packs' chunks
    assert len(calls) == 2  # the first commit check failed, the retry re-uploaded
    assert (await file_store.verify()).ok
    fresh = await SnapshotStore.open(store_dir, cache_dir=False)
    out = tmp_path / "out"
    await fresh.restore(rec.id, out)
    assert tree_state(out) == tree_state(ws)
    await fresh.aclose()
    make_writable(tmp_path)
