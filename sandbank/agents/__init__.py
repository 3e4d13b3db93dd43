"""The OpenAI Agents SDK on sandbank: any sandbank sandbox as the SDK's sandbox, and models.

    from sandbank.agents import SandbankSandboxClient, model_for
    client = SandbankSandboxClient("docker", store=store)
    RunConfig(model=model_for(name), sandbox=SandboxRunConfig(client=client))

``import sandbank`` never loads the SDK; importing this package without it raises
``ProviderUnavailable`` with ``pip install 'sandbank[agents]'``. Its names load lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sandbank.agents import _sdk  # noqa: F401  (ProviderUnavailable when the SDK is missing)

if TYPE_CHECKING:
    from sandbank.agents._files import FileTooLarge
    from sandbank.agents.client import SandbankSandboxClient
    from sandbank.agents.manifest import SecretRef, from_sdk_manifest, to_sdk_manifest
    from sandbank.agents.models import ScriptedAgentModel, model_for
    from sandbank.agents.session import SandbankSandboxSession
    from sandbank.agents.snapshot import SandbankSnapshot
    from sandbank.agents.state import SandbankClientOptions, SandbankSessionState

__all__ = [
    "FileTooLarge",
    "SandbankClientOptions",
    "SandbankSandboxClient",
    "SandbankSandboxSession",
    "SandbankSessionState",
    "SandbankSnapshot",
    "ScriptedAgentModel",
    "SecretRef",
    "from_sdk_manifest",
    "model_for",
    "to_sdk_manifest",
]

_WHERE = {
    "FileTooLarge": "_files",
    "SandbankClientOptions": "state",
    "SandbankSandboxClient": "client",
    "SandbankSandboxSession": "session",
    "SandbankSessionState": "state",
    "SandbankSnapshot": "snapshot",
    "ScriptedAgentModel": "models",
    "SecretRef": "manifest",
    "from_sdk_manifest": "manifest",
    "model_for": "models",
    "to_sdk_manifest": "manifest",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbank.agents' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sandbank.agents.{module}"), name)
