"""An MCP server given to an agent, in durable sessions: a small stdio server on the ``mcp``
package runs on the worker; its tool list and each call are activities. Run under both
pinned SDK versions (0.24.0, and 0.22.3 in the venv ``scripts/setup.sh`` makes)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Replayer

from sandbank.durable.agents import MCP_CALL, MCP_LIST
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import SessionWorkflow, Step, Turn
from sandbank.durable.worker import workflow_runner
from tests.durable import test_faults
from tests.durable.test_agent_session import worker
from tests.durable.test_faults import Faults, send, wait_for

temporal = test_faults.temporal
faults = test_faults.faults
AGENTS = ("--agents", "tests.durable.agent_support")


async def test_agent_turn_calls_an_mcp_tool(
    client, task_queue, local_provider, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "mcp.log"
    monkeypatch.setenv("SANDBANK_TEST_MCP_LOG", str(log))
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        sid = await mgr.start("local", agent="notes", release_after=600)
        first = await mgr.prompt(sid, "buy milk")
        assert first.final_output == "tool said: noted 'buy milk': 1 notes", first.final_output
        assert [c.name for c in first.tool_calls] == ["add_note"], first.tool_calls
        assert "text=buy milk" in first.tool_calls[0].summary
        second = await mgr.prompt(sid, "call mom")
        assert second.final_output == "tool said: noted 'call mom': 2 notes"
        assert log.read_text().splitlines() == [
            "start buy milk", "done buy milk", "start call mom", "done call mom",
        ]  # fmt: skip
        handle = client.get_workflow_handle(sid)
        history = await handle.fetch_history()
        names = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        assert names.count(MCP_CALL) == 2 and names.count(MCP_LIST) == 2, names
        # Replay runs the turns from history alone: no MCP call is made again.
        await Replayer(
            workflows=[SessionWorkflow], workflow_runner=workflow_runner()
        ).replay_workflow(history)
        assert len(log.read_text().splitlines()) == 4
        await mgr.stop(sid)


async def test_failing_mcp_tool_is_told_to_the_model(
    client, task_queue, local_provider, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tool raises (a negative sleep): the model reads the error, the turn ends with
    its answer and the session keeps serving."""
    monkeypatch.setenv("SANDBANK_TEST_MCP_LOG", str(tmp_path / "mcp.log"))
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        sid = await mgr.start("local", agent="notes", release_after=600)
        bad = await mgr.prompt(sid, "x|-1")
        assert bad.final_output == "tool said: Error executing tool add_note", bad.final_output
        after = await mgr.prompt(sid, "still here")
        assert "noted 'still here'" in after.final_output
        await mgr.stop(sid)


async def test_mcp_server_that_does_not_start(
    client, task_queue, local_provider, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn fails with what went wrong and which server; the session keeps serving."""
    monkeypatch.setenv("SANDBANK_TEST_MCP_LOG", str(tmp_path / "mcp.log"))
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        sid = await mgr.start("local", agent="notes-missing", release_after=600)
        bad = await asyncio.wait_for(send(mgr, sid, Turn(message="x", handler="agent")), 60)
        assert bad.error_type == "ConfigurationError", (bad.error_type, bad.error)
        assert "MCP server 'missing' of agent 'notes-missing' did not start" in bad.error
        after = await send(mgr, sid, Turn(steps=[Step("exec", cmd="echo alive")]))
        assert after.error is None and after.steps[0].stdout == "alive\n"
        await mgr.stop(sid)


@pytest.mark.slow
async def test_worker_sigkill_mid_mcp_call(
    faults: Faults, bwrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while an MCP call runs: the call is not made again (an MCP tool may not be
    idempotent); the model is told it was cut off, the turn finishes on the next worker,
    and a call that had finished is not repeated by the replay there."""
    log = tmp_path / "mcp.log"
    monkeypatch.setenv("SANDBANK_TEST_MCP_LOG", str(log))
    state = faults.tmp / "local"
    a = await faults.worker("worker-a", state_dir=state, extra=AGENTS)
    mgr = faults.manager
    sid = await mgr.start("local", agent="notes", release_after=3600)
    first = await send(mgr, sid, Turn(message="before", handler="agent"))
    assert first.error is None and "noted 'before': 1 notes" in first.reply, first
    turn = asyncio.create_task(send(mgr, sid, Turn(message="slow|30", handler="agent")))
    started = lambda: asyncio.to_thread(lambda: "start slow" in log.read_text())  # noqa: E731
    await wait_for(started, 60, "the MCP call")
    a.sigkill()
    killed = time.monotonic()
    await faults.worker("worker-b", state_dir=state, extra=AGENTS)
    result = await asyncio.wait_for(turn, 120)
    print(f"\nkill -> MCP turn finished on worker-b: {time.monotonic() - killed:.2f}s")
    assert result.error is None, result.error
    assert "was cut off" in result.reply and "at most once" in result.reply, result.reply
    assert log.read_text().splitlines() == ["start before", "done before", "start slow"]
    after = await send(mgr, sid, Turn(message="after", handler="agent"))
    assert after.error is None and "noted 'after': 2 notes" in after.reply, after
    assert after.turn == 3
    await mgr.stop(sid)
