"""Bad input ends in a clear error, and the next run on the same sandbox still works."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import agents
import pytest
from agents.exceptions import UserError
from agents.testing import function_call
from sdk_helpers import answer, patch, run_python, run_turn, scripted, shell, tool_outputs

from sandbank.providers.base import Sandbox, SandboxStatus

SDK_VERSION = tuple(int(part) for part in agents.__version__.split(".")[:2])


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
async def live(request: Any, client_for: Any) -> AsyncIterator[tuple[Sandbox, Any]]:
    """A sandbox we own, and an SDK session on it (``session_for``)."""
    provider = request.getfixturevalue(request.param)
    box = await provider.create()
    try:
        yield box, client_for(provider).session_for(box)
    finally:
        await box.destroy()


async def still_works(session: Any) -> None:
    result = await run_turn(scripted(shell("echo still-alive", "ok1"), answer()), session=session)
    assert "still-alive" in tool_outputs(result)[0]


async def test_live_session_keeps_its_lifecycle(live: tuple[Sandbox, Any]):
    """A handed-in sandbox survives the run (no stop, shutdown or delete) and keeps files."""
    box, session = live
    result = await run_turn(
        scripted(patch("*** Add File: kept.txt\n+kept\n", "c1"), answer()), session=session
    )
    assert "kept.txt" in tool_outputs(result)[0]
    assert not box.closed and await box.status() == SandboxStatus.RUNNING
    assert box.id in {info.id for info in await box.provider.list()}
    assert (await box.read_file("kept.txt")).rstrip() == b"kept"
    assert "sandbox" not in result.to_state().to_json()  # nothing for the SDK to resume
    await still_works(session)


async def test_paths_outside_the_workspace(live: tuple[Sandbox, Any], tmp_path: Path):
    box, session = live
    model = scripted(
        shell("ln -s /etc esc && ln -s .. up && echo linked", "c1"),
        patch("*** Add File: ../outside.txt\n+x\n", "c2"),
        patch("*** Add File: /etc/evil.txt\n+x\n", "c3"),
        patch("*** Add File: esc/evil.txt\n+x\n", "c4"),
        patch("*** Add File: up/evil.txt\n+x\n", "c5"),
        patch("*** Update File: esc/hostname\n@@\n-a\n+b\n", "c6"),
        [function_call("view_image", {"path": "esc/hostname"}, call_id="c8")],
        answer(),
    )
    result = await run_turn(model, session=session)
    outputs = tool_outputs(result)
    print(outputs)
    assert "linked" in outputs[0]
    for out in outputs[1:]:
        assert any(
            word in out for word in ("stays inside", "escape", "Invalid path", "WorkspacePathError")
        ), out
    assert not await asyncio.to_thread(Path("/etc/evil.txt").exists)
    probe = await box.exec("ls /etc/evil.txt /evil.txt ../outside.txt 2>&1; true")
    assert probe.text.count("No such file") == 3, probe.text
    names = {e.path for e in await box.list_tree()}
    assert names == {"esc", "up"}, names
    await still_works(session)


async def test_view_image_outside_the_workspace(live: tuple[Sandbox, Any]):
    """0.24 answers the model with a tool error; 0.22.3 ends the run with a UserError."""
    _, session = live
    model = scripted(
        [function_call("view_image", {"path": "../../etc/hostname"}, call_id="c1")], answer()
    )
    if SDK_VERSION >= (0, 24):
        result = await run_turn(model, session=session)
        assert "Invalid path" in tool_outputs(result)[0]
    else:
        with pytest.raises(UserError, match="must not escape root"):
            await run_turn(model, session=session)
    await still_works(session)


async def test_model_error_leaves_nothing_behind(local: Any, client_for: Any):
    """A model that raises fails the run with its error; the run's sandbox is deleted."""
    client = client_for(local)
    model = scripted(shell("echo before", "c1"), RuntimeError("the model service fell over"))
    with pytest.raises(RuntimeError, match="fell over"):
        await run_turn(model, client=client)
    assert await local.list() == []  # this provider's own data dir: only this test's sandboxes


async def test_model_error_on_a_live_sandbox(live: tuple[Sandbox, Any]):
    box, session = live
    model = scripted(shell("echo before > before.txt", "c1"), ValueError("bad model output"))
    with pytest.raises(ValueError, match="bad model output"):
        await run_turn(model, session=session)
    assert await box.read_file("before.txt") == b"before\n"
    await still_works(session)


BIG_FILE = """
import asyncio, json, resource, sys
from agents import RunConfig, Runner, set_tracing_disabled
from agents.sandbox import SandboxAgent, SandboxRunConfig
from agents.sandbox.capabilities import Filesystem, Shell
from agents.testing import ScriptedModel, assistant_message, function_call
from openai.types.responses import ResponseCustomToolCall
from sandbank.agents import SandbankSandboxClient
from sandbank.providers.local import LocalProvider
from sandbank.snapshots import SnapshotStore

def shell(cmd, cid, **kw):
    return [function_call("exec_command", {"cmd": cmd, **kw}, call_id=cid)]

async def run(session, *steps):
    agent = SandboxAgent(name="coder", capabilities=[Filesystem(), Shell()])
    config = RunConfig(model=ScriptedModel(list(steps)), tracing_disabled=True,
                       sandbox=SandboxRunConfig(session=session))
    result = await Runner.run(agent, "go", run_config=config)
    return [str(i.output) for i in result.new_items if hasattr(i, "output")]

async def main(store_path, data_dir):
    set_tracing_disabled(True)
    async with await SnapshotStore.open(store_path, cache_dir=False) as store:
        provider = LocalProvider(state_dir=data_dir)
        box = await provider.create()
        client = SandbankSandboxClient(provider, store=store)
        session = client.session_for(box)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        upd = "*** Begin Patch\\n*** Update File: big.bin\\n@@\\n-a\\n+b\\n*** End Patch\\n"
        outputs = await run(
            session,
            shell("head -c 300000000 /dev/urandom > big.bin && wc -c big.bin", "c1",
                  yield_time_ms=120000),
            [function_call("view_image", {"path": "big.bin"}, call_id="c2")],
            [ResponseCustomToolCall(type="custom_tool_call", name="apply_patch",
                                    call_id="c3", input=upd)],
            shell("cat big.bin", "c4", yield_time_ms=120000),
            [assistant_message("done")],
        )
        await session.stop()  # persists the workspace to the store, streaming
        snap = await store.get(session.state.snapshot.snapshot_id)
        again = await run(session, shell("wc -c < big.bin", "d1"), [assistant_message("ok")])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await box.destroy()
        print(json.dumps({"outputs": outputs, "again": again, "before_kib": before,
                          "peak_kib": peak, "logical_bytes": snap.stats.logical_bytes}))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_300_mb_file_written_by_a_tool(tmp_path: Path, bwrap: str):
    """A tool writes 300 MB: reads of it are refused with a size error, output is capped,
    the snapshot streams it, memory stays far below its size, and the next run works."""
    out = await run_python(BIG_FILE, str(tmp_path / "store"), str(tmp_path / "data"))
    write, image, update, cat = out["outputs"]
    assert "300000000 big.bin" in write
    assert "FileTooLarge" in image
    assert "286.1 MiB" in update and "over the 64 MiB" in update, update
    assert len(cat) < 1_100_000 and "[sandbank: output cut after 1048576 bytes" in cat
    assert out["logical_bytes"] == 300_000_000
    assert "300000000" in out["again"][0]
    grown_mib = (out["peak_kib"] - out["before_kib"]) / 1024
    print(f"peak RSS grew by {grown_mib:.0f} MiB for a 286 MiB file")
    # The store's snapshot works in a constant ~135 MiB (8 workers, a pack being written),
    # measured the same for 100, 300 and 600 MiB files; the file itself is never held whole.
    assert grown_mib < 200, grown_mib
