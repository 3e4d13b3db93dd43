"""`sandbank chat`: an agent session in the terminal, on embedded defaults.

An embedded Temporal dev server (SQLite in the data directory), a worker in this process
(the local provider, docker when it is there, a ``file://`` store) and one durable agent
session. Lines are prompts; ``/fork``, ``/migrate PROVIDER``, ``/history``, ``/quit``. The
session outlives the terminal: ``sandbank chat --session ID`` goes on with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import click
import platformdirs

from sandbank.cli import err_console
from sandbank.durable.cli import _agents, _connect, _run
from sandbank.errors import SandbankError

__all__ = ["chat_command"]

HELP = "/fork  /migrate PROVIDER  /history  /quit  (anything else is a prompt)"


class Chat:
    """One terminal conversation with a durable agent session."""

    def __init__(self, manager: Any, session_id: str) -> None:
        self.manager = manager
        self.session_id = session_id

    async def line(self, text: str) -> bool:
        """Handle one input line; False once the user quits."""
        text = text.strip()
        if not text:
            return True
        command, _, arg = text.partition(" ")
        if command in ("/quit", "/exit"):
            return False
        if command == "/fork":
            fork = await self.manager.fork(self.session_id)
            click.echo(f"forked {self.session_id} -> {fork}; now in {fork}")
            self.session_id = fork
        elif command == "/migrate":
            if not arg:
                click.echo("usage: /migrate PROVIDER (say /migrate docker)")
                return True
            moved = await self.manager.migrate(self.session_id, arg.strip())
            click.echo(
                f"migrated to {moved.provider} ({moved.sandbox_id}), down {moved.downtime:.2f}s"
                f", {'verified' if moved.verified else 'NOT verified'} ({moved.verification})"
            )
        elif command == "/history":
            for event in await self.manager.history(self.session_id):
                click.echo(f"  {event.kind:<12} {event.detail}")
        elif command.startswith("/"):
            click.echo(HELP)
        else:
            result = await self.manager.prompt(self.session_id, text)
            for call in result.tool_calls:
                code = "" if call.exit_code is None else f" -> exit {call.exit_code}"
                err_console.print(
                    f"[dim]  {call.name}({call.summary}){code} {call.seconds:.2f}s[/dim]",
                    highlight=False,
                )
            click.echo(result.final_output)
        return True

    async def run(self) -> None:
        click.echo(f"session {self.session_id}; {HELP}")
        while True:
            try:
                text = await asyncio.to_thread(input, "you> ")
            except EOFError:
                break
            try:
                if not await self.line(text):
                    break
            except SandbankError as exc:  # the session keeps serving: say so and go on
                err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        click.echo(f"resume with: sandbank chat --session {self.session_id}")


async def _chat(
    server: Any, root: Path, provider: str, agent: str, model: str | None, session: str | None
) -> None:
    from sandbank.durable.activities import SandboxActivities
    from sandbank.durable.manager import SessionManager
    from sandbank.durable.worker import build_worker
    from sandbank.providers.registry import get_provider
    from sandbank.snapshots import SnapshotStore

    # An agent's misses (apply_patch checks that a new file is absent) are failed activities
    # that Temporal logs with a traceback: not for the terminal.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    store = await SnapshotStore.open(f"file://{root / 'store'}")

    def make(name: str) -> Any:
        return get_provider("local", state_dir=str(root / "local")) if name == "local" else (
            get_provider(name)
        )  # fmt: skip

    acts = SandboxActivities(make, store)
    client = await _connect(server.address, "default")
    try:
        async with build_worker(client, acts, agents=_agents(())):
            manager = SessionManager(client, store=store)
            if session is None:
                session = await manager.start(provider, agent=agent, model=model)
            elif not (await manager.describe(session)).agent:
                raise click.ClickException(f"session {session} has no agent; chat needs one")
            await Chat(manager, session).run()
    finally:
        await acts.aclose()
        await store.aclose()


@click.command("chat")
@click.option("--provider", default="local", show_default=True)
@click.option("--agent", default="coder", show_default=True)
@click.option("--model", default=None, help="Default: the scripted model (no key needed).")
@click.option("--session", "session_id", default=None, help="Go on with this session.")
@click.option("--data-dir", type=click.Path(), default=None, help="Default: the user data dir.")
def chat_command(
    provider: str, agent: str, model: str | None, session_id: str | None, data_dir: str | None
) -> None:
    """An interactive agent session in the terminal (embedded server, worker and store)."""
    from sandbank.testing.services import (
        ServiceStartError,
        ServiceUnavailable,
        free_ports,
        temporal_dev_server,
    )

    root = Path(data_dir or platformdirs.user_data_dir("sandbank")) / "chat"
    root.mkdir(parents=True, exist_ok=True)
    try:
        server = temporal_dev_server(root, port=free_ports(1)[0], db_filename=root / "temporal.db")
        server.start()
    except (ServiceUnavailable, ServiceStartError) as exc:
        raise click.ClickException(f"the embedded Temporal dev server: {exc}") from exc
    try:
        with contextlib.suppress(KeyboardInterrupt):
            _run(_chat(server, root, provider, agent, model, session_id))
    finally:
        server.stop()
