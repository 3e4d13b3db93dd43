"""Snapshot and restore through real providers: local (bubblewrap) and docker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbank.snapshots import SnapshotStore

from .conftest import assert_same_tree, make_workspace, make_writable, store_path, tree_state


async def _state_of(box, tmp_path: Path, store: SnapshotStore, name: str):  # type: ignore[no-untyped-def]
    """Snapshot a sandbox and restore it on the host, to compare it as a tree."""
    rec = await store.snapshot(box)
    out = tmp_path / name
    await store.restore(rec.id, out)
    return rec, out


async def test_local_provider_round_trip(
    file_store: SnapshotStore, tmp_path: Path, bwrap: str
) -> None:
    from sandbank.providers.local import LocalProvider

    ws = make_workspace(tmp_path / "ws")
    base = await file_store.snapshot(ws)
    provider = LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)
    async with provider.sandbox() as box:
        assert box.host_path is not None
        await file_store.restore(base.id, box)
        assert tree_state(box.host_path) == tree_state(ws)
        result = await box.exec(["/bin/sh", "-c", "./src/run.sh && cat src/current"])
        assert result.ok and "run" in result.text
        await box.write_file("made-inside.txt", "inside\n")
        rec = await file_store.snapshot(box, parent=base.id)
        assert rec.source["provider"] == "local" and rec.stats.read_bytes == len("inside\n")
        out = tmp_path / "out"
        await file_store.restore(rec.id, out)
        assert tree_state(out) == tree_state(box.host_path)
    make_writable(tmp_path)


@pytest.mark.docker
async def test_docker_round_trip_and_cross_provider(
    file_store: SnapshotStore, tmp_path: Path, docker_image: str, bwrap: str
) -> None:
    import uuid

    from sandbank.providers.docker import DockerProvider
    from sandbank.providers.local import LocalProvider

    ws = make_workspace(tmp_path / "ws")
    base = await file_store.snapshot(ws)
    docker = DockerProvider(image=docker_image, labels={"sandbank-test.run": uuid.uuid4().hex})
    local = LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)
    try:
        async with docker.sandbox() as box:
            await file_store.restore(base.id, box)  # generic path: import_tar
            run = await box.exec(["/bin/sh", "-c", "./src/run.sh"])
            assert run.ok and run.text.strip() == "run"
            await box.exec(["/bin/sh", "-c", "echo from-docker > made.txt"])
            moved = await file_store.snapshot(box, parent=base.id)  # generic path: export_tar
            assert moved.stats.read_bytes == len("from-docker\n")
            out = tmp_path / "from-docker"
            await file_store.restore(moved.id, out)
            want = tree_state(ws, dir_mtimes=False, link_mtimes=False)
            got = tree_state(out, dir_mtimes=False, link_mtimes=False)
            del got[b"made.txt"]
            assert_same_tree(got, want)
            # docker -> local, and local -> docker
            async with local.sandbox() as lbox:
                await file_store.restore(moved.id, lbox)
                assert (Path(lbox.host_path) / "made.txt").read_text() == "from-docker\n"
                await lbox.write_file("made-local.txt", "from-local\n")
                back = await file_store.snapshot(lbox, parent=moved.id)
            await file_store.restore(back.id, box, if_not_empty="replace")
            script = "cat made-local.txt made.txt; stat -c %a src/run.sh"
            check = await box.exec(["/bin/sh", "-c", script])
            assert check.text.split() == ["from-local", "from-docker", "755"]
            assert (
                await box.read_file(os.fsdecode(b"dir-\xfe/caf\xe9-\xff.txt"))
            ) == b"latin-1 name"
    finally:
        await docker.aclose()
        make_writable(tmp_path)


@pytest.mark.docker
async def test_docker_restore_long_names_and_a_corrupt_pack(
    file_store: SnapshotStore, tmp_path: Path, docker_image: str
) -> None:
    """The store's own tar (streamed without a spool): long names and link targets, exact
    sub-second mtimes; a corrupt chunk part way fails the restore and leaves the box empty."""
    import uuid

    from sandbank.providers.docker import DockerProvider
    from sandbank.snapshots import CorruptObject

    ws = tmp_path / "ws"
    deep = ws / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 90 + ".txt")).write_bytes(b"long")
    (ws / "link").symlink_to(f"{'d' * 60}/{'e' * 60}/{'f' * 90}.txt")
    for i in range(40):
        (ws / f"file{i}.bin").write_bytes(os.urandom(200_000))
    os.utime(ws / "file0.bin", ns=(1_700_000_000_987_654_321, 1_700_000_000_987_654_321))
    rec = await file_store.snapshot(ws)
    docker = DockerProvider(image=docker_image, labels={"sandbank-test.run": uuid.uuid4().hex})
    try:
        async with docker.sandbox() as box:
            await file_store.restore(rec.id, box)
            entries = {e.path: e for e in await box.list_tree()}
            long_path = f"{'d' * 60}/{'e' * 60}/{'f' * 90}.txt"
            assert await box.read_file(long_path) == b"long"
            assert entries["link"].link_target == long_path
            assert abs(entries["file0.bin"].mtime - 1_700_000_000.987654321) < 1e-6
            assert await box.read_file("file39.bin") == (ws / "file39.bin").read_bytes()
        (pack,) = sorted((store_path(file_store) / "packs").iterdir())
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF  # a chunk in the middle of the stream
        pack.write_bytes(bytes(data))
        fresh = await SnapshotStore.open(file_store.url, cache_dir=False)
        try:
            async with docker.sandbox() as box:
                with pytest.raises(CorruptObject):
                    await fresh.restore(rec.id, box)
                assert await box.list_tree() == []
        finally:
            await fresh.aclose()
    finally:
        await docker.aclose()


@pytest.mark.docker
async def test_docker_snapshot_of_long_names_hard_links_and_many_files(
    file_store: SnapshotStore, tmp_path: Path, docker_image: str
) -> None:
    """A full snapshot of a docker sandbox reads its archive renamed header by header (pax
    paths, ustar prefixes, hard links to long names) and spreads the files over workers."""
    import io
    import tarfile
    import uuid

    from sandbank.providers.docker import DockerProvider

    ws = tmp_path / "ws"
    deep = ws / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 90 + ".txt")).write_bytes(b"long")
    (ws / ("p" * 99)).write_bytes(b"a name that fits the ustar field only without a top")
    (ws / "ünï cødé").mkdir()
    (ws / "ünï cødé" / "ä.txt").write_bytes(b"unicode")
    (ws / "many").mkdir()
    for i in range(700):
        (ws / "many" / f"small{i:03}.txt").write_bytes(b"x" * i)
    (ws / "big.bin").write_bytes(os.urandom(2_000_000))
    base = await file_store.snapshot(ws)
    docker = DockerProvider(image=docker_image, labels={"sandbank-test.run": uuid.uuid4().hex})
    try:
        async with docker.sandbox() as box:
            await file_store.restore(base.id, box)
            long_path = f"{'d' * 60}/{'e' * 60}/{'f' * 90}.txt"
            links = f"ln {long_path} hard-to-long && ln big.bin big-link && ln many/small005.txt s5"
            assert (await box.exec(["/bin/sh", "-c", links])).ok
            # the renamed archive holds what the member-by-member rewrite holds
            whole = b"".join([c async for c in box.export_tar()])
            tops = sorted({e.path.split("/")[0] for e in await box.list_tree()})
            parts = b"".join([c async for c in box.export_tar(tops)])

            def members(data: bytes) -> list[tuple[object, ...]]:
                with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                    return sorted(
                        (m.name, m.type, m.linkname, m.size, m.mode, m.mtime)
                        for m in tf.getmembers()
                    )

            got, want = members(whole), members(parts)
            assert [m[0] for m in got] == [m[0] for m in want]
            # hard links are links only where both names are in one archive
            linked = {"hard-to-long", long_path, "big-link", "big.bin", "s5", "many/small005.txt"}
            assert [m if m[0] not in linked else (m[0], *m[4:]) for m in got] == [
                m if m[0] not in linked else (m[0], *m[4:]) for m in want
            ]
            hard = {m[0]: m[2] for m in got if m[1] == tarfile.LNKTYPE}
            assert len(hard) == 3 and all(a in linked and b in linked for a, b in hard.items())
            rec = await file_store.snapshot(box)
            out = tmp_path / "out"
            await file_store.restore(rec.id, out)
            assert (out / "hard-to-long").read_bytes() == b"long"
            assert (out / "big-link").read_bytes() == (ws / "big.bin").read_bytes()
            assert (out / "s5").read_bytes() == b"x" * 5
            for name in ("hard-to-long", "big-link", "s5"):
                (out / name).unlink()
            loose = {"dir_mtimes": False, "link_mtimes": False}
            assert_same_tree(tree_state(out, **loose), tree_state(ws, **loose))
    finally:
        await docker.aclose()
