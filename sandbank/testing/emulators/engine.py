"""The engine behind every cloud emulator: each emulated sandbox is a real ``local`` sandbox.

A wire adapter (E2B's REST and Connect RPC, Daytona's REST, Modal's gRPC) only translates
its protocol into calls on ``EmulatorEngine`` and on ``EmulatedSandbox.box``, the real
bubblewrap sandbox where commands run and files exist. ``EmulatorServer`` serves an ASGI
application on a free loopback port from a background thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from sandbank.errors import WorkspacePathError
from sandbank.manifest import Manifest
from sandbank.providers.base import ExecRequest, Sandbox, normalize_path
from sandbank.providers.local import LocalProvider
from sandbank.testing.services import free_ports

__all__ = [
    "EmulatedNotFound",
    "EmulatedSandbox",
    "EmulatorEngine",
    "EmulatorServer",
    "kill_process_group",
]

T = TypeVar("T")


class EmulatedNotFound(KeyError):
    """No emulated sandbox has this id (the emulator answers its cloud's 404)."""

    def __init__(self, sandbox_id: str) -> None:
        super().__init__(sandbox_id)
        self.sandbox_id = sandbox_id

    def __str__(self) -> str:
        return f"no emulated sandbox {self.sandbox_id!r}"


@dataclass
class EmulatedSandbox:
    """One emulated cloud sandbox and the real local sandbox that backs it."""

    id: str
    box: Sandbox
    """The real local sandbox: exec, files and tar go through it."""
    home: str
    """The in-sandbox path of the workspace, where commands start."""
    metadata: dict[str, str] = field(default_factory=dict)
    state: str = "running"
    """``"running"`` or ``"paused"`` (the wire adapter refuses exec while paused)."""
    created_at: float = field(default_factory=time.time)

    def path(self, absolute: str) -> str:
        """The workspace-relative path of an absolute in-sandbox path (``WorkspacePathError``
        outside ``home``: the emulator answers 400 or 404, as its cloud would)."""
        if not PurePosixPath(absolute).is_absolute():
            absolute = f"{self.home}/{absolute}"
        return normalize_path(absolute, self.home)

    async def start_process(
        self, argv: list[str], *, cwd: str, env: dict[str, str], stdin: bool = True
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in the sandbox (``cwd`` absolute, under ``home``) with pipes, for
        a wire adapter that streams stdin while the command runs (``box.exec`` takes stdin
        whole). It runs in a new session: end it with ``kill_process_group``."""
        request = ExecRequest(
            argv=argv,
            cwd=self.path(cwd),
            env={**self.box.manifest.env, **env},
            stdin=None,
            timeout=None,
        )
        host_argv, host_cwd, host_env = self.box.host_command(request)  # type: ignore[attr-defined]
        return await asyncio.create_subprocess_exec(
            *host_argv,
            cwd=host_cwd,
            env=host_env,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

    def inside(self, absolute: str) -> bool:
        """Whether ``absolute`` is under ``home``."""
        try:
            self.path(absolute)
        except WorkspacePathError:
            return False
        return True


def kill_process_group(proc: asyncio.subprocess.Process) -> None:
    """Kill a process from ``EmulatedSandbox.start_process`` and everything it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 9)


class EmulatorEngine:
    """Emulated sandboxes of any cloud, each a real sandbank ``local`` (bubblewrap) sandbox."""

    def __init__(self, root: str | os.PathLike[str], *, home: str = "/workspace") -> None:
        self.root = Path(root)
        self.home = home.rstrip("/")
        self.local = LocalProvider(state_dir=self.root / "local", mount_point=self.home)
        self._sandboxes: dict[str, EmulatedSandbox] = {}

    async def create(
        self,
        *,
        metadata: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        network: bool = False,
    ) -> EmulatedSandbox:
        box = await self.local.create(Manifest(env=env or {}, network=network))
        sandbox = EmulatedSandbox(
            id=secrets.token_hex(10), box=box, home=self.home, metadata=dict(metadata or {})
        )
        self._sandboxes[sandbox.id] = sandbox
        return sandbox

    def get(self, sandbox_id: str) -> EmulatedSandbox:
        try:
            return self._sandboxes[sandbox_id]
        except KeyError:
            raise EmulatedNotFound(sandbox_id) from None

    def all(self) -> list[EmulatedSandbox]:
        return list(self._sandboxes.values())

    async def destroy(self, sandbox_id: str) -> None:
        sandbox = self.get(sandbox_id)
        del self._sandboxes[sandbox_id]
        await sandbox.box.destroy()

    async def pause(self, sandbox_id: str) -> None:
        # Processes keep running in the backing sandbox: the emulator only refuses new
        # work while paused, it does not freeze memory as the clouds say they do.
        self.get(sandbox_id).state = "paused"

    async def resume(self, sandbox_id: str) -> None:
        self.get(sandbox_id).state = "running"

    async def aclose(self) -> None:
        for sandbox_id in list(self._sandboxes):
            with contextlib.suppress(Exception):
                await self.destroy(sandbox_id)
        await self.local.aclose()


class EmulatorServer:
    """Serves an ASGI app on 127.0.0.1 from a background thread with its own event loop.

    ``make_app`` runs on that loop (so what it builds, the engine included, lives there);
    ``call`` runs a coroutine there from any thread, e.g. a test deleting a sandbox behind
    the SDK's back. ``start()`` returns once the port accepts connections.
    """

    def __init__(self, make_app: Callable[[], Awaitable[Any]], *, port: int | None = None) -> None:
        self._make_app = make_app
        self.port = port or free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._ready = concurrent.futures.Future[None]()

    def start(self, timeout: float = 30.0) -> EmulatorServer:
        try:
            import uvicorn  # noqa: F401
        except ImportError:
            raise ImportError(
                "the cloud emulators serve with uvicorn: pip install 'sandbank[emulators]'"
            ) from None
        self._thread = threading.Thread(target=self._run, name=f"emulator-{self.port}", daemon=True)
        self._thread.start()
        self._ready.result(timeout)
        return self

    def _run(self) -> None:
        import uvicorn

        loop = asyncio.new_event_loop()
        self.loop = loop

        async def main() -> None:
            try:
                app = await self._make_app()
                config = uvicorn.Config(
                    app,
                    host="127.0.0.1",
                    port=self.port,
                    log_level="warning",
                    lifespan="off",
                    timeout_graceful_shutdown=2,
                )
                self._server = uvicorn.Server(config)
                serving = asyncio.ensure_future(self._server.serve())
                # uvicorn has no event for "listening", only this flag.
                while not self._server.started and not serving.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                if serving.done():
                    serving.result()
                    raise RuntimeError(f"the emulator on port {self.port} did not start")
                self._ready.set_result(None)
                await serving
            except BaseException as exc:
                if not self._ready.done():
                    self._ready.set_exception(exc)
                raise

        try:
            loop.run_until_complete(main())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        assert self.loop is not None, "start() the server first"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, cleanup: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Run ``cleanup`` on the server's loop (e.g. ``engine.aclose``), then stop serving."""
        if self.loop is None or self._thread is None:
            return
        if cleanup is not None:
            with contextlib.suppress(Exception):
                self.call(cleanup())
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(15)
