"""Durable sessions on the daytona provider, through the real SDK and the Daytona emulator
(a fake of the service): migration with byte-for-byte equality, the idle tiers (Daytona's
pause and stop), and recovery from a rate-limited exec."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import SessionInfo, Step, Turn
from sandbank.durable.worker import build_worker
from sandbank.testing.emulators.daytona import DaytonaEmulator
from tests.durable.conftest import *  # noqa: F403 (Temporal server, client, task queue, store)

MAKE = "mkdir -p src && head -c 300000 /dev/urandom > src/blob && printf 'x\\0y' > src/t.bin"
SUMS = "sha256sum src/blob src/t.bin"


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


async def test_migrate_local_daytona_local(
    client: Any, task_queue: str, local_provider: Any, daytona_provider: Any, store: Any
) -> None:
    acts = SandboxActivities({"local": local_provider, "daytona": daytona_provider}, store)
    mgr = SessionManager(client, task_queue)
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("local", manifest={"network": False})
            r = await mgr.send(sid, sh(MAKE, SUMS))
            assert r.error is None, r.error
            sums = r.steps[1].stdout
            moved = await mgr.migrate(sid, "daytona")
            assert moved.verified and moved.provider == "daytona"
            r = await mgr.send(sid, sh(SUMS, "echo more >> src/t.bin"))
            assert r.steps[0].stdout == sums
            back = await mgr.migrate(sid, "local")
            assert back.verified and back.provider == "local"
            r = await mgr.send(sid, sh("cat src/t.bin"))
            assert r.steps[0].stdout == "x\0ymore\n"
            assert moved.sandbox_id not in [i.id for i in await daytona_provider.list()]
            await mgr.stop(sid)
    finally:
        await acts.aclose()


async def test_idle_tiers_pause_stop_release(
    client: Any, task_queue: str, daytona_provider: Any, store: Any
) -> None:
    """Idle, a Daytona sandbox is paused, then checkpointed and stopped, then deleted; each
    wake comes back from where it went."""
    acts = SandboxActivities({"daytona": daytona_provider}, store)
    mgr = SessionManager(client, task_queue)

    async def reaches(sid: str, state: str) -> SessionInfo:
        for _ in range(400):
            if (info := await mgr.describe(sid)).sandbox_state == state:
                return info
            await asyncio.sleep(0.05)
        raise AssertionError(f"{sid} never became {state}: {info}")

    async def remote(box_id: str) -> str:
        found = [b for b in await daytona_provider.list() if b.id == box_id]
        return found[0].status.value if found else "gone"

    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start(
                "daytona", manifest={"network": False}, pause_after=0.5, release_after=3,
                destroy_after=6,
            )  # fmt: skip
            await mgr.send(sid, sh("echo hi > h.txt"))
            box_id = (await reaches(sid, "paused")).sandbox_id
            assert box_id and await remote(box_id) == "paused"
            r = await mgr.send(sid, sh("cat h.txt"))
            assert r.steps[0].stdout == "hi\n"

            stopped = await reaches(sid, "stopped")
            assert stopped.sandbox_id == box_id and await remote(box_id) == "stopped"
            r = await mgr.send(sid, sh("cat h.txt; echo more >> h.txt"))
            assert r.steps[0].stdout == "hi\n" and not r.recovered
            assert (await mgr.describe(sid)).sandbox_id == box_id  # woke without a restore

            released = await reaches(sid, "released")
            assert released.sandbox_id is None and await remote(box_id) == "gone"
            r = await mgr.send(sid, sh("cat h.txt"))
            assert r.steps[0].stdout == "hi\nmore\n"
            await mgr.stop(sid)
    finally:
        await acts.aclose()


@pytest.mark.parametrize(
    "status",
    [
        429,  # refused before it ran: the retry runs it
        0,  # dropped after it ran: the retry collects the first run from the exec journal
    ],
)
async def test_the_session_recovers_from_a_failed_exec_call(
    client: Any,
    task_queue: str,
    daytona_emulator: DaytonaEmulator,
    daytona_provider: Any,
    store: Any,
    status: int,
) -> None:
    """The emulator answers 429 on one exec call, or drops the connection in its response:
    the activity's retry completes the turn, and the command has run once."""
    acts = SandboxActivities({"daytona": daytona_provider}, store)
    mgr = SessionManager(client, task_queue)
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("daytona", manifest={"network": False})
            assert (await mgr.send(sid, sh("true"))).error is None
            daytona_emulator.inject("POST", "/process/execute", status)
            r = await mgr.send(sid, sh("echo once >> log.txt; cat log.txt"))
            assert r.error is None, r.error
            assert r.steps[0].stdout == "once\n"
            assert daytona_emulator.faults[-1].times == 0  # the fault was hit
            await mgr.stop(sid)
    finally:
        await acts.aclose()
