"""What the SDK stores and sends about a sandbank session: small handles, never contents.

The state names the provider, the sandbox and the latest store snapshot; the options carry
the sandbank manifest fields a new sandbox is made with (image, resources, network).
"""

from __future__ import annotations

from typing import Any, Literal

from agents.sandbox.session import BaseSandboxClientOptions, SandboxSessionState
from pydantic import Field, field_validator

from sandbank.manifest import Manifest

__all__ = ["SandbankClientOptions", "SandbankSessionState"]


def _checked_manifest(value: dict[str, Any]) -> dict[str, Any]:
    Manifest.parse(value)  # ManifestError names the bad field
    return value


class SandbankClientOptions(BaseSandboxClientOptions):
    """Per-run options: ``manifest`` holds sandbank manifest fields for new sandboxes.

    They travel with the run (and into Temporal history): put no secrets in them.
    """

    type: Literal["sandbank"] = "sandbank"
    manifest: dict[str, Any] = Field(default_factory=dict)

    _check = field_validator("manifest")(_checked_manifest)


class SandbankSessionState(SandboxSessionState):
    """The SDK session state of a sandbank sandbox."""

    type: Literal["sandbank"] = "sandbank"
    provider: str = ""
    sandbox_id: str | None = None
    owns_sandbox: bool = True
    """False for a sandbox handed in by the caller: the session never destroys it."""
    sandbox_manifest: dict[str, Any] = Field(default_factory=dict)
    """The sandbank manifest (JSON fields) a replacement sandbox is created with."""

    _check = field_validator("sandbox_manifest")(_checked_manifest)
