"""Durable sessions on modal through the Modal emulator (a fake of Modal's service): a
session whose command meets an injected RPC failure, and a migration local -> modal ->
docker with byte-for-byte workspace equality after each move."""

from __future__ import annotations

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import Step, Turn
from sandbank.durable.worker import build_worker
from tests.durable.conftest import client, local_provider, store, task_queue, temporal_address

pytest.importorskip("modal")

from grpclib import Status

from sandbank.testing.emulators.modal import Fault, ModalEmulator

__all__ = ["client", "local_provider", "store", "task_queue", "temporal_address"]

pytestmark = pytest.mark.slow


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


async def test_session_on_modal_absorbs_a_rate_limited_command(
    client, task_queue, store, modal_emulator: ModalEmulator, bwrap: str
):
    from sandbank.providers.modal import ModalProvider

    modal = ModalProvider(app="sandbank-durable")
    acts = SandboxActivities({"modal": modal}, store)
    mgr = SessionManager(client, task_queue)
    try:
        async with build_worker(client, acts, task_queue=task_queue):
            sid = await mgr.start("modal")
            r = await mgr.send(sid, sh("echo hi > h.txt", "pwd"))
            assert r.steps[1].stdout == "/workspace\n"
            box_id = (await mgr.describe(sid)).sandbox_id
            # RESOURCE_EXHAUSTED without a retry policy: the SDK does not retry it, the
            # provider says it is retryable, and the activity's retry absorbs it.
            starts = modal_emulator.calls.count("TaskExecStart")
            modal_emulator.inject(Fault("TaskExecStart", Status.RESOURCE_EXHAUSTED, count=1))
            r = await mgr.send(sid, sh("cat h.txt"))
            assert r.steps[0].stdout == "hi\n" and not r.recovered
            assert modal_emulator.calls.count("TaskExecStart") >= starts + 2, "the fault was hit"
            assert (await mgr.describe(sid)).sandbox_id == box_id
            await mgr.stop(sid)
    finally:
        await acts.aclose()


@pytest.mark.docker
async def test_migrate_local_modal_docker(
    client, task_queue, local_provider, docker_image, store, modal_emulator: ModalEmulator
):
    from sandbank.providers.docker import DockerProvider
    from sandbank.providers.modal import ModalProvider

    modal = ModalProvider(app="sandbank-durable")
    docker = DockerProvider(image=docker_image)
    acts = SandboxActivities({"local": local_provider, "modal": modal, "docker": docker}, store)
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
            moved = await mgr.migrate(sid, "modal")
            assert moved.verified and moved.provider == "modal"
            r = await mgr.send(sid, sh(listing, "echo more >> src/t.txt"))
            assert r.steps[0].stdout == before
            onward = await mgr.migrate(sid, "docker")
            assert onward.verified and onward.provider == "docker"
            r = await mgr.send(sid, sh("cat src/t.txt", "sha256sum src/blob"))
            assert r.steps[0].stdout == "x\nmore\n"
            assert r.steps[1].stdout == before.splitlines()[0] + "\n"
            assert moved.sandbox_id not in [i.id for i in await modal.list()]
            await mgr.stop(sid)
    finally:
        await acts.aclose()
