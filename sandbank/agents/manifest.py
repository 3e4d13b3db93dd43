"""Conversions between the SDK's ``Manifest`` and sandbank's, with a clear error for the rest.

What maps: the root (``/workspace``, where every sandbank workspace is), the environment
(plain values), one user (``Manifest.user``) and inline files (``File``/``Dir`` entries with
the SDK's default permissions, as ``{path: bytes}``). Image, resources and network have no
SDK field; they travel in ``SandbankClientOptions.manifest``.
"""

from __future__ import annotations

from pathlib import Path

from agents.sandbox import Manifest as SdkManifest
from agents.sandbox.entries import BaseEntry, Dir, File, Mount
from agents.sandbox.manifest import EnvEntry, Environment, StrEnvValue
from agents.sandbox.types import User

from sandbank.errors import ManifestError
from sandbank.manifest import Manifest
from sandbank.providers.base import WORKSPACE, normalize_path

__all__ = ["check_runnable", "from_sdk_manifest", "to_sdk_manifest"]

_DEFAULT_PERMISSIONS = File(content=b"").permissions


def check_runnable(sdk: SdkManifest) -> None:
    """Raise ``ManifestError`` unless a sandbank sandbox can hold this SDK manifest."""
    if sdk.root != WORKSPACE:
        raise ManifestError(
            f"root {sdk.root!r}: a sandbank workspace is always at {WORKSPACE}; "
            f"set Manifest(root={WORKSPACE!r}) or leave root at its default"
        )
    if sdk.extra_path_grants:
        raise ManifestError(
            "extra_path_grants: a sandbank sandbox reaches only its workspace; "
            "copy what the agent needs into the workspace instead"
        )
    for path, entry in sdk.iter_entries():
        if isinstance(entry, Mount):
            raise ManifestError(
                f"entries.{path}: {type(entry).__name__} mounts are not supported on sandbank "
                f"sandboxes; copy the data in, or read it from the object store in a command"
            )


def from_sdk_manifest(sdk: SdkManifest) -> tuple[Manifest, dict[str, bytes]]:
    """Our manifest (environment, user) and the inline files of an SDK manifest."""
    check_runnable(sdk)
    if sdk.groups:
        raise ManifestError("groups: sandbank manifests have no groups; remove them")
    if len(sdk.users) > 1:
        names = [u.name for u in sdk.users]
        raise ManifestError(f"users: sandbank runs commands as one user, not {names}")
    env: dict[str, str] = {}
    for name, value in sdk.environment.value.items():
        env[name] = _plain_env(name, value)
    files: dict[str, bytes] = {}
    for path, entry in sdk.entries.items():
        _collect(Path(path), entry, files)
    data = {"env": env, "user": sdk.users[0].name if sdk.users else None}
    return Manifest.parse(data), files


def to_sdk_manifest(manifest: Manifest, files: dict[str, bytes] | None = None) -> SdkManifest:
    """An SDK manifest with our environment, user and ``files`` (workspace path -> bytes)."""
    if manifest.workdir != ".":
        raise ManifestError(
            f"workdir {manifest.workdir!r}: SDK commands start at the workspace root; "
            f"leave workdir at '.' (the model's shell tool takes a workdir per command)"
        )
    entries: dict[str | Path, BaseEntry] = {}
    for path, content in (files or {}).items():
        rel = normalize_path(path)
        if rel == ".":
            raise ManifestError(f"files.{path}: the workspace root is not a file")
        entries[rel] = File(content=content)
    return SdkManifest(
        root=WORKSPACE,
        entries=entries,
        environment=Environment(value=dict(manifest.env)),
        users=[User(name=manifest.user)] if manifest.user else [],
    )


def _plain_env(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, EnvEntry) and not value.ephemeral:
        value = value.value
    if isinstance(value, StrEnvValue):
        return value.value
    raise ManifestError(
        f"environment.{name}: {type(value).__name__} values (resolved at use, or ephemeral) do "
        f"not map to a sandbank manifest; give the value as a plain string"
    )


def _collect(path: Path, entry: BaseEntry, files: dict[str, bytes]) -> None:
    where = f"entries.{path.as_posix()}"
    if entry.ephemeral or entry.group is not None:
        raise ManifestError(f"{where}: ephemeral entries and entry groups do not map; drop them")
    if isinstance(entry, File):
        if entry.permissions != _DEFAULT_PERMISSIONS:
            raise ManifestError(f"{where}: custom permissions do not map; leave the default")
        files[normalize_path(path.as_posix())] = entry.content
    elif isinstance(entry, Dir) and entry.children:
        for child, sub in entry.children.items():
            _collect(path / Path(child), sub, files)
    else:
        raise ManifestError(
            f"{where}: {type(entry).__name__} entries do not map to sandbank manifest files "
            f"(only File and non-empty Dir do); the SDK still applies them in a sandbank session"
        )
