"""pytest plugin entry point (``pytest11``): the conformance markers and the capability gate.

It loads in every pytest run of anyone who installed sandbank, so it imports nothing beyond
pytest and only acts on tests that carry a ``sandbank_capability`` marker.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["CAPABILITY_MARKER", "capability_gate"]

CAPABILITY_MARKER = "sandbank_capability"

# Asserts in the shipped suite get pytest's detailed messages, like those in a test module.
pytest.register_assert_rewrite(
    "sandbank.conformance._helpers",
    "sandbank.conformance.fixtures",
    "sandbank.conformance.suite",
    "sandbank.conformance.commands",
    "sandbank.conformance.files",
    "sandbank.conformance.paths",
    "sandbank.conformance.tar",
    "sandbank.conformance.lifecycle",
    "sandbank.conformance.capabilities",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{CAPABILITY_MARKER}(name, declared=True): run only when the `provider` fixture "
        "declares capability `name` (with declared=False: only when it does not); "
        "skipped otherwise, with the reason",
    )


def capability_gate(request: pytest.FixtureRequest) -> None:
    """Skip the requesting test when its ``sandbank_capability`` markers do not hold."""
    marks = list(request.node.iter_markers(CAPABILITY_MARKER))
    if not marks:
        return
    provider: Any = request.getfixturevalue("provider")
    declared_names = set(provider.capabilities.names())
    for mark in marks:
        if len(mark.args) != 1:
            raise TypeError(f"{CAPABILITY_MARKER} takes one capability name, got {mark.args!r}")
        name = mark.args[0]
        if not hasattr(provider.capabilities, name):
            raise ValueError(f"{CAPABILITY_MARKER}({name!r}): no such capability")
        wanted = bool(mark.kwargs.get("declared", True))
        if wanted and name not in declared_names:
            pytest.skip(f"provider {provider.name} does not declare capability {name}")
        if not wanted and name in declared_names:
            pytest.skip(f"provider {provider.name} declares capability {name}")


@pytest.fixture(autouse=True)
def _sandbank_capability_gate(request: pytest.FixtureRequest) -> None:
    """Applies ``sandbank_capability`` markers; does nothing for tests without one."""
    capability_gate(request)
