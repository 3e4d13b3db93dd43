"""The ``e2b`` provider: E2B cloud sandboxes through the official SDK (``AsyncSandbox``).

Commands go through ``commands.run`` as one shell string (``shell_join``); files through
the SDK's file API (``/files`` and envd's filesystem RPC), after one command in the sandbox
has checked that the path stays in the workspace (``/home/user``); tar through ``tar`` into
a file that the binary file API then moves. E2B's exceptions become sandbank errors in
``map_e2b_error``, the one boundary. ``pip install 'sandbank[e2b]'``; ``E2B_API_KEY``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    PathNotFound,
    ProviderError,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SandboxNotFound,
)
from sandbank.manifest import Manifest
from sandbank.providers._remote import (
    Kind,
    Resolved,
    cwd_error,
    resolve_path,
    retryable_status,
    shell_join,
    spool_checked_tar,
)
from sandbank.providers.base import (
    Capabilities,
    ExecRequest,
    ExecResult,
    FileEntry,
    OutputCollector,
    Provider,
    Sandbox,
    SandboxInfo,
    SandboxStatus,
)

__all__ = ["HOME", "E2BProvider", "E2BSandbox", "map_e2b_error"]

log = logging.getLogger(__name__)

HOME = "/home/user"
"""The workspace: the home directory of E2B's default user."""
INSTALL_HINT = "install the E2B SDK with `pip install 'sandbank[e2b]'`"
METADATA_KEY = "sandbank"
MANIFEST_KEY = "sandbank_manifest"
_STDIN_CHUNK = 64 * 1024
_LIST_DEPTH = 1 << 16
_TAR_SCRIPT = r"""
cd -- "$1" || exit 3
out=$2
shift 2
if [ $# -eq 0 ]; then
  find . -mindepth 1 -maxdepth 1 ! -name "${out##*/}" -printf '%P\0' | tar -cf "$out" --null -T -
else
  tar -cf "$out" -- "$@"
fi
"""
_UNTAR_SCRIPT = 'cd -- "$1" && tar -xpf "$2" --no-same-owner; code=$?; rm -f -- "$2"; exit $code'


def _sdk() -> Any:
    try:
        import e2b
    except ImportError as exc:
        raise ProviderUnavailable(f"the e2b provider needs the E2B SDK: {INSTALL_HINT}") from exc
    return e2b


def map_e2b_error(exc: BaseException, sandbox_id: str = "", path: str = "") -> SandbankError:
    """The sandbank error for an exception of the E2B SDK (or of its transport).

    Bad credentials and bad requests are ``ConfigurationError`` (not retryable); rate
    limits, timeouts, 5xx and broken connections are retryable ``ProviderError``; a sandbox
    gone under a handle is ``SandboxLost``; a missing file ``PathNotFound``.
    """
    e2b = _sdk()
    import httpx  # the SDK's transport types
    from connectrpc.errors import ConnectError

    message = f"E2B: {exc}"
    if isinstance(exc, SandbankError):
        return exc
    if isinstance(exc, e2b.AuthenticationException):
        return ConfigurationError(
            f"{message}; set E2B_API_KEY (or the api_key option) to a valid E2B API key"
        )
    if isinstance(exc, e2b.RateLimitException):
        return ProviderError(f"{message}; slow down and retry", retryable=True)
    if isinstance(exc, e2b.SandboxNotRunningException | e2b.SandboxNotFoundException):
        if sandbox_id:
            return SandboxLost(sandbox_id, str(exc))
        return SandboxNotFound("e2b", "(unknown)")
    if isinstance(exc, e2b.FileNotFoundException):
        return PathNotFound(path or str(exc), sandbox_id)
    if isinstance(exc, e2b.NotFoundException):
        return PathNotFound(path, sandbox_id) if path else SandboxNotFound("e2b", sandbox_id)
    if isinstance(exc, e2b.CommandExitException):
        return ProviderError(f"E2B: a command exited {exc.exit_code}: {exc.stderr}")
    if isinstance(exc, e2b.InvalidArgumentException | e2b.TemplateException):
        return ConfigurationError(f"{message}; fix the request")
    if isinstance(exc, e2b.NotEnoughSpaceException):
        return ProviderError(f"{message}; free space in the sandbox", retryable=False)
    if isinstance(
        exc,
        e2b.TimeoutException
        | e2b.GuestUnresponsiveException
        | e2b.ServiceBusyException
        | ConnectError
        | httpx.TransportError
        | OSError,
    ):
        return ProviderError(f"{message}; the call can be retried", retryable=True)
    if isinstance(exc, e2b.SandboxException):
        status = getattr(exc, "status_code", None)
        retry = retryable_status(status)
        advice = "retry later" if retry else "check the request"
        return ProviderError(f"{message}; {advice}", retryable=retry)
    if isinstance(
        exc,
        e2b.BuildException
        | e2b.DockerfileSyntaxError
        | e2b.VolumeException
        | e2b.SecretException
        | e2b.GitUpstreamException,
    ):
        return ProviderError(f"{message}; sandbank does not use this E2B API", retryable=False)
    return ProviderError(f"{message} ({type(exc).__name__})", retryable=False)


@contextlib.contextmanager
def _errors(sandbox_id: str = "", path: str = "") -> Iterator[None]:
    try:
        yield
    except SandbankError:
        raise
    except Exception as exc:
        raise map_e2b_error(exc, sandbox_id, path) from exc


class E2BSandbox(Sandbox):
    """One E2B sandbox; the workspace is ``/home/user``."""

    provider: E2BProvider

    def __init__(self, provider: E2BProvider, sdk: Any, manifest: Manifest) -> None:
        super().__init__(provider, sdk.sandbox_id, manifest, workspace=HOME)
        self.sdk = sdk
        """The SDK's ``AsyncSandbox`` (for what sandbank does not wrap)."""

    def _abs(self, rel: str) -> str:
        return self.workspace if rel == "." else f"{self.workspace}/{rel}"

    # -- commands --------------------------------------------------------------------------

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        e2b = _sdk()
        command = shell_join(
            request.argv, self._abs(request.cwd), request.env, workspace=self.workspace
        )

        async def on_stdout(text: str) -> None:
            await output.feed("stdout", text.encode())

        async def on_stderr(text: str) -> None:
            await output.feed("stderr", text.encode())

        with _errors(self.id):
            handle = await self.sdk.commands.run(
                command,
                background=True,
                stdin=request.stdin is not None,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                timeout=0,
                retain_output=False,
            )

        async def finish() -> int:
            if request.stdin is not None:
                data = request.stdin
                for start in range(0, len(data), _STDIN_CHUNK):
                    await self.sdk.commands.send_stdin(
                        handle.pid, data[start : start + _STDIN_CHUNK]
                    )
                await self.sdk.commands.close_stdin(handle.pid)
            try:
                return int((await handle.wait()).exit_code)
            except e2b.CommandExitException as exc:
                return int(exc.exit_code)

        try:
            code = await asyncio.wait_for(finish(), request.timeout)
        except TimeoutError:
            # Our own deadline: the SDK's would only end the stream. Kill the process itself.
            with contextlib.suppress(Exception):
                await handle.kill()
            with contextlib.suppress(Exception):
                await handle.disconnect()
            raise ExecTimeout(request.argv, request.timeout or 0, output.result(137)) from None
        except Exception as exc:
            raise map_e2b_error(exc, self.id) from exc
        result = output.result(code)
        error = cwd_error(code, result.stderr, request.cwd)
        if error is not None:
            raise error
        return result

    async def _run(self, argv: list[str]) -> ExecResult:
        """Run a helper command in the workspace (not through the public ``exec``)."""
        request = ExecRequest(argv=argv, cwd=".", env={}, stdin=None, timeout=None)
        return await self._exec(request, OutputCollector())

    async def _lstat(self, path: str) -> tuple[Kind, str | None] | None:
        e2b = _sdk()
        try:
            with _errors(self.id):
                entry = await self.sdk.files.get_info(path)
        except PathNotFound:
            return None
        if entry.type == e2b.FileType.SYMLINK:
            return "link", entry.symlink_target
        return ("dir" if entry.type == e2b.FileType.DIR else "file"), None

    async def _resolve(self, *paths: tuple[Literal["f", "n"], str]) -> list[Resolved]:
        """Where each path leads (``"f"``: follow a final symlink, ``"n"``: not)."""
        return list(
            await asyncio.gather(
                *(
                    resolve_path(rel, self.workspace, self._lstat, follow=how == "f")
                    for how, rel in paths
                )
            )
        )

    # -- files ------------------------------------------------------------------------------

    async def _read_file(self, path: str) -> bytes:
        # Reading has no side effect, so it starts at once and its bytes are used only
        # once the path is known to stay in the workspace.
        read = asyncio.ensure_future(self.sdk.files.read(self._abs(path), format="bytes"))
        try:
            (target,) = await self._resolve(("f", path))
            target.check(allow_missing=False)
            if target.kind == "dir":
                raise ConfigurationError(f"{path!r} is a directory; read a file")
        except BaseException:
            read.cancel()
            with contextlib.suppress(BaseException):
                await read
            raise
        with _errors(self.id, path):
            return bytes(await read)

    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        (target,) = await self._resolve(("f", path))
        target.check()
        if target.kind == "dir":
            raise ConfigurationError(f"{path!r} is a directory; remove it first")
        with _errors(self.id, path):
            await self.sdk.files.write(target.real, data, use_octet_stream=True)
        if mode is not None:
            await self._checked(["chmod", f"{mode:o}", "--", target.real], path)

    async def _checked(self, argv: list[str], path: str) -> None:
        result = await self._run(argv)
        if result.exit_code != 0:
            raise ConfigurationError(
                f"{argv[0]} {path!r} failed in E2B sandbox {self.id!r}: "
                f"{result.stderr.decode('utf-8', 'replace').strip()}"
            )

    async def _list_tree(self, path: str) -> list[FileEntry]:
        e2b = _sdk()
        (target,) = await self._resolve(("f", path))
        target.check(allow_missing=False)
        if target.kind != "dir":
            raise ConfigurationError(f"{path!r} is not a directory")
        with _errors(self.id, path):
            entries = await self.sdk.files.list(target.real, depth=_LIST_DEPTH)
        prefix = "" if path == "." else path + "/"
        base = target.real.rstrip("/") + "/"
        listed = []
        for entry in entries:
            rest = entry.path[len(base) :] if entry.path.startswith(base) else entry.name
            kind: Literal["file", "dir", "symlink", "other"] = (
                "symlink"
                if entry.type == e2b.FileType.SYMLINK
                else "dir"
                if entry.type == e2b.FileType.DIR
                else "file"
            )
            listed.append(
                FileEntry(
                    path=prefix + rest,
                    type=kind,
                    size=0 if kind == "dir" else int(entry.size),
                    mode=int(entry.mode) & 0o7777,
                    mtime=entry.modified_time.timestamp(),
                    link_target=entry.symlink_target if kind == "symlink" else None,
                )
            )
        return listed

    async def _remove(self, path: str) -> None:
        (target,) = await self._resolve(("n", path))
        target.check(allow_missing=False)
        with _errors(self.id, path):
            await self.sdk.files.remove(target.real)

    async def _mkdir(self, path: str) -> None:
        (target,) = await self._resolve(("f", path))
        target.check()
        if target.kind == "dir":
            return
        if target.kind != "missing":
            raise ConfigurationError(f"{path!r} exists and is not a directory")
        with _errors(self.id, path):
            await self.sdk.files.make_dir(target.real)

    # -- tar --------------------------------------------------------------------------------

    def _temp_name(self) -> str:
        return f"{self.workspace}/.sandbank-tar-{secrets.token_hex(8)}"

    async def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        if paths is not None and "." in paths:
            paths = None
        if paths is not None:
            for target in await self._resolve(*(("n", p) for p in paths)):
                target.check(allow_missing=False)
        temp = self._temp_name()
        try:
            result = await self._run(
                ["/bin/sh", "-c", _TAR_SCRIPT, "sh", self.workspace, temp, *(paths or [])]
            )
            if result.exit_code != 0:
                raise ProviderError(
                    f"tar in E2B sandbox {self.id!r} failed (exit {result.exit_code}): "
                    f"{result.stderr.decode('utf-8', 'replace').strip()}"
                )
            with _errors(self.id):
                stream = await self.sdk.files.read(temp, format="stream")
                async for chunk in stream:
                    yield bytes(chunk)
        finally:
            with contextlib.suppress(Exception):
                await self.sdk.files.remove(temp)

    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        from sandbank._streams import SyncReader

        reader = SyncReader(stream, asyncio.get_running_loop())
        spool, unchecked = await asyncio.to_thread(spool_checked_tar, reader)  # type: ignore[arg-type]
        with spool:
            for target in await self._resolve(*(("f", p) for p in sorted(unchecked))):
                target.check()
                if target.kind not in ("dir", "missing"):
                    raise ConfigurationError(
                        f"{target.rel!r} is not a directory, so the archive cannot extract into it"
                    )
            temp = self._temp_name()
            with _errors(self.id):
                await self.sdk.files.write(temp, spool, use_octet_stream=True)
        result = await self._run(["/bin/sh", "-c", _UNTAR_SCRIPT, "sh", self.workspace, temp])
        if result.exit_code != 0:
            raise ProviderError(
                f"extracting the archive in E2B sandbox {self.id!r} failed: "
                f"{result.stderr.decode('utf-8', 'replace').strip()}"
            )

    # -- lifecycle --------------------------------------------------------------------------

    async def _status(self) -> SandboxStatus:
        try:
            info = await self.provider._info(self.id)
        except SandboxNotFound:
            return SandboxStatus.LOST
        return info.status

    async def snapshot(self) -> str:
        """E2B's own snapshot of this sandbox (the ``native_snapshot`` capability): its id.

        A manifest naming it as the image for e2b (``{"image": {"hints": {"e2b": id}}}``)
        creates a sandbox from it. Snapshots outlive the sandbox; E2B bills their storage.
        """
        with _errors(self.id):
            info = await self.sdk.create_snapshot()
        return str(info.snapshot_id)

    async def _pause(self) -> None:
        with _errors(self.id):
            await self.sdk.pause()

    async def _resume(self) -> None:
        with _errors(self.id):
            self.sdk = await self.provider._connect(self.id)


class E2BProvider(Provider):
    """E2B sandboxes. Options: ``api_key`` (default ``E2B_API_KEY``), ``template``
    (default ``base``; ``manifest.image`` with an ``e2b`` hint overrides it), ``lifetime``
    (seconds before E2B ends the sandbox, default 3600), ``request_timeout`` and
    ``retries`` (the SDK's control-plane retries of 429 and 5xx)."""

    name = "e2b"
    extra = "e2b"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        template: str = "base",
        lifetime: int = 3600,
        request_timeout: float | None = None,
        retries: int | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__(**unknown)
        if lifetime <= 0:
            raise ConfigurationError(f"lifetime must be positive seconds, got {lifetime!r}")
        self.api_key = api_key
        self.template = template
        self.lifetime = lifetime
        self._params: dict[str, Any] = {}
        if request_timeout is not None:
            self._params["request_timeout"] = request_timeout
        if retries is not None:
            self._params["retries"] = retries
        self._ours: set[str] = set()  # ids known to be sandbank's (created or attached here)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(pause=True, native_snapshot=True, network_policy=True, image=True)

    @property
    def isolation(self) -> str:
        return "E2B cloud: a Firecracker microVM per sandbox"

    def _opts(self) -> dict[str, Any]:
        key = self.api_key or os.environ.get("E2B_API_KEY")
        if not key:
            raise ConfigurationError(
                "the e2b provider needs an API key: set E2B_API_KEY (or pass api_key=...)"
            )
        return {"api_key": key, **self._params}

    async def check(self) -> None:
        _sdk()
        self._opts()

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> E2BSandbox:
        manifest = self.validate_manifest(manifest)
        e2b = _sdk()
        opts = self._opts()
        template = manifest.image.for_provider(self.name) or self.template
        with _errors():
            sdk = await e2b.AsyncSandbox.create(
                template=template,
                timeout=self.lifetime,
                metadata={METADATA_KEY: "1", MANIFEST_KEY: manifest.to_json()},
                envs=dict(manifest.env),
                allow_internet_access=manifest.network,
                **opts,
            )
        box = E2BSandbox(self, sdk, manifest)
        self._ours.add(box.id)
        try:
            if manifest.workdir != ".":
                await box.mkdir(manifest.workdir)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.destroy(box.id)
            raise
        log.info("created E2B sandbox %s from template %s", box.id, template)
        return box

    async def _connect(self, sandbox_id: str) -> Any:
        e2b = _sdk()
        with _errors():
            try:
                # Each attach or resume gives the sandbox a full lifetime again.
                return await e2b.AsyncSandbox.connect(
                    sandbox_id, timeout=self.lifetime, **self._opts()
                )
            except (e2b.SandboxNotFoundException, e2b.NotFoundException):
                raise SandboxNotFound(self.name, sandbox_id) from None

    async def attach(self, sandbox_id: str) -> E2BSandbox:
        """A handle on an existing sandbox; a paused one is resumed (E2B's ``connect``)."""
        info = await self._sdk_info(sandbox_id)
        sdk = await self._connect(sandbox_id)
        self._ours.add(sandbox_id)
        return E2BSandbox(self, sdk, Manifest.parse(json.loads(info.metadata[MANIFEST_KEY])))

    async def _sdk_info(self, sandbox_id: str) -> Any:
        e2b = _sdk()
        with _errors():
            try:
                info = await e2b.AsyncSandbox.get_info(sandbox_id, **self._opts())
            except (e2b.SandboxNotFoundException, e2b.NotFoundException):
                raise SandboxNotFound(self.name, sandbox_id) from None
        if info.metadata.get(METADATA_KEY) != "1":
            raise SandboxNotFound(self.name, sandbox_id)  # not one of sandbank's
        return info

    def _info_of(self, info: Any) -> SandboxInfo:
        state = str(getattr(info.state, "value", info.state))
        return SandboxInfo(
            id=info.sandbox_id,
            provider=self.name,
            status=SandboxStatus.PAUSED if state == "paused" else SandboxStatus.RUNNING,
            created_at=info.started_at.timestamp() if info.started_at else time.time(),
            image=info.template_id,
            isolation=self.isolation,
            workspace=HOME,
            labels={
                k: v for k, v in info.metadata.items() if k not in (METADATA_KEY, MANIFEST_KEY)
            },
        )

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        return self._info_of(await self._sdk_info(sandbox_id))

    async def list(self) -> builtins.list[SandboxInfo]:
        e2b = _sdk()
        infos: builtins.list[SandboxInfo] = []
        with _errors():
            paginator = e2b.AsyncSandbox.list(
                query=e2b.SandboxQuery(metadata={METADATA_KEY: "1"}), **self._opts()
            )
            while paginator.has_next:
                infos.extend(self._info_of(item) for item in await paginator.next_items())
        return infos

    async def destroy(self, sandbox_id: str) -> None:
        e2b = _sdk()
        if sandbox_id not in self._ours:
            await self._sdk_info(sandbox_id)  # refuses a sandbox that is not sandbank's
        with _errors():
            killed = await e2b.AsyncSandbox.kill(sandbox_id, **self._opts())
        self._ours.discard(sandbox_id)
        if not killed:
            raise SandboxNotFound(self.name, sandbox_id)
        log.info("destroyed E2B sandbox %s", sandbox_id)
