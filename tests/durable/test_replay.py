"""Histories recorded by the code before this change's patches replay under the code now:
the damaged-checkpoint path and an ordinary session (turns, release, rehydrate, fork)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from sandbank.durable.session import SessionWorkflow
from sandbank.durable.worker import workflow_runner

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize("name", ["session-turns", "session-damaged"])
async def test_histories_of_older_code_replay(name: str) -> None:
    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    replayer = Replayer(workflows=[SessionWorkflow], workflow_runner=workflow_runner())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
