"""`sandbank session repair ID [--to SNAPSHOT] [--json]`, run as a real process against a
real Temporal server and a worker whose store was damaged on disk."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.worker import build_worker
from sandbank.snapshots.errors import CorruptObject
from tests.durable.test_damage import BIG, damage, packs, released, sh


async def sandbank(address: str, queue: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbank", "session", "--address", address,
        "--task-queue", queue, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_repair_command(
    client, temporal_address, task_queue, local_provider, store, tmp_path
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local", pause_after=600, release_after=1.0)
        r1 = await mgr.send(sid, sh("echo one > notes.txt"))
        before = packs(tmp_path / "store")
        r2 = await mgr.send(sid, sh(BIG.format("b.bin")))
        await released(mgr, sid)
        damage(packs(tmp_path / "store") - before)
        with pytest.raises(CorruptObject):
            await mgr.send(sid, sh("cat notes.txt"))

        code, out, err = await sandbank(temporal_address, task_queue, "repair", sid)
        assert code == 0, err
        assert f"rolled back from {r2.checkpoint} to {r1.checkpoint}; lost turn 2" in out
        assert f"damaged {r2.checkpoint}: " in out and "packs/" in out
        assert f"the next turn starts from checkpoint {r1.checkpoint}" in out
        r3 = await mgr.send(sid, sh("cat notes.txt; ls"))
        assert r3.steps[0].stdout == "one\nnotes.txt\n"

        code, out, err = await sandbank(temporal_address, task_queue, "repair", sid, "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["rolled_back"] is False and result["checkpoint"] == r3.checkpoint
        assert result["lost_turns"] == []

        # A target that does not verify: one line naming it, exit 2, nothing changed.
        code, out, err = await sandbank(
            temporal_address, task_queue, "repair", sid, "--to", r2.checkpoint
        )
        assert code == 2 and f"snapshot {r2.checkpoint} does not verify" in err, (out, err)
        assert "Traceback" not in err
        assert (await mgr.describe(sid)).checkpoint == r3.checkpoint

        code, out, err = await sandbank(
            temporal_address, task_queue, "repair", sid, "--to", r1.checkpoint, "--json"
        )
        assert code == 0, err
        result = json.loads(out)
        assert result["rolled_back"] and result["checkpoint"] == r1.checkpoint
        assert result["lost_turns"] == [3]
        await mgr.stop(sid)
