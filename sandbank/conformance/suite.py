"""The whole conformance suite as one class: subclass it and override ``provider``."""

from __future__ import annotations

from .capabilities import CapabilityTests
from .commands import ExecTests
from .files import FileTests
from .lifecycle import LifecycleTests
from .paths import PathEscapeTests
from .ports import PortTests
from .tar import TarTests

__all__ = ["ProviderConformance"]


# pytest collects base classes last-listed first: this order runs lifecycle tests first.
class ProviderConformance(
    PortTests, CapabilityTests, TarTests, PathEscapeTests, FileTests, ExecTests, LifecycleTests
):
    """Every behaviour of a sandbank provider, one pytest item each.

    Usage::

        from sandbank.conformance import ProviderConformance

        class TestMyProvider(ProviderConformance):
            expected_failures = {"test_x": "why"}  # optional, see ConformanceFixtures

            @pytest.fixture
            def provider(self):
                return MyProvider()
    """
