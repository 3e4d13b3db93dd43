"""Helpers for cloud providers whose SDK runs shell strings in a remote sandbox.

``shell_join`` turns an argv (with cwd and environment) into one shell string that runs it
exactly; ``resolve_path`` walks a workspace path with the SDK's own stat call, following
symlinks, so a provider can refuse one that leaves the workspace before it calls the SDK's
file API; ``spool_checked_tar`` validates an archive before any of it reaches the sandbox;
``retryable_status`` is the one rule for which HTTP failures a retry can help.
For an SDK whose stat call cannot tell a symlink's target, ``resolve_argv`` does the same
resolution in one command in the sandbox; ``EXPORT_TAR_SCRIPT``/``IMPORT_TAR_SCRIPT`` and
``check_tar_parents`` are tar over exec.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import tarfile
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Literal

from sandbank._streams import CHUNK
from sandbank.errors import ConfigurationError, PathNotFound, WorkspacePathError
from sandbank.providers._tar import TarGuard, member_path
from sandbank.providers.base import FileEntry

__all__ = [
    "CWD_ESCAPES",
    "CWD_MISSING",
    "EXPORT_TAR_SCRIPT",
    "IMPORT_TAR_SCRIPT",
    "Lstat",
    "Resolved",
    "ShellFileOps",
    "check_tar_parents",
    "cwd_error",
    "parse_resolved",
    "resolve_argv",
    "resolve_path",
    "retryable_status",
    "shell_join",
    "spool_checked_tar",
]

CWD_MISSING = "sandbank: the working directory does not exist"
CWD_ESCAPES = "sandbank: the working directory leaves the workspace"
_CWD_EXIT = 86


_RESOLVE = r"""
ws=$(realpath -- "$1") || exit 90
shift
while [ $# -ge 2 ]; do
  how=$1 rel=$2
  shift 2
  if [ "$rel" = . ]; then real=$ws
  elif [ "$how" = n ]; then
    case "$rel" in */*) dir=${rel%/*} base=${rel##*/} ;; *) dir=. base=$rel ;; esac
    real=$(realpath -m -- "$ws/$dir")/$base
  else
    real=$(realpath -m -- "$ws/$rel")
  fi
  case "$real" in "$ws"|"$ws"/*) ;; *) printf 'escape\0%s\0' "$real"; continue ;; esac
  if [ -L "$real" ]; then t=link
  elif [ -d "$real" ]; then t=dir
  elif [ -f "$real" ]; then t=file
  elif [ -e "$real" ]; then t=other
  else t=missing
  fi
  printf '%s\0%s\0' "$t" "$real"
done
"""


EXPORT_TAR_SCRIPT = r"""
cd -- "$1" || exit 3
out=$2
shift 2
if [ $# -eq 0 ]; then
  find . -mindepth 1 -maxdepth 1 ! -name "${out##*/}" -printf '%P\0' | tar -cf "$out" --null -T -
else
  tar -cf "$out" -- "$@"
fi
"""
"""``sh -c EXPORT_TAR_SCRIPT sh WORKSPACE OUT [PATH...]``: a tar of the workspace (or of the
checked relative paths) at OUT, members relative to the root, for the file API to fetch."""

IMPORT_TAR_SCRIPT = (
    'cd -- "$1" && tar -xpf "$2" --no-same-owner; code=$?; rm -f -- "$2"; exit $code'
)
"""``sh -c IMPORT_TAR_SCRIPT sh WORKSPACE ARCHIVE``: extract an archive that
``spool_checked_tar`` passed (and ``check_tar_parents`` cleared), then delete it."""


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


def resolve_argv(workspace: str, paths: Iterable[tuple[Literal["f", "n"], str]]) -> list[str]:
    """The argv that resolves ``paths`` (``"f"``: follow a final symlink, ``"n"``: do not)
    in the sandbox; parse its output with ``parse_resolved``. Needs GNU ``realpath``."""
    argv = ["/bin/sh", "-c", _RESOLVE, "sh", workspace]
    for how, rel in paths:
        argv += [how, rel]
    return argv


def parse_resolved(rels: Sequence[str], stdout: bytes) -> list[Resolved]:
    """The ``Resolved`` of each path, from the output of ``resolve_argv``'s command."""
    fields = stdout.split(b"\0")
    found = [
        (fields[i].decode(), fields[i + 1].decode("utf-8", "surrogateescape"))
        for i in range(0, len(fields) - 1, 2)
    ]
    if len(found) != len(rels):
        raise ConfigurationError(
            f"resolving {list(rels)} in the sandbox gave {len(found)} answers; the sandbox "
            f"needs GNU coreutils (realpath -m)"
        )
    return [Resolved(rel, kind, real) for rel, (kind, real) in zip(rels, found, strict=True)]  # type: ignore[arg-type]


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


def check_tar_parents(parents: Iterable[Resolved]) -> None:
    """Refuse an archive whose unchecked parent directories (from ``spool_checked_tar``,
    resolved with ``"f"``) leave the workspace or are not directories."""
    for target in parents:
        target.check()
        if target.kind not in ("dir", "missing"):
            raise ConfigurationError(
                f"{target.rel!r} is not a directory, so the archive cannot extract into it"
            )


def retryable_status(status: int | None) -> bool:
    """Whether an HTTP failure with this status can pass on a retry: 429 and 5xx."""
    return status is not None and (status == 429 or status >= 500)


class ShellFileOps:
    """``list_tree``, ``remove`` and ``mkdir`` as one in-sandbox script each, for a sandbox
    whose ``_script(body, path)`` runs ``body`` after a preamble that sets ``W`` (the
    workspace), defines ``inside PATH`` (true when PATH resolves inside it) and ``fail
    REASON`` (``escape``, ``missing``, ``notdir``: raised as the matching sandbank error), and
    returns the script's stdout. Put it before ``Sandbox`` in the bases."""

    async def _script(self, body: str, path: str) -> bytes:
        raise NotImplementedError

    async def _list_tree(self, path: str) -> list[FileEntry]:
        body = (
            f'P="$W"/{shlex.quote(path)}\n'
            'inside "$P" || fail escape\n'
            '[ -e "$P" ] || fail missing\n'
            '[ -d "$P" ] || fail notdir\n'
            "find -H \"$P\" -mindepth 1 -printf '%y\\0%s\\0%m\\0%T@\\0%l\\0%P\\0'"
        )
        fields = (await self._script(body, path)).split(b"\0")
        prefix = "" if path == "." else f"{path}/"
        kinds = {"f": "file", "d": "dir", "l": "symlink"}
        entries = []
        for i in range(0, len(fields) - 5, 6):
            kind, size, mode, mtime, link, name = (os.fsdecode(f) for f in fields[i : i + 6])
            entry_type: Any = kinds.get(kind, "other")
            entries.append(
                FileEntry(
                    path=prefix + name,
                    type=entry_type,
                    size=0 if entry_type == "dir" else int(size),
                    mode=int(mode, 8),
                    mtime=float(mtime),
                    link_target=link if entry_type == "symlink" else None,
                )
            )
        return entries

    async def _remove(self, path: str) -> None:
        body = (
            f'P="$W"/{shlex.quote(path)}\n'
            'inside "$(dirname -- "$P")" || fail escape\n'
            '[ -e "$P" ] || [ -L "$P" ] || fail missing\n'
            'rm -rf -- "$P"'
        )
        await self._script(body, path)

    async def _mkdir(self, path: str) -> None:
        body = (
            f'P="$W"/{shlex.quote(path)}\n'
            'inside "$P" || fail escape\n'
            'mkdir -p -- "$P" 2>/dev/null || fail notdir'
        )
        await self._script(body, path)
