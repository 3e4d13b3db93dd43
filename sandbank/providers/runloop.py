"""Runloop devboxes through the official SDK (``runloop-api-client``, ``AsyncRunloop``).

A command runs through ``execute_sync`` as a small POSIX sh script that sends its stdout and
stderr to files in the devbox's ``/tmp``; those come back byte for byte through
``download_file`` (the SDK's own ``stdout``/``stderr`` are decoded text and may be
truncated). Stdin and file contents go up through ``upload_file``. File primitives are such
scripts too, because only a shell in the devbox can see where a symlink leads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import shlex
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    NotSupported,
    PathNotFound,
    ProviderError,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SandboxNotFound,
    WorkspacePathError,
)
from sandbank.manifest import Image, Manifest
from sandbank.providers._remote import (
    EXPORT_TAR_SCRIPT,
    IMPORT_TAR_SCRIPT,
    ShellFileOps,
    check_tar_parents,
    cwd_error,
    parse_resolved,
    resolve_argv,
    retryable_status,
    shell_join,
    spool_checked_tar,
)
from sandbank.providers.base import (
    Capabilities,
    ExecRequest,
    ExecResult,
    OutputCollector,
    Provider,
    Sandbox,
    SandboxInfo,
    SandboxStatus,
)
from sandbank.providers.process import sandbox_env

__all__ = ["RunloopProvider", "RunloopSandbox", "map_runloop_error"]

WORKSPACE = "/home/user/workspace"
"""The workspace root in a devbox: a directory of its own under the default user's home."""
LABEL = "sandbank"
"""The metadata key (value ``"1"``) that marks the devboxes sandbank made."""
ISOLATION = "Runloop devbox (a micro-VM on Runloop's infrastructure)"
CREDENTIALS_HINT = (
    "set RUNLOOP_API_KEY (and RUNLOOP_BASE_URL for an emulated Runloop), or pass "
    "api_key= / base_url= to RunloopProvider"
)
OFFLINE_POLICY = "sandbank-offline"
"""The network policy (no egress at all) of the devboxes whose manifest has no network."""
_CHUNK = 1024 * 1024
_NO_LIMIT = 24 * 3600.0
"""How long to wait for a command without a timeout of its own."""

# -- the one exception boundary -------------------------------------------------------------

# Every exception class the SDK exports, by name, to (the sandbank error kind, retryable);
# looked up along the MRO, so a subclass the SDK adds later falls back to its parent's entry.
# An APIStatusError's retryability comes from its status (``retryable_status``).
_ERROR_KINDS: dict[str, tuple[str, bool]] = {
    "RunloopError": ("error", False),
    "APIError": ("error", False),
    "APIResponseValidationError": ("error", False),
    "APIStatusError": ("error", False),
    "APIConnectionError": ("unavailable", True),
    "APITimeoutError": ("unavailable", True),
    "BadRequestError": ("bad", False),
    "AuthenticationError": ("auth", False),
    "PermissionDeniedError": ("auth", False),
    "NotFoundError": ("missing", False),
    "ConflictError": ("error", True),  # a state change still in progress
    "UnprocessableEntityError": ("bad", False),
    "RateLimitError": ("error", True),
    "InternalServerError": ("error", True),
    "PollingTimeout": ("error", True),
}


def map_runloop_error(
    exc: BaseException, sandbox_id: str | None = None, *, open_handle: bool = False
) -> SandbankError:
    """The sandbank error for an exception out of the SDK (or its transport).

    ``sandbox_id`` names the devbox the call was about; with ``open_handle`` a devbox that
    no longer exists is ``SandboxLost``, otherwise ``SandboxNotFound``.
    """
    if isinstance(exc, SandbankError):
        return exc
    status = getattr(exc, "status_code", None)
    kind, retryable = "error", False
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("runloop_api_client") and cls.__name__ in _ERROR_KINDS:
            kind, retryable = _ERROR_KINDS[cls.__name__]
            break
    else:
        if isinstance(exc, OSError | asyncio.TimeoutError) or type(exc).__module__.startswith(
            ("httpx", "httpcore")
        ):
            kind, retryable = "unavailable", True
    if isinstance(status, int):
        retryable = retryable or retryable_status(status)
    detail = f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}: {exc}"
    if kind == "auth":
        return ConfigurationError(f"Runloop refused the credentials ({detail}); {CREDENTIALS_HINT}")
    if kind == "bad":
        return ConfigurationError(
            f"Runloop refused the request ({detail}); fix the call, do not retry"
        )
    if kind == "missing" and sandbox_id is not None:
        if open_handle:
            return SandboxLost(sandbox_id, f"Runloop no longer knows it ({detail})")
        return SandboxNotFound(RunloopProvider.name, sandbox_id)
    if kind == "unavailable":
        return ProviderUnavailable(
            f"cannot reach Runloop ({detail}); check RUNLOOP_BASE_URL and the network, then retry"
        )
    advice = "retry later" if retryable else "see the message; retrying will not help"
    return ProviderError(f"Runloop call failed ({detail}); {advice}", retryable=retryable)


@contextlib.contextmanager
def _boundary(sandbox_id: str | None = None, *, open_handle: bool = False) -> Iterator[None]:
    try:
        yield
    except SandbankError:
        raise
    except Exception as exc:
        raise map_runloop_error(exc, sandbox_id, open_handle=open_handle) from exc


def _sdk() -> Any:
    """The ``runloop_api_client`` module, imported on first use."""
    try:
        import runloop_api_client
    except ImportError as exc:
        raise ProviderUnavailable(
            f"the runloop provider needs the Runloop SDK: pip install 'sandbank[runloop]' ({exc})"
        ) from exc
    return runloop_api_client


# -- the shell script around every command ---------------------------------------------------

_PRELUDE = """\
T={tmp} L={inline}
mkdir -p -- "$T" {workspace} && W=$(cd -P -- {workspace} && pwd) || exit 90
fail() {{ printf '%s' "$1" > "$T/status"; exit 0; }}
inside() {{ r=$(realpath -m -- "$1") || return 1
  case "$r/" in "$W"/*) return 0;; esac; return 1; }}
[ -e "$T.in" ] && mv -f -- "$T.in" "$T/in"
(
{body}
) < "$( [ -e "$T/in" ] && echo "$T/in" || echo /dev/null)" > "$T/out" 2> "$T/err"
rc=$?
if [ "$L" -gt 0 ] && command -v base64 >/dev/null; then
  set -- $(stat -c %s -- "$T/out" "$T/err")
  if [ $(($1 + $2)) -le "$L" ]; then
    st=; [ -e "$T/status" ] && st=$(base64 -w0 < "$T/status")
    printf 'sandbank-inline:%s:%s:%s:' "$(base64 -w0 < "$T/out")" "$(base64 -w0 < "$T/err")" \
      "$st"
    rm -rf -- "$T"
  fi
fi
exit $rc
"""
# Up to this many bytes of output come back base64-encoded in the execute response itself (one
# round trip, the files removed by the script); more stay in files for download_file. A guess
# kept well under the size at which Runloop truncates a command's stdout (not documented).
_INLINE = 32 * 1024
_INLINED = re.compile(r"sandbank-inline:([A-Za-z0-9+/=]*):([A-Za-z0-9+/=]*):([A-Za-z0-9+/=]*):")


def _q(text: str) -> str:
    return shlex.quote(text)


class RunloopSandbox(ShellFileOps, Sandbox):
    """A Runloop devbox, by id, through the provider's ``AsyncRunloop`` client."""

    provider: RunloopProvider

    def __init__(self, provider: RunloopProvider, view: Any, manifest: Manifest) -> None:
        super().__init__(provider, view.id, manifest, workspace=provider.workspace)
        self.view = view
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def _devboxes(self) -> Any:
        return self.provider.client().devboxes

    def _abs(self, path: str) -> str:
        return self.workspace if path == "." else f"{self.workspace}/{path}"

    async def _sh(self, command: str, timeout: float | None = None) -> Any:
        """Run a shell string with ``execute`` (which waits up to 25 s), then the long poll
        until it completes; ``timeout`` only bounds the wait, the script kills in time."""
        from runloop_api_client.lib.polling import PollingConfig

        devboxes = self._devboxes
        view = await devboxes.execute(self.id, command=command, optimistic_timeout=25)
        if view.status != "completed":
            limit = (timeout or _NO_LIMIT) + 60
            view = await devboxes.executions.await_completed(
                view.execution_id,
                devbox_id=self.id,
                polling_config=PollingConfig(max_attempts=int(limit), timeout_seconds=limit),
            )
        return view

    async def _run(
        self,
        body: str,
        *,
        stdin: bytes | IO[bytes] | None = None,
        timeout: float | None = None,
        keep: bool = False,
    ) -> tuple[int, bytes, bytes, str | None, str]:
        """Run ``body`` (sh, its streams redirected to files) in the devbox; its exit code,
        stdout, stderr, failure status and temporary directory (removed unless ``keep``)."""
        tmp = f"/tmp/sandbank-{secrets.token_hex(8)}"
        inline = 0 if keep else _INLINE
        script = _PRELUDE.format(
            workspace=_q(self.workspace), tmp=_q(tmp), inline=inline, body=body
        )
        devboxes = self._devboxes
        with _boundary(self.id, open_handle=True):
            if stdin is not None:
                data = stdin if isinstance(stdin, bytes) else await asyncio.to_thread(stdin.read)
                await devboxes.upload_file(self.id, path=f"{tmp}.in", file=data)
            view = await self._sh(f"sh -c {_q(script)}", timeout)
            code = -1 if view.exit_status is None else int(view.exit_status)
            found = None if view.stdout_truncated else _INLINED.search(view.stdout or "")
            if found is not None:
                said_out, said_err, said = (base64.b64decode(p) for p in found.groups())
                return code, said_out, said_err, said.decode() or None, tmp
            names = ("out", "err", "status")
            fetched = await asyncio.gather(*(self._download(tmp, n) for n in names))
            got: dict[str, bytes | None] = dict(zip(names, fetched, strict=True))
            if not keep:
                task = asyncio.create_task(self._cleanup(tmp))
                self._cleanups.add(task)
                task.add_done_callback(self._cleanups.discard)
        out = got["out"]
        if out is None:
            raise ProviderError(
                f"the command wrapper did not run in Runloop devbox {self.id!r} "
                f"(exit {view.exit_status}: {(view.stderr or '').strip()[:200]}); check that the "
                "devbox's image has sh and coreutils",
                retryable=True,
            )
        status = (got["status"] or b"").decode() or None
        return code, out, got["err"] or b"", status, tmp

    async def _download(self, tmp: str, name: str) -> bytes | None:
        """A file the wrapper wrote, or ``None`` if it did not write it."""
        try:
            response = await self._devboxes.download_file(self.id, path=f"{tmp}/{name}")
        except _sdk().NotFoundError:
            return None
        return bytes(await response.read())

    async def _cleanup(self, tmp: str) -> None:
        with contextlib.suppress(Exception):
            await self._sh(f"rm -rf -- {_q(tmp)}")

    async def _script(
        self, body: str, path: str, *, stdin: bytes | IO[bytes] | None = None
    ) -> bytes:
        """Run a file-primitive script about ``path``; its stdout, or the mapped failure."""
        code, out, err, status, _ = await self._run(body, stdin=stdin)
        if status == "missing":
            raise PathNotFound(path, self.id)
        if status == "escape":
            raise WorkspacePathError(path)
        if status == "isdir":
            raise ConfigurationError(f"{path!r} is a directory; give the path of a file")
        if status == "notdir":
            raise ConfigurationError(
                f"{path!r} is not a directory (a file is in the way); give a directory path"
            )
        if status is not None or code != 0:
            raise ProviderError(
                f"a file operation on {path!r} failed in Runloop devbox {self.id!r} "
                f"(exit {code}, {status}): {err.decode(errors='replace').strip()}"
            )
        return out

    # -- commands --------------------------------------------------------------------------

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        env = sandbox_env(request.env, home=self.workspace)
        argv = list(request.argv)
        if request.timeout is not None:
            # The SDK's exec has no timeout of its own that kills the process: GNU timeout
            # puts the command in its own process group and kills that group.
            argv = ["timeout", "-s", "KILL", f"{request.timeout:.3f}", *argv]
        body = shell_join(argv, self._abs(request.cwd), env, workspace=self.workspace)
        started = asyncio.get_running_loop().time()
        code, out, err, _, _ = await self._run(body, stdin=request.stdin, timeout=request.timeout)
        refused = cwd_error(code, err, request.cwd)
        if refused is not None:
            raise refused
        for start in range(0, max(len(out), len(err)), _CHUNK):
            await output.feed("stdout", out[start : start + _CHUNK])
            await output.feed("stderr", err[start : start + _CHUNK])
        elapsed = asyncio.get_running_loop().time() - started
        if request.timeout is not None and code in (124, 137) and elapsed >= request.timeout:
            raise ExecTimeout(request.argv, request.timeout, output.result(137))
        return output.result(code)

    # -- files -----------------------------------------------------------------------------

    async def _read_file(self, path: str) -> bytes:
        body = (
            f'P="$W"/{_q(path)}\n'
            'inside "$P" || fail escape\n'
            '[ -e "$P" ] || fail missing\n'
            '[ -d "$P" ] && fail isdir\n'
            'cat -- "$P"'
        )
        return await self._script(body, path)

    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        chosen = f"{mode:o}" if mode is not None else ""
        body = (
            f'P="$W"/{_q(path)} M={_q(chosen)}\n'
            'inside "$P" || fail escape\n'
            'R=$(realpath -m -- "$P")\n'
            '[ -d "$R" ] && fail isdir\n'
            'D=$(dirname -- "$R")\n'
            'mkdir -p -- "$D" 2>/dev/null || fail notdir\n'
            '[ -z "$M" ] && { M=$(stat -c %a -- "$R" 2>/dev/null) || M=644; }\n'
            'N="$D/.sandbank-write-$$"\n'
            'cat > "$N" && chmod "$M" "$N" && mv -f -- "$N" "$R" || { rm -f -- "$N"; exit 1; }'
        )
        await self._script(body, path, stdin=data)

    # -- tar -------------------------------------------------------------------------------

    async def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        names = [] if paths is None or "." in paths else paths
        if names:
            for target in await self._resolve(*(("n", p) for p in names)):
                target.check(allow_missing=False)
        script = shlex.join(["/bin/sh", "-c", EXPORT_TAR_SCRIPT, "sh"])
        code, _, err, _, tmp = await self._run(
            f'{script} "$W" "$T/tar" {shlex.join(names)}', keep=True
        )
        try:
            if code != 0:
                raise ProviderError(
                    f"tar in Runloop devbox {self.id!r} failed (exit {code}): "
                    f"{err.decode(errors='replace').strip()}"
                )
            with _boundary(self.id, open_handle=True):
                response = await self._devboxes.download_file(self.id, path=f"{tmp}/tar")
                async for chunk in response.iter_bytes(_CHUNK):
                    yield chunk
        finally:
            await self._cleanup(tmp)

    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        from sandbank._streams import SyncReader

        reader = SyncReader(stream, asyncio.get_running_loop())
        spool, unchecked = await asyncio.to_thread(spool_checked_tar, reader)  # type: ignore[arg-type]
        with spool:
            check_tar_parents(await self._resolve(*(("f", p) for p in sorted(unchecked))))
            script = shlex.join(["/bin/sh", "-c", IMPORT_TAR_SCRIPT, "sh"])
            await self._script(f'{script} "$W" "$T/in"', ".", stdin=spool)

    async def _resolve(self, *paths: tuple[Any, str]) -> list[Any]:
        """Where each workspace path leads in the devbox (``Resolved``), in one command."""
        if not paths:
            return []
        out = await self._script(shlex.join(resolve_argv(self.workspace, paths)), ".")
        return parse_resolved([rel for _, rel in paths], out)

    # -- lifecycle -------------------------------------------------------------------------

    async def _close(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    async def _status(self) -> SandboxStatus:
        try:
            with _boundary(self.id):
                self.view = await self._devboxes.retrieve(self.id)
        except SandboxNotFound:
            return SandboxStatus.LOST
        return _status(self.view.status)

    async def snapshot(self, name: str | None = None) -> str:
        """Runloop's disk snapshot of this devbox (the ``native_snapshot`` capability): an
        image hint, ``snapshot:<id>``; a manifest naming it for runloop
        (``{"image": {"hints": {"runloop": hint}}}``) creates a devbox from it. Snapshots
        outlive the devbox."""
        with _boundary(self.id, open_handle=True):
            view = await self._devboxes.snapshot_disk(
                self.id, name=name, metadata={LABEL: "1", "sandbank.workdir": self.manifest.workdir}
            )
        return f"snapshot:{view.id}"

    async def _stop(self) -> None:
        # Runloop's suspend keeps the disk and ends every process: sandbank's stop.
        with _boundary(self.id, open_handle=True):
            await self._devboxes.suspend(self.id)
            await self._devboxes.await_suspended(self.id)

    async def _resume(self) -> None:
        with _boundary(self.id, open_handle=True):
            view = await self._devboxes.retrieve(self.id)
            if view.status in ("shutdown", "failure"):
                raise SandboxLost(self.id, f"the devbox is {view.status}")
            if view.status != "running":
                await self._devboxes.resume(self.id)
                await self._devboxes.await_running(self.id)


def _status(state: str | None) -> SandboxStatus:
    if state in ("suspending", "suspended"):
        return SandboxStatus.STOPPED
    if state in (None, "failure", "shutdown"):
        return SandboxStatus.LOST
    return SandboxStatus.RUNNING


class RunloopProvider(Provider):
    """Devboxes on Runloop (``pip install 'sandbank[runloop]'``).

    Options: ``api_key`` (default ``RUNLOOP_API_KEY``), ``base_url`` (default
    ``RUNLOOP_BASE_URL``, else the SDK's default), ``blueprint`` (the blueprint name to start
    from when the manifest names no image), ``keep_alive_seconds`` (Runloop shuts an idle
    devbox down after this long), ``workspace`` (where the workspace is inside the devbox),
    ``http_client`` (an ``httpx.AsyncClient`` for the SDK), ``retries`` (how often the SDK
    itself retries a 429, 5xx or dropped connection).
    """

    name = "runloop"
    extra = "runloop"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        blueprint: str | None = None,
        keep_alive_seconds: int | None = None,
        workspace: str = WORKSPACE,
        http_client: Any = None,
        retries: int = 2,
    ) -> None:
        super().__init__()
        self.api_key = api_key or os.environ.get("RUNLOOP_API_KEY")
        self.base_url = base_url or os.environ.get("RUNLOOP_BASE_URL")
        self.blueprint = blueprint
        self.keep_alive_seconds = keep_alive_seconds
        self.workspace = workspace.rstrip("/")
        self.http_client = http_client
        self.retries = retries
        self._client: Any = None
        self._offline: str | None = None

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            stop=True, native_snapshot=True, network_policy=True, resource_limits=True, image=True
        )

    @property
    def isolation(self) -> str:
        return ISOLATION

    def client(self) -> Any:
        """The ``AsyncRunloop`` client of this provider (made on first use)."""
        if self._client is None:
            if not self.api_key:
                raise ConfigurationError(f"no Runloop credentials: {CREDENTIALS_HINT}")
            with _boundary():
                self._client = _sdk().AsyncRunloop(
                    bearer_token=self.api_key,
                    base_url=self.base_url,
                    http_client=self.http_client,
                    max_retries=self.retries,
                )
        return self._client

    async def check(self) -> None:
        self.client()

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> RunloopSandbox:
        manifest = self.validate_manifest(manifest)
        params = self._params(manifest)
        if not manifest.network:
            launch = params.setdefault("launch_parameters", {})
            launch["network_policy_id"] = await self._offline_policy()
        devboxes = self.client().devboxes
        with _boundary():
            view = await devboxes.create(**params)
        box = RunloopSandbox(self, view, manifest)
        try:
            if view.status != "running":
                with _boundary(view.id):
                    box.view = await devboxes.await_running(view.id)
            await box.mkdir(manifest.workdir)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.destroy(box.id)
            raise
        return box

    def _params(self, manifest: Manifest) -> dict[str, Any]:
        resources = manifest.resources
        if resources.pids is not None:
            raise NotSupported(
                self.name,
                "resource_limits",
                "Runloop has no limit on the number of processes; remove resources.pids",
            )
        launch: dict[str, Any] = {}
        if resources.cpu is not None:
            launch["custom_cpu_cores"] = max(1, round(resources.cpu))
        if resources.memory is not None:
            launch["custom_gb_memory"] = max(1, -(-resources.memory // 2**30))
        if self.keep_alive_seconds is not None:
            launch["keep_alive_time_seconds"] = self.keep_alive_seconds
        metadata = {
            LABEL: "1",
            "sandbank.workdir": manifest.workdir,
            "sandbank.network": "1" if manifest.network else "0",
        }
        params: dict[str, Any] = {
            "environment_variables": dict(manifest.env),
            "metadata": metadata,
        }
        image = manifest.image.for_provider(self.name)
        if image is not None:
            metadata["sandbank.image"] = image
            kind, _, name = image.partition(":")
            if kind == "snapshot" and name:
                params["snapshot_id"] = name
            elif kind == "blueprint" and name:
                params["blueprint_id"] = name
            else:
                params["blueprint_name"] = image
        elif self.blueprint:
            params["blueprint_name"] = self.blueprint
        if launch:
            params["launch_parameters"] = launch
        return params

    async def _offline_policy(self) -> str:
        """The id of the network policy that allows no egress (found by name, else made)."""
        if self._offline is None:
            policies = self.client().network_policies
            with _boundary():
                async for policy in policies.list(name=OFFLINE_POLICY):
                    if policy.name == OFFLINE_POLICY and not policy.egress.allow_all:
                        self._offline = policy.id
                        break
                else:
                    made = await policies.create(
                        name=OFFLINE_POLICY,
                        allow_all=False,
                        allowed_cidrs=[],
                        allowed_hostnames=[],
                        description="sandbank: devboxes made with manifest.network=False",
                    )
                    self._offline = made.id
        return self._offline

    async def attach(self, sandbox_id: str) -> RunloopSandbox:
        view = await self._get(sandbox_id)
        metadata = dict(view.metadata or {})
        manifest = Manifest(
            workdir=metadata.get("sandbank.workdir", "."),
            network=metadata.get("sandbank.network") == "1",
            image=Image(hints={self.name: metadata["sandbank.image"]})
            if "sandbank.image" in metadata
            else Image(),
        )
        return RunloopSandbox(self, view, manifest)

    async def _get(self, sandbox_id: str) -> Any:
        with _boundary(sandbox_id):
            view = await self.client().devboxes.retrieve(sandbox_id)
        if view.status in ("shutdown", "failure") or LABEL not in (view.metadata or {}):
            raise SandboxNotFound(self.name, sandbox_id)
        return view

    async def list(self) -> list[SandboxInfo]:
        with _boundary():
            found = [view async for view in self.client().devboxes.list(limit=100)]
        return [
            self._describe(v)
            for v in found
            if LABEL in (v.metadata or {}) and v.status not in ("shutdown", "failure")
        ]

    async def destroy(self, sandbox_id: str) -> None:
        await self._get(sandbox_id)
        with _boundary(sandbox_id):
            await self.client().devboxes.shutdown(sandbox_id)

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        return self._describe(await self._get(sandbox_id))

    def _describe(self, view: Any) -> SandboxInfo:
        metadata = dict(view.metadata or {})
        return SandboxInfo(
            id=view.id,
            provider=self.name,
            status=_status(view.status),
            created_at=view.create_time_ms / 1000 if view.create_time_ms else None,
            image=metadata.get("sandbank.image") or view.blueprint_id,
            isolation=ISOLATION,
            workspace=self.workspace,
            labels=metadata,
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
