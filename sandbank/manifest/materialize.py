"""Build a sandbox from a manifest: its files and directories, its setup, and the setup cache.

    box = await create_sandbox(provider, manifest, store=store)

The result of contents + setup is snapshotted into ``store`` under a key hashed from all
that produced it; the next sandbox from an equal manifest, on any provider that resolves
the same image, is restored from that snapshot instead of running setup again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import tarfile
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from sandbank._streams import stream_from_thread
from sandbank.errors import ConfigurationError, ExecTimeout, SandbankError, WorkspacePathError
from sandbank.manifest.contents import APPLYING
from sandbank.manifest.errors import SetupFailed, SourceError
from sandbank.manifest.model import Manifest
from sandbank.manifest.sources import Source, StorageOptions, resolve

if TYPE_CHECKING:
    from sandbank.providers.base import OutputCallback, Provider, Sandbox
    from sandbank.snapshots import SnapshotRecord, SnapshotStore

__all__ = ["CACHE_TAG", "cache_key", "create_sandbox"]

log = logging.getLogger("sandbank.manifest")

CACHE_TAG = "sandbank.setup:"
"""Prefix of the tag that marks a setup snapshot; the rest is the cache key."""
_KEY_VERSION = 1
_OUTPUT_KEPT = 16 * 1024
"""Bytes of a setup command's last output a ``SetupFailed`` carries."""


async def create_sandbox(
    provider: Provider,
    manifest: Manifest | dict[str, Any] | None = None,
    *,
    store: SnapshotStore | None = None,
    on_output: OutputCallback | None = None,
    storage_options: StorageOptions | None = None,
    host_roots: Sequence[str] | None = None,
) -> Sandbox:
    """Create a sandbox with the manifest's dirs and files in it and its setup run.

    Sources are checked before anything is created; a failure after that destroys the
    sandbox. With ``store``, a cached result of the same contents and setup is restored
    instead, and a new result is cached. Setup output is logged (``sandbank.manifest``,
    INFO) and passed to ``on_output``. ``storage_options`` (by protocol) open URL sources.
    ``host_roots`` limits host paths and ``file://`` URLs to those directories (a worker
    serving manifests it did not write should set it); ``None`` allows any.
    """
    manifest = Manifest.parse(manifest)
    if not manifest.has_contents:
        return await provider.create(manifest)
    token = APPLYING.set(True)
    try:
        sources = await resolve(manifest, storage_options or {}, host_roots)
        try:
            box = await provider.create(manifest)
            try:
                await _build(box, manifest, sources, store, on_output)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(box.destroy())
                raise
        finally:
            for source in sources:
                source.close()
    finally:
        APPLYING.reset(token)
    return box


def cache_key(manifest: Manifest, image: str | None, fingerprints: Sequence[dict[str, Any]]) -> str:
    """The setup cache key: a hash of the image, the contents' fingerprints, the setup
    commands, env, workdir and user (nothing else changes what setup produces)."""
    spec = {
        "v": _KEY_VERSION,
        "image": image,
        "contents": [
            {"where": where, "path": path, **fp}
            for (where, path), fp in zip(_entries(manifest), fingerprints, strict=True)
        ],
        "setup": [command.run for command in manifest.setup],
        "env": manifest.env,
        "workdir": manifest.workdir,
        "user": manifest.user,
    }
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _entries(manifest: Manifest) -> list[tuple[str, str]]:
    kinds: list[tuple[Literal["dirs", "files"], Sequence[Any]]] = [
        ("dirs", manifest.dirs),
        ("files", manifest.files),
    ]
    return [(kind, e.path) for kind, entries in kinds for e in entries]


async def _build(
    box: Sandbox,
    manifest: Manifest,
    sources: list[Source],
    store: SnapshotStore | None,
    on_output: OutputCallback | None,
) -> None:
    image = (await box.info()).image if store is not None else None
    if store is not None:
        key = cache_key(manifest, image, [s.fingerprint for s in sources])
        hit = await _cached(store, key)
        if hit is not None:
            try:
                await store.restore(hit.id, box, if_not_empty="replace")
                log.info("setup cache hit: restored %s into %s", hit.id, box.id)
                return
            except SandbankError as exc:
                log.warning("setup snapshot %s cannot be restored (%s); running setup", hit.id, exc)
                await _empty(box)
    written = [await _write(box, source) for source in sources]
    await _run_setup(box, manifest, on_output)
    if store is not None:
        key = cache_key(manifest, image, written)
        try:
            rec = await store.snapshot(box, tags=[CACHE_TAG + key], manifest=manifest)
            log.info("setup cached as snapshot %s", rec.id)
        except SandbankError as exc:
            log.warning("could not cache the setup result (%s); the sandbox is fine", exc)


async def _cached(store: SnapshotStore, key: str) -> SnapshotRecord | None:
    """The first committed setup snapshot for ``key`` (concurrent creators may add more)."""
    tag = CACHE_TAG + key
    matches = [rec for rec in await store.list() if tag in rec.tags]
    return min(matches, key=lambda rec: (rec.created_at, rec.id)) if matches else None


async def _empty(box: Sandbox) -> None:
    for entry in await box.list_tree():
        if "/" not in entry.path:
            await box.remove(entry.path)
    await box.mkdir(box.manifest.workdir)


async def _write(box: Sandbox, source: Source) -> dict[str, Any]:
    """Stream one source into the sandbox as a tar; the fingerprint of what was written."""
    await source.fetch()
    written: list[dict[str, Any]] = []

    def produce(out: BinaryIO) -> None:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            written.append(source.write(tar))

    try:
        await box.import_tar(stream_from_thread(produce))
    except WorkspacePathError as exc:
        raise SourceError(f"{source.where}.path", f"{source.target!r}: {exc}") from None
    except SourceError:
        raise
    except ConfigurationError as exc:
        raise SourceError(source.where, f"cannot be written to {source.target!r}: {exc}") from None
    return written[0]


async def _run_setup(box: Sandbox, manifest: Manifest, on_output: OutputCallback | None) -> None:
    for i, command in enumerate(manifest.setup):
        log.info("setup[%d]: %s", i, command.run)
        tail = _Tail(i, on_output)
        try:
            result = await box.exec(command.run, timeout=command.timeout, on_output=tail.feed)
        except ExecTimeout as exc:
            reason = f"timed out after {command.timeout:g}s"
            raise SetupFailed(i, command.run, reason, exc.result, tail.text()) from None
        if result.exit_code != 0:
            reason = f"exited with {result.exit_code}"
            raise SetupFailed(i, command.run, reason, result, tail.text())


class _Tail:
    """Logs a setup command's output, passes it on, and keeps its last bytes (both streams)."""

    def __init__(self, index: int, on_output: OutputCallback | None) -> None:
        self.index, self.on_output = index, on_output
        self.kept: deque[bytes] = deque()
        self.size = 0

    async def feed(self, stream: Literal["stdout", "stderr"], data: bytes) -> None:
        self.kept.append(data)
        self.size += len(data)
        while self.size > _OUTPUT_KEPT and len(self.kept) > 1:
            self.size -= len(self.kept.popleft())
        for line in data.decode(errors="replace").splitlines():
            log.info("setup[%d] %s: %s", self.index, stream, line)
        if self.on_output is not None:
            outcome = self.on_output(stream, data)
            if outcome is not None:
                await outcome

    def text(self) -> str:
        return b"".join(self.kept).decode(errors="replace")
