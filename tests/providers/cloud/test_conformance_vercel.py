"""The conformance suite against the vercel provider: the real ``vercel-sandbox`` SDK,
unmodified, talking to the Vercel emulator (a fake of the service on 127.0.0.1, not the
service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider


class TestVercelConformance(ProviderConformance):
    expected_failures: dict[str, str] = {}

    @pytest_asyncio.fixture
    async def provider(self, vercel_provider: Any) -> AsyncIterator[Provider]:
        yield vercel_provider
