"""Build and run a sandbank worker: the sandbox activities and the session workflows.

The worker holds the providers and the snapshot store; nothing of them reaches a workflow.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sandbank.durable.activities import SandboxActivities
from sandbank.errors import SandbankError

__all__ = ["DEFAULT_TASK_QUEUE", "SandbankWorker", "build_worker", "workflow_runner"]

log = logging.getLogger(__name__)

DEFAULT_TASK_QUEUE = "sandbank"


def workflow_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox with sandbank (plain data and pure helpers) passed through, and
    the Agents SDK with what its agents load (an agent turn builds its agent in the
    workflow; its model client is only ever called in the model activity)."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "sandbank", "pydantic", "pydantic_core", "annotated_types", *_AGENT_MODULES
        )
    )


_AGENT_MODULES = (
    "agents", "openai", "mcp", "httpx", "httpcore", "httpcore2", "truststore", "anyio",
    "sniffio", "certifi", "h11", "idna", "jiter", "distro", "griffe",
)  # fmt: skip


_WORKFLOW_ONLY_OPTIONS = frozenset(
    {
        "workflow_runner", "unsandboxed_workflow_runner", "workflow_failure_exception_types",
        "max_cached_workflows", "max_concurrent_workflow_tasks", "nondeterminism_as_workflow_fail",
        "nondeterminism_as_workflow_fail_for_types", "max_concurrent_workflow_task_polls",
        "workflow_task_poller_behavior", "debug_mode", "disable_safe_workflow_eviction",
        "sticky_queue_schedule_to_start_timeout", "workflow_instance_interceptor",
    }
)  # fmt: skip


class SandbankWorker:
    """The session workflows and sandbox activities on the shared task queue, plus the
    sandbox activities again on this worker's own queue (``worker_queue``).

    ``create`` runs on the shared queue (any worker); the sandbox it makes is pinned to the
    creating worker's queue, and every later call for it goes there, so it always reaches a
    worker that holds the sandbox. Workers with the same host and data directories share the
    queue (a restarted worker picks it up again). Used like a Temporal ``Worker``:
    ``async with``, ``run()``, ``shutdown()``.
    """

    def __init__(self, shared: Worker, pinned: Worker | None, worker_queue: str | None) -> None:
        self.shared = shared
        self.pinned = pinned
        self.worker_queue = worker_queue

    @property
    def task_queue(self) -> str:
        return self.shared.task_queue

    def _workers(self) -> list[Worker]:
        return [self.shared] + ([self.pinned] if self.pinned is not None else [])

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self._workers()))

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self._workers()))

    async def __aenter__(self) -> SandbankWorker:
        entered: list[Worker] = []
        try:
            for w in self._workers():
                await w.__aenter__()
                entered.append(w)
        except BaseException:
            for w in reversed(entered):
                await w.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.gather(*(w.__aexit__(*exc) for w in reversed(self._workers())))


def build_worker(
    client: Client,
    activities: SandboxActivities,
    *,
    task_queue: str = DEFAULT_TASK_QUEUE,
    workflows: Sequence[type] | None = None,
    extra_activities: Sequence[Callable[..., Any]] = (),
    pin_sandboxes: bool = True,
    agents: dict[str, Callable[..., Any]] | None = None,
    **options: Any,
) -> SandbankWorker:
    """A worker running the session workflows and every sandbox activity on ``task_queue``,
    and the sandbox activities on its own queue (``activities.worker_queue_for(task_queue)``)
    for the sandboxes it creates. ``pin_sandboxes=False`` leaves sandboxes on the shared
    queue (only right when every worker reaches every sandbox). ``agents``: agent factories
    by name for agent sessions (``sandbank.durable.agents.register_agent``, per process)."""
    extra_activities = [*extra_activities, *_agent_activities(activities, agents)]
    if workflows is None:
        from sandbank.durable.session import SessionWorkflow

        workflows = [SessionWorkflow]
    options.setdefault("graceful_shutdown_timeout", timedelta(seconds=5))
    shared = Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows),
        activities=[*activities.activities(), *extra_activities],
        workflow_runner=workflow_runner(),
        workflow_failure_exception_types=[SandbankError],
        **options,
    )
    if not pin_sandboxes:
        activities.worker_queue = None
        return SandbankWorker(shared, None, None)
    worker_queue = activities.worker_queue_for(task_queue)
    activities.worker_queue = worker_queue
    pinned_options = {k: v for k, v in options.items() if k not in _WORKFLOW_ONLY_OPTIONS}
    pinned = Worker(
        client, task_queue=worker_queue, activities=activities.activities(), **pinned_options
    )
    log.info("sandboxes created here are served on task queue %r", worker_queue)
    return SandbankWorker(shared, pinned, worker_queue)


def _agent_activities(
    activities: SandboxActivities, agents: dict[str, Callable[..., Any]] | None
) -> list[Callable[..., Any]]:
    """The model activities, when this process has agents (registered here or before)."""
    if agents is None and "sandbank.durable.agents" not in sys.modules:
        return []
    from sandbank.durable import agents as durable_agents

    for name, factory in (agents or {}).items():
        durable_agents.register_agent(name, factory)
    if not durable_agents.agent_names():
        return []
    return durable_agents.AgentActivities(activities).activities()
