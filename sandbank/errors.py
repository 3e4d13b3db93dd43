"""Every error sandbank raises, under one root.

Each error says what happened and what to do next, and carries ``retryable``: whether
trying the same call again can help (a durable worker uses it to decide on retries).

    SandbankError
    ├── ConfigurationError          bad input from the caller
    │   ├── ManifestError           the manifest does not validate
    │   ├── WorkspacePathError      a path leaves the workspace
    │   ├── SecretUnavailable       a manifest secret cannot be read on this worker
    │   └── PathNotFound            no file at that path (also a FileNotFoundError)
    ├── RegistryError               provider lookup failed
    │   └── ProviderConflict        two distributions claim one provider name
    ├── ProviderUnavailable         SDK missing, daemon down (install hint in the message)
    ├── ProviderError               any other provider failure, mapped at its boundary
    ├── NotSupported                the provider lacks a capability
    ├── SandboxNotFound             no such sandbox
    ├── SandboxClosed               your code closed it
    ├── SandboxLost                 something else destroyed it
    ├── ExecTimeout                 a command ran out of time (carries the partial output)
    └── SnapshotError               snapshot store problems (see sandbank.snapshots)
"""

from __future__ import annotations

from sandbank._result import ExecResult

__all__ = [
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
]


class SandbankError(Exception):
    """Root of every sandbank error. ``retryable`` says whether retrying can help."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ConfigurationError(SandbankError):
    """The caller asked for something invalid; fix the input, do not retry."""


class ManifestError(ConfigurationError):
    """The manifest does not validate; the message names the field."""


class WorkspacePathError(ConfigurationError):
    """A path resolves outside the workspace (``..``, absolute, or through a symlink)."""

    def __init__(self, path: str, reason: str = "resolves outside the workspace") -> None:
        super().__init__(
            f"path {path!r} {reason}; "
            "use a path relative to the workspace root that stays inside it"
        )
        self.path = path


class SecretUnavailable(ConfigurationError):
    """A secret named by the manifest cannot be read where the command runs."""

    def __init__(self, name: str, reference: str, reason: str) -> None:
        super().__init__(
            f"secret {name!r} ({reference}) is unavailable: {reason}; make it readable by "
            f"the process that runs the sandbox (the worker), or change the manifest's reference"
        )
        self.name = name
        self.reference = reference


class PathNotFound(ConfigurationError, FileNotFoundError):
    """Nothing exists at this workspace path."""

    def __init__(self, path: str, sandbox_id: str = "") -> None:
        where = f" in sandbox {sandbox_id!r}" if sandbox_id else ""
        super().__init__(f"no such file or directory{where}: {path!r}")
        self.path = path


class RegistryError(SandbankError):
    """A provider name could not be resolved."""


class ProviderConflict(RegistryError):
    """Two installed distributions register the same provider name."""


class ProviderUnavailable(SandbankError):
    """The provider cannot be used here: its SDK is missing or its service is unreachable."""

    retryable = True


class ProviderError(SandbankError):
    """A provider call failed for a reason without a more specific error."""


class NotSupported(SandbankError):
    """The provider does not declare the capability the call needs."""

    def __init__(self, provider: str, capability: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"provider {provider!r} does not support {capability}{extra}; "
            f"check `Provider.capabilities` before calling, or use a provider that declares it"
        )
        self.provider = provider
        self.capability = capability


class SandboxNotFound(SandbankError):
    """No sandbox with this id exists (it was destroyed, or never created here)."""

    def __init__(self, provider: str, sandbox_id: str) -> None:
        super().__init__(
            f"{provider} sandbox {sandbox_id!r} not found; "
            f"list live sandboxes with `sandbank sandbox ls --provider {provider}`"
        )
        self.provider = provider
        self.sandbox_id = sandbox_id


class SandboxClosed(SandbankError):
    """The sandbox was closed by this process; attach again to use it."""

    def __init__(self, sandbox_id: str) -> None:
        super().__init__(
            f"sandbox {sandbox_id!r} is closed; attach to it again with provider.attach(id)"
        )
        self.sandbox_id = sandbox_id


class SandboxLost(SandbankError):
    """The sandbox died under us (container killed, provider failure)."""

    retryable = True

    def __init__(self, sandbox_id: str, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"sandbox {sandbox_id!r} was lost{extra}; rebuild it from its last snapshot"
        )
        self.sandbox_id = sandbox_id


class ExecTimeout(SandbankError):
    """A command exceeded its timeout and was killed; ``result`` holds what it printed."""

    def __init__(self, cmd: object, timeout: float, result: ExecResult) -> None:
        super().__init__(
            f"command {cmd!r} timed out after {timeout:g}s and was killed; "
            f"raise the timeout or make the command finish sooner (partial output in .result)"
        )
        self.timeout = timeout
        self.result = result


class SnapshotError(SandbankError):
    """Root of snapshot store errors."""
