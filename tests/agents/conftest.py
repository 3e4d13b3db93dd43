"""Fixtures for the Agents SDK tests: real providers and a real snapshot store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sandbank.agents import SandbankSandboxClient
from sandbank.providers.docker import DockerProvider
from sandbank.providers.local import LocalProvider
from sandbank.snapshots import SnapshotStore


@pytest.fixture
def local(tmp_path: Path, bwrap: str) -> LocalProvider:
    return LocalProvider(state_dir=tmp_path / "state-a", bwrap=bwrap)


@pytest.fixture
def docker(docker_image: str) -> DockerProvider:
    return DockerProvider(image=docker_image)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    async with await SnapshotStore.open(tmp_path / "store", cache_dir=False) as opened:
        yield opened


@pytest.fixture
def client_for(store: SnapshotStore) -> Callable[..., SandbankSandboxClient]:
    def make(provider: Any, **kwargs: Any) -> SandbankSandboxClient:
        return SandbankSandboxClient(provider, store=store, **kwargs)

    return make
