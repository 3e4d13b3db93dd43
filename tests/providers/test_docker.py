"""The docker provider against a real engine (DOCKER_HOST) and the locally built test image."""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import tarfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any

import docker
import docker.errors
import pytest
import requests

from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    PathNotFound,
    ProviderError,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SandboxNotFound,
    WorkspacePathError,
)
from sandbank.providers.base import SandboxStatus
from sandbank.providers.docker import (
    DockerProvider,
    DockerSandbox,
    map_docker_error,
)
from sandbank.providers.registry import get_provider

pytestmark = pytest.mark.docker

BUSYBOX = "sandbank-busybox:latest"
MiB = 1024 * 1024

Make = Callable[..., Awaitable[DockerSandbox]]


@pytest.fixture
def raw() -> docker.DockerClient:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
async def provider(docker_image: str) -> AsyncIterator[DockerProvider]:
    p = DockerProvider(image=docker_image, labels={"sandbank-test.run": uuid.uuid4().hex})
    yield p
    for info in await p.list():  # whatever a test left behind
        with suppress(SandbankError):
            await p.destroy(info.id)
    await p.aclose()


@pytest.fixture
def make(provider: DockerProvider) -> Make:
    async def create(manifest: dict[str, Any] | None = None) -> DockerSandbox:
        return await provider.create(manifest)

    return create


@pytest.fixture
async def box(make: Make) -> DockerSandbox:
    return await make()


async def sh(box: DockerSandbox, script: str) -> str:
    result = await box.exec(script)
    assert result.ok, result
    return result.text


# -- lifecycle ------------------------------------------------------------------------------


def test_registered_and_declared(docker_image: str) -> None:
    p = get_provider("docker", image=docker_image)
    assert isinstance(p, DockerProvider)
    assert p.capabilities.names() == [
        "pause",
        "stop",
        "ports",
        "network_policy",
        "resource_limits",
        "image",
        "user",
        "durable_exec",
    ]
    assert p.isolation == "docker container (namespaces, cgroups)"
    with pytest.raises(ConfigurationError):
        DockerProvider(labels={"sandbank.id": "x"})


async def test_create_exec_destroy(provider: DockerProvider, raw: docker.DockerClient) -> None:
    box = await provider.create({"env": {"GREETING": "hi"}})
    container = raw.containers.get(box.container_id)
    assert container.labels["sandbank.sandbox"] == "1"
    assert container.labels["sandbank.id"] == box.id
    result = await box.exec(["sh", "-c", 'echo "$GREETING $PWD"; echo oops >&2; exit 3'])
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"hi /workspace\n", b"oops\n")
    assert (await box.status()) is SandboxStatus.RUNNING
    info = await box.info()
    assert (info.id, info.status, info.workspace) == (box.id, SandboxStatus.RUNNING, "/workspace")
    await box.destroy()
    with pytest.raises(docker.errors.NotFound):  # force-removed, not stopped
        raw.containers.get(box.container_id)
    await box.destroy()  # idempotent on the handle
    with pytest.raises(SandboxNotFound):
        await provider.destroy(box.id)


async def test_exec_stdin_env_cwd_and_exit_codes(box: DockerSandbox) -> None:
    result = await box.exec("wc -c; cat", stdin=b"x" * 300_000)
    assert result.stdout.startswith(b"300000\n")
    assert (await box.exec("cat", stdin=b"")).stdout == b""
    assert (await box.exec(["sh", "-c", "echo $A$B"], env={"A": "1", "B": "2"})).text == "12\n"
    await box.mkdir("sub/dir")
    assert (await box.exec("pwd", cwd="sub/dir")).text == "/workspace/sub/dir\n"
    with pytest.raises(PathNotFound):
        await box.exec("pwd", cwd="nowhere")
    missing = await box.exec(["no-such-program", "arg"])
    assert missing.exit_code == 127
    assert b"no-such-program" in missing.stderr and missing.stdout == b""
    assert (await box.exec("exit 42")).exit_code == 42
    assert (await box.exec(["false"])).exit_code == 1


async def test_exec_streams_64_mib(box: DockerSandbox) -> None:
    chunks: list[int] = []

    def on_output(stream: str, data: bytes) -> None:
        assert stream == "stdout"
        chunks.append(len(data))

    result = await box.exec("head -c 67108864 /dev/zero", on_output=on_output)
    assert result.ok
    assert sum(chunks) == 64 * MiB and len(chunks) > 8  # streamed in pieces, not buffered
    assert result.truncated and len(result.stdout) == box.output_limit


async def test_concurrent_execs(box: DockerSandbox) -> None:
    await sh(box, "mkfifo pipe")
    # The reader blocks until the writer runs: both execs must be in flight at once.
    reader = asyncio.ensure_future(box.exec("cat pipe", timeout=30))
    await asyncio.sleep(0.2)
    writer = await box.exec("echo through > pipe", timeout=30)
    assert writer.ok and (await reader).text == "through\n"
    results = await asyncio.gather(*(box.exec(["echo", str(i)]) for i in range(8)))
    assert [r.text for r in results] == [f"{i}\n" for i in range(8)]


async def test_timeout_keeps_output_and_kills_the_tree(box: DockerSandbox) -> None:
    with pytest.raises(ExecTimeout) as caught:
        await box.exec("echo started; sleep 301 & sleep 302; echo never", timeout=1)
    assert caught.value.result.stdout == b"started\n"
    assert caught.value.timeout == 1
    left = await box.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert b"sleep 301" not in left.stdout and b"sleep 302" not in left.stdout
    assert (await box.exec(["echo", "alive"])).text == "alive\n"  # the sandbox still works


async def test_cancelled_exec_is_killed(box: DockerSandbox) -> None:
    task = asyncio.ensure_future(box.exec("sleep 303; echo never"))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):  # the kill runs in the background after the cancellation
        left = await box.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        if b"sleep 303" not in left.stdout:
            break
        await asyncio.sleep(0.1)
    assert b"sleep 303" not in left.stdout


async def test_limits_and_user(make: Make, raw: docker.DockerClient) -> None:
    box = await make({"resources": {"cpu": 0.5, "memory": "64Mi", "pids": 50}, "user": "1000"})
    host = raw.api.inspect_container(box.container_id)["HostConfig"]
    assert (host["NanoCpus"], host["Memory"], host["PidsLimit"]) == (500_000_000, 64 * MiB, 50)
    cgroup = "/sys/fs/cgroup"  # v2 file names first, then v1
    memory = await sh(
        box, f"cat {cgroup}/memory.max 2>/dev/null || cat {cgroup}/memory/memory.limit_in_bytes"
    )
    pids = await sh(
        box, "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
    )
    assert (int(memory), int(pids)) == (64 * MiB, 50)
    assert await sh(box, "id -u; stat -c %u /workspace") == "1000\n1000\n"
    await box.write_file("notes/a.txt", "one\n")
    await sh(box, "echo two >> notes/a.txt; touch notes/b.txt")  # the user owns what we wrote
    assert await box.read_file("notes/a.txt") == b"one\ntwo\n"
    await box.import_tar(_tar([("t/x.txt", b"x")]))
    assert await sh(box, "stat -c %u notes notes/a.txt t t/x.txt") == "1000\n" * 4


async def test_network_off_by_default(make: Make) -> None:
    off, on = await make(), await make({"network": True})
    script = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
    assert (await sh(off, script)).split() == ["lo"]
    assert "eth0" in (await sh(on, script)).split()


async def test_workdir_is_created(make: Make) -> None:
    box = await make({"workdir": "src/app"})
    assert (await box.exec("pwd")).text == "/workspace/src/app\n"


async def test_attach_from_a_fresh_provider_and_list(
    provider: DockerProvider, box: DockerSandbox, docker_image: str
) -> None:
    await box.write_file("kept.txt", "state")
    other = DockerProvider(image=docker_image, labels=provider.labels)
    try:
        again = await other.attach(box.id)
        assert again.id == box.id and again.container_id == box.container_id
        assert await again.read_file("kept.txt") == b"state"
        listed = {i.id: i for i in await other.list()}
        assert listed[box.id].status is SandboxStatus.RUNNING
        assert listed[box.id].image == docker_image and listed[box.id].created_at
        await again.aclose()
        await other.destroy(box.id)  # an instance that did not create it can destroy it
        assert box.id not in {i.id for i in await provider.list()}
        with pytest.raises(SandboxNotFound):
            await other.attach(box.id)
    finally:
        await other.aclose()


async def test_attach_refuses_foreign_containers(
    provider: DockerProvider, raw: docker.DockerClient
) -> None:
    with pytest.raises(SandboxNotFound):
        await provider.attach("sandbank-does-not-exist")
    foreign = raw.containers.create(BUSYBOX, ["sleep", "5"])
    try:
        with pytest.raises(SandboxNotFound):
            await provider.attach(foreign.id)
        with pytest.raises(SandboxNotFound):
            await provider.destroy(foreign.id)
        foreign.reload()  # still there
    finally:
        foreign.remove(force=True)


async def test_pause_resume_status(box: DockerSandbox) -> None:
    await box.pause()
    assert await box.status() is SandboxStatus.PAUSED
    with pytest.raises(ProviderError, match="resume"):
        await box.exec("true")
    await box.resume()
    assert await box.status() is SandboxStatus.RUNNING
    assert (await box.exec(["echo", "back"])).text == "back\n"
    await box.pause()
    await box.destroy()  # a paused sandbox is removed too


async def test_prune_removes_only_old_enough(
    provider: DockerProvider, make: Make, raw: docker.DockerClient
) -> None:
    first, second = await make(), await make()
    assert await provider.prune(older_than=3600) == []
    assert sorted(await provider.prune()) == sorted([first.id, second.id])
    assert await provider.list() == []
    with pytest.raises(docker.errors.NotFound):
        raw.containers.get(first.container_id)


async def test_container_killed_or_removed_externally_is_lost(
    make: Make, raw: docker.DockerClient
) -> None:
    killed, removed = await make(), await make()
    raw.containers.get(killed.container_id).kill()
    with pytest.raises(SandboxLost) as caught:
        await killed.exec("true")
    assert caught.value.retryable
    assert await killed.status() is SandboxStatus.STOPPED
    raw.containers.get(removed.container_id).remove(force=True)
    with pytest.raises(SandboxLost):
        await removed.exec("true")
    with pytest.raises(SandboxLost):
        await removed.read_file("x")
    with pytest.raises(SandboxLost):
        await removed.write_file("x", "y")
    assert await removed.status() is SandboxStatus.LOST


async def test_missing_image_is_a_clear_error(provider: DockerProvider) -> None:
    before = await provider.list()
    with pytest.raises(ConfigurationError, match="build it or pull it") as caught:
        await provider.create({"image": "sandbank-missing-image:nope"})
    assert not caught.value.retryable
    assert await provider.list() == before


async def test_engine_unreachable() -> None:
    p = DockerProvider(base_url="unix:///nonexistent.sock")
    with pytest.raises(ProviderUnavailable, match="DOCKER_HOST") as caught:
        await p.check()
    assert caught.value.retryable
    with pytest.raises(ProviderUnavailable):
        await p.create()


async def test_busybox_image(provider: DockerProvider) -> None:
    box = await provider.create({"image": {"hints": {"docker": BUSYBOX}}})
    assert (await box.exec(["echo", "tiny"])).text == "tiny\n"
    await box.write_file("d/f.txt", "x", mode=0o700)
    assert await box.read_file("d/f.txt") == b"x"
    entries = await box.list_tree()  # no find -printf, no Python: read from tar headers
    assert [(e.path, e.type, e.mode) for e in entries] == [
        ("d", "dir", 0o755),
        ("d/f.txt", "file", 0o700),
    ]
    with pytest.raises(ExecTimeout):
        await box.exec("sleep 30", timeout=0.5)


# -- files ----------------------------------------------------------------------------------


async def test_files_basics(box: DockerSandbox) -> None:
    data = bytes(range(256)) * 10
    await box.write_file("/workspace/a/b/c.bin", data)
    assert await box.read_file("a/b/c.bin") == data
    await box.write_file("run.sh", "#!/bin/sh\necho ran\n", mode=0o755)
    assert (await box.exec(["./run.sh"])).text == "ran\n"
    await box.write_file("run.sh", "#!/bin/sh\necho again\n")  # keeps the mode
    assert (await box.exec(["./run.sh"])).text == "again\n"
    await box.write_file("empty", b"")
    assert await box.read_file("empty") == b""
    with pytest.raises(PathNotFound):
        await box.read_file("nope/none.txt")
    with pytest.raises(PathNotFound):
        await box.read_file("none.txt")
    with pytest.raises(ConfigurationError, match="directory"):
        await box.read_file("a/b")
    with pytest.raises(ConfigurationError, match="directory"):
        await box.write_file("a", "x")
    with pytest.raises(ConfigurationError):
        await box.write_file("run.sh/inside", "x")
    await box.mkdir("a/b")  # exists: fine
    await box.mkdir("e/f/g")
    with pytest.raises(ConfigurationError):
        await box.mkdir("run.sh")
    await box.remove("a")
    with pytest.raises(PathNotFound):
        await box.remove("a")
    tree = {e.path: e for e in await box.list_tree()}
    assert sorted(tree) == ["e", "e/f", "e/f/g", "empty", "run.sh"]
    assert tree["run.sh"].mode == 0o755 and tree["run.sh"].size == len("#!/bin/sh\necho again\n")
    assert [e.path for e in await box.list_tree("e")] == ["e/f", "e/f/g"]
    with pytest.raises(PathNotFound):
        await box.list_tree("missing")


async def test_odd_names_links_and_empty_dirs(box: DockerSandbox) -> None:
    await sh(
        box,
        "mkdir -p empty 'sp ace' && printf 1 > \"$(printf 'new\\nline')\" && "
        "printf 2 > \"$(printf 'bad\\377name')\" && ln -s sp\\ ace link && ln -s /etc out",
    )
    tree = {e.path: e for e in await box.list_tree()}
    odd = "bad\udcffname"
    assert set(tree) == {"empty", "sp ace", "new\nline", odd, "link", "out"}
    assert tree["link"].type == "symlink" and tree["link"].link_target == "sp ace"
    assert tree["out"].link_target == "/etc"
    assert await box.read_file(odd) == b"2"
    await box.write_file(odd, "3")
    assert await box.read_file("new\nline") == b"1"
    assert (await box.exec(["cat", "bad\udcffname"])).exit_code in (0, 1)  # argv is text
    await box.write_file("link/inside.txt", "via link")  # a link inside the workspace is fine
    assert await box.read_file("sp ace/inside.txt") == b"via link"
    assert await box.read_file("link/inside.txt") == b"via link"


async def test_big_file_round_trip(box: DockerSandbox) -> None:
    data = os.urandom(MiB) * 100
    await box.write_file("big.bin", data)
    assert (await box.exec("wc -c < big.bin")).text.strip() == str(len(data))
    assert await box.read_file("big.bin") == data


async def test_symlink_escapes_are_refused(box: DockerSandbox) -> None:
    await sh(box, "ln -s /etc etc && ln -s ../.. up && ln -s /etc/passwd pw && mkdir d")
    passwd = await sh(box, "cat /etc/passwd")
    for path in ("etc/passwd", "up/etc/passwd", "pw", "up/workspace/../etc/passwd"):
        with pytest.raises(WorkspacePathError):
            await box.read_file(path)
    for path in ("etc/evil", "up/etc/evil", "pw", "etc/new/deep.txt"):
        with pytest.raises(WorkspacePathError):
            await box.write_file(path, "pwned")
    for path in ("etc/newdir", "up/etc/newdir", "etc"):
        with pytest.raises(WorkspacePathError):
            await box.mkdir(path)
    for path in ("etc/passwd", "up/etc/passwd", "up/etc"):
        with pytest.raises(WorkspacePathError):
            await box.remove(path)
    with pytest.raises(WorkspacePathError):
        await _drain(box.export_tar(["etc/passwd"]))
    for path in ("etc", "up", "up/etc"):
        with pytest.raises(WorkspacePathError):
            await box.exec("pwd", cwd=path)
        with pytest.raises(WorkspacePathError):
            await box.list_tree(path)
    await sh(box, "ln -s d inner")
    assert (await box.exec("pwd", cwd="inner")).text == "/workspace/d\n"  # runc resolves it
    assert await box.list_tree("inner") == []  # a link inside is listed, never followed
    await box.remove("inner")
    await box.remove("etc")  # removes the link only
    state = await sh(box, "ls /etc/evil /etc/new /etc/newdir 2>&1; cat /etc/passwd")
    assert state.count("No such file") == 3 and state.endswith(passwd)
    assert sorted(e.path for e in await box.list_tree()) == ["d", "pw", "up"]


# -- tar streams ----------------------------------------------------------------------------


def _tar(entries: list[tuple[str, bytes | None]], **extra: Any) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            else:
                info.size = len(data)
            for key, value in extra.get(name, {}).items():
                setattr(info, key, value)
            archive.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _names(archive: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as opened:
        return opened.getnames()


async def _drain(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_export_import_round_trip(make: Make) -> None:
    source, target = await make(), await make()
    await sh(
        source,
        "mkdir -p src/pkg empty/inner && printf 'print(1)' > src/pkg/main.py && "
        "printf '#!/bin/sh\\n' > tool && chmod 750 tool && ln -s src/pkg pkg && "
        "ln tool tool.hard && printf x > \"$(printf 'caf\\303\\251')\" && "
        "printf y > \"$(printf 'raw\\377')\" && touch -d @1600000000 src/pkg/main.py",
    )
    archive = await _drain(source.export_tar())
    names = _names(archive)
    assert "" not in names and not any(n.startswith(("./", "workspace", "/")) for n in names)
    assert {"src", "src/pkg/main.py", "empty/inner", "tool", "tool.hard", "pkg"} <= set(names)
    await target.import_tar(archive)

    def view(entries: list[Any]) -> list[tuple[Any, ...]]:
        return [
            (e.path, e.type, e.mode, e.link_target, e.size if e.type == "file" else 0)
            for e in entries
        ]

    before, after = await source.list_tree(), await target.list_tree()
    assert view(after) == view(before)
    mtimes = {e.path: int(e.mtime) for e in after}
    assert mtimes["src/pkg/main.py"] == 1600000000
    assert (await target.exec(["./tool"])).exit_code == 0
    assert await target.read_file("raw\udcff") == b"y"
    assert await sh(target, "stat -c %h tool") == "2\n"  # the hard link survived

    partial = await _drain(source.export_tar(["src/pkg", "tool"]))
    members = _names(partial)
    assert sorted(members) == ["src/pkg", "src/pkg/main.py", "tool"]
    with pytest.raises(PathNotFound):
        await _drain(source.export_tar(["missing"]))


@pytest.mark.parametrize(
    ("entries", "extra", "error"),
    [
        ([("ok.txt", b"1"), ("../evil", b"x")], {}, WorkspacePathError),
        ([("ok.txt", b"1"), ("/abs/evil", b"x")], {}, WorkspacePathError),
        (
            [("lnk", b""), ("lnk/evil", b"x")],
            {"lnk": {"type": tarfile.SYMTYPE, "linkname": "/etc", "size": 0}},
            WorkspacePathError,
        ),
        (
            [("hard", b"")],
            {"hard": {"type": tarfile.LNKTYPE, "linkname": "../../etc/passwd", "size": 0}},
            WorkspacePathError,
        ),
        (
            [("dev", b"")],
            {"dev": {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3, "size": 0}},
            ConfigurationError,
        ),
        ([("etc/evil", b"x")], {}, WorkspacePathError),  # through a link already in the sandbox
    ],
)
async def test_import_tar_refuses_malicious_members(
    box: DockerSandbox,
    entries: list[tuple[str, bytes | None]],
    extra: dict[str, dict[str, Any]],
    error: type[Exception],
) -> None:
    await sh(box, "ln -s /etc etc")
    with pytest.raises(error):
        await box.import_tar(_tar(entries, **extra))
    assert [e.path for e in await box.list_tree()] == ["etc"]  # nothing was extracted
    assert (await box.exec("test -e /etc/evil || test -e /evil")).exit_code == 1


async def test_import_tar_from_a_stream(box: DockerSandbox) -> None:
    archive = _tar([("a", None), ("a/one.txt", b"1" * 3 * MiB), ("two.txt", b"2")])

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(archive), 100_000):
            yield archive[i : i + 100_000]

    await box.import_tar(chunks())
    assert await box.read_file("a/one.txt") == b"1" * 3 * MiB
    with pytest.raises(ConfigurationError):
        await box.import_tar(b"not a tar archive at all" * 100)


def _members(archive: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as opened:
        return opened.getmembers()


async def test_planned_import_streams_the_archive(box: DockerSandbox) -> None:
    archive = _tar([("a", None), ("a/one.txt", b"1" * 3 * MiB), ("two.txt", b"2")])

    def produce(out: Any) -> None:
        for i in range(0, len(archive), 100_000):
            out.write(archive[i : i + 100_000])

    await box._import_planned_tar(_members(archive), produce)
    assert await box.read_file("a/one.txt") == b"1" * 3 * MiB
    assert await box.read_file("two.txt") == b"2"


@pytest.mark.parametrize(
    "entries, extra, error",
    [
        ([("../evil", b"x")], {}, WorkspacePathError),
        ([("/evil", b"x")], {}, WorkspacePathError),
        ([("./a", b"x")], {}, WorkspacePathError),  # names are checked as given, not rewritten
        (
            [("l", b""), ("l/evil", b"x")],
            {"l": {"type": tarfile.SYMTYPE, "linkname": "/"}},
            WorkspacePathError,
        ),
        ([("h", b"")], {"h": {"type": tarfile.LNKTYPE, "linkname": "x"}}, ConfigurationError),
        ([("etc/evil", b"x")], {}, WorkspacePathError),  # through a link already in the sandbox
    ],
)
async def test_planned_import_checks_every_member_before_sending(
    box: DockerSandbox,
    entries: list[tuple[str, bytes | None]],
    extra: dict[str, dict[str, Any]],
    error: type[Exception],
) -> None:
    await sh(box, "ln -s /etc etc")
    archive = _tar(entries, **extra)
    members = _members(archive)
    for member in members:  # tarfile normalizes what it reads: give the raw names back
        member.name = next(n for n, _ in entries if n.strip("./") == member.name.strip("./"))
    sent: list[bytes] = []
    with pytest.raises(error):
        await box._import_planned_tar(members, lambda out: sent.append(archive))
    assert not sent
    assert [e.path for e in await box.list_tree()] == ["etc"]
    assert (await box.exec("test -e /etc/evil || test -e /evil")).exit_code == 1


async def test_planned_import_fails_with_the_producers_error(box: DockerSandbox) -> None:
    archive = _tar([("big.bin", b"x" * 3 * MiB)])

    def produce(out: Any) -> None:
        out.write(archive[:700_000])
        raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError, match="went away"):
        await box._import_planned_tar(_members(archive), produce)
    await box.write_file("after.txt", b"ok")  # the sandbox is still usable
    assert await box.read_file("after.txt") == b"ok"


# -- the exception boundary -----------------------------------------------------------------


def _instance(cls: type[BaseException]) -> BaseException:
    params = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    return cls(*("x" for _ in params))


def _docker_error_classes() -> list[type[BaseException]]:
    return [
        c
        for c in vars(docker.errors).values()
        if inspect.isclass(c) and issubclass(c, BaseException) and c.__module__ == "docker.errors"
    ]


@pytest.mark.parametrize("cls", _docker_error_classes(), ids=lambda c: c.__name__)
def test_every_docker_error_is_mapped(cls: type[BaseException]) -> None:
    mapped = map_docker_error(_instance(cls), sandbox_id="sb", lost=True)
    assert isinstance(mapped, SandbankError)
    assert "unexpected" not in str(mapped), f"{cls.__name__} falls through to the default"


def _api_error(status: int, explanation: str, cls: type = docker.errors.APIError) -> Exception:
    response = requests.Response()
    response.status_code = status
    error: Exception = cls("boom", response=response, explanation=explanation)
    return error


@pytest.mark.parametrize(
    ("exc", "kwargs", "expected", "retryable"),
    [
        (
            _api_error(404, "No such container: x", docker.errors.NotFound),
            {"lost": True},
            SandboxLost,
            True,
        ),
        (
            _api_error(404, "No such container: x", docker.errors.NotFound),
            {},
            SandboxNotFound,
            False,
        ),
        (
            _api_error(404, "Could not find the file /w/a", docker.errors.NotFound),
            {"path": "a"},
            PathNotFound,
            False,
        ),
        (
            _api_error(404, "No such image: i", docker.errors.ImageNotFound),
            {},
            ConfigurationError,
            False,
        ),
        (_api_error(409, "Container x is not running"), {"lost": True}, SandboxLost, True),
        (_api_error(409, "Container x is paused, unpause the container"), {}, ProviderError, False),
        (_api_error(500, "driver failed"), {}, ProviderError, True),
        (_api_error(400, "bad parameter"), {}, ProviderError, False),
        (requests.exceptions.ConnectionError("refused"), {}, ProviderUnavailable, True),
        (requests.exceptions.ReadTimeout("slow"), {}, ProviderError, True),
        (
            docker.errors.DockerException("Error while fetching server API version"),
            {},
            ProviderUnavailable,
            True,
        ),
        (docker.errors.TLSParameterError("bad cert"), {}, ProviderUnavailable, False),
        (BrokenPipeError("pipe"), {}, ProviderError, True),
    ],
)
def test_error_mapping(
    exc: Exception, kwargs: dict[str, Any], expected: type[SandbankError], retryable: bool
) -> None:
    mapped = map_docker_error(exc, sandbox_id="sb", **kwargs)
    assert type(mapped) is expected
    assert mapped.retryable is retryable
