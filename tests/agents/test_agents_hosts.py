"""A session persisted by one client (data dir A) resumes in another process (data dir B)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sdk_helpers import (
    answer,
    patch,
    run_python,
    run_turn,
    scripted,
    session_state,
    shell,
    tool_outputs,
)

from sandbank.agents import SandbankSandboxClient
from sandbank.providers.local import LocalProvider
from sandbank.snapshots import SnapshotStore

DIGEST = (
    "python3 -c 'import os, hashlib, json, stat\n"
    "out = {}\n"
    'for d, ds, fs in os.walk("."):\n'
    "    for n in ds + fs:\n"
    "        p = os.path.join(d, n); st = os.lstat(p); m = oct(stat.S_IMODE(st.st_mode))\n"
    '        if stat.S_ISLNK(st.st_mode): out[p] = ["link", os.readlink(p)]\n'
    '        elif stat.S_ISDIR(st.st_mode): out[p] = ["dir", m]\n'
    '        else: out[p] = ["file", m, hashlib.sha256(open(p, "rb").read()).hexdigest()]\n'
    "print(json.dumps(out, sort_keys=True))'"
)

RESUME_ON_HOST_B = """
import asyncio, json, sys
from agents import RunConfig, Runner, set_tracing_disabled
from agents.sandbox import SandboxAgent, SandboxRunConfig
from agents.sandbox.capabilities import Filesystem, Shell
from agents.testing import ScriptedModel, assistant_message, function_call
from sandbank.agents import SandbankSandboxClient
from sandbank.providers.local import LocalProvider
from sandbank.snapshots import SnapshotStore

async def main(store_path, state_path, data_dir, digest):
    set_tracing_disabled(True)
    async with await SnapshotStore.open(store_path, cache_dir=False) as store:
        client = SandbankSandboxClient(LocalProvider(state_dir=data_dir), store=store)
        state = client.deserialize_session_state(json.loads(open(state_path).read()))
        model = ScriptedModel([[function_call("exec_command", {"cmd": digest}, call_id="b1")],
                               [assistant_message("resumed")]])
        agent = SandboxAgent(name="coder", capabilities=[Filesystem(), Shell()])
        config = RunConfig(model=model, tracing_disabled=True,
                           sandbox=SandboxRunConfig(client=client, session_state=state))
        result = await Runner.run(agent, "check", run_config=config)
        print(json.dumps({"output": result.new_items[1].output,
                          "state": result.to_state().to_json()["sandbox"]["session_state"]}))

asyncio.run(main(*sys.argv[1:]))
"""


async def first_host(tmp_path: Path, store: SnapshotStore, bwrap: str) -> tuple[Any, Any]:
    """Run one turn on host A's local provider; return (its session state, its digest)."""
    client = SandbankSandboxClient(
        LocalProvider(state_dir=tmp_path / "data-a", bwrap=bwrap), store=store
    )
    build = (
        "mkdir -p src/pkg empty && head -c 300000 /dev/urandom > src/data.bin && "
        "printf '#!/bin/sh\\necho run\\n' > run.sh && chmod 755 run.sh && "
        "ln -s src/data.bin latest && chmod 600 src/data.bin"
    )
    first = await run_turn(
        scripted(
            shell(build, "a1"),
            patch("*** Add File: src/pkg/mod.py\n+VALUE = 1\n", "a2"),
            shell(DIGEST, "a3"),
            answer(),
        ),
        client=client,
    )
    digest = json.loads(tool_outputs(first)[2].split("Output:\n", 1)[1])
    assert {"./src/data.bin", "./latest", "./run.sh", "./empty", "./src/pkg/mod.py"} <= set(digest)
    return session_state(first), digest


async def test_resumed_on_another_host_gets_its_workspace_back(
    tmp_path: Path, bwrap: str, monkeypatch: Any
):
    """The run names no snapshot (the SDK picks a tar on this host's disk); the client's
    store is used instead, and host B gets the workspace back byte for byte."""
    xdg_a = tmp_path / "xdg-a"
    monkeypatch.setenv("XDG_STATE_HOME", str(xdg_a))
    store_path = tmp_path / "shared-store"
    async with await SnapshotStore.open(store_path, cache_dir=False) as store:
        state, digest_a = await first_host(tmp_path, store, bwrap)
    assert not list(xdg_a.rglob("*.tar")), "the SDK's one-host tar was written"
    (tmp_path / "state.json").write_text(json.dumps(state))

    out = await run_python(
        RESUME_ON_HOST_B,
        *[str(store_path), str(tmp_path / "state.json"), str(tmp_path / "data-b"), DIGEST],
        env={"HOME": str(tmp_path / "home-b"), "XDG_STATE_HOME": str(tmp_path / "xdg-b")},
    )
    digest_b = json.loads(out["output"].split("Output:\n", 1)[1])
    assert digest_b == digest_a
    assert out["state"]["sandbox_id"] != state["sandbox_id"]
    assert out["state"]["snapshot"]["snapshot_id"] != state["snapshot"]["snapshot_id"]


@pytest.mark.docker
async def test_resumed_on_another_provider(
    tmp_path: Path, bwrap: str, docker: Any, store: SnapshotStore
):
    """A local session resumes on docker (a new container, restored from the store)."""
    state, digest_a = await first_host(tmp_path, store, bwrap)
    client = SandbankSandboxClient(docker, store=store)
    resumed = await run_turn(
        scripted(shell(DIGEST, "b1"), answer()),
        client=client, session_state=client.deserialize_session_state(state),
    )  # fmt: skip
    assert json.loads(tool_outputs(resumed)[0].split("Output:\n", 1)[1]) == digest_a
    assert session_state(resumed)["provider"] == "docker"
