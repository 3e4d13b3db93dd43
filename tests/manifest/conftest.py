"""Providers (real local and docker), a snapshot store and small servers for manifest tests."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from sandbank.errors import SandbankError
from sandbank.providers.base import Provider
from sandbank.snapshots import SnapshotStore


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
async def provider(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Provider]:
    """A real provider; after the test, no sandbox of it may be left (checked by tests)."""
    p: Provider
    if request.param == "local":
        from sandbank.providers.local import LocalProvider

        p = LocalProvider(state_dir=tmp_path / "state", bwrap=request.getfixturevalue("bwrap"))
    else:
        from sandbank.providers.docker import DockerProvider

        image = request.getfixturevalue("docker_image")
        p = DockerProvider(image=image, labels={"sandbank-test.run": uuid.uuid4().hex})
    yield p
    for info in await p.list():
        with suppress(SandbankError):
            await p.destroy(info.id)
    await p.aclose()


@pytest.fixture
async def local(tmp_path: Path, bwrap: str) -> AsyncIterator[Provider]:
    from sandbank.providers.local import LocalProvider

    p = LocalProvider(state_dir=tmp_path / "local-state", bwrap=bwrap)
    yield p
    for info in await p.list():
        with suppress(SandbankError):
            await p.destroy(info.id)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    s = await SnapshotStore.open(tmp_path / "store", cache_dir=tmp_path / "cache")
    yield s
    await s.aclose()


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "HOME": str(cwd), "PATH": "/usr/bin:/bin",
    }  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True)
    return done.stdout.decode().strip()


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, str]:
    """A local repository: commits one, two, three on ``main``, tag ``v1`` at one."""
    root = tmp_path / "origin"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    shas = []
    for n, name in enumerate(["one", "two", "three"]):
        (root / f"{name}.txt").write_text(f"{name}\n")
        if n == 0:
            (root / "run.sh").write_text("#!/bin/sh\necho ran\n")
            (root / "run.sh").chmod(0o755)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", name)
        shas.append(git(root, "rev-parse", "HEAD"))
        if n == 0:
            git(root, "tag", "-a", "v1", "-m", "v1")
    return {"url": f"file://{root}", "one": shas[0], "two": shas[1], "three": shas[2]}


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1 (a real server, in a thread)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
