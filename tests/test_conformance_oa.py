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
from sandbank.providers.base import Provider


class TestAgentsUnixLocalConformance(ProviderConformance):
    expected_failures: ClassVar[dict[str, str]] = {
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
class TestAgentsDockerConformance(ProviderConformance):
    expected_failures: ClassVar[dict[str, str]] = {
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
