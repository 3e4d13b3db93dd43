"""An offline emulator (a fake) of Modal's sandbox service, for the real ``modal`` SDK.

Two grpclib servers on 127.0.0.1, built from the protos in the ``modal`` wheel: the control
plane (the ``ModalClient`` service: apps, images, sandboxes) and the task command router
(``TaskCommandRouter``: exec, stdio, stdin, filesystem snapshots). Every emulated sandbox is
a real sandbank ``local`` (bubblewrap) sandbox of the shared engine, so commands really run
and files really exist. Point the SDK at it with ``emulator.environment()``
(``MODAL_SERVER_URL`` and the emulator's dummy ``MODAL_TOKEN_ID``/``MODAL_TOKEN_SECRET``).

To test your own agent code offline: ``python -m sandbank.testing.emulators.modal`` serves
it and prints those variables; in pytest, the ``modal_emulator`` fixture of
``sandbank.testing.emulators.fixtures`` sets them for one test.

What it does not emulate: images (every sandbox runs on this host's system in bubblewrap;
the image name is only reported back), resource limits, tunnels that carry traffic, PTYs.
A filesystem snapshot is the workspace only (Modal's is the whole filesystem).

It answers only what the SDK calls for sandboxes (``App.lookup``, ``Image.from_registry`` /
``from_id``, ``Sandbox.create/from_id/list/poll/wait/terminate/exec/tags/tunnels`` and
``snapshot_filesystem``); every other RPC answers UNIMPLEMENTED. Comments marked *guess* say
where the real service's behaviour is not known from the SDK and this fake picks one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from grpclib import GRPCError, Status
from grpclib.server import Server, Stream
from modal_proto import api_grpc, api_pb2, task_command_router_grpc
from modal_proto import task_command_router_pb2 as sr_pb2

from sandbank.testing.emulators.engine import (
    EmulatedNotFound,
    EmulatedSandbox,
    EmulatorEngine,
    kill_process_group,
)

__all__ = ["Fault", "ModalEmulator"]

T = TypeVar("T")
HOME = "/workspace"  # guess: Modal's default workdir is the image's; sandbank asks for this one
TERMINATED = api_pb2.GenericResult.GENERIC_STATUS_TERMINATED


def _fill_unimplemented(cls: type[T]) -> type[T]:
    """Answer every RPC the class does not define with UNIMPLEMENTED, naming it."""

    def fallback(name: str) -> Callable[[Any, Stream[Any, Any]], Awaitable[None]]:
        async def unimplemented(self: Any, stream: Stream[Any, Any]) -> None:
            raise GRPCError(
                Status.UNIMPLEMENTED, f"{name} is not implemented by the Modal emulator"
            )

        return unimplemented

    for name in getattr(cls, "__abstractmethods__", ()):
        setattr(cls, name, fallback(name))
    cls.__abstractmethods__ = frozenset()  # type: ignore[attr-defined]
    return cls


def _jwt(seconds: float) -> str:
    """A token the SDK can parse (it reads ``exp`` to refresh in time); the fake never checks it."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'exp': int(time.time() + seconds)})}.sig"


@dataclass
class _Exec:
    """One running command, a process in the sandbox, with its output kept for reads from
    any offset (a reconnecting client resumes where it stopped)."""

    proc: asyncio.subprocess.Process
    written: int = 0
    """Bytes of stdin accepted so far (the client's write offsets count from 0)."""
    closed: bool = False
    out: dict[int, bytearray] = field(default_factory=lambda: {0: bytearray(), 1: bytearray()})
    code: int | None = None
    task: asyncio.Task[None] | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    stdin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Box:
    """What the control plane keeps for one emulated sandbox."""

    sandbox: EmulatedSandbox
    sandbox_id: str
    task_id: str
    app_id: str
    image_id: str
    tags: dict[str, str]
    ports: list[int]
    result: api_pb2.GenericResult | None = None
    execs: dict[str, _Exec] = field(default_factory=dict)


@dataclass
class Fault:
    """Injected failures: the next ``count`` calls of ``method`` fail with ``status``, or
    (``drop=True``) the connection of the call is closed under it."""

    method: str
    status: Status = Status.UNAVAILABLE
    count: int = 1
    drop: bool = False


class ModalEmulator:
    """The fake Modal service: start it, point the SDK at ``url``, stop it.

    It runs on its own thread and event loop (the SDK runs its client on a loop of its own,
    through synchronicity); :meth:`call` runs a coroutine there, e.g. ``engine.destroy`` to
    delete a sandbox behind a client's back.
    """

    token_id = "ak-sandbank-emulator"
    token_secret = "as-sandbank-emulator"

    def __init__(self, engine_root: str, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.engine_root = engine_root
        self.engine: EmulatorEngine | None = None
        self.boxes: dict[str, _Box] = {}
        self.images: dict[str, str] = {}  # image id -> tag, or the sandbox it was snapshotted from
        self.snapshots: dict[str, Path] = {}  # image id -> the workspace tar of a snapshot
        self.faults: list[Fault] = []
        self.calls: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="modal-emu"
        )
        self._servers: list[Server] = []
        self.url = ""
        self.router_url = ""

    # -- running -------------------------------------------------------------------------

    def start(self) -> ModalEmulator:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self.engine = EmulatorEngine(self.engine_root, home=HOME)
        # The service bases are abstract in the stubs; _fill_unimplemented fills in the rest.
        control, router = (Server([cast(Any, cls)(self)]) for cls in (_ControlPlane, _Router))
        for server in (control, router):
            await server.start(self.host, 0)
            self._servers.append(server)
        self.url = f"http://{self.host}:{_port(control)}"
        self.router_url = f"http://{self.host}:{_port(router)}"

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _stop(self) -> None:
        tasks = [ex.task for box in self.boxes.values() for ex in box.execs.values() if ex.task]
        for box in self.boxes.values():
            self.kill_execs(box)
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            server.close()
            await server.wait_closed()
        if self.engine is not None:
            await self.engine.aclose()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run ``coro`` on the emulator's loop and return its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`call` for async code on another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def __enter__(self) -> ModalEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults and checks shared by both services ----------------------------------------

    def environment(self) -> dict[str, str]:
        """The variables that point the ``modal`` SDK at this emulator."""
        return {
            "MODAL_SERVER_URL": self.url,
            "MODAL_TOKEN_ID": self.token_id,
            "MODAL_TOKEN_SECRET": self.token_secret,
        }

    def inject(self, fault: Fault) -> None:
        """Apply ``fault`` to the next calls (from any thread)."""
        self._loop.call_soon_threadsafe(self.faults.append, fault)

    def clear_faults(self) -> None:
        self._loop.call_soon_threadsafe(self.faults.clear)

    def admit(self, method: str, stream: Stream[Any, Any]) -> None:
        """Count the call, apply an injected fault, check the credentials."""
        self.calls.append(method)
        for fault in self.faults:
            if fault.method == method and fault.count > 0:
                fault.count -= 1
                if fault.drop:
                    # closing the transport mid-call is what a dropped connection looks like
                    stream._stream._transport.close()
                raise GRPCError(fault.status, f"injected fault on {method}")
        metadata: Any = stream.metadata or {}
        if "x-modal-token-id" in metadata and (
            metadata.get("x-modal-token-id") != self.token_id
            or metadata.get("x-modal-token-secret") != self.token_secret
        ):
            # guess: the real service answers UNAUTHENTICATED for a wrong token
            raise GRPCError(Status.UNAUTHENTICATED, "Token ID or secret is invalid")

    def box(self, sandbox_id: str) -> _Box:
        box = self.boxes.get(sandbox_id)
        if box is None:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {sandbox_id} not found")
        return box

    def running(self, task_id: str) -> _Box:
        for box in self.boxes.values():
            if box.task_id == task_id:
                if self.alive(box) is not None:
                    # guess: the router of a finished task refuses calls as NOT_FOUND
                    raise GRPCError(Status.NOT_FOUND, f"Task {task_id} has finished")
                return box
        raise GRPCError(Status.NOT_FOUND, f"Task {task_id} not found")

    def alive(self, box: _Box) -> api_pb2.GenericResult | None:
        """The box's result; a sandbox destroyed in the engine behind the emulator's back has
        been terminated."""
        if box.result is None and self.engine is not None:
            try:
                self.engine.get(box.sandbox.id)
            except EmulatedNotFound:
                box.result = api_pb2.GenericResult(status=TERMINATED, exitcode=137)
                self.kill_execs(box)
        return box.result

    def info(self, box: _Box) -> api_pb2.SandboxInfo:
        return api_pb2.SandboxInfo(
            id=box.sandbox_id,
            created_at=box.sandbox.created_at,
            app_id=box.app_id,
            image_id=box.image_id,
            tags=[api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in box.tags.items()],
            task_info=api_pb2.TaskInfo(id=box.task_id, started_at=box.sandbox.created_at),
        )

    def kill_execs(self, box: _Box) -> None:
        for ex in box.execs.values():
            kill_process_group(ex.proc)

    async def terminate(self, box: _Box) -> None:
        self.kill_execs(box)
        if box.result is None:
            box.result = api_pb2.GenericResult(status=TERMINATED, exitcode=137)
            assert self.engine is not None
            with contextlib.suppress(EmulatedNotFound):
                await self.engine.destroy(box.sandbox.id)


def _port(server: Server) -> int:
    listening: Any = server._server  # asyncio's Server once started
    return int(listening.sockets[0].getsockname()[1])


@_fill_unimplemented
class _ControlPlane(api_grpc.ModalClientBase):
    """The ``ModalClient`` service, as far as sandboxes need it."""

    def __init__(self, emulator: ModalEmulator) -> None:
        self.emu = emulator

    async def _request(self, name: str, stream: Stream[Any, Any]) -> Any:
        request = await stream.recv_message()
        self.emu.admit(name, stream)
        return request

    async def ClientHello(self, stream: Stream[Any, Any]) -> None:
        await self._request("ClientHello", stream)
        await stream.send_message(api_pb2.ClientHelloResponse())

    async def AuthTokenGet(self, stream: Stream[Any, Any]) -> None:
        await self._request("AuthTokenGet", stream)
        await stream.send_message(api_pb2.AuthTokenGetResponse(token=_jwt(3600)))

    async def AppGetOrCreate(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("AppGetOrCreate", stream)
        # guess: app ids are stable per name, as the service's are per workspace
        app_id = "ap-" + base64.b32encode(request.app_name.encode()).decode().strip("=")[:22]
        await stream.send_message(api_pb2.AppGetOrCreateResponse(app_id=app_id))

    async def EnvironmentGetOrCreate(self, stream: Stream[Any, Any]) -> None:
        await self._request("EnvironmentGetOrCreate", stream)
        metadata = api_pb2.EnvironmentMetadata(
            name="main",
            settings=api_pb2.EnvironmentSettings(image_builder_version="2024.10"),
        )
        await stream.send_message(
            api_pb2.EnvironmentGetOrCreateResponse(environment_id="en-emulated", metadata=metadata)
        )

    async def ImageGetOrCreate(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("ImageGetOrCreate", stream)
        # Images are not built: every emulated sandbox runs on this host's system (the
        # engine's bubblewrap sandbox); the tag is kept only to be reported back.
        image_id = "im-" + secrets.token_hex(11)
        first = next(iter(request.image.dockerfile_commands), "FROM (unnamed)")
        self.emu.images[image_id] = first.removeprefix("FROM ")
        success = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)
        await stream.send_message(
            api_pb2.ImageGetOrCreateResponse(image_id=image_id, result=success)
        )

    async def ImageFromId(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("ImageFromId", stream)
        if request.image_id not in self.emu.images:
            raise GRPCError(Status.NOT_FOUND, f"Image {request.image_id} not found")
        await stream.send_message(api_pb2.ImageFromIdResponse(image_id=request.image_id))

    async def SandboxCreateV2(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("SandboxCreateV2", stream)
        definition = request.definition
        if definition.image_id not in self.emu.images:
            raise GRPCError(Status.NOT_FOUND, f"Image {definition.image_id} not found")
        env: dict[str, str] = {}
        for source in request.secret_sources:
            env.update(source.env.contents)
        blocked = definition.network_access.network_access_type == api_pb2.NetworkAccess.BLOCKED
        assert self.emu.engine is not None
        sandbox = await self.emu.engine.create(env=env, network=not blocked)
        if definition.image_id in self.emu.snapshots:
            await sandbox.box.import_tar(_read_file(self.emu.snapshots[definition.image_id]))
        if definition.workdir and definition.workdir != HOME:
            await sandbox.box.mkdir(sandbox.path(definition.workdir))
        # guess: V2 ids; anything but "sb-" + 22 base62 characters makes the SDK use V2
        sandbox_id = "sb-v2-" + secrets.token_hex(8)
        box = _Box(
            sandbox=sandbox,
            sandbox_id=sandbox_id,
            task_id=f"ta-{secrets.token_hex(8)}V",  # the SDK's marker of a V2 task
            app_id=request.app_id,
            image_id=definition.image_id,
            tags={t.tag_name: t.tag_value for t in request.tags},
            ports=[p.port for p in definition.open_ports.ports],
        )
        self.emu.boxes[sandbox_id] = box
        access = api_pb2.CommandRouterAccess(url=self.emu.router_url, jwt=_jwt(3600))
        await stream.send_message(
            api_pb2.SandboxCreateV2Response(
                sandbox_id=sandbox_id,
                task_id=box.task_id,
                command_router_access=access,
                tunnels=self._tunnels(box),
                metadata=api_pb2.SandboxHandleMetadata(app_id=box.app_id),
            )
        )

    def _tunnels(self, box: _Box) -> list[api_pb2.TunnelData]:
        # guess: the host name; nothing listens behind it (the engine has no port forwarding)
        return [
            api_pb2.TunnelData(
                host=f"{box.sandbox_id}-{p}.emulated.invalid", port=443, container_port=p
            )
            for p in box.ports
        ]

    async def SandboxGetCommandRouterAccess(self, stream: Stream[Any, Any]) -> None:
        await self._request("SandboxGetCommandRouterAccess", stream)
        await stream.send_message(
            api_pb2.SandboxGetCommandRouterAccessResponse(url=self.emu.router_url, jwt=_jwt(3600))
        )

    async def SandboxGetTaskIdV2(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("SandboxGetTaskIdV2", stream)
        box = self.emu.box(request.sandbox_id)
        result = self.emu.alive(box)
        await stream.send_message(
            api_pb2.SandboxGetTaskIdResponse(task_id=box.task_id, task_result=result)
        )

    async def SandboxWaitV2(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("SandboxWaitV2", stream)
        box = self.emu.box(request.sandbox_id)
        deadline = time.monotonic() + request.timeout
        while self.emu.alive(box) is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # a destroy in the engine sets nothing to wait on
        meta = api_pb2.SandboxHandleMetadata(app_id=box.app_id, result=box.result)
        await stream.send_message(api_pb2.SandboxWaitResponse(result=box.result, metadata=meta))

    async def SandboxTerminateV2(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("SandboxTerminateV2", stream)
        await self.emu.terminate(self.emu.box(request.sandbox_id))
        await stream.send_message(api_pb2.SandboxTerminateResponse())

    async def SandboxListV2(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("SandboxListV2", stream)
        wanted = {t.tag_name: t.tag_value for t in request.tags}
        found = [
            self.emu.info(box)
            for box in self.emu.boxes.values()
            if (not request.app_id or box.app_id == request.app_id)
            and wanted.items() <= box.tags.items()
            and (request.include_finished or self.emu.alive(box) is None)
            # the SDK pages backwards from the oldest created_at it has seen
            and (not request.before_timestamp or box.sandbox.created_at < request.before_timestamp)
        ]
        found.sort(key=lambda info: -info.created_at)
        await stream.send_message(api_pb2.SandboxListResponse(sandboxes=found))

    async def SandboxTagsGetV2(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("SandboxTagsGetV2", stream)
        box = self.emu.box(request.sandbox_id)
        tags = [api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in box.tags.items()]
        await stream.send_message(api_pb2.SandboxTagsGetResponse(tags=tags))

    async def SandboxGetTunnelsV2(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("SandboxGetTunnelsV2", stream)
        box = self.emu.box(request.sandbox_id)
        await stream.send_message(api_pb2.SandboxGetTunnelsResponse(tunnels=self._tunnels(box)))


@_fill_unimplemented
class _Router(task_command_router_grpc.TaskCommandRouterBase):
    """The ``TaskCommandRouter`` service: exec and stdio through the engine's sandboxes."""

    def __init__(self, emulator: ModalEmulator) -> None:
        self.emu = emulator

    async def _request(self, name: str, stream: Stream[Any, Any]) -> Any:
        request = await stream.recv_message()
        self.emu.admit(name, stream)
        return request

    def _exec(self, task_id: str, exec_id: str) -> tuple[_Box, _Exec]:
        box = self.emu.running(task_id)
        proc = box.execs.get(exec_id)
        if proc is None:
            raise GRPCError(Status.NOT_FOUND, f"Exec {exec_id} not found")
        return box, proc

    async def TaskExecStart(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("TaskExecStart", stream)
        box = self.emu.running(request.task_id)
        if request.HasField("pty_info"):
            raise GRPCError(Status.UNIMPLEMENTED, "the Modal emulator has no PTY")
        if request.exec_id in box.execs:  # the exec id is an idempotency key
            await stream.send_message(sr_pb2.TaskExecStartResponse())
            return
        workdir = request.workdir if request.HasField("workdir") else HOME
        if not box.sandbox.inside(workdir):
            raise GRPCError(Status.INVALID_ARGUMENT, f"workdir {workdir!r} is outside {HOME}")
        env = dict(request.env)
        for source in request.secret_sources:  # the SDK sends exec(env=...) as one of these
            env.update(source.env.contents)
        # guess: a workdir that does not exist fails the command (bubblewrap's chdir error)
        proc = await box.sandbox.start_process(list(request.command_args), cwd=workdir, env=env)
        ex = box.execs[request.exec_id] = _Exec(proc)
        timeout = float(request.timeout_secs) if request.HasField("timeout_secs") else None
        ex.task = asyncio.ensure_future(self._run(ex, timeout))
        await stream.send_message(sr_pb2.TaskExecStartResponse())

    async def _run(self, ex: _Exec, timeout: float | None) -> None:
        async def collect(fd: int, reader: asyncio.StreamReader) -> None:
            while chunk := await reader.read(1 << 16):
                ex.out[fd] += chunk
                async with ex.changed:
                    ex.changed.notify_all()

        assert ex.proc.stdout is not None and ex.proc.stderr is not None
        readers = [
            asyncio.ensure_future(collect(0, ex.proc.stdout)),
            asyncio.ensure_future(collect(1, ex.proc.stderr)),
        ]
        try:
            try:
                async with asyncio.timeout(timeout):
                    await ex.proc.wait()
            except TimeoutError:
                pass  # guess: the router kills a command past timeout_secs with SIGKILL
            kill_process_group(ex.proc)  # the command's children too
            code = await ex.proc.wait()
            await asyncio.wait(readers, timeout=5)  # a stray holder of a pipe is dead too
        finally:
            for reader in readers:
                reader.cancel()
            kill_process_group(ex.proc)
        ex.code = 128 - code if code < 0 else code
        async with ex.changed:
            ex.changed.notify_all()

    async def _feed(self, ex: _Exec, offset: int, data: bytes, eof: bool) -> None:
        """Write the part of ``data`` (sent from ``offset``) not written yet; a retried
        write repeats bytes the fake already has."""
        async with ex.stdin_lock:
            fresh = data[max(0, ex.written - offset) :] if offset <= ex.written else b""
            if offset > ex.written:
                raise GRPCError(Status.FAILED_PRECONDITION, "stdin offset ahead of the data")
            stdin = ex.proc.stdin
            if fresh and not ex.closed and stdin is not None:
                with contextlib.suppress(ConnectionError):  # the command stopped reading
                    stdin.write(fresh)
                    await stdin.drain()
            ex.written += len(fresh)
            if eof and not ex.closed and stdin is not None:
                ex.closed = True
                stdin.close()

    async def TaskExecStdinWrite(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("TaskExecStdinWrite", stream)
        _, ex = self._exec(request.task_id, request.exec_id)
        await self._feed(ex, request.offset, request.data, request.eof)
        await stream.send_message(sr_pb2.TaskExecStdinWriteResponse())

    async def TaskExecStdinWriteStream(self, stream: Stream[Any, Any]) -> None:
        first = await self._request("TaskExecStdinWriteStream", stream)
        if first.WhichOneof("payload") != "start":
            raise GRPCError(Status.INVALID_ARGUMENT, "the first message must be start")
        _, ex = self._exec(first.start.task_id, first.start.exec_id)
        offset = first.start.offset
        async for message in stream:
            kind = message.WhichOneof("payload")
            if kind == "end":
                await self._feed(ex, offset, b"", True)
                break
            if kind != "data":
                raise GRPCError(Status.INVALID_ARGUMENT, "expected data or end")
            await self._feed(ex, offset, message.data, False)
            offset += len(message.data)
        await stream.send_message(sr_pb2.TaskExecStdinWriteStreamResponse())

    async def TaskExecStdinStatus(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("TaskExecStdinStatus", stream)
        _, ex = self._exec(request.task_id, request.exec_id)
        await stream.send_message(
            sr_pb2.TaskExecStdinStatusResponse(num_bytes_written=ex.written, closed=ex.closed)
        )

    async def TaskExecStdioRead(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("TaskExecStdioRead", stream)
        _, ex = self._exec(request.task_id, request.exec_id)
        fd = 0 if request.file_descriptor == sr_pb2.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT else 1
        offset = request.offset  # a reconnecting client resumes where it stopped
        while True:
            buf = ex.out[fd]
            if offset < len(buf):
                chunk = bytes(buf[offset : offset + (1 << 20)])
                offset += len(chunk)
                await stream.send_message(sr_pb2.TaskExecStdioReadResponse(data=chunk))
                continue
            if ex.code is not None:
                return
            async with ex.changed:
                if offset >= len(ex.out[fd]) and ex.code is None:
                    await ex.changed.wait()

    async def _wait(self, ex: _Exec, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async with ex.changed:
                    await ex.changed.wait_for(lambda: ex.code is not None)

    async def TaskExecWait(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("TaskExecWait", stream)
        _, ex = self._exec(request.task_id, request.exec_id)
        # guess: the router long-polls; the SDK retries DEADLINE_EXCEEDED until its deadline
        await self._wait(ex, 50)
        if ex.code is None:
            raise GRPCError(Status.DEADLINE_EXCEEDED, "exec still running")
        await stream.send_message(_exit(sr_pb2.TaskExecWaitResponse, ex.code))

    async def TaskExecPoll(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("TaskExecPoll", stream)
        _, ex = self._exec(request.task_id, request.exec_id)
        if ex.code is None:
            await stream.send_message(sr_pb2.TaskExecPollResponse())
        else:
            await stream.send_message(_exit(sr_pb2.TaskExecPollResponse, ex.code))

    async def TaskSnapshotFilesystem(self, stream: Stream[Any, Any]) -> None:
        request = await self._request("TaskSnapshotFilesystem", stream)
        box = self.emu.running(request.task_id)
        # The image is the sandbox's workspace as a tar, kept by the emulator: a sandbox
        # created from it starts with those files (the rest of the system is the host's).
        image_id = "im-" + secrets.token_hex(11)
        target = Path(self.emu.engine_root) / "snapshots" / f"{image_id}.tar"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            async for chunk in box.sandbox.box.export_tar():
                await asyncio.to_thread(out.write, chunk)
        self.emu.images[image_id] = f"snapshot of {box.sandbox_id}"
        self.emu.snapshots[image_id] = target
        await stream.send_message(sr_pb2.TaskSnapshotFilesystemResponse(image_id=image_id))


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, 1 << 20):
            yield chunk


def _exit(cls: Any, code: int) -> Any:
    return cls(code=code) if code < 128 or code > 255 else cls(signal=code - 128)


def main() -> None:
    """``python -m sandbank.testing.emulators.modal [ROOT]``: serve the emulator until
    interrupted, printing the environment that points the ``modal`` SDK at it."""
    import sys
    import tempfile

    root = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="modal-emulator-")
    with ModalEmulator(root) as emulator:
        for name, value in emulator.environment().items():
            print(f"export {name}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
