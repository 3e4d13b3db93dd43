"""The provider interface, the registry, the helpers providers are built from, and the
built-in providers (imported lazily, by the registry).

A provider implements the primitives of ``Provider`` and ``Sandbox`` (see
``docs/providers.md``). A provider whose workspace is a host directory builds on
``HostDirSandbox`` and ``run_process``; one that extracts archives elsewhere checks their
members with ``TarGuard``.
"""

from sandbank.providers._tar import TarGuard, member_path
from sandbank.providers.base import (
    WORKSPACE,
    Capabilities,
    ExecRequest,
    ExecResult,
    FileEntry,
    OutputCallback,
    OutputCollector,
    Provider,
    Sandbox,
    SandboxInfo,
    SandboxStatus,
    normalize_path,
)
from sandbank.providers.hostdir import HostDirectory, HostDirSandbox
from sandbank.providers.process import ProcessGroups, run_process, sandbox_env
from sandbank.providers.registry import ProviderSpec, get_provider, list_providers

__all__ = [
    "WORKSPACE",
    "Capabilities",
    "ExecRequest",
    "ExecResult",
    "FileEntry",
    "HostDirSandbox",
    "HostDirectory",
    "OutputCallback",
    "OutputCollector",
    "ProcessGroups",
    "Provider",
    "ProviderSpec",
    "Sandbox",
    "SandboxInfo",
    "SandboxStatus",
    "TarGuard",
    "get_provider",
    "list_providers",
    "member_path",
    "normalize_path",
    "run_process",
    "sandbox_env",
]
