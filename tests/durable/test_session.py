"""The session workflow against a real Temporal server, the local provider and a file store."""

from __future__ import annotations

import asyncio

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import Step, Turn
from sandbank.durable.worker import build_worker


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


async def test_turns_checkpoint_and_survive_release(client, task_queue, local_provider, store):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local", name="t1", pause_after=600, release_after=1.0)
        first = Turn(
            steps=[
                Step("write", path="a.txt", content="one\n"),
                Step("exec", cmd="cat a.txt; echo two >> a.txt"),
            ]
        )
        r1 = await mgr.send(sid, first)
        assert r1.error is None, r1.error
        assert r1.steps[1].stdout == "one\n" and r1.checkpoint
        # Idle past release_after: checkpointed and destroyed, nothing live.
        for _ in range(100):
            info = await mgr.describe(sid)
            if info.sandbox_state == "released":
                break
            await asyncio.sleep(0.1)
        assert info.sandbox_state == "released" and info.sandbox_id is None
        assert await local_provider.list() == []
        # The next message rehydrates from the checkpoint.
        r2 = await mgr.send(sid, sh("cat a.txt"))
        assert r2.steps[0].stdout == "one\ntwo\n"
        assert r2.checkpoint != r1.checkpoint
        kinds = [e.kind for e in await mgr.history(sid)]
        assert "released" in kinds and "rehydrated" in kinds
        assert [s.session_id for s in await mgr.list()] == [sid]
        await mgr.rename(sid, "renamed")
        final = await mgr.stop(sid)
        assert final.stopped and final.name == "renamed"
        assert await local_provider.list() == []


async def test_fork_is_isolated(client, task_queue, local_provider, store):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local")
        await mgr.send(sid, sh("echo base > f.txt"))
        fid = await mgr.fork(sid)
        await mgr.send(sid, sh("echo source >> f.txt"))
        forked = await mgr.send(fid, sh("echo fork >> f.txt; cat f.txt"))
        assert forked.steps[0].stdout == "base\nfork\n"
        src = await mgr.send(sid, sh("cat f.txt"))
        assert src.steps[0].stdout == "base\nsource\n"
        assert (await mgr.describe(fid)).forked_from == sid
        await mgr.stop(fid)
        await mgr.stop(sid)


async def test_lost_sandbox_is_rebuilt_from_checkpoint(client, task_queue, local_provider, store):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local")
        await mgr.send(sid, sh("echo kept > k.txt"))
        info = await mgr.describe(sid)
        assert info.sandbox_id
        await local_provider.destroy(info.sandbox_id)  # something else kills it
        r = await mgr.send(sid, sh("cat k.txt"))
        assert r.recovered and r.steps[0].stdout == "kept\n"
        assert "sandbox_lost" in [e.kind for e in await mgr.history(sid)]
        await mgr.stop(sid)


@pytest.mark.docker
async def test_pause_when_idle_on_docker(client, task_queue, docker_image, store):
    from sandbank.providers.docker import DockerProvider

    docker = DockerProvider(image=docker_image)
    acts = SandboxActivities({"docker": docker}, store)
    mgr = SessionManager(client, task_queue)
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("docker", pause_after=0.5, release_after=600)
            await mgr.send(sid, sh("echo hi > h.txt"))
            for _ in range(100):
                if (await mgr.describe(sid)).sandbox_state == "paused":
                    break
                await asyncio.sleep(0.1)
            assert (await mgr.describe(sid)).sandbox_state == "paused"
            r = await mgr.send(sid, sh("cat h.txt"))
            assert r.steps[0].stdout == "hi\n"
            await mgr.stop(sid)
    finally:
        await acts.aclose()


@pytest.mark.docker
async def test_migrate_local_docker_local(client, task_queue, local_provider, docker_image, store):
    from sandbank.providers.docker import DockerProvider

    docker = DockerProvider(image=docker_image)
    acts = SandboxActivities({"local": local_provider, "docker": docker}, store)
    mgr = SessionManager(client, task_queue)
    script = "mkdir -p src && head -c 300000 /dev/urandom > src/blob && echo x > src/t.txt"
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("local")
            r = await mgr.send(sid, sh(script, "sha256sum src/blob src/t.txt"))
            sums = r.steps[1].stdout
            moved = await mgr.migrate(sid, "docker")
            assert moved.verified and moved.provider == "docker"
            r = await mgr.send(sid, sh("sha256sum src/blob src/t.txt", "echo more >> src/t.txt"))
            assert r.steps[0].stdout == sums
            back = await mgr.migrate(sid, "local")
            assert back.verified and back.provider == "local"
            r = await mgr.send(sid, sh("cat src/t.txt"))
            assert r.steps[0].stdout == "x\nmore\n"
            assert moved.sandbox_id not in [i.id for i in await docker.list()]
            await mgr.stop(sid)
    finally:
        await acts.aclose()
