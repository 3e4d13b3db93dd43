"""The conformance suite against the real Daytona service; runs only when DAYTONA_API_KEY is set.

Each sandbox stops after five idle minutes and is deleted after fifteen at most
(``auto_stop_minutes``, ``lifetime_minutes``), and is destroyed after its test in the
suite's ``finally``. Without credentials every test here is skipped, for that reason.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not os.environ.get("DAYTONA_API_KEY"),
        reason="DAYTONA_API_KEY is not set (no Daytona credentials)",
    ),
]


class TestDaytonaLive(ProviderConformance):
    expected_failures = {
        "test_pids_limit": "Daytona has no limit on the number of processes: create refuses "
        "resources.pids with NotSupported",
    }

    @pytest_asyncio.fixture
    async def provider(self) -> AsyncIterator[Provider]:
        pytest.importorskip("daytona")
        from sandbank.providers.daytona import DaytonaProvider

        provider = DaytonaProvider(auto_stop_minutes=5, lifetime_minutes=15)
        yield provider
        await provider.aclose()
