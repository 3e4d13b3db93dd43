"""A damaged checkpoint never becomes the workspace: the session goes damaged, refuses turns,
and a repair rolls it back to the newest checkpoint that verifies. Real Temporal, real
local provider, real file store whose pack files are damaged on disk."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import Step, Turn
from sandbank.durable.types import SessionDamaged
from sandbank.durable.worker import build_worker
from sandbank.errors import SnapshotError
from sandbank.snapshots.errors import CorruptObject


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


def packs(store_dir: Path) -> set[Path]:
    return set((store_dir / "packs").iterdir())


def damage(files: Iterable[Path]) -> None:
    """Flip bytes all over each file, keeping its size (a bad disk, not a missing file)."""
    for path in files:
        data = bytearray(path.read_bytes())
        for i in range(64, len(data), 4096):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))


async def released(mgr: SessionManager, sid: str) -> None:
    for _ in range(200):
        if (await mgr.describe(sid)).sandbox_state == "released":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{sid} was never released")


BIG = "head -c 3000000 /dev/urandom > {0}; sha256sum {0} > {0}.sum"


async def test_damaged_checkpoint_is_never_used_and_turns_are_refused(
    client, task_queue, local_provider, store, tmp_path
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local", pause_after=600, release_after=1.0)
        first = await mgr.send(sid, sh(BIG.format("big.bin")))
        assert first.error is None and first.checkpoint, first
        await released(mgr, sid)
        snapshots_before = len(await store.list())
        damage(packs(tmp_path / "store"))

        # The restore fails: the caller gets the store's own error, with the object named.
        with pytest.raises(CorruptObject) as caught:
            await mgr.send(sid, sh("wc -c < big.bin"))
        damaged_object = caught.value.object
        assert damaged_object and damaged_object in str(caught.value)

        # The half-restored sandbox was destroyed, never marked live, never checkpointed.
        info = await mgr.describe(sid)
        assert info.sandbox_state == "damaged" and info.sandbox_id is None
        assert info.damaged and first.checkpoint in info.damaged
        assert damaged_object in info.damaged
        assert info.checkpoint == first.checkpoint and info.turns == 1
        assert await local_provider.list() == []
        assert len(await store.list()) == snapshots_before
        events = await mgr.history(sid)
        assert [e for e in events if e.kind == "damaged" and damaged_object in e.detail]

        # Every later turn is refused at once with that reason, until an operator acts.
        for _ in range(2):
            with pytest.raises(SessionDamaged) as refused:
                await mgr.send(sid, sh("wc -c < big.bin"))
            assert refused.value.reason == info.damaged
            assert f"sandbank session repair {sid}" in str(refused.value)
        with pytest.raises(SessionDamaged):
            await mgr.fork(sid)
        with pytest.raises(SessionDamaged):
            await mgr.migrate(sid, "local")
        assert await local_provider.list() == []
        assert len(await store.list()) == snapshots_before

        # Every checkpoint shares the damaged packs: repair says so and changes nothing.
        with pytest.raises(SnapshotError, match=r"no checkpoint of session .* verifies"):
            await mgr.repair(sid)
        assert (await mgr.describe(sid)).damaged == info.damaged
        final = await mgr.stop(sid)
        assert final.stopped


async def test_repair_rolls_back_to_the_newest_checkpoint_that_verifies(
    client, task_queue, local_provider, store, tmp_path
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local", pause_after=600, release_after=1.0)
        r1 = await mgr.send(sid, sh(BIG.format("a.bin"), "echo one > notes.txt"))
        before = packs(tmp_path / "store")
        r2 = await mgr.send(sid, sh(BIG.format("b.bin"), "echo two >> notes.txt"))
        r3 = await mgr.send(sid, sh("echo three >> notes.txt"))
        assert r1.checkpoint and r2.checkpoint and r3.checkpoint
        assert len({r1.checkpoint, r2.checkpoint, r3.checkpoint}) == 3
        await released(mgr, sid)
        # Only what turns 2 and 3 wrote is damaged; the first checkpoint still verifies.
        damage(packs(tmp_path / "store") - before)
        with pytest.raises(CorruptObject):
            await mgr.send(sid, sh("cat notes.txt"))
        assert (await mgr.describe(sid)).sandbox_state == "damaged"

        result = await mgr.repair(sid)
        assert result.rolled_back and result.previous == r3.checkpoint
        assert result.checkpoint == r1.checkpoint and result.checkpoint_turn == 1
        assert result.lost_turns == [2, 3]
        assert [d.snapshot_id for d in result.damaged] == [r3.checkpoint, r2.checkpoint]
        assert all("packs/" in d.problem or "blob" in d.problem for d in result.damaged)
        assert "turns 2-3" in result.message
        info = await mgr.describe(sid)
        assert info.damaged is None and info.sandbox_state == "released"
        assert info.checkpoint == r1.checkpoint
        assert any(e.kind == "repaired" for e in await mgr.history(sid))

        # The session serves again, from the first checkpoint's workspace, intact.
        r4 = await mgr.send(sid, sh("cat notes.txt; ls; sha256sum -c a.bin.sum"))
        assert r4.error is None and r4.turn == 4, r4
        assert r4.steps[0].exit_code == 0
        assert r4.steps[0].stdout.startswith("one\n") and "b.bin" not in r4.steps[0].stdout
        assert "a.bin: OK" in r4.steps[0].stdout
        # A healthy session's repair verifies and rolls back nothing.
        again = await mgr.repair(sid)
        assert not again.rolled_back and again.lost_turns == []
        assert again.checkpoint == r4.checkpoint
        # An explicit target that does not verify is refused; one that does is taken.
        with pytest.raises(SnapshotError, match=f"snapshot {r2.checkpoint} does not verify"):
            await mgr.repair(sid, to=r2.checkpoint)
        back = await mgr.repair(sid, to=r1.checkpoint)
        assert back.rolled_back and back.checkpoint == r1.checkpoint and back.lost_turns == [4]
        r5 = await mgr.send(sid, sh("cat notes.txt"))
        assert r5.steps[0].stdout == "one\n"
        await mgr.stop(sid)
        assert await local_provider.list() == []


async def test_repair_keeps_a_live_sandbox_unless_told(
    client, task_queue, local_provider, store, tmp_path
):
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local", pause_after=600, release_after=600)
        r1 = await mgr.send(sid, sh("echo one > notes.txt"))
        before = packs(tmp_path / "store")
        r2 = await mgr.send(sid, sh(BIG.format("b.bin")))
        damage(packs(tmp_path / "store") - before)
        # The newest checkpoint is damaged, but the live sandbox holds the workspace.
        kept = await mgr.repair(sid)
        assert not kept.rolled_back and kept.checkpoint == r2.checkpoint
        assert [d.snapshot_id for d in kept.damaged] == [r2.checkpoint]
        assert "live sandbox" in kept.message and f"--to {r1.checkpoint}" in kept.message
        r3 = await mgr.send(sid, sh("sha256sum -c b.bin.sum"))
        assert r3.steps[0].stdout == "b.bin: OK\n"
        # Told to, it rolls back and drops the live sandbox.
        box = (await mgr.describe(sid)).sandbox_id
        back = await mgr.repair(sid, to=r1.checkpoint)
        assert back.rolled_back and back.lost_turns == [2, 3]
        assert box not in {b.id for b in await local_provider.list()}
        r4 = await mgr.send(sid, sh("ls"))
        assert r4.steps[0].stdout == "notes.txt\n"
        await mgr.stop(sid)
