"""Conformance tests for optional capabilities: each works where declared, and where it is
not declared, asking for it raises ``NotSupported`` instead of silently doing nothing."""

from __future__ import annotations

import os

import pytest

from sandbank.errors import NotSupported
from sandbank.providers.base import Provider, Sandbox, SandboxStatus

from ._helpers import read_host_file, run_ok
from .fixtures import ConformanceFixtures, SandboxFactory

__all__ = ["CapabilityTests"]

capability = pytest.mark.sandbank_capability

_INTERFACES = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
_CONNECT = (
    'if command -v python3 >/dev/null; then python3 -c "import socket; '
    "socket.create_connection(('1.1.1.1', 53), timeout=2)\" 2>/dev/null && echo CONNECTED; fi; true"
)


async def _interfaces(box: Sandbox) -> list[str]:
    return (await run_ok(box, _INTERFACES)).decode().split()


_COMMAND_LINES = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null"


class CapabilityTests(ConformanceFixtures):
    """pause, stop, network policy, resource limits, users, images and host paths: each works
    where declared and is refused where not."""

    @capability("pause")
    async def test_pause_resume(self, sandbox: Sandbox) -> None:
        """pause makes the sandbox PAUSED; resume makes it RUNNING with its files intact."""
        await sandbox.write_file("before.txt", b"before")
        await sandbox.pause()
        assert await sandbox.status() == SandboxStatus.PAUSED
        await sandbox.resume()
        assert await sandbox.status() == SandboxStatus.RUNNING
        result = await sandbox.exec(["cat", "before.txt"])
        assert (result.exit_code, result.stdout) == (0, b"before")

    @capability("pause", declared=False)
    async def test_pause_not_supported(self, sandbox: Sandbox) -> None:
        """Without the pause capability, pause() raises NotSupported; so does resume() unless
        the provider can stop (then resume() of a running sandbox leaves it running)."""
        with pytest.raises(NotSupported):
            await sandbox.pause()
        if sandbox.provider.capabilities.stop:
            await sandbox.resume()
        else:
            with pytest.raises(NotSupported):
                await sandbox.resume()
        assert await sandbox.status() == SandboxStatus.RUNNING

    @capability("stop")
    async def test_stop_resume(self, sandbox: Sandbox) -> None:
        """stop ends every process and makes the sandbox STOPPED with its files kept;
        resume makes it RUNNING again."""
        await sandbox.write_file("before.txt", b"before")
        await sandbox.exec("sleep 3217 >/dev/null 2>&1 &")
        assert b"sleep 3217" in await run_ok(sandbox, _COMMAND_LINES)
        await sandbox.stop()
        assert await sandbox.status() == SandboxStatus.STOPPED
        await sandbox.resume()
        assert await sandbox.status() == SandboxStatus.RUNNING
        result = await sandbox.exec(["cat", "before.txt"])
        assert (result.exit_code, result.stdout) == (0, b"before")
        assert b"sleep 3217" not in await run_ok(sandbox, _COMMAND_LINES), "outlived stop()"

    @capability("stop", declared=False)
    async def test_stop_not_supported(self, sandbox: Sandbox) -> None:
        """Without the stop capability, stop() raises NotSupported."""
        with pytest.raises(NotSupported):
            await sandbox.stop()
        assert await sandbox.status() == SandboxStatus.RUNNING

    @capability("network_policy")
    async def test_network_off(self, make_sandbox: SandboxFactory) -> None:
        """network=False leaves only the loopback interface; connecting out fails."""
        box = await make_sandbox(network=False)
        assert [name for name in await _interfaces(box) if name != "lo"] == []
        assert b"CONNECTED" not in await run_ok(box, _CONNECT)

    @capability("network_policy", declared=False)
    async def test_network_off_refused(self, make_sandbox: SandboxFactory) -> None:
        """Without network_policy, a manifest asking for no network raises NotSupported."""
        with pytest.raises(NotSupported) as caught:
            await make_sandbox(network=False)
        assert caught.value.capability == "network_policy"

    @capability("network_policy")
    async def test_network_on(self, make_sandbox: SandboxFactory) -> None:
        """network=True gives the sandbox a network interface besides loopback."""
        box = await make_sandbox(network=True)
        assert [name for name in await _interfaces(box) if name != "lo"] != []

    @capability("resource_limits")
    async def test_pids_limit(self, make_sandbox: SandboxFactory) -> None:
        """resources.pids caps the number of processes: forking past it fails."""
        box = await make_sandbox(resources={"pids": 32})
        script = (
            "i=0; while [ $i -lt 100 ]; do sleep 5 </dev/null >/dev/null 2>&1 & "
            "i=$((i+1)); echo $i; done"
        )
        result = await box.exec(script, timeout=60)
        spawned = int((result.stdout.split() or [b"0"])[-1])
        assert spawned < 100, "100 processes started under a limit of 32"
        assert result.exit_code != 0

    @capability("resource_limits", declared=False)
    async def test_resource_limits_not_supported(self, make_sandbox: SandboxFactory) -> None:
        """Without resource_limits, a manifest asking for limits raises NotSupported."""
        with pytest.raises(NotSupported):
            await make_sandbox(resources={"pids": 64, "memory": "256Mi"})

    @capability("user")
    async def test_user(self, make_sandbox: SandboxFactory) -> None:
        """manifest.user runs commands as that user (uid 0 here)."""
        box = await make_sandbox(user="0")
        assert (await run_ok(box, "id -u")).strip() == b"0"

    @capability("user", declared=False)
    async def test_user_refused(self, make_sandbox: SandboxFactory) -> None:
        """Without the user capability, a manifest naming a user raises NotSupported."""
        with pytest.raises(NotSupported) as caught:
            await make_sandbox(user="1000")
        assert caught.value.capability == "user"

    @capability("image", declared=False)
    async def test_image_refused(self, provider: Provider, make_sandbox: SandboxFactory) -> None:
        """Without the image capability, an image hint for this provider raises NotSupported;
        a generic image name is ignored (the manifest stays portable)."""
        with pytest.raises(NotSupported) as caught:
            await make_sandbox(image={"hints": {provider.name: "sandbank-conformance/no-such:1"}})
        assert caught.value.capability == "image"
        box = await make_sandbox(image="sandbank-conformance/no-such-image:1")
        assert (await box.info()).image is None

    @capability("host_path")
    async def test_host_path(self, sandbox: Sandbox) -> None:
        """host_path is a directory on this host holding the workspace's files."""
        assert sandbox.host_path is not None
        await sandbox.write_file("sub/visible.txt", b"on the host")
        visible = os.path.join(sandbox.host_path, "sub", "visible.txt")
        assert read_host_file(visible) == b"on the host"

    @capability("host_path", declared=False)
    async def test_host_path_absent(self, sandbox: Sandbox) -> None:
        """Without the host_path capability, Sandbox.host_path is None."""
        assert sandbox.host_path is None
