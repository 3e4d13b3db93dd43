"""`sandbank` command line: providers, ephemeral runs, sandboxes, and the subsystems' groups.

Tables for people, ``--json`` for scripts. Subcommand groups of other subsystems are
imported only when invoked, so ``sandbank --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import click
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from sandbank.errors import SandbankError
from sandbank.providers.registry import ProviderSpec, get_provider, list_providers

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)
"""Errors print here as one line at any terminal width."""

_LAZY_COMMANDS = {
    "chat": ("sandbank.durable.chat", "chat_command"),
    "conformance": ("sandbank.conformance.cli", "conformance_command"),
    "demo": ("sandbank.durable.demo", "demo_command"),
    "dev": ("sandbank.durable.cli", "dev_command"),
    "session": ("sandbank.durable.cli", "session_group"),
    "snapshot": ("sandbank.snapshots.cli", "snapshot_group"),
    "worker": ("sandbank.durable.cli", "worker_command"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _LAZY_COMMANDS:
            module, attr = _LAZY_COMMANDS[name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` on a new event loop; sandbank errors become a one-line message, exit 2."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except SandbankError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)


_NARROWEST = 6
"""Columns other than ``whole`` ones shrink to this many characters before those fold too."""


def print_table(table: Table, to: Console | None = None, whole: Sequence[str] = ()) -> None:
    """Print ``table`` with nothing cut: in a narrow terminal its cells fold onto more lines.

    The columns headed ``whole`` (ids) keep their full width while the others can make room
    by folding down to ``_NARROWEST`` characters; only a terminal narrower still folds them.
    """
    out = to or console
    columns = table.columns
    for column in columns:
        column.overflow = "fold"
        column.no_wrap = False
    heads = table.show_header
    natural = [
        max([cell_len(str(c)) for c in col.cells] + [cell_len(str(col.header)) if heads else 1])
        for col in columns
    ]
    measured = Measurement.get(out, out.options.update_width(1 << 20), table).maximum
    room = out.width - (measured - sum(natural))  # less borders and padding
    keep = [column.header in whole for column in columns]
    kept = sum(n for n, k in zip(natural, keep, strict=True) if k)
    others = [n for n, k in zip(natural, keep, strict=True) if not k]
    if sum(natural) > room and others:
        cap = max(others)
        while cap > _NARROWEST and kept + sum(min(n, cap) for n in others) > room:
            cap -= 1
        if kept + sum(min(n, cap) for n in others) <= room:
            for column, n, k in zip(columns, natural, keep, strict=True):
                column.width = n if k else min(n, cap)
    out.print(table)


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs into provider options (values parsed as JSON when they parse)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--option")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


option_flag = click.option(
    "--option", "-o", "options", multiple=True, metavar="KEY=VALUE", help="Provider option."
)
json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group(cls=_LazyGroup)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Durable, portable sandboxes for AI agents."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _describe(spec: ProviderSpec) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": spec.name,
        "distribution": spec.distribution,
        "installed": False,
        "available": False,
        "isolation": None,
        "capabilities": [],
        "detail": "",
    }
    try:
        provider = get_provider(spec.name)
    except SandbankError as exc:
        row["detail"] = str(exc)
        return row
    row["installed"] = True
    row["isolation"] = provider.isolation
    row["capabilities"] = provider.capabilities.names()
    try:
        asyncio.run(provider.check())
        row["available"] = True
    except SandbankError as exc:
        row["detail"] = str(exc)
    finally:
        asyncio.run(provider.aclose())
    return row


@cli.command()
@json_flag
def providers(as_json: bool) -> None:
    """List registered providers: installed, available now, isolation, capabilities."""
    try:
        rows = [_describe(spec) for spec in list_providers()]
    except SandbankError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("provider", "installed", "available", "isolation", "capabilities", "detail")
    for row in rows:
        table.add_row(
            row["name"],
            "yes" if row["installed"] else "no",
            "yes" if row["available"] else "no",
            row["isolation"] or "-",
            ", ".join(row["capabilities"]) or "-",
            row["detail"],
        )
    print_table(table, whole=("provider",))


def _stream_to_terminal(stream: str, data: bytes) -> None:
    target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
    target.write(data)
    target.flush()


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--provider", "-p", "provider_name", default="local", show_default=True)
@click.option("--image", help="Image for providers that use one.")
@click.option("--network/--no-network", default=False, help="Allow outbound network.")
@click.option("--timeout", type=float, help="Seconds before the command is killed.")
@option_flag
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    provider_name: str,
    image: str | None,
    network: bool,
    timeout: float | None,
    options: tuple[str, ...],
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in an ephemeral sandbox; output streams and the exit code passes through."""

    async def work() -> int:
        provider = get_provider(provider_name, **parse_options(options))
        manifest = {"image": image, "network": network}
        async with provider, provider.sandbox(manifest) as box:
            result = await box.exec(list(command), timeout=timeout, on_output=_stream_to_terminal)
            return result.exit_code

    sys.exit(run_async(work))


@cli.group()
def sandbox() -> None:
    """Inspect and manage live sandboxes."""


@sandbox.command("ls")
@click.option("--provider", "-p", "provider_names", multiple=True, help="Default: all available.")
@option_flag
@json_flag
def sandbox_ls(provider_names: tuple[str, ...], options: tuple[str, ...], as_json: bool) -> None:
    """List the sandboxes sandbank created that still exist."""
    names = list(provider_names) or [s.name for s in list_providers()]

    async def work() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for name in names:
            try:
                provider = get_provider(name, **parse_options(options))
                async with provider:
                    for info in await provider.list():
                        rows.append(
                            {
                                "id": info.id,
                                "provider": info.provider,
                                "status": str(info.status),
                                "image": info.image,
                                "created_at": info.created_at,
                                "isolation": info.isolation,
                            }
                        )
            except SandbankError as exc:
                if provider_names:
                    raise
                logging.getLogger(__name__).info("skipping provider %s: %s", name, exc)
        return rows

    rows = run_async(work)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "provider", "status", "image", "isolation")
    for row in rows:
        table.add_row(
            row["id"], row["provider"], row["status"], row["image"] or "-", row["isolation"] or "-"
        )
    print_table(table, whole=("id",))


@sandbox.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("--provider", "-p", "provider_name", required=True)
@click.option("--timeout", type=float)
@option_flag
@click.argument("sandbox_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def sandbox_exec(
    provider_name: str,
    timeout: float | None,
    options: tuple[str, ...],
    sandbox_id: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in an existing sandbox; the exit code passes through."""

    async def work() -> int:
        provider = get_provider(provider_name, **parse_options(options))
        async with provider, await provider.attach(sandbox_id) as box:
            result = await box.exec(list(command), timeout=timeout, on_output=_stream_to_terminal)
            return result.exit_code

    sys.exit(run_async(work))


@sandbox.command("rm")
@click.option("--provider", "-p", "provider_name", required=True)
@option_flag
@click.argument("sandbox_ids", nargs=-1, required=True)
def sandbox_rm(provider_name: str, options: tuple[str, ...], sandbox_ids: tuple[str, ...]) -> None:
    """Destroy sandboxes."""

    async def work() -> None:
        provider = get_provider(provider_name, **parse_options(options))
        async with provider:
            for sandbox_id in sandbox_ids:
                await provider.destroy(sandbox_id)
                click.echo(f"destroyed {sandbox_id}")

    run_async(work)


def main() -> None:
    cli()
