"""`sandbank session start --agent` and `send` as a prompt: real CLI processes, a real
Temporal dev server and a worker with the built-in ``coder`` agent (scripted model)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.agents import coder
from sandbank.durable.worker import build_worker
from tests.durable.test_cli_session import Cli, Run, one_line_error
from tests.processes import REPO


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
    one_line_error(run, "no agent 'nope' is registered", "known: ", "coder")


async def _chat(tmp_path: Path, lines: str, *args: str) -> Run:
    """``sandbank chat`` with ``lines`` as its terminal input."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbank", "chat", "--data-dir", str(tmp_path), *args,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(lines.encode()), 180)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_chat_forks_and_resumes_after_the_terminal_closes(tmp_path: Path) -> None:
    first = await _chat(tmp_path, "write a note\n/fork\nin the fork\n/history\n/bogus\n/quit\n")
    assert first.code == 0, first
    assert "exec_command(cmd=pwd && ls -la) -> exit 0" in first.err, first.err
    assert "Traceback" not in first.err
    assert "wrote notes/turn-1-" in first.out and "wrote notes/turn-2-" in first.out
    assert "forked session-" in first.out and "/migrate PROVIDER" in first.out
    fork = first.out.rsplit("resume with: sandbank chat --session ", 1)[1].strip()
    assert "-fork-" in fork
    again = await _chat(tmp_path, "third\n", "--session", fork)  # EOF ends it too
    assert again.code == 0, again
    assert "wrote notes/turn-3-" in again.out, again.out
