"""A fake of E2B on 127.0.0.1: its REST control plane, envd's Connect RPC and ``/files``.

Enough of the wire for the official ``e2b`` SDK (2.63.0) to create, list, connect to, pause
and kill sandboxes, run commands (streamed output, stdin, signals) and read, write, list and
remove files. Responses are built with the SDK's own models (``e2b.api.client.models``) and
protobuf messages, and the Connect RPC side is the SDK's own generated ASGI applications, so
a response the SDK would reject fails the test. Every sandbox is a real ``local`` sandbox
(``EmulatorEngine``) with its workspace at ``/home/user``, E2B's home directory.

Point the SDK at it with ``E2B_API_URL`` and ``E2B_SANDBOX_URL`` (both this server's URL),
``E2B_API_KEY`` (``E2BEmulator.api_key``) and ``E2B_HTTP_VERSION=1.1``; see
``sandbank.testing.emulators.fixtures``. Run one by hand with
``python -m sandbank.testing.emulators.e2b``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import secrets
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from e2b.envd.filesystem.filesystem_connect import Filesystem as _FilesystemProtocol
from e2b.envd.process.process_connect import Process as _ProcessProtocol

from sandbank.providers.base import ExecRequest
from sandbank.testing.emulators.engine import (
    EmulatedNotFound,
    EmulatedSandbox,
    EmulatorEngine,
    EmulatorServer,
)

__all__ = ["HOME", "E2BEmulator", "Fault", "environment", "start_e2b_emulator"]

HOME = "/home/user"
ENVD_VERSION = "0.5.7"
"""The envd version the fake claims: octet-stream uploads, stdin and default-user support."""
_CHUNK = 64 * 1024


@dataclass
class Fault:
    """An injected failure: the next ``times`` requests whose path starts with ``path``
    get ``status`` (an HTTP error), or ``"drop"``: the connection is cut after the
    response's first body chunk (mid-stream for a command's output)."""

    path: str
    status: int | str
    times: int = 1
    message: str = "injected by the test"


@dataclass
class _State:
    token: str
    processes: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    template: str = "base"
    timeout: int = 300
    allow_internet: bool = True
    ends_at: float = 0.0
    expiry: asyncio.TimerHandle | None = None


class _Dropped(Exception):
    """Raised out of the ASGI app to make uvicorn cut the connection."""


class E2BEmulator:
    """The ASGI application of the fake, over one ``EmulatorEngine``."""

    def __init__(
        self,
        engine: EmulatorEngine,
        *,
        api_key: str | None = None,
        max_file_size: int = 1 << 30,
    ) -> None:
        from e2b.envd.filesystem.filesystem_connect import FilesystemASGIApplication
        from e2b.envd.process.process_connect import ProcessASGIApplication

        self.engine = engine
        self.api_key = api_key or f"e2b_{secrets.token_hex(20)}"
        self.faults: list[Fault] = []
        self.max_file_size = max_file_size
        """Uploads above this many bytes get envd's 507 (a stand-in for a full disk)."""
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, for tests that count round trips."""
        self._state: dict[str, _State] = {}
        self._snapshots: dict[str, bytes] = {}
        self._expiring: set[asyncio.Future[None]] = set()
        """Snapshot id -> a tar of the workspace (the fake keeps files, not memory)."""
        self._process_app = ProcessASGIApplication(_ProcessService(self))
        self._filesystem_app = FilesystemASGIApplication(_FilesystemService(self))

    # -- ASGI entry -------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        self.requests.append((method, path))
        fault = self._take_fault(path)
        if fault is not None and fault.status != "drop":
            await _json(send, int(fault.status), _error(int(fault.status), fault.message))
            return
        if fault is not None:
            dropping = _DroppingSend(send)
            await self._dispatch(scope, receive, dropping, method, path)
            if dropping.dropped:
                raise _Dropped("connection dropped by an injected fault")
            return
        await self._dispatch(scope, receive, send, method, path)

    async def _dispatch(
        self, scope: dict[str, Any], receive: Any, send: Any, method: str, path: str
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path.startswith(("/process.Process/", "/filesystem.Filesystem/", "/files", "/health")):
            sandbox = self._envd_sandbox(headers)
            if isinstance(sandbox, tuple):
                await _json(send, *sandbox)
                return
            if path.startswith("/process.Process/"):
                await self._process_app(scope, receive, send)
            elif path.startswith("/filesystem.Filesystem/"):
                await self._filesystem_app(scope, receive, send)
            elif path == "/health":
                await _raw(send, 204, b"")
            else:
                await self._files(sandbox, method, scope, receive, send)
            return
        if headers.get("x-api-key") != self.api_key:
            await _json(send, 401, _error(401, "Invalid API key, it must start with 'e2b_'"))
            return
        body = await _body(receive)
        try:
            status, payload = await self._control(method, path, _query(scope), body)
        except EmulatedNotFound as exc:
            status, payload = 404, _error(404, f"sandbox {exc.sandbox_id!r} not found")
        await _json(send, status, payload)

    def _state_of(self, sandbox_id: str) -> _State:
        # Sandboxes made on the engine directly (by a test) get their state on first use.
        return self._state.setdefault(sandbox_id, _State(token=secrets.token_hex(16)))

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if path.startswith(fault.path) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _envd_sandbox(self, headers: dict[str, str]) -> EmulatedSandbox | tuple[int, Any]:
        sandbox_id = headers.get("e2b-sandbox-id", "")
        try:
            sandbox = self.engine.get(sandbox_id)
        except EmulatedNotFound:
            # The message E2B's proxy answers for a sandbox that is gone (the SDK matches it).
            return 502, _error(502, f"The sandbox {sandbox_id} was not found")
        if sandbox.state != "running":
            # Guess: the proxy's answer for a paused sandbox is not documented.
            return 502, _error(502, f"The sandbox {sandbox_id} is paused, its port is not open")
        if headers.get("x-access-token") != self._state_of(sandbox.id).token:
            return 401, _error(401, "invalid access token")
        return sandbox

    # -- control plane ----------------------------------------------------------------------

    async def _control(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        from e2b.api.client.models import NewSandboxV2

        parts = path.strip("/").split("/")
        if parts[:1] == ["v2"]:
            parts = parts[1:]
        if parts[:1] != ["sandboxes"]:
            return 404, _error(404, f"no route {method} {path}")
        if len(parts) == 1 and method == "POST":
            request = NewSandboxV2.from_dict(body)
            allow = _unset_none(request.allow_internet_access)
            sandbox = await self.engine.create(
                metadata=_mapping(request.metadata),
                env=_mapping(request.env_vars),
                network=allow is not False,
            )
            snapshot = self._snapshots.get(request.template_id)
            if snapshot is not None:
                await sandbox.box.import_tar(snapshot)
            self._state[sandbox.id] = _State(
                token=secrets.token_hex(16),
                template=request.template_id,
                timeout=_unset_none(request.timeout) or 300,
                allow_internet=allow is not False,
            )
            self._arm(sandbox.id)
            return 201, self._sandbox_model(sandbox)
        if len(parts) == 1 and method == "GET":
            return 200, self._list(query)
        sandbox = self.engine.get(parts[1])
        action = parts[2] if len(parts) > 2 else ""
        if method == "GET" and not action:
            return 200, self._detail(sandbox)
        if method == "DELETE" and not action:
            await self._kill(sandbox.id)
            return 204, None
        if method == "POST" and action == "pause":
            if sandbox.state == "paused":
                return 409, _error(409, f"sandbox {sandbox.id} is already paused")
            await self.engine.pause(sandbox.id)
            self._disarm(sandbox.id)  # a paused sandbox does not time out (a guess)
            return 204, None
        if method == "POST" and action == "connect":
            resumed = sandbox.state == "paused"
            await self.engine.resume(sandbox.id)
            if body.get("timeout"):
                self._state_of(sandbox.id).timeout = int(body["timeout"])
            self._arm(sandbox.id)
            return (201 if resumed else 200), self._sandbox_model(sandbox)
        if method == "POST" and action == "snapshots":
            from e2b.api.client.models import SnapshotInfo

            # Real E2B snapshots memory too; the fake keeps the workspace's files only.
            data = b"".join([chunk async for chunk in sandbox.box.export_tar()])
            snapshot_id = f"snapshot-{secrets.token_hex(6)}:default"
            self._snapshots[snapshot_id] = data
            return 201, SnapshotInfo(snapshot_id=snapshot_id, names=[snapshot_id]).to_dict()
        if method == "POST" and action == "timeout":
            self._state_of(sandbox.id).timeout = int(body.get("timeout", 0))
            self._arm(sandbox.id)
            return 204, None
        return 404, _error(404, f"the fake does not emulate {method} {path}")

    def _sandbox_model(self, sandbox: EmulatedSandbox) -> dict[str, Any]:
        from e2b.api.client.models import Sandbox

        state = self._state_of(sandbox.id)
        return Sandbox(
            template_id=state.template,
            sandbox_id=sandbox.id,
            client_id="emulator",
            envd_version=ENVD_VERSION,
            envd_access_token=state.token,
        ).to_dict()

    def _times(self, sandbox: EmulatedSandbox) -> tuple[datetime.datetime, datetime.datetime]:
        started = datetime.datetime.fromtimestamp(sandbox.created_at, datetime.UTC)
        ends_at = self._state_of(sandbox.id).ends_at or time.time()
        return started, datetime.datetime.fromtimestamp(ends_at, datetime.UTC)

    def _detail(self, sandbox: EmulatedSandbox) -> dict[str, Any]:
        from e2b.api.client.models import SandboxDetail, SandboxState

        started, end = self._times(sandbox)
        detail = SandboxDetail(
            template_id=self._state_of(sandbox.id).template,
            sandbox_id=sandbox.id,
            client_id="emulator",
            started_at=started,
            end_at=end,
            envd_version=ENVD_VERSION,
            cpu_count=2,
            memory_mb=512,
            disk_size_mb=1024,
            state=SandboxState(sandbox.state),
            metadata=dict(sandbox.metadata),
            envd_access_token=self._state_of(sandbox.id).token,
            allow_internet_access=self._state_of(sandbox.id).allow_internet,
        )
        return detail.to_dict()

    def _list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        from e2b.api.client.models import ListedSandbox, SandboxState

        wanted = {k: v[0] for k, v in parse_qs(query.get("metadata", "")).items()}
        states = set(query.get("state", "running,paused").split(","))
        listed = []
        for sandbox in self.engine.all():
            if sandbox.state not in states:
                continue
            if any(sandbox.metadata.get(k) != v for k, v in wanted.items()):
                continue
            started, end = self._times(sandbox)
            listed.append(
                ListedSandbox(
                    template_id=self._state_of(sandbox.id).template,
                    sandbox_id=sandbox.id,
                    client_id="emulator",
                    started_at=started,
                    end_at=end,
                    cpu_count=2,
                    memory_mb=512,
                    disk_size_mb=1024,
                    state=SandboxState(sandbox.state),
                    envd_version=ENVD_VERSION,
                    metadata=dict(sandbox.metadata),
                ).to_dict()
            )
        return listed  # one page: the fake never sends x-next-token

    async def _kill(self, sandbox_id: str) -> None:
        state = self._state.pop(sandbox_id, None)
        if state is not None:
            if state.expiry is not None:
                state.expiry.cancel()
            for proc in state.processes.values():
                _kill_group(proc)
        await self.engine.destroy(sandbox_id)

    def _arm(self, sandbox_id: str) -> None:
        """Kill the sandbox when its timeout (its lifetime, from now) runs out, as E2B does."""
        state = self._state_of(sandbox_id)
        self._disarm(sandbox_id)
        state.ends_at = time.time() + state.timeout

        def expire() -> None:
            if sandbox_id in self._state:
                task = asyncio.ensure_future(self._kill(sandbox_id))
                self._expiring.add(task)
                task.add_done_callback(self._expiring.discard)

        state.expiry = asyncio.get_running_loop().call_later(state.timeout, expire)

    def _disarm(self, sandbox_id: str) -> None:
        state = self._state_of(sandbox_id)
        if state.expiry is not None:
            state.expiry.cancel()
            state.expiry = None

    # -- processes (used by _ProcessService) --------------------------------------------------

    async def start_process(
        self, sandbox: EmulatedSandbox, argv: list[str], env: dict[str, str], cwd: str, stdin: bool
    ) -> asyncio.subprocess.Process:
        rel = sandbox.path(cwd or HOME)
        request = ExecRequest(
            argv=argv, cwd=rel, env={**sandbox.box.manifest.env, **env}, stdin=None, timeout=None
        )
        host_argv, host_cwd, host_env = sandbox.box.host_command(request)  # type: ignore[attr-defined]
        proc = await asyncio.create_subprocess_exec(
            *host_argv,
            cwd=host_cwd,
            env=host_env,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._state_of(sandbox.id).processes[proc.pid] = proc
        return proc

    def process(self, sandbox: EmulatedSandbox, pid: int) -> asyncio.subprocess.Process:
        from connectrpc.code import Code
        from connectrpc.errors import ConnectError

        running = self._state_of(sandbox.id).processes.get(pid)
        if running is None:
            raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found")
        return running

    def forget(self, sandbox: EmulatedSandbox, pid: int) -> None:
        state = self._state.get(sandbox.id)
        if state is not None:
            state.processes.pop(pid, None)

    # -- /files ----------------------------------------------------------------------------

    async def _files(
        self, sandbox: EmulatedSandbox, method: str, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        query = _query(scope)
        path = query.get("path", "")
        if method == "GET":
            try:
                host = host_path(sandbox, path)
                data = await asyncio.to_thread(_read_host_file, host)
            except _HTTPError as exc:
                await _json(send, exc.status, _error(exc.status, exc.message))
                return
            await _raw(send, 200, data, "application/octet-stream")
            return
        if method != "POST":
            await _json(send, 405, _error(405, f"{method} /files is not allowed"))
            return
        headers = dict(scope["headers"])
        if int(headers.get(b"content-length", b"0") or 0) > self.max_file_size:
            message = f"not enough disk space for the upload (the fake allows {self.max_file_size})"
            await _json(send, 507, _error(507, message))
            return
        content_type = headers.get(b"content-type", b"").decode()
        uploads: list[tuple[str, bytes]]
        if content_type.startswith("multipart/form-data"):
            from starlette.requests import Request

            form = await Request(scope, receive).form()
            uploads = []
            for item in form.multi_items():
                value: Any = item[1]
                name = path or getattr(value, "filename", "")
                uploads.append((name, await value.read()))
        else:
            uploads = [(path, await _body_bytes(receive))]
        if any(len(data) > self.max_file_size for _, data in uploads):
            message = f"not enough disk space for the upload (the fake allows {self.max_file_size})"
            await _json(send, 507, _error(507, message))
            return
        written = []
        for name, data in uploads:
            try:
                host = host_path(sandbox, name, create=True)
                await asyncio.to_thread(_write_host_file, host, data)
            except _HTTPError as exc:
                await _json(send, exc.status, _error(exc.status, exc.message))
                return
            written.append({"name": os.path.basename(name), "type": "file", "path": name})
        await _json(send, 200, written)


# -- envd services ---------------------------------------------------------------------------


class _ProcessService(_ProcessProtocol):
    """envd's ``process.Process`` service: commands as host processes in the local sandbox."""

    def __init__(self, emulator: E2BEmulator) -> None:
        self.emulator = emulator

    def _sandbox(self, ctx: Any) -> EmulatedSandbox:
        return self.emulator.engine.get(ctx.request_headers.get("e2b-sandbox-id", ""))

    async def start(self, request: Any, ctx: Any) -> AsyncIterator[Any]:
        from connectrpc.code import Code
        from connectrpc.errors import ConnectError
        from e2b.envd.process import process_pb
        from protobuf import Oneof

        sandbox = self._sandbox(ctx)
        config = request.process
        try:
            proc = await self.emulator.start_process(
                sandbox,
                [config.cmd, *config.args],
                dict(config.envs),
                config.cwd if config.has_field("cwd") else "",
                request.stdin,
            )
        except Exception as exc:
            raise ConnectError(Code.INVALID_ARGUMENT, f"could not start process: {exc}") from exc
        event = process_pb.ProcessEvent
        yield process_pb.StartResponse(
            event=event(event=Oneof("start", event.StartEvent(pid=proc.pid)))
        )
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=16)

        async def pump(name: str, stream: asyncio.StreamReader) -> None:
            while chunk := await stream.read(_CHUNK):
                await queue.put((name, chunk))
            await queue.put((name, b""))  # this stream's end

        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            asyncio.ensure_future(pump("stdout", proc.stdout)),
            asyncio.ensure_future(pump("stderr", proc.stderr)),
        ]
        try:
            open_streams = 2
            while open_streams:
                name, chunk = await queue.get()
                if not chunk:
                    open_streams -= 1
                    continue
                data = event.DataEvent(output=Oneof(name, chunk))
                yield process_pb.StartResponse(event=event(event=Oneof("data", data)))
            code = await proc.wait()
        finally:
            for task in pumps:
                task.cancel()
            self.emulator.forget(sandbox, proc.pid)
        # envd reports Go's ExitCode(): -1 when a signal ended the process (a guess from
        # os.ProcessState; the SDK only passes it through).
        end = event.EndEvent(
            exit_code=code if code >= 0 else -1,
            exited=code >= 0,
            status=f"exit status {code}" if code >= 0 else f"signal: {signal.Signals(-code).name}",
        )
        yield process_pb.StartResponse(event=event(event=Oneof("end", end)))

    async def send_input(self, request: Any, ctx: Any) -> Any:
        from e2b.envd.process import process_pb

        running = self.emulator.process(self._sandbox(ctx), request.process.selector.value)
        data = request.input.input.value if request.input.input is not None else b""
        if running.stdin is not None:
            with contextlib.suppress(ConnectionError):
                running.stdin.write(data)
                await running.stdin.drain()
        return process_pb.SendInputResponse()

    async def close_stdin(self, request: Any, ctx: Any) -> Any:
        from e2b.envd.process import process_pb

        running = self.emulator.process(self._sandbox(ctx), request.process.selector.value)
        if running.stdin is not None:
            running.stdin.close()
        return process_pb.CloseStdinResponse()

    async def send_signal(self, request: Any, ctx: Any) -> Any:
        from e2b.envd.process import process_pb

        running = self.emulator.process(self._sandbox(ctx), request.process.selector.value)
        # Guess: whether envd signals the process or its whole group is not documented;
        # the fake signals the group (the sandbox's pid namespace goes with it).
        _kill_group(running, int(request.signal) or signal.SIGKILL)
        return process_pb.SendSignalResponse()


class _FilesystemService(_FilesystemProtocol):
    """envd's ``filesystem.Filesystem`` service, on the workspace directory of the sandbox."""

    def __init__(self, emulator: E2BEmulator) -> None:
        self.emulator = emulator

    def _sandbox(self, ctx: Any) -> EmulatedSandbox:
        return self.emulator.engine.get(ctx.request_headers.get("e2b-sandbox-id", ""))

    async def stat(self, request: Any, ctx: Any) -> Any:
        from e2b.envd.filesystem import filesystem_pb

        sandbox = self._sandbox(ctx)
        host = _rpc(lambda: host_path(sandbox, request.path, follow=False))
        return filesystem_pb.StatResponse(entry=_rpc(lambda: _entry(request.path, host)))

    async def make_dir(self, request: Any, ctx: Any) -> Any:
        from connectrpc.code import Code
        from connectrpc.errors import ConnectError
        from e2b.envd.filesystem import filesystem_pb

        sandbox = self._sandbox(ctx)
        host = _rpc(lambda: host_path(sandbox, request.path, create=True))
        if await asyncio.to_thread(os.path.lexists, host):
            raise ConnectError(Code.ALREADY_EXISTS, f"directory {request.path} already exists")
        _rpc(lambda: os.makedirs(host, 0o755))
        return filesystem_pb.MakeDirResponse(entry=_entry(request.path, host))

    async def remove(self, request: Any, ctx: Any) -> Any:
        from e2b.envd.filesystem import filesystem_pb

        sandbox = self._sandbox(ctx)
        host = _rpc(lambda: host_path(sandbox, request.path, follow=False))
        _rpc(lambda: _remove_host(host))
        return filesystem_pb.RemoveResponse()

    async def move(self, request: Any, ctx: Any) -> Any:
        from e2b.envd.filesystem import filesystem_pb

        sandbox = self._sandbox(ctx)
        source = _rpc(lambda: host_path(sandbox, request.source, follow=False))
        target = _rpc(lambda: host_path(sandbox, request.destination, create=True))
        _rpc(lambda: os.replace(source, target))
        return filesystem_pb.MoveResponse(entry=_entry(request.destination, target))

    async def list_dir(self, request: Any, ctx: Any) -> Any:
        from e2b.envd.filesystem import filesystem_pb

        sandbox = self._sandbox(ctx)
        host = _rpc(lambda: host_path(sandbox, request.path))
        entries = await asyncio.to_thread(
            lambda: _rpc(lambda: _list_host(request.path.rstrip("/"), host, request.depth or 1))
        )
        return filesystem_pb.ListDirResponse(entries=entries)


# -- host side of files --------------------------------------------------------------------------


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def host_path(
    sandbox: EmulatedSandbox, path: str, *, follow: bool = True, create: bool = False
) -> str:
    """The host path of an in-sandbox path, which must stay in the workspace.

    Real envd reaches the whole sandbox file system; the fake can only reach the
    workspace (its host directory), so anything else is a 404, as a missing file would be.
    """
    root = os.path.realpath(sandbox.box.host_path or "")
    try:
        rel = sandbox.path(path)
    except Exception:
        raise _HTTPError(
            404, f"path '{path}' does not exist (the fake serves only {HOME})"
        ) from None
    host = os.path.join(root, rel) if rel != "." else root
    parent, name = os.path.split(host)
    resolved = os.path.realpath(host) if follow else os.path.join(os.path.realpath(parent), name)
    if resolved != root and not resolved.startswith(root + "/"):
        raise _HTTPError(404, f"path '{path}' leaves {HOME}, which the fake cannot reach")
    if not create and not os.path.lexists(resolved):
        raise _HTTPError(404, f"path '{path}' does not exist")
    return resolved


def _rpc(fn: Callable[[], Any]) -> Any:
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError

    try:
        return fn()
    except _HTTPError as exc:
        raise ConnectError(Code.NOT_FOUND, exc.message) from None
    except FileNotFoundError as exc:
        raise ConnectError(Code.NOT_FOUND, str(exc)) from None
    except OSError as exc:
        raise ConnectError(Code.INVALID_ARGUMENT, str(exc)) from None


def _read_host_file(host: str) -> bytes:
    if os.path.isdir(host):
        raise _HTTPError(400, "path is a directory")
    with open(host, "rb") as f:
        return f.read()


def _write_host_file(host: str, data: bytes) -> None:
    if os.path.isdir(host):
        raise _HTTPError(400, "path is a directory")
    try:
        os.makedirs(os.path.dirname(host), 0o755, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _HTTPError(400, "a parent of the path is not a directory") from None
    # Like envd (os.OpenFile with O_TRUNC): an existing file keeps its mode.
    fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _remove_host(host: str) -> None:
    import shutil

    if os.path.isdir(host) and not os.path.islink(host):
        shutil.rmtree(host)
    else:
        os.unlink(host)


def _entry(path: str, host: str) -> Any:
    from e2b.envd.filesystem import filesystem_pb
    from protobuf.wkt import Timestamp

    st = os.lstat(host)
    link = os.readlink(host) if stat.S_ISLNK(st.st_mode) else None
    target = st
    if link is not None:
        with contextlib.suppress(OSError):
            target = os.stat(host)
    kinds = filesystem_pb.FileType
    # Newer envd reports a symlink's target type in ``type`` and flags the link with
    # ``is_symlink`` (the SDK says so); a dangling link is reported as a file (a guess).
    kind = kinds.DIRECTORY if stat.S_ISDIR(target.st_mode) else kinds.FILE
    seconds, nanos = divmod(st.st_mtime_ns, 10**9)
    return filesystem_pb.EntryInfo(
        name=os.path.basename(path.rstrip("/")) or "/",
        type=kind,
        path=path,
        size=st.st_size,
        mode=stat.S_IMODE(st.st_mode),
        permissions=stat.filemode(st.st_mode),
        owner="user",
        group="user",
        modified_time=Timestamp(seconds=seconds, nanos=nanos),
        symlink_target=link,
        is_symlink=link is not None,
    )


def _list_host(path: str, host: str, depth: int) -> list[Any]:
    if not os.path.isdir(host):
        raise _HTTPError(404, f"path '{path}' is not a directory")
    entries = []
    with os.scandir(host) as it:
        for item in sorted(it, key=lambda e: e.name):
            inner = f"{path}/{item.name}"
            entries.append(_entry(inner, item.path))
            # Guess: envd does not descend into symlinked directories.
            if depth > 1 and item.is_dir(follow_symlinks=False):
                entries.extend(_list_host(inner, item.path, depth - 1))
    return entries


def _kill_group(proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


# -- ASGI helpers ---------------------------------------------------------------------------------


def _error(code: int, message: str) -> dict[str, Any]:
    from e2b.api.client.models import Error

    return Error(code=code, message=message).to_dict()


def _unset_none(value: Any) -> Any:
    from e2b.api.client.types import Unset

    return None if isinstance(value, Unset) else value


def _mapping(value: Any) -> dict[str, str]:
    value = _unset_none(value)
    value = getattr(value, "additional_properties", value)
    return dict(value) if value else {}


def _query(scope: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}


async def _body_bytes(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _body(receive: Any) -> Any:
    data = await _body_bytes(receive)
    return json.loads(data) if data else {}


async def _raw(send: Any, status: int, body: bytes, content_type: str = "text/plain") -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Any, status: int, payload: Any) -> None:
    body = b"" if payload is None else json.dumps(payload).encode()
    await _raw(send, status, body, "application/json")


class _DroppingSend:
    """Passes the response start and its first body chunk, then swallows the rest; the
    dispatcher then raises ``_Dropped`` so uvicorn cuts the connection mid-response."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.dropped = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.dropped:
            return
        await self._send(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.dropped = True


# -- running it ---------------------------------------------------------------------------------


def start_e2b_emulator(
    root: str | os.PathLike[str], *, api_key: str | None = None
) -> tuple[EmulatorServer, E2BEmulator]:
    """Start the fake on a free loopback port; ``server.stop(emulator.engine.aclose)`` ends it."""
    emulators: list[E2BEmulator] = []

    async def make_app() -> E2BEmulator:
        emulator = E2BEmulator(EmulatorEngine(root, home=HOME), api_key=api_key)
        emulators.append(emulator)
        return emulator

    server = EmulatorServer(make_app).start()
    return server, emulators[0]


def environment(server: EmulatorServer, emulator: E2BEmulator) -> dict[str, str]:
    """The variables that point the e2b SDK at this fake."""
    return {
        "E2B_API_URL": server.url,
        "E2B_SANDBOX_URL": server.url,
        "E2B_API_KEY": emulator.api_key,
        "E2B_HTTP_VERSION": "1.1",  # plaintext HTTP/2 is not negotiated; the fake speaks 1.1
    }


def main() -> None:  # pragma: no cover - manual use
    import argparse

    parser = argparse.ArgumentParser(description="Serve a fake of E2B on 127.0.0.1.")
    parser.add_argument("--root", default=None, help="directory for the sandboxes' state")
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="sandbank-e2b-emulator-")
    server, emulator = start_e2b_emulator(Path(root))
    for name, value in environment(server, emulator).items():
        print(f"export {name}={value}")
    print("# a fake of E2B, not the service; Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        server.stop(emulator.engine.aclose)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    main()
