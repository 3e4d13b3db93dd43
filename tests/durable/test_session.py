"""The session workflow against a real Temporal server, the local provider and a file store."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowExecutionStatus

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import (
    SessionConfig,
    SessionInfo,
    SessionState,
    SessionWorkflow,
    Step,
    Turn,
)
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


async def test_continues_as_new_keeping_workspace_history_and_updates(
    client, task_queue, local_provider, store
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    # Idle tiers far away: only the turn threshold can end a run.
    config = SessionConfig(
        "local", name="can", pause_after=600, release_after=600, continue_after_turns=2
    )
    async with build_worker(client, acts, task_queue=task_queue):
        sid = "session-can-" + task_queue
        handle = await client.start_workflow(
            SessionWorkflow.run, SessionState(config=config), id=sid, task_queue=task_queue
        )
        first_run = handle.result_run_id
        assert first_run and (await mgr.handle(sid).describe()).run_id == first_run

        async def current_run(other_than: str) -> str:
            for _ in range(100):
                run_id = (await mgr.handle(sid).describe()).run_id
                assert run_id is not None
                if run_id != other_than:
                    return run_id
                await asyncio.sleep(0.1)
            raise AssertionError(f"{sid} never continued as new from run {other_than}")

        r1 = await mgr.send(sid, Turn(steps=[Step("write", path="keep.txt", content="before\n")]))
        r2 = await mgr.send(sid, sh("echo two >> keep.txt"))
        assert (r1.turn, r2.turn) == (1, 2) and r1.error is None and r2.error is None
        box = (await mgr.describe(sid)).sandbox_id
        # The second turn reached the threshold: the run rolls over without another message.
        second_run = await current_run(first_run)
        old = await client.get_workflow_handle(sid, run_id=first_run).describe()
        assert old.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        info = await mgr.describe(sid)
        assert info.session_id == sid and info.turns == 2 and info.name == "can"
        assert info.sandbox_state == "running" and info.sandbox_id == box
        # The workspace written in the first run is there in the second.
        r3 = await mgr.send(sid, sh("cat keep.txt"))
        assert r3.turn == 3 and r3.steps[0].stdout == "before\ntwo\n"

        # Messages racing the rollovers (due every two turns): a burst, then three writers
        # each sending one message at a time, so messages reach the server while a run is
        # ending. None is lost or run twice, and the turn numbers run on without gaps.
        async def append(i: int) -> int:
            r = await mgr.send(sid, sh(f"echo {i} >> log.txt"))
            assert r.error is None and r.steps[0].exit_code == 0, r
            return r.turn

        async def writer(first: int) -> list[int]:
            return [await append(i) for i in range(first, first + 6)]

        burst = await asyncio.gather(*(append(i) for i in range(8)))
        # A run never ends with a message unanswered; once the burst is, it rolls over.
        third_run = await current_run(second_run)
        streams = await asyncio.gather(writer(8), writer(14), writer(20))
        assert sorted(burst) == list(range(4, 12))
        assert all(s == sorted(s) for s in streams)
        assert sorted(n for s in streams for n in s) == list(range(12, 30))
        r = await mgr.send(sid, sh("sort -n log.txt"))
        assert r.turn == 30 and r.steps[0].stdout == "".join(f"{i}\n" for i in range(26))

        runs = [e.run_id async for e in client.list_workflows(f'WorkflowId = "{sid}"')]
        assert {first_run, second_run, third_run} <= set(runs)
        assert (await mgr.handle(sid).describe()).run_id not in (first_run, second_run)
        info = await mgr.describe(sid)
        assert info.turns == 30 and info.sandbox_id == box and not info.stopped
        events = await mgr.history(sid)
        turn_events = [e.detail for e in events if e.kind == "turn"]
        assert [int(d.split(":")[0]) for d in turn_events] == list(range(1, 31))
        # One sandbox all along: each run took over the live one, none was rebuilt.
        kinds = [e.kind for e in events]
        assert kinds.count("created") == 1 and "rehydrated" not in kinds
        assert [s.session_id for s in await mgr.list()] == [sid]
        final = await mgr.stop(sid)
        assert final.stopped and final.turns == 30
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
async def test_idle_tiers_on_docker_pause_stop_release(client, task_queue, docker_image, store):
    """Idle, a docker sandbox is paused, then checkpointed and stopped (the container
    stays, nothing runs), then destroyed; each wake comes back from where it went."""
    from sandbank.providers.docker import DockerProvider

    docker = DockerProvider(image=docker_image)
    acts = SandboxActivities({"docker": docker}, store)
    mgr = SessionManager(client, task_queue)

    async def reaches(sid: str, state: str) -> SessionInfo:
        for _ in range(200):
            if (info := await mgr.describe(sid)).sandbox_state == state:
                return info
            await asyncio.sleep(0.05)
        raise AssertionError(f"{sid} never became {state}: {info}")

    async def container(box_id: str) -> str:
        found = [b for b in await docker.list() if b.id == box_id]
        return found[0].status.value if found else "gone"

    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("docker", pause_after=0.5, release_after=2, destroy_after=4)
            await mgr.send(sid, sh("echo hi > h.txt"))
            box_id = (await reaches(sid, "paused")).sandbox_id
            assert box_id and await container(box_id) == "paused"
            r = await mgr.send(sid, sh("cat h.txt"))
            assert r.steps[0].stdout == "hi\n"

            stopped = await reaches(sid, "stopped")
            assert stopped.sandbox_id == box_id and await container(box_id) == "stopped"
            r = await mgr.send(sid, sh("cat h.txt; echo more >> h.txt"))
            assert r.steps[0].stdout == "hi\n" and not r.recovered
            assert (await mgr.describe(sid)).sandbox_id == box_id  # woke without a restore

            released = await reaches(sid, "released")
            assert released.sandbox_id is None and await container(box_id) == "gone"
            r = await mgr.send(sid, sh("cat h.txt"))
            assert r.steps[0].stdout == "hi\nmore\n"
            events = [(e.kind, e.detail) for e in await mgr.history(sid)]
            kinds = [k for k, _ in events]
            assert kinds.count("paused") >= 2 and kinds.count("sandbox_stopped") == 2, kinds
            assert [d.split(" in ")[0] for k, d in events if k == "resumed"] == [
                "from paused",
                "from stopped",
            ]
            assert kinds.count("rehydrated") == 1 and kinds[-3:] == [
                "rehydrated",
                "checkpoint",
                "turn",
            ]
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
