"""The store on real object stores: SeaweedFS (s3://), fake-gcs-server (gs://), Azurite (az://).

No mocks: each service runs as a subprocess (session fixtures from sandbank.testing). Also
the clear errors (wrong S3 key, missing bucket, unreachable endpoint) and the cross-provider
trips local sandbox -> S3 store -> docker sandbox and back, byte for byte.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandbank.snapshots import (
    SnapshotStore,
    StoreNotFound,
    StoreUnavailable,
)
from sandbank.testing.services import free_ports

from .conftest import assert_same_tree, make_workspace, make_writable, tree_state

MIB = 1024 * 1024


def _location(request: pytest.FixtureRequest, kind: str) -> tuple[str, dict[str, Any]]:
    service = request.getfixturevalue(f"{kind}_service")
    return service.url(f"t-{uuid.uuid4().hex[:12]}"), service.storage_options()


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


@pytest.fixture(params=["s3", "gcs", "azure"])
async def remote(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[SnapshotStore, str, dict[str, Any]]]:
    url, options = _location(request, request.param)
    store = await SnapshotStore.open(url, storage_options=options, cache_dir=tmp_path / "cache")
    yield store, url, options
    await store.aclose()


@pytest.fixture
def ws(tmp_path: Path) -> AsyncIterator[Path]:
    root = make_workspace(tmp_path / "ws")
    make_writable(root)
    (root / "data.bin").write_bytes(os.urandom(3 * MIB))
    for i in range(40):
        (root / "src" / f"mod{i}.py").write_text(f"x = {i}\n" * 50)
    (root / "readonly").chmod(0o555)
    yield root
    make_writable(tmp_path)


async def test_lifecycle(
    remote: tuple[SnapshotStore, str, dict[str, Any]], ws: Path, tmp_path: Path
) -> None:
    """Snapshot, incremental, restore (full and B over A), verify, delete, gc."""
    store, url, options = remote
    a = await store.snapshot(ws)
    assert a.stats.objects_written <= 5 and a.stats.files == 47
    want_a = tree_state(ws)
    make_writable(ws)
    _patch(ws / "data.bin", MIB, os.urandom(64 * 1024))
    (ws / "src" / "mod0.py").unlink()
    (ws / "new.txt").write_text("new\n")
    (ws / "readonly").chmod(0o555)
    b = await store.snapshot(ws, parent=a.id)
    assert b.stats.read_bytes == 3 * MIB + 4 and b.stats.objects_written <= 5
    assert b.stats.new_bytes < 2_500_000  # the changed chunk(s), trees, index, record
    want_b = tree_state(ws)

    # A second handle (no host cache) sees both; restore A, then B over it (only the delta).
    other = await SnapshotStore.open(url, storage_options=options, create=False, cache_dir=False)
    assert {r.id for r in await other.list()} == {a.id, b.id}
    out = tmp_path / "out"
    await other.restore(a.id, out)
    assert tree_state(out) == want_a
    stats = await other.restore(b.id, out, if_not_empty="replace")
    assert tree_state(out) == want_b
    assert stats.files_written == 2 and stats.bytes_written == 3 * MIB + 4 and stats.removed == 1

    report = await other.verify()
    assert report.ok and report.snapshots == 2 and report.packs >= 2
    await other.delete(a.id)
    gc = await other.gc(grace_seconds=0)
    assert gc.snapshots == 1
    after = await other.verify()
    assert after.ok and after.snapshots == 1
    out2 = tmp_path / "out2"
    await store.restore(b.id, out2)
    assert tree_state(out2) == want_b
    await other.aclose()


async def test_repair_on_object_stores(
    remote: tuple[SnapshotStore, str, dict[str, Any]], ws: Path, tmp_path: Path
) -> None:
    """A lost index is named and rebuilt from its pack (read by range from the service)."""
    store, url, options = remote
    rec = await store.snapshot(ws)
    (pack,) = store._repo.backend.list("packs")
    store._repo.backend.delete(f"index/{pack}")
    fresh = await SnapshotStore.open(url, storage_options=options, create=False, cache_dir=False)
    (problem,) = (await fresh.verify()).problems
    assert problem.object == f"index/{pack}" and problem.repairable
    report = await fresh.verify(repair=True)
    assert report.ok and [p.object for p in report.repaired] == [f"index/{pack}"]
    await fresh.restore(rec.id, tmp_path / "out")
    assert tree_state(tmp_path / "out") == tree_state(ws)
    await fresh.aclose()


async def test_wrong_s3_key_is_a_clear_error(s3_service: Any) -> None:
    options = s3_service.storage_options(secret="not-the-secret")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await SnapshotStore.open(s3_service.url("wrong-key"), storage_options=options)
    text = str(info.value)
    assert "credentials" in text and ("refused" in text or "SignatureDoesNotMatch" in text)
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("kind", ["s3", "gcs", "azure"])
async def test_missing_bucket(request: pytest.FixtureRequest, kind: str) -> None:
    service = request.getfixturevalue(f"{kind}_service")
    scheme = service.url().split("://")[0]
    url = f"{scheme}://no-such-bucket-{uuid.uuid4().hex[:8]}/store"
    with pytest.raises(StoreNotFound, match=r"bucket or container .* does not exist"):
        await SnapshotStore.open(url, storage_options=service.storage_options())
    with pytest.raises(StoreNotFound, match="does not exist"):
        await SnapshotStore.open(url, storage_options=service.storage_options(), create=False)


async def test_unreachable_endpoint_fails_quickly() -> None:
    (port,) = free_ports(1)
    options = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
    }
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="Could not connect") as info:
        await SnapshotStore.open("s3://bucket/store", storage_options=options)
    assert info.value.retryable and time.monotonic() - started < 10


@pytest.mark.docker
async def test_cross_provider_through_s3(
    s3_service: Any, tmp_path: Path, docker_image: str, bwrap: str
) -> None:
    """local sandbox -> S3 store -> docker sandbox, then docker -> local, byte for byte."""
    from sandbank.providers.docker import DockerProvider
    from sandbank.providers.local import LocalProvider

    store = await SnapshotStore.open(
        s3_service.url(f"x-{uuid.uuid4().hex[:8]}"),
        storage_options=s3_service.storage_options(),
        cache_dir=tmp_path / "cache",
    )
    ws = make_workspace(tmp_path / "ws")
    local = LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)
    docker = DockerProvider(image=docker_image, labels={"sandbank-test.run": uuid.uuid4().hex})
    # Docker's tar import cannot set a symlink's mtime: links are compared without it.
    loose = {"link_mtimes": False}

    async def state_of(box: Any, name: str) -> dict[bytes, tuple[Any, ...]]:
        """A sandbox's tree as seen through the store: snapshot it, restore it on the host."""
        rec = await store.snapshot(box)
        await store.restore(rec.id, tmp_path / name)
        return tree_state(tmp_path / name, **loose)

    try:
        async with local.sandbox() as lbox, docker.sandbox() as dbox:
            assert lbox.host_path is not None
            await store.restore((await store.snapshot(ws)).id, lbox)
            await lbox.exec(["/bin/sh", "-c", "head -c 2000000 /dev/urandom > blob.bin"])
            from_local = await store.snapshot(lbox)
            want = tree_state(lbox.host_path, **loose)

            await store.restore(from_local.id, dbox)  # generic path: import_tar
            assert_same_tree(await state_of(dbox, "d1"), want)  # bytes, modes, all mtimes
            run = await dbox.exec(["/bin/sh", "-c", "./src/run.sh && sha256sum blob.bin"])
            local_sum = await lbox.exec(["sha256sum", "blob.bin"])
            assert run.ok and local_sum.stdout.split()[0] in run.stdout

            # a change made in docker goes back onto the local sandbox: only the delta moves
            from_docker = await store.snapshot(dbox)
            await dbox.exec(["/bin/sh", "-c", "echo from-docker > made.txt && rm empty.txt"])
            changed = await store.snapshot(dbox, parent=from_docker.id)
            assert changed.stats.read_bytes == len("from-docker\n")
            stats = await store.restore(changed.id, lbox, if_not_empty="replace")
            assert stats.files_written == 1 and stats.removed == 1
            assert_same_tree(tree_state(lbox.host_path, **loose), await state_of(dbox, "d2"))

            # and A over B in docker (generic incremental restore): only the delta again
            dstats = await store.restore(from_local.id, dbox, if_not_empty="replace")
            assert dstats.files_written == 1 and dstats.removed == 1  # empty.txt; made.txt
            assert dstats.bytes_written == 0
            assert_same_tree(await state_of(dbox, "d3"), want)
    finally:
        await store.aclose()
        await local.aclose()
        await docker.aclose()
        make_writable(tmp_path)
