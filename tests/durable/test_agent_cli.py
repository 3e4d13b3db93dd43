"""`sandbank session start --agent` and `send` as a prompt: real CLI processes, a real
Temporal dev server and a worker with the built-in ``coder`` agent (scripted model)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.agents import coder
from sandbank.durable.worker import build_worker
from tests.durable.test_cli_session import Cli, one_line_error


@pytest.fixture
async def cli(client, task_queue, temporal_address, local_provider, store) -> AsyncIterator[Cli]:
    acts = SandboxActivities({"local": local_provider}, store)
    async with build_worker(client, acts, task_queue=task_queue, agents={"coder": coder}):
        yield Cli(temporal_address, task_queue)


async def test_session_with_an_agent_takes_prompts(cli: Cli) -> None:
    sid = (await cli("start", "--agent", "coder", "--json")).json()["session_id"]
    run = await cli("send", sid, "write", "a note")
    assert run.code == 0, run
    assert "[scripted model:" in run.out and "'write a note'" in run.out, run.out
    assert "exec_command(cmd=pwd && ls -la) -> exit 0" in run.err, run.err
    assert "apply_patch(" in run.err
    as_json = (await cli("send", "--json", sid, "again")).json()
    assert as_json["turn"] == 2 and as_json["checkpoint"]
    assert [c["name"] for c in as_json["tool_calls"]][:2] == ["exec_command", "apply_patch"]
    await cli("stop", sid)


async def test_unknown_agent_is_one_line(cli: Cli) -> None:
    run = await cli("start", "--agent", "nope")
    one_line_error(run, "no agent 'nope' is registered", "known: coder")
