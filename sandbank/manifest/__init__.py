"""The portable, provider-neutral description of a workspace, and building sandboxes from it.

``create_sandbox`` (from ``sandbank.manifest.materialize``, imported on first use) creates a
sandbox with the manifest's contents and setup, cached in a snapshot store.
"""

from typing import Any

from sandbank.manifest.contents import GitSource, SetupCommand, WorkspaceDir, WorkspaceFile
from sandbank.manifest.errors import SetupFailed, SourceError
from sandbank.manifest.model import Image, Manifest, Resources

__all__ = [
    "GitSource",
    "Image",
    "Manifest",
    "Resources",
    "SetupCommand",
    "SetupFailed",
    "SourceError",
    "WorkspaceDir",
    "WorkspaceFile",
    "create_sandbox",
]


def __getattr__(name: str) -> Any:
    if name == "create_sandbox":  # it imports the providers, which import this package
        from sandbank.manifest.materialize import create_sandbox

        return create_sandbox
    raise AttributeError(f"module 'sandbank.manifest' has no attribute {name!r}")
