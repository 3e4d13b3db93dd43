"""Small helpers shared by the conformance tests."""

from __future__ import annotations

import os
import shlex
from typing import Literal

from sandbank.providers.base import FileEntry, Sandbox

__all__ = [
    "UTC_ENV",
    "ByteCounter",
    "assert_same_bytes",
    "entries_by_path",
    "path_exists",
    "read_host_file",
    "run_ok",
    "workspace_of",
    "written_outside",
]


def assert_same_bytes(actual: bytes, expected: bytes) -> None:
    """Fail, saying where they part, unless ``actual == expected``. (pytest's own diff of
    two long byte strings runs for minutes.)"""
    if actual == expected:
        return
    at = next((i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b), None)
    if at is None:
        at = min(len(actual), len(expected))
    raise AssertionError(
        f"{len(actual)} bytes where {len(expected)} were expected; they differ from offset "
        f"{at}: got {actual[at : at + 16]!r}, expected {expected[at : at + 16]!r}"
    )


UTC_ENV = {"TZ": "UTC0"}
"""Makes ``touch -t`` and ``date`` inside a sandbox independent of its time zone."""


async def run_ok(sandbox: Sandbox, cmd: str | list[str], **kwargs: object) -> bytes:
    """Run ``cmd`` and return its stdout; fail the test with both streams if it exits non-zero."""
    result = await sandbox.exec(cmd, timeout=60, **kwargs)  # type: ignore[arg-type]
    assert result.exit_code == 0, (
        f"setup command {cmd!r} exited {result.exit_code}: "
        f"stdout={result.stdout[-500:]!r} stderr={result.stderr[-500:]!r}"
    )
    return result.stdout


async def path_exists(sandbox: Sandbox, path: str) -> bool:
    """Whether ``path`` (absolute, or relative to the workdir) exists inside the sandbox."""
    result = await sandbox.exec(f"test -e {shlex.quote(path)} || test -L {shlex.quote(path)}")
    return result.exit_code == 0


async def workspace_of(sandbox: Sandbox) -> str:
    """Where commands in ``sandbox`` see the workspace root (``SandboxInfo.workspace``)."""
    return (await sandbox.info()).workspace


async def entries_by_path(sandbox: Sandbox, path: str = ".") -> dict[str, FileEntry]:
    return {entry.path: entry for entry in await sandbox.list_tree(path)}


class ByteCounter:
    """An ``on_output`` callback that counts bytes per stream without keeping them."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {"stdout": 0, "stderr": 0}
        self.chunks = 0

    def __call__(self, stream: Literal["stdout", "stderr"], data: bytes) -> None:
        self.counts[stream] += len(data)
        self.chunks += 1


async def written_outside(sandbox: Sandbox, name: str) -> list[str]:
    """Places outside the workspace where an entry called ``name`` appeared."""
    workspace = await workspace_of(sandbox)
    inside = [f"/{name}", f"/etc/{name}", f"/tmp/{name}", f"{workspace}/../{name}"]
    found = [p for p in inside if await path_exists(sandbox, p)]
    if sandbox.host_path is not None:
        found += _host_entries_outside(sandbox.host_path, name)
    return found


def _host_entries_outside(host_path: str, name: str) -> list[str]:
    """Host directories next to and around a host_path workspace holding ``name``."""
    root = os.path.realpath(host_path)
    parent, grandparent = os.path.dirname(root), os.path.dirname(os.path.dirname(root))
    candidates = [os.path.join(where, name) for where in (parent, grandparent, "/", "/etc", "/tmp")]
    return [f"host:{path}" for path in candidates if os.path.lexists(path)]


def read_host_file(path: str) -> bytes | None:
    """The content of a file on this host, or ``None`` if there is none."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
