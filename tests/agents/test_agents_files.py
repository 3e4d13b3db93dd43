"""The session's file operations are native (no shell fallbacks) and behave like the SDK's."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents.sandbox.errors import InvalidManifestPathError, WorkspaceReadNotFoundError
from agents.sandbox.files import EntryKind
from sdk_helpers import answer, patch, run_turn, scripted, shell, tool_outputs

from sandbank.agents import FileTooLarge, SandbankSandboxClient
from sandbank.agents.session import SandbankSandboxSession
from sandbank.errors import ConfigurationError, WorkspacePathError
from sandbank.providers.base import Sandbox

W = Path("/workspace")


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
async def box(request: Any) -> AsyncIterator[Sandbox]:
    sandbox = await request.getfixturevalue(request.param).create()
    try:
        yield sandbox
    finally:
        await sandbox.destroy()


@pytest.fixture
def execs(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every command the sandbox runs, recorded."""
    seen: list[Any] = []
    real = box.exec

    async def recording(cmd: Any, **kwargs: Any) -> Any:
        seen.append(cmd)
        return await real(cmd, **kwargs)

    monkeypatch.setattr(box, "exec", recording)
    return seen


@pytest.fixture
def inner(box: Sandbox, client_for: Any) -> SandbankSandboxSession:
    session = client_for(box.provider, max_read_bytes=1024 * 1024).session_for(box)
    inner: SandbankSandboxSession = session._inner
    return inner


async def test_apply_patch_runs_no_command(box: Sandbox, execs: list[Any], client_for: Any):
    """Create, update, move and delete through apply_patch: the model's one command only."""
    session = client_for(box.provider).session_for(box)
    result = await run_turn(
        scripted(
            patch("*** Add File: a/one.txt\n+one\n*** Add File: two.txt\n+two\n", "c1"),
            patch("*** Update File: a/one.txt\n*** Move to: b/one.txt\n@@\n-one\n+ONE\n", "c2"),
            patch("*** Delete File: two.txt\n", "c3"),
            shell("cat b/one.txt; ls", "c4"),
            answer(),
        ),
        session=session,
    )
    outputs = tool_outputs(result)
    assert "ONE" in outputs[3] and "two.txt" not in outputs[3], outputs
    assert len(execs) == 1, execs
    assert sorted(e.path for e in await box.list_tree()) == ["a", "b", "b/one.txt"]


async def test_native_operations(box: Sandbox, inner: SandbankSandboxSession, execs: list[Any]):
    await inner.write(W / "d/f.txt", io.BytesIO(b"hello"))
    await inner.mkdir(W / "d/sub/deeper", parents=True)
    await box.exec("ln -s f.txt d/link && ln -s /etc out")
    listed = {e.path: e for e in await inner.ls(W / "d")}
    assert set(listed) == {"/workspace/d/f.txt", "/workspace/d/link", "/workspace/d/sub"}
    assert listed["/workspace/d/sub"].kind == EntryKind.DIRECTORY
    assert listed["/workspace/d/link"].kind == EntryKind.SYMLINK
    assert listed["/workspace/d/f.txt"].size == 5

    assert (await inner.read(W / "d/link")).read() == b"hello"
    assert await inner._read_bounded(W / "d/f.txt", max_bytes=3) == b"hel"
    assert await inner.same_file(W / "d/link", W / "d/f.txt")
    assert not await inner.same_file(W / "d/link", W / "d/f.txt", follow_symlinks=False)
    assert await inner.same_file(W / "d/sub/../f.txt", W / "d/f.txt", follow_symlinks=False)

    await inner.mv(W / "d/f.txt", W / "moved.txt")
    assert await box.read_file("moved.txt") == b"hello"
    with pytest.raises(WorkspaceReadNotFoundError):
        await inner.read(W / "d/f.txt")
    with pytest.raises(IsADirectoryError):
        await inner.mv(W / "moved.txt", W / "d/sub")
    with pytest.raises(FileExistsError):
        await inner._write_new_file(W / "moved.txt", io.BytesIO(b"again"))
    with pytest.raises(ConfigurationError, match="not empty"):
        await inner.rm(W / "d/sub")
    await inner.rm(W / "d", recursive=True)
    await inner.rm(W / "never-there", recursive=True)
    with pytest.raises(FileNotFoundError):
        await inner.rm(W / "never-there")
    with pytest.raises(WorkspacePathError):
        await inner.read(W / "out/hostname")
    with pytest.raises(InvalidManifestPathError):
        await inner.read(Path("../etc/hostname"))
    assert len(execs) == 1  # only the ln above


async def test_big_files_stream(box: Sandbox, inner: SandbankSandboxSession, tmp_path: Path):
    """A 20 MiB write streams as a tar; a read over max_read_bytes is refused by size."""
    data = os.urandom(20 * 1024 * 1024)
    await inner.write(W / "big.bin", io.BytesIO(data))
    assert await box.read_file("big.bin") == data
    with pytest.raises(FileTooLarge, match=r"20\.0 MiB, over the 1 MiB"):
        await inner.read(W / "big.bin")
    assert await inner._read_bounded(W / "big.bin", max_bytes=10) == data[:10]


async def test_workspace_tar_round_trip(box: Sandbox, inner: SandbankSandboxSession):
    await box.write_file("x/y.txt", b"tar me", mode=0o640)
    archive = await inner.persist_workspace()
    await box.remove("x")
    await inner.hydrate_workspace(archive)
    assert await box.read_file("x/y.txt") == b"tar me"
    assert {e.path: e.mode for e in await box.list_tree()}["x/y.txt"] == 0o640


async def test_resume_needs_the_store_it_was_written_to(local: Any, client_for: Any):
    """A state whose workspace is in a store fails clearly on a client without one."""
    first = await run_turn(scripted(shell("echo hi > f", "c1"), answer()), client=client_for(local))
    bare = SandbankSandboxClient(local)
    state = bare.deserialize_session_state(first.to_state().to_json()["sandbox"]["session_state"])
    with pytest.raises(ConfigurationError, match="client has none"):
        await run_turn(scripted(answer()), client=bare, session_state=state)
