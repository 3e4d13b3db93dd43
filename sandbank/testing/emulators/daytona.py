"""A fake of Daytona on 127.0.0.1: its REST control plane and each sandbox's toolbox REST.

It answers the calls the ``daytona`` SDK makes for sandbank's provider (create, get, list,
delete, stop, start, pause; toolbox ``/process/execute`` and the bulk file endpoints), with
bodies built from the SDK's own generated models, so a response the SDK would reject fails
the test. Each sandbox is a real ``local`` sandbox of ``EmulatorEngine``; toolbox file calls
reach its files directly (the workspace and its private ``/tmp``), as the real toolbox
daemon reads and writes its sandbox's file system in process. It is a
fake of the service, not the service: where the real behaviour is not known from the SDK,
a comment says the emulator guesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from sandbank.errors import ExecTimeout, PathNotFound, SandbankError
from sandbank.providers.base import normalize_path
from sandbank.providers.hostdir import HostDirectory
from sandbank.testing.emulators.engine import (
    EmulatedNotFound,
    EmulatedSandbox,
    EmulatorEngine,
    EmulatorServer,
)

__all__ = ["HOME", "DaytonaEmulator", "Fault", "serve_daytona"]

HOME = "/home/daytona/workspace"
"""Where the emulated sandboxes mount their workspace (the provider's default)."""
ORGANIZATION = "org-emulated"


@dataclass
class Fault:
    """One injected failure: the next request matching ``method`` and ``path_suffix``
    answers ``status`` (with a Daytona error body) without being handled; with
    ``status=0`` it is handled (the command runs) and the connection drops mid-response."""

    method: str
    path_suffix: str
    status: int
    times: int = 1


@dataclass
class _Record:
    dto: dict[str, Any]
    sandbox: EmulatedSandbox | None = None


@dataclass
class DaytonaEmulator:
    """The Starlette app of the fake; ``url`` is set by whoever serves it."""

    engine: EmulatorEngine
    api_key: str = "emulated-key"
    url: str = ""
    max_upload: int | None = None
    """Bytes one bulk-upload request may carry; beyond it the fake answers 413 (a guess: the
    real service's proxy has some request size limit, not documented in the SDK)."""
    faults: list[Fault] = field(default_factory=list)
    server: EmulatorServer | None = None
    """The server that serves this fake (set by ``serve_daytona``)."""
    _records: dict[str, _Record] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def reset(self) -> None:
        """Forget injected faults and the upload limit."""
        self.faults.clear()
        self.max_upload = None

    def call(self, coro: Any) -> Any:
        """Run ``coro`` on the server's event loop, from any thread (e.g. a test's)."""
        assert self.server is not None, "serve the emulator with serve_daytona()"
        return self.server.call(coro)

    def inject(self, method: str, path_suffix: str, status: int, times: int = 1) -> None:
        """Make the next ``times`` matching requests fail (see ``Fault``)."""
        self.faults.append(Fault(method.upper(), path_suffix, status, times))

    async def delete_behind_back(self, sandbox_id: str) -> None:
        """Delete a sandbox as if someone else did, in the console or another client."""
        self._records.pop(sandbox_id, None)
        await self.engine.destroy(sandbox_id)

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        api, box = "/api/sandbox", "/toolbox/{sid}"
        routes = [
            Route(api, self.create, methods=["POST"]),
            Route(api, self.list, methods=["GET"]),
            Route(api + "/{sid}", self.get, methods=["GET"]),
            Route(api + "/{sid}", self.delete, methods=["DELETE"]),
            Route(api + "/{sid}/{action:str}", self.lifecycle, methods=["POST"]),
            Route(api + "/{sid}/toolbox-proxy-url", self.toolbox_url, methods=["GET"]),
            Route(box + "/process/execute", self.execute, methods=["POST"]),
            Route(box + "/files/bulk-upload", self.upload, methods=["POST"]),
            Route(box + "/files/bulk-download", self.download, methods=["POST"]),
            Route(box + "/files", self.remove, methods=["DELETE"]),
        ]
        handlers = {_HTTPError: _error_response, EmulatedNotFound: _error_response}
        return _Guard(Starlette(routes=routes, exception_handlers=handlers), self)

    # -- control plane -----------------------------------------------------------------

    def _dto(self, record: _Record) -> Any:
        from daytona_api_client_async.models.sandbox import Sandbox

        return Sandbox.from_dict(record.dto)

    def _record(self, sid: str) -> _Record:
        record = self._records.get(sid)
        if record is None:
            raise _HTTPError(404, f"Sandbox with ID or name {sid} not found")
        return record

    def _json(self, model: Any, status: int = 200) -> Any:
        from starlette.responses import Response

        return Response(model.to_json(), status, media_type="application/json")

    async def create(self, request: Any) -> Any:
        from daytona_api_client_async.models.create_sandbox import CreateSandbox

        body = CreateSandbox.from_dict(await request.json())
        assert body is not None
        emulated = await self.engine.create(
            metadata=dict(body.labels or {}),
            env=dict(body.env or {}),
            network=not body.network_block_all,
        )
        now = _now()
        # Guess: the real service starts from a default snapshot with 1 CPU, 1 GiB, 3 GiB
        # disk; it answers "starting" and the SDK waits. The fake is started at once.
        dto = {
            "id": emulated.id,
            "organizationId": ORGANIZATION,
            "name": body.name or emulated.id,
            "snapshot": body.snapshot or ("built-image" if body.build_info else "daytona-small"),
            "user": body.user or "daytona",
            "env": dict(body.env or {}),
            "labels": dict(body.labels or {}),
            "public": bool(body.public),
            "networkBlockAll": bool(body.network_block_all),
            "networkAllowList": body.network_allow_list,
            "kvm": False,
            "target": body.target or "us",
            "cpu": body.cpu or 1,
            "gpu": 0,
            "memory": body.memory or 1,
            "disk": body.disk or 3,
            "state": "started",
            "desiredState": "started",
            "autoStopInterval": body.auto_stop_interval
            if body.auto_stop_interval is not None
            else 15,
            "createdAt": now,
            "updatedAt": now,
            "toolboxProxyUrl": f"{self.url}/toolbox",
        }
        record = _Record(dto=dto, sandbox=emulated)
        self._records[emulated.id] = record
        return self._json(self._dto(record))

    async def get(self, request: Any) -> Any:
        return self._json(self._dto(self._record(request.path_params["sid"])))

    async def list(self, request: Any) -> Any:
        from daytona_api_client_async.models.list_sandboxes_response import ListSandboxesResponse
        from daytona_api_client_async.models.sandbox_list_item import SandboxListItem

        wanted = json.loads(request.query_params.get("labels") or "{}")
        keys = set(SandboxListItem.model_fields)
        items = []
        for record in self._records.values():
            labels = record.dto["labels"]
            if all(labels.get(k) == v for k, v in wanted.items()):
                dto = self._dto(record)
                fields = {k: getattr(dto, k) for k in keys if k != "additional_properties"}
                items.append(SandboxListItem(**fields))
        return self._json(ListSandboxesResponse(items=items, next_cursor=None))

    async def delete(self, request: Any) -> Any:
        sid = request.path_params["sid"]
        record = self._record(sid)
        del self._records[sid]
        await self.engine.destroy(sid)
        record.dto["state"] = "destroyed"
        return self._json(self._dto(record))

    async def lifecycle(self, request: Any) -> Any:
        sid, action = request.path_params["sid"], request.path_params["action"]
        record = self._record(sid)
        states = {"stop": "stopped", "start": "started", "pause": "paused"}
        if action not in states:
            raise _HTTPError(404, f"Cannot POST /api/sandbox/{sid}/{action}")
        assert record.sandbox is not None
        if action == "start":
            await self.engine.resume(sid)
        else:
            await self.engine.pause(sid)
            if action == "stop":
                # A stopped sandbox has no processes; end what still runs in the backing box.
                running = getattr(record.sandbox.box.provider, "_running", None)
                if running is not None:
                    running.kill(record.sandbox.box.id)
        record.dto["state"] = states[action]
        record.dto["updatedAt"] = _now()
        return self._json(self._dto(record))

    async def toolbox_url(self, request: Any) -> Any:
        from daytona_api_client_async.models.toolbox_proxy_url import ToolboxProxyUrl

        self._record(request.path_params["sid"])
        return self._json(ToolboxProxyUrl(url=f"{self.url}/toolbox"))

    # -- toolbox -----------------------------------------------------------------------

    def _running(self, request: Any) -> EmulatedSandbox:
        record = self._record(request.path_params["sid"])
        if record.dto["state"] != "started" or record.sandbox is None:
            # Guess: the real proxy refuses toolbox calls to a sandbox that is not started.
            raise _HTTPError(409, f"Sandbox {record.dto['id']} is not started")
        return record.sandbox

    async def execute(self, request: Any) -> Any:
        from daytona_toolbox_api_client_async.models.execute_request import ExecuteRequest
        from daytona_toolbox_api_client_async.models.execute_response import ExecuteResponse

        sandbox = self._running(request)
        body = ExecuteRequest.from_dict(await request.json())
        assert body is not None
        try:
            # Guess: the daemon runs the command through sh -c, stdout and stderr combined.
            result = await sandbox.box.exec(
                ["/bin/sh", "-c", body.command],
                cwd=body.cwd,
                env=body.envs,
                timeout=body.timeout or None,
            )
        except ExecTimeout:
            raise _HTTPError(408, "command timed out", code="PROCESS_EXECUTION_TIMEOUT") from None
        combined = (result.stdout + result.stderr).decode(errors="replace")
        return self._json(ExecuteResponse(exit_code=result.exit_code, result=combined))

    async def upload(self, request: Any) -> Any:
        from daytona_toolbox_api_client_async.models.upload_files_response import (
            UploadFilesResponse,
        )

        sandbox = self._running(request)
        size = int(request.headers.get("content-length") or 0)
        if self.max_upload is not None and size > self.max_upload:
            raise _HTTPError(413, f"request entity too large: {size} > {self.max_upload} bytes")
        form = await request.form(max_files=10_000, max_fields=20_000)
        paths = {k[: -len(".path")]: v for k, v in form.multi_items() if k.endswith(".path")}
        for key, path in paths.items():
            upload = form.get(f"{key}.file")
            data = await upload.read() if upload is not None else b""
            files, rel = _files(sandbox, str(path))
            try:
                await asyncio.to_thread(files.write_file, rel, data, None)
            except SandbankError as exc:
                raise _HTTPError(400, f"cannot write {path}: {exc}") from None
        await form.close()
        return self._json(UploadFilesResponse(errors=[], files=[]))

    async def download(self, request: Any) -> Any:
        from daytona_toolbox_api_client_async.models.files_download_request import (
            FilesDownloadRequest,
        )
        from starlette.responses import StreamingResponse

        sandbox = self._running(request)
        body = FilesDownloadRequest.from_dict(await request.json())
        assert body is not None
        boundary = secrets.token_hex(16)

        async def parts() -> AsyncIterator[bytes]:
            for path in body.paths:
                try:
                    files, rel = _files(sandbox, path)
                    content = await asyncio.to_thread(files.read_file, rel)
                except (SandbankError, _HTTPError):
                    content = None
                if content is not None:
                    head = _part_head(boundary, "file", path, "application/octet-stream")
                    yield head + content + b"\r\n"
                    continue
                error = {
                    "message": f"file not found: {path}",
                    "statusCode": 404,
                    "code": "FILE_NOT_FOUND",
                    "source": "DAYTONA_DAEMON",
                }
                head = _part_head(boundary, "error", path, "application/json")
                yield head + json.dumps(error).encode() + b"\r\n"
            yield f"--{boundary}--\r\n".encode()

        return StreamingResponse(parts(), media_type=f"multipart/form-data; boundary={boundary}")

    async def remove(self, request: Any) -> Any:
        from starlette.responses import Response

        sandbox = self._running(request)
        files, rel = _files(sandbox, request.query_params.get("path", ""))
        try:
            await asyncio.to_thread(files.remove, rel)
        except PathNotFound:
            raise _HTTPError(404, "file not found", code="FILE_NOT_FOUND") from None
        return Response(status_code=204)


def _files(sandbox: EmulatedSandbox, absolute: str) -> tuple[HostDirectory, str]:
    """The host directory holding an absolute in-sandbox path (the workspace or the private
    /tmp), and the path relative to it."""
    box: Any = sandbox.box
    if sandbox.inside(absolute):
        return HostDirectory(box.host_path, sandbox.id, sandbox.home), sandbox.path(absolute)
    try:
        return HostDirectory(box.tmp_dir, sandbox.id, "/tmp"), normalize_path(absolute, "/tmp")
    except SandbankError:
        # Guess: the real daemon serves any path its user may open; the fake keeps to the two
        # places a sandbank provider uses.
        raise _HTTPError(400, f"{absolute!r} is outside the emulated file system") from None


def _part_head(boundary: str, name: str, filename: str, content_type: str) -> bytes:
    # Daytona's daemon writes the source path unquoted-escaped (the SDK parses it with
    # python-multipart); quotes and backslashes are escaped as in RFC 7578.
    escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="{escaped}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode("utf-8", "surrogateescape")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Guard:
    """ASGI middleware: the bearer token, injected faults, and errors as Daytona bodies."""

    def __init__(self, app: Any, emulator: DaytonaEmulator) -> None:
        self.app, self.emulator = app, emulator

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":  # the SDK's event stream: not emulated (it polls)
            await receive()
            await send({"type": "websocket.close", "code": 1000})
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if "/socket.io" in path:
            await _error(send, 404, "not emulated", path)
            return
        headers = dict(scope["headers"])
        if headers.get(b"authorization") != f"Bearer {self.emulator.api_key}".encode():
            await _error(send, 401, "Invalid credentials", path)
            return
        for fault in self.emulator.faults:
            if fault.method == method and path.endswith(fault.path_suffix) and fault.times > 0:
                fault.times -= 1
                if fault.status == 0:
                    await self.app(scope, receive, _dropping(send))
                    return
                await _error(send, fault.status, f"fault injected: HTTP {fault.status}", path)
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


async def _error_response(request: Any, exc: Exception) -> Any:
    from starlette.responses import Response

    if isinstance(exc, _HTTPError):
        status, message, code = exc.status, exc.message, exc.code
    else:
        status, message, code = 404, str(exc), None
    body = _error_body(status, message, request.url.path, code)
    return Response(body, status, media_type="application/json")


def _error_body(status: int, message: str, path: str, code: str | None = None) -> bytes:
    """An error body as Daytona's API and daemon write it (the SDK reads message/code/source)."""
    body: dict[str, Any] = {
        "statusCode": status,
        "message": message,
        "path": path,
        "timestamp": _now(),
    }
    if code:
        body.update(code=code, source="DAYTONA_DAEMON")
    return json.dumps(body).encode()


async def _error(send: Any, status: int, message: str, path: str) -> None:
    data = _error_body(status, message, path)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


@contextlib.contextmanager
def serve_daytona(root: str | os.PathLike[str]) -> Iterator[DaytonaEmulator]:
    """Serve a Daytona emulator (state under ``root``) until the block ends.

    Point the SDK at it with ``DaytonaConfig(api_url=emulator.api_url,
    api_key=emulator.api_key)``, or ``DAYTONA_API_URL`` / ``DAYTONA_API_KEY``; everything it
    made is destroyed at the end. ``emulator.call(coro)`` runs a coroutine on its loop (e.g.
    ``emulator.delete_behind_back(id)``).
    """
    holder: list[DaytonaEmulator] = []
    server: EmulatorServer

    async def make_app() -> Any:
        emulator = DaytonaEmulator(EmulatorEngine(root, home=HOME), url=server.url, server=server)
        holder.append(emulator)
        return emulator.app()

    server = EmulatorServer(make_app)
    server.start()
    try:
        yield holder[0]
    finally:
        server.stop(holder[0].engine.aclose)


def main() -> None:
    """``python -m sandbank.testing.emulators.daytona [STATE_DIR]``: serve the fake until
    interrupted, printing the variables that point the SDK (and sandbank) at it."""
    import sys
    import tempfile
    import time

    root = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="daytona-emulator-")
    with serve_daytona(root) as emulator:
        print(f"DAYTONA_API_URL={emulator.api_url}", flush=True)
        print(f"DAYTONA_API_KEY={emulator.api_key}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
