"""The conformance suite against the real Runloop service; runs only when RUNLOOP_API_KEY is
set.

Each devbox shuts itself down after five idle minutes (``keep_alive_seconds``) and is
destroyed after its test in the suite's ``finally``. Without credentials every test here is
skipped, for that reason.
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
        not os.environ.get("RUNLOOP_API_KEY"),
        reason="RUNLOOP_API_KEY is not set (no Runloop credentials)",
    ),
]


class TestRunloopLive(ProviderConformance):
    expected_failures = {
        "test_pause_not_supported": "Runloop's suspend ends every process, so the provider "
        "declares it as stop, not pause; Sandbox.resume() then works, which this test, "
        "written for providers without stop, does not expect",
        "test_pids_limit": "Runloop has no limit on the number of processes: create refuses "
        "resources.pids with NotSupported",
    }

    @pytest_asyncio.fixture
    async def provider(self) -> AsyncIterator[Provider]:
        pytest.importorskip("runloop_api_client")
        from sandbank.providers.runloop import RunloopProvider

        provider = RunloopProvider(keep_alive_seconds=300)
        yield provider
        await provider.aclose()
