"""The ``modal`` provider: one Modal Sandbox per sandbank sandbox, on the official SDK.

Commands go through ``Sandbox.exec`` (argv as is, bytes with ``text=False``, stdout and
stderr apart, stdin streamed). Files and tar run as commands too (``cat``, ``find``,
``tar``; GNU coreutils in the image): the SDK's ``filesystem`` API is itself an exec of
Modal's ``modal-sandbox-fs-tools`` binary, one per call as well, but it cannot refuse a path
that leaves the workspace through a symlink, and a tar stream needs an exec anyway. Native:
``ModalSandbox.snapshot_filesystem()`` (an image id to create from) and ``tunnels()``. The
manifest rides along in the sandbox's tags (so ``attach`` restores it), and ``list`` finds
sandbank's sandboxes by the tag ``sandbank=1`` in the provider's app.

Options: ``app`` (the Modal app the sandboxes belong to, made if missing), ``image``
(a registry tag or an ``im-`` image id, used when the manifest names none), ``timeout``
(the sandbox's lifetime in seconds), ``ports`` (container ports to expose through Modal's
encrypted tunnels: ``ModalSandbox.tunnels()``), ``token_id``/``token_secret`` (default:
``MODAL_TOKEN_ID``/``MODAL_TOKEN_SECRET`` or the Modal profile). The endpoint is the
SDK's: ``MODAL_SERVER_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, NoReturn

import grpclib.exceptions
import modal
import modal.exception
from grpclib import GRPCError, Status

from sandbank._streams import SyncReader
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
from sandbank.manifest import Manifest
from sandbank.providers._remote import cwd_error, shell_join, spool_checked_tar
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
from sandbank.providers.process import sandbox_env

__all__ = ["ModalProvider", "ModalSandbox", "map_modal_error"]

WORKSPACE = "/workspace"
DEFAULT_IMAGE = "debian:bookworm-slim"
ISOLATION = "Modal Sandbox (a gVisor container on Modal's workers)"
TAG = "sandbank"
# The manifest (env included) is a tag value, readable by whoever can list the app's
# sandboxes; how long a tag value Modal accepts is not documented (guess: a few KiB).
TAG_MANIFEST = "sandbank.manifest"
TAG_CREATED = "sandbank.created"
TAG_IMAGE = "sandbank.image"
CREDENTIALS = "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
CHUNK = 1 << 20
# Status codes the SDK already retried that are still worth retrying later.
RETRYABLE = {
    Status.UNAVAILABLE,
    Status.RESOURCE_EXHAUSTED,
    Status.DEADLINE_EXCEEDED,
    Status.INTERNAL,
    Status.UNKNOWN,
    Status.ABORTED,
    Status.DATA_LOSS,
}

# -- the one exception boundary ---------------------------------------------------------


def map_modal_error(
    exc: BaseException,
    *,
    sandbox_id: str | None = None,
    lost: bool = False,
    image: str | None = None,
) -> SandbankError:
    """The sandbank error for an exception of the Modal SDK or its transport (grpclib).

    ``lost``: the call was on a sandbox this handle had (a missing or finished sandbox is
    then ``SandboxLost``, not ``SandboxNotFound``). ``image``: the call created a sandbox
    from this image (a missing one is then the caller's ``ConfigurationError``).
    """
    where = f" (sandbox {sandbox_id!r})" if sandbox_id else ""
    ex = modal.exception
    if isinstance(exc, SandbankError):
        return exc
    if isinstance(exc, ex.AuthError | ex.PermissionDeniedError) or _status(exc) in (
        Status.UNAUTHENTICATED,
        Status.PERMISSION_DENIED,
    ):
        return ConfigurationError(
            f"Modal refused the credentials{where}: {exc}; check {CREDENTIALS} "
            f"(or the profile in ~/.modal.toml) and the workspace they belong to"
        )
    if isinstance(exc, ex.NotFoundError | ex.SandboxTerminatedError) or _status(exc) in (
        Status.NOT_FOUND,
    ):
        if image is not None:
            return ConfigurationError(
                f"Modal has no image {image!r} ({exc}); name a registry image or an im- id "
                f"from snapshot_filesystem() in the manifest's image (hint 'modal')"
            )
        if sandbox_id and lost:
            return SandboxLost(sandbox_id, f"Modal no longer has it ({exc})")
        if sandbox_id:
            return SandboxNotFound("modal", sandbox_id)
        return ProviderError(f"Modal: not found: {exc}")
    if isinstance(exc, ex.SandboxTimeoutError):
        return SandboxLost(sandbox_id or "?", f"its Modal lifetime ran out ({exc})")
    if isinstance(exc, ex.ResourceExhaustedError) or _status(exc) == Status.RESOURCE_EXHAUSTED:
        return ProviderError(
            f"Modal is rate limiting or out of capacity{where}: {exc}; retry later",
            retryable=True,
        )
    if isinstance(
        exc,
        ex.InvalidError
        | ex.AlreadyExistsError
        | ex.UnimplementedError
        | ex.RequestSizeError
        | ex.SerializationError
        | ex.DeserializationError
        | ex.VersionError
        | ex.ClientClosed,
    ) or _status(exc) in (Status.INVALID_ARGUMENT, Status.FAILED_PRECONDITION):
        return ConfigurationError(f"Modal rejected the request{where}: {exc}")
    if isinstance(exc, ex.SandboxFilesystemError):
        return ProviderError(f"Modal filesystem call failed{where}: {exc}")
    if isinstance(exc, ex.ImageBuildError | ex.SnapshotCreationError):
        return ProviderError(f"Modal could not build the image{where}: {exc}")
    if (
        isinstance(
            exc,
            (
                ex.ConnectionError,
                ex.InternalError,
                ex.ServiceError,
                ex.DataLossError,
                ex.TimeoutError,
                ex.InternalFailure,
                TimeoutError,
                OSError,
                grpclib.exceptions.StreamTerminatedError,
            ),
        )
        or _status(exc) in RETRYABLE
    ):
        return ProviderUnavailable(
            f"Modal could not be reached or failed inside{where}: {exc!r}; "
            f"retry (check MODAL_SERVER_URL and the network if it persists)"
        )
    return ProviderError(f"Modal call failed{where}: {exc!r}")


def _status(exc: BaseException) -> Status | None:
    """The status of a raw grpclib error (the SDK's own errors are matched by class)."""
    if isinstance(exc, GRPCError) and type(exc).__module__.startswith("grpclib"):
        return exc.status
    return None


MODAL_ERRORS: tuple[type[BaseException], ...] = (
    modal.exception.Error,
    GRPCError,
    grpclib.exceptions.StreamTerminatedError,
    OSError,
    TimeoutError,
)


@contextlib.contextmanager
def modal_errors(
    sandbox_id: str | None = None, *, lost: bool = False, image: str | None = None
) -> Iterator[None]:
    try:
        yield
    except MODAL_ERRORS as exc:
        raise map_modal_error(exc, sandbox_id=sandbox_id, lost=lost, image=image) from exc


# -- files as commands (GNU coreutils, findutils and tar in the image) -------------------

# Each script gets the workspace root as $1 and a root-relative path as $2. A path is
# resolved with `realpath -m` and must stay under the root; a refusal prints one line
# "sandbank-fs: KIND" on stderr and exits 96.
_PRELUDE = r"""
fail() { printf 'sandbank-fs: %s\n' "$1" >&2; exit 96; }
root=$(realpath -e -- "$1") || fail missing
inside() { case "$1/" in "$root"/*) return 0;; esac; return 1; }
"""
_RESOLVE = _PRELUDE + r'p=$(realpath -m -- "$1/$2") && inside "$p" || fail escapes' + "\n"
# the path itself unresolved (remove a symlink, not its target), its parent resolved
_PARENT = (
    _PRELUDE
    + r"""d=$(realpath -m -- "$(dirname -- "$1/$2")") && inside "$d" || fail escapes
p="$d/$(basename -- "$2")"
"""
)
_SCRIPTS = {
    "read": _RESOLVE
    + r"""[ -e "$p" ] || fail missing
[ -d "$p" ] && fail isdir
exec cat -- "$p"
""",
    # $3: the mode in octal, or "" to keep an existing file's (0644 for a new one)
    "write": _RESOLVE
    + r"""[ -d "$p" ] && fail isdir
d=$(dirname -- "$p")
mkdir -p -- "$d" 2>/dev/null || fail notdir
m=$3; [ -n "$m" ] || m=$(stat -c %a -- "$p" 2>/dev/null) || m=644
t=$(mktemp -- "$d/.sandbank-write.XXXXXX") || fail notdir
cat > "$t" && chmod "$m" -- "$t" && mv -f -- "$t" "$p" || { rm -f -- "$t"; exit 1; }
""",
    "mkdir": _RESOLVE
    + r"""[ -e "$p" ] && { [ -d "$p" ] || fail notdir; exit 0; }
mkdir -p -- "$p" 2>/dev/null || fail notdir
""",
    "remove": _PARENT
    + r"""[ -e "$p" ] || [ -L "$p" ] || fail missing
rm -rf -- "$p"
""",
    "list": _RESOLVE
    + r"""[ -e "$p" ] || fail missing
[ -d "$p" ] || fail notdir
exec find "$p" -mindepth 1 -printf '%y\0%m\0%s\0%T@\0%P\0%l\0'
""",
}
# tar with the members named relative to the root: the top-level entries, or the paths given
_SCRIPTS["export"] = (
    _PRELUDE
    + r"""shift 2
cd -- "$root" || fail missing
for q in "$@"; do
  d=$(realpath -m -- "$(dirname -- "$q")") && inside "$d" || fail escapes
  [ -e "$q" ] || [ -L "$q" ] || fail "missing $q"
done
if [ $# -eq 0 ]; then
  find . -mindepth 1 -maxdepth 1 -printf '%P\0' | tar --null -T - -cf -
  exit
fi
exec tar -cf - -- "$@"
"""
)
_SCRIPTS["import"] = _PRELUDE + r'exec tar -C "$root" -xpf - --no-same-owner' + "\n"
# stdin: NUL-terminated root-relative directories, each of which must resolve inside
_SCRIPTS["parents"] = (
    _PRELUDE
    + r"""while IFS= read -r -d '' q; do
  p=$(realpath -m -- "$root/$q") && inside "$p" || fail "escapes $q"
done
"""
)
_REFUSAL = 96


class ModalSandbox(Sandbox):
    """A handle on one Modal Sandbox."""

    provider: ModalProvider

    def __init__(self, provider: ModalProvider, sb: Any, manifest: Manifest) -> None:
        super().__init__(provider, sb.object_id, manifest, workspace=WORKSPACE)
        self.sb = sb

    # -- commands --------------------------------------------------------------------------

    async def _start(
        self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float | None = None
    ) -> Any:
        with modal_errors(self.id, lost=True):
            return await self.sb.exec.aio(
                *argv,
                workdir=WORKSPACE,
                env=env,
                timeout=math.ceil(timeout) if timeout else None,
                text=False,
            )

    async def _run(
        self,
        argv: list[str],
        output: OutputCollector,
        *,
        stdin: bytes | AsyncIterator[bytes] | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> int | None:
        """Run ``argv``, feed its output to ``output``; the exit code, or ``None`` when
        ``timeout`` ran out (Modal's ``wait()`` then returns -1, and Modal kills the command)."""
        proc = await self._start(argv, env=env, timeout=timeout)

        async def pump(reader: Any, kind: Literal["stdout", "stderr"]) -> None:
            async for chunk in reader:
                await output.feed(kind, chunk)

        async def feed() -> None:
            if isinstance(stdin, bytes):
                for i in range(0, len(stdin), CHUNK):
                    proc.stdin.write(stdin[i : i + CHUNK])
                    await proc.stdin.drain.aio()
            elif stdin is not None:
                async for chunk in stdin:
                    proc.stdin.write(chunk)
                    await proc.stdin.drain.aio()
            proc.stdin.write_eof()
            await proc.stdin.drain.aio()

        with modal_errors(self.id, lost=True):
            pumps = [
                asyncio.ensure_future(pump(proc.stdout, "stdout")),
                asyncio.ensure_future(pump(proc.stderr, "stderr")),
            ]
            feeder = asyncio.ensure_future(feed())
            waiter = asyncio.ensure_future(proc.wait.aio())
            tasks = [*pumps, feeder, waiter]
            try:
                # a failing stream or stdin must not leave us waiting for the exit code
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                if not waiter.done():
                    for task in (*pumps, feeder):
                        if task.done() and task.exception() is not None:
                            task.result()
                code = int(await waiter)
                if code == -1:
                    # the streams end when Modal kills the command; do not wait forever
                    await asyncio.wait(pumps, timeout=2)
                    return None
                await asyncio.gather(*pumps)
                return code  # stdin a command left unread when it exited does not matter
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        # Modal takes argv; the shell only checks the cwd (symlinks too) and execs argv as is
        script = shell_join(request.argv, cwd=f"{WORKSPACE}/{request.cwd}", workspace=WORKSPACE)
        env = sandbox_env(request.env, home=self.workspace)
        seen = _Peek(output)
        code = await self._run(
            ["/bin/sh", "-c", script], seen, stdin=request.stdin, env=env, timeout=request.timeout
        )
        if code is None:
            raise ExecTimeout(request.argv, request.timeout or 0, output.result(137))
        error = cwd_error(code, seen.result(code).stderr, request.cwd)
        if error is not None:
            raise error
        return output.result(code)

    def _script(self, name: str, path: str, *args: str) -> list[str]:
        return ["/bin/bash", "-c", _SCRIPTS[name], "sandbank", WORKSPACE, path, *args]

    async def _call(
        self, name: str, path: str, *args: str, stdin: bytes | AsyncIterator[bytes] | None = None
    ) -> bytes:
        """Run a file script; its stdout, or the sandbank error its refusal names."""
        output = OutputCollector(limit=1 << 62)
        code = await self._run(self._script(name, path, *args), output, stdin=stdin)
        result = output.result(code if code is not None else -1)
        if code == 0:
            return result.stdout
        if code == _REFUSAL:
            _raise_refusal(result.stderr, path)
        raise ProviderError(
            f"{name} of {path!r} failed in Modal sandbox {self.id!r} (exit {code}): "
            f"{result.stderr.decode(errors='replace').strip()}"
        )

    # -- files -----------------------------------------------------------------------------

    async def _read_file(self, path: str) -> bytes:
        return await self._call("read", path)

    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        await self._call("write", path, "" if mode is None else f"{mode:o}", stdin=data)

    async def _mkdir(self, path: str) -> None:
        await self._call("mkdir", path)

    async def _remove(self, path: str) -> None:
        await self._call("remove", path)

    async def _list_tree(self, path: str) -> list[FileEntry]:
        fields = (await self._call("list", path)).split(b"\0")
        prefix = "" if path == "." else f"{path}/"
        entries = []
        for i in range(0, len(fields) - 1, 6):
            kind, mode, size, mtime, name, target = fields[i : i + 6]
            is_dir = kind == b"d"
            entries.append(
                FileEntry(
                    path=prefix + os.fsdecode(name),
                    type=_KINDS.get(kind, "other"),
                    size=0 if is_dir else int(size),
                    mode=int(mode, 8),
                    mtime=float(mtime),
                    link_target=os.fsdecode(target) if kind == b"l" else None,
                )
            )
        return entries

    # -- tar -------------------------------------------------------------------------------

    async def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
        collector = _QueueCollector(queue)

        async def produce() -> int | None:
            try:
                return await self._run(self._script("export", ".", *(paths or [])), collector)
            finally:
                await queue.put(None)

        task = asyncio.ensure_future(produce())
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            code = await task
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if code == _REFUSAL:
            _raise_refusal(collector.stderr, " ".join(paths or ["."]))
        if code != 0:
            raise ProviderError(
                f"tar failed in Modal sandbox {self.id!r} (exit {code}): "
                f"{collector.stderr.decode(errors='replace').strip()}"
            )

    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        # Every member checked before any byte reaches the sandbox; the parents the archive
        # does not make are resolved in the sandbox in one command (symlinks already there).
        reader = SyncReader(stream, asyncio.get_running_loop())
        spool, unchecked = await asyncio.to_thread(spool_checked_tar, reader)  # type: ignore[arg-type]
        with spool:
            if unchecked:
                listed = "".join(f"{rel}\0" for rel in sorted(unchecked)).encode()
                await self._call("parents", ".", stdin=listed)
            await self._call("import", ".", stdin=_read_chunks(spool))

    # -- Modal's own capabilities ----------------------------------------------------------

    async def snapshot_filesystem(self, timeout: int = 55) -> str:
        """Snapshot the whole filesystem with Modal's ``snapshot_filesystem``: an image id
        (``im-...``). Create a sandbox from it with the manifest image hint
        ``{"modal": image_id}``; it starts with this sandbox's files."""
        self._ensure_open()
        with modal_errors(self.id, lost=True):
            image = await self.sb.snapshot_filesystem.aio(timeout=timeout)
        return str(image.object_id)

    async def tunnels(self, timeout: int = 50) -> dict[int, str]:
        """The public URL of each port given to the provider as ``ports`` (Modal's
        ``encrypted_ports``), by container port."""
        self._ensure_open()
        with modal_errors(self.id, lost=True):
            found = await self.sb.tunnels.aio(timeout=timeout)
        return {port: tunnel.url for port, tunnel in found.items()}

    async def _port_url(self, port: int) -> str:
        urls = await self.tunnels()
        if port not in urls:
            raise ProviderError(
                f"Modal has no tunnel for port {port} of sandbox {self.id!r}; list it in the "
                f"manifest's ports (or the provider's ports option) when creating the sandbox"
            )
        return urls[port]

    # -- lifecycle -------------------------------------------------------------------------

    async def _status(self) -> SandboxStatus:
        with modal_errors(self.id, lost=True):
            try:
                code = await self.sb.poll.aio()
            except modal.exception.NotFoundError:
                return SandboxStatus.LOST
        return SandboxStatus.RUNNING if code is None else SandboxStatus.LOST

    async def _close(self) -> None:
        if self.provider._known.get(self.id) is self.sb:
            del self.provider._known[self.id]  # a detached handle cannot terminate
        with contextlib.suppress(Exception):
            await self.sb.detach.aio()


class _Peek(OutputCollector):
    """Passes output on, keeping its start, where ``shell_join``'s refusal would be."""

    def __init__(self, inner: OutputCollector) -> None:
        super().__init__(limit=256)
        self.inner = inner

    async def feed(self, stream: Literal["stdout", "stderr"], data: bytes) -> None:
        await super().feed(stream, data)
        await self.inner.feed(stream, data)


class _QueueCollector(OutputCollector):
    def __init__(self, queue: asyncio.Queue[bytes | None]) -> None:
        super().__init__(limit=0)
        self.queue = queue
        self.stderr = b""

    async def feed(self, stream: Literal["stdout", "stderr"], data: bytes) -> None:
        if stream == "stdout":
            await self.queue.put(data)
        elif len(self.stderr) < 4096:
            self.stderr += data


_KINDS: dict[bytes, Literal["file", "dir", "symlink"]] = {
    b"f": "file",
    b"d": "dir",
    b"l": "symlink",
}


def _raise_refusal(stderr: bytes, path: str) -> NoReturn:
    kind = stderr.decode(errors="replace").removeprefix("sandbank-fs: ").split("\n")[0]
    if kind.startswith("missing"):
        raise PathNotFound(kind.removeprefix("missing").strip() or path)
    if kind.startswith("escapes"):
        raise WorkspacePathError(kind.removeprefix("escapes").strip() or path)
    if kind == "isdir":
        raise ConfigurationError(f"{path!r} is a directory; give the path of a file")
    if kind == "notdir":
        raise ConfigurationError(f"{path!r} (or one of its parents) is a file, not a directory")
    raise ProviderError(f"file operation on {path!r} failed: {kind}")


async def _read_chunks(spool: Any) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(spool.read, CHUNK):
        yield chunk


# -- the provider ------------------------------------------------------------------------


@contextlib.contextmanager
def _forget_on_error(cache: dict[str, Any], key: str) -> Iterator[None]:
    """Drop ``cache[key]`` if the block fails (a half-built image is not kept)."""
    try:
        yield
    except BaseException:
        cache.pop(key, None)
        raise


class ModalProvider(Provider):
    """Modal Sandboxes through the ``modal`` SDK (``pip install 'sandbank[modal]'``)."""

    name = "modal"
    extra = "modal"

    def __init__(
        self,
        *,
        app: str = "sandbank",
        image: str = DEFAULT_IMAGE,
        timeout: int = 3600,
        ports: list[int] | None = None,
        token_id: str | None = None,
        token_secret: str | None = None,
    ) -> None:
        super().__init__()
        self.app_name = app
        self.image = image
        self.timeout = timeout
        self.ports = list(ports or [])
        self._token_id = token_id
        self._token_secret = token_secret
        self._client: Any = None
        self._app: Any = None
        self._lock = asyncio.Lock()
        self._known: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._images: dict[str, Any] = {}
        """The SDK's handles of the sandboxes this provider made or attached, while in use."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            network_policy=True, resource_limits=True, image=True, native_snapshot=True, ports=True
        )

    @property
    def isolation(self) -> str:
        return ISOLATION

    def _credentials(self) -> tuple[str, str]:
        config = modal.config.config
        token_id = self._token_id or config.get("token_id")
        token_secret = self._token_secret or config.get("token_secret")
        if not token_id or not token_secret:
            raise ConfigurationError(
                f"no Modal credentials: set {CREDENTIALS} (from `modal token new`), "
                f"or pass token_id= and token_secret= to the modal provider"
            )
        return token_id, token_secret

    async def _connect(self) -> tuple[Any, Any]:
        async with self._lock:
            if self._client is None:
                token_id, token_secret = self._credentials()
                with modal_errors():
                    client = await modal.Client.from_credentials.aio(token_id, token_secret)
                    try:
                        self._app = await modal.App.lookup.aio(
                            self.app_name, create_if_missing=True, client=client
                        )
                    except BaseException:
                        await client.close.aio()
                        raise
                self._client = client
            return self._client, self._app

    async def check(self) -> None:
        await self._connect()

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> ModalSandbox:
        manifest = self.validate_manifest(manifest)
        if manifest.resources.pids is not None:
            raise NotSupported(
                self.name, "resources.pids", "Modal Sandboxes have no process limit; remove it"
            )
        client, app = await self._connect()
        image_name = manifest.image.for_provider(self.name, self.image) or self.image
        image = self._images.get(image_name)
        if image is None:
            # One object per name: once the first create has built (hydrated) it, the SDK
            # does not ask the server for the image again.
            image = (
                modal.Image.from_id(image_name)
                if image_name.startswith("im-")
                else modal.Image.from_registry(image_name)
            )
            self._images[image_name] = image
        tags = {
            TAG: "1",
            TAG_MANIFEST: manifest.without_contents().to_json(),
            TAG_CREATED: f"{time.time():.3f}",
            TAG_IMAGE: image_name,
        }
        resources = manifest.resources
        with modal_errors(image=image_name), _forget_on_error(self._images, image_name):
            sb = await modal.Sandbox.create.aio(
                "sleep",
                "infinity",
                app=app,
                image=image,
                client=client,
                timeout=self.timeout,
                workdir=WORKSPACE,
                cpu=resources.cpu,
                memory=math.ceil(resources.memory / 2**20) if resources.memory else None,
                block_network=not manifest.network,
                encrypted_ports=sorted({*self.ports, *manifest.ports}),
                tags=tags,
            )
        self._known[sb.object_id] = sb
        box = ModalSandbox(self, sb, manifest)
        if manifest.workdir == ".":
            return box  # guess: Modal makes `workdir` (WORKSPACE) as Docker makes WORKDIR
        try:
            await box._call("mkdir", manifest.workdir)
        except BaseException:
            with contextlib.suppress(Exception):
                await sb.terminate.aio()
            raise
        return box

    async def _running(self, sandbox_id: str) -> Any:
        """The SDK's sandbox; ``SandboxNotFound`` unless it exists and runs."""
        client, _ = await self._connect()
        with modal_errors(sandbox_id):
            try:
                sb = await modal.Sandbox.from_id.aio(sandbox_id, client=client)
            except (modal.exception.InvalidError, modal.exception.NotFoundError):
                raise SandboxNotFound(self.name, sandbox_id) from None
            if sb.returncode is not None:  # from_id read the result: it has finished
                raise SandboxNotFound(self.name, sandbox_id)
        return sb

    async def _lookup(self, sandbox_id: str) -> tuple[Any, dict[str, str]]:
        """The SDK's sandbox and its tags; ``SandboxNotFound`` unless it runs and is ours."""
        sb = await self._running(sandbox_id)
        with modal_errors(sandbox_id):
            tags = await sb.get_tags.aio()
        if tags.get(TAG) != "1":
            raise SandboxNotFound(self.name, sandbox_id)
        return sb, tags

    async def attach(self, sandbox_id: str) -> ModalSandbox:
        sb, tags = await self._lookup(sandbox_id)
        self._known[sandbox_id] = sb
        return ModalSandbox(self, sb, Manifest.from_json(tags.get(TAG_MANIFEST, "{}")))

    async def list(self) -> list[SandboxInfo]:
        client, app = await self._connect()
        infos = []
        with modal_errors():
            async for sb in modal.Sandbox.list.aio(
                app_id=app.app_id, tags={TAG: "1"}, client=client
            ):
                with contextlib.suppress(SandboxNotFound):
                    infos.append(await self._info(sb.object_id))
        return infos

    async def destroy(self, sandbox_id: str) -> None:
        # The id is explicit, so a running Modal sandbox not made by sandbank is destroyed
        # too (list shows only sandbank's); one RPC less than checking its tags. A handle this
        # provider holds is terminated at once, without looking the sandbox up first: a second
        # destroy through this provider raises (the handle is forgotten), but one that
        # finished behind its back is terminated again without an error, as the SDK does not
        # say whether it had already finished.
        sb = self._known.pop(sandbox_id, None) or await self._running(sandbox_id)
        with modal_errors(sandbox_id):
            await sb.terminate.aio()

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        _, tags = await self._lookup(sandbox_id)
        return SandboxInfo(
            id=sandbox_id,
            provider=self.name,
            status=SandboxStatus.RUNNING,
            created_at=float(tags[TAG_CREATED]) if TAG_CREATED in tags else None,
            image=tags.get(TAG_IMAGE),
            isolation=ISOLATION,
            workspace=WORKSPACE,
            labels={k: v for k, v in tags.items() if k != TAG_MANIFEST},
        )

    async def aclose(self) -> None:
        self._images.clear()  # hydrated through the client that closes now
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close.aio()
