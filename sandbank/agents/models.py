"""Which model an agent runs on: a real one with a key and a name, else a scripted one.

``ScriptedAgentModel`` needs no key and no network. It makes real tool calls (a shell
command, an apply_patch that writes a note, a read of that note) and says in its answer
that it is scripted. It keeps no state: its next step follows from the conversation, so a
copy in another process (a durable worker) continues where the first left off.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from agents import OpenAIResponsesModel
from agents.items import ModelResponse, TResponseOutputItem, TResponseStreamEvent
from agents.models.interface import Model
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseCompletedEvent, ResponseCustomToolCall
from openai.types.responses.response_usage import (
    InputTokensDetails,
    OutputTokensDetails,
    ResponseUsage,
)

__all__ = ["SCRIPTED", "ScriptedAgentModel", "model_for"]

SCRIPTED = "scripted"
"""The model name that always picks the scripted model."""
_TOOL_OUTPUTS = ("function_call_output", "custom_tool_call_output")


def model_for(name: str | None = None) -> Model:
    """The model called ``name`` when ``OPENAI_API_KEY`` is set (``OPENAI_BASE_URL`` for any
    compatible server), else the scripted model, whose answers say why it ran."""
    key = os.environ.get("OPENAI_API_KEY")
    if not name or name == SCRIPTED:
        return ScriptedAgentModel()
    if not key:
        return ScriptedAgentModel(f"no OPENAI_API_KEY is set, so model {name!r} did not run")
    client = AsyncOpenAI(api_key=key, base_url=os.environ.get("OPENAI_BASE_URL") or None)
    return OpenAIResponsesModel(model=name, openai_client=client)


class ScriptedAgentModel(Model):
    """A deterministic model for runs without a key: shell, apply_patch, read, answer."""

    def __init__(self, reason: str = "no real model was asked for") -> None:
        self.reason = reason

    def plan(self, input: str | list[Any], tools: Sequence[Any] = ()) -> list[TResponseOutputItem]:
        """The output items of the next step of the script, from the conversation so far."""
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        users = [i for i, item in enumerate(items) if _get(item, "role") == "user"]
        turn = len(users)
        since = items[users[-1] + 1 :] if users else items
        step = sum(1 for item in since if _get(item, "type") in _TOOL_OUTPUTS)
        names = {getattr(tool, "name", "") for tool in tools}
        prompt = _text(_get(items[users[-1]], "content")) if users else ""
        tag = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        note = f"notes/turn-{turn}-{tag}.md"
        call_id = f"scripted-{turn}-{step}"
        if "exec_command" in names and step == 0:
            return [function_call("exec_command", {"cmd": "pwd && ls -la"}, call_id=call_id)]
        if "apply_patch" in names and step == 1:
            body = "".join(f"+{line}\n" for line in [f"# Turn {turn}", "", prompt or "(empty)"])
            patch = f"*** Begin Patch\n*** Add File: {note}\n{body}*** End Patch\n"
            return [
                ResponseCustomToolCall(
                    type="custom_tool_call", name="apply_patch", call_id=call_id, input=patch
                )
            ]
        if "exec_command" in names and step == 2:
            return [function_call("exec_command", {"cmd": f"cat {note}"}, call_id=call_id)]
        done = f"I listed the workspace, wrote {note} and read it back. " if step >= 3 else ""
        return [
            assistant_message(
                f"[scripted model: {self.reason}] {done}Set OPENAI_API_KEY and name a model "
                f"for a real answer to: {prompt!r}",
                item_id=f"scripted-message-{turn}",
            )
        ]

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[Any],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        return ModelResponse(output=self.plan(input, tools), usage=Usage(), response_id=None)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[Any],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        **kwargs: Any,
    ) -> AsyncIterator[TResponseStreamEvent]:
        # The SDK's ScriptedModel turns a step into the streamed events of a response; it
        # cannot for a custom tool call (apply_patch), so that step streams as one event.
        items = self.plan(input, tools)
        step: Any = items
        if any(isinstance(item, ResponseCustomToolCall) for item in items):
            step = ModelStep.stream([_completed(items)], output=items)
        return ScriptedModel([step]).stream_response(
            system_instructions, input, model_settings, tools, output_schema, handoffs, tracing,
            **kwargs,
        )  # fmt: skip


def _completed(items: list[TResponseOutputItem]) -> ResponseCompletedEvent:
    usage = ResponseUsage(
        input_tokens=0, output_tokens=0, total_tokens=0,
        # model_validate: openai releases differ in which detail fields they require.
        input_tokens_details=InputTokensDetails.model_validate(
            {"cached_tokens": 0, "cache_write_tokens": 0}
        ),
        output_tokens_details=OutputTokensDetails.model_validate({"reasoning_tokens": 0}),
    )  # fmt: skip
    response = Response(
        id="scripted-response", created_at=0, model=SCRIPTED, object="response", output=items,
        tool_choice="none", tools=[], top_p=None, parallel_tool_calls=False,
        status="completed", usage=usage,
    )  # fmt: skip
    return ResponseCompletedEvent(type="response.completed", response=response, sequence_number=0)


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(_get(part, "text") or "") for part in content).strip()
    return json.dumps(content) if content is not None else ""
