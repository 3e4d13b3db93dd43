"""Conversions between the SDK's ``Manifest`` and sandbank's, with a clear error for the rest.

What maps, both ways (the same in openai-agents 0.22.3 and 0.24.0, whose entry classes are
identical):

- ``File`` <-> ``files`` (``text`` when the bytes are UTF-8, else ``base64``); ``Dir`` with
  children <-> nested ``files`` (and a ``dirs`` entry when its mode is not 0o755); an empty
  ``Dir`` or a ``LocalDir`` without ``src`` <-> an empty ``dirs`` entry;
- ``LocalFile`` / ``LocalDir`` <-> ``host`` sources (a relative ``src`` is resolved against
  the current directory, the SDK's base directory; the SDK also refuses sources outside
  that directory, which the conversion does not check: pass ``host_roots=[os.getcwd()]``
  to ``create_sandbox`` for the same rule);
- ``GitRepo(host, repo, ref)`` <-> ``git`` (``https://HOST/REPO.git``, the ref, depth 1: the
  SDK always clones one commit);
- permissions <-> ``mode`` (the SDK always sets one: 0o755 by default; sandbank's default
  is 0o644 for files, 0o755 for directories and the host's own mode for host sources);
- plain environment values <-> ``env``; ``SecretRef`` values (resolved at use) <->
  ``secrets``; one user <-> ``user``; the session's exposed ports <-> ``ports``.

Everything else raises ``ManifestError`` naming the field: mounts, ephemeral entries, entry
groups and descriptions, ``GitRepo.subpath``, other resolved-at-use values, more than one
user, groups, and on the way back image, resources, network, setup, exclude, workdir, URL
sources, git sources the SDK cannot clone and modes with setuid/setgid/sticky bits.
"""

from __future__ import annotations

import os
import re
import stat
from base64 import b64encode
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from agents.sandbox import Manifest as SdkManifest
from agents.sandbox.entries import BaseEntry, Dir, File, GitRepo, LocalDir, LocalFile, Mount
from agents.sandbox.manifest import EnvEntry, Environment, EnvValue, StrEnvValue
from agents.sandbox.types import Permissions, User

from sandbank.errors import ManifestError
from sandbank.manifest import Manifest, WorkspaceDir, WorkspaceFile
from sandbank.providers.base import WORKSPACE
from sandbank.secrets import check_reference, resolve_secrets

__all__ = ["SecretRef", "check_runnable", "from_sdk_manifest", "to_sdk_manifest"]

_FILE_MODE = 0o644
_DIR_MODE = 0o755
_GIT_URL = re.compile(r"^https://(?P<host>[A-Za-z0-9.-]+(?::\d+)?)/(?P<repo>[^?#\s]+)\.git$")


class SecretRef(EnvValue):
    """An SDK environment value read at use from a sandbank secret reference.

    ``SecretRef(reference="env:HOST_VAR")`` (or ``file:/path``, or an fsspec URL): only the
    reference travels in the SDK manifest and its session state; it maps to sandbank's
    ``secrets``, which also redacts the value from command output.
    """

    type: Literal["sandbank_secret"] = "sandbank_secret"
    reference: str

    def model_post_init(self, context: object, /) -> None:
        try:
            check_reference(self.reference)
        except ValueError as exc:
            raise ValueError(f"SecretRef reference {exc}") from None

    async def resolve(self) -> str:
        return resolve_secrets({"SecretRef": self.reference})["SecretRef"]


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
                f"entries.{path.as_posix()}: {type(entry).__name__} mounts are not supported on "
                f"sandbank sandboxes; copy the data in, or read it from the object store in a "
                f"command"
            )


def from_sdk_manifest(sdk: SdkManifest, *, exposed_ports: Iterable[int] = ()) -> Manifest:
    """Our manifest for an SDK manifest (and the exposed ports of its client options)."""
    check_runnable(sdk)
    if sdk.groups:
        raise ManifestError("groups: sandbank manifests have no groups; remove them")
    if len(sdk.users) > 1:
        names = [u.name for u in sdk.users]
        raise ManifestError(f"users: sandbank runs commands as one user, not {names}")
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for name, value in sdk.environment.value.items():
        kind, text = _env_value(name, value)
        (env if kind == "env" else secrets)[name] = text
    files: list[dict[str, Any]] = []
    dirs: list[dict[str, Any]] = []
    for path, entry in sdk.entries.items():
        _collect(PurePosixPath(Path(path).as_posix()), entry, files, dirs)
    data = {
        "env": env,
        "secrets": secrets,
        "user": sdk.users[0].name if sdk.users else None,
        "ports": list(exposed_ports),
        "files": files,
        "dirs": dirs,
    }
    return Manifest.parse(data)


def to_sdk_manifest(manifest: Manifest) -> tuple[SdkManifest, tuple[int, ...]]:
    """An SDK manifest with our contents, environment, secrets and user, and our ``ports``
    (the SDK keeps them in its client options, e.g. ``exposed_ports=``)."""
    _refuse_unmapped(manifest)
    entries: dict[str | Path, BaseEntry] = {}
    for i, d in enumerate(manifest.dirs):
        entries[d.path] = _sdk_dir(f"dirs[{i}]", d)
    for i, f in enumerate(manifest.files):
        entries[f.path] = _sdk_file(f"files[{i}]", f)
    environment: dict[str, str | EnvValue | EnvEntry] = dict(manifest.env)
    for name, reference in manifest.secrets.items():
        environment[name] = SecretRef(reference=reference)
    sdk = SdkManifest(
        root=WORKSPACE,
        entries=entries,
        environment=Environment(value=environment),
        users=[User(name=manifest.user)] if manifest.user else [],
    )
    return sdk, tuple(manifest.ports)


# -- SDK -> sandbank ------------------------------------------------------------------------


def _env_value(name: str, value: object) -> tuple[Literal["env", "secrets"], str]:
    where = f"environment.{name}"
    if isinstance(value, EnvEntry):
        if value.description is not None:
            raise ManifestError(f"{where}.description: sandbank manifests have none; drop it")
        if isinstance(value.value, SecretRef):
            return "secrets", value.value.reference
        if value.ephemeral:
            raise ManifestError(
                f"{where}: an ephemeral value is a secret, and a sandbank manifest holds no "
                f"secret values; give SecretRef(reference='env:HOST_VAR') (or 'file:/path', "
                f"or a URL) instead"
            )
        value = value.value
    if isinstance(value, str):
        return "env", value
    if isinstance(value, StrEnvValue):
        return "env", value.value
    if isinstance(value, SecretRef):
        return "secrets", value.reference
    raise ManifestError(
        f"{where}: {type(value).__name__} values are resolved at use by code sandbank cannot "
        f"carry; give a plain string, or sandbank.agents.SecretRef(reference='env:HOST_VAR') "
        f"(or 'file:/path', or a URL) for a secret"
    )


def _mode(permissions: Permissions) -> int:
    return stat.S_IMODE(permissions.to_mode())


def _collect(
    path: PurePosixPath, entry: BaseEntry, files: list[dict[str, Any]], dirs: list[dict[str, Any]]
) -> None:
    where = f"entries.{path.as_posix()}"
    if entry.ephemeral:
        raise ManifestError(
            f"{where}: ephemeral entries do not map (a sandbank manifest's contents are part of "
            f"the workspace; its exclude patterns keep paths out of snapshots); drop ephemeral"
        )
    if entry.group is not None:
        raise ManifestError(f"{where}.group: entry groups do not map; drop the group")
    if entry.description is not None:
        raise ManifestError(f"{where}.description: sandbank manifests have none; drop it")
    rel = path.as_posix()
    mode = _mode(entry.permissions)
    if isinstance(entry, File):
        item: dict[str, Any] = {"path": rel}
        try:
            item["text"] = entry.content.decode()
        except UnicodeDecodeError:
            item["base64"] = b64encode(entry.content).decode()
        if mode != _FILE_MODE:
            item["mode"] = mode
        files.append(item)
    elif isinstance(entry, Dir):
        if mode != _DIR_MODE or not entry.children:
            dirs.append({"path": rel, **({"mode": mode} if mode != _DIR_MODE else {})})
        for child, sub in entry.children.items():
            _collect(path / Path(child).as_posix(), sub, files, dirs)
    elif isinstance(entry, LocalFile):
        files.append({"path": rel, "host": _host(f"{where}.src", entry.src), "mode": mode})
    elif isinstance(entry, LocalDir):
        if entry.src is None:  # an empty directory
            dirs.append({"path": rel, **({"mode": mode} if mode != _DIR_MODE else {})})
        else:
            dirs.append({"path": rel, "host": _host(f"{where}.src", entry.src), "mode": mode})
    elif isinstance(entry, GitRepo):
        if entry.subpath not in (None, "", "."):
            raise ManifestError(
                f"{where}.subpath: sandbank clones whole repositories; drop subpath (or clone "
                f"it whole and move the part you need in a setup command)"
            )
        url = f"https://{entry.host}/{entry.repo}.git"
        git = {"url": url, "ref": entry.ref, "depth": 1}
        dirs.append({"path": rel, "git": git, **({"mode": mode} if mode != _DIR_MODE else {})})
    else:
        raise ManifestError(
            f"{where}: {type(entry).__name__} entries do not map to a sandbank manifest"
        )


def _host(where: str, src: Path) -> str:
    path = Path(os.path.abspath(src))  # relative: from the SDK's base directory, the cwd
    if "\x00" in str(path):
        raise ManifestError(f"{where}: contains a NUL byte")
    return path.as_posix()


# -- sandbank -> SDK ------------------------------------------------------------------------


def _refuse_unmapped(manifest: Manifest) -> None:
    default = Manifest()
    if manifest.workdir != ".":
        raise ManifestError(
            f"workdir {manifest.workdir!r}: SDK commands start at the workspace root; "
            f"leave workdir at '.' (the model's shell tool takes a workdir per command)"
        )
    for field in ("image", "resources", "network"):
        if getattr(manifest, field) != getattr(default, field):
            raise ManifestError(
                f"{field}: the SDK manifest has no {field}; pass it to the sandbank client "
                f"in SandbankClientOptions(manifest={{{field!r}: ...}}) instead"
            )
    if manifest.setup:
        raise ManifestError(
            "setup: the SDK manifest has no setup commands; pass them to the sandbank client "
            "in SandbankClientOptions(manifest={'setup': [...]}) instead"
        )
    if manifest.exclude:
        raise ManifestError(
            "exclude: the SDK manifest has no exclude patterns (only whole ephemeral entries); "
            "pass them in SandbankClientOptions(manifest={'exclude': [...]}) instead"
        )


def _permissions(where: str, mode: int, *, directory: bool) -> Permissions:
    if mode & ~0o777:
        raise ManifestError(
            f"{where}.mode: {mode:o} has setuid, setgid or sticky bits, which SDK permissions "
            f"cannot hold; set them in a setup command"
        )
    permissions = Permissions.from_mode(mode)
    permissions.directory = directory
    return permissions


def _host_mode(where: str, host: str) -> int:
    try:
        return stat.S_IMODE(os.stat(host).st_mode)
    except OSError as exc:
        raise ManifestError(
            f"{where}.mode: the SDK sets a mode on every entry and {host!r} cannot be read "
            f"here for its own ({exc.strerror}); give a mode"
        ) from None


def _sdk_file(where: str, f: WorkspaceFile) -> BaseEntry:
    if f.url is not None:
        raise ManifestError(
            f"{where}.url: the SDK manifest has no URL sources (only mounts); copy the object "
            f"to a host file, or inline it"
        )
    if f.host is not None:
        mode = f.mode if f.mode is not None else _host_mode(where, f.host)
        return LocalFile(src=Path(f.host), permissions=_permissions(where, mode, directory=False))
    mode = f.mode if f.mode is not None else _FILE_MODE
    content = f.inline or b""
    return File(content=content, permissions=_permissions(where, mode, directory=False))


def _sdk_dir(where: str, d: WorkspaceDir) -> BaseEntry:
    if d.url is not None:
        raise ManifestError(
            f"{where}.url: the SDK manifest has no URL sources (only mounts); copy the "
            f"objects to a host directory"
        )
    if d.host is not None:
        mode = d.mode if d.mode is not None else _host_mode(where, d.host)
        return LocalDir(src=Path(d.host), permissions=_permissions(where, mode, directory=True))
    permissions = _permissions(where, d.mode if d.mode is not None else _DIR_MODE, directory=True)
    if d.git is None:
        return Dir(permissions=permissions)
    git = d.git
    match = _GIT_URL.match(git.url)
    if match is None:
        raise ManifestError(
            f"{where}.git.url: {git.url!r}: the SDK clones only https://HOST/REPO.git URLs"
        )
    if git.ref is None:
        raise ManifestError(
            f"{where}.git.ref: the SDK needs a ref (branch, tag or commit); give one"
        )
    if git.depth != 1:
        raise ManifestError(
            f"{where}.git.depth: the SDK clones depth 1 only, not {git.depth}; leave depth at 1"
        )
    return GitRepo(host=match["host"], repo=match["repo"], ref=git.ref, permissions=permissions)
