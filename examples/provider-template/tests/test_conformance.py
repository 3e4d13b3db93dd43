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
