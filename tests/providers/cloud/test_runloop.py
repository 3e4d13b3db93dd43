"""The runloop provider's own mapping onto the SDK, against the Runloop emulator (a fake of
the service): the create request a manifest becomes, suspend/resume as stop, attach."""

from __future__ import annotations

from typing import Any

import pytest

from sandbank.errors import NotSupported
from sandbank.providers.base import SandboxStatus

pytest.importorskip("runloop_api_client")

from sandbank.providers.runloop import RunloopProvider


def test_manifest_to_create_parameters() -> None:
    provider = RunloopProvider(api_key="k", blueprint="my-default", keep_alive_seconds=300)
    params = provider._params(
        provider.validate_manifest(
            {"env": {"A": "1"}, "workdir": "src", "resources": {"cpu": 2, "memory": 3 * 2**30}}
        )
    )
    assert params["blueprint_name"] == "my-default"
    assert params["environment_variables"] == {"A": "1"}
    assert params["metadata"]["sandbank"] == "1"
    assert params["metadata"]["sandbank.workdir"] == "src"
    assert params["launch_parameters"] == {
        "custom_cpu_cores": 2,
        "custom_gb_memory": 3,
        "keep_alive_time_seconds": 300,
    }
    hints = {
        "snapshot:snp_1": ("snapshot_id", "snp_1"),
        "blueprint:bpt_1": ("blueprint_id", "bpt_1"),
        "python-dev": ("blueprint_name", "python-dev"),
    }
    for hint, (key, value) in hints.items():
        chosen = provider._params(
            provider.validate_manifest({"image": {"hints": {"runloop": hint}}})
        )
        assert chosen[key] == value, hint
        assert chosen["metadata"]["sandbank.image"] == hint


def test_pids_limit_is_refused_before_any_call() -> None:
    provider = RunloopProvider(api_key="k")
    with pytest.raises(NotSupported, match=r"resources\.pids"):
        provider._params(provider.validate_manifest({"resources": {"pids": 10}}))


async def test_suspend_is_stop_and_resume_keeps_files(
    runloop_provider: RunloopProvider, runloop_emulator: Any, bwrap: str
) -> None:
    box = await runloop_provider.create({"network": True, "workdir": "w"})
    try:
        await box.write_file("kept.bin", b"\0\1\2")
        await box.stop()
        assert await box.status() == SandboxStatus.STOPPED
        assert ("POST", f"/v1/devboxes/{box.id}/suspend") in runloop_emulator.requests
        await box.resume()
        assert await box.status() == SandboxStatus.RUNNING
        assert await box.read_file("kept.bin") == b"\0\1\2"
        again = await RunloopProvider().attach(box.id)
        assert again.manifest.workdir == "w" and again.manifest.network
        assert (await again.exec(["pwd"])).stdout.decode().strip().endswith("/workspace/w")
        await again.provider.aclose()
    finally:
        await box.destroy()
    assert box.id not in [info.id for info in await runloop_provider.list()]


async def test_disk_snapshot_makes_new_devboxes(
    runloop_provider: RunloopProvider, bwrap: str
) -> None:
    box = await runloop_provider.create({"network": True})
    try:
        await box.write_file("src/run.sh", b"#!/bin/sh\necho run\n", mode=0o755)
        hint = await box.snapshot(name="before")
        await box.write_file("src/run.sh", b"changed after the snapshot")
    finally:
        await box.destroy()
    copy = await runloop_provider.create({"network": True, "image": {"hints": {"runloop": hint}}})
    try:
        assert (await copy.exec(["./src/run.sh"])).stdout == b"run\n"
        assert (await copy.info()).image == hint
    finally:
        await copy.destroy()
