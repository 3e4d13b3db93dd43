"""Helpers for the Agents SDK tests: one agent run, the model steps a script is made of."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from agents import RunConfig, Runner, set_tracing_disabled
from agents.items import ToolCallOutputItem
from agents.run import RunResult
from agents.sandbox import SandboxAgent, SandboxRunConfig
from agents.sandbox.capabilities import Filesystem, Shell
from agents.testing import ScriptedModel, assistant_message, function_call
from openai.types.responses import ResponseCustomToolCall

set_tracing_disabled(True)


def sandbox_agent(**kwargs: Any) -> SandboxAgent[Any]:
    """A SandboxAgent with the shell and file tools (no compaction: no model server here)."""
    return SandboxAgent(
        name="coder", instructions="You edit files.", capabilities=[Filesystem(), Shell()],
        **kwargs,
    )  # fmt: skip


async def run_turn(
    model: Any, prompt: str = "go", *, max_turns: int = 20, **sandbox: Any
) -> RunResult:
    """One ``Runner.run`` of a sandbox agent with ``SandboxRunConfig(**sandbox)``."""
    config = RunConfig(model=model, sandbox=SandboxRunConfig(**sandbox), tracing_disabled=True)
    return await Runner.run(sandbox_agent(), prompt, run_config=config, max_turns=max_turns)


def scripted(*steps: Any) -> ScriptedModel:
    return ScriptedModel(list(steps))


def shell(cmd: str, call_id: str, **args: Any) -> Any:
    """A model step: one ``exec_command`` tool call."""
    return [function_call("exec_command", {"cmd": cmd, **args}, call_id=call_id)]


def patch(text: str, call_id: str) -> Any:
    """A model step: one ``apply_patch`` call with V4A patch ``text``."""
    body = f"*** Begin Patch\n{text}*** End Patch\n"
    return [
        ResponseCustomToolCall(
            type="custom_tool_call", name="apply_patch", call_id=call_id, input=body
        )
    ]


def answer(text: str = "done") -> Any:
    return [assistant_message(text)]


def tool_outputs(result: RunResult) -> list[str]:
    """What each tool call returned to the model, in order."""
    return [str(item.output) for item in result.new_items if isinstance(item, ToolCallOutputItem)]


def session_state(result: RunResult) -> dict[str, Any]:
    """The serialized sandbox session state a run ended with (for ``session_state=``)."""
    payload: dict[str, Any] = result.to_state().to_json()["sandbox"]["session_state"]
    return payload


async def run_python(script: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``script`` in a fresh interpreter; its last stdout line is JSON, returned parsed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])
