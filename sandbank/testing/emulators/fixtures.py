"""Pytest fixtures that start a cloud emulator and point the real SDK at it.

Load them with ``pytest_plugins = ["sandbank.testing.emulators.fixtures"]`` (or import
them into a ``conftest.py``). ``e2b_emulator`` points the ``e2b`` SDK at a fake of E2B on
127.0.0.1 for one test; the server itself starts once per session. ``daytona_emulator``
does the same for the ``daytona`` SDK (``DAYTONA_API_URL``, ``DAYTONA_API_KEY``), and
``daytona_provider`` is a sandbank provider on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sandbank.testing.emulators.engine import EmulatorEngine, EmulatorServer

__all__ = [
    "E2BFake",
    "daytona_emulator",
    "daytona_emulator_server",
    "daytona_provider",
    "e2b_emulator",
    "e2b_emulator_server",
    "modal_emulator",
    "modal_emulator_server",
    "runloop_emulator",
    "runloop_emulator_server",
    "runloop_provider",
    "vercel_emulator",
    "vercel_emulator_server",
    "vercel_provider",
]


@dataclass
class E2BFake:
    """A running fake of E2B: its URL, the ASGI app (faults, request log) and the engine."""

    server: EmulatorServer
    emulator: Any
    """The ``sandbank.testing.emulators.e2b.E2BEmulator``."""

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def engine(self) -> EmulatorEngine:
        return self.emulator.engine

    def environment(self) -> dict[str, str]:
        from sandbank.testing.emulators.e2b import environment

        return environment(self.server, self.emulator)


@pytest.fixture(scope="session")
def e2b_emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2BFake]:
    """One fake of E2B for the session (needs the ``e2b`` SDK and bubblewrap)."""
    pytest.importorskip("e2b", reason="the e2b SDK is not installed (pip install 'sandbank[e2b]')")
    from sandbank.testing.emulators.e2b import start_e2b_emulator

    root = Path(tmp_path_factory.mktemp("e2b-emulator"))
    server, emulator = start_e2b_emulator(root)
    try:
        yield E2BFake(server, emulator)
    finally:
        server.stop(emulator.engine.aclose)


@pytest.fixture
def e2b_emulator(e2b_emulator_server: E2BFake, monkeypatch: pytest.MonkeyPatch) -> E2BFake:
    """The fake of E2B, with ``E2B_API_URL``, ``E2B_SANDBOX_URL``, ``E2B_API_KEY`` and
    ``E2B_HTTP_VERSION`` pointing the SDK at it for this test; no faults left over."""
    for name, value in e2b_emulator_server.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    monkeypatch.delenv("E2B_DOMAIN", raising=False)
    e2b_emulator_server.emulator.faults.clear()
    return e2b_emulator_server


@pytest.fixture(scope="session")
def daytona_emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One fake of Daytona for the session (needs the ``daytona`` SDK and bubblewrap): a
    ``sandbank.testing.emulators.daytona.DaytonaEmulator``."""
    pytest.importorskip(
        "daytona", reason="the daytona SDK is not installed (pip install 'sandbank[daytona]')"
    )
    from sandbank.testing.emulators.daytona import serve_daytona

    with serve_daytona(tmp_path_factory.mktemp("daytona-emulator")) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def modal_emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One fake of Modal (control plane and task command router) for the session, a
    ``sandbank.testing.emulators.modal.ModalEmulator``; needs the ``modal`` SDK and bwrap."""
    pytest.importorskip(
        "modal", reason="the modal SDK is not installed (pip install 'sandbank[modal]')"
    )
    from sandbank.testing.emulators.modal import ModalEmulator

    with ModalEmulator(str(tmp_path_factory.mktemp("modal-emulator"))) as emulator:
        yield emulator


@pytest.fixture
def daytona_emulator(daytona_emulator_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake of Daytona, with ``DAYTONA_API_URL`` and ``DAYTONA_API_KEY`` pointing the SDK
    at it for this test; no faults or limits left over."""
    monkeypatch.setenv("DAYTONA_API_URL", daytona_emulator_server.api_url)
    monkeypatch.setenv("DAYTONA_API_KEY", daytona_emulator_server.api_key)
    daytona_emulator_server.reset()
    return daytona_emulator_server


@pytest_asyncio.fixture
async def daytona_provider(daytona_emulator: Any) -> AsyncIterator[Any]:
    """A ``DaytonaProvider`` whose SDK talks to the fake (closed after the test)."""
    from sandbank.providers.daytona import DaytonaProvider

    provider = DaytonaProvider()
    try:
        yield provider
    finally:
        await provider.aclose()


@pytest.fixture
def modal_emulator(modal_emulator_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake of Modal, with ``MODAL_SERVER_URL``, ``MODAL_TOKEN_ID`` and
    ``MODAL_TOKEN_SECRET`` pointing the SDK at it for this test; no faults left over."""
    for name, value in modal_emulator_server.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MODAL_PROFILE", raising=False)
    modal_emulator_server.clear_faults()
    return modal_emulator_server


@pytest.fixture(scope="session")
def runloop_emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One fake of Runloop for the session (needs ``runloop-api-client`` and bubblewrap): a
    ``sandbank.testing.emulators.runloop.RunloopEmulator``."""
    pytest.importorskip(
        "runloop_api_client",
        reason="the Runloop SDK is not installed (pip install 'sandbank[runloop]')",
    )
    from sandbank.testing.emulators.runloop import serve_runloop

    with serve_runloop(tmp_path_factory.mktemp("runloop-emulator")) as emulator:
        yield emulator


@pytest.fixture
def runloop_emulator(runloop_emulator_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake of Runloop, with ``RUNLOOP_BASE_URL`` and ``RUNLOOP_API_KEY`` pointing the SDK
    at it for this test; no faults left over."""
    monkeypatch.setenv("RUNLOOP_BASE_URL", runloop_emulator_server.url)
    monkeypatch.setenv("RUNLOOP_API_KEY", runloop_emulator_server.api_key)
    runloop_emulator_server.reset()
    return runloop_emulator_server


@pytest_asyncio.fixture
async def runloop_provider(runloop_emulator: Any) -> AsyncIterator[Any]:
    """A ``RunloopProvider`` whose SDK talks to the fake (closed after the test)."""
    from sandbank.providers.runloop import RunloopProvider

    provider = RunloopProvider()
    try:
        yield provider
    finally:
        await provider.aclose()


@pytest.fixture(scope="session")
def vercel_emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One fake of Vercel Sandbox for the session, a
    ``sandbank.testing.emulators.vercel.VercelEmulator`` (needs ``vercel-sandbox`` and bwrap)."""
    pytest.importorskip(
        "vercel.sandbox",
        reason="the vercel-sandbox SDK is not installed (pip install 'sandbank[vercel]')",
    )
    from sandbank.testing.emulators.vercel import serve_vercel

    with serve_vercel(tmp_path_factory.mktemp("vercel-emulator")) as emulator:
        yield emulator


@pytest.fixture
def vercel_emulator(vercel_emulator_server: Any) -> Any:
    """The fake of Vercel Sandbox for this test, no faults left over."""
    vercel_emulator_server.reset()
    return vercel_emulator_server


@pytest_asyncio.fixture
async def vercel_provider(vercel_emulator: Any) -> AsyncIterator[Any]:
    """A ``VercelProvider`` whose SDK talks to the fake (closed after the test)."""
    from sandbank.providers.vercel import VercelProvider
    from sandbank.testing.emulators import vercel

    provider = VercelProvider(
        token=vercel.TOKEN,
        team_id=vercel.TEAM,
        project_id=vercel.PROJECT,
        base_url=vercel_emulator.url,
    )
    try:
        yield provider
    finally:
        await provider.aclose()
