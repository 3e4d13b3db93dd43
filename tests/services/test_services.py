"""The real service fixtures work with their real clients (s3fs, gcsfs, adlfs, temporalio)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from sandbank.testing.fixtures import *  # noqa: F403
from sandbank.testing.services import (
    GCSFS_ZB_HNS_ENV,
    AzureService,
    GCSService,
    S3Service,
    TemporalService,
    free_ports,
    port_free,
    start_temporal,
)


def _roundtrip(fs: Any, root: str) -> None:
    """Write, read, list and delete objects under ``root`` (``bucket/prefix``)."""
    prefix = f"{root}/{uuid.uuid4().hex}"
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several MiB: multi-part / resumable paths
    fs.pipe(f"{prefix}/a.bin", payload)
    fs.pipe(f"{prefix}/dir/b.txt", b"hello")
    assert fs.cat(f"{prefix}/a.bin") == payload
    with fs.open(f"{prefix}/dir/b.txt", "rb") as f:
        assert f.read() == b"hello"
    assert sorted(fs.find(prefix)) == [f"{prefix}/a.bin", f"{prefix}/dir/b.txt"]
    assert fs.ls(f"{prefix}/dir", detail=False, refresh=True) == [f"{prefix}/dir/b.txt"]
    assert fs.info(f"{prefix}/a.bin")["size"] == len(payload)
    fs.rm(f"{prefix}/a.bin")
    fs.invalidate_cache()
    assert not fs.exists(f"{prefix}/a.bin")
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{prefix}/a.bin")
    fs.rm(prefix, recursive=True)
    fs.invalidate_cache()
    # SeaweedFS keeps the emptied "directory": HEAD "prefix/" answers 200 (x-directory) and
    # the parent's listing still shows it (AWS would forget it), so only files are checked.
    left = fs.find(prefix, detail=True)
    assert [path for path, info in left.items() if info["type"] == "file"] == []


def _missing_bucket(fs: Any) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(FileNotFoundError):
        fs.ls(bucket)
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{bucket}/key")
    assert not fs.exists(f"{bucket}/key")


# --------------------------------------------------------------------------- S3


def _s3fs(options: dict[str, Any]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **options)


def test_s3_roundtrip(s3_service: S3Service) -> None:
    fs = _s3fs(s3_service.storage_options())
    assert s3_service.bucket in {b.rstrip("/") for b in fs.ls("", refresh=True)}
    _roundtrip(fs, s3_service.bucket)


def test_s3_through_fsspec_url(s3_service: S3Service) -> None:
    import fsspec

    url = s3_service.url(f"via-url/{uuid.uuid4().hex}.txt")
    with fsspec.open(url, "wb", **s3_service.storage_options()) as f:
        f.write(b"x")
    with fsspec.open(url, "rb", **s3_service.storage_options()) as f:
        assert f.read() == b"x"


def test_s3_wrong_key_is_permission_error(s3_service: S3Service) -> None:
    good = _s3fs(s3_service.storage_options())
    good.pipe(f"{s3_service.bucket}/secret.txt", b"s")
    for options in (
        s3_service.storage_options(secret="wrong-secret"),
        s3_service.storage_options(key="unknown-key"),
    ):
        bad = _s3fs(options)
        with pytest.raises(PermissionError):
            bad.ls(s3_service.bucket)
        with pytest.raises(PermissionError):
            bad.cat(f"{s3_service.bucket}/secret.txt")
        with pytest.raises(PermissionError):
            bad.pipe(f"{s3_service.bucket}/intruder.txt", b"x")
    anonymous = _s3fs({"anon": True, "client_kwargs": {"endpoint_url": s3_service.endpoint_url}})
    with pytest.raises(PermissionError):
        anonymous.ls(s3_service.bucket)
    assert not good.exists(f"{s3_service.bucket}/intruder.txt")


def test_s3_missing_bucket(s3_service: S3Service) -> None:
    fs = _s3fs(s3_service.storage_options())
    _missing_bucket(fs)
    # Like AWS (the server runs with -s3.autoCreateBucket=false): no bucket appears on PUT.
    with pytest.raises((FileNotFoundError, OSError)):
        fs.pipe(f"missing-{uuid.uuid4().hex[:12]}/key", b"x")


# --------------------------------------------------------------------------- GCS


def test_gcs_roundtrip(gcs_service: GCSService) -> None:
    assert os.environ[GCSFS_ZB_HNS_ENV] == "false"
    import gcsfs

    fs = gcsfs.GCSFileSystem(skip_instance_cache=True, **gcs_service.storage_options())
    started = time.monotonic()
    _roundtrip(fs, gcs_service.bucket)
    _missing_bucket(fs)
    # With the gRPC bucket-type probe enabled each call would hang for about a minute.
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- Azure


def test_azure_roundtrip(azure_service: AzureService) -> None:
    import adlfs

    fs = adlfs.AzureBlobFileSystem(skip_instance_cache=True, **azure_service.storage_options())
    assert azure_service.container in {c.rstrip("/") for c in fs.ls("", refresh=True)}
    _roundtrip(fs, azure_service.container)
    _missing_bucket(fs)


# --------------------------------------------------------------------------- Temporal


@activity.defn
async def shout(text: str) -> str:
    return text.upper() + "!"


@workflow.defn
class ShoutWorkflow:
    """One activity, or (``wait``) a signal first, so a server restart can happen mid-run."""

    def __init__(self) -> None:
        self._released = False

    @workflow.run
    async def run(self, text: str, wait: bool) -> str:
        if wait:
            await workflow.wait_condition(lambda: self._released)
        return await workflow.execute_activity(
            shout, text, start_to_close_timeout=timedelta(seconds=30)
        )

    @workflow.signal
    def release(self) -> None:
        self._released = True


async def test_temporal_workflow_with_activity(temporal_service: TemporalService) -> None:
    client = await temporal_service.connect()
    queue = f"q-{uuid.uuid4().hex}"
    async with Worker(client, task_queue=queue, workflows=[ShoutWorkflow], activities=[shout]):
        result = await client.execute_workflow(
            ShoutWorkflow.run,
            args=["hello", False],
            id=f"wf-{uuid.uuid4().hex}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=60),
        )
    assert result == "HELLO!"


async def test_temporal_restart_keeps_workflows(
    tmp_path: Path, temporal_service: TemporalService
) -> None:
    """A private server: stop it mid-workflow, start it on the same port and DB, finish.

    (``temporal_service`` only makes sure the binary is there: skip here, fail in CI.)
    """
    service = start_temporal(tmp_path)
    try:
        client = await Client.connect(service.address, namespace=service.namespace)
        queue = f"q-{uuid.uuid4().hex}"
        wf_id = f"wf-{uuid.uuid4().hex}"
        handle = await client.start_workflow(
            ShoutWorkflow.run, args=["durable", True], id=wf_id, task_queue=queue
        )
        port = service.port
        service.stop()  # graceful
        assert not service.running
        service.start()
        assert service.port == port and service.running
        service.kill()  # a crash
        assert not service.running
        service.start()
        client = await Client.connect(service.address, namespace=service.namespace)
        async with Worker(client, task_queue=queue, workflows=[ShoutWorkflow], activities=[shout]):
            handle = client.get_workflow_handle(wf_id)
            await handle.signal(ShoutWorkflow.release)
            assert await handle.result() == "DURABLE!"
    finally:
        service.stop()
    assert service.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(service.pid, 0)


def test_free_ports_are_distinct() -> None:
    ports = free_ports(16)
    assert len(set(ports)) == 16


# --------------------------------------------------------------------------- cleanup


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name
)
def test_services_die_with_their_launcher(
    sig: signal.Signals, tmp_path: Path, temporal_service: TemporalService, gcs_service: GCSService
) -> None:
    """``python -m sandbank.testing.services up`` stopped by any signal, SIGKILL included,
    leaves no server running and frees its ports.

    (The fixtures only make sure the binaries are there: skip here, fail in CI.)"""
    # Imported here: the workflow sandbox re-imports this module, and it may not resolve paths.
    from tests.processes import REPO, alive, assert_gone, kill_leftovers, wait_for

    out, err = tmp_path / "up.json", tmp_path / "up.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "sandbank.testing.services", "up", "temporal", "gcs",
            "--dir", str(tmp_path / "services")]  # fmt: skip
    pids: list[int] = []
    try:
        with out.open("wb") as stdout, err.open("wb") as stderr:
            up = subprocess.Popen(argv, cwd=REPO, env=env, stdout=stdout, stderr=stderr)
        try:
            wait_for(err, "running; press Ctrl-C", up, 90)
            info = json.loads(out.read_text())
            pids = [info["temporal"]["pid"], info["gcs"]["pid"]]
            gcs = info["gcs"]["storage_options"]["endpoint_url"]
            ports = [int(url.rsplit(":", 1)[1]) for url in (info["temporal"]["address"], gcs)]
            assert all(alive(pid) for pid in pids) and not any(port_free(p) for p in ports)
            up.send_signal(sig)
            code = up.wait(60)
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
        assert_gone(pids, ports)
    finally:
        kill_leftovers(pids)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), err.read_text()
