"""The conformance suite against the real Modal cloud; runs only when MODAL_TOKEN_ID and
MODAL_TOKEN_SECRET are set.

Each sandbox lives at most five minutes (the provider's ``timeout``) and is destroyed after
its test, in the suite's ``finally``. Without credentials every test here is skipped, for
that reason. ``MODAL_SERVER_URL`` must not point at an emulator here.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider
from tests.providers.cloud.test_conformance_modal import MODAL_EXPECTED_FAILURES

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET")),
        reason="MODAL_TOKEN_ID/MODAL_TOKEN_SECRET are not set (no Modal credentials)",
    ),
]


class TestModalLive(ProviderConformance):
    expected_failures = MODAL_EXPECTED_FAILURES

    @pytest_asyncio.fixture
    async def provider(self) -> AsyncIterator[Provider]:
        pytest.importorskip("modal")
        from sandbank.providers.modal import ModalProvider

        provider = ModalProvider(app="sandbank-live-conformance", timeout=300)
        yield provider
        await provider.aclose()
