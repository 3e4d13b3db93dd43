"""The conformance suite against the real E2B cloud; runs only when E2B_API_KEY is set.

Each sandbox lives at most five minutes (``lifetime``) and is destroyed after its test, in
the suite's ``finally``. Without credentials every test here is skipped, for that reason.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider
from tests.providers.cloud.test_conformance_e2b import E2B_EXPECTED_FAILURES

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not os.environ.get("E2B_API_KEY"), reason="E2B_API_KEY is not set (no E2B credentials)"
    ),
]


class TestE2BLive(ProviderConformance):
    expected_failures = E2B_EXPECTED_FAILURES

    @pytest_asyncio.fixture
    async def provider(self) -> AsyncIterator[Provider]:
        pytest.importorskip("e2b")
        from sandbank.providers.e2b import E2BProvider

        provider = E2BProvider(lifetime=300)
        yield provider
        await provider.aclose()
