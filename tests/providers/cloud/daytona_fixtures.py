"""Fixtures of the daytona tests: the Daytona emulator (a fake of the service) and a provider
whose real SDK talks to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from sandbank.testing.emulators.daytona import DaytonaEmulator, serve_daytona
from sandbank.testing.emulators.engine import EmulatorServer

__all__ = ["daytona_emulator", "daytona_provider", "daytona_server"]


@pytest.fixture(scope="module")
def daytona_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DaytonaEmulator, EmulatorServer]]:
    pytest.importorskip(
        "daytona", reason="the daytona SDK is missing: pip install 'sandbank[daytona]'"
    )
    with serve_daytona(tmp_path_factory.mktemp("daytona")) as served:
        yield served


@pytest.fixture
def daytona_emulator(daytona_server: tuple[DaytonaEmulator, EmulatorServer]) -> DaytonaEmulator:
    emulator = daytona_server[0]
    emulator.faults.clear()
    return emulator


@pytest_asyncio.fixture
async def daytona_provider(daytona_emulator: DaytonaEmulator) -> AsyncIterator[Any]:
    from sandbank.providers.daytona import DaytonaProvider

    provider = DaytonaProvider(api_key=daytona_emulator.api_key, api_url=daytona_emulator.api_url)
    yield provider
    await provider.aclose()
