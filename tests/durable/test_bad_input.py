"""Malformed requests, sent around the manager with a raw Temporal client, get a clear error
and leave the session serving: none fails its workflow task. Real server, local provider."""

from __future__ import annotations

import time

import pytest
from temporalio.client import WorkflowUpdateFailedError

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.failures import from_failure
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import MigrateRequest, SessionWorkflow, Step, Turn
from sandbank.durable.worker import build_worker
from sandbank.errors import ConfigurationError, SandbankError

BAD_UPDATES = {
    "overrides that are not JSON": (SessionWorkflow.migrate, MigrateRequest("local", "{no")),
    "overrides that are a list": (SessionWorkflow.migrate, MigrateRequest("local", "[1]")),
    "an env value that is a number": (
        SessionWorkflow.send, Turn(steps=[Step("exec", cmd="true", env={"A": 1})]),  # type: ignore[dict-item]
    ),
    "a command that is a number": (SessionWorkflow.send, Turn(steps=[Step("exec", cmd=7)])),  # type: ignore[arg-type]
    "an unknown step kind": (SessionWorkflow.send, Turn(steps=[Step("teleport")])),
}  # fmt: skip


async def test_malformed_requests_fail_clearly_and_the_session_keeps_serving(
    client, task_queue, local_provider, store
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local")
        other = await mgr.start("local")
        handle = mgr.handle(sid)

        async def serves(note: str) -> None:
            started = time.monotonic()
            r = await mgr.send(sid, Turn(steps=[Step("exec", cmd=f"echo {note}")]))
            assert r.steps[0].stdout == f"{note}\n" and time.monotonic() - started < 5, note

        await serves("first")
        for kind, (update, arg) in BAD_UPDATES.items():
            started = time.monotonic()
            try:
                result = await handle.execute_update(update, arg)
                # A turn may also answer with its error instead of failing the update.
                assert getattr(result, "error_type", None), (kind, result)
            except WorkflowUpdateFailedError as exc:
                error = from_failure(exc.cause)
                # Typed data the SDK cannot decode is refused by the SDK itself.
                decoding = "Failed decoding arguments" in str(exc.cause)
                assert isinstance(error, SandbankError) or decoding, (kind, exc.cause)
            assert time.monotonic() - started < 10, kind
            await serves(kind.replace(" ", "-"))
            await handle.signal(SessionWorkflow.post, arg if isinstance(arg, Turn) else Turn())
            await serves(f"signal-{kind.replace(' ', '-')}")
        with pytest.raises(SandbankError, match="already started"):
            await mgr.fork(sid, other)  # an id in use
        await serves("after-fork")
        with pytest.raises(ConfigurationError):
            await mgr.migrate(sid, "no-such-provider")
        await serves("after-migrate")
        await mgr.stop(other)
        await mgr.stop(sid)
