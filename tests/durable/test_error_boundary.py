"""Every SandbankError subclass crosses Temporal's boundaries with its type and fields: from
an activity into a workflow, and from a workflow update to the client. Real server."""

from __future__ import annotations

import importlib
import pkgutil
import uuid

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError

import sandbank
from sandbank.durable.activities import SandboxActivities
from sandbank.durable.failures import error_classes, from_failure
from sandbank.durable.worker import build_worker
from sandbank.errors import SandbankError
from tests.durable.workflows import RAISE_ERROR, ErrorWorkflow, sample_error, seen_error


def every_subclass() -> list[type[SandbankError]]:
    """Every SandbankError subclass of every sandbank module, each imported first."""
    for module in pkgutil.walk_packages(sandbank.__path__, "sandbank."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: list[type[SandbankError]] = []
    todo = [SandbankError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


CLASSES = every_subclass()
NAMES = sorted({cls.__name__ for cls in CLASSES})


def test_every_subclass_is_known_by_a_unique_name():
    assert len(NAMES) == len(CLASSES), "two SandbankError subclasses share a name"
    assert set(error_classes()) == set(NAMES)
    # The tree covers the snapshot store and the durable layer.
    assert {"CorruptObject", "MissingObject", "PayloadTooLarge", "SessionDamaged"} <= set(NAMES)


async def test_every_subclass_crosses_the_activity_and_update_boundaries(client, task_queue):
    acts = SandboxActivities({})

    @activity.defn(name=RAISE_ERROR)
    async def raise_error(name: str) -> None:
        async def work() -> None:
            raise sample_error(name)

        await acts._run(None, work)  # the activities' own error mapping

    async with build_worker(
        client, acts, task_queue=task_queue, workflows=[ErrorWorkflow],
        extra_activities=[raise_error],
    ):  # fmt: skip
        handle = await client.start_workflow(
            ErrorWorkflow.run, NAMES, id=f"errors-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )
        from_client = {}
        for name in NAMES:
            with pytest.raises(WorkflowUpdateFailedError) as caught:
                await handle.execute_update(ErrorWorkflow.raise_error, name)
            from_client[name] = seen_error(from_failure(caught.value.cause))
        await handle.signal(ErrorWorkflow.finish)
        in_workflow = await handle.result()

    for name, seen in zip(NAMES, in_workflow, strict=True):
        original = seen_error(sample_error(name))
        assert seen == original, f"{name} lost its type or fields in the activity boundary"
        assert from_client[name] == original, f"{name} lost its type or fields in an update"
    timeout = in_workflow[NAMES.index("ExecTimeout")]
    assert timeout.result_stdout == "partial out" and timeout.fields["timeout"] == 2.5
    corrupt = in_workflow[NAMES.index("CorruptObject")]
    assert corrupt.fields["object"] == "obj of CorruptObject"


def test_an_exec_timeout_recorded_by_older_code_keeps_its_output():
    """Histories from before fields were carried hold only the partial output."""
    from temporalio.exceptions import ApplicationError

    from sandbank.durable.types import ExecOutput, b64encode
    from sandbank.errors import ExecTimeout

    old = ExecOutput(exit_code=-9, stdout_b64=b64encode(b"so far"), timed_out=True)
    failure = ApplicationError("timed out", vars(old), type="ExecTimeout", non_retryable=True)
    exc = from_failure(failure)
    assert isinstance(exc, ExecTimeout) and exc.result.stdout == b"so far"
    assert exc.result.exit_code == -9 and not hasattr(exc, "stdout_b64")
