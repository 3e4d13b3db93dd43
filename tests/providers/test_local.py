"""The local provider against real bubblewrap: isolation, lifecycle, files, tar, exec."""

# These tests inspect the host file system and processes directly, on purpose.
# ruff: noqa: ASYNC220, ASYNC221, ASYNC230, ASYNC240

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    NotSupported,
    PathNotFound,
    ProviderUnavailable,
    SandboxNotFound,
    WorkspacePathError,
)
from sandbank.providers.base import SandboxStatus
from sandbank.providers.local import (
    ISOLATION_NONE,
    LocalProvider,
    LocalSandbox,
    bwrap_argv,
    sandbox_env,
)


@pytest.fixture
def provider(tmp_path: Path, bwrap: str) -> LocalProvider:
    return LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)


@pytest.fixture
async def box(provider: LocalProvider) -> AsyncIterator[LocalSandbox]:
    sandbox = await provider.create()
    try:
        yield sandbox
    finally:
        await sandbox.destroy()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host directory outside every workspace, holding a secret file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("host secret\n")
    return folder


async def tar_bytes(box: LocalSandbox, paths: list[str] | None = None) -> bytes:
    return b"".join([chunk async for chunk in box.export_tar(paths)])


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def make_tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


# -- isolation --------------------------------------------------------------------------------


async def test_runs_as_unprivileged_user_with_own_hostname(box: LocalSandbox) -> None:
    result = await box.exec("id -u; id -g; hostname; pwd; echo $HOME")
    assert result.ok, result
    assert result.text.split() == ["1000", "1000", "sandbank", "/workspace", "/workspace"]


async def test_cannot_write_outside_workspace(box: LocalSandbox, outside: Path) -> None:
    target = outside / "secret.txt"
    for path in ["/usr/sandbank-probe", "/etc/sandbank-probe", "/root/probe", str(target)]:
        result = await box.exec(["/bin/sh", "-c", 'echo pwned > "$0"', path])
        assert not result.ok, path
    assert target.read_text() == "host secret\n"
    assert not Path("/usr/sandbank-probe").exists()
    assert not Path("/etc/sandbank-probe").exists()
    assert not Path("/root/probe").exists()
    # /tmp is private to the sandbox: a file there never shows up in the host's /tmp.
    name = f"sandbank-probe-{os.getpid()}"
    assert (await box.exec(f"echo x > /tmp/{name}")).ok
    assert not Path("/tmp", name).exists()


async def test_kernel_settings_are_read_only(box: LocalSandbox) -> None:
    # access(2) only: nothing is written even if the check were to fail.
    for path in ["/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/etc", "/", "/usr"]:
        result = await box.exec(["test", "-w", path])
        assert result.exit_code == 1, path
    assert (await box.exec("test -w /workspace && test -w /tmp && test -w /dev/shm")).ok


async def test_cannot_read_host_files(box: LocalSandbox, outside: Path) -> None:
    for path in [str(outside / "secret.txt"), "/etc/shadow", "/root"]:
        result = await box.exec(["ls", "-la", path])
        assert result.exit_code != 0, (path, result)
        assert b"No such file" in result.stderr
    listing = (await box.exec("ls /etc")).text.split()
    assert "shadow" not in listing and "passwd" in listing
    passwd = (await box.exec("cat /etc/passwd")).text
    assert "sandbank:x:1000" in passwd


async def _listener() -> tuple[asyncio.Server, int, list[bytes]]:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, received


async def test_network_off_cannot_reach_host_loopback(box: LocalSandbox) -> None:
    server, port, received = await _listener()
    async with server:
        result = await box.exec(["bash", "-c", f"echo hello > /dev/tcp/127.0.0.1/{port}"])
        assert result.exit_code != 0
        assert b"refused" in result.stderr.lower() or b"unreachable" in result.stderr.lower()
        links = (await box.exec("cat /proc/net/dev")).text
        assert "lo:" in links and "eth0" not in links
    assert received == []


async def test_network_on_reaches_host_loopback(provider: LocalProvider) -> None:
    server, port, received = await _listener()
    async with server, provider.sandbox({"network": True}) as box:
        result = await box.exec(["bash", "-c", f"echo hello > /dev/tcp/127.0.0.1/{port}"])
        assert result.ok, result
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
        info = await box.info()
    assert received == [b"hello\n"]
    assert info.isolation is not None and "host network" in info.isolation


async def test_cannot_see_host_processes(box: LocalSandbox) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        result = await box.exec(f"ls /proc | grep -E '^[0-9]+$'; kill -0 {sleeper.pid}")
        pids = [int(p) for p in result.text.split()]
        assert sleeper.pid not in pids or sleeper.pid < 10
        assert len(pids) <= 5, pids
        assert result.exit_code != 0  # kill -0 finds no such process
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_cannot_see_host_environment(
    box: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBANK_TEST_SECRET", "hunter2")
    result = await box.exec("env", env={"VISIBLE": "yes"})
    assert b"hunter2" not in result.stdout
    assert b"SANDBANK_TEST_SECRET" not in result.stdout
    assert b"VISIBLE=yes" in result.stdout
    assert set(line.split("=")[0] for line in result.text.splitlines()) <= {
        "PATH",
        "HOME",
        "LANG",
        "VISIBLE",
        "PWD",
        "SHLVL",
        "OLDPWD",
        "_",
    }


# -- provider options and lifecycle ----------------------------------------------------------


async def test_refuses_without_bubblewrap(tmp_path: Path) -> None:
    provider = LocalProvider(state_dir=tmp_path, bwrap=tmp_path / "no-such-bwrap")
    with pytest.raises(ProviderUnavailable, match="apt-get install bubblewrap"):
        await provider.create()
    assert list(tmp_path.iterdir()) == []


async def test_isolation_none_runs_unconfined(tmp_path: Path) -> None:
    provider = LocalProvider(
        state_dir=tmp_path / "state", bwrap=tmp_path / "no-such-bwrap", isolation="none"
    )
    assert provider.isolation == ISOLATION_NONE
    async with provider.sandbox({"env": {"A": "1"}, "network": True}) as box:
        result = await box.exec("pwd; echo $A")
        assert result.text.split() == [os.path.realpath(box.host_path), "1"]
        info = await box.info()
        assert info.isolation == ISOLATION_NONE
        assert info.workspace == box.workspace == os.path.realpath(box.host_path)
        assert (await box.exec(["no-such-program"])).exit_code == 127
        await box.write_file(f"{box.workspace}/abs.txt", b"absolute")
        assert await box.read_file("abs.txt") == b"absolute"
    with pytest.raises(ConfigurationError):
        LocalProvider(isolation="chroot")
    with pytest.raises(ConfigurationError, match=r"statedir.*accepts: state_dir, root"):
        LocalProvider(statedir=tmp_path)


async def test_isolation_none_refuses_what_it_cannot_enforce(tmp_path: Path) -> None:
    provider = LocalProvider(state_dir=tmp_path / "state", isolation="none")
    assert not provider.capabilities.network_policy and not provider.capabilities.user
    for manifest, capability in [({}, "network_policy"), ({"network": True, "user": "0"}, "user")]:
        with pytest.raises(NotSupported, match=capability) as caught:
            await provider.create(manifest)
        assert caught.value.capability == capability
    assert not (tmp_path / "state").exists() or list((tmp_path / "state").iterdir()) == []


async def test_reports_isolation(provider: LocalProvider, box: LocalSandbox) -> None:
    assert provider.isolation.startswith("bubblewrap: user,mount,pid,ipc,uts")
    info = await box.info()
    assert info.isolation == provider.isolation
    assert info.workspace == box.workspace == "/workspace"
    assert provider.capabilities.host_path and provider.capabilities.network_policy
    assert not provider.capabilities.resource_limits and not provider.capabilities.pause


async def test_attach_list_destroy_from_fresh_provider(tmp_path: Path, bwrap: str) -> None:
    first = LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)
    box = await first.create({"env": {"GREETING": "hi"}, "workdir": "src"})
    assert box.id.startswith("lcl-") and len(box.id) == 16
    await box.exec("echo kept > note.txt")
    await box.aclose()
    await box.aclose()

    second = LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)
    assert [i.id for i in await second.list()] == [box.id]
    again = await second.attach(box.id)
    assert again.manifest.env == {"GREETING": "hi"}
    assert (await again.exec("cat note.txt; echo $GREETING; pwd")).text.split() == [
        "kept",
        "hi",
        "/workspace/src",
    ]
    workspace = Path(again.host_path)
    assert await again.status() == SandboxStatus.RUNNING
    await again.destroy()
    assert not workspace.exists()
    assert await second.list() == []
    with pytest.raises(SandboxNotFound):
        await second.attach(box.id)
    with pytest.raises(SandboxNotFound):
        await second.destroy(box.id)
    with pytest.raises(SandboxNotFound):
        await second.attach("../../etc")


async def test_destroy_keeps_user_workspace(tmp_path: Path, bwrap: str) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "existing.txt").write_text("mine")
    provider = LocalProvider(state_dir=tmp_path / "state", workspace=mine, bwrap=bwrap)
    box = await provider.create()
    assert box.host_path == str(mine)
    assert (await box.exec("cat existing.txt; echo new > new.txt")).text == "mine"
    await box.destroy()
    assert (mine / "existing.txt").read_text() == "mine"
    assert (mine / "new.txt").read_text() == "new\n"
    assert await provider.list() == []


async def test_root_option_places_workspaces(tmp_path: Path, bwrap: str) -> None:
    provider = LocalProvider(state_dir=tmp_path / "state", root=tmp_path / "ws", bwrap=bwrap)
    async with provider.sandbox() as box:
        assert Path(box.host_path) == tmp_path / "ws" / box.id
    assert not (tmp_path / "ws" / box.id).exists()


async def test_refuses_resource_limits(provider: LocalProvider) -> None:
    with pytest.raises(NotSupported, match="resource_limits") as caught:
        await provider.create({"resources": {"memory": "512Mi"}})
    assert caught.value.capability == "resource_limits"
    assert await provider.list() == []


async def test_status_lost_when_workspace_vanishes(box: LocalSandbox) -> None:
    import shutil

    shutil.rmtree(box.host_path)
    assert await box.status() == SandboxStatus.LOST
    assert (await box.info()).status == SandboxStatus.LOST


# -- exec ---------------------------------------------------------------------------------------


async def test_exec_basics(box: LocalSandbox) -> None:
    result = await box.exec("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert (await box.exec(["cat"], stdin=b"piped")).stdout == b"piped"
    assert (await box.exec(["cat"])).stdout == b""
    missing = await box.exec(["no-such-program", "arg"])
    assert missing.exit_code == 127 and b"not found" in missing.stderr
    assert (await box.exec("kill -9 $$")).exit_code == 137
    await box.mkdir("sub/dir")
    assert (await box.exec("pwd", cwd="sub/dir")).text == "/workspace/sub/dir\n"
    with pytest.raises(PathNotFound):
        await box.exec("pwd", cwd="missing")
    assert (await box.exec("echo $LANG $X", env={"X": "y"})).text == "C.UTF-8 y\n"


async def test_concurrent_execs(box: LocalSandbox) -> None:
    results = await asyncio.gather(
        *(box.exec(f"sleep 0.2; echo {i}") for i in range(8)),
    )
    assert [r.text for r in results] == [f"{i}\n" for i in range(8)]


async def test_large_output_streams(box: LocalSandbox) -> None:
    box.output_limit = 1024 * 1024
    seen = 0

    def on_output(stream: str, data: bytes) -> None:
        nonlocal seen
        if stream == "stdout":
            seen += len(data)

    result = await box.exec("head -c 67108864 /dev/zero; echo done >&2", on_output=on_output)
    assert seen == 64 * 1024 * 1024
    assert result.truncated and len(result.stdout) == 1024 * 1024
    assert result.stderr == b"done\n"


async def test_timeout_kills_tree_and_keeps_output(box: LocalSandbox) -> None:
    started = time.monotonic()
    with pytest.raises(ExecTimeout) as caught:
        await box.exec("echo before; (sleep 29.125; echo late) & sleep 29.125", timeout=0.5)
    assert time.monotonic() - started < 3
    assert caught.value.result.stdout == b"before\n"
    assert caught.value.result.exit_code == 137
    assert b"sleep 29.125" not in subprocess.run(["ps", "-eo", "args"], capture_output=True).stdout
    assert (await box.exec("echo alive")).ok


async def test_unconfined_background_writer_does_not_hang(tmp_path: Path) -> None:
    provider = LocalProvider(state_dir=tmp_path, isolation="none")
    async with provider.sandbox({"network": True}) as box:
        started = time.monotonic()
        result = await box.exec("setsid sleep 5 & echo started")
        assert result.text == "started\n"
        assert time.monotonic() - started < 3


async def test_bwrap_argv_runs_standalone(tmp_path: Path, bwrap: str) -> None:
    argv = bwrap_argv(
        ["sh", "-c", "echo $X > out"],
        workspace=str(tmp_path),
        bwrap=bwrap,
        env=sandbox_env({"X": "raw"}),
    )
    proc = await asyncio.create_subprocess_exec(*argv)
    assert await proc.wait() == 0
    assert (tmp_path / "out").read_text() == "raw\n"


# -- files and path escapes ---------------------------------------------------------------------


async def test_file_roundtrip(box: LocalSandbox) -> None:
    await box.write_file("deep/dir/f.bin", b"\x00\xff" * 1000, mode=0o640)
    assert await box.read_file("/workspace/deep/dir/f.bin") == b"\x00\xff" * 1000
    assert os.stat(Path(box.host_path, "deep/dir/f.bin")).st_mode & 0o7777 == 0o640
    await box.write_file("deep/dir/f.bin", "new")
    assert os.stat(Path(box.host_path, "deep/dir/f.bin")).st_mode & 0o7777 == 0o640
    assert (await box.exec("cat deep/dir/f.bin")).stdout == b"new"
    with pytest.raises(ConfigurationError, match="is a directory"):
        await box.read_file("deep")
    with pytest.raises(PathNotFound):
        await box.read_file("nope.txt")
    with pytest.raises(PathNotFound):
        await box.remove("nope.txt")
    await box.exec("ln -s deep/dir/f.bin link; mkdir empty")
    entries = {e.path: e for e in await box.list_tree()}
    assert entries["link"].type == "symlink" and entries["link"].link_target == "deep/dir/f.bin"
    assert entries["deep/dir/f.bin"].size == 3 and entries["deep/dir/f.bin"].mode == 0o640
    assert entries["empty"].type == "dir"
    assert [e.path for e in await box.list_tree("deep")] == ["deep/dir", "deep/dir/f.bin"]
    assert await box.read_file("link") == b"new"
    await box.remove("deep")
    assert not Path(box.host_path, "deep").exists()


async def test_path_escapes_are_refused(box: LocalSandbox, outside: Path) -> None:
    await box.exec(
        f"ln -s /etc etc; ln -s ../.. up; ln -s {outside} host; ln -s /etc/hostname hn; "
        "mkdir -p sub; ln -s /workspace/sub inside; ln -s ../../.. sub/climb"
    )
    hostname = Path("/etc/hostname").read_bytes() if Path("/etc/hostname").exists() else None
    for path in [
        "../x",
        "/etc/passwd",
        "a/../../x",
        "etc/passwd",
        "up/x",
        "host/secret.txt",
        "hn",
        "sub/climb/etc/passwd",
    ]:
        with pytest.raises(WorkspacePathError):
            await box.read_file(path)
        with pytest.raises(WorkspacePathError):
            await box.write_file(path, "pwned")
    for path in ["etc", "host", "up", "sub/climb"]:
        with pytest.raises(WorkspacePathError):
            await box.list_tree(path)
        with pytest.raises(WorkspacePathError):
            await box.mkdir(f"{path}/new")
    with pytest.raises(WorkspacePathError):
        await box.remove("host/secret.txt")
    assert (outside / "secret.txt").read_text() == "host secret\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    if hostname is not None:
        assert Path("/etc/hostname").read_bytes() == hostname
    # Links that stay inside work; removing a link removes only the link.
    await box.write_file("inside/f.txt", "ok")
    assert await box.read_file("sub/f.txt") == b"ok"
    await box.remove("host")
    assert (outside / "secret.txt").exists()


async def test_import_tar_refuses_escapes(box: LocalSandbox, outside: Path) -> None:
    bad = [
        make_tar((member("../evil.txt"), b"x")),
        make_tar((member("/abs.txt"), b"x")),
        make_tar(
            (member("link", tarfile.SYMTYPE, str(outside)), None),
            (member("link/evil.txt"), b"x"),
        ),
        make_tar((member("hard", tarfile.LNKTYPE, "../../etc/passwd"), None)),
    ]
    for data in bad:
        with pytest.raises(WorkspacePathError):
            await box.import_tar(data)
    # A link already in the workspace is not followed out either, in a parent position ...
    await box.exec(f"ln -s {outside} pre; ln -s {outside}/secret.txt final")
    with pytest.raises(WorkspacePathError):
        await box.import_tar(make_tar((member("pre/evil.txt"), b"x")))
    # ... nor at the final component: the link is replaced, the host file untouched.
    await box.import_tar(make_tar((member("final"), b"replaced")))
    assert await box.read_file("final") == b"replaced"
    assert not Path(box.host_path, "final").is_symlink()
    assert (outside / "secret.txt").read_text() == "host secret\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert not Path(box.host_path).parent.joinpath("evil.txt").exists()


async def test_tar_roundtrip_full_fidelity(provider: LocalProvider, box: LocalSandbox) -> None:
    await box.exec(
        "mkdir -p src/empty src/ro && echo code > src/main.py && chmod 750 src/main.py && "
        "ln -s main.py src/link && ln -s /workspace/src src/abs && "
        "touch -d '2001-02-03 04:05:06.789' src/main.py && chmod 555 src/ro && "
        "echo top > top.txt"
    )
    odd = os.fsencode(box.host_path) + b"/src/caf\xe9"
    with open(odd, "wb") as f:
        f.write(b"latin-1 name")
    data = await tar_bytes(box)
    names = tar_names(data)
    assert "src" in names and "top.txt" in names and "src/empty" in names
    assert not any(n.startswith(("./", "/")) for n in names)

    async with provider.sandbox() as copy:
        await copy.import_tar(data)
        before = {e.path: e for e in await box.list_tree()}
        after = {e.path: e for e in await copy.list_tree()}
        assert before.keys() == after.keys()
        for path, entry in before.items():
            other = after[path]
            assert (entry.type, entry.mode, entry.link_target) == (
                other.type,
                other.mode,
                other.link_target,
            ), path
            if entry.type != "dir":
                assert entry.size == other.size, path
            assert abs(entry.mtime - other.mtime) < 1e-3, path
        assert after["src/ro"].mode == 0o555
        assert await copy.read_file("src/caf\udce9") == b"latin-1 name"
        assert (await copy.exec("cat src/link")).text == "code\n"

        subset = await tar_bytes(box, ["src/empty", "top.txt", "src"])
        names = sorted(tar_names(subset))
        assert "top.txt" in names and "src/main.py" in names
        assert len(names) == len(set(names))
    with pytest.raises(PathNotFound):
        await tar_bytes(box, ["missing"])


async def test_overwrite_is_atomic_and_leaves_no_temp_files(box: LocalSandbox) -> None:
    """An overwrite swaps a complete new file in: a reader holding the old one keeps it."""
    await box.write_file("data.bin", b"old" * 1000, mode=0o600)
    assert box.host_path is not None
    path = Path(box.host_path) / "data.bin"
    with path.open("rb") as held:
        await box.write_file("data.bin", b"new" * 2000)
        assert held.read() == b"old" * 1000
    assert await box.read_file("data.bin") == b"new" * 2000
    assert path.stat().st_mode & 0o777 == 0o600
    await box.exec(["ln", "-s", "data.bin", "link"])
    await box.write_file("link", b"through the link")
    assert await box.read_file("data.bin") == b"through the link"
    assert sorted(os.listdir(box.host_path)) == ["data.bin", "link"]


async def test_export_tar_closed_early_closes_the_provider_stream(
    box: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing an export the consumer stopped reading closes the provider's stream at once
    (its reader thread or socket stops now, not when the garbage collector gets to it)."""
    closed = []
    inner = box._export_tar

    async def tracked(paths: list[str] | None) -> AsyncIterator[bytes]:
        try:
            async for chunk in inner(paths):
                yield chunk
        finally:
            closed.append(True)

    monkeypatch.setattr(box, "_export_tar", tracked)
    await box.write_file("big.bin", os.urandom(4 << 20))
    stream = box.export_tar()
    async for _chunk in stream:
        break
    await stream.aclose()
    assert closed == [True]
