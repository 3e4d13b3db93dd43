"""Sandbox activities and the workflow-side sandbox against a real server and provider."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.worker import build_worker
from tests.durable.workflows import ScriptInput, ScriptOutput, ScriptWorkflow


async def run_script(client: Client, task_queue: str, acts: SandboxActivities, inp: ScriptInput):
    async with build_worker(client, acts, task_queue=task_queue, workflows=[ScriptWorkflow]):
        return await client.execute_workflow(
            ScriptWorkflow.run,
            inp,
            id=f"script-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            result_type=ScriptOutput,
        )


async def test_exec_and_files_through_workflow_sandbox(client, task_queue, local_provider):
    acts = SandboxActivities({"local": local_provider})
    out = await run_script(
        client,
        task_queue,
        acts,
        ScriptInput(
            "local",
            commands=["echo hello; echo err >&2", "cat notes/a.txt", "exit 3"],
            files={"notes/a.txt": "alpha\n"},
        ),
    )
    assert out.error is None, out.error
    assert out.outputs[:2] == ["hello\n", "alpha\n"]
    assert out.exit_codes == [0, 0, 3]
    assert out.files == {"notes/a.txt": "alpha\n"}
    assert "notes/a.txt" in out.tree and not any(p.startswith(".sandbank") for p in out.tree)
    assert await local_provider.list() == []


async def test_bad_request_fails_at_once(client, task_queue, local_provider):
    acts = SandboxActivities({"local": local_provider})
    out = await run_script(client, task_queue, acts, ScriptInput("local", files={"../escape": "x"}))
    assert out.error_type == "WorkspacePathError" and out.error_path == "../escape", out


async def test_missing_file_maps_to_path_not_found(client, task_queue, local_provider):
    acts = SandboxActivities({"local": local_provider})
    # A command that reads a missing file is a non-zero exit, not an error...
    out = await run_script(client, task_queue, acts, ScriptInput("local", commands=["cat nope"]))
    assert out.exit_codes == [1]
    # ...while reading it through the sandbox is a PathNotFound, not retried.
    out = await run_script(
        client, task_queue, acts, ScriptInput("local", commands=["rm a"], files={"a": "x"})
    )
    assert out.error_type == "PathNotFound" and out.error_path == "a", out


async def test_same_exec_id_runs_once(client, task_queue, local_provider):
    acts = SandboxActivities({"local": local_provider})
    out = await run_script(
        client,
        task_queue,
        acts,
        ScriptInput(
            "local",
            commands=["echo run >> count.txt; cat count.txt"] * 3,
            exec_id="fixed-id-1",
        ),
    )
    assert out.outputs == ["run\n"] * 3


async def test_50mb_file_keeps_history_small(client, task_queue, local_provider, store):
    acts = SandboxActivities({"local": local_provider}, store)
    inp = ScriptInput("local", commands=["cmp big.bin copy/big.bin && wc -c < big.bin"],
                      big_file_mb=50)  # fmt: skip
    wf_id = f"big-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, acts, task_queue=task_queue, workflows=[ScriptWorkflow]):
        out = await client.execute_workflow(
            ScriptWorkflow.run, inp, id=wf_id, task_queue=task_queue, result_type=ScriptOutput
        )
    assert out.error is None, out.error
    assert out.exit_codes == [0] and out.outputs == [f"{50 * 1024 * 1024}\n"]
    history = await client.get_workflow_handle(wf_id).fetch_history()
    size = len(history.to_json().encode())
    assert size < 1024 * 1024, f"history is {size} bytes"


def test_worker_queue_is_stable_per_host_and_disk(tmp_path):
    from sandbank.providers.local import LocalProvider

    def queue(state, **kw):
        return SandboxActivities({"local": LocalProvider(state_dir=state)}, **kw).worker_queue_for(
            "q"
        )

    same = queue(tmp_path / "a")
    assert same == queue(tmp_path / "a")  # a worker restarted on the same disk
    assert same.startswith("q@") and same != queue(tmp_path / "b")
    assert queue(tmp_path / "a", locality="elsewhere") != same


async def test_local_exec_on_another_worker_starts_nothing(local_provider):
    import dataclasses

    from temporalio.testing import ActivityEnvironment

    from sandbank.durable import types as t

    acts = SandboxActivities({"local": local_provider})
    acts.worker_queue = "q@here-1"
    box = await local_provider.create()
    try:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, is_local=True)
        elsewhere = t.SandboxRef("local", box.id, "q@there-2")
        inp = t.ExecInput(elsewhere, "e1", ["/bin/sh", "-c", "echo ran > ran"], wait_limit=2.0)
        out = await env.run(acts.exec, inp)
        assert out.pending and out.elsewhere
        assert "ran" not in [e.path for e in await box.list_tree(".")]
        # On the sandbox's own worker it runs (locally too).
        here = dataclasses.replace(elsewhere, task_queue="q@here-1")
        out = await env.run(acts.exec, dataclasses.replace(inp, sandbox=here))
        assert out.exit_code == 0 and not out.pending
        assert await box.read_file("ran") == b"ran\n"
    finally:
        await acts.aclose()
        await local_provider.destroy(box.id)


async def test_snapshot_listing_digest_equals_the_sandbox_listing(
    local_provider, store, docker_image
):
    """The cut-over compares a target's digest_listing with the final snapshot's, computed
    from the store: both must hash the same rows (dirs, links, modes, non-UTF-8 names)."""
    from temporalio.testing import ActivityEnvironment

    from sandbank.durable import types as t
    from sandbank.providers.docker import DockerProvider

    docker = DockerProvider(image=docker_image, labels={"sandbank-test.run": uuid.uuid4().hex})
    acts = SandboxActivities({"local": local_provider, "docker": docker}, store)
    env = ActivityEnvironment()
    src = await local_provider.create()
    dst = await docker.create()
    script = (
        "mkdir -p src/deep empty && echo hi > src/a.txt && chmod 750 src/deep && "
        "head -c 70000 /dev/urandom > src/deep/blob && ln -s a.txt src/link && "
        "ln -s /nowhere dangling && printf x > \"$(printf 'caf\\351')\""
    )
    try:
        assert (await src.exec(["/bin/sh", "-c", script])).ok
        ref = t.SandboxRef("local", src.id)
        base = await env.run(acts.snapshot, t.SnapshotInput(ref))
        await src.exec(["/bin/sh", "-c", "echo more >> src/a.txt && rm -r empty && touch new"])
        final = await env.run(acts.snapshot, t.SnapshotInput(ref, parent=base.snapshot_id))
        want = await env.run(acts.digest_listing, ref)
        derived = t.SnapshotDigestInput(final.snapshot_id)
        assert (await env.run(acts.snapshot_digest_listing, derived)) == want
        target = t.SandboxRef("docker", dst.id)
        await env.run(acts.restore, t.RestoreInput(target, base.snapshot_id))
        inp = t.RestoreInput(target, final.snapshot_id, base=base.snapshot_id)
        await env.run(acts.restore, inp)
        assert (await env.run(acts.digest_listing, target)) == want
        assert (await env.run(acts.digest, target)) == await env.run(acts.digest, ref)
    finally:
        await acts.aclose()
        await local_provider.destroy(src.id)
        await docker.destroy(dst.id)
        await docker.aclose()
