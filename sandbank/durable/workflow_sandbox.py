"""The sandbox as workflow code sees it: the ``Sandbox`` interface, run as activities.

``WorkflowSandbox`` mirrors ``sandbank.Sandbox`` (exec, files, tree, status, pause, ...),
so code written against a sandbox runs unchanged in a workflow. Every call is an activity
with a heartbeat timeout; failures come back as the sandbank error they started as.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as TemporalTimeout

with workflow.unsafe.imports_passed_through():
    from sandbank import errors as _errors
    from sandbank.durable import types as t
    from sandbank.durable.failures import exec_result, from_failure
    from sandbank.providers.base import (
        ExecResult,
        FileEntry,
        OutputCallback,
        SandboxStatus,
        normalize_path,
    )

__all__ = ["ActivityOptions", "WorkflowSandbox", "command_size", "find_intact", "from_failure"]

R = TypeVar("R")
_LOCAL_EXEC_PATCH = "sandbank-local-exec"
_PINNED_PATCH = "sandbank-pinned-sandboxes"
_ARGV_LIMIT_PATCH = "sandbank-argv-size-checked"


def command_size(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Bytes of a command line and its environment, as they travel in an exec call."""
    words = [*argv, *(f"{k}={v}" for k, v in (env or {}).items())]
    return sum(len(w.encode("utf-8", "surrogatepass")) + 1 for w in words)


@dataclass
class ActivityOptions:
    """Timeouts and retries of sandbox activities, as the workflow schedules them."""

    start_to_close: timedelta = timedelta(minutes=10)
    heartbeat: timedelta = timedelta(seconds=10)
    exec_default_timeout: timedelta = timedelta(hours=1)
    maximum_attempts: int = 10
    local_exec_wait: timedelta | None = timedelta(seconds=2)
    """How long an exec first waits as a local activity (no server round trip: the fast
    path for short commands). A command still running then is collected by a regular,
    heartbeating activity with the same exec id. None (or a ``task_queue``) skips it.
    A local activity runs on the workflow's worker: when that is not the sandbox's worker it
    starts nothing and says so, and the regular activity goes to the sandbox's queue."""
    worker_timeout: timedelta | None = timedelta(seconds=30)
    """How long a call for a sandbox pinned to its worker's queue waits for a worker to pick
    it up (schedule-to-start). Past it the sandbox counts as lost with its worker
    (``SandboxUnreachable``); a session then rebuilds it from its last checkpoint."""
    non_retryable: list[str] = field(default_factory=lambda: list(t.NON_RETRYABLE_ERROR_TYPES))
    task_queue: str | None = None
    """The shared queue for ``create`` and for sandboxes not pinned to a worker (None: the
    workflow's own). Calls for a pinned sandbox go to its worker's queue."""

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(milliseconds=500),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=10),
            maximum_attempts=self.maximum_attempts,
            non_retryable_error_types=self.non_retryable,
        )


class WorkflowSandbox:
    """A handle on a sandbox for workflow code; create one with ``create`` or from a ref."""

    def __init__(
        self,
        ref: t.SandboxRef,
        *,
        capabilities: Sequence[str] = (),
        options: ActivityOptions | None = None,
        workdir: str = ".",
    ) -> None:
        self.ref = ref
        self.capabilities = list(capabilities)
        self.options = options or ActivityOptions()
        self.workdir = workdir
        self._closed = False

    def __repr__(self) -> str:
        return f"<WorkflowSandbox {self.ref.provider}:{self.ref.sandbox_id}>"

    @property
    def id(self) -> str:
        return self.ref.sandbox_id

    @property
    def closed(self) -> bool:
        return self._closed

    @classmethod
    async def create(
        cls,
        provider: str,
        manifest_json: str | None = None,
        *,
        options: ActivityOptions | None = None,
    ) -> WorkflowSandbox:
        """Create a sandbox on the worker's ``provider`` (the manifest as JSON).

        Any worker on the shared queue creates it; the ref names that worker's own queue,
        where every later call for this sandbox goes. The manifest's contents and setup are
        applied there (setup may run long: the activity heartbeats, so a lost worker is
        still noticed in seconds)."""
        opts = options or ActivityOptions()
        out: t.CreateOutput = await _call(
            opts, t.CREATE, t.CreateInput(provider, manifest_json), t.CreateOutput,
            start_to_close=timedelta(hours=2),
        )  # fmt: skip
        ref = out.sandbox
        if ref.task_queue is not None and not workflow.patched(_PINNED_PATCH):
            ref = replace(ref, task_queue=None)  # a run from before pinning replays unpinned
        return cls(ref, capabilities=out.capabilities, options=opts)

    async def _call(self, name: str, arg: Any, result_type: type[R] | None, **kw: Any) -> R:
        if self._closed:
            raise _errors.SandboxClosed(self.id)
        return await _call(self.options, name, arg, result_type, ref=self.ref, **kw)

    # -- commands ---------------------------------------------------------------------------

    async def exec(
        self,
        cmd: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | str | None = None,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        exec_id: str | None = None,
        output_limit: int | None = None,
    ) -> ExecResult:
        """Run a command; a retried activity returns the first run's result, never reruns.

        ``on_output`` receives the whole output once the command ends (workflows cannot
        stream). Output beyond the inline limit (or ``output_limit`` bytes of each stream)
        is cut and marks the result ``truncated``.
        """
        if isinstance(cmd, str):
            if not cmd.strip():
                raise _errors.ConfigurationError("command is empty")
            argv = ["/bin/sh", "-c", cmd]
        else:
            argv = list(cmd)
            if not argv or not all(isinstance(a, str) for a in argv):
                raise _errors.ConfigurationError("argv must be a non-empty list of strings")
        data = stdin.encode() if isinstance(stdin, str) else stdin
        if data is not None and len(data) > t.INLINE_LIMIT:
            raise t.PayloadTooLarge(
                "stdin", len(data),
                hint="write it to a file first (write_file moves big content through the "
                "snapshot store) and redirect the command's input from it",
            )  # fmt: skip
        size = command_size(argv, env)
        if size > t.INLINE_LIMIT and workflow.patched(_ARGV_LIMIT_PATCH):
            raise t.PayloadTooLarge("the command line and environment", size, hint=t.ARGV_HINT)
        if timeout is not None and timeout <= 0:
            raise _errors.ConfigurationError(f"timeout must be positive, got {timeout!r}")
        limit = timedelta(seconds=timeout) if timeout else self.options.exec_default_timeout
        inp = t.ExecInput(
            sandbox=self.ref,
            exec_id=exec_id or str(workflow.uuid4()),
            argv=argv,
            cwd=normalize_path(cwd) if cwd is not None else None,
            env=env,
            stdin_b64=t.b64encode(data) if data is not None else None,
            timeout=timeout,
            output_limit=output_limit,
        )
        out: t.ExecOutput | None = None
        fast = self.options.local_exec_wait
        if fast and self.options.task_queue is None and workflow.patched(_LOCAL_EXEC_PATCH):
            out = await self._call(
                t.EXEC, replace(inp, wait_limit=fast.total_seconds()), t.ExecOutput,
                start_to_close=fast + timedelta(seconds=30), local=True,
            )  # fmt: skip
            if out.pending:
                out = None
        if out is None:
            # Long commands, and a sandbox whose worker is not the workflow's.
            out = await self._call(
                t.EXEC, inp, t.ExecOutput, start_to_close=limit + timedelta(minutes=1)
            )
        result = exec_result(out)
        if on_output is not None:
            for stream, chunk in (("stdout", result.stdout), ("stderr", result.stderr)):
                if chunk:
                    outcome = on_output(stream, chunk)  # type: ignore[arg-type]
                    if outcome is not None:
                        await outcome
        return result

    # -- files ------------------------------------------------------------------------------

    async def read_file(self, path: str) -> bytes:
        """The file's bytes, up to the inline limit (``PayloadTooLarge`` above it)."""
        out: t.ReadFileOutput = await self._call(
            t.READ_FILE, t.ReadFileInput(self.ref, normalize_path(path)), t.ReadFileOutput
        )
        return t.b64decode(out.data_b64)

    async def read_head(self, path: str, limit: int) -> tuple[bytes, int]:
        """The file's first ``limit`` bytes (at most the inline limit) and its full size."""
        inp = t.ReadFileInput(self.ref, normalize_path(path), limit, truncate=True)
        out: t.ReadFileOutput = await self._call(t.READ_FILE, inp, t.ReadFileOutput)
        return t.b64decode(out.data_b64), out.size

    async def write_file(
        self, path: str, data: bytes | str | t.BlobRef, mode: int | None = None
    ) -> None:
        """Write a file. Data over the inline limit goes through the snapshot store."""
        rel = normalize_path(path)
        if isinstance(data, t.BlobRef):
            blob: t.BlobRef | None = data
            inline = None
        else:
            raw = data.encode() if isinstance(data, str) else bytes(data)
            if len(raw) > t.INLINE_LIMIT:
                blob, inline = await self.stage_bytes(raw, rel.rsplit("/", 1)[-1]), None
            else:
                blob, inline = None, t.b64encode(raw)
        await self._call(t.WRITE_FILE, t.WriteFileInput(self.ref, rel, inline, blob, mode), None)

    async def stage_file(self, path: str) -> t.BlobRef:
        """Put a file of any size into the snapshot store; pass the ref to ``write_file``."""
        return await self._call(
            t.STAGE_FILE, t.PathInput(self.ref, normalize_path(path)), t.BlobRef
        )

    async def stage_bytes(self, data: bytes, name: str = "blob") -> t.BlobRef:
        """Store bytes the workflow holds, through a local activity (kept out of history)."""
        result: t.BlobRef = await workflow.execute_local_activity(
            t.STAGE_BYTES,
            t.StageBytesInput(t.b64encode(data), name),
            result_type=t.BlobRef,
            start_to_close_timeout=self.options.start_to_close,
            retry_policy=self.options.retry_policy(),
        )
        return result

    async def list_tree(self, path: str = ".") -> list[FileEntry]:
        out: t.ListTreeOutput = await self._call(
            t.LIST_TREE, t.ListTreeInput(self.ref, normalize_path(path)), t.ListTreeOutput
        )
        kinds: dict[str, Literal["file", "dir", "symlink", "other"]] = {
            "file": "file", "dir": "dir", "symlink": "symlink"
        }  # fmt: skip
        return [
            FileEntry(e.path, kinds.get(e.type, "other"), e.size, e.mode, e.mtime, e.link_target)
            for e in out.entries
        ]

    async def remove(self, path: str) -> None:
        await self._call(t.REMOVE, t.PathInput(self.ref, normalize_path(path)), None)

    async def mkdir(self, path: str) -> None:
        rel = normalize_path(path)
        if rel != ".":
            await self._call(t.MKDIR, t.PathInput(self.ref, rel), None)

    # -- lifecycle and snapshots ------------------------------------------------------------

    async def status(self) -> SandboxStatus | Literal["missing"]:
        out: t.StatusOutput = await self._call(t.STATUS, self.ref, t.StatusOutput)
        return "missing" if out.status == "missing" else SandboxStatus(out.status)

    async def pause(self) -> None:
        await self._call(t.PAUSE, self.ref, None)

    async def stop(self) -> None:
        await self._call(t.STOP, self.ref, None)

    async def resume(self) -> None:
        await self._call(t.RESUME, self.ref, None)

    async def snapshot(
        self, parent: str | None = None, tags: Sequence[str] = ()
    ) -> t.SnapshotOutput:
        return await self._call(
            t.SNAPSHOT, t.SnapshotInput(self.ref, parent, list(tags)), t.SnapshotOutput,
            start_to_close=timedelta(hours=2),
        )  # fmt: skip

    async def restore(
        self, snapshot_id: str, *, replace: bool = True, base: str | None = None
    ) -> t.RestoreOutput:
        """Restore a snapshot; ``base`` asserts the sandbox holds exactly that snapshot now,
        so only the delta between the two moves (a wrong assertion is not detected here:
        verify with ``digest`` afterwards)."""
        return await self._call(
            t.RESTORE, t.RestoreInput(self.ref, snapshot_id, replace, base), t.RestoreOutput,
            start_to_close=timedelta(hours=2),
        )  # fmt: skip

    async def snapshot_listing_digest(self, snapshot_id: str) -> t.DigestOutput:
        """``digest(contents=False)`` of a workspace holding exactly ``snapshot_id``, computed
        from the store (on this sandbox's worker) without reading any workspace."""
        return await self._call(
            t.SNAPSHOT_DIGEST_LISTING, t.SnapshotDigestInput(snapshot_id), t.DigestOutput
        )

    async def digest(self, *, contents: bool = True) -> t.DigestOutput:
        """A digest of the workspace; ``contents=False`` hashes only its listing (fast)."""
        name = t.DIGEST if contents else t.DIGEST_LISTING
        return await self._call(name, self.ref, t.DigestOutput)

    async def aclose(self) -> None:
        """Forget this handle (the sandbox keeps running)."""
        self._closed = True

    async def destroy(self) -> None:
        """Delete the sandbox; idempotent."""
        if not self._closed:
            await _call(self.options, t.DESTROY, self.ref, None, ref=self.ref)
            self._closed = True

    async def __aenter__(self) -> WorkflowSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def find_intact(
    snapshot_id: str, *, follow_parents: bool = True, options: ActivityOptions | None = None
) -> t.FindIntactOutput:
    """The newest snapshot that verifies in the workers' store, from ``snapshot_id`` back
    along its parents (or only ``snapshot_id``), and what is wrong with the others."""
    return await _call(
        options or ActivityOptions(), t.FIND_INTACT,
        t.FindIntactInput(snapshot_id, follow_parents), t.FindIntactOutput,
        start_to_close=timedelta(hours=2),
    )  # fmt: skip


async def _call(
    opts: ActivityOptions,
    name: str,
    arg: Any,
    result_type: type[R] | None,
    *,
    ref: t.SandboxRef | None = None,
    start_to_close: timedelta | None = None,
    local: bool = False,
) -> R:
    pinned = ref.task_queue if ref is not None else None
    try:
        if local:
            return await workflow.execute_local_activity(
                name,
                arg,
                result_type=result_type,
                start_to_close_timeout=start_to_close or opts.start_to_close,
                retry_policy=opts.retry_policy(),
            )
        result: R = await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            task_queue=pinned or opts.task_queue,
            schedule_to_start_timeout=opts.worker_timeout if pinned else None,
            start_to_close_timeout=start_to_close or opts.start_to_close,
            heartbeat_timeout=opts.heartbeat,
            retry_policy=opts.retry_policy(),
        )
    except (ActivityError, ApplicationError) as err:  # a local activity's can be either
        cause = err.cause if isinstance(err, ActivityError) else None
        if (
            ref is not None
            and pinned
            and isinstance(cause, TemporalTimeout)
            and cause.type == TimeoutType.SCHEDULE_TO_START
        ):
            waited = opts.worker_timeout.total_seconds() if opts.worker_timeout else 0
            raise t.SandboxUnreachable(
                ref.sandbox_id,
                f"no worker on its task queue {pinned!r} picked up {name} within {waited:g}s "
                f"(the worker that holds it is gone)",
            ) from err
        mapped = from_failure(err)
        if mapped is err:
            raise
        raise mapped from err
    return result
