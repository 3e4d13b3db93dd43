"""Durable sessions on the vercel provider, through the real SDK and the Vercel emulator (a
fake of the service): a session migrates local -> vercel -> local through the store,
byte for byte."""

from __future__ import annotations

from typing import Any

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import Step, Turn
from sandbank.durable.worker import build_worker
from tests.durable.conftest import *  # noqa: F403 (Temporal server, client, task queue, store)

pytest.importorskip("vercel.sandbox")

MAKE = "mkdir -p src && head -c 300000 /dev/urandom > src/blob && printf 'x\\0y' > src/t.bin"
SUMS = "sha256sum src/blob src/t.bin"


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


async def test_migrate_local_vercel_local(
    client: Any, task_queue: str, local_provider: Any, vercel_provider: Any, store: Any
) -> None:
    acts = SandboxActivities({"local": local_provider, "vercel": vercel_provider}, store)
    mgr = SessionManager(client, task_queue)
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("local", manifest={"network": False})
            r = await mgr.send(sid, sh(MAKE, SUMS))
            assert r.error is None, r.error
            sums = r.steps[1].stdout
            moved = await mgr.migrate(sid, "vercel")
            assert moved.verified and moved.provider == "vercel"
            r = await mgr.send(sid, sh(SUMS, "echo more >> src/t.bin"))
            assert r.steps[0].stdout == sums
            back = await mgr.migrate(sid, "local")
            assert back.verified and back.provider == "local"
            r = await mgr.send(sid, sh("cat src/t.bin"))
            assert r.steps[0].stdout == "x\0ymore\n"
            assert moved.sandbox_id not in [i.id for i in await vercel_provider.list()]
            await mgr.stop(sid)
    finally:
        await acts.aclose()
