"""The local provider: a host directory is the workspace, commands run under bubblewrap.

Every command runs in fresh Linux namespaces (user, mount, pid, ipc, uts, cgroup and, unless
the manifest asks for network, net) that see only read-only system directories, a handful
of ``/etc`` files, the workspace at ``/workspace`` and a private ``/tmp``. Host-side file
operations resolve every path component through directory file descriptors, so a symlink
planted in the workspace can never make sandbank read or write outside it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from asyncio.subprocess import DEVNULL, PIPE
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from sandbank.errors import (
    ConfigurationError,
    ProviderError,
    ProviderUnavailable,
    SandboxNotFound,
)
from sandbank.manifest import Manifest
from sandbank.providers._bwrap import (
    EXEC_SHIM,
    GROUP_FILE,
    INSTALL_HINT,
    ISOLATION_BWRAP,
    ISOLATION_NONE,
    PASSWD_FILE,
    bwrap_argv,
    user_ids,
)
from sandbank.providers.base import (
    WORKSPACE,
    Capabilities,
    ExecRequest,
    ExecResult,
    OutputCollector,
    Provider,
    SandboxInfo,
    SandboxStatus,
)
from sandbank.providers.hostdir import HostDirectory, HostDirSandbox
from sandbank.providers.process import ProcessGroups, run_process, sandbox_env

__all__ = ["LocalProvider", "LocalSandbox", "bwrap_argv", "sandbox_env"]

log = logging.getLogger(__name__)

_ID = re.compile(r"^lcl-[0-9a-f]{12}$")
_RECORD = "sandbox.json"


# -- provider and sandbox -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    id: str
    manifest: Manifest
    created_at: float
    workspace: str
    owned: bool
    isolation: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "manifest": json.loads(self.manifest.without_contents().to_json()),
                "created_at": self.created_at,
                "workspace": self.workspace,
                "owned": self.owned,
                "isolation": self.isolation,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> _Record:
        data = json.loads(text)
        return cls(
            id=data["id"],
            manifest=Manifest.parse(data.get("manifest") or {}),
            created_at=float(data["created_at"]),
            workspace=data["workspace"],
            owned=bool(data["owned"]),
            isolation=data.get("isolation", ""),
        )


class LocalSandbox(HostDirSandbox):
    """A sandbox whose workspace is a host directory; see ``LocalProvider``."""

    provider: LocalProvider

    def __init__(self, provider: LocalProvider, record: _Record) -> None:
        inside = provider._inside(record.workspace)
        super().__init__(provider, record.id, record.manifest, record.workspace, workspace=inside)
        self._record = record

    # commands

    def host_command(self, request: ExecRequest) -> tuple[list[str], str | None, dict[str, str]]:
        """The host process (argv, cwd, environment) that runs ``request`` in this sandbox.

        ``exec`` runs it; a durable worker runs it detached so the command outlives the
        worker (the ``durable_exec`` capability).
        """
        argv, cwd = self._argv(request)
        if self.provider.isolation_mode == "none":
            return argv, cwd, sandbox_env(request.env, home=self.host_path)
        # bwrap passes its environment on: the values never appear on a command line.
        return argv, cwd, sandbox_env(request.env, home=self.workspace)

    @property
    def tmp_dir(self) -> str:
        """The host directory that is this sandbox's ``/tmp``."""
        return self.provider._tmp_dir(self.id)

    def _argv(self, request: ExecRequest) -> tuple[list[str], str | None]:
        provider = self.provider
        if provider.isolation_mode == "none":
            cwd = os.path.join(self.host_path, request.cwd)
            return [*EXEC_SHIM, *request.argv], cwd
        uid, gid = user_ids(self.manifest.user)
        argv = bwrap_argv(
            request.argv,
            workspace=self.host_path,
            cwd=request.cwd,
            network=self.manifest.network,
            bwrap=provider.bwrap_path or "bwrap",
            tmp=provider._tmp_dir(self.id),
            etc=provider._etc_files(),
            uid=uid,
            gid=gid,
            disable_userns=provider._disable_userns,
            mount_point=self.workspace,
        )
        return argv, None

    async def _port_url(self, port: int) -> str:
        # The sandbox shares the host's network (ports need network=True): same port.
        return f"http://127.0.0.1:{port}"

    async def _exec(self, request: ExecRequest, output: OutputCollector) -> ExecResult:
        await self.provider.check()
        await self.host_cwd(request.cwd)
        argv, cwd, env = self.host_command(request)
        log.debug("exec in %s: %s", self.id, request.argv)
        running = self.provider._running.of(self.id)
        return await run_process(argv, request, output, cwd=cwd, env=env, running=running)


class LocalProvider(Provider):
    """Sandboxes on this host: a directory as the workspace, bubblewrap as the walls.

    Options: ``state_dir`` (where sandbox records live), ``root`` (where new workspaces
    are created, default inside the record), ``workspace`` (use this existing directory as
    the workspace; sandbank never deletes it), ``isolation`` ("bubblewrap" or "none"),
    ``bwrap`` (path of the bwrap binary) and ``mount_point`` (where commands under bubblewrap
    see the workspace, default ``/workspace``; cloud emulators use the cloud's home).
    """

    name = "local"

    def __init__(
        self,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        root: str | os.PathLike[str] | None = None,
        workspace: str | os.PathLike[str] | None = None,
        isolation: str = "bubblewrap",
        bwrap: str | os.PathLike[str] | None = None,
        mount_point: str = WORKSPACE,
        **unknown: Any,
    ) -> None:
        super().__init__(**unknown)
        if isolation not in ("bubblewrap", "none"):
            raise ConfigurationError(f"isolation must be 'bubblewrap' or 'none', got {isolation!r}")
        if not mount_point.startswith("/") or mount_point.rstrip("/") in ("", "/tmp"):
            raise ConfigurationError(
                f"mount_point {mount_point!r} must be an absolute path other than / and /tmp"
            )
        self.mount_point = mount_point.rstrip("/")
        self.isolation_mode = isolation
        default_state = Path(platformdirs.user_data_dir("sandbank")) / "local"
        self.state_dir = Path(state_dir or default_state).expanduser().absolute()
        self.root = Path(root).expanduser().absolute() if root else None
        self.workspace = Path(workspace).expanduser().absolute() if workspace else None
        if bwrap is not None:
            found = shutil.which(os.fspath(bwrap))
        else:
            found = shutil.which("bwrap")
        self.bwrap_path: str | None = found
        self._requested_bwrap = os.fspath(bwrap) if bwrap is not None else "bwrap"
        self._checked = False
        self._disable_userns = True
        self._running = ProcessGroups()

    @property
    def capabilities(self) -> Capabilities:
        confined = self.isolation_mode != "none"
        return Capabilities(
            host_path=True, network_policy=confined, user=confined, durable_exec=True, ports=True
        )

    @property
    def isolation(self) -> str:
        return ISOLATION_BWRAP if self.isolation_mode == "bubblewrap" else ISOLATION_NONE

    def _inside(self, workspace: str) -> str:
        """Where commands see the workspace directory ``workspace``."""
        return os.path.realpath(workspace) if self.isolation_mode == "none" else self.mount_point

    def _isolation_of(self, manifest: Manifest) -> str:
        if self.isolation_mode == "none":
            return ISOLATION_NONE
        if manifest.network:
            return "bubblewrap: user,mount,pid,ipc,uts,cgroup namespaces; host network"
        return ISOLATION_BWRAP

    # availability

    async def check(self) -> None:
        if self.isolation_mode == "none" or self._checked:
            return
        if not sys.platform.startswith("linux"):
            raise ProviderUnavailable(
                f"the local provider confines commands with bubblewrap, which needs Linux "
                f"(this is {sys.platform}); pass isolation='none' to run commands unconfined"
            )
        if self.bwrap_path is None:
            raise ProviderUnavailable(
                f"bubblewrap is not installed ({self._requested_bwrap!r} was not found); "
                + INSTALL_HINT
            )
        stderr = b""
        with tempfile.TemporaryDirectory(prefix="sandbank-check-") as empty:
            for disable_userns in (True, False):
                argv = bwrap_argv(
                    ["true"],
                    workspace=empty,
                    bwrap=self.bwrap_path,
                    etc={},
                    disable_userns=disable_userns,
                )
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE, env=sandbox_env({})
                )
                _, stderr = await proc.communicate()
                if proc.returncode == 0:
                    self._disable_userns = disable_userns
                    self._checked = True
                    return
                if b"disable-userns" not in stderr:
                    break
        raise ProviderUnavailable(
            f"bubblewrap at {self.bwrap_path} cannot create a sandbox here: "
            f"{stderr.decode(errors='replace').strip()}; unprivileged user namespaces may be "
            f"disabled (sysctl kernel.unprivileged_userns_clone=1, or allow them in AppArmor), "
            f"or pass isolation='none' to run commands unconfined"
        )

    # state

    def _record_dir(self, sandbox_id: str) -> Path:
        return self.state_dir / sandbox_id

    def _tmp_dir(self, sandbox_id: str) -> str:
        path = self._record_dir(sandbox_id) / "tmp"
        path.mkdir(mode=0o700, exist_ok=True)
        return str(path)

    def _etc_files(self) -> dict[str, str]:
        etc = self.state_dir / ".etc"
        files = {"passwd": PASSWD_FILE, "group": GROUP_FILE}
        for name, text in files.items():
            path = etc / name
            if not path.exists():
                etc.mkdir(parents=True, exist_ok=True)
                temp = etc / f".{name}.{secrets.token_hex(4)}"
                temp.write_text(text)
                temp.chmod(0o644)
                os.replace(temp, path)
        return {name: str(etc / name) for name in files}

    def _load(self, sandbox_id: str) -> _Record:
        if not _ID.match(sandbox_id):
            raise SandboxNotFound(self.name, sandbox_id)
        try:
            text = (self._record_dir(sandbox_id) / _RECORD).read_text()
        except FileNotFoundError:
            raise SandboxNotFound(self.name, sandbox_id) from None
        try:
            return _Record.from_json(text)
        except (ValueError, KeyError) as exc:
            raise ProviderError(
                f"the record of local sandbox {sandbox_id!r} in {self._record_dir(sandbox_id)} "
                f"is damaged ({exc}); destroy it with `sandbank sandbox rm {sandbox_id}`"
            ) from None

    def _save(self, record: _Record) -> None:
        folder = self._record_dir(record.id)
        temp = folder / f".{_RECORD}.tmp"
        temp.write_text(record.to_json())
        os.replace(temp, folder / _RECORD)

    # lifecycle

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> LocalSandbox:
        manifest = self.validate_manifest(manifest)
        if self.isolation_mode == "bubblewrap":
            user_ids(manifest.user)
            if manifest.ports and not manifest.network:
                raise ConfigurationError(
                    f"manifest.ports {manifest.ports} need network=True on the local provider: "
                    f"a sandbox without network has no port the host can reach; set "
                    f"network=True (the sandbox then shares the host's network and its ports)"
                )
        await self.check()
        sandbox_id = f"lcl-{secrets.token_hex(6)}"
        record = await asyncio.to_thread(self._create_sync, sandbox_id, manifest)
        log.info("created local sandbox %s with workspace %s", sandbox_id, record.workspace)
        return LocalSandbox(self, record)

    def _create_sync(self, sandbox_id: str, manifest: Manifest) -> _Record:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = self._record_dir(sandbox_id)
        folder.mkdir(mode=0o700)
        try:
            self._tmp_dir(sandbox_id)
            if self.workspace is not None:
                if not self.workspace.is_dir():
                    raise ConfigurationError(
                        f"workspace {self.workspace} is not a directory; create it first or "
                        f"leave the workspace option out to get a new one"
                    )
                workspace, owned = self.workspace, False
            else:
                if self.root is not None:
                    self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                    workspace = self.root / sandbox_id
                else:
                    workspace = folder / "workspace"
                workspace.mkdir(mode=0o700)
                owned = True
            record = _Record(
                id=sandbox_id,
                manifest=manifest,
                created_at=time.time(),
                workspace=str(workspace.absolute()),
                owned=owned,
                isolation=self._isolation_of(manifest),
            )
            if manifest.workdir != ".":
                HostDirectory(record.workspace, sandbox_id).mkdir(manifest.workdir)
            self._save(record)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            if self.workspace is None and self.root is not None:
                shutil.rmtree(self.root / sandbox_id, ignore_errors=True)
            raise
        return record

    async def attach(self, sandbox_id: str) -> LocalSandbox:
        record = await asyncio.to_thread(self._load, sandbox_id)
        return LocalSandbox(self, record)

    async def list(self) -> list[SandboxInfo]:
        return await asyncio.to_thread(self._list_sync)

    def _list_sync(self) -> builtins.list[SandboxInfo]:
        if not self.state_dir.is_dir():
            return []
        infos = []
        for folder in sorted(self.state_dir.iterdir()):
            if not _ID.match(folder.name):
                continue
            try:
                infos.append(self._info_sync(folder.name))
            except SandboxNotFound:
                continue
            except ProviderError as exc:
                log.warning("skipping local sandbox %s: %s", folder.name, exc)
        return infos

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        return await asyncio.to_thread(self._info_sync, sandbox_id)

    def _info_sync(self, sandbox_id: str) -> SandboxInfo:
        record = self._load(sandbox_id)
        alive = os.path.isdir(record.workspace)
        return SandboxInfo(
            id=record.id,
            provider=self.name,
            status=SandboxStatus.RUNNING if alive else SandboxStatus.LOST,
            created_at=record.created_at,
            image=None,
            isolation=self._isolation_of(record.manifest),
            workspace=self._inside(record.workspace),
        )

    async def destroy(self, sandbox_id: str) -> None:
        record = await asyncio.to_thread(self._load, sandbox_id)
        self._running.kill(sandbox_id)
        await asyncio.to_thread(self._destroy_sync, record)
        log.info("destroyed local sandbox %s", sandbox_id)

    def _destroy_sync(self, record: _Record) -> None:
        folder = self._record_dir(record.id)
        # Drop the record first: a half-deleted sandbox then no longer shows up.
        with contextlib.suppress(FileNotFoundError):
            (folder / _RECORD).unlink()
        if record.owned:
            shutil.rmtree(record.workspace, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
