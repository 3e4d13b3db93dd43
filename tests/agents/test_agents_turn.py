"""A SandboxAgent turn on real sandbank providers: shell, apply_patch, snapshots in a store."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from agents import RunConfig, Runner
from agents.sandbox import Manifest as SdkManifest
from agents.sandbox import SandboxRunConfig
from agents.sandbox.entries import File
from agents.sandbox.snapshot import LocalSnapshotSpec
from sdk_helpers import (
    answer,
    patch,
    run_turn,
    sandbox_agent,
    scripted,
    session_state,
    shell,
    tool_outputs,
)

from sandbank.agents import SandbankClientOptions, SandbankSandboxClient, model_for
from sandbank.errors import ManifestError
from sandbank.snapshots import SnapshotStore


async def restored(store: SnapshotStore, state: dict[str, Any], into: Path) -> Path:
    """The workspace of a session's latest snapshot, restored into a host directory."""
    await store.restore(state["snapshot"]["snapshot_id"], into)
    return into


async def agent_turn(client: SandbankSandboxClient, store: SnapshotStore, tmp_path: Path) -> None:
    manifest = SdkManifest(
        entries={"README.md": File(content=b"# demo\n")}, environment={"value": {"MODE": "test"}}
    )
    model = scripted(
        shell("pwd; echo mode=$MODE; cat README.md", "c1"),
        patch("*** Add File: src/app.py\n+print('v1')\n", "c2"),
        patch("*** Update File: src/app.py\n@@\n-print('v1')\n+print('v2')\n", "c3"),
        shell("python3 src/app.py", "c4", workdir="."),
        answer("all done"),
    )
    result = await run_turn(model, client=client, manifest=manifest)
    outputs = tool_outputs(result)
    assert "/workspace" in outputs[0] and "mode=test" in outputs[0] and "# demo" in outputs[0]
    assert "src/app.py" in outputs[1] and "src/app.py" in outputs[2]
    assert "v2" in outputs[3]
    assert result.final_output == "all done"
    model.assert_complete()
    workspace = await restored(store, session_state(result), tmp_path / "restored")
    assert (workspace / "src/app.py").read_text().rstrip("\n") == "print('v2')"
    assert (workspace / "README.md").read_bytes() == b"# demo\n"
    gone = session_state(result)["sandbox_id"]
    assert gone not in {i.id for i in await client.provider.list()}  # the run deleted it


async def test_turn_on_local(local: Any, client_for: Any, store: SnapshotStore, tmp_path: Path):
    await agent_turn(client_for(local), store, tmp_path)


@pytest.mark.docker
async def test_turn_on_docker(docker: Any, client_for: Any, store: SnapshotStore, tmp_path: Path):
    await agent_turn(client_for(docker), store, tmp_path)


async def test_scripted_default_model_says_so(local: Any, client_for: Any, store: SnapshotStore):
    """``model_for(None)`` drives real tool calls and says in its answer that it is scripted."""
    result = await run_turn(model_for(None), "write a haiku", client=client_for(local))
    assert "[scripted model" in result.final_output and "write a haiku" in result.final_output
    outputs = tool_outputs(result)
    assert len(outputs) == 3 and "/workspace" in outputs[0]
    assert "Created notes/turn-1-" in outputs[1] and "write a haiku" in outputs[2]


async def test_scripted_model_streams(local: Any, client_for: Any):
    config = RunConfig(
        model=model_for(None), tracing_disabled=True,
        sandbox=SandboxRunConfig(client=client_for(local)),
    )  # fmt: skip
    streamed = Runner.run_streamed(sandbox_agent(), "stream it", run_config=config, max_turns=20)
    kinds = [event.type async for event in streamed.stream_events()]
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert "[scripted model" in streamed.final_output
    assert "wrote notes/turn-1-" in streamed.final_output  # all three tool calls ran


async def test_incremental_persist_uploads_only_the_change(
    local: Any, client_for: Any, store: SnapshotStore, tmp_path: Path
):
    """The second snapshot of a barely changed workspace reads and writes only the change."""
    client = client_for(local)
    first = await run_turn(
        scripted(shell("head -c 4000000 /dev/urandom > blob.bin; echo a > small.txt", "c1"),
                 answer()),
        client=client,
    )  # fmt: skip
    state = session_state(first)
    second = await run_turn(
        scripted(shell("echo b >> small.txt", "c1"), answer()),
        client=client,
        session_state=client.deserialize_session_state(state),
    )
    rec1 = await store.get(state["snapshot"]["snapshot_id"])
    rec2 = await store.get(session_state(second)["snapshot"]["snapshot_id"])
    assert rec2.parent == rec1.id
    assert rec1.stats.read_bytes >= 4_000_000
    assert rec2.stats.read_bytes < 1000, rec2.stats
    assert rec2.stats.new_bytes < 0.05 * rec1.stats.new_bytes, (rec1.stats, rec2.stats)
    workspace = await restored(store, session_state(second), tmp_path / "w")
    assert (workspace / "small.txt").read_text() == "a\nb\n"


async def test_tar_snapshots_without_a_store(local: Any, tmp_path: Path):
    """Without a store the SDK's own tar snapshot works through our tar export and import."""
    client = SandbankSandboxClient(local)
    spec = LocalSnapshotSpec(base_path=tmp_path / "tars")
    first = await run_turn(
        scripted(shell("mkdir -p d && echo kept > d/f.txt && ln -s d/f.txt link", "c1"), answer()),
        client=client, snapshot=spec,
    )  # fmt: skip
    state = session_state(first)
    assert state["snapshot"]["type"] == "local"
    assert list((tmp_path / "tars").glob("*.tar"))
    second = await run_turn(
        scripted(shell("cat link", "c1"), answer()),
        client=client, session_state=client.deserialize_session_state(state),
    )  # fmt: skip
    assert "kept" in tool_outputs(second)[0]


async def test_options_make_the_sandbox(local: Any, client_for: Any):
    """Options carry sandbank manifest fields; a bad one fails with the field's name."""
    options = SandbankClientOptions(manifest={"env": {"FROM_OPTIONS": "yes"}})
    result = await run_turn(
        scripted(shell("echo $FROM_OPTIONS", "c1"), answer()),
        client=client_for(local), options=options,
    )  # fmt: skip
    assert "yes" in tool_outputs(result)[0]
    with pytest.raises(ManifestError, match="resources"):
        SandbankClientOptions(manifest={"resources": {"cpu": -1}})


async def test_manifest_root_elsewhere_is_refused(local: Any, client_for: Any):
    client = client_for(local)
    with pytest.raises(ManifestError, match="always at /workspace"):
        await client.create(manifest=SdkManifest(root="/srv/app"))


async def test_resume_reattaches_to_a_live_sandbox(
    local: Any, client_for: Any, monkeypatch: pytest.MonkeyPatch
):
    """A resumed session whose sandbox still exists reuses it: no restore while its listing
    matches the snapshot; a workspace changed behind the session's back is restored."""
    client = client_for(local)
    restores: list[str] = []
    real_restore = client._snapshots.restore

    async def counted(box: Any, snapshot_id: str) -> None:
        restores.append(snapshot_id)
        await real_restore(box, snapshot_id)

    monkeypatch.setattr(client._snapshots, "restore", counted)
    session = await client.create()
    await session.start()
    await session.write(Path("/workspace/a.txt"), io.BytesIO(b"persisted"))
    await session.stop()  # snapshot to the store, sandbox kept (no delete)
    state = client.deserialize_session_state(client.serialize_session_state(session.state))
    box = session._inner.sandbox

    again = await client.resume(state)
    await again.start()
    assert again._inner.sandbox.id == box.id
    assert await box.read_file("a.txt") == b"persisted"
    assert restores == []

    await box.write_file("stray.txt", b"not in the snapshot")
    third = await client.resume(client.deserialize_session_state(again.state.model_dump()))
    await third.start()
    assert third._inner.sandbox.id == box.id
    assert {e.path for e in await box.list_tree()} == {"a.txt"}
    assert restores == [state.snapshot.snapshot_id]
    await client.delete(third)
    assert box.id not in {i.id for i in await local.list()}


async def test_a_lost_sandbox_is_rebuilt_from_its_snapshot(local: Any, client_for: Any):
    """When the sandbox dies under a session, the next start makes a new one and restores."""
    client = client_for(local)
    session = await client.create()
    await session.start()
    await session.write(Path("/workspace/keep.txt"), io.BytesIO(b"from the snapshot"))
    await session.stop()
    lost = session._inner.sandbox
    await asyncio.to_thread(shutil.rmtree, lost.host_path)  # the workspace vanishes
    again = await client.resume(client.deserialize_session_state(session.state.model_dump()))
    await again.start()
    box = again._inner.sandbox
    assert box.id != lost.id
    assert await box.read_file("keep.txt") == b"from the snapshot"
    await client.delete(again)
