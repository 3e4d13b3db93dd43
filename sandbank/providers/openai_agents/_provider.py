"""Any OpenAI Agents SDK sandbox client as a sandbank provider.

A sandbank sandbox is one SDK session, created with an empty SDK manifest and no SDK
snapshot (sandbank's own snapshots move workspaces). Its serialized session state is kept
in a record under ``state_dir``, so any process can attach to it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import platformdirs

from sandbank.errors import (
    ConfigurationError,
    ProviderError,
    ProviderUnavailable,
    SandboxLost,
    SandboxNotFound,
)
from sandbank.manifest import Manifest
from sandbank.providers.base import (
    WORKSPACE,
    Capabilities,
    Provider,
    SandboxInfo,
    SandboxStatus,
)

from . import _scripts as sh
from ._errors import sdk_errors
from ._sandbox import AgentsSdkSandbox

__all__ = ["AGENTS_HINT", "AgentsSdkProvider", "Record", "load_sdk_module"]

log = logging.getLogger(__name__)

AGENTS_HINT = "pip install 'sandbank[agents]'"
_ID = re.compile(r"^oa-[0-9a-f]{12}$")


def load_sdk_module(module: str, *, provider: str, extra: str | None) -> ModuleType:
    """Import an SDK module, or raise ``ProviderUnavailable`` naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in ("agents", "openai", "") or extra is None:
            hint = AGENTS_HINT
        else:
            hint = f"pip install 'openai-agents[{extra}]'"
        raise ProviderUnavailable(
            f"provider {provider!r} needs the Python package {missing or module!r} ({exc}); "
            f"install it with: {hint}",
            retryable=False,
        ) from exc


@dataclass(frozen=True)
class Record:
    """What ``state_dir/<id>.json`` keeps of a sandbox, enough to attach from any process."""

    id: str
    created_at: float
    manifest: Manifest
    state: dict[str, Any]
    """The SDK's serialized session state (``client.serialize_session_state``)."""

    @property
    def workspace(self) -> str:
        """The workspace root as commands see it (the SDK manifest's root)."""
        return str(self.state.get("manifest", {}).get("root") or WORKSPACE)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "created_at": self.created_at,
                "manifest": json.loads(self.manifest.to_json()),
                "state": self.state,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        return cls(
            id=data["id"],
            created_at=float(data["created_at"]),
            manifest=Manifest.parse(data.get("manifest") or {}),
            state=dict(data["state"]),
        )


class AgentsSdkProvider(Provider):
    """Sandboxes from an OpenAI Agents SDK sandbox client (``BaseSandboxClient``).

    Use a registered subclass (``oa-docker``, ``oa-modal``, ...) or pass any client:
    ``AgentsSdkProvider(client=MyClient(), options=MyClientOptions(...))``. Options:
    ``options`` (the client's options model, or a dict of its fields), ``client_kwargs``
    (for the client's constructor), ``root`` (the SDK workspace root) and ``state_dir``
    (where sandbox records live).
    """

    name = "oa"
    backend_id: str = "custom"
    """The SDK's name for the client (``backend_id``)."""
    client_module: ClassVar[str | None] = None
    client_class: ClassVar[str] = ""
    options_class: ClassVar[str] = ""
    sdk_extra: ClassVar[str | None] = None
    """The openai-agents extra that installs the client's own SDK."""

    def __init__(
        self,
        *,
        client: Any = None,
        options: Any = None,
        client_kwargs: dict[str, Any] | None = None,
        root: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ConfigurationError(
                f"provider {self.name!r} has no options {sorted(unknown)}; it accepts client, "
                f"options, client_kwargs, root and state_dir"
            )
        if client is None and self.client_module is None:
            raise ConfigurationError(
                "AgentsSdkProvider needs client=, an Agents SDK sandbox client; or use a "
                "registered provider such as 'oa-docker'"
            )
        self._sdk = load_sdk_module("agents.sandbox", provider=self.name, extra=None)
        if self.client_module is not None:
            self._module = load_sdk_module(
                self.client_module, provider=self.name, extra=self.sdk_extra
            )
        self._client_obj = client
        if client is not None:
            self.backend_id = str(getattr(client, "backend_id", "custom"))
        self._options = options
        self._client_kwargs = dict(client_kwargs or {})
        self.root = root
        default_state = Path(platformdirs.user_data_dir("sandbank")) / self.name
        self.state_dir = Path(state_dir or default_state).expanduser().absolute()
        self._sessions: dict[str, Any] = {}

    # -- what a subclass adapts -------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    @property
    def isolation(self) -> str:
        return f"the Agents SDK's {self.backend_id} sandbox"

    def _make_client(self) -> Any:
        """The SDK client, built on first use."""
        assert self.client_module is not None
        return getattr(self._module, self.client_class)(**self._client_kwargs)

    def _client_options(self, manifest: Manifest, sandbox_id: str) -> Any:
        """The client's options for the new sandbox ``sandbox_id`` described by ``manifest``."""
        options = self._options
        if isinstance(options, dict) or (options is None and self.options_class):
            cls = getattr(self._module, self.options_class)
            return cls(**(options or {}))
        return options

    async def _exists(self, state: Any) -> bool | None:
        """Whether the backend behind ``state`` still exists; ``None`` if unknown."""
        return None

    async def _before_delete(self, session: Any, sandbox_id: str) -> None:
        """A hook run just before ``client.delete``."""

    async def _forget(self, sandbox_id: str) -> None:
        """A hook run last in ``destroy``, also when the backend was already gone."""

    # -- client and records -----------------------------------------------------------------

    async def _client(self) -> Any:
        if self._client_obj is None:
            with sdk_errors(self.backend_id):
                self._client_obj = await asyncio.to_thread(self._make_client)
        return self._client_obj

    async def check(self) -> None:
        await self._client()

    def _stage_dir(self, sandbox_id: str) -> str:
        """A private directory outside the workspace for staged stdin."""
        return f"/tmp/.sandbank-{sandbox_id}"

    def _record_path(self, sandbox_id: str) -> Path:
        if not _ID.match(sandbox_id):
            raise SandboxNotFound(self.name, sandbox_id)
        return self.state_dir / f"{sandbox_id}.json"

    def _load(self, sandbox_id: str) -> Record:
        path = self._record_path(sandbox_id)
        try:
            return Record.from_json(path.read_text())
        except FileNotFoundError:
            raise SandboxNotFound(self.name, sandbox_id) from None
        except (ValueError, KeyError) as exc:
            raise ProviderError(
                f"the record {path} of sandbox {sandbox_id!r} is damaged ({exc}); "
                f"delete the file to forget the sandbox"
            ) from None

    def _save(self, record: Record) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._record_path(record.id)
        temp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(record.to_json())
        os.replace(temp, path)

    # -- lifecycle --------------------------------------------------------------------------

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> AgentsSdkSandbox:
        manifest = self.validate_manifest(manifest)
        client = await self._client()
        sandbox_id = f"oa-{secrets.token_hex(6)}"
        stage = self._stage_dir(sandbox_id)
        root = {"root": self.root} if self.root else {}
        sdk_manifest = self._sdk.Manifest(
            **root, extra_path_grants=(self._sdk.SandboxPathGrant(path=stage),)
        )
        noop = importlib.import_module("agents.sandbox.snapshot").NoopSnapshotSpec()
        with sdk_errors(self.backend_id, sandbox_id):
            options = self._client_options(manifest, sandbox_id)
            session = await client.create(snapshot=noop, manifest=sdk_manifest, options=options)
        try:
            with sdk_errors(self.backend_id, sandbox_id):
                await session.start()
            record = Record(
                id=sandbox_id,
                created_at=time.time(),
                manifest=manifest,
                state=client.serialize_session_state(session.state),
            )
            box = AgentsSdkSandbox(self, record, session)
            await box._checked(sh.stage_script(stage), stage)
            if manifest.workdir != ".":
                await box._mkdir(manifest.workdir)
            await asyncio.to_thread(self._save, record)
        except BaseException:
            await asyncio.shield(self._delete_quietly(session, sandbox_id))
            raise
        self._sessions[sandbox_id] = session
        log.info("created %s sandbox %s with workspace %s", self.name, sandbox_id, box.root)
        return box

    async def _delete_quietly(self, session: Any, sandbox_id: str) -> None:
        try:
            try:
                await self._delete(session, sandbox_id)
            finally:
                await self._forget(sandbox_id)
        except Exception as exc:
            log.warning("could not delete a half-created %s sandbox: %s", self.name, exc)

    async def _delete(self, session: Any, sandbox_id: str) -> None:
        client = await self._client()
        try:  # the staging directory is outside the workspace: the SDK would leave it
            stage = self._stage_dir(sandbox_id)
            await session.exec("rm", "-rf", "--", stage, shell=False, timeout=30)
        except Exception as exc:
            log.debug("could not remove %s of sandbox %s: %s", stage, sandbox_id, exc)
        await self._before_delete(session, sandbox_id)
        with sdk_errors(self.backend_id):
            await session.shutdown()
            await client.delete(session)

    async def _state(self, record: Record) -> Any:
        client = await self._client()
        with sdk_errors(self.backend_id, record.id):
            return client.deserialize_session_state(record.state)

    async def _session(self, record: Record) -> Any:
        """The live session of a sandbox: cached, or resumed from its record and started."""
        session = self._sessions.get(record.id)
        if session is not None:
            return session
        state = await self._state(record)
        if await self._exists(state) is False:
            raise SandboxLost(record.id, f"its {self.backend_id} backend no longer exists")
        client = await self._client()
        with sdk_errors(self.backend_id, record.id):
            session = await client.resume(state)
            await session.start()
        return self._sessions.setdefault(record.id, session)

    async def attach(self, sandbox_id: str) -> AgentsSdkSandbox:
        record = await asyncio.to_thread(self._load, sandbox_id)
        return AgentsSdkSandbox(self, record, await self._session(record))

    async def list(self) -> list[SandboxInfo]:
        if not self.state_dir.is_dir():
            return []
        infos = []
        for path in sorted(self.state_dir.glob("oa-*.json")):
            try:
                infos.append(await self._info(path.stem))
            except SandboxNotFound:
                continue
            except ProviderError as exc:
                log.warning("skipping %s sandbox %s: %s", self.name, path.stem, exc)
        return infos

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        record = await asyncio.to_thread(self._load, sandbox_id)
        try:
            session = await self._session(record)
        except SandboxLost:
            status = SandboxStatus.LOST
        else:
            status = await AgentsSdkSandbox(self, record, session)._status()
        return SandboxInfo(
            id=record.id,
            provider=self.name,
            status=status,
            created_at=record.created_at,
            image=record.state.get("image"),
            isolation=self.isolation,
            workspace=record.workspace,
        )

    async def destroy(self, sandbox_id: str) -> None:
        record = await asyncio.to_thread(self._load, sandbox_id)
        session = self._sessions.pop(sandbox_id, None)
        if session is None:
            state = await self._state(record)
            if await self._exists(state) is not False:
                client = await self._client()
                with sdk_errors(self.backend_id, sandbox_id):
                    session = await client.resume(state)
        # Drop the record first: a half-deleted sandbox then no longer shows up.
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._record_path(sandbox_id).unlink)
        try:
            if session is not None:
                await self._delete(session, sandbox_id)
        finally:
            await self._forget(sandbox_id)
        log.info("destroyed %s sandbox %s", self.name, sandbox_id)

    async def aclose(self) -> None:
        self._sessions.clear()
