"""Bad input: damaged stores, hostile tars, changing trees, odd names, huge and many files."""

from __future__ import annotations

import io
import os
import resource
import tarfile
import time
from pathlib import Path

import pytest

from sandbank.errors import WorkspacePathError
from sandbank.snapshots import (
    CorruptObject,
    MissingObject,
    SnapshotStore,
    SourceChanged,
    StoreNotFound,
    StoreUnavailable,
)

from .conftest import (
    TarOnlySandbox,
    make_writable,
    read_bytes,
    store_path,
    tree_state,
    write_bytes,
)


def packs_of(store: SnapshotStore) -> list[Path]:
    return sorted((store_path(store) / "packs").iterdir())


async def test_corrupt_pack(file_store: SnapshotStore, workspace: Path, tmp_path: Path) -> None:
    rec = await file_store.snapshot(workspace)
    (pack,) = packs_of(file_store)
    data = bytearray(pack.read_bytes())
    for i in range(100, len(data), 997):
        data[i] ^= 0xFF
    pack.write_bytes(bytes(data))
    report = await file_store.verify()
    assert not report.ok
    (problem,) = report.problems
    assert problem.object == f"packs/{pack.name}" and problem.snapshots == [rec.id]
    fresh = await SnapshotStore.open(store_path(file_store), cache_dir=False)
    with pytest.raises(CorruptObject, match="verify"):
        await fresh.restore(rec.id, tmp_path / "out")
    await fresh.aclose()


async def test_truncated_pack(file_store: SnapshotStore, workspace: Path, tmp_path: Path) -> None:
    rec = await file_store.snapshot(workspace)
    (pack,) = packs_of(file_store)
    pack.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
    report = await file_store.verify([rec.id])
    assert [p.object for p in report.problems] == [f"packs/{pack.name}"]
    assert "truncated" in report.problems[0].detail and report.problems[0].snapshots == [rec.id]
    with pytest.raises(CorruptObject):
        await file_store.restore(rec.id, tmp_path / "out")


async def test_missing_pack(file_store: SnapshotStore, workspace: Path, tmp_path: Path) -> None:
    first = await file_store.snapshot(workspace)
    (workspace / "extra.bin").write_bytes(os.urandom(5000))
    second = await file_store.snapshot(workspace, parent=first.id)
    newest = packs_of(file_store)[-1]
    newest.unlink()  # the pack written by `second` only
    report = await file_store.verify()
    assert [(p.object, p.snapshots) for p in report.problems] == [
        (f"packs/{newest.name}", [second.id])
    ]
    assert "missing" in report.problems[0].detail
    with pytest.raises(MissingObject):
        await file_store.restore(second.id, tmp_path / "out")
    await file_store.restore(first.id, tmp_path / "ok")  # the other snapshot is intact
    # with its index gone too, the blobs themselves are reported, by id, with the snapshot
    (store_path(file_store) / "index" / newest.name).unlink()
    fresh = await SnapshotStore.open(store_path(file_store), cache_dir=False)
    report = await fresh.verify()
    assert report.problems and all(p.object.startswith("blob ") for p in report.problems)
    assert {s for p in report.problems for s in p.snapshots} == {second.id}
    with pytest.raises(MissingObject, match="blob"):
        await fresh.restore(second.id, tmp_path / "out2")
    await fresh.aclose()
    make_writable(tmp_path)


async def test_tampered_encrypted_object(tmp_path: Path, workspace: Path) -> None:
    store = await SnapshotStore.open(tmp_path / "enc", encryption_key=b"k" * 32, cache_dir=False)
    rec = await store.snapshot(workspace)
    (pack,) = packs_of(store)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 1
    pack.write_bytes(bytes(data))
    report = await store.verify()
    assert report.problems[0].object == f"packs/{pack.name}"
    assert "authentication" in report.problems[0].detail
    with pytest.raises(CorruptObject):
        await store.restore(rec.id, tmp_path / "out")
    index = store_path(store) / "index" / pack.name
    index.write_bytes(index.read_bytes()[:-1] + b"x")
    again = await SnapshotStore.open(tmp_path / "enc", encryption_key=b"k" * 32, cache_dir=False)
    with pytest.raises(CorruptObject, match="authentication"):
        await again.restore(rec.id, tmp_path / "out2")


async def test_unreachable_store_fails_fast() -> None:
    started = time.monotonic()
    options = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"},
        "config_kwargs": {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}},
        "retries": 1,
        "skip_instance_cache": True,
    }
    with pytest.raises(StoreUnavailable, match="unavailable") as info:
        await SnapshotStore.open("s3://bucket/store", storage_options=options)
    assert info.value.retryable
    assert time.monotonic() - started < 15


async def test_missing_location_with_create_false(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound):
        await SnapshotStore.open("memory://no-such-store-here", create=False)
    with pytest.raises(StoreNotFound, match="does not exist"):
        await SnapshotStore.open(f"file://{tmp_path}/absent/deeper", create=False)
    assert not (tmp_path / "absent").exists()


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"evil", link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


@pytest.mark.parametrize(
    "members",
    [
        [_member("../evil")],
        [_member("/tmp/evil-absolute")],
        [_member("a.txt", tarfile.LNKTYPE, link="../../etc/passwd")],
        [_member("link", tarfile.SYMTYPE, link="/tmp"), _member("link/evil")],
    ],
    ids=["dotdot", "absolute", "hardlink-outside", "through-symlink"],
)
async def test_hostile_export_tar(store: SnapshotStore, tmp_path: Path, members: list) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a")
    box = TarOnlySandbox(ws)
    box.export_override = _tar(*members)
    with pytest.raises(WorkspacePathError):
        await store.snapshot(box)
    assert await store.list() == []
    assert not _exists(tmp_path / "evil", "/tmp/evil-absolute", "/tmp/evil")


async def test_symlink_pointing_outside_is_kept_as_a_link(
    store: SnapshotStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "escape").symlink_to(outside)
    (ws / "etc").symlink_to("/etc")
    rec = await store.snapshot(ws)
    out = tmp_path / "out"
    for target in (out, TarOnlySandbox(_mk(tmp_path / "box"))):
        await store.restore(rec.id, target)
    assert os.readlink(out / "escape") == str(outside) and os.readlink(out / "etc") == "/etc"
    assert list(outside.iterdir()) == []


def _exists(*paths: str | Path) -> bool:
    return any(os.path.lexists(p) for p in paths)


def _mk(p: Path) -> Path:
    p.mkdir()
    return p


async def test_file_replaced_by_directory_during_export(
    store: SnapshotStore, workspace: Path
) -> None:
    box = TarOnlySandbox(workspace)
    base = await store.snapshot(box)
    (workspace / "src" / "main.py").write_text("changed")

    def swap() -> None:
        (workspace / "src" / "main.py").unlink()
        (workspace / "src" / "main.py").mkdir()
        (workspace / "src" / "main.py" / "inner").write_text("x")

    box.before_export = swap
    with pytest.raises(SourceChanged, match="retry") as info:
        await store.snapshot(box, parent=base.id)
    assert info.value.retryable
    assert [r.id for r in await store.list()] == [base.id]  # no partial snapshot visible
    box.before_export = None
    again = await store.snapshot(box, parent=base.id)  # a retry sees the new tree
    assert "src/main.py/inner" in {f.path for f in (await store.show(again.id)).files}


async def test_file_replaced_by_directory_on_the_host_path(
    store: SnapshotStore, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbank.snapshots import _ingest

    real_plan = _ingest.plan

    def plan_then_swap(*args, **kwargs):  # type: ignore[no-untyped-def]
        todo = real_plan(*args, **kwargs)
        (workspace / "src" / "main.py").unlink()
        (workspace / "src" / "main.py").mkdir()
        return todo

    monkeypatch.setattr("sandbank.snapshots._writing.plan", plan_then_swap)
    with pytest.raises(SourceChanged):
        await store.snapshot(workspace)
    assert await store.list() == []


async def test_non_utf8_names(store: SnapshotStore, tmp_path: Path) -> None:
    ws = os.fsencode(tmp_path / "ws")
    os.makedirs(ws + b"/\xff\xfe-dir")
    for name in (b"\xe9t\xe9.txt", b"\xff\xfe-dir/\x80\x81", "ünïcode-✓.txt".encode()):
        write_bytes(ws + b"/" + name, name)
    os.symlink(b"\xe9t\xe9.txt", ws + b"/link-\xe9")
    rec = await store.snapshot(os.fsdecode(ws))
    paths = {f.path for f in (await store.show(rec.id)).files}
    assert os.fsdecode(b"\xff\xfe-dir/\x80\x81") in paths
    for target in (tmp_path / "out", TarOnlySandbox(_mk(tmp_path / "box"))):
        await store.restore(rec.id, target)
    for root in (tmp_path / "out", tmp_path / "box"):
        state = tree_state(root, mtimes=False)
        assert state.keys() == tree_state(os.fsdecode(ws)).keys()
        assert read_bytes(os.fsencode(root) + b"/\xff\xfe-dir/\x80\x81") == b"\xff\xfe-dir/\x80\x81"


@pytest.mark.slow
async def test_many_empty_files(file_store: SnapshotStore, tmp_path: Path) -> None:
    ws = tmp_path / "many"
    count = 100_000
    for d in range(100):
        sub = ws / f"d{d:03d}"
        sub.mkdir(parents=True)
        for i in range(count // 100):
            (sub / f"f{i}").touch()
    started = time.monotonic()
    rec = await file_store.snapshot(ws)
    took = time.monotonic() - started
    assert rec.stats.files == count and rec.stats.logical_bytes == 0
    assert rec.stats.objects_written <= 5  # one chunk (the empty one) and 101 small trees
    again = await file_store.snapshot(ws, parent=rec.id)
    assert again.stats.objects_written == 1
    out = tmp_path / "out"
    stats = await file_store.restore(rec.id, out)
    assert stats.files == count and len(os.listdir(out / "d099")) == count // 100
    assert took < 30


@pytest.mark.slow
async def test_sparse_4gib_file(file_store: SnapshotStore, tmp_path: Path) -> None:
    ws = tmp_path / "sparse"
    ws.mkdir()
    _make_sparse(ws / "disk.img")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rec = await file_store.snapshot(ws)
    assert rec.stats.logical_bytes == 4 << 30
    assert rec.stats.new_bytes < 2_000_000  # zero chunks dedupe to one
    out = tmp_path / "out"
    await file_store.restore(rec.id, out)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (rss_after - rss_before) * 1024 < 1 << 30
    st = os.stat(out / "disk.img")
    assert st.st_size == 4 << 30 and st.st_blocks * 512 < 64 << 20  # restored sparse
    assert _read_at(out / "disk.img", 1 << 30, 18) == b"data in the middle"


def _make_sparse(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.truncate(4 << 30)
        fh.seek(1 << 30)
        fh.write(b"data in the middle")


def _read_at(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(n)
