"""Fixtures for snapshot tests: stores, a fidelity workspace, and a tar-only sandbox."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sandbank._streams import SyncReader, stream_from_thread
from sandbank.errors import NotSupported
from sandbank.manifest import Manifest
from sandbank.providers._tar import TarGuard
from sandbank.providers.base import (
    Capabilities,
    ExecRequest,
    ExecResult,
    FileEntry,
    OutputCollector,
    Provider,
    Sandbox,
    SandboxInfo,
    SandboxStatus,
)
from sandbank.snapshots import SnapshotStore

NON_UTF8 = b"caf\xe9-\xff.txt"


def make_workspace(root: Path) -> Path:
    """A small tree exercising every kind of metadata a snapshot must keep."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "src").mkdir()
    (root / "src" / "main.py").write_text("print('hi')\n")
    run = root / "src" / "run.sh"
    run.write_text("#!/bin/sh\necho run\n")
    run.chmod(0o755)
    (root / "src" / "current").symlink_to("main.py")
    (root / "dangling").symlink_to("/nonexistent/outside")
    (root / "empty-dir").mkdir()
    ro = root / "readonly"
    ro.mkdir()
    (ro / "secret.txt").write_text("ro")
    (ro / "secret.txt").chmod(0o400)
    (root / "empty.txt").write_bytes(b"")
    big = root / "big.bin"
    big.write_bytes(os.urandom(700_000) + b"\0" * 300_000 + os.urandom(100_000))
    os.utime(big, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.mkdir(os.fsencode(root) + b"/" + b"dir-\xfe")
    with open(os.fsencode(root) + b"/dir-\xfe/" + NON_UTF8, "wb") as fh:
        fh.write(b"latin-1 name")
    os.utime(root / "src", ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    ro.chmod(0o555)
    return root


def tree_state(
    root: Path | str, *, mtimes: bool = True, dir_mtimes: bool = True, link_mtimes: bool = True
) -> dict[bytes, tuple[Any, ...]]:
    """Everything restore must reproduce, keyed by relative path bytes."""
    base = os.fsencode(root)
    out: dict[bytes, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            mt = st.st_mtime_ns if mtimes else 0
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full), mt if link_mtimes else 0)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, mt if dir_mtimes else 0)
            else:
                with open(full, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                out[rel] = ("file", mode, st.st_size, digest, mt)
    return out


def make_writable(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = make_workspace(tmp_path / "ws")
    yield root
    make_writable(tmp_path)


@pytest.fixture(params=["file", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    if request.param == "file":
        url = f"file://{tmp_path}/store"
    else:
        url = f"memory://sandbank-test-{os.urandom(6).hex()}"
    s = await SnapshotStore.open(url, cache_dir=tmp_path / "cache")
    yield s
    await s.aclose()
    if request.param == "memory":
        import fsspec

        fs = fsspec.filesystem("memory")
        if fs.exists(url[len("memory://") :]):
            fs.rm(url[len("memory://") :], recursive=True)


@pytest.fixture
async def file_store(tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    s = await SnapshotStore.open(tmp_path / "store", cache_dir=tmp_path / "cache")
    yield s
    await s.aclose()


def store_path(s: SnapshotStore) -> Path:
    return Path(s.url.removeprefix("file://"))


# -- a sandbox that only speaks tar (the generic, non-host_path code path) ------------------


def _remove_path(full: bytes) -> None:
    if os.path.isdir(full) and not os.path.islink(full):
        shutil.rmtree(full)
    else:
        os.unlink(full)


def read_bytes(path: bytes | str | Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def write_bytes(path: bytes | str | Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


class TarOnlyProvider(Provider):
    name = "tar-only"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> Sandbox:
        raise NotSupported(self.name, "create")

    async def attach(self, sandbox_id: str) -> Sandbox:
        raise NotSupported(self.name, "attach")

    async def list(self) -> list[SandboxInfo]:
        return []

    async def destroy(self, sandbox_id: str) -> None:
        return None

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        return SandboxInfo(sandbox_id, self.name, SandboxStatus.RUNNING)


class TarOnlySandbox(Sandbox):
    """A host directory reachable only through list_tree/export_tar/import_tar.

    ``export_hook`` may replace the export stream (to feed hostile tars), and
    ``before_export`` runs between listing and exporting (to change the tree).
    """

    def __init__(self, root: Path) -> None:
        super().__init__(TarOnlyProvider(), f"taronly-{root.name}", Manifest())
        self.root = root
        self.before_export: Callable[[], None] | None = None
        self.export_override: bytes | None = None
        self.exported_paths: list[list[str] | None] = []

    def _full(self, rel: str) -> bytes:
        return os.path.join(os.fsencode(self.root), os.fsencode(rel))

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        raise NotSupported(self.provider.name, "exec")

    async def _read_file(self, path: str) -> bytes:
        return await asyncio.to_thread(Path(os.fsdecode(self._full(path))).read_bytes)

    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        await asyncio.to_thread(Path(os.fsdecode(self._full(path))).write_bytes, data)

    async def _list_tree(self, path: str) -> list[FileEntry]:
        return await asyncio.to_thread(self._list_sync)

    def _list_sync(self) -> list[FileEntry]:
        out = []
        base = os.fsencode(self.root)
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                rel = os.fsdecode(os.path.relpath(full, base))
                if stat.S_ISLNK(st.st_mode):
                    kind, target = "symlink", os.fsdecode(os.readlink(full))
                elif stat.S_ISDIR(st.st_mode):
                    kind, target = "dir", None
                elif stat.S_ISREG(st.st_mode):
                    kind, target = "file", None
                else:
                    kind, target = "other", None
                out.append(
                    FileEntry(rel, kind, st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime, target)  # type: ignore[arg-type]
                )
        return out

    async def _remove(self, path: str) -> None:
        await asyncio.to_thread(_remove_path, self._full(path))

    async def _mkdir(self, path: str) -> None:
        os.makedirs(self._full(path), exist_ok=True)

    async def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        self.exported_paths.append(paths)
        if self.before_export is not None:
            self.before_export()
        if self.export_override is not None:
            yield self.export_override
            return
        root = self.root

        def produce(fh: Any) -> None:
            with tarfile.open(fileobj=fh, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                for rel in paths if paths is not None else sorted(os.listdir(root)):
                    tf.add(os.path.join(root, rel), arcname=rel, recursive=paths is None)

        async for chunk in stream_from_thread(produce):
            yield chunk

    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        loop = asyncio.get_running_loop()
        root = self.root

        def extract() -> None:
            guard = TarGuard()
            with tarfile.open(fileobj=SyncReader(stream, loop), mode="r|") as tf:
                for member in tf:
                    guard.check(member)
                    tf.extract(member, root, filter="fully_trusted")

        await asyncio.to_thread(extract)

    async def _status(self) -> SandboxStatus:
        return SandboxStatus.RUNNING


def assert_same_tree(
    got: dict[bytes, tuple[Any, ...]], want: dict[bytes, tuple[Any, ...]], tol_ns: int = 1000
) -> None:
    """Equal states, with mtimes (the last field) allowed to differ by float rounding."""
    assert got.keys() == want.keys()
    for key in want:
        g, w = got[key], want[key]
        assert g[:-1] == w[:-1], (key, g, w)
        assert abs(g[-1] - w[-1]) <= tol_ns, (key, g, w)
