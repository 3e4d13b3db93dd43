"""The model choice and the install hint (manifest conversions: test_manifest_conversion)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from agents import OpenAIResponsesModel

from sandbank.agents import ScriptedAgentModel, model_for


def test_model_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert isinstance(model_for(None), ScriptedAgentModel)
    unkeyed = model_for("gpt-4.1")
    assert isinstance(unkeyed, ScriptedAgentModel) and "OPENAI_API_KEY" in unkeyed.reason
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    real = model_for("gpt-4.1")
    assert isinstance(real, OpenAIResponsesModel) and real.model == "gpt-4.1"
    assert str(real._client.base_url).startswith("http://127.0.0.1:9/v1")
    assert isinstance(model_for("scripted"), ScriptedAgentModel)


def test_scripted_model_is_stateless() -> None:
    """The next step follows from the conversation, so any copy continues the script."""
    tools: list[Any] = [type("T", (), {"name": n})() for n in ("exec_command", "apply_patch")]
    first = ScriptedAgentModel().plan("hi", tools)
    assert first[0].name == "exec_command"
    history: list[Any] = [
        {"role": "user", "content": "hi"},
        {"type": "function_call_output", "call_id": "x", "output": "ok"},
    ]
    second = ScriptedAgentModel().plan(history, tools)
    assert second[0].type == "custom_tool_call" and "*** Add File: notes/turn-1-" in second[0].input
    assert ScriptedAgentModel().plan(history, tools) == second


def test_missing_sdk_gives_the_install_hint() -> None:
    probe = (
        "import sys; sys.modules['agents'] = None\n"
        "import sandbank\n"
        "try:\n    import sandbank.agents\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "ProviderUnavailable" in out.stdout and "pip install 'sandbank[agents]'" in out.stdout
