"""Daytona sandboxes through the official SDK (``daytona``, ``AsyncDaytona``).

Commands go through the toolbox's plain ``process.exec`` as a small POSIX sh script that
sends the command's stdout and stderr to files in the sandbox's ``/tmp``; those files come
back through the toolbox file API, byte for byte (the SDK's own output is decoded text, and
``exec`` mixes the two streams). File primitives are such scripts too, because only a
shell in the sandbox can see where a symlink leads; bulk bytes always use the file API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import re
import secrets
import shlex
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
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

__all__ = ["DaytonaProvider", "DaytonaSandbox", "map_daytona_error"]

WORKSPACE = "/home/daytona/workspace"
"""Where the workspace root is in a Daytona sandbox: a directory of its own under the
default user's home, so the home's dotfiles are not part of the workspace."""
LABEL = "sandbank"
"""The label (value ``"1"``) that marks the sandboxes sandbank made; ``list`` filters on it."""
ISOLATION = "Daytona sandbox (a container or VM on Daytona's runners)"
CREDENTIALS_HINT = (
    "set DAYTONA_API_KEY (and DAYTONA_API_URL for a self-hosted or emulated Daytona), or pass "
    "api_key= / api_url= to DaytonaProvider"
)
_CHUNK = 1024 * 1024

# -- the one exception boundary -------------------------------------------------------------

# Every exception class the SDK exports, by name, to (the sandbank error kind, retryable).
# Kinds: "auth" ConfigurationError naming the variables; "bad" ConfigurationError;
# "missing" SandboxNotFound (or SandboxLost on an open handle); "lost" SandboxLost;
# "unavailable" ProviderUnavailable; "error" ProviderError. Looked up along the MRO, so a
# subclass the SDK adds later falls back to its parent's entry.
_ERROR_KINDS: dict[str, tuple[str, bool]] = {
    "DaytonaError": ("error", False),
    "DaytonaAuthenticationError": ("auth", False),
    "DaytonaForbiddenError": ("auth", False),
    "DaytonaAuthorizationError": ("auth", False),  # an alias of DaytonaForbiddenError
    "DaytonaBadRequestError": ("bad", False),
    "DaytonaValidationError": ("bad", False),  # an alias of DaytonaBadRequestError
    "DaytonaUnprocessableEntityError": ("bad", False),
    "DaytonaNotFoundError": ("missing", False),
    "DaytonaGoneError": ("error", False),
    "DaytonaConflictError": ("error", True),  # a state change still in progress
    "DaytonaRateLimitError": ("error", True),
    "DaytonaTimeoutError": ("error", True),
    "DaytonaQueueTimeoutError": ("error", True),
    "DaytonaProcessExecutionTimeoutError": ("error", True),
    "DaytonaInternalServerError": ("error", True),
    "DaytonaBadGatewayError": ("error", True),
    "DaytonaServiceUnavailableError": ("error", True),
    "DaytonaConnectionError": ("unavailable", True),
    "DaytonaConnectionTimeoutError": ("unavailable", True),
    "DaytonaSpotEvictedError": ("lost", False),
    "DaytonaFileNotFoundError": ("error", False),
    "DaytonaFileAccessDeniedError": ("error", False),
    "DaytonaInvalidFilePathError": ("bad", False),
    "DaytonaFileReadFailedError": ("error", True),
    "DaytonaProcessNotFoundError": ("error", False),
    "DaytonaSessionEndedError": ("error", False),
    "DaytonaCommandAlreadyCompletedError": ("error", False),
    "DaytonaLspServerNotInitializedError": ("bad", False),
    "DaytonaGitAuthFailedError": ("auth", False),
    "DaytonaGitRepoNotFoundError": ("bad", False),
    "DaytonaGitBranchNotFoundError": ("bad", False),
    "DaytonaGitBranchExistsError": ("bad", False),
    "DaytonaGitPushRejectedError": ("error", False),
    "DaytonaGitDirtyWorktreeError": ("bad", False),
    "DaytonaGitMergeConflictError": ("error", False),
    "DaytonaGitTransportFailedError": ("error", True),
    "DaytonaGitRemoteRejectedError": ("error", False),
    "DaytonaA11yUnavailableError": ("error", False),
    "DaytonaRecordingStillActiveError": ("error", False),
    "DaytonaRecordingFfmpegNotFoundError": ("error", False),
}


def map_daytona_error(
    exc: BaseException, sandbox_id: str | None = None, *, open_handle: bool = False
) -> SandbankError:
    """The sandbank error for an exception out of the SDK (or its transport).

    ``sandbox_id`` names the sandbox the call was about; with ``open_handle`` a sandbox
    that no longer exists is ``SandboxLost`` (it died under an open handle), otherwise
    ``SandboxNotFound``.
    """
    if isinstance(exc, SandbankError):
        return exc
    # Some SDK paths (the bulk file transfers) raise a bare DaytonaError over aiohttp's
    # ClientResponseError: the HTTP status is then only on the cause.
    status = getattr(exc, "status_code", None) or getattr(exc.__cause__, "status", None)
    kind, retryable = "error", False
    names = [cls.__name__ for cls in type(exc).__mro__ if cls.__module__.startswith("daytona")]
    if names[:1] == ["DaytonaError"] and isinstance(status, int):
        from daytona.common.errors import error_class_from_status_code

        names = [error_class_from_status_code(status).__name__]
    for name in names:
        if name in _ERROR_KINDS:
            kind, retryable = _ERROR_KINDS[name]
            break
    else:
        if isinstance(exc, OSError | asyncio.TimeoutError) or type(exc).__module__.startswith(
            "aiohttp"
        ):
            kind, retryable = "unavailable", True
    detail = f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}: {exc}"
    if status == 413:
        return ConfigurationError(
            f"Daytona refused a request body as too large ({detail}); "
            "split the data, or move it with export_tar/import_tar or a snapshot"
        )
    if kind == "auth":
        return ConfigurationError(f"Daytona refused the credentials ({detail}); {CREDENTIALS_HINT}")
    if kind == "bad":
        return ConfigurationError(
            f"Daytona refused the request ({detail}); fix the call, do not retry"
        )
    if kind == "missing" and sandbox_id is not None:
        if open_handle:
            return SandboxLost(sandbox_id, f"Daytona no longer knows it ({detail})")
        return SandboxNotFound(DaytonaProvider.name, sandbox_id)
    if kind == "lost" and sandbox_id is not None:
        return SandboxLost(sandbox_id, detail)
    if kind == "unavailable":
        return ProviderUnavailable(
            f"cannot reach Daytona ({detail}); check DAYTONA_API_URL and the network, then retry"
        )
    advice = "retry later" if retryable else "see the message; retrying will not help"
    return ProviderError(f"Daytona call failed ({detail}); {advice}", retryable=retryable)


@contextlib.contextmanager
def _boundary(sandbox_id: str | None = None, *, open_handle: bool = False) -> Iterator[None]:
    try:
        yield
    except SandbankError:
        raise
    except Exception as exc:
        raise map_daytona_error(exc, sandbox_id, open_handle=open_handle) from exc


def _sdk() -> Any:
    """The ``daytona`` module, imported on first use."""
    try:
        import daytona
    except ImportError as exc:
        raise ProviderUnavailable(
            f"the daytona provider needs the Daytona SDK: pip install 'sandbank[daytona]' ({exc})"
        ) from exc
    return daytona


# -- the shell scripts that run in the sandbox -----------------------------------------------

_PRELUDE = """\
T={tmp} L={inline} N=
{{ [ -d {workspace} ] || mkdir -p -- {workspace}; }} && cd -P -- {workspace} && W=$PWD || exit 90
[ -d "$T" ] || mkdir -p -- "$T" || exit 90
: > "$T/status"
fail() {{ [ -z "$N" ] || rm -f -- "$N"; printf '%s' "$1" > "$T/status"; exit 0; }}
inside() {{ r=$(realpath -m -- "$1") || return 1
  case "$r/" in "$W"/*) return 0;; esac; return 1; }}
I=/dev/null; [ -e "$T.in" ] && I=$T.in
(
{body}
) < "$I" > "$T/out" 2> "$T/err"
rc=$?
[ "$I" = /dev/null ] || rm -f -- "$I"
if [ "$L" -gt 0 ] && command -v base64 > /dev/null; then
  n=0
  if [ -s "$T/out" ] || [ -s "$T/err" ]; then
    set -- $(stat -c %s -- "$T/out" "$T/err"); n=$(($1 + $2))
  fi
  if [ "$n" -le "$L" ]; then
    st=; read -r st < "$T/status"
    printf 'sandbank-inline:'; [ -s "$T/out" ] && base64 -w0 < "$T/out"
    printf ':'; [ -s "$T/err" ] && base64 -w0 < "$T/err"
    printf ':%s:' "$st"; : > "$T/out"; : > "$T/err"
  fi
fi
exit $rc
"""
# Up to this many bytes of output come back base64-encoded in the exec response itself (one
# round trip); more stay in files for the file API. The script forks as little as it can
# (one process for the command; base64 and stat only for output): each fork is a visible
# share of a short command's latency. Its directory in /tmp is reused by the handle's next
# script (``_slots``), so nothing needs removing after an inlined run.
_INLINE = 1024 * 1024
_INLINED = re.compile(rb"sandbank-inline:([A-Za-z0-9+/=]*):([A-Za-z0-9+/=]*):([a-z]*):")


def _q(text: str) -> str:
    return shlex.quote(text)


@dataclass
class _Run:
    exit_code: int
    stdout: bytes
    stderr: bytes
    status: str | None
    timed_out: bool = False


class DaytonaSandbox(ShellFileOps, Sandbox):
    """A Daytona sandbox, through an ``AsyncSandbox`` of the SDK."""

    provider: DaytonaProvider

    def __init__(self, provider: DaytonaProvider, remote: Any, manifest: Manifest) -> None:
        super().__init__(provider, remote.id, manifest, workspace=provider.workspace)
        self.remote = remote
        self._cleanups: set[asyncio.Task[None]] = set()
        self._slots: list[str] = []
        """Directories in the sandbox's /tmp that no script of this handle is using."""

    # -- running scripts -------------------------------------------------------------------

    def _abs(self, path: str) -> str:
        return self.workspace if path == "." else f"{self.workspace}/{path}"

    async def _run(
        self,
        body: str,
        *,
        stdin: bytes | IO[bytes] | None = None,
        timeout: float | None = None,
        keep: bool = False,
    ) -> tuple[_Run, str]:
        """Run ``body`` (sh, stdin/stdout/stderr redirected) in the sandbox; return its
        outcome and the in-sandbox temporary directory (removed unless ``keep``)."""
        # A kept directory is the caller's to remove; otherwise a free slot of this handle.
        fresh = f"/tmp/sandbank-{secrets.token_hex(8)}"
        tmp = fresh if keep or not self._slots else self._slots.pop()
        inline = 0 if keep else _INLINE
        script = _PRELUDE.format(
            workspace=_q(self.workspace), tmp=_q(tmp), inline=inline, body=body
        )
        command = f"sh -c {_q(script)}"
        process, fs = self.remote.process, self.remote.fs
        with _boundary(self.id, open_handle=True):
            if isinstance(stdin, bytes):
                await fs.upload_file(stdin, f"{tmp}.in")
            elif stdin is not None:
                await fs.upload_file_stream(stdin, f"{tmp}.in")
            timed_out, exit_code, said = False, -1, ""
            try:
                # The script's own `timeout` kills the command in time; the toolbox's is a
                # backstop for a sandbox that stopped answering.
                server_timeout = math.ceil(timeout) + 30 if timeout else None
                response = await process.exec(command, timeout=server_timeout)
                exit_code = int(response.exit_code if response.exit_code is not None else -1)
                said = response.result or ""
            except Exception as exc:
                if type(exc).__name__ != "DaytonaProcessExecutionTimeoutError":
                    raise
                timed_out = True
            found = _INLINED.search(said.encode())
            if found is not None:
                self._slots.append(tmp)
                out, err = (base64.b64decode(part) for part in found.groups()[:2])
                said_status = found.group(3).decode() or None
                return _Run(exit_code, out, err, said_status, timed_out), tmp
            names = [f"{tmp}/out", f"{tmp}/err", f"{tmp}/status"]
            request = _sdk().FileDownloadRequest
            files = await fs.download_files([request(source=name) for name in names])
            got = {f.source: _bytes(f.result) for f in files if f.error is None}
            if not keep:  # in the background: the caller has what it needs
                task = asyncio.create_task(self._cleanup(tmp, reuse=True))
                self._cleanups.add(task)
                task.add_done_callback(self._cleanups.discard)
        if f"{tmp}/out" not in got:
            raise ProviderError(
                f"the command wrapper did not run in Daytona sandbox {self.id!r} "
                f"(exit code {exit_code}: {said.strip()[:200]}); check that the sandbox image "
                "has sh and coreutils",
                retryable=True,
            )
        status = got.get(f"{tmp}/status", b"").decode() or None
        run = _Run(exit_code, got[f"{tmp}/out"], got.get(f"{tmp}/err", b""), status, timed_out)
        return run, tmp

    async def _cleanup(self, tmp: str, *, reuse: bool = False) -> None:
        with contextlib.suppress(Exception):
            await self.remote.fs.delete_file(tmp, recursive=True)
        if reuse:  # the next script makes the directory again
            self._slots.append(tmp)

    async def _script(
        self, body: str, path: str, *, stdin: bytes | IO[bytes] | None = None
    ) -> bytes:
        """Run a file-primitive script about ``path``; its stdout, or the mapped failure."""
        run, _ = await self._run(body, stdin=stdin)
        self._raise_status(run.status, path)
        if run.exit_code != 0:
            raise ProviderError(
                f"a file operation on {path!r} failed in Daytona sandbox {self.id!r} "
                f"(exit {run.exit_code}): {run.stderr.decode(errors='replace').strip()}"
            )
        return run.stdout

    def _raise_status(self, status: str | None, path: str) -> None:
        if status is None:
            return
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
        raise ProviderError(f"unexpected status {status!r} from Daytona sandbox {self.id!r}")

    # -- commands --------------------------------------------------------------------------

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        env = sandbox_env(request.env, home=self.workspace)
        argv = list(request.argv)
        if request.timeout is not None:
            # GNU timeout puts the command in its own process group and kills that group.
            argv = ["timeout", "-s", "KILL", f"{request.timeout:.3f}", *argv]
        body = shell_join(argv, self._abs(request.cwd), env, workspace=self.workspace)
        started = asyncio.get_running_loop().time()
        run, _ = await self._run(body, stdin=request.stdin, timeout=request.timeout)
        refused = cwd_error(run.exit_code, run.stderr, request.cwd)
        if refused is not None:
            raise refused
        for start in range(0, max(len(run.stdout), len(run.stderr)), _CHUNK):
            await output.feed("stdout", run.stdout[start : start + _CHUNK])
            await output.feed("stderr", run.stderr[start : start + _CHUNK])
        elapsed = asyncio.get_running_loop().time() - started
        if request.timeout is not None and (
            run.timed_out or (run.exit_code in (124, 137) and elapsed >= request.timeout)
        ):
            raise ExecTimeout(request.argv, request.timeout, output.result(137))
        return output.result(run.exit_code)

    # -- files -----------------------------------------------------------------------------

    async def _read_file(self, path: str) -> bytes:
        # The check (only a shell sees where symlinks lead) and the download run at once; the
        # bytes count only if the check passes. Were a symlink to lead out of the workspace,
        # the download read a file the check refuses, and those bytes are dropped. The SDK
        # cannot match a download to a non-ASCII name (it reads the multipart filename as
        # Latin-1), so such a file comes back through the script's output instead.
        body = (
            f'P="$W"/{_q(path)}\n'
            'inside "$P" || fail escape\n'
            '[ -e "$P" ] || fail missing\n'
            '[ -d "$P" ] && fail isdir\n'
        )
        if not path.isascii():
            return await self._script(body + 'cat -- "$P"', path)
        with _boundary(self.id, open_handle=True):
            download = asyncio.ensure_future(self.remote.fs.download_file(self._abs(path)))
        try:
            await self._script(body + '[ -r "$P" ] || exit 1', path)
        except BaseException:
            download.cancel()
            with contextlib.suppress(BaseException):
                await download
            raise
        with _boundary(self.id, open_handle=True):
            return _bytes(await download)

    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        # The bytes go to a temporary file at the workspace root (the same file system as the
        # destination, so the final move is a rename, not a copy), then one script checks the
        # destination and moves the file there, or removes it. A listing made meanwhile may
        # see the temporary ``.sandbank-write-*`` file.
        chosen = f"{mode:o}" if mode is not None else ""
        staged = f".sandbank-write-{secrets.token_hex(8)}"
        body = (
            f'P="$W"/{_q(path)} M={_q(chosen)} N="$W"/{staged}\n'
            'inside "$P" || fail escape\n'
            '[ -d "$r" ] && fail isdir\n'
            "D=${r%/*}\n"
            '[ -d "$D" ] || mkdir -p -- "$D" 2>/dev/null || fail notdir\n'
            'if [ -n "$M" ]; then chmod "$M" "$N"; elif [ -e "$r" ]; then\n'
            '  chmod --reference="$r" -- "$N"; else chmod 644 "$N"; fi &&\n'
            'mv -f -- "$N" "$r" || { rm -f -- "$N"; exit 1; }'
        )
        with _boundary(self.id, open_handle=True):
            await self.remote.fs.upload_file(data, f"{self.workspace}/{staged}")
        try:
            await self._script(body, path)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.remote.fs.delete_file(f"{self.workspace}/{staged}")
            raise

    # -- tar -------------------------------------------------------------------------------

    async def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        names = [] if paths is None or "." in paths else paths
        if names:
            for target in await self._resolve(*(("n", p) for p in names)):
                target.check(allow_missing=False)
        script = shlex.join(["/bin/sh", "-c", EXPORT_TAR_SCRIPT, "sh"])
        body = f'{script} "$W" "$T/tar" {shlex.join(names)}'
        run, tmp = await self._run(body, keep=True)
        try:
            if run.exit_code != 0:
                raise ProviderError(
                    f"tar in Daytona sandbox {self.id!r} failed (exit {run.exit_code}): "
                    f"{run.stderr.decode(errors='replace').strip()}"
                )
            with _boundary(self.id, open_handle=True):
                stream = await self.remote.fs.download_file_stream(f"{tmp}/tar")
                async for chunk in stream:
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
            await self._script(f'{script} "$W" "$I"', ".", stdin=spool)

    async def _resolve(self, *paths: tuple[Any, str]) -> list[Any]:
        """Where each workspace path leads in the sandbox (``Resolved``), in one command."""
        if not paths:
            return []
        out = await self._script(shlex.join(resolve_argv(self.workspace, paths)), ".")
        return parse_resolved([rel for _, rel in paths], out)

    # -- lifecycle -------------------------------------------------------------------------

    async def _close(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    async def _refresh(self) -> str | None:
        """The sandbox's state, refreshed; ``None`` once Daytona no longer knows it."""
        try:
            with _boundary(self.id):
                await self.remote.refresh_data()
        except SandboxNotFound:
            return None
        return _state(self.remote)

    async def _status(self) -> SandboxStatus:
        return _status(await self._refresh())

    async def _pause(self) -> None:
        with _boundary(self.id, open_handle=True):
            await self.remote.pause()

    async def _stop(self) -> None:
        with _boundary(self.id, open_handle=True):
            await self.remote.stop()

    async def _resume(self) -> None:
        state = await self._refresh()
        if state is None:
            raise SandboxLost(self.id, "Daytona no longer knows it")
        if state != "started":
            with _boundary(self.id, open_handle=True):
                await self.remote.start()


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


def _state(remote: Any) -> str | None:
    state = getattr(remote, "state", None)
    return None if state is None else str(getattr(state, "value", state))


def _status(state: str | None) -> SandboxStatus:
    if state in ("stopped", "stopping", "archived", "archiving"):
        return SandboxStatus.STOPPED
    if state in ("paused", "pausing"):
        return SandboxStatus.PAUSED
    if state in (None, "destroyed", "destroying", "error", "build_failed"):
        return SandboxStatus.LOST
    return SandboxStatus.RUNNING


class DaytonaProvider(Provider):
    """Sandboxes on Daytona (``pip install 'sandbank[daytona]'``).

    Options: ``api_key`` (default ``DAYTONA_API_KEY``), ``api_url`` (default
    ``DAYTONA_API_URL``, else the SDK's default), ``target`` (the region), ``snapshot`` (the
    Daytona snapshot to start from when the manifest names no image), ``auto_stop_minutes``
    (Daytona stops an idle sandbox after this long; 0 never), ``lifetime_minutes`` (deleted
    after this long, whatever its state; ``None`` never), ``network_allow_list`` (with
    ``manifest.network``, only these comma-separated CIDRs are reachable), ``workspace``
    (where the workspace is inside the sandbox).
    """

    name = "daytona"
    extra = "daytona"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_url: str | None = None,
        target: str | None = None,
        snapshot: str | None = None,
        auto_stop_minutes: int | None = None,
        lifetime_minutes: int | None = None,
        network_allow_list: str | None = None,
        workspace: str = WORKSPACE,
    ) -> None:
        super().__init__()
        self.api_key = api_key or os.environ.get("DAYTONA_API_KEY")
        self.api_url = api_url or os.environ.get("DAYTONA_API_URL")
        self.target = target or os.environ.get("DAYTONA_TARGET")
        self.snapshot = snapshot
        self.auto_stop_minutes = auto_stop_minutes
        self.lifetime_minutes = lifetime_minutes
        self.network_allow_list = network_allow_list
        self.workspace = workspace.rstrip("/")
        self._client: Any = None
        self._known: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        """The SDK's handles of sandboxes seen with sandbank's label, while still in use."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            pause=True, stop=True, network_policy=True, resource_limits=True, image=True
        )

    @property
    def isolation(self) -> str:
        return ISOLATION

    def client(self) -> Any:
        """The ``AsyncDaytona`` client of this provider (made on first use)."""
        if self._client is None:
            if not self.api_key:
                raise ConfigurationError(f"no Daytona credentials: {CREDENTIALS_HINT}")
            daytona = _sdk()
            config = daytona.DaytonaConfig(
                api_key=self.api_key, api_url=self.api_url, target=self.target
            )
            with _boundary():
                self._client = daytona.AsyncDaytona(config)
        return self._client

    async def check(self) -> None:
        self.client()

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> DaytonaSandbox:
        manifest = self.validate_manifest(manifest)
        params = self._params(manifest)
        with _boundary():
            remote = await self.client().create(params)
        self._known[remote.id] = remote
        box = DaytonaSandbox(self, remote, manifest)
        try:
            await box.mkdir(manifest.workdir)  # every script makes the workspace root itself
        except BaseException:
            with contextlib.suppress(Exception):
                await self.destroy(box.id)
            raise
        return box

    def _params(self, manifest: Manifest) -> Any:
        daytona = _sdk()
        resources = manifest.resources
        if resources.pids is not None:
            raise NotSupported(
                self.name,
                "resource_limits",
                "Daytona has no limit on the number of processes; remove resources.pids",
            )
        image = manifest.image.for_provider(self.name)
        labels = {LABEL: "1", "sandbank.workdir": manifest.workdir}
        common: dict[str, Any] = {
            "env_vars": dict(manifest.env),
            "labels": labels,
            "network_block_all": not manifest.network,
            "network_allow_list": self.network_allow_list if manifest.network else None,
            "auto_stop_interval": self.auto_stop_minutes,
            "ttl_minutes": self.lifetime_minutes,
        }
        if image is not None and image.startswith("snapshot:"):
            labels["sandbank.image"] = image
            return daytona.CreateSandboxFromSnapshotParams(snapshot=image[9:], **common)
        if image is None and resources.cpu is None and resources.memory is None:
            return daytona.CreateSandboxFromSnapshotParams(snapshot=self.snapshot, **common)
        if image is None:
            raise ConfigurationError(
                "Daytona sets cpu and memory only for a sandbox made from an image; "
                "set manifest.image (e.g. 'python:3.12') or remove resources.cpu/memory"
            )
        labels["sandbank.image"] = image
        size = None
        if resources.cpu is not None or resources.memory is not None:
            size = daytona.Resources(
                cpu=math.ceil(resources.cpu) if resources.cpu else None,
                memory=math.ceil(resources.memory / 2**30) if resources.memory else None,
            )
        return daytona.CreateSandboxFromImageParams(image=image, resources=size, **common)

    async def attach(self, sandbox_id: str) -> DaytonaSandbox:
        remote = await self._get(sandbox_id)
        labels = dict(remote.labels or {})
        manifest = Manifest(
            env=dict(remote.env or {}),
            workdir=labels.get("sandbank.workdir", "."),
            network=not remote.network_block_all,
            image=Image(hints={self.name: labels["sandbank.image"]})
            if "sandbank.image" in labels
            else Image(),
        )
        return DaytonaSandbox(self, remote, manifest)

    async def _get(self, sandbox_id: str) -> Any:
        with _boundary(sandbox_id):
            remote = await self.client().get(sandbox_id)
        if _state(remote) in ("destroyed", "destroying") or LABEL not in (remote.labels or {}):
            raise SandboxNotFound(self.name, sandbox_id)
        self._known[sandbox_id] = remote
        return remote

    async def list(self) -> list[SandboxInfo]:
        query = _sdk().ListSandboxesQuery(labels={LABEL: "1"})
        with _boundary():
            found = [remote async for remote in self.client().list(query)]
        return [self._describe(r) for r in found if _state(r) not in ("destroyed", "destroying")]

    async def destroy(self, sandbox_id: str) -> None:
        # A sandbox this provider made or attached is known to carry the label: delete it at
        # once (one request; its 404 is SandboxNotFound). Any other id is looked at first.
        remote = self._known.pop(sandbox_id, None) or await self._get(sandbox_id)
        with _boundary(sandbox_id):
            await remote.delete()

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        return self._describe(await self._get(sandbox_id))

    def _describe(self, remote: Any) -> SandboxInfo:
        labels = dict(remote.labels or {})
        created = None
        if remote.created_at:
            from datetime import datetime

            with contextlib.suppress(ValueError):
                created = datetime.fromisoformat(
                    remote.created_at.replace("Z", "+00:00")
                ).timestamp()
        return SandboxInfo(
            id=remote.id,
            provider=self.name,
            status=_status(_state(remote)),
            created_at=created,
            image=labels.get("sandbank.image") or remote.snapshot,
            isolation=ISOLATION,
            workspace=self.workspace,
            labels=labels,
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
