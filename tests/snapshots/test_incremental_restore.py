"""Incremental restore: restoring B onto a target that holds A transfers only the delta."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbank.providers.base import FileEntry
from sandbank.snapshots import SnapshotStore, TargetNotEmpty

from .conftest import TarOnlySandbox, assert_same_tree, make_workspace, make_writable, tree_state

BIG = 4 * 1024 * 1024
MIB = 1024 * 1024


class CountingSandbox(TarOnlySandbox):
    """A tar-only sandbox that counts the bytes of every tar it imports."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.imported: list[int] = []
        self.removed: list[str] = []

    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in stream:
                size += len(chunk)
                yield chunk

        await super()._import_tar(counted())
        self.imported.append(size)

    async def _remove(self, path: str) -> None:
        self.removed.append(path)
        await super()._remove(path)


def make_a(root: Path) -> Path:
    make_workspace(root)
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(os.urandom(BIG))
    for i in range(50):
        (root / "data" / f"small-{i:02d}.txt").write_text(f"small file {i}\n" * 20)
    (root / "data" / "doomed.txt").write_text("deleted in B\n")
    (root / "typechange").write_text("a file in A, a directory in B\n")
    (root / "dir-to-file").mkdir()
    (root / "dir-to-file" / "inner.txt").write_text("gone in B\n")
    (root / "link").symlink_to("data/small-00.txt")
    return root


def mutate_to_b(root: Path) -> None:
    """1 MiB changed in one big file, a deleted file, a new file, and a few type changes."""
    with open(root / "data" / "big.bin", "r+b") as fh:
        fh.seek(MIB)
        fh.write(os.urandom(MIB))
    (root / "data" / "doomed.txt").unlink()
    (root / "data" / "new.txt").write_text("new in B\n")
    (root / "typechange").unlink()
    (root / "typechange").mkdir()
    (root / "typechange" / "x").write_text("x")
    shutil.rmtree(root / "dir-to-file")
    (root / "dir-to-file").write_text("now a file\n")
    (root / "link").unlink()
    (root / "link").symlink_to("data/small-01.txt")


@pytest.fixture
async def a_and_b(
    file_store: SnapshotStore, tmp_path: Path
) -> AsyncIterator[tuple[str, str, Path, dict[bytes, tuple[object, ...]]]]:
    ws = make_a(tmp_path / "ws")
    a = await file_store.snapshot(ws)
    make_writable(ws)
    mutate_to_b(ws)
    os.chmod(ws / "readonly", 0o555)
    b = await file_store.snapshot(ws, parent=a.id)
    yield a.id, b.id, ws, tree_state(ws)
    make_writable(tmp_path)


def _changed_bytes() -> int:
    return BIG + len("new in B\n") + len("x") + len("now a file\n")


async def test_host_restore_b_over_a_writes_only_the_delta(
    file_store: SnapshotStore, tmp_path: Path, a_and_b: tuple[str, str, Path, dict]
) -> None:
    a, b, _, want = a_and_b
    out = tmp_path / "out"
    full = await file_store.restore(a, out)
    assert full.files_written == full.files and full.unchanged == 0
    stats = await file_store.restore(b, out, if_not_empty="replace")
    assert tree_state(out) == want  # bytes, modes, mtimes of files, dirs and links
    assert stats.files_written == 4  # big.bin, new.txt, typechange/x, dir-to-file
    assert stats.bytes_written == _changed_bytes()
    assert stats.removed == 1  # data/doomed.txt (type changes are replaced, not removed)
    assert stats.files == full.files and stats.unchanged >= 55
    again = await file_store.restore(b, out, if_not_empty="replace")
    assert again.files_written == 0 and again.removed == 0 and tree_state(out) == want
    with pytest.raises(TargetNotEmpty):
        await file_store.restore(a, out)


async def test_sandbox_restore_b_over_a_imports_only_the_delta(
    file_store: SnapshotStore, tmp_path: Path, a_and_b: tuple[str, str, Path, dict]
) -> None:
    a, b, ws, _ = a_and_b
    want = tree_state(ws, link_mtimes=False)  # Python's tar extraction cannot set link mtimes
    (tmp_path / "box").mkdir()
    box = CountingSandbox(tmp_path / "box")
    full = await file_store.restore(a, box)
    assert full.files_written == full.files and box.imported[0] > BIG
    await file_store.restore(a, box, if_not_empty="replace")  # nothing differs
    assert len(box.imported) == 1 and not box.removed
    stats = await file_store.restore(b, box, if_not_empty="replace")
    # Dir mtimes too (touched dirs are re-stamped last); tar mtimes are floats: 1 µs slack.
    assert_same_tree(tree_state(box.root, link_mtimes=False), want)
    assert stats.files_written == 4 and stats.bytes_written == _changed_bytes()
    assert stats.removed == 1 and stats.unchanged >= 55
    # The tar holds the changed files plus headers: the 50 small files did not travel.
    assert box.imported[1] < _changed_bytes() + 64 * 1024
    assert sorted(box.removed) == ["data/doomed.txt", "dir-to-file", "typechange"]


async def test_restore_onto_a_foreign_tree(file_store: SnapshotStore, tmp_path: Path) -> None:
    """A target with unrelated content, same-size files with other mtimes, and extra dirs."""
    ws = make_a(tmp_path / "ws")
    rec = await file_store.snapshot(ws)
    want = tree_state(ws, link_mtimes=False)
    (tmp_path / "box").mkdir()
    box = CountingSandbox(tmp_path / "box")
    root = box.root
    (root / "data").mkdir()
    (root / "data" / "small-00.txt").write_text("small file 0\n" * 20)  # same size, new mtime
    (root / "extra" / "deep").mkdir(parents=True)
    (root / "extra" / "deep" / "f").write_text("not in the snapshot")
    (root / "src").write_text("a file where the snapshot has a directory")
    stats = await file_store.restore(rec.id, box, if_not_empty="replace")
    assert_same_tree(tree_state(root, link_mtimes=False), want)
    assert stats.removed == 1 and stats.files_written == stats.files
    make_writable(tmp_path)


# -- restore(base=...): the delta from the two snapshots' trees, the target not listed ------


async def test_host_restore_with_base_writes_only_the_delta(
    file_store: SnapshotStore, tmp_path: Path, a_and_b: tuple[str, str, Path, dict]
) -> None:
    a, b, _, want = a_and_b
    out = tmp_path / "out"
    full = await file_store.restore(a, out)
    stats = await file_store.restore(b, out, if_not_empty="replace", base=a)
    assert tree_state(out) == want  # bytes, modes, mtimes of files, dirs and links
    assert stats.files_written == 4 and stats.bytes_written == _changed_bytes()
    assert stats.removed == 1 and stats.files == full.files and stats.unchanged >= 55
    same = await file_store.restore(b, out, if_not_empty="replace", base=b)
    assert same.files_written == 0 and same.removed == 0 and tree_state(out) == want
    assert same.files == stats.files and same.bytes == stats.bytes


async def test_sandbox_restore_with_base_does_not_list_the_target(
    file_store: SnapshotStore, tmp_path: Path, a_and_b: tuple[str, str, Path, dict]
) -> None:
    a, b, ws, _ = a_and_b
    want = tree_state(ws, link_mtimes=False)
    (tmp_path / "box").mkdir()
    box = CountingSandbox(tmp_path / "box")
    await file_store.restore(a, box)

    async def no_listing(*args: object, **kw: object) -> list[object]:
        raise AssertionError("restore(base=...) listed the target")

    box.list_tree = no_listing  # type: ignore[method-assign]
    stats = await file_store.restore(b, box, if_not_empty="replace", base=a)
    assert_same_tree(tree_state(box.root, link_mtimes=False), want)
    assert stats.files_written == 4 and stats.bytes_written == _changed_bytes()
    assert stats.removed == 1 and stats.unchanged >= 55
    assert box.imported[1] < _changed_bytes() + 64 * 1024
    assert sorted(box.removed) == ["data/doomed.txt", "dir-to-file", "typechange"]


async def test_listing_matches_the_restored_tree(
    file_store: SnapshotStore, tmp_path: Path, a_and_b: tuple[str, str, Path, dict]
) -> None:
    _, b, _, _ = a_and_b
    (tmp_path / "box").mkdir()
    box = CountingSandbox(tmp_path / "box")
    await file_store.restore(b, box)

    def key(e: FileEntry) -> tuple[object, ...]:  # sizes: of files only (as digests use them)
        return (e.path, e.type, e.size if e.type == "file" else 0, e.mode, e.link_target)

    assert sorted(map(key, await file_store.listing(b))) == sorted(map(key, await box.list_tree()))


@pytest.mark.docker
async def test_docker_restore_with_base_equals_the_snapshot(
    file_store: SnapshotStore,
    tmp_path: Path,
    docker_image: str,
    a_and_b: tuple[str, str, Path, dict],
) -> None:
    import uuid

    from sandbank.providers.docker import DockerProvider

    a, b, _, _ = a_and_b
    docker = DockerProvider(image=docker_image, labels={"sandbank-test.run": uuid.uuid4().hex})
    try:
        async with docker.sandbox() as box:
            await file_store.restore(a, box)
            listed = box.list_tree
            calls = 0

            async def counted(*args: object, **kw: object) -> object:
                nonlocal calls
                calls += 1
                return await listed(*args, **kw)  # type: ignore[arg-type]

            box.list_tree = counted  # type: ignore[method-assign]
            stats = await file_store.restore(b, box, if_not_empty="replace", base=a)
            assert calls == 0
            assert stats.files_written == 4 and stats.bytes_written == _changed_bytes()
            assert stats.removed == 1 and stats.unchanged >= 55
            box.list_tree = listed  # type: ignore[method-assign]
            # Byte for byte: a full snapshot of the box has B's chunks, modes and links ...
            back = await file_store.snapshot(box)
            diff = await file_store.diff(b, back.id)
            assert (diff.added, diff.removed, diff.changed) == ([], [], [])

            # ... and B's metadata (mtimes of files; tar imports cannot set a link's).
            def meta(entries: list[FileEntry]) -> dict[str, tuple[object, ...]]:
                return {
                    e.path: (e.type, e.size if e.type == "file" else 0, e.mode, e.link_target,
                             0 if e.type == "symlink" else round(e.mtime * 1e9))
                    for e in entries
                }  # fmt: skip

            assert_same_tree(meta(await box.list_tree()), meta(await file_store.listing(b)))  # type: ignore[arg-type]
    finally:
        await docker.aclose()
        make_writable(tmp_path)
