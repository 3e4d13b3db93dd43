"""Conformance tests for ``Sandbox.exec``: exit codes, streams, stdin, env, cwd, timeouts."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Literal

import pytest

from sandbank.errors import ExecTimeout, PathNotFound
from sandbank.manifest import Manifest
from sandbank.providers.base import Sandbox

from ._helpers import ByteCounter, assert_same_bytes, path_exists, run_ok, workspace_of
from .fixtures import ConformanceFixtures, SandboxFactory

__all__ = ["ExecTests"]

MiB = 1024 * 1024
HOST_SECRET = "SANDBANK_CONFORMANCE_HOST_SECRET"


class ExecTests(ConformanceFixtures):
    """How commands run: exit codes, output, stdin, environment, directories and timeouts."""

    @pytest.mark.parametrize("code", [0, 1, 42])
    async def test_exit_code(self, sandbox: Sandbox, code: int) -> None:
        """The exit code of a command is returned as is, without raising."""
        result = await sandbox.exec(f"exit {code}")
        assert result.exit_code == code
        assert result.ok is (code == 0)

    async def test_stdout_stderr_separated(self, sandbox: Sandbox) -> None:
        """stdout and stderr are captured separately, each in order."""
        result = await sandbox.exec("echo out1; echo err1 >&2; echo out2; echo err2 >&2")
        assert result.stdout == b"out1\nout2\n"
        assert result.stderr == b"err1\nerr2\n"
        assert result.text == "out1\nout2\n"
        assert not result.truncated

    async def test_stdin_bytes(self, sandbox: Sandbox) -> None:
        """stdin given as bytes reaches the command unchanged."""
        data = b"\x00\x01binary\xff\xfe\nline two\n"
        result = await sandbox.exec(["cat"], stdin=data, timeout=60)
        assert result.stdout == data

    async def test_stdin_str(self, sandbox: Sandbox) -> None:
        """stdin given as str reaches the command UTF-8 encoded."""
        result = await sandbox.exec(["cat"], stdin="héllo wörld ✓\n", timeout=60)
        assert result.stdout == "héllo wörld ✓\n".encode()

    async def test_stdin_large(self, sandbox: Sandbox) -> None:
        """1 MiB of stdin is delivered whole while the command writes it back."""
        data = os.urandom(MiB)
        result = await sandbox.exec(["cat"], stdin=data, timeout=60)
        assert_same_bytes(result.stdout, data)

    async def test_stdin_absent_is_eof(self, sandbox: Sandbox) -> None:
        """Without stdin a command reading it sees end of file at once, it does not hang."""
        result = await sandbox.exec(["cat"], timeout=30)
        assert result.exit_code == 0
        assert result.stdout == b""

    async def test_manifest_env(self, make_sandbox: SandboxFactory, manifest: Manifest) -> None:
        """Variables of the manifest's env are set in every command."""
        env = {**manifest.env, "SANDBANK_A": "from manifest", "SANDBANK_B": "two  spaces $x"}
        box = await make_sandbox(env=env)
        result = await box.exec('printf "%s|%s" "$SANDBANK_A" "$SANDBANK_B"')
        assert result.stdout == b"from manifest|two  spaces $x"

    async def test_call_env(self, make_sandbox: SandboxFactory, manifest: Manifest) -> None:
        """Per-call env overrides the manifest's for that call only."""
        box = await make_sandbox(env={**manifest.env, "SANDBANK_A": "manifest", "SANDBANK_B": "m"})
        script = 'printf "%s|%s|%s" "$SANDBANK_A" "$SANDBANK_B" "${SANDBANK_C-unset}"'
        result = await box.exec(script, env={"SANDBANK_A": "call", "SANDBANK_C": "call"})
        assert result.stdout == b"call|m|call"
        again = await box.exec(script)
        assert again.stdout == b"manifest|m|unset"

    @pytest.fixture
    def host_secret(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
        """A variable set in the host process before the provider and sandbox exist."""
        monkeypatch.setenv(HOST_SECRET, "must-not-leak")
        yield HOST_SECRET

    async def test_host_env_not_leaked(
        self, host_secret: str, make_sandbox: SandboxFactory
    ) -> None:
        """The host process's environment does not leak into commands."""
        box = await make_sandbox()
        result = await box.exec("export -p")
        assert result.exit_code == 0
        assert host_secret.encode() not in result.stdout
        assert b"must-not-leak" not in result.stdout

    async def test_default_cwd(self, sandbox: Sandbox) -> None:
        """Commands start in the workspace root, the path SandboxInfo.workspace declares."""
        workspace = await workspace_of(sandbox)
        assert workspace.startswith("/") and workspace == sandbox.workspace
        result = await sandbox.exec("pwd")
        assert result.stdout.decode().strip() == workspace

    async def test_manifest_workdir(self, make_sandbox: SandboxFactory) -> None:
        """The manifest's workdir is where commands start; file paths stay root-relative."""
        box = await make_sandbox(workdir="sub/dir")
        await box.write_file("sub/dir/here.txt", b"here")
        result = await box.exec("pwd; cat here.txt")
        assert result.stdout.decode() == f"{await workspace_of(box)}/sub/dir\nhere"

    async def test_explicit_cwd(self, sandbox: Sandbox) -> None:
        """cwd= runs a command in a workspace subdirectory (relative, or absolute under the
        declared workspace path)."""
        workspace = await workspace_of(sandbox)
        await sandbox.mkdir("a/b")
        relative = await sandbox.exec("pwd", cwd="a/b")
        assert relative.stdout.decode().strip() == f"{workspace}/a/b"
        absolute = await sandbox.exec("pwd", cwd=f"{workspace}/a")
        assert absolute.stdout.decode().strip() == f"{workspace}/a"

    async def test_missing_cwd(self, sandbox: Sandbox) -> None:
        """A cwd that does not exist raises PathNotFound; nothing runs."""
        with pytest.raises(PathNotFound):
            await sandbox.exec("touch ran", cwd="no/such/dir")
        assert not await path_exists(sandbox, "ran")

    async def test_absolute_file_paths(self, sandbox: Sandbox) -> None:
        """File operations take absolute paths under the declared workspace path too."""
        workspace = await workspace_of(sandbox)
        await sandbox.write_file(f"{workspace}/abs/file.txt", b"absolute")
        assert await sandbox.read_file("abs/file.txt") == b"absolute"
        assert [e.path for e in await sandbox.list_tree(f"{workspace}/abs")] == ["abs/file.txt"]
        result = await sandbox.exec(["cat", f"{workspace}/abs/file.txt"])
        assert result.stdout == b"absolute"

    async def test_shell_string(self, sandbox: Sandbox) -> None:
        """A string command runs through /bin/sh -c, with pipes, expansion and quoting."""
        result = await sandbox.exec("x=6; echo $((x * 7)) | tr 4 X && echo 'a  b'")
        assert result.stdout == b"X2\na  b\n"

    async def test_argv_literal(self, sandbox: Sandbox) -> None:
        """An argv list is passed literally: no shell splitting, quoting, globbing or $."""
        args = ["two words", "it's", '"double"', "$HOME", "*", "a\\b", "; echo injected", ""]
        script = 'for a in "$@"; do printf "[%s]\\n" "$a"; done'
        result = await sandbox.exec(["/bin/sh", "-c", script, "sh", *args])
        assert result.stdout.decode() == "".join(f"[{a}]\n" for a in args)

    async def test_missing_binary(self, sandbox: Sandbox) -> None:
        """A program that does not exist exits 127 with a message on stderr."""
        result = await sandbox.exec(["sandbank-no-such-program", "arg"])
        assert result.exit_code == 127
        assert b"sandbank-no-such-program" in result.stderr

    async def test_timeout_partial_output(self, sandbox: Sandbox) -> None:
        """On timeout ExecTimeout carries the output so far and the command is dead after."""
        started = time.monotonic()
        with pytest.raises(ExecTimeout) as caught:
            await sandbox.exec("echo before; sleep 2.5; touch late; echo after", timeout=1)
        assert time.monotonic() - started < 2.4, "the timeout fired late"
        assert caught.value.result.stdout == b"before\n"
        assert caught.value.result.exit_code == 137, "a killed command exits 128 + SIGKILL"
        assert caught.value.timeout == 1
        await asyncio.sleep(max(0.0, started + 3.5 - time.monotonic()))
        assert not await path_exists(sandbox, "late"), "the command kept running after timeout"
        assert (await sandbox.exec("echo usable")).stdout == b"usable\n"

    async def test_timeout_kills_children(self, sandbox: Sandbox) -> None:
        """On timeout the processes the command started are killed too."""
        started = time.monotonic()
        with pytest.raises(ExecTimeout) as caught:
            await sandbox.exec("(sleep 2.5; touch late) & echo started; wait", timeout=1)
        assert caught.value.result.stdout == b"started\n"
        await asyncio.sleep(max(0.0, started + 3.5 - time.monotonic()))
        assert not await path_exists(sandbox, "late"), "a child process survived the timeout"

    async def test_large_output(self, sandbox: Sandbox) -> None:
        """64 MiB of output: on_output sees every byte, the result keeps a bounded prefix."""
        counter = ByteCounter()
        size = 64 * MiB
        result = await sandbox.exec(f"head -c {size} /dev/zero", on_output=counter, timeout=120)
        assert result.exit_code == 0
        assert counter.counts["stdout"] == size
        assert result.truncated
        assert 0 < len(result.stdout) <= sandbox.output_limit
        assert result.stdout.count(0) == len(result.stdout)

    async def test_on_output_streams(self, sandbox: Sandbox) -> None:
        """on_output (sync or async) receives each chunk tagged with its stream."""
        seen: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

        async def collect(stream: Literal["stdout", "stderr"], data: bytes) -> None:
            seen[stream] += data

        result = await sandbox.exec("echo out; echo err >&2; echo out2", on_output=collect)
        assert bytes(seen["stdout"]) == result.stdout == b"out\nout2\n"
        assert bytes(seen["stderr"]) == result.stderr == b"err\n"

    async def test_binary_stdout(self, sandbox: Sandbox) -> None:
        """Binary output (all 256 byte values) is returned byte for byte."""
        data = bytes(range(256)) * 64
        await sandbox.write_file("data.bin", data)
        result = await sandbox.exec(["cat", "data.bin"])
        assert_same_bytes(result.stdout, data)

    async def test_non_utf8_output(self, sandbox: Sandbox) -> None:
        """Output that is not UTF-8 is kept as bytes on both streams; .text replaces it."""
        result = await sandbox.exec("printf 'a\\377\\376b\\n'; printf 'c\\300d\\n' >&2")
        assert result.stdout == b"a\xff\xfeb\n"
        assert result.stderr == b"c\xc0d\n"
        assert result.text == "a\ufffd\ufffdb\n"

    async def test_concurrent_execs(self, sandbox: Sandbox) -> None:
        """Eight commands at once on one sandbox each get their own output and exit code."""

        async def one(i: int) -> None:
            script = f"echo start {i}; sleep 0.3; echo err {i} >&2; echo end {i}; exit {i}"
            result = await sandbox.exec(script, timeout=60)
            assert result.exit_code == i
            assert result.stdout == f"start {i}\nend {i}\n".encode()
            assert result.stderr == f"err {i}\n".encode()

        await asyncio.gather(*(one(i) for i in range(8)))

    async def test_exec_uses_files_written(self, sandbox: Sandbox) -> None:
        """Files written with write_file are visible to commands, and the other way round."""
        await sandbox.write_file("in.txt", b"from write_file\n")
        await run_ok(sandbox, "cat in.txt > out.txt; echo from exec >> out.txt")
        assert await sandbox.read_file("out.txt") == b"from write_file\nfrom exec\n"
