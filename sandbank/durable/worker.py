"""Build and run a sandbank worker: the sandbox activities and the session workflows.

The worker holds the providers and the snapshot store; nothing of them reaches a workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sandbank.durable.activities import SandboxActivities
from sandbank.errors import SandbankError

__all__ = ["DEFAULT_TASK_QUEUE", "build_worker", "workflow_runner"]

log = logging.getLogger(__name__)

DEFAULT_TASK_QUEUE = "sandbank"


def workflow_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox with sandbank (plain data and pure helpers) passed through."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "sandbank", "pydantic", "pydantic_core", "annotated_types"
        )
    )


def build_worker(
    client: Client,
    activities: SandboxActivities,
    *,
    task_queue: str = DEFAULT_TASK_QUEUE,
    workflows: Sequence[type] | None = None,
    extra_activities: Sequence[Callable[..., Any]] = (),
    **options: Any,
) -> Worker:
    """A worker running the session workflows and every sandbox activity on ``task_queue``."""
    if workflows is None:
        from sandbank.durable.session import SessionWorkflow

        workflows = [SessionWorkflow]
    options.setdefault("graceful_shutdown_timeout", timedelta(seconds=5))
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows),
        activities=[*activities.activities(), *extra_activities],
        workflow_runner=workflow_runner(),
        workflow_failure_exception_types=[SandbankError],
        **options,
    )
