"""Durable agent sessions: the SDK's runner in the session workflow, a real Temporal dev
server, real providers, a file store and scripted models making real SDK tool calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Replayer

from sandbank.durable import types as t
from sandbank.durable.activities import SandboxActivities
from sandbank.durable.agents import MAX_MODEL_CALLS
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import SessionWorkflow, Step, Turn
from sandbank.durable.worker import build_worker, workflow_runner
from sandbank.errors import SandbankError
from tests.durable.agent_support import AGENTS, INSTRUCTIONS


async def files(provider: Any, sandbox_id: str) -> dict[str, bytes]:
    """Every regular file of a sandbox's workspace, by path."""
    box = await provider.attach(sandbox_id)
    entries = await box.list_tree()
    return {e.path: await box.read_file(e.path) for e in entries if e.type == "file"}


def notes(workspace: dict[str, bytes]) -> list[str]:
    return sorted(p.rsplit("-", 1)[0] for p in workspace if p.startswith("notes/"))


def worker(client: Any, task_queue: str, providers: dict[str, Any], store: Any) -> Any:
    acts = SandboxActivities(providers, store)
    return build_worker(client, acts, task_queue=task_queue, agents=AGENTS)


async def test_prompt_runs_tools_in_the_live_sandbox(client, task_queue, local_provider, store):
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        sid = await mgr.start("local", agent="coder", release_after=600)
        first = await mgr.prompt(sid, "write a note")
        assert first.turn == 1 and first.checkpoint
        assert "scripted model" in first.final_output, first.final_output
        names = [c.name for c in first.tool_calls]
        assert names == ["exec_command", "apply_patch", "exec_command"], first.tool_calls
        assert [c.exit_code for c in first.tool_calls] == [0, None, 0]
        assert "pwd" in first.tool_calls[0].summary
        assert "Add File: notes/turn-1-" in first.tool_calls[1].summary
        info = await mgr.describe(sid)
        second = await mgr.prompt(sid, "again", attachments={"input.txt": "attached\n"})
        assert second.turn == 2
        after = await mgr.describe(sid)
        assert after.sandbox_id == info.sandbox_id  # the sandbox stayed live between turns
        workspace = await files(local_provider, after.sandbox_id)
        # Turn 2's note is numbered 2: the model saw turn 1 (the conversation carried over).
        assert notes(workspace) == ["notes/turn-1", "notes/turn-2"], workspace.keys()
        assert workspace["input.txt"] == b"attached\n"
        history = [e.detail for e in await mgr.history(sid) if e.kind == "turn"]
        assert "tool calls: exec_command(cmd=pwd && ls -la) -> 0; apply_patch(" in history[-1]
        await mgr.stop(sid)


async def test_history_holds_no_instructions_or_tool_schemas(
    client, task_queue, local_provider, store
):
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        sid = await mgr.start("local", agent="runner", release_after=600)
        sizes = []
        for n in range(3):
            before = await _history_bytes(mgr, sid)
            result = await mgr.prompt(
                sid, "\n".join(f"echo {n}-{i}" for i in range(4)) + "\nexit 3"
            )
            assert [c.exit_code for c in result.tool_calls] == [0] * 4 + [3]
            assert all(0 < c.seconds < 30 for c in result.tool_calls), result.tool_calls
            sizes.append(await _history_bytes(mgr, sid) - before)
        history = await mgr.handle(sid).fetch_history()
        by_type: dict[str, int] = {}
        for e in history.events:
            name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
            if name == "ACTIVITY_TASK_SCHEDULED":
                name += ":" + e.activity_task_scheduled_event_attributes.activity_type.name
            if name == "MARKER_RECORDED":
                name += ":" + e.marker_recorded_event_attributes.marker_name
            by_type[name] = by_type.get(name, 0) + e.ByteSize()
        print("\nhistory bytes by event type:", sorted(by_type.items(), key=lambda i: -i[1])[:8])
        # The SDK's runner replays to the same commands (a worker restart resumes it).
        replayer = Replayer(workflows=[SessionWorkflow], workflow_runner=workflow_runner())
        replay = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert replay.replay_failure is None, replay.replay_failure
        text = await _history_text(mgr, sid)
        assert INSTRUCTIONS not in text  # instructions and tool schemas travel as one blob
        assert "exec_command" in text  # (the model's calls are in it)
        # Later turns do not re-send earlier ones: a turn's history does not grow.
        assert sizes[2] <= sizes[0] * 1.2, sizes
        print(f"\nhistory bytes per 5-tool-call agent turn: {sizes}")
        await mgr.stop(sid)


async def _history_text(mgr: SessionManager, sid: str) -> str:
    """The session's history events as stored (payloads as their JSON bytes)."""
    history = await mgr.handle(sid).fetch_history()
    return b"".join(e.SerializeToString() for e in history.events).decode("utf-8", "replace")


async def _history_bytes(mgr: SessionManager, sid: str) -> int:
    history = await mgr.handle(sid).fetch_history()
    return sum(e.ByteSize() for e in history.events)


async def test_fork_isolates_workspace_and_conversation(client, task_queue, local_provider, store):
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        sid = await mgr.start("local", agent="coder", release_after=600)
        await mgr.prompt(sid, "base")
        fork = await mgr.fork(sid)
        left = await mgr.prompt(sid, "left")
        right = await mgr.prompt(fork, "right")
        assert left.turn == right.turn == 2
        ours = await files(local_provider, (await mgr.describe(sid)).sandbox_id)
        theirs = await files(local_provider, (await mgr.describe(fork)).sandbox_id)
        ours_notes = {p: d for p, d in ours.items() if p.startswith("notes/turn-2")}
        theirs_notes = {p: d for p, d in theirs.items() if p.startswith("notes/turn-2")}
        assert [d.decode().splitlines()[-1] for d in ours_notes.values()] == ["left"]
        assert [d.decode().splitlines()[-1] for d in theirs_notes.values()] == ["right"]
        assert notes(ours) == notes(theirs) == ["notes/turn-1", "notes/turn-2"]
        # Each conversation goes on alone: the third turn sees its own two, not the other's.
        third = await mgr.prompt(fork, "third")
        assert third.turn == 3
        theirs = await files(local_provider, (await mgr.describe(fork)).sandbox_id)
        assert notes(theirs) == ["notes/turn-1", "notes/turn-2", "notes/turn-3"]
        await mgr.stop(sid)
        await mgr.stop(fork)


async def test_migrate_mid_conversation_and_sleep_wake(
    client, task_queue, local_provider, docker_image, store
):
    from sandbank.providers.docker import DockerProvider

    docker = DockerProvider(image=docker_image)
    providers = {"local": local_provider, "docker": docker}
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, providers, store):
        sid = await mgr.start("local", agent="coder", release_after=600)
        await mgr.prompt(sid, "on local")
        before = await files(local_provider, (await mgr.describe(sid)).sandbox_id)
        moved = await mgr.migrate(sid, "docker")
        assert moved.verified and moved.verification == "contents"
        assert await files(docker, moved.sandbox_id) == before  # byte for byte
        second = await mgr.prompt(sid, "on docker")
        assert second.turn == 2 and [c.exit_code for c in second.tool_calls] == [0, None, 0]
        workspace = await files(docker, moved.sandbox_id)
        assert notes(workspace) == ["notes/turn-1", "notes/turn-2"]
        await mgr.stop(sid)


async def test_sleep_and_wake(client, task_queue, local_provider, store):
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        sid = await mgr.start("local", agent="coder", pause_after=600, release_after=1.0)
        await mgr.prompt(sid, "before sleep")
        for _ in range(200):
            if (await mgr.describe(sid)).sandbox_state == "released":
                break
            await asyncio.sleep(0.1)
        assert (await mgr.describe(sid)).sandbox_state == "released"
        woke = await mgr.prompt(sid, "after wake")
        assert woke.turn == 2
        workspace = await files(local_provider, (await mgr.describe(sid)).sandbox_id)
        assert notes(workspace) == ["notes/turn-1", "notes/turn-2"]
        kinds = [e.kind for e in await mgr.history(sid)]
        assert "released" in kinds and "rehydrated" in kinds
        await mgr.stop(sid)


async def test_bad_input_is_a_clear_error_and_the_session_answers(
    client, task_queue, local_provider, store
):
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        with pytest.raises(SandbankError, match=r"no agent 'nope' is registered.*known: broken"):
            await mgr.start("local", agent="nope", session_id="unknown-agent")
        assert (await mgr.describe("unknown-agent")).stopped is False  # still answers

        sid = await mgr.start("local", agent="broken", release_after=600)
        with pytest.raises(SandbankError, match=r"ModelCallFailed.*model service is down"):
            await mgr.prompt(sid, "hello")
        with pytest.raises(t.PayloadTooLarge, match="the turn's message"):
            await mgr.prompt(sid, "x" * (t.MESSAGE_LIMIT + 1))
        done = await mgr.send(sid, Turn(steps=[Step("exec", cmd="echo still here")]))
        assert done.steps[0].stdout == "still here\n"
        turns = [e.detail for e in await mgr.history(sid) if e.kind == "turn"]
        assert "error ModelCallFailed" in turns[0], turns

        runner = await mgr.start("local", agent="runner", release_after=600)
        endless = "\n".join(["true"] * MAX_MODEL_CALLS)  # one model call more than allowed
        with pytest.raises(SandbankError, match=r"AgentTurnFailed.*MaxTurnsExceeded"):
            await mgr.prompt(runner, endless)
        assert (await mgr.prompt(runner, "echo fine")).tool_calls[0].exit_code == 0

        hosted = await mgr.start("local", agent="hosted", release_after=600)
        with pytest.raises(SandbankError, match=r"WebSearchTool\) cannot run in a durable"):
            await mgr.prompt(hosted, "search")
        assert (await mgr.describe(hosted)).turns == 1  # the session answers

        plain = await mgr.start("local", release_after=600)
        with pytest.raises(SandbankError, match="this session has no agent"):
            await mgr.prompt(plain, "hello")
        for session in (sid, runner, hosted, plain, "unknown-agent"):
            await mgr.stop(session)


async def test_conversation_carries_over_continue_as_new(client, task_queue, local_provider, store):
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        sid = await mgr.start("local", agent="coder", release_after=600, continue_after_turns=1)
        runs = set()
        for n in range(3):
            result = await mgr.prompt(sid, f"turn {n}")
            assert result.turn == n + 1
            runs.add((await mgr.handle(sid).describe()).run_id)
        assert len(runs) >= 2  # the workflow continued as new between turns
        workspace = await files(local_provider, (await mgr.describe(sid)).sandbox_id)
        assert notes(workspace) == ["notes/turn-1", "notes/turn-2", "notes/turn-3"]
        await mgr.stop(sid)
