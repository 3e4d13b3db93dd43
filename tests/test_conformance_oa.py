"""The conformance suite against the Agents SDK's unix_local and docker clients (oa-*).

Where the SDK itself loses data the suite checks, the test is a strict xfail naming what
the SDK does wrong: the matrix shows it, and a fixed SDK turns the xfail red.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest
import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.manifest import Manifest
from sandbank.providers.base import Provider


class _AgentsConformance(ProviderConformance):
    deviations: ClassVar[dict[str, str]] = {}
    """Test name -> what the SDK does wrong there."""

    @pytest.fixture
    def manifest(self, provider: Provider) -> Manifest:
        """Network on where the SDK's client cannot cut it (sandbank refuses that request)."""
        return Manifest(network=not provider.capabilities.network_policy)

    @pytest.fixture(autouse=True)
    def _sdk_deviation(self, request: pytest.FixtureRequest) -> None:
        reason = self.deviations.get(request.node.originalname)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


class TestAgentsUnixLocalConformance(_AgentsConformance):
    deviations: ClassVar[dict[str, str]] = {
        "test_tar_round_trip": (
            "the SDK's unix_local hydrate_workspace (safe_extract_tarfile) restores file "
            "modes only: directory permission bits and every mtime are lost on import"
        ),
    }

    @pytest_asyncio.fixture
    async def provider(self, tmp_path: Path) -> AsyncIterator[Provider]:
        from sandbank.providers.openai_agents import UnixLocalAgentsProvider

        provider = UnixLocalAgentsProvider(state_dir=tmp_path / "state")
        yield provider
        await provider.aclose()


@pytest.mark.docker
class TestAgentsDockerConformance(_AgentsConformance):
    deviations: ClassVar[dict[str, str]] = {
        "test_tar_round_trip": (
            "the SDK's docker persist_workspace copies the workspace with `cp -R` (no -p) "
            "before archiving it, so every exported mtime is the time of the export"
        ),
    }

    @pytest_asyncio.fixture
    async def provider(self, tmp_path: Path, docker_image: str) -> AsyncIterator[Provider]:
        from sandbank.providers.openai_agents import DockerAgentsProvider

        provider = DockerAgentsProvider(image=docker_image, state_dir=tmp_path / "state")
        yield provider
        await provider.aclose()
