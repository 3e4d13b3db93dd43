"""A fake of Runloop's REST API on 127.0.0.1, as far as sandbank's provider uses it.

It answers devbox create, retrieve, list, shutdown, suspend, resume, ``snapshot_disk``,
``wait_for_status``, ``execute`` and the execution long poll, ``upload_file``,
``download_file`` and the network-policy list/create, with bodies built from the SDK's
own models (``DevboxView``, ``DevboxAsyncExecutionDetailView``...), so a response the SDK
would reject fails the test. Each devbox is a real ``local`` sandbox of ``EmulatorEngine``,
where commands really run. It is a fake of the service, not the service: where the real
behaviour is not known from the SDK, a comment says it guesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sandbank.errors import SandbankError
from sandbank.providers.base import normalize_path
from sandbank.providers.hostdir import HostDirectory
from sandbank.testing.emulators.engine import (
    EmulatedNotFound,
    EmulatedSandbox,
    EmulatorEngine,
    EmulatorServer,
)

__all__ = ["HOME", "RunloopEmulator", "serve_runloop"]

HOME = "/home/user/workspace"
"""Where the emulated devboxes mount their workspace (the provider's default)."""


@dataclass
class Fault:
    """The next ``times`` requests matching ``method`` and ``path_suffix`` answer ``status``
    unhandled; with ``status=0`` they are handled and the connection drops mid-response."""

    method: str
    path_suffix: str
    status: int
    times: int = 1


@dataclass
class RunloopEmulator:
    """The Starlette app of the fake; ``url`` is set by whoever serves it."""

    engine: EmulatorEngine
    api_key: str = "emulated-key"
    url: str = ""
    faults: list[Fault] = field(default_factory=list)
    server: EmulatorServer | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    """Every (method, path) the fake was asked, in order."""
    _views: dict[str, dict[str, Any]] = field(default_factory=dict)
    _policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    _executions: dict[str, tuple[str, asyncio.Task[Any]]] = field(default_factory=dict)
    _snapshots: dict[str, bytes] = field(default_factory=dict)
    """Disk snapshots: a tar of the workspace (the fake keeps only the workspace, a real
    disk snapshot keeps the whole disk)."""

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()

    def call(self, coro: Any) -> Any:
        assert self.server is not None, "serve the emulator with serve_runloop()"
        return self.server.call(coro)

    def inject(self, method: str, path_suffix: str, status: int, times: int = 1) -> None:
        self.faults.append(Fault(method.upper(), path_suffix, status, times))

    async def delete_behind_back(self, devbox_id: str) -> None:
        """Forget a devbox as if it were deleted elsewhere (the fake answers 404 for it)."""
        self._views.pop(devbox_id, None)
        await self.engine.destroy(devbox_id)

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        d = "/v1/devboxes"
        routes = [
            Route(d, self.create, methods=["POST"]),
            Route(d, self.list, methods=["GET"]),
            Route(d + "/{sid}", self.retrieve, methods=["GET"]),
            Route(d + "/{sid}/wait_for_status", self.wait_for_status, methods=["POST"]),
            Route(d + "/{sid}/execute", self.execute, methods=["POST"]),
            Route(d + "/{sid}/executions/{eid}", self.execution, methods=["GET"]),
            Route(
                d + "/{sid}/executions/{eid}/wait_for_status",
                self.wait_for_execution,
                methods=["POST"],
            ),
            Route(d + "/{sid}/upload_file", self.upload_file, methods=["POST"]),
            Route(d + "/{sid}/download_file", self.download_file, methods=["POST"]),
            Route(d + "/{sid}/snapshot_disk", self.snapshot_disk, methods=["POST"]),
            Route(d + "/{sid}/{action:str}", self.lifecycle, methods=["POST"]),
            Route("/v1/network-policies", self.list_policies, methods=["GET"]),
            Route("/v1/network-policies", self.create_policy, methods=["POST"]),
        ]
        handlers = {_HTTPError: _error_response, EmulatedNotFound: _error_response}
        return _Guard(Starlette(routes=routes, exception_handlers=handlers), self)

    # -- devboxes --------------------------------------------------------------------------

    def _json(self, model: Any) -> Any:
        from starlette.responses import Response

        return Response(model.model_dump_json(), 200, media_type="application/json")

    def _view(self, sid: str) -> Any:
        from runloop_api_client.types import DevboxView

        raw = self._views.get(sid)
        if raw is None:
            raise _HTTPError(404, f"devbox {sid} not found")
        return DevboxView.model_validate(raw)

    async def create(self, request: Any) -> Any:
        body = await request.json()
        launch = dict(body.get("launch_parameters") or {})
        policy = self._policies.get(launch.get("network_policy_id") or "")
        if launch.get("network_policy_id") and policy is None:
            raise _HTTPError(400, f"network policy {launch['network_policy_id']} not found")
        network = policy is None or bool(policy["egress"]["allow_all"])
        snapshot = body.get("snapshot_id")
        if snapshot and snapshot not in self._snapshots:
            raise _HTTPError(400, f"snapshot {snapshot} not found")
        emulated = await self.engine.create(
            metadata=dict(body.get("metadata") or {}),
            env=dict(body.get("environment_variables") or {}),
            network=network,
        )
        if snapshot:
            await emulated.box.import_tar(self._snapshots[snapshot])
        now = int(time.time() * 1000)
        # Guess: the real service answers "provisioning" and boots for a while; the fake's
        # devbox is running at once (the SDK's wait_for_status returns immediately).
        self._views[emulated.id] = {
            "id": emulated.id,
            "capabilities": [],
            "create_time_ms": now,
            "launch_parameters": launch,
            "metadata": dict(body.get("metadata") or {}),
            "state_transitions": [{"status": "running", "transition_time_ms": now}],
            "status": "running",
            "name": body.get("name"),
            "blueprint_id": body.get("blueprint_id"),
            "snapshot_id": body.get("snapshot_id"),
        }
        return self._json(self._view(emulated.id))

    async def retrieve(self, request: Any) -> Any:
        return self._json(self._view(request.path_params["sid"]))

    async def list(self, request: Any) -> Any:
        from runloop_api_client.types import DevboxListView

        views = [self._view(sid) for sid in sorted(self._views)]
        after = request.query_params.get("starting_after")
        if after:
            views = [v for v in views if v.id > after]
        limit = int(request.query_params.get("limit") or 20)
        page = DevboxListView(devboxes=views[:limit], has_more=len(views) > limit)
        return self._json(page)

    async def wait_for_status(self, request: Any) -> Any:
        # The fake's state changes are immediate, so the long poll answers at once.
        return self._json(self._view(request.path_params["sid"]))

    async def lifecycle(self, request: Any) -> Any:
        sid, action = request.path_params["sid"], request.path_params["action"]
        view = self._view(sid)
        raw = self._views[sid]
        if action == "shutdown":
            del self._views[sid]
            await self.engine.destroy(sid)
            raw["status"], raw["end_time_ms"] = "shutdown", int(time.time() * 1000)
            raw["shutdown_reason"] = "api_shutdown"
        elif action == "suspend":
            if view.status != "running":
                raise _HTTPError(400, f"devbox {sid} is {view.status}, not running")
            emulated = self.engine.get(sid)
            await self.engine.pause(sid)
            # Suspend keeps the disk and ends every process (a guess from Runloop's docs).
            running = getattr(emulated.box.provider, "_running", None)
            if running is not None:
                running.kill(emulated.box.id)
            raw["status"] = "suspended"
        elif action == "resume":
            if view.status != "suspended":
                raise _HTTPError(400, f"devbox {sid} is {view.status}, not suspended")
            await self.engine.resume(sid)
            raw["status"] = "running"
        else:
            raise _HTTPError(404, f"no route POST /v1/devboxes/{sid}/{action} in the fake")
        now = int(time.time() * 1000)
        raw["state_transitions"].append({"status": raw["status"], "transition_time_ms": now})
        from runloop_api_client.types import DevboxView

        return self._json(DevboxView.model_validate(raw))

    def _running(self, sid: str) -> EmulatedSandbox:
        view = self._view(sid)
        if view.status != "running":
            # Guess: the real service refuses work on a devbox that is not running.
            raise _HTTPError(400, f"devbox {sid} is {view.status}, not running")
        return self.engine.get(sid)

    async def execute(self, request: Any) -> Any:
        sid = request.path_params["sid"]
        sandbox = self._running(sid)
        body = await request.json()
        execution_id = f"exe_{secrets.token_hex(8)}"
        # Guess: the devbox runs the command string with a shell in the user's home.
        task = asyncio.create_task(sandbox.box.exec(["/bin/sh", "-c", body["command"]]))
        self._executions[execution_id] = (sid, task)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), body.get("optimistic_timeout") or 25)
        return self._json(self._execution(execution_id))

    def _execution(self, execution_id: str) -> Any:
        from runloop_api_client.types import DevboxAsyncExecutionDetailView

        if execution_id not in self._executions:
            raise _HTTPError(404, f"execution {execution_id} not found")
        sid, task = self._executions[execution_id]
        if not task.done():
            return DevboxAsyncExecutionDetailView(
                devbox_id=sid, execution_id=execution_id, status="running"
            )
        result = task.result()
        return DevboxAsyncExecutionDetailView(
            devbox_id=sid,
            execution_id=execution_id,
            status="completed",
            exit_status=result.exit_code,
            stdout=result.stdout.decode(errors="replace"),
            stderr=result.stderr.decode(errors="replace"),
            stdout_truncated=False,
            stderr_truncated=False,
        )

    async def execution(self, request: Any) -> Any:
        return self._json(self._execution(request.path_params["eid"]))

    async def wait_for_execution(self, request: Any) -> Any:
        execution_id = request.path_params["eid"]
        self._execution(execution_id)
        body = await request.json()
        _, task = self._executions[execution_id]
        try:
            await asyncio.wait_for(asyncio.shield(task), body.get("timeout_seconds") or 25)
        except TimeoutError:
            # As the real long poll does when nothing changed in time (the SDK asks again).
            raise _HTTPError(408, "the execution is still running") from None
        return self._json(self._execution(execution_id))

    async def upload_file(self, request: Any) -> Any:
        from starlette.responses import Response

        sandbox = self._running(request.path_params["sid"])
        form = await request.form()
        upload = form.get("file")
        data = await upload.read() if upload is not None and not isinstance(upload, str) else b""
        files, rel = _files(sandbox, str(form.get("path") or ""))
        try:
            await asyncio.to_thread(files.write_file, rel, data, None)
        except SandbankError as exc:
            raise _HTTPError(400, f"cannot write {form.get('path')}: {exc}") from None
        await form.close()
        return Response("{}", 200, media_type="application/json")

    async def download_file(self, request: Any) -> Any:
        from starlette.responses import Response

        sandbox = self._running(request.path_params["sid"])
        path = (await request.json())["path"]
        files, rel = _files(sandbox, path)
        try:
            data = await asyncio.to_thread(files.read_file, rel)
        except SandbankError:
            raise _HTTPError(404, f"file {path} not found") from None
        return Response(data, 200, media_type="application/octet-stream")

    async def snapshot_disk(self, request: Any) -> Any:
        from runloop_api_client.types import DevboxSnapshotView

        sid = request.path_params["sid"]
        sandbox = self._running(sid)
        body = await request.json() if await request.body() else {}
        tar = b"".join([chunk async for chunk in sandbox.box.export_tar()])
        snapshot_id = f"snp_{secrets.token_hex(8)}"
        self._snapshots[snapshot_id] = tar
        view = DevboxSnapshotView(
            id=snapshot_id,
            create_time_ms=int(time.time() * 1000),
            metadata=dict(body.get("metadata") or {}),
            source_devbox_id=sid,
            name=body.get("name"),
            size_bytes=len(tar),
        )
        return self._json(view)

    # -- network policies ------------------------------------------------------------------

    async def list_policies(self, request: Any) -> Any:
        from runloop_api_client.types import NetworkPolicyListView

        name = request.query_params.get("name")
        found = [p for p in self._policies.values() if name is None or p["name"] == name]
        return self._json(
            NetworkPolicyListView.model_validate({"network_policies": found, "has_more": False})
        )

    async def create_policy(self, request: Any) -> Any:
        from runloop_api_client.types import NetworkPolicyView

        body = await request.json()
        now = int(time.time() * 1000)
        keys = (
            "allow_agent_gateway",
            "allow_all",
            "allow_devbox_to_devbox",
            "allow_mcp_gateway",
            "allow_runloop_mirrors",
        )
        egress: dict[str, Any] = {key: bool(body.get(key)) for key in keys}
        egress["allowed_cidrs"] = list(body.get("allowed_cidrs") or [])
        egress["allowed_hostnames"] = list(body.get("allowed_hostnames") or [])
        policy = {
            "id": f"np_{secrets.token_hex(8)}",
            "create_time_ms": now,
            "update_time_ms": now,
            "name": body["name"],
            "description": body.get("description"),
            "egress": egress,
        }
        # Guess: the fake backs any policy that does not allow all egress with no network
        # at all (its local sandboxes have no finer filter).
        self._policies[policy["id"]] = policy
        return self._json(NetworkPolicyView.model_validate(policy))


def _files(sandbox: EmulatedSandbox, absolute: str) -> tuple[HostDirectory, str]:
    """The host directory holding an absolute in-devbox path (the workspace or the private
    /tmp), and the path relative to it."""
    box: Any = sandbox.box
    if sandbox.inside(absolute):
        return HostDirectory(box.host_path, sandbox.id, sandbox.home), sandbox.path(absolute)
    try:
        return HostDirectory(box.tmp_dir, sandbox.id, "/tmp"), normalize_path(absolute, "/tmp")
    except SandbankError:
        # Guess: the real service serves any path its user may open; the fake keeps to the
        # two places a sandbank provider uses.
        raise _HTTPError(400, f"{absolute!r} is outside the emulated file system") from None


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _body(status: int, message: str) -> bytes:
    # Guess: Runloop's error bodies; the SDK only reads the status and keeps the body.
    return json.dumps({"error": {"status": status, "message": message}}).encode()


async def _error_response(request: Any, exc: Exception) -> Any:
    from starlette.responses import Response

    status = exc.status if isinstance(exc, _HTTPError) else 404
    return Response(_body(status, str(exc)), status, media_type="application/json")


async def _send_error(send: Any, status: int, message: str) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": _body(status, message)})


class _Guard:
    """ASGI middleware: the bearer token, the request log and injected faults."""

    def __init__(self, app: Any, emulator: RunloopEmulator) -> None:
        self.app, self.emulator = app, emulator

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        self.emulator.requests.append((method, path))
        headers = dict(scope["headers"])
        if headers.get(b"authorization") != f"Bearer {self.emulator.api_key}".encode():
            await _send_error(send, 401, "invalid API key")
            return
        for fault in self.emulator.faults:
            if fault.method == method and path.endswith(fault.path_suffix) and fault.times > 0:
                fault.times -= 1
                if fault.status == 0:
                    await self.app(scope, receive, _dropping(send))
                    return
                await _send_error(send, fault.status, f"fault injected: HTTP {fault.status}")
                return
        await self.app(scope, receive, send)


def _dropping(send: Any) -> Any:
    """A ``send`` that lets the handler run, then drops the connection inside its body."""

    async def dropped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k != b"content-length"]
            await send({**message, "headers": [*headers, (b"content-length", b"100000")]})
        elif message["type"] == "http.response.body":
            await send({"type": "http.response.body", "body": b"{", "more_body": True})
            raise ConnectionAbortedError("fault injected: connection dropped mid-response")

    return dropped


@contextlib.contextmanager
def serve_runloop(root: str | os.PathLike[str]) -> Iterator[RunloopEmulator]:
    """Serve a Runloop emulator (state under ``root``) until the block ends; point the SDK
    at it with ``RUNLOOP_BASE_URL=emulator.url`` and ``RUNLOOP_API_KEY=emulator.api_key``."""
    holder: list[RunloopEmulator] = []
    server: EmulatorServer

    async def make_app() -> Any:
        emulator = RunloopEmulator(EmulatorEngine(root, home=HOME), url=server.url, server=server)
        holder.append(emulator)
        return emulator.app()

    server = EmulatorServer(make_app)
    server.start()
    try:
        yield holder[0]
    finally:
        server.stop(holder[0].engine.aclose)


def main() -> None:
    """``python -m sandbank.testing.emulators.runloop [STATE_DIR]``: serve the fake until
    interrupted, printing the variables that point the SDK (and sandbank) at it."""
    import sys
    import tempfile

    root = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="runloop-emulator-")
    with serve_runloop(root) as emulator:
        print(f"RUNLOOP_BASE_URL={emulator.url}", flush=True)
        print(f"RUNLOOP_API_KEY={emulator.api_key}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
