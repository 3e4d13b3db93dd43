"""The scripted model both sides of ``bench/agents.py`` run: 10 tool calls and an answer.

It runs under openai-agents 0.22.3 (the anchor's worker) and 0.24 (sandbank), keeps no state
and never deep-copies its input (the Temporal plugin's model activity hands it items that
cannot be pickled). Its position in the script comes from the call id of the last tool
output it is given (``bench-<tag>-<step>``), so a fresh model per call, in any process,
continues where the last one stopped; that also works when the runner sends only the new
items (``previous_response_id``).

A prompt ``turn=<tag> prev=<tag>`` names this turn's notes file and the previous turn's,
which the first command reads: its output says whether the workspace came through. When
``$SANDBANK_BENCH_MODEL_LOG`` names a file, each call appends one JSON line (tag, step,
entered, left, the tool output it was given), from which the bench reads the time each
tool call took between two model calls.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from agents.items import ModelResponse
from agents.models.interface import Model, ModelProvider
from agents.testing import assistant_message, function_call
from agents.usage import Usage
from openai.types.responses import ResponseCustomToolCall

MODEL_NAME = "bench-scripted"
LOG_ENV = "SANDBANK_BENCH_MODEL_LOG"
_CALL_ID = re.compile(r"^bench-([0-9a-z]+)-(\d+)$")
_PROMPT = re.compile(r"turn=([0-9a-z]+)(?: prev=([0-9a-z]+))?")
_OUTPUTS = ("function_call_output", "custom_tool_call_output")


def steps(tag: str, prev: str | None) -> list[tuple[str, str]]:
    """The 10 tool calls of turn ``tag``: 8 ``exec_command`` and 2 ``apply_patch``."""
    note = f"notes/{tag}.md"
    check = f"cat src/main.py notes/{prev}.md" if prev else "cat src/main.py"
    added = "".join(f"+{line}\n" for line in (f"# turn {tag}", "line one", "line two"))
    return [
        ("exec", check),
        ("exec", "ls -la src"),
        ("exec", "python3 src/main.py"),
        ("patch", f"*** Begin Patch\n*** Add File: {note}\n{added}*** End Patch\n"),
        ("exec", f"cat {note}"),
        ("exec", "ls node_modules | wc -l"),
        (
            "patch",
            f"*** Begin Patch\n*** Update File: {note}\n@@\n line two\n+line three\n"
            "*** End Patch\n",
        ),
        ("exec", f"grep -c line {note}"),
        ("exec", "sh src/run.sh"),
        ("exec", "du -sk src notes"),
    ]


def prompt(tag: str, prev: str | None) -> str:
    return f"turn={tag} prev={prev}" if prev else f"turn={tag}"


class BenchModel(Model):
    """One step of the script per call, from the conversation it is given."""

    def plan(self, input: str | list[Any]) -> tuple[str, int, str, list[Any]]:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        tag, prev, step, seen = "", None, 0, ""
        for item in items:
            if _get(item, "role") == "user":
                found = _PROMPT.search(_text(_get(item, "content")))
                tag, prev, step, seen = (found.group(1), found.group(2), 0, "") if found else (
                    "x", None, 0, ""
                )  # fmt: skip
            elif _get(item, "type") in _OUTPUTS:
                ids = _CALL_ID.match(str(_get(item, "call_id") or ""))
                if ids:
                    tag, step = ids.group(1), int(ids.group(2)) + 1
                    # apply_patch outputs come through the plugin as an unreadable iterator
                    text = _get(item, "output") if _get(item, "type") == _OUTPUTS[0] else ""
                    seen = _text(text)[:300]
        script = steps(tag, prev)
        if step >= len(script):
            return tag, step, seen, [assistant_message(f"done {tag}", item_id=f"msg-{tag}")]
        kind, arg = script[step]
        call_id = f"bench-{tag}-{step}"
        if kind == "exec":
            return tag, step, seen, [function_call("exec_command", {"cmd": arg}, call_id=call_id)]
        call = ResponseCustomToolCall(
            type="custom_tool_call", name="apply_patch", call_id=call_id, input=arg
        )
        return tag, step, seen, [call]

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        entered = time.time()
        tag, step, seen, output = self.plan(input)
        log = os.environ.get(LOG_ENV)
        if log:
            line = {"tag": tag, "step": step, "entered": entered, "left": time.time(),
                    "seen": seen, "pid": os.getpid()}  # fmt: skip
            with open(log, "a") as out:  # noqa: ASYNC230 (one short line, on purpose inline)
                out.write(json.dumps(line) + "\n")
        return ModelResponse(output=output, usage=Usage(), response_id=f"resp-{tag}-{step}")

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the bench's scripted model does not stream")


class BenchModelProvider(ModelProvider):
    """A fresh ``BenchModel`` for every call, whatever the name."""

    def get_model(self, model_name: str | None) -> Model:
        return BenchModel()


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(_get(part, "text") or "") for part in content).strip()
    return "" if content is None else str(content)
