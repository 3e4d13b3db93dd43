"""The Agents SDK adapter (oa-*): error mapping, install hints, and what the adapter adds.

Everything runs the real SDK: its unix_local client on this host, its docker client on the
real engine. Run this module under both pinned SDK versions (0.22.3 and 0.24.0).
"""

# ruff: noqa: ASYNC240  (host paths checked inline in async tests)

from __future__ import annotations

import asyncio
import importlib
import inspect
import io
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    NotSupported,
    PathNotFound,
    ProviderError,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SandboxNotFound,
    SnapshotError,
    WorkspacePathError,
)
from sandbank.providers.base import SandboxStatus
from sandbank.providers.openai_agents import (
    AGENTS_HINT,
    LABEL_ID,
    SDK_ERRORS,
    AgentsSdkProvider,
    DockerAgentsProvider,
    ModalAgentsProvider,
    UnixLocalAgentsProvider,
    map_sdk_error,
)

BUSYBOX = "sandbank-busybox:latest"
NET = {"network": True}
"""oa-unix_local cannot cut the network: sandboxes ask for it (main refuses the default)."""
KIND_TO_ERROR: dict[str, type[SandbankError]] = {
    "path": WorkspacePathError,
    "missing": PathNotFound,
    "config": ConfigurationError,
    "lost": SandboxLost,
    "timeout": ExecTimeout,
    "snapshot": SnapshotError,
    "provider": ProviderError,
}


def sdk_exception_classes() -> list[type[BaseException]]:
    """Every exception class defined anywhere in the SDK's ``agents.sandbox`` package."""
    import agents.sandbox

    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(agents.sandbox.__path__, "agents.sandbox."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__.startswith("agents.sandbox")
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def bare(cls: type[BaseException]) -> BaseException:
    """An instance without running the class's own constructor (each has its own arguments)."""
    exc = cls.__new__(cls)
    exc.args = ("boom",)
    for name, value in {"message": "boom", "context": {}, "retryable": None}.items():
        object.__setattr__(exc, name, value)
    return exc


# -- the error boundary -----------------------------------------------------------------------


def test_every_sdk_exception_is_mapped() -> None:
    """Each exception class of the SDK's sandbox package has an explicit sandbank mapping."""
    classes = sdk_exception_classes()
    assert len(classes) > 40, "the walk found too few SDK exception classes"
    unmapped = sorted(cls.__name__ for cls in classes if cls.__name__ not in SDK_ERRORS)
    assert not unmapped, f"add these SDK exceptions to SDK_ERRORS: {unmapped}"
    for cls in classes:
        mapped = map_sdk_error(bare(cls), backend="test", sandbox_id="oa-0123456789ab", path="p")
        expected = KIND_TO_ERROR[SDK_ERRORS[cls.__name__]]
        assert isinstance(mapped, expected), (cls.__name__, type(mapped).__name__)


def test_real_sdk_errors_map_precisely() -> None:
    """Errors built the way the SDK builds them keep their meaning, retryability and data."""
    from agents.sandbox import errors as e

    missing = map_sdk_error(
        e.WorkspaceReadNotFoundError(path=Path("/workspace/x")), backend="docker", path="x"
    )
    assert isinstance(missing, PathNotFound) and missing.path == "x"
    timeout = map_sdk_error(e.ExecTimeoutError(command=["sleep"], timeout_s=2.5), backend="b")
    assert isinstance(timeout, ExecTimeout) and timeout.timeout == 2.5
    escape = map_sdk_error(
        e.InvalidManifestPathError(rel="../x", reason="escape_root"), backend="b", path="../x"
    )
    assert isinstance(escape, WorkspacePathError) and escape.path == "../x"
    transport = map_sdk_error(e.ExecTransportError(command=["x"], retryable=True), backend="docker")
    assert isinstance(transport, ProviderError) and transport.retryable
    assert "docker" in str(transport)
    gone = map_sdk_error(
        e.WorkspaceRootNotFoundError(path=Path("/w")), backend="b", sandbox_id="oa-1"
    )
    assert isinstance(gone, SandboxLost) and gone.retryable
    assert isinstance(map_sdk_error(ValueError("bad"), backend="b"), ConfigurationError)
    own = PathNotFound("kept")
    assert map_sdk_error(own, backend="b") is own


def test_docker_sdk_errors_use_the_docker_mapping() -> None:
    """A docker SDK exception escaping the SDK's docker client gets sandbank's docker mapping."""
    import docker.errors

    error = docker.errors.ImageNotFound("No such image: nope:latest")
    mapped = map_sdk_error(error, backend="docker")
    assert isinstance(mapped, ConfigurationError) and "image" in str(mapped).lower()


# -- laziness and install hints ---------------------------------------------------------------


def test_import_is_lazy() -> None:
    """Importing the adapter imports neither the Agents SDK nor any cloud or docker SDK."""
    code = (
        "import sys, sandbank.providers.openai_agents as m; "
        "print([n for n in ('agents', 'docker', 'modal', 'e2b') if n in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_missing_cloud_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hosted client whose cloud SDK is missing says which openai-agents extra installs it."""
    monkeypatch.setitem(sys.modules, "modal", None)
    for name in [n for n in sys.modules if n.startswith("agents.extensions.sandbox.modal")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ProviderUnavailable) as caught:
        ModalAgentsProvider()
    assert "pip install 'openai-agents[modal]'" in str(caught.value)
    assert not caught.value.retryable


def test_missing_agents_sdk_names_sandbank_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the Agents SDK every oa-* provider points at sandbank's agents extra."""
    monkeypatch.setitem(sys.modules, "agents.sandbox", None)
    with pytest.raises(ProviderUnavailable) as caught:
        UnixLocalAgentsProvider()
    assert AGENTS_HINT in str(caught.value)


def test_generic_provider_needs_a_client() -> None:
    """AgentsSdkProvider without a client says what to pass."""
    with pytest.raises(ConfigurationError, match="client="):
        AgentsSdkProvider()


# -- the adapter on the SDK's unix_local client -----------------------------------------------


@pytest_asyncio.fixture
async def unix_local(tmp_path: Path) -> AsyncIterator[UnixLocalAgentsProvider]:
    provider = UnixLocalAgentsProvider(state_dir=tmp_path / "state")
    yield provider
    for info in await provider.list():
        await provider.destroy(info.id)
    await provider.aclose()


async def test_workspace_is_what_commands_see(unix_local: UnixLocalAgentsProvider) -> None:
    """SandboxInfo.workspace is the absolute root as commands see it (a host temp dir here)."""
    async with unix_local.sandbox(NET) as box:
        info = await box.info()
        pwd = (await box.exec("pwd -P")).stdout.decode().strip()
        assert info.workspace == pwd == box.host_path
        assert info.workspace != "/workspace" and Path(pwd).is_dir()


async def test_stdin_staging_leaves_nothing(unix_local: UnixLocalAgentsProvider) -> None:
    """Staged stdin is removed once the command opened it, also when the command is refused."""
    box = await unix_local.create(NET)
    stage = unix_local._stage_dir(box.id)
    assert (await box.exec(["cat"], stdin=b"one")).stdout == b"one"
    await box.exec("ln -s /etc outside")
    with pytest.raises(WorkspacePathError):
        await box.exec(["cat"], stdin=b"two", cwd="outside")
    assert os.listdir(stage) == []
    workspace = box.host_path
    await box.destroy()
    assert not Path(stage).exists(), "destroy left the staging directory on the host"
    assert workspace is not None and not Path(workspace).exists()


async def test_short_read_is_detected(
    unix_local: UnixLocalAgentsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that comes back shorter than the file (seen with the SDK's docker client under
    load) is read again, and if it stays short it is a retryable error, never silent."""
    async with unix_local.sandbox(NET) as box:
        await box.write_file("data.bin", b"0123456789" * 1000)
        real_read = box.session.read
        short_reads = [1]

        async def flaky_read(path: Path, **kwargs: Any) -> Any:
            stream = await real_read(path, **kwargs)
            if short_reads and short_reads.pop():
                return io.BytesIO(stream.read()[:-7])
            return stream

        monkeypatch.setattr(box.session, "read", flaky_read)
        assert await box.read_file("data.bin") == b"0123456789" * 1000
        short_reads.extend([1, 1])
        with pytest.raises(ProviderError, match="9993 of the 10000 bytes") as caught:
            await box.read_file("data.bin")
        assert caught.value.retryable


async def test_short_write_is_detected(
    unix_local: UnixLocalAgentsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that lands shorter than the data is a retryable error, never silent."""
    async with unix_local.sandbox(NET) as box:
        real_write = box.session.write

        async def short_write(path: Path, data: Any, **kwargs: Any) -> None:
            await real_write(path, io.BytesIO(data.read()[:-1]), **kwargs)

        monkeypatch.setattr(box.session, "write", short_write)
        with pytest.raises(ProviderError, match="wrote 4 of the 5 bytes") as caught:
            await box.write_file("f.txt", b"12345")
        assert caught.value.retryable


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process on this host."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_destroy_kills_background_processes(unix_local: UnixLocalAgentsProvider) -> None:
    """A command's background process (a plain host process under unix_local) dies with its
    sandbox; another sandbox's survives."""
    box, other = await unix_local.create(NET), await unix_local.create(NET)
    spawn = "sleep 300 </dev/null >/dev/null 2>&1 & echo $!"
    pid = int((await box.exec(spawn)).stdout)
    other_pid = int((await other.exec(spawn)).stdout)
    assert alive(pid) and alive(other_pid)
    await box.destroy()
    for _ in range(50):
        if not alive(pid):
            break
        await asyncio.sleep(0.1)
    assert not alive(pid), "a background process outlived its sandbox"
    assert alive(other_pid)
    await other.destroy()
    await asyncio.sleep(0.5)
    assert not alive(other_pid)


async def test_command_too_long(unix_local: UnixLocalAgentsProvider) -> None:
    """A command over the SDK's one-argument limit is refused clearly; the sandbox still works."""
    async with unix_local.sandbox(NET) as box:
        with pytest.raises(ConfigurationError, match="stdin or a file"):
            await box.exec(["echo", "x" * 200_000])
        assert (await box.exec(["echo", "ok"])).stdout == b"ok\n"


async def test_timeout_without_timeout_binary(unix_local: UnixLocalAgentsProvider) -> None:
    """Where `timeout` is not on PATH, the SDK's own timeout still ends the command."""
    async with unix_local.sandbox(NET) as box:
        started = time.monotonic()
        with pytest.raises(ExecTimeout) as caught:
            await box.exec(["/bin/sleep", "30"], env={"PATH": "/nonexistent"}, timeout=1)
        assert time.monotonic() - started < 20
        assert caught.value.timeout == 1
        assert (await box.exec(["echo", "usable"])).stdout == b"usable\n"


async def test_manifest_refusals(unix_local: UnixLocalAgentsProvider) -> None:
    """What the SDK cannot do is refused before anything is created."""
    with pytest.raises(NotSupported) as caught:
        await unix_local.create({**NET, "resources": {"memory": "256Mi"}})
    assert caught.value.capability == "resource_limits"
    with pytest.raises(NotSupported) as caught:
        await unix_local.create({**NET, "user": "1000"})
    assert caught.value.capability == "user"
    assert await unix_local.list() == []


async def test_lost_workspace(unix_local: UnixLocalAgentsProvider, tmp_path: Path) -> None:
    """A workspace removed behind sandbank's back is LOST, never silently recreated empty."""
    box = await unix_local.create(NET)
    await box.write_file("precious.txt", b"x")
    assert box.host_path is not None
    shutil.rmtree(box.host_path)
    fresh = UnixLocalAgentsProvider(state_dir=tmp_path / "state")
    with pytest.raises(SandboxLost):
        await fresh.attach(box.id)
    assert {i.id: i.status for i in await fresh.list()} == {box.id: SandboxStatus.LOST}
    assert not Path(box.host_path).exists()
    await fresh.destroy(box.id)
    assert not Path(unix_local._stage_dir(box.id)).exists(), "the staging directory was left"
    with pytest.raises(SandboxNotFound):
        await fresh.attach(box.id)


async def test_damaged_record(unix_local: UnixLocalAgentsProvider) -> None:
    """A damaged record is a clear ProviderError naming the file; list() skips it."""
    box = await unix_local.create(NET)
    record = unix_local.state_dir / f"{box.id}.json"
    text = record.read_text()
    record.write_text("{not json")
    fresh = UnixLocalAgentsProvider(state_dir=unix_local.state_dir)
    with pytest.raises(ProviderError, match=str(record)):
        await fresh.attach(box.id)
    assert await fresh.list() == []
    record.write_text(text)
    await box.destroy()


async def test_bad_ids(unix_local: UnixLocalAgentsProvider) -> None:
    """Ids that are not ours, including path tricks, are SandboxNotFound."""
    for bad in ["../../etc/passwd", "oa-", "lcl-0123456789ab", ""]:
        with pytest.raises(SandboxNotFound):
            await unix_local.attach(bad)


async def test_export_missing_path(unix_local: UnixLocalAgentsProvider) -> None:
    """export_tar of a path that does not exist raises PathNotFound."""
    async with unix_local.sandbox(NET) as box:
        with pytest.raises(PathNotFound):
            async for _ in box.export_tar(["nope"]):
                pass


async def test_import_not_a_tar(unix_local: UnixLocalAgentsProvider) -> None:
    """A stream that is not a tar is refused and leaves the workspace as it was."""
    async with unix_local.sandbox(NET) as box:
        await box.write_file("kept.txt", b"kept")
        with pytest.raises(ConfigurationError, match="tar"):
            await box.import_tar(b"this is not a tar archive" * 100)
        assert [e.path for e in await box.list_tree()] == ["kept.txt"]


async def test_import_refused_before_any_write(unix_local: UnixLocalAgentsProvider) -> None:
    """An archive with one escaping member writes none of its members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("good.txt", "../evil.txt"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    async with unix_local.sandbox(NET) as box:
        with pytest.raises(WorkspacePathError):
            await box.import_tar(buffer.getvalue())
        assert await box.list_tree() == []


async def test_links_out_of_the_workspace_round_trip(
    unix_local: UnixLocalAgentsProvider,
) -> None:
    """A workspace with links pointing out of it (a venv's python) exports and imports whole,
    though the SDK's own hydrate refuses such links; writing through them is still refused."""
    await links_round_trip(unix_local)


async def links_round_trip(provider: AgentsSdkProvider) -> None:
    source = await provider.create(NET)
    await source.write_file("venv/pyvenv.cfg", b"home = /usr/bin\n")
    await source.exec("mkdir -p venv/bin && ln -s /usr/bin/python3 venv/bin/python && ln -s .. up")
    archive = b"".join([chunk async for chunk in source.export_tar()])
    target = await provider.create(NET)
    await target.import_tar(archive)
    entries = {e.path: e for e in await target.list_tree()}
    assert entries["venv/bin/python"].link_target == "/usr/bin/python3"
    assert entries["up"].link_target == ".."
    assert await target.read_file("venv/pyvenv.cfg") == b"home = /usr/bin\n"
    with pytest.raises(WorkspacePathError):
        await target.write_file("up/escaped.txt", b"x")
    await target.mkdir("dir")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("dir")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    with pytest.raises(ConfigurationError, match="is a directory"):
        await target.import_tar(buffer.getvalue())
    assert entries.keys() <= {e.path for e in await target.list_tree()}


async def test_state_record_holds_no_env(unix_local: UnixLocalAgentsProvider) -> None:
    """Environment values stay in sandbank's manifest; the SDK's state carries none of them."""
    box = await unix_local.create({**NET, "env": {"TOKEN": "s3cret-value"}})
    record = json.loads((unix_local.state_dir / f"{box.id}.json").read_text())
    assert "s3cret-value" not in json.dumps(record["state"])
    assert oct((unix_local.state_dir / f"{box.id}.json").stat().st_mode & 0o777) == "0o600"
    await box.destroy()


# -- the adapter on the SDK's docker client ---------------------------------------------------


@pytest_asyncio.fixture
async def oa_docker(tmp_path: Path, docker_image: str) -> AsyncIterator[DockerAgentsProvider]:
    provider = DockerAgentsProvider(image=docker_image, state_dir=tmp_path / "state")
    yield provider
    for info in await provider.list():
        await provider.destroy(info.id)
    await provider.aclose()


def container_of(box: Any) -> Any:
    return box.session._inner._container


@pytest.mark.docker
async def test_docker_vanished_container(oa_docker: DockerAgentsProvider, tmp_path: Path) -> None:
    """A container removed behind sandbank's back is LOST; the SDK does not get to replace it."""
    import docker

    box = await oa_docker.create()
    container = container_of(box)
    assert container.labels[LABEL_ID] == box.id
    await asyncio.to_thread(container.remove, force=True)
    fresh = DockerAgentsProvider(image=oa_docker.image, state_dir=tmp_path / "state")
    with pytest.raises(SandboxLost):
        await fresh.attach(box.id)
    engine = docker.from_env()
    ours = engine.containers.list(all=True, filters={"label": f"{LABEL_ID}={box.id}"})
    assert ours == [], "a replacement container was created"
    await fresh.destroy(box.id)
    engine.close()


@pytest.mark.docker
async def test_docker_links_out_of_the_workspace_round_trip(
    oa_docker: DockerAgentsProvider,
) -> None:
    """The same on the SDK's docker client, whose hydrate refuses such links too."""
    await links_round_trip(oa_docker)


@pytest.mark.docker
async def test_docker_destroy_is_prompt(oa_docker: DockerAgentsProvider) -> None:
    """destroy removes the container without waiting for the SDK's 10 s stop timeout."""
    import docker

    box = await oa_docker.create()
    container_id = container_of(box).id
    started = time.monotonic()
    await box.destroy()
    assert time.monotonic() - started < 8
    engine = docker.from_env()
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(container_id)
    engine.close()


@pytest.mark.docker
async def test_docker_network_and_workspace(oa_docker: DockerAgentsProvider) -> None:
    """network=False maps to the SDK's network_mode='none'; the workspace is /workspace."""
    async with oa_docker.sandbox({"network": False}) as box:
        assert container_of(box).attrs["HostConfig"]["NetworkMode"] == "none"
        assert (await box.info()).workspace == "/workspace"
        assert (await box.exec("pwd")).stdout == b"/workspace\n"


@pytest.mark.docker
async def test_docker_missing_image(oa_docker: DockerAgentsProvider) -> None:
    """An image neither on the engine nor pullable is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="sandbank-no-such-image:v1"):
        await oa_docker.create({"image": "sandbank-no-such-image:v1"})
    assert await oa_docker.list() == []


@pytest.mark.docker
async def test_docker_image_without_tail(oa_docker: DockerAgentsProvider) -> None:
    """An image lacking the SDK's entry point (busybox here) is a ConfigurationError saying so;
    no container is left behind."""
    import docker

    engine = docker.from_env()
    with pytest.raises(ConfigurationError, match="lacks a program"):
        await oa_docker.create({"image": BUSYBOX})
    ours = engine.containers.list(all=True, filters={"label": LABEL_ID, "ancestor": BUSYBOX})
    engine.close()
    assert ours == []
    assert await oa_docker.list() == []


# -- a hosted client, as far as it goes here --------------------------------------------------


async def test_hosted_client_errors_are_clear(tmp_path: Path) -> None:
    """The SDK's cloudflare client: missing options and an unreachable worker are clear
    ConfigurationErrors, and no sandbox is recorded."""
    from sandbank.providers.openai_agents import CloudflareAgentsProvider

    provider = CloudflareAgentsProvider(state_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="worker_url"):
        await provider.create(NET)
    unreachable = CloudflareAgentsProvider(
        state_dir=tmp_path, options={"worker_url": "http://127.0.0.1:9"}
    )
    with pytest.raises(ConfigurationError, match=r"127\.0\.0\.1:9"):
        await unreachable.create(NET)
    assert await unreachable.list() == []


async def test_any_client_instance(tmp_path: Path) -> None:
    """AgentsSdkProvider wraps a client object it is given, here a real unix_local client."""
    from agents.sandbox.sandboxes.unix_local import UnixLocalSandboxClient

    client = UnixLocalSandboxClient(inherit_host_environment=False)
    provider = AgentsSdkProvider(client=client, state_dir=tmp_path)
    assert (provider.name, provider.backend_id) == ("oa", "unix_local")
    async with provider.sandbox(NET) as box:
        await box.write_file("hello.txt", b"hi\n")
        result = await box.exec(["cat", "hello.txt"], env={"X": "1"})
        assert (result.exit_code, result.stdout) == (0, b"hi\n")
        assert [info.id for info in await provider.list()] == [box.id]
    assert await provider.list() == []
