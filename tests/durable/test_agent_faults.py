"""Durable agent sessions under faults: workers as real OS processes (SIGKILL is a real
crash), a private Temporal dev server, the local provider and a file store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sandbank.durable.session import Turn
from tests.durable import test_faults
from tests.durable.test_faults import Faults, host_workspace, sandbox_disk, send, wait_for

temporal = test_faults.temporal  # the fault tests' fixtures: a private server, workers
faults = test_faults.faults

AGENTS = ("--agents", "tests.durable.agent_support")


def prompt(*commands: str) -> Turn:
    """A prompt for the ``runner`` agent: one ``exec_command`` per line."""
    return Turn(message="\n".join(commands), handler="agent")


@pytest.mark.slow
async def test_worker_sigkill_mid_agent_turn(
    faults: Faults, bwrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while a tool call runs: the turn finishes on the next worker; no model call
    that had finished is made again, no command runs twice, nothing is lost."""
    model_log = tmp_path / "model.log"
    monkeypatch.setenv("SANDBANK_TEST_MODEL_LOG", str(model_log))
    state = faults.tmp / "local"
    a = await faults.worker("worker-a", state_dir=state, extra=AGENTS)
    mgr = faults.manager
    sid = await mgr.start("local", agent="runner", release_after=3600)
    first = await send(mgr, sid, prompt("echo hello > hello.txt"))
    assert first.error is None, first.error
    info = await mgr.describe(sid)
    assert info.sandbox_id
    workspace = await host_workspace(state, info.sandbox_id)

    turn = asyncio.create_task(
        send(
            mgr, sid,
            prompt(
                "echo one >> runs.log",
                "echo run >> slow.log; sleep 6; echo done > out.txt",
                "cat runs.log slow.log out.txt hello.txt",
            ),
        )
    )  # fmt: skip
    await wait_for(lambda: asyncio.to_thread((workspace / "slow.log").exists), 30, "the tool")
    a.sigkill()
    killed = time.monotonic()
    await faults.worker("worker-b", state_dir=state, extra=AGENTS)
    result = await asyncio.wait_for(turn, 120)
    print(f"\nkill -> agent turn finished on worker-b: {time.monotonic() - killed:.2f}s")
    assert result.error is None, result.error
    assert [c.exit_code for c in result.tool_calls] == [0, 0, 0], result.tool_calls
    assert result.reply == "ran 3 commands" and not result.recovered
    assert (workspace / "runs.log").read_text() == "one\n"
    assert (workspace / "slow.log").read_text() == "run\n"  # the killed call ran once
    assert (workspace / "out.txt").read_text() == "done\n"
    calls = model_log.read_text().splitlines()
    assert calls == ["turn 1 step 0", "turn 1 step 1"] + [f"turn 2 step {i}" for i in range(4)]
    after = await send(mgr, sid, prompt("cat hello.txt"))
    assert after.turn == 3 and after.error is None
    await mgr.stop(sid)


@pytest.mark.slow
async def test_agent_turn_on_another_worker_with_its_own_disk(faults: Faults, bwrap: str) -> None:
    """The sandbox's worker is gone for good: the next prompt lands on a worker with another
    data directory, which rebuilds the workspace from the checkpoint; the conversation goes
    on (the model sees the earlier turn)."""
    a = await faults.worker("worker-a", state_dir=faults.tmp / "local-a", extra=AGENTS)
    mgr = faults.manager
    sid = await mgr.start("local", agent="coder", release_after=3600, worker_timeout=5)
    first = await send(mgr, sid, Turn(message="first", handler="agent"))
    assert first.error is None and first.checkpoint, first.error
    a.stop()
    state_b = faults.tmp / "local-b"
    await faults.worker("worker-b", state_dir=state_b, extra=AGENTS)
    second = await send(mgr, sid, Turn(message="second", handler="agent"))
    assert second.error is None, second.error
    assert second.recovered
    info = await mgr.describe(sid)
    assert info.sandbox_id
    workspace = await host_workspace(state_b, info.sandbox_id)
    found = sorted(p.name.rsplit("-", 1)[0] for p in (workspace / "notes").iterdir())
    assert found == ["turn-1", "turn-2"]
    await mgr.stop(sid)


@pytest.mark.slow
async def test_sandbox_worker_killed_mid_agent_turn_with_its_own_disk(
    faults: Faults, bwrap: str
) -> None:
    """The worker holding the sandbox dies mid tool call and its disk goes with it: the turn
    runs again on the other worker, on a sandbox rebuilt from the last checkpoint."""
    states = {name: faults.tmp / name for name in ("worker-a", "worker-b")}
    workers = {n: await faults.worker(n, state_dir=d, extra=AGENTS) for n, d in states.items()}
    mgr = faults.manager
    sid = await mgr.start("local", agent="runner", release_after=3600, worker_timeout=5)
    first = await send(mgr, sid, prompt("echo hello > hello.txt"))
    assert first.error is None, first.error
    info = await mgr.describe(sid)
    assert info.sandbox_id
    [holder] = await sandbox_disk(states, info.sandbox_id)
    workspace = await host_workspace(states[holder], info.sandbox_id)
    turn = asyncio.create_task(
        send(mgr, sid, prompt("echo run >> runs.log; sleep 4", "cat runs.log hello.txt"))
    )
    await wait_for(lambda: asyncio.to_thread((workspace / "runs.log").exists), 30, "the tool")
    workers[holder].sigkill()
    result = await asyncio.wait_for(turn, 180)
    assert result.error is None, result.error
    assert result.recovered
    assert [c.exit_code for c in result.tool_calls] == [0, 0], result.tool_calls
    after = await mgr.describe(sid)
    survivor = next(n for n in states if n != holder)
    moved = await host_workspace(states[survivor], after.sandbox_id)
    assert (moved / "runs.log").read_text() == "run\n"  # once, on the rebuilt workspace
    assert (moved / "hello.txt").read_text() == "hello\n"
    await mgr.stop(sid)
