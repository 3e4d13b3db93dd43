"""The shared emulator engine: real local sandboxes with the workspace at the cloud's home."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sandbank.errors import WorkspacePathError
from sandbank.testing.emulators import EmulatedNotFound, EmulatorEngine, EmulatorServer


async def test_commands_start_in_home(tmp_path: Path) -> None:
    engine = EmulatorEngine(tmp_path, home="/home/user")
    try:
        sandbox = await engine.create(metadata={"k": "v"}, env={"GREETING": "hi"})
        result = await sandbox.box.exec(["sh", "-c", 'pwd; echo "$HOME $GREETING" > f; ls /home'])
        assert result.stdout == b"/home/user\nuser\n"
        assert await sandbox.box.read_file("f") == b"/home/user hi\n"
        assert engine.get(sandbox.id).metadata == {"k": "v"}
        assert [s.id for s in engine.all()] == [sandbox.id]
        assert sandbox.path("/home/user/a/../b") == "b"
        assert sandbox.path("rel/x") == "rel/x"
        with pytest.raises(WorkspacePathError):
            sandbox.path("/etc/passwd")
        await engine.pause(sandbox.id)
        assert sandbox.state == "paused"
        await engine.resume(sandbox.id)
        assert sandbox.state == "running"
        await engine.destroy(sandbox.id)
        with pytest.raises(EmulatedNotFound):
            engine.get(sandbox.id)
        with pytest.raises(EmulatedNotFound):
            await engine.destroy(sandbox.id)
    finally:
        await engine.aclose()


async def test_aclose_destroys_everything(tmp_path: Path) -> None:
    engine = EmulatorEngine(tmp_path)
    first = await engine.create()
    await engine.create(network=True)
    workspace = first.box.host_path
    assert workspace is not None and await asyncio.to_thread(Path(workspace).is_dir)
    await engine.aclose()
    assert engine.all() == []
    assert not await asyncio.to_thread(Path(workspace).exists)


def test_server_serves_on_loopback_and_runs_calls_on_its_loop(tmp_path: Path) -> None:
    engines: list[EmulatorEngine] = []

    async def make_app() -> Any:
        engine = EmulatorEngine(tmp_path)
        engines.append(engine)

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            body = json.dumps({"sandboxes": len(engine.all())}).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

        return app

    server = EmulatorServer(make_app).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        sandbox = server.call(engines[0].create())
        with urllib.request.urlopen(server.url + "/") as response:
            assert json.load(response) == {"sandboxes": 1}
        out = server.call(sandbox.box.exec(["echo", "on the server loop"]))
        assert out.stdout == b"on the server loop\n"
    finally:
        server.stop(engines[0].aclose)
    assert engines[0].all() == []
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/", timeout=2)
