"""Helpers for cloud providers whose SDK runs shell strings in a remote sandbox.

``shell_join`` turns an argv (with cwd and environment) into one shell string that runs it
exactly; ``resolve_script`` checks workspace paths in the sandbox in one command, following
symlinks, so a provider can refuse those that leave the workspace before it calls the SDK's
file API; ``spool_checked_tar`` validates an archive before any of it reaches the sandbox;
``retryable_status`` is the one rule for which HTTP failures a retry can help.
"""

from __future__ import annotations

import shlex
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, BinaryIO, Literal

from sandbank._streams import CHUNK
from sandbank.errors import ConfigurationError, PathNotFound, WorkspacePathError
from sandbank.providers._tar import TarGuard, member_path

__all__ = [
    "CWD_ESCAPES",
    "CWD_MISSING",
    "Resolved",
    "cwd_error",
    "parse_resolved",
    "resolve_argv",
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
    when ``cwd`` does not exist; ``cwd_error`` turns those into sandbank errors. A missing
    program exits 127, as ``env`` reports it.
    """
    lines = []
    if cwd is not None:
        missing = shlex.quote(CWD_MISSING)
        lines.append(f"cd -- {shlex.quote(cwd)} 2>/dev/null || {{ echo {missing} >&2; exit 86; }}")
        if workspace is not None:
            escapes = shlex.quote(CWD_ESCAPES)
            root = shlex.quote(workspace)
            lines.append(
                f'here=$(pwd -P); ws=$(cd -- {root} && pwd -P); case "$here" in "$ws"|"$ws"/*)'
                f" ;; *) echo {escapes} >&2; exit 86 ;; esac"
            )
    assignments = [shlex.quote(f"{k}={v}") for k, v in (env or {}).items()]
    program = list(argv)
    if "=" in program[0] and "/" not in program[0]:
        program[0] = f"./{program[0]}"  # env would take it for an assignment
    lines.append(" ".join(["exec env --", *assignments, *(shlex.quote(a) for a in program)]))
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


Kind = Literal["file", "dir", "link", "other", "missing", "escape"]


@dataclass(frozen=True)
class Resolved:
    """Where a workspace path leads in the sandbox: its kind and its absolute real path."""

    rel: str
    kind: Kind
    real: str

    def check(self, *, allow_missing: bool = True) -> Resolved:
        """Raise for a path that leaves the workspace (or, optionally, does not exist)."""
        if self.kind == "escape":
            raise WorkspacePathError(self.rel, f"resolves through a symlink to {self.real!r}")
        if self.kind == "missing" and not allow_missing:
            raise PathNotFound(self.rel)
        return self


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


def retryable_status(status: int | None) -> bool:
    """Whether an HTTP failure with this status can pass on a retry: 429 and 5xx."""
    return status is not None and (status == 429 or status >= 500)
