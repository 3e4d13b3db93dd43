"""The generic (tar) snapshot path: files spread over worker threads, with the same results
and the same errors as reading them one by one."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from sandbank.snapshots import SnapshotStore, SourceChanged, _ingest
from sandbank.snapshots._format import SMALL_FILE

from .conftest import TarOnlySandbox, assert_same_tree, tree_state


def _ingest_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sandbank-ingest")]


def _many_files(root: Path) -> Path:
    """Enough small files for several batches, big files cut in chunks, and hard links to
    both kinds, each link right after its source in the archive (tarfile adds in order)."""
    root.mkdir()
    for d in range(6):
        sub = root / f"d{d}"
        sub.mkdir()
        for i in range(260):
            (sub / f"f{i:03}.txt").write_bytes(f"{d}/{i}\n".encode() * (i % 7 + 1))
    (root / "same-a.txt").write_bytes(b"same content\n")
    (root / "same-b.txt").write_bytes(b"same content\n")
    (root / "a-big.bin").write_bytes(os.urandom(3 * SMALL_FILE) + b"text " * 200_000)
    os.link(root / "a-big.bin", root / "b-big-link.bin")
    (root / "c-small.txt").write_bytes(b"small, linked\n")
    os.link(root / "c-small.txt", root / "d-small-link.txt")
    (root / "e-exactly-small.bin").write_bytes(os.urandom(SMALL_FILE))
    (root / "f-one-over.bin").write_bytes(os.urandom(SMALL_FILE + 1))
    (root / "g-empty").write_bytes(b"")
    return root


async def test_many_files_and_hard_links_match_the_host_path(
    store: SnapshotStore, tmp_path: Path
) -> None:
    ws = _many_files(tmp_path / "ws")
    seen: list[tuple[int, int | None]] = []
    box = TarOnlySandbox(ws)
    rec = await store.snapshot(box, progress=lambda _phase, done, total: seen.append((done, total)))
    assert box.exported_paths == [None]
    total = sum(p.stat().st_size for p in ws.rglob("*") if p.is_file())
    assert rec.stats.files == 6 * 260 + 9 and rec.stats.read_bytes == total
    assert seen and seen[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    out = tmp_path / "out"
    await store.restore(rec.id, out)
    assert_same_tree(tree_state(out), tree_state(ws))
    # the same chunks as reading the files from disk
    by_tar = await _chunks(store, rec.tree)
    assert by_tar == await _chunks(store, (await store.snapshot(ws)).tree)
    assert by_tar[b"b-big-link.bin"] == by_tar[b"a-big.bin"]
    assert len(by_tar[b"a-big.bin"][1]) > 1
    assert _ingest_threads() == []


async def _chunks(store: SnapshotStore, tree: str) -> dict[bytes, tuple[int, list[bytes] | None]]:
    """Every file of a snapshot: (size, chunk ids)."""
    repo = store._repo
    walked = await asyncio.to_thread(repo.walk, bytes.fromhex(tree))
    return {path: (n.size, n.chunks) for path, n in walked if n.type == "file"}


async def test_a_listed_file_missing_from_the_export(store: SnapshotStore, tmp_path: Path) -> None:
    ws = _many_files(tmp_path / "ws")
    box = TarOnlySandbox(ws)
    box.before_export = lambda: (ws / "d3" / "f100.txt").unlink()
    with pytest.raises(SourceChanged, match="missing from the export") as info:
        await store.snapshot(box)
    assert info.value.path == "d3/f100.txt"
    assert await store.list() == []
    assert _ingest_threads() == []


def _tar(*members: tuple[str, bytes, bytes | str]) -> bytes:
    """A tar of (name, type, data or link target) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, what in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                assert isinstance(what, bytes)
                info.size = len(what)
                tf.addfile(info, io.BytesIO(what))
            else:
                assert isinstance(what, str)
                info.linkname = what
                tf.addfile(info)
    return buf.getvalue()


async def test_a_hard_link_to_a_file_that_was_not_listed(
    store: SnapshotStore, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "b.txt").write_text("b")
    box = TarOnlySandbox(ws)
    # "a.txt" appeared after the listing: in the archive, but not wanted
    box.export_override = _tar(
        ("a.txt", tarfile.REGTYPE, b"a"), ("b.txt", tarfile.LNKTYPE, "a.txt")
    )
    with pytest.raises(SourceChanged, match="hard link to a file that was not exported"):
        await store.snapshot(box)
    assert await store.list() == []


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.DIRTYPE])
async def test_a_listed_file_that_is_no_file_in_the_export(
    store: SnapshotStore, tmp_path: Path, kind: bytes
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a")
    (ws / "b.txt").write_text("b")
    box = TarOnlySandbox(ws)
    box.export_override = _tar(("a.txt", tarfile.REGTYPE, b"a"), ("b.txt", kind, "a.txt"))
    with pytest.raises(SourceChanged, match="not a file in the export"):
        await store.snapshot(box)


async def test_a_failing_worker_stops_the_snapshot_and_leaves_no_thread(
    store: SnapshotStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbank.snapshots._repo import PackWriter

    ws = _many_files(tmp_path / "ws")
    real_add = PackWriter.add
    calls = 0

    def flaky_add(self: PackWriter, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 300:
            raise OSError("disk full (test)")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(PackWriter, "add", flaky_add)
    with pytest.raises(OSError, match="disk full"):
        await store.snapshot(TarOnlySandbox(ws))
    assert await store.list() == []
    assert _ingest_threads() == []
    monkeypatch.setattr(PackWriter, "add", real_add)
    rec = await store.snapshot(TarOnlySandbox(ws))  # the store is fine afterwards
    out = tmp_path / "out"
    await store.restore(rec.id, out)
    assert_same_tree(tree_state(out), tree_state(ws))


def test_the_bounded_pool_waits_for_room_and_raises_a_job_failure() -> None:
    pool = _ingest._BoundedPool(2, limit=100)
    release = threading.Event()
    try:
        first = pool.submit(60, release.wait)
        submitted = threading.Event()

        def second() -> None:
            pool.submit(60, lambda: None)  # 120 > 100: waits for the first job
            submitted.set()

        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.2)
        assert not submitted.is_set()
        release.set()
        waiter.join(5)
        assert submitted.is_set() and first.result() is True
        pool.submit(500, lambda: None).result()  # bigger than the limit, alone: runs

        def boom() -> None:
            raise ValueError("job failed")

        with pytest.raises(ValueError, match="job failed"):
            pool.submit(1, boom).result()
        with pytest.raises(ValueError, match="job failed"):
            pool.submit(1, lambda: None)  # the next submit reports the failure
    finally:
        release.set()
        pool.shutdown(cancel=True)


def test_one_worker_runs_jobs_inline() -> None:
    pool = _ingest._BoundedPool(1, limit=10)
    assert pool.submit(100, threading.current_thread).result() is threading.current_thread()
    pool.shutdown(cancel=False)
