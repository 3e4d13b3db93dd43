"""`sandbank session ...` as a user runs it: real CLI processes, a real Temporal dev server,
a real worker with the local provider and a file store."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.worker import build_worker
from sandbank.testing.services import free_ports
from tests.processes import REPO


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def spawn(*args: str, columns: int = 200) -> asyncio.subprocess.Process:
    """``python -m sandbank ARGS`` in its own process (the worker keeps serving meanwhile)."""
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbank", *args, cwd=REPO, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def sandbank(*args: str, columns: int = 200) -> Run:
    """Run ``python -m sandbank ARGS`` to its end."""
    proc = await spawn(*args, columns=columns)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


@dataclass
class Cli:
    address: str
    queue: str

    async def __call__(self, *args: str, columns: int = 200) -> Run:
        return await sandbank(
            "session", "--address", self.address, "--task-queue", self.queue, *args,
            columns=columns,
        )  # fmt: skip


@pytest.fixture
async def cli(client, task_queue, temporal_address, local_provider, store) -> AsyncIterator[Cli]:
    acts = SandboxActivities({"local": local_provider}, store)
    async with build_worker(client, acts, task_queue=task_queue):
        yield Cli(temporal_address, task_queue)


def column(table: str, index: int) -> str:
    """The text of a rich table's column ``index`` (0 first), its folded pieces joined."""
    rows = [line.split("│") for line in table.splitlines() if line.count("│") > 1]
    return "".join(row[index + 1].strip() for row in rows)


def one_line_error(run: Run, *needles: str) -> None:
    """A failed command: exit 2, nothing on stdout, one line on stderr naming ``needles``."""
    assert run.code == 2 and run.out == "", run
    assert len(run.err.strip().splitlines()) == 1 and "Traceback" not in run.err, run.err
    for needle in needles:
        assert needle in run.err, run.err


async def test_send_prints_output_and_passes_the_exit_code(cli: Cli) -> None:
    sid = (await cli("start", "--name", "cli-send")).out.strip()
    assert sid.startswith("session-")
    done = await cli("send", sid, "echo out; echo err >&2")
    assert (done.code, done.out, done.err) == (0, "out\n", "err\n"), done
    failed = await cli("send", sid, "echo partial; exit 3")
    assert (failed.code, failed.out) == (3, "partial\n"), failed
    # Several commands run in order; the first that fails gives the exit code and is named.
    several = await cli("send", sid, "echo a > a.txt", "cat a.txt; exit 4", "cat a.txt; exit 5")
    assert (several.code, several.out) == (4, "a\na\n"), several
    assert "command 2 of 3 exited 4: cat a.txt; exit 4" in several.err, several.err
    as_json = await cli("send", "--json", sid, "printf hi; exit 7")
    assert as_json.code == 7, as_json
    result = as_json.json()
    step = result["steps"][0]
    assert [step[k] for k in ("kind", "exit_code", "stdout", "stderr")] == ["exec", 7, "hi", ""]
    assert result["turn"] == 4 and result["checkpoint"] and result["error"] is None
    await cli("stop", sid)


async def test_a_failed_turn_is_one_line_and_exit_2(cli: Cli) -> None:
    sid = (await cli("start", "--provider", "no-such-provider", "--json")).json()["session_id"]
    run = await cli("send", sid, "true")
    assert run.code == 2 and run.out == "", run
    assert "error: turn 1: " in run.err and "no-such-provider" in run.err, run.err
    assert "Traceback" not in run.err
    await cli("stop", sid)


async def test_tables_and_json_for_ls_show_fork_rename_migrate_stop(cli: Cli) -> None:
    sid = (await cli("start", "--name", "tables")).out.strip()
    assert (await cli("send", sid, "echo one > notes.txt")).code == 0
    # A narrow terminal folds ids; it never cuts them short.
    listed = await cli("ls", columns=40)
    assert listed.code == 0 and "…" not in listed.out, listed
    assert sid in column(listed.out, 0), listed.out
    wide = await cli("ls")
    assert "tables" in wide.out and "local" in wide.out and "ago" in wide.out, wide.out
    rows = (await cli("ls", "--json")).json()
    assert [(r["session_id"], r["name"], r["turns"]) for r in rows] == [(sid, "tables", 1)]

    shown = await cli("show", sid, columns=50)
    assert shown.code == 0 and "…" not in shown.out, shown
    assert sid in column(shown.out, 1), shown.out
    assert "history" in shown.out and "checkpoint" in shown.out and "turn" in shown.out
    document = (await cli("show", "--json", sid)).json()
    assert document["session"]["session_id"] == sid and document["session"]["turns"] == 1
    assert "turn" in [e["kind"] for e in document["history"]]

    renamed = await cli("rename", sid, "better")
    assert (renamed.code, renamed.out) == (0, f"renamed {sid} to 'better'\n"), renamed
    assert (await cli("rename", "--json", sid, "best")).json() == {
        "session_id": sid, "name": "best"
    }  # fmt: skip

    fork_id = (await cli("fork", sid)).out.strip()
    forked = await cli("send", fork_id, "cat notes.txt")
    assert (forked.code, forked.out) == (0, "one\n"), forked
    fork_json = (await cli("fork", "--json", sid, "--id", f"{sid}-second")).json()
    assert fork_json == {"session_id": f"{sid}-second", "forked_from": sid}

    moved = await cli("migrate", sid, "local")
    assert moved.code == 0 and moved.out.startswith(f"migrated {sid} to local:"), moved
    assert "verified" in moved.out
    assert (await cli("send", sid, "cat notes.txt")).out == "one\n"

    for other in (fork_id, f"{sid}-second"):
        assert (await cli("stop", "--json", other)).json()["stopped"] is True
    stopped = await cli("stop", sid)
    assert stopped.code == 0 and stopped.out.startswith(f"stopped {sid} after 2 turns"), stopped
    assert (await cli("ls", "--json")).json() == []
    empty = await cli("ls")
    assert empty.code == 0 and "sandbank session ls --all" in empty.err, empty
    assert sid in (await cli("ls", "--all")).out.replace("\n", "")
    # A stopped session is still there to look at, and refuses new work in one line.
    assert (await cli("show", "--json", sid)).json()["session"]["stopped"] is True
    one_line_error(await cli("send", sid, "true"), sid, "has ended")


@pytest.mark.parametrize(
    "args",
    [
        ["send", "{id}", "true"],
        ["send", "--json", "{id}", "true"],
        ["show", "{id}"],
        ["stop", "{id}"],
        ["rename", "{id}", "x"],
        ["fork", "{id}"],
        ["migrate", "{id}", "docker"],
    ],
    ids=lambda a: " ".join(a),
)
async def test_an_unknown_session_is_one_line(temporal_address: str, args: list[str]) -> None:
    unknown = "session-does-not-exist"
    cli = Cli(temporal_address, "no-worker-needed")
    run = await cli(*[a.format(id=unknown) for a in args])
    one_line_error(run, f"no session {unknown!r}", "sandbank session ls")


@pytest.mark.parametrize(
    ("args", "host"),
    [
        (["session", "ls"], "127.0.0.1"),
        (["session", "send", "s", "true"], "127.0.0.1"),
        (["worker"], "127.0.0.1"),
        (["session", "show", "s"], "no-such-host.invalid"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else a,
)
async def test_an_unreachable_server_is_one_line(args: list[str], host: str) -> None:
    (port,) = free_ports(1)
    address = f"{host}:{port}"
    run = await sandbank(*args[:1], "--address", address, *args[1:])
    one_line_error(run, f"cannot reach Temporal at {address}", "sandbank dev")


async def test_a_malformed_address_is_one_line() -> None:
    run = await sandbank("session", "--address", "localhost:port", "ls")
    one_line_error(run, "--address 'localhost:port' is not HOST:PORT")


@pytest.mark.parametrize("args", [["session", "ls"], ["worker"]], ids=" ".join)
async def test_an_unknown_namespace_is_one_line(temporal_address: str, args: list[str]) -> None:
    run = await sandbank(*args[:1], "--address", temporal_address, "--namespace", "nope",
                         *args[1:])  # fmt: skip
    one_line_error(run, f"no namespace 'nope' at {temporal_address}", "--namespace")


async def test_without_a_worker_a_call_says_it_waits(temporal_address, task_queue, client) -> None:
    from sandbank.durable.manager import SessionManager

    sid = await SessionManager(client, task_queue).start("local")
    proc = await spawn("session", "--address", temporal_address, "--task-queue", task_queue,
                       "send", sid, "true")  # fmt: skip
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        assert f"warning: no worker polls task queue {task_queue!r}" in line, line
        assert proc.returncode is None  # still waiting for a worker, as a durable call does
    finally:
        proc.kill()
        await proc.wait()
        await client.get_workflow_handle(sid).terminate()


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("m.json", '{"resources": {"cpu": "lots"}}', "resources.cpu"),
        ("m.json", "{not json", "Invalid JSON"),
        ("m.toml", "[resources\ncpu = 1", "not valid TOML"),
    ],
)
async def test_a_bad_manifest_is_one_line_before_any_server_call(
    tmp_path, name: str, text: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    (port,) = free_ports(1)  # nothing listens: the manifest is checked first
    run = await sandbank("session", "--address", f"127.0.0.1:{port}", "start", "--manifest",
                         str(path))  # fmt: skip
    one_line_error(run, str(path), says)
