"""The anchor of ``bench/agents.py``: temporalio-openai-agents 1.1 as its sample runs it.

Runs under openai-agents 0.22.3 (the plugin pins ``<0.23``), in a venv of its own:

    python bench/_anchor_agents.py worker --address A --task-queue Q --identity NAME
    python bench/_anchor_agents.py direct --snapshot-dir DIR --snapshot-id ID --turns N

``worker``: a Temporal worker with ``OpenAIAgentsPlugin`` and
``SandboxClientProvider("local", UnixLocalSandboxClient())``, running ``BenchAnchorAgent``:
the sample ``AgentWorkflow`` pattern, a long-lived workflow with one agent turn per update
(``turn``), carrying the sandbox session state, the snapshot and ``previous_response_id``
from turn to turn, ``max_turns=20``. The first turn hydrates the pre-made ``LocalSnapshot``
tar the workflow is started with (``{"snapshot_dir", "snapshot_id"}``).
``direct``: the same agent and turns with ``Runner.run`` and the SDK's unix_local client,
no Temporal: the same tool calls made directly. Prints one JSON line per turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow

if not workflow.unsafe.in_sandbox():
    # bench/agents.py would hide the SDK's ``agents`` package: this folder goes last.
    _BENCH = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

with workflow.unsafe.imports_passed_through():
    from _agent_script import MODEL_NAME
    from agents import RunConfig, Runner
    from agents.sandbox import LocalSnapshot, SandboxAgent, SandboxRunConfig
    from agents.sandbox.sandboxes import UnixLocalSandboxClientOptions

MAX_TURNS = 20


def agent() -> SandboxAgent[Any]:
    """The sample's agent: the default sandbox tools (``exec_command``, ``apply_patch``)."""
    return SandboxAgent(name="coder", instructions="You edit files and run commands.")


def summary(result: Any) -> dict[str, Any]:
    calls = [i for i in result.new_items if type(i).__name__ == "ToolCallItem"]
    return {"final_output": str(result.final_output), "tool_calls": len(calls)}


@workflow.defn(name="BenchAnchorAgent")
class AnchorAgentWorkflow:
    """Long-lived: one agent turn per ``turn`` update, until the ``finish`` signal."""

    @workflow.init
    def __init__(self, seed: dict[str, str]) -> None:
        # Here, not in run: an update that comes with the start runs before run does.
        self.snapshot: Any = LocalSnapshot(
            id=seed["snapshot_id"], base_path=Path(seed["snapshot_dir"])
        )
        self.session_state: Any = None
        self.previous_response_id: str | None = None
        self.finished = False
        self.turns = 0

    @workflow.run
    async def run(self, seed: dict[str, str]) -> int:
        await workflow.wait_condition(lambda: self.finished)
        return self.turns

    @workflow.update(name="turn")
    async def turn(self, prompt: str) -> dict[str, Any]:
        from temporalio.openai_agents.workflow import temporal_sandbox_client

        client = temporal_sandbox_client("local")
        state = self.session_state
        sandbox = SandboxRunConfig(
            client=client,
            options=UnixLocalSandboxClientOptions(),
            session_state=client.deserialize_session_state(state) if state else None,
            snapshot=self.snapshot,
        )
        result = await Runner.run(
            agent(), prompt, run_config=RunConfig(model=MODEL_NAME, sandbox=sandbox),
            max_turns=MAX_TURNS, previous_response_id=self.previous_response_id,
        )  # fmt: skip
        self.previous_response_id = result.last_response_id
        self.session_state = result.to_state().to_json()["sandbox"]["session_state"]
        self.turns += 1
        return summary(result)

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self.finished = True


async def worker(args: argparse.Namespace) -> None:
    from _agent_script import BenchModelProvider
    from agents.sandbox.sandboxes import UnixLocalSandboxClient
    from temporalio.client import Client
    from temporalio.openai_agents import (
        ModelActivityParameters,
        OpenAIAgentsPlugin,
        SandboxClientProvider,
    )
    from temporalio.worker import Worker

    plugin = OpenAIAgentsPlugin(
        model_provider=BenchModelProvider(),
        model_params=ModelActivityParameters(start_to_close_timeout=timedelta(seconds=120)),
        sandbox_clients=[SandboxClientProvider("local", UnixLocalSandboxClient())],
    )
    client = await Client.connect(args.address, plugins=[plugin])
    async with Worker(
        client, task_queue=args.task_queue, workflows=[AnchorAgentWorkflow],
        identity=args.identity,
    ):  # fmt: skip
        print(f"anchor worker on task queue {args.task_queue}", flush=True)
        await asyncio.Event().wait()


async def direct(args: argparse.Namespace) -> None:
    """The same turns without Temporal: ``Runner.run`` on the SDK's unix_local client."""
    from _agent_script import BenchModel, prompt
    from agents.sandbox.sandboxes import UnixLocalSandboxClient

    client = UnixLocalSandboxClient()
    snapshot: Any = LocalSnapshot(id=args.snapshot_id, base_path=Path(args.snapshot_dir))
    session_state: Any = None
    previous: str | None = None
    prev_tag: str | None = None
    for n in range(args.turns):
        tag = f"d{n}"
        sandbox = SandboxRunConfig(
            client=client, options=UnixLocalSandboxClientOptions(),
            session_state=session_state, snapshot=snapshot,
        )  # fmt: skip
        result = await Runner.run(
            agent(), prompt(tag, prev_tag),
            run_config=RunConfig(model=BenchModel(), sandbox=sandbox, tracing_disabled=True),
            max_turns=MAX_TURNS, previous_response_id=previous,
        )  # fmt: skip
        previous = result.last_response_id
        session_state = client.deserialize_session_state(
            result.to_state().to_json()["sandbox"]["session_state"]
        )
        prev_tag = tag
        print(json.dumps({"tag": tag, **summary(result)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--address", required=True)
    w.add_argument("--task-queue", required=True)
    w.add_argument("--identity", required=True)
    d = sub.add_parser("direct")
    d.add_argument("--snapshot-dir", required=True)
    d.add_argument("--snapshot-id", required=True)
    d.add_argument("--turns", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(worker(args) if args.cmd == "worker" else direct(args))


if __name__ == "__main__":
    main()
