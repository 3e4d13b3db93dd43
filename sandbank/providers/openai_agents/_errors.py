"""The one boundary where the OpenAI Agents SDK's exceptions become sandbank errors.

Every exception class of the SDK's ``agents.sandbox`` package is named in ``SDK_ERRORS``
with the sandbank error it becomes (a test keeps that list complete for each SDK version);
a subclass the list does not name maps like its nearest named base class.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

from sandbank.errors import (
    ConfigurationError,
    ExecTimeout,
    PathNotFound,
    ProviderError,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SnapshotError,
    WorkspacePathError,
)
from sandbank.providers.base import ExecResult

__all__ = ["SDK_ERRORS", "map_sdk_error", "sdk_errors"]

Kind = Literal["path", "missing", "config", "lost", "timeout", "snapshot", "provider"]

SDK_ERRORS: dict[str, Kind] = {
    # agents.sandbox.errors
    "SandboxError": "provider",
    "ConfigurationError": "config",
    "SandboxRuntimeError": "provider",
    "ArtifactError": "provider",
    "SnapshotError": "snapshot",
    "ApplyPatchError": "config",
    "InvalidManifestPathError": "path",
    "InvalidCompressionSchemeError": "config",
    "ExposedPortUnavailableError": "provider",
    "ExecFailureError": "provider",
    "ExecNonZeroError": "provider",
    "ExecTimeoutError": "timeout",
    "ExecTransportError": "provider",
    "PtySessionNotFoundError": "provider",
    "WorkspaceIOError": "provider",
    "ApplyPatchPathError": "path",
    "ApplyPatchDiffError": "config",
    "ApplyPatchFileNotFoundError": "missing",
    "ApplyPatchDecodeError": "config",
    "WorkspaceReadNotFoundError": "missing",
    "WorkspaceArchiveReadError": "provider",
    "WorkspaceArchiveWriteError": "provider",
    "WorkspaceWriteTypeError": "config",
    "WorkspaceStopError": "provider",
    "WorkspaceStartError": "provider",
    "WorkspaceRootNotFoundError": "lost",
    "LocalArtifactError": "config",
    "LocalFileReadError": "config",
    "LocalDirReadError": "config",
    "LocalChecksumError": "provider",
    "GitArtifactError": "provider",
    "GitMissingInImageError": "config",
    "GitCloneError": "provider",
    "GitSubpathError": "config",
    "GitCopyError": "provider",
    "MountArtifactError": "provider",
    "MountToolMissingError": "config",
    "MountConfigError": "config",
    "MountCommandError": "provider",
    "SkillsConfigError": "config",
    "SnapshotPersistError": "snapshot",
    "SnapshotRestoreError": "snapshot",
    "SnapshotNotRestorableError": "snapshot",
    # agents.sandbox.util.tar_utils and session.archive_extraction
    "UnsafeTarMemberError": "path",
    "UnsafeZipMemberError": "path",
    "ArchiveResourceLimitError": "config",
    # agents.sandbox.session.dependencies
    "DependenciesError": "config",
    "DependenciesBindingError": "config",
    "DependenciesMissingDependencyError": "config",
    # private helpers that can surface through the public API
    "_IncompleteCreateError": "provider",
    "_InvalidRawMountManifestError": "config",
}


def _sdk_kind(exc: BaseException) -> Kind | None:
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("agents.") and cls.__name__ in SDK_ERRORS:
            return SDK_ERRORS[cls.__name__]
    return None


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    context = getattr(exc, "context", None)
    details = ""
    if isinstance(context, dict):
        shown = {k: v for k, v in context.items() if k in ("path", "reason", "stderr", "command")}
        if shown:
            details = " " + ", ".join(f"{k}={str(v)[:200]!r}" for k, v in shown.items())
    return f"{type(exc).__name__}: {message}{details}"


def map_sdk_error(
    exc: BaseException, *, backend: str, sandbox_id: str = "", path: str | None = None
) -> SandbankError:
    """The sandbank error for an exception raised by the SDK or by one of its clients.

    ``path`` is the workspace path the call was about, ``sandbox_id`` the sandbox.
    """
    if isinstance(exc, SandbankError):
        return exc
    where = f"the Agents SDK's {backend} client"
    kind = _sdk_kind(exc)
    text = _describe(exc)
    retryable = getattr(exc, "retryable", None)
    if kind == "timeout":
        timeout = getattr(exc, "timeout_s", None) or 0.0
        command = (getattr(exc, "context", None) or {}).get("command", "")
        return ExecTimeout(command, float(timeout), ExecResult(exit_code=137))
    if kind == "missing":
        return PathNotFound(path or str(getattr(exc, "path", "") or ""), sandbox_id)
    if kind == "path":
        return WorkspacePathError(path or "", f"was refused by {where} ({text})")
    if kind == "lost":
        return SandboxLost(sandbox_id, f"{where} reports: {text}")
    if kind == "config":
        return ConfigurationError(f"{where} refused the request ({text}); fix the input")
    if kind == "snapshot":
        return SnapshotError(f"{where} failed a snapshot ({text})", retryable=bool(retryable))
    if kind == "provider":
        return ProviderError(f"{where} failed ({text})", retryable=bool(retryable))
    if type(exc).__module__.split(".")[0] in ("docker", "requests"):
        from sandbank.providers.docker import map_docker_error

        return map_docker_error(exc, sandbox_id=sandbox_id or None, lost=bool(sandbox_id))
    if isinstance(exc, FileNotFoundError) and path is not None:
        return PathNotFound(path, sandbox_id)
    if isinstance(exc, ImportError):
        return ProviderUnavailable(f"{where} could not import {exc.name or exc}", retryable=False)
    if isinstance(exc, ValueError | TypeError):
        return ConfigurationError(f"{where} refused the request ({text}); fix the input")
    if isinstance(exc, OSError | TimeoutError):
        return ProviderError(f"{where} failed ({text}); retry", retryable=True)
    return ProviderError(f"unexpected failure in {where}: {exc!r}", retryable=False)


@contextlib.contextmanager
def sdk_errors(backend: str, sandbox_id: str = "", path: str | None = None) -> Iterator[None]:
    """Translate exceptions raised inside the block with ``map_sdk_error``."""
    try:
        yield
    except SandbankError:
        raise
    except Exception as exc:
        raise map_sdk_error(exc, backend=backend, sandbox_id=sandbox_id, path=path) from exc
