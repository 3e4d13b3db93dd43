"""Conformance tests for paths that leave the workspace: '..', absolute paths, symlinks.

Every operation that takes a path refuses one that resolves outside the workspace with
``WorkspacePathError``, whether lexically (``../x``, ``/etc/passwd``) or through a symlink
in the workspace (to ``/etc``, to ``../..``, or a link naming a file outside), and nothing
is read, written or created outside.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable

import pytest

from sandbank.errors import WorkspacePathError
from sandbank.providers.base import Sandbox

from ._helpers import path_exists, run_ok, written_outside
from .fixtures import ConformanceFixtures

__all__ = ["PathEscapeTests"]


async def _escape_links(sandbox: Sandbox, name: str) -> None:
    """Links out of the workspace: to /etc, to ../.., to a file and to a missing file."""
    await run_ok(
        sandbox,
        f"ln -s /etc etc_link && ln -s ../.. up_link && ln -s /etc/passwd file_link "
        f"&& ln -s /tmp/{name} dangling_link && ln -s /tmp tmp_link",
    )


async def _refusals(
    sandbox: Sandbox, paths: list[str], operation: Callable[[str], Awaitable[object]]
) -> list[str]:
    """The paths among ``paths`` that ``operation`` did not refuse with WorkspacePathError."""
    problems = []
    for path in paths:
        try:
            outcome = await operation(path)
        except WorkspacePathError:
            continue
        except Exception as exc:
            problems.append(f"{path!r}: raised {type(exc).__name__}: {exc}")
        else:
            problems.append(f"{path!r}: accepted, returned {str(outcome)[:80]!r}")
    return problems


class PathEscapeTests(ConformanceFixtures):
    """No path given to the API reaches outside the workspace."""

    @pytest.fixture
    def outside_name(self) -> str:
        return f"sandbank-conformance-{uuid.uuid4().hex[:12]}"

    async def test_read_file_escapes(self, sandbox: Sandbox, outside_name: str) -> None:
        """read_file refuses '..', absolute and symlinked paths that leave the workspace."""
        await _escape_links(sandbox, outside_name)
        paths = ["../x", "/etc/passwd", "etc_link/passwd", "up_link/etc/passwd", "file_link"]
        problems = await _refusals(sandbox, paths, sandbox.read_file)
        assert not problems, "not refused:\n" + "\n".join(problems)

    async def test_write_file_escapes(self, sandbox: Sandbox, outside_name: str) -> None:
        """write_file refuses paths that leave the workspace and writes nothing outside."""
        await _escape_links(sandbox, outside_name)
        name = outside_name
        paths = [
            f"../{name}",
            f"/etc/{name}",
            f"etc_link/{name}",
            f"up_link/{name}",
            f"up_link/tmp/{name}",
            f"tmp_link/{name}",
            "dangling_link",
        ]

        async def write(path: str) -> None:
            await sandbox.write_file(path, b"escaped")

        problems = await _refusals(sandbox, paths, write)
        assert not problems, "not refused:\n" + "\n".join(problems)
        outside = await written_outside(sandbox, name)
        assert not outside, f"written outside the workspace: {outside}"

    async def test_mkdir_escapes(self, sandbox: Sandbox, outside_name: str) -> None:
        """mkdir refuses paths that leave the workspace and creates nothing outside."""
        await _escape_links(sandbox, outside_name)
        name = outside_name
        paths = [f"../{name}", f"/etc/{name}", f"etc_link/{name}", f"up_link/{name}"]
        paths += [f"tmp_link/{name}", f"up_link/tmp/{name}/sub"]
        problems = await _refusals(sandbox, paths, sandbox.mkdir)
        assert not problems, "not refused:\n" + "\n".join(problems)
        outside = await written_outside(sandbox, name)
        assert not outside, f"written outside the workspace: {outside}"

    async def test_remove_escapes(self, sandbox: Sandbox, outside_name: str) -> None:
        """remove refuses paths that leave the workspace and deletes nothing outside."""
        await _escape_links(sandbox, outside_name)
        canary = f"/tmp/{outside_name}-canary"
        made = await sandbox.exec(f"echo keep > {canary}")
        canary_persists = made.exit_code == 0 and await path_exists(sandbox, canary)
        passwd_exists = await path_exists(sandbox, "/etc/passwd")
        name = os.path.basename(canary)
        paths = [f"../{outside_name}", "/etc/passwd", f"etc_link/{outside_name}"]
        paths += [f"up_link/{outside_name}", f"tmp_link/{name}", f"up_link/tmp/{name}"]
        try:
            problems = await _refusals(sandbox, paths, sandbox.remove)
            assert not problems, "not refused:\n" + "\n".join(problems)
            if canary_persists:
                assert await path_exists(sandbox, canary), "remove deleted a file outside"
            if passwd_exists:
                assert await path_exists(sandbox, "/etc/passwd"), "remove deleted /etc/passwd"
        finally:
            # Without isolation the sandbox's /tmp is the host's: leave nothing behind there.
            await sandbox.exec(["rm", "-f", canary])

    async def test_exec_cwd_escapes(self, sandbox: Sandbox, outside_name: str) -> None:
        """exec refuses a cwd that leaves the workspace, through '..', '/', or a symlink."""
        await _escape_links(sandbox, outside_name)
        paths = ["..", "/etc", "/", "etc_link", "up_link", "tmp_link"]

        async def run_in(path: str) -> object:
            return await sandbox.exec("pwd", cwd=path)

        problems = await _refusals(sandbox, paths, run_in)
        assert not problems, "not refused:\n" + "\n".join(problems)

    async def test_list_tree_escapes(self, sandbox: Sandbox, outside_name: str) -> None:
        """list_tree refuses a directory outside the workspace, through '..' or a symlink."""
        await _escape_links(sandbox, outside_name)
        paths = ["..", "/etc", "etc_link", "up_link", "up_link/etc"]
        problems = await _refusals(sandbox, paths, sandbox.list_tree)
        assert not problems, "not refused:\n" + "\n".join(problems)
