"""`sandbank session ...`, `sandbank worker` and `sandbank dev`: durable sessions from a shell.

Human output by default (a turn's own output and exit code, tables that never cut an id
short), ``--json`` on every session command for scripts. Temporal's errors become one-line
messages at one boundary, ``_temporal_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import platformdirs
from rich.table import Table
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from sandbank._children import stop_signals_interrupt
from sandbank.cli import err_console, json_flag, parse_options, print_table, run_async
from sandbank.durable.worker import DEFAULT_TASK_QUEUE, build_worker
from sandbank.errors import ConfigurationError, ManifestError, SandbankError

__all__ = ["dev_command", "session_group", "worker_command"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a Temporal server to answer a new connection."""
_CONNECT_DELTA = timedelta(seconds=CONNECT_TIMEOUT)
WORKER_HINT_AFTER = 2.0
"""Seconds a session call may take before the CLI checks that a worker is there."""

_address = click.option(
    "--address", envvar="SANDBANK_TEMPORAL_ADDRESS", default="localhost:7233", show_default=True
)
_namespace = click.option(
    "--namespace", envvar="SANDBANK_TEMPORAL_NAMESPACE", default="default", show_default=True
)
_queue = click.option("--task-queue", default=DEFAULT_TASK_QUEUE, show_default=True)


# -- Temporal errors, in one place -----------------------------------------------------------


class TemporalUnreachable(SandbankError):
    """No Temporal server answers at the address."""

    retryable = True


class SessionNotFound(ConfigurationError):
    """No session with this id on this server, namespace and task queue."""


class NamespaceNotFound(ConfigurationError):
    """The Temporal server has no such namespace."""


class SessionEnded(ConfigurationError):
    """The session's workflow has completed (stopped); it takes no more requests."""


def _unreachable(address: str, detail: str) -> TemporalUnreachable:
    return TemporalUnreachable(
        f"cannot reach Temporal at {address} ({detail}); start a local one with `sandbank dev`,"
        " or pass --address (or set SANDBANK_TEMPORAL_ADDRESS)"
    )


@contextlib.asynccontextmanager
async def _temporal_errors(address: str, session_id: str | None = None) -> Any:
    """Map Temporal's ``RPCError`` to one-line sandbank errors naming the id or address."""
    try:
        yield
    except RPCError as exc:
        message = exc.message or str(exc)
        if session_id is None:
            raise SandbankError(f"Temporal at {address} refused the call: {message}") from exc
        if exc.status == RPCStatusCode.NOT_FOUND and "already completed" in message:
            raise SessionEnded(
                f"session {session_id!r} has ended (stopped); `sandbank session show "
                f"{session_id}` shows its history, `sandbank session fork` copies it"
            ) from exc
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise SessionNotFound(
                f"no session {session_id!r} at {address}; `sandbank session ls --all` lists "
                "the sessions there (check --address, --namespace and --task-queue)"
            ) from exc
        if exc.status == RPCStatusCode.UNAVAILABLE:
            raise _unreachable(address, message) from exc
        if exc.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED):
            raise TemporalUnreachable(
                f"no worker answered for session {session_id!r} in time ({message}); start "
                "one on its task queue (`sandbank dev` or `sandbank worker`)"
            ) from exc
        raise SandbankError(f"Temporal at {address} refused the call: {message}") from exc


_connected = False


@contextlib.contextmanager
def _exit_without_teardown() -> Iterator[None]:
    """Once a Temporal client exists, end the process at the end of the block without
    interpreter teardown (same exit code): the SDK's Rust threads can crash a finalizing
    interpreter, turning exit 0 into 134 (temporalio sdk-python issue 300)."""

    def end(code: Any) -> None:
        if _connected:
            if not isinstance(code, int | None):
                click.echo(code, err=True)
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 0)

    try:
        yield
    except SystemExit as exc:
        end(exc.code)
        raise
    end(0)


async def _connect(
    address: str, namespace: str, tls: bool = False, api_key: str | None = None
) -> Client:
    global _connected
    _connected = True
    try:
        client = await asyncio.wait_for(
            Client.connect(address, namespace=namespace, tls=tls, api_key=api_key),
            CONNECT_TIMEOUT,
        )
        request = DescribeNamespaceRequest(namespace=namespace)
        await client.workflow_service.describe_namespace(request, timeout=_CONNECT_DELTA)
        return client
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise _unreachable(address, exc.message) from None
        raise NamespaceNotFound(
            f"no namespace {namespace!r} at {address}; pass --namespace (or set "
            "SANDBANK_TEMPORAL_NAMESPACE); `sandbank dev` serves 'default'"
        ) from None
    except TimeoutError:
        raise _unreachable(address, f"no answer in {CONNECT_TIMEOUT:.0f} s") from None
    except ValueError as exc:
        raise ConfigurationError(f"--address {address!r} is not HOST:PORT ({exc})") from None
    except RuntimeError as exc:  # the SDK's "Failed client connect: ...", Rust's own words
        found = re.findall(r'(?:message|error): "([^"]+)"', str(exc))
        raise _unreachable(address, found[-1] if found else str(exc)) from None


def _run(coro: Any) -> Any:
    return run_async(lambda: coro)


# -- output ----------------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    """Dataclasses (and lists and dicts of them) as JSON-ready data."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, list | tuple):
        return [_plain(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def print_json(obj: Any) -> None:
    """One JSON document on stdout (dataclasses included)."""
    click.echo(json.dumps(_plain(obj), indent=2, default=str))


def table(*columns: str, rows: Iterable[Sequence[str]] = (), title: str | None = None) -> Table:
    """A rich table of ``columns`` and ``rows``, for ``print_table`` (which folds, never cuts)."""
    out = Table(*columns, title=title)
    for row in rows:
        out.add_row(*row)
    return out


def _ago(ts: float) -> str:
    """How long ago a workflow timestamp was: "12s ago", "3m ago", "2h ago", "4d ago"."""
    if not ts:
        return "-"
    seconds = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _when(ts: float) -> str:
    """A workflow timestamp as local time, and how long ago it was."""
    return f"{datetime.fromtimestamp(ts):%Y-%m-%d %H:%M:%S} ({_ago(ts)})" if ts else "-"


def _state(info: Any) -> str:
    state = "stopped" if info.stopped else str(info.sandbox_state)
    state = "new" if state == "none" else state  # no message yet, so no sandbox yet
    return f"{state}, migrating" if info.migrating else state


# -- worker and dev --------------------------------------------------------------------------


async def _serve(
    client: Client,
    task_queue: str,
    store_url: str | None,
    state_dir: str | None,
    identity: str | None = None,
    agent_modules: Sequence[str] = (),
) -> None:
    from sandbank.durable.activities import SandboxActivities

    store = None
    if store_url:
        from sandbank.snapshots import SnapshotStore

        store = await SnapshotStore.open(store_url)

    def provider(name: str) -> Any:
        from sandbank.providers.registry import get_provider

        if name == "local" and state_dir:
            return get_provider("local", state_dir=state_dir)
        return get_provider(name)

    acts = SandboxActivities(provider, store)
    try:
        extra: dict[str, Any] = {"identity": identity} if identity else {}
        extra["agents"] = _agents(agent_modules)
        async with build_worker(client, acts, task_queue=task_queue, **extra) as worker:
            click.echo(
                f"worker on task queue {task_queue!r} (its sandboxes on "
                f"{worker.worker_queue!r}); Ctrl-C stops it",
                err=True,
            )
            await asyncio.Event().wait()
    finally:
        await acts.aclose()
        if store is not None:
            await store.aclose()


def _agents(modules: Sequence[str]) -> dict[str, Any] | None:
    """The built-in ``coder`` agent (when the Agents SDK is installed), then the agents
    that ``modules`` register when imported."""
    try:
        from sandbank.durable.agents import coder
    except ImportError:
        if modules:
            raise ConfigurationError(
                "--agents needs the OpenAI Agents SDK: pip install 'sandbank[agents]'"
            ) from None
        return None
    found: dict[str, Any] = {"coder": coder}
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"--agents {module}: cannot import it ({exc})") from exc
    return found


@click.command("worker")
@_address
@_namespace
@_queue
@click.option("--tls", is_flag=True, help="Connect with TLS (Temporal Cloud).")
@click.option("--api-key", envvar="TEMPORAL_API_KEY", default=None, help="Temporal API key.")
@click.option("--store", "store_url", envvar="SANDBANK_STORE", help="Snapshot store URL.")
@click.option("--state-dir", default=None, help="Where the local provider keeps sandboxes.")
@click.option("--identity", default=None, help="Worker identity shown by Temporal.")
@click.option(
    "--agents", "agent_modules", multiple=True, metavar="MODULE",
    help="Import MODULE first: its register_agent calls add agents (built in: coder).",
)  # fmt: skip
def worker_command(
    address: str, namespace: str, task_queue: str, tls: bool, api_key: str | None,
    store_url: str | None, state_dir: str | None, identity: str | None,
    agent_modules: tuple[str, ...],
) -> None:  # fmt: skip
    """Run a worker (sandbox activities and session workflows) against any Temporal.

    SIGINT, SIGTERM and SIGHUP shut it down gracefully."""

    async def main() -> None:
        client = await _connect(address, namespace, tls, api_key)
        await _serve(client, task_queue, store_url, state_dir, identity, agent_modules)

    with (
        _exit_without_teardown(),
        stop_signals_interrupt(),
        contextlib.suppress(KeyboardInterrupt),
    ):
        _run(main())


@click.command("dev")
@click.option("--port", default=7233, show_default=True)
@click.option("--data-dir", type=click.Path(), default=None, help="Default: the user data dir.")
def dev_command(port: int, data_dir: str | None) -> None:
    """An embedded Temporal dev server (SQLite) and a worker with local provider + file store.

    SIGINT, SIGTERM and SIGHUP stop both; after a SIGKILL the server dies with it."""
    from sandbank.testing.services import ServiceUnavailable, temporal_dev_server

    root = Path(data_dir or platformdirs.user_data_dir("sandbank")) / "dev"
    root.mkdir(parents=True, exist_ok=True)
    with _exit_without_teardown(), stop_signals_interrupt():
        try:
            server = temporal_dev_server(root, port=port, db_filename=root / "temporal.db")
        except ServiceUnavailable as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            _dev(server, root)
        except KeyboardInterrupt:
            click.echo("stopping", err=True)
        finally:
            server.stop()


def _dev(server: Any, root: Path) -> None:
    """Start the dev server, then serve a worker on it until interrupted."""
    from sandbank.testing.services import ServiceStartError

    try:
        took = server.start()
    except ServiceStartError as exc:
        raise click.ClickException(f"the temporal dev server did not start: {exc}") from exc
    store_url, state = f"file://{root / 'store'}", root / "local"
    click.echo(
        f"temporal dev server  {server.address}  (pid {server.pid}, up in {took:.1f}s; "
        f"db {server.db_filename}, log {server.log_path})"
    )
    click.echo(f"snapshot store       {store_url}")
    click.echo(f"local sandboxes      {state}")
    click.echo("sessions             sandbank session start | send | ls ...  (Ctrl-C stops)")

    async def main() -> None:
        client = await _connect(server.address, "default")
        await _serve(client, DEFAULT_TASK_QUEUE, store_url, str(state))

    _run(main())


# -- sessions --------------------------------------------------------------------------------


class _SessionGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        with _exit_without_teardown():
            return super().invoke(ctx)


@click.group("session", cls=_SessionGroup)
@_address
@_namespace
@_queue
@click.pass_context
def session_group(ctx: click.Context, address: str, namespace: str, task_queue: str) -> None:
    """Durable sessions: start, ls, send, fork, migrate, rename, stop, show, repair."""
    ctx.obj = {"address": address, "namespace": namespace, "task_queue": task_queue}


def manager_call(ctx: click.Context, call: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``call(SessionManager)`` against the group's server; Temporal's errors become
    one-line messages naming the command's SESSION_ID (exit 2)."""
    from sandbank.durable.manager import SessionManager

    address = ctx.obj["address"]

    async def main() -> Any:
        client = await _connect(address, ctx.obj["namespace"])
        async with _temporal_errors(address, ctx.params.get("session_id")):
            work = asyncio.ensure_future(call(SessionManager(client, ctx.obj["task_queue"])))
            if not (await asyncio.wait({work}, timeout=WORKER_HINT_AFTER))[0]:
                await _warn_without_worker(client, ctx.obj["task_queue"])
            return await work

    return _run(main())


async def _warn_without_worker(client: Client, task_queue: str) -> None:
    """Say so on stderr when no worker polls the sessions' task queue: calls wait for one."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    if not (await client.workflow_service.describe_task_queue(request)).pollers:
        err_console.print(
            f"warning: no worker polls task queue {task_queue!r}; this waits for one "
            "(start `sandbank dev`, or `sandbank worker --task-queue ...`; Ctrl-C gives up)",
            highlight=False,
        )


def _read_manifest(path: str) -> Any:
    """The manifest in a JSON or TOML file (an invalid one is a one-line error, exit 2)."""
    from sandbank.manifest import Manifest

    text = Path(path).read_text()
    try:
        return Manifest.from_toml(text) if path.endswith(".toml") else Manifest.from_json(text)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


@session_group.command("start")
@click.option("--provider", default="local", show_default=True)
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--name", default="")
@click.option("--pause-after", type=float, default=60.0, show_default=True)
@click.option(
    "--release-after", type=float, default=600.0, show_default=True,
    help="Idle seconds before the sandbox is checkpointed and stopped (or destroyed).",
)  # fmt: skip
@click.option(
    "--destroy-after", type=float, default=86400.0, show_default=True,
    help="Idle seconds before a stopped sandbox is destroyed, leaving its checkpoint.",
)  # fmt: skip
@click.option(
    "--worker-timeout", type=float, default=30.0, show_default=True,
    help="Seconds a call waits for the worker holding the sandbox before rebuilding elsewhere.",
)  # fmt: skip
@click.option("--continue-after-turns", type=int, default=100, show_default=True)
@click.option("--agent", default=None, help="A registered agent runs the session's prompts.")
@click.option("--model", default=None, help="The model name the agent is given.")
@json_flag
@click.pass_context
def start_cmd(
    ctx: click.Context, provider: str, manifest: str | None, name: str,
    pause_after: float, release_after: float, destroy_after: float, worker_timeout: float,
    continue_after_turns: int, agent: str | None, model: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Start a session; prints its id. Idle, its sandbox is paused after --pause-after,
    stopped after --release-after and destroyed after --destroy-after (each where the
    provider can; a checkpoint is taken before it stops)."""
    parsed = _run(asyncio.to_thread(_read_manifest, manifest)) if manifest else None
    session_id = manager_call(
        ctx,
        lambda m: m.start(
            provider,
            parsed,
            name=name,
            pause_after=pause_after,
            release_after=release_after,
            destroy_after=destroy_after,
            worker_timeout=worker_timeout,
            continue_after_turns=continue_after_turns,
            agent=agent,
            model=model,
        ),
    )
    if as_json:
        print_json({"session_id": session_id})
    else:
        click.echo(session_id)


@session_group.command("ls")
@click.option("--all", "show_all", is_flag=True, help="Include stopped sessions.")
@json_flag
@click.pass_context
def ls_cmd(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List sessions: name, provider, sandbox state, turns, last activity."""
    infos = manager_call(ctx, lambda m: m.list(running_only=not show_all))
    if as_json:
        print_json(infos)
        return
    if not infos:
        hint = "" if show_all else "; `sandbank session ls --all` includes stopped ones"
        err_console.print(f"no sessions on task queue {ctx.obj['task_queue']!r}{hint}")
        return
    rows = [
        (i.session_id, i.name, i.provider, _state(i), str(i.turns), _ago(i.last_activity))
        for i in infos
    ]
    print_table(
        table("id", "name", "provider", "state", "turns", "last activity", rows=rows),
        whole=("id",),
    )


def _turn_exit_code(result: Any, commands: tuple[str, ...]) -> int:
    """The first failed command's exit code (0 when all passed), naming it when a turn
    ran several; a failed turn prints its error and gives 2, like any sandbank error."""
    if result.recovered:
        err_console.print(
            "note: the sandbox was lost; the turn ran on one rebuilt from the last checkpoint"
        )
    if result.error:
        err_console.print(
            f"[red]error:[/red] turn {result.turn}: {result.error_type}: {result.error}",
            highlight=False,
        )
        return 2
    codes = [s.exit_code for s in result.steps if s.kind == "exec"]
    for number, code in enumerate(codes, 1):
        if code:
            if len(commands) > 1:
                err_console.print(
                    f"command {number} of {len(commands)} exited {code}: {commands[number - 1]}",
                    highlight=False,
                )
            return int(code)
    return 0


@session_group.command("send")
@click.argument("session_id")
@click.argument("commands", nargs=-1, required=True)
@json_flag
@click.pass_context
def send_cmd(ctx: click.Context, session_id: str, commands: tuple[str, ...], as_json: bool) -> None:
    """Run a turn of shell COMMANDS (one argument each, in order) in the session.

    Their stdout and stderr print when the turn returns. The exit code is that of the
    first command that failed (0 when all passed), also with --json; 2 when the turn
    itself failed. In a session with an agent the arguments are one prompt: the agent's
    answer prints, its tool calls go to stderr."""
    from sandbank.durable.session import Step, Turn

    async def send(m: Any) -> Any:
        if (await m.describe(session_id)).agent:
            return await m.prompt(session_id, " ".join(commands))
        return await m.send(session_id, Turn(steps=[Step("exec", cmd=c) for c in commands]))

    result = manager_call(ctx, send)
    if not hasattr(result, "steps"):  # an agent turn
        if as_json:
            print_json(result)
            return
        for call in result.tool_calls:
            code = "" if call.exit_code is None else f" -> exit {call.exit_code}"
            err_console.print(f"[dim]{call.name}({call.summary}){code}[/dim]", highlight=False)
        click.echo(result.final_output)
        return
    if as_json:
        print_json(result)
    else:
        for step in result.steps:
            sys.stdout.write(step.stdout or step.content or "")
            sys.stdout.flush()
            sys.stderr.write(step.stderr)
            sys.stderr.flush()
    sys.exit(_turn_exit_code(result, commands))


@session_group.command("fork")
@click.argument("session_id")
@click.option("--id", "new_id", default=None)
@json_flag
@click.pass_context
def fork_cmd(ctx: click.Context, session_id: str, new_id: str | None, as_json: bool) -> None:
    """Fork a session into an isolated copy; prints the new id."""
    fork_id = manager_call(ctx, lambda m: m.fork(session_id, new_id))
    if as_json:
        print_json({"session_id": fork_id, "forked_from": session_id})
    else:
        click.echo(fork_id)


@session_group.command("migrate")
@click.argument("session_id")
@click.argument("provider")
@click.option("--set", "overrides", multiple=True, metavar="KEY=JSON", help="Manifest override.")
@json_flag
@click.pass_context
def migrate_cmd(
    ctx: click.Context, session_id: str, provider: str, overrides: tuple[str, ...], as_json: bool
) -> None:
    """Move a session's sandbox to PROVIDER mid-conversation."""
    options = parse_options(overrides)
    moved = manager_call(ctx, lambda m: m.migrate(session_id, provider, options))
    if as_json:
        print_json(moved)
        return
    click.echo(
        f"migrated {session_id} to {moved.provider}:{moved.sandbox_id} in {moved.total:.2f}s "
        f"(downtime {moved.downtime:.2f}s); workspace "
        + (f"verified ({moved.verification})" if moved.verified else "NOT verified")
    )


@session_group.command("rename")
@click.argument("session_id")
@click.argument("name")
@json_flag
@click.pass_context
def rename_cmd(ctx: click.Context, session_id: str, name: str, as_json: bool) -> None:
    """Give a session a new name (its id stays)."""
    manager_call(ctx, lambda m: m.rename(session_id, name))
    if as_json:
        print_json({"session_id": session_id, "name": name})
    else:
        click.echo(f"renamed {session_id} to {name!r}")


@session_group.command("stop")
@click.argument("session_id")
@json_flag
@click.pass_context
def stop_cmd(ctx: click.Context, session_id: str, as_json: bool) -> None:
    """Checkpoint, destroy the sandbox and end the session."""
    info = manager_call(ctx, lambda m: m.stop(session_id))
    if as_json:
        print_json(info)
    else:
        click.echo(
            f"stopped {session_id} after {info.turns} turns; last checkpoint "
            f"{info.checkpoint or '-'}"
        )


def _session_rows(info: Any) -> list[tuple[str, str]]:
    """Every field of a ``SessionInfo``, one per row, its state fields as one "state"."""
    fields = _plain(info)
    rows = [("id", fields.pop("session_id")), ("state", _state(info))]
    for key in ("sandbox_state", "stopped", "migrating"):
        fields.pop(key, None)
    for key, value in fields.items():
        value = _when(value) if key == "last_activity" else value
        rows.append((key.replace("_", " "), "-" if value is None else str(value)))
    return rows


@session_group.command("show")
@click.argument("session_id")
@click.option("--limit", default=50, show_default=True, help="Most recent events shown.")
@json_flag
@click.pass_context
def show_cmd(ctx: click.Context, session_id: str, limit: int, as_json: bool) -> None:
    """The session's state and recent history."""

    async def both(m: Any) -> tuple[Any, Any]:
        return await m.describe(session_id), await m.history(session_id, limit)

    info, events = manager_call(ctx, both)
    if as_json:
        print_json({"session": info, "history": events})
        return
    details = table("session", "", rows=_session_rows(info))
    details.show_header = False
    print_table(details, whole=("",))
    rows = [(f"{datetime.fromtimestamp(e.at):%Y-%m-%d %H:%M:%S}", e.kind, e.detail) for e in events]
    print_table(table("at", "event", "detail", rows=rows, title="history"), whole=("at",))


@session_group.command("repair")
@click.argument("session_id")
@click.option("--to", "to", default=None, metavar="SNAPSHOT", help="Roll back to this snapshot.")
@json_flag
@click.pass_context
def repair_cmd(ctx: click.Context, session_id: str, to: str | None, as_json: bool) -> None:
    """Roll a damaged session back to its newest checkpoint that verifies (or --to
    SNAPSHOT) and say which turns that loses; it then serves turns again."""
    result = manager_call(ctx, lambda m: m.repair(session_id, to=to))
    if as_json:
        print_json(result)
        return
    click.echo(f"session {result.session_id}: {result.message}")
    for damaged in result.damaged:
        click.echo(f"  damaged {damaged.snapshot_id}: {damaged.problem}")
    if result.checkpoint:
        click.echo(f"  the next turn starts from checkpoint {result.checkpoint}")
