"""The conformance suite against the local provider (bubblewrap), state in a temporary dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider


class TestLocalConformance(ProviderConformance):
    @pytest_asyncio.fixture
    async def provider(self, tmp_path: Path, bwrap: str) -> AsyncIterator[Provider]:
        from sandbank.providers.local import LocalProvider

        provider = LocalProvider(state_dir=tmp_path / "state", isolation="bubblewrap")
        yield provider
        await provider.aclose()
