"""Shared fixtures: which real services this run has, and whether their absence is fatal.

In CI (``CI=true`` or ``SANDBANK_REQUIRE_SERVICES=1``) a missing Docker engine or bubblewrap
fails the run instead of skipping, so a green CI always means the integrations ran.
"""

from __future__ import annotations

import os
import shutil

import pytest

# Real service fixtures (S3, GCS, Azure Blob, Temporal). Imported first: gcsfs reads its
# settings at import time.
from sandbank.testing.fixtures import *  # noqa: F403


def _traceback_lines_never_none() -> None:
    """CPython 3.11 can leave ``tb_lineno`` as None on a frame (seen twice in full runs, at
    the e2b conformance tests under load), and pytest's failure report then crashes the
    whole session with INTERNALERROR instead of naming the failed test. Use the frame's
    line, or line 0, there."""
    from _pytest._code.code import TracebackEntry

    def lineno(self: TracebackEntry) -> int:
        raw = self._rawentry
        return (raw.tb_lineno if raw.tb_lineno is not None else raw.tb_frame.f_lineno or 1) - 1

    TracebackEntry.lineno = property(lineno)  # type: ignore[method-assign,assignment]


_traceback_lines_never_none()

TEST_IMAGE = os.environ.get("SANDBANK_TEST_IMAGE", "sandbank-test:bookworm")
REQUIRE_SERVICES = (
    os.environ.get("CI") == "true" or os.environ.get("SANDBANK_REQUIRE_SERVICES") == "1"
)


def need(condition: bool, what: str) -> None:
    """Skip when ``what`` is missing on a developer machine; fail in CI."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required in CI but missing; .ci/run must install and start it")
    pytest.skip(f"{what} is not available on this machine")


def docker_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.images.get(TEST_IMAGE)
        client.close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The locally built test image; needs a Docker engine at DOCKER_HOST."""
    need(docker_available(), f"a Docker engine with the image {TEST_IMAGE}")
    return TEST_IMAGE


@pytest.fixture(scope="session")
def bwrap() -> str:
    path = shutil.which("bwrap")
    need(path is not None, "bubblewrap (bwrap)")
    assert path is not None
    return path


# A developer's own sandbank.toml must not change what the tests do; tests of the config
# set SANDBANK_CONFIG (or remove it) themselves.
os.environ.setdefault("SANDBANK_CONFIG", os.devnull)
