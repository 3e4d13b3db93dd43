"""The demo's agent, ``demo-coder`` (``sandbank worker --agents sandbank.durable.demo_agent``):
a scripted model, no key, that writes ``total.py`` in the approach the prompt names
(``loop`` or ``formula``; ``slowly`` makes its test run take 4 s and log a line to
``runs.txt``), runs its test, answers."""

from __future__ import annotations

from typing import Any

from agents.items import ModelResponse
from agents.models.interface import Model
from agents.sandbox import SandboxAgent
from agents.sandbox.capabilities import Shell
from agents.testing import assistant_message, function_call
from agents.usage import Usage

from sandbank.agents.models import _get, _text
from sandbank.durable.agents import AgentContext, register_agent

NAME = "demo-coder"
_CODE = {
    "loop": "def total(n):\n    s = 0\n    for i in range(n + 1):\n        s += i\n    return s\n",
    "formula": "def total(n):\n    return n * (n + 1) // 2\n",
}
_TEST = (
    "from total import total\n\nassert total(0) == 0 and total(10) == 55\n"
    "print('tests pass: total(100) =', total(100), 'with the {approach}')\n"
)


class DemoCoderModel(Model):
    """Stateless: the next step follows from the prompt and the tool outputs since it."""

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kw: Any):
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        users = [i for i, item in enumerate(items) if _get(item, "role") == "user"]
        prompt = _text(_get(items[users[-1]], "content"))
        outputs = [i for i in items[users[-1] + 1 :] if _get(i, "type") == "function_call_output"]
        approach = "formula" if "formula" in prompt else "loop"
        call_id = f"demo-{len(users)}-{len(outputs)}"
        if not outputs:
            test = _TEST.format(approach=approach)
            cmd = f"cat > total.py <<'EOF'\n{_CODE[approach]}EOF\n"
            cmd += f"cat > test_total.py <<'EOF'\n{test}EOF"
            output = function_call("exec_command", {"cmd": cmd}, call_id=call_id)
        elif len(outputs) == 1:
            slow = "echo run >> runs.txt; sleep 4; " if "slowly" in prompt else ""
            cmd = f"{slow}python3 test_total.py"
            output = function_call("exec_command", {"cmd": cmd}, call_id=call_id)
        else:
            said = _text(_get(outputs[-1], "output")).strip().splitlines()
            reply = f"wrote total.py ({approach}) and ran its test: {said[-1] if said else ''}"
            output = assistant_message(reply, item_id=f"demo-message-{len(users)}")
        return ModelResponse(output=[output], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the demo's model does not stream")


def demo_coder(ctx: AgentContext) -> SandboxAgent[Any]:
    return SandboxAgent(
        name=ctx.name, instructions="Write the code the prompt asks for and run its test.",
        capabilities=[Shell()], model=DemoCoderModel(),
    )  # fmt: skip


register_agent(NAME, demo_coder)
