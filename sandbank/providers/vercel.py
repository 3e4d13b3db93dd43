"""Vercel sandboxes through the official SDK (``vercel-sandbox``, the async ``vercel.sandbox``).

Commands run with the SDK's ``run_process`` (``command`` + ``args``, stdin through its
process stdin) inside a small POSIX sh wrapper that sends the command's stdout and stderr
to files and prints them base64-encoded: the SDK's output records are text, so this keeps
them byte for byte and apart. File bytes move through ``fs.read_bytes``/``fs.write_bytes``
after a one-command check, in the sandbox, of where the path really leads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import shlex
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
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

__all__ = ["VercelProvider", "VercelSandbox", "map_vercel_error"]

WORKSPACE = "/vercel/sandbox"
"""Where the workspace is in a Vercel sandbox: the default working directory of its sessions."""
TAG = "sandbank"
"""The tag (value ``"1"``) that marks the sandboxes sandbank made; ``list`` filters on it."""
SNAPSHOT_PREFIX = "snapshot:"
"""An image hint ``snapshot:<id>`` creates the sandbox from that Vercel snapshot."""
ISOLATION = "Vercel Sandbox (a Firecracker microVM)"
CREDENTIALS_HINT = (
    "set VERCEL_TOKEN with VERCEL_TEAM_ID and VERCEL_PROJECT_ID (or VERCEL_OIDC_TOKEN), or "
    "pass token= / team_id= / project_id= to VercelProvider"
)
_CHUNK = 1024 * 1024

# -- the one exception boundary -------------------------------------------------------------

# Every exception class of ``vercel.sandbox`` (and the SDK's base), by name, to the sandbank
# error kind and whether a retry can help. Kinds: "auth", "bad", "missing" (SandboxNotFound,
# or SandboxLost on an open handle), "lost", "unavailable", "error", "http" (decided by the
# HTTP status). Looked up along the MRO, so a subclass added later falls back to its parent.
_ERROR_KINDS: dict[str, tuple[str, bool]] = {
    "VercelError": ("error", False),
    "VercelServiceOptionsError": ("bad", False),
    "VercelSessionError": ("error", False),
    "VercelSessionClosedError": ("error", False),
    "SandboxError": ("error", False),
    "SandboxApiError": ("http", False),
    "SandboxResponseError": ("error", True),
    "SandboxTimeoutError": ("unavailable", True),
    "SandboxCredentialsError": ("auth", False),
    "SandboxStreamError": ("error", True),
    "SandboxStdinError": ("error", True),
    "SandboxInteractiveError": ("error", False),
    "SandboxUserAlreadyExistsError": ("bad", False),
    "SandboxInvalidHandleError": ("bad", False),
    "SandboxTerminalStateError": ("lost", False),
    "SandboxCleanupError": ("error", False),
    "SandboxFilesystemError": ("error", False),
    "SandboxFilesystemCommandError": ("error", False),
    "SandboxFilesystemWriteError": ("http", False),
    "SandboxPathNotFoundError": ("path", False),
    "SandboxFilesystemTransferError": ("error", True),
    "SandboxUploadSizeMismatchError": ("error", True),
}


def map_vercel_error(
    exc: BaseException, sandbox_id: str | None = None, *, open_handle: bool = False
) -> SandbankError:
    """The sandbank error for an exception out of the SDK (or its transport)."""
    if isinstance(exc, SandbankError):
        return exc
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(exc.__cause__, "status_code", None)
    kind, retryable = "error", False
    for cls in type(exc).__mro__:
        if cls.__name__ in _ERROR_KINDS and cls.__module__.startswith("vercel"):
            kind, retryable = _ERROR_KINDS[cls.__name__]
            break
    else:
        if isinstance(exc, OSError | asyncio.TimeoutError) or type(exc).__module__.startswith(
            ("httpx", "httpcore")
        ):
            kind, retryable = "unavailable", True
    if kind == "http":
        retryable = retryable_status(status)
        kind = {401: "auth", 403: "auth", 404: "missing", 410: "stopped"}.get(status or 0, "error")
        if status in (400, 409, 413, 422):
            kind = "bad"
    detail = f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}: {exc}"
    if kind == "auth":
        return ConfigurationError(f"Vercel refused the credentials ({detail}); {CREDENTIALS_HINT}")
    if kind == "bad":
        return ConfigurationError(
            f"Vercel refused the request ({detail}); fix the call, do not retry"
        )
    if kind == "path":
        return PathNotFound(str(getattr(exc, "path", "?")), sandbox_id or "")
    if kind in ("missing", "lost") and sandbox_id is not None:
        if open_handle or kind == "lost":
            return SandboxLost(sandbox_id, f"Vercel no longer runs it ({detail})")
        return SandboxNotFound(VercelProvider.name, sandbox_id)
    if kind == "missing":
        return ConfigurationError(
            f"Vercel has no such resource ({detail}); check the names and ids in the call "
            "(e.g. a snapshot id in the manifest's image)"
        )
    if kind == "stopped":
        return ProviderError(
            f"the Vercel sandbox is stopped and the SDK did not resume it ({detail}); "
            "call resume(), then retry",
            retryable=True,
        )
    if kind == "unavailable":
        return ProviderUnavailable(
            f"cannot reach Vercel ({detail}); check the base URL and the network, then retry"
        )
    advice = "retry later" if retryable else "see the message; retrying will not help"
    return ProviderError(f"Vercel call failed ({detail}); {advice}", retryable=retryable)


@contextlib.contextmanager
def _boundary(sandbox_id: str | None = None, *, open_handle: bool = False) -> Iterator[None]:
    try:
        yield
    except SandbankError:
        raise
    except Exception as exc:
        raise map_vercel_error(exc, sandbox_id, open_handle=open_handle) from exc


def _sdk() -> Any:
    """The ``vercel.sandbox`` module, imported on first use."""
    try:
        import vercel.sandbox
    except ImportError as exc:
        raise ProviderUnavailable(
            f"the vercel provider needs the Vercel Sandbox SDK: pip install 'sandbank[vercel]' "
            f"({exc})"
        ) from exc
    return vercel.sandbox


# -- the wrapper every command runs in ------------------------------------------------------

_WRAPPER = """\
W=$1 T=/tmp/.sandbank-{token}
fail() {{ printf '%s' "$1" > "$T.status"; exit 0; }}
inside() {{ r=$(realpath -m -- "$1") || return 1
  case "$r/" in "$W"/*) return 0;; esac; return 1; }}
(
{body}
) > "$T.out" 2> "$T.err"
rc=$?
printf 'sandbank:%s:%s:' "$(base64 -w0 < "$T.out")" "$(base64 -w0 < "$T.err")"
[ -e "$T.status" ] && base64 -w0 < "$T.status"
rm -f -- "$T".*
exit $rc
"""


def _q(text: str) -> str:
    return shlex.quote(text)


class VercelSandbox(ShellFileOps, Sandbox):
    """A Vercel sandbox, through a ``vercel.sandbox.Sandbox`` handle of the SDK."""

    provider: VercelProvider

    def __init__(self, provider: VercelProvider, remote: Any, manifest: Manifest) -> None:
        super().__init__(provider, remote.name, manifest, workspace=provider.workspace)
        self.remote = remote

    def _abs(self, path: str) -> str:
        return self.workspace if path == "." else f"{self.workspace}/{path}"

    async def _run(
        self, body: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> tuple[int, bytes, bytes, str | None]:
        """Run ``body`` in the wrapper; its exit code, stdout, stderr and failure status."""
        script = _WRAPPER.format(body=body, token=secrets.token_hex(8))
        kill_after = timedelta(seconds=timeout + 30) if timeout else None
        with _boundary(self.id, open_handle=True):
            done = await self.remote.run_process(
                "sh",
                ["-c", script, "sh", self.workspace],
                kill_after=kill_after,
                capture_output=True,
                input=stdin,
            )
        said = done.stdout or ""
        if not said.startswith("sandbank:"):
            raise ProviderError(
                f"the command wrapper did not run in Vercel sandbox {self.id!r} (exit "
                f"{done.returncode}: {(done.stderr or '').strip()[:200]}); the image needs sh, "
                "base64 and coreutils",
                retryable=True,
            )
        _, out, err, status = said.split(":", 3)
        decoded = base64.b64decode(status).decode() if status else None
        return done.returncode, base64.b64decode(out), base64.b64decode(err), decoded

    async def _script(self, body: str, path: str, *, stdin: bytes | None = None) -> bytes:
        code, out, err, status = await self._run(body, stdin=stdin)
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
        if code != 0:
            raise ProviderError(
                f"a file operation on {path!r} failed in Vercel sandbox {self.id!r} "
                f"(exit {code}): {err.decode(errors='replace').strip()}"
            )
        return out

    # -- commands --------------------------------------------------------------------------

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        env = sandbox_env(request.env, home=self.workspace)
        argv = list(request.argv)
        if request.timeout is not None:
            # GNU timeout kills the command's process group; the wrapper still reports
            # what it wrote. kill_after is the service's backstop.
            argv = ["timeout", "-s", "KILL", f"{request.timeout:.3f}", *argv]
        body = shell_join(argv, self._abs(request.cwd), env, workspace=self.workspace)
        stdin = request.stdin
        if stdin is not None and not isinstance(stdin, bytes):
            stdin = await asyncio.to_thread(stdin.read)
        started = asyncio.get_running_loop().time()
        code, out, err, _ = await self._run(body, stdin=stdin, timeout=request.timeout)
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

    async def _real(self, path: str, check: str) -> tuple[str, str]:
        """The real path of ``path`` (checked by ``check``, sh) and its mode, or ``""``."""
        body = (
            f'P="$W"/{_q(path)}\n'
            'inside "$P" || fail escape\n'
            'R=$(realpath -m -- "$P")\n'
            f"{check}\n"
            'printf \'%s\\0%s\' "$(stat -c %a -- "$R" 2>/dev/null)" "$R"'
        )
        mode, _, real = (await self._script(body, path)).partition(b"\0")
        return os.fsdecode(real), mode.decode()

    async def _read_file(self, path: str) -> bytes:
        real, _ = await self._real(path, '[ -e "$R" ] || fail missing\n[ -d "$R" ] && fail isdir')
        with _boundary(self.id, open_handle=True):
            return bytes(await self.remote.fs.read_bytes(real))

    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        real, old = await self._real(
            path, '[ -d "$R" ] && fail isdir\nmkdir -p -- "$(dirname -- "$R")" || fail notdir'
        )
        chosen = mode if mode is not None else int(old, 8) if old else 0o644
        with _boundary(self.id, open_handle=True):
            await self.remote.fs.write_bytes(real, data, mode=chosen)

    # -- tar: one command each way ---------------------------------------------------------

    async def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        names = [] if paths is None or "." in paths else paths
        if names:
            for target in await self._resolve(*(("n", p) for p in names)):
                target.check(allow_missing=False)
        script = shlex.join(["/bin/sh", "-c", EXPORT_TAR_SCRIPT, "sh"])
        out = '"$T.tar"'
        body = f'{script} "$W" {out} {shlex.join(names)} >&2 && cat {out}'
        code, data, err, _ = await self._run(body)
        if code != 0:
            raise ProviderError(
                f"tar in Vercel sandbox {self.id!r} failed (exit {code}): "
                f"{err.decode(errors='replace').strip()}"
            )
        for start in range(0, len(data), _CHUNK):
            yield data[start : start + _CHUNK]

    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        from sandbank._streams import SyncReader

        reader = SyncReader(stream, asyncio.get_running_loop())
        spool, unchecked = await asyncio.to_thread(spool_checked_tar, reader)  # type: ignore[arg-type]
        with spool:
            check_tar_parents(await self._resolve(*(("f", p) for p in sorted(unchecked))))
            data = await asyncio.to_thread(spool.read)
        script = shlex.join(["/bin/sh", "-c", IMPORT_TAR_SCRIPT, "sh"])
        await self._script(f'cat > "$T.in.tar" && {script} "$W" "$T.in.tar"', ".", stdin=data)

    async def _resolve(self, *paths: tuple[Any, str]) -> list[Any]:
        if not paths:
            return []
        out = await self._script(shlex.join(resolve_argv(self.workspace, paths)), ".")
        return parse_resolved([rel for _, rel in paths], out)

    # -- lifecycle -------------------------------------------------------------------------

    async def _status(self) -> SandboxStatus:
        try:
            remote = await self.provider._get(self.id)
        except SandboxNotFound:
            return SandboxStatus.LOST
        return _status(remote)

    async def _stop(self) -> None:
        with _boundary(self.id, open_handle=True):
            await self.remote.stop()

    async def snapshot(self) -> str:
        """Vercel's own snapshot of this sandbox (the ``native_snapshot`` capability): its id.

        Taking it stops the sandbox (``resume()`` starts it again). A manifest naming
        ``"snapshot:<id>"`` as the image for vercel creates a sandbox from it.
        """
        with _boundary(self.id, open_handle=True):
            session = await self.remote.session()
            taken = await session.snapshot()
        return f"{SNAPSHOT_PREFIX}{taken.id}"

    async def _resume(self) -> None:
        try:
            self.remote = await self.provider._get(self.id, resume=True)
        except SandboxNotFound:
            raise SandboxLost(self.id, "Vercel no longer knows it") from None


def _status(remote: Any) -> SandboxStatus:
    state = str(getattr(remote.status, "value", remote.status))
    if state in ("stopped", "stopping", "snapshotting"):
        return SandboxStatus.STOPPED
    if state in ("failed", "aborted"):
        return SandboxStatus.LOST
    return SandboxStatus.RUNNING


class VercelProvider(Provider):
    """Sandboxes on Vercel (``pip install 'sandbank[vercel]'``).

        Options: ``token``, ``team_id``, ``project_id`` (default ``VERCEL_TOKEN``,
        ``VERCEL_TEAM_ID``, ``VERCEL_PROJECT_ID``; without them the SDK's own resolution, e.g.
        ``VERCEL_OIDC_TOKEN``), ``base_url`` (the API; default ``SANDBANK_VERCEL_API_URL``, else
    the SDK's: the SDK itself reads no variable for it), ``image`` (the runtime
        image when the manifest names none), ``workspace``.
    """

    name = "vercel"
    extra = "vercel"

    def __init__(
        self,
        *,
        token: str | None = None,
        team_id: str | None = None,
        project_id: str | None = None,
        base_url: str | None = None,
        image: str | None = None,
        workspace: str = WORKSPACE,
    ) -> None:
        super().__init__()
        self.token = token or os.environ.get("VERCEL_TOKEN")
        self.team_id = team_id or os.environ.get("VERCEL_TEAM_ID")
        self.project_id = project_id or os.environ.get("VERCEL_PROJECT_ID")
        self.base_url = base_url or os.environ.get("SANDBANK_VERCEL_API_URL")
        self.image = image
        self.workspace = workspace.rstrip("/")
        self._client: Any = None

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(stop=True, image=True, network_policy=True, native_snapshot=True)

    @property
    def isolation(self) -> str:
        return ISOLATION

    def client(self) -> Any:
        """The ``SandboxClient`` of this provider (made on first use)."""
        if self._client is None:
            sdk = _sdk()
            factory = None
            if self.token or self.team_id or self.project_id:
                if not (self.token and self.team_id and self.project_id):
                    raise ConfigurationError(f"incomplete Vercel credentials: {CREDENTIALS_HINT}")
                credentials = sdk.SandboxCredentials(
                    token=self.token, team_id=self.team_id, project_id=self.project_id
                )

                async def factory() -> Any:
                    return credentials

            elif not os.environ.get("VERCEL_OIDC_TOKEN"):
                raise ConfigurationError(f"no Vercel credentials: {CREDENTIALS_HINT}")
            options = sdk.SandboxServiceOptions(base_url=self.base_url, credentials_factory=factory)
            with _boundary():
                self._client = sdk.SandboxClient.create(options=options)
        return self._client

    async def check(self) -> None:
        self.client()

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> VercelSandbox:
        manifest = self.validate_manifest(manifest)
        image = manifest.image.for_provider(self.name) or self.image
        tags = {TAG: "1", "sandbank-workdir": manifest.workdir}
        if image:
            tags["sandbank-image"] = image
        sdk = _sdk()
        policy, source = sdk.NetworkPolicy, None
        if image is not None and image.startswith(SNAPSHOT_PREFIX):
            source = sdk.SnapshotSource(snapshot_id=image[len(SNAPSHOT_PREFIX) :])
        with _boundary():
            remote = await self.client().create_sandbox(
                network_policy=policy.allow_all() if manifest.network else policy.deny_all(),
                source=source,
                name=f"sandbank-{secrets.token_hex(6)}",
                image=None if source is not None else image,
                env=dict(manifest.env),
                tags=tags,
                persistent=True,
            )
        box = VercelSandbox(self, remote, manifest)
        if manifest.workdir == ".":  # the sessions' working directory exists already
            return box
        try:
            await box.mkdir(manifest.workdir)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.destroy(box.id)
            raise
        return box

    async def _get(self, name: str, *, resume: bool = False) -> Any:
        client = self.client()
        with _boundary(name):
            if resume:
                remote = await client.resume_sandbox(name=name)
            else:
                remote = await client.get_sandbox(name=name)
        if TAG not in (remote.tags or {}):
            raise SandboxNotFound(self.name, name)
        return remote

    async def attach(self, sandbox_id: str) -> VercelSandbox:
        remote = await self._get(sandbox_id)
        tags = dict(remote.tags or {})
        image = tags.get("sandbank-image")
        policy = getattr(remote, "network_policy", None)
        manifest = Manifest(
            workdir=tags.get("sandbank-workdir", "."),
            network=getattr(policy, "mode", "deny-all") != "deny-all",
            image=Image(hints={self.name: image}) if image else Image(),
        )
        return VercelSandbox(self, remote, manifest)

    async def list(self) -> list[SandboxInfo]:
        with _boundary():
            found = [remote async for remote in self.client().query_sandboxes()]
        return [self._describe(r) for r in found if TAG in (r.tags or {})]

    async def destroy(self, sandbox_id: str) -> None:
        remote = await self._get(sandbox_id)
        with _boundary(sandbox_id):
            await remote.destroy()

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        return self._describe(await self._get(sandbox_id))

    def _describe(self, remote: Any) -> SandboxInfo:
        tags = dict(remote.tags or {})
        created = getattr(remote, "created_at", None)
        return SandboxInfo(
            id=remote.name,
            provider=self.name,
            status=_status(remote),
            created_at=created / 1000 if isinstance(created, int | float) else None,
            image=tags.get("sandbank-image"),
            isolation=ISOLATION,
            workspace=self.workspace,
            labels=tags,
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
