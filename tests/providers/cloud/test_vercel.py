"""The vercel provider's own behaviour against the Vercel emulator (a fake of the service):
stop keeps the files and resume starts a new session; attach and list see only sandbank's
sandboxes; the manifest's network choice reaches the service as a network policy."""

from __future__ import annotations

from typing import Any

import pytest

from sandbank.errors import ConfigurationError, NotSupported
from sandbank.providers.base import SandboxStatus

sdk = pytest.importorskip("vercel.sandbox")


async def test_stop_keeps_files_and_resume_runs_again(
    vercel_provider: Any, vercel_emulator: Any
) -> None:
    box = await vercel_provider.create()
    try:
        await box.write_file("kept.bin", b"\x00\xffkept")
        first_session = box.remote.current_session_id
        await box.stop()
        assert await box.status() == SandboxStatus.STOPPED
        await box.resume()
        assert await box.status() == SandboxStatus.RUNNING
        assert box.remote.current_session_id != first_session
        assert await box.read_file("kept.bin") == b"\x00\xffkept"
        with pytest.raises(NotSupported):
            await box.pause()
    finally:
        await vercel_provider.destroy(box.id)


async def test_attach_and_list(vercel_provider: Any, vercel_emulator: Any) -> None:
    box = await vercel_provider.create({"workdir": "proj", "network": True})
    try:
        again = await vercel_provider.attach(box.id)
        assert again.manifest.workdir == "proj"
        assert again.manifest.network is True
        assert (await again.exec(["pwd"])).stdout.decode().strip().endswith("/proj")
        assert box.id in [info.id for info in await vercel_provider.list()]
    finally:
        await vercel_provider.destroy(box.id)
    assert box.id not in [info.id for info in await vercel_provider.list()]


async def test_network_policy_sent(vercel_provider: Any, vercel_emulator: Any) -> None:
    box = await vercel_provider.create()
    try:
        assert box.remote.network_policy.mode == "deny-all"
    finally:
        await vercel_provider.destroy(box.id)


async def test_native_snapshot_creates_a_copy(vercel_provider: Any, vercel_emulator: Any) -> None:
    box = await vercel_provider.create()
    copy = None
    try:
        await box.write_file("data/x.bin", b"\x01\x02snap", mode=0o600)
        snapshot = await box.snapshot()
        assert snapshot.startswith("snapshot:")
        assert await box.status() == SandboxStatus.STOPPED  # taking it stopped the sandbox
        copy = await vercel_provider.create({"image": {"hints": {"vercel": snapshot}}})
        assert await copy.read_file("data/x.bin") == b"\x01\x02snap"
        entry = next(e for e in await copy.list_tree("data") if e.path == "data/x.bin")
        assert entry.mode & 0o777 == 0o600
        await box.resume()
        assert (await box.exec(["cat", "data/x.bin"])).stdout == b"\x01\x02snap"
    finally:
        await vercel_provider.destroy(box.id)
        if copy is not None:
            await vercel_provider.destroy(copy.id)


async def test_unknown_snapshot_is_a_clear_error(
    vercel_provider: Any, vercel_emulator: Any
) -> None:
    with pytest.raises(ConfigurationError, match="snap_nope"):
        await vercel_provider.create({"image": {"hints": {"vercel": "snapshot:snap_nope"}}})


async def test_wrapper_leaves_no_temporary_files(
    vercel_provider: Any, vercel_emulator: Any
) -> None:
    box = await vercel_provider.create()
    try:
        await box.exec(["touch", "/tmp/probe"])
        assert (await box.exec(["ls", "/tmp/probe"])).exit_code == 0  # /tmp outlives a command
        await box.write_file("a.txt", b"a")
        archive = b"".join([chunk async for chunk in box.export_tar()])
        await box.import_tar(archive)
        left = await box.exec(["sh", "-c", "ls -a /tmp | grep sandbank || true"])
        # Only this very command's own output files are there while it runs.
        tokens = {name.split(".")[1] for name in left.stdout.decode().split()}
        assert len(tokens) == 1, left.stdout
    finally:
        await vercel_provider.destroy(box.id)


async def test_exec_on_a_stopped_sandbox_resumes_it(
    vercel_provider: Any, vercel_emulator: Any
) -> None:
    """Vercel's persistent sandboxes resume on use: the SDK sees the stopped session's 410
    and resumes the sandbox (a new session), so a command after stop() simply runs."""
    box = await vercel_provider.create()
    try:
        await box.write_file("k.txt", b"kept")
        await box.stop()
        assert (await box.exec(["cat", "k.txt"])).stdout == b"kept"
        assert await box.status() == SandboxStatus.RUNNING
    finally:
        await vercel_provider.destroy(box.id)


def test_a_stopped_session_error_says_resume() -> None:
    import httpx2

    from sandbank.providers.vercel import map_vercel_error

    request = httpx2.Request("POST", "http://127.0.0.1/v2/sandboxes/sessions/s/cmd")
    response = httpx2.Response(410, request=request)
    error = map_vercel_error(sdk.SandboxApiError(response, "gone"), "sbx", open_handle=True)
    assert error.retryable and "resume()" in str(error)
