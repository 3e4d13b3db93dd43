"""``exclude``: gitignore patterns that snapshots leave out and restores leave alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbank import ConfigurationError, create_sandbox
from sandbank.providers.base import Provider
from sandbank.snapshots import SnapshotStore

PATTERNS = ["node_modules/", "/build", "*.pyc", "!keep.pyc", "cache/*.tmp"]


def make_tree(root: Path) -> None:
    for rel in [
        "src/app.py",
        "src/app.pyc",
        "src/keep.pyc",
        "node_modules/x/index.js",
        "web/node_modules/y.js",
        "build/out.o",
        "src/build/kept.txt",
        "cache/a.tmp",
        "cache/a.txt",
        "node_modules.txt",
    ]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


KEPT = {
    "src/app.py",
    "src/keep.pyc",
    "src/build/kept.txt",
    "cache/a.txt",
    "node_modules.txt",
}


async def files_of(store: SnapshotStore, snapshot_id: str) -> set[str]:
    return {e.path for e in await store.listing(snapshot_id) if e.type == "file"}


async def test_gitignore_semantics_on_a_host_directory(
    store: SnapshotStore, tmp_path: Path
) -> None:
    make_tree(tmp_path / "ws")
    rec = await store.snapshot(tmp_path / "ws", exclude=PATTERNS)
    assert await files_of(store, rec.id) == KEPT
    assert rec.excludes == tuple(PATTERNS)


async def test_gitignore_semantics_in_a_sandbox(
    store: SnapshotStore, provider: Provider, tmp_path: Path
) -> None:
    make_tree(tmp_path / "ws")
    manifest = {"dirs": [{"path": ".", "host": str(tmp_path / "ws")}], "exclude": PATTERNS}
    box = await create_sandbox(provider, manifest)
    try:
        rec = await store.snapshot(box, exclude=box.manifest.exclude)
        assert await files_of(store, rec.id) == KEPT
    finally:
        await box.destroy()


async def test_a_replacing_restore_leaves_excluded_paths_alone(
    store: SnapshotStore, provider: Provider, tmp_path: Path
) -> None:
    make_tree(tmp_path / "ws")
    rec = await store.snapshot(tmp_path / "ws", exclude=PATTERNS)
    # into a host directory
    target = tmp_path / "target"
    make_tree(target)
    (target / "node_modules" / "x" / "index.js").write_text("rebuilt")
    (target / "stray.txt").write_text("not in the snapshot, not excluded")
    await store.restore(rec.id, target, if_not_empty="replace")
    assert (target / "node_modules" / "x" / "index.js").read_text() == "rebuilt"
    assert (target / "build" / "out.o").exists() and (target / "src" / "app.pyc").exists()
    assert not (target / "stray.txt").exists()
    # into a sandbox (the generic tar path on docker, the host path on local)
    box = await provider.create()
    try:
        await box.write_file("node_modules/x/index.js", "rebuilt")
        await box.write_file("stray.txt", "x")
        await store.restore(rec.id, box, if_not_empty="replace")
        assert await box.read_file("node_modules/x/index.js") == b"rebuilt"
        assert await box.read_file("src/app.py") == b"src/app.py"
        assert "stray.txt" not in {e.path for e in await box.list_tree()}
    finally:
        await box.destroy()


async def test_bad_patterns_are_refused(store: SnapshotStore, tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    with pytest.raises(ConfigurationError, match="not gitignore patterns"):
        await store.snapshot(tmp_path / "ws", exclude=["ok/", "!"])


async def test_restore_plus_cached_setup_rebuilds_excluded_dirs(
    store: SnapshotStore, provider: Provider
) -> None:
    """A checkpoint without node_modules/, restored over a sandbox built (from the setup
    cache) from the same manifest, gives the work and the rebuilt directory together."""
    manifest = {
        "files": [{"path": "package.txt", "text": "deps\n"}],
        "setup": [
            "mkdir -p node_modules/dep && head -c 12 /dev/urandom | od -x > node_modules/dep/lib"
        ],
        "exclude": ["node_modules/"],
    }
    first = await create_sandbox(provider, manifest, store=store)
    try:
        built = await first.read_file("node_modules/dep/lib")
        await first.write_file("work.txt", "the agent's work")
        checkpoint = await store.snapshot(first, exclude=first.manifest.exclude)
        assert "node_modules/dep/lib" not in await files_of(store, checkpoint.id)
    finally:
        await first.destroy()
    second = await create_sandbox(provider, manifest, store=store)
    try:
        await store.restore(checkpoint.id, second, if_not_empty="replace")
        assert await second.read_file("work.txt") == b"the agent's work"
        assert await second.read_file("node_modules/dep/lib") == built  # from the cache
    finally:
        await second.destroy()
