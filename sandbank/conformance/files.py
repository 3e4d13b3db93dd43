"""Conformance tests for the file operations: read, write, list_tree, mkdir, remove."""

from __future__ import annotations

import calendar
import hashlib
import os
import time

import pytest

from sandbank.errors import ConfigurationError, PathNotFound
from sandbank.providers.base import Sandbox

from ._helpers import UTC_ENV, assert_same_bytes, entries_by_path, path_exists, run_ok
from .fixtures import ConformanceFixtures

__all__ = ["FileTests"]

MiB = 1024 * 1024


class FileTests(ConformanceFixtures):
    """Files round-trip byte for byte, and list_tree reports what is really there."""

    async def test_write_read_text(self, sandbox: Sandbox) -> None:
        """A str written is read back as its UTF-8 bytes."""
        await sandbox.write_file("hello.txt", "héllo\nwörld\n")
        assert await sandbox.read_file("hello.txt") == "héllo\nwörld\n".encode()

    async def test_empty_file(self, sandbox: Sandbox) -> None:
        """An empty file round-trips and is listed with size 0."""
        await sandbox.write_file("empty", b"")
        assert await sandbox.read_file("empty") == b""
        entry = (await entries_by_path(sandbox))["empty"]
        assert (entry.type, entry.size) == ("file", 0)

    async def test_binary_file(self, sandbox: Sandbox) -> None:
        """Binary content (every byte value, NULs, CR/LF) round-trips unchanged."""
        data = bytes(range(256)) * 16 + b"\r\n\x00\r"
        await sandbox.write_file("data.bin", data)
        assert_same_bytes(await sandbox.read_file("data.bin"), data)

    async def test_large_file(self, sandbox: Sandbox) -> None:
        """A 100 MiB file round-trips (same size and SHA-256)."""
        size = 100 * MiB
        data = b"".join(os.urandom(MiB) for _ in range(100))
        expected = hashlib.sha256(data).hexdigest()
        await sandbox.write_file("big.bin", data, mode=0o644)
        del data
        entry = (await entries_by_path(sandbox))["big.bin"]
        assert entry.size == size
        back = await sandbox.read_file("big.bin")
        assert len(back) == size
        assert hashlib.sha256(back).hexdigest() == expected

    async def test_overwrite(self, sandbox: Sandbox) -> None:
        """Writing an existing file replaces its whole content (a shorter write truncates)."""
        await sandbox.write_file("f.txt", b"a much longer first version\n")
        await sandbox.write_file("f.txt", b"short\n")
        assert await sandbox.read_file("f.txt") == b"short\n"

    async def test_write_creates_parents(self, sandbox: Sandbox) -> None:
        """write_file creates missing parent directories."""
        await sandbox.write_file("a/b/c/deep.txt", b"deep")
        entries = await entries_by_path(sandbox)
        assert [entries[p].type for p in ("a", "a/b", "a/b/c", "a/b/c/deep.txt")] == [
            "dir",
            "dir",
            "dir",
            "file",
        ]
        assert await sandbox.read_file("a/b/c/deep.txt") == b"deep"

    @pytest.mark.parametrize(
        "name",
        ["with space.txt", "dir with space/file name.txt", "ünïcødé/日本語 ✓.txt"],
        ids=["space", "space-dir", "unicode"],
    )
    async def test_special_names(self, sandbox: Sandbox, name: str) -> None:
        """Names with spaces and non-ASCII characters work for write, read, list and exec."""
        await sandbox.write_file(name, name.encode())
        assert await sandbox.read_file(name) == name.encode()
        assert name in await entries_by_path(sandbox)
        assert (await sandbox.exec(["cat", name])).stdout == name.encode()

    async def test_non_utf8_name(self, sandbox: Sandbox) -> None:
        """A file name that is not UTF-8 is listed, decoded with surrogateescape (os.fsdecode)."""
        await run_ok(sandbox, "printf x > \"$(printf 'bad\\377name')\"")
        names = [entry.path for entry in await sandbox.list_tree()]
        assert "bad\udcffname" in names, f"expected 'bad\\udcffname' in {names!r}"

    async def test_exec_bit(self, sandbox: Sandbox) -> None:
        """mode=0o755 on write_file makes a script executable and is listed as 0o755."""
        await sandbox.write_file("run.sh", '#!/bin/sh\necho ran "$@"\n', mode=0o755)
        result = await sandbox.exec(["./run.sh", "x"])
        assert (result.exit_code, result.stdout) == (0, b"ran x\n")
        assert (await entries_by_path(sandbox))["run.sh"].mode == 0o755

    async def test_default_mode(self, sandbox: Sandbox) -> None:
        """write_file without mode makes a new file 0o644 and keeps an existing file's mode."""
        await sandbox.write_file("new.txt", b"n")
        await sandbox.write_file("kept.sh", b"k", mode=0o750)
        await sandbox.write_file("kept.sh", b"rewritten")
        entries = await entries_by_path(sandbox)
        assert (entries["new.txt"].mode, entries["kept.sh"].mode) == (0o644, 0o750)

    async def test_write_mode(self, sandbox: Sandbox) -> None:
        """mode= sets exactly those permission bits (0o600, 0o640)."""
        await sandbox.write_file("secret", b"s", mode=0o600)
        await sandbox.write_file("shared", b"s", mode=0o640)
        entries = await entries_by_path(sandbox)
        assert (entries["secret"].mode, entries["shared"].mode) == (0o600, 0o640)

    async def test_list_tree_stat(self, sandbox: Sandbox) -> None:
        """list_tree reports type, size, permission bits and mtime of each entry."""
        await sandbox.write_file("d/f.txt", b"12345")
        await run_ok(sandbox, "chmod 604 d/f.txt; touch -t 202001020304.05 d/f.txt", env=UTC_ENV)
        entry = (await entries_by_path(sandbox))["d/f.txt"]
        assert (entry.type, entry.size, entry.mode) == ("file", 5, 0o604)
        assert int(entry.mtime) == calendar.timegm((2020, 1, 2, 3, 4, 5))
        assert entry.link_target is None

    async def test_new_file_mtime_is_now(self, sandbox: Sandbox) -> None:
        """A file just written has an mtime close to now (clocks agree within 5 minutes)."""
        await sandbox.write_file("now.txt", b"now")
        entry = (await entries_by_path(sandbox))["now.txt"]
        assert abs(entry.mtime - time.time()) < 300

    async def test_list_tree_subdir(self, sandbox: Sandbox) -> None:
        """list_tree(path) lists only entries under path, with root-relative paths, sorted."""
        await sandbox.write_file("sub/b.txt", b"b")
        await sandbox.write_file("sub/a/x.txt", b"x")
        await sandbox.write_file("other.txt", b"o")
        paths = [entry.path for entry in await sandbox.list_tree("sub")]
        assert paths == ["sub/a", "sub/a/x.txt", "sub/b.txt"]

    async def test_list_tree_missing(self, sandbox: Sandbox) -> None:
        """list_tree of a missing directory raises PathNotFound."""
        with pytest.raises(PathNotFound):
            await sandbox.list_tree("no/such/dir")

    async def test_symlink_listed(self, sandbox: Sandbox) -> None:
        """Symlinks made by commands are listed as symlinks with their target, not followed."""
        await sandbox.write_file("target.txt", b"t")
        await sandbox.mkdir("realdir")
        await sandbox.write_file("realdir/inside.txt", b"i")
        await run_ok(sandbox, "ln -s target.txt link; ln -s realdir dirlink; ln -s /etc/passwd abs")
        entries = await entries_by_path(sandbox)
        for path, target in [
            ("link", "target.txt"),
            ("dirlink", "realdir"),
            ("abs", "/etc/passwd"),
        ]:
            assert entries[path].type == "symlink", path
            assert entries[path].link_target == target, path
        assert not any(p.startswith("dirlink/") for p in entries), "list_tree followed a symlink"

    async def test_list_tree_of_a_symlink(self, sandbox: Sandbox) -> None:
        """list_tree of a symlink to a directory inside lists that directory under the link."""
        await sandbox.write_file("realdir/inside.txt", b"i")
        await run_ok(sandbox, "ln -s realdir dirlink")
        assert [e.path for e in await sandbox.list_tree("dirlink")] == ["dirlink/inside.txt"]

    async def test_empty_dir_listed(self, sandbox: Sandbox) -> None:
        """mkdir creates parents; empty directories are listed; mkdir again is fine."""
        await sandbox.mkdir("empty/nested")
        await sandbox.mkdir("empty/nested")
        entries = await entries_by_path(sandbox)
        assert entries["empty"].type == "dir"
        assert entries["empty/nested"].type == "dir"
        assert await path_exists(sandbox, "empty/nested")

    async def test_read_missing(self, sandbox: Sandbox) -> None:
        """Reading a missing file raises PathNotFound (also a FileNotFoundError)."""
        with pytest.raises(PathNotFound):
            await sandbox.read_file("missing.txt")
        with pytest.raises(FileNotFoundError):
            await sandbox.read_file("missing/dir/file.txt")

    async def test_read_directory(self, sandbox: Sandbox) -> None:
        """read_file of a directory raises ConfigurationError (not PathNotFound)."""
        await sandbox.mkdir("adir")
        with pytest.raises(ConfigurationError) as caught:
            await sandbox.read_file("adir")
        assert not isinstance(caught.value, PathNotFound)

    async def test_list_tree_file(self, sandbox: Sandbox) -> None:
        """list_tree of a file raises ConfigurationError (not PathNotFound)."""
        await sandbox.write_file("f.txt", b"x")
        with pytest.raises(ConfigurationError) as caught:
            await sandbox.list_tree("f.txt")
        assert not isinstance(caught.value, PathNotFound)

    async def test_remove_file(self, sandbox: Sandbox) -> None:
        """remove deletes a file."""
        await sandbox.write_file("f.txt", b"x")
        await sandbox.remove("f.txt")
        assert "f.txt" not in await entries_by_path(sandbox)
        with pytest.raises(PathNotFound):
            await sandbox.read_file("f.txt")

    async def test_remove_tree(self, sandbox: Sandbox) -> None:
        """remove deletes a directory with everything in it."""
        await sandbox.write_file("tree/a/b.txt", b"x")
        await sandbox.mkdir("tree/empty")
        await sandbox.write_file("keep.txt", b"k")
        await sandbox.remove("tree")
        assert list(await entries_by_path(sandbox)) == ["keep.txt"]

    async def test_remove_symlink_keeps_target(self, sandbox: Sandbox) -> None:
        """remove on a symlink deletes the link, never what it points to."""
        await sandbox.write_file("realdir/keep.txt", b"k")
        await run_ok(sandbox, "ln -s realdir dirlink; ln -s realdir/keep.txt filelink")
        await sandbox.remove("dirlink")
        await sandbox.remove("filelink")
        entries = await entries_by_path(sandbox)
        assert "dirlink" not in entries and "filelink" not in entries
        assert await sandbox.read_file("realdir/keep.txt") == b"k"

    async def test_remove_missing(self, sandbox: Sandbox) -> None:
        """remove of a missing path raises PathNotFound."""
        with pytest.raises(PathNotFound):
            await sandbox.remove("missing.txt")
