"""sandbank: durable, portable sandboxes for AI agents.

Names are imported on first use, so importing sandbank (for example as the pytest plugin
every test run of an installing project loads) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbank.errors import (
        ConfigurationError,
        ExecTimeout,
        ManifestError,
        NotSupported,
        PathNotFound,
        ProviderConflict,
        ProviderError,
        ProviderUnavailable,
        RegistryError,
        SandbankError,
        SandboxClosed,
        SandboxLost,
        SandboxNotFound,
        SecretUnavailable,
        SnapshotError,
        WorkspacePathError,
    )
    from sandbank.manifest import (
        Image,
        Manifest,
        Resources,
        SetupFailed,
        SourceError,
        create_sandbox,
    )
    from sandbank.providers import (
        Capabilities,
        ExecResult,
        FileEntry,
        Provider,
        ProviderSpec,
        Sandbox,
        SandboxInfo,
        SandboxStatus,
        get_provider,
        list_providers,
    )

_ERRORS = "sandbank.errors"
_LOCATIONS = {
    **dict.fromkeys(
        [
            "ConfigurationError",
            "ExecTimeout",
            "ManifestError",
            "NotSupported",
            "PathNotFound",
            "ProviderConflict",
            "ProviderError",
            "ProviderUnavailable",
            "RegistryError",
            "SandbankError",
            "SandboxClosed",
            "SandboxLost",
            "SandboxNotFound",
            "SecretUnavailable",
            "SnapshotError",
            "WorkspacePathError",
        ],
        _ERRORS,
    ),
    **dict.fromkeys(
        ["Image", "Manifest", "Resources", "SetupFailed", "SourceError", "create_sandbox"],
        "sandbank.manifest",
    ),
    **dict.fromkeys(
        [
            "Capabilities",
            "ExecResult",
            "FileEntry",
            "Provider",
            "ProviderSpec",
            "Sandbox",
            "SandboxInfo",
            "SandboxStatus",
            "get_provider",
            "list_providers",
        ],
        "sandbank.providers",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbank' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "ConfigurationError",
    "ExecResult",
    "ExecTimeout",
    "FileEntry",
    "Image",
    "Manifest",
    "ManifestError",
    "NotSupported",
    "PathNotFound",
    "Provider",
    "ProviderConflict",
    "ProviderError",
    "ProviderSpec",
    "ProviderUnavailable",
    "RegistryError",
    "Resources",
    "SandbankError",
    "Sandbox",
    "SandboxClosed",
    "SandboxInfo",
    "SandboxLost",
    "SandboxNotFound",
    "SandboxStatus",
    "SecretUnavailable",
    "SetupFailed",
    "SnapshotError",
    "SourceError",
    "WorkspacePathError",
    "__version__",
    "create_sandbox",
    "get_provider",
    "list_providers",
]
