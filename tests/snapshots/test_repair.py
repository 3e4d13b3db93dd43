"""Store diagnostics and repair: lost or damaged pack indexes, truncated packs, and gc beside them.

Every pack ends with a copy of its index (FORMAT.md), so ``verify`` can name the pack a lost
index described and ``verify(repair=True)`` can rebuild that index when the pack is intact.
The damage is done to the real objects of file://, memory:// and emulated object stores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbank.snapshots import MissingObject, SnapshotStore
from sandbank.snapshots._format import TRAILER_SIZE, split_pack

from .conftest import store_path, tree_state


def _objects(store: SnapshotStore, prefix: str) -> list[str]:
    return sorted(store._repo.backend.list(prefix))


def _read(store: SnapshotStore, name: str) -> bytes:
    return store._repo.backend.get(name)


def _write(store: SnapshotStore, name: str, data: bytes) -> None:
    store._repo.backend.put(name, data)


async def _reopen(store: SnapshotStore) -> SnapshotStore:
    """A second handle with no host cache: it sees only what the store holds."""
    return await SnapshotStore.open(store.url, create=False, cache_dir=False)


def _workspace(root: Path) -> Path:
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(600_000))
    (root / "notes.txt").write_text("notes\n" * 100)
    (root / "sub").mkdir()
    (root / "sub" / "x.py").write_text("x = 1\n")
    return root


async def test_a_missing_index_is_named_with_its_pack_and_rebuilt(
    store: SnapshotStore, tmp_path: Path
) -> None:
    ws = _workspace(tmp_path / "ws")
    rec = await store.snapshot(ws)
    (pack,) = _objects(store, "packs")
    original = _read(store, f"index/{pack}")
    store._repo.backend.delete(f"index/{pack}")
    fresh = await _reopen(store)
    with pytest.raises(MissingObject, match="verify"):
        await fresh.restore(rec.id, tmp_path / "out")

    report = await fresh.verify()
    assert not report.ok and report.repaired == []
    (problem,) = report.problems  # the index and its pack, not a list of lost blobs
    assert problem.object == f"index/{pack}" and problem.snapshots == [rec.id]
    assert problem.repairable
    assert "is missing" in problem.detail and f"packs/{pack} is intact" in problem.detail
    assert "--repair" in problem.detail
    assert _objects(store, "index") == []  # a plain verify writes nothing

    repaired = await fresh.verify(repair=True)
    assert repaired.ok and repaired.problems == []
    assert [(p.object, p.snapshots) for p in repaired.repaired] == [(f"index/{pack}", [rec.id])]
    assert f"rebuilt from packs/{pack}" in repaired.repaired[0].detail
    assert _read(store, f"index/{pack}") == original  # byte for byte the lost object
    await fresh.restore(rec.id, tmp_path / "out")
    assert tree_state(tmp_path / "out") == tree_state(ws)
    again = await fresh.verify(repair=True)
    assert again.ok and again.repaired == []
    await fresh.aclose()


async def test_a_corrupt_index_is_named_and_rebuilt(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    """A damaged index blocks only the snapshots that need its pack, until it is rebuilt."""
    ws = _workspace(tmp_path / "ws")
    first = await file_store.snapshot(ws)
    want_first = tree_state(ws)
    (ws / "new.bin").write_bytes(os.urandom(50_000))
    second = await file_store.snapshot(ws, parent=first.id)
    pack = _objects(file_store, "packs")[-1]  # written by `second` only
    index = store_path(file_store) / "index" / pack
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index.write_bytes(bytes(data))
    fresh = await _reopen(file_store)
    await fresh.restore(first.id, tmp_path / "first")  # the rest of the store still works
    assert tree_state(tmp_path / "first") == want_first
    with pytest.raises(MissingObject, match=f"packs/{pack}, whose index is damaged"):
        await fresh.restore(second.id, tmp_path / "out")
    with pytest.raises(MissingObject, match="whose index is damaged"):
        await fresh.gc(grace_seconds=0)  # it cannot read the snapshot's tree: it deletes nothing
    assert pack in _objects(fresh, "packs")
    (problem,) = (await fresh.verify()).problems
    assert problem.object == f"index/{pack}" and problem.repairable
    assert "is damaged (checksum mismatch" in problem.detail
    assert problem.snapshots == [second.id]
    # one snapshot at a time (the newest checkpoint that verifies): only its own damage counts
    assert (await fresh.verify([first.id])).ok
    assert [p.object for p in (await fresh.verify([second.id])).problems] == [f"index/{pack}"]

    report = await fresh.verify(repair=True)
    assert report.ok and [p.object for p in report.repaired] == [f"index/{pack}"]
    await fresh.restore(second.id, tmp_path / "out")
    assert tree_state(tmp_path / "out") == tree_state(ws)
    await fresh.aclose()


async def test_a_lost_index_of_a_truncated_pack_cannot_be_rebuilt(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    rec = await file_store.snapshot(_workspace(tmp_path / "ws"))
    (pack,) = _objects(file_store, "packs")
    path = store_path(file_store) / "packs" / pack
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (store_path(file_store) / "index" / pack).unlink()
    fresh = await _reopen(file_store)
    report = await fresh.verify(repair=True)
    assert not report.ok and report.repaired == []
    by_object = {p.object: p for p in report.problems}
    index = by_object.pop(f"index/{pack}")
    assert not index.repairable
    assert "cannot be rebuilt" in index.detail and "cut short" in index.detail
    # what is left are the blobs that no index lists, each naming the pack that may hold it
    assert by_object and all(o.startswith("blob ") for o in by_object)
    assert all(f"packs/{pack}" in p.detail and p.snapshots == [rec.id] for p in by_object.values())
    assert _objects(fresh, "index") == []  # nothing was written
    await fresh.aclose()


async def test_an_index_is_not_rebuilt_from_a_pack_with_a_corrupt_blob(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    rec = await file_store.snapshot(_workspace(tmp_path / "ws"))
    (pack,) = _objects(file_store, "packs")
    path = store_path(file_store) / "packs" / pack
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF  # inside big.bin's chunk, far from the trailer
    path.write_bytes(bytes(data))
    (store_path(file_store) / "index" / pack).unlink()
    fresh = await _reopen(file_store)
    report = await fresh.verify(repair=True)
    assert report.repaired == []
    by_object = {p.object: p for p in report.problems}
    assert set(by_object) == {f"index/{pack}", f"packs/{pack}"}
    assert f"cannot be rebuilt: packs/{pack} is damaged" in by_object[f"index/{pack}"].detail
    assert "does not" in by_object[f"packs/{pack}"].detail  # decompress / match its hash
    assert by_object[f"packs/{pack}"].snapshots == [rec.id]
    assert not any(p.repairable for p in report.problems)
    assert _objects(fresh, "index") == []
    await fresh.aclose()


async def test_a_truncated_pack_says_how_much_is_left(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    rec = await file_store.snapshot(_workspace(tmp_path / "ws"))
    (pack,) = _objects(file_store, "packs")
    path = store_path(file_store) / "packs" / pack
    path.write_bytes(path.read_bytes()[:5000])
    (problem,) = (await file_store.verify()).problems
    assert problem.object == f"packs/{pack}" and problem.snapshots == [rec.id]
    assert (
        "truncated: 5000 bytes are left" in problem.detail and "blobs are cut off" in problem.detail
    )
    assert not problem.repairable


async def test_a_pack_whose_end_is_cut_keeps_its_blobs_but_is_reported(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    ws = _workspace(tmp_path / "ws")
    rec = await file_store.snapshot(ws)
    (pack,) = _objects(file_store, "packs")
    path = store_path(file_store) / "packs" / pack
    path.write_bytes(path.read_bytes()[:-3])
    (problem,) = (await file_store.verify()).problems
    assert problem.object == f"packs/{pack}" and problem.snapshots == []
    assert "not a copy of its index" in problem.detail and "blobs are intact" in problem.detail
    await file_store.restore(rec.id, tmp_path / "out")  # the data itself is all there
    assert tree_state(tmp_path / "out") == tree_state(ws)


async def test_packs_without_a_copy_of_their_index_still_verify(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    """A pack written before packs carried their index (blobs only) is valid."""
    await file_store.snapshot(_workspace(tmp_path / "ws"))
    (pack,) = _objects(file_store, "packs")
    path = store_path(file_store) / "packs" / pack
    data = path.read_bytes()
    split = split_pack(data)
    assert split is not None and len(data) == split[0] + len(split[1]) + TRAILER_SIZE
    path.write_bytes(data[: split[0]])
    assert (await file_store.verify()).ok


async def test_gc_keeps_a_pack_whose_index_is_lost(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    """Without its index a pack looks unreferenced; gc must not delete data snapshots need."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.bin").write_bytes(os.urandom(400_000))
    first = await file_store.snapshot(ws)
    (old,) = _objects(file_store, "packs")
    (ws / "b.txt").write_text("b\n")
    second = await file_store.snapshot(ws, parent=first.id)  # a.bin's chunk stays in `old`
    await file_store.delete(first.id)
    want = tree_state(ws)
    (store_path(file_store) / "index" / old).unlink()
    fresh = await _reopen(file_store)
    report = await fresh.gc(grace_seconds=0)
    assert report.unindexed_kept == 1 and report.packs_deleted == 0
    assert old in _objects(fresh, "packs")
    # the same without a copy of the index in the pack: the lost blob may be in it, keep it
    path = store_path(file_store) / "packs" / old
    blobs_end = split_pack(path.read_bytes())
    assert blobs_end is not None
    saved = path.read_bytes()
    path.write_bytes(saved[: blobs_end[0]])
    assert (await fresh.gc(grace_seconds=0)).unindexed_kept == 1
    assert old in _objects(fresh, "packs")
    path.write_bytes(saved)
    repaired = await fresh.verify(repair=True)
    assert repaired.ok and [p.snapshots for p in repaired.repaired] == [[second.id]]
    assert (await fresh.gc(grace_seconds=0)).unindexed_kept == 0
    await fresh.restore(second.id, tmp_path / "out")
    assert tree_state(tmp_path / "out") == want
    await fresh.aclose()


async def test_gc_still_deletes_an_unreferenced_pack_with_no_index(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    """The leftover of an interrupted write (a pack, no index, no record) is reclaimed."""
    ws = _workspace(tmp_path / "ws")
    rec = await file_store.snapshot(ws)
    await file_store.delete(rec.id)
    (pack,) = _objects(file_store, "packs")
    (store_path(file_store) / "index" / pack).unlink()
    assert (await file_store.verify()).ok  # an orphan is no problem
    report = await file_store.gc(grace_seconds=0)
    assert report.packs_deleted == 1 and report.unindexed_kept == 0
    assert _objects(file_store, "packs") == []


async def test_repair_of_an_encrypted_store(tmp_path: Path) -> None:
    store = await SnapshotStore.open(tmp_path / "enc", encryption_key=b"k" * 32, cache_dir=False)
    ws = _workspace(tmp_path / "ws")
    rec = await store.snapshot(ws)
    (pack,) = _objects(store, "packs")
    (tmp_path / "enc" / "index" / pack).unlink()
    (problem,) = (await store.verify()).problems
    assert problem.object == f"index/{pack}" and problem.repairable
    assert (await store.verify(repair=True)).ok
    await store.restore(rec.id, tmp_path / "out")
    assert tree_state(tmp_path / "out") == tree_state(ws)
    await store.aclose()


async def test_repair_deletes_a_damaged_index_whose_pack_is_gone(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    rec = await file_store.snapshot(_workspace(tmp_path / "ws"))
    (pack,) = _objects(file_store, "packs")
    (store_path(file_store) / "packs" / pack).unlink()
    (store_path(file_store) / "index" / pack).write_bytes(b"SBP1 garbage")
    fresh = await _reopen(file_store)
    report = await fresh.verify()
    index = next(p for p in report.problems if p.object == f"index/{pack}")
    assert "is gone too" in index.detail and index.repairable
    repaired = await fresh.verify(repair=True)
    assert [p.object for p in repaired.repaired] == [f"index/{pack}"]
    assert "deleted" in repaired.repaired[0].detail
    assert _objects(fresh, "index") == []
    # the data is lost all the same: what is left are the blobs, with the snapshot they damage
    assert repaired.problems and all(p.object.startswith("blob ") for p in repaired.problems)
    assert {s for p in repaired.problems for s in p.snapshots} == {rec.id}
    assert not any(p.repairable for p in repaired.problems)
    await fresh.aclose()
