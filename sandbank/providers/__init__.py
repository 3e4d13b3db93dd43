"""The provider interface, the registry, and the built-in providers (imported lazily)."""

from sandbank.providers.base import (
    Capabilities,
    ExecResult,
    FileEntry,
    Provider,
    Sandbox,
    SandboxInfo,
    SandboxStatus,
)
from sandbank.providers.registry import ProviderSpec, get_provider, list_providers

__all__ = [
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
]
