"""The conformance suite against the daytona provider: the real ``daytona`` SDK, unmodified,
talking to the Daytona emulator (a fake of the service on 127.0.0.1, not the service)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider
from sandbank.testing.emulators.daytona import DaytonaEmulator


class TestDaytonaConformance(ProviderConformance):
    expected_failures = {
        "test_pids_limit": "Daytona has no limit on the number of processes: create refuses "
        "resources.pids with NotSupported",
        "test_stop_resume": "the emulator's limit, not the provider's: its backing local "
        "sandbox runs each command in a PID namespace of its own, so the background process "
        "the test starts dies with the command that started it and cannot be seen running "
        "before stop() (a real Daytona sandbox keeps it)",
    }

    @pytest_asyncio.fixture
    async def provider(self, daytona_emulator: DaytonaEmulator) -> AsyncIterator[Provider]:
        from sandbank.providers.daytona import DaytonaProvider

        provider = DaytonaProvider(
            api_key=daytona_emulator.api_key, api_url=daytona_emulator.api_url
        )
        yield provider
        await provider.aclose()
