"""The conformance suite against the e2b provider: the real e2b SDK, a fake of E2B.

The fake (``sandbank.testing.emulators.e2b``) speaks E2B's REST API, envd's Connect RPC
and ``/files`` on 127.0.0.1, with every sandbox a real local (bubblewrap) sandbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sandbank.conformance import ProviderConformance
from sandbank.providers.base import Provider
from sandbank.testing.emulators.fixtures import E2BFake

pytest.importorskip("e2b")

DECODED = (
    "the e2b SDK decodes command output as UTF-8 with errors='replace' "
    "(AsyncCommandHandle), so bytes that are not UTF-8 cannot come back through exec"
)
E2B_EXPECTED_FAILURES = {
    "test_binary_stdout": DECODED,
    "test_non_utf8_output": DECODED,
    "test_stdin_bytes": DECODED + " (stdin itself arrives whole; cat echoes it back)",
    "test_stdin_large": DECODED + " (1 MiB of random stdin echoed back)",
    "test_non_utf8_name": "E2B's file API takes paths as str in JSON and URLs, never bytes",
}


class TestE2BConformance(ProviderConformance):
    expected_failures = E2B_EXPECTED_FAILURES

    @pytest_asyncio.fixture
    async def provider(self, e2b_emulator: E2BFake, bwrap: str) -> AsyncIterator[Provider]:
        from sandbank.providers.e2b import E2BProvider

        provider = E2BProvider()
        yield provider
        await provider.aclose()
