"""``sandbank snapshot ...``: create, restore, list, inspect, verify and collect snapshots.

Every subcommand takes ``--store URL`` (or ``$SANDBANK_STORE``), storage options as
``-o key=value`` (values parsed as JSON: ``-o 'client_kwargs={"endpoint_url": "..."}'``),
and ``--key-file`` for an encrypted store (or ``$SANDBANK_STORE_KEY`` /
``$SANDBANK_STORE_KEY_FILE``). A source or target is a host directory, or a live sandbox
named by ``--provider NAME --sandbox ID`` (provider options with ``-P key=value``).
Tables and progress bars for people; ``--json`` prints one JSON document for scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from sandbank.cli import parse_options, print_table, run_async
from sandbank.errors import ConfigurationError
from sandbank.providers.base import Sandbox
from sandbank.snapshots.store import ProgressCallback, SnapshotRecord, SnapshotStore

__all__ = ["snapshot_group"]

F = TypeVar("F", bound=Callable[..., Any])

console = Console(soft_wrap=True)
err_console = Console(stderr=True)


# -- shared options -------------------------------------------------------------------------


def _store_options(fn: F) -> F:
    fn = click.option(
        "--key-file",
        type=click.Path(exists=True, dir_okay=False),
        help="Encryption key file of an encrypted store (else $SANDBANK_STORE_KEY[_FILE]).",
    )(fn)
    fn = click.option(
        "--option",
        "-o",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="fsspec storage option (JSON values), e.g. -o 'client_kwargs={\"endpoint_url\":…}'.",
    )(fn)
    fn = click.option(
        "--store",
        "store_url",
        envvar="SANDBANK_STORE",
        required=True,
        metavar="URL",
        help="Store URL: a path, file://, memory://, s3://, gs://, az:// ($SANDBANK_STORE).",
    )(fn)
    return fn


def _json_flag(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def _sandbox_options(fn: F) -> F:
    fn = click.option(
        "--provider-option",
        "-P",
        "provider_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Provider option (JSON values).",
    )(fn)
    fn = click.option("--sandbox", "sandbox_id", metavar="ID", help="Sandbox id (attached).")(fn)
    fn = click.option("--provider", "-p", "provider_name", metavar="NAME", help="Provider.")(fn)
    return fn


def _storage_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    try:
        return parse_options(pairs)
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint="--option") from None


async def _open_store(
    url: str, pairs: tuple[str, ...], key_file: str | None, *, create: bool = False
) -> SnapshotStore:
    key = None
    if key_file is not None:
        key = (await asyncio.to_thread(Path(key_file).read_bytes)).rstrip(b"\r\n")
        if not key:
            raise ConfigurationError(f"the key file {key_file!r} is empty")
    return await SnapshotStore.open(
        url, storage_options=_storage_options(pairs), encryption_key=key, create=create
    )


@contextlib.asynccontextmanager
async def _endpoint(
    path: str | None,
    provider_name: str | None,
    sandbox_id: str | None,
    provider_options: tuple[str, ...],
    what: str,
) -> AsyncIterator[str | Sandbox]:
    """A host directory, or an attached sandbox (released, never destroyed, afterwards)."""
    if provider_name or sandbox_id:
        if path is not None:
            raise click.UsageError(f"give the {what} as a directory or --provider/--sandbox")
        if not (provider_name and sandbox_id):
            raise click.UsageError("--provider and --sandbox go together")
        from sandbank.providers.registry import get_provider

        provider = get_provider(provider_name, **parse_options(provider_options))
        async with provider:
            box = await provider.attach(sandbox_id)
            async with box:
                yield box
        return
    if path is None:
        raise click.UsageError(f"give the {what}: a directory, or --provider NAME --sandbox ID")
    yield path


@contextlib.contextmanager
def _progress(enabled: bool, label: str) -> Iterator[ProgressCallback | None]:
    """A rich progress bar fed by the store's ``progress(phase, done, total)`` callback."""
    if not enabled or not err_console.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int | None) -> None:
        task = tasks.get(phase)
        if task is None:
            task = tasks[phase] = bar.add_task(f"{label} ({phase})", total=total)
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _shown(path: str) -> str:
    """A path for the terminal: bytes that are not UTF-8 shown as \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _source(rec: SnapshotRecord) -> str:
    src = rec.source
    if src.get("kind") == "sandbox":
        return f"{src.get('provider')}:{src.get('sandbox_id')}"
    return _shown(str(src.get("path", "-")))


def _record_json(rec: SnapshotRecord) -> dict[str, Any]:
    return rec.to_dict()


def _latest_for(records: list[SnapshotRecord], source: str | Sandbox) -> SnapshotRecord | None:
    """The newest snapshot taken from the same directory or sandbox."""
    import os

    for rec in records:  # newest first
        src = rec.source
        if isinstance(source, Sandbox):
            if src.get("provider") == source.provider.name and src.get("sandbox_id") == source.id:
                return rec
        elif src.get("kind") == "host" and src.get("path") == os.path.abspath(source):
            return rec
    return None


# -- the group ------------------------------------------------------------------------------


@click.group("snapshot")
def snapshot_group() -> None:
    """Content-addressed, incremental workspace snapshots in any fsspec store."""


@snapshot_group.command("create")
@click.argument("source", required=False, type=click.Path(file_okay=False))
@_sandbox_options
@click.option(
    "--parent",
    metavar="ID|latest",
    help="Read only what changed since this snapshot ('latest': the newest of this source).",
)
@click.option("--exclude", "-x", multiple=True, metavar="GLOB", help="Leave out (repeatable).")
@click.option("--tag", "-t", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@_store_options
@_json_flag
def create_cmd(
    source: str | None,
    provider_name: str | None,
    sandbox_id: str | None,
    provider_options: tuple[str, ...],
    parent: str | None,
    exclude: tuple[str, ...],
    tags: tuple[str, ...],
    store_url: str,
    storage_options: tuple[str, ...],
    key_file: str | None,
    as_json: bool,
) -> None:
    """Snapshot SOURCE (a directory) or a sandbox into the store (created if missing)."""

    async def work() -> SnapshotRecord:
        async with (
            await _open_store(store_url, storage_options, key_file, create=True) as store,
            _endpoint(source, provider_name, sandbox_id, provider_options, "source") as src,
        ):
            parent_id = parent
            if parent == "latest":
                found = _latest_for(await store.list(), src)
                parent_id = found.id if found else None
            with _progress(not as_json, "snapshot") as progress:
                return await store.snapshot(
                    src, parent=parent_id, exclude=exclude, tags=tags, progress=progress
                )

    rec = run_async(work)
    if as_json:
        _emit(_record_json(rec))
        return
    s = rec.stats
    console.print(
        f"snapshot [bold]{rec.id}[/bold]"
        + (f" (parent {rec.parent})" if rec.parent else "")
        + f": {s.files} files, {_size(s.logical_bytes)}; read {_size(s.read_bytes)}, "
        f"wrote {_size(s.new_bytes)} in {s.objects_written} objects, {s.seconds:.2f} s",
        highlight=False,
    )


@snapshot_group.command("restore")
@click.argument("snapshot_id", metavar="SNAPSHOT")
@click.argument("target", required=False, type=click.Path(file_okay=False))
@_sandbox_options
@click.option(
    "--replace",
    is_flag=True,
    help="Make a non-empty target exactly the snapshot (writes only what differs).",
)
@_store_options
@_json_flag
def restore_cmd(
    snapshot_id: str,
    target: str | None,
    provider_name: str | None,
    sandbox_id: str | None,
    provider_options: tuple[str, ...],
    replace: bool,
    store_url: str,
    storage_options: tuple[str, ...],
    key_file: str | None,
    as_json: bool,
) -> None:
    """Restore SNAPSHOT into TARGET (a directory) or a sandbox."""

    async def work() -> Any:
        async with (
            await _open_store(store_url, storage_options, key_file) as store,
            _endpoint(target, provider_name, sandbox_id, provider_options, "target") as dst,
        ):
            with _progress(not as_json, "restore") as progress:
                return await store.restore(
                    snapshot_id,
                    dst,
                    if_not_empty="replace" if replace else "fail",
                    progress=progress,
                )

    stats = run_async(work)
    if as_json:
        _emit(dataclasses.asdict(stats))
        return
    console.print(
        f"restored {stats.files} files, {stats.dirs} dirs, {stats.symlinks} links "
        f"({_size(stats.bytes)}): wrote {stats.files_written} files "
        f"({_size(stats.bytes_written)}), "
        f"{stats.unchanged} unchanged, {stats.removed} removed, {stats.seconds:.2f} s",
        highlight=False,
    )


@snapshot_group.command("ls")
@click.option("--tag", "-t", "tag", help="Only snapshots with this tag.")
@_store_options
@_json_flag
def ls_cmd(
    tag: str | None,
    store_url: str,
    storage_options: tuple[str, ...],
    key_file: str | None,
    as_json: bool,
) -> None:
    """List snapshots, newest first."""

    async def work() -> list[SnapshotRecord]:
        async with await _open_store(store_url, storage_options, key_file) as store:
            return await store.list()

    records = [r for r in run_async(work) if tag is None or tag in r.tags]
    if as_json:
        _emit([_record_json(r) for r in records])
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id")
    table.add_column("created")
    for name in ("files", "size", "written"):
        table.add_column(name, justify="right")
    table.add_column("tags")
    table.add_column("source")
    for r in records:
        table.add_row(
            r.id,
            _when(r.created_at)[:16],
            str(r.stats.files),
            _size(r.stats.logical_bytes),
            _size(r.stats.new_bytes),
            ", ".join(r.tags) or "-",
            _source(r),
        )
    print_table(table, console, whole=("id",))


@snapshot_group.command("show")
@click.argument("snapshot_id", metavar="SNAPSHOT")
@click.option("--files", "list_files", is_flag=True, help="List every file too.")
@_store_options
@_json_flag
def show_cmd(
    snapshot_id: str,
    list_files: bool,
    store_url: str,
    storage_options: tuple[str, ...],
    key_file: str | None,
    as_json: bool,
) -> None:
    """A snapshot's record: files, logical, stored and new bytes (and with --files, its files)."""

    async def work() -> Any:
        async with await _open_store(store_url, storage_options, key_file) as store:
            return await store.show(snapshot_id)

    details = run_async(work)
    rec = details.record
    if as_json:
        data: dict[str, Any] = {
            "record": _record_json(rec),
            "logical_bytes": details.logical_bytes,
            "stored_bytes": details.stored_bytes,
            "new_bytes": details.new_bytes,
        }
        if list_files:
            data["files"] = [dataclasses.asdict(f) for f in details.files]
        _emit(data)
        return
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("id", rec.id),
        ("parent", rec.parent or "-"),
        ("created", _when(rec.created_at)),
        ("source", _source(rec)),
        ("tags", ", ".join(rec.tags) or "-"),
        ("excludes", ", ".join(rec.excludes) or "-"),
        ("files", f"{rec.stats.files} files, {rec.stats.dirs} dirs, {rec.stats.symlinks} links"),
        ("logical", _size(details.logical_bytes)),
        ("stored", _size(details.stored_bytes)),
        ("new", f"{_size(details.new_bytes)} in {rec.stats.objects_written} objects"),
        ("took", f"{rec.stats.seconds:.2f} s"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    print_table(table, console, whole=("field",))
    if list_files:
        files = Table("type", "mode", "size", "modified", "path")
        for f in details.files:
            path = f.path + (f" -> {f.link_target}" if f.link_target is not None else "")
            files.add_row(f.type, f"{f.mode:o}", str(f.size), _when(f.mtime), _shown(path))
        print_table(files, console)


@snapshot_group.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@_store_options
@_json_flag
def diff_cmd(
    a: str,
    b: str,
    store_url: str,
    storage_options: tuple[str, ...],
    key_file: str | None,
    as_json: bool,
) -> None:
    """Paths added, removed and changed from snapshot A to snapshot B."""

    async def work() -> Any:
        async with await _open_store(store_url, storage_options, key_file) as store:
            return await store.diff(a, b)

    d = run_async(work)
    if as_json:
        _emit(dataclasses.asdict(d))
        return
    for sign, paths, style in (("+", d.added, "green"), ("-", d.removed, "red")):
        for p in paths:
            console.print(f"{sign} {_shown(p)}", style=style, highlight=False, markup=False)
    for p in d.changed:
        console.print(f"M {_shown(p)}", style="yellow", highlight=False, markup=False)
    console.print(
        f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed",
        highlight=False,
    )


@snapshot_group.command("verify")
@click.argument("snapshot_ids", nargs=-1, metavar="[SNAPSHOT]...")
@click.option(
    "--repair",
    is_flag=True,
    help="Rebuild lost or damaged pack indexes from their packs (where a pack is intact).",
)
@_store_options
@_json_flag
def verify_cmd(
    snapshot_ids: tuple[str, ...],
    repair: bool,
    store_url: str,
    storage_options: tuple[str, ...],
    key_file: str | None,
    as_json: bool,
) -> None:
    """Re-read and re-hash every object (or those of SNAPSHOTs); exit 1 on any problem left."""

    async def work() -> Any:
        async with await _open_store(store_url, storage_options, key_file) as store:
            with _progress(not as_json, "verify") as progress:
                return await store.verify(snapshot_ids or None, progress=progress, repair=repair)

    report = run_async(work)
    if as_json:
        _emit(dataclasses.asdict(report))
    else:
        console.print(
            f"{'ok' if report.ok else 'PROBLEMS'}: {report.snapshots} snapshots, "
            f"{report.packs} packs, {report.blobs} blobs, {_size(report.bytes)} checked in "
            f"{report.seconds:.2f} s",
            highlight=False,
        )
        for title, problems in (("repaired", report.repaired), ("problem", report.problems)):
            if problems:
                table = Table("object", title, "snapshots affected")
                for p in problems:
                    table.add_row(p.object, p.detail, ", ".join(p.snapshots) or "-")
                print_table(table, console, whole=("object",))
        fixable = sum(p.repairable for p in report.problems)
        if fixable:
            console.print(
                f"{fixable} of these can be repaired: run `sandbank snapshot verify --repair`",
                highlight=False,
                markup=False,
            )
    if not report.ok:
        sys.exit(1)


@snapshot_group.command("gc")
@click.option(
    "--grace",
    type=float,
    default=3600.0,
    show_default=True,
    help="Keep unreferenced packs younger than this many seconds (a writer may use them).",
)
@_store_options
@_json_flag
def gc_cmd(
    grace: float,
    store_url: str,
    storage_options: tuple[str, ...],
    key_file: str | None,
    as_json: bool,
) -> None:
    """Delete packs that no snapshot references (mark and sweep)."""

    async def work() -> Any:
        async with await _open_store(store_url, storage_options, key_file) as store:
            return await store.gc(grace_seconds=grace)

    report = run_async(work)
    if as_json:
        _emit(dataclasses.asdict(report))
        return
    console.print(
        f"deleted {report.packs_deleted} packs ({_size(report.bytes_freed)}); kept "
        f"{report.packs_kept} live packs ({_size(report.dead_bytes_kept)} dead inside) and "
        f"{report.too_young} younger than {grace:g} s; {report.snapshots} snapshots",
        highlight=False,
    )
    if report.unindexed_kept:
        console.print(
            f"kept {report.unindexed_kept} packs that no index describes but snapshots may "
            f"need: run `sandbank snapshot verify --repair`",
            highlight=False,
            markup=False,
        )


@snapshot_group.command("rm")
@click.argument("snapshot_ids", nargs=-1, required=True, metavar="SNAPSHOT...")
@_store_options
@_json_flag
def rm_cmd(
    snapshot_ids: tuple[str, ...],
    store_url: str,
    storage_options: tuple[str, ...],
    key_file: str | None,
    as_json: bool,
) -> None:
    """Delete snapshot records; `gc` then reclaims their data."""

    async def work() -> list[str]:
        done = []
        async with await _open_store(store_url, storage_options, key_file) as store:
            for sid in snapshot_ids:
                rec = await store.get(sid)
                await store.delete(rec.id)
                done.append(rec.id)
        return done

    deleted = run_async(work)
    if as_json:
        _emit({"deleted": deleted})
        return
    for sid in deleted:
        console.print(f"deleted {sid}", highlight=False)


@snapshot_group.command("tag")
@click.argument("snapshot_id", metavar="SNAPSHOT")
@click.argument("tags", nargs=-1, required=True)
@_store_options
@_json_flag
def tag_cmd(
    snapshot_id: str,
    tags: tuple[str, ...],
    store_url: str,
    storage_options: tuple[str, ...],
    key_file: str | None,
    as_json: bool,
) -> None:
    """Add TAGS to a snapshot."""

    async def work() -> SnapshotRecord:
        async with await _open_store(store_url, storage_options, key_file) as store:
            return await store.tag(snapshot_id, *tags)

    rec = run_async(work)
    if as_json:
        _emit(_record_json(rec))
        return
    console.print(f"{rec.id}: {', '.join(rec.tags)}", highlight=False)
