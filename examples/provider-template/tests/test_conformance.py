"""The sandbank conformance suite against the template provider."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbank_template import TemplateProvider

from sandbank.conformance import ProviderConformance


class TestTemplateConformance(ProviderConformance):
    # Behaviours this provider is known to miss, with the reason (none here):
    # expected_failures = {"test_timeout_kills_children": "the platform cannot kill groups"}

    @pytest.fixture
    def provider(self, tmp_path: Path) -> TemplateProvider:
        return TemplateProvider(root=tmp_path / "sandboxes")


# Tests of your own go beside the suite. This package runs pytest-asyncio in strict mode, so
# an async test of your own needs the marker (the suite's tests carry it already).
@pytest.mark.asyncio
async def test_a_sandbox_lives_under_root(tmp_path: Path) -> None:
    provider = TemplateProvider(root=tmp_path / "sandboxes")
    async with provider.sandbox({"network": True}) as box:
        assert box.host_path is not None
        assert box.host_path.startswith(str(tmp_path / "sandboxes"))
