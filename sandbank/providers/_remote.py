"""Helpers for cloud providers whose SDK runs shell strings in a remote sandbox.

``shell_join`` turns an argv (with cwd and environment) into one shell string that runs it
exactly; ``resolve_path`` walks a workspace path with the SDK's own stat call, following
symlinks, so a provider can refuse one that leaves the workspace before it calls the SDK's
file API; ``spool_checked_tar`` validates an archive before any of it reaches the sandbox;
``retryable_status`` is the one rule for which HTTP failures a retry can help.
"""

from __future__ import annotations

import posixpath
import shlex
import tarfile
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, BinaryIO, Literal

from sandbank._streams import CHUNK
from sandbank.errors import ConfigurationError, PathNotFound, WorkspacePathError
from sandbank.providers._tar import TarGuard, member_path

__all__ = [
    "CWD_ESCAPES",
    "CWD_MISSING",
    "Lstat",
    "Resolved",
    "cwd_error",
    "resolve_path",
    "retryable_status",
    "shell_join",
    "spool_checked_tar",
]

CWD_MISSING = "sandbank: the working directory does not exist"
CWD_ESCAPES = "sandbank: the working directory leaves the workspace"
_CWD_EXIT = 86


def shell_join(
    argv: Sequence[str],
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    workspace: str | None = None,
) -> str:
    """A shell command line that runs ``argv`` as is (no expansion) in ``cwd`` with ``env``.

    With ``workspace``, the command refuses to start when ``cwd`` resolves (through
    symlinks) outside it: it exits 86 with ``CWD_ESCAPES`` on stderr, or ``CWD_MISSING``
    when ``cwd`` does not exist; ``cwd_error`` turns those into sandbank errors. Only shell
    builtins run before the program (no extra process); a missing program exits 127.
    """
    lines = []
    if cwd is not None:
        fail = "{{ echo {} >&2; exit 86; }}"
        missing = fail.format(shlex.quote(CWD_MISSING))
        if workspace is not None:
            lines.append(f"cd -P -- {shlex.quote(workspace)} && ws=$PWD || {missing}")
        lines.append(f"cd -P -- {shlex.quote(cwd)} 2>/dev/null || {missing}")
        if workspace is not None:
            escapes = fail.format(shlex.quote(CWD_ESCAPES))
            lines.append(f'case "$PWD" in "$ws"|"$ws"/*) ;; *) {escapes} ;; esac')
    lines += [f"export {shlex.quote(f'{k}={v}')}" for k, v in (env or {}).items()]
    dashes = ["--"] if argv[0].startswith("-") else []
    lines.append(" ".join(["exec", *dashes, *(shlex.quote(a) for a in argv)]))
    return "\n".join(lines)


def cwd_error(exit_code: int, stderr: bytes, cwd: str) -> Exception | None:
    """The error for a command that ``shell_join`` refused to start, else ``None``."""
    if exit_code != _CWD_EXIT:
        return None
    text = stderr.decode("utf-8", "replace").strip()
    if text == CWD_MISSING:
        return PathNotFound(cwd)
    if text == CWD_ESCAPES:
        return WorkspacePathError(cwd, "is a working directory that leaves the workspace")
    return None


Kind = Literal["file", "dir", "link", "other", "missing", "escape", "notdir"]
Lstat = Callable[[str], Awaitable[tuple[Kind, str | None] | None]]
"""Stat an absolute path in the sandbox without following a final symlink: its kind
(``file``, ``dir``, ``link`` or ``other``) and, for a link, its target; ``None`` if missing."""

_MAX_LINKS = 40


@dataclass(frozen=True)
class Resolved:
    """Where a workspace path leads in the sandbox: its kind and its absolute real path."""

    rel: str
    kind: Kind
    real: str

    def check(self, *, allow_missing: bool = True) -> Resolved:
        """Raise for a path that leaves the workspace or crosses a file (or is missing)."""
        if self.kind == "escape":
            raise WorkspacePathError(self.rel, f"resolves through a symlink to {self.real!r}")
        if self.kind == "notdir":
            raise ConfigurationError(
                f"{self.real!r} is not a directory, so {self.rel!r} cannot exist"
            )
        if self.kind == "missing" and not allow_missing:
            raise PathNotFound(self.rel)
        return self


async def resolve_path(rel: str, workspace: str, lstat: Lstat, *, follow: bool = True) -> Resolved:
    """Resolve the workspace-relative ``rel`` in the sandbox, one ``lstat`` per component.

    Symlinks are followed (a final one only with ``follow``) and must stay in ``workspace``,
    which must itself be a real path; the first missing component ends the walk.
    """
    pending = [] if rel == "." else rel.split("/")
    base, hops = workspace, 0
    while pending:
        name = pending.pop(0)
        here = f"{base}/{name}"
        found = await lstat(here)
        if found is None:
            return Resolved(rel, "missing", "/".join([here, *pending]))
        kind, target = found
        if kind == "link" and (pending or follow):
            hops += 1
            if hops > _MAX_LINKS:
                raise WorkspacePathError(rel, "has too many levels of symlinks")
            dest = posixpath.normpath(posixpath.join(base, target or ""))
            if dest != workspace and not dest.startswith(workspace + "/"):
                return Resolved(rel, "escape", dest)
            rest = dest[len(workspace) :].strip("/")
            pending = (rest.split("/") if rest else []) + pending
            base = workspace
            continue
        if pending and kind != "dir":
            return Resolved(rel, "notdir", here)
        if not pending:
            return Resolved(rel, kind, here)
        base = here
    return Resolved(rel, "dir", base)


def spool_checked_tar(source: BinaryIO) -> tuple[IO[bytes], set[str]]:
    """Validate every member of the tar in ``source`` into a temporary file, names normalized.

    Returns the file (rewound) and the parent directories the archive does not create
    itself, which the caller must check in the sandbox (they may be symlinks already
    there). Nothing reaches the sandbox before every member has passed ``TarGuard``.
    """
    guard = TarGuard()
    created: set[str] = set()
    unchecked: set[str] = set()
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    try:
        with (
            tarfile.open(fileobj=source, mode="r|*", bufsize=CHUNK) as archive,
            tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as out,
        ):
            for member in archive:
                path = guard.check(member)
                if path == ".":
                    continue
                parent = path.rpartition("/")[0]
                if parent and parent not in created:
                    unchecked.add(parent)
                if member.isdir():
                    created.add(path)
                headers = dict(member.pax_headers)
                headers.pop("path", None)
                headers.pop("linkpath", None)
                member.pax_headers = headers
                member.name = path
                if member.islnk():
                    member.linkname = member_path(member.linkname)
                out.addfile(member, archive.extractfile(member) if member.isreg() else None)
    except tarfile.TarError as exc:
        spool.close()
        raise ConfigurationError(f"the stream is not a readable tar archive ({exc})") from exc
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, unchecked


def retryable_status(status: int | None) -> bool:
    """Whether an HTTP failure with this status can pass on a retry: 429 and 5xx."""
    return status is not None and (status == 429 or status >= 500)
