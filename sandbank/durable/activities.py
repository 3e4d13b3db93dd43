"""Temporal activities over sandbank sandboxes, held by one worker-side object.

``SandboxActivities`` owns the providers and the snapshot store (and so every credential);
workflows reach it only through the activity names in ``sandbank.durable.types``. Each
activity takes one small dataclass and returns one; sandbank errors become
``ApplicationError``s in ``to_application_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity

from sandbank._streams import SyncReader
from sandbank.durable import types as t
from sandbank.durable._journal import WRAPPER, parse_journal_output, valid_exec_id
from sandbank.durable.failures import to_application_error
from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    NotSupported,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SandboxNotFound,
    SnapshotError,
)
from sandbank.manifest import Manifest
from sandbank.manifest.materialize import create_sandbox
from sandbank.providers.base import ExecResult, Provider, Sandbox
from sandbank.providers.registry import get_provider
from sandbank.secrets import exec_environment
from sandbank.snapshots import Excluder

__all__ = [
    "HEARTBEAT_EVERY",
    "SandboxActivities",
    "provider_locality",
    "save_blob",
    "to_application_error",
]

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 2.0
"""Seconds between heartbeats of a long activity (workflows use a ~10 s heartbeat timeout)."""

PRIVATE_DIR = ".sandbank"
"""Workspace-relative directory sandbank keeps for itself; never part of a snapshot."""

_TMP_JOURNAL = "/tmp/.sandbank/exec"
_WORKSPACE_JOURNAL = f"{PRIVATE_DIR}/exec"

T = TypeVar("T")
ProviderSource = Mapping[str, Provider] | Callable[[str], Provider]
SandboxKey = tuple[str, str]
"""(provider, sandbox id): a sandbox, whichever queue a ref to it names."""


def provider_locality(provider: Provider) -> str:
    """What a provider's sandboxes live on, as seen from this worker: a local state
    directory, a Docker engine address, or just the provider's name (reachable anywhere)."""
    state_dir = getattr(provider, "state_dir", None)
    if state_dir is not None:
        return f"{provider.name}:{os.path.abspath(os.fspath(state_dir))}"
    if provider.name == "docker":
        engine = getattr(provider, "base_url", None) or os.environ.get("DOCKER_HOST")
        return f"docker:{engine or 'unix:///var/run/docker.sock'}"
    return provider.name


async def _heartbeating(work: Awaitable[T], details: Callable[[], Any] | None = None) -> T:
    """Await ``work`` while heartbeating every ``HEARTBEAT_EVERY`` seconds."""
    task = asyncio.ensure_future(work)
    started = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
            if done:
                return task.result()
            info = details() if details else {"elapsed": round(time.monotonic() - started, 1)}
            activity.heartbeat(info)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class SandboxActivities:
    """Every sandbox operation as an activity. Register ``activities()`` on a worker.

    ``providers`` maps provider names to configured providers (or is a factory taking the
    name); by default the registry builds them with no options. ``store`` is the snapshot
    store (a ``SnapshotStore``) used for checkpoints and for data above the inline limit.
    ``unavailable_timeout`` bounds, in seconds, the retries of an unavailable provider.
    """

    def __init__(
        self,
        providers: ProviderSource | None = None,
        store: Any | None = None,
        *,
        inline_limit: int = t.INLINE_LIMIT,
        locality: str | None = None,
        unavailable_timeout: float = 10.0,
        host_roots: Sequence[str] | None = None,
    ) -> None:
        self._providers = providers
        self._provider_cache: dict[str, Provider] = {}
        self.store = store
        self.inline_limit = inline_limit
        self._locality = locality
        self.unavailable_timeout = unavailable_timeout
        """Seconds an unavailable provider (engine down, SDK missing) is retried before the
        call fails with ``ProviderUnavailable``."""
        self.host_roots = host_roots
        """Directories a manifest's host paths (and ``file://`` URLs) may read (None: any)."""
        self.worker_queue: str | None = None
        """This worker's own task queue for the sandboxes it creates (set by
        ``build_worker``, which polls it); None leaves sandboxes on the shared queue."""
        self._boxes: dict[SandboxKey, Sandbox] = {}
        self._journals: dict[SandboxKey, str] = {}
        self._inflight: dict[tuple[SandboxKey, str], asyncio.Future[ExecResult]] = {}

    def activities(self) -> list[Callable[..., Any]]:
        """The bound activity methods, for ``Worker(activities=...)``."""
        return [
            self.create,
            self.status,
            self.exec,
            self.read_file,
            self.write_file,
            self.list_tree,
            self.remove,
            self.mkdir,
            self.snapshot,
            self.restore,
            self.destroy,
            self.pause,
            self.stop,
            self.resume,
            self.stage_file,
            self.stage_bytes,
            self.digest,
            self.digest_listing,
            self.snapshot_digest_listing,
            self.find_intact,
        ]

    async def aclose(self) -> None:
        """Release sandbox handles and provider clients (sandboxes keep running)."""
        for box in list(self._boxes.values()):
            await box.aclose()
        self._boxes.clear()
        for provider in self._provider_cache.values():
            await provider.aclose()
        self._provider_cache.clear()

    def locality(self) -> str:
        """A stable name for where this worker's sandboxes live: the host and the providers'
        data (local state directories, Docker engine address). Workers with the same
        locality reach the same sandboxes, so they share a worker-specific task queue, and
        a worker restarted on the same host and disk picks that queue up again."""
        if self._locality is not None:
            return self._locality
        if isinstance(self._providers, Mapping):
            providers = list(self._providers.values())
        else:
            # A factory: the providers this worker would build for the host-bound names.
            providers = []
            for name in ("local", "docker"):
                with contextlib.suppress(Exception):  # not configured here: not part of it
                    providers.append(self.provider(name))
        parts = sorted({provider_locality(p) for p in providers})
        return "\n".join([socket.gethostname(), *parts])

    def worker_queue_for(self, task_queue: str) -> str:
        """The worker-specific queue paired with ``task_queue``: ``<queue>@<host>-<hash>``."""
        host = socket.gethostname().split(".")[0][:40] or "host"
        digest = hashlib.sha256(self.locality().encode()).hexdigest()[:10]
        return f"{task_queue}@{host}-{digest}"

    # -- plumbing --------------------------------------------------------------------------

    def provider(self, name: str) -> Provider:
        cached = self._provider_cache.get(name)
        if cached is not None:
            return cached
        source = self._providers
        if source is None:
            provider = get_provider(name)
        elif callable(source):
            provider = source(name)
        elif name in source:
            provider = source[name]
        else:
            raise ConfigurationError(
                f"this worker has no provider {name!r} (it has {sorted(source)}); "
                f"start a worker that configures it"
            )
        self._provider_cache[name] = provider
        return provider

    async def _box(self, ref: t.SandboxRef) -> Sandbox:
        box = self._boxes.get(ref.key)
        if box is None or box.closed:
            box = await self.provider(ref.provider).attach(ref.sandbox_id)
            self._boxes[ref.key] = box
        return box

    def _run_done(self, key: tuple[SandboxKey, str], task: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: a run nobody waits for any more logs nothing

    def _forget(self, ref: t.SandboxRef) -> None:
        self._boxes.pop(ref.key, None)
        self._journals.pop(ref.key, None)

    async def _run(
        self,
        ref: t.SandboxRef | None,
        work: Callable[[], Awaitable[T]],
        provider: str | None = None,
    ) -> T:
        """Run one activity body: errors mapped, a lost sandbox's handle dropped, an
        unavailable provider retried only within ``unavailable_timeout``."""
        try:
            return await work()
        except (SandboxLost, SandboxNotFound) as exc:
            if ref is not None:
                self._forget(ref)
            raise to_application_error(exc) from exc
        except ProviderUnavailable as exc:
            name = provider or (ref.provider if ref is not None else None)
            unavailable, final = self._unavailable(exc, name)
            raise to_application_error(unavailable, non_retryable=final) from exc
        except SandbankError as exc:
            raise to_application_error(exc) from exc

    def _unavailable(
        self, exc: ProviderUnavailable, name: str | None
    ) -> tuple[ProviderUnavailable, bool]:
        """``exc`` naming the provider and where it lives, and whether this attempt is the
        last: it is once another retry would end past ``unavailable_timeout`` seconds since
        the first attempt (Temporal's backoff would otherwise retry for about a minute)."""
        address = ""
        if name is not None:
            with contextlib.suppress(SandbankError):
                locality = provider_locality(self.provider(name))
                address = locality.split(":", 1)[1] if ":" in locality else ""
        info = _activity_info()
        elapsed, final = 0.0, not exc.retryable
        if info is not None and not final:
            elapsed = (datetime.now(UTC) - info.scheduled_time).total_seconds()
            final = elapsed + _next_retry_wait(info) > self.unavailable_timeout
        message = str(exc)
        if name is not None:
            at = f" at {address}" if address else ""
            message = f"provider {name!r}{at} is unavailable: {message}"
        if final and exc.retryable and info is not None:
            message += (
                f" (gave up after {elapsed:.1f}s and {info.attempt} attempts; the worker's "
                f"unavailable_timeout is {self.unavailable_timeout:g}s)"
            )
        out = ProviderUnavailable(message, retryable=exc.retryable)
        out.__dict__.update({k: v for k, v in vars(exc).items() if k != "retryable"})
        if name is not None:
            out.provider = name  # type: ignore[attr-defined]
        if address:
            out.address = address  # type: ignore[attr-defined]
        return out, final

    def _store(self) -> Any:
        if self.store is None:
            raise NotSupported(
                "worker", "snapshots", "start the worker with a snapshot store (--store URL)"
            )
        return self.store

    # -- lifecycle -------------------------------------------------------------------------

    @activity.defn(name=t.CREATE)
    async def create(self, inp: t.CreateInput) -> t.CreateOutput:
        async def work() -> t.CreateOutput:
            provider = self.provider(inp.provider)
            manifest = Manifest.from_json(inp.manifest_json) if inp.manifest_json else None
            # Contents and setup are applied here, on the worker, the setup cached in the store.
            box = await _heartbeating(
                create_sandbox(provider, manifest, store=self.store, host_roots=self.host_roots)
            )
            ref = t.SandboxRef(inp.provider, box.id, self.worker_queue)
            self._boxes[ref.key] = box
            caps = provider.capabilities
            log.info("created %s sandbox %s", inp.provider, box.id)
            return t.CreateOutput(
                sandbox=ref,
                capabilities=caps.names(),
                durable_exec=caps.durable_exec,
            )

        return await self._run(None, work, inp.provider)

    @activity.defn(name=t.STATUS)
    async def status(self, ref: t.SandboxRef) -> t.StatusOutput:
        async def work() -> t.StatusOutput:
            try:
                box = await self._box(ref)
                return t.StatusOutput(status=str(await box.status()))
            except (SandboxNotFound, SandboxLost):
                self._forget(ref)
                return t.StatusOutput(status="missing")

        return await self._run(ref, work)

    @activity.defn(name=t.DESTROY)
    async def destroy(self, ref: t.SandboxRef) -> None:
        """Delete the sandbox; one that is already gone is fine."""

        async def work() -> None:
            box = self._boxes.pop(ref.key, None)
            self._journals.pop(ref.key, None)
            try:
                await self.provider(ref.provider).destroy(ref.sandbox_id)
            except SandboxNotFound:
                pass
            finally:
                if box is not None:
                    await box.aclose()

        await self._run(ref, work)

    @activity.defn(name=t.PAUSE)
    async def pause(self, ref: t.SandboxRef) -> None:
        async def work() -> None:
            await (await self._box(ref)).pause()

        await self._run(ref, work)

    @activity.defn(name=t.STOP)
    async def stop(self, ref: t.SandboxRef) -> None:
        async def work() -> None:
            await (await self._box(ref)).stop()

        await self._run(ref, work)

    @activity.defn(name=t.RESUME)
    async def resume(self, ref: t.SandboxRef) -> None:
        async def work() -> None:
            await (await self._box(ref)).resume()

        await self._run(ref, work)

    # -- commands --------------------------------------------------------------------------

    @activity.defn(name=t.EXEC)
    async def exec(self, inp: t.ExecInput) -> t.ExecOutput:
        """Run a command once per ``exec_id``; a retry returns the first run's result."""

        async def work() -> t.ExecOutput:
            if not valid_exec_id(inp.exec_id):
                raise ConfigurationError(
                    f"exec id {inp.exec_id!r} must be 1-128 letters, digits, '.', '_' or '-'"
                )
            if not inp.argv:
                raise ConfigurationError("argv must be a non-empty list of strings")
            pinned = inp.sandbox.task_queue
            if pinned is not None and pinned != self.worker_queue and activity.info().is_local:
                # A local activity runs on the workflow's worker, which is not the
                # sandbox's: start nothing, the workflow sends the call to the sandbox's queue.
                return t.ExecOutput(exit_code=-1, pending=True, elsewhere=True)
            box = await self._box(inp.sandbox)
            # Secrets are read once, here on the worker; the journal's framed output is
            # redacted after parsing (redacting it whole would break the frame lengths).
            env, redactor = exec_environment(box.manifest.env, box.manifest.secrets, inp.env)
            journal = await self._journal_dir(inp.sandbox, box, env)
            stdin = t.b64decode(inp.stdin_b64) if inp.stdin_b64 is not None else None
            timeout = inp.timeout or 0
            argv = [
                "/bin/sh",
                "-c",
                WRAPPER,
                "sandbank-exec",
                journal,
                inp.exec_id,
                inp.cwd if inp.cwd is not None else box.manifest.workdir,
                f"{timeout:g}",
                str(self.inline_limit),
                str(t.STDERR_LIMIT),
                "1" if stdin is not None else "0",
                *inp.argv,
            ]
            started = time.monotonic()
            progress = lambda: {  # noqa: E731
                "exec_id": inp.exec_id, "elapsed": round(time.monotonic() - started, 1)
            }  # fmt: skip

            async def run() -> ExecResult:
                detached = None
                if journal == _TMP_JOURNAL:
                    try:
                        detached = await _start_detached(box, argv, inp.exec_id, env, stdin)
                    except OSError as exc:
                        raise SandboxLost(inp.sandbox.sandbox_id, str(exc)) from exc
                raw = await detached if detached is not None else None
                if raw is None:
                    raw = await box.exec(
                        argv,
                        cwd=".",
                        env=env,
                        stdin=stdin,
                        timeout=(timeout + 30) if timeout else None,
                        redact=False,
                    )
                return raw

            # One run per exec id on this worker: a later attempt (the follow-up of a call
            # that stopped waiting at ``wait_limit``) waits for the same run.
            key = (inp.sandbox.key, inp.exec_id)
            task = self._inflight.get(key)
            if task is None:
                task = asyncio.ensure_future(run())
                self._inflight[key] = task
                task.add_done_callback(lambda done: self._run_done(key, done))
            try:
                raw = await asyncio.wait_for(
                    _heartbeating(asyncio.shield(task), progress), inp.wait_limit
                )
            except TimeoutError:
                if task.done() or inp.wait_limit is None:
                    raise  # the run's own error, not the wait limit
                # Still running: it goes on (here, or detached), and a call with the same
                # exec id collects it, on this worker or through the journal on another.
                return t.ExecOutput(exit_code=-1, duration=time.monotonic() - started, pending=True)
            except asyncio.CancelledError:
                task.cancel()
                raise
            if raw.exit_code != 0:
                raise SandboxLost(
                    inp.sandbox.sandbox_id,
                    f"exec wrapper exited {raw.exit_code}: {redactor.redact(raw.stderr)[-500:]!r}",
                )
            res = parse_journal_output(raw.stdout, self.inline_limit, t.STDERR_LIMIT)
            truncated = res.stdout_size > len(res.stdout) or res.stderr_size > len(res.stderr)
            stdout = redactor.redact(res.stdout, cut=res.stdout_size > len(res.stdout))
            stderr = redactor.redact(res.stderr, cut=res.stderr_size > len(res.stderr))
            if redactor and (truncated or (stdout, stderr) != (res.stdout, res.stderr)):
                await _scrub_journal(box, f"{journal}/{inp.exec_id}", stdout, stderr, env)
            if inp.output_limit is not None:
                truncated = truncated or max(len(stdout), len(stderr)) > inp.output_limit
                stdout, stderr = stdout[: inp.output_limit], stderr[: inp.output_limit]
            if activity.info().is_local and len(stdout) + len(stderr) > t.LOCAL_RESULT_LIMIT:
                # Too loud for the workflow task: a regular activity collects the record.
                return t.ExecOutput(exit_code=-1, duration=time.monotonic() - started, pending=True)
            output = t.ExecOutput(
                exit_code=res.exit_code,
                stdout_b64=t.b64encode(stdout),
                stderr_b64=t.b64encode(stderr),
                duration=time.monotonic() - started,
                truncated=truncated,
                stdout_size=res.stdout_size,
                stderr_size=res.stderr_size,
                resumed=res.resumed,
                timed_out=res.state == "timeout",
            )
            if res.state == "interrupted":
                raise t.ExecInterrupted(
                    f"command {inp.argv!r} (exec id {inp.exec_id}) was started by an earlier "
                    f"attempt and died without an exit status (its worker or sandbox died); "
                    f"it is not run twice: check the workspace, then run it with a new exec id"
                )
            if output.timed_out:
                result = ExecResult(
                    exit_code=res.exit_code, stdout=stdout, stderr=stderr,
                    duration=output.duration, truncated=output.truncated,
                )  # fmt: skip
                raise ExecTimeout(inp.argv, timeout, result)
            if res.resumed:
                log.info("exec %s: returned the result of an earlier attempt", inp.exec_id)
            return output

        return await self._run(inp.sandbox, work)

    async def _journal_dir(self, ref: t.SandboxRef, box: Sandbox, env: dict[str, str]) -> str:
        """Where exec records live: /tmp when it persists between execs, else the workspace.

        ``env`` is the exec's resolved environment, so the probe reads no secret again.
        """
        cached = self._journals.get(ref.key)
        if cached is not None:
            return cached
        token = activity.info().activity_id + str(time.time_ns())
        probe = f"{_TMP_JOURNAL}/probe"
        first = await box.exec(
            ["/bin/sh", "-c", f'mkdir -p {_TMP_JOURNAL} && printf %s "$1" > {probe}', "-", token],
            cwd=".",
            env=env,
        )
        second = await box.exec(
            ["/bin/sh", "-c", f"cat {probe} 2>/dev/null || true"], cwd=".", env=env
        )
        persistent = first.exit_code == 0 and second.stdout.decode(errors="replace") == token
        journal = _TMP_JOURNAL if persistent else _WORKSPACE_JOURNAL
        log.debug("exec journal of %s is %s", ref.sandbox_id, journal)
        self._journals[ref.key] = journal
        return journal

    # -- files -----------------------------------------------------------------------------

    @activity.defn(name=t.READ_FILE)
    async def read_file(self, inp: t.ReadFileInput) -> t.ReadFileOutput:
        async def work() -> t.ReadFileOutput:
            box = await self._box(inp.sandbox)
            data = await _heartbeating(box.read_file(inp.path))
            limit = min(inp.limit, self.inline_limit)
            if len(data) > limit and not inp.truncate:
                raise t.PayloadTooLarge(f"file {inp.path!r}", len(data), limit)
            return t.ReadFileOutput(data_b64=t.b64encode(data[:limit]), size=len(data))

        return await self._run(inp.sandbox, work)

    @activity.defn(name=t.WRITE_FILE)
    async def write_file(self, inp: t.WriteFileInput) -> None:
        async def work() -> None:
            box = await self._box(inp.sandbox)
            if inp.blob is not None:
                data = await _heartbeating(self._load_blob(inp.blob))
            elif inp.data_b64 is not None:
                data = t.b64decode(inp.data_b64)
            else:
                raise ConfigurationError("write_file needs data or a blob")
            await _heartbeating(box.write_file(inp.path, data, inp.mode))

        await self._run(inp.sandbox, work)

    @activity.defn(name=t.LIST_TREE)
    async def list_tree(self, inp: t.ListTreeInput) -> t.ListTreeOutput:
        async def work() -> t.ListTreeOutput:
            box = await self._box(inp.sandbox)
            entries = [
                e
                for e in await _heartbeating(box.list_tree(inp.path))
                if e.path != PRIVATE_DIR and not e.path.startswith(PRIVATE_DIR + "/")
            ]
            if len(entries) > inp.limit:
                raise t.PayloadTooLarge(
                    f"the tree under {inp.path!r} ({len(entries)} entries)", len(entries), inp.limit
                )
            return t.ListTreeOutput(
                entries=[
                    t.EntryData(e.path, e.type, e.size, e.mode, e.mtime, e.link_target)
                    for e in entries
                ]
            )

        return await self._run(inp.sandbox, work)

    @activity.defn(name=t.REMOVE)
    async def remove(self, inp: t.PathInput) -> None:
        async def work() -> None:
            await (await self._box(inp.sandbox)).remove(inp.path)

        await self._run(inp.sandbox, work)

    @activity.defn(name=t.MKDIR)
    async def mkdir(self, inp: t.PathInput) -> None:
        async def work() -> None:
            await (await self._box(inp.sandbox)).mkdir(inp.path)

        await self._run(inp.sandbox, work)

    # -- bulk data through the snapshot store ----------------------------------------------

    @activity.defn(name=t.STAGE_FILE)
    async def stage_file(self, inp: t.PathInput) -> t.BlobRef:
        """Copy one file of any size from the sandbox into the store; returns its handle."""

        async def work() -> t.BlobRef:
            box = await self._box(inp.sandbox)
            data = await _heartbeating(box.read_file(inp.path))
            return await _heartbeating(self._save_blob(data, inp.path.rsplit("/", 1)[-1]))

        return await self._run(inp.sandbox, work)

    @activity.defn(name=t.STAGE_BYTES)
    async def stage_bytes(self, inp: t.StageBytesInput) -> t.BlobRef:
        """Store bytes a workflow holds (run as a local activity: its input is not recorded)."""

        async def work() -> t.BlobRef:
            return await self._save_blob(t.b64decode(inp.data_b64), inp.name)

        return await self._run(None, work)

    async def _save_blob(self, data: bytes, name: str) -> t.BlobRef:
        return await save_blob(self._store(), data, name)

    async def _load_blob(self, blob: t.BlobRef) -> bytes:
        store = self._store()
        with tempfile.TemporaryDirectory(prefix="sandbank-blob-") as tmp:
            await store.restore(blob.snapshot_id, tmp, if_not_empty="replace")
            data = await asyncio.to_thread(Path(tmp, blob.name).read_bytes)
        if len(data) != blob.size:
            raise SnapshotError(
                f"blob {blob.snapshot_id} holds {len(data)} bytes, expected {blob.size}",
                retryable=False,
            )
        return data

    @activity.defn(name=t.SNAPSHOT)
    async def snapshot(self, inp: t.SnapshotInput) -> t.SnapshotOutput:
        """An incremental snapshot of the workspace (``parent`` is the previous checkpoint)."""

        async def work() -> t.SnapshotOutput:
            store = self._store()
            box = await self._box(inp.sandbox)
            record = await _heartbeating(
                store.snapshot(
                    box,
                    parent=inp.parent,
                    exclude=("/" + PRIVATE_DIR, *box.manifest.exclude),
                    tags=tuple(inp.tags),
                )
            )
            stats = record.stats
            return t.SnapshotOutput(
                snapshot_id=record.id,
                files=getattr(stats, "files", 0),
                logical_bytes=getattr(stats, "logical_bytes", 0),
                new_bytes=getattr(stats, "new_bytes", 0),
                seconds=getattr(stats, "seconds", 0.0),
            )

        return await self._run(inp.sandbox, work)

    @activity.defn(name=t.RESTORE)
    async def restore(self, inp: t.RestoreInput) -> t.RestoreOutput:
        async def work() -> t.RestoreOutput:
            store = self._store()
            box = await self._box(inp.sandbox)
            started = time.monotonic()
            stats = await _heartbeating(
                store.restore(
                    inp.snapshot_id,
                    box,
                    if_not_empty="replace" if inp.replace else "fail",
                    **({"base": inp.base} if inp.base else {}),
                )
            )
            return t.RestoreOutput(
                files=getattr(stats, "files", 0),
                bytes=getattr(stats, "logical_bytes", getattr(stats, "bytes", 0)),
                seconds=time.monotonic() - started,
            )

        return await self._run(inp.sandbox, work)

    @activity.defn(name=t.DIGEST_LISTING)
    async def digest_listing(self, ref: t.SandboxRef) -> t.DigestOutput:
        """A digest of the workspace's listing (paths, types, modes, file sizes, link
        targets), without reading file contents: cheap enough for a migration's cut-over."""

        async def work() -> t.DigestOutput:
            box = await self._box(ref)
            entries = await _heartbeating(box.list_tree("."))
            return _listing_digest(Excluder(box.manifest.exclude).kept(entries))

        return await self._run(ref, work)

    @activity.defn(name=t.SNAPSHOT_DIGEST_LISTING)
    async def snapshot_digest_listing(self, inp: t.SnapshotDigestInput) -> t.DigestOutput:
        """``digest_listing`` of a workspace holding exactly the snapshot, computed from the
        store's tree alone (no sandbox is read)."""

        async def work() -> t.DigestOutput:
            store = self._store()
            return _listing_digest(await _heartbeating(store.listing(inp.snapshot_id)))

        return await self._run(None, work)

    @activity.defn(name=t.FIND_INTACT)
    async def find_intact(self, inp: t.FindIntactInput) -> t.FindIntactOutput:
        """The newest snapshot that verifies (every object it needs re-read and re-hashed),
        starting at ``snapshot_id`` and walking its parents; what is wrong with the others."""

        async def work() -> t.FindIntactOutput:
            store = self._store()
            damaged: list[t.DamagedCheckpoint] = []
            current: str | None = inp.snapshot_id
            while current is not None and len(damaged) < inp.limit:
                try:
                    record = await store.get(current)
                    report = await _heartbeating(store.verify([record.id]))
                except SnapshotError as exc:
                    if exc.retryable:
                        raise
                    damaged.append(t.DamagedCheckpoint(current, f"{type(exc).__name__}: {exc}"))
                    break  # no record to follow
                if report.ok:
                    logical = getattr(record.stats, "logical_bytes", 0)
                    return t.FindIntactOutput(record.id, logical, damaged)
                problems = "; ".join(f"{p.object}: {p.detail}" for p in report.problems[:5])
                if len(report.problems) > 5:
                    problems += f" (+{len(report.problems) - 5} more)"
                damaged.append(t.DamagedCheckpoint(record.id, problems))
                current = record.parent if inp.follow_parents else None
            return t.FindIntactOutput(None, 0, damaged)

        return await self._run(None, work)

    @activity.defn(name=t.DIGEST)
    async def digest(self, ref: t.SandboxRef) -> t.DigestOutput:
        """A content digest of the workspace (paths, types, modes, bytes), for verification."""

        async def work() -> t.DigestOutput:
            box = await self._box(ref)
            return await _heartbeating(_tree_digest(box))

        return await self._run(ref, work)


async def save_blob(store: Any, data: bytes, name: str = "blob") -> t.BlobRef:
    """Stage ``data`` in ``store`` as a one-file snapshot; ``write_file`` takes the ref."""
    name = name or "blob"
    with tempfile.TemporaryDirectory(prefix="sandbank-blob-") as tmp:
        await asyncio.to_thread(Path(tmp, name).write_bytes, data)
        record = await store.snapshot(tmp, tags=("blob",))
    return t.BlobRef(snapshot_id=record.id, name=name, size=len(data))


def _activity_info() -> activity.Info | None:
    try:
        return activity.info()
    except RuntimeError:  # called outside an activity (tests of the body)
        return None


def _next_retry_wait(info: activity.Info) -> float:
    """Seconds Temporal waits before the next attempt under the activity's retry policy."""
    policy = info.retry_policy
    if policy is None:
        return 0.0
    wait = policy.initial_interval.total_seconds() * policy.backoff_coefficient ** (
        info.attempt - 1
    )
    if policy.maximum_interval is not None:
        wait = min(wait, policy.maximum_interval.total_seconds())
    return wait


def _listing_digest(entries: list[Any]) -> t.DigestOutput:
    rows = sorted(
        (e.path, f"{e.type}:{e.mode & 0o7777:o}:{e.size if e.type == 'file' else 0}:"
                 f"{e.link_target or ''}")
        for e in entries
        if e.path != PRIVATE_DIR and not e.path.startswith(PRIVATE_DIR + "/")
    )  # fmt: skip
    top = hashlib.sha256()
    for name, row in rows:
        top.update(f"{name}\0{row}\n".encode("utf-8", "surrogateescape"))  # non-UTF-8 names
    files = [e for e in entries if e.type == "file"]
    return t.DigestOutput(
        digest=top.hexdigest(), files=len(files), bytes=sum(e.size for e in files)
    )


async def _scrub_journal(
    box: Sandbox, record: str, stdout: bytes, stderr: bytes, env: dict[str, str]
) -> None:
    """Replace the output an exec record keeps with its redacted form (what a retry gets
    anyway), so a secret the command printed does not stay in the sandbox's files."""
    for name, data in (("out", stdout), ("err", stderr)):
        script = 'cat > "$1.tmp" && mv "$1.tmp" "$1"'
        done = await box.exec(
            ["/bin/sh", "-c", script, "-", f"{record}/{name}"], cwd=".", env=env, stdin=data
        )
        if not done.ok:
            log.warning("could not redact the exec record %s/%s: %s", record, name, done.stderr)


async def _start_detached(
    box: Sandbox, argv: list[str], exec_id: str, env: dict[str, str], stdin: bytes | None
) -> Awaitable[ExecResult | None] | None:
    """Start the journal's first run outside this process, for the local provider.

    ``env`` is the command's whole environment (``exec_environment``: secrets resolved).
    Local commands die with the process that runs bubblewrap; a small supervisor in its own
    session runs it instead, so the command survives this worker and a retry collects it.
    Returns an awaitable of the wrapper's output (``None`` when the supervisor printed no
    result: then the caller collects it through the journal), or ``None`` when nothing was
    started here: another provider (docker keeps exec processes alive by itself), or a
    record that an earlier attempt already started.
    """
    from sandbank.providers.base import ExecRequest
    from sandbank.providers.local import LocalSandbox

    if not isinstance(box, LocalSandbox):
        return None
    if not await asyncio.to_thread(os.path.isdir, box.host_path):
        raise SandboxLost(box.id, f"its workspace {box.host_path} is gone")
    request = ExecRequest(argv=argv, cwd=".", env=env, stdin=None, timeout=None)
    cmd, cwd, proc_env = box.host_command(request)
    record = os.path.join(box.tmp_dir, ".sandbank", "exec", exec_id)
    if await asyncio.to_thread(os.path.exists, record):
        return None
    # The wrapper's framed result goes to an unlinked file, not a pipe: if this worker dies
    # or stops waiting, nothing in the sandbox blocks on a reader that is gone.
    out_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by collect()
    try:
        with tempfile.TemporaryFile() as stdin_file:
            stdin_file.write(stdin or b"")
            stdin_file.seek(0)
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", '"$@"; :', "sandbank-supervisor", *cmd,
                stdin=stdin_file, stdout=out_file,
                stderr=asyncio.subprocess.DEVNULL, cwd=cwd, env=proc_env, start_new_session=True,
            )  # fmt: skip
    except BaseException:
        out_file.close()
        raise
    reaper = asyncio.ensure_future(proc.wait())
    _SUPERVISORS.add(reaper)
    reaper.add_done_callback(_SUPERVISORS.discard)

    async def collect() -> ExecResult | None:
        try:
            await asyncio.shield(reaper)
            out_file.seek(0)
            data = await asyncio.to_thread(out_file.read)
        finally:
            out_file.close()
        if not data.startswith(b"sandbank-exec "):
            return None
        return ExecResult(exit_code=0, stdout=data)

    return collect()


_SUPERVISORS: set[asyncio.Future[int]] = set()


async def _tree_digest(box: Sandbox) -> t.DigestOutput:
    """Paths, types, modes and bytes of the workspace, without what checkpoints exclude."""
    loop = asyncio.get_running_loop()
    reader = SyncReader(box.export_tar().__aiter__(), loop)
    excluder = Excluder(box.manifest.exclude)
    skipped: list[str] = []

    def hash_tar() -> t.DigestOutput:
        rows: list[tuple[str, str]] = []
        total = 0
        with tarfile.open(fileobj=reader, mode="r|*") as archive:
            for member in archive:
                name = member.name.lstrip("./") or "."
                if name == PRIVATE_DIR or name.startswith(PRIVATE_DIR + "/") or name == ".":
                    continue
                if excluder and (
                    any(name.startswith(d + "/") for d in skipped)
                    or excluder.excluded(os.fsencode(name.rstrip("/")), member.isdir())
                ):
                    if member.isdir():
                        skipped.append(name.rstrip("/"))
                    continue
                h = hashlib.sha256()
                if member.isfile():
                    kind = "f"
                    stream = archive.extractfile(member)
                    assert stream is not None
                    while chunk := stream.read(1 << 20):
                        h.update(chunk)
                    total += member.size
                elif member.isdir():
                    kind = "d"
                elif member.issym():
                    kind = "l"
                    h.update(member.linkname.encode("utf-8", "surrogateescape"))
                else:
                    kind = "o"
                rows.append((name.rstrip("/"), f"{kind}:{member.mode & 0o7777:o}:{h.hexdigest()}"))
        rows.sort()
        top = hashlib.sha256()
        for name, row in rows:
            top.update(f"{name}\0{row}\n".encode("utf-8", "surrogateescape"))
        return t.DigestOutput(
            digest=top.hexdigest(), files=sum(r[1][0] == "f" for r in rows), bytes=total
        )

    return await asyncio.to_thread(hash_tar)
