"""The sandbank provider conformance suite: test mixins a provider's tests subclass.

    from sandbank.conformance import ProviderConformance

    class TestMyProvider(ProviderConformance):
        expected_failures = {"test_x": "why"}   # optional: known deviations, strict xfails

        @pytest.fixture
        def provider(self):
            return MyProvider()

The sandbox image needs a POSIX shell at /bin/sh and the usual utilities (cat, head, ln,
touch, chmod, sleep, tr, cut, tail, pwd, id, as in coreutils or busybox). The contract the
suite checks is written down in docs/providers.md.

Names are imported on first use: the pytest plugin in this package loads in every pytest
run, and must not pull in the suite (or pytest-asyncio) there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbank.conformance.capabilities import CapabilityTests
    from sandbank.conformance.commands import ExecTests
    from sandbank.conformance.files import FileTests
    from sandbank.conformance.fixtures import ConformanceFixtures
    from sandbank.conformance.lifecycle import LifecycleTests
    from sandbank.conformance.paths import PathEscapeTests
    from sandbank.conformance.ports import PortTests
    from sandbank.conformance.suite import ProviderConformance
    from sandbank.conformance.tar import TarTests

__all__ = [
    "CapabilityTests",
    "ConformanceFixtures",
    "ExecTests",
    "FileTests",
    "LifecycleTests",
    "PathEscapeTests",
    "PortTests",
    "ProviderConformance",
    "TarTests",
]

_WHERE = {
    "CapabilityTests": "capabilities",
    "ConformanceFixtures": "fixtures",
    "ExecTests": "commands",
    "FileTests": "files",
    "LifecycleTests": "lifecycle",
    "PathEscapeTests": "paths",
    "PortTests": "ports",
    "ProviderConformance": "suite",
    "TarTests": "tar",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
