"""``SandbankSandboxClient``: the SDK's sandbox client over any sandbank provider.

    client = SandbankSandboxClient(get_provider("docker"), store=await SnapshotStore.open(url))
    run_config = RunConfig(sandbox=SandboxRunConfig(client=client))

With a store, the workspace of every session is snapshotted there (incrementally) when a
run ends, and a resumed session on any host, or any provider, gets it back.
"""

from __future__ import annotations

import contextlib
import uuid

from agents.sandbox import Manifest as SdkManifest
from agents.sandbox.session import BaseSandboxClient, SandboxSession, SandboxSessionState
from agents.sandbox.snapshot import (
    LocalSnapshotSpec,
    NoopSnapshotSpec,
    SnapshotBase,
    SnapshotSpec,
    resolve_snapshot,
)

from sandbank.agents.manifest import check_runnable
from sandbank.agents.session import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MAX_READ_BYTES,
    SandbankSandboxSession,
)
from sandbank.agents.snapshot import SandbankSnapshot, StoreSnapshots
from sandbank.agents.state import SandbankClientOptions, SandbankSessionState
from sandbank.errors import ConfigurationError, SandboxNotFound
from sandbank.providers.base import Provider, Sandbox, SandboxStatus
from sandbank.providers.registry import get_provider
from sandbank.snapshots import SnapshotStore

__all__ = ["SandbankSandboxClient"]


class SandbankSandboxClient(BaseSandboxClient[SandbankClientOptions | None]):
    """Creates, resumes and deletes SDK sessions on sandboxes of one sandbank provider.

    ``store``: where session workspaces are snapshotted. A run that names no snapshot, or a
    ``LocalSnapshotSpec`` (the SDK's default, a tar on this host's disk), uses the store;
    ``NoopSnapshotSpec`` turns snapshots off; other specs and snapshots are used as given.
    ``max_read_bytes`` bounds a whole-file read (``FileTooLarge`` above it) and
    ``max_output_bytes`` the output of a command handed back to the agent.
    """

    backend_id = "sandbank"
    supports_default_options = True

    def __init__(
        self,
        provider: Provider | str = "local",
        *,
        store: SnapshotStore | None = None,
        max_read_bytes: int = DEFAULT_MAX_READ_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        self.provider = get_provider(provider) if isinstance(provider, str) else provider
        self.store = store
        self._snapshots = StoreSnapshots(store) if store is not None else None
        self.max_read_bytes = max_read_bytes
        self.max_output_bytes = max_output_bytes

    def __repr__(self) -> str:
        return f"<SandbankSandboxClient {self.provider.name!r} store={self.store is not None}>"

    async def create(
        self,
        *,
        snapshot: SnapshotSpec | SnapshotBase | None = None,
        manifest: SdkManifest | None = None,
        options: SandbankClientOptions | None = None,
    ) -> SandboxSession:
        manifest = manifest if manifest is not None else SdkManifest()
        check_runnable(manifest)
        self._validate_manifest_for_create(manifest)
        session_id = uuid.uuid4()
        state = SandbankSessionState(
            session_id=session_id,
            snapshot=self._snapshot_for(snapshot, str(session_id)),
            manifest=manifest,
            provider=self.provider.name,
            sandbox_manifest=options.manifest if options is not None else {},
        )
        return self._wrap_session(self._session(state))

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        """Reattach to the state's sandbox if it is still there; else a new sandbox is made at
        ``start`` and its workspace restored from the state's snapshot."""
        if not isinstance(state, SandbankSessionState):
            raise ConfigurationError(
                f"cannot resume a {state.type!r} session with the sandbank client; "
                f"resume it with the client that created it"
            )
        box = await self._attach(state)
        session = self._session(state, box)
        if box is not None:
            session._set_start_state_preserved(True, system=True)
        else:
            state.sandbox_id = None
        return self._wrap_session(session)

    async def delete(self, session: SandboxSession) -> SandboxSession:
        """Destroy the session's sandbox, unless it was handed in (``session_for``)."""
        state = session.state
        if isinstance(state, SandbankSessionState) and state.owns_sandbox and state.sandbox_id:
            with contextlib.suppress(SandboxNotFound):
                await self.provider.destroy(state.sandbox_id)
        return session

    def session_for(self, box: Sandbox, manifest: SdkManifest | None = None) -> SandboxSession:
        """An SDK session on a live sandbox, for ``SandboxRunConfig(session=...)``.

        The caller keeps the sandbox's lifecycle: no run stops, shuts down or deletes it.
        """
        manifest = manifest if manifest is not None else SdkManifest()
        check_runnable(manifest)
        session_id = uuid.uuid4()
        state = SandbankSessionState(
            session_id=session_id,
            snapshot=self._snapshot_for(None, str(session_id)),
            manifest=manifest,
            provider=box.provider.name,
            sandbox_id=box.id,
            owns_sandbox=False,
            workspace_root_ready=True,
        )
        session = self._session(state, box)
        session._set_start_state_preserved(True, system=True)
        return self._wrap_session(session)

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        return self._deserialize_session_state_payload(payload, SandbankSessionState)

    def _session(
        self, state: SandbankSessionState, box: Sandbox | None = None
    ) -> SandbankSandboxSession:
        return SandbankSandboxSession(
            state,
            provider=self.provider,
            box=box,
            snapshots=self._snapshots,
            max_read_bytes=self.max_read_bytes,
            max_output_bytes=self.max_output_bytes,
        )

    def _snapshot_for(self, spec: SnapshotSpec | SnapshotBase | None, ref: str) -> SnapshotBase:
        if isinstance(spec, SnapshotBase):
            return spec
        if self._snapshots is not None and (spec is None or isinstance(spec, LocalSnapshotSpec)):
            return SandbankSnapshot(id=ref)
        return resolve_snapshot(spec if spec is not None else NoopSnapshotSpec(), ref)

    async def _attach(self, state: SandbankSessionState) -> Sandbox | None:
        if not state.sandbox_id or state.provider != self.provider.name:
            return None
        try:
            box = await self.provider.attach(state.sandbox_id)
        except SandboxNotFound:
            return None
        if await box.status() == SandboxStatus.LOST:
            await box.aclose()
            return None
        return box
