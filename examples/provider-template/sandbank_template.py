"""A sandbank provider in one module: host directories, commands as plain host processes.

No isolation: commands run unconfined as this user, on this host's system, with its
network, and the provider says so (``isolation``, no ``network_policy``). Copy it, rename
it, and replace the directory and process calls with your platform's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbank import Capabilities, Manifest, Provider, SandboxInfo, SandboxNotFound, SandboxStatus
from sandbank.providers import (
    ExecRequest,
    ExecResult,
    HostDirSandbox,
    OutputCollector,
    ProcessGroups,
    run_process,
    sandbox_env,
)

__all__ = ["TemplateProvider", "TemplateSandbox"]

ISOLATION = "none (commands run unconfined on the host)"
_ID = re.compile(r"tpl-[0-9a-f]{12}")


class TemplateSandbox(HostDirSandbox):
    """Files and tar come from ``HostDirSandbox``; a command is a process in the workspace."""

    provider: TemplateProvider

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        cwd = await self.host_cwd(request.cwd)  # refuses a cwd that leaves the workspace
        env = sandbox_env(request.env, home=self.workspace)  # nothing of the host's env
        running = self.provider.processes.of(self.id)
        return await run_process(request.argv, request, output, cwd=cwd, env=env, running=running)


class TemplateProvider(Provider):
    """Sandboxes as directories under ``root`` (default: ``sandbank-template`` in the
    system's temporary directory), each with a small JSON record next to its workspace."""

    name = "template"  # the entry-point name in pyproject.toml

    def __init__(self, *, root: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.root = Path(root or Path(tempfile.gettempdir()) / "sandbank-template").absolute()
        self.processes = ProcessGroups()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(host_path=True)

    @property
    def isolation(self) -> str:
        return ISOLATION

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> TemplateSandbox:
        manifest = self.validate_manifest(manifest)  # refuses network=False, resources, ...
        sandbox_id = f"tpl-{secrets.token_hex(6)}"
        record = {"manifest": json.loads(manifest.to_json()), "created_at": time.time()}
        await asyncio.to_thread(self._write_record, sandbox_id, record)
        box = self._open(sandbox_id, manifest)
        await box.mkdir(manifest.workdir)
        return box

    async def attach(self, sandbox_id: str) -> TemplateSandbox:
        record = await asyncio.to_thread(self._read_record, sandbox_id)
        return self._open(sandbox_id, Manifest.parse(record["manifest"]))

    async def list(self) -> list[SandboxInfo]:
        names = await asyncio.to_thread(
            lambda: sorted(os.listdir(self.root)) if self.root.is_dir() else []
        )
        infos = []
        for name in names:
            if _ID.fullmatch(name):
                with contextlib.suppress(SandboxNotFound):  # destroyed meanwhile
                    infos.append(await self._info(name))
        return infos

    async def destroy(self, sandbox_id: str) -> None:
        await asyncio.to_thread(self._read_record, sandbox_id)
        self.processes.kill(sandbox_id)
        await asyncio.to_thread(self._remove, sandbox_id)

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        record = await asyncio.to_thread(self._read_record, sandbox_id)
        workspace = self._workspace(sandbox_id)
        alive = await asyncio.to_thread(os.path.isdir, workspace)
        return SandboxInfo(
            id=sandbox_id,
            provider=self.name,
            status=SandboxStatus.RUNNING if alive else SandboxStatus.LOST,
            created_at=record["created_at"],
            isolation=ISOLATION,
            workspace=workspace,  # commands see the workspace at its host path
        )

    # -- the sandbox records ------------------------------------------------------------

    def _workspace(self, sandbox_id: str) -> str:
        return os.path.realpath(self.root / sandbox_id / "workspace")

    def _open(self, sandbox_id: str, manifest: Manifest) -> TemplateSandbox:
        workspace = self._workspace(sandbox_id)
        return TemplateSandbox(self, sandbox_id, manifest, workspace, workspace=workspace)

    def _write_record(self, sandbox_id: str, record: dict[str, Any]) -> None:
        (self.root / sandbox_id / "workspace").mkdir(parents=True, mode=0o700)
        (self.root / sandbox_id / "sandbox.json").write_text(json.dumps(record))

    def _read_record(self, sandbox_id: str) -> dict[str, Any]:
        try:
            if _ID.fullmatch(sandbox_id):
                return dict(json.loads((self.root / sandbox_id / "sandbox.json").read_text()))
        except FileNotFoundError:
            pass
        raise SandboxNotFound(self.name, sandbox_id)

    def _remove(self, sandbox_id: str) -> None:
        (self.root / sandbox_id / "sandbox.json").unlink()  # no longer listed from here on
        shutil.rmtree(self.root / sandbox_id)
