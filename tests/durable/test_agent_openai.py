"""An apply_patch turn through the durable path with the real OpenAI Responses model: its
request building and response parsing, against a local HTTP server with scripted replies
(Temporal's own plugin garbles apply_patch outputs here; this path must not)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from sandbank.durable.manager import SessionManager
from tests.durable.test_agent_session import files, worker

PATCH = "*** Begin Patch\n*** Add File: src/hello.py\n+print('hello')\n*** End Patch\n"


def _response(n: int, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": f"resp_{n}", "object": "response", "created_at": 0, "model": "stub-model",
        "status": "completed", "output": output, "tool_choice": "auto", "tools": [],
        "parallel_tool_calls": True, "top_p": None,
        "usage": {
            "input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }  # fmt: skip


REPLIES = [
    [{"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_patch", "name": "apply_patch",
      "input": PATCH, "status": "completed"}],
    [{"type": "function_call", "id": "fc_1", "call_id": "call_run", "name": "exec_command",
      "arguments": '{"cmd": "python3 src/hello.py"}', "status": "completed"}],
    [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
      "content": [{"type": "output_text", "text": "patched and ran it", "annotations": []}]}],
]  # fmt: skip


@pytest.fixture
async def stub(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[dict[str, Any]]]:
    requests: list[dict[str, Any]] = []

    async def responses(request: web.Request) -> web.Response:
        requests.append(await request.json())
        return web.json_response(_response(len(requests), REPLIES[len(requests) - 1]))

    app = web.Application()
    app.router.add_post("/v1/responses", responses)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("SANDBANK_TEST_OPENAI_URL", f"http://127.0.0.1:{port}/v1")
    try:
        yield requests
    finally:
        await runner.cleanup()


async def test_apply_patch_turn_with_the_openai_responses_model(
    client, task_queue, local_provider, store, stub
):
    mgr = SessionManager(client, task_queue)
    async with worker(client, task_queue, {"local": local_provider}, store):
        sid = await mgr.start("local", agent="openai", release_after=600)
        notes = {"AGENTS.md": "Scripts live in src/. agents-md-marker-77\n"}
        result = await mgr.prompt(sid, "add a hello script and run it", attachments=notes)
        assert result.final_output == "patched and ran it"
        assert [c.name for c in result.tool_calls] == ["apply_patch", "exec_command"]
        assert result.tool_calls[1].exit_code == 0
        workspace = await files(local_provider, (await mgr.describe(sid)).sandbox_id)
        assert workspace["src/hello.py"].rstrip(b"\n") == b"print('hello')"  # SDK: no EOL
        assert len(stub) == 3
        # The model got the tools it is given without Temporal (apply_patch a custom tool).
        tools = {tool["name"]: tool for tool in stub[0]["tools"]}
        assert tools["apply_patch"]["type"] == "custom"
        assert tools["exec_command"]["type"] == "function"
        assert "instructions-marker" in stub[0]["instructions"]
        assert "agents-md-marker-77" in stub[0]["instructions"]  # the workspace's AGENTS.md
        # The apply_patch output reached the model as readable text, not a garbled iterator.
        [patch_out] = [i for i in stub[1]["input"] if i.get("type") == "custom_tool_call_output"]
        assert patch_out["call_id"] == "call_patch"
        assert isinstance(patch_out["output"], str) and "src/hello.py" in patch_out["output"]
        [run_out] = [i for i in stub[2]["input"] if i.get("type") == "function_call_output"]
        assert "hello" in str(run_out["output"])
        await mgr.stop(sid)
