"""The fixtures every conformance test builds on; a provider's test class overrides ``provider``.

``provider`` returns a configured ``Provider``. The suite makes a second instance for attach
tests by calling the same fixture function again under the name ``fresh_provider``, so a
provider's tests override one fixture only. Sandboxes are created per test and destroyed after.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from sandbank.errors import ConfigurationError, SandboxNotFound
from sandbank.manifest import Manifest
from sandbank.providers.base import Provider, Sandbox

from .plugin import capability_gate

__all__ = ["ConformanceFixtures", "SandboxFactory"]

SandboxFactory = Callable[..., Awaitable[Sandbox]]
"""``await make_sandbox(**manifest_overrides)``: a new sandbox, destroyed after the test."""


def _fixture_function(obj: Any) -> Callable[..., Any] | None:
    """The plain function under a ``@pytest.fixture`` object, or ``None``."""
    legacy = getattr(obj, "__pytest_wrapped__", None)  # pytest < 8.4
    if legacy is not None:
        return legacy.obj
    if type(obj).__name__ == "FixtureFunctionDefinition":  # pytest >= 8.4
        return inspect.unwrap(obj)
    return None


class ConformanceFixtures:
    """Fixtures of the conformance suite. Override ``provider`` (and optionally ``manifest``)."""

    pytestmark = [pytest.mark.asyncio]

    expected_failures: ClassVar[Mapping[str, str]] = {}
    """Behaviours this provider is known to miss: test name (``test_x``, or ``test_x[param]``
    for one parameter) to the reason. Each runs as a strict xfail: reported as an expected
    failure, and as a failure if it passes (then remove it from the list)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [
            name
            for name in cls.expected_failures
            if not (name.startswith("test_") and callable(getattr(cls, name.split("[")[0], None)))
        ]
        if unknown:
            raise ConfigurationError(
                f"{cls.__name__}.expected_failures names tests the suite does not have: "
                f"{', '.join(sorted(unknown))}; use names as `sandbank conformance` prints them"
            )
        # A subclass that defines ``provider`` gets ``fresh_provider``: the same function
        # registered under a second name, so pytest calls it again for a second instance.
        if "provider" in cls.__dict__ and "fresh_provider" not in cls.__dict__:
            function = _fixture_function(cls.__dict__["provider"])
            if function is not None:
                fresh: Any = pytest.fixture(name="fresh_provider")(function)
                cls.fresh_provider = fresh  # type: ignore[method-assign]

    @pytest.fixture
    def provider(self) -> Provider:
        """The provider under test. Override this fixture in your test class."""
        raise NotImplementedError(
            "the sandbank conformance suite needs a provider: override the `provider` fixture "
            "in your test class, e.g.\n"
            "    @pytest.fixture\n"
            "    def provider(self):\n"
            "        return MyProvider()"
        )

    @pytest.fixture
    def fresh_provider(self) -> Provider:
        """A second instance of the provider, configured like ``provider``, for attach tests."""
        raise NotImplementedError(
            "`fresh_provider` is derived from a `provider` fixture defined in the test class; "
            "your `provider` fixture lives elsewhere, so override `fresh_provider` too"
        )

    @pytest.fixture
    def manifest(self, provider: Provider) -> Manifest:
        """The manifest every sandbox of the suite starts from; override to pick an image.

        The defaults, except ``network=True`` for a provider without ``network_policy``
        (which refuses the default, ``network=False``).
        """
        return Manifest(network=not provider.capabilities.network_policy)

    @pytest.fixture(autouse=True)
    def _sandbank_capability_gate(self, request: pytest.FixtureRequest) -> None:
        """Skips tests marked ``sandbank_capability`` that the provider does not declare."""
        capability_gate(request)

    @pytest.fixture(autouse=True)
    def _sandbank_expected_failure(self, request: pytest.FixtureRequest) -> None:
        """Marks the tests named in ``expected_failures`` as strict xfails."""
        node = request.node
        expected = type(self).expected_failures
        reason = expected.get(node.name, expected.get(getattr(node, "originalname", "")))
        if reason is not None:
            node.add_marker(pytest.mark.xfail(reason=f"expected deviation: {reason}", strict=True))

    @pytest_asyncio.fixture
    async def make_sandbox(
        self, provider: Provider, manifest: Manifest
    ) -> AsyncIterator[SandboxFactory]:
        """A factory of sandboxes (manifest fields as keyword overrides), destroyed after."""
        created: list[Sandbox] = []

        async def make(**overrides: Any) -> Sandbox:
            box = await provider.create(manifest.merged(**overrides) if overrides else manifest)
            created.append(box)
            return box

        try:
            yield make
        finally:
            failures: list[BaseException] = []
            for box in created:
                try:
                    with contextlib.suppress(SandboxNotFound):
                        if box.closed:
                            await provider.destroy(box.id)
                        else:
                            await box.destroy()
                except Exception as exc:
                    failures.append(exc)
            if failures:
                raise failures[0]

    @pytest_asyncio.fixture
    async def sandbox(self, make_sandbox: SandboxFactory) -> Sandbox:
        """A fresh sandbox from ``manifest``, destroyed after the test."""
        return await make_sandbox()
