"""A real model drives the same agent code; runs only where ``OPENAI_API_KEY`` is set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sdk_helpers import run_turn, session_state

from sandbank.agents import model_for
from sandbank.snapshots import SnapshotStore

pytestmark = pytest.mark.skipif(
    not os.environ.get("OPENAI_API_KEY"),
    reason="live model test: set OPENAI_API_KEY (and optionally OPENAI_BASE_URL, "
    "SANDBANK_LIVE_MODEL) to run it",
)


async def test_real_model_writes_a_file(
    local: Any, client_for: Any, store: SnapshotStore, tmp_path: Path
):
    model = model_for(os.environ.get("SANDBANK_LIVE_MODEL", "gpt-4.1-mini"))
    prompt = (
        "Create the file hello.txt containing the single line 'hi from the model' with the "
        "apply_patch tool, then run `cat hello.txt` with exec_command, then say done."
    )
    result = await run_turn(model, prompt, client=client_for(local))
    await store.restore(session_state(result)["snapshot"]["snapshot_id"], tmp_path / "w")
    assert "hi from the model" in (tmp_path / "w" / "hello.txt").read_text()
