"""Durable sessions on the runloop provider, through the real SDK and the Runloop emulator
(a fake of the service): a session migrates local -> runloop -> local through the store
with its bytes intact."""

from __future__ import annotations

from typing import Any

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import Step, Turn
from sandbank.durable.worker import build_worker
from tests.durable.conftest import *  # noqa: F403 (Temporal server, client, task queue, store)

MAKE = "mkdir -p src && head -c 300000 /dev/urandom > src/blob && printf 'x\\0y' > src/t.bin"
SUMS = "sha256sum src/blob src/t.bin"


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


async def test_migrate_local_runloop_local(
    client: Any, task_queue: str, local_provider: Any, runloop_provider: Any, store: Any
) -> None:
    acts = SandboxActivities({"local": local_provider, "runloop": runloop_provider}, store)
    mgr = SessionManager(client, task_queue)
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("local", manifest={"network": False})
            r = await mgr.send(sid, sh(MAKE, SUMS))
            assert r.error is None, r.error
            sums = r.steps[1].stdout
            moved = await mgr.migrate(sid, "runloop")
            assert moved.verified and moved.provider == "runloop"
            r = await mgr.send(sid, sh(SUMS, "echo more >> src/t.bin"))
            assert r.steps[0].stdout == sums
            back = await mgr.migrate(sid, "local")
            assert back.verified and back.provider == "local"
            r = await mgr.send(sid, sh("cat src/t.bin"))
            assert r.steps[0].stdout == "x\0ymore\n"
            assert moved.sandbox_id not in [i.id for i in await runloop_provider.list()]
            await mgr.stop(sid)
    finally:
        await acts.aclose()
