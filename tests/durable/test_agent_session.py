"""Durable agent sessions: the SDK's runner in the session workflow, a real Temporal dev
server, the local provider, a file store and the scripted model (real SDK tool calls)."""

from __future__ import annotations

from typing import Any

from agents.sandbox import SandboxAgent
from agents.sandbox.capabilities import Filesystem, Shell

from sandbank.agents import model_for
from sandbank.durable.activities import SandboxActivities
from sandbank.durable.agents import AgentContext
from sandbank.durable.manager import SessionManager
from sandbank.durable.worker import build_worker


def coder(ctx: AgentContext) -> Any:
    return SandboxAgent(
        name=ctx.name, instructions="You edit files and run commands.",
        capabilities=[Filesystem(), Shell()], model=model_for(ctx.model_name),
    )  # fmt: skip


async def test_prompt_runs_tools_in_the_live_sandbox(client, task_queue, local_provider, store):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue, agents={"coder": coder}):
        sid = await mgr.start("local", agent="coder", release_after=600)
        first = await mgr.prompt(sid, "write a note")
        assert first.turn == 1 and first.checkpoint
        assert "scripted model" in first.final_output, first.final_output
        names = [c.name for c in first.tool_calls]
        assert names == ["exec_command", "apply_patch", "exec_command"], first.tool_calls
        assert first.tool_calls[0].exit_code == 0
        assert "pwd" in first.tool_calls[0].summary
        second = await mgr.prompt(sid, "again")
        assert second.turn == 2
        info = await mgr.describe(sid)
        assert info.sandbox_id is not None
        box = await local_provider.attach(info.sandbox_id)
        notes = sorted(e.path for e in await box.list_tree("notes"))
        assert len(notes) == 2 and notes[0].startswith("notes/turn-1-"), notes
        assert notes[1].startswith("notes/turn-2-")  # the conversation carried over
        history = [e.detail for e in await mgr.history(sid) if e.kind == "turn"]
        assert "apply_patch" in history[-1] and "exec_command" in history[-1]
        await mgr.stop(sid)
