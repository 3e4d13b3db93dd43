"""The conformance suite against the runloop provider: the real ``runloop-api-client`` SDK,
unmodified, talking to the Runloop emulator (a fake of the service on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider


class TestRunloopConformance(ProviderConformance):
    expected_failures = {
        "test_pause_not_supported": "Runloop's suspend ends every process, so the provider "
        "declares it as stop, not pause; Sandbox.resume() then works (it resumes a stopped "
        "sandbox), which this test, written for providers without stop, does not expect",
        "test_pids_limit": "Runloop has no limit on the number of processes: create refuses "
        "resources.pids with NotSupported",
        "test_stop_resume": "the emulator's limit, not the provider's: its backing local "
        "sandbox runs each command in a PID namespace of its own, so the background process "
        "the test starts dies with the command that started it and cannot be seen running "
        "before stop() (a real devbox keeps it)",
    }

    @pytest_asyncio.fixture
    async def provider(self, runloop_emulator: Any) -> AsyncIterator[Provider]:
        from sandbank.providers.runloop import RunloopProvider

        provider = RunloopProvider(api_key=runloop_emulator.api_key, base_url=runloop_emulator.url)
        yield provider
        await provider.aclose()
