"""A secret's value reaches the command and nowhere else: each place is grepped for it."""

# These tests inspect the host file system and processes directly, on purpose.

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from sandbank.errors import ExecTimeout, SecretUnavailable
from sandbank.providers.base import Sandbox
from sandbank.providers.local import LocalProvider, LocalSandbox
from tests.leaks import files_containing, watch_command_lines

VALUE = f"sb-secret-{uuid.uuid4().hex}"
PLAIN = f"sb-plain-{uuid.uuid4().hex}"
MANIFEST = {"env": {"PLAIN": PLAIN}, "secrets": {"TOKEN": "env:SB_LEAK_TOKEN"}}


@pytest.fixture(autouse=True)
def _secret_on_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_LEAK_TOKEN", VALUE)


@pytest.fixture
async def local_box(tmp_path: Path, bwrap: str) -> AsyncIterator[LocalSandbox]:
    provider = LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)
    box = await provider.create(MANIFEST)
    try:
        yield box
    finally:
        await box.destroy()


async def assert_reaches_command_redacted(box: Sandbox) -> None:
    """The command gets the value; stdout, stderr and every streamed chunk show the name."""
    digest = await box.exec('printf %s "$TOKEN" | sha256sum')
    assert digest.text.split()[0] == hashlib.sha256(VALUE.encode()).hexdigest()
    result = await box.exec('echo "$TOKEN"; echo "err $TOKEN" >&2; echo "$PLAIN"')
    assert result.stdout == f"[secret TOKEN]\n{PLAIN}\n".encode()
    assert result.stderr == b"err [secret TOKEN]\n"

    chunks: list[tuple[Literal["stdout", "stderr"], bytes]] = []

    async def on_output(stream: Literal["stdout", "stderr"], data: bytes) -> None:
        chunks.append((stream, data))

    # The value arrives in two writes, so its halves reach sandbank as separate chunks.
    split = (
        'printf %s "$TOKEN" | head -c 12; sleep 0.5; printf "%s\\n" "$TOKEN" | tail -c +13; '
        'printf %s "$TOKEN" >&2'
    )
    streamed = await box.exec(split, on_output=on_output)
    assert streamed.stdout == b"[secret TOKEN]\n"
    assert b"".join(d for s, d in chunks if s == "stdout") == b"[secret TOKEN]\n"
    assert b"".join(d for s, d in chunks if s == "stderr") == b"[secret TOKEN]"
    assert all(VALUE[:12].encode() not in data for _, data in chunks)

    with pytest.raises(ExecTimeout) as info:
        await box.exec('echo "$TOKEN"; sleep 30', timeout=1)
    assert info.value.result.stdout == b"[secret TOKEN]\n"


# -- local ----------------------------------------------------------------------------------


async def test_local_secret_reaches_command_redacted(local_box: LocalSandbox) -> None:
    await assert_reaches_command_redacted(local_box)


async def test_local_secret_not_in_state_or_sandbox_files(
    local_box: LocalSandbox, tmp_path: Path
) -> None:
    assert (await local_box.exec(["sh", "-c", 'test "$TOKEN" = "$0"', VALUE])).ok
    record = tmp_path / "state" / local_box.id / "sandbox.json"
    assert json.loads(record.read_text())["manifest"]["secrets"] == {"TOKEN": "env:SB_LEAK_TOKEN"}
    assert files_containing(tmp_path / "state", VALUE) == []  # record, workspace and /tmp


async def test_local_environment_not_on_any_command_line(local_box: LocalSandbox) -> None:
    running = asyncio.ensure_future(local_box.exec("sleep 3"))
    try:
        seen = await watch_command_lines(running, [VALUE, PLAIN], b"sleep\x003")
    finally:
        assert (await running).ok
    assert seen, "the command was never seen running; the scan proved nothing"


async def test_local_missing_secret_fails_at_use(tmp_path: Path, bwrap: str) -> None:
    provider = LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)
    async with provider.sandbox({"secrets": {"API_KEY": "env:SB_LEAK_UNSET"}}) as box:
        with pytest.raises(SecretUnavailable, match=r"secret 'API_KEY' .*SB_LEAK_UNSET is not set"):
            await box.exec("true")
        os.environ["SB_LEAK_UNSET"] = "now-set"
        try:
            assert (await box.exec('test "$API_KEY" = now-set')).ok  # read at each use
        finally:
            del os.environ["SB_LEAK_UNSET"]


async def test_snapshot_objects_do_not_hold_the_secret(
    local_box: LocalSandbox, tmp_path: Path
) -> None:
    from sandbank.snapshots import SnapshotStore

    control = f"sb-control-{uuid.uuid4().hex}"
    assert (await local_box.exec(f'test -n "$TOKEN" && echo {control} > marker.txt')).ok
    await local_box.exec('echo "$TOKEN" | sha256sum > digest.txt')
    store_dir = tmp_path / "store"
    async with await SnapshotStore.open(f"file://{store_dir}") as store:
        snap = await store.snapshot(local_box)
        restored = tmp_path / "restored"
        restored.mkdir()
        await store.restore(snap.id, str(restored))
    assert (restored / "marker.txt").read_text() == f"{control}\n"
    assert files_containing(store_dir, control), "the control is not visible in the objects"
    assert files_containing(store_dir, VALUE) == []
    assert files_containing(restored, VALUE) == []


# -- docker ---------------------------------------------------------------------------------


@pytest.mark.docker
async def test_docker_secret_only_in_each_exec(docker_image: str) -> None:
    import docker

    from sandbank.providers.docker import LABEL_MANIFEST, DockerProvider

    provider = DockerProvider(image=docker_image)
    raw = docker.from_env()
    try:
        async with provider.sandbox(MANIFEST) as box:
            await assert_reaches_command_redacted(box)
            running = asyncio.ensure_future(box.exec('test -n "$TOKEN" && sleep 2'))
            await asyncio.sleep(1)
            state = raw.api.inspect_container(box.container_id)
            assert VALUE not in json.dumps(state)  # `docker inspect`: Config.Env, labels, args
            label = state["Config"]["Labels"][LABEL_MANIFEST]
            assert PLAIN not in label and "env:SB_LEAK_TOKEN" in label
            assert state["ExecIDs"], "no exec was running; the check below proved nothing"
            for exec_id in state["ExecIDs"]:
                assert VALUE not in json.dumps(raw.api.exec_inspect(exec_id))
            assert (await running).ok
            listed = {i.id: i for i in await provider.list()}[box.id]
            assert PLAIN not in json.dumps(listed.labels)

            again = await DockerProvider(image=docker_image).attach(box.id)
            assert again.manifest == box.manifest  # env values come back from Config.Env
            result = await again.exec('echo "$PLAIN $TOKEN"')
            assert result.stdout == f"{PLAIN} [secret TOKEN]\n".encode()
    finally:
        raw.close()
        await provider.aclose()
