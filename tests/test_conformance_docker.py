"""The conformance suite against the docker provider, on the locally built test image."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider

pytestmark = pytest.mark.docker


class TestDockerConformance(ProviderConformance):
    @pytest_asyncio.fixture
    async def provider(self, docker_image: str) -> AsyncIterator[Provider]:
        from sandbank.providers.docker import DockerProvider

        provider = DockerProvider(image=docker_image)
        yield provider
        await provider.aclose()
