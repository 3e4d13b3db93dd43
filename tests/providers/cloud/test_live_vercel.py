"""The conformance suite against the real Vercel Sandbox service; runs only when
VERCEL_TOKEN, VERCEL_TEAM_ID and VERCEL_PROJECT_ID are set.

Each sandbox is destroyed after its test in the suite's ``finally``. Without credentials
every test here is skipped, for that reason. Never run here: this machine has no internet.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider

_NEEDED = ("VERCEL_TOKEN", "VERCEL_TEAM_ID", "VERCEL_PROJECT_ID")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not all(os.environ.get(name) for name in _NEEDED),
        reason="VERCEL_TOKEN, VERCEL_TEAM_ID and VERCEL_PROJECT_ID are not all set",
    ),
]


class TestVercelLive(ProviderConformance):
    expected_failures = {
        "test_pause_not_supported": "Vercel declares stop without pause, and "
        "base.Sandbox.resume() accepts either capability, so resume() does not raise",
    }

    @pytest_asyncio.fixture
    async def provider(self) -> AsyncIterator[Provider]:
        pytest.importorskip("vercel.sandbox")
        from sandbank.providers.vercel import VercelProvider

        provider = VercelProvider()
        yield provider
        await provider.aclose()
