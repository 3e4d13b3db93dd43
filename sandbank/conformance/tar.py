"""Conformance tests for tar export and import: full fidelity, and refusal of escapes."""

from __future__ import annotations

import calendar
import io
import tarfile
import uuid
from collections.abc import AsyncIterator

import pytest

from sandbank.errors import WorkspacePathError
from sandbank.providers.base import FileEntry, Sandbox

from ._helpers import UTC_ENV, entries_by_path, run_ok, written_outside
from .fixtures import ConformanceFixtures, SandboxFactory

__all__ = ["TarTests"]

OLD_FILE_MTIME = calendar.timegm((2015, 1, 2, 3, 4, 5))
OLD_DIR_MTIME = calendar.timegm((2016, 6, 7, 8, 9, 10))


async def _collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def _replay(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


def _member_names(archive: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        return [member.name for member in tar.getmembers()]


def _relative(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"escaped") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


async def _populate(box: Sandbox) -> None:
    """A tree with every kind of entry the round trip must preserve."""
    await box.write_file("src/main.py", "print('hello')\n")
    await box.write_file("bin/run.sh", "#!/bin/sh\necho ran\n", mode=0o755)
    await box.write_file("secret.key", b"key", mode=0o600)
    await box.write_file("data/blob.bin", bytes(range(256)) * 64)
    await box.write_file("ünï cødé/spaced name.txt", "ü\n")
    await box.write_file("empty.txt", b"")
    await box.mkdir("empty/nested")
    await run_ok(
        box,
        "ln -s src/main.py link_to_main && ln -s ../data bin/data_link && ln -s missing dangling"
        " && chmod 750 bin && chmod 700 data"
        " && touch -t 201501020304.05 data/blob.bin && touch -t 201606070809.10 empty/nested data",
        env=UTC_ENV,
    )


def _comparable(entries: dict[str, FileEntry]) -> dict[str, tuple[object, ...]]:
    return {
        path: (
            e.type,
            e.size if e.type == "file" else None,
            e.mode if e.type != "symlink" else None,
            int(e.mtime) if e.type != "symlink" else None,
            e.link_target,
        )
        for path, e in entries.items()
    }


class TarTests(ConformanceFixtures):
    """Workspaces move between sandboxes as tar streams, losslessly and safely."""

    async def test_tar_round_trip(self, make_sandbox: SandboxFactory) -> None:
        """export_tar then import_tar into a fresh sandbox keeps contents, modes, links, mtimes."""
        source = await make_sandbox()
        await _populate(source)
        archive = await _collect(source.export_tar())
        target = await make_sandbox()
        await target.import_tar(_replay(archive))
        before = await entries_by_path(source)
        after = await entries_by_path(target)
        assert _comparable(after) == _comparable(before)
        assert int(after["data/blob.bin"].mtime) == OLD_FILE_MTIME
        assert int(after["empty/nested"].mtime) == OLD_DIR_MTIME
        assert int(after["data"].mtime) == OLD_DIR_MTIME
        for path, entry in before.items():
            if entry.type == "file":
                assert await target.read_file(path) == await source.read_file(path), path
        assert (await target.exec(["./bin/run.sh"])).stdout == b"ran\n"

    async def test_export_tar_members_relative(self, sandbox: Sandbox) -> None:
        """export_tar yields a tar whose members are relative to the workspace root."""
        await _populate(sandbox)
        names = _member_names(await _collect(sandbox.export_tar()))
        assert all(not n.startswith("/") and ".." not in n.split("/") for n in names), names
        relative = {_relative(n) for n in names}
        expected = {"src/main.py", "bin/run.sh", "empty/nested", "link_to_main", "dangling"}
        assert expected <= relative

    async def test_export_tar_paths(self, make_sandbox: SandboxFactory) -> None:
        """export_tar(paths) exports only those paths (and what is under them)."""
        source = await make_sandbox()
        await _populate(source)
        archive = await _collect(source.export_tar(["data", "src/main.py"]))
        names = {_relative(n) for n in _member_names(archive)} - {"", "."}
        allowed = {"data", "data/blob.bin", "src", "src/main.py"}
        assert names <= allowed and {"data/blob.bin", "src/main.py"} <= names, names
        target = await make_sandbox()
        await target.import_tar(archive)
        assert await target.read_file("data/blob.bin") == bytes(range(256)) * 64
        assert "secret.key" not in await entries_by_path(target)

    async def test_import_tar_merges(self, sandbox: Sandbox) -> None:
        """import_tar (from bytes) replaces files it contains and keeps the others."""
        await sandbox.write_file("replaced.txt", b"old content that is longer")
        await sandbox.write_file("kept.txt", b"kept")
        await sandbox.import_tar(_tar(_file("replaced.txt", b"new"), _file("added/new.txt", b"n")))
        assert await sandbox.read_file("replaced.txt") == b"new"
        assert await sandbox.read_file("kept.txt") == b"kept"
        assert await sandbox.read_file("added/new.txt") == b"n"

    @pytest.mark.parametrize(
        "kind", ["parent", "nested-parent", "absolute", "through-new-symlink", "hardlink-outside"]
    )
    async def test_import_tar_refuses(self, sandbox: Sandbox, kind: str) -> None:
        """import_tar refuses members that would land outside the workspace."""
        name = f"sandbank-conformance-{uuid.uuid4().hex[:12]}"
        archive = {
            "parent": lambda: _tar(_file(f"../{name}")),
            "nested-parent": lambda: _tar(_file("ok.txt"), _file(f"sub/../../{name}")),
            "absolute": lambda: _tar(_file(f"/tmp/{name}")),
            "through-new-symlink": lambda: _tar(_link("out", "/tmp"), _file(f"out/{name}")),
            "hardlink-outside": lambda: _tar(_link(name, "/etc/passwd", tarfile.LNKTYPE)),
        }[kind]()
        with pytest.raises(WorkspacePathError):
            await sandbox.import_tar(archive)
        outside = await written_outside(sandbox, name)
        assert not outside, f"written outside the workspace: {outside}"

    async def test_import_tar_refuses_existing_symlink(self, sandbox: Sandbox) -> None:
        """import_tar refuses a member that goes through a symlink already in the workspace."""
        name = f"sandbank-conformance-{uuid.uuid4().hex[:12]}"
        await run_ok(sandbox, "ln -s /tmp tmp_link && ln -s ../.. up_link")
        for member in (f"tmp_link/{name}", f"up_link/tmp/{name}"):
            with pytest.raises(WorkspacePathError):
                await sandbox.import_tar(_tar(_file(member)))
        outside = await written_outside(sandbox, name)
        assert not outside, f"written outside the workspace: {outside}"
