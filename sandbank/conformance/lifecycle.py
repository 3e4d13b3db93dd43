"""Conformance tests for the sandbox lifecycle: status, list, close, attach, destroy."""

from __future__ import annotations

import pytest

from sandbank.errors import SandboxClosed, SandboxNotFound
from sandbank.manifest import Manifest
from sandbank.providers.base import Capabilities, Provider, Sandbox, SandboxStatus

from .fixtures import ConformanceFixtures, SandboxFactory

__all__ = ["LifecycleTests"]


class LifecycleTests(ConformanceFixtures):
    """Sandboxes are created, found, closed, attached to and destroyed as the interface says."""

    async def test_provider_describes_itself(self, provider: Provider) -> None:
        """The provider has a name, declares Capabilities and describes its isolation."""
        assert isinstance(provider.name, str) and provider.name
        assert isinstance(provider.capabilities, Capabilities)
        assert isinstance(provider.isolation, str) and provider.isolation
        await provider.check()

    async def test_status_running(self, sandbox: Sandbox) -> None:
        """A new sandbox reports status RUNNING."""
        assert await sandbox.status() == SandboxStatus.RUNNING

    async def test_info(self, sandbox: Sandbox, provider: Provider) -> None:
        """info() names the sandbox, its provider and its status."""
        info = await sandbox.info()
        assert (info.id, info.provider, info.status) == (
            sandbox.id,
            provider.name,
            SandboxStatus.RUNNING,
        )

    async def test_list_shows_sandbox(self, sandbox: Sandbox, provider: Provider) -> None:
        """provider.list() includes a sandbox just created, as RUNNING."""
        listed = {info.id: info for info in await provider.list()}
        assert sandbox.id in listed
        assert listed[sandbox.id].status == SandboxStatus.RUNNING
        assert listed[sandbox.id].provider == provider.name

    async def test_sandboxes_isolated(self, make_sandbox: SandboxFactory) -> None:
        """Two sandboxes do not see each other's files."""
        first, second = await make_sandbox(), await make_sandbox()
        assert first.id != second.id
        await first.write_file("mine.txt", b"first")
        assert "mine.txt" not in {e.path for e in await second.list_tree()}
        assert (await second.exec("test -e mine.txt")).exit_code != 0

    async def test_close_twice(self, sandbox: Sandbox) -> None:
        """aclose() twice is fine; the handle reports closed."""
        await sandbox.aclose()
        await sandbox.aclose()
        assert sandbox.closed

    async def test_use_after_close(self, sandbox: Sandbox) -> None:
        """Any use of a closed handle raises SandboxClosed."""
        await sandbox.aclose()
        with pytest.raises(SandboxClosed):
            await sandbox.exec("true")
        with pytest.raises(SandboxClosed):
            await sandbox.read_file("x")
        with pytest.raises(SandboxClosed):
            await sandbox.write_file("x", b"x")
        with pytest.raises(SandboxClosed):
            await sandbox.status()

    async def test_close_keeps_sandbox(self, sandbox: Sandbox, provider: Provider) -> None:
        """Closing a handle keeps the sandbox: attach again and its files are there."""
        await sandbox.write_file("kept.txt", b"kept")
        await sandbox.aclose()
        again = await provider.attach(sandbox.id)
        try:
            assert await again.read_file("kept.txt") == b"kept"
            assert await again.status() == SandboxStatus.RUNNING
        finally:
            await again.aclose()

    async def test_attach_fresh_provider(
        self,
        make_sandbox: SandboxFactory,
        provider: Provider,
        fresh_provider: Provider,
        manifest: Manifest,
    ) -> None:
        """A new provider instance attaches by id: files, env and workdir are kept."""
        assert fresh_provider is not provider, "fresh_provider must be a second instance"
        env = {**manifest.env, "SANDBANK_ATTACH": "kept"}
        box = await make_sandbox(env=env, workdir="wd")
        await box.mkdir("wd")
        await box.write_file("wd/file.txt", b"content")
        async with fresh_provider:
            attached = await fresh_provider.attach(box.id)
            async with attached:
                assert attached.id == box.id
                assert await attached.read_file("wd/file.txt") == b"content"
                result = await attached.exec('printf %s "$SANDBANK_ATTACH"; cat file.txt')
                assert result.stdout.decode() == "keptcontent"
                assert box.id in {i.id for i in await fresh_provider.list()}

    async def test_attach_keeps_workspace_path(
        self, make_sandbox: SandboxFactory, fresh_provider: Provider
    ) -> None:
        """An attached handle declares the same workspace path, and commands start there."""
        box = await make_sandbox(workdir="wd")
        workspace = (await box.info()).workspace
        async with fresh_provider:
            attached = await fresh_provider.attach(box.id)
            async with attached:
                assert attached.workspace == workspace
                assert (await attached.info()).workspace == workspace
                result = await attached.exec("pwd")
                assert result.stdout.decode().strip() == f"{workspace}/wd"

    async def test_attach_unknown(self, provider: Provider) -> None:
        """attach to an id that never existed raises SandboxNotFound."""
        with pytest.raises(SandboxNotFound):
            await provider.attach("sandbank-conformance-no-such-sandbox")

    async def test_destroy(self, make_sandbox: SandboxFactory, provider: Provider) -> None:
        """destroy removes the sandbox: attach, destroy again and info raise SandboxNotFound."""
        box = await make_sandbox()
        await box.destroy()
        assert box.closed
        assert box.id not in {info.id for info in await provider.list()}
        with pytest.raises(SandboxNotFound):
            await provider.attach(box.id)
        with pytest.raises(SandboxNotFound):
            await provider.destroy(box.id)

    async def test_destroy_by_id(self, make_sandbox: SandboxFactory, provider: Provider) -> None:
        """provider.destroy(id) deletes a sandbox whose handle is still open; that handle's
        status() then reports LOST (it does not raise), and info() raises SandboxNotFound."""
        box = await make_sandbox()
        await provider.destroy(box.id)
        assert box.id not in {info.id for info in await provider.list()}
        with pytest.raises(SandboxNotFound):
            await provider.attach(box.id)
        assert await box.status() == SandboxStatus.LOST
        with pytest.raises(SandboxNotFound):
            await box.info()

    async def test_sandbox_context(self, provider: Provider, manifest: Manifest) -> None:
        """provider.sandbox() yields a working sandbox and destroys it on exit."""
        async with provider.sandbox(manifest) as box:
            assert (await box.exec("echo inside")).stdout == b"inside\n"
            sandbox_id = box.id
        with pytest.raises(SandboxNotFound):
            await provider.attach(sandbox_id)
