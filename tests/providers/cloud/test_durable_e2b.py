"""Durable sessions on e2b through the fake of E2B: a session, idle pause, and a migration
local -> e2b -> docker with byte-for-byte workspace equality after each move."""

from __future__ import annotations

import asyncio

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import SessionInfo, Step, Turn
from sandbank.durable.worker import build_worker
from sandbank.testing.emulators.fixtures import E2BFake
from tests.durable.conftest import client, local_provider, store, task_queue, temporal_address

pytest.importorskip("e2b")

from sandbank.testing.emulators.e2b import Fault

__all__ = ["client", "local_provider", "store", "task_queue", "temporal_address"]

pytestmark = pytest.mark.slow


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


async def reaches(mgr: SessionManager, sid: str, state: str) -> SessionInfo:
    for _ in range(300):
        if (info := await mgr.describe(sid)).sandbox_state == state:
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"{sid} never became {state}: {info}")


async def test_session_on_e2b_pauses_when_idle_and_wakes(
    client, task_queue, store, e2b_emulator: E2BFake, bwrap: str
):
    from sandbank.providers.e2b import E2BProvider

    e2b = E2BProvider()
    acts = SandboxActivities({"e2b": e2b}, store)
    mgr = SessionManager(client, task_queue)
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("e2b", pause_after=0.5)
            r = await mgr.send(sid, sh("echo hi > h.txt", "pwd"))
            assert r.steps[1].stdout == "/home/user\n"
            box_id = (await reaches(mgr, sid, "paused")).sandbox_id
            assert box_id is not None
            assert e2b_emulator.engine.get(box_id).state == "paused", "paused on E2B itself"
            # The fake rate-limits the next command once: the activity's retry absorbs it.
            e2b_emulator.emulator.faults.append(Fault("/process.Process/Start", 429))
            r = await mgr.send(sid, sh("cat h.txt"))
            assert r.steps[0].stdout == "hi\n" and not r.recovered
            assert (await mgr.describe(sid)).sandbox_id == box_id  # resumed, not rebuilt
            assert not e2b_emulator.emulator.faults[0].times, "the fault was hit"
            kinds = [e.kind for e in await mgr.history(sid)]
            assert "paused" in kinds and "resumed" in kinds, kinds
            await mgr.stop(sid)
    finally:
        await acts.aclose()


@pytest.mark.docker
async def test_migrate_local_e2b_docker(
    client, task_queue, local_provider, docker_image, store, e2b_emulator: E2BFake
):
    from sandbank.providers.docker import DockerProvider
    from sandbank.providers.e2b import E2BProvider

    e2b = E2BProvider()
    docker = DockerProvider(image=docker_image)
    acts = SandboxActivities({"local": local_provider, "e2b": e2b, "docker": docker}, store)
    mgr = SessionManager(client, task_queue)
    script = (
        "mkdir -p src/deep && head -c 300000 /dev/urandom > src/blob && echo x > src/t.txt"
        " && ln -s t.txt src/link && chmod 700 src/deep"
    )
    listing = "sha256sum src/blob src/t.txt; ls -l src | cut -c1-10; readlink src/link"
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("local")
            r = await mgr.send(sid, sh(script, listing))
            before = r.steps[1].stdout
            moved = await mgr.migrate(sid, "e2b")
            assert moved.verified and moved.provider == "e2b"
            r = await mgr.send(sid, sh(listing, "echo more >> src/t.txt"))
            assert r.steps[0].stdout == before
            onward = await mgr.migrate(sid, "docker")
            assert onward.verified and onward.provider == "docker"
            r = await mgr.send(sid, sh("cat src/t.txt", "sha256sum src/blob"))
            assert r.steps[0].stdout == "x\nmore\n"
            assert r.steps[1].stdout == before.splitlines()[0] + "\n"
            assert moved.sandbox_id not in [i.id for i in await e2b.list()]
            await mgr.stop(sid)
    finally:
        await acts.aclose()
