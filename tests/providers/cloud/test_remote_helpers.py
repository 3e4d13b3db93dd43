"""The shared helpers of shell-string cloud providers, run for real: bash on this host, and
path resolution over a real directory tree with planted symlinks."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from sandbank.errors import ConfigurationError, PathNotFound, WorkspacePathError
from sandbank.providers._remote import (
    Kind,
    cwd_error,
    resolve_path,
    retryable_status,
    shell_join,
    spool_checked_tar,
)


def bash(script: str) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": "/usr/bin:/bin"}
    return subprocess.run(["/bin/bash", "-c", script], capture_output=True, env=env)


def test_shell_join_runs_argv_literally(tmp_path: Path) -> None:
    argv = ["printf", "%s|", "$HOME", "a b", "it's", "`x`", '"q"', "*", "-n", ""]
    done = bash(shell_join(argv, str(tmp_path), {"GREETING": "hi there $USER"}))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b'$HOME|a b|it\'s|`x`|"q"|*|-n||'
    env = bash(shell_join(["sh", "-c", 'echo "$GREETING"'], None, {"GREETING": "a'b $c"}))
    assert env.stdout == b"a'b $c\n"


def test_shell_join_missing_program_exits_127() -> None:
    done = bash(shell_join(["sandbank-no-such-program"]))
    assert done.returncode == 127
    assert b"sandbank-no-such-program" in done.stderr


def test_shell_join_refuses_a_cwd_outside_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "out").symlink_to(tmp_path)
    ok = bash(shell_join(["pwd"], str(ws / "sub"), workspace=str(ws)))
    assert ok.stdout.decode().strip() == str(ws / "sub")
    for cwd, error in [(ws / "out", WorkspacePathError), (ws / "none", PathNotFound)]:
        done = bash(shell_join(["touch", "ran"], str(cwd), workspace=str(ws)))
        assert isinstance(cwd_error(done.returncode, done.stderr, "x"), error), done
    assert not (tmp_path / "ran").exists()
    assert cwd_error(86, b"something else\n", "x") is None, "a command's own exit 86 stays"


def _lstat(path: str) -> tuple[Kind, str | None] | None:
    if not os.path.lexists(path):
        return None
    if os.path.islink(path):
        return "link", os.readlink(path)
    return ("dir" if os.path.isdir(path) else "file"), None


async def host_lstat(path: str) -> tuple[Kind, str | None] | None:
    return await asyncio.to_thread(_lstat, path)


def plant(tmp_path: Path) -> str:
    ws = str(tmp_path / "ws")
    os.makedirs(f"{ws}/a/b")
    Path(f"{ws}/a/b/f").write_text("x")
    os.symlink("a/b", f"{ws}/inner")
    os.symlink("../..", f"{ws}/a/up")
    os.symlink(str(tmp_path), f"{ws}/abs_out")
    os.symlink("f", f"{ws}/a/b/flink")
    os.symlink("loop", f"{ws}/loop")
    return ws


async def test_resolve_path_follows_links_inside_and_refuses_outside(tmp_path: Path) -> None:
    ws = plant(tmp_path)
    resolved = await resolve_path("inner/f", ws, host_lstat)
    assert (resolved.kind, resolved.real) == ("file", f"{ws}/a/b/f")
    link = await resolve_path("a/b/flink", ws, host_lstat, follow=False)
    assert (link.kind, link.real) == ("link", f"{ws}/a/b/flink")
    followed = await resolve_path("a/b/flink", ws, host_lstat)
    assert followed.real == f"{ws}/a/b/f"
    assert (await resolve_path("a/up", ws, host_lstat)).kind == "escape"
    assert (await resolve_path("abs_out/x", ws, host_lstat)).kind == "escape"
    assert (await resolve_path("a/up/ws/a", ws, host_lstat)).kind == "escape"
    missing = await resolve_path("inner/new/deeper", ws, host_lstat)
    assert (missing.kind, missing.real) == ("missing", f"{ws}/a/b/new/deeper")
    with pytest.raises(ConfigurationError):
        (await resolve_path("a/b/f/under", ws, host_lstat)).check()
    with pytest.raises(WorkspacePathError):
        (await resolve_path("a/up", ws, host_lstat)).check()
    with pytest.raises(PathNotFound):
        missing.check(allow_missing=False)
    with pytest.raises(WorkspacePathError, match="too many levels"):
        await resolve_path("loop", ws, host_lstat)


def test_spool_checked_tar_normalizes_and_reports_parents() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("./made/", "./made/x", "given/y"):
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
            tar.addfile(info, io.BytesIO(b"") if not name.endswith("/") else None)
    buffer.seek(0)
    spool, unchecked = spool_checked_tar(buffer)
    with spool, tarfile.open(fileobj=spool) as tar:
        assert tar.getnames() == ["made", "made/x", "given/y"]
    assert unchecked == {"given"}
    with pytest.raises(ConfigurationError, match="not a readable tar"):
        spool_checked_tar(io.BytesIO(b"not a tar at all" * 64))


def test_retryable_status() -> None:
    statuses = (200, 400, 401, 404, 429, 500, 503)
    assert [s for s in statuses if retryable_status(s)] == [429, 500, 503]
    assert not retryable_status(None)
