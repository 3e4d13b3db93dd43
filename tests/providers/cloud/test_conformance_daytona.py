"""The conformance suite against the daytona provider: the real ``daytona`` SDK, unmodified,
talking to the Daytona emulator (a fake of the service on 127.0.0.1, not the service)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider
from sandbank.testing.emulators.daytona import DaytonaEmulator, serve_daytona

pytest.importorskip(
    "daytona", reason="the daytona SDK is not installed (pip install 'sandbank[daytona]')"
)


@pytest.fixture(scope="module")
def daytona_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaytonaEmulator]:
    with serve_daytona(tmp_path_factory.mktemp("daytona")) as (emulator, _server):
        yield emulator


class TestDaytonaConformance(ProviderConformance):
    expected_failures = {
        "test_pids_limit": "Daytona has no limit on the number of processes: create refuses "
        "resources.pids with NotSupported",
    }

    @pytest_asyncio.fixture
    async def provider(self, daytona_emulator: DaytonaEmulator) -> AsyncIterator[Provider]:
        from sandbank.providers.daytona import DaytonaProvider

        provider = DaytonaProvider(
            api_key=daytona_emulator.api_key, api_url=daytona_emulator.api_url
        )
        yield provider
        await provider.aclose()
