"""Round trips, incremental cost, inspection, policies and encryption."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from sandbank.errors import ConfigurationError
from sandbank.snapshots import (
    SnapshotNotFound,
    SnapshotStore,
    StoreFormatError,
    TargetNotEmpty,
    WrongKey,
)

from .conftest import (
    NON_UTF8,
    TarOnlySandbox,
    assert_same_tree,
    make_workspace,
    make_writable,
    read_bytes,
    tree_state,
)


async def test_round_trip_host_to_host(
    store: SnapshotStore, workspace: Path, tmp_path: Path
) -> None:
    phases: list[tuple[str, int, int | None]] = []
    rec = await store.snapshot(workspace, tags=["first"], manifest={"image": "x"})
    assert rec.stats.files == 6 and rec.stats.symlinks == 2 and rec.stats.dirs == 4
    assert rec.tags == ("first",) and rec.manifest == {"image": "x"}
    out = tmp_path / "out"
    stats = await store.restore(rec.id, out, progress=lambda *a: phases.append(a))
    assert stats.files == 6
    assert tree_state(out) == tree_state(workspace)
    assert read_bytes(os.fsencode(out) + b"/dir-\xfe/" + NON_UTF8) == b"latin-1 name"
    assert os.readlink(out / "dangling") == "/nonexistent/outside"
    assert phases and phases[-1][0] == "restore" and phases[-1][1] == phases[-1][2]
    make_writable(out)


async def test_list_get_show_diff_tag_delete(store: SnapshotStore, workspace: Path) -> None:
    a = await store.snapshot(workspace)
    (workspace / "src" / "main.py").write_text("print('changed')\n")
    (workspace / "new.txt").write_text("new")
    (workspace / "empty.txt").unlink()
    (workspace / "src" / "run.sh").chmod(0o700)
    b = await store.snapshot(workspace, parent=a.id)
    assert [r.id for r in await store.list()] == [b.id, a.id]
    assert (await store.get(b.id[:6])).id == b.id
    assert b.parent == a.id
    d = await store.diff(a.id, b.id)
    assert d.added == ["new.txt"] and d.removed == ["empty.txt"]
    assert d.changed == ["src/main.py", "src/run.sh"]
    details = await store.show(b.id)
    paths = {f.path: f for f in details.files}
    assert paths["src/current"].link_target == "main.py"
    assert details.logical_bytes == b.stats.logical_bytes and details.stored_bytes > 0
    tagged = await store.tag(a.id, "keep", "keep", "v1")
    assert tagged.tags == ("keep", "v1") and (await store.get(a.id)).tags == ("keep", "v1")
    await store.delete(a.id)
    assert [r.id for r in await store.list()] == [b.id]
    with pytest.raises(SnapshotNotFound, match=r"store\.list"):
        await store.get(a.id)


async def test_exclusions(store: SnapshotStore, workspace: Path, tmp_path: Path) -> None:
    (workspace / ".cache").mkdir()
    (workspace / ".cache" / "blob").write_text("cached")
    (workspace / "src" / "mod.pyc").write_bytes(b"pyc")
    (workspace / "src" / ".cache").write_text("a file named .cache stays")
    rec = await store.snapshot(workspace, exclude=[".cache/", "*.pyc"])
    paths = {f.path for f in (await store.show(rec.id)).files}
    assert ".cache" not in paths and "src/mod.pyc" not in paths
    assert "src/.cache" in paths and "src/main.py" in paths


async def test_incremental_writes_only_the_change(
    file_store: SnapshotStore, tmp_path: Path
) -> None:
    ws = tmp_path / "inc"
    (ws / "small").mkdir(parents=True)
    for i in range(200):
        (ws / "small" / f"f{i}.txt").write_text(f"file {i} " * 50)
    big = ws / "big.bin"
    # seeded: the chunk boundaries, hence the bytes a 1 MiB change rewrites, are the same
    # every run (with fresh random data they varied from 1.2 to 2.1 MB over 15 runs here, and
    # a run could cross the bound)
    rng = random.Random(8)
    big.write_bytes(rng.randbytes(32 << 20))
    full = await file_store.snapshot(ws)
    assert full.stats.objects_written <= 5  # a few packs + indexes + the record
    same = await file_store.snapshot(ws, parent=full.id)
    assert same.stats.objects_written == 1 and same.stats.read_bytes == 0
    assert same.stats.new_bytes < 2000 and same.tree == full.tree
    _overwrite(big, 16 << 20, rng.randbytes(1 << 20))
    changed = await file_store.snapshot(ws, parent=same.id)
    assert changed.stats.new_bytes <= 2_500_000, changed.stats
    assert changed.stats.objects_written <= 5
    assert changed.stats.read_bytes == 32 << 20


async def test_generic_tar_path_round_trip(
    store: SnapshotStore, workspace: Path, tmp_path: Path
) -> None:
    src = TarOnlySandbox(workspace)
    rec = await store.snapshot(src)
    assert src.exported_paths == [None]  # a full snapshot is one export stream
    assert rec.source["kind"] == "sandbox" and rec.source["provider"] == "tar-only"
    (workspace / "src" / "main.py").write_text("print('v2')\n")
    rec2 = await store.snapshot(src, parent=rec.id)
    assert src.exported_paths[-1] == ["src/main.py"]
    assert rec2.stats.read_bytes == len("print('v2')\n")
    # host path restore of a generic snapshot, and generic restore into a tar-only sandbox
    out = tmp_path / "out"
    await store.restore(rec2.id, out)
    assert_same_tree(tree_state(out), tree_state(workspace))
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    await store.restore(rec2.id, TarOnlySandbox(target_dir))
    # tarfile extraction (this fake's import) sets neither directory nor symlink mtimes
    loose = {"dir_mtimes": False, "link_mtimes": False}
    assert_same_tree(tree_state(target_dir, **loose), tree_state(workspace, **loose))
    make_writable(tmp_path)


async def test_restore_policies(store: SnapshotStore, workspace: Path, tmp_path: Path) -> None:
    rec = await store.snapshot(workspace)
    target = tmp_path / "target"
    target.mkdir()
    (target / "stray.txt").write_text("x")
    (target / "src").write_text("a file where the snapshot has a directory")
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "readonly").symlink_to(outside)  # a link where the snapshot has a directory
    with pytest.raises(TargetNotEmpty, match='if_not_empty="replace"'):
        await store.restore(rec.id, target)
    assert (target / "stray.txt").exists()
    stats = await store.restore(rec.id, target, if_not_empty="replace")
    assert stats.removed == 1
    assert tree_state(target) == tree_state(workspace)
    assert list(outside.iterdir()) == []  # nothing written through the link
    with pytest.raises(ConfigurationError):
        await store.restore(rec.id, target, if_not_empty="merge")  # type: ignore[arg-type]
    # the generic path applies the same policies
    box_dir = tmp_path / "box"
    box_dir.mkdir()
    (box_dir / "stray.txt").write_text("x")
    box = TarOnlySandbox(box_dir)
    with pytest.raises(TargetNotEmpty):
        await store.restore(rec.id, box)
    stats = await store.restore(rec.id, box, if_not_empty="replace")
    assert stats.removed == 1 and not (box_dir / "stray.txt").exists()
    make_writable(tmp_path)


async def test_encryption_round_trip(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = tmp_path / "enc"
    store = await SnapshotStore.open(url, encryption_key="correct horse", cache_dir=tmp_path / "c")
    assert store.encrypted
    rec = await store.snapshot(workspace)
    await store.aclose()
    # equal plaintexts in two stores with different keys get different ids; nothing leaks
    raw = b"".join(p.read_bytes() for p in (url / "packs").iterdir())
    assert b"print('hi')" not in raw and b"main.py" not in raw
    assert b"main.py" not in (url / "snapshots" / f"{rec.id}.json").read_bytes()
    with pytest.raises(WrongKey, match="does not open"):
        await SnapshotStore.open(url, encryption_key="wrong", cache_dir=tmp_path / "c")
    monkeypatch.delenv("SANDBANK_STORE_KEY", raising=False)
    monkeypatch.delenv("SANDBANK_STORE_KEY_FILE", raising=False)
    with pytest.raises(WrongKey, match="SANDBANK_STORE_KEY"):
        await SnapshotStore.open(url, cache_dir=tmp_path / "c")
    key_file = tmp_path / "key"
    key_file.write_text("correct horse\n")
    monkeypatch.setenv("SANDBANK_STORE_KEY_FILE", str(key_file))
    async with await SnapshotStore.open(url, cache_dir=tmp_path / "c2") as again:
        out = tmp_path / "out"
        await again.restore(rec.id, out)
        assert tree_state(out) == tree_state(workspace)
        assert (await again.verify()).ok
    make_writable(tmp_path)


async def test_open_errors(tmp_path: Path) -> None:
    from sandbank.snapshots import StoreNotFound

    with pytest.raises(StoreNotFound, match="create=True"):
        await SnapshotStore.open(tmp_path / "missing", create=False)
    not_store = tmp_path / "other"
    not_store.mkdir()
    (not_store / "file").write_text("x")
    with pytest.raises(StoreFormatError, match="empty location"):
        await SnapshotStore.open(not_store)
    store = await SnapshotStore.open(tmp_path / "s", cache_dir=False)
    await store.aclose()
    config = tmp_path / "s" / "config.json"
    config.write_text(config.read_text().replace('"version": 1', '"version": 99'))
    with pytest.raises(StoreFormatError, match="version 99"):
        await SnapshotStore.open(tmp_path / "s")
    plain = await SnapshotStore.open(tmp_path / "p", cache_dir=False)
    await plain.aclose()
    with pytest.raises(WrongKey, match="not encrypted"):
        await SnapshotStore.open(tmp_path / "p", encryption_key=b"k")


async def test_snapshot_of_a_missing_directory(file_store: SnapshotStore, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a directory"):
        await file_store.snapshot(tmp_path / "nope")


async def test_fidelity_of_a_fresh_tree_through_memory(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "w2")
    async with await SnapshotStore.open("memory://sandbank-fresh", cache_dir=False) as s:
        rec = await s.snapshot(ws)
        await s.restore(rec.id, tmp_path / "o2")
    assert tree_state(tmp_path / "o2") == tree_state(ws)
    make_writable(tmp_path)


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)
