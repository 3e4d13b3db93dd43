"""The OpenAI Agents SDK's sandbox clients as sandbank providers (``oa-docker``, ``oa-modal``...).

Each registered provider names one SDK client; ``AgentsSdkProvider(client=...)`` wraps any
other. Importing this package imports neither the SDK nor a cloud SDK: a provider imports
them when it is built, and a missing one becomes ``ProviderUnavailable`` with the
``pip install`` line that fixes it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from typing import Any

from sandbank.errors import ConfigurationError, ProviderError
from sandbank.manifest import Manifest
from sandbank.providers.base import Capabilities

from ._errors import SDK_ERRORS, map_sdk_error, sdk_errors
from ._provider import AGENTS_HINT, AgentsSdkProvider
from ._sandbox import MARKER_ENV, AgentsSdkSandbox

__all__ = [
    "AGENTS_HINT",
    "LABEL_ID",
    "SDK_ERRORS",
    "AgentsSdkProvider",
    "AgentsSdkSandbox",
    "BlaxelAgentsProvider",
    "CloudflareAgentsProvider",
    "DaytonaAgentsProvider",
    "DockerAgentsProvider",
    "E2BAgentsProvider",
    "ModalAgentsProvider",
    "RunloopAgentsProvider",
    "UnixLocalAgentsProvider",
    "VercelAgentsProvider",
    "map_sdk_error",
    "sdk_errors",
]

_CLOUD = "agents.extensions.sandbox"
_IMAGE_NEEDS = (
    "sh, tail, cat, cp, head, mkdir, rm, chmod and tar (the SDK), and GNU realpath and find "
    "or python3 (sandbank's path checks and listings): Debian-based images have them all"
)
LABEL_ID = "sandbank.oa.id"
"""The label on every oa-docker container: its sandbank sandbox id."""


class UnixLocalAgentsProvider(AgentsSdkProvider):
    """The SDK's ``unix_local`` client: a host temp directory, commands unconfined on the host.

    The client is built without the host's environment (only PATH, locale, TZ and the
    like pass), so host secrets do not reach commands.
    """

    name = "oa-unix_local"
    backend_id = "unix_local"
    client_module = "agents.sandbox.sandboxes.unix_local"
    client_class = "UnixLocalSandboxClient"
    options_class = "UnixLocalSandboxClientOptions"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._client_kwargs.setdefault("inherit_host_environment", False)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(host_path=True)

    @property
    def isolation(self) -> str:
        return "none (the Agents SDK's unix_local runs commands unconfined on the host)"

    async def _exists(self, state: Any) -> bool | None:
        return await asyncio.to_thread(os.path.isdir, str(state.manifest.root))

    async def _forget(self, sandbox_id: str) -> None:
        # The SDK runs commands as plain host processes and does not track them: kill those
        # still carrying this sandbox's marker (a process that changed its environment
        # escapes this; unix_local is not isolation). The staging directory is on this
        # host too: remove it, also when the workspace was already gone.
        await asyncio.to_thread(_kill_marked, f"{MARKER_ENV}={sandbox_id}".encode())
        await asyncio.to_thread(shutil.rmtree, self._stage_dir(sandbox_id), ignore_errors=True)


class DockerAgentsProvider(AgentsSdkProvider):
    """The SDK's ``docker`` client: one container per sandbox (``image=``, or the manifest's).

    The image needs what the SDK's client runs in it (``tail`` is its entry point) and what
    sandbank's path checks and listings run: see ``_IMAGE_NEEDS``. The SDK pulls a missing
    image.
    """

    name = "oa-docker"
    backend_id = "docker"
    client_module = "agents.sandbox.sandboxes.docker"
    client_class = "DockerSandboxClient"
    options_class = "DockerSandboxClientOptions"
    sdk_extra = "docker"

    def __init__(self, *, image: str = "python:3.12-slim", **options: Any) -> None:
        super().__init__(**options)
        self.image = image

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(network_policy=True, image=True)

    @property
    def isolation(self) -> str:
        return "docker container (the Agents SDK's docker client; no resource limits)"

    def _make_client(self) -> Any:
        import docker

        engine = docker.from_env(**self._client_kwargs)
        return self._module.DockerSandboxClient(engine)

    def _client_options(self, manifest: Manifest, sandbox_id: str) -> Any:
        fields = dict(self._options or {})
        fields["labels"] = {**fields.get("labels", {}), LABEL_ID: sandbox_id}
        fields.setdefault("image", manifest.image.for_provider(self.name, self.image))
        fields.setdefault("network_mode", None if manifest.network else "none")
        return self._module.DockerSandboxClientOptions(**fields)

    async def check(self) -> None:
        client = await self._client()
        with sdk_errors(self.backend_id):
            await asyncio.to_thread(client.docker_client.ping)

    async def create(self, manifest: Manifest | dict[str, Any] | None = None) -> AgentsSdkSandbox:
        manifest = self.validate_manifest(manifest)
        try:
            return await super().create(manifest)
        except ProviderError as exc:
            image = manifest.image.for_provider(self.name, self.image)
            if "executable file not found" in str(exc):
                raise ConfigurationError(
                    f"Docker image {image!r} lacks a program the SDK's docker client runs "
                    f"({exc}); use an image with {_IMAGE_NEEDS}"
                ) from exc
            client = await self._client()
            if await asyncio.to_thread(client.image_exists, image):
                raise
            raise ConfigurationError(
                f"Docker image {image!r} is not on the engine and the SDK could not pull it "
                f"({exc}); build or pull it first, or pass another image"
            ) from exc

    async def aclose(self) -> None:
        await super().aclose()
        client, self._client_obj = self._client_obj, None
        if client is not None:
            await asyncio.to_thread(client.docker_client.close)

    async def _exists(self, state: Any) -> bool | None:
        client = await self._client()
        with sdk_errors(self.backend_id):
            found = await asyncio.to_thread(client.get_container, state.container_id)
        return found is not None

    async def _before_delete(self, session: Any, sandbox_id: str) -> None:
        # The SDK's container runs `tail` as PID 1, which ignores SIGTERM: the SDK's stop
        # would wait 10 s for every sandbox. Kill it; the SDK's delete then removes it.
        container = getattr(session._inner, "_container", None)
        if container is not None:
            with sdk_errors(self.backend_id):
                try:
                    await asyncio.to_thread(container.kill)
                except Exception as exc:  # already stopped or gone: delete copes
                    if "is not running" not in str(exc) and "No such" not in str(exc):
                        raise


def _kill_marked(marker: bytes) -> None:
    """SIGKILL every host process whose environment holds ``marker`` (``NAME=value``)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
            os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone already, or not ours to read


def _hosted(backend: str, client: str, extra: str, doc: str) -> type[AgentsSdkProvider]:
    """A provider class for one of the SDK's hosted clients (``agents.extensions.sandbox``)."""
    prefix = client.removesuffix("SandboxClient")
    cls = type(
        f"{prefix}AgentsProvider",
        (AgentsSdkProvider,),
        {
            "__doc__": doc,
            "__module__": __name__,
            "name": f"oa-{backend}",
            "backend_id": backend,
            "client_module": f"{_CLOUD}.{backend}",
            "client_class": client,
            "options_class": f"{prefix}SandboxClientOptions",
            "sdk_extra": extra,
        },
    )
    return cls


ModalAgentsProvider = _hosted(
    "modal", "ModalSandboxClient", "modal", "The SDK's ``modal`` client (Modal sandboxes)."
)
E2BAgentsProvider = _hosted("e2b", "E2BSandboxClient", "e2b", "The SDK's ``e2b`` client.")
DaytonaAgentsProvider = _hosted(
    "daytona", "DaytonaSandboxClient", "daytona", "The SDK's ``daytona`` client."
)
RunloopAgentsProvider = _hosted(
    "runloop", "RunloopSandboxClient", "runloop", "The SDK's ``runloop`` client (devboxes)."
)
BlaxelAgentsProvider = _hosted(
    "blaxel", "BlaxelSandboxClient", "blaxel", "The SDK's ``blaxel`` client."
)
VercelAgentsProvider = _hosted(
    "vercel", "VercelSandboxClient", "vercel", "The SDK's ``vercel`` client."
)
CloudflareAgentsProvider = _hosted(
    "cloudflare",
    "CloudflareSandboxClient",
    "cloudflare",
    "The SDK's ``cloudflare`` client (a Sandbox SDK worker you deploy; ``worker_url`` in "
    "``options``).",
)
