"""Agents for the durable agent tests, registered on import (``worker_main --agents``).

``coder`` runs the scripted model of ``sandbank.agents`` (shell, apply_patch, read back);
``runner`` runs ``CommandModel``: one ``exec_command`` per line of the prompt, then an
answer; ``broken`` has a model that raises. ``CommandModel`` logs each call it answers to
``$SANDBANK_TEST_MODEL_LOG`` (when set), so a test sees which model calls were made.
"""

from __future__ import annotations

import os
from typing import Any

from agents.items import ModelResponse
from agents.models.interface import Model
from agents.sandbox import SandboxAgent
from agents.sandbox.capabilities import Filesystem, Shell
from agents.testing import assistant_message, function_call
from agents.usage import Usage

from sandbank.agents import model_for
from sandbank.agents.models import _get, _text
from sandbank.durable.agents import AgentContext, register_agent

INSTRUCTIONS = "You edit files and run commands. instructions-marker-5f3a9c"


class CommandModel(Model):
    """Stateless: the next command follows from the conversation (any process answers)."""

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kw: Any):  # type: ignore[no-untyped-def, override]
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        users = [i for i, item in enumerate(items) if _get(item, "role") == "user"]
        since = items[users[-1] + 1 :]
        step = sum(1 for item in since if _get(item, "type") == "function_call_output")
        commands = _text(_get(items[users[-1]], "content")).splitlines()
        log = os.environ.get("SANDBANK_TEST_MODEL_LOG")
        if log:
            with open(log, "a") as f:  # noqa: ASYNC230 (one short line, a test helper)
                f.write(f"turn {len(users)} step {step}\n")
        if step < len(commands):
            call = function_call(
                "exec_command", {"cmd": commands[step]}, call_id=f"c-{len(users)}-{step}"
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        answer = assistant_message(f"ran {len(commands)} commands", item_id=f"m-{len(users)}")
        return ModelResponse(output=[answer], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise NotImplementedError


class BrokenModel(CommandModel):
    async def get_response(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def, override]
        raise RuntimeError("the model service is down (test)")


def _agent(ctx: AgentContext, model: Any) -> SandboxAgent[Any]:
    return SandboxAgent(
        name=ctx.name, instructions=INSTRUCTIONS, capabilities=[Filesystem(), Shell()],
        model=model,
    )  # fmt: skip


def coder(ctx: AgentContext) -> SandboxAgent[Any]:
    return _agent(ctx, model_for(ctx.model_name))


def runner(ctx: AgentContext) -> SandboxAgent[Any]:
    return _agent(ctx, CommandModel())


def broken(ctx: AgentContext) -> SandboxAgent[Any]:
    return _agent(ctx, BrokenModel())


def hosted(ctx: AgentContext) -> SandboxAgent[Any]:
    """An agent with a hosted tool, which durable sessions do not run yet."""
    from agents import WebSearchTool

    agent = _agent(ctx, CommandModel())
    agent.tools = [WebSearchTool()]
    return agent


AGENTS = {"coder": coder, "runner": runner, "broken": broken, "hosted": hosted}
for _name, _factory in AGENTS.items():
    register_agent(_name, _factory)


def openai_stub(ctx: AgentContext) -> SandboxAgent[Any]:
    """The real OpenAI Responses model (its request building and parsing) against the
    server at ``$SANDBANK_TEST_OPENAI_URL`` (a local stub in the tests)."""
    from agents import OpenAIResponsesModel
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="test-key", base_url=os.environ["SANDBANK_TEST_OPENAI_URL"])
    return _agent(ctx, OpenAIResponsesModel(model="stub-model", openai_client=client))


register_agent("openai", openai_stub)


class NoteModel(CommandModel):
    """Calls the MCP tool ``add_note`` with the prompt (``text`` or ``text|seconds``), then
    answers with what the tool said."""

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kw: Any):  # type: ignore[no-untyped-def, override]
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        users = [i for i, item in enumerate(items) if _get(item, "role") == "user"]
        since = items[users[-1] + 1 :]
        outputs = [i for i in since if _get(i, "type") == "function_call_output"]
        if not outputs:
            text, _, seconds = _text(_get(items[users[-1]], "content")).partition("|")
            args = {"text": text, "seconds": float(seconds or 0)}
            call = function_call("add_note", args, call_id=f"n-{len(users)}")
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        said = _get(outputs[-1], "output")
        answer = assistant_message(f"tool said: {_text(said)}", item_id=f"m-{len(users)}")
        return ModelResponse(output=[answer], usage=Usage(), response_id=None)


def notes(ctx: AgentContext) -> SandboxAgent[Any]:
    """An agent with one stdio MCP server (``tests/durable/mcp_notes.py``)."""
    import sys

    from agents.mcp import MCPServerStdio

    script = os.path.join(os.path.dirname(__file__), "mcp_notes.py")
    server = MCPServerStdio(
        {"command": sys.executable, "args": [script], "env": dict(os.environ)}, name="notes",
        client_session_timeout_seconds=60,
    )  # fmt: skip
    agent = _agent(ctx, NoteModel())
    agent.mcp_servers = [server]
    return agent


register_agent("notes", notes)


def notes_missing(ctx: AgentContext) -> SandboxAgent[Any]:
    """``notes`` with an MCP server command that does not exist."""
    from agents.mcp import MCPServerStdio

    agent = notes(ctx)
    agent.mcp_servers = [MCPServerStdio({"command": "/nonexistent/mcp-server"}, name="missing")]
    return agent


register_agent("notes-missing", notes_missing)
