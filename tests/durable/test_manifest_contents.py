"""Sessions from a manifest with contents, setup and exclude (a real Temporal server)."""

from __future__ import annotations

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import Step, Turn
from sandbank.durable.worker import build_worker
from sandbank.manifest.materialize import CACHE_TAG

MANIFEST = {
    "files": [{"path": "package.txt", "text": "deps\n"}],
    "setup": ["mkdir -p node_modules/dep && echo built-once > node_modules/dep/lib"],
    "exclude": ["node_modules/"],
}


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


async def test_checkpoints_skip_excluded_dirs_and_a_rebuild_restores_them(
    client, task_queue, local_provider, store
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local", MANIFEST)
        r = await mgr.send(sid, sh("cat package.txt node_modules/dep/lib", "echo work > w.txt"))
        assert r.error is None, r.error
        assert r.steps[0].stdout == "deps\nbuilt-once\n"
        files = {e.path for e in await store.listing(r.checkpoint)}
        assert "w.txt" in files and "package.txt" in files
        assert not any(p.startswith("node_modules") for p in files)
        info = await mgr.describe(sid)
        await local_provider.destroy(info.sandbox_id)  # lost: rebuilt from the checkpoint
        r = await mgr.send(sid, sh("cat w.txt node_modules/dep/lib"))
        assert r.recovered and r.steps[0].stdout == "work\nbuilt-once\n"
        cached = [x for x in await store.list() if any(t.startswith(CACHE_TAG) for t in x.tags)]
        assert len(cached) == 1  # setup ran once; the rebuild restored its snapshot
        await mgr.stop(sid)
    assert await local_provider.list() == []


@pytest.mark.docker
async def test_migration_with_excludes_verifies(
    client, task_queue, local_provider, docker_image, store
):
    from sandbank.providers.docker import DockerProvider

    docker = DockerProvider(image=docker_image)
    acts = SandboxActivities({"local": local_provider, "docker": docker}, store)
    mgr = SessionManager(client, task_queue)
    manifest = {**MANIFEST, "setup": ["mkdir -p node_modules && date +%s%N > node_modules/stamp"]}
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("local", manifest)
            r = await mgr.send(sid, sh("echo work > w.txt"))
            assert r.error is None, r.error
            moved = await mgr.migrate(sid, "docker")
            assert moved.verified and moved.provider == "docker"
            r = await mgr.send(sid, sh("cat w.txt package.txt", "test -s node_modules/stamp"))
            assert r.steps[0].stdout == "work\ndeps\n" and r.steps[1].exit_code == 0
            await mgr.stop(sid)
    finally:
        await acts.aclose()


async def test_a_failing_setup_fails_the_turn_clearly(client, task_queue, local_provider, store):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local", {**MANIFEST, "setup": ["echo 'missing tool' >&2; exit 7"]})
        r = await mgr.send(sid, sh("true"))
        assert r.error is not None
        assert "setup[0]" in r.error and "exited with 7" in r.error and "missing tool" in r.error
        assert await local_provider.list() == []
        await mgr.stop(sid)


async def test_a_worker_limits_host_paths_to_its_roots(
    client, task_queue, local_provider, store, tmp_path
):
    acts = SandboxActivities({"local": local_provider}, store, host_roots=[str(tmp_path)])
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local", {"files": [{"path": "p", "host": "/etc/passwd"}]})
        r = await mgr.send(sid, sh("true"))
        assert r.error is not None and "files[0].host" in r.error and "outside" in r.error
        assert await local_provider.list() == []
        await mgr.stop(sid)
