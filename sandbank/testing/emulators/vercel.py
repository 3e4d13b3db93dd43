"""An emulator of Vercel Sandbox's REST and NDJSON API, as ``vercel-sandbox`` 0.10 uses it.

A fake of the service, not the service: a Starlette app on 127.0.0.1 (served by
``EmulatorServer``) answering the calls of the SDK's ``SandboxClient`` with bodies validated
by the SDK's own pydantic models. Each named sandbox has one session and is a real ``local``
sandbox of the shared engine, where commands really run. What it guesses about the real
service is said where it does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import io
import json
import os
import posixpath
import secrets
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from sandbank.errors import PathNotFound, SandbankError
from sandbank.testing.emulators.engine import (
    EmulatedSandbox,
    EmulatorEngine,
    EmulatorServer,
    kill_process_group,
)

__all__ = [
    "HOME",
    "PROJECT",
    "TEAM",
    "TOKEN",
    "Fault",
    "VercelEmulator",
    "environment",
    "serve_vercel",
]

HOME = "/vercel/sandbox"
"""The sessions' working directory (the real service's default cwd)."""
TOKEN = "emulated-token"
TEAM = "team_emulated"
PROJECT = "prj_emulated"


@dataclass
class Fault:
    """The next ``times`` requests matching ``method`` and ``path_suffix`` answer ``status``
    (a Vercel error body) unhandled; ``status=0`` handles them and drops the connection."""

    method: str
    path_suffix: str
    status: int
    times: int = 1


@dataclass
class _Record:
    name: str
    session_id: str
    box: EmulatedSandbox
    body: dict[str, Any]
    status: str = "running"
    created_at: int = field(default_factory=lambda: int(time.time() * 1000))
    snapshots: list[str] = field(default_factory=list)


class _HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class VercelEmulator:
    """The Starlette app of the fake; ``url`` is where it is served."""

    engine: EmulatorEngine
    url: str = ""
    server: EmulatorServer | None = None
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _records: dict[str, _Record] = field(default_factory=dict)
    _commands: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    _written: dict[str, int] = field(default_factory=dict)
    _snapshots: dict[str, bytes] = field(default_factory=dict)
    """Snapshot id to a tar of the workspace (the emulator keeps only the workspace; the
    real service snapshots the whole filesystem)."""

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()

    def inject(self, method: str, path_suffix: str, status: int, times: int = 1) -> None:
        self.faults.append(Fault(method.upper(), path_suffix, status, times))

    def call(self, coro: Any) -> Any:
        assert self.server is not None, "serve the emulator with serve_vercel()"
        return self.server.call(coro)

    async def delete_behind_back(self, name: str) -> None:
        """Destroy a sandbox as if someone else did (the dashboard, another client)."""
        record = self._records.pop(name)
        await self.engine.destroy(record.box.id)

    # -- the app ---------------------------------------------------------------------------

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        session = "/v2/sandboxes/sessions/{sid}"
        routes = [
            Route("/v3/sandboxes", self.create, methods=["POST"]),
            Route("/v2/sandboxes", self.query, methods=["GET"]),
            Route(session + "/cmd", self.run, methods=["POST"]),
            Route(session + "/cmd/{cid}/stdin", self.stdin, methods=["POST"]),
            Route(session + "/cmd/{cid}/kill", self.kill, methods=["POST"]),
            Route(session + "/fs/read", self.read, methods=["POST"]),
            Route(session + "/fs/write", self.write, methods=["POST"]),
            Route(session + "/fs/mkdir", self.mkdir, methods=["POST"]),
            Route(session + "/stop", self.stop, methods=["POST"]),
            Route(session + "/snapshot", self.snapshot, methods=["POST"]),
            Route("/v2/sandboxes/{name}", self.get, methods=["GET"]),
            Route("/v2/sandboxes/{name}", self.delete, methods=["DELETE"]),
        ]

        async def refuse(request: Any, exc: Exception) -> Any:
            assert isinstance(exc, _HTTPError)
            body = {"error": {"code": exc.code, "message": exc.message}}
            return _json(body, exc.status)

        return _Guard(Starlette(routes=routes, exception_handlers={_HTTPError: refuse}), self)

    # -- payloads, through the SDK's own models ---------------------------------------------

    def _sandbox_payload(self, record: _Record) -> dict[str, Any]:
        from vercel.sandbox._internal.api_client import _SandboxPayload

        body = record.body
        payload = _SandboxPayload.model_validate(
            {
                "name": record.name,
                "currentSessionId": record.session_id,
                "image": body.get("image"),
                "status": record.status,
                "persistent": bool(body.get("persistent", True)),
                "projectId": PROJECT,
                "cwd": HOME,
                "region": "iad1",
                "memory": 2048,
                "vcpus": 1,
                "timeout": body.get("timeout") or 300_000,
                "tags": body.get("tags") or {},
                "networkPolicy": body.get("networkPolicy") or {"mode": "allow-all"},
                "createdAt": record.created_at,
                "updatedAt": record.created_at,
            }
        )
        return payload.model_dump(by_alias=True, exclude_none=True, exclude={"raw"})

    def _session_payload(self, record: _Record) -> dict[str, Any]:
        from vercel.sandbox._internal.api_client import _RuntimeSessionPayload

        payload = _RuntimeSessionPayload.model_validate(
            {
                "id": record.session_id,
                "sourceSandboxName": record.name,
                "projectId": PROJECT,
                "status": record.status,
                "cwd": HOME,
                "startedAt": record.created_at,
            }
        )
        return payload.model_dump(by_alias=True, exclude_none=True)

    def _sandbox_response(self, record: _Record) -> Any:
        from vercel.sandbox._internal.api_client import _SandboxResponse

        body = {"sandbox": self._sandbox_payload(record), "session": self._session_payload(record)}
        _SandboxResponse.model_validate({**body, "routes": []})
        return _json({**body, "routes": []})

    def _record(self, name: str) -> _Record:
        record = self._records.get(name)
        if record is None:
            raise _HTTPError(404, "not_found", f"Sandbox {name!r} not found")
        return record

    def _by_session(self, sid: str) -> _Record:
        for record in self._records.values():
            if record.session_id == sid:
                if record.status != "running":
                    # A stopped session answers 410 "sandbox_stopped": the SDK's recovery
                    # (vercel.sandbox._internal.recovery) then resumes the sandbox, which
                    # starts a new session. Guess: the exact message.
                    raise _HTTPError(410, "sandbox_stopped", f"session {sid} is stopped")
                return record
        raise _HTTPError(404, "not_found", f"Session {sid!r} not found")

    # -- sandboxes --------------------------------------------------------------------------

    async def create(self, request: Any) -> Any:
        body = await request.json()
        name = body.get("name") or f"sbx-{secrets.token_hex(6)}"
        if name in self._records:
            raise _HTTPError(409, "conflict", f"Sandbox {name!r} already exists")
        policy = body.get("networkPolicy") or {"mode": "allow-all"}
        if policy.get("mode") not in ("allow-all", "deny-all"):
            # The emulator's limit: custom rules would need a filtering proxy.
            raise _HTTPError(400, "not_emulated", "custom network policies are not emulated")
        box = await self.engine.create(
            metadata=dict(body.get("tags") or {}),
            env=dict(body.get("env") or {}),
            network=policy["mode"] == "allow-all",
        )
        record = _Record(name, f"sess_{secrets.token_hex(8)}", box, body)
        source = body.get("source") or {}
        if source.get("type") == "snapshot":
            archive = self._snapshots.get(source.get("snapshotId", ""))
            if archive is None:
                await self.engine.destroy(box.id)
                raise _HTTPError(404, "not_found", f"snapshot {source.get('snapshotId')!r}")
            await box.box.import_tar(archive)
        self._records[name] = record
        return self._sandbox_response(record)

    async def get(self, request: Any) -> Any:
        record = self._record(request.path_params["name"])
        if record.status == "stopped" and request.query_params.get("resume") == "true":
            record.status, record.session_id = "running", f"sess_{secrets.token_hex(8)}"
        return self._sandbox_response(record)

    async def query(self, request: Any) -> Any:
        from vercel.sandbox._internal.api_client import _SandboxesResponse

        found = [self._sandbox_payload(r) for r in self._records.values()]
        tag = request.query_params.get("tags") or request.query_params.get("tag")
        if tag and ":" in tag:
            key, _, value = tag.partition(":")
            found = [p for p in found if (p.get("tags") or {}).get(key) == value]
        body = {"sandboxes": found, "pagination": {"count": len(found), "next": None}}
        _SandboxesResponse.model_validate(body)
        return _json(body)

    async def delete(self, request: Any) -> Any:
        record = self._record(request.path_params["name"])
        response = self._sandbox_response(record)
        del self._records[record.name]
        await self.engine.destroy(record.box.id)
        return response

    async def stop(self, request: Any) -> Any:
        record = self._by_session(request.path_params["sid"])
        record.status = "stopped"
        return _json({"session": self._session_payload(record)})

    async def snapshot(self, request: Any) -> Any:
        from vercel.sandbox._internal.api_client import _CreateSnapshotResponse

        record = self._by_session(request.path_params["sid"])
        archive = b"".join([chunk async for chunk in record.box.box.export_tar()])
        snapshot_id = f"snap_{secrets.token_hex(8)}"
        self._snapshots[snapshot_id] = archive
        # Guess, from the SDK's docs: taking a snapshot stops the session it was taken from.
        record.status = "stopped"
        now = int(time.time() * 1000)
        snapshot = {
            "id": snapshot_id,
            "sourceSessionId": record.session_id,
            "region": "iad1",
            "status": "created",
            "sizeBytes": len(archive),
            "createdAt": now,
            "updatedAt": now,
        }
        body = {"snapshot": snapshot, "session": self._session_payload(record)}
        _CreateSnapshotResponse.model_validate(body)
        return _json(body)

    # -- commands ---------------------------------------------------------------------------

    def _command(self, cid: str, record: _Record, body: dict[str, Any], **more: Any) -> Any:
        from vercel.sandbox._internal.api_client import _CommandPayload

        payload = _CommandPayload.model_validate(
            {
                "id": cid,
                "name": body["command"],
                "args": list(body.get("args") or []),
                "cwd": body.get("cwd") or HOME,
                "sessionId": record.session_id,
                "startedAt": int(time.time() * 1000),
                **more,
            }
        )
        return {"command": payload.model_dump(by_alias=True, exclude_none=True)}

    async def run(self, request: Any) -> Any:
        from starlette.responses import StreamingResponse

        record = self._by_session(request.path_params["sid"])
        body = await request.json()
        cid = f"cmd_{secrets.token_hex(8)}"
        argv = [body["command"], *(body.get("args") or [])]
        try:
            proc = await record.box.start_process(
                argv,
                cwd=body.get("cwd") or HOME,
                env=dict(body.get("env") or {}),
                stdin=bool(body.get("attachStdin")),
            )
        except (SandbankError, OSError) as exc:
            raise _HTTPError(400, "bad_request", str(exc)) from exc
        self._commands[cid] = proc
        limit = body.get("timeout")
        if request.query_params.get("wait") != "true":
            return _json(self._command(cid, record, body))

        async def lines() -> AsyncIterator[bytes]:
            yield _line(self._command(cid, record, body))
            queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

            async def pump(name: str, pipe: Any) -> None:
                while chunk := await pipe.read(65536):
                    await queue.put((name, chunk))
                await queue.put(None)

            pumps = [
                asyncio.ensure_future(pump("stdout", proc.stdout)),
                asyncio.ensure_future(pump("stderr", proc.stderr)),
            ]
            deadline = None if not limit else asyncio.get_running_loop().time() + limit / 1000
            try:
                open_pipes = 2
                while open_pipes:
                    left = (
                        None if deadline is None else deadline - asyncio.get_running_loop().time()
                    )
                    try:
                        item = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        kill_process_group(proc)  # kill_after: the service kills the process
                        deadline = None
                        continue
                    if item is None:
                        open_pipes -= 1
                        continue
                    # Guess: the service sends output as UTF-8 text (the SDK's records are
                    # str), replacing what does not decode.
                    text = item[1].decode("utf-8", "replace")
                    yield _line({"stream": item[0], "data": text})
                code = await proc.wait()
            finally:
                for task in pumps:
                    task.cancel()
                kill_process_group(proc)
                self._commands.pop(cid, None)
            exit_code = code if code >= 0 else 128 - code
            yield _line(self._command(cid, record, body, exitCode=exit_code))

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def stdin(self, request: Any) -> Any:
        cid = request.path_params["cid"]
        proc = self._commands.get(cid)
        if proc is None or proc.stdin is None:
            raise _HTTPError(404, "not_found", f"command {cid!r} has no open stdin")
        body = await request.json()
        data = base64.b64decode(body.get("data") or "")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(data)
            await proc.stdin.drain()
            if body.get("close"):
                proc.stdin.close()
        self._written[cid] = self._written.get(cid, 0) + len(data)
        return _json({"bytesWritten": self._written[cid]})

    async def kill(self, request: Any) -> Any:
        cid = request.path_params["cid"]
        proc = self._commands.get(cid)
        if proc is None:
            raise _HTTPError(404, "not_found", f"command {cid!r} is not running")
        kill_process_group(proc)
        record = self._by_session(request.path_params["sid"])
        return _json(self._command(cid, record, {"command": "?"}))

    # -- files (inside the workspace only: the emulator's limit) -----------------------------

    def _rel(self, record: _Record, path: str, cwd: str | None) -> str:
        absolute = path if path.startswith("/") else f"{cwd or HOME}/{path}"
        try:
            return record.box.path(absolute)
        except SandbankError as exc:
            # The emulator's limit: the real service reaches the whole filesystem.
            raise _HTTPError(400, "bad_request", f"{absolute}: outside {HOME} ({exc})") from exc

    async def read(self, request: Any) -> Any:
        from starlette.responses import Response

        record = self._by_session(request.path_params["sid"])
        body = await request.json()
        rel = self._rel(record, body["path"], body.get("cwd"))
        try:
            data = await record.box.box.read_file(rel)
        except PathNotFound as exc:
            raise _HTTPError(404, "file_not_found", str(exc)) from exc
        except SandbankError as exc:
            raise _HTTPError(400, "bad_request", str(exc)) from exc
        return Response(data, media_type="application/octet-stream")

    async def write(self, request: Any) -> Any:
        record = self._by_session(request.path_params["sid"])
        cwd = request.headers.get("x-cwd") or "/"
        raw = gzip.decompress(await request.body())
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            for member in archive:
                name = member.name if member.name.startswith("/") else f"{cwd}/{member.name}"
                rel = self._rel(record, "/" + posixpath.normpath(name).lstrip("/"), None)
                if member.isdir():
                    await record.box.box.mkdir(rel)
                elif member.isfile():
                    data = archive.extractfile(member)
                    assert data is not None
                    try:
                        await record.box.box.write_file(rel, data.read(), member.mode & 0o7777)
                    except SandbankError as exc:
                        raise _HTTPError(400, "bad_request", str(exc)) from exc
        return _json({})

    async def mkdir(self, request: Any) -> Any:
        record = self._by_session(request.path_params["sid"])
        body = await request.json()
        await record.box.box.mkdir(self._rel(record, body["path"], body.get("cwd")))
        return _json({})


def _json(body: Any, status: int = 200) -> Any:
    from starlette.responses import Response

    return Response(json.dumps(body), status, media_type="application/json")


def _line(record: Any) -> bytes:
    return json.dumps(record).encode() + b"\n"


async def _error(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Guard:
    """ASGI middleware: the bearer token and team, injected faults, errors as Vercel bodies."""

    def __init__(self, app: Any, emulator: VercelEmulator) -> None:
        self.app, self.emulator = app, emulator

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        self.emulator.requests.append((method, path))
        headers = dict(scope["headers"])
        if headers.get(b"authorization") != f"Bearer {TOKEN}".encode():
            await _error(send, 403, "forbidden", "Not authorized")
            return
        for fault in self.emulator.faults:
            if fault.method == method and path.endswith(fault.path_suffix) and fault.times > 0:
                fault.times -= 1
                if fault.status == 0:
                    await self.app(scope, receive, _dropping(send))
                    return
                await _error(send, fault.status, "fault", f"fault injected: HTTP {fault.status}")
                return
        await self.app(scope, receive, send)


def _dropping(send: Any) -> Any:
    async def dropped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k != b"content-length"]
            await send({**message, "headers": [*headers, (b"content-length", b"100000")]})
        elif message["type"] == "http.response.body":
            await send({"type": "http.response.body", "body": b"{", "more_body": False})

    return dropped


@contextlib.contextmanager
def serve_vercel(root: str | os.PathLike[str]) -> Iterator[VercelEmulator]:
    """Serve a Vercel emulator (state under ``root``) until the block ends; point the SDK
    at ``emulator.url`` with ``TOKEN``, ``TEAM`` and ``PROJECT`` as credentials."""
    holder: list[VercelEmulator] = []
    server: EmulatorServer

    async def make_app() -> Any:
        emulator = VercelEmulator(EmulatorEngine(root, home=HOME), url=server.url, server=server)
        holder.append(emulator)
        return emulator.app()

    server = EmulatorServer(make_app)
    server.start()
    try:
        yield holder[0]
    finally:
        server.stop(holder[0].engine.aclose)


def environment(emulator: VercelEmulator) -> dict[str, str]:
    """The variables that point the vercel provider at the fake (the SDK itself reads no
    base-URL variable: pass ``base_url=`` to ``SandboxServiceOptions`` in your own code)."""
    return {
        "SANDBANK_VERCEL_API_URL": emulator.url,
        "VERCEL_TOKEN": TOKEN,
        "VERCEL_TEAM_ID": TEAM,
        "VERCEL_PROJECT_ID": PROJECT,
    }


def main() -> None:
    """``python -m sandbank.testing.emulators.vercel [STATE_DIR]``: serve the fake until
    interrupted, printing the variables that point sandbank at it."""
    import sys
    import tempfile

    root = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="vercel-emulator-")
    with serve_vercel(root) as emulator:
        for name, value in environment(emulator).items():
            print(f"{name}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
