"""The ``docker`` provider: one labelled container per sandbox, driven by the docker SDK.

Commands run through the exec API on a hijacked socket (stdout and stderr demultiplexed as
they arrive); files move through the archive API; paths are checked against symlinks with
the archive stat API, so no file operation runs a command except ``remove``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import functools
import io
import json
import logging
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, TypeVar

import docker
import docker.errors
import requests

from sandbank._streams import CHUNK, PipeClosed, SyncReader, ThreadPipe, stream_from_thread
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
from sandbank.manifest import Manifest
from sandbank.providers._tar import TarGuard, member_path, strip_top_component
from sandbank.providers.base import (
    WORKSPACE,
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

__all__ = [
    "DEFAULT_IMAGE",
    "LABEL",
    "WORKSPACE",
    "DockerProvider",
    "DockerSandbox",
    "docker_errors",
    "map_docker_error",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_IMAGE = "python:3.12-slim"
LABEL = "sandbank.sandbox"
LABEL_ID = "sandbank.id"
LABEL_CREATED = "sandbank.created"
LABEL_IMAGE = "sandbank.image"
LABEL_MANIFEST = "sandbank.manifest"
"""The manifest without ``env`` values (labels show in every listing), secrets as references."""
LABEL_ENV = "sandbank.env"
"""The names of the manifest's ``env``, whose values are in the container's ``Config.Env``."""
NAME_PREFIX = "sandbank-"

_HINT = (
    "start the Docker engine (dockerd), or point DOCKER_HOST (or the provider's base_url=) "
    "at a running one"
)
# PID 1 of every sandbox: idles, reaps orphans (`wait`) and exits at once on SIGTERM.
_KEEP_ALIVE = "trap 'exit 0' TERM INT; while :; do sleep 86400 & wait $!; done"
# A command with a timeout records its pid so a second exec can kill its process tree.
_PIDFILE = "/tmp/.sandbank-exec-{token}.pid"
_TIMED_WRAPPER = 'f=$1; shift; { echo $$ > "$f"; } 2>/dev/null; exec "$@"'
# Kills the process tree rooted at the pid file, plus every process whose environment
# carries the exec's marker (that also catches daemonized children, where grep exists).
_KILL_SCRIPT = r"""
t=$1; f=/tmp/.sandbank-exec-$t.pid; self=$$; pids=" "
if [ -r "$f" ] && read -r root < "$f"; then pids=" $root "; kill -STOP "$root" 2>/dev/null; fi
g=""; command -v grep >/dev/null 2>&1 && g=1
for round in 1 2 3; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$self" ] && continue
    case "$pids" in *" $p "*) continue;; esac
    hit=""
    if read -r st < "$d/stat" 2>/dev/null; then
      set -- ${st##*) }
      case "$pids" in *" $2 "*) hit=1;; esac
    fi
    if [ -z "$hit" ] && [ -n "$g" ] && grep -qsF "SANDBANK_EXEC=$t" "$d/environ"; then hit=1; fi
    if [ -n "$hit" ]; then pids="$pids$p "; kill -STOP "$p" 2>/dev/null; fi
  done
done
[ -n "${pids# }" ] && kill -KILL $pids 2>/dev/null
rm -f "$f" 2>/dev/null
exit 0
"""
# One exec lists a tree: GNU find, else Python, else exit 99 (then the tar headers are read).
_LIST_SCRIPT = r"""
cd "$1" || exit 3
if find . -maxdepth 0 -printf '' >/dev/null 2>&1; then
  exec find . -mindepth 1 -printf '%y %s %m %T@ %P\0%l\0'
fi
for py in python3 python; do
  command -v "$py" >/dev/null 2>&1 && exec "$py" -c "$2"
done
exit 99
"""
_LIST_PY = r"""
import os, stat, sys
out = sys.stdout.buffer
for root, dirs, files in os.walk(b"."):
    for name in dirs + files:
        full = os.path.join(root, name)
        st = os.lstat(full)
        m = st.st_mode
        kind = b"d" if stat.S_ISDIR(m) else b"f" if stat.S_ISREG(m) else b"o"
        kind = b"l" if stat.S_ISLNK(m) else kind
        link = os.readlink(full) if kind == b"l" else b""
        sec, ns = divmod(st.st_mtime_ns, 10**9)
        perm = stat.S_IMODE(m)
        out.write(b"%s %d %o %d.%09d %s\0" % (kind, st.st_size, perm, sec, ns, full[2:]))
        out.write(link + b"\0")
"""
_OCI_FAILURE = b"OCI runtime exec failed"
_CAT_SCRIPT = 'p=$(printf "$1x"); exec cat -- "${p%x}"'
_IDENTITY = {"Accept-Encoding": "identity"}  # the engine would gzip archives otherwise
_KILL_GRACE = 2.0
_RECV = 256 * 1024
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_SETUID, _GO_SETGID, _GO_STICKY = 1 << 23, 1 << 22, 1 << 20
_TYPES: dict[str, Literal["file", "dir", "symlink", "other"]] = {
    "f": "file",
    "d": "dir",
    "l": "symlink",
}


# -- the one exception boundary -------------------------------------------------------------


def map_docker_error(
    exc: BaseException,
    *,
    sandbox_id: str | None = None,
    lost: bool = False,
    path: str | None = None,
    image: str | None = None,
) -> SandbankError:
    """The sandbank error for a docker SDK (or transport) exception.

    ``sandbox_id`` names the sandbox the call was about; ``lost`` says we held it (so a
    vanished container is ``SandboxLost``, not ``SandboxNotFound``); ``path`` marks an
    archive call, where a 404 about a file is ``PathNotFound``; ``image`` names the image.
    """
    if isinstance(exc, SandbankError):
        return exc
    if isinstance(exc, docker.errors.APIError):
        return _map_api_error(exc, sandbox_id=sandbox_id, lost=lost, path=path, image=image)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ProviderUnavailable(f"cannot reach the Docker engine ({exc}); {_HINT}")
    if isinstance(exc, requests.exceptions.Timeout):
        return ProviderError(
            f"the Docker engine did not answer in time ({exc}); retry, or raise the "
            f"provider's timeout= option",
            retryable=True,
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return ProviderError(f"talking to the Docker engine failed ({exc}); retry", retryable=True)
    if isinstance(
        exc,
        docker.errors.TLSParameterError
        | docker.errors.InvalidConfigFile
        | docker.errors.ContextException
        | docker.errors.MissingContextParameter
        | docker.errors.InvalidVersion,
    ):
        return ProviderUnavailable(
            f"the Docker client is misconfigured ({exc}); fix DOCKER_HOST, DOCKER_TLS_VERIFY, "
            f"DOCKER_CERT_PATH or the docker context",
            retryable=False,
        )
    if isinstance(
        exc,
        docker.errors.InvalidArgument
        | docker.errors.InvalidRepository
        | docker.errors.NullResource,
    ):
        return ConfigurationError(f"invalid docker request ({exc}); fix the argument")
    if isinstance(exc, docker.errors.DockerException):
        if "server API version" in str(exc) or "Connection" in str(exc):
            return ProviderUnavailable(f"cannot reach the Docker engine ({exc}); {_HINT}")
        return ProviderError(f"docker failed: {exc}", retryable=False)
    if isinstance(exc, docker.errors.StreamParseError):
        return ProviderError(
            f"unreadable answer from the Docker engine ({exc}); retry", retryable=True
        )
    if isinstance(exc, OSError):
        return ProviderError(
            f"the connection to the Docker engine broke ({exc}); retry", retryable=True
        )
    return ProviderError(f"unexpected docker failure: {exc!r}", retryable=False)


def _map_api_error(
    exc: docker.errors.APIError,
    *,
    sandbox_id: str | None,
    lost: bool,
    path: str | None,
    image: str | None,
) -> SandbankError:
    status = exc.status_code
    text = str(exc.explanation or exc)
    lower = text.lower()
    if isinstance(exc, docker.errors.ImageNotFound) or "no such image" in lower:
        name = image or "the image"
        return ConfigurationError(
            f"Docker image {name!r} is not on the engine ({text}); build it or pull it first "
            f"(`docker pull {image or 'IMAGE'}`), or pass another image",
            retryable=False,
        )
    gone = "no such container" in lower or "is marked for removal" in lower
    if isinstance(exc, docker.errors.NotFound) or status == 404 or gone:
        if path is not None and not gone:
            return PathNotFound(path, sandbox_id or "")
        if sandbox_id is not None:
            if lost:
                return SandboxLost(sandbox_id, "its container no longer exists")
            return SandboxNotFound("docker", sandbox_id)
        return ProviderError(f"docker: {text}", retryable=False)
    if "is paused" in lower:
        return ProviderError(
            f"sandbox {sandbox_id or ''!r} is paused; call resume() before using it",
            retryable=False,
        )
    if any(s in lower for s in ("is not running", "is restarting", "is dead", "not running")):
        if sandbox_id is not None and lost:
            return SandboxLost(sandbox_id, "its container stopped")
        return ProviderError(f"the container is not running ({text}); attach again", retryable=True)
    if status == 409:
        return ProviderError(f"docker refused a conflicting request: {text}; retry", retryable=True)
    if status is None or status >= 500:
        return ProviderError(f"the Docker engine failed: {text}; retry", retryable=True)
    return ProviderError(f"the Docker engine refused the request: {text}", retryable=False)


@contextlib.contextmanager
def docker_errors(
    *,
    sandbox_id: str | None = None,
    lost: bool = False,
    path: str | None = None,
    image: str | None = None,
) -> Iterator[None]:
    """Translate docker SDK and transport exceptions raised inside the block."""
    try:
        yield
    except SandbankError:
        raise
    except (
        docker.errors.DockerException,
        docker.errors.StreamParseError,
        requests.exceptions.RequestException,
        OSError,
    ) as exc:
        raise map_docker_error(
            exc, sandbox_id=sandbox_id, lost=lost, path=path, image=image
        ) from exc


# -- small helpers ------------------------------------------------------------------------


def _enc(path: str) -> bytes:
    """A path as the engine wants it in a query string (names may be non-UTF-8)."""
    return path.encode("utf-8", "surrogateescape")


def _inside(path: str) -> bool:
    return path == WORKSPACE or path.startswith(WORKSPACE + "/")


def _rel(path: str) -> str:
    return "." if path == WORKSPACE else path[len(WORKSPACE) + 1 :]


@dataclass(frozen=True)
class _Stat:
    """What the archive stat API says about one path (the final component is not followed)."""

    mode: int
    size: int
    link_target: str

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & _GO_DIR)

    @property
    def is_link(self) -> bool:
        return bool(self.mode & _GO_SYMLINK)

    @property
    def perm(self) -> int:
        bits = self.mode & 0o777
        if self.mode & _GO_SETUID:
            bits |= 0o4000
        if self.mode & _GO_SETGID:
            bits |= 0o2000
        if self.mode & _GO_STICKY:
            bits |= 0o1000
        return bits


def _parse_stat(header: str | None) -> _Stat | None:
    if not header:
        return None
    try:
        data = json.loads(base64.b64decode(header))
    except (binascii.Error, ValueError):
        return None
    return _Stat(
        mode=int(data.get("mode", 0)),
        size=int(data.get("size", 0)),
        link_target=data.get("linkTarget") or "",
    )


@dataclass(frozen=True)
class _Target:
    """A workspace path after its symlinks were checked.

    ``parent`` is the resolved absolute directory holding ``name``; ``stat`` is None when
    ``name`` does not exist, and then ``missing`` lists the components after it.
    """

    parent: str
    name: str
    stat: _Stat | None
    missing: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"{self.parent}/{self.name}"


def _start_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run ``fn`` in a dedicated daemon thread (long waits must not fill the loop's pool)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        try:
            result: Any = fn()
            ok = True
        except BaseException as exc:
            result, ok = exc, False
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(settle, ok, result)

    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    threading.Thread(target=target, name="sandbank-docker-exec", daemon=True).start()
    return future


def _tar_member(
    name: str, *, directory: bool = False, size: int = 0, mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = time.time()
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = mode
    return info


def _tar_bytes(members: list[tarfile.TarInfo], data: bytes | None = None) -> bytes:
    """A small archive in memory; ``data`` is the content of the last member."""
    parts = []
    for info in members:
        parts.append(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    if data:
        parts.append(data)
        parts.append(b"\0" * (-len(data) % tarfile.BLOCKSIZE))
    parts.append(b"\0" * (2 * tarfile.BLOCKSIZE))
    return b"".join(parts)


class _ExecStream:
    """One exec on a hijacked socket, read (and demultiplexed) in a thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, output: OutputCollector) -> None:
        self._loop = loop
        self._output = output
        self._lock = threading.Lock()
        self._socket: Any = None
        self._aborted = False
        self.held: bytes = b""
        """An OCI runtime failure message, kept back from stdout until the exit code is known."""

    def abort(self) -> None:
        """Stop reading: shut the socket so the reading thread sees end of stream."""
        with self._lock:
            self._aborted = True
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(
        self,
        api: Any,
        container_id: str,
        argv: list[str],
        env: list[str],
        workdir: str,
        stdin: bytes | None,
    ) -> int:
        exec_id = api.exec_create(
            container_id,
            argv,
            stdout=True,
            stderr=True,
            stdin=stdin is not None,
            environment=env,
            workdir=workdir,
        )["Id"]
        stream = api.exec_start(exec_id, socket=True)
        sock = getattr(stream, "_sock", stream)
        leftover = _buffered_bytes(stream, sock)
        with self._lock:
            self._socket = sock
            aborted = self._aborted
        try:
            if not aborted:
                if stdin is not None:
                    threading.Thread(
                        target=_send_stdin,
                        args=(sock, stdin),
                        name="sandbank-docker-stdin",
                        daemon=True,
                    ).start()
                self._pump(sock, leftover)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            response = getattr(stream, "_response", None)
            if response is not None:
                with contextlib.suppress(Exception):
                    response.close()
        return _exit_code(api, exec_id)

    def _pump(self, sock: Any, leftover: bytes) -> None:
        buffer = bytearray(leftover)
        first = True
        while True:
            try:
                chunk = sock.recv(_RECV)
            except OSError:
                if self._aborted:
                    return
                raise
            if not chunk:
                return
            buffer += chunk
            pos, size = 0, len(buffer)
            batch: list[tuple[int, list[bytes]]] = []  # runs of frames of one stream
            while size - pos >= 8:
                length = int.from_bytes(buffer[pos + 4 : pos + 8], "big")
                if size - pos - 8 < length:
                    break
                kind = 2 if buffer[pos] in (2, 3) else 1
                payload = bytes(buffer[pos + 8 : pos + 8 + length])
                pos += 8 + length
                if batch and batch[-1][0] == kind:
                    batch[-1][1].append(payload)
                else:
                    batch.append((kind, [payload]))
            del buffer[:pos]
            for kind, parts in batch:
                payload = b"".join(parts)
                if first:
                    first = False
                    if kind == 1 and payload.startswith(_OCI_FAILURE):
                        self.held = payload
                        continue
                if self.held:  # it was real output after all
                    self._emit(1, self.held)
                    self.held = b""
                self._emit(kind, payload)

    def _emit(self, kind: int, data: bytes) -> None:
        name: Literal["stdout", "stderr"] = "stderr" if kind == 2 else "stdout"
        asyncio.run_coroutine_threadsafe(self._output.feed(name, data), self._loop).result()


def _buffered_bytes(stream: Any, sock: Any) -> bytes:
    """Bytes the HTTP layer read past the response headers (normally none)."""
    reader = getattr(
        getattr(getattr(getattr(stream, "_response", None), "raw", None), "_fp", None), "fp", None
    )
    if reader is None or not hasattr(reader, "peek"):
        sock.settimeout(None)
        return b""
    try:
        sock.setblocking(False)
        data = reader.peek(1)
        taken = reader.read1(len(data)) if data else b""
    except (OSError, ValueError):
        taken = b""
    finally:
        sock.settimeout(None)
    return bytes(taken)


def _send_stdin(sock: Any, data: bytes) -> None:
    try:
        if data:
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError as exc:  # the command exited without reading all of it
        log.debug("stdin not fully delivered: %s", exc)


def _exit_code(api: Any, exec_id: str) -> int:
    deadline = time.monotonic() + 5
    while True:
        state = api.exec_inspect(exec_id)
        code = state.get("ExitCode")
        if code is not None and not state.get("Running"):
            return int(code)
        if time.monotonic() > deadline:
            return -1
        time.sleep(0.005)


# -- the sandbox ----------------------------------------------------------------------------


class DockerSandbox(Sandbox):
    """A sandbox backed by one container of a Docker engine."""

    provider: DockerProvider

    def __init__(
        self,
        provider: DockerProvider,
        sandbox_id: str,
        manifest: Manifest,
        *,
        container_id: str,
        api: Any,
    ) -> None:
        super().__init__(provider, sandbox_id, manifest)
        self.container_id = container_id
        self._api = api
        self._archive_url = api._url("/containers/{0}/archive", container_id)
        self._copy_owner = bool(manifest.user)

    def _errors(self, path: str | None = None) -> contextlib.AbstractContextManager[None]:
        return docker_errors(sandbox_id=self.id, lost=True, path=path)

    # -- exec -------------------------------------------------------------------------------

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        if request.cwd != ".":  # the default cwd costs no check
            await self._files(lambda: self._check_cwd_sync(request.cwd))
        token = uuid.uuid4().hex
        argv = request.argv
        if request.timeout is not None:
            argv = ["/bin/sh", "-c", _TIMED_WRAPPER, "sh", _PIDFILE.format(token=token), *argv]
        env = [f"{k}={v}" for k, v in request.env.items()]
        env.append(f"SANDBANK_EXEC={token}")
        workdir = WORKSPACE if request.cwd == "." else f"{WORKSPACE}/{request.cwd}"
        stream = _ExecStream(asyncio.get_running_loop(), output)
        future = _start_thread(
            lambda: stream.run(self._api, self.container_id, argv, env, workdir, request.stdin)
        )
        try:
            done, _ = await asyncio.wait({future}, timeout=request.timeout)
        except asyncio.CancelledError:
            self._kill_in_background(token, stream)
            raise
        if not done:
            assert request.timeout is not None
            await self._kill(token, stream, future)
            code = future.result() if future.done() and not future.exception() else 137
            raise ExecTimeout(request.argv, request.timeout, output.result(code))
        with self._errors():
            code = future.result()
        if stream.held:
            return await self._oci_failure(request, output, stream.held, code)
        return output.result(code)

    def _check_cwd_sync(self, rel: str) -> None:
        target = self._walk_sync(rel)
        if target.stat is not None and target.stat.is_link:
            target = self._follow_sync(rel, target)
        if target.stat is None:
            raise self._missing(rel)
        if not target.stat.is_dir:
            raise ConfigurationError(f"cwd {rel!r} is not a directory; pass a directory")

    async def _oci_failure(
        self, request: ExecRequest, output: OutputCollector, message: bytes, code: int
    ) -> ExecResult:
        """The runtime could not start the command: a missing program, or a missing cwd."""
        text = message.decode("utf-8", "replace").strip()
        if "chdir" in text:
            if "no such file" in text:
                raise PathNotFound(request.cwd, self.id)
            raise ConfigurationError(f"cannot run in {request.cwd!r}: {text}; pass a directory")
        await output.feed("stderr", message)
        not_found = "not found" in text or "no such file" in text
        return output.result(127 if not_found else (code or 126))

    async def _kill(self, token: str, stream: _ExecStream, future: asyncio.Future[int]) -> None:
        try:
            await asyncio.to_thread(self._kill_sync, token)
        except Exception as exc:
            log.warning("could not kill the timed-out command in %s: %s", self.id, exc)
        await asyncio.wait({future}, timeout=_KILL_GRACE)
        if not future.done():
            stream.abort()
            await asyncio.wait({future}, timeout=_KILL_GRACE)

    def _kill_in_background(self, token: str, stream: _ExecStream) -> None:
        def kill() -> None:
            try:
                self._kill_sync(token)
            except Exception as exc:
                log.debug("could not kill a cancelled command in %s: %s", self.id, exc)
            stream.abort()

        threading.Thread(target=kill, name="sandbank-docker-kill", daemon=True).start()

    def _kill_sync(self, token: str) -> None:
        exec_id = self._api.exec_create(
            self.container_id,
            ["/bin/sh", "-c", _KILL_SCRIPT, "sh", token],
            stdout=True,
            stderr=True,
        )["Id"]
        self._api.exec_start(exec_id)

    async def _run(self, argv: list[str]) -> ExecResult:
        """Run an internal command, keeping all of its output."""
        request = ExecRequest(argv=argv, cwd=".", env={}, stdin=None, timeout=None)
        return await self._exec(request, OutputCollector(limit=1 << 40))

    # -- path checks ------------------------------------------------------------------------

    def _stat_sync(self, path: str) -> _Stat | None:
        response = self._api.head(self._archive_url, params={"path": _enc(path)})
        if response.status_code == 404:
            return None
        self._api._raise_for_status(response)
        return _parse_stat(response.headers.get("X-Docker-Container-Path-Stat"))

    def _walk_sync(self, rel: str, *, stat_final: bool = True) -> _Target:
        """Check each existing prefix of ``rel``: no symlink along it may leave the workspace."""
        parts = rel.split("/")
        base = WORKSPACE
        for i, name in enumerate(parts):
            final = i == len(parts) - 1
            if final and not stat_final:
                return _Target(base, name, _Stat(0, 0, ""))
            here = f"{base}/{name}"
            st = self._stat_sync(here)
            if st is None:
                return _Target(base, name, None, tuple(parts[i + 1 :]))
            if final:
                return _Target(base, name, st)
            prefix = "/".join(parts[: i + 1])
            if st.is_link:
                if not _inside(st.link_target):
                    raise WorkspacePathError(
                        rel, f"goes through the symlink {prefix!r} to {st.link_target!r}"
                    )
                base = st.link_target
            elif st.is_dir:
                base = here
            else:
                raise ConfigurationError(
                    f"{prefix!r} is not a directory, so {rel!r} cannot exist; use another path"
                )
        raise AssertionError("unreachable")

    def _follow_sync(self, rel: str, target: _Target) -> _Target:
        """The target of a final symlink, which must stay inside the workspace."""
        assert target.stat is not None
        link = target.stat.link_target
        if not _inside(link):
            raise WorkspacePathError(rel, f"is a symlink to {link!r}")
        if link == WORKSPACE:
            return _Target("", WORKSPACE.lstrip("/"), _Stat(_GO_DIR | 0o755, 0, ""))
        followed = self._walk_sync(_rel(link))
        if followed.stat is not None and followed.stat.is_link:
            raise WorkspacePathError(rel, "is a symlink chain that does not resolve")
        return followed

    def _missing(self, rel: str) -> PathNotFound:
        """PathNotFound, once the container is known to exist (a 404 on HEAD says neither)."""
        self._api.inspect_container(self.container_id)
        return PathNotFound(rel, self.id)

    async def _files(self, fn: Callable[[], T], path: str | None = None) -> T:
        with self._errors(path):
            return await asyncio.to_thread(fn)

    # -- files ------------------------------------------------------------------------------

    async def _read_file(self, path: str) -> bytes:
        if _is_text(path):
            return await self._files(lambda: self._read_sync(path), path)
        # The engine archives a single path whose name is not UTF-8 as an empty tar.
        target = await self._files(lambda: self._resolve_file_sync(path))
        result = await self._run(["/bin/sh", "-c", _CAT_SCRIPT, "sh", _printf_escape(target.path)])
        if not result.ok:
            raise ProviderError(
                f"could not read {path!r}: {result.stderr.decode(errors='replace')}"
            )
        return result.stdout

    def _resolve_file_sync(self, rel: str) -> _Target:
        target = self._walk_sync(rel)
        if target.stat is not None and target.stat.is_link:
            target = self._follow_sync(rel, target)
        if target.stat is None:
            raise self._missing(rel)
        if target.stat.is_dir:
            raise ConfigurationError(f"{rel!r} is a directory, not a file; use list_tree()")
        return target

    def _read_sync(self, rel: str) -> bytes:
        target = self._walk_sync(rel, stat_final=False)
        if target.stat is None:
            raise self._missing(rel)
        response = self._get_archive(target.path, rel)
        try:
            st = _parse_stat(response.headers.get("X-Docker-Container-Path-Stat"))
            if st is not None and st.is_link:
                response.close()
                followed = self._follow_sync(rel, _Target(target.parent, target.name, st))
                if followed.stat is None:
                    raise PathNotFound(rel, self.id)
                st = followed.stat
                response = self._get_archive(followed.path, rel)
            if st is not None and st.is_dir:
                raise ConfigurationError(
                    f"{rel!r} is a directory, not a file; use list_tree() or export_tar()"
                )
            with tarfile.open(fileobj=response.raw, mode="r|", bufsize=CHUNK) as archive:
                member = archive.next()
                if member is None or not member.isreg():
                    raise ConfigurationError(f"{rel!r} is not a regular file")
                extracted = archive.extractfile(member)
                assert extracted is not None
                return extracted.read()
        finally:
            response.close()

    def _get_archive(self, path: str, rel: str) -> Any:
        response = self._api._get(
            self._archive_url, params={"path": _enc(path)}, headers=_IDENTITY, stream=True
        )
        if response.status_code == 404:
            response.close()
            raise self._missing(rel)
        self._api._raise_for_status(response)
        return response

    def _put_archive(self, path: str, data: Any) -> None:
        params: dict[str, Any] = {"path": _enc(path)}
        if self._copy_owner:
            params["copyUIDGID"] = "1"  # files belong to the container's user, not root
        response = self._api.put(self._archive_url, params=params, data=data)
        self._api._raise_for_status(response)

    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        await self._files(lambda: self._write_sync(path, data, mode), path)

    def _write_sync(self, rel: str, data: bytes, mode: int | None) -> None:
        target = self._walk_sync(rel)
        if target.stat is not None and target.stat.is_link:
            target = self._follow_sync(rel, target)
        if target.stat is not None and target.stat.is_dir:
            raise ConfigurationError(
                f"{rel!r} is a directory; remove it first or pick another path"
            )
        if mode is None:
            mode = target.stat.perm if target.stat is not None else 0o644
        names = [target.name]
        for part in target.missing:
            names.append(f"{names[-1]}/{part}")
        members = [_tar_member(n, directory=True) for n in names[:-1]]
        members.append(_tar_member(names[-1], size=len(data), mode=mode))
        self._put_archive(target.parent, _tar_bytes(members, data))

    async def _mkdir(self, path: str) -> None:
        await self._files(lambda: self._mkdir_sync(path), path)

    def _mkdir_sync(self, rel: str) -> None:
        target = self._walk_sync(rel)
        if target.stat is not None and target.stat.is_link:
            target = self._follow_sync(rel, target)
        if target.stat is not None:
            if not target.stat.is_dir:
                raise ConfigurationError(f"{rel!r} exists and is not a directory")
            return
        names = [target.name]
        for part in target.missing:
            names.append(f"{names[-1]}/{part}")
        self._put_archive(
            target.parent, _tar_bytes([_tar_member(n, directory=True) for n in names])
        )

    async def _remove(self, path: str) -> None:
        target = await self._files(lambda: self._walk_sync(path))
        if target.stat is None:
            raise await self._files(lambda: self._missing(path))
        result = await self._run(["rm", "-rf", "--", target.path])
        if not result.ok:
            raise ProviderError(
                f"could not remove {path!r} in sandbox {self.id!r}: "
                f"{result.stderr.decode('utf-8', 'replace').strip()}; check its permissions"
            )

    async def _list_tree(self, path: str) -> list[FileEntry]:
        start, prefix = WORKSPACE, ""
        if path != ".":
            target = await self._files(lambda: self._walk_sync(path))
            if target.stat is not None and target.stat.is_link:
                walked = target
                target = await self._files(lambda: self._follow_sync(path, walked))
            if target.stat is None:
                raise await self._files(lambda: self._missing(path))
            if not target.stat.is_dir:
                raise ConfigurationError(f"{path!r} is not a directory")
            start, prefix = target.path, path + "/"
        result = await self._run(["/bin/sh", "-c", _LIST_SCRIPT, "sh", start, _LIST_PY])
        if result.exit_code == 0:
            return _parse_listing(result.stdout, prefix)
        if result.exit_code in (99, 127):
            return await self._files(lambda: self._list_from_tar(start, prefix))
        raise ProviderError(
            f"listing {path!r} in sandbox {self.id!r} failed (exit {result.exit_code}): "
            f"{result.stderr.decode('utf-8', 'replace').strip()}"
        )

    def _list_from_tar(self, start: str, prefix: str) -> list[FileEntry]:
        """List a tree from the headers of its archive (images with neither find nor Python)."""
        entries = []
        response = self._get_archive(start, _rel(start))
        try:
            with tarfile.open(fileobj=response.raw, mode="r|", bufsize=CHUNK) as archive:
                for member in archive:
                    rest = member.name.partition("/")[2]
                    if not rest:
                        continue
                    kind: Literal["file", "dir", "symlink", "other"]
                    kind = (
                        "dir"
                        if member.isdir()
                        else "symlink"
                        if member.issym()
                        else "file"
                        if member.isfile()
                        else "other"
                    )
                    size = (
                        0
                        if kind == "dir"
                        else len(_enc(member.linkname))
                        if kind == "symlink"
                        else member.size
                    )
                    entries.append(
                        FileEntry(
                            path=prefix + rest,
                            type=kind,
                            size=size,
                            mode=member.mode & 0o7777,
                            mtime=float(member.mtime),
                            link_target=member.linkname if kind == "symlink" else None,
                        )
                    )
        finally:
            response.close()
        return entries

    # -- tar streams ------------------------------------------------------------------------

    async def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        sources: list[tuple[str, str]] = []  # (absolute path to archive, name of its top entry)
        for rel in paths if paths is not None else ["."]:
            if rel == ".":
                sources.append((WORKSPACE, ""))
                continue
            target = await self._files(functools.partial(self._walk_sync, rel))
            if target.stat is None:
                raise await self._files(functools.partial(self._missing, rel))
            sources.append((target.path, rel))

        def produce(out: BinaryIO) -> None:
            if sources == [(WORKSPACE, "")]:
                # The whole workspace: only the names change ("workspace/a" -> "a"), so
                # rename header by header and pass the data through (re-encoding every
                # member with tarfile costs several times the engine's own time).
                response = self._get_archive(WORKSPACE, ".")
                try:
                    strip_top_component(io.BufferedReader(response.raw, CHUNK), out.write)
                finally:
                    response.close()
                return
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as sink:
                for path, top in sources:
                    response = self._get_archive(path, top or ".")
                    try:
                        # Buffer in C, and keep tarfile's own buffer small: it copies what is
                        # left of it on every read, and reads every 512-byte header on its own.
                        raw = io.BufferedReader(response.raw, CHUNK)
                        with tarfile.open(fileobj=raw, mode="r|") as source:
                            for member in source:
                                name = _rebase(member.name, top)
                                if not name:
                                    continue
                                _rename(member, name)
                                if member.islnk():
                                    _rename(member, name, _rebase(member.linkname, top))
                                fileobj = source.extractfile(member) if member.isreg() else None
                                sink.addfile(member, fileobj)
                    finally:
                        response.close()

        with self._errors():
            async for chunk in stream_from_thread(produce):
                yield chunk

    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        reader = SyncReader(stream, asyncio.get_running_loop())
        with tempfile.TemporaryFile() as spool:
            unchecked = await asyncio.to_thread(
                self._spool_sync, io.BufferedReader(reader, CHUNK), spool
            )
            await self._files(lambda: self._put_spool(spool, unchecked))

    def _spool_sync(self, source: BinaryIO, spool: BinaryIO) -> set[str]:
        """Validate every member into ``spool``; nothing reaches the sandbox before all pass."""
        guard = TarGuard()
        created: set[str] = set()
        unchecked: set[str] = set()
        try:
            with (
                tarfile.open(fileobj=source, mode="r|*", bufsize=CHUNK) as archive,
                tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as out,
            ):
                for member in archive:
                    path = guard.check(member)
                    if path == ".":
                        continue
                    parent = path.rpartition("/")[0]
                    if parent and parent not in created:
                        unchecked.add(parent)
                    if member.isdir():
                        created.add(path)
                    _rename(member, path)
                    if member.islnk():
                        _rename(member, path, member_path(member.linkname))
                    out.addfile(member, archive.extractfile(member) if member.isreg() else None)
        except tarfile.TarError as exc:
            raise ConfigurationError(f"the stream is not a readable tar archive ({exc})") from exc
        return unchecked

    def _put_spool(self, spool: BinaryIO, unchecked: set[str]) -> None:
        self._check_parents_sync(unchecked)
        spool.seek(0)
        self._put_archive(WORKSPACE, iter(lambda: spool.read(CHUNK), b""))

    def _check_parents_sync(self, unchecked: Iterable[str]) -> None:
        # Parents the archive does not create itself may be symlinks already in the sandbox.
        # Missing ones are made here, else the engine would make them owned by root.
        for parent in sorted(unchecked):
            target = self._walk_sync(parent)
            if target.stat is None:
                self._mkdir_sync(parent)
            elif target.stat.is_link:
                self._follow_sync(parent, target)

    async def _import_planned_tar(
        self, members: Sequence[tarfile.TarInfo], produce: Callable[[BinaryIO], object]
    ) -> None:
        """Stream a tar straight into the container, without spooling it first.

        For writers that know every member header before the first byte, such as the
        snapshot store. ``members`` are those headers, in archive order (name, type and
        link name matter); ``produce(file)`` must write exactly those members, in that order.
        All of them are checked here, with the same ``TarGuard`` as ``import_tar``, before
        anything is sent: a member that would leave the workspace, go through a symlink of
        the archive, be a device or a hard link fails the call with nothing touched. Names
        must already be normalized (the archive is not rewritten in flight).

        Unlike ``import_tar``, a failure of ``produce`` part way (a corrupt or unreachable
        store object, say) leaves the members sent so far in the sandbox: the engine extracts
        as it reads. The caller cleans up (the store empties a target that was empty).
        """
        guard = TarGuard()
        created: set[str] = set()
        unchecked: set[str] = set()
        for member in members:
            if member.islnk():
                raise ConfigurationError(f"tar member {member.name!r}: hard links are not planned")
            path = guard.check(member)
            if path != member.name.rstrip("/") or path == ".":
                raise WorkspacePathError(member.name, "is not a normalized tar member name")
            parent = path.rpartition("/")[0]
            if parent and parent not in created:
                unchecked.add(parent)
            if member.isdir():
                created.add(path)
        await self._files(lambda: self._check_parents_sync(unchecked))
        pipe = ThreadPipe()

        def write() -> None:
            try:
                produce(pipe)  # type: ignore[arg-type]
            except BaseException as exc:
                pipe.finish(exc)
                raise
            pipe.finish()

        def put() -> None:
            try:
                self._put_archive(WORKSPACE, iter(pipe))
            finally:
                pipe.abort()  # the writer stops if the engine gave up early

        writer = asyncio.ensure_future(asyncio.to_thread(write))
        try:
            with self._errors():
                await asyncio.to_thread(put)
        except BaseException:
            pipe.abort()
            with contextlib.suppress(PipeClosed):
                await writer  # the producer's own error, if it failed first, explains best
            raise
        finally:
            pipe.abort()
        await writer

    # -- lifecycle --------------------------------------------------------------------------

    async def _port_url(self, port: int) -> str:
        with self._errors():
            state = await asyncio.to_thread(self._api.inspect_container, self.container_id)
        bound = (state["NetworkSettings"].get("Ports") or {}).get(f"{port}/tcp") or []
        if not bound:
            raise ProviderError(
                f"port {port} of docker sandbox {self.id!r} is not published now (the "
                f"container is {state['State'].get('Status')}); resume() the sandbox first"
            )
        return f"http://127.0.0.1:{bound[0]['HostPort']}"

    async def _status(self) -> SandboxStatus:
        try:
            with self._errors():
                state = await asyncio.to_thread(self._api.inspect_container, self.container_id)
        except SandboxLost:
            return SandboxStatus.LOST
        return _status_of(state["State"].get("Status", ""))

    async def _pause(self) -> None:
        with self._errors():
            await asyncio.to_thread(self._api.pause, self.container_id)

    async def _stop(self) -> None:
        with self._errors():
            # No grace period: PID 1 is the idle keeper, which ignores SIGTERM.
            await asyncio.to_thread(self._api.stop, self.container_id, timeout=0)

    async def _resume(self) -> None:
        with self._errors():
            state = await asyncio.to_thread(self._api.inspect_container, self.container_id)
            status = state["State"].get("Status", "")
            if status == "paused":
                await asyncio.to_thread(self._api.unpause, self.container_id)
            elif status in ("exited", "created"):
                await asyncio.to_thread(self._api.start, self.container_id)


def _is_text(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printf_escape(path: str) -> str:
    """``path`` as an ASCII printf format that prints its exact bytes."""
    return "".join(
        chr(b) if b < 128 and (chr(b).isalnum() or chr(b) in "/._-") else f"\\{b:03o}"
        for b in _enc(path)
    )


def _rename(member: tarfile.TarInfo, name: str, linkname: str | None = None) -> None:
    """Rename a member; its pax ``path`` would otherwise win over the new name on write."""
    member.name = name
    headers = dict(member.pax_headers)
    headers.pop("path", None)
    if linkname is not None:
        member.linkname = linkname
        headers.pop("linkpath", None)
    member.pax_headers = headers


def _rebase(name: str, top: str) -> str:
    """A member name of a docker archive, with its first component replaced by ``top``."""
    rest = name.partition("/")[2].strip("/")
    if not top:
        return rest
    return f"{top}/{rest}" if rest else top


def _parse_listing(data: bytes, prefix: str) -> list[FileEntry]:
    fields = data.split(b"\0")
    entries = []
    for i in range(0, len(fields) - 1, 2):
        head, link = fields[i], fields[i + 1]
        kind, size, mode, mtime, name = head.split(b" ", 4)
        path = name.decode("utf-8", "surrogateescape")
        type_ = _TYPES.get(kind.decode(), "other")
        entries.append(
            FileEntry(
                path=prefix + path,
                type=type_,
                size=0 if type_ == "dir" else int(size),
                mode=int(mode, 8) & 0o7777,
                mtime=float(mtime),
                link_target=link.decode("utf-8", "surrogateescape") if type_ == "symlink" else None,
            )
        )
    return entries


def _labelled_manifest(labels: dict[str, str], container_env: list[str]) -> Manifest:
    """The manifest of a container: its label, with ``env`` values from ``Config.Env``."""
    manifest = Manifest.from_json(labels.get(LABEL_MANIFEST) or "{}")
    names = json.loads(labels.get(LABEL_ENV) or "[]")
    pairs = dict(item.partition("=")[::2] for item in container_env)
    env = {name: pairs[name] for name in names if name in pairs}
    return manifest.merged(env=env) if env else manifest


def _status_of(state: str) -> SandboxStatus:
    if state == "paused":
        return SandboxStatus.PAUSED
    if state in ("running", "restarting"):
        return SandboxStatus.RUNNING
    if state in ("removing", "dead"):
        return SandboxStatus.LOST
    return SandboxStatus.STOPPED


# -- the provider ---------------------------------------------------------------------------


class DockerProvider(Provider):
    """Sandboxes as containers on a Docker engine (``DOCKER_HOST``, or ``base_url=``).

    Options: ``image`` (used when the manifest names none), ``base_url``, ``timeout``
    (seconds per engine call), ``network`` (the network for ``manifest.network``), and
    ``labels``: extra container labels, which also scope ``list()`` and ``prune()``.
    """

    name = "docker"
    extra = "docker"

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        base_url: str | None = None,
        timeout: float = 60.0,
        network: str = "bridge",
        labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.image = image
        self.base_url = base_url
        self.timeout = timeout
        self.network = network
        self.labels = dict(labels or {})
        if any(k.startswith("sandbank.") for k in self.labels):
            raise ConfigurationError("labels starting with 'sandbank.' are reserved; rename them")
        self._docker: docker.DockerClient | None = None
        self._connect_lock = asyncio.Lock()
        self._ours: set[str] = set()  # ids known to be sandbank containers (skip a check)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            pause=True,
            stop=True,
            ports=True,
            network_policy=True,
            resource_limits=True,
            image=True,
            user=True,
            durable_exec=True,
        )

    @property
    def isolation(self) -> str:
        return "docker container (namespaces, cgroups)"

    # -- client -----------------------------------------------------------------------------

    def _connect_sync(self) -> docker.DockerClient:
        kwargs: dict[str, Any] = {"timeout": self.timeout, "max_pool_size": 64}
        if self.base_url is not None:
            return docker.DockerClient(base_url=self.base_url, **kwargs)
        return docker.from_env(**kwargs)

    async def _client(self) -> docker.DockerClient:
        if self._docker is None:
            async with self._connect_lock:
                if self._docker is None:
                    with docker_errors():
                        self._docker = await asyncio.to_thread(self._connect_sync)
        return self._docker

    async def _api(self) -> Any:
        return (await self._client()).api

    async def check(self) -> None:
        api = await self._api()
        with docker_errors():
            await asyncio.to_thread(api.ping)

    async def aclose(self) -> None:
        client, self._docker = self._docker, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # -- lifecycle --------------------------------------------------------------------------

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> DockerSandbox:
        manifest = self.validate_manifest(manifest)
        if manifest.ports and not manifest.network:
            raise ConfigurationError(
                f"manifest.ports {manifest.ports} need network=True on docker: the engine "
                f"publishes ports only from a container on a network; set network=True"
            )
        image = manifest.image.for_provider("docker", self.image) or self.image
        api = await self._api()
        sandbox_id = f"{NAME_PREFIX}{uuid.uuid4().hex[:12]}"
        labels = {
            **self.labels,
            LABEL: "1",
            LABEL_ID: sandbox_id,
            LABEL_CREATED: f"{time.time():.3f}",
            LABEL_IMAGE: image,
            LABEL_MANIFEST: manifest.without_contents().merged(env={}).to_json(),
            LABEL_ENV: json.dumps(sorted(manifest.env)),
        }
        limits = manifest.resources
        host_config = api.create_host_config(
            network_mode=self.network if manifest.network else "none",
            nano_cpus=int(limits.cpu * 1e9) if limits.cpu else None,
            mem_limit=limits.memory,
            memswap_limit=limits.memory,  # the same value: no swap beyond the limit
            pids_limit=limits.pids,
            # Published on the host's loopback only, each on a free port the engine picks.
            port_bindings={port: ("127.0.0.1",) for port in manifest.ports} or None,
        )
        with docker_errors(image=image):
            created = await asyncio.to_thread(
                api.create_container,
                image,
                entrypoint=["/bin/sh", "-c", _KEEP_ALIVE],
                name=sandbox_id,
                labels=labels,
                working_dir=WORKSPACE,
                environment=manifest.env,
                ports=manifest.ports or None,
                user=manifest.user,
                host_config=host_config,
            )
        container_id = created["Id"]
        box = DockerSandbox(self, sandbox_id, manifest, container_id=container_id, api=api)
        try:
            with docker_errors(sandbox_id=sandbox_id, lost=True):
                if manifest.user or manifest.workdir != ".":
                    await asyncio.to_thread(self._prepare_workspace, box)
                await asyncio.to_thread(api.start, container_id)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._remove_quietly, api, container_id))
            raise
        self._ours.add(sandbox_id)
        log.debug("created docker sandbox %s (%s) from %s", sandbox_id, container_id[:12], image)
        return box

    @staticmethod
    def _prepare_workspace(box: DockerSandbox) -> None:
        """Create /workspace (and the workdir) owned by the manifest's user, before start."""
        names = ["workspace"]
        if box.manifest.workdir != ".":
            for part in box.manifest.workdir.split("/"):
                names.append(f"{names[-1]}/{part}")
        box._put_archive("/", _tar_bytes([_tar_member(n, directory=True) for n in names]))

    @staticmethod
    def _remove_quietly(api: Any, container_id: str) -> None:
        try:
            api.remove_container(container_id, force=True, v=True)
        except Exception as exc:
            log.warning("could not remove container %s: %s", container_id[:12], exc)

    async def _inspect(self, sandbox_id: str) -> dict[str, Any]:
        api = await self._api()
        with docker_errors(sandbox_id=sandbox_id):
            state: dict[str, Any] = await asyncio.to_thread(api.inspect_container, sandbox_id)
        labels = state["Config"].get("Labels") or {}
        if labels.get(LABEL) != "1":
            raise SandboxNotFound(self.name, sandbox_id)
        return state

    async def attach(self, sandbox_id: str) -> DockerSandbox:
        """A handle on an existing sandbox; a stopped container is started again."""
        state = await self._inspect(sandbox_id)
        labels = state["Config"]["Labels"]
        box_id = labels.get(LABEL_ID, sandbox_id)
        manifest = _labelled_manifest(labels, state["Config"].get("Env") or [])
        api = await self._api()
        status = state["State"].get("Status", "")
        if status in ("exited", "created"):
            with docker_errors(sandbox_id=box_id, lost=True):
                await asyncio.to_thread(api.start, state["Id"])
        elif status in ("removing", "dead"):
            raise SandboxLost(box_id, f"its container is {status}")
        self._ours.add(box_id)
        return DockerSandbox(self, box_id, manifest, container_id=state["Id"], api=api)

    async def list(self) -> list[SandboxInfo]:
        api = await self._api()
        with docker_errors():
            found = await asyncio.to_thread(
                api.containers, all=True, filters={"label": self._label_filter()}
            )
        return [self._info_of(c["Labels"] or {}, c.get("State", ""), c["Id"]) for c in found]

    def _label_filter(self) -> builtins.list[str]:
        return [f"{LABEL}=1", *(f"{k}={v}" for k, v in self.labels.items())]

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        state = await self._inspect(sandbox_id)
        return self._info_of(
            state["Config"]["Labels"], state["State"].get("Status", ""), state["Id"]
        )

    def _info_of(self, labels: dict[str, str], state: str, container_id: str) -> SandboxInfo:
        created = labels.get(LABEL_CREATED)
        return SandboxInfo(
            id=labels.get(LABEL_ID, container_id),
            provider=self.name,
            status=_status_of(state),
            created_at=float(created) if created else None,
            image=labels.get(LABEL_IMAGE),
            isolation=self.isolation,
            workspace=WORKSPACE,
            labels={k: v for k, v in labels.items() if k not in (LABEL_MANIFEST, LABEL_ENV)},
        )

    async def destroy(self, sandbox_id: str) -> None:
        """Remove the container at once (SIGKILL, no stop timeout) with its anonymous volumes."""
        if sandbox_id not in self._ours:
            await self._inspect(sandbox_id)  # refuse containers sandbank did not create
        api = await self._api()
        with docker_errors(sandbox_id=sandbox_id):
            await asyncio.to_thread(api.remove_container, sandbox_id, force=True, v=True)
        self._ours.discard(sandbox_id)

    async def prune(self, older_than: float | None = None) -> builtins.list[str]:
        """Remove sandbank containers created over ``older_than`` seconds ago (all if None).

        Returns the ids removed. Use it to clean up after processes that died.
        """
        now = time.time()
        removed = []
        for info in await self.list():
            if older_than is not None and (info.created_at or 0) > now - older_than:
                continue
            try:
                await self.destroy(info.id)
            except SandboxNotFound:
                continue
            removed.append(info.id)
        if removed:
            log.info("pruned %d docker sandbox(es)", len(removed))
        return removed
