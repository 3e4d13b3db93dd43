"""Oversized input fails at once with its size, or travels through the store; no input puts a
session's workflow task into a failed state. Real Temporal server, local provider, store."""

from __future__ import annotations

import hashlib
import time

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.failures import from_failure
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import SessionWorkflow, Step, Turn
from sandbank.durable.types import INLINE_LIMIT, MESSAGE_LIMIT, PayloadTooLarge
from sandbank.durable.worker import build_worker
from sandbank.errors import ConfigurationError
from tests.durable.test_activities import run_script
from tests.durable.workflows import ScriptInput

MB = 1_000_000


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


OVERSIZED = {
    "argv of 3 MB": (sh("echo " + "x" * 3 * MB), INLINE_LIMIT, "stdin"),
    "argv of 10 MB": (
        Turn(steps=[Step("exec", cmd=["echo", "y" * 10 * MB])]), INLINE_LIMIT, "file",
    ),
    "argv of 300 KB": (sh("true " + "z" * 300_000), INLINE_LIMIT, "file"),
    "env of 3 MB": (
        Turn(steps=[Step("exec", cmd="true", env={"BIG": "e" * 3 * MB})]), INLINE_LIMIT, "file",
    ),
    "inline content of 3 MB": (
        Turn(steps=[Step("write", path="big.txt", content="c" * 3 * MB)]), MESSAGE_LIMIT, "store",
    ),
    "message of 3 MB": (Turn(message="m" * 3 * MB), MESSAGE_LIMIT, "file"),
    "ten 200 KB writes": (
        Turn(steps=[Step("write", path=f"f{i}", content="w" * 200_000) for i in range(10)]),
        MESSAGE_LIMIT, "store",
    ),
}  # fmt: skip


async def answers_at_once(mgr: SessionManager, sid: str, note: str) -> None:
    started = time.monotonic()
    r = await mgr.send(sid, sh(f"echo {note}"))
    assert r.error is None and r.steps[0].stdout == f"{note}\n", r
    assert time.monotonic() - started < 5, f"the turn after {note} took too long"


async def test_each_kind_of_oversized_input_fails_at_once_and_the_session_keeps_serving(
    client, task_queue, local_provider, store
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local")
        await answers_at_once(mgr, sid, "first")
        for n, (kind, (turn, limit, hint)) in enumerate(OVERSIZED.items()):
            started = time.monotonic()
            with pytest.raises(PayloadTooLarge) as caught:
                await mgr.send(sid, turn)
            assert time.monotonic() - started < 1, kind
            err = caught.value
            assert err.limit == limit and err.size > limit, kind
            assert f"{err.size} bytes" in str(err) and f"{limit}-byte limit" in str(err), kind
            assert hint in str(err), (kind, str(err))
            await answers_at_once(mgr, sid, f"after-{n}")
        # Nothing of it ever ran or reached the session.
        info = await mgr.describe(sid)
        assert info.turns == 1 + len(OVERSIZED)
        # A manifest too big for a workflow's start fails the same way.
        with pytest.raises(PayloadTooLarge, match="manifest"):
            await mgr.start("local", {"env": {"HUGE": "h" * 3 * MB}})
        await mgr.stop(sid)


async def test_big_inline_content_travels_through_the_store(
    client, task_queue, local_provider, store
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue, store=store)
    content = "".join(f"line {i}\n" for i in range(400_000))  # about 4.9 MB
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local")
        write = Turn(steps=[Step("write", path="data/big.txt", content=content)])
        r = await mgr.send(sid, write)
        assert r.error is None, r
        r = await mgr.send(sid, sh("wc -c < data/big.txt; sha256sum data/big.txt"))
        size, digest = r.steps[0].stdout.split()[:2]
        assert int(size) == len(content)
        assert digest == hashlib.sha256(content.encode()).hexdigest()
        # The workflow's history holds handles, not the content.
        history = await mgr.handle(sid).fetch_history()
        assert len(history.to_json()) < 200_000
        await mgr.stop(sid)


async def test_oversized_input_sent_around_the_manager_never_wedges_the_session(
    client, task_queue, local_provider, store
):
    """A raw Temporal client skips the manager's checks: the session refuses (update) or
    drops (signal) what it cannot run, and answers the next turn at once."""
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local")
        await answers_at_once(mgr, sid, "first")
        handle = mgr.handle(sid)
        for size in (300_000, 1_500_000):
            turn = sh("echo " + "x" * size)
            with pytest.raises(WorkflowUpdateFailedError) as caught:
                await handle.execute_update(SessionWorkflow.send, turn)
            refused = from_failure(caught.value.cause)
            assert isinstance(refused, PayloadTooLarge) and refused.size > size
            await answers_at_once(mgr, sid, f"after-update-{size}")
            await handle.signal(SessionWorkflow.post, turn)
            await answers_at_once(mgr, sid, f"after-signal-{size}")
        # Over Temporal's own limits the server refuses a signal; the session is untouched.
        # (A raw *update* of 2-4 MB is beyond any workflow's reach: the SDK echoes the
        # request in its answer, which fails the task. Only the manager's check stops it.)
        for size in (3 * MB, 10 * MB):
            with pytest.raises(RPCError):
                await handle.signal(SessionWorkflow.post, sh("echo " + "x" * size))
            await answers_at_once(mgr, sid, f"after-raw-{size}")
        events = await mgr.history(sid)
        assert len([e for e in events if e.kind == "turn_refused"]) == 2
        assert all("PayloadTooLarge" not in e.detail for e in events if e.kind == "turn")
        await mgr.stop(sid)


async def test_workflow_sandbox_refuses_an_oversized_command_before_scheduling_it(
    client, task_queue, local_provider
):
    acts = SandboxActivities({"local": local_provider})
    started = time.monotonic()
    big = "echo " + "x" * 400_000
    out = await run_script(client, task_queue, acts, ScriptInput("local", commands=[big]))
    assert out.error_type == "PayloadTooLarge", out
    assert f"{INLINE_LIMIT}-byte limit" in (out.error or "") and "stdin" in (out.error or "")
    assert time.monotonic() - started < 10
    assert await local_provider.list() == []


async def test_a_turn_whose_replies_add_up_past_the_limit_is_cut_not_wedged(
    client, task_queue, local_provider, store
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local")
        loud = "yes o | head -c 200000; yes e | head -c 200000 >&2"
        started = time.monotonic()
        r = await mgr.send(sid, sh(*[loud] * 40))
        assert time.monotonic() - started < 30
        assert r.error is None and len(r.steps) == 40 and all(s.exit_code == 0 for s in r.steps)
        total = sum(len(s.stdout) + len(s.stderr) for s in r.steps)
        assert 0 < total <= MESSAGE_LIMIT // 2
        assert r.steps[0].stdout.startswith("o\no\n") and r.steps[-1].truncated
        await answers_at_once(mgr, sid, "after-loud")
        # A read of a big file returns its start, marked as cut.
        write_big = Step("exec", cmd="yes r | head -c 3000000 > big")
        r = await mgr.send(sid, Turn(steps=[write_big, Step("read", path="big")]))
        assert r.steps[1].content and r.steps[1].content.startswith("r\nr\n")
        assert r.steps[1].truncated and len(r.steps[1].content) <= 64 * 1024
        # What the commands printed did not go into the workflow's history.
        history = await mgr.handle(sid).fetch_history()
        assert len(history.to_json()) < 4 * MB
        # Too many steps for one turn: refused at once, by the manager and by the session.
        many = sh(*["true"] * 1001)
        with pytest.raises(ConfigurationError, match="at most 1000 steps"):
            await mgr.send(sid, many)
        with pytest.raises(WorkflowUpdateFailedError):
            await mgr.handle(sid).execute_update(SessionWorkflow.send, many)
        await mgr.handle(sid).signal(SessionWorkflow.post, many)
        await answers_at_once(mgr, sid, "after-many")
        await mgr.stop(sid)
